//! Shared tensor math used by several methods, written once: deterministic reductions,
//! the four sparsifiers of mergekit's `sparsify.py` (magnitude top-k, random/DARE,
//! magnitude_outliers/breadcrumbs, della_magprune), the rescale rules, and TIES sign
//! consensus.
//!
//! Determinism: every reduction splits its input into fixed chunks of [`CHUNK`] elements,
//! sums each chunk in f64 in index order and adds the chunk sums in order, so the result is
//! bit-identical for any rayon thread count. Sparsifier masks are pure functions of the
//! values, the parameters and the [`Stream`] (no shared RNG state).
//!
//! Tie rule (magnitude selection). mergekit orders magnitudes with torch's unstable CPU sort
//! (libstdc++ introsort), so which of several equal magnitudes at a selection boundary
//! survive is decided by that algorithm's data movement. lamarck finds the boundary value in
//! O(n) by a radix select on the magnitudes' f32 bit patterns ([`top_k_bits`],
//! [`ascending_window_bits`]); only when equal magnitudes straddle it (common with bf16 task
//! vectors) does it replay torch's quickselect ([`torch_sort`]) on those same 4-byte
//! patterns, the tied elements tagged through the free sign bit, to keep exactly the
//! elements mergekit keeps. Masks are [`Bits`] (1 bit per element). DELLA's per-row ranks
//! come from a radix sort of (magnitude, index) packed into one integer key; only the groups
//! of equal magnitudes where an element's draw falls between the group's lowest and highest
//! keep threshold need torch's exact order, and for those the partitions of torch's sort that
//! overlap them are replayed (a row without equal magnitudes has a single sorted order).
use rayon::prelude::*;

mod bits;
mod sums;
pub mod torch_sort;

pub use bits::{ascending_window_bits, top_k_bits, Bits};
pub use sums::chunk_sums;

use super::rng::Stream;
use crate::model::dtype::wide_kernel;
use crate::model::DType;

/// Round an f64 scalar to `dtype` as mergekit's torch scalars in that dtype are; f32
/// compute keeps the f64 value (lamarck's reductions are more precise than f32 there).
pub fn round64(dtype: DType, x: f64) -> f64 {
    match dtype {
        DType::F32 => x,
        other => other.round(x as f32) as f64,
    }
}

/// Fixed reduction chunk (elements). Part of the numeric definition: do not tune per machine.
pub const CHUNK: usize = 1 << 16;

/// Σ f(xᵢ) in f64 over fixed chunks (bit-identical for any thread count).
pub fn sum_f64(xs: &[f32], f: impl Fn(f32) -> f64 + Sync) -> f64 {
    let parts: Vec<f64> = xs
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&x| f(x)).sum::<f64>())
        .collect();
    parts.iter().sum()
}

/// Σ aᵢ·bᵢ in f64 over fixed chunks (bit-identical for any thread count).
pub fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    let parts: Vec<f64> = a
        .par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(&p, &q)| p as f64 * q as f64)
                .sum::<f64>()
        })
        .collect();
    parts.iter().sum()
}

/// ‖x‖₁ in f64.
pub fn l1_norm(xs: &[f32]) -> f64 {
    sum_f64(xs, |x| x.abs() as f64)
}

/// ‖x‖₂ in f64.
pub fn l2_norm(xs: &[f32]) -> f64 {
    sum_f64(xs, |x| x as f64 * x as f64).sqrt()
}

use crate::registry::Sparsifier;

/// What happens to the kept values after masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescale {
    /// Kept values unchanged (`rescale: false`).
    None,
    /// Current mergekit: scale the masked tensor so its L1 norm equals the original's
    /// (skipped when either norm is below 1e-7).
    L1,
    /// mergekit ≤ 0.0.6: divide each kept value by its own keep probability (1/density for
    /// DARE, 1/pᵢ for DELLA).
    InverseProbability,
}

/// `floor(x)` as Python's `int(x)` does for the non-negative products used here.
pub fn floor_count(fraction: f64, n: usize) -> usize {
    let v = fraction * n as f64;
    if v <= 0.0 {
        0
    } else {
        (v as usize).min(n)
    }
}

/// Magnitude bit patterns `|x|.to_bits()`, the input of [`top_k_bits`] and
/// [`ascending_window_bits`].
pub fn magnitude_bits(xs: &[f32]) -> Vec<u32> {
    xs.par_iter().map(|x| x.to_bits() & 0x7fff_ffff).collect()
}

/// Keep mask for the `k` largest |x|, ties at the boundary resolved as torch's
/// `argsort(descending=True)[:k]` does ([`top_k_bits`] as one `bool` per element).
pub fn top_k_mask(xs: &[f32], k: usize) -> Vec<bool> {
    top_k_bits(magnitude_bits(xs), k).to_vec()
}

/// Keep mask for the elements at positions `[start, end)` of `torch.sort(|x|)` (ascending),
/// ties at the boundaries resolved as torch's sort does ([`ascending_window_bits`] as one
/// `bool` per element).
pub fn ascending_window_mask(xs: &[f32], start: usize, end: usize) -> Vec<bool> {
    ascending_window_bits(magnitude_bits(xs), start, end).to_vec()
}

/// Apply `keep` to `delta` in place, then rescale per `rescale`. `inverse_p(i)` is the keep
/// probability of element `i` (used only by [`Rescale::InverseProbability`]).
fn apply_mask(
    delta: &mut [f32],
    keep: impl Fn(usize) -> bool + Sync,
    rescale: Rescale,
    keep_probability: impl Fn(usize) -> f64 + Sync,
    dtype: DType,
) {
    let before = if rescale == Rescale::L1 {
        l1_norm(delta)
    } else {
        0.0
    };
    delta
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (j, v) in chunk.iter_mut().enumerate() {
                let i = c * CHUNK + j;
                if !keep(i) {
                    *v = 0.0;
                } else if rescale == Rescale::InverseProbability {
                    *v = dtype.round((*v as f64 / keep_probability(i)) as f32);
                }
            }
        });
    if rescale == Rescale::L1 {
        let after = l1_norm(delta);
        // Under a 16-bit compute dtype mergekit's norms, ratio and product are rounded to it.
        let (before, after) = (round64(dtype, before), round64(dtype, after));
        if before >= 1e-7 && after >= 1e-7 {
            let factor = round64(dtype, before / after) as f32;
            delta
                .par_iter_mut()
                .for_each(|v| *v = dtype.round(*v * factor));
        }
    }
}

/// Parameters of one sparsification call.
#[derive(Debug, Clone, Copy)]
pub struct SparsifyArgs {
    pub density: f64,
    /// Breadcrumbs' outlier fraction.
    pub gamma: f64,
    /// DELLA's probability half-range.
    pub epsilon: f64,
    pub rescale: Rescale,
    /// The compute dtype: rescale factors and rescaled values are rounded to it, as in mergekit.
    pub dtype: DType,
    /// Row length for DELLA (the last dimension; the whole tensor for 1-D).
    pub row_len: usize,
}

/// Sparsify one task vector in place. `density ≥ 1` leaves it untouched (no rescale), as
/// mergekit does. DELLA's ε bounds are checked by the caller.
pub fn sparsify(delta: &mut [f32], method: Sparsifier, args: SparsifyArgs, stream: Stream) {
    let n = delta.len();
    let density = args.density;
    if density >= 1.0 || n == 0 {
        return;
    }
    if density <= 0.0 {
        delta.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    // The kept set as a mask, or the whole job for the draws that need no mask.
    let keep = match method {
        Sparsifier::Magnitude => top_k_bits(magnitude_bits(delta), floor_count(density, n).max(1)),
        Sparsifier::MagnitudeOutliers => {
            let target = floor_count(density, n);
            let n_top = floor_count(args.gamma, n);
            let n_bot = n.saturating_sub(target + n_top);
            ascending_window_bits(magnitude_bits(delta), n_bot, n_bot + target)
        }
        Sparsifier::Random => {
            let threshold = super::rng::threshold(density);
            let keep = |i: usize| stream.keep(i as u64, threshold);
            return apply_mask(delta, keep, args.rescale, |_| density, args.dtype);
        }
        // DELLA with ε = 0 is DARE: the same draws, so the same mask for the same seed.
        Sparsifier::DellaMagprune if args.epsilon == 0.0 => {
            return sparsify(delta, Sparsifier::Random, args, stream);
        }
        // mergekit ≤ 0.0.6 divides each kept value by its own probability
        Sparsifier::DellaMagprune if args.rescale == Rescale::InverseProbability => {
            let probs = della_keep_probabilities(delta, density, args.epsilon, args.row_len);
            let keep = |i: usize| stream.bernoulli(i as u64, probs[i] as f64);
            return apply_mask(delta, keep, args.rescale, |i| probs[i] as f64, args.dtype);
        }
        Sparsifier::DellaMagprune => {
            della_keep_bits(delta, density, args.epsilon, args.row_len, stream, 0)
        }
    };
    apply_mask(
        delta,
        |i| keep.get(i),
        args.rescale,
        |_| density,
        args.dtype,
    );
}

/// DELLA's per-element keep probability: per row of `row_len`, rank r ∈ 0..n in the order of
/// torch's `argsort(|δ|)` (ties as torch leaves them), `p = (density − ε) + 2ε·r/(n−1)`, in
/// f32 whatever the storage dtype. A one-element row (where mergekit divides 0 by 0) gets
/// `p = density`.
pub fn della_keep_probabilities(
    delta: &[f32],
    density: f64,
    epsilon: f64,
    row_len: usize,
) -> Vec<f32> {
    let row_len = row_len.max(1).min(delta.len().max(1));
    let low = (density - epsilon) as f32;
    let span = (2.0 * epsilon) as f32;
    let mut probs = vec![0f32; delta.len()];
    probs
        .par_chunks_mut(row_len)
        .zip(delta.par_chunks(row_len))
        .for_each_init(RowScratch::default, |scratch, (p_row, d_row)| {
            if d_row.len() == 1 {
                p_row[0] = density as f32;
            } else {
                let denom = (d_row.len() - 1) as f32;
                let mut ranked = |rank: usize, idx: usize| {
                    p_row[idx] = low + (rank as f32 / denom) * span;
                };
                scratch.rank_row(d_row, &mut ranked);
            }
        });
    probs
}

wide_kernel! {
    /// DELLA's keep mask: element `i` is kept when `stream.bernoulli(offset + i, pᵢ)` with `pᵢ`
    /// from [`della_keep_probabilities`], the same draws, without the per-element probability
    /// array: per row, each rank's probability becomes an integer threshold once
    /// ([`rng::threshold`](super::rng::threshold)) and each element's draw is compared with
    /// its rank's. One exception: an element equal to +0.0 is always reported dropped, since
    /// keeping it gives the same merge (0 / p = 0, and it adds 0 to every sum).
    ///
    /// Only an element whose draw falls between the lowest and highest threshold of its group
    /// of equal magnitudes needs its exact place in torch's order; the rest are decided by
    /// their group's rank range, from any sort ([`RowScratch::keep_row`]).
    pub fn della_keep_bits(
        delta: &[f32],
        density: f64,
        epsilon: f64,
        row_len: usize,
        stream: Stream,
        offset: usize,
    ) -> Bits {
        use super::rng::threshold;
        let n = delta.len();
        let row_len = row_len.max(1).min(n.max(1));
        let low = (density - epsilon) as f32;
        let span = (2.0 * epsilon) as f32;
        // per rank, for a row of `len` elements (as della_keep_probabilities computes p)
        let table = |len: usize| -> Vec<u64> {
            if len == 1 {
                return vec![threshold(density as f32 as f64)];
            }
            let denom = (len - 1) as f32;
            (0..len)
                .map(|rank| threshold((low + (rank as f32 / denom) * span) as f64))
                .collect()
        };
        let full = table(row_len);
        // Rows in jobs of whole words: `group` elements are both whole rows and whole words.
        let group = lcm(row_len, 64);
        let mut words = vec![0u64; n.div_ceil(64)];
        words
            .par_chunks_mut(group / 64)
            .zip(delta.par_chunks(group))
            .enumerate()
            .for_each_init(RowScratch::default, |scratch, (job, (words, rows))| {
                for (r, row) in rows.chunks(row_len).enumerate() {
                    let short;
                    let t = if row.len() == row_len {
                        &full
                    } else {
                        short = table(row.len());
                        &short
                    };
                    let first = r * row_len; // within the job
                    let at = (offset + job * group + first) as u64;
                    let draw = |idx: usize| stream.draw53(at + idx as u64);
                    let mut keep = |idx: usize| {
                        let i = first + idx;
                        words[i / 64] |= 1 << (i % 64);
                    };
                    scratch.keep_row(row, t, &draw, &mut keep);
                }
            });
        Bits::from_words(words, n)
    }
}

/// Least common multiple (block and job sizes that are whole rows and whole chunks).
pub fn lcm(a: usize, b: usize) -> usize {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

/// Per-thread buffers of [`della_keep_probabilities`] and [`della_keep_bits`].
#[derive(Default)]
struct RowScratch {
    k32: Vec<u32>,
    k64: Vec<u64>,
    /// [`RowScratch::keep_row`]: the keys in magnitude order, and the rank ranges of the
    /// groups of equal magnitudes that need torch's exact order.
    sorted: Vec<u32>,
    spare: Vec<u32>,
    ranges: Vec<(usize, usize)>,
    /// 2¹⁵ bits: which bf16 magnitudes a row has (duplicate detection).
    seen: Vec<u64>,
}

impl RowScratch {
    /// Calls `keep(index)` for every element of `row` that DELLA keeps: the one whose
    /// `draw(index)` is below `t[rank]`, its rank in torch's `argsort(|x|)` order, but
    /// never for an element equal to +0.0 (see [`della_keep_bits`]); `keep` may be called
    /// more than once for an element.
    ///
    /// Within a group of equal magnitudes at ranks `lo..hi`, an element whose draw is
    /// below every `t[lo..hi]` is kept, and one whose draw is at or above all of them is
    /// dropped, whatever order torch leaves the group in; a group of +0.0 values needs
    /// no decision. The ranks of the groups come from a radix sort
    /// ([`sort_by_high_half`]); only the groups with an element in between are placed
    /// exactly, by replaying torch's sort on the partitions that overlap them
    /// ([`torch_sort::sort_ranges_by`]). Rows this cannot key in 32 bits go through
    /// [`RowScratch::rank_row`].
    #[inline(always)]
    fn keep_row(
        &mut self,
        row: &[f32],
        t: &[u64],
        draw: &impl Fn(usize) -> u64,
        keep: &mut impl FnMut(usize),
    ) {
        let mut keep = |idx: usize| {
            if row[idx].to_bits() != 0 {
                keep(idx)
            }
        };
        let n = row.len();
        let (mut any_low, mut nan, mut neg_zero) = (0u32, false, false);
        for x in row {
            let m = x.to_bits() & 0x7fff_ffff;
            any_low |= m;
            nan |= m > 0x7f80_0000;
            neg_zero |= x.to_bits() == 0x8000_0000;
        }
        if nan || any_low & 0xffff != 0 || n > 1 << 16 {
            return self.rank_row(row, &mut |rank, idx| {
                if draw(idx) < t[rank] {
                    keep(idx)
                }
            });
        }
        let keys = &mut self.k32;
        bf16_keys(row, keys);
        let sorted = &mut self.sorted;
        sort_by_high_half(keys, sorted, &mut self.spare);
        let ranges = &mut self.ranges;
        ranges.clear();
        let index = |k: u32| (k & 0xffff) as usize;
        let mut lo = 0;
        while lo < n {
            let m = sorted[lo] >> 16;
            let mut hi = lo + 1;
            while hi < n && sorted[hi] >> 16 == m {
                hi += 1;
            }
            if m == 0 && !neg_zero {
                // +0.0 only: nothing to keep
            } else if hi - lo == 1 {
                let idx = index(sorted[lo]);
                if draw(idx) < t[lo] {
                    keep(idx);
                }
            } else {
                let (lowest, highest) = min_max(&t[lo..hi]);
                let mut exact = true;
                for &k in &sorted[lo..hi] {
                    let u = draw(index(k));
                    if u < lowest {
                        keep(index(k));
                    } else if u < highest {
                        exact = false;
                    }
                }
                if !exact {
                    ranges.push((lo, hi));
                }
            }
            lo = hi;
        }
        if ranges.is_empty() {
            return;
        }
        torch_sort::sort_ranges_by(keys, |a, b| a >> 16 < b >> 16, ranges);
        for &(lo, hi) in ranges.iter() {
            for (rank, &k) in (lo..hi).zip(&keys[lo..hi]) {
                if draw(index(k)) < t[rank] {
                    keep(index(k));
                }
            }
        }
    }

    /// Calls `ranked(rank, index)` for every element of `row`, ranked by |x| in torch's
    /// `argsort` order. Each magnitude and its index in the row travel as one integer key
    /// (u32 when the magnitudes are bf16 values and the row fits 16 bits of index, else
    /// u64) that the replayed introsort compares by magnitude only. A row without duplicate
    /// magnitudes has one correct order, which any sort finds: then `sort_unstable` on the
    /// whole keys.
    fn rank_row(&mut self, row: &[f32], ranked: &mut impl FnMut(usize, usize)) {
        let n = row.len();
        let (mut any_low, mut nan) = (0u32, false);
        for x in row {
            let m = x.to_bits() & 0x7fff_ffff;
            any_low |= m;
            nan |= m > 0x7f80_0000;
        }
        if nan {
            // NaN compares false either way: only the pair replay gives torch's order.
            let mags: Vec<f32> = row.iter().map(|x| x.abs()).collect();
            for (rank, &idx) in torch_sort::sort_indices(&mags, false).iter().enumerate() {
                ranked(rank, idx as usize);
            }
        } else if any_low & 0xffff == 0 && n <= 1 << 16 {
            let keys = &mut self.k32;
            bf16_keys(row, keys);
            self.seen.clear();
            self.seen.resize(1 << 9, 0);
            let dup = keys.iter().any(|&k| {
                let (w, b) = ((k >> 22) as usize, k >> 16 & 63);
                let seen = self.seen[w] >> b & 1 == 1;
                self.seen[w] |= 1 << b;
                seen
            });
            if dup {
                torch_sort::sort_by(keys, |a, b| a >> 16 < b >> 16);
            } else {
                keys.sort_unstable();
            }
            for (rank, &k) in keys.iter().enumerate() {
                ranked(rank, (k & 0xffff) as usize);
            }
        } else {
            let keys = &mut self.k64;
            let fill = |keys: &mut Vec<u64>| {
                keys.clear();
                keys.extend(
                    row.iter()
                        .enumerate()
                        .map(|(i, x)| ((x.to_bits() & 0x7fff_ffff) as u64) << 32 | i as u64),
                );
            };
            fill(keys);
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] >> 32 == w[1] >> 32) {
                fill(keys);
                torch_sort::sort_by(keys, |a, b| a >> 32 < b >> 32);
            }
            for (rank, &k) in keys.iter().enumerate() {
                ranked(rank, k as u32 as usize);
            }
        }
    }
}

/// One u32 key per element of a row of bf16 values (low 16 bits of each f32 zero, at most
/// 2¹⁶ elements): the magnitude's bits above, the index in the row below.
#[inline(always)]
fn bf16_keys(row: &[f32], keys: &mut Vec<u32>) {
    keys.clear();
    keys.extend(
        row.iter()
            .enumerate()
            .map(|(i, x)| x.to_bits() & 0x7fff_0000 | i as u32),
    );
}

/// `keys` into `out` sorted by their high 16 bits (bit 31 clear), stably: a two-pass LSD
/// radix sort (8 bits, then 7), through `spare`.
#[inline(always)]
fn sort_by_high_half(keys: &[u32], out: &mut Vec<u32>, spare: &mut Vec<u32>) {
    fn pass(from: &[u32], to: &mut [u32], shift: u32, at: &mut [u32]) {
        let mut sum = 0;
        for c in at.iter_mut() {
            (*c, sum) = (sum, sum + *c);
        }
        let mask = at.len() - 1;
        for &k in from {
            let b = (k >> shift) as usize & mask;
            to[at[b] as usize] = k;
            at[b] += 1;
        }
    }
    debug_assert!(keys.iter().all(|k| k >> 31 == 0) && keys.len() <= u32::MAX as usize);
    let (mut low, mut high) = ([0u32; 256], [0u32; 128]);
    for &k in keys {
        low[(k >> 16) as usize & 255] += 1;
        high[(k >> 24) as usize & 127] += 1;
    }
    spare.clear();
    spare.resize(keys.len(), 0);
    out.clear();
    out.resize(keys.len(), 0);
    pass(keys, spare, 16, &mut low);
    pass(spare, out, 24, &mut high);
}

fn min_max(t: &[u64]) -> (u64, u64) {
    t.iter()
        .fold((u64::MAX, 0), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// TIES "sum" sign election on weighted deltas at one element: the majority sign is that of
/// Σᵢ Wᵢ (an exact 0 counts as positive); model i agrees when sign(Wᵢ) equals it (Wᵢ = 0
/// never agrees).
#[inline]
pub fn agrees_with_majority(weighted: f32, majority_positive: bool) -> bool {
    if majority_positive {
        weighted > 0.0
    } else {
        weighted < 0.0
    }
}

#[cfg(test)]
mod tests;
