//! An owned llama.cpp sampler chain.

use llama_cpp_sys_2 as sys;

use super::error::LlamaError;
use crate::core::TokenId;

/// A `llama_sampler_chain`, freed on drop together with every sampler added.
#[derive(Debug)]
pub struct SamplerChain {
    ptr: *mut sys::llama_sampler,
}

// SAFETY: the chain is used from one thread at a time (it is not Sync).
unsafe impl Send for SamplerChain {}

impl SamplerChain {
    /// An empty chain; `no_perf` turns llama.cpp's timing off.
    pub fn new(no_perf: bool) -> Self {
        let mut params = unsafe { sys::llama_sampler_chain_default_params() };
        params.no_perf = no_perf;
        Self { ptr: unsafe { sys::llama_sampler_chain_init(params) } }
    }

    /// Appends a sampler; the chain takes ownership. NULL (a failed
    /// constructor) becomes an error carrying `entropix_last_error()`.
    ///
    /// # Safety
    /// `sampler` is NULL or a live sampler that nothing else owns (fresh
    /// from a constructor): the chain frees it.
    pub unsafe fn add(&mut self, sampler: *mut sys::llama_sampler) -> Result<(), LlamaError> {
        if sampler.is_null() {
            let why = unsafe { std::ffi::CStr::from_ptr(crate::ffi::entropix_last_error()) }.to_string_lossy().into_owned();
            return Err(LlamaError::Sampler(if why.is_empty() { "constructor returned NULL".into() } else { why }));
        }
        unsafe { sys::llama_sampler_chain_add(self.ptr, sampler) };
        Ok(())
    }

    /// The raw chain pointer, valid while `self` lives.
    pub fn as_ptr(&self) -> *mut sys::llama_sampler {
        self.ptr
    }

    /// Number of samplers in the chain.
    pub fn len(&self) -> usize {
        unsafe { sys::llama_sampler_chain_n(self.ptr).max(0) as usize }
    }

    /// True when the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th sampler (borrowed; the chain keeps owning it).
    pub fn get(&self, i: usize) -> *mut sys::llama_sampler {
        unsafe { sys::llama_sampler_chain_get(self.ptr, i as i32) }
    }

    /// The names of the samplers, in order.
    pub fn names(&self) -> Vec<String> {
        (0..self.len()).map(|i| unsafe { std::ffi::CStr::from_ptr(sys::llama_sampler_name(self.get(i))) }.to_string_lossy().into_owned()).collect()
    }

    /// Samples from the logits of output `idx` (-1: the last) of `ctx`,
    /// and accepts the token.
    pub fn sample(&mut self, ctx: &super::Context, idx: i32) -> TokenId {
        unsafe { sys::llama_sampler_sample(self.ptr, ctx.as_ptr(), idx) }
    }

    /// Tells every sampler that `token` was chosen (e.g. prompt tokens for
    /// penalties).
    pub fn accept(&mut self, token: TokenId) {
        unsafe { sys::llama_sampler_accept(self.ptr, token) }
    }

    /// Resets every sampler.
    pub fn reset(&mut self) {
        unsafe { sys::llama_sampler_reset(self.ptr) }
    }

    /// Resets the samplers named `name` (e.g. "dry", to forget the
    /// history it has seen) and leaves the others as they are.
    pub fn reset_stages(&mut self, name: &str) {
        for (i, _) in self.names().iter().enumerate().filter(|(_, n)| *n == name) {
            unsafe { sys::llama_sampler_reset(self.get(i)) }
        }
    }

    /// Total time llama.cpp measured inside the chain, in ms (0 with no_perf).
    pub fn sample_time_ms(&self) -> f64 {
        unsafe { sys::llama_perf_sampler(self.ptr).t_sample_ms }
    }
}

impl Drop for SamplerChain {
    fn drop(&mut self) {
        unsafe { sys::llama_sampler_free(self.ptr) }
    }
}
