//! Process-wide llama.cpp setup: backend initialisation and logging.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Once;

use llama_cpp_sys_2 as sys;

/// How much of llama.cpp's log reaches stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum LogLevel {
    /// Nothing.
    Silent = 0,
    /// Errors only.
    Error = 1,
    /// Errors and warnings (the default).
    Warn = 2,
    /// Everything llama.cpp says.
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Warn as u8);
static INIT: Once = Once::new();

/// Initialises llama.cpp's backends once per process and installs the log
/// filter. Safe to call many times.
pub fn init_backend() {
    INIT.call_once(|| unsafe {
        sys::llama_log_set(Some(log_callback), std::ptr::null_mut());
        sys::llama_backend_init();
    });
}

/// Sets how much of llama.cpp's log is printed to stderr.
pub fn set_log_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

unsafe extern "C" fn log_callback(level: sys::ggml_log_level, text: *const c_char, _user: *mut c_void) {
    let wanted = LEVEL.load(Ordering::Relaxed);
    let severity = match level {
        sys::GGML_LOG_LEVEL_ERROR => LogLevel::Error as u8,
        sys::GGML_LOG_LEVEL_WARN => LogLevel::Warn as u8,
        sys::GGML_LOG_LEVEL_CONT => {
            if wanted >= LogLevel::Debug as u8 {
                print(text);
            }
            return;
        }
        _ => LogLevel::Debug as u8,
    };
    if severity <= wanted && !text.is_null() {
        print(text);
    }
}

unsafe fn print(text: *const c_char) {
    if !text.is_null() {
        eprint!("{}", CStr::from_ptr(text).to_string_lossy());
    }
}
