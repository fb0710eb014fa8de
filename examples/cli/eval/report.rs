//! Summaries of a configuration's samples (accuracy with Wilson
//! intervals, seq-rep-4, distinct-2, NLL under the raw model, length, stop
//! reasons, cost), paired comparisons against the baseline, and the
//! table, JSON and plot `eval` writes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::plot::{scatter_svg, PlotPoint};
use super::run::{Sample, Stop, Task};
use super::stats::{self, PairedComparison};
use super::text_metrics::{distinct_n, distinct_n_corpus, seq_rep_n};

/// Resamples of every paired bootstrap.
const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Exact-answer accuracy over the QA samples.
#[derive(Debug, Clone, Serialize)]
pub struct QaSummary {
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// 95% Wilson interval.
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Text statistics over the open-ended samples.
#[derive(Debug, Clone, Serialize)]
pub struct OpenSummary {
    pub n: usize,
    /// Mean per-sample seq-rep-4 (1 - unique 4-grams / 4-grams, tokens)
    /// with a normal 95% interval.
    pub seq_rep4: f64,
    pub seq_rep4_ci: (f64, f64),
    /// Mean per-sample distinct-2 (unique bigrams / bigrams).
    pub distinct2: f64,
    /// distinct-2 over all samples together (bigrams never cross samples).
    pub distinct2_corpus: f64,
    /// Mean NLL per token under the raw model (nats), every token weighted
    /// equally.
    pub nll: f64,
    /// Mean of the per-sample NLLs with a normal 95% interval.
    pub nll_sample_mean: f64,
    pub nll_ci: (f64, f64),
    /// Mean generated tokens.
    pub mean_tokens: f64,
    /// How generations ended, by reason.
    pub stops: BTreeMap<String, usize>,
}

/// Speed in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// Generated tokens per second of generation (decode, chain, the NLL
    /// pass; prompt processing excluded).
    pub tokens_per_s: f64,
    /// Time in the sampler chain per sampled token, microseconds.
    pub sampler_us_per_token: f64,
}

/// A configuration against the baseline on the same items and seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline: String,
    /// Correct (1) or not (0), this minus baseline: the p-value is the
    /// exact sign test on the discordant pairs (McNemar's exact test).
    pub accuracy: Option<PairedComparison>,
    /// Per-sample NLL, this minus baseline (negative: more likely text).
    pub nll: Option<PairedComparison>,
    /// Per-sample seq-rep-4, this minus baseline (negative: less repetition).
    pub seq_rep4: Option<PairedComparison>,
}

/// One trial of the tuning on the dev split.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub flags: String,
    pub accuracy: Option<f64>,
    pub seq_rep4: Option<f64>,
    pub objective: f64,
}

/// Everything reported for one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub name: String,
    /// The flags the reported samples were generated with (after tuning).
    pub flags: String,
    pub qa: Option<QaSummary>,
    pub open: Option<OpenSummary>,
    pub cost: Cost,
    pub vs_baseline: Option<Comparison>,
    /// The dev-split trials, when tuned.
    pub trials: Vec<Trial>,
}

/// The summaries of `samples` (one configuration).
pub fn summarise(name: &str, flags: &str, samples: &[Sample], trials: Vec<Trial>) -> ConfigReport {
    let qa: Vec<&Sample> = samples.iter().filter(|s| s.task == Task::Qa).collect();
    let open: Vec<&Sample> = samples.iter().filter(|s| s.task == Task::Open).collect();
    let qa_summary = (!qa.is_empty()).then(|| {
        let correct = qa.iter().filter(|s| s.correct == Some(true)).count();
        let (ci_low, ci_high) = stats::wilson_interval(correct, qa.len());
        QaSummary { n: qa.len(), correct, accuracy: correct as f64 / qa.len() as f64, ci_low, ci_high }
    });
    let open_summary = (!open.is_empty()).then(|| {
        let reps: Vec<f64> = open.iter().map(|s| seq_rep_n(&s.tokens, 4)).collect();
        let d2: Vec<f64> = open.iter().map(|s| distinct_n(&s.tokens, 2)).collect();
        let seqs: Vec<Vec<i32>> = open.iter().map(|s| s.tokens.clone()).collect();
        let nlls: Vec<f64> = open.iter().map(|s| s.nll()).collect();
        let (nll_sum, n_scored) = open.iter().fold((0.0, 0usize), |(a, n), s| (a + s.nll_sum, n + s.n_scored));
        let mut stops = BTreeMap::new();
        for s in &open {
            *stops.entry(stop_name(s.stop).to_string()).or_insert(0) += 1;
        }
        OpenSummary {
            n: open.len(),
            seq_rep4: stats::mean(&reps),
            seq_rep4_ci: stats::mean_ci95(&reps),
            distinct2: stats::mean(&d2),
            distinct2_corpus: distinct_n_corpus(&seqs, 2),
            nll: if n_scored > 0 { nll_sum / n_scored as f64 } else { 0.0 },
            nll_sample_mean: stats::mean(&nlls),
            nll_ci: stats::mean_ci95(&nlls),
            mean_tokens: stats::mean(&open.iter().map(|s| s.tokens.len() as f64).collect::<Vec<_>>()),
            stops,
        }
    });
    let (gen_s, sampling_s, n_scored, n_gen) =
        samples.iter().fold((0.0, 0.0, 0usize, 0usize), |(g, s, n, t), x| (g + x.generation_s, s + x.sampling_s, n + x.n_scored, t + x.tokens.len()));
    let cost = Cost {
        tokens_per_s: if gen_s > 0.0 { n_gen as f64 / gen_s } else { 0.0 },
        sampler_us_per_token: if n_scored > 0 { sampling_s * 1e6 / n_scored as f64 } else { 0.0 },
    };
    ConfigReport { name: name.to_string(), flags: flags.to_string(), qa: qa_summary, open: open_summary, cost, vs_baseline: None, trials }
}

fn stop_name(s: Stop) -> &'static str {
    match s {
        Stop::Eog => "eog",
        Stop::String => "stop-string",
        Stop::Length => "length",
        Stop::Context => "context",
    }
}

/// Pairs `ours` with `theirs` by (task, item, seed) and compares them.
pub fn compare(baseline: &str, ours: &[Sample], theirs: &[Sample], seed: u64) -> Comparison {
    let key = |s: &Sample| (s.task, s.item.clone(), s.seed);
    let theirs: BTreeMap<_, &Sample> = theirs.iter().map(|s| (key(s), s)).collect();
    let pairs: Vec<(&Sample, &Sample)> = ours.iter().filter_map(|s| theirs.get(&key(s)).map(|t| (s, *t))).collect();
    let paired = |task: Task, f: &dyn Fn(&Sample) -> f64| -> Option<PairedComparison> {
        let (a, b): (Vec<f64>, Vec<f64>) = pairs.iter().filter(|(s, _)| s.task == task).map(|(s, t)| (f(s), f(t))).unzip();
        (!a.is_empty()).then(|| stats::paired_bootstrap(&a, &b, BOOTSTRAP_RESAMPLES, seed))
    };
    Comparison {
        baseline: baseline.to_string(),
        accuracy: paired(Task::Qa, &|s| f64::from(u8::from(s.correct == Some(true)))),
        nll: paired(Task::Open, &|s| s.nll()),
        seq_rep4: paired(Task::Open, &|s| seq_rep_n(&s.tokens, 4)),
    }
}

/// The table printed on stdout.
pub fn table(reports: &[ConfigReport]) -> String {
    let mut out = String::new();
    let header = format!(
        "{:<14} {:>22} {:>9} {:>16} {:>10} {:>7} {:>16} {:>6} {:>7} {:>8}\n",
        "config", "accuracy (95% CI)", "acc p", "seq-rep-4", "distinct-2", "NLL", "NLL diff (p)", "tokens", "tok/s", "µs/tok"
    );
    out.push_str(&header);
    out.push_str(&"-".repeat(header.chars().count() - 1));
    out.push('\n');
    for r in reports {
        let acc = r.qa.as_ref().map_or("-".to_string(), |q| format!("{}/{} {:.2} ({:.2}-{:.2})", q.correct, q.n, q.accuracy, q.ci_low, q.ci_high));
        let cmp = r.vs_baseline.as_ref();
        let acc_p = cmp.and_then(|c| c.accuracy.as_ref()).map_or("-".to_string(), |a| format!("{:.3}", a.p_value));
        let (rep, d2, nll, len) = r.open.as_ref().map_or(("-".into(), "-".into(), "-".into(), "-".into()), |o| {
            (
                format!("{:.3} ({:.3}-{:.3})", o.seq_rep4, o.seq_rep4_ci.0.max(0.0), o.seq_rep4_ci.1),
                format!("{:.3}", o.distinct2),
                format!("{:.3}", o.nll),
                format!("{:.0}", o.mean_tokens),
            )
        });
        let nll_diff = cmp.and_then(|c| c.nll.as_ref()).map_or("-".to_string(), |d| format!("{:+.3} ({:.3})", d.mean_diff, d.p_value));
        out.push_str(&format!(
            "{:<14} {:>22} {:>9} {:>16} {:>10} {:>7} {:>16} {:>6} {:>7.1} {:>8.1}\n",
            r.name, acc, acc_p, rep, d2, nll, nll_diff, len, r.cost.tokens_per_s, r.cost.sampler_us_per_token
        ));
    }
    out
}

/// Accuracy against seq-rep-4, one point per configuration with both, its
/// intervals as error bars.
pub fn plot(reports: &[ConfigReport], title: &str) -> String {
    let points: Vec<PlotPoint> = reports
        .iter()
        .filter_map(|r| {
            let (q, o) = (r.qa.as_ref()?, r.open.as_ref()?);
            Some(PlotPoint {
                label: r.name.clone(),
                x: o.seq_rep4,
                x_lo: o.seq_rep4_ci.0.max(0.0),
                x_hi: o.seq_rep4_ci.1,
                y: q.accuracy,
                y_lo: q.ci_low,
                y_hi: q.ci_high,
            })
        })
        .collect();
    scatter_svg(&points, title, "seq-rep-4 (open-ended prompts; lower is less repetitive)", "exact-answer accuracy")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(task: Task, item: &str, correct: Option<bool>, tokens: Vec<i32>, nll_sum: f64) -> Sample {
        Sample {
            flags: String::new(),
            task,
            item: item.into(),
            seed: 1,
            text: String::new(),
            n_scored: tokens.len(),
            tokens,
            correct,
            nll_sum,
            stop: Stop::Length,
            generation_s: 1.0,
            sampling_s: 0.001,
        }
    }

    #[test]
    fn summary_by_hand() {
        let samples = vec![
            sample(Task::Qa, "a", Some(true), vec![1], 0.5),
            sample(Task::Qa, "b", Some(false), vec![1], 0.5),
            // 1 2 1 2 1 2: 4-grams 1212, 2121, 1212 -> 2 unique of 3: rep 1/3;
            // bigrams 12 21 12 21 12 -> 2 of 5: distinct-2 0.4.
            sample(Task::Open, "p", None, vec![1, 2, 1, 2, 1, 2], 6.0),
            // 1 2 3 4 5: rep 0, distinct-2 1.
            sample(Task::Open, "q", None, vec![1, 2, 3, 4, 5], 2.0),
        ];
        let r = summarise("x", "", &samples, Vec::new());
        let q = r.qa.unwrap();
        assert_eq!((q.n, q.correct), (2, 1));
        assert_eq!(q.accuracy, 0.5);
        let o = r.open.unwrap();
        assert!((o.seq_rep4 - 1.0 / 6.0).abs() < 1e-12);
        assert!((o.distinct2 - 0.7).abs() < 1e-12);
        // Token-weighted NLL: (6 + 2) / 11; per-sample mean (1 + 0.4) / 2.
        assert!((o.nll - 8.0 / 11.0).abs() < 1e-12);
        assert!((o.nll_sample_mean - 0.7).abs() < 1e-12);
        // 13 tokens in 4 s; 0.004 s of chain over 13 scored tokens.
        assert!((r.cost.tokens_per_s - 13.0 / 4.0).abs() < 1e-12);
        assert!((r.cost.sampler_us_per_token - 4000.0 / 13.0).abs() < 1e-9);
    }

    #[test]
    fn comparison_pairs_by_item() {
        let ours = vec![sample(Task::Qa, "a", Some(true), vec![1], 0.0), sample(Task::Qa, "b", Some(true), vec![1], 0.0)];
        let theirs = vec![sample(Task::Qa, "b", Some(false), vec![1], 0.0), sample(Task::Qa, "a", Some(true), vec![1], 0.0)];
        let c = compare("base", &ours, &theirs, 1);
        let a = c.accuracy.unwrap();
        // a: tie; b: win. Mean difference 0.5, one discordant pair: p = 1.
        assert_eq!((a.wins, a.losses, a.ties), (1, 0, 1));
        assert!((a.mean_diff - 0.5).abs() < 1e-12);
        assert_eq!(a.p_value, 1.0);
        assert!(c.nll.is_none());
    }
}
