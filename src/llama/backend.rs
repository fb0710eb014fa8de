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

/// Sets how much of llama.cpp's log is printed to stderr when no `log`
/// logger is installed (with one, its filter decides).
pub fn set_log_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The `log` level of the last record, for llama.cpp's continuation lines.
static LAST: AtomicU8 = AtomicU8::new(3);

/// llama.cpp's log: through the `log` facade (target `llama.cpp`) when the
/// host installed a logger (`env_logger` in the CLI: `RUST_LOG=llama.cpp=info`
/// shows model loading), otherwise to stderr filtered by [`set_log_level`].
unsafe extern "C" fn log_callback(level: sys::ggml_log_level, text: *const c_char, _user: *mut c_void) {
    if text.is_null() {
        return;
    }
    if log::max_level() != log::LevelFilter::Off {
        let lvl = match level {
            sys::GGML_LOG_LEVEL_ERROR => log::Level::Error,
            sys::GGML_LOG_LEVEL_WARN => log::Level::Warn,
            sys::GGML_LOG_LEVEL_INFO => log::Level::Info,
            sys::GGML_LOG_LEVEL_CONT => level_from(LAST.load(Ordering::Relaxed)),
            _ => log::Level::Debug,
        };
        LAST.store(lvl as u8, Ordering::Relaxed);
        let message = CStr::from_ptr(text).to_string_lossy();
        let message = message.trim_end_matches('\n');
        if !message.is_empty() {
            log::log!(target: "llama.cpp", lvl, "{message}");
        }
        return;
    }
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
    if severity <= wanted {
        print(text);
    }
}

fn level_from(n: u8) -> log::Level {
    match n {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        3 => log::Level::Info,
        4 => log::Level::Debug,
        _ => log::Level::Trace,
    }
}

unsafe fn print(text: *const c_char) {
    eprint!("{}", CStr::from_ptr(text).to_string_lossy());
}
