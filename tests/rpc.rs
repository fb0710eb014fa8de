//! llama.cpp's RPC backend: the default model split over two `rpc-worker`
//! processes on the loopback interface gives the logits, greedy text and
//! attention rows of a local run.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use entropix_sampler::attention::{AttentionCapture, CaptureConfig};
use entropix_sampler::llama::{add_rpc_servers, Context, ContextOptions, FlashAttention, Model, ModelOptions};
use entropix_sampler::metrics::AttentionSource;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An `rpc-worker` process, killed on drop.
struct Worker {
    child: Child,
    endpoint: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    /// Resident memory of the worker process, MiB.
    fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap();
        kib / 1024
    }
}

fn start_worker() -> Worker {
    let port = free_port();
    let child = Command::new(common::cli_path())
        .env_remove("LD_LIBRARY_PATH")
        .args(["rpc-worker", "--host", "127.0.0.1", "--port", &port.to_string(), "-t", "1", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the CLI starts");
    let endpoint = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    while TcpStream::connect(&endpoint).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(30), "rpc-worker on {endpoint} never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    Worker { child, endpoint }
}

const PROMPT: &str = "The three primary colours are";
const STEPS: usize = 16;

/// Greedy steps from `PROMPT`: the logits of each step and the attention
/// metrics of its row. `tokens`, when given, are fed instead of the argmax
/// (so two runs compare the same positions).
fn run(model: &Model, tokens: Option<&[i32]>) -> (Vec<i32>, Vec<Vec<f32>>, Vec<entropix_sampler::metrics::AttentionMetrics>) {
    let capture: Arc<AttentionCapture> = AttentionCapture::new(model, CaptureConfig::default()).unwrap();
    let options = ContextOptions {
        n_ctx: 256,
        n_batch: 64,
        n_ubatch: 64,
        n_threads: 2,
        flash_attention: FlashAttention::Off,
        cb_eval: Some(entropix_sampler::ffi::entropix_attention_eval_callback),
        cb_eval_user_data: capture.user_data(),
        ..ContextOptions::default()
    };
    let mut ctx = Context::new(model, &options).unwrap();
    let prompt = model.tokenize(PROMPT, true, false).unwrap();
    ctx.decode(&prompt, 0, 0, false).unwrap();
    let (mut chosen, mut logits, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..STEPS {
        let l = ctx.logits(-1).to_vec();
        let argmax = l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as i32;
        rows.push(capture.metrics().expect("fresh attention"));
        let next = tokens.map_or(argmax, |t| t[step]);
        chosen.push(argmax);
        logits.push(l);
        ctx.decode(&[next], (prompt.len() + step) as i32, 0, false).unwrap();
    }
    drop(ctx);
    (chosen, logits, rows)
}

#[test]
fn a_model_split_over_two_workers_matches_a_local_run() {
    let path = common::llama::model_path();
    let workers = [start_worker(), start_worker()];
    let endpoints: Vec<String> = workers.iter().map(|w| w.endpoint.clone()).collect();
    add_rpc_servers(&endpoints).unwrap();

    let local = Model::load(&path, &ModelOptions { n_gpu_layers: 0 }).unwrap();
    let (greedy, local_logits, local_rows) = run(&local, None);
    drop(local);
    let before: Vec<u64> = workers.iter().map(Worker::rss_mib).collect();
    let remote = Model::load(&path, &ModelOptions { n_gpu_layers: 99 }).unwrap();
    // Both workers now hold some of the model's layers (about 34 and 58 MiB
    // of the 92 MiB of tensors; the output layer stays on the host).
    for (w, b) in workers.iter().zip(&before) {
        let after = w.rss_mib();
        assert!(after >= b + 16, "worker {} grew from {b} to {after} MiB: it holds no layers", w.endpoint);
    }
    let (remote_greedy, remote_logits, remote_rows) = run(&remote, Some(&greedy));
    drop(remote);

    let mut worst = 0.0f32;
    for (a, b) in local_logits.iter().zip(&remote_logits) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    let same = greedy.iter().zip(&remote_greedy).take_while(|(a, b)| a == b).count();
    println!("RPC over two loopback workers: greedy {same}/{STEPS} tokens identical; largest logit difference {worst:e}");
    assert!(worst <= 1e-3, "logits differ by {worst}");
    assert_eq!(same, STEPS, "greedy tokens differ: local {greedy:?}, RPC {remote_greedy:?}");
    // The capture reads the last layer's attention from the worker's buffer.
    for (step, (a, b)) in local_rows.iter().zip(&remote_rows).enumerate() {
        assert_eq!(a.n_valid, b.n_valid, "step {step}");
        assert!((a.entropy_bits - b.entropy_bits).abs() <= 1e-3, "step {step}: attention entropy {} vs {}", a.entropy_bits, b.entropy_bits);
    }
}

fn cli(args: &[&str]) -> Output {
    let model = common::llama::model_path();
    Command::new(common::cli_path()).env_remove("LD_LIBRARY_PATH").arg("-m").arg(&model).args(args).output().expect("the CLI runs")
}

#[test]
fn generate_over_rpc_spreads_the_layers_and_writes_the_local_text() {
    let workers = [start_worker(), start_worker()];
    let rpc = format!("{},{}", workers[0].endpoint, workers[1].endpoint);
    let args = ["-p", "List three facts about the Moon.", "-n", "32", "--temp", "0", "-t", "2"];
    let local = cli(&args);
    let mut remote_args = args.to_vec();
    remote_args.extend_from_slice(&["--rpc", &rpc, "-ngl", "99", "-v"]);
    let remote = cli(&remote_args);
    let log = String::from_utf8_lossy(&remote.stderr);
    assert!(local.status.success() && remote.status.success(), "{log}");
    // Both workers hold part of the model.
    for w in &workers {
        let tag = format!("[{}] model buffer size", w.endpoint);
        assert!(log.lines().any(|l| l.contains(&tag)), "no model buffer on {}:\n{log}", w.endpoint);
    }
    assert_eq!(String::from_utf8_lossy(&remote.stdout), String::from_utf8_lossy(&local.stdout));
}

#[test]
fn an_unreachable_worker_is_a_clear_error() {
    let port = free_port();
    let out = cli(&["-p", "Hi", "-n", "4", "--rpc", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the RPC worker"), "{err}");
    let out = cli(&["-p", "Hi", "-n", "4", "--rpc", "no-port-here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not host:port"));
}
