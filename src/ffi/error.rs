//! The panic guard and the thread-local last error.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Return code of the profile and prompt-logits `int` functions: success.
pub const ENTROPIX_OK: c_int = 0;
/// A required pointer argument was NULL.
pub const ENTROPIX_ERR_NULL: c_int = 1;
/// Anything else: a file that could not be read or parsed, an unknown key
/// or unit, a sampler of the wrong kind. The reason is in
/// `entropix_last_error()`.
pub const ENTROPIX_ERR_INVALID: c_int = 2;

/// Records `message` as the last error and returns `code`.
pub(crate) fn fail(code: c_int, message: impl Into<String>) -> c_int {
    set_last_error(message);
    code
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error.
pub(crate) fn set_last_error(message: impl Into<String>) {
    let text = CString::new(message.into().replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs `body`, turning an `Err` or a panic into `fallback` and a last
/// error. Every export goes through here.
pub(crate) fn guard<T>(fallback: T, body: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(message)) => {
            set_last_error(message);
            fallback
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_last_error(format!("internal error (panic caught at the C boundary): {what}"));
            fallback
        }
    }
}

/// The last error recorded on this thread by an `entropix_` function, as a
/// NUL-terminated UTF-8 string; "" when none. The pointer stays valid until
/// the next `entropix_` call on this thread; do not free it.
#[no_mangle]
pub extern "C" fn entropix_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library version ("MAJOR.MINOR.PATCH"), a static string; do not free.
#[no_mangle]
pub extern "C" fn entropix_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
