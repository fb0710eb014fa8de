//! DRY ("Don't Repeat Yourself"), designed by p-e-w
//! (oobabooga/text-generation-webui PR 5677); same behaviour as llama.cpp's
//! `llama_sampler_init_dry` (itself a port of pi6am's koboldcpp version).
//!
//! For the window `w` of the last `penalty_last_n` accepted tokens: if
//! emitting token `t` next would extend a sequence that already occurred in
//! the window (the longest suffix of `w` that also ends just before an
//! earlier occurrence of `t`), with that repeated suffix `n >= allowed_length`
//! tokens long, then
//!
//! ```text
//! logit(t) -= multiplier * base^(n - allowed_length)
//! ```
//!
//! Sequence breakers (e.g. newline, ":", quotes) cut matching: a repeat may
//! not reach back past the most recent breaker in the window, and a token
//! that is itself a whole single-token breaker is never penalised.
//!
//! Breakers are token-id sequences here (head token then tail). The C API
//! takes strings and resolves them through the vocabulary exactly as
//! llama.cpp does; that resolution is [`breakers_from_strings`].
//!
//! Cost: O(window) per `apply` whatever the repeats (the repeated-suffix
//! lengths come from a Z-function, which is linear); breaker tails are
//! capped at [`MAX_BREAKER_TAIL`] tokens so the breaker scan stays linear
//! too, and the exponent is capped so the penalty stays finite (as in
//! llama.cpp). Only the penalised tokens are touched when the candidate
//! array is in vocabulary order.

use serde::{Deserialize, Serialize};

use super::util::{History, IdMap, IdTouch};
use crate::core::{Candidates, ParamError, SampleError, Sampler, TokenId};

/// Longest breaker tail kept, in tokens (llama.cpp's `MAX_SEQ_LEN`).
pub const MAX_BREAKER_TAIL: usize = 20;
/// Longest breaker string kept, in bytes (llama.cpp's `MAX_CHAR_LEN`).
pub const MAX_BREAKER_BYTES: usize = 40;

/// Parameters of [`Dry`]. Sequence breakers are given to the constructor.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DryParams {
    /// Penalty scale (logit units). `0.0` disables. Finite. Default 0.8
    /// (p-e-w's recommended value; llama.cpp's `common` default is 0.0,
    /// i.e. off).
    pub multiplier: f32,
    /// Growth base per token of repeat beyond `allowed_length`
    /// (dimensionless). Finite; below 1.0 disables (as llama.cpp). Default
    /// 1.75.
    pub base: f32,
    /// Longest repeat that goes unpenalised, in tokens. `>= 0`. Default 2.
    pub allowed_length: i32,
    /// Window in tokens. `0` disables; `-1` = the context size given to the
    /// constructor (`n_ctx_train`), or every token since the last reset when
    /// that is unknown (<= 0); other negative values disable (as llama.cpp).
    /// Default -1.
    pub penalty_last_n: i32,
}

impl Default for DryParams {
    fn default() -> Self {
        Self { multiplier: 0.8, base: 1.75, allowed_length: 2, penalty_last_n: -1 }
    }
}

impl DryParams {
    /// Rejects non-finite multiplier or base and a negative allowed length.
    pub fn validate(&self) -> Result<(), ParamError> {
        if !self.multiplier.is_finite() {
            return Err(ParamError::new("multiplier", self.multiplier, "must be finite (0.0 disables)"));
        }
        if !self.base.is_finite() {
            return Err(ParamError::new("base", self.base, "must be finite (below 1.0 disables)"));
        }
        if self.allowed_length < 0 {
            return Err(ParamError::new("allowed_length", self.allowed_length, "must be >= 0"));
        }
        Ok(())
    }

    /// True when DRY changes nothing: multiplier 0, base below 1, or no
    /// window (llama.cpp's `dry_enabled`, negated).
    pub fn is_disabled(&self) -> bool {
        self.multiplier == 0.0 || self.base < 1.0 || self.penalty_last_n == 0 || self.penalty_last_n < -1
    }
}

/// The DRY sampler.
#[derive(Debug, Clone)]
pub struct Dry {
    params: DryParams,
    /// Window length; `None` = unbounded.
    last_n: Option<usize>,
    /// Cap on the penalty exponent (0: none), from the base.
    max_exponent: i64,
    /// Breaker head token -> tails (possibly empty = single-token breaker).
    breakers: IdMap<Vec<Vec<TokenId>>>,
    history: History,
    /// Scratch for apply.
    z: Vec<usize>,
    index: IdMap<u32>,
    ids: Vec<TokenId>,
    lens: Vec<usize>,
    touch: IdTouch,
}

impl Dry {
    /// A validated DRY sampler. `breakers` are token sequences (head then
    /// tail; empty ones are skipped, tails are cut to
    /// [`MAX_BREAKER_TAIL`] tokens). `n_ctx_train` resolves
    /// `penalty_last_n == -1`; pass 0 when unknown.
    pub fn new(params: DryParams, breakers: Vec<Vec<TokenId>>, n_ctx_train: i32) -> Result<Self, ParamError> {
        params.validate()?;
        let last_n = match params.penalty_last_n {
            -1 if n_ctx_train > 0 => Some(n_ctx_train as usize),
            -1 => None,
            n => Some(n.max(0) as usize),
        };
        let mut map: IdMap<Vec<Vec<TokenId>>> = IdMap::default();
        for seq in breakers {
            let Some((&head, tail)) = seq.split_first() else { continue };
            let tail = tail[..tail.len().min(MAX_BREAKER_TAIL)].to_vec();
            let tails = map.entry(head).or_default();
            if !tails.contains(&tail) {
                tails.push(tail);
            }
        }
        Ok(Self {
            params,
            last_n,
            max_exponent: max_exponent(params.base),
            breakers: map,
            history: History::new(last_n),
            z: Vec::new(),
            index: IdMap::default(),
            ids: Vec::new(),
            lens: Vec::new(),
            touch: IdTouch::default(),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &DryParams {
        &self.params
    }

    /// The resolved window (`None`: unbounded).
    pub fn window_len(&self) -> Option<usize> {
        self.last_n
    }

    /// The breakers as (head, tail) pairs, sorted.
    pub fn breakers(&self) -> Vec<(TokenId, Vec<TokenId>)> {
        let mut v: Vec<(TokenId, Vec<TokenId>)> =
            self.breakers.iter().flat_map(|(&h, tails)| tails.iter().map(move |t| (h, t.clone()))).collect();
        v.sort();
        v
    }

    fn is_single_token_breaker(&self, token: TokenId) -> bool {
        self.breakers.get(&token).is_some_and(|tails| tails.iter().any(|t| t.is_empty()))
    }

    /// How far back a repeat may reach: the number of tokens after the end
    /// of the most recent complete breaker in `w` (all of `w` if none).
    fn repeat_limit(&self, w: &[TokenId]) -> usize {
        let n = w.len();
        let r = |i: usize| w[n - 1 - i];
        for i in 0..n {
            let Some(tails) = self.breakers.get(&r(i)) else { continue };
            // The longest tail that follows this head in the window; its
            // tokens come after the head, i.e. at r(i-1), r(i-2), ...
            let longest = tails
                .iter()
                .filter(|tail| tail.len() <= i && tail.iter().enumerate().all(|(o, &t)| t == r(i - 1 - o)))
                .map(|tail| tail.len())
                .max();
            if let Some(len) = longest {
                return i - len;
            }
        }
        n
    }

    /// Fills `self.ids`/`self.lens` with every token that would extend a
    /// repeat of at least `allowed_length` tokens and the longest such repeat.
    fn collect_penalised(&mut self) {
        self.ids.clear();
        self.lens.clear();
        let w = self.history.last(self.last_n.unwrap_or(usize::MAX));
        let n = w.len();
        let allowed = self.params.allowed_length as usize;
        if n <= allowed {
            return;
        }
        let limit = self.repeat_limit(w);
        if limit < allowed {
            return;
        }
        // Z-function of the reversed window s[i] = w[n-1-i]: z[k] is the
        // length of the longest common suffix of w and w[..n-k].
        let s = |i: usize| w[n - 1 - i];
        let z = &mut self.z;
        z.clear();
        z.resize(n, 0);
        let (mut lo, mut hi) = (0usize, 0usize); // rightmost match box [lo, hi)
        for k in 1..n {
            let mut len = if k < hi { (hi - k).min(z[k - lo]) } else { 0 };
            while k + len < n && s(len) == s(k + len) {
                len += 1;
            }
            z[k] = len;
            if k + len > hi {
                lo = k;
                hi = k + len;
            }
        }
        // The token just after the earlier occurrence, s(k-1), would extend
        // a repeat of length z[k] (capped by the breaker limit).
        self.index.clear();
        for (k, &zk) in z.iter().enumerate().skip(1) {
            let len = zk.min(limit);
            if len < allowed {
                continue;
            }
            let tok = s(k - 1);
            match self.index.get(&tok) {
                Some(&j) => {
                    let j = j as usize;
                    self.lens[j] = self.lens[j].max(len);
                }
                None => {
                    self.index.insert(tok, self.ids.len() as u32);
                    self.ids.push(tok);
                    self.lens.push(len);
                }
            }
        }
        // Whole single-token breakers are never penalised.
        let mut keep = 0;
        for j in 0..self.ids.len() {
            if !self.is_single_token_breaker(self.ids[j]) {
                self.ids[keep] = self.ids[j];
                self.lens[keep] = self.lens[j];
                keep += 1;
            }
        }
        self.ids.truncate(keep);
        self.lens.truncate(keep);
    }

    /// The tokens DRY would penalise now, with their penalties (logit
    /// units), sorted by id. For inspection and tests.
    pub fn penalties(&mut self) -> Vec<(TokenId, f32)> {
        if self.params.is_disabled() {
            return Vec::new();
        }
        self.collect_penalised();
        let mut v: Vec<(TokenId, f32)> = self.ids.iter().zip(&self.lens).map(|(&t, &l)| (t, dry_penalty(&self.params, self.max_exponent, l))).collect();
        v.sort_by_key(|&(t, _)| t);
        v
    }
}

impl Sampler for Dry {
    fn name(&self) -> &'static str {
        "dry"
    }

    fn apply(&mut self, candidates: &mut Candidates<'_>) -> Result<(), SampleError> {
        if self.params.is_disabled() || candidates.is_empty() {
            return Ok(());
        }
        self.collect_penalised();
        if self.ids.is_empty() {
            return Ok(());
        }
        let (p, max_exp) = (self.params, self.max_exponent);
        let lens = &self.lens;
        let touched =
            self.touch.for_each(candidates.as_mut_slice(), &self.ids, |t, k| t.logit -= dry_penalty(&p, max_exp, lens[k]));
        if touched {
            candidates.set_sorted(false);
        }
        Ok(())
    }

    fn accept(&mut self, token: TokenId) {
        if !self.params.is_disabled() {
            self.history.push(token);
        }
    }

    fn reset(&mut self) {
        self.history.clear();
    }

    fn box_clone(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({ "window_len": self.history.window().len(), "penalty_last_n": self.last_n })
    }
}

/// Resolves breaker strings to token sequences exactly as llama.cpp's DRY
/// does (`get_overlapping_token_sequences`), given every token's piece
/// (`pieces[id]`, detokenized alone with special tokens rendered) and a
/// tokenizer (no BOS, special tokens not parsed).
///
/// Each string is cut to [`MAX_BREAKER_BYTES`] bytes (empty ones are
/// skipped). Then for every token id:
/// - if its piece contains the string, the token alone is a breaker;
/// - otherwise, for every position where a suffix of the piece is a proper
///   prefix of the string, the token followed by the tokenization of the
///   rest of the string (cut to [`MAX_BREAKER_TAIL`] tokens) is a breaker.
///
/// So a breaker that tokenizes to several tokens is recognised however the
/// tokenizer happened to split it, as long as the split starts inside one
/// token and the rest tokenizes canonically.
pub fn breakers_from_strings<P: AsRef<[u8]>, S: AsRef<[u8]>>(
    strings: &[S],
    pieces: &[P],
    mut tokenize: impl FnMut(&[u8]) -> Vec<TokenId>,
) -> Vec<Vec<TokenId>> {
    let mut out: Vec<Vec<TokenId>> = Vec::new();
    for s in strings {
        let s = s.as_ref();
        let s = &s[..s.len().min(MAX_BREAKER_BYTES)];
        if s.is_empty() {
            continue;
        }
        // Tokenizations of s[i..], computed once per offset.
        let mut tails: Vec<Option<Vec<TokenId>>> = vec![None; s.len() + 1];
        for (id, piece) in pieces.iter().enumerate() {
            let word = piece.as_ref();
            let id = id as TokenId;
            if contains(word, s) {
                out.push(vec![id]);
                continue;
            }
            let first = out.len();
            for pos in 0..word.len() {
                if word[pos] != s[0] {
                    continue;
                }
                let rest = &word[pos..];
                // The piece's suffix from `pos` is a prefix of s (it is
                // shorter than s, or s would be contained).
                if rest.len() < s.len() && s.starts_with(rest) {
                    let i = rest.len();
                    let tail = tails[i].get_or_insert_with(|| {
                        let mut t = tokenize(&s[i..]);
                        t.truncate(MAX_BREAKER_TAIL);
                        t
                    });
                    if out[first..].iter().any(|seq| seq[1..] == tail[..]) {
                        continue;
                    }
                    let mut seq = Vec::with_capacity(tail.len() + 1);
                    seq.push(id);
                    seq.extend_from_slice(tail);
                    out.push(seq);
                }
            }
        }
    }
    out
}

/// llama.cpp's cap on the exponent, so that base^exponent stays below
/// f32::MAX: floor(ln(f32::MAX) / ln(base)) for base > 1.000001, else none
/// (0).
fn max_exponent(base: f32) -> i64 {
    const FLOAT_MAX_LOG: f32 = 88.722_84; // llama.cpp: 88.7228391f (same f32)
    if base > 1.000_001 {
        (FLOAT_MAX_LOG / base.ln()) as i64
    } else {
        0
    }
}

/// The penalty for a repeat of `len` tokens, computed as llama.cpp does:
/// the power in double precision, the exponent capped at `max_exp` (when
/// positive), the product rounded to f32.
fn dry_penalty(p: &DryParams, max_exp: i64, len: usize) -> f32 {
    let mut exp = len as i64 - p.allowed_length as i64;
    if max_exp > 0 && exp > max_exp {
        exp = max_exp;
    }
    (p.multiplier as f64 * (p.base as f64).powf(exp as f64)) as f32
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{DrawStream, TokenData};

    fn dry(p: DryParams, breakers: Vec<Vec<TokenId>>, hist: &[TokenId]) -> Dry {
        let mut s = Dry::new(p, breakers, 0).unwrap();
        hist.iter().for_each(|&t| s.accept(t));
        s
    }

    fn p(last_n: i32) -> DryParams {
        DryParams { multiplier: 1.0, base: 2.0, allowed_length: 2, penalty_last_n: last_n }
    }

    /// Straight from the definition, quadratic: for every earlier position,
    /// the length of the common suffix, capped by the breaker limit.
    fn naive(p: DryParams, breakers: &[Vec<TokenId>], hist: &[TokenId]) -> Vec<(TokenId, f32)> {
        let w = if p.penalty_last_n > 0 { &hist[hist.len().saturating_sub(p.penalty_last_n as usize)..] } else { hist };
        let n = w.len();
        let allowed = p.allowed_length as usize;
        if n <= allowed {
            return vec![];
        }
        // breaker limit
        let mut limit = n;
        'outer: for i in 0..n {
            let end = n - 1 - i; // index of the head in w
            let mut best: Option<usize> = None;
            for b in breakers {
                let (h, tail) = (b[0], &b[1..]);
                if w[end] == h && tail.len() <= i && tail.iter().enumerate().all(|(o, &t)| w[end + 1 + o] == t) {
                    best = Some(best.map_or(tail.len(), |x: usize| x.max(tail.len())));
                }
            }
            if let Some(l) = best {
                limit = i - l;
                break 'outer;
            }
        }
        if limit < allowed {
            return vec![];
        }
        let mut best: std::collections::BTreeMap<TokenId, usize> = Default::default();
        for end in 0..n - 1 {
            // occurrence ending at w[end], followed by w[end+1]
            let mut len = 0;
            while len <= end && w[end - len] == w[n - 1 - len] {
                len += 1;
            }
            let len = len.min(limit);
            if len >= allowed {
                let e = best.entry(w[end + 1]).or_insert(0);
                *e = (*e).max(len);
            }
        }
        let single: Vec<TokenId> = breakers.iter().filter(|b| b.len() == 1).map(|b| b[0]).collect();
        best.into_iter()
            .filter(|(t, _)| !single.contains(t))
            .map(|(t, l)| (t, (p.multiplier as f64 * (p.base as f64).powf((l - allowed) as f64)) as f32))
            .collect()
    }

    #[test]
    fn matches_the_definition_on_random_histories() {
        let mut rng = DrawStream::from_state(99);
        let breakers = vec![vec![7], vec![5, 6], vec![5, 6, 1]];
        for case in 0..400 {
            let alphabet = 2 + (rng.next_u64() % 7) as i32;
            let len = (rng.next_u64() % 60) as usize;
            let mut hist: Vec<TokenId> = Vec::new();
            while hist.len() < len {
                if hist.len() > 3 && rng.next_f64() < 0.5 {
                    // repeat an earlier n-gram
                    let start = (rng.next_u64() % hist.len() as u64) as usize;
                    let l = 1 + (rng.next_u64() % 6) as usize;
                    let chunk: Vec<TokenId> = hist[start..(start + l).min(hist.len())].to_vec();
                    hist.extend(chunk);
                } else {
                    hist.push((rng.next_u64() % alphabet as u64) as TokenId);
                }
            }
            let last_n = [0, 5, 16, 1000][case % 4];
            let allowed = (case % 3) as i32;
            let params = DryParams { allowed_length: allowed, penalty_last_n: if last_n == 0 { -1 } else { last_n }, ..p(0) };
            let mut s = dry(params, breakers.clone(), &hist);
            let want = naive(DryParams { penalty_last_n: last_n, ..params }, &breakers, &hist);
            assert_eq!(s.penalties(), want, "case {case} hist {hist:?} last_n {last_n} allowed {allowed}");
        }
    }

    #[test]
    fn penalises_the_token_that_continues_a_repeat() {
        // a b c x a b -> c would make "a b c" repeat: length 2, penalty base^0
        let mut s = dry(p(-1), vec![], &[1, 2, 3, 9, 1, 2]);
        assert_eq!(s.penalties(), vec![(3, 1.0)]);
        let mut a: Vec<TokenData> = (0..5).map(|i| TokenData::new(i, 1.0)).collect();
        s.apply(&mut Candidates::new(&mut a)).unwrap();
        assert_eq!(a.iter().map(|t| t.logit).collect::<Vec<_>>(), vec![1.0, 1.0, 1.0, 0.0, 1.0]);
        // longer repeat -> larger penalty
        let mut s = dry(p(-1), vec![], &[1, 2, 3, 4, 9, 1, 2, 3]);
        assert_eq!(s.penalties(), vec![(4, 2.0)]);
        // a breaker in between stops it
        let mut s = dry(p(-1), vec![vec![8]], &[1, 2, 3, 4, 9, 1, 8, 2, 3]);
        assert_eq!(s.penalties(), vec![(4, 1.0)]);
        let mut s = dry(p(-1), vec![vec![8]], &[1, 2, 3, 4, 9, 1, 2, 8, 3]);
        assert_eq!(s.penalties(), vec![]);
        s.reset();
        assert_eq!(s.penalties(), vec![]);
    }

    #[test]
    fn disabling_values_and_validate() {
        let hist = [1, 2, 3, 1, 2, 3, 1, 2];
        for q in [DryParams { multiplier: 0.0, ..p(-1) }, DryParams { base: 0.5, ..p(-1) }, p(0), p(-2)] {
            let mut s = dry(q, vec![], &hist);
            let mut a: Vec<TokenData> = (0..5).map(|i| TokenData::new(i, 1.0)).collect();
            s.apply(&mut Candidates::new(&mut a)).unwrap();
            assert!(a.iter().all(|t| t.logit == 1.0), "{q:?}");
        }
        for bad in [
            DryParams { multiplier: f32::NAN, ..p(-1) },
            DryParams { base: f32::INFINITY, ..p(-1) },
            DryParams { allowed_length: -1, ..p(-1) },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        // the context size resolves -1
        let s = Dry::new(p(-1), vec![], 4096).unwrap();
        assert_eq!(s.window_len(), Some(4096));
        assert_eq!(Dry::new(p(-1), vec![], 0).unwrap().window_len(), None);
    }

    #[test]
    fn exponent_is_capped() {
        let params = DryParams { multiplier: 1.0, base: 1e10, allowed_length: 0, penalty_last_n: -1 };
        let hist: Vec<TokenId> = vec![1; 50];
        let mut s = dry(params, vec![], &hist);
        let pens = s.penalties();
        assert_eq!(pens.len(), 1);
        assert!(pens[0].1.is_finite() && pens[0].1 > 1e29, "{pens:?}");
    }

    #[test]
    fn breaker_strings_resolve_like_llama_cpp() {
        // toy vocabulary: pieces by id
        let pieces: Vec<&[u8]> = vec![b"a", b"b", b"\n", b"x\n", b"*", b"**", b"ab", b"c", b"abc"];
        // tokenizer: greedy longest match over the pieces
        let tokenize = |text: &[u8]| {
            let mut out = Vec::new();
            let mut i = 0;
            while i < text.len() {
                let (id, len) = pieces
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| text[i..].starts_with(p))
                    .map(|(id, p)| (id as TokenId, p.len()))
                    .max_by_key(|&(_, l)| l)
                    .unwrap();
                out.push(id);
                i += len;
            }
            out
        };
        let got = breakers_from_strings(&[b"\n".as_slice(), b"abc", b""], &pieces, tokenize);
        // "\n": contained in "\n" (2) and "x\n" (3)
        // "abc": contained in "abc" (8); "a" (0) is a prefix -> tail "bc" = [1, 7];
        //        "ab" (6) -> tail "c" = [7]
        let mut want: Vec<Vec<TokenId>> = vec![vec![2], vec![3], vec![8], vec![0, 1, 7], vec![6, 7]];
        let mut got_sorted = got.clone();
        got_sorted.sort();
        want.sort();
        assert_eq!(got_sorted, want);
        // A multi-token breaker stops repeats once complete.
        let mut s = dry(p(-1), got, &[1, 2, 3, 4, 9, 0, 1, 7, 1, 2, 3]);
        assert_eq!(s.penalties(), vec![]);
    }
}
