//! Command-line flags, in llama.cpp's style.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Generates text from a GGUF model with entropix-sampler's samplers.
///
/// Without -m, the default model (SmolLM2-135M-Instruct, Q4_1) is fetched
/// on first use into a cache folder and checked by sha256.
#[derive(Debug, Clone, Parser)]
// A flag given twice keeps its last value (as in llama.cpp's tools), so
// that `eval`'s tuning grids can override a configuration's own flags.
#[command(name = "entropix-cli", version, about, long_about = None, args_override_self = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// GGUF model file (default: SmolLM2-135M-Instruct, downloaded once).
    #[arg(short = 'm', long = "model", help_heading = "Model and context", global = true)]
    pub model: Option<PathBuf>,

    /// Prompt text.
    #[arg(short = 'p', long = "prompt", help_heading = "Prompt and output")]
    pub prompt: Option<String>,

    /// Read the prompt from a file.
    #[arg(short = 'f', long = "file", help_heading = "Prompt and output", conflicts_with = "prompt")]
    pub file: Option<PathBuf>,

    /// System message for chat models.
    #[arg(long = "system", help_heading = "Prompt and output")]
    pub system: Option<String>,

    /// Raw completion: do not apply the model's chat template.
    #[arg(long = "no-chat", help_heading = "Prompt and output")]
    pub no_chat: bool,

    /// Interactive conversation: read user turns from stdin.
    #[arg(short = 'i', long = "interactive", help_heading = "Prompt and output")]
    pub interactive: bool,

    /// Tokens to generate; -1 = until end of generation or a full context.
    #[arg(short = 'n', long = "n-predict", help_heading = "Prompt and output", default_value_t = 128, allow_negative_numbers = true)]
    pub n_predict: i32,

    /// Never stop at end-of-generation tokens (their logits are set to -inf
    /// before the chain runs).
    #[arg(long = "ignore-eos", help_heading = "Prompt and output")]
    pub ignore_eos: bool,

    /// Context size in tokens; 0 = the model's training context.
    #[arg(short = 'c', long = "ctx-size", help_heading = "Model and context", default_value_t = 2048, global = true)]
    pub ctx_size: u32,

    /// Logical batch size for prompt processing.
    #[arg(short = 'b', long = "batch-size", help_heading = "Model and context", default_value_t = 512, global = true)]
    pub batch_size: u32,

    /// RNG seed; 4294967295 (the default) picks a random one.
    #[arg(short = 's', long = "seed", help_heading = "Model and context", default_value_t = u32::MAX, global = true)]
    pub seed: u32,

    /// CPU threads (default: all cores; more only slows ggml down).
    #[arg(short = 't', long = "threads", help_heading = "Model and context", global = true)]
    pub threads: Option<i32>,

    /// Layers to offload to the GPU (needs a CUDA/Metal llama.cpp build).
    #[arg(long = "n-gpu-layers", help_heading = "Model and context", alias = "ngl", default_value_t = 0, global = true)]
    pub n_gpu_layers: i32,

    /// llama.cpp RPC workers (`rpc-worker`) as host:port[,host:port]; with
    /// -ngl the model's layers are spread over them.
    #[arg(long = "rpc", help_heading = "Model and context", value_delimiter = ',', global = true)]
    pub rpc: Vec<String>,

    /// Flash attention: auto, on or off (attention samplers force off).
    #[arg(long = "flash-attn", help_heading = "Model and context", value_enum, default_value_t = FlashAttn::Auto, global = true)]
    pub flash_attn: FlashAttn,

    /// Attention layer read by attention-aware samplers; negative counts
    /// from the end (-1: the last layer).
    #[arg(long = "attention-layer", help_heading = "Entropix and four-mode", default_value_t = -1, allow_negative_numbers = true, global = true)]
    pub attention_layer: i32,

    /// Sampler family: classic, entropix, four-mode, dirichlet, alpha.
    #[arg(long = "sampler", help_heading = "Sampler choice", default_value = "classic")]
    pub sampler: String,

    /// Profile (JSON): thresholds for entropix / four-mode, hyperparameters
    /// for dirichlet.
    #[arg(long = "profile", help_heading = "Sampler choice")]
    pub profile: Option<PathBuf>,

    /// Clarifying token inserted by entropix / four-mode, as text that is
    /// exactly one token (e.g. " ...", "?").
    #[arg(long = "clarify-token", help_heading = "Entropix and four-mode")]
    pub clarify_token: Option<String>,

    /// Pause token of the four-mode sampler, as text of one token.
    #[arg(long = "pause-token", help_heading = "Entropix and four-mode")]
    pub pause_token: Option<String>,

    /// Entropix variant: 0 original, 1 all six metrics, 2 logits only.
    #[arg(long = "entropix-variant", help_heading = "Entropix and four-mode", default_value_t = 0)]
    pub entropix_variant: u32,

    /// AlphaSampler: turn the COLD-state lookahead off.
    #[arg(long = "no-lookahead", help_heading = "AlphaSampler")]
    pub no_lookahead: bool,

    /// AlphaSampler: alpha below this is COLD (default: the sampler's, 0.6).
    #[arg(long = "cold-point", help_heading = "AlphaSampler")]
    pub cold_point: Option<f32>,

    /// AlphaSampler: alpha above this is HOT (default: the sampler's, 1.8).
    #[arg(long = "hot-point", help_heading = "AlphaSampler")]
    pub hot_point: Option<f32>,

    /// AlphaSampler: candidates decoded ahead in a COLD step (default: the
    /// sampler's, 3).
    #[arg(long = "lookahead-k", help_heading = "AlphaSampler")]
    pub lookahead_k: Option<u32>,

    /// Settings of the entropix, four-mode, alpha and dirichlet samplers:
    /// `default` (chosen by `eval`; entropix and four-mode read the model's
    /// threshold profile, made on first use when none ships) or `reference`
    /// (the seeds' and reference implementations' exact values, reference
    /// thresholds, no profile unless --profile).
    #[arg(long = "preset", help_heading = "Sampler choice", value_enum, default_value_t = Preset::Default)]
    pub preset: Preset,

    /// A parameter of the entropix, four-mode, alpha or dirichlet sampler by
    /// its C/Rust field name, as NAME=VALUE (repeatable; applied after
    /// --profile; e.g. `--sampler-param temp=0.5`). Validated by the
    /// sampler's own checks.
    #[arg(long = "sampler-param", help_heading = "Sampler choice", value_name = "NAME=VALUE")]
    pub sampler_params: Vec<String>,

    /// The whole chain from a JSON file: `{"samplers": [{"name": "top_k",
    /// "k": 40}, ..., {"name": "dist"}]}`, every sampler of the library by
    /// its name and C field names (README: "Every sampler from the CLI");
    /// replaces --sampler and the classic flags.
    #[arg(long = "sampler-config", help_heading = "Sampler choice", value_name = "FILE")]
    pub sampler_config: Option<PathBuf>,

    /// Colour each generated token by the strategy that chose it (entropix
    /// and four-mode; ANSI colours on a terminal).
    #[arg(long = "color", help_heading = "Prompt and output")]
    pub color: bool,

    /// Build the classic chain from llama.cpp's own samplers instead of
    /// entropix's (for comparison).
    #[arg(long = "sampler-impl", help_heading = "Sampler choice", value_enum, default_value_t = SamplerImpl::Entropix)]
    pub sampler_impl: SamplerImpl,

    /// Order of the classic samplers, ';'-separated names as llama.cpp's
    /// --samplers (penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;temperature)
    /// or its one-letter form (e.g. "edskypmt").
    #[arg(long = "samplers", help_heading = "Sampler choice", default_value = "penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;temperature")]
    pub samplers: String,

    #[command(flatten)]
    pub sampling: SamplingArgs,

    /// Write one JSON line per generated token to this file.
    #[arg(long = "trace", help_heading = "Prompt and output")]
    pub trace: Option<PathBuf>,

    /// Print llama.cpp's log: -v warnings and errors are shown by default;
    /// -v adds info and debug.
    #[arg(short = 'v', long = "verbose", help_heading = "Prompt and output", global = true)]
    pub verbose: bool,

    /// Print nothing to stderr but errors.
    #[arg(long = "quiet", help_heading = "Prompt and output", global = true)]
    pub quiet: bool,
}

/// Commands besides plain generation.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the path of the default model, fetching it if needed.
    FetchModel,
    /// Run a prompt set through the model with the entropix sampler and
    /// write a threshold profile (percentiles of every metric).
    Calibrate {
        /// Prompts, one per line (default: profiles/calibration-prompts.txt).
        #[arg(long = "prompts")]
        prompts: Option<PathBuf>,
        /// Where to write the profile (JSON).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Tokens generated per prompt.
        #[arg(long = "tokens-per-prompt", default_value_t = 48)]
        tokens_per_prompt: i32,
    },
    /// Measure the text sampler configurations write: accuracy on
    /// generated arithmetic (and any JSONL of questions), repetition,
    /// diversity and likelihood on open-ended prompts, cost; paired tests
    /// against a baseline; equal tuning budgets with --tune-budget.
    Eval(crate::eval::EvalArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (chat
    /// completions, completions, models), with every sampler family per
    /// request, per-token telemetry and parallel slots.
    Serve(crate::serve::ServeArgs),
    /// Serve this machine's CPU to RPC hosts (`--rpc`), through ggml's RPC
    /// server: no authentication, trusted networks only.
    RpcWorker {
        /// Address to listen on.
        #[arg(long = "host", default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on.
        #[arg(long = "port", default_value_t = 50052)]
        port: u16,
        /// Keep tensors hosts sent in this folder, so a reload sends less.
        #[arg(long = "cache")]
        cache: Option<PathBuf>,
    },
    /// Search the adaptive Dirichlet sampler's hyperparameters on a prompt
    /// set (minimising the average cross-entropy rate) and write a profile.
    Tune {
        /// Prompts, one per line (default: profiles/calibration-prompts.txt).
        #[arg(long = "prompts")]
        prompts: Option<PathBuf>,
        /// Where to write the profile (JSON).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Tokens recorded per prompt.
        #[arg(long = "tokens-per-prompt", default_value_t = 24)]
        tokens_per_prompt: usize,
        /// Candidate settings evaluated.
        #[arg(long = "budget", default_value_t = 16)]
        budget: usize,
    },
}

/// The settings the adaptive samplers start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// This library's defaults.
    Default,
    /// The seeds' and reference implementations' exact behaviour.
    Reference,
}

impl Args {
    /// True with `--preset reference`.
    pub fn reference_preset(&self) -> bool {
        self.preset == Preset::Reference
    }
}

/// Flash attention policy flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlashAttn {
    Auto,
    On,
    Off,
}

/// Whose samplers make up the classic chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplerImpl {
    /// entropix-sampler's (the default).
    Entropix,
    /// llama.cpp's built-in samplers.
    Llama,
}

/// Which tokens DRY matches repeats against (`--dry-scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryScope {
    /// The prompt and the reply, as in llama.cpp's tools.
    All,
    /// The reply only: a reply may restate its prompt unpenalised.
    Reply,
}

/// The classic sampler parameters, with llama.cpp's names and defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// Temperature; <= 0 means greedy.
    #[arg(long = "temp", help_heading = "Classic sampling (llama.cpp's flags)", default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Top-k; <= 0 disables.
    #[arg(long = "top-k", help_heading = "Classic sampling (llama.cpp's flags)", default_value_t = 40, allow_negative_numbers = true)]
    pub top_k: i32,
    /// Top-p (nucleus); 1.0 disables.
    #[arg(long = "top-p", help_heading = "Classic sampling (llama.cpp's flags)", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p relative to the top probability; 0 disables.
    #[arg(long = "min-p", help_heading = "Classic sampling (llama.cpp's flags)", default_value_t = 0.05)]
    pub min_p: f32,
    /// Locally typical sampling p; 1.0 disables.
    #[arg(long = "typical", help_heading = "Classic sampling (llama.cpp's flags)", default_value_t = 1.0)]
    pub typical: f32,
    /// Top-n-sigma; <= 0 disables.
    #[arg(long = "top-n-sigma", help_heading = "Classic sampling (llama.cpp's flags)", default_value_t = -1.0, allow_negative_numbers = true)]
    pub top_n_sigma: f32,
    /// Dynamic temperature range (entropy form); 0 disables.
    #[arg(long = "dynatemp-range", help_heading = "Classic sampling (llama.cpp's flags)", default_value_t = 0.0)]
    pub dynatemp_range: f32,
    /// Dynamic temperature exponent.
    #[arg(long = "dynatemp-exp", help_heading = "Classic sampling (llama.cpp's flags)", default_value_t = 1.0)]
    pub dynatemp_exp: f32,
    /// Repeat penalty; 1.0 disables.
    #[arg(long = "repeat-penalty", help_heading = "Penalties and DRY", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Window of the penalties in tokens; 0 disables, -1 = context size.
    #[arg(long = "repeat-last-n", help_heading = "Penalties and DRY", default_value_t = 64, allow_negative_numbers = true)]
    pub repeat_last_n: i32,
    /// Frequency penalty; 0 disables.
    #[arg(long = "frequency-penalty", help_heading = "Penalties and DRY", default_value_t = 0.0, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// Presence penalty; 0 disables.
    #[arg(long = "presence-penalty", help_heading = "Penalties and DRY", default_value_t = 0.0, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// DRY multiplier; 0 disables. Default: 0 in the classic chain (as in
    /// llama.cpp), 0.8 in front of entropix, four-mode and alpha and 1.5
    /// in front of dirichlet (their loop guard; see the README's results).
    #[arg(long = "dry-multiplier", help_heading = "Penalties and DRY")]
    pub dry_multiplier: Option<f32>,
    /// DRY base.
    #[arg(long = "dry-base", help_heading = "Penalties and DRY", default_value_t = 1.75)]
    pub dry_base: f32,
    /// DRY allowed length: repeats shorter than this many tokens go
    /// unpenalised. Default 2 (llama.cpp's), in the classic chain and in
    /// front of every adaptive sampler.
    #[arg(long = "dry-allowed-length", help_heading = "Penalties and DRY")]
    pub dry_allowed_length: Option<i32>,
    /// DRY window in tokens; 0 disables, -1 = context size.
    #[arg(long = "dry-penalty-last-n", help_heading = "Penalties and DRY", default_value_t = -1, allow_negative_numbers = true)]
    pub dry_penalty_last_n: i32,
    /// DRY sequence breaker (repeatable; default: \n : " *).
    #[arg(long = "dry-sequence-breaker", help_heading = "Penalties and DRY")]
    pub dry_sequence_breaker: Vec<String>,
    /// What DRY matches repeats against: `all` (the prompt and the reply,
    /// as in llama.cpp's tools) or `reply` (a reply may restate its prompt
    /// unpenalised). Default: `all` in the classic chain and
    /// --sampler-config, `reply` for the adaptive samplers' loop guard.
    #[arg(long = "dry-scope", help_heading = "Penalties and DRY", value_enum)]
    pub dry_scope: Option<DryScope>,
    /// Mirostat: 0 off, 1 mirostat, 2 mirostat 2.0.
    #[arg(long = "mirostat", help_heading = "Mirostat", default_value_t = 0)]
    pub mirostat: u8,
    /// Mirostat learning rate (eta).
    #[arg(long = "mirostat-lr", help_heading = "Mirostat", default_value_t = 0.1)]
    pub mirostat_lr: f32,
    /// Mirostat target entropy (tau), bits.
    #[arg(long = "mirostat-ent", help_heading = "Mirostat", default_value_t = 5.0)]
    pub mirostat_ent: f32,
}

/// llama.cpp spells some flags with one dash and several letters (-ngl);
/// rewrite them to the long forms clap understands.
pub fn normalise_llama_style(args: impl Iterator<Item = String>) -> Vec<String> {
    args.map(|a| match a.as_str() {
        "-ngl" => "--n-gpu-layers".to_string(),
        "-fa" => "--flash-attn".to_string(),
        "-sys" => "--system".to_string(),
        _ => a,
    })
    .collect()
}
