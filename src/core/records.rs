//! SIMD access to the `logit` and `p` fields of the 12-byte `TokenData`
//! records: the register helpers of the intrinsic kernels, and scaling
//! every `p` in place.
//!
//! A plain loop over the records reads and writes one field every 12
//! bytes: the compiler turns it into gathers and scatters (AVX-512) or one
//! scalar access per candidate. Here the records are loaded as whole
//! registers (16 records are three AVX-512 registers, 8 records three AVX2
//! registers) and the fields moved with permutes and blends; a store
//! merges the new fields into the loaded records and writes the registers
//! back, `id` unchanged.

use super::token::TokenData;

/// The instruction set [`scale_p`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordLanes {
    /// Plain loops (the target's baseline).
    Portable,
    /// AVX2 permutes and blends, 8 records at a time. Only from code
    /// compiled with AVX2 enabled, on a CPU that has it.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F permutes, 16 records at a time. Only from code compiled
    /// with AVX-512F enabled, on a CPU that has it.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Multiplies the `p` of every record by `factor`; `id` and `logit`
/// unchanged.
///
/// # Safety
/// `lanes` must be [`RecordLanes::Portable`] or an instruction set the
/// CPU has.
#[inline(always)]
pub(crate) unsafe fn scale_p(lanes: RecordLanes, records: &mut [TokenData], factor: f32) {
    match lanes {
        #[cfg(target_arch = "x86_64")]
        RecordLanes::Avx512 => avx512::scale_p(records, factor),
        #[cfg(target_arch = "x86_64")]
        RecordLanes::Avx2 => avx2::scale_p(records, factor),
        RecordLanes::Portable => portable_scale_p(records, factor),
    }
}

/// Sets the `p` of record j to `values[j] * factor` (`values` as long as
/// `records`); `id` and `logit` unchanged.
///
/// # Safety
/// As [`scale_p`].
#[inline(always)]
pub(crate) unsafe fn set_p_scaled(lanes: RecordLanes, records: &mut [TokenData], values: &[f32], factor: f32) {
    debug_assert_eq!(records.len(), values.len());
    match lanes {
        #[cfg(target_arch = "x86_64")]
        RecordLanes::Avx512 => avx512::set_p_scaled(records, values, factor),
        #[cfg(target_arch = "x86_64")]
        RecordLanes::Avx2 => avx2::set_p_scaled(records, values, factor),
        RecordLanes::Portable => portable_set_p_scaled(records, values, factor),
    }
}

#[inline(always)]
fn portable_set_p_scaled(records: &mut [TokenData], values: &[f32], factor: f32) {
    for (t, &v) in records.iter_mut().zip(values) {
        t.p = v * factor;
    }
}

#[inline(always)]
fn portable_scale_p(records: &mut [TokenData], factor: f32) {
    for t in records.iter_mut() {
        t.p *= factor;
    }
}

/// For records of 3 floats in registers of `L` floats: the permute
/// index and the lane mask that put the field at float `field` (1: logit,
/// 2: p) of each record into register `reg` from a register holding the
/// field of record j in lane j.
#[cfg(target_arch = "x86_64")]
const fn merge_pattern<const L: usize>(field: usize, reg: usize) -> ([i32; L], u32) {
    let mut idx = [0i32; L];
    let mut mask = 0u32;
    let mut lane = 0;
    while lane < L {
        let float = reg * L + lane;
        if float % 3 == field {
            idx[lane] = (float / 3) as i32;
            mask |= 1 << lane;
        }
        lane += 1;
    }
    (idx, mask)
}

/// For records of 3 floats in registers of `L` floats: the two-register
/// permute index (lane j of the first register: the logit of record j;
/// of the second: its `p`) and the lane mask that put both fields into
/// register `reg`.
#[cfg(target_arch = "x86_64")]
const fn merge_both_pattern<const L: usize>(reg: usize) -> ([i32; L], u32) {
    let mut idx = [0i32; L];
    let mut mask = 0u32;
    let mut lane = 0;
    while lane < L {
        let float = reg * L + lane;
        let field = float % 3;
        if field != 0 {
            idx[lane] = ((field - 1) * L + float / 3) as i32;
            mask |= 1 << lane;
        }
        lane += 1;
    }
    (idx, mask)
}

/// AVX-512F: 16 records are three registers.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::{merge_both_pattern, merge_pattern, portable_scale_p, portable_set_p_scaled};
    use crate::core::logit_scan::avx512::logits_of_records;
    use crate::core::token::TokenData;

    const _: () = assert!(std::mem::size_of::<TokenData>() == 12 && std::mem::offset_of!(TokenData, logit) == 4);
    const _: () = assert!(std::mem::offset_of!(TokenData, p) == 8);

    const P: [([i32; 16], u32); 3] = [merge_pattern::<16>(2, 0), merge_pattern::<16>(2, 1), merge_pattern::<16>(2, 2)];
    const BOTH: [([i32; 16], u32); 3] = [merge_both_pattern::<16>(0), merge_both_pattern::<16>(1), merge_both_pattern::<16>(2)];

    /// The 16 records at `src` (48 floats) as three registers.
    ///
    /// # Safety
    /// AVX-512F; `src` points at 16 readable records.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn load16(src: *const TokenData) -> [__m512; 3] {
        let f = src.cast::<f32>();
        [_mm512_loadu_ps(f), _mm512_loadu_ps(f.add(16)), _mm512_loadu_ps(f.add(32))]
    }

    /// Writes three registers back as the 16 records at `dst`.
    ///
    /// # Safety
    /// AVX-512F; `dst` points at 16 writable records.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn store16(dst: *mut TokenData, r: &[__m512; 3]) {
        let f = dst.cast::<f32>();
        _mm512_storeu_ps(f, r[0]);
        _mm512_storeu_ps(f.add(16), r[1]);
        _mm512_storeu_ps(f.add(32), r[2]);
    }

    /// The largest logit of `records`, NaN ignored; -inf when there is none.
    /// The logits of 16 records sit in distinct lanes of their three
    /// registers (float 3j + 1): two masked blends put them in one register,
    /// in an order the maximum does not need.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn max_logit(records: &[TokenData]) -> f32 {
        const IN_SECOND: u16 = merge_pattern::<16>(1, 1).1 as u16;
        const IN_THIRD: u16 = merge_pattern::<16>(1, 2).1 as u16;
        const _: () = assert!(IN_SECOND & IN_THIRD == 0 && (IN_SECOND | IN_THIRD).count_ones() == 11);
        let mut groups = records.chunks_exact(16);
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for g in &mut groups {
            // SAFETY: `g` is 16 records.
            let [a, b, c] = load16(g.as_ptr());
            let x = _mm512_mask_blend_ps(IN_THIRD, _mm512_mask_blend_ps(IN_SECOND, a, b), c);
            // vmaxps returns its second operand when either is NaN.
            max = _mm512_max_ps(x, max);
        }
        let tail = groups.remainder().iter().map(|t| t.logit);
        tail.fold(_mm512_reduce_max_ps(max), |m, x| if x > m { x } else { m })
    }

    /// The logits of the 16 records in `r`, lane j from record j.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn logits16(r: &[__m512; 3]) -> __m512 {
        // SAFETY: AVX-512F is enabled here, as the callee needs.
        unsafe { logits_of_records(r[0], r[1], r[2]) }
    }

    /// The ids of the 16 records in `r` (their bits), lane j from record
    /// j: two permutes, as for the logits.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn ids16(r: &[__m512; 3]) -> __m512i {
        const FIRST: [i32; 16] = [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0, 0, 0, 0, 0];
        const SECOND: [i32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16 + 1, 16 + 4, 16 + 7, 16 + 10, 16 + 13];
        // SAFETY: the loads read the 16 indices of each table.
        let (first, second) = unsafe { (_mm512_loadu_si512(FIRST.as_ptr().cast()), _mm512_loadu_si512(SECOND.as_ptr().cast())) };
        _mm512_castps_si512(_mm512_permutex2var_ps(_mm512_permutex2var_ps(r[0], first, r[1]), second, r[2]))
    }

    /// Sets the `p` of record j in `r` to lane j of `v`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn merge_p16(r: &mut [__m512; 3], v: __m512) {
        merge(r, v, &P)
    }

    /// Sets the logit of record j in `r` to lane j of `logits` and its `p`
    /// to lane j of `p`: a two-register permute and a blend per register,
    /// where a merge of each field takes two single-register permutes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn merge_logit_p16(r: &mut [__m512; 3], logits: __m512, p: __m512) {
        for (r, (idx, mask)) in r.iter_mut().zip(&BOTH) {
            // SAFETY: the load reads the 16 indices of the pattern.
            let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
            *r = _mm512_mask_blend_ps(*mask as u16, *r, _mm512_permutex2var_ps(logits, idx, p));
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn merge(r: &mut [__m512; 3], v: __m512, patterns: &[([i32; 16], u32); 3]) {
        for (r, (idx, mask)) in r.iter_mut().zip(patterns) {
            // SAFETY: the load reads the 16 indices of the pattern.
            let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
            *r = _mm512_mask_permutexvar_ps(*r, *mask as u16, idx, v);
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn set_p_scaled(records: &mut [TokenData], values: &[f32], factor: f32) {
        let f = _mm512_set1_ps(factor);
        let mut groups = records.chunks_exact_mut(16);
        let mut sources = values.chunks_exact(16);
        for (g, v) in (&mut groups).zip(&mut sources) {
            // SAFETY: `g` is 16 records, `v` 16 values.
            let mut r = load16(g.as_ptr());
            merge_p16(&mut r, _mm512_mul_ps(_mm512_loadu_ps(v.as_ptr()), f));
            store16(g.as_mut_ptr(), &r);
        }
        portable_set_p_scaled(groups.into_remainder(), sources.remainder(), factor);
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scale_p(records: &mut [TokenData], factor: f32) {
        let f = _mm512_set1_ps(factor);
        let mut groups = records.chunks_exact_mut(16);
        for g in &mut groups {
            // SAFETY: `g` is 16 records.
            let mut r = load16(g.as_ptr());
            for (r, (_, mask)) in r.iter_mut().zip(&P) {
                *r = _mm512_mask_mul_ps(*r, *mask as u16, *r, f);
            }
            store16(g.as_mut_ptr(), &r);
        }
        portable_scale_p(groups.into_remainder(), factor);
    }
}

/// AVX2: 8 records are three registers.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::{merge_pattern, portable_scale_p, portable_set_p_scaled};
    use crate::core::token::TokenData;

    /// For 8 records (24 floats in three registers) the logits sit at
    /// float 1, 4, 7 of the first, 2, 5 of the second and 0, 3, 6 of the
    /// third register: distinct lanes, so two blends gather them into one
    /// register and one permute by this index puts them in record order.
    const PICK: [i32; 8] = [1, 4, 7, 2, 5, 0, 3, 6];

    const LOGIT: [([i32; 8], u32); 3] = [merge_pattern::<8>(1, 0), merge_pattern::<8>(1, 1), merge_pattern::<8>(1, 2)];
    const P: [([i32; 8], u32); 3] = [merge_pattern::<8>(2, 0), merge_pattern::<8>(2, 1), merge_pattern::<8>(2, 2)];

    /// The 8 records at `src` (24 floats) as three registers.
    ///
    /// # Safety
    /// AVX2; `src` points at 8 readable records.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn load8(src: *const TokenData) -> [__m256; 3] {
        let f = src.cast::<f32>();
        [_mm256_loadu_ps(f), _mm256_loadu_ps(f.add(8)), _mm256_loadu_ps(f.add(16))]
    }

    /// Writes three registers back as the 8 records at `dst`.
    ///
    /// # Safety
    /// AVX2; `dst` points at 8 writable records.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn store8(dst: *mut TokenData, r: &[__m256; 3]) {
        let f = dst.cast::<f32>();
        _mm256_storeu_ps(f, r[0]);
        _mm256_storeu_ps(f.add(8), r[1]);
        _mm256_storeu_ps(f.add(16), r[2]);
    }

    /// The logits of the 8 records in `r`, lane j from record j: two
    /// blends and one permute.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn logits8(r: &[__m256; 3]) -> __m256 {
        // SAFETY: the load reads the 8 indices of PICK.
        let pick = unsafe { _mm256_loadu_si256(PICK.as_ptr().cast()) };
        _mm256_permutevar8x32_ps(logit_lanes8(r), pick)
    }

    /// The logits of the 8 records in `r` in one register, in the lanes
    /// where they sit in their own register (distinct lanes, see `PICK`):
    /// two blends, for what needs the logits in any order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn logit_lanes8(r: &[__m256; 3]) -> __m256 {
        _mm256_blend_ps::<0b0100_1001>(_mm256_blend_ps::<0b0010_0100>(r[0], r[1]), r[2])
    }

    /// The largest logit of `records`, NaN ignored; -inf when there is none.
    ///
    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn max_logit(records: &[TokenData]) -> f32 {
        let mut groups = records.chunks_exact(16);
        let mut max = [_mm256_set1_ps(f32::NEG_INFINITY); 2];
        for g in &mut groups {
            for (half, m) in max.iter_mut().enumerate() {
                // SAFETY: `g` is 16 records; 8 from 8 * half.
                let x = logit_lanes8(&load8(g.as_ptr().add(8 * half)));
                // vmaxps returns its second operand when either is NaN.
                *m = _mm256_max_ps(x, *m);
            }
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_max_ps(max[0], max[1]));
        lanes.into_iter().chain(groups.remainder().iter().map(|t| t.logit)).fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
    }

    /// The ids of the 8 records in `r` (their bits), lane j from record j:
    /// ids sit at float 0, 3, 6 of the first, 1, 4, 7 of the second and 2,
    /// 5 of the third register.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn ids8(r: &[__m256; 3]) -> __m256i {
        const PICK_ID: [i32; 8] = [0, 3, 6, 1, 4, 7, 2, 5];
        // SAFETY: the load reads the 8 indices of PICK_ID.
        let pick = unsafe { _mm256_loadu_si256(PICK_ID.as_ptr().cast()) };
        let (a, b, c) = (_mm256_permutevar8x32_ps(r[0], pick), _mm256_permutevar8x32_ps(r[1], pick), _mm256_permutevar8x32_ps(r[2], pick));
        _mm256_castps_si256(_mm256_blend_ps::<0b1100_0000>(_mm256_blend_ps::<0b0011_1000>(a, b), c))
    }

    /// Lane j of `v` at the lanes of register `k` that hold the field of
    /// record j, per `pattern`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn spread(v: __m256, pattern: &([i32; 8], u32)) -> __m256 {
        // SAFETY: the load reads the 8 indices of the pattern.
        _mm256_permutevar8x32_ps(v, unsafe { _mm256_loadu_si256(pattern.0.as_ptr().cast()) })
    }

    /// Sets the `p` of record j in `r` to lane j of `v`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn merge_p8(r: &mut [__m256; 3], v: __m256) {
        r[0] = _mm256_blend_ps::<{ P[0].1 as i32 }>(r[0], spread(v, &P[0]));
        r[1] = _mm256_blend_ps::<{ P[1].1 as i32 }>(r[1], spread(v, &P[1]));
        r[2] = _mm256_blend_ps::<{ P[2].1 as i32 }>(r[2], spread(v, &P[2]));
    }

    /// Sets the logit of record j in `r` to lane j of `v`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn merge_logit8(r: &mut [__m256; 3], v: __m256) {
        r[0] = _mm256_blend_ps::<{ LOGIT[0].1 as i32 }>(r[0], spread(v, &LOGIT[0]));
        r[1] = _mm256_blend_ps::<{ LOGIT[1].1 as i32 }>(r[1], spread(v, &LOGIT[1]));
        r[2] = _mm256_blend_ps::<{ LOGIT[2].1 as i32 }>(r[2], spread(v, &LOGIT[2]));
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn set_p_scaled(records: &mut [TokenData], values: &[f32], factor: f32) {
        let f = _mm256_set1_ps(factor);
        let mut groups = records.chunks_exact_mut(8);
        let mut sources = values.chunks_exact(8);
        for (g, v) in (&mut groups).zip(&mut sources) {
            // SAFETY: `g` is 8 records, `v` 8 values.
            let mut r = load8(g.as_ptr());
            merge_p8(&mut r, _mm256_mul_ps(_mm256_loadu_ps(v.as_ptr()), f));
            store8(g.as_mut_ptr(), &r);
        }
        portable_set_p_scaled(groups.into_remainder(), sources.remainder(), factor);
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn scale_p(records: &mut [TokenData], factor: f32) {
        let f = _mm256_set1_ps(factor);
        let mut groups = records.chunks_exact_mut(8);
        for g in &mut groups {
            // SAFETY: `g` is 8 records.
            let r = load8(g.as_ptr());
            let r = [
                _mm256_blend_ps::<{ P[0].1 as i32 }>(r[0], _mm256_mul_ps(r[0], f)),
                _mm256_blend_ps::<{ P[1].1 as i32 }>(r[1], _mm256_mul_ps(r[1], f)),
                _mm256_blend_ps::<{ P[2].1 as i32 }>(r[2], _mm256_mul_ps(r[2], f)),
            ];
            store8(g.as_mut_ptr(), &r);
        }
        portable_scale_p(groups.into_remainder(), factor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<TokenData> {
        (0..n).map(|i| TokenData { id: 1000 + i as i32, logit: i as f32 + 0.5, p: -(i as f32) }).collect()
    }

    /// Every set of lanes this CPU runs scales `p` and nothing else, for
    /// lengths around every register width.
    #[test]
    fn scale_p_scales_p_only() {
        // Pushed to on x86-64 only.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut lanes = vec![RecordLanes::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                lanes.push(RecordLanes::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                lanes.push(RecordLanes::Avx512);
            }
        }
        for lanes in lanes {
            for n in [0, 1, 7, 8, 9, 15, 16, 17, 33, 64] {
                let before = records(n);
                let mut scaled = before.clone();
                // SAFETY: only lanes this CPU has.
                unsafe { scale_p(lanes, &mut scaled, 0.5) };
                for (a, b) in scaled.iter().zip(&before) {
                    assert_eq!(*a, TokenData { id: b.id, logit: b.logit, p: b.p * 0.5 }, "{lanes:?} n={n}");
                }
            }
        }
    }

    /// The register helpers read each record's logit into its lane and
    /// write `p` and the logit back into the right record, `id` unchanged.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn register_helpers_move_the_right_fields() {
        use std::arch::x86_64::*;
        let p: Vec<f32> = (0..16).map(|i| 2.0 * i as f32 + 0.25).collect();
        let l: Vec<f32> = (0..16).map(|i| -3.0 * i as f32).collect();
        let want = |n: usize, with_logit: bool| -> Vec<TokenData> {
            (0..n).map(|i| TokenData { id: 1000 + i as i32, logit: if with_logit { l[i] } else { i as f32 + 0.5 }, p: p[i] }).collect()
        };
        if std::arch::is_x86_feature_detected!("avx512f") {
            for with_logit in [false, true] {
                let mut recs = records(16);
                let mut got = [0.0f32; 16];
                let mut ids = [0i32; 16];
                // SAFETY: the CPU has AVX-512F; 16 records, 16-lane buffers.
                unsafe {
                    let mut r = avx512::load16(recs.as_ptr());
                    _mm512_storeu_ps(got.as_mut_ptr(), avx512::logits16(&r));
                    _mm512_storeu_si512(ids.as_mut_ptr().cast(), avx512::ids16(&r));
                    if with_logit {
                        avx512::merge_logit_p16(&mut r, _mm512_loadu_ps(l.as_ptr()), _mm512_loadu_ps(p.as_ptr()));
                    } else {
                        avx512::merge_p16(&mut r, _mm512_loadu_ps(p.as_ptr()));
                    }
                    avx512::store16(recs.as_mut_ptr(), &r);
                }
                assert_eq!(got.to_vec(), (0..16).map(|i| i as f32 + 0.5).collect::<Vec<_>>());
                assert_eq!(ids.to_vec(), (1000..1016).collect::<Vec<_>>());
                assert_eq!(recs, want(16, with_logit), "avx512, logit {with_logit}");
            }
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            for with_logit in [false, true] {
                let mut recs = records(8);
                let mut got = [0.0f32; 8];
                let mut ids = [0i32; 8];
                // SAFETY: the CPU has AVX2; 8 records, 8-lane buffers.
                unsafe {
                    let mut r = avx2::load8(recs.as_ptr());
                    _mm256_storeu_ps(got.as_mut_ptr(), avx2::logits8(&r));
                    _mm256_storeu_si256(ids.as_mut_ptr().cast(), avx2::ids8(&r));
                    avx2::merge_p8(&mut r, _mm256_loadu_ps(p.as_ptr()));
                    if with_logit {
                        avx2::merge_logit8(&mut r, _mm256_loadu_ps(l.as_ptr()));
                    }
                    avx2::store8(recs.as_mut_ptr(), &r);
                }
                assert_eq!(got.to_vec(), (0..8).map(|i| i as f32 + 0.5).collect::<Vec<_>>());
                assert_eq!(ids.to_vec(), (1000..1008).collect::<Vec<_>>());
                assert_eq!(recs, want(8, with_logit), "avx2, logit {with_logit}");
            }
        }
    }
}
