//! Collecting the candidates whose logit lies in a closed interval: their
//! ids and sort keys, in array order, for top-p and typical, which
//! keep a small share of the vocabulary and only need that share ordered.
//!
//! One pass that reads the records and writes nothing into them. The
//! interval test runs on whole registers of records
//! ([`crate::core::records`]), 16 per AVX-512 compare and 8 per AVX2
//! compare, and the members' logit bits and ids are packed to the front
//! of a register (AVX-512 `vpcompressd`; AVX2 a permute from a table of
//! the 256 masks) and stored whole, so no member costs a branch; the bits
//! become sort keys after the pass, where only the members pay for it.
//! The portable loop writes every candidate and advances by one for
//! members. The kernel is [`ScanKernel::active`]'s, as for the logit scan.

use std::cell::RefCell;

use super::logit_scan::ScanKernel;
use super::radix::logit_of_desc_key;
use super::token::TokenData;

/// Room past the last member that the register stores may write.
const SLACK: usize = 16;

/// The members (`lo <= logit <= hi`; never a NaN logit) of `data`: their
/// [`desc_key`](super::radix::desc_key)s and ids, in array order,
/// written at the start of `keys` and `ids` (grown as needed, never
/// shrunk: what lies past the members is scratch). Returns how many there
/// are.
pub(crate) fn collect_in(data: &[TokenData], lo: f32, hi: f32, keys: &mut Vec<u32>, ids: &mut Vec<u32>) -> usize {
    debug_assert!(data.len() < u32::MAX as usize - SLACK);
    for v in [&mut *keys, &mut *ids] {
        if v.len() < data.len() + SLACK {
            v.resize(data.len() + SLACK, 0);
        }
    }
    let m = match ScanKernel::active() {
        // SAFETY (both): `active` only returns kernels the CPU can run;
        // `keys` and `ids` hold `data.len() + SLACK` entries.
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx512 => unsafe { collect_avx512(data, lo, hi, keys, ids) },
        #[cfg(target_arch = "x86_64")]
        ScanKernel::Avx2 => unsafe { collect_avx2(data, lo, hi, keys, ids) },
        _ => collect_portable(data, 0, 0, lo, hi, keys, ids),
    };
    to_keys(&mut keys[..m]);
    m
}

thread_local! {
    /// The key and id buffers of [`members_into`], reused across calls
    /// (no allocation per token once they have grown).
    static MEMBERS: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The members (`lo <= logit <= hi`; never a NaN logit) of `data` as
/// records, in array order, in place of what `out` held: their id and
/// logit (a -0 logit as +0), `p` 0. One [`collect_in`] pass, for samplers
/// that keep a few candidates found by a threshold (Mirostat); without
/// SIMD kernels a loop that branches on each candidate, cheaper than the
/// portable `collect_in` (which writes every candidate) when few pass.
pub(crate) fn members_into(data: &[TokenData], lo: f32, hi: f32, out: &mut Vec<TokenData>) {
    out.clear();
    if ScanKernel::active() == ScanKernel::Portable {
        // NaN fails both comparisons.
        let member = |t: &&TokenData| t.logit >= lo && t.logit <= hi;
        out.extend(data.iter().filter(member).map(|t| TokenData { id: t.id, logit: if t.logit == 0.0 { 0.0 } else { t.logit }, p: 0.0 }));
        return;
    }
    MEMBERS.with(|buffers| {
        let (keys, ids) = &mut *buffers.borrow_mut();
        let m = collect_in(data, lo, hi, keys, ids);
        out.extend(keys[..m].iter().zip(&ids[..m]).map(|(&key, &id)| TokenData { id: id as i32, logit: logit_of_desc_key(key), p: 0.0 }));
    });
}

/// The members' logit bits (never NaN) made
/// [`desc_key`](super::radix::desc_key)s in place, after the pass, where
/// only the members pay for it: -0 as +0, then negative bits as they are
/// and non-negative ones with their magnitude inverted. A loop the
/// compiler vectorises.
fn to_keys(bits: &mut [u32]) {
    for b in bits {
        let x = if *b == 0x8000_0000 { 0 } else { *b };
        *b = x ^ (((x as i32 >> 31) as u32 ^ u32::MAX) & 0x7FFF_FFFF);
    }
}

/// The portable loop from position `start` with `count` members found:
/// returns the new count. Every candidate is written at `count`, which
/// only members advance.
#[inline(always)]
fn collect_portable(data: &[TokenData], start: usize, mut count: usize, lo: f32, hi: f32, keys: &mut [u32], ids: &mut [u32]) -> usize {
    for t in &data[start..] {
        keys[count] = t.logit.to_bits();
        ids[count] = t.id as u32;
        // NaN fails both comparisons.
        count += (t.logit >= lo && t.logit <= hi) as usize;
    }
    count
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn collect_avx512(data: &[TokenData], lo: f32, hi: f32, keys: &mut [u32], ids: &mut [u32]) -> usize {
    use std::arch::x86_64::*;

    use super::records::avx512 as r16;
    let (lo_v, hi_v) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let whole = data.len() / 16 * 16;
    let mut count = 0;
    let mut start = 0;
    while start < whole {
        // SAFETY: 16 records from `start` lie inside `data`.
        let r = r16::load16(data.as_ptr().add(start));
        let x = r16::logits16(&r);
        // Ordered comparisons: false for NaN.
        let mask = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, lo_v) & _mm512_cmp_ps_mask::<_CMP_LE_OQ>(x, hi_v);
        // The logits' bits, made keys after the pass (see `to_keys`).
        // Packed in registers, then stored whole (a compressing store to
        // memory is slow on some CPUs); SAFETY: `count + 16` is within
        // `data.len() + SLACK`.
        _mm512_storeu_ps(keys.as_mut_ptr().add(count).cast(), _mm512_maskz_compress_ps(mask, x));
        _mm512_storeu_si512(ids.as_mut_ptr().add(count).cast(), _mm512_maskz_compress_epi32(mask, r16::ids16(&r)));
        count += mask.count_ones() as usize;
        start += 16;
    }
    collect_portable(data, whole, count, lo, hi, keys, ids)
}

/// For each 8-bit mask, the lanes of its set bits in increasing order,
/// then zeros: the permute that packs an AVX2 register's members.
#[cfg(target_arch = "x86_64")]
const PACK8: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut lane, mut at) = (0, 0);
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                table[mask][at] = lane as u32;
                at += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
};

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn collect_avx2(data: &[TokenData], lo: f32, hi: f32, keys: &mut [u32], ids: &mut [u32]) -> usize {
    use std::arch::x86_64::*;

    use super::records::avx2 as r8;
    let (lo_v, hi_v) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let whole = data.len() / 8 * 8;
    let mut count = 0;
    let mut start = 0;
    while start < whole {
        // SAFETY: 8 records from `start` lie inside `data`.
        let r = r8::load8(data.as_ptr().add(start));
        let x = r8::logits8(&r);
        // Ordered comparisons: false for NaN.
        let inside = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(x, lo_v), _mm256_cmp_ps::<_CMP_LE_OQ>(x, hi_v));
        let mask = _mm256_movemask_ps(inside) as usize;
        // SAFETY: the table row holds 8 lanes; `count + 8` is within
        // `data.len() + SLACK`.
        let pack = _mm256_loadu_si256(PACK8[mask].as_ptr().cast());
        _mm256_storeu_si256(keys.as_mut_ptr().add(count).cast(), _mm256_permutevar8x32_epi32(_mm256_castps_si256(x), pack));
        _mm256_storeu_si256(ids.as_mut_ptr().add(count).cast(), _mm256_permutevar8x32_epi32(r8::ids8(&r), pack));
        count += mask.count_ones() as usize;
        start += 8;
    }
    collect_portable(data, whole, count, lo, hi, keys, ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::radix::desc_key;
    use crate::core::DrawStream;

    /// Every kernel: the members are exactly the candidates in the
    /// interval, in array order, each with its position and key.
    #[test]
    fn every_kernel_collects_the_members_in_order() {
        let mut rng = DrawStream::from_state(17);
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, 1.0, -1.0, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-45, -1e-45];
        for n in [0usize, 1, 7, 8, 15, 16, 17, 63, 64, 65, 1000, 4099] {
            let logits: Vec<f32> = (0..n).map(|i| if i % 5 == 3 { special[i % special.len()] } else { (rng.next_normal() * 3.0) as f32 }).collect();
            // Ids unlike positions, negative ones too.
            let id = |i: usize| 7 * i as i32 - 20;
            let data: Vec<TokenData> = logits.iter().enumerate().map(|(i, &l)| TokenData::new(id(i), l)).collect();
            for (lo, hi) in [(1.0f32, f32::INFINITY), (-1.0, 1.0), (0.0, 0.0), (f32::NEG_INFINITY, f32::INFINITY), (5.0, -5.0)] {
                let inside: Vec<usize> = (0..n).filter(|&i| logits[i] >= lo && logits[i] <= hi).collect();
                let want: Vec<u32> = inside.iter().map(|&i| id(i) as u32).collect();
                for kernel in ScanKernel::available() {
                    let (mut keys, mut ids) = (Vec::new(), Vec::new());
                    let room = n + SLACK;
                    keys.resize(room, 7);
                    ids.resize(room, 7);
                    // SAFETY (both): `kernel` is available; the buffers hold n + SLACK.
                    let m = match kernel {
                        #[cfg(target_arch = "x86_64")]
                        ScanKernel::Avx512 => unsafe { collect_avx512(&data, lo, hi, &mut keys, &mut ids) },
                        #[cfg(target_arch = "x86_64")]
                        ScanKernel::Avx2 => unsafe { collect_avx2(&data, lo, hi, &mut keys, &mut ids) },
                        _ => collect_portable(&data, 0, 0, lo, hi, &mut keys, &mut ids),
                    };
                    to_keys(&mut keys[..m]);
                    assert_eq!(&ids[..m], &want[..], "{kernel:?} n {n} [{lo}, {hi}]");
                    for (&k, &i) in keys[..m].iter().zip(&inside) {
                        assert_eq!(k, desc_key(logits[i]), "{kernel:?}: key of {}", logits[i]);
                    }
                }
            }
        }
    }
}
