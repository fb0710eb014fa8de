//! One pass over a candidate array that gives what an adaptive sampler
//! needs before it chooses a strategy: the largest logit, the softmax
//! moments at T = 1 (hence entropy and varentropy) and the `k` best
//! candidates.
//!
//! Entropy needs `exp` of every logit; everything a strategy does after
//! that (argmax, min-p, top-k, top-p, temperature, the draw) only needs the
//! few best candidates. Doing both in the same pass reads the array once:
//! the logits of a chunk of [`CHUNK`] candidates are copied to a contiguous
//! buffer (stride 12 bytes to 4), whose maximum updates the running
//! maximum, and whose exponentials (relative to the running maximum,
//! [`crate::core::fast_exp`]) go into f32 lane sums that are added to f64
//! totals once per pair of chunks, computed while the next pair is
//! copied. When the running maximum rises, the totals are moved to the new
//! reference exactly (see [`Moments::rebase`]). The k best are selected after the
//! pass from the chunks' maxima where k is small beside the number of
//! chunks (the few chunks that can hold them are read again), and
//! otherwise during it: the blocks that beat the k-th best so far feed a
//! small selection buffer.
//! On x86-64 the kernels are written with AVX-512 or AVX2 + FMA intrinsics
//! and chosen at run time ([`ScanKernel`]); elsewhere plain Rust compiles
//! for the baseline.

use super::fast_exp::{exp_in_range, EXP_FLOOR};
use super::radix::{desc_key, logit_of_desc_key};
use super::token::TokenData;

/// Candidates per chunk: the buffer (1 KiB) stays in L1.
pub(crate) const CHUNK: usize = 256;
/// Candidates per top-k mask: bit j of a block's mask says whether
/// candidate j beat the k-th best so far when the chunk was gathered.
const BLOCK: usize = 16;
/// Masks per chunk.
const BLOCKS: usize = CHUNK / BLOCK;
/// Candidates per step of the scan with moments: two chunks, whose
/// moments are summed in one set of lane sums (with one chunk a step,
/// the work per step, its sums reduced and added to the totals, took
/// 3-6% of the scan).
const PAIR: usize = 2 * CHUNK;
/// f32 lanes of the moment sums.
const LANES: usize = 8;

/// Sums S0 = sum e^z, S1 = sum e^z z, S2 = sum e^z z^2 with
/// z = logit - `reference` (nats), over the logits above -inf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// The logit the exponents are relative to (the largest logit once the
    /// scan is over); -inf before any finite logit.
    pub reference: f32,
    /// sum e^z (dimensionless, >= 1 once `reference` is the maximum).
    pub s0: f64,
    /// sum e^z z (nats, <= 0).
    pub s1: f64,
    /// sum e^z z^2 (nats², >= 0).
    pub s2: f64,
}

impl Moments {
    const EMPTY: Moments = Moments { reference: f32::NEG_INFINITY, s0: 0.0, s1: 0.0, s2: 0.0 };

    /// Moves the sums to a higher reference r' = r + d (d > 0): every z
    /// becomes z - d, so S0' = e^-d S0, S1' = e^-d (S1 - d S0) and
    /// S2' = e^-d (S2 - 2 d S1 + d^2 S0). Every term is of one sign (z <= 0),
    /// so nothing cancels.
    fn rebase(&mut self, reference: f32) {
        if self.reference > f32::NEG_INFINITY {
            let d = reference as f64 - self.reference as f64;
            let scale = (-d).exp();
            let (s0, s1, s2) = (self.s0, self.s1, self.s2);
            self.s0 = scale * s0;
            self.s1 = scale * (s1 - d * s0);
            self.s2 = scale * (s2 - 2.0 * d * s1 + d * d * s0);
        }
        self.reference = reference;
    }

    /// Entropy H = ln S0 - S1/S0 of softmax(logits), in nats (>= 0).
    pub fn entropy_nats(&self) -> f64 {
        (self.s0.ln() - self.s1 / self.s0).max(0.0)
    }

    /// Varentropy V = S2/S0 - (S1/S0)^2 of softmax(logits), in nats² (>= 0).
    pub fn varentropy_nats2(&self) -> f64 {
        let mean = self.s1 / self.s0;
        (self.s2 / self.s0 - mean * mean).max(0.0)
    }

    /// ln sum exp(logit) over the finite logits, nats.
    pub fn log_sum_exp(&self) -> f64 {
        self.reference as f64 + self.s0.ln()
    }
}

/// What one pass found. Reused between steps: [`scan_logits`] clears it.
#[derive(Debug, Clone, Default)]
pub struct LogitScan {
    /// Largest logit, NaN ignored: -inf when nothing is above -inf, +inf
    /// when some logit is +inf (the scan then stops early: `moments` and
    /// `best` are incomplete, use the slow paths).
    pub max: f32,
    /// Softmax moments relative to `max` (valid when `max` is finite);
    /// `None` after [`scan_top_k`], which computes none.
    pub moments: Option<Moments>,
    /// The best candidates as (index in the array, logit), by logit
    /// descending then index ascending (so `best[0]` is the first argmax),
    /// at most `k` of them, never -inf or NaN.
    pub best: Vec<(u32, f32)>,
    /// The `k` the scan was asked for.
    pub k: usize,
    /// Number of logits above -inf (NaN excluded) when the scan was asked
    /// to count them ([`scan_logits_counting`]), else `None`; complete only
    /// when `max` is not +inf.
    pub finite: Option<usize>,
}

impl LogitScan {
    /// Whether `best` holds the top `n` candidates of the array (in the
    /// order above), i.e. whether a top-n or any filter that keeps a
    /// subset of them can be computed from `best` alone: true when
    /// `n <= k`, or when `best` is shorter than `k` (then it holds every
    /// logit above -inf).
    pub fn covers(&self, n: usize) -> bool {
        self.max != f32::INFINITY && (n <= self.k || self.best.len() < self.k)
    }
}

/// Scans `data` once into `out` (see the module docs), keeping the `k`
/// best candidates (`k == 0`: none), with the kernel [`ScanKernel::active`]
/// picks. Arrays longer than `u32::MAX` are out of contract.
pub fn scan_logits(data: &[TokenData], k: usize, out: &mut LogitScan) {
    scan_logits_with(ScanKernel::active(), data, k, false, out);
}

/// [`scan_logits`] that also counts the logits above -inf
/// ([`LogitScan::finite`]), for a few more instructions per chunk.
pub fn scan_logits_counting(data: &[TokenData], k: usize, out: &mut LogitScan) {
    scan_logits_with(ScanKernel::active(), data, k, true, out);
}

/// The instruction sets the scan can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKernel {
    /// x86-64 AVX-512F intrinsics (16 lanes); the CPU also has what
    /// [`ScanKernel::Avx2`] needs, which the AVX-512 kernels use too.
    Avx512,
    /// x86-64 AVX2 and FMA intrinsics (8 lanes), and POPCNT for the
    /// counts of mask bits (without it each is a dozen instructions).
    Avx2,
    /// Plain Rust for the target's baseline (SSE2 on x86-64).
    Portable,
}

impl ScanKernel {
    /// Every kernel this CPU can run, fastest first.
    pub fn available() -> Vec<ScanKernel> {
        [ScanKernel::Avx512, ScanKernel::Avx2, ScanKernel::Portable].into_iter().filter(|k| k.runnable()).collect()
    }

    /// Whether this CPU has the instructions the kernel needs.
    pub fn runnable(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            ScanKernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && ScanKernel::Avx2.runnable(),
            #[cfg(target_arch = "x86_64")]
            ScanKernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("popcnt")
            }
            ScanKernel::Portable => true,
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernel that runs when `self` is asked for: itself when
    /// [`ScanKernel::runnable`], else [`ScanKernel::Portable`].
    pub fn usable(self) -> ScanKernel {
        if self.runnable() {
            self
        } else {
            ScanKernel::Portable
        }
    }

    /// The kernel [`scan_logits`] uses: the fastest available, unless the
    /// environment variable `ENTROPIX_SIMD` names another available one
    /// (`avx512`, `avx2` or `portable`; for benchmarks and tests). Decided
    /// once per process.
    pub fn active() -> ScanKernel {
        static ACTIVE: std::sync::OnceLock<ScanKernel> = std::sync::OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let available = Self::available();
            let wanted = std::env::var("ENTROPIX_SIMD").ok().and_then(|v| Self::from_name(&v));
            wanted.filter(|k| available.contains(k)).unwrap_or(available[0])
        })
    }

    /// `"avx512"`, `"avx2"` or `"portable"`.
    pub fn name(self) -> &'static str {
        match self {
            ScanKernel::Avx512 => "avx512",
            ScanKernel::Avx2 => "avx2",
            ScanKernel::Portable => "portable",
        }
    }

    /// Inverse of [`ScanKernel::name`].
    pub fn from_name(name: &str) -> Option<ScanKernel> {
        [ScanKernel::Avx512, ScanKernel::Avx2, ScanKernel::Portable].into_iter().find(|k| k.name() == name)
    }
}

/// [`scan_logits`] (or, with `count`, [`scan_logits_counting`]) with a
/// given kernel; one this CPU cannot run (not in [`ScanKernel::available`])
/// falls back to [`ScanKernel::Portable`].
pub fn scan_logits_with(kernel: ScanKernel, data: &[TokenData], k: usize, count: bool, out: &mut LogitScan) {
    match (kernel.usable(), count) {
        // SAFETY (all four): `usable` checked that the CPU has the features
        // the functions are compiled for.
        #[cfg(target_arch = "x86_64")]
        (ScanKernel::Avx512, true) => unsafe { avx512::scan::<true, true, 3>(data, k, out) },
        #[cfg(target_arch = "x86_64")]
        (ScanKernel::Avx512, false) => unsafe { avx512::scan::<false, true, 3>(data, k, out) },
        #[cfg(target_arch = "x86_64")]
        (ScanKernel::Avx2, true) => unsafe { avx2::scan::<true, true, 3>(data, k, out) },
        #[cfg(target_arch = "x86_64")]
        (ScanKernel::Avx2, false) => unsafe { avx2::scan::<false, true, 3>(data, k, out) },
        (_, true) => scan_body::<Portable, true, true, 3>(data, k, out),
        (_, false) => scan_body::<Portable, false, true, 3>(data, k, out),
    }
}

/// From this many candidates the chunked passes of top-k, min-p and greedy
/// ([`scan_top_k`], [`scan_near_max`], [`scan_argmax`]) replace their
/// one-by-one loops (shorter arrays keep the loops).
pub(crate) const SCAN_MIN_N: usize = 1024;

/// The `k` best candidates and the largest logit into `out`, without the
/// exponentials (`out.moments` is `None`): the selection of top-k, on the
/// kernel [`ScanKernel::active`] picks. The chunks' logits come out of the
/// records and are compared with the k-th best so far in SIMD registers;
/// a one-by-one loop over the records (about 2.8 cycles a candidate)
/// compared each with it in turn.
pub fn scan_top_k(data: &[TokenData], k: usize, out: &mut LogitScan) {
    scan_top_k_with(ScanKernel::active(), data, k, out);
}

/// [`scan_top_k`] with a given kernel (one this CPU cannot run falls back
/// to [`ScanKernel::Portable`]).
pub fn scan_top_k_with(kernel: ScanKernel, data: &[TokenData], k: usize, out: &mut LogitScan) {
    match kernel.usable() {
        // SAFETY (both): `usable` checked that the CPU has the features.
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { avx512::scan::<false, true, 0>(data, k, out) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { avx2::scan::<false, true, 0>(data, k, out) },
        _ => scan_body::<Portable, false, true, 0>(data, k, out),
    }
}

/// The indices, ascending, of the logits at or above `max + offset` (that
/// sum rounded to f32; `max` the largest logit, NaN ignored; `offset`
/// finite and at most 0) into `out`, and `max`: -inf (`out` empty) when no
/// logit is above -inf, +inf (`out` incomplete) when one is +inf. One pass
/// on the kernel [`ScanKernel::active`] picks, comparing a register of
/// logits at a time with the running maximum's threshold: min-p's
/// selection.
pub(crate) fn scan_near_max(data: &[TokenData], offset: f32, out: &mut Vec<u32>) -> f32 {
    near_max_with(ScanKernel::active(), data, offset, out)
}

/// [`scan_near_max`] with a given kernel (one this CPU cannot run falls
/// back to [`ScanKernel::Portable`]).
fn near_max_with(kernel: ScanKernel, data: &[TokenData], offset: f32, out: &mut Vec<u32>) -> f32 {
    match kernel.usable() {
        // SAFETY (both): `usable` checked that the CPU has the features.
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { avx512::near_max(data, offset, out) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { avx2::near_max(data, offset, out) },
        _ => near_max_body::<Portable>(data, offset, out),
    }
}

/// [`scan_near_max`] on kernel `K`: the gather marks the logits above the
/// largest float under the running threshold (those at or above it), the
/// marked ones are checked against the threshold of the chunk's own
/// maximum, and the few kept are checked once more against the final one.
#[inline(always)]
fn near_max_body<K: ChunkKernel>(data: &[TokenData], offset: f32, out: &mut Vec<u32>) -> f32 {
    out.clear();
    let mut buf = [f32::NEG_INFINITY; CHUNK];
    let mut above = [0u16; BLOCKS];
    let mut max = f32::NEG_INFINITY;
    let mut threshold = f32::NEG_INFINITY;
    // Before any finite logit: everything above -inf is marked.
    let mut below = f32::NEG_INFINITY;
    for (c, chunk) in data.chunks(CHUNK).enumerate() {
        let (chunk_max, _) = K::gather::<false, true>(chunk, &mut buf, below, &mut above);
        if chunk_max == f32::INFINITY {
            return f32::INFINITY;
        }
        // The masks are built only when the chunk's maximum beats `below`.
        if chunk_max > below {
            if chunk_max > max {
                max = chunk_max;
                threshold = max + offset;
                below = threshold.next_down();
            }
            for_each_marked(&above, |i| {
                if buf[i] >= threshold {
                    out.push((c * CHUNK + i) as u32);
                }
            });
        }
    }
    out.retain(|&i| data[i as usize].logit >= threshold);
    max
}

/// The index of the first largest logit (NaN ignored, +inf the largest),
/// `None` when no logit is above -inf: the chunks' maxima from the scan's
/// gather on the kernel [`ScanKernel::active`] picks, then the first
/// position of the maximum in the first chunk that holds it (greedy: 17.0
/// -> 5.9 us at 49152 with AVX-512, 11.3 with the portable kernel, against
/// one pass that tracked eight lanes' maxima and indices).
pub(crate) fn scan_argmax(data: &[TokenData]) -> Option<usize> {
    argmax_with(ScanKernel::active(), data)
}

/// [`scan_argmax`] with a given kernel (one this CPU cannot run falls back
/// to [`ScanKernel::Portable`]).
fn argmax_with(kernel: ScanKernel, data: &[TokenData]) -> Option<usize> {
    match kernel.usable() {
        // SAFETY (both): `usable` checked that the CPU has the features.
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { avx512::argmax(data) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { avx2::argmax(data) },
        _ => argmax_body::<Portable>(data),
    }
}

/// Calls `f` with each chunk position whose bit `above` sets (see
/// [`ChunkKernel::gather`]), ascending. (A closure: the same loop as an
/// iterator of `flat_map` made min-p's pass 6% slower.)
#[inline(always)]
fn for_each_marked(above: &[u16; BLOCKS], mut f: impl FnMut(usize)) {
    for (b, &mask) in above.iter().enumerate() {
        let mut bits = mask;
        while bits != 0 {
            f(b * BLOCK + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

/// [`scan_argmax`] on kernel `K`.
#[inline(always)]
fn argmax_body<K: ChunkKernel>(data: &[TokenData]) -> Option<usize> {
    let mut buf = [f32::NEG_INFINITY; CHUNK];
    let mut above = [0u16; BLOCKS];
    let (mut best, mut best_chunk) = (f32::NEG_INFINITY, 0);
    for (c, chunk) in data.chunks(CHUNK).enumerate() {
        let (chunk_max, _) = K::gather::<false, false>(chunk, &mut buf, f32::INFINITY, &mut above);
        // Strictly greater: among equal maxima the earlier chunk stays.
        if chunk_max > best {
            best = chunk_max;
            best_chunk = c;
        }
    }
    if best == f32::NEG_INFINITY {
        return None;
    }
    // The chunk holds its maximum, so the search ends inside it.
    let start = best_chunk * CHUNK;
    data[start..].iter().position(|t| t.logit == best).map(|i| start + i)
}

/// The largest logit and the moments up to `ORDER` (S0; with 2 also S1;
/// with 3 also S2; the others left 0) into `out`, without the best
/// candidates (`k` = 0) or the count: the scan of the filters that only
/// need the softmax's sum or mean (top-p, typical, temp-ext), a few
/// instructions per register fewer than the full scan, on the kernel
/// [`ScanKernel::active`] picks.
pub(crate) fn scan_moments<const ORDER: usize>(data: &[TokenData], out: &mut LogitScan) {
    scan_moments_with::<ORDER>(ScanKernel::active(), data, out);
}

/// [`scan_moments`] with a given kernel (one this CPU cannot run falls
/// back to [`ScanKernel::Portable`]).
fn scan_moments_with<const ORDER: usize>(kernel: ScanKernel, data: &[TokenData], out: &mut LogitScan) {
    match kernel.usable() {
        // SAFETY (both): `usable` checked that the CPU has the features.
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { avx512::scan::<false, false, ORDER>(data, 0, out) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { avx2::scan::<false, false, ORDER>(data, 0, out) },
        _ => scan_body::<Portable, false, false, ORDER>(data, 0, out),
    }
}

/// The kernels of the scan: a chunk's (or a pair's) gather, masks and
/// moments.
trait ChunkKernel {
    /// Copies the chunk's logits into `buf` (the rest of `buf` -inf; a NaN
    /// may stay NaN or become -inf: the moments weigh both alike, and both
    /// fail every comparison below), sets bit j of `above[b]` when
    /// `buf[16 b + j] > threshold`, and returns the maximum (NaN ignored)
    /// and, when `COUNT`, the number above -inf (else 0).
    /// The masks are only set with `TOP` and when the maximum beats the
    /// threshold (the only chunks whose masks the scan reads); otherwise
    /// `above` is left as it is.
    fn gather<const COUNT: bool, const TOP: bool>(chunk: &[TokenData], buf: &mut [f32; CHUNK], threshold: f32, above: &mut [u16; BLOCKS]) -> (f32, u32);
    /// (S0, S1, S2) of the pair's logits in `buf` relative to `reference`
    /// (>= every value). With `ONES` (a pair that holds the reference),
    /// the weights of values equal to the reference (exactly 1) are
    /// counted apart from the f32 lane sums: a lane holding a 1 would round
    /// away the small weights added to it, which are all of S0 - 1, hence of
    /// the entropy, near a one-hot distribution. Values 87 nats or more below the
    /// reference (-inf and NaN included) weigh 1.6e-38 instead of 0
    /// ([`crate::core::fast_exp::exp_in_range`] on the portable kernel,
    /// [`crate::core::fast_exp::exp_table_in_range`] on the AVX2 and
    /// AVX-512 ones): nothing beside the 1.
    /// S1 only when `ORDER >= 2`, S2 only when `ORDER >= 3` (else 0).
    fn pair_moments<const ONES: bool, const ORDER: usize>(buf: &[f32; PAIR], reference: f32) -> (f64, f64, f64);
    /// Sets bit j of `above[b]` when `buf[16 b + j] > threshold` (the
    /// masks of [`Self::gather`], for a buffer gathered without them).
    fn marks(buf: &[f32; CHUNK], threshold: f32, above: &mut [u16; BLOCKS]);
    /// Sets bit j of `above[b]` when the logit of `chunk[16 b + j]` is
    /// above `threshold` (clear past the chunk's end): the masks straight
    /// from the records, for a chunk read again.
    #[inline(always)]
    fn marks_of_records(chunk: &[TokenData], threshold: f32, above: &mut [u16; BLOCKS]) {
        above.fill(0);
        for (mask, block) in above.iter_mut().zip(chunk.chunks(BLOCK)) {
            *mask = block.iter().enumerate().fold(0u16, |m, (j, t)| m | (u16::from(t.logit > threshold) << j));
        }
    }
    /// [`Self::gather`] of the two chunks of `pair` (at most [`PAIR`]
    /// records) into the halves of `buf`, without masks: each chunk's
    /// maximum (-inf for one past the end) and the count.
    #[inline(always)]
    fn gather_pair<const COUNT: bool>(pair: &[TokenData], buf: &mut [f32; PAIR]) -> ([f32; 2], u32) {
        let mut unused = [0u16; BLOCKS];
        let (first, second) = pair.split_at(pair.len().min(CHUNK));
        let (a, b) = halves_mut(buf);
        let (m0, f0) = Self::gather::<COUNT, false>(first, a, f32::INFINITY, &mut unused);
        let (m1, f1) = Self::gather::<COUNT, false>(second, b, f32::INFINITY, &mut unused);
        ([m0, m1], f0 + f1)
    }
    /// [`Self::pair_moments`] of `cur` and [`Self::gather_pair`] of `next`
    /// into `next_buf`, in one loop where the kernel interleaves them: the
    /// gather waits on memory, the moments on the floating-point units,
    /// and a loop of each in turn leaves the other idle.
    #[inline(always)]
    fn gather_pair_with_moments<const COUNT: bool, const ONES: bool, const ORDER: usize>(
        next: &[TokenData],
        next_buf: &mut [f32; PAIR],
        cur: &[f32; PAIR],
        reference: f32,
    ) -> (([f32; 2], u32), (f64, f64, f64)) {
        let m = Self::pair_moments::<ONES, ORDER>(cur, reference);
        (Self::gather_pair::<COUNT>(next, next_buf), m)
    }
}

/// The two chunks of a pair's buffer, mutable.
#[inline(always)]
fn halves_mut(buf: &mut [f32; PAIR]) -> (&mut [f32; CHUNK], &mut [f32; CHUNK]) {
    let (a, b) = buf.split_at_mut(CHUNK);
    (a.try_into().unwrap(), b.try_into().unwrap())
}

/// The steps the AVX-512 and AVX2 kernels are made of, and the loops of
/// [`ChunkKernel`] they share (x86-64 only).
#[cfg(target_arch = "x86_64")]
mod simd_steps {
    use super::{ChunkKernel, Portable, BLOCKS, CHUNK, PAIR};
    use crate::core::token::TokenData;

    /// A SIMD kernel's running gather over one chunk, [`Self::WIDTH`]
    /// records a step, and its moments ([`Self::Sums`]): the steps the
    /// shared loops of the SIMD kernels ([`simd_gather_chunk`],
    /// [`simd_pair_moments`], [`simd_gather_pair_with_moments`]) are made of.
    /// Every method needs the kernel's target features.
    pub(super) trait GatherSteps {
        /// Records (and logits) per step.
        const WIDTH: usize;
        /// Whether a step of [`simd_gather_pair_with_moments`] adds its
        /// moments before it gathers: the exponential's long chain first
        /// helps AVX2 (its scan of 49152 logits 15.8 -> 15.0 us), not AVX-512
        /// (neutral, and top-p's order-1 scan 1 us slower).
        const MOMENTS_FIRST: bool;
        type Sums: SumSteps;
        unsafe fn new() -> Self;
        /// Reads the logits of the `WIDTH` records at `src` into `dst`,
        /// folding them into the maximum and, with `COUNT`, the count.
        unsafe fn step<const COUNT: bool>(&mut self, src: *const f32, dst: *mut f32);
        /// The chunk's maximum and count.
        unsafe fn finish(self) -> (f32, u32);
    }

    /// A SIMD kernel's f32 lane sums of the moments (see
    /// [`ChunkKernel::pair_moments`]), one register of values a step.
    pub(super) trait SumSteps {
        unsafe fn new(reference: f32) -> Self;
        /// Adds the terms of the values at `src`.
        unsafe fn add<const ONES: bool, const ORDER: usize>(&mut self, src: *const f32);
        /// (S0, S1, S2).
        unsafe fn finish(self) -> (f64, f64, f64);
    }

    /// Gathers the [`CHUNK`] records at `src` into `dst`: the chunk's
    /// maximum and count. SAFETY: the kernel's features are enabled; `src`
    /// holds a chunk of records and `dst` room for a chunk of logits.
    #[inline(always)]
    unsafe fn simd_gather_chunk<G: GatherSteps, const COUNT: bool>(src: *const TokenData, dst: *mut f32) -> (f32, u32) {
        let mut g = G::new();
        for v in 0..CHUNK / G::WIDTH {
            g.step::<COUNT>(src.add(G::WIDTH * v).cast(), dst.add(G::WIDTH * v));
        }
        g.finish()
    }

    /// [`ChunkKernel::gather`] of a SIMD kernel `K` made of the steps `G`
    /// (a chunk shorter than [`CHUNK`] goes to the portable gather). SAFETY:
    /// `G`'s features are enabled.
    #[inline(always)]
    pub(super) unsafe fn simd_gather<K: ChunkKernel, G: GatherSteps, const COUNT: bool, const TOP: bool>(
        chunk: &[TokenData],
        buf: &mut [f32; CHUNK],
        threshold: f32,
        above: &mut [u16; BLOCKS],
    ) -> (f32, u32) {
        if chunk.len() != CHUNK {
            return Portable::gather::<COUNT, TOP>(chunk, buf, threshold, above);
        }
        let (max, finite) = simd_gather_chunk::<G, COUNT>(chunk.as_ptr(), buf.as_mut_ptr());
        // The caller reads the masks only when the maximum beats the
        // threshold, which stops happening early in the array: build them only
        // then, from the buffer (in L1).
        if TOP && max > threshold {
            K::marks(buf, threshold, above);
        }
        (max, finite)
    }

    /// [`ChunkKernel::gather_pair`] of a SIMD kernel made of the steps `G` (a
    /// pair shorter than [`PAIR`] goes to the portable gather). SAFETY: `G`'s
    /// features are enabled.
    #[inline(always)]
    pub(super) unsafe fn simd_gather_pair<G: GatherSteps, const COUNT: bool>(pair: &[TokenData], buf: &mut [f32; PAIR]) -> ([f32; 2], u32) {
        if pair.len() != PAIR {
            return Portable::gather_pair::<COUNT>(pair, buf);
        }
        let (m0, f0) = simd_gather_chunk::<G, COUNT>(pair.as_ptr(), buf.as_mut_ptr());
        let (m1, f1) = simd_gather_chunk::<G, COUNT>(pair.as_ptr().add(CHUNK), buf.as_mut_ptr().add(CHUNK));
        ([m0, m1], f0 + f1)
    }

    /// [`ChunkKernel::pair_moments`] of a SIMD kernel made of the steps `G`.
    /// SAFETY: `G`'s features are enabled.
    #[inline(always)]
    pub(super) unsafe fn simd_pair_moments<G: GatherSteps, const ONES: bool, const ORDER: usize>(buf: &[f32; PAIR], reference: f32) -> (f64, f64, f64) {
        let mut sums = G::Sums::new(reference);
        for v in 0..PAIR / G::WIDTH {
            sums.add::<ONES, ORDER>(buf.as_ptr().add(G::WIDTH * v));
        }
        sums.finish()
    }

    /// [`ChunkKernel::gather_pair_with_moments`] of a SIMD kernel made of the
    /// steps `G`, in one loop (a pair of records shorter than [`PAIR`] is
    /// gathered by the portable gather after the moments). SAFETY: `G`'s
    /// features are enabled.
    #[inline(always)]
    pub(super) unsafe fn simd_gather_pair_with_moments<G: GatherSteps, const COUNT: bool, const ONES: bool, const ORDER: usize>(
        next: &[TokenData],
        next_buf: &mut [f32; PAIR],
        cur: &[f32; PAIR],
        reference: f32,
    ) -> (([f32; 2], u32), (f64, f64, f64)) {
        if next.len() != PAIR {
            let sums = simd_pair_moments::<G, ONES, ORDER>(cur, reference);
            return (Portable::gather_pair::<COUNT>(next, next_buf), sums);
        }
        let (next, next_buf, cur) = (next.as_ptr(), next_buf.as_mut_ptr(), cur.as_ptr());
        let mut sums = G::Sums::new(reference);
        let (mut maxima, mut finite) = ([0.0; 2], 0);
        for (h, m) in maxima.iter_mut().enumerate() {
            let mut g = G::new();
            for v in h * CHUNK / G::WIDTH..(h + 1) * CHUNK / G::WIDTH {
                if G::MOMENTS_FIRST {
                    sums.add::<ONES, ORDER>(cur.add(G::WIDTH * v));
                }
                g.step::<COUNT>(next.add(G::WIDTH * v).cast(), next_buf.add(G::WIDTH * v));
                if !G::MOMENTS_FIRST {
                    sums.add::<ONES, ORDER>(cur.add(G::WIDTH * v));
                }
            }
            let (max, count) = g.finish();
            (*m, finite) = (max, finite + count);
        }
        ((maxima, finite), sums.finish())
    }
}

#[inline(always)]
fn scan_body<K: ChunkKernel, const COUNT: bool, const TOP: bool, const ORDER: usize>(data: &[TokenData], k: usize, out: &mut LogitScan) {
    if TOP && k > 0 && k * DEFER_RATIO <= data.len().div_ceil(CHUNK) {
        scan_chunks::<K, COUNT, TOP, ORDER>(data, k, Select::FromMaxima, out);
        return;
    }
    if TOP && k > 0 {
        if let Some(guess) = threshold_guess(data, k) {
            scan_chunks::<K, COUNT, TOP, ORDER>(data, k, Select::Running(guess), out);
            if out.max == f32::INFINITY || out.best.len() >= k {
                return;
            }
            // Fewer than k above the guess (a few in a million arrays):
            // again from -inf, the best then complete.
        }
    }
    scan_chunks::<K, COUNT, TOP, ORDER>(data, k, Select::Running(f32::NEG_INFINITY), out);
}

/// The top-k selection is left until after the scan (from the chunks'
/// maxima, [`select_from_maxima`]) when the array has at least this many
/// chunks per candidate kept: the selection then reads a quarter of the
/// array again at most, where the running one checks every chunk whose
/// maximum beats its threshold (most of them early on) and selects again
/// each time its buffer fills.
const DEFER_RATIO: usize = 4;

/// How [`scan_chunks`] selects the k best.
#[derive(Clone, Copy)]
enum Select {
    /// While it scans, from logits strictly above the given threshold.
    Running(f32),
    /// After the scan, from the chunks' maxima.
    FromMaxima,
}

thread_local! {
    /// The chunks' maxima (in array order, then as keys to select from),
    /// reused across scans.
    static CHUNK_MAXIMA: std::cell::Cell<(Vec<f32>, Vec<u32>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// Fills `top` with the best `top.k` candidates of `data` given the
/// maxima of its chunks: the k-th largest maximum t is at most the k-th
/// largest logit (k chunks hold a logit at or above it), so the best k
/// are among the logits at or above t, which lie in the chunks whose
/// maximum reaches t (k of them, but for ties). On Normal(0, 3) logits,
/// 49152 of them and k = 27, about 29 logits reach t.
#[inline(always)]
fn select_from_maxima<K: ChunkKernel>(data: &[TokenData], maxima: &[f32], keys: &mut Vec<u32>, top: &mut TopBuffer) {
    let k = top.k;
    debug_assert!(k > 0 && k <= maxima.len());
    keys.clear();
    keys.extend(maxima.iter().map(|&m| desc_key(m)));
    let (_, &mut kth, _) = keys.select_nth_unstable(k - 1);
    // Logits above `below` are those at or above t (-0 reads as +0, which
    // admits the same logits); at t = -inf, those above -inf.
    let below = logit_of_desc_key(kth).next_down();
    top.threshold = below;
    let mut above = [0u16; BLOCKS];
    for (c, (chunk, &m)) in data.chunks(CHUNK).zip(maxima).enumerate() {
        if m > below {
            K::marks_of_records(chunk, below, &mut above);
            for_each_marked(&above, |i| top.offer(chunk[i].logit, c * CHUNK + i));
        }
    }
}

/// Logits read for [`threshold_guess`], spread over the array.
const GUESS_SAMPLE: usize = 512;
/// The smallest k that [`threshold_guess`] guesses for.
const GUESS_MIN_K: usize = 64;

/// A logit that about 1.5 k of the candidates (and 8 sampled ones) beat,
/// read off an evenly strided sample, to start the top-k selection at:
/// from -inf the first chunks would all enter the selection buffer, and
/// every shrink of it costs a selection of 4 k. `None` where the sample
/// does not pay (its 512 scattered reads cost about 1 us from L3): for
/// k below [`GUESS_MIN_K`] (Alpha's 200: 30 -> 26 us at 49152; Entropix's
/// default depth, below it, gained nothing), arrays short or not much
/// longer than k, or a guess of -inf.
#[inline(always)]
fn threshold_guess(data: &[TokenData], k: usize) -> Option<f32> {
    let n = data.len();
    if k < GUESS_MIN_K || n < 16 * 1024 || n < 64 * k {
        return None;
    }
    let stride = n / GUESS_SAMPLE;
    let mut sample = [0.0f32; GUESS_SAMPLE];
    for (x, t) in sample.iter_mut().zip(data.iter().step_by(stride)) {
        // No NaN in the sample, so the order is total.
        *x = if t.logit.is_nan() { f32::NEG_INFINITY } else { t.logit };
    }
    let rank = ((1.5 * (k * GUESS_SAMPLE) as f64 / n as f64).ceil() as usize + 8).min(GUESS_SAMPLE - 1);
    let (_, &mut guess, _) = sample.select_nth_unstable_by(rank, |a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
    (guess > f32::NEG_INFINITY).then_some(guess)
}

/// The scan, a [`PAIR`] of chunks at a time: each pair's logits are
/// gathered into a buffer while the previous pair's moments are computed
/// (one loop, [`ChunkKernel::gather_pair_with_moments`]: the AVX2 scan of
/// 49152 logits (k = 0) took 18.2 us with the two loops in turn, 15.8
/// interleaved), then its maximum updates the reference and, with
/// `select` running, each chunk's logits above the threshold (only those
/// strictly above it can enter) feed the selection buffer.
#[inline(always)]
fn scan_chunks<K: ChunkKernel, const COUNT: bool, const TOP: bool, const ORDER: usize>(data: &[TokenData], k: usize, select: Select, out: &mut LogitScan) {
    out.k = k;
    out.best.clear();
    out.moments = None;
    let mut finite_total = 0usize;
    let mut bufs = [[f32::NEG_INFINITY; PAIR]; 2];
    let (first, second) = bufs.split_at_mut(1);
    let (mut buf, mut next_buf) = (&mut first[0], &mut second[0]);
    let mut above = [0u16; BLOCKS];
    let mut moments = Moments::EMPTY;
    let (running, deferred, threshold) = match select {
        Select::Running(threshold) => (TOP && k > 0, false, threshold),
        Select::FromMaxima => (false, TOP && k > 0, f32::NEG_INFINITY),
    };
    let mut top = TopBuffer::new(k, threshold);
    let (mut maxima, mut keys) = CHUNK_MAXIMA.take();
    maxima.clear();
    let mut pairs = data.chunks(PAIR);
    let mut gathered = pairs.next().map(|pair| K::gather_pair::<COUNT>(pair, buf));
    let mut c = 0;
    while let Some((chunk_maxima, finite)) = gathered {
        finite_total += finite as usize;
        let pair_max = if chunk_maxima[1] > chunk_maxima[0] { chunk_maxima[1] } else { chunk_maxima[0] };
        if pair_max == f32::INFINITY {
            out.max = f32::INFINITY;
            out.finite = None;
            CHUNK_MAXIMA.set((maxima, keys));
            return;
        }
        for (h, (&chunk_max, chunk)) in chunk_maxima.iter().zip(buf.chunks_exact(CHUNK)).enumerate() {
            if running && chunk_max > top.threshold {
                let chunk: &[f32; CHUNK] = chunk.try_into().unwrap();
                K::marks(chunk, top.threshold, &mut above);
                top.collect(chunk, &above, (c + h) * CHUNK);
            }
            if deferred {
                maxima.push(chunk_max);
            }
        }
        if pair_max > moments.reference {
            if ORDER > 0 {
                moments.rebase(pair_max);
            } else {
                moments.reference = pair_max;
            }
        }
        let next = pairs.next();
        // A pair entirely below the floor adds less than 512 * 1.7e-38.
        if ORDER > 0 && pair_max - moments.reference > EXP_FLOOR {
            let holds_reference = pair_max == moments.reference;
            let (s0, s1, s2) = match next {
                Some(next) => {
                    let (g, m) = if holds_reference {
                        K::gather_pair_with_moments::<COUNT, true, ORDER>(next, next_buf, buf, moments.reference)
                    } else {
                        K::gather_pair_with_moments::<COUNT, false, ORDER>(next, next_buf, buf, moments.reference)
                    };
                    gathered = Some(g);
                    m
                }
                None => {
                    gathered = None;
                    if holds_reference {
                        K::pair_moments::<true, ORDER>(buf, moments.reference)
                    } else {
                        K::pair_moments::<false, ORDER>(buf, moments.reference)
                    }
                }
            };
            moments.s0 += s0;
            moments.s1 += s1;
            moments.s2 += s2;
        } else {
            gathered = next.map(|pair| K::gather_pair::<COUNT>(pair, next_buf));
        }
        std::mem::swap(&mut buf, &mut next_buf);
        c += 2;
    }
    // The last pair's second chunk may lie past the end.
    maxima.truncate(data.len().div_ceil(CHUNK));
    if deferred {
        select_from_maxima::<K>(data, &maxima, &mut keys, &mut top);
    }
    CHUNK_MAXIMA.set((maxima, keys));
    top.finish(data, &mut out.best);
    // Rebasing moved some S0 into the moments not summed: clear them.
    if ORDER < 2 {
        moments.s1 = 0.0;
    }
    if ORDER < 3 {
        moments.s2 = 0.0;
    }
    out.finite = COUNT.then_some(finite_total);
    out.max = moments.reference;
    if ORDER > 0 && moments.reference > f32::NEG_INFINITY {
        out.moments = Some(moments);
    }
}

/// Plain Rust the compiler vectorises for the baseline instruction set.
struct Portable;

impl ChunkKernel for Portable {
    #[inline(always)]
    fn gather<const COUNT: bool, const TOP: bool>(chunk: &[TokenData], buf: &mut [f32; CHUNK], threshold: f32, above: &mut [u16; BLOCKS]) -> (f32, u32) {
        if chunk.len() < CHUNK {
            buf.fill(f32::NEG_INFINITY);
        }
        for (dst, src) in buf.iter_mut().zip(chunk) {
            *dst = src.logit;
        }
        let mut lanes = [f32::NEG_INFINITY; LANES];
        for eight in buf.chunks_exact(LANES) {
            for (m, &x) in lanes.iter_mut().zip(eight) {
                *m = if x > *m { x } else { *m };
            }
        }
        let max = lanes.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        // The caller reads the masks only when the maximum beats the
        // threshold, which stops happening early in the array: build them
        // only then.
        if TOP && max > threshold {
            Self::marks(buf, threshold, above);
        }
        let finite = if COUNT { buf.iter().map(|&x| u32::from(x > f32::NEG_INFINITY)).sum() } else { 0 };
        (max, finite)
    }

    #[inline(always)]
    fn marks(buf: &[f32; CHUNK], threshold: f32, above: &mut [u16; BLOCKS]) {
        for (mask, block) in above.iter_mut().zip(buf.chunks_exact(BLOCK)) {
            *mask = block.iter().enumerate().fold(0u16, |m, (j, &x)| m | (u16::from(x > threshold) << j));
        }
    }

    /// [`lane_moments`] in a function of its own: inlined into the scan's
    /// loop, baseline x86-64's 16 registers held the scan's state beside
    /// the lanes and the exponential's constants, and spilled (the portable
    /// Entropix scan at 49152: 74.6 -> 64.6 us apart); one call per pair
    /// (74.0 -> 71.5 us against a call per chunk).
    #[inline(never)]
    fn pair_moments<const ONES: bool, const ORDER: usize>(buf: &[f32; PAIR], reference: f32) -> (f64, f64, f64) {
        lane_moments::<ONES, ORDER>(buf, reference)
    }
}

/// The portable kernel's moments of `buf` (see
/// [`ChunkKernel::pair_moments`]): f32 lane sums, one array of lanes per moment
/// (the compiler keeps each in registers; each lane adds at most 64 terms
/// below 1, so the sums keep about 7 digits before they go to f64).
#[inline(always)]
fn lane_moments<const ONES: bool, const ORDER: usize>(buf: &[f32; PAIR], reference: f32) -> (f64, f64, f64) {
    let mut s = [[0.0f32; LANES]; 3];
    let mut ones = [0u32; LANES];
    for block in buf.chunks_exact(LANES) {
        for l in 0..LANES {
            let z = block[l] - reference;
            // -inf logits: the clamped z keeps e z finite.
            let zc = if z > EXP_FLOOR { z } else { EXP_FLOOR };
            let e = exp_in_range::<false>(zc);
            let ez = e * zc;
            // e z and e z^2 are 0 at z = 0.
            let one = ONES && z == 0.0;
            s[0][l] += if one { 0.0 } else { e };
            ones[l] += one as u32;
            // Also at order 1 (the caller clears it): without it LLVM
            // vectorises only some of the lanes.
            s[1][l] += ez;
            if ORDER >= 3 {
                s[2][l] += ez * zc;
            }
        }
    }
    let total = |lanes: &[f32; LANES]| lanes.iter().map(|&x| x as f64).sum::<f64>();
    (total(&s[0]) + ones.iter().sum::<u32>() as f64, total(&s[1]), total(&s[2]))
}

/// The AVX-512 kernels, written with intrinsics: 16 logits per register,
/// pulled out of the 12-byte `TokenData` records with two permutes, and
/// [`crate::core::fast_exp::exp_table_in_range`]'s exponential (the same
/// bits as the AVX2 kernel's).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::simd_steps::{simd_gather, simd_gather_pair, simd_gather_pair_with_moments, simd_pair_moments, GatherSteps, SumSteps};
    use super::{argmax_body, near_max_body, scan_body, ChunkKernel, LogitScan, BLOCKS, CHUNK, PAIR};
    use crate::core::fast_exp::{simd::exp16_table_in_range, EXP_FLOOR};
    use crate::core::token::TokenData;

    const _: () = assert!(std::mem::size_of::<TokenData>() == 12 && std::mem::offset_of!(TokenData, logit) == 4);

    #[target_feature(enable = "avx512f,popcnt")]
    pub unsafe fn scan<const COUNT: bool, const TOP: bool, const ORDER: usize>(data: &[TokenData], k: usize, out: &mut LogitScan) {
        scan_body::<Avx512, COUNT, TOP, ORDER>(data, k, out);
    }

    #[target_feature(enable = "avx512f,popcnt")]
    pub unsafe fn near_max(data: &[TokenData], offset: f32, out: &mut Vec<u32>) -> f32 {
        near_max_body::<Avx512>(data, offset, out)
    }

    #[target_feature(enable = "avx512f,popcnt")]
    pub unsafe fn argmax(data: &[TokenData]) -> Option<usize> {
        argmax_body::<Avx512>(data)
    }

    struct Avx512;

    /// Float offsets of the 16 logits of 16 records (48 floats), first from
    /// the first 32 floats, then the last five from the third register.
    const FIRST: [i32; 16] = [1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 0, 0, 0, 0, 0];
    const SECOND: [i32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16 + 2, 16 + 5, 16 + 8, 16 + 11, 16 + 14];

    /// The logits of 16 `TokenData` records (48 floats) loaded into `a`,
    /// `b`, `c`: two permutes. Shared with the Dirichlet kernels.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn logits_of_records(a: __m512, b: __m512, c: __m512) -> __m512 {
        let first = _mm512_loadu_si512(FIRST.as_ptr().cast());
        let second = _mm512_loadu_si512(SECOND.as_ptr().cast());
        _mm512_permutex2var_ps(_mm512_permutex2var_ps(a, first, b), second, c)
    }

    /// The gather's running maximum and count over a chunk, 16 records at
    /// a time.
    struct Gather {
        neg_inf: __m512,
        max: __m512,
        finite: u32,
    }

    impl GatherSteps for Gather {
        const WIDTH: usize = 16;
        const MOMENTS_FIRST: bool = false;
        type Sums = Sums;

        #[inline(always)]
        unsafe fn new() -> Self {
            let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
            Self { neg_inf, max: neg_inf, finite: 0 }
        }

        /// Reads the logits of the 16 records (48 floats) at `src` into
        /// `dst` (16 floats), folding them into the maximum and the count.
        #[inline(always)]
        unsafe fn step<const COUNT: bool>(&mut self, src: *const f32, dst: *mut f32) {
            let x = logits_of_records(_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16)), _mm512_loadu_ps(src.add(32)));
            // NaN stays (every later use is NaN-safe); vmaxps returns its
            // second operand when either is NaN.
            self.max = _mm512_max_ps(x, self.max);
            if COUNT {
                self.finite += _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, self.neg_inf).count_ones();
            }
            _mm512_storeu_ps(dst, x);
        }

        /// The chunk's maximum and count.
        #[inline(always)]
        unsafe fn finish(self) -> (f32, u32) {
            (_mm512_reduce_max_ps(self.max), self.finite)
        }
    }

    /// The moments' f32 lane sums over a chunk, 16 values at a time.
    struct Sums {
        reference: __m512,
        floor: __m512,
        zero: __m512,
        s: [__m512; 3],
        ones: u32,
    }

    impl SumSteps for Sums {
        #[inline(always)]
        unsafe fn new(reference: f32) -> Self {
            let zero = _mm512_setzero_ps();
            Self { reference: _mm512_set1_ps(reference), floor: _mm512_set1_ps(EXP_FLOOR), zero, s: [zero; 3], ones: 0 }
        }

        /// Adds the terms of the 16 values at `src`.
        #[inline(always)]
        unsafe fn add<const ONES: bool, const ORDER: usize>(&mut self, src: *const f32) {
            let z = _mm512_sub_ps(_mm512_loadu_ps(src), self.reference);
            // -inf logits: the clamped z keeps e z finite.
            let zc = _mm512_max_ps(z, self.floor);
            let e = exp16_table_in_range(zc);
            let [s0, s1, s2] = &mut self.s;
            if ONES {
                // Weights of exactly 1 counted apart (e z is 0 there).
                let one = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(z, self.zero);
                *s0 = _mm512_mask_add_ps(*s0, !one, *s0, e);
                self.ones += one.count_ones();
            } else {
                *s0 = _mm512_add_ps(*s0, e);
            }
            // e z and e z^2 straight from e: one rounding fewer in the
            // chain after the exponential.
            if ORDER >= 2 {
                *s1 = _mm512_fmadd_ps(e, zc, *s1);
            }
            if ORDER >= 3 {
                *s2 = _mm512_fmadd_ps(e, _mm512_mul_ps(zc, zc), *s2);
            }
        }

        /// (S0, S1, S2).
        #[inline(always)]
        unsafe fn finish(self) -> (f64, f64, f64) {
            let [s0, s1, s2] = self.s;
            (_mm512_reduce_add_ps(s0) as f64 + self.ones as f64, _mm512_reduce_add_ps(s1) as f64, _mm512_reduce_add_ps(s2) as f64)
        }
    }

    impl ChunkKernel for Avx512 {
        #[inline(always)]
        fn gather<const COUNT: bool, const TOP: bool>(chunk: &[TokenData], buf: &mut [f32; CHUNK], threshold: f32, above: &mut [u16; BLOCKS]) -> (f32, u32) {
            // SAFETY: only called from this module's entry points, compiled
            // with AVX-512F (as every method below).
            unsafe { simd_gather::<Self, Gather, COUNT, TOP>(chunk, buf, threshold, above) }
        }

        #[inline(always)]
        fn marks(buf: &[f32; CHUNK], threshold: f32, above: &mut [u16; BLOCKS]) {
            // SAFETY: AVX-512F is enabled (see `gather`); loads stay in `buf`.
            unsafe {
                let t = _mm512_set1_ps(threshold);
                for (v, mask) in above.iter_mut().enumerate() {
                    *mask = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_loadu_ps(buf.as_ptr().add(16 * v)), t);
                }
            }
        }

        #[inline(always)]
        fn marks_of_records(chunk: &[TokenData], threshold: f32, above: &mut [u16; BLOCKS]) {
            if chunk.len() != CHUNK {
                return super::Portable::marks_of_records(chunk, threshold, above);
            }
            // SAFETY: AVX-512F is enabled (see `gather`); every load reads
            // 16 records inside the chunk.
            unsafe {
                let t = _mm512_set1_ps(threshold);
                for (v, mask) in above.iter_mut().enumerate() {
                    let p = chunk.as_ptr().add(16 * v).cast::<f32>();
                    let x = logits_of_records(_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)), _mm512_loadu_ps(p.add(32)));
                    *mask = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, t);
                }
            }
        }

        #[inline(always)]
        fn gather_pair<const COUNT: bool>(pair: &[TokenData], buf: &mut [f32; PAIR]) -> ([f32; 2], u32) {
            // SAFETY: the features are enabled (see `gather`).
            unsafe { simd_gather_pair::<Gather, COUNT>(pair, buf) }
        }

        #[inline(always)]
        fn pair_moments<const ONES: bool, const ORDER: usize>(buf: &[f32; PAIR], reference: f32) -> (f64, f64, f64) {
            // SAFETY: the features are enabled (see `gather`).
            unsafe { simd_pair_moments::<Gather, ONES, ORDER>(buf, reference) }
        }

        #[inline(always)]
        fn gather_pair_with_moments<const COUNT: bool, const ONES: bool, const ORDER: usize>(
            next: &[TokenData],
            next_buf: &mut [f32; PAIR],
            cur: &[f32; PAIR],
            reference: f32,
        ) -> (([f32; 2], u32), (f64, f64, f64)) {
            // SAFETY: the features are enabled (see `gather`).
            unsafe { simd_gather_pair_with_moments::<Gather, COUNT, ONES, ORDER>(next, next_buf, cur, reference) }
        }
    }
}

/// The AVX2 + FMA kernels, written with intrinsics: 8 logits per register,
/// pulled out of the 12-byte records with two blends and one permute,
/// and [`crate::core::fast_exp::exp_table_in_range`]'s exponential.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::simd_steps::{simd_gather, simd_gather_pair, simd_gather_pair_with_moments, simd_pair_moments, GatherSteps, SumSteps};
    use super::{argmax_body, near_max_body, scan_body, ChunkKernel, LogitScan, BLOCKS, CHUNK, PAIR};
    use crate::core::fast_exp::{simd::exp8_table_in_range, EXP_FLOOR};
    use crate::core::token::TokenData;

    #[target_feature(enable = "avx2,fma,popcnt")]
    pub unsafe fn scan<const COUNT: bool, const TOP: bool, const ORDER: usize>(data: &[TokenData], k: usize, out: &mut LogitScan) {
        scan_body::<Avx2, COUNT, TOP, ORDER>(data, k, out);
    }

    #[target_feature(enable = "avx2,fma,popcnt")]
    pub unsafe fn near_max(data: &[TokenData], offset: f32, out: &mut Vec<u32>) -> f32 {
        near_max_body::<Avx2>(data, offset, out)
    }

    #[target_feature(enable = "avx2,fma,popcnt")]
    pub unsafe fn argmax(data: &[TokenData]) -> Option<usize> {
        argmax_body::<Avx2>(data)
    }

    struct Avx2;

    /// For 8 records (24 floats in three registers) the logits sit at
    /// float 1, 4, 7 of the first, 2, 5 of the second and 0, 3, 6 of the
    /// third register: distinct lanes, so two blends gather them into one
    /// register and one permute by this index puts them in record order.
    const PICK: [i32; 8] = [1, 4, 7, 2, 5, 0, 3, 6];

    /// The logits of the 8 records (24 floats) at `src`, `pick` holding
    /// [`PICK`]: blend first, then one permute (the three loads' logits
    /// land in distinct lanes of one register).
    #[inline(always)]
    unsafe fn logits8(src: *const f32, pick: __m256i) -> __m256 {
        let ab = _mm256_blend_ps::<0b0010_0100>(_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8)));
        let abc = _mm256_blend_ps::<0b0100_1001>(ab, _mm256_loadu_ps(src.add(16)));
        _mm256_permutevar8x32_ps(abc, pick)
    }

    /// The gather's running maximum and count over a chunk, 8 records at a
    /// time.
    struct Gather {
        pick: __m256i,
        neg_inf: __m256,
        max: __m256,
        finite: u32,
    }

    impl GatherSteps for Gather {
        const WIDTH: usize = 8;
        const MOMENTS_FIRST: bool = true;
        type Sums = Sums;

        #[inline(always)]
        unsafe fn new() -> Self {
            let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
            Self { pick: _mm256_loadu_si256(PICK.as_ptr().cast()), neg_inf, max: neg_inf, finite: 0 }
        }

        /// Reads the logits of the 8 records (24 floats) at `src` into
        /// `dst` (8 floats), folding them into the maximum and the count.
        #[inline(always)]
        unsafe fn step<const COUNT: bool>(&mut self, src: *const f32, dst: *mut f32) {
            let x = logits8(src, self.pick);
            // NaN stays (every later use is NaN-safe); vmaxps returns its
            // second operand when either is NaN.
            self.max = _mm256_max_ps(x, self.max);
            if COUNT {
                self.finite += (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, self.neg_inf)) as u32).count_ones();
            }
            _mm256_storeu_ps(dst, x);
        }

        /// The chunk's maximum and count.
        #[inline(always)]
        unsafe fn finish(self) -> (f32, u32) {
            let mut lanes = [0.0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), self.max);
            (lanes.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m }), self.finite)
        }
    }

    /// The moments' f32 lane sums over a chunk, 8 values at a time.
    struct Sums {
        reference: __m256,
        floor: __m256,
        zero: __m256,
        s: [__m256; 3],
        ones: u32,
    }

    impl SumSteps for Sums {
        #[inline(always)]
        unsafe fn new(reference: f32) -> Self {
            let zero = _mm256_setzero_ps();
            Self { reference: _mm256_set1_ps(reference), floor: _mm256_set1_ps(EXP_FLOOR), zero, s: [zero; 3], ones: 0 }
        }

        /// Adds the terms of the 8 values at `src`.
        #[inline(always)]
        unsafe fn add<const ONES: bool, const ORDER: usize>(&mut self, src: *const f32) {
            let z = _mm256_sub_ps(_mm256_loadu_ps(src), self.reference);
            // -inf logits: the clamped z keeps e z finite.
            let zc = _mm256_max_ps(z, self.floor);
            let e = exp8_table_in_range(zc);
            let [s0, s1, s2] = &mut self.s;
            if ONES {
                // Weights of exactly 1 counted apart (e z is 0 there).
                let one = _mm256_cmp_ps::<_CMP_EQ_OQ>(z, self.zero);
                *s0 = _mm256_add_ps(*s0, _mm256_andnot_ps(one, e));
                self.ones += (_mm256_movemask_ps(one) as u32).count_ones();
            } else {
                *s0 = _mm256_add_ps(*s0, e);
            }
            // e z and e z^2 straight from e, as AVX-512's.
            if ORDER >= 2 {
                *s1 = _mm256_fmadd_ps(e, zc, *s1);
            }
            if ORDER >= 3 {
                *s2 = _mm256_fmadd_ps(e, _mm256_mul_ps(zc, zc), *s2);
            }
        }

        /// (S0, S1, S2), added in f32 in a tree, as the AVX-512 kernel's
        /// reduce: each lane holds 64 terms below 1 (a pair). (Each lane to
        /// f64 and a serial f64 sum took a tenth of the scan.)
        #[inline(always)]
        unsafe fn finish(self) -> (f64, f64, f64) {
            let [s0, s1, s2] = self.s;
            (lane_sum(s0) as f64 + self.ones as f64, lane_sum(s1) as f64, lane_sum(s2) as f64)
        }
    }

    impl ChunkKernel for Avx2 {
        #[inline(always)]
        fn gather<const COUNT: bool, const TOP: bool>(chunk: &[TokenData], buf: &mut [f32; CHUNK], threshold: f32, above: &mut [u16; BLOCKS]) -> (f32, u32) {
            // SAFETY: only called from this module's entry points, compiled
            // with AVX2 and FMA (as every method below).
            unsafe { simd_gather::<Self, Gather, COUNT, TOP>(chunk, buf, threshold, above) }
        }

        #[inline(always)]
        fn marks(buf: &[f32; CHUNK], threshold: f32, above: &mut [u16; BLOCKS]) {
            // SAFETY: AVX2 is enabled (see `gather`); loads stay in `buf`,
            // byte stores in `above` (2 BLOCKS bytes).
            unsafe {
                let t = _mm256_set1_ps(threshold);
                // A mask of `above` is two registers' bytes (little-endian
                // u16), stored apart: joined in a register, LLVM packs the
                // two compares instead of two movmsks (7 operations).
                let above_bytes = above.as_mut_ptr().cast::<u8>();
                for v in 0..CHUNK / 8 {
                    let x = _mm256_loadu_ps(buf.as_ptr().add(8 * v));
                    *above_bytes.add(v) = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, t)) as u8;
                }
            }
        }

        #[inline(always)]
        fn marks_of_records(chunk: &[TokenData], threshold: f32, above: &mut [u16; BLOCKS]) {
            if chunk.len() != CHUNK {
                return super::Portable::marks_of_records(chunk, threshold, above);
            }
            // SAFETY: AVX2 is enabled (see `gather`); every load reads 8
            // records inside the chunk, byte stores stay in `above`.
            unsafe {
                let (t, pick) = (_mm256_set1_ps(threshold), _mm256_loadu_si256(PICK.as_ptr().cast()));
                // Bytes of the masks, as `marks`.
                let above_bytes = above.as_mut_ptr().cast::<u8>();
                for v in 0..CHUNK / 8 {
                    let x = logits8(chunk.as_ptr().add(8 * v).cast(), pick);
                    *above_bytes.add(v) = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, t)) as u8;
                }
            }
        }

        #[inline(always)]
        fn gather_pair<const COUNT: bool>(pair: &[TokenData], buf: &mut [f32; PAIR]) -> ([f32; 2], u32) {
            // SAFETY: the features are enabled (see `gather`).
            unsafe { simd_gather_pair::<Gather, COUNT>(pair, buf) }
        }

        #[inline(always)]
        fn pair_moments<const ONES: bool, const ORDER: usize>(buf: &[f32; PAIR], reference: f32) -> (f64, f64, f64) {
            // SAFETY: the features are enabled (see `gather`).
            unsafe { simd_pair_moments::<Gather, ONES, ORDER>(buf, reference) }
        }

        #[inline(always)]
        fn gather_pair_with_moments<const COUNT: bool, const ONES: bool, const ORDER: usize>(
            next: &[TokenData],
            next_buf: &mut [f32; PAIR],
            cur: &[f32; PAIR],
            reference: f32,
        ) -> (([f32; 2], u32), (f64, f64, f64)) {
            // SAFETY: the features are enabled (see `gather`).
            unsafe { simd_gather_pair_with_moments::<Gather, COUNT, ONES, ORDER>(next, next_buf, cur, reference) }
        }
    }

    /// The sum of 8 lanes, halved three times.
    #[inline(always)]
    fn lane_sum(v: __m256) -> f32 {
        // SAFETY: AVX is enabled wherever the kernel runs.
        unsafe {
            let four = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
            _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps::<1>(two, two)))
        }
    }
}

thread_local! {
    /// [`TopBuffer`]'s keys, reused across scans (no allocation per step
    /// once grown).
    static TOP_KEYS: std::cell::Cell<Vec<u64>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The running selection of the k best candidates, as keys
/// `desc_key(logit) << 32 | index`: their ascending order is
/// [`LogitScan::best`]'s (logit descending, then index ascending), so the
/// selection compares integers (a select over (index, logit) pairs with a
/// float comparison took a tenth of the AVX2 scan).
struct TopBuffer {
    k: usize,
    /// The k-th best logit once k were kept; -inf before. Only logits
    /// strictly above it enter, so among equal logits the earlier index
    /// stays.
    threshold: f32,
    keys: Vec<u64>,
}

impl TopBuffer {
    fn new(k: usize, threshold: f32) -> Self {
        let mut keys = TOP_KEYS.take();
        keys.clear();
        Self { k, threshold, keys }
    }

    /// Appends the chunk's candidates that beat the threshold (`above`
    /// marks those above an older, lower or equal threshold: each is
    /// checked again); when the buffer reaches 2k, keeps the best k and
    /// raises the threshold (at 4k, before the selection compared
    /// integers, the threshold lagged: 654 candidates entered per scan of
    /// 49152 Normal(0, 3) logits for k = 40, 454 at 2k, in 11 selections
    /// of 80 instead of 6 of 160).
    #[inline(always)]
    fn collect(&mut self, buf: &[f32; CHUNK], above: &[u16; BLOCKS], base: usize) {
        for_each_marked(above, |i| self.offer(buf[i], base + i));
    }

    /// Appends the logit `x` at `index` when it beats the threshold (see
    /// [`Self::collect`]).
    #[inline(always)]
    fn offer(&mut self, x: f32, index: usize) {
        if x > self.threshold {
            self.keys.push((desc_key(x) as u64) << 32 | index as u64);
            if self.keys.len() >= 2 * self.k {
                self.shrink();
            }
        }
    }

    fn shrink(&mut self) {
        let k = self.k;
        self.keys.select_nth_unstable(k - 1);
        self.keys.truncate(k);
        // The largest key kept is the k-th best logit (-0 reads as +0,
        // which admits the same logits).
        self.threshold = logit_of_desc_key((self.keys[k - 1] >> 32) as u32);
    }

    /// The best k, sorted, into `best`, with their logits read from `data`
    /// (their own bits: a key reads -0 as +0).
    fn finish(mut self, data: &[TokenData], best: &mut Vec<(u32, f32)>) {
        if self.keys.len() > self.k {
            self.shrink();
        }
        self.keys.sort_unstable();
        best.clear();
        best.extend(self.keys.iter().map(|&key| (key as u32, data[key as u32 as usize].logit)));
        TOP_KEYS.set(self.keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logit descending, then index ascending (no NaN reaches `best`).
    fn cmp_best(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
        b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0))
    }

    fn tokens(logits: &[f32]) -> Vec<TokenData> {
        logits.iter().enumerate().map(|(i, &l)| TokenData::new(i as i32, l)).collect()
    }

    /// Exact moments and top-k by sorting, in f64.
    fn reference(logits: &[f32], k: usize) -> (f32, f64, f64, Vec<(u32, f32)>) {
        let max = logits.iter().copied().filter(|x| !x.is_nan()).fold(f32::NEG_INFINITY, f32::max);
        let z: Vec<f64> = logits.iter().filter(|x| **x > f32::NEG_INFINITY).map(|&x| x as f64 - max as f64).collect();
        let s0: f64 = z.iter().map(|z| z.exp()).sum();
        let p: Vec<f64> = z.iter().map(|z| z.exp() / s0).collect();
        let h: f64 = -p.iter().filter(|&&p| p > 0.0).map(|p| p * p.ln()).sum::<f64>();
        let v: f64 = p.iter().filter(|&&p| p > 0.0).map(|p| p * (p.ln() + h).powi(2)).sum();
        let mut all: Vec<(u32, f32)> = logits.iter().enumerate().filter(|(_, x)| **x > f32::NEG_INFINITY).map(|(i, &x)| (i as u32, x)).collect();
        all.sort_by(cmp_best);
        all.truncate(k);
        (max, h, v, all)
    }

    fn pseudo_normal(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = crate::core::DrawStream::from_state(seed);
        (0..n).map(|_| (rng.next_normal() as f32) * scale).collect()
    }

    fn check(logits: &[f32], k: usize) {
        let (max, h, v, best) = reference(logits, k);
        for kernel in ScanKernel::available() {
            let mut got = LogitScan::default();
            scan_logits_with(kernel, &tokens(logits), k, true, &mut got);
            assert_eq!(got.max, max);
            assert_eq!(got.finite, Some(logits.iter().filter(|&&x| x > f32::NEG_INFINITY).count()), "{kernel:?}");
            let mut uncounted = LogitScan::default();
            scan_logits_with(kernel, &tokens(logits), k, false, &mut uncounted);
            assert_eq!((uncounted.finite, uncounted.max, &uncounted.best), (None, got.max, &got.best));
            assert_eq!(got.best, best, "{kernel:?}, k = {k}, n = {}", logits.len());
            // Top-k alone: the same best and maximum, no moments.
            let mut selection = LogitScan::default();
            scan_top_k_with(kernel, &tokens(logits), k, &mut selection);
            assert_eq!((selection.max, &selection.best, selection.moments), (max, &best, None), "{kernel:?} top-k only");
            let m = got.moments.unwrap();
            // The lean scans: the same maximum and sums, bit for bit, the
            // moments past their order 0, and no best list.
            let (mut first, mut second) = (LogitScan::default(), LogitScan::default());
            scan_moments_with::<1>(kernel, &tokens(logits), &mut first);
            scan_moments_with::<2>(kernel, &tokens(logits), &mut second);
            assert_eq!(first.moments, Some(Moments { s1: 0.0, s2: 0.0, ..m }), "{kernel:?}");
            assert_eq!(second.moments, Some(Moments { s2: 0.0, ..m }), "{kernel:?}");
            assert_eq!((first.max, second.max, first.best.len(), second.best.len()), (max, max, 0, 0));
            assert!((m.entropy_nats() - h).abs() < 1e-5 * (1.0 + h), "{kernel:?} H {} vs {h}", m.entropy_nats());
            assert!((m.varentropy_nats2() - v).abs() < 1e-5 * (1.0 + v), "{kernel:?} V {} vs {v}", m.varentropy_nats2());
        }
    }

    #[test]
    fn matches_exact_moments_and_sorted_top_k() {
        for (n, scale) in [(1, 1.0), (7, 2.0), (255, 3.0), (256, 3.0), (257, 0.5), (5000, 3.0), (49_152, 4.0), (100_003, 10.0)] {
            let logits = pseudo_normal(n, n as u64, scale);
            for k in [0, 1, 27, 128] {
                check(&logits, k);
            }
        }
    }

    /// Near a one-hot distribution the entropy is about S0 - 1: the small
    /// weights beside the maximum's 1 keep their digits (relative, not
    /// only absolute, error 1e-5 on every kernel).
    #[test]
    fn near_one_hot_entropy_keeps_its_digits() {
        for gap in [12.0f32, 20.0] {
            let mut logits = vec![-gap; 921];
            logits[300] = 0.0;
            logits[5] = -gap - 1.0;
            let (_, h, _, _) = reference(&logits, 0);
            for kernel in ScanKernel::available() {
                let mut got = LogitScan::default();
                scan_logits_with(kernel, &tokens(&logits), 0, false, &mut got);
                let e = got.moments.unwrap().entropy_nats();
                assert!((e - h).abs() < 1e-5 * h, "{kernel:?} gap {gap}: H {e:e} vs {h:e}");
            }
        }
    }

    #[test]
    fn masks_are_rebuilt_for_every_chunk_that_beats_the_threshold() {
        // k = 3: the first chunk's shrink leaves the threshold at -5; the
        // second chunk's masks mark only its 10; the third chunk's -4.5
        // beats the threshold by less than 1 and belongs to the best 3,
        // so its own masks must be built (the second's would miss it).
        let mut logits = vec![-5.0f32; 3 * CHUNK];
        logits[0] = 0.0;
        logits[CHUNK + 5] = 10.0;
        logits[2 * CHUNK + 9] = -4.5;
        check(&logits, 3);
    }

    #[test]
    fn rising_maximum_rebases_exactly() {
        // Ascending logits: the maximum rises in every chunk.
        let logits: Vec<f32> = (0..3000).map(|i| i as f32 * 0.01).collect();
        check(&logits, 40);
        // One huge peak after many low chunks, and far-away low chunks.
        let mut logits = vec![-50.0f32; 4000];
        logits[3999] = 60.0;
        logits[10] = -200.0;
        check(&logits, 3);
    }

    /// A sample that overrates the array: the guessed threshold lets fewer
    /// than k through, and the scan starts again from -inf.
    #[test]
    fn a_guess_too_high_falls_back_to_the_full_selection() {
        let n = 32_768;
        let mut logits = pseudo_normal(n, 11, 1.0);
        // Every sampled position (stride 64) holds the largest logit, so
        // the guess is 100 and nothing is strictly above it.
        for i in (0..n).step_by(n / GUESS_SAMPLE) {
            logits[i] = 100.0;
        }
        assert_eq!(threshold_guess(&tokens(&logits), 64), Some(100.0));
        check(&logits, 64);
        check(&logits, 600);
    }

    #[test]
    fn ties_keep_the_earliest_indices() {
        let logits = vec![1.0f32; 1000];
        let mut out = LogitScan::default();
        scan_logits(&tokens(&logits), 5, &mut out);
        assert_eq!(out.best.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        let m = out.moments.unwrap();
        assert!((m.entropy_nats() - 1000f64.ln()).abs() < 1e-6);
        assert!(m.varentropy_nats2() < 1e-9);
    }

    /// [`scan_argmax`] on every kernel against the one-by-one argmax.
    /// The selection from the chunks' maxima (k at most a quarter of the
    /// chunks): ties at the k-th largest maximum across chunks, the best k
    /// crowded into one chunk, and fewer chunks holding a finite logit
    /// than k (every finite logit then enters).
    #[test]
    fn selection_from_chunk_maxima() {
        let n = 64 * CHUNK;
        assert!(16 * DEFER_RATIO <= n / CHUNK);
        check(&vec![1.0; n], 16);
        let mut crowded = pseudo_normal(n, 5, 1.0);
        for i in 0..10 {
            crowded[40 * CHUNK + 3 * i] = 20.0 + i as f32;
        }
        check(&crowded, 10);
        check(&crowded, 16);
        let mut tied = pseudo_normal(n, 6, 1.0);
        for c in 0..64 {
            tied[c * CHUNK + (c * 7) % CHUNK] = 5.0;
        }
        check(&tied, 7);
        let mut sparse = vec![f32::NEG_INFINITY; n];
        sparse[5] = 1.0;
        sparse[10 * CHUNK + 3] = 2.0;
        sparse[n - 1] = 0.5;
        sparse[n - 2] = f32::NAN;
        sparse[n - 3] = -0.0;
        check(&sparse, 16);
    }

    #[test]
    fn argmax_takes_the_first_maximum_on_every_kernel() {
        let base = pseudo_normal(3000, 23, 2.0);
        let top = base.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut cases = vec![base.clone()];
        // The maximum repeated in a later chunk and earlier in its own.
        let mut tied = base.clone();
        tied[2900] = top;
        tied[1] = top;
        cases.push(tied);
        // NaN first, then +inf twice; nothing above -inf; a short array.
        let mut odd = base.clone();
        odd[0] = f32::NAN;
        odd[1500] = f32::INFINITY;
        odd[2999] = f32::INFINITY;
        cases.push(odd);
        cases.push(vec![f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY]);
        cases.push(vec![1.0, 3.0, 3.0]);
        for logits in &cases {
            let data = tokens(logits);
            let want = crate::core::math::argmax_logit(&data);
            for kernel in ScanKernel::available() {
                assert_eq!(argmax_with(kernel, &data), want, "{kernel:?}");
            }
        }
    }

    /// [`scan_near_max`] on every kernel against the definition.
    #[test]
    fn near_max_keeps_every_logit_within_the_offset_of_the_maximum() {
        let mut logits = pseudo_normal(5000, 17, 3.0);
        logits[7] = f32::NAN;
        logits[300] = f32::NEG_INFINITY;
        // Ties at the maximum and at the threshold.
        let top = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        logits[4000] = top;
        logits[4500] = top - 2.0;
        let data = tokens(&logits);
        for offset in [0.0f32, -0.5, -2.0, -3.0, -100.0] {
            let threshold = top + offset;
            let want: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize] >= threshold).collect();
            for kernel in ScanKernel::available() {
                let mut got = vec![99];
                let max = near_max_with(kernel, &data, offset, &mut got);
                assert_eq!((max, &got), (top, &want), "{kernel:?} offset {offset}");
            }
        }
        // Nothing above -inf; and a +inf.
        let mut out = Vec::new();
        assert_eq!(scan_near_max(&tokens(&[f32::NAN, f32::NEG_INFINITY]), -1.0, &mut out), f32::NEG_INFINITY);
        assert!(out.is_empty());
        logits[2600] = f32::INFINITY;
        assert_eq!(scan_near_max(&tokens(&logits), -1.0, &mut out), f32::INFINITY);
    }

    #[test]
    fn nan_and_infinities() {
        let mut logits = pseudo_normal(600, 9, 1.0);
        logits[3] = f32::NAN;
        logits[300] = f32::NEG_INFINITY;
        check(&logits, 10);
        let mut out = LogitScan::default();
        scan_logits(&tokens(&[f32::NAN, f32::NEG_INFINITY]), 4, &mut out);
        assert_eq!(out.max, f32::NEG_INFINITY);
        assert!(out.moments.is_none() && out.best.is_empty());
        logits[500] = f32::INFINITY;
        scan_logits(&tokens(&logits), 4, &mut out);
        assert_eq!(out.max, f32::INFINITY);
        assert!(!out.covers(1));
        scan_logits(&[], 4, &mut out);
        assert_eq!(out.max, f32::NEG_INFINITY);
    }

    #[test]
    fn covers_small_arrays_entirely() {
        let mut out = LogitScan::default();
        scan_logits(&tokens(&[1.0, f32::NEG_INFINITY, 3.0]), 8, &mut out);
        assert_eq!(out.best, vec![(2, 3.0), (0, 1.0)]);
        assert!(out.covers(1000));
        scan_logits(&tokens(&pseudo_normal(100, 1, 1.0)), 8, &mut out);
        assert!(out.covers(8) && !out.covers(9));
    }
}
