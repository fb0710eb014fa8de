//! `cli serve` on the default model, driven by the official `openai` Python
//! client (tests/serve/test_openai.py, run with pytest in the virtual
//! environment of tests/common/python.rs), then stopped with
//! SIGTERM during a stream, which must finish that stream and exit 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(model: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(common::cli_path())
        .env_remove("LD_LIBRARY_PATH")
        .env("RUST_LOG", "warn")
        .args(["serve", "--port", "0", "-t", "2"])
        .args(extra)
        .arg("-m")
        .arg(model)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the CLI starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    Server { child, url }
}

#[test]
fn openai_client_against_serve() {
    let model = common::llama::model_path();
    let python = common::python::venv_python();
    let mut server = start_server(&model, &["--parallel", "4", "--queue", "1", "-c", "4096"]);
    let model_id = model.file_stem().unwrap().to_string_lossy().into_owned();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/test_openai.py");
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"])
        .arg(&tests)
        .env("ENTROPIX_SERVE_URL", &server.url)
        .env("ENTROPIX_SERVE_MODEL", &model_id)
        .output()
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the openai client tests failed");

    // The Python example generates text through the server.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("bindings/python/examples/chat_over_serve.py");
    let out = Command::new(&python).arg(&example).args(["--url", &server.url, "--max-tokens", "12"]).output().expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("[entropix: 12 tokens; strategies"), "{text}{}", String::from_utf8_lossy(&out.stderr));

    // SIGTERM while a stream runs: the stream is finished, then serve exits 0.
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut conn = TcpStream::connect(&addr).unwrap();
    let body = r#"{"messages": [{"role": "user", "content": "Count to fifty."}], "max_tokens": 64, "ignore_eos": true, "stream": true}"#;
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 64];
    let n = conn.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..n]));
    let pid = server.child.id() as i32;
    assert_eq!(unsafe { libc_kill(pid, 15) }, 0);
    let mut rest = String::new();
    conn.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "the stream in flight was cut: {rest}");
    assert!(rest.contains(r#""finish_reason":"length""#), "{rest}");
    let t0 = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "serve exited with {status} after SIGTERM");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "serve did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
