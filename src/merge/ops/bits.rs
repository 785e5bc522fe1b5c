//! Compact keep masks ([`Bits`], one bit per element) and the magnitude selections that
//! produce them from f32 bit patterns, in O(n) time and about 4 bytes per element.
//!
//! The selections take magnitudes as the bits of *non-negative* f32 values
//! (`|δ|.to_bits()`), whose u32 order is their numeric order. The boundary values are found
//! by a two-pass 16-bit radix select (histograms, no reordering). When elements equal to a
//! boundary value straddle it, torch's order decides which survive: the introsort of
//! [`torch_sort`](super::torch_sort) is replayed on the same u32 array, with each tied
//! element overwritten by `0x8000_0000 | group << 30 | index` (bit 31 is free in a
//! non-negative f32) and a comparator that decodes it back to its value. torch compares
//! values only, so this replay moves the elements exactly as `select_indices` moves its
//! (value, index) pairs, and the indices found inside the kept positions name the tied
//! elements mergekit keeps. Inputs outside that domain (a NaN, a tensor of more than 2³⁰
//! elements) take the pair-based path on the f32 values, which gives the same result; so
//! does a set sign bit (a caller error), read as the negative f32 it is.
//!
//! Memory: the input Vec (reused as scratch), the mask (n/8 bytes), and per parallel job of
//! the histogram passes two 2¹⁶-bin histograms and four 2¹⁶-bin u32 count tables (1 MiB).
use std::ops::Range;

use rayon::prelude::*;

use super::torch_sort;
use crate::model::dtype::wide_kernel;

/// A fixed-length bitset (keep masks: 1 bit per element instead of a `Vec<bool>`).
/// Bits past `len` in the last word are always zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

/// Words per parallel job in [`Bits::from_fn`] (small under test, to cross job edges).
const WORDS_PER_JOB: usize = if cfg!(test) { 1 << 4 } else { 1 << 12 };

impl Bits {
    /// `len` zero bits.
    pub fn new(len: usize) -> Bits {
        Bits {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// Bit `i` = `f(i)`, evaluated in parallel (each index exactly once, in no fixed order).
    pub fn from_fn(len: usize, f: impl Fn(usize) -> bool + Sync) -> Bits {
        let mut bits = Bits::new(len);
        bits.words
            .par_chunks_mut(WORDS_PER_JOB)
            .enumerate()
            .for_each(|(job, words)| {
                for (w, word) in words.iter_mut().enumerate() {
                    let base = (job * WORDS_PER_JOB + w) * 64;
                    let top = (len - base).min(64);
                    let mut acc = 0u64;
                    for b in 0..top {
                        acc |= (f(base + b) as u64) << b;
                    }
                    *word = acc;
                }
            });
        bits
    }

    /// Bit `i` = `keep(values[i])`, in parallel (vectorizable: no per-bit call through an
    /// index).
    pub fn from_slice<T: Copy + Sync>(values: &[T], keep: impl Fn(T) -> bool + Sync) -> Bits {
        let mut bits = Bits::new(values.len());
        bits.words
            .par_chunks_mut(WORDS_PER_JOB)
            .zip(values.par_chunks(WORDS_PER_JOB * 64))
            .for_each(|(words, values)| {
                for (word, chunk) in words.iter_mut().zip(values.chunks(64)) {
                    *word = match <&[T; 64]>::try_from(chunk) {
                        Ok(chunk) => pack64(chunk.map(|v| keep(v) as u8)),
                        Err(_) => chunk
                            .iter()
                            .enumerate()
                            .fold(0, |acc, (b, &v)| acc | (keep(v) as u64) << b),
                    };
                }
            });
        bits
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn get(&self, i: usize) -> bool {
        debug_assert!(i < self.len, "bit {i} of {}", self.len);
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// Bits `64·w .. 64·w + 64` (bit b of the word is element 64·w + b).
    #[inline]
    pub fn word(&self, w: usize) -> u64 {
        self.words[w]
    }

    /// Build from whole words (bit b of word w is element 64·w + b); bits past `len` must
    /// be zero.
    pub fn from_words(words: Vec<u64>, len: usize) -> Bits {
        debug_assert_eq!(words.len(), len.div_ceil(64));
        Bits { words, len }
    }

    /// Set bit `i` to 1.
    #[inline]
    pub fn set(&mut self, i: usize) {
        debug_assert!(i < self.len, "bit {i} of {}", self.len);
        self.words[i / 64] |= 1 << (i % 64);
    }

    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// As one `bool` per element.
    pub fn to_vec(&self) -> Vec<bool> {
        (0..self.len).map(|i| self.get(i)).collect()
    }
}

/// 64 flags (0 or 1) as the bits of one word, flag `b` at bit `b`.
#[inline]
pub(super) fn pack64(flags: [u8; 64]) -> u64 {
    flags
        .chunks_exact(8)
        .enumerate()
        .fold(0, |acc, (j, eight)| {
            let x = u64::from_le_bytes(eight.try_into().expect("chunks of 8"));
            // Byte i's low bit lands at bit 56 + i: no two partial products overlap.
            acc | (x.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * j)
        })
}

/// ORs the bits of `src` into `words` from bit `at` on: bit `i` of `src` (bit `i % 64` of
/// `src[i / 64]`) lands on bit `at + i`. `src`'s bits must fit: those past the end of
/// `words` are not allowed to be set.
#[inline]
pub(super) fn or_at(words: &mut [u64], at: usize, src: &[u64]) {
    let (w, shift) = (at / 64, at % 64);
    let words = &mut words[w..];
    if shift == 0 {
        for (o, &x) in words.iter_mut().zip(src) {
            *o |= x;
        }
        return;
    }
    for (i, &x) in src.iter().enumerate() {
        words[i] |= x << shift;
        let high = x >> (64 - shift);
        if high != 0 {
            words[i + 1] |= high;
        }
    }
}

/// Keep set of the `k` largest magnitudes, ties at the boundary resolved as torch's
/// `argsort(descending=True)[:k]` does: exactly [`top_k_mask`](super::top_k_mask)`(xs, k)`
/// for `mags[i] = xs[i].abs().to_bits()`. `mags` (non-negative f32 bit patterns) is used
/// as scratch.
pub fn top_k_bits(mut mags: Vec<u32>, k: usize) -> Bits {
    let n = mags.len();
    if k >= n {
        return Bits::from_fn(n, |_| true);
    }
    if k == 0 {
        return Bits::new(n);
    }
    // The k-th largest is at ascending position n − k.
    let Some([t]) = boundaries(&mags, [n - k]) else {
        return top_k_pairs(&to_f32(mags), k);
    };
    if n - t.below == k {
        // Every element equal to the threshold is kept.
        return Bits::from_slice(&mags, |m| m >= t.value);
    }
    if n > ORDINALS {
        return top_k_pairs(&to_f32(mags), k);
    }
    let mut keep = Bits::from_slice(&mags, |m| m > t.value);
    resolve_ties(&mut mags, &[t], true, &[k], 0..k, &mut keep);
    keep
}

/// Keep set of the elements at positions `[start, end)` of `torch.sort(|x|)` (ascending),
/// ties at the boundaries resolved as torch's sort does: exactly
/// [`ascending_window_mask`](super::ascending_window_mask)`(xs, start, end)` for
/// `mags[i] = xs[i].abs().to_bits()`. `mags` (non-negative f32 bit patterns) is used as
/// scratch.
pub fn ascending_window_bits(mut mags: Vec<u32>, start: usize, end: usize) -> Bits {
    let n = mags.len();
    let end = end.min(n);
    if start >= end {
        return Bits::new(n);
    }
    let Some([lo, hi]) = boundaries(&mags, [start, end - 1]) else {
        return window_pairs(&to_f32(mags), start, end);
    };
    // A boundary is ambiguous when elements equal to its value lie on both sides of it.
    let lo_ties = lo.below != start;
    let hi_ties = hi.below + hi.equal != end;
    let (lo_v, hi_v) = (lo.value, hi.value);
    if !lo_ties && !hi_ties {
        return Bits::from_slice(&mags, |m| (lo_v..=hi_v).contains(&m));
    }
    let groups: Vec<Boundary> = match (lo_ties, hi_ties) {
        _ if lo_v == hi_v => vec![lo],
        (true, true) => vec![lo, hi],
        (true, false) => vec![lo],
        _ => vec![hi],
    };
    if n > ORDINALS {
        return window_pairs(&to_f32(mags), start, end);
    }
    let (t0, t1) = (groups[0].value, groups[groups.len() - 1].value);
    let mut keep = Bits::from_slice(&mags, |m| (lo_v..=hi_v).contains(&m) && m != t0 && m != t1);
    resolve_ties(
        &mut mags,
        &groups,
        false,
        &[start, end],
        start..end,
        &mut keep,
    );
    keep
}

/// Element indices a tie entry can carry (30 bits; longer tensors take the pair path).
const ORDINALS: usize = 1 << 30;
const TIE: u32 = 0x8000_0000;

/// Encode the elements equal to each group's value as `TIE | g << 30 | index`, replay `select_indices(values, descending, bounds)` on the encoded array,
/// and set in `keep` the tied elements that end in positions `window`.
fn resolve_ties(
    mags: &mut [u32],
    groups: &[Boundary],
    descending: bool,
    bounds: &[usize],
    window: Range<usize>,
    keep: &mut Bits,
) {
    debug_assert!(groups.len() <= 2 && mags.len() <= ORDINALS);
    let values = [groups[0].value, groups[groups.len() - 1].value];
    // Each tied element carries its own index (n ≤ 2^30 is checked by the callers), so no
    // side table is needed: the array stays the only O(n) memory.
    mags.par_chunks_mut(HIST_JOB)
        .enumerate()
        .for_each(|(j, chunk)| encode_ties(chunk, (j * HIST_JOB) as u32, values));
    replay_ties(mags, values, descending, bounds, window, keep);
}

wide_kernel! {
    /// [`resolve_ties`]' encoding of the elements of `chunk` (from element `first`) equal
    /// to either value: `TIE | group << 30 | index`.
    fn encode_ties(chunk: &mut [u32], first: u32, values: [u32; 2]) {
        for (i, m) in (first..).zip(chunk.iter_mut()) {
            let g = (*m != values[0]) as u32;
            let tied = *m == values[0] || *m == values[1];
            *m = if tied { TIE | g << 30 | i } else { *m };
        }
    }
}

wide_kernel! {
    /// [`resolve_ties`]' replay of torch's selection on the encoded array, and the tied
    /// elements it leaves inside `window` set in `keep` (compiled wide: the partition's
    /// scans are vector compares of the decoded values).
    fn replay_ties(
        mags: &mut [u32],
        values: [u32; 2],
        descending: bool,
        bounds: &[usize],
        window: Range<usize>,
        keep: &mut Bits,
    ) {
        // Bit arithmetic rather than branches or an indexed load (ties are scattered at
        // random, so branches mispredict), which also lets the partition's scans vectorise.
        let (v0, flip) = (values[0], values[0] ^ values[1]);
        let decode = move |e: u32| {
            let tie = ((e as i32) >> 31) as u32; // all ones for a tie entry
            let v = v0 ^ (flip & 0u32.wrapping_sub(e >> 30 & 1));
            (v & tie) | (e & !tie)
        };
        if descending {
            torch_sort::select_by(mags, |a, b| decode(*a) > decode(*b), bounds);
        } else {
            torch_sort::select_by(mags, |a, b| decode(*a) < decode(*b), bounds);
        }
        // `keep` holds the window's untied elements already: the rest of the window is
        // ties, `missing` of them. The scan stops once it has found them all; it runs from
        // the window's end, next to top-k's boundary, 64 entries at a time (which are
        // ties, as one mask of vector compares, then each of those).
        let mut missing = window.len() - keep.count_ones();
        for es in mags[window].rchunks(64) {
            if missing == 0 {
                break;
            }
            let mut flags = [0u8; 64];
            for (f, &e) in flags.iter_mut().zip(es) {
                *f = (e & TIE != 0) as u8;
            }
            let mut m = pack64(flags);
            missing -= m.count_ones() as usize;
            while m != 0 {
                let e = es[m.trailing_zeros() as usize];
                m &= m - 1;
                keep.set((e & (ORDINALS as u32 - 1)) as usize);
            }
        }
        debug_assert_eq!(missing, 0, "tied elements of the window");
    }
}

/// The value at one ascending position, with how many elements are below / equal to it.
#[derive(Debug, Clone, Copy)]
struct Boundary {
    value: u32,
    below: usize,
    equal: usize,
}

/// Largest valid magnitude bits (+∞); anything above is NaN or has the sign bit set.
const INF: u32 = 0x7f80_0000;
/// Below this length the boundaries come from `select_nth_unstable` on a copy.
const RADIX_MIN: usize = 1 << 16;
/// Elements per parallel job in the histogram and encoding passes (small under test, so
/// that the tests cross job edges).
const HIST_JOB: usize = if cfg!(test) { 1 << 12 } else { 1 << 20 };

/// The boundaries at ascending positions `pos` (each `< mags.len()`), or `None` when some
/// magnitude is not a non-negative, non-NaN f32 (the caller then takes the pair path).
fn boundaries<const P: usize>(mags: &[u32], pos: [usize; P]) -> Option<[Boundary; P]> {
    if mags.len() < RADIX_MIN {
        if mags.iter().any(|&m| m > INF) {
            return None;
        }
        let mut copy = mags.to_vec();
        return Some(pos.map(|p| {
            let value = *copy.select_nth_unstable(p).1;
            let below = mags.iter().filter(|&&m| m < value).count();
            let equal = mags.iter().filter(|&&m| m == value).count();
            Boundary {
                value,
                below,
                equal,
            }
        }));
    }
    // Pass 1: high 16 bits (and whether any low half is non-zero: bf16 values have none).
    let (high, low_bits) = high_histogram(mags);
    if high[(INF >> 16) as usize + 1..].iter().any(|&c| c > 0)
        || (high[(INF >> 16) as usize] > 0 && mags.par_iter().any(|&m| m > INF))
    {
        return None;
    }
    let locate = |hist: &[u64], p: usize| {
        let mut below = 0;
        for (b, &c) in hist.iter().enumerate() {
            if p < below + c as usize {
                return (b as u32, below);
            }
            below += c as usize;
        }
        unreachable!("position {p} beyond the histogram total {below}")
    };
    let buckets = pos.map(|p| locate(&high, p));
    if low_bits == 0 {
        // Each value is its bucket: no second pass.
        return Some(std::array::from_fn(|j| {
            let (b, below) = buckets[j];
            Boundary {
                value: b << 16,
                below,
                equal: high[b as usize] as usize,
            }
        }));
    }
    // Pass 2: low 16 bits inside the (at most two distinct) buckets.
    let (b0, b1) = (buckets[0].0, buckets[P - 1].0);
    let bins = if b0 == b1 { 1 << 16 } else { 2 << 16 };
    let (low, _) = histogram(mags, bins, |chunk, hist| {
        for &m in chunk {
            let b = m >> 16;
            let lo = (m & 0xffff) as usize;
            if b == b0 {
                hist[lo] += 1;
            } else if b == b1 {
                hist[lo | 1 << 16] += 1;
            }
        }
        0
    });
    Some(std::array::from_fn(|j| {
        let (b, below_b) = buckets[j];
        let part = &low[if b == b0 {
            0..1 << 16
        } else {
            1 << 16..2 << 16
        }];
        let (l, below_l) = locate(part, pos[j] - below_b);
        Boundary {
            value: b << 16 | l,
            below: below_b + below_l,
            equal: part[l as usize] as usize,
        }
    }))
}

/// Parallel histogram over `bins` bins: `count` adds the counts of one job's chunk of
/// `mags` to a histogram and returns a summary OR (e.g. whether any magnitude has low
/// bits); the histograms are summed, the ORs combined.
fn histogram(
    mags: &[u32],
    bins: usize,
    count: impl Fn(&[u32], &mut [u64]) -> u32 + Sync,
) -> (Vec<u64>, u32) {
    mags.par_chunks(HIST_JOB)
        .fold(
            || (vec![0u64; bins], 0u32),
            |(mut hist, or), chunk| {
                let more = count(chunk, &mut hist);
                (hist, or | more)
            },
        )
        .reduce_with(|(mut a, or_a), (b, or_b)| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            (a, or_a | or_b)
        })
        .unwrap_or_else(|| (vec![0u64; bins], 0))
}

/// [`histogram`] of the high 16 bits of every magnitude, with the OR of their low halves
/// ([`count_high`] per job). Each rayon fold keeps its four u32 tables across its jobs
/// (they were zeroed per 2²⁰-element job), so tables are summed once per fold; a fold's
/// counts fit u32 while the tensor has fewer than 2³² elements.
fn high_histogram(mags: &[u32]) -> (Vec<u64>, u32) {
    if mags.len() as u64 >= 1 << 32 {
        return histogram(mags, 1 << 16, |chunk, hist| {
            let mut tables = vec![0u32; 4 << 16];
            let or = count_high(chunk, &mut tables);
            add_tables(hist, &tables);
            or
        });
    }
    mags.par_chunks(HIST_JOB)
        .fold(
            || (Vec::new(), 0u32),
            |(mut tables, or): (Vec<u32>, u32), chunk| {
                tables.resize(4 << 16, 0);
                let more = count_high(chunk, &mut tables);
                (tables, or | more)
            },
        )
        .fold(
            || (vec![0u64; 1 << 16], 0u32),
            |(mut hist, or), (tables, more)| {
                add_tables(&mut hist, &tables);
                (hist, or | more)
            },
        )
        .reduce_with(|(mut a, or_a), (b, or_b)| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            (a, or_a | or_b)
        })
        .unwrap_or_else(|| (vec![0u64; 1 << 16], 0))
}

/// `hist[b] += Σ tables[t][b]` over the four 2¹⁶-bin tables of [`count_high`] (none when
/// `tables` is empty).
fn add_tables(hist: &mut [u64], tables: &[u32]) {
    for table in tables.chunks(1 << 16) {
        hist.iter_mut()
            .zip(table)
            .for_each(|(h, &c)| *h += c as u64);
    }
}

wide_kernel! {
    /// Counts of `m >> 16` over `chunk` (at most 2³² elements) into `hist`, four tables of
    /// 2¹⁶ bins (element i counted in table i mod 4: runs of equal magnitudes, common in
    /// task vectors, would otherwise make one chain of increments of one counter), and the
    /// OR of every `m & 0xffff`.
    fn count_high(chunk: &[u32], hist: &mut [u32]) -> u32 {
        let hist = &mut hist[..4 << 16];
        let mut or = 0u32;
        let mut quads = chunk.chunks_exact(4);
        for q in &mut quads {
            for (t, &m) in q.iter().enumerate() {
                hist[t << 16 | (m >> 16) as usize] += 1;
                or |= m;
            }
        }
        for &m in quads.remainder() {
            hist[(m >> 16) as usize] += 1;
            or |= m;
        }
        or & 0xffff
    }
}

fn to_f32(mags: Vec<u32>) -> Vec<f32> {
    mags.into_iter().map(f32::from_bits).collect()
}

/// Value at position `pos` of `vals` sorted ascending by `total_cmp` (`vals` is reordered).
fn select_ascending(vals: &mut [f32], pos: usize) -> f32 {
    *vals.select_nth_unstable_by(pos, f32::total_cmp).1
}

/// The pair-based top-k (any values, NaN included): the reference for [`top_k_bits`].
fn top_k_pairs(vals: &[f32], k: usize) -> Bits {
    let n = vals.len();
    if k >= n {
        return Bits::from_fn(n, |_| true);
    }
    if k == 0 {
        return Bits::new(n);
    }
    let threshold = select_ascending(&mut vals.to_vec(), n - k);
    let greater = vals.iter().filter(|&&v| v > threshold).count();
    let equal = vals.iter().filter(|&&v| v == threshold).count();
    if greater + equal == k {
        return Bits::from_slice(vals, |v| v >= threshold);
    }
    // Equal values straddle the boundary: torch's order decides.
    let mut keep = Bits::new(n);
    for &i in &torch_sort::select_indices(vals, true, &[k])[..k] {
        keep.set(i as usize);
    }
    keep
}

/// The pair-based ascending window (any values, NaN included): the reference for
/// [`ascending_window_bits`].
fn window_pairs(vals: &[f32], start: usize, end: usize) -> Bits {
    let n = vals.len();
    let end = end.min(n);
    if start >= end {
        return Bits::new(n);
    }
    let mut copy = vals.to_vec();
    let hi = select_ascending(&mut copy, end - 1);
    let lo = select_ascending(&mut copy[..end], start);
    let count = |pred: &dyn Fn(f32) -> bool| vals.iter().filter(|&&v| pred(v)).count();
    let less_lo = count(&|v| v < lo);
    let (less_hi, equal_hi) = (count(&|v| v < hi), count(&|v| v == hi));
    // Unambiguous when every element equal to a boundary value is on the same side of it.
    if less_lo == start && less_hi + equal_hi == end {
        return Bits::from_slice(vals, |v| (lo..=hi).contains(&v));
    }
    let mut keep = Bits::new(n);
    for &i in &torch_sort::select_indices(vals, false, &[start, end])[start..end] {
        keep.set(i as usize);
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::merge::ops::tests::lcg;

    fn set_of(n: usize, idx: &[u32]) -> Bits {
        let mut b = Bits::new(n);
        idx.iter().for_each(|&i| b.set(i as usize));
        b
    }

    #[test]
    fn bitset_basics() {
        for len in [0, 1, 63, 64, 65, 300_000] {
            let f = |i: usize| i.is_multiple_of(3) || i % 7 == 1;
            let a = Bits::from_fn(len, f);
            let v: Vec<usize> = (0..len).collect();
            assert_eq!(Bits::from_slice(&v, f), a);
            let mut b = Bits::new(len);
            (0..len).filter(|&i| f(i)).for_each(|i| b.set(i));
            assert_eq!(a, b);
            assert_eq!(a.len(), len);
            assert_eq!(a.is_empty(), len == 0);
            assert_eq!(a.count_ones(), (0..len).filter(|&i| f(i)).count());
            assert!((0..len).all(|i| a.get(i) == f(i)));
            assert_eq!(a.to_vec(), (0..len).map(f).collect::<Vec<_>>());
            assert_eq!(Bits::from_fn(len, |_| true).count_ones(), len);
        }
    }

    /// Magnitude bit patterns for `n` elements: `distinct` bf16 values (tie-heavy), or
    /// f32 values with arbitrary low bits when `distinct == 0`.
    fn magnitudes(next: &mut impl FnMut() -> u64, n: usize, distinct: u64) -> Vec<u32> {
        let palette: Vec<u32> = (0..distinct.max(1))
            .map(|_| (0x3a00 + next() as u32 % 0xa00) << 16)
            .collect();
        (0..n)
            .map(|_| match distinct {
                0 => 0x3a00_0000 + next() as u32 % 0x0a00_0000 / 4096 * 4096,
                _ => palette[next() as usize % palette.len()],
            })
            .collect()
    }

    fn as_f32(m: &[u32]) -> Vec<f32> {
        m.iter().map(|&b| f32::from_bits(b)).collect()
    }

    #[test]
    fn top_k_and_window_match_the_pair_replay() {
        let mut next = lcg(11);
        for n in [0usize, 1, 2, 16, 17, 100, 5000, 100_003] {
            for distinct in [1, 2, 3, 7, 60, 0] {
                let mags = magnitudes(&mut next, n, distinct);
                let vals = as_f32(&mags);
                let mut cuts = vec![0, 1, 2, n / 3, n / 2, n.saturating_sub(1), n, n + 3];
                cuts.extend((0..3).map(|_| next() as usize % (n + 1)));
                let desc = torch_sort::select_indices(&vals, true, &cuts);
                let asc = torch_sort::select_indices(&vals, false, &cuts);
                for &k in &cuts {
                    let want = set_of(n, &desc[..k.min(n)]);
                    assert_eq!(
                        top_k_bits(mags.clone(), k),
                        want,
                        "n {n} d {distinct} k {k}"
                    );
                    assert_eq!(top_k_pairs(&vals, k), want);
                }
                for &start in &cuts {
                    for &end in &cuts {
                        let (s, e) = (start.min(n), end.min(n));
                        let want = if s < e {
                            let sel = torch_sort::select_indices(&vals, false, &[s, e]);
                            set_of(n, &sel[s..e])
                        } else {
                            Bits::new(n)
                        };
                        if s < e && [s, e].iter().all(|c| cuts.contains(c)) {
                            assert_eq!(set_of(n, &asc[s..e]), want);
                        }
                        let got = ascending_window_bits(mags.clone(), start, end);
                        assert_eq!(got, want, "n {n} d {distinct} {start}..{end}");
                        assert_eq!(window_pairs(&vals, start, end), want);
                    }
                }
            }
        }
    }

    #[test]
    fn both_window_ends_inside_one_run_of_ties() {
        // Long runs of one value, both boundaries inside the same run (lo == hi), inside
        // two different runs, and one end on a run edge.
        let mut next = lcg(5);
        for n in [40usize, 1000, 100_000] {
            let a = 0x3f80_0000u32;
            let b = 0x4000_0000u32;
            let mags: Vec<u32> = (0..n)
                .map(|_| match next() % 10 {
                    0 => 0x3f00_0000,
                    1..=5 => a,
                    _ => b,
                })
                .collect();
            let vals = as_f32(&mags);
            let below = mags.iter().filter(|&&m| m < a).count();
            let runs = mags.iter().filter(|&&m| m == a).count();
            for (s, e) in [
                (below + 1, below + runs - 1),
                (below + runs / 3, below + runs / 2),
                (below + 1, n - 1),
                (below, n - 2),
                (below + 2, below + runs),
            ] {
                let sel = torch_sort::select_indices(&vals, false, &[s, e]);
                assert_eq!(
                    ascending_window_bits(mags.clone(), s, e),
                    set_of(n, &sel[s..e])
                );
            }
        }
    }

    #[test]
    fn nan_infinity_and_sign_bits_match_the_pair_path() {
        let mut next = lcg(9);
        for n in [30usize, 100_000] {
            for odd in [
                0x7f80_0000u32,
                0x7fc0_0000,
                0x7f80_0001,
                0x8000_0000,
                0xbf80_0000,
            ] {
                let mut mags = magnitudes(&mut next, n, 3);
                mags[n / 2] = odd;
                mags[n / 3] = odd;
                let vals = as_f32(&mags);
                for k in [1, n / 2, n - 1] {
                    assert_eq!(top_k_bits(mags.clone(), k), top_k_pairs(&vals, k));
                }
                for (s, e) in [(0, n / 2), (n / 4, n - 1), (1, n)] {
                    let got = ascending_window_bits(mags.clone(), s, e);
                    assert_eq!(got, window_pairs(&vals, s, e));
                }
            }
        }
    }
}
