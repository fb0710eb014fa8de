//! entropix-cli: full text generation on GGUF models with entropix-sampler.
//!
//! `cargo run --release --example cli -- -p "Hello"`; `--help` lists flags.

mod args;
mod calibrate;
mod chain_builder;
mod chat;
mod generate;
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
    let model_path = resolve_model(&args)?;
    if let Some(Command::Calibrate { prompts, output, tokens_per_prompt }) = &args.command {
        return run_calibrate(&args, &model_path, prompts.as_deref(), output, *tokens_per_prompt);
    }
    if let Some(Command::Tune { prompts, output, tokens_per_prompt, budget }) = &args.command {
        return run_tune(&args, &model_path, prompts.as_deref(), output, *tokens_per_prompt, *budget);
    }
    let model = Model::load(&model_path, &ModelOptions { n_gpu_layers: args.n_gpu_layers }).map_err(|e| e.to_string())?;

    let built = chain_builder::build(&args, &model)?;
    let mut chain = built.chain;
    let mut options = context_options(&args);
    // Kept alive as long as the context: the eval callback points into it.
    let mut capture = None;
    if built.needs_attention {
        if options.flash_attention != FlashAttention::Off && !args.quiet {
            eprintln!("entropix: flash attention turned off: the `{}` sampler reads attention", args.sampler);
        }
        options.flash_attention = FlashAttention::Off;
        let config = CaptureConfig { layer: args.attention_layer, ..CaptureConfig::default() };
        let c = AttentionCapture::new(&model, config)?;
        options.cb_eval = Some(entropix_sampler::ffi::entropix_attention_eval_callback);
        options.cb_eval_user_data = c.user_data();
        chain_builder::attach_attention(&chain, &c)?;
        capture = Some(c);
    }
    if let Some(k) = built.lookahead_k {
        // Spare sequences for the candidates, one KV stream for the capture.
        options.n_seq_max = k + 1;
        options.kv_unified = true;
    }
    let mut ctx = entropix_sampler::llama::Context::new(&model, &options).map_err(|e| e.to_string())?;
    if let (Some(_), Some(c)) = (built.lookahead_k, &capture) {
        chain_builder::attach_lookahead(&chain, &ctx, c)?;
    }
    let mut trace = match &args.trace {
        Some(p) => Some(trace::TraceWriter::create(p).map_err(|e| format!("cannot write trace file {}: {e}", p.display()))?),
        None => None,
    };

    if args.interactive {
        return chat::run(&args, &model, &mut ctx, &mut chain, trace.as_mut());
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
    // Penalties and DRY see the prompt as history, as in llama.cpp's tools.
    for &t in &tokens {
        chain.accept(t);
    }
    if !use_chat {
        print!("{prompt_text}");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut generator = generate::Generator::new(&mut ctx, &mut chain, trace.as_mut());
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
    drop(ctx);
    drop(capture);
    Ok(())
}

fn read_prompt_set(prompts: Option<&std::path::Path>) -> Result<Vec<String>, String> {
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

fn run_tune(args: &Args, model_path: &std::path::Path, prompts: Option<&std::path::Path>, output: &std::path::Path, n: usize, budget: usize) -> Result<(), String> {
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
    // Calibrate with the reference defaults, never with an old profile.
    let mut cal_args = args.clone();
    if cal_args.sampler == "classic" {
        cal_args.sampler = "entropix".into();
    }
    cal_args.profile = None;
    let built = chain_builder::build_without_profile(&cal_args, &model)?;
    let mut chain = built.chain;
    let capture = AttentionCapture::new(&model, CaptureConfig { layer: args.attention_layer, ..CaptureConfig::default() })?;
    let mut options = context_options(args);
    options.flash_attention = FlashAttention::Off;
    options.cb_eval = Some(entropix_sampler::ffi::entropix_attention_eval_callback);
    options.cb_eval_user_data = capture.user_data();
    chain_builder::attach_attention(&chain, &capture)?;
    let mut ctx = entropix_sampler::llama::Context::new(&model, &options).map_err(|e| e.to_string())?;
    let samples = calibrate::collect(&model, &mut ctx, &mut chain, &prompts, n_predict, args.quiet)?;
    let name = model_path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let profile = calibrate::profile_from(&samples, &name, prompts.len())?;
    profile.save(output).map_err(|e| e.to_string())?;
    drop(ctx);
    drop(capture);
    if !args.quiet {
        eprintln!("calibrate: wrote {} ({} tokens from {} prompts)", output.display(), samples.n_tokens, prompts.len());
    }
    Ok(())
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

fn context_options(args: &Args) -> ContextOptions {
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
