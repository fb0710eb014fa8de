//! End-to-end tests of the CLI (examples/cli) on the real model.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

/// ggml's threads spin: two llama processes at once on a small machine slow
/// each other down many times over. Tests run the CLI one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(args: &[&str]) -> Output {
    let model = common::llama::model_path();
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Command::new(common::cli_path()).env_remove("LD_LIBRARY_PATH").arg("-m").arg(&model).args(args).output().expect("the CLI runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The trace's entry for the chain's last sampler: an adaptive family's
/// sampler (the repetition stages, when on, come before it).
fn family_sampler(line: &serde_json::Value) -> &serde_json::Value {
    line["samplers"].as_array().and_then(|a| a.last()).unwrap_or(&serde_json::Value::Null)
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "CLI failed:\n{}\n{}", stdout(o), stderr(o));
}

#[test]
fn same_seed_gives_identical_output() {
    let args = ["-p", "Write a short poem about rivers.", "-n", "40", "-s", "7", "--temp", "1.0"];
    let (a, b) = (run(&args), run(&args));
    assert_ok(&a);
    assert!(stdout(&a).trim().len() > 10, "too little text: {}", stdout(&a));
    assert_eq!(a.stdout, b.stdout);
    let other = run(&["-p", "Write a short poem about rivers.", "-n", "40", "-s", "8", "--temp", "1.0"]);
    assert_ne!(a.stdout, other.stdout, "a different seed should change a 40-token sample");
}

#[test]
fn greedy_chain_equals_llama_cpp_greedy_chain() {
    for extra in [&[][..], &["--repeat-penalty", "1.3", "--repeat-last-n", "32"][..], &["--dry-multiplier", "0.8"][..]] {
        let mut args = vec!["-p", "List three facts about the Moon.", "-n", "48", "--temp", "0"];
        args.extend_from_slice(extra);
        let ours = run(&args);
        args.extend_from_slice(&["--sampler-impl", "llama"]);
        let theirs = run(&args);
        assert_ok(&ours);
        assert_ok(&theirs);
        assert_eq!(stdout(&ours), stdout(&theirs), "greedy output differs with {extra:?}");
    }
}

#[test]
fn n_predict_is_respected_and_trace_has_a_line_per_token() {
    let dir = std::env::temp_dir().join(format!("entropix-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.jsonl");
    let o = run(&["-p", "Tell me a long story about a dragon.", "-n", "9", "-s", "1", "--trace", trace.to_str().unwrap()]);
    assert_ok(&o);
    assert!(stderr(&o).contains("generation:     9 tokens"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("valid JSON line")).collect();
    assert_eq!(lines.len(), 9);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["step"], i);
        let p_model = l["p_model"].as_f64().unwrap();
        let p_sampled = l["p_sampled"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p_model) && p_sampled > 0.0 && p_sampled <= 1.0, "{l}");
        assert!(l["top"].as_array().unwrap().len() == 5);
        assert!(l["token"].as_i64().is_some() && l["text"].is_string());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn end_of_generation_stops_early() {
    let o = run(&["-p", "Reply with the single word: yes", "-n", "200", "--temp", "0"]);
    assert_ok(&o);
    let err = stderr(&o);
    let n: usize = err.lines().find_map(|l| l.strip_prefix("generation:")).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(n < 200, "did not stop at end of generation: {n} tokens\n{}", stdout(&o));
}

fn assert_clean_failure(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected failure, got success: {}", stdout(o));
    let err = stderr(o);
    assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic output:\n{err}");
}

#[test]
fn bad_input_gives_one_clear_error() {
    let dir = std::env::temp_dir().join(format!("entropix-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run_model = |model: &PathBuf, extra: &[&str]| {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        Command::new(common::cli_path()).arg("-m").arg(model).args(["-p", "hi", "-n", "4"]).args(extra).output().unwrap()
    };
    assert_clean_failure(&run_model(&dir.join("missing.gguf"), &[]), "cannot read model file");
    let text = dir.join("text.gguf");
    std::fs::write(&text, "this is not a model").unwrap();
    assert_clean_failure(&run_model(&text, &[]), "is not a GGUF model file");
    let truncated = dir.join("truncated.gguf");
    let full = std::fs::read(common::llama::model_path()).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 3]).unwrap();
    assert_clean_failure(&run_model(&truncated, &[]), "truncated, corrupt");

    let long_prompt = "word ".repeat(400);
    assert_clean_failure(&run(&["-p", &long_prompt, "-c", "64", "--no-chat"]), "use a larger -c/--ctx-size");
    assert_clean_failure(&run(&["-p", "hi", "--temp", "NaN"]), "invalid parameter `temp`");
    assert_clean_failure(&run(&["-p", "hi", "--top-p", "1.5"]), "invalid parameter `p`");
    assert_clean_failure(&run(&["-p", "hi", "--sampler", "bogus"]), "unknown sampler family `bogus`");
    assert_clean_failure(&run(&["-p", "hi", "--samplers", "top_k;wat"]), "unknown sampler `wat`");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn entropix_family_runs_with_attention_and_is_deterministic() {
    let dir = std::env::temp_dir().join(format!("entropix-fam-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for family in ["entropix", "four-mode"] {
        let trace = dir.join(format!("{family}.jsonl"));
        let args = ["--sampler", family, "-p", "Name three colours.", "-n", "16", "-s", "3", "--trace", trace.to_str().unwrap()];
        let a = run(&args);
        assert_ok(&a);
        assert!(stderr(&a).contains("flash attention turned off"), "{}", stderr(&a));
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trace).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(!lines.is_empty());
        for l in &lines {
            let step = &family_sampler(l)["state"]["last_step"];
            assert_eq!(step["attention_available"], true, "{family}: {l}");
            assert!(step["strategy"].is_string());
        }
        let b = run(&args);
        assert_eq!(a.stdout, b.stdout, "{family}: same seed, different text");
    }
    assert_clean_failure(&run(&["--sampler", "entropix", "-p", "hi", "--clarify-token", "two words here"]), "--clarify-token");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shipped_profile_spreads_strategies_over_twenty_prompts() {
    let prompts_file = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/calibration-prompts.txt");
    let prompts: Vec<String> = std::fs::read_to_string(prompts_file).unwrap().lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
    assert!(prompts.len() >= 20);
    let dir = std::env::temp_dir().join(format!("entropix-spread-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let trace = dir.join(format!("{i}.jsonl"));
        let o = run(&["--sampler", "entropix", "-p", prompt, "-n", "20", "-s", "2", "--trace", trace.to_str().unwrap()]);
        assert_ok(&o);
        assert!(stderr(&o).contains("thresholds from profile"), "the shipped profile was not used: {}", stderr(&o));
        for line in std::fs::read_to_string(&trace).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let strategy = family_sampler(&v)["state"]["last_step"]["strategy"].as_str().unwrap().to_string();
            *counts.entry(strategy).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    assert!(total >= 20 * 5, "too few tokens: {counts:?}");
    for (strategy, n) in &counts {
        assert!((*n as f64) <= 0.9 * total as f64, "{strategy} took {n} of {total} tokens: {counts:?}");
    }
    assert!(counts.len() >= 3, "only {counts:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn calibrate_writes_a_loadable_profile() {
    let dir = std::env::temp_dir().join(format!("entropix-cal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prompts = dir.join("prompts.txt");
    std::fs::write(&prompts, "Why is the sky blue?\nWrite a haiku about rain.\nWhat is 2 + 2?\n").unwrap();
    let out = dir.join("profile.json");
    let o = run(&["calibrate", "--prompts", prompts.to_str().unwrap(), "-o", out.to_str().unwrap(), "--tokens-per-prompt", "12"]);
    assert_ok(&o);
    let profile = entropix_sampler::samplers::entropix::Profile::load(&out).unwrap();
    for key in ["low_ent", "med_ent", "high_ent", "low_vent", "high_vent", "low_attn_ent", "high_interaction"] {
        assert!(profile.get(key).unwrap().is_some(), "{key} missing");
    }
    assert!(profile.get("low_ent").unwrap() <= profile.get("med_ent").unwrap());
    assert!(profile.get("med_ent").unwrap() <= profile.get("high_ent").unwrap());
    // The CLI loads it.
    let o = run(&["--sampler", "entropix", "--profile", out.to_str().unwrap(), "-p", "hi", "-n", "4"]);
    assert_ok(&o);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn interactive_mode_keeps_the_conversation() {
    use std::io::Write;
    let model = common::llama::model_path();
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(common::cli_path())
        .env_remove("LD_LIBRARY_PATH")
        .arg("-m")
        .arg(&model)
        .args(["-i", "-n", "24", "--temp", "0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"What is the capital of France?\nAnd of Italy?\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    let err = stderr(&o);
    let prompts: Vec<usize> = err.lines().filter_map(|l| l.strip_prefix("prompt:")).map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(prompts.len(), 2, "{err}");
    // The second turn decodes only what is new, not the whole conversation.
    assert!(prompts[1] < prompts[0] + 10, "second turn re-decoded the history: {prompts:?}");
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));
}

#[test]
fn dirichlet_family_is_initialised_from_the_prompt_and_deterministic() {
    let dir = std::env::temp_dir().join(format!("entropix-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("d.jsonl");
    let args = ["--sampler", "dirichlet", "-p", "Tell me about cats.", "-n", "12", "-s", "5", "--trace", trace.to_str().unwrap()];
    let a = run(&args);
    assert_ok(&a);
    let first: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&trace).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(family_sampler(&first)["state"]["initialised"], true, "{first}");
    assert_eq!(a.stdout, run(&args).stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alpha_family_runs_the_cold_lookahead_and_is_deterministic() {
    let dir = std::env::temp_dir().join(format!("entropix-alpha-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("a.jsonl");
    // cold-point 3 makes every step COLD (alpha <= 2), so every step looks
    // ahead (the reference preset's lookahead; the default has it off).
    let args = [
        "--sampler",
        "alpha",
        "--preset",
        "reference",
        "--cold-point",
        "3",
        "--ignore-eos",
        "-p",
        "The capital of France is",
        "--no-chat",
        "-n",
        "10",
        "-s",
        "1",
        "--trace",
        trace.to_str().unwrap(),
    ];
    let a = run(&args);
    assert_ok(&a);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trace).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10);
    let looked_ahead = lines.iter().filter(|l| family_sampler(l)["state"]["last_step"]["candidates"].as_array().is_some_and(|c| c.len() > 1)).count();
    assert!(looked_ahead > 0, "no lookahead step: {:?}", lines[0]);
    for l in &lines {
        assert_eq!(family_sampler(l)["state"]["last_step"]["state"], "cold");
    }
    assert_eq!(a.stdout, run(&args).stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tune_writes_a_dirichlet_profile_that_does_not_get_worse() {
    let dir = std::env::temp_dir().join(format!("entropix-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prompts = dir.join("prompts.txt");
    std::fs::write(&prompts, "Why is the sky blue?\nWrite a haiku about rain.\n").unwrap();
    let out = dir.join("dirichlet.json");
    let o = run(&["tune", "--prompts", prompts.to_str().unwrap(), "-o", out.to_str().unwrap(), "--tokens-per-prompt", "8", "--budget", "3", "-s", "1"]);
    assert_ok(&o);
    let profile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let (start, best) = (profile["meta"]["objective_start_nats"].as_f64().unwrap(), profile["meta"]["objective_best_nats"].as_f64().unwrap());
    // The search keeps the best it saw, so best <= start by construction;
    // what can go wrong is the file: its parameters must be the start's
    // exactly when nothing better was found, and others otherwise.
    assert!(best.is_finite() && start.is_finite(), "{start} -> {best}");
    let tuned = entropix_sampler::samplers::dirichlet::load_profile(&out).unwrap();
    let defaults = entropix_sampler::samplers::dirichlet::DirichletParams::default();
    if best < start {
        assert_ne!(tuned, defaults, "a better objective ({start} -> {best}) was written with the start's parameters");
    } else {
        assert_eq!(best, start);
        assert_eq!(tuned, defaults, "no improvement, yet the parameters changed");
    }
    let o = run(&["--sampler", "dirichlet", "--profile", out.to_str().unwrap(), "-p", "hi", "-n", "4", "-s", "1"]);
    assert_ok(&o);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sampler_params_and_presets_reach_the_samplers() {
    let dir = std::env::temp_dir().join(format!("entropix-params-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("t.jsonl");
    // A parameter by its field name lands in the sampler (its state says so).
    let o =
        run(&["--sampler", "entropix", "--sampler-param", "max_temp=0.25", "-p", "Name a colour.", "-n", "6", "-s", "2", "--trace", trace.to_str().unwrap()]);
    assert_ok(&o);
    let text = std::fs::read_to_string(&trace).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = v["samplers"].as_array().unwrap().iter().find_map(|s| s["state"]["last_step"].as_object().cloned()).unwrap();
        let t = step["temperature"].as_f64().unwrap_or(0.0);
        assert!(t <= 0.25 + 1e-6, "temperature {t} above max_temp: {line}");
    }
    assert_clean_failure(&run(&["--sampler", "entropix", "--sampler-param", "nope=1", "-p", "hi"]), "unknown parameter `nope`");
    assert_clean_failure(&run(&["--sampler", "entropix", "--sampler-param", "max_temp=0", "-p", "hi"]), "max_temp");
    assert_clean_failure(&run(&["--sampler", "alpha", "--sampler-param", "window=x", "-p", "hi"]), "not a number");
    assert_clean_failure(&run(&["--sampler", "dirichlet", "--sampler-param", "temp", "-p", "hi"]), "expected NAME=VALUE");
    // The reference preset reads no profile and says so.
    let reference = run(&["--sampler", "entropix", "--preset", "reference", "-p", "hi", "-n", "2"]);
    assert_ok(&reference);
    assert!(stderr(&reference).contains("reference thresholds"), "{}", stderr(&reference));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn repetition_stages_run_in_front_of_the_adaptive_families() {
    // A raw-text prompt the model continues by repeating one word.
    let prompt = "red blue red blue red blue red blue";
    let entropix = |extra: &[&str]| {
        let mut args = vec!["--no-chat", "--sampler", "entropix", "--sampler-param", "min_p=1", "-p", prompt, "-n", "24", "-s", "1"];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_ok(&o);
        stdout(&o)
    };
    let unguarded = entropix(&["--dry-multiplier", "0"]);
    let generated = |text: &str| text.trim_start_matches(prompt).to_string();
    assert!(generated(&unguarded).matches("blue blue blue blue").count() >= 2, "the prompt no longer makes the model loop: {unguarded}");
    // The loop guard (DRY, on by default in front of the family) breaks the
    // loop; the penalties flags reach the chain too.
    let guarded = entropix(&[]);
    assert!(generated(&guarded).matches("blue blue blue blue").count() < generated(&unguarded).matches("blue blue blue blue").count(), "{guarded}");
    assert_ne!(entropix(&["--dry-multiplier", "0", "--repeat-penalty", "1.5"]), unguarded, "--repeat-penalty did not reach the chain");
    // Explicit DRY flags win over the guard's defaults.
    assert_ne!(entropix(&["--dry-allowed-length", "12"]), guarded, "--dry-allowed-length did not reach the guard");
}

#[test]
fn dry_scope_decides_whether_a_reply_may_restate_its_prompt() {
    // The model continues the count by restating the prompt; every word of
    // it extends a long repeat of the prompt, none repeats the reply.
    let prompt = "Count: one two three four five six seven eight nine ten. Again: one two three four five six seven eight nine ten. Again: one two three";
    let count = " four five six seven eight nine ten.";
    let gen = |args: &[&str]| {
        let mut all = vec!["--no-chat", "-p", prompt, "-n", "12", "-s", "1"];
        all.extend_from_slice(args);
        let o = run(&all);
        assert_ok(&o);
        stdout(&o).trim_start_matches(prompt).to_string()
    };
    // The adaptive families' guard matches the reply only by default.
    let entropix = ["--sampler", "entropix", "--sampler-param", "min_p=1"];
    let guard_default = gen(&entropix);
    assert!(guard_default.starts_with(count), "the guard penalised restating the prompt: {guard_default:?}");
    let guard_all = gen(&[&entropix[..], &["--dry-scope", "all"]].concat());
    assert!(!guard_all.starts_with(count), "--dry-scope all did not reach the guard: {guard_all:?}");
    // The classic chain keeps llama.cpp's semantics: DRY sees the prompt.
    let classic = ["--temp", "0", "--dry-multiplier", "0.8"];
    let classic_default = gen(&classic);
    assert_eq!(classic_default, gen(&[&classic[..], &["--dry-scope", "all"]].concat()));
    assert!(!classic_default.starts_with(count), "{classic_default:?}");
    assert!(gen(&[&classic[..], &["--dry-scope", "reply"]].concat()).starts_with(count));
}

#[test]
fn a_model_without_a_profile_is_calibrated_once() {
    let dir = std::env::temp_dir().join(format!("entropix-auto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The same weights under a name no shipped profile has.
    let model = dir.join("Unprofiled-Model.gguf");
    std::os::unix::fs::symlink(common::llama::model_path(), &model).unwrap();
    let cache = dir.join("cache");
    let go = || {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        Command::new(common::cli_path())
            .env("ENTROPIX_CACHE_DIR", &cache)
            .arg("-m")
            .arg(&model)
            .args(["--sampler", "four-mode", "-p", "Name a fruit.", "-n", "4", "-s", "1"])
            .output()
            .unwrap()
    };
    let first = go();
    assert_ok(&first);
    assert!(stderr(&first).contains("calibrating"), "{}", stderr(&first));
    let profiles: Vec<_> = std::fs::read_dir(cache.join("profiles")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    let profile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&profiles[0]).unwrap()).unwrap();
    assert!(profile["thresholds"]["high_ent"]["value"].as_f64().unwrap() > profile["thresholds"]["low_ent"]["value"].as_f64().unwrap());
    assert!(stderr(&first).contains("thresholds from profile"), "{}", stderr(&first));
    let second = go();
    assert_ok(&second);
    assert!(!stderr(&second).contains("calibrating"), "{}", stderr(&second));
    assert_eq!(first.stdout, second.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `json` to a fresh file for `--sampler-config`.
fn config_file(name: &str, json: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("entropix-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn a_sampler_config_file_builds_any_chain_and_its_parameters_count() {
    let prompt = ["-p", "List three facts about the Moon.", "-n", "24"];
    // top-k 1 leaves one candidate: the text is greedy's.
    let greedy = run(&[&prompt[..], &["--temp", "0"]].concat());
    let k1 = config_file("k1.json", r#"{"samplers": [{"name": "top_k", "k": 1}, {"name": "dist", "seed": 3}]}"#);
    let out = run(&[&prompt[..], &["--sampler-config", k1.to_str().unwrap()]].concat());
    assert_ok(&out);
    assert_eq!(stdout(&out), stdout(&greedy));
    // Seed 004's samplers, reachable only through the file: a strong
    // decaying repetition penalty and a ban change greedy's text.
    let banned = config_file(
        "ban.json",
        r#"[{"name": "repetition_decay", "factor": 3.0, "decay": 0.9}, {"name": "token_ban", "ids": [1, 2]},
            {"name": "length_penalty", "stop_tokens": [2]}, {"name": "greedy"}]"#,
    );
    let out = run(&[&prompt[..], &["--sampler-config", banned.to_str().unwrap()]].concat());
    assert_ok(&out);
    assert_ne!(stdout(&out), stdout(&greedy), "the penalties changed nothing");
    // Errors name the entry and the field.
    let bad = config_file("bad.json", r#"[{"name": "top_p", "pp": 0.9}, {"name": "dist"}]"#);
    let out = run(&[&prompt[..], &["--sampler-config", bad.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("entry 0") && stderr(&out).contains("unknown parameter `pp`"), "{}", stderr(&out));
}
