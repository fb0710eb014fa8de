//! Runs one configuration's chain over a list of jobs (a question or an
//! open-ended prompt, with a seed) on the real model, and keeps every
//! finished sample in an append-only JSONL log so that an interrupted
//! `eval` resumes where it stopped.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use entropix_sampler::llama::{ChatMessage, Model};

use super::answer;
use super::config::split_flags;
use super::progress::Progress;
use crate::args::normalise_llama_style;
use crate::args::Args;
use crate::chain_builder;
use crate::generate::Generator;
use crate::session::Session;

/// What a job asks the model for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// A question with one right answer, scored by exact match.
    Qa,
    /// An open-ended prompt, scored by repetition, diversity and NLL.
    Open,
}

/// One generation to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub task: Task,
    pub item: String,
    pub prompt: String,
    /// The right answer (QA jobs).
    pub gold: Option<String>,
    /// The chain's RNG seed: the same for every configuration.
    pub seed: u32,
    pub max_tokens: i32,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// An end-of-generation token.
    Eog,
    /// A stop string (base models: the end of the answer line).
    String,
    /// The token limit.
    Length,
    /// The context filled up.
    Context,
}

/// One finished generation, as logged.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// The configuration's effective flags (the resume key with task, item
    /// and seed).
    pub flags: String,
    pub task: Task,
    pub item: String,
    pub seed: u32,
    pub text: String,
    pub tokens: Vec<i32>,
    /// Exact match with the gold answer (QA jobs).
    pub correct: Option<bool>,
    /// Sum of -ln p(token) under the raw model (T 1, no filtering), nats,
    /// over every sampled token (an end-of-generation token included).
    pub nll_sum: f64,
    /// Tokens in `nll_sum`.
    pub n_scored: usize,
    pub stop: Stop,
    /// Generation wall time, seconds (decode, chain and the NLL pass).
    pub generation_s: f64,
    /// Time in the sampler chain (candidate fill included), seconds.
    pub sampling_s: f64,
}

impl Sample {
    fn key(&self) -> (String, Task, String, u32) {
        (self.flags.clone(), self.task, self.item.clone(), self.seed)
    }

    /// Mean NLL per token, nats; 0 for an empty generation.
    pub fn nll(&self) -> f64 {
        if self.n_scored == 0 {
            0.0
        } else {
            self.nll_sum / self.n_scored as f64
        }
    }
}

/// The append-only log of finished samples.
#[derive(Debug)]
pub struct ResumeLog {
    path: Option<PathBuf>,
    done: HashMap<(String, Task, String, u32), Sample>,
}

impl ResumeLog {
    /// Reads the samples already in `path` (missing file: none). A torn
    /// last line (an interrupted write) is dropped from the file, so that
    /// the next sample starts on a line of its own; any other bad line is
    /// an error.
    pub fn open(path: Option<&Path>) -> Result<Self, String> {
        let mut done = HashMap::new();
        if let Some(p) = path.filter(|p| p.exists()) {
            let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let mut good_len = 0;
            for (i, line) in lines.iter().enumerate() {
                let last = i + 1 == lines.len();
                if line.trim().is_empty() {
                    good_len += line.len();
                    continue;
                }
                match serde_json::from_str::<Sample>(line) {
                    Ok(s) if line.ends_with('\n') => {
                        good_len += line.len();
                        done.insert(s.key(), s);
                    }
                    // Whole but unterminated, or torn: redone.
                    Ok(_) if last => {}
                    Err(_) if last => {}
                    Ok(_) => unreachable!("only the last piece lacks its newline"),
                    Err(e) => return Err(format!("{} line {}: {e}", p.display(), i + 1)),
                }
            }
            if good_len < text.len() {
                let f = std::fs::OpenOptions::new().write(true).open(p).map_err(|e| format!("cannot repair {}: {e}", p.display()))?;
                f.set_len(good_len as u64).map_err(|e| format!("cannot repair {}: {e}", p.display()))?;
            }
        }
        Ok(Self { path: path.map(Path::to_path_buf), done })
    }

    /// Samples read at start-up.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    fn get(&self, flags: &str, job: &Job) -> Option<&Sample> {
        self.done.get(&(flags.to_string(), job.task, job.item.clone(), job.seed))
    }

    fn append(&mut self, sample: &Sample) -> Result<(), String> {
        if let Some(p) = &self.path {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            let line = serde_json::to_string(sample).map_err(|e| e.to_string())?;
            writeln!(f, "{line}").map_err(|e| format!("writing {}: {e}", p.display()))?;
        }
        self.done.insert(sample.key(), sample.clone());
        Ok(())
    }
}

/// Runs chains on one loaded model.
pub struct Runner<'m> {
    pub model: &'m Model,
    /// The `eval` invocation's own flags: model, context, threads, batch,
    /// GPU layers and attention layer carry over to every configuration.
    pub base: Args,
    pub log: ResumeLog,
    pub progress: Progress,
}

impl<'m> Runner<'m> {
    /// The generation flags `flags` describe, with this run's global
    /// settings.
    pub fn args_for(&self, flags: &str) -> Result<Args, String> {
        let words = split_flags(flags)?;
        let argv = normalise_llama_style(std::iter::once("entropix-cli".to_string()).chain(words));
        let mut a = Args::try_parse_from(argv).map_err(|e| format!("config flags {flags:?}: {}", e.to_string().lines().next().unwrap_or("")))?;
        if a.command.is_some() {
            return Err(format!("config flags {flags:?}: a subcommand is not a generation flag"));
        }
        let b = &self.base;
        a.model = b.model.clone();
        a.ctx_size = b.ctx_size;
        a.batch_size = b.batch_size;
        a.threads = b.threads;
        a.n_gpu_layers = b.n_gpu_layers;
        a.flash_attn = b.flash_attn;
        a.attention_layer = b.attention_layer;
        a.quiet = true;
        a.verbose = false;
        Ok(a)
    }

    /// Runs every job with the chain `flags` builds; jobs already in the
    /// log are taken from it. Returns the samples in job order.
    pub fn run(&mut self, label: &str, flags: &str, jobs: &[Job]) -> Result<Vec<Sample>, String> {
        let todo: Vec<&Job> = jobs.iter().filter(|j| self.log.get(flags, j).is_none()).collect();
        self.progress.skip(jobs.len() - todo.len());
        if !todo.is_empty() {
            let args = self.args_for(flags)?;
            let model = self.model;
            crate::auto_profile::ensure(&args, model)?;
            let first = chain_builder::build(&args, model)?;
            let mut session = Session::open(&args, model, &first)?;
            drop(first);
            for job in todo {
                let sample = generate_one(&args, model, &mut session, flags, job)?;
                self.log.append(&sample)?;
                self.progress.tick(label);
            }
        }
        Ok(jobs.iter().map(|j| self.log.get(flags, j).cloned().expect("every job ran or was logged")).collect())
    }
}

/// The one-shot example before a base model's question.
const BASE_MODEL_EXAMPLE: &str = "Question: What is 2 + 3? Answer with the number only.\nAnswer: 5\n\n";

/// The prompt text for `job`: the model's chat template when it has one,
/// else a plain completion (for QA, one worked example then "Question:
/// ...\nAnswer:", ending at the line's end). Returns the text and the stop strings.
fn render(model: &Model, job: &Job) -> Result<(String, Vec<String>), String> {
    if model.chat_template().is_some() {
        let messages = [ChatMessage { role: "user".into(), content: job.prompt.clone() }];
        return Ok((model.apply_chat_template(&messages, true).map_err(|e| e.to_string())?, Vec::new()));
    }
    Ok(match job.task {
        // One worked example shows a base model the format.
        Task::Qa => (format!("{BASE_MODEL_EXAMPLE}Question: {}\nAnswer:", job.prompt), vec!["\n".to_string()]),
        Task::Open => (format!("{}\n", job.prompt), vec!["\n\n\n".to_string()]),
    })
}

/// One generation with a fresh chain seeded for the job.
fn generate_one(args: &Args, model: &Model, session: &mut Session<'_>, flags: &str, job: &Job) -> Result<Sample, String> {
    let mut a = args.clone();
    a.seed = job.seed;
    let mut chain = chain_builder::build(&a, model)?.chain;
    session.attach(&chain)?;
    session.ctx.clear();
    let (text, stop) = render(model, job)?;
    let use_chat = model.chat_template().is_some();
    let tokens = model.tokenize(&text, true, use_chat).map_err(|e| e.to_string())?;
    chain_builder::accept_prompt(&mut chain, &tokens, &a);
    let mut out = Vec::new();
    let mut generator = Generator::new(&mut session.ctx, &mut chain, None);
    generator.observe_prompt = a.sampler == "dirichlet";
    generator.stop = stop;
    generator.raw_logprobs = Some(Vec::new());
    let t0 = Instant::now();
    let (generated, stats) = generator.run(&tokens, job.max_tokens, &mut out).map_err(|e| format!("{}: {e}", job.item))?;
    let wall = t0.elapsed();
    let logprobs = generator.raw_logprobs.take().unwrap_or_default();
    let text = String::from_utf8_lossy(&out).into_owned();
    let stop = if stats.stopped_by_eog {
        Stop::Eog
    } else if stats.stopped_by_string {
        Stop::String
    } else if stats.context_full {
        Stop::Context
    } else {
        Stop::Length
    };
    let correct = job.gold.as_deref().map(|g| answer::is_correct(&text, g));
    Ok(Sample {
        flags: flags.to_string(),
        task: job.task,
        item: job.item.clone(),
        seed: job.seed,
        text,
        tokens: generated,
        correct,
        nll_sum: logprobs.iter().map(|l| -l).sum(),
        n_scored: logprobs.len(),
        stop,
        generation_s: stats.generation_time.as_secs_f64().min(wall.as_secs_f64()),
        sampling_s: stats.sampling_time.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(item: &str) -> Sample {
        Sample {
            flags: "--temp 0".into(),
            task: Task::Qa,
            item: item.into(),
            seed: 1,
            text: "42".into(),
            tokens: vec![1, 2],
            correct: Some(true),
            nll_sum: 0.5,
            n_scored: 2,
            stop: Stop::Eog,
            generation_s: 0.1,
            sampling_s: 0.01,
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_log_stays_valid() {
        let dir = std::env::temp_dir().join(format!("entropix-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("samples.jsonl");
        let line = |s: &Sample| serde_json::to_string(s).unwrap();
        let torn = line(&sample("c"));
        std::fs::write(&path, format!("{}\n{}\n{}", line(&sample("a")), line(&sample("b")), &torn[..torn.len() / 2])).unwrap();
        let mut log = ResumeLog::open(Some(&path)).unwrap();
        assert_eq!(log.len(), 2);
        log.append(&sample("c")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let items: Vec<String> = text.lines().map(|l| serde_json::from_str::<Sample>(l).unwrap().item).collect();
        assert_eq!(items, ["a", "b", "c"]);
        // A bad line that is not the last is an error, not silently lost work.
        std::fs::write(&path, format!("garbage\n{}\n", line(&sample("a")))).unwrap();
        assert!(ResumeLog::open(Some(&path)).unwrap_err().contains("line 1"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
