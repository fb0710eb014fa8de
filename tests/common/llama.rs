//! Running samplers, ours and llama.cpp's, through llama.cpp's C API.

use entropix_sampler::core::TokenData;
use entropix_sampler::sys;

/// The result of one `llama_sampler_apply` call.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The candidates left in the array (its first `size` elements).
    pub tokens: Vec<TokenData>,
    /// `selected` as an index into `tokens`, if any.
    pub selected: Option<usize>,
    pub sorted: bool,
}

/// An owned `struct llama_sampler *`, freed on drop.
pub struct LlamaSampler(pub *mut sys::llama_sampler);

impl LlamaSampler {
    /// Takes ownership of `ptr`; panics on NULL with the library's last error.
    pub fn new(ptr: *mut sys::llama_sampler) -> Self {
        assert!(!ptr.is_null(), "sampler constructor returned NULL: {}", last_error());
        Self(ptr)
    }

    /// Applies the sampler to a copy of `tokens` through `llama_sampler_apply`.
    pub fn apply(&self, tokens: &[TokenData], sorted: bool) -> Applied {
        let mut data = tokens.to_vec();
        let mut arr = sys::llama_token_data_array {
            data: data.as_mut_ptr().cast::<sys::llama_token_data>(),
            size: data.len(),
            selected: -1,
            sorted,
        };
        // SAFETY: `data` outlives the call; TokenData has llama_token_data's layout.
        unsafe { sys::llama_sampler_apply(self.0, &mut arr) };
        // Samplers may point `data` at their own buffer.
        let out = unsafe { std::slice::from_raw_parts(arr.data.cast::<TokenData>(), arr.size) }.to_vec();
        Applied { tokens: out, selected: usize::try_from(arr.selected).ok(), sorted: arr.sorted }
    }

    pub fn accept(&self, token: i32) {
        unsafe { sys::llama_sampler_accept(self.0, token) }
    }

    pub fn reset(&self) {
        unsafe { sys::llama_sampler_reset(self.0) }
    }

    pub fn clone_sampler(&self) -> LlamaSampler {
        LlamaSampler::new(unsafe { sys::llama_sampler_clone(self.0) })
    }

    pub fn name(&self) -> String {
        unsafe { std::ffi::CStr::from_ptr(sys::llama_sampler_name(self.0)) }.to_string_lossy().into_owned()
    }
}

impl Drop for LlamaSampler {
    fn drop(&mut self) {
        unsafe { sys::llama_sampler_free(self.0) }
    }
}

/// This thread's `entropix_last_error()`.
pub fn last_error() -> String {
    unsafe { std::ffi::CStr::from_ptr(entropix_sampler::ffi::entropix_last_error()) }.to_string_lossy().into_owned()
}

/// Path of the default test model (SmolLM2-135M-Instruct Q4_1): the
/// `ENTROPIX_MODEL` variable, else the cache location the CLI fills.
pub fn model_path() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("ENTROPIX_MODEL") {
        return p.into();
    }
    entropix_sampler::default_model::ensure_default_model(false).expect("the default model is available (run .ci/run or the CLI once)")
}
