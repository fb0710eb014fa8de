//! `eval` end to end on the real model: the report's numbers come from the
//! samples it logged, greedy is reproducible, an interrupted run resumes
//! from its log, tuning spends the same budget on every configuration and
//! reports only the test split, bad input is a clear error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn cli_path() -> PathBuf {
    let profile = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    profile.join("examples").join("cli")
}

/// One llama process at a time (ggml's threads spin).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn eval(out: &Path, args: &[&str]) -> Output {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let o = Command::new(cli_path())
        .env_remove("LD_LIBRARY_PATH")
        .arg("-m")
        .arg(common::llama::model_path())
        .arg("eval")
        .arg("--out")
        .arg(out)
        .arg("--no-progress")
        .args(args)
        .output()
        .expect("the CLI runs");
    o
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn samples(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("samples.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("entropix-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn report_matches_its_samples_and_resumes() {
    let out = tmp("resume");
    let args = ["--arith", "4", "--open", "2", "--config", "greedy", "--config", "hot=--temp 1.5 --top-k 0 --top-p 1 --min-p 0", "--open-tokens", "24"];
    let first = eval(&out, &args);
    assert!(first.status.success(), "{}", text(&first));
    let table = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(table.contains("greedy") && table.contains("hot"), "{table}");
    let logged = samples(&out);
    assert_eq!(logged.len(), 2 * (4 + 2));
    let r = report(&out);
    let configs = r["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 2);
    for (c, flags) in configs.iter().zip(["--temp 0", "--temp 1.5 --top-k 0 --top-p 1 --min-p 0"]) {
        let mine: Vec<&Value> = logged.iter().filter(|s| s["flags"] == flags).collect();
        let qa: Vec<&&Value> = mine.iter().filter(|s| s["task"] == "qa").collect();
        let correct = qa.iter().filter(|s| s["correct"] == true).count();
        assert_eq!(c["qa"]["n"], 4);
        assert_eq!(c["qa"]["correct"].as_u64().unwrap() as usize, correct);
        // The open-ended NLL is the token-weighted mean of the logged sums.
        let open: Vec<&&Value> = mine.iter().filter(|s| s["task"] == "open").collect();
        let (sum, n) = open.iter().fold((0.0, 0u64), |(a, n), s| (a + s["nll_sum"].as_f64().unwrap(), n + s["n_scored"].as_u64().unwrap()));
        assert!((c["open"]["nll"].as_f64().unwrap() - sum / n as f64).abs() < 1e-9);
        assert!(c["open"]["nll"].as_f64().unwrap() > 0.0);
        assert!(c["cost"]["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    // Sampling at T 1.5 over the whole vocabulary writes less likely text
    // than greedy: the NLL is measured under the raw model, not the chain.
    assert!(configs[1]["open"]["nll"].as_f64().unwrap() > configs[0]["open"]["nll"].as_f64().unwrap());
    assert_eq!(configs[1]["vs_baseline"]["baseline"], "greedy");

    // A second run finds everything in the log and generates nothing; the
    // report is the same.
    let again = eval(&out, &args);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("12 already in"), "{}", text(&again));
    assert_eq!(samples(&out).len(), logged.len());
    assert_eq!(report(&out)["configs"][0]["qa"], r["configs"][0]["qa"]);

    // An interrupted run (the log cut after 5 samples, the last line torn)
    // redoes only what is missing, and greedy redoes it identically.
    let full = std::fs::read_to_string(out.join("samples.jsonl")).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    let cut = format!("{}\n{}", lines[..5].join("\n"), &lines[5][..lines[5].len() / 2]);
    std::fs::write(out.join("samples.jsonl"), cut).unwrap();
    let resumed = eval(&out, &args);
    assert!(resumed.status.success(), "{}", text(&resumed));
    let after = samples(&out);
    assert_eq!(after.len(), 12);
    let greedy_text = |v: &[Value]| -> Vec<(String, String)> {
        let mut t: Vec<(String, String)> =
            v.iter().filter(|s| s["flags"] == "--temp 0").map(|s| (s["item"].as_str().unwrap().to_string(), s["text"].as_str().unwrap().to_string())).collect();
        t.sort();
        t
    };
    assert_eq!(greedy_text(&after), greedy_text(&logged));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn tuning_spends_the_same_budget_and_reports_the_test_split() {
    let out = tmp("tune");
    let o = eval(
        &out,
        &[
            "--arith",
            "10",
            "--open",
            "3",
            "--open-tokens",
            "16",
            "--qa-tokens",
            "24",
            "--config",
            "greedy",
            "--config",
            "min-p",
            "--tune-budget",
            "3",
            "--dev-fraction",
            "0.4",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = report(&out);
    let configs = r["configs"].as_array().unwrap();
    // Greedy has nothing to tune: one trial; the min-p chain gets three,
    // its grid's --temp and --min-p overriding its own.
    assert_eq!(configs[0]["trials"].as_array().unwrap().len(), 1);
    let trials = configs[1]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    let best = trials.iter().map(|t| t["objective"].as_f64().unwrap()).fold(f64::NEG_INFINITY, f64::max);
    let chosen = trials.iter().find(|t| t["objective"].as_f64().unwrap() == best).unwrap();
    assert_eq!(configs[1]["flags"], chosen["flags"]);
    // Dev and test are disjoint and together make every item.
    let test_n = configs[0]["qa"]["n"].as_u64().unwrap() + configs[0]["open"]["n"].as_u64().unwrap();
    let logged = samples(&out);
    let dev_n = logged.iter().filter(|s| s["flags"] == "--temp 0").count() as u64 - test_n;
    assert_eq!(dev_n + test_n, 13, "greedy ran each item once (its one trial is its test config)");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_input_is_a_clear_error() {
    let out = tmp("bad");
    for (args, want) in [
        (&["--config", "nope"][..], "not a preset"),
        (&["--config", "x=--temp abc"][..], "config flags"),
        (&["--baseline", "zzz"][..], "not among the configurations"),
        (&["--levels", "4"][..], "must be 1, 2 or 3"),
        (&["--qa-file", "/nonexistent.jsonl"][..], "nonexistent"),
        (&["--arith", "0", "--open", "0"][..], "nothing to evaluate"),
    ] {
        let o = eval(&out, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn gsm8k_layout_file_is_scored() {
    let out = tmp("gsm8k");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("qa.jsonl");
    std::fs::write(&file, "{\"question\": \"What is 2 + 2? Answer with the number only.\", \"answer\": \"2 + 2 = 4\\n#### 4\"}\n").unwrap();
    let o = eval(&out, &["--arith", "0", "--open", "0", "--qa-file", file.to_str().unwrap(), "--config", "greedy"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = samples(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["item"], "line-1");
    // The gold answer is what follows "####"; greedy gets 2 + 2 right.
    assert_eq!(s[0]["correct"], true, "{}", s[0]["text"]);
    assert_eq!(report(&out)["configs"][0]["qa"]["correct"], 1);
    let _ = std::fs::remove_dir_all(&out);
}
