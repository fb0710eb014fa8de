//! `serve`: an OpenAI-compatible HTTP server that runs this library's
//! samplers per request.
//!
//! One engine thread owns the model's context; `--parallel` slots share it
//! (one KV stream, one sequence each) and decode together in one batch per
//! step. The HTTP side (axum on a small tokio runtime) checks requests,
//! builds each one's chain and streams what the engine sends back.

mod api;
mod engine;
mod http;
mod stop;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use entropix_sampler::attention::{AttentionCapture, CaptureConfig};
use entropix_sampler::llama::{Context, FlashAttention, Model, ModelOptions};

use crate::args::Args;

/// `serve`'s own flags (the model, context size, threads and batch size
/// are the global ones).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long = "port", default_value_t = 8080)]
    pub port: u16,
    /// Requests generated at once, each in its own slot; -c/--ctx-size is
    /// split evenly between them, as in llama-server.
    #[arg(long = "parallel", alias = "np", default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for a slot (0: none); more get 503.
    #[arg(long = "queue", default_value_t = 64)]
    pub queue: usize,
    /// Run without the attention capture: flash attention as --flash-attn
    /// says (auto: on where llama.cpp supports it), faster on CPU
    /// (see the README), and requests for samplers that read attention
    /// (entropix, four-mode, alpha) are refused with 400.
    #[arg(long = "no-attention")]
    pub no_attention: bool,
}

/// Starts the server and runs it until Ctrl-C or SIGTERM; requests being
/// generated are finished first.
pub fn run(args: &Args, serve: &ServeArgs, model_path: &std::path::Path) -> Result<(), String> {
    if serve.parallel == 0 || serve.parallel > 256 {
        return Err(format!("--parallel must be in 1..=256, not {}", serve.parallel));
    }
    let loaded = Model::load(model_path, &ModelOptions { n_gpu_layers: args.n_gpu_layers }).map_err(|e| e.to_string())?;
    // The model lives as long as the process: the handlers and the engine
    // thread borrow it.
    let model: &'static Model = Box::leak(Box::new(loaded));
    // Entropix-family requests read the model's threshold profile: make it
    // now (once per model) rather than inside the first request.
    let mut profile_args = args.clone();
    profile_args.sampler = "entropix".into();
    crate::auto_profile::ensure(&profile_args, model)?;

    let capture = AttentionCapture::new(model, CaptureConfig { layer: args.attention_layer, ..CaptureConfig::default() })?;
    let n_ctx = if args.ctx_size == 0 { model.n_ctx_train() } else { args.ctx_size };
    let slot_ctx = n_ctx as usize / serve.parallel;
    if slot_ctx < 16 {
        return Err(format!("-c {n_ctx} split over {} slots leaves {slot_ctx} tokens each: raise -c or lower --parallel", serve.parallel));
    }

    let counters = Arc::new(engine::Counters::default());
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let engine_capture = capture.clone();
    let engine_counters = counters.clone();
    let engine_args = args.clone();
    let parallel = serve.parallel;
    let attention = !serve.no_attention;
    let eog = (0..model.n_vocab() as i32).filter(|&t| model.is_eog(t)).collect();
    let config = engine::EngineConfig { parallel: serve.parallel, eog, slot_ctx };
    let engine = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            // Made here: the options hold the callback's user data, a raw
            // pointer.
            let mut options = crate::context_options(&engine_args);
            options.n_ctx = n_ctx;
            options.n_seq_max = parallel as u32;
            options.kv_unified = true;
            if attention {
                // Attention samplers read the eval callback's rows: flash
                // attention off.
                options.flash_attention = FlashAttention::Off;
                options.cb_eval = Some(entropix_sampler::ffi::entropix_attention_eval_callback);
                options.cb_eval_user_data = engine_capture.user_data();
            }
            let mut ctx = match Context::new(model, &options) {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            engine::run(&mut ctx, &engine_capture, jobs_rx, &config, &engine_counters);
        })
        .map_err(|e| format!("cannot start the engine thread: {e}"))?;
    ready_rx.recv().map_err(|_| "the engine thread stopped".to_string())??;

    let model_id = model.path().file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().trim_end_matches(".gguf").to_string());
    let state = Arc::new(http::AppState {
        model,
        model_id: model_id.clone(),
        base_args: args.clone(),
        capture,
        jobs: jobs_tx,
        queue: serve.queue,
        attention,
        counters,
        slot_ctx,
        parallel: serve.parallel,
        next_id: AtomicU64::new(1),
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("http")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let served = runtime.block_on(async move {
        let addr: SocketAddr = format!("{}:{}", serve.host, serve.port).parse().map_err(|e| format!("--host/--port: {e}"))?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        // The one line a script waits for (stdout, flushed).
        println!("listening on http://{local} (model {model_id}, {} slots of {slot_ctx} tokens)", serve.parallel);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        log::info!("serving {model_id} on http://{local}");
        // Each token is a small write: no Nagle delay on streams.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, http::router(state)).with_graceful_shutdown(shutdown_signal()).await.map_err(|e| format!("server error: {e}"))
    });
    // The router (and with it the job sender) is gone: the engine finishes
    // what it holds and returns.
    drop(runtime);
    let _ = engine.join();
    log::info!("stopped");
    served
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    log::info!("shutting down: finishing the requests in flight");
}
