//! Wraps a Rust [`Sampler`] as a llama.cpp `struct llama_sampler`.

use std::ffi::{c_char, c_void, CString};
use std::ptr;

use llama_cpp_sys_2::{llama_sampler, llama_sampler_i, llama_sampler_init, llama_token, llama_token_data_array};

use super::error::{copy_c_string, guard, guard_callback};
use crate::core::{Candidates, SampleError, Sampler, TokenData};

/// What `llama_sampler.ctx` points to for our samplers.
struct PluginCtx {
    sampler: Box<dyn Sampler>,
    /// NUL-terminated copy of `sampler.name()`, returned to llama.cpp.
    name: CString,
}

/// The one vtable of all our samplers. llama.cpp reads it and never writes
/// it (the `*mut` in `llama_sampler_init` is historical).
static IFACE: llama_sampler_i = llama_sampler_i {
    name: Some(iface_name),
    accept: Some(iface_accept),
    apply: Some(iface_apply),
    reset: Some(iface_reset),
    clone: Some(iface_clone),
    free: Some(iface_free),
    backend_init: None,
    backend_accept: None,
    backend_apply: None,
    backend_set_input: None,
    backend_reset: None,
    copy_state: Some(iface_copy_state),
};

/// Turns a Rust sampler into a `struct llama_sampler *` created by the
/// host's `llama_sampler_init`. The caller (or the chain it is added to)
/// owns the result and frees it with `llama_sampler_free`.
pub fn into_llama_sampler(sampler: Box<dyn Sampler>) -> *mut llama_sampler {
    let name = CString::new(sampler.name()).unwrap_or_default();
    let ctx = Box::new(PluginCtx { sampler, name });
    let ctx = Box::into_raw(ctx);
    // SAFETY: IFACE lives forever and llama.cpp only reads through it; ctx is
    // a valid heap pointer that iface_free releases.
    let smpl = unsafe { llama_sampler_init(ptr::addr_of!(IFACE).cast_mut(), ctx.cast::<c_void>()) };
    if smpl.is_null() {
        // SAFETY: ctx came from Box::into_raw above and was not handed out.
        drop(unsafe { Box::from_raw(ctx) });
    }
    smpl
}

/// Our context behind `smpl`, or `None` when `smpl` is NULL or not one of
/// ours.
///
/// # Safety
/// `smpl` must be NULL or point to a live `llama_sampler`.
unsafe fn ctx_of<'a>(smpl: *const llama_sampler) -> Option<&'a mut PluginCtx> {
    if smpl.is_null() || !ptr::eq((*smpl).iface, ptr::addr_of!(IFACE)) || (*smpl).ctx.is_null() {
        return None;
    }
    Some(&mut *(*smpl).ctx.cast::<PluginCtx>())
}

/// The Rust sampler behind a `llama_sampler *` made by this library, for
/// Rust hosts that need to read its state. `None` for NULL or foreign
/// samplers.
///
/// # Safety
/// `smpl` must be NULL or point to a live `llama_sampler`, not used from
/// another thread during the borrow.
pub unsafe fn sampler_ref<'a>(smpl: *const llama_sampler) -> Option<&'a mut (dyn Sampler + 'static)> {
    ctx_of(smpl).map(|c| c.sampler.as_mut())
}

/// True when `smpl` was created by this library (false for NULL and for
/// llama.cpp's own samplers, chains included).
///
/// # Safety
/// `smpl` must be NULL or point to a live `llama_sampler`.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_is_ours(smpl: *const llama_sampler) -> bool {
    guard(false, || Ok(ctx_of(smpl).is_some()))
}

/// Writes the sampler's state and last-step metrics, a JSON object in
/// UTF-8, into `buf`: at most `len - 1` bytes and a NUL (nothing when `buf`
/// is NULL or `len` is 0: a size query). Returns the JSON's full length in
/// bytes without the NUL, as `snprintf` does (>= `len`: cut; call again
/// with a buffer of the result + 1), or 0 with a last error when `smpl` is
/// NULL or not one of ours. Only reads the sampler; like every llama.cpp
/// sampler call, not concurrently with an apply or accept on the same
/// sampler.
///
/// # Safety
/// `smpl` must be NULL or point to a live `llama_sampler`; `buf` is NULL or
/// points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn entropix_sampler_state_json(smpl: *const llama_sampler, buf: *mut c_char, len: usize) -> usize {
    guard(0, || {
        let ctx = ctx_of(smpl).ok_or("entropix_sampler_state_json: not an entropix sampler (or NULL)")?;
        // Samplers without state give `{}`, so C always gets an object.
        let json = match ctx.sampler.state_json() {
            serde_json::Value::Null => "{}".to_string(),
            v => v.to_string(),
        };
        Ok(copy_c_string(json.as_bytes(), buf, len))
    })
}

/// The state JSON of one of our samplers, for Rust callers of the C ABI;
/// `None` for NULL and foreign samplers.
///
/// # Safety
/// As [`entropix_sampler_state_json`].
pub unsafe fn state_json_string(smpl: *const llama_sampler) -> Option<String> {
    let n = entropix_sampler_state_json(smpl, ptr::null_mut(), 0);
    if n == 0 {
        return None;
    }
    let mut buf = vec![0u8; n + 1];
    entropix_sampler_state_json(smpl, buf.as_mut_ptr().cast(), buf.len());
    buf.truncate(n);
    String::from_utf8(buf).ok()
}

unsafe extern "C" fn iface_name(smpl: *const llama_sampler) -> *const c_char {
    static UNKNOWN: &[u8] = b"entropix(invalid)\0";
    guard_callback(UNKNOWN.as_ptr().cast(), || Ok(ctx_of(smpl).map_or(UNKNOWN.as_ptr().cast(), |c| c.name.as_ptr())))
}

unsafe extern "C" fn iface_accept(smpl: *mut llama_sampler, token: llama_token) {
    guard_callback((), || {
        if let Some(c) = ctx_of(smpl) {
            c.sampler.accept(token);
        }
        Ok(())
    })
}

/// Runs the sampler on llama.cpp's array in place. On an error the array is
/// left as it was and the reason goes to `entropix_last_error()`; a sampler
/// that selects still selects index 0 of a non-empty array, because
/// llama.cpp aborts the process when a chain selects nothing.
unsafe extern "C" fn iface_apply(smpl: *mut llama_sampler, cur_p: *mut llama_token_data_array) {
    guard_callback((), || {
        let ctx = ctx_of(smpl).ok_or("apply: not an entropix sampler")?;
        if cur_p.is_null() {
            return Err(format!("{}: apply called with a NULL candidate array", ctx.sampler.name()));
        }
        let arr = &mut *cur_p;
        if arr.size > 0 && arr.data.is_null() {
            return Err(format!("{}: apply called with size {} and NULL data (left as it was)", ctx.sampler.name(), arr.size));
        }
        let data: &mut [TokenData] = if arr.size == 0 {
            &mut []
        } else {
            // SAFETY: llama_token_data and TokenData have the same layout
            // (tests/abi_layout.rs); llama.cpp owns `size` elements at `data`.
            std::slice::from_raw_parts_mut(arr.data.cast::<TokenData>(), arr.size)
        };
        let selected = usize::try_from(arr.selected).ok();
        // The host's `sorted` flag is checked, not trusted: llama.cpp's
        // logit bias and grammar change logits without clearing it.
        let mut cands = Candidates::from_host(data, arr.sorted, selected);
        let result = ctx.sampler.apply(&mut cands);
        let (len, sorted, selected) = (cands.len(), cands.is_sorted(), cands.selected());
        arr.size = len;
        arr.sorted = sorted;
        arr.selected = selected.map_or(-1, |i| i as i64);
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if matches!(e, SampleError::NoFiniteLogits) && arr.selected < 0 && arr.size > 0 && ctx.sampler.selects() {
                    arr.selected = 0;
                }
                Err(format!("{}: {e}", ctx.sampler.name()))
            }
        }
    })
}

unsafe extern "C" fn iface_reset(smpl: *mut llama_sampler) {
    guard_callback((), || {
        if let Some(c) = ctx_of(smpl) {
            c.sampler.reset();
        }
        Ok(())
    })
}

unsafe extern "C" fn iface_clone(smpl: *const llama_sampler) -> *mut llama_sampler {
    guard_callback(ptr::null_mut(), || {
        let ctx = ctx_of(smpl).ok_or("clone: not an entropix sampler")?;
        Ok(into_llama_sampler(ctx.sampler.box_clone()))
    })
}

unsafe extern "C" fn iface_free(smpl: *mut llama_sampler) {
    guard_callback((), || {
        if ctx_of(smpl).is_some() {
            // SAFETY: ctx was made by Box::into_raw in into_llama_sampler and
            // llama.cpp calls free exactly once, before deleting smpl.
            drop(Box::from_raw((*smpl).ctx.cast::<PluginCtx>()));
            (*smpl).ctx = ptr::null_mut();
        }
        Ok(())
    })
}

unsafe extern "C" fn iface_copy_state(src: *const llama_sampler, dst: *mut llama_sampler) {
    guard_callback((), || {
        match (ctx_of(src), ctx_of(dst)) {
            (Some(s), Some(d)) if s.sampler.name() == d.sampler.name() => {
                // The state is copied; what the host attached to `dst`
                // (attention capture, lookahead context) stays.
                let attachments = d.sampler.take_attachments();
                d.sampler = s.sampler.box_clone();
                d.sampler.put_attachments(attachments);
                Ok(())
            }
            _ => Err("copy_state: both samplers must be entropix samplers of the same family".into()),
        }
    })
}
