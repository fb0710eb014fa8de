//! `eval`: what text the samplers write, measured. Runs task sets x
//! sampler configurations x seeds on one GGUF model and reports, per
//! configuration, exact-answer accuracy (Wilson intervals), seq-rep-4,
//! distinct-2, the NLL of the produced tokens under the raw model, length,
//! stop reasons and cost, with paired comparisons against a baseline on the
//! same items and seeds. With `--tune-budget N` every configuration,
//! baselines included, gets the same N trials on a dev split and only the
//! test split is reported (the equal-budget rule of Schaeffer et al. 2025,
//! arXiv 2506.13681).

pub mod answer;
pub mod config;
pub mod plot;
pub mod progress;
pub mod report;
pub mod run;
pub mod stats;
pub mod tasks;
pub mod text_metrics;

use std::path::PathBuf;

use entropix_sampler::llama::{Model, ModelOptions};

use crate::args::Args;
use config::EvalConfig;
use report::{ConfigReport, Trial};
use run::{Job, ResumeLog, Runner, Sample, Task};
use tasks::QaItem;

/// Flags of the `eval` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// A configuration: a preset (greedy, default, min-p, temp-1, entropix,
    /// four-mode, alpha, dirichlet) or NAME=FLAGS with generation flags
    /// (e.g. "cool=--temp 0.5 --min-p 0.1"). Repeatable; none: every preset.
    #[arg(long = "config", value_name = "PRESET|NAME=FLAGS")]
    pub configs: Vec<String>,
    /// Configuration the others are compared with (paired, same items and
    /// seeds). Default: greedy when it is among them, else the first.
    #[arg(long = "baseline")]
    pub baseline: Option<String>,
    /// Generated arithmetic questions (0: none).
    #[arg(long = "arith", default_value_t = 200)]
    pub arith: usize,
    /// Difficulty levels of the generated questions, cycled: 1 = one
    /// addition or subtraction of 2-digit numbers, 2 = products and
    /// two-operation expressions, 3 = multi-step word problems.
    #[arg(long = "levels", default_value = "1", value_delimiter = ',')]
    pub levels: Vec<u32>,
    /// Seed of the generated questions and of the dev/test split.
    #[arg(long = "task-seed", default_value_t = 1)]
    pub task_seed: u64,
    /// Questions from a JSONL file ("question" and "answer"; GSM8K's
    /// "#### 42" answers work), in addition to the generated ones.
    #[arg(long = "qa-file")]
    pub qa_file: Option<PathBuf>,
    /// Open-ended prompts (taken from the built-in set or --prompts-file).
    #[arg(long = "open", default_value_t = 24)]
    pub open: usize,
    /// Open-ended prompts from a file (one per line, or JSONL "prompt").
    #[arg(long = "prompts-file")]
    pub prompts_file: Option<PathBuf>,
    /// Seeds per item (each configuration gets the same ones).
    #[arg(long = "seeds", default_value_t = 1)]
    pub seeds: u32,
    /// Token limit of a QA answer.
    #[arg(long = "qa-tokens", default_value_t = 48)]
    pub qa_tokens: i32,
    /// Token limit of an open-ended generation.
    #[arg(long = "open-tokens", default_value_t = 160)]
    pub open_tokens: i32,
    /// Trials per configuration on the dev split (0: no tuning, every item
    /// is reported). Each configuration, baselines included, gets the same
    /// number (fewer only when its grid is smaller: greedy has one).
    #[arg(long = "tune-budget", default_value_t = 0)]
    pub tune_budget: usize,
    /// Share of the items in the dev split when tuning.
    #[arg(long = "dev-fraction", default_value_t = 0.3)]
    pub dev_fraction: f64,
    /// Folder for samples.jsonl (every generation; an interrupted run
    /// resumes from it), report.json and plot.svg.
    #[arg(long = "out", default_value = "eval-out")]
    pub out: PathBuf,
    /// No progress line on stderr.
    #[arg(long = "no-progress")]
    pub no_progress: bool,
}

/// The whole `eval` run.
pub fn run(args: &Args, eval: &EvalArgs, model_path: &std::path::Path) -> Result<(), String> {
    let configs = config::parse_configs(&eval.configs)?;
    let baseline = match &eval.baseline {
        Some(b) => configs.iter().find(|c| &c.name == b).ok_or_else(|| format!("--baseline {b}: not among the configurations"))?.name.clone(),
        None => configs.iter().find(|c| c.name == "greedy").unwrap_or(&configs[0]).name.clone(),
    };
    if !(0.0..1.0).contains(&eval.dev_fraction) {
        return Err(format!("--dev-fraction {}: must be in [0, 1)", eval.dev_fraction));
    }
    if eval.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    let qa = qa_items(eval)?;
    let prompts = open_prompts(eval)?;
    if qa.is_empty() && prompts.is_empty() {
        return Err("nothing to evaluate: --arith 0, no --qa-file and --open 0".into());
    }
    let tuning = eval.tune_budget > 0;
    let (dev_jobs, test_jobs) = if tuning {
        let (qa_dev, qa_test) = tasks::split_dev_test(&qa, eval.dev_fraction, eval.task_seed);
        let open_items: Vec<QaItem> =
            prompts.iter().enumerate().map(|(i, p)| QaItem { id: format!("open-{i:03}"), question: p.clone(), answer: String::new() }).collect();
        let (open_dev, open_test) = tasks::split_dev_test(&open_items, eval.dev_fraction, eval.task_seed);
        (jobs(eval, &qa_dev, &open_dev), jobs(eval, &qa_test, &open_test))
    } else {
        let open_items: Vec<QaItem> =
            prompts.iter().enumerate().map(|(i, p)| QaItem { id: format!("open-{i:03}"), question: p.clone(), answer: String::new() }).collect();
        (Vec::new(), jobs(eval, &qa, &open_items))
    };
    std::fs::create_dir_all(&eval.out).map_err(|e| format!("cannot create {}: {e}", eval.out.display()))?;
    let log = ResumeLog::open(Some(&eval.out.join("samples.jsonl")))?;
    let trials_total: usize = configs.iter().map(|c| if tuning { c.grid.len().min(eval.tune_budget) } else { 0 }).sum();
    let total = trials_total * dev_jobs.len() + configs.len() * test_jobs.len();
    if !args.quiet {
        eprintln!(
            "eval: {} configurations, {} QA items, {} open prompts, {} seed(s); {} generations{}{}",
            configs.len(),
            qa.len(),
            prompts.len(),
            eval.seeds,
            total,
            if tuning { format!(" ({} dev / {} test jobs, budget {})", dev_jobs.len(), test_jobs.len(), eval.tune_budget) } else { String::new() },
            if log.len() > 0 { format!("; {} already in {}", log.len(), eval.out.join("samples.jsonl").display()) } else { String::new() }
        );
    }
    let model = Model::load(model_path, &ModelOptions { n_gpu_layers: args.n_gpu_layers }).map_err(|e| e.to_string())?;
    let mut runner = Runner { model: &model, base: args.clone(), log, progress: progress::Progress::new(total, !eval.no_progress && !args.quiet) };

    let mut reports: Vec<ConfigReport> = Vec::new();
    let mut samples_of: Vec<Vec<Sample>> = Vec::new();
    for c in &configs {
        let (flags, trials) = if tuning { tune(&mut runner, c, eval.tune_budget, &dev_jobs)? } else { (c.flags.clone(), Vec::new()) };
        let samples = runner.run(&c.name, &flags, &test_jobs)?;
        reports.push(report::summarise(&c.name, &flags, &samples, trials));
        samples_of.push(samples);
    }
    let b = configs.iter().position(|c| c.name == baseline).expect("the baseline is a configuration");
    for i in 0..reports.len() {
        if i != b {
            reports[i].vs_baseline = Some(report::compare(&baseline, &samples_of[i], &samples_of[b], eval.task_seed));
        }
    }

    let model_name = model_path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    println!(
        "eval on {model_name}: {} QA items, {} open prompts, {} seed(s){}; paired tests against `{baseline}`",
        qa.len(),
        prompts.len(),
        eval.seeds,
        if tuning { format!(", test split after tuning with budget {}", eval.tune_budget) } else { String::new() }
    );
    print!("{}", report::table(&reports));
    let json = serde_json::json!({
        "model": model_name,
        "qa_items": qa.len(),
        "open_prompts": prompts.len(),
        "seeds": eval.seeds,
        "tune_budget": eval.tune_budget,
        "baseline": baseline,
        "configs": reports,
    });
    let json_path = eval.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n")
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;
    let svg_path = eval.out.join("plot.svg");
    std::fs::write(&svg_path, report::plot(&reports, &format!("{model_name}: accuracy vs repetition")))
        .map_err(|e| format!("cannot write {}: {e}", svg_path.display()))?;
    if !args.quiet {
        eprintln!("eval: wrote {}, {} and {}", eval.out.join("samples.jsonl").display(), json_path.display(), svg_path.display());
    }
    Ok(())
}

/// Tries up to `budget` points of `c`'s grid on the dev jobs and returns
/// the flags of the best (objective: dev accuracy - dev seq-rep-4; the
/// first trial wins ties) with every trial's scores.
fn tune(runner: &mut Runner<'_>, c: &EvalConfig, budget: usize, dev: &[Job]) -> Result<(String, Vec<Trial>), String> {
    let mut trials = Vec::new();
    let mut best: Option<(f64, String)> = None;
    for extra in c.grid.iter().take(budget) {
        let flags = if extra.is_empty() { c.flags.clone() } else { format!("{} {extra}", c.flags).trim().to_string() };
        let samples = runner.run(&c.name, &flags, dev)?;
        let r = report::summarise(&c.name, &flags, &samples, Vec::new());
        let accuracy = r.qa.as_ref().map(|q| q.accuracy);
        let seq_rep4 = r.open.as_ref().map(|o| o.seq_rep4);
        let objective = accuracy.unwrap_or(0.0) - seq_rep4.unwrap_or(0.0);
        if best.as_ref().is_none_or(|(b, _)| objective > *b) {
            best = Some((objective, flags.clone()));
        }
        trials.push(Trial { flags, accuracy, seq_rep4, objective });
    }
    Ok((best.map_or_else(|| c.flags.clone(), |(_, f)| f), trials))
}

/// The QA items: generated arithmetic, then the JSONL file's.
fn qa_items(eval: &EvalArgs) -> Result<Vec<QaItem>, String> {
    if eval.levels.is_empty() || eval.levels.iter().any(|l| !(1..=3).contains(l)) {
        return Err(format!("--levels {:?}: each level must be 1, 2 or 3", eval.levels));
    }
    let mut items = tasks::generate_mixed(eval.arith, eval.task_seed, &eval.levels);
    if let Some(path) = &eval.qa_file {
        items.extend(tasks::load_qa_jsonl(path)?);
    }
    Ok(items)
}

/// The first `--open` prompts of the file or the built-in set.
fn open_prompts(eval: &EvalArgs) -> Result<Vec<String>, String> {
    let all = match &eval.prompts_file {
        Some(p) => tasks::load_prompts(p)?,
        None => tasks::builtin_open_prompts(),
    };
    if eval.open > all.len() {
        return Err(format!("--open {}: only {} prompts available", eval.open, all.len()));
    }
    Ok(all.into_iter().take(eval.open).collect())
}

/// Jobs for the items and prompts, each with `--seeds` seeds derived from
/// the item's id (the same for every configuration).
fn jobs(eval: &EvalArgs, qa: &[QaItem], open: &[QaItem]) -> Vec<Job> {
    let mut out = Vec::new();
    for s in 0..eval.seeds {
        for q in qa {
            out.push(Job {
                task: Task::Qa,
                item: q.id.clone(),
                prompt: q.question.clone(),
                gold: Some(q.answer.clone()),
                seed: job_seed(&q.id, s),
                max_tokens: eval.qa_tokens,
            });
        }
        for o in open {
            out.push(Job {
                task: Task::Open,
                item: o.id.clone(),
                prompt: o.question.clone(),
                gold: None,
                seed: job_seed(&o.id, s),
                max_tokens: eval.open_tokens,
            });
        }
    }
    out
}

/// A seed from an item id and a seed index (FNV-1a; never 0xFFFFFFFF,
/// which asks the samplers for a random seed).
fn job_seed(item: &str, index: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in item.bytes().chain(index.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((h ^ (h >> 32)) as u32).min(u32::MAX - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_seeds_are_stable_and_distinct() {
        assert_eq!(job_seed("arith-L1-0000", 0), job_seed("arith-L1-0000", 0));
        assert_ne!(job_seed("arith-L1-0000", 0), job_seed("arith-L1-0000", 1));
        assert_ne!(job_seed("arith-L1-0000", 0), job_seed("arith-L1-0001", 0));
    }
}
