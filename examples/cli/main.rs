//! entropix-cli: full text generation on GGUF models with entropix-sampler.
//!
//! `cargo run --release --example cli -- -p "Hello"`; `--help` lists flags.

mod args;
mod auto_profile;
mod calibrate;
mod chain_builder;
mod chat;
mod eval;
mod generate;
mod sampler_config;
mod serve;
mod session;
mod trace;
mod tune;

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use entropix_sampler::attention::{AttentionCapture, CaptureConfig};
use entropix_sampler::default_model;
use entropix_sampler::llama::{set_log_level, ChatMessage, ContextOptions, FlashAttention, LogLevel, Model, ModelOptions};

use args::{Args, Command, FlashAttn};

fn main() {
    // One clear line instead of a backtrace, whatever happens.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {info}");
    }));
    let args = match Args::try_parse_from(args::normalise_llama_style(std::env::args())) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // Logs go through `log`; RUST_LOG overrides. `serve` logs its requests.
    // Quiet by default (warnings and errors, llama.cpp's included); -v
    // shows everything, --quiet errors only; `serve` logs its requests.
    let serving = matches!(args.command, Some(Command::Serve(_)));
    let default_filter = match (args.verbose, args.quiet, serving) {
        (true, _, _) => "debug",
        (false, true, _) => "error",
        (false, false, true) => "warn,cli=info",
        (false, false, false) => "warn",
    };
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    if !serving {
        logger.format_timestamp(None);
    }
    logger.init();
    match std::panic::catch_unwind(|| run(args)) {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            eprintln!("error: {message}");
            std::process::exit(1);
        }
        Err(_) => std::process::exit(101),
    }
}

fn run(args: Args) -> Result<(), String> {
    set_log_level(if args.verbose {
        LogLevel::Debug
    } else if args.quiet {
        LogLevel::Error
    } else {
        LogLevel::Warn
    });
    if let Some(Command::FetchModel) = args.command {
        let path = default_model::ensure_default_model(!args.quiet).map_err(|e| e.to_string())?;
        println!("{}", path.display());
        return Ok(());
    }
    if let Some(Command::RpcWorker { host, port, cache }) = &args.command {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = args.threads.map_or(cores, |t| t.max(1) as usize);
        let endpoint = format!("{host}:{port}");
        if !args.quiet {
            eprintln!("rpc-worker: serving this CPU on {endpoint} with {threads} threads (no authentication: trusted networks only)");
        }
        return entropix_sampler::llama::run_rpc_worker(&endpoint, threads, cache.as_deref()).map_err(|e| e.to_string());
    }
    let model_path = resolve_model(&args)?;
    // RPC workers become devices before any model is loaded.
    entropix_sampler::llama::add_rpc_servers(&args.rpc).map_err(|e| e.to_string())?;
    if let Some(Command::Serve(serve_args)) = &args.command {
        return serve::run(&args, serve_args, &model_path);
    }
    if let Some(Command::Calibrate { prompts, output, tokens_per_prompt }) = &args.command {
        return run_calibrate(&args, &model_path, prompts.as_deref(), output, *tokens_per_prompt);
    }
    if let Some(Command::Eval(eval_args)) = &args.command {
        return eval::run(&args, eval_args, &model_path);
    }
    if let Some(Command::Tune { prompts, output, tokens_per_prompt, budget }) = &args.command {
        return run_tune(&args, &model_path, prompts.as_deref(), output, *tokens_per_prompt, *budget);
    }
    let model = Model::load(&model_path, &ModelOptions { n_gpu_layers: args.n_gpu_layers }).map_err(|e| e.to_string())?;

    auto_profile::ensure(&args, &model)?;
    let built = chain_builder::build(&args, &model)?;
    let mut session = session::Session::open(&args, &model, &built)?;
    let mut chain = built.chain;
    session.attach(&chain)?;
    let ctx = &mut session.ctx;
    let mut trace = match &args.trace {
        Some(p) => Some(trace::TraceWriter::create(p).map_err(|e| format!("cannot write trace file {}: {e}", p.display()))?),
        None => None,
    };

    if args.interactive {
        return chat::run(&args, &model, ctx, &mut chain, trace.as_mut());
    }

    let prompt_text = read_prompt(&args)?;
    let use_chat = !args.no_chat && model.chat_template().is_some();
    let rendered = if use_chat {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage { role: "system".into(), content: system.clone() });
        }
        messages.push(ChatMessage { role: "user".into(), content: prompt_text.clone() });
        model.apply_chat_template(&messages, true).map_err(|e| e.to_string())?
    } else {
        prompt_text.clone()
    };
    let tokens = model.tokenize(&rendered, true, use_chat).map_err(|e| e.to_string())?;
    if tokens.is_empty() {
        return Err("the prompt is empty".into());
    }
    chain_builder::accept_prompt(&mut chain, &tokens, &args);
    if !use_chat {
        print!("{prompt_text}");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut generator = generate::Generator::new(ctx, &mut chain, trace.as_mut());
    generator.color = args.color;
    generator.observe_prompt = args.sampler == "dirichlet";
    if args.ignore_eos {
        generator.banned_eog = (0..model.n_vocab() as i32).filter(|&t| model.is_eog(t)).collect();
    }
    let (_tokens, stats) = generator.run(&tokens, args.n_predict, &mut out).map_err(|e| e.to_string())?;
    let _ = writeln!(out);
    drop(out);
    if let Some(t) = trace.as_mut() {
        t.flush().map_err(|e| format!("writing the trace: {e}"))?;
    }
    if !args.quiet {
        generate::print_summary(&stats, &chain);
    }
    Ok(())
}

pub(crate) fn read_prompt_set(prompts: Option<&std::path::Path>) -> Result<Vec<String>, String> {
    let default_prompts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/calibration-prompts.txt");
    let path = prompts.unwrap_or(&default_prompts);
    let list: Vec<String> = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read prompts {}: {e}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if list.is_empty() {
        return Err(format!("{} holds no prompts", path.display()));
    }
    Ok(list)
}

fn run_tune(
    args: &Args,
    model_path: &std::path::Path,
    prompts: Option<&std::path::Path>,
    output: &std::path::Path,
    n: usize,
    budget: usize,
) -> Result<(), String> {
    let prompts = read_prompt_set(prompts)?;
    let model = Model::load(model_path, &ModelOptions { n_gpu_layers: args.n_gpu_layers }).map_err(|e| e.to_string())?;
    let mut ctx = entropix_sampler::llama::Context::new(&model, &context_options(args)).map_err(|e| e.to_string())?;
    let seed = if args.seed == u32::MAX { 1 } else { args.seed as u64 };
    let recordings = tune::record(&model, &mut ctx, &prompts, n, seed)?;
    drop(ctx);
    let n_steps: usize = recordings.iter().map(|r| r.tokens.len()).sum();
    let mut start = entropix_sampler::ffi::entropix_dirichlet_default_params();
    if let Some(p) = &args.profile {
        start = entropix_sampler::samplers::dirichlet::load_profile(p).map_err(|e| e.to_string())?;
    }
    let (best, best_value, start_value) = tune::search(start, &recordings, budget, seed, args.quiet);
    tune::write(output, &best, best_value, start_value, n_steps, prompts.len())?;
    if !args.quiet {
        eprintln!("tune: {n_steps} recorded steps; cross-entropy rate {start_value:.4} -> {best_value:.4} nats; wrote {}", output.display());
    }
    Ok(())
}

fn run_calibrate(args: &Args, model_path: &std::path::Path, prompts: Option<&std::path::Path>, output: &std::path::Path, n_predict: i32) -> Result<(), String> {
    let prompts = read_prompt_set(prompts)?;
    let model = Model::load(model_path, &ModelOptions { n_gpu_layers: args.n_gpu_layers }).map_err(|e| e.to_string())?;
    let profile = calibrate_profile(args, &model, &prompts, n_predict, args.quiet)?;
    profile.save(output).map_err(|e| e.to_string())?;
    if !args.quiet {
        eprintln!("calibrate: wrote {} ({} prompts)", output.display(), prompts.len());
    }
    Ok(())
}

/// Runs `prompts` through `model` with the entropix-family sampler of
/// `args` (entropix when it names none) at the reference thresholds, and
/// returns the percentile profile of the metrics it saw.
pub(crate) fn calibrate_profile(
    args: &Args,
    model: &Model,
    prompts: &[String],
    n_predict: i32,
    quiet: bool,
) -> Result<entropix_sampler::samplers::entropix::Profile, String> {
    // Calibrate with the reference defaults, never with an old profile.
    let mut cal_args = args.clone();
    if cal_args.sampler != "entropix" && cal_args.sampler != "four-mode" {
        cal_args.sampler = "entropix".into();
    }
    cal_args.profile = None;
    let built = chain_builder::build_without_profile(&cal_args, model)?;
    let mut chain = built.chain;
    let capture = AttentionCapture::new(model, CaptureConfig { layer: args.attention_layer, ..CaptureConfig::default() })?;
    let mut options = context_options(args);
    options.flash_attention = FlashAttention::Off;
    options.cb_eval = Some(entropix_sampler::ffi::entropix_attention_eval_callback);
    options.cb_eval_user_data = capture.user_data();
    chain_builder::attach_attention(&chain, &capture)?;
    let mut ctx = entropix_sampler::llama::Context::new(model, &options).map_err(|e| e.to_string())?;
    let samples = calibrate::collect(model, &mut ctx, &mut chain, prompts, n_predict, quiet)?;
    let name = model.path().file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let profile = calibrate::profile_from(&samples, &name, prompts.len())?;
    drop(ctx);
    drop(capture);
    Ok(profile)
}

fn resolve_model(args: &Args) -> Result<PathBuf, String> {
    match &args.model {
        Some(p) => Ok(p.clone()),
        None => default_model::ensure_default_model(!args.quiet).map_err(|e| e.to_string()),
    }
}

fn read_prompt(args: &Args) -> Result<String, String> {
    match (&args.prompt, &args.file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| format!("cannot read prompt file {}: {e}", f.display())),
        (None, None) => Err("no prompt: give -p TEXT, -f FILE or -i for a conversation".into()),
    }
}

pub(crate) fn context_options(args: &Args) -> ContextOptions {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as i32);
    ContextOptions {
        n_ctx: args.ctx_size,
        n_batch: args.batch_size.max(1),
        n_ubatch: args.batch_size.max(1),
        n_threads: args.threads.unwrap_or(cores).max(1),
        flash_attention: match args.flash_attn {
            FlashAttn::Auto => FlashAttention::Auto,
            FlashAttn::On => FlashAttention::On,
            FlashAttn::Off => FlashAttention::Off,
        },
        no_perf: true,
        ..ContextOptions::default()
    }
}
