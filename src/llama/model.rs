//! A loaded GGUF model and its vocabulary.

use std::ffi::{CStr, CString};
use std::io::Read;
use std::path::{Path, PathBuf};

use llama_cpp_sys_2 as sys;

use super::backend::init_backend;
use super::error::LlamaError;
use crate::core::TokenId;

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Layers to offload to the GPU (`-ngl`); 0 keeps everything on the CPU.
    /// Needs a CUDA or Metal build of llama.cpp (see README).
    pub n_gpu_layers: i32,
}

/// One chat turn.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    /// "system", "user" or "assistant".
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

/// A llama.cpp model, freed on drop.
#[derive(Debug)]
pub struct Model {
    ptr: *mut sys::llama_model,
    path: PathBuf,
}

// SAFETY: llama.cpp models are immutable after loading and may be shared
// between threads (contexts are not).
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Model {
    /// Loads a GGUF file, with clear errors for a missing file, a file that
    /// is not GGUF and a file llama.cpp refuses (truncated, corrupt).
    pub fn load(path: &Path, options: &ModelOptions) -> Result<Self, LlamaError> {
        check_gguf_magic(path)?;
        init_backend();
        let c_path = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| LlamaError::ModelUnreadable { path: path.into(), reason: "the path contains a NUL byte".into() })?;
        let mut params = unsafe { sys::llama_model_default_params() };
        params.n_gpu_layers = options.n_gpu_layers;
        let ptr = unsafe { sys::llama_model_load_from_file(c_path.as_ptr(), params) };
        if ptr.is_null() {
            return Err(LlamaError::ModelLoad { path: path.into() });
        }
        Ok(Self { ptr, path: path.into() })
    }

    /// The raw model pointer, valid while `self` lives.
    pub fn as_ptr(&self) -> *mut sys::llama_model {
        self.ptr
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw vocabulary pointer, valid while `self` lives.
    pub fn vocab_ptr(&self) -> *const sys::llama_vocab {
        unsafe { sys::llama_model_get_vocab(self.ptr) }
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        unsafe { sys::llama_vocab_n_tokens(self.vocab_ptr()) as usize }
    }

    /// Context length the model was trained with.
    pub fn n_ctx_train(&self) -> u32 {
        unsafe { sys::llama_model_n_ctx_train(self.ptr).max(0) as u32 }
    }

    /// Number of layers.
    pub fn n_layer(&self) -> u32 {
        unsafe { sys::llama_model_n_layer(self.ptr).max(0) as u32 }
    }

    /// True for end-of-generation tokens (EOS, EOT, ...).
    pub fn is_eog(&self, token: TokenId) -> bool {
        unsafe { sys::llama_vocab_is_eog(self.vocab_ptr(), token) }
    }

    /// Tokenizes `text`; `add_special` adds BOS where the model wants it,
    /// `parse_special` turns special-token text into special tokens.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<TokenId>, LlamaError> {
        let len = i32::try_from(text.len()).map_err(|_| LlamaError::Tokenize("text longer than 2 GiB".into()))?;
        let mut tokens = vec![0; text.len() + 2];
        let mut n = unsafe {
            sys::llama_tokenize(self.vocab_ptr(), text.as_ptr().cast(), len, tokens.as_mut_ptr(), tokens.len() as i32, add_special, parse_special)
        };
        if n < 0 {
            tokens.resize((-n) as usize, 0);
            n = unsafe {
                sys::llama_tokenize(self.vocab_ptr(), text.as_ptr().cast(), len, tokens.as_mut_ptr(), tokens.len() as i32, add_special, parse_special)
            };
        }
        if n < 0 {
            return Err(LlamaError::Tokenize(format!("llama_tokenize returned {n}")));
        }
        tokens.truncate(n as usize);
        Ok(tokens)
    }

    /// The bytes of one token (special tokens rendered as their text when
    /// `special`). May be part of a multi-byte character.
    pub fn token_bytes(&self, token: TokenId, special: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        self.token_bytes_into(token, special, &mut buf);
        buf
    }

    /// [`Model::token_bytes`] into `buf` (replacing its contents), which a
    /// generation loop reuses: no allocation once it has grown.
    pub fn token_bytes_into(&self, token: TokenId, special: bool, buf: &mut Vec<u8>) {
        buf.clear();
        buf.resize(buf.capacity().max(64), 0);
        loop {
            let n = unsafe { sys::llama_token_to_piece(self.vocab_ptr(), token, buf.as_mut_ptr().cast(), buf.len() as i32, 0, special) };
            if n >= 0 {
                buf.truncate(n as usize);
                return;
            }
            buf.resize((-n) as usize, 0);
        }
    }

    /// A token rendered lossily as text.
    pub fn token_text(&self, token: TokenId) -> String {
        String::from_utf8_lossy(&self.token_bytes(token, true)).into_owned()
    }

    /// The model's chat template from its GGUF metadata, if any.
    pub fn chat_template(&self) -> Option<String> {
        let t = unsafe { sys::llama_model_chat_template(self.ptr, std::ptr::null()) };
        (!t.is_null()).then(|| unsafe { CStr::from_ptr(t) }.to_string_lossy().into_owned())
    }

    /// Renders `messages` with the model's chat template; `add_assistant`
    /// opens the assistant's turn.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_assistant: bool) -> Result<String, LlamaError> {
        let template = self.chat_template().ok_or_else(|| LlamaError::ChatTemplate("the model has no chat template (use --no-chat)".into()))?;
        let tmpl = CString::new(template).map_err(|e| LlamaError::ChatTemplate(e.to_string()))?;
        let owned: Vec<(CString, CString)> = messages
            .iter()
            .map(|m| Ok((CString::new(m.role.as_str())?, CString::new(m.content.as_str())?)))
            .collect::<Result<_, std::ffi::NulError>>()
            .map_err(|e| LlamaError::ChatTemplate(e.to_string()))?;
        let chat: Vec<sys::llama_chat_message> = owned.iter().map(|(r, c)| sys::llama_chat_message { role: r.as_ptr(), content: c.as_ptr() }).collect();
        let mut buf = vec![0u8; 1024 + messages.iter().map(|m| m.content.len() * 2).sum::<usize>()];
        for _ in 0..2 {
            let n = unsafe { sys::llama_chat_apply_template(tmpl.as_ptr(), chat.as_ptr(), chat.len(), add_assistant, buf.as_mut_ptr().cast(), buf.len() as i32) };
            if n < 0 {
                return Err(LlamaError::ChatTemplate("llama.cpp does not support this model's template (use --no-chat)".into()));
            }
            if (n as usize) <= buf.len() {
                buf.truncate(n as usize);
                return String::from_utf8(buf).map_err(|e| LlamaError::ChatTemplate(e.to_string()));
            }
            buf.resize(n as usize, 0);
        }
        Err(LlamaError::ChatTemplate("template output kept growing".into()))
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { sys::llama_model_free(self.ptr) }
    }
}

fn check_gguf_magic(path: &Path) -> Result<(), LlamaError> {
    let unreadable = |e: std::io::Error| LlamaError::ModelUnreadable { path: path.into(), reason: e.to_string() };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(LlamaError::ModelUnreadable { path: path.into(), reason: "it is a directory".into() });
    }
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(unreadable)?;
    if f.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
        return Err(LlamaError::NotGguf { path: path.into() });
    }
    Ok(())
}
