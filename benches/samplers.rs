//! Our samplers against llama.cpp's built-ins, in the same process, both
//! through `llama_sampler_apply` (ours wrapped by `into_llama_sampler`).
//!
//! `cargo bench --bench samplers` prints markdown tables of the median time
//! per call on random LM-like logits (Normal(0, 3), ids in vocabulary
//! order, unsorted) for every sampler in `samplers::registry()` at run time
//! and for a full chain, each row also as a multiple of the one-pass floor
//! (one read and write of every candidate, timed within the row, taking
//! turns with the samplers). A second table runs top-p, typical and
//! min-p on a peaked array (Normal(0, 10)), where the window selection
//! must find a nucleus its subsample misses. On a machine with THP in
//! `madvise` mode those rows can swing up to 2x with how the work buffer is
//! paged (4 KiB pages: TLB misses after llama.cpp's calls);
//! `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` steadies them. A third table
//! (`-- model`) runs the samplers whose cost depends on the logits' shape,
//! and the default chains, on a model's own logits (the default model's
//! where it is cached, or `ENTROPIX_MODEL`'s).
//! `ENTROPIX_BENCH_QUICK=1` runs a short version.
//!
//! Method: each iteration copies the same unsorted array into a work buffer
//! (not timed), times one `llama_sampler_apply`, then accepts a token (not
//! timed): the one the sampler selected, or else the next of a fixed
//! pseudo-random sequence shared by both sides. Ours and llama.cpp's
//! alternate within each iteration, the order flipping every iteration
//! (A/B, B/A), so drift and cache effects hit both alike. Every sampler
//! starts with the same 64 accepted tokens of history. Medians over up to
//! `max_iters` iterations or `budget` of wall time per row.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use entropix_sampler::core::{Candidates, DrawStream, Sampler, TokenData};
use entropix_sampler::default_model;
use entropix_sampler::ffi::into_llama_sampler;
use entropix_sampler::samplers::registry;
use entropix_sampler::sys;

const SEED: u32 = 1234;
const VOCABS: [usize; 3] = [49_152, 151_936, 262_144];
/// DRY window for llama.cpp (its -1 needs a model's n_ctx_train; ours is
/// unbounded in the registry). Longer than any history here, so equal.
const DRY_LAST_N: i32 = 4096;

/// The chain: (stage name in our registry, llama.cpp's built-in).
const CHAIN: [&str; 7] = ["penalties", "dry", "top-k", "top-p", "min-p", "temp", "dist"];

/// The parameters given to llama.cpp's counterparts (our registry's
/// defaults, which follow llama.cpp's common defaults).
const LLAMA_PARAMS: &str = "temp 0.8; dist seed 1234; top-k 40; top-p 0.95 min_keep 1; min-p 0.05 min_keep 1; \
typical 0.95 min_keep 1; top-n-sigma 1.0; temp-ext (0.8, 0.5, 1.0); mirostat (n_vocab, seed 1234, tau 5, eta 0.1, m 100); \
mirostat-v2 (seed 1234, tau 5, eta 0.1); penalties (n_vocab, last_n 64, repeat 1.1, freq 0, present 0); \
dry (multiplier 0.8, base 1.75, allowed 2, last_n 4096, no breakers); logit-bias {0: -1.0, 1: +2.5}";

/// An owned `llama_sampler *`, freed on drop.
struct Smpl(*mut sys::llama_sampler);

impl Drop for Smpl {
    fn drop(&mut self) {
        // SAFETY: we own the pointer (chains own their stages).
        unsafe { sys::llama_sampler_free(self.0) }
    }
}

impl Smpl {
    fn new(ptr: *mut sys::llama_sampler) -> Self {
        assert!(!ptr.is_null(), "sampler constructor returned NULL");
        Smpl(ptr)
    }

    fn accept(&self, token: i32) {
        unsafe { sys::llama_sampler_accept(self.0, token) }
    }

    /// Copies `base` into `work` (not timed), applies (timed); returns the
    /// time and the selected token.
    fn apply_timed(&self, base: &[TokenData], work: &mut [TokenData]) -> (Duration, Option<i32>) {
        work.copy_from_slice(base);
        let mut arr = sys::llama_token_data_array {
            data: work.as_mut_ptr().cast::<sys::llama_token_data>(),
            size: work.len(),
            selected: -1,
            sorted: false,
        };
        let t0 = Instant::now();
        // SAFETY: `work` outlives the call; TokenData has llama_token_data's layout.
        unsafe { sys::llama_sampler_apply(self.0, &mut arr) };
        let dt = t0.elapsed();
        let selected = usize::try_from(arr.selected).ok().filter(|&i| i < arr.size);
        // SAFETY: llama.cpp leaves `size` valid elements at `data`.
        (dt, selected.map(|i| unsafe { (*arr.data.add(i)).id }))
    }
}

/// llama.cpp's built-in of the same name, with the parameters in
/// [`LLAMA_PARAMS`]; `None` when llama.cpp has no such sampler.
fn llama_counterpart(name: &str, n_vocab: usize) -> Option<Smpl> {
    let n = n_vocab as i32;
    // SAFETY: plain constructors; the logit-bias array is copied by llama.cpp.
    let ptr = unsafe {
        match name {
            "temp" => sys::llama_sampler_init_temp(0.8),
            "greedy" => sys::llama_sampler_init_greedy(),
            "dist" => sys::llama_sampler_init_dist(SEED),
            "top-k" => sys::llama_sampler_init_top_k(40),
            "top-p" => sys::llama_sampler_init_top_p(0.95, 1),
            "min-p" => sys::llama_sampler_init_min_p(0.05, 1),
            "typical" => sys::llama_sampler_init_typical(0.95, 1),
            "top-n-sigma" => sys::llama_sampler_init_top_n_sigma(1.0),
            "temp-ext" => sys::llama_sampler_init_temp_ext(0.8, 0.5, 1.0),
            "mirostat" => sys::llama_sampler_init_mirostat(n, SEED, 5.0, 0.1, 100),
            "mirostat-v2" => sys::llama_sampler_init_mirostat_v2(SEED, 5.0, 0.1),
            "penalties" => sys::llama_sampler_init_penalties(n, 64, 1.1, 0.0, 0.0),
            "dry" => sys::llama_sampler_init_dry(std::ptr::null(), 0.8, 1.75, 2, DRY_LAST_N, std::ptr::null_mut(), 0),
            "logit-bias" => {
                let biases = [sys::llama_logit_bias { token: 0, bias: -1.0 }, sys::llama_logit_bias { token: 1, bias: 2.5 }];
                sys::llama_sampler_init_logit_bias(n, biases.len() as i32, biases.as_ptr())
            }
            _ => return None,
        }
    };
    Some(Smpl::new(ptr))
}

/// Normal(0, 3) logits, ids 0..n in vocabulary order.
fn lm_logits(n: usize, seed: u64) -> Vec<TokenData> {
    let mut rng = DrawStream::from_state(seed);
    (0..n).map(|id| TokenData::new(id as i32, (rng.next_normal() * 3.0) as f32)).collect()
}

/// The standard deviation of [`peaked_logits`].
const PEAKED_SCALE: f64 = 10.0;
/// The samplers of the peaked table.
const PEAKED: [&str; 3] = ["top-p", "typical", "min-p"];

/// Normal(0, [`PEAKED_SCALE`]) logits, ids 0..n in vocabulary order: the
/// best few tokens hold most of the mass (at 151936, top-p 0.95 keeps a
/// handful).
fn peaked_logits(n: usize, seed: u64) -> Vec<TokenData> {
    let mut rng = DrawStream::from_state(seed);
    (0..n).map(|id| TokenData::new(id as i32, (rng.next_normal() * PEAKED_SCALE) as f32)).collect()
}

/// 64 tokens of history with repeats, so penalties and DRY have work: a
/// phrase every 16 tokens, random tokens between, and the history ends
/// with the phrase's first three tokens (DRY then penalises the fourth).
fn history() -> Vec<i32> {
    let phrase = [17, 4, 99, 23, 5, 311, 8, 42];
    let mut rng = DrawStream::from_state(99);
    (0..64)
        .map(|i| {
            let j = (i + 3) % 16;
            if j < 8 {
                phrase[j]
            } else {
                (rng.next_u64() % 512) as i32
            }
        })
        .collect()
}

struct Config {
    quick: bool,
    budget: Duration,
    min_iters: usize,
    max_iters: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Median µs per apply of `a` and (when given) `b`, alternating A/B.
fn time_pair(a: &Smpl, b: Option<&Smpl>, base: &[TokenData], cfg: &Config) -> (f64, Option<f64>, usize) {
    let sides: Vec<&Smpl> = std::iter::once(a).chain(b).collect();
    let (medians, n) = time_sides(&sides, base, cfg);
    (medians[0], medians.get(1).copied(), n)
}

/// Median µs per apply of each of `sides`, which take turns within every
/// iteration (the order reversed every other iteration); and the number of
/// iterations timed.
fn time_sides(sides: &[&Smpl], base: &[TokenData], cfg: &Config) -> (Vec<f64>, usize) {
    time_sides_over(sides, std::slice::from_ref(&base), cfg)
}

/// [`time_sides`] over several arrays of one length: iteration i gives
/// every side `bases[i % bases.len()]`.
fn time_sides_over<B: AsRef<[TokenData]>>(sides: &[&Smpl], bases: &[B], cfg: &Config) -> (Vec<f64>, usize) {
    let mut work = bases[0].as_ref().to_vec();
    let mut shared = DrawStream::from_state(7);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    let warmup = 2;
    let start = Instant::now();
    let mut it = 0;
    loop {
        let fallback = (shared.next_u64() % 512) as i32;
        for k in 0..sides.len() {
            // Flip the order every iteration.
            let side = if it % 2 == 0 { k } else { sides.len() - 1 - k };
            let (dt, selected) = sides[side].apply_timed(bases[it % bases.len()].as_ref(), &mut work);
            sides[side].accept(selected.unwrap_or(fallback));
            if it >= warmup {
                times[side].push(dt.as_secs_f64() * 1e6);
            }
        }
        it += 1;
        let done = it - warmup.min(it);
        if done >= cfg.min_iters && (start.elapsed() >= cfg.budget || done >= cfg.max_iters) {
            break;
        }
    }
    let n = times[0].len();
    (times.into_iter().map(median).collect(), n)
}

/// What one apply of our Rust sampler does to `base`: an error, a no-op,
/// or a change (for the notes).
fn effect_of_ours(s: &dyn entropix_sampler::core::Sampler, history: &[i32], base: &[TokenData]) -> Result<bool, String> {
    let mut s = s.box_clone();
    history.iter().for_each(|&t| s.accept(t));
    let mut data = base.to_vec();
    let mut c = Candidates::new(&mut data);
    s.apply(&mut c).map_err(|e| e.to_string())?;
    let changed = c.len() != base.len() || c.selected().is_some() || c.as_slice().iter().zip(base).any(|(x, y)| x.id != y.id || x.logit.to_bits() != y.logit.to_bits());
    Ok(changed)
}

fn effect_of_llama(s: &Smpl, history: &[i32], base: &[TokenData]) -> bool {
    history.iter().for_each(|&t| s.accept(t));
    let mut work = base.to_vec();
    let mut arr = sys::llama_token_data_array { data: work.as_mut_ptr().cast(), size: work.len(), selected: -1, sorted: false };
    unsafe { sys::llama_sampler_apply(s.0, &mut arr) };
    let out = unsafe { std::slice::from_raw_parts(arr.data.cast::<TokenData>(), arr.size) };
    arr.size != base.len() || arr.selected >= 0 || out.iter().zip(base).any(|(x, y)| x.id != y.id || x.logit.to_bits() != y.logit.to_bits())
}

/// A lower bound on any exact step of the adaptive Dirichlet sampler with
/// this crate's kernels: only the passes over the vocabulary that seed 003
/// cannot do without, each once. The logits out of the records (with
/// their maximum); the model's softmax moments at T = 1 (entropy,
/// varentropy); the weights at the tuned temperature with their moments
/// (temp_tune's final evaluation, as if its first guess were the root);
/// the normaliser at emwa_temp (the seed's cross-entropy) with the
/// weights normalised; the probabilities written back to the candidates.
/// Left out, though the sampler needs them too: the emwa_logp update and
/// its normaliser, temp_tune's other evaluations, the support and the
/// fit, the draw.
#[derive(Clone, Default)]
struct DirichletFloor {
    xs: Vec<f32>,
    w: Vec<f32>,
}

impl entropix_sampler::core::Sampler for DirichletFloor {
    fn name(&self) -> &'static str {
        "dirichlet-floor"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), entropix_sampler::core::SampleError> {
        use entropix_sampler::samplers::dirichlet::kernels;
        let cands = candidates.as_mut_slice();
        self.xs.resize(cands.len(), 0.0);
        let (max, _) = kernels::scan_candidates(cands, &mut self.xs);
        let unit = kernels::moments(&self.xs, None, max, 1.0);
        let tuned = kernels::moments_keep(&self.xs, max, 1.0 / 0.8, &mut self.w);
        let (_, at_temp) = kernels::scale_and_sum(&self.xs, max, (1.0 / tuned[0]) as f32, 1.0 / 0.9, &mut self.w);
        for (t, &q) in cands.iter_mut().zip(&self.w) {
            t.p = q;
        }
        std::hint::black_box((unit, at_temp));
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn entropix_sampler::core::Sampler> {
        Box::new(self.clone())
    }
}

/// The one-pass floor: reads and writes every candidate once (its `p` set
/// from its logit), what the host's fill of the candidate array costs and
/// less than any sampler that looks at the whole vocabulary can do. Each
/// row of the main table gives its ratio to this, timed in the same run.
#[derive(Clone, Default)]
struct OnePass;

impl entropix_sampler::core::Sampler for OnePass {
    fn name(&self) -> &'static str {
        "one-pass"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), entropix_sampler::core::SampleError> {
        for t in candidates.as_mut_slice().iter_mut() {
            t.p = t.logit;
        }
        std::hint::black_box(candidates.as_slice().as_ptr());
        Ok(())
    }

    fn box_clone(&self) -> Box<dyn entropix_sampler::core::Sampler> {
        Box::new(self.clone())
    }
}

/// llama.cpp's default chain: top-k 40, top-p 0.95, min-p 0.05, temp 0.8,
/// dist.
fn llama_default_chain() -> Smpl {
    let params = sys::llama_sampler_chain_params { no_perf: true };
    // SAFETY: plain constructors; the chain owns its stages.
    unsafe {
        let chain = Smpl::new(sys::llama_sampler_chain_init(params));
        sys::llama_sampler_chain_add(chain.0, sys::llama_sampler_init_top_k(40));
        sys::llama_sampler_chain_add(chain.0, sys::llama_sampler_init_top_p(0.95, 1));
        sys::llama_sampler_chain_add(chain.0, sys::llama_sampler_init_min_p(0.05, 1));
        sys::llama_sampler_chain_add(chain.0, sys::llama_sampler_init_temp(0.8));
        sys::llama_sampler_chain_add(chain.0, sys::llama_sampler_init_dist(SEED));
        chain
    }
}

/// Our stages of [`llama_default_chain`] (registry defaults), in a
/// `llama_sampler_chain`.
fn our_default_chain(reg: &[(&'static str, Box<dyn Sampler>)]) -> Smpl {
    let params = sys::llama_sampler_chain_params { no_perf: true };
    // SAFETY: a plain constructor; the chain owns its stages.
    let chain = Smpl::new(unsafe { sys::llama_sampler_chain_init(params) });
    for stage in ["top-k", "top-p", "min-p", "temp", "dist"] {
        let s = &reg.iter().find(|(n, _)| *n == stage).expect("every default-chain stage is registered").1;
        unsafe { sys::llama_sampler_chain_add(chain.0, into_llama_sampler(s.box_clone())) };
    }
    chain
}

/// The model whose logits the model table uses: `$ENTROPIX_MODEL`, else
/// the default model where the CLI cached it (the bench downloads
/// nothing).
fn bench_model() -> Option<PathBuf> {
    std::env::var_os("ENTROPIX_MODEL").map(PathBuf::from).or_else(|| Some(default_model::cached_model_path()).filter(|p| p.is_file()))
}

/// The prompts whose replies give the model table its arrays: prose, an
/// explanation, arithmetic, a list, code, a translation.
const MODEL_PROMPTS: [&str; 6] = [
    "Write a short story about a robot learning to paint.",
    "Explain how a refrigerator keeps food cold.",
    "What is 17 times 23? Show your steps.",
    "List five uses for a paperclip.",
    "Write a Python function that reverses a string.",
    "Translate 'good morning, how are you?' into French and Spanish.",
];
/// Steps of each reply recorded (fewer when the reply ends).
const MODEL_STEPS: usize = 16;
/// The single samplers of the model table.
const MODEL_ROWS: [&str; 8] = ["top-k", "top-p", "typical", "min-p", "top-n-sigma", "temp-ext", "dist", "mirostat-v2"];

/// The logits a model gives while it writes: for each of
/// [`MODEL_PROMPTS`] (in the model's chat template), those of the first
/// `steps` steps of its reply, as candidate arrays in vocabulary order. The
/// reply is sampled by our top-k 40, temperature 0.8 and dist (registry
/// defaults, seeded, so the arrays are the same every run on one build of
/// llama.cpp). Each context, with its ggml threads, is gone before the
/// next starts, and all of them before any timing.
fn model_logits(path: &Path, steps: usize) -> Result<Vec<Vec<TokenData>>, String> {
    use entropix_sampler::llama::{init_backend, set_log_level, ChatMessage, Context, ContextOptions, LogLevel, Model, ModelOptions};
    init_backend();
    set_log_level(LogLevel::Error);
    let model = Model::load(path, &ModelOptions::default()).map_err(|e| e.to_string())?;
    let reg = registry();
    let mut chain: Vec<Box<dyn Sampler>> = ["top-k", "temp", "dist"]
        .iter()
        .map(|name| reg.iter().find(|(n, _)| n == name).map(|(_, s)| s.box_clone()).ok_or(format!("{name} is not registered")))
        .collect::<Result<_, _>>()?;
    let mut arrays = Vec::new();
    for prompt in MODEL_PROMPTS {
        let mut ctx = Context::new(&model, &ContextOptions::default()).map_err(|e| e.to_string())?;
        let message = ChatMessage { role: "user".into(), content: prompt.into() };
        let text = model.apply_chat_template(&[message], true).map_err(|e| e.to_string())?;
        let tokens = model.tokenize(&text, true, true).map_err(|e| e.to_string())?;
        ctx.decode(&tokens, 0, 0, false).map_err(|e| e.to_string())?;
        for pos in (tokens.len() as i32..).take(steps) {
            let candidates: Vec<TokenData> = ctx.logits(-1).iter().enumerate().map(|(id, &l)| TokenData::new(id as i32, l)).collect();
            let mut work = candidates.clone();
            let mut view = Candidates::new(&mut work);
            for s in chain.iter_mut() {
                s.apply(&mut view).map_err(|e| e.to_string())?;
            }
            let token = view.selected_token().ok_or("the reply's chain selected no token")?;
            chain.iter_mut().for_each(|s| s.accept(token));
            arrays.push(candidates);
            if model.is_eog(token) {
                break;
            }
            ctx.decode(&[token], pos, 0, false).map_err(|e| e.to_string())?;
        }
    }
    Ok(arrays)
}

/// How many candidates our `name` (registry defaults) keeps of each array:
/// (median, smallest, largest).
fn survivors(reg: &[(&'static str, Box<dyn Sampler>)], name: &str, arrays: &[Vec<TokenData>]) -> Option<(usize, usize, usize)> {
    let sampler = &reg.iter().find(|(n, _)| *n == name)?.1;
    let mut kept: Vec<usize> = arrays
        .iter()
        .map(|a| {
            let mut s = sampler.box_clone();
            let mut work = a.clone();
            let mut view = Candidates::new(&mut work);
            s.apply(&mut view).map_or(a.len(), |_| view.len())
        })
        .collect();
    kept.sort_unstable();
    Some((kept[kept.len() / 2], kept[0], kept[kept.len() - 1]))
}

/// Times `ours`, `theirs` and a one-pass floor taking turns over `bases`
/// (see [`time_sides_over`]) and prints the row `label`: µs of both sides,
/// their ratio, ours over the floor, iterations.
fn print_row_with_floor<B: AsRef<[TokenData]>>(label: &str, n: usize, ours: &Smpl, theirs: &Smpl, bases: &[B], cfg: &Config) {
    let one = Smpl::new(into_llama_sampler(Box::new(OnePass)));
    let (medians, iters) = time_sides_over(&[ours, theirs, &one], bases, cfg);
    let [a, b, floor] = [medians[0], medians[1], medians[2]];
    println!("| {label} | {n} | {} | {} | {} | {:.1} | {iters} |", fmt_us(a), fmt_us(b), fmt_ratio(a / b), a / floor);
}

fn fmt_us(us: f64) -> String {
    if us >= 100.0 {
        format!("{us:.0}")
    } else if us >= 10.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.4}")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter may follow.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let quick = std::env::var("ENTROPIX_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let cfg = if quick {
        Config { quick, budget: Duration::from_millis(20), min_iters: 3, max_iters: 5 }
    } else {
        Config { quick, budget: Duration::from_millis(1200), min_iters: 15, max_iters: 1001 }
    };
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let hist = history();
    let reg = registry();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# entropix-sampler vs llama.cpp: median µs per `llama_sampler_apply`\n");
    println!(
        "{} run, {cores} CPUs. Each call: a fresh copy of the same unsorted Normal(0, 3) array (copy not timed), then \
         `llama_sampler_apply` (timed); ours wrapped with `into_llama_sampler`. A/B alternation, medians over up to {} \
         iterations or {:?} per row; 64 tokens of history accepted first, one token accepted after every call (not timed).\n",
        if cfg.quick { "QUICK" } else { "Full" },
        cfg.max_iters,
        cfg.budget
    );
    println!("llama.cpp parameters: {LLAMA_PARAMS}.\n");
    println!(
        "The one-pass floor: one read and write of every candidate, timed alone first at each size, and again within every row, \
         taking turns with the row's samplers; ours / floor divides by the row's own floor.\n"
    );
    println!("| sampler | n_vocab | ours µs | llama.cpp µs | ours / llama.cpp | ours / floor | iters | note |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for &n in &VOCABS {
        let base = lm_logits(n, 42 + n as u64);
        let one = Smpl::new(into_llama_sampler(Box::new(OnePass)));
        let (us, _, iters) = time_pair(&one, None, &base, &cfg);
        println!("| one-pass floor | {n} | {} | - | - | 1.0 | {iters} | |", fmt_us(us));
    }
    let bench_start = Instant::now();
    for (name, sampler) in &reg {
        if !wants(name) {
            continue;
        }
        for &n in &VOCABS {
            if cfg.quick && n != VOCABS[0] && !matches!(*name, "mirostat" | "mirostat-v2" | "top-k") {
                continue;
            }
            let base = lm_logits(n, 42 + n as u64);
            let mut note = String::new();
            let ours_effect = effect_of_ours(sampler.as_ref(), &hist, &base);
            let theirs_probe = llama_counterpart(name, n);
            match (&ours_effect, &theirs_probe) {
                (Err(e), _) => note = format!("our apply fails: {e}"),
                (Ok(ours_changes), Some(t)) => {
                    let theirs_changes = effect_of_llama(t, &hist, &base);
                    if *ours_changes != theirs_changes {
                        note = format!("params differ? ours {}, llama.cpp {}", if *ours_changes { "acts" } else { "no-op" }, if theirs_changes { "acts" } else { "no-op" });
                    } else if !ours_changes {
                        note = "no-op on this input (both)".into();
                    }
                }
                (Ok(false), None) => note = "no-op on this input".into(),
                _ => {}
            }
            drop(theirs_probe);
            let ours = Smpl::new(into_llama_sampler(sampler.box_clone()));
            let theirs = llama_counterpart(name, n);
            for &t in &hist {
                ours.accept(t);
                if let Some(t2) = &theirs {
                    t2.accept(t);
                }
            }
            // The row's own floor takes turns with both sides: its ratio
            // holds when the machine's speed drifts between rows.
            let one = Smpl::new(into_llama_sampler(Box::new(OnePass)));
            let sides: Vec<&Smpl> = std::iter::once(&ours).chain(theirs.as_ref()).chain(std::iter::once(&one)).collect();
            let (medians, iters) = time_sides(&sides, &base, &cfg);
            let (a, floor) = (medians[0], medians[medians.len() - 1]);
            let (b_s, r_s) = match theirs.as_ref().map(|_| medians[1]) {
                Some(b) => (fmt_us(b), fmt_ratio(a / b)),
                None => ("-".into(), "-".into()),
            };
            println!("| {name} | {n} | {} | {b_s} | {r_s} | {:.1} | {iters} | {note} |", fmt_us(a), a / floor);
        }
    }

    // The nucleus samplers on a peaked array: most of the mass in a few
    // tokens, as a model's logits often are. On the flat array above the
    // window's first estimate rarely misses; here it must find a head the
    // subsample skipped.
    if wants("peaked") {
        println!("\n## Peaked logits: Normal(0, {PEAKED_SCALE}) instead of Normal(0, 3)\n");
        println!("The samplers whose cost depends on where the nucleus ends, on an array whose few best tokens hold most of the mass.\n");
        println!("| sampler | n_vocab | ours µs | llama.cpp µs | ours / llama.cpp | ours / floor | iters |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for name in PEAKED {
            let Some((_, sampler)) = reg.iter().find(|(n, _)| *n == name) else { continue };
            for &n in &VOCABS {
                if cfg.quick && n != VOCABS[0] {
                    continue;
                }
                let base = peaked_logits(n, 77 + n as u64);
                let ours = Smpl::new(into_llama_sampler(sampler.box_clone()));
                let theirs = llama_counterpart(name, n).expect("every peaked row has a llama.cpp built-in");
                print_row_with_floor(name, n, &ours, &theirs, std::slice::from_ref(&base), &cfg);
            }
        }
    }

    // The full chain.
    if wants("chain") {
        let present: Vec<&str> = CHAIN.iter().copied().filter(|s| reg.iter().any(|(n, _)| n == s)).collect();
        let missing: Vec<&str> = CHAIN.iter().copied().filter(|s| !present.contains(s)).collect();
        println!("\n## Chain: {}\n", present.join(" -> "));
        if !missing.is_empty() {
            println!("Stages not in our registry yet, left out of both chains: {}.\n", missing.join(", "));
        }
        println!("Each stage ours (from the registry, defaults) vs llama.cpp's built-ins, each in a `llama_sampler_chain`; the chain accepts its own selected token after every call (not timed).\n");
        println!("| chain | n_vocab | ours µs | llama.cpp µs | ours / llama.cpp | ours / floor | iters |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for &n in &VOCABS {
            let base = lm_logits(n, 4242 + n as u64);
            let params = sys::llama_sampler_chain_params { no_perf: true };
            let ours = Smpl::new(unsafe { sys::llama_sampler_chain_init(params) });
            let theirs = Smpl::new(unsafe { sys::llama_sampler_chain_init(params) });
            for stage in &present {
                let s = &reg.iter().find(|(n, _)| n == stage).unwrap().1;
                let theirs_stage = llama_counterpart(stage, n).expect("every chain stage has a llama.cpp built-in");
                // The chains own their stages from here on.
                let theirs_ptr = theirs_stage.0;
                std::mem::forget(theirs_stage);
                unsafe {
                    sys::llama_sampler_chain_add(ours.0, into_llama_sampler(s.box_clone()));
                    sys::llama_sampler_chain_add(theirs.0, theirs_ptr);
                }
            }
            for &t in &hist {
                ours.accept(t);
                theirs.accept(t);
            }
            print_row_with_floor(&format!("{} stages", present.len()), n, &ours, &theirs, std::slice::from_ref(&base), &cfg);
        }
    }
    // The adaptive samplers against llama.cpp's default chain.
    if wants("default-chain") {
        println!("\n## Adaptive samplers vs llama.cpp's default chain (top-k 40, top-p 0.95, min-p 0.05, temp 0.8, dist)\n");
        println!(
            "Ours alone (metrics, strategy, sampling; no attention attached, so attention terms are neutral) vs llama.cpp's chain. \
             Entropix/four-mode scan kernel: {} (set ENTROPIX_SIMD=avx512|avx2|portable to choose).\n",
            entropix_sampler::core::logit_scan::ScanKernel::active().name()
        );
        println!("| sampler | n_vocab | ours µs | llama.cpp chain µs | ours / chain | iters |");
        println!("|---|---:|---:|---:|---:|---:|");
        let floor: Box<dyn entropix_sampler::core::Sampler> = Box::new(DirichletFloor::default());
        for name in ["entropix", "four-mode", "dirichlet", "dirichlet-floor"] {
            let s = if name == "dirichlet-floor" {
                &floor
            } else {
                let Some((_, s)) = reg.iter().find(|(n, _)| *n == name) else { continue };
                s
            };
            for &n in &VOCABS {
                let base = lm_logits(n, 777 + n as u64);
                let ours = Smpl::new(into_llama_sampler(s.box_clone()));
                let chain = llama_default_chain();
                let (a, b, iters) = time_pair(&ours, Some(&chain), &base, &cfg);
                let b = b.unwrap();
                println!("| {name} | {n} | {} | {} | {} | {iters} |", fmt_us(a), fmt_us(b), fmt_ratio(a / b));
            }
        }
    }
    if wants("model") {
        model_table(&reg, &hist, &cfg);
    }
    println!("\nTotal bench time {:.1} s.", bench_start.elapsed().as_secs_f64());
}

/// The model table: the samplers whose cost depends on the logits' shape,
/// and the default chains, on a model's own logits (see [`model_logits`]).
fn model_table(reg: &[(&'static str, Box<dyn Sampler>)], hist: &[i32], cfg: &Config) {
    println!("\n## Model logits\n");
    let Some(path) = bench_model() else {
        println!(
            "Skipped: no model. `cargo run --release --example cli -- fetch-model` caches the default one at {}; \
             ENTROPIX_MODEL=file.gguf picks another.",
            default_model::cached_model_path().display()
        );
        return;
    };
    let steps = if cfg.quick { 2 } else { MODEL_STEPS };
    let arrays = match model_logits(&path, steps) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => return println!("Skipped: {} gave no logits.", path.display()),
        Err(e) => return println!("Skipped: {}: {e}", path.display()),
    };
    let n = arrays[0].len();
    let name = path.file_name().map_or(path.display().to_string(), |f| f.to_string_lossy().into_owned());
    println!(
        "{} arrays of {n} logits from {name}: the first {steps} steps of its replies to {} prompts (chat template; reply \
         sampled by top-k 40, temp 0.8, dist), in vocabulary order, unsorted. Iteration i gives every side array i mod {}.",
        arrays.len(),
        MODEL_PROMPTS.len(),
        arrays.len()
    );
    for name in ["top-p", "typical", "min-p"] {
        if let Some((median, lo, hi)) = survivors(reg, name, &arrays) {
            print!(" {name} keeps a median {median} candidates ({lo} to {hi}).");
        }
    }
    println!("\n");
    println!("| sampler | n_vocab | ours µs | llama.cpp µs | ours / llama.cpp | ours / floor | iters |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let row = |label: &str, ours: &Smpl, theirs: &Smpl| print_row_with_floor(label, n, ours, theirs, &arrays, cfg);
    for name in MODEL_ROWS {
        let Some((_, sampler)) = reg.iter().find(|(n, _)| *n == name) else { continue };
        let ours = Smpl::new(into_llama_sampler(sampler.box_clone()));
        let theirs = llama_counterpart(name, n).expect("every model row has a llama.cpp built-in");
        for &t in hist {
            ours.accept(t);
            theirs.accept(t);
        }
        row(name, &ours, &theirs);
    }
    row("default chain (5 stages)", &our_default_chain(reg), &llama_default_chain());
    for name in ["entropix", "four-mode"] {
        let Some((_, sampler)) = reg.iter().find(|(n, _)| *n == name) else { continue };
        let ours = Smpl::new(into_llama_sampler(sampler.box_clone()));
        row(&format!("{name} vs llama.cpp's default chain"), &ours, &llama_default_chain());
    }
    println!(
        "\nEntropix/four-mode scan kernel: {}. On the 5-stage chain and the adaptive rows, llama.cpp's column is its default chain. \
         Mirostat v2's mu moves with every token it accepts: on a model's peaked distributions its own picks are less surprising \
         than tau, mu rises until every candidate passes the cut, and from then on both sides sort the whole vocabulary \
         (so that row grows with the iterations run).",
        entropix_sampler::core::logit_scan::ScanKernel::active().name()
    );
}
