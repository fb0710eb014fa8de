//! The panic guard and the thread-local last error.
//!
//! The contract (as rustls-ffi's, with a thread-local message instead of a
//! result code): every export the host calls directly records its outcome
//! on the calling thread: "" on success, the reason on failure. The
//! callbacks llama.cpp calls (apply, accept, ...) only record failures, so
//! that a failed apply stays readable after the rest of the chain ran.
//! `entropix_last_error_copy` copies the message into the caller's buffer;
//! `entropix_last_error` lends a pointer valid until the next `entropix_`
//! call on the same thread. Other threads never see or touch it.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Return code of every `int` function of this library: success.
pub const ENTROPIX_OK: c_int = 0;
/// A required pointer argument was NULL.
pub const ENTROPIX_ERR_NULL: c_int = 1;
/// Any other bad input: a sampler of the wrong kind (not ours, not the
/// family the function is for), a value out of range, a file that could
/// not be read or parsed. The reason is in `entropix_last_error()`.
pub const ENTROPIX_ERR_INVALID: c_int = 2;
/// A bug in this library: a panic caught at the C boundary (the message
/// says where). Nothing crossed into the caller; please report it.
pub const ENTROPIX_ERR_INTERNAL: c_int = 3;
/// Not an error: `entropix_attention_capture_metrics` found no fresh
/// attention for this step (flash attention on, the callback not
/// installed, an output the last decode did not capture).
pub const ENTROPIX_NO_ATTENTION: c_int = 4;

/// Why an `int` export failed: the code it returns and the message
/// `entropix_last_error()` then gives.
#[derive(Debug)]
pub(crate) struct Failure {
    code: c_int,
    message: String,
}

impl Failure {
    /// `ENTROPIX_ERR_NULL`: a required pointer was NULL.
    pub(crate) fn null(message: impl Into<String>) -> Self {
        Self { code: ENTROPIX_ERR_NULL, message: message.into() }
    }

    /// `ENTROPIX_ERR_INVALID`: any other bad input.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self { code: ENTROPIX_ERR_INVALID, message: message.into() }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::invalid(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::invalid(message)
    }
}

/// [`guard`] for the `int` exports: the body's status on success, the
/// failure's code (its message recorded) on `Err`, and
/// [`ENTROPIX_ERR_INTERNAL`] on a panic. Clears the last error on success.
pub(crate) fn guard_status(body: impl FnOnce() -> Result<c_int, Failure>) -> c_int {
    LAST_ERROR_SET.with(|f| f.set(false));
    let out = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(failure)) => {
            set_last_error(failure.message);
            failure.code
        }
        Err(panic) => {
            set_last_error(panic_message(panic.as_ref()));
            ENTROPIX_ERR_INTERNAL
        }
    };
    if !LAST_ERROR_SET.with(|f| f.get()) {
        clear_last_error();
    }
    out
}

/// The message recorded for a panic caught at the C boundary.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what =
        panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".to_string());
    format!("internal error (panic caught at the C boundary): {what}")
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error.
pub(crate) fn set_last_error(message: impl Into<String>) {
    let message = message.into();
    log::debug!(target: "entropix_sampler", "error: {message}");
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
    LAST_ERROR_SET.with(|f| f.set(true));
}

/// Clears this thread's last error.
fn clear_last_error() {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        if !e.as_bytes().is_empty() {
            *e = CString::default();
        }
    });
}

/// Runs `body`, turning an `Err` or a panic into `fallback` and a last
/// error, and clearing the last error on success. Every export the host
/// calls goes through here.
pub(crate) fn guard<T>(fallback: T, body: impl FnOnce() -> Result<T, String>) -> T {
    LAST_ERROR_SET.with(|f| f.set(false));
    let out = guard_callback(fallback, body);
    if !LAST_ERROR_SET.with(|f| f.get()) {
        clear_last_error();
    }
    out
}

thread_local! {
    /// Set when an error was recorded since the current guarded call began.
    static LAST_ERROR_SET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`guard`] for the callbacks llama.cpp calls (the sampler interface):
/// success leaves the last error as it was.
pub(crate) fn guard_callback<T>(fallback: T, body: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(message)) => {
            set_last_error(message);
            fallback
        }
        Err(panic) => {
            set_last_error(panic_message(panic.as_ref()));
            fallback
        }
    }
}

/// The error of the last `entropix_` call on this thread (or of a sampler
/// callback that failed since), as a NUL-terminated UTF-8 string; "" when
/// that call succeeded. The pointer stays valid until the next `entropix_`
/// call on this thread; do not free it. `entropix_last_error_copy` gives a
/// copy instead.
#[no_mangle]
pub extern "C" fn entropix_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Copies this thread's last error (see `entropix_last_error`) into `buf`:
/// at most `len - 1` bytes and a NUL (nothing when `buf` is NULL or `len`
/// is 0). Returns the message's full length in bytes, without the NUL, as
/// `snprintf` does: a result >= `len` means it was cut. Reads, never
/// changes, the last error.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn entropix_last_error_copy(buf: *mut c_char, len: usize) -> usize {
    LAST_ERROR.with(|e| copy_c_string(e.borrow().as_bytes(), buf, len))
}

/// Writes `text` and a NUL into `buf` (at most `len` bytes in all, cut to
/// fit) and returns `text.len()`.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
pub(crate) unsafe fn copy_c_string(text: &[u8], buf: *mut c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let n = text.len().min(len - 1);
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    text.len()
}

/// The library version ("MAJOR.MINOR.PATCH"), a static string; do not free.
#[no_mangle]
pub extern "C" fn entropix_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
