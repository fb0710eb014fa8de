//! llama.cpp's RPC backend (ggml-rpc): ggml devices on other machines that
//! hold some of a model's layers. A host registers the workers' endpoints
//! before it loads the model; `-ngl` then spreads the layers over them
//! (by their free memory, as llama.cpp does). A worker serves its CPU
//! device until the process ends.
//!
//! The backend is built when llama.cpp is built with `GGML_RPC=ON` (set in
//! `.cargo/config.toml`). Its protocol has no authentication or
//! encryption: run workers on trusted networks only.

use std::ffi::{c_char, CString};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::sys;

use super::LlamaError;

/// `ggml_backend_rpc_add_server`'s signature.
type AddServerFn = unsafe extern "C" fn(endpoint: *const c_char) -> sys::ggml_backend_reg_t;
/// `ggml_backend_rpc_start_server`'s signature.
type StartServerFn =
    unsafe extern "C" fn(endpoint: *const c_char, cache_dir: *const c_char, n_threads: usize, n_devices: usize, devices: *mut sys::ggml_backend_dev_t);

/// How long a worker may take to accept the probe connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn rpc_error(message: impl Into<String>) -> LlamaError {
    LlamaError::Rpc(message.into())
}

/// A function of the RPC backend, looked up through ggml's backend
/// registry (this llama.cpp build links it only when built with RPC).
fn proc_address(name: &str) -> Result<*mut std::ffi::c_void, LlamaError> {
    super::init_backend();
    let reg_name = CString::new("RPC").expect("no NUL");
    // SAFETY: a NUL-terminated name; the registry outlives the process.
    let reg = unsafe { sys::ggml_backend_reg_by_name(reg_name.as_ptr()) };
    if reg.is_null() {
        return Err(rpc_error("this llama.cpp was built without its RPC backend: rebuild with GGML_RPC=ON (the repository's .cargo/config.toml sets it)"));
    }
    let fn_name = CString::new(name).expect("no NUL");
    // SAFETY: a registered backend and a NUL-terminated name.
    let f = unsafe { sys::ggml_backend_reg_get_proc_address(reg, fn_name.as_ptr()) };
    if f.is_null() {
        return Err(rpc_error(format!("the RPC backend has no `{name}`")));
    }
    Ok(f)
}

/// Resolves `endpoint` (`host:port`) to one address, with a clear error.
fn resolve(endpoint: &str) -> Result<SocketAddr, LlamaError> {
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| rpc_error(format!("RPC endpoint `{endpoint}` is not host:port")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(rpc_error(format!("RPC endpoint `{endpoint}` is not host:port")));
    }
    endpoint
        .to_socket_addrs()
        .map_err(|e| rpc_error(format!("RPC endpoint `{endpoint}`: {e}")))?
        .next()
        .ok_or_else(|| rpc_error(format!("RPC endpoint `{endpoint}` resolves to no address")))
}

/// Registers each RPC worker (`host:port`) as ggml devices, so that a model
/// loaded afterwards with `n_gpu_layers > 0` spreads its layers over them.
///
/// Each endpoint is probed with a plain TCP connection first: llama.cpp
/// aborts the process when it cannot connect, and this turns a worker that
/// is not running into an error. Registering an endpoint twice is a no-op.
pub fn add_rpc_servers(endpoints: &[String]) -> Result<(), LlamaError> {
    if endpoints.is_empty() {
        return Ok(());
    }
    let add = proc_address("ggml_backend_rpc_add_server")?;
    // SAFETY: the backend's own function of this signature (ggml-rpc.h).
    let add: AddServerFn = unsafe { std::mem::transmute::<*mut std::ffi::c_void, AddServerFn>(add) };
    for endpoint in endpoints {
        let addr = resolve(endpoint)?;
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| rpc_error(format!("cannot reach the RPC worker at {endpoint}: {e} (is `rpc-worker` running there?)")))?;
        let c = CString::new(endpoint.as_str()).map_err(|_| rpc_error("NUL in an RPC endpoint"))?;
        // SAFETY: a NUL-terminated endpoint that accepted a connection.
        let reg = unsafe { add(c.as_ptr()) };
        if reg.is_null() {
            return Err(rpc_error(format!("the RPC worker at {endpoint} offers no device")));
        }
        // SAFETY: a registry entry made by the RPC backend.
        unsafe { sys::ggml_backend_register(reg) };
    }
    Ok(())
}

/// Serves this machine's CPU device to RPC hosts on `endpoint`
/// (`host:port`) with `n_threads` threads; `cache_dir` (optional) keeps
/// tensors sent before, so a host reloading the same model sends less.
/// Returns only when the server cannot start.
pub fn run_rpc_worker(endpoint: &str, n_threads: usize, cache_dir: Option<&Path>) -> Result<(), LlamaError> {
    let addr = resolve(endpoint)?;
    // llama.cpp aborts when the port is taken: find out first.
    drop(std::net::TcpListener::bind(addr).map_err(|e| rpc_error(format!("cannot listen on {endpoint}: {e}")))?);
    let start = proc_address("ggml_backend_rpc_start_server")?;
    // SAFETY: the backend's own function of this signature (ggml-rpc.h).
    let start: StartServerFn = unsafe { std::mem::transmute::<*mut std::ffi::c_void, StartServerFn>(start) };
    // SAFETY: the registry is initialised by proc_address.
    let mut cpu = unsafe { sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU) };
    if cpu.is_null() {
        return Err(rpc_error("llama.cpp has no CPU device to serve"));
    }
    let ep = CString::new(endpoint).map_err(|_| rpc_error("NUL in the endpoint"))?;
    let cache = cache_dir.map(|p| CString::new(p.to_string_lossy().as_bytes())).transpose().map_err(|_| rpc_error("NUL in the cache path"))?;
    // SAFETY: valid strings and one device, alive for the call (which
    // serves until the process ends).
    unsafe { start(ep.as_ptr(), cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()), n_threads.max(1), 1, &mut cpu) };
    Err(rpc_error(format!("the RPC server on {endpoint} stopped")))
}
