//! A context made for a chain: flash attention off and the eval callback
//! installed when the chain reads attention, spare sequences for the
//! AlphaSampler's lookahead. Shared by `generate` and `eval`.

use std::sync::Arc;

use entropix_sampler::attention::{AttentionCapture, CaptureConfig};
use entropix_sampler::llama::{Context, FlashAttention, Model, SamplerChain};

use crate::args::Args;
use crate::chain_builder::{self, BuiltChain};

/// A context and the attention capture its eval callback writes into.
pub struct Session<'m> {
    /// Declared before `capture`: dropped first, while the callback's
    /// user data is still alive.
    pub ctx: Context<'m>,
    pub capture: Option<Arc<AttentionCapture>>,
    lookahead: bool,
}

impl<'m> Session<'m> {
    /// Makes the context `built` needs. Says on stderr (unless `--quiet`)
    /// when flash attention is turned off for an attention sampler.
    pub fn open(args: &Args, model: &'m Model, built: &BuiltChain) -> Result<Self, String> {
        let mut options = crate::context_options(args);
        let mut capture = None;
        if built.needs_attention {
            if options.flash_attention != FlashAttention::Off && !args.quiet {
                eprintln!("entropix: flash attention turned off: the `{}` sampler reads attention", args.sampler);
            }
            options.flash_attention = FlashAttention::Off;
            let config = CaptureConfig { layer: args.attention_layer, ..CaptureConfig::default() };
            let c = AttentionCapture::new(model, config)?;
            options.cb_eval = Some(entropix_sampler::ffi::entropix_attention_eval_callback);
            options.cb_eval_user_data = c.user_data();
            capture = Some(c);
        }
        if let Some(k) = built.lookahead_k {
            // Spare sequences for the candidates, one KV stream for the capture.
            options.n_seq_max = k + 1;
            options.kv_unified = true;
        }
        let ctx = Context::new(model, &options).map_err(|e| e.to_string())?;
        Ok(Self { ctx, capture, lookahead: built.lookahead_k.is_some() })
    }

    /// Gives `chain`'s samplers what they need from this session: the
    /// capture to those that read attention, the context and capture to the
    /// AlphaSampler's lookahead.
    pub fn attach(&self, chain: &SamplerChain) -> Result<(), String> {
        if let Some(c) = &self.capture {
            chain_builder::attach_attention(chain, c)?;
            if self.lookahead {
                chain_builder::attach_lookahead(chain, &self.ctx, c)?;
            }
        }
        Ok(())
    }
}
