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
pub use sums::{chunk_sums, chunk_sums_each, masked_l1_sums, L1_LANES};

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

/// DELLA's keep mask: element `i` is kept when `stream.bernoulli(offset + i, pᵢ)` with `pᵢ`
/// from [`della_keep_probabilities`], the same draws, without the per-element probability
/// array: per row, each rank's probability becomes an integer threshold once
/// ([`rng::threshold`](super::rng::threshold)) and each element's draw is compared with
/// its rank's. One exception: an element equal to +0.0 is always reported dropped, since
/// keeping it gives the same merge (0 / p = 0, and it adds 0 to every sum).
///
/// Only an element whose draw falls between the lowest and highest threshold of its group
/// of equal magnitudes needs its exact place in torch's order; the rest are decided by
/// their group's rank range ([`RowScratch::keep_row`]).
pub fn della_keep_bits(
    delta: &[f32],
    density: f64,
    epsilon: f64,
    row_len: usize,
    stream: Stream,
    offset: usize,
) -> Bits {
    let n = delta.len();
    let row_len = row_len.max(1).min(n.max(1));
    let ps = Thresholds {
        density,
        low: (density - epsilon) as f32,
        span: (2.0 * epsilon) as f32,
    };
    let full = ps.of_row(row_len);
    // Rows in jobs of whole words: `group` elements are both whole rows and whole words.
    let group = lcm(row_len, 64);
    let mut words = vec![0u64; n.div_ceil(64)];
    words
        .par_chunks_mut(group / 64)
        .zip(delta.par_chunks(group))
        .enumerate()
        .for_each_init(RowScratch::default, |scratch, (job, (words, rows))| {
            let at = (offset + job * group) as u64;
            della_job(rows, words, row_len, &full, &ps, stream, at, scratch);
        });
    Bits::from_words(words, n)
}

/// DELLA's keep thresholds per rank (as [`della_keep_probabilities`] computes p).
struct Thresholds {
    density: f64,
    low: f32,
    span: f32,
}

impl Thresholds {
    fn of_row(&self, len: usize) -> Vec<u64> {
        use super::rng::threshold;
        if len == 1 {
            return vec![threshold(self.density as f32 as f64)];
        }
        let denom = (len - 1) as f32;
        (0..len)
            .map(|rank| threshold((self.low + (rank as f32 / denom) * self.span) as f64))
            .collect()
    }
}

wide_kernel! {
    /// [`della_keep_bits`] of one job, whole rows that are whole words: `rows` from element
    /// `at` of the stream, their mask into `words`; `full` the thresholds of a whole row.
    #[allow(clippy::too_many_arguments)]
    fn della_job(
        rows: &[f32],
        words: &mut [u64],
        row_len: usize,
        full: &[u64],
        ps: &Thresholds,
        stream: Stream,
        at: u64,
        scratch: &mut RowScratch,
    ) {
        let mut row_words = std::mem::take(&mut scratch.row_words);
        for (r, row) in rows.chunks(row_len).enumerate() {
            let short;
            let t = if row.len() == row_len {
                full
            } else {
                short = ps.of_row(row.len());
                &short
            };
            let first = r * row_len; // within the job
            let at = at + first as u64;
            row_words.clear();
            row_words.resize(row.len().div_ceil(64), 0);
            scratch.keep_row(row, t, stream, at, &mut row_words);
            bits::or_at(words, first, &row_words);
        }
        scratch.row_words = row_words;
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
    /// [`RowScratch::keep_row`]: the draws of a row; per magnitude slot its first rank
    /// (its count while counting); the slots with an undecided element; their rank ranges.
    draws: Vec<u64>,
    start: Vec<u32>,
    undecided: Vec<u32>,
    ranges: Vec<(usize, usize)>,
    /// [`della_keep_bits`]: the keep mask of one row (bit `i` for element `i`).
    row_words: Vec<u64>,
    /// [`RowScratch::keep_row`]: each element's place in the count table.
    places: Vec<u32>,
    /// 2¹⁵ bits: which bf16 magnitudes a row has (duplicate detection).
    seen: Vec<u64>,
}

impl RowScratch {
    /// Sets bit `index` of `keep` (zeroed, a bit per element of `row`) for each element of
    /// `row` that DELLA keeps: kept when its draw `stream.draw53(at + index)` is below
    /// `t[rank]`, its rank in torch's `argsort(|x|)` order, but never an element equal to
    /// +0.0 (see [`della_keep_bits`]). `t` is monotone in the rank (DELLA's thresholds are).
    ///
    /// A group of equal magnitudes holds ranks `lo..hi`: an element whose draw is below
    /// every `t[lo..hi]` (the lower of `t[lo]` and `t[hi - 1]`) is kept, and one whose draw
    /// is at or above all of them is dropped, whatever order torch leaves the group in; a
    /// group of +0.0 values needs no decision. So the groups' rank ranges are all most rows
    /// need: from a count of each bf16 magnitude (a table over the row's range of
    /// magnitudes), without sorting; each element is then decided in index order, without
    /// branches. Only the groups with an element in between are placed exactly, by
    /// replaying torch's sort on the partitions that overlap them
    /// ([`torch_sort::sort_ranges_by`]). Rows this cannot key in 32 bits, or whose range of
    /// magnitudes is far wider than the row, go through [`RowScratch::rank_row`].
    #[inline(always)]
    fn keep_row(&mut self, row: &[f32], t: &[u64], stream: Stream, at: u64, keep: &mut [u64]) {
        let n = row.len();
        // (by value, its key in a register)
        let draw = move |idx: usize| stream.draw53(at + idx as u64);
        // bf16 magnitudes: the 15 bits above the f32's low half
        let mag = |x: f32| x.to_bits() >> 16 & 0x7fff;
        let (mut any_low, mut nan) = (0u32, false);
        let (mut least, mut most) = (u32::MAX, 0u32); // over the non-zero magnitudes
        let mut zeros = 0u32;
        for x in row {
            let m = x.to_bits() & 0x7fff_ffff;
            any_low |= m;
            nan |= m > 0x7f80_0000;
            let k = m >> 16;
            least = least.min(if k == 0 { u32::MAX } else { k });
            most = most.max(k);
            zeros += (k == 0) as u32;
        }
        let slots = if most == 0 {
            1
        } else {
            (most - least + 2) as usize
        };
        if nan || any_low & 0xffff != 0 || n > 1 << 16 || slots > 16 * n + 4096 {
            return self.rank_row(row, &mut |rank, idx| {
                let kept = draw(idx) < t[rank] && row[idx].to_bits() != 0;
                keep[idx / 64] |= (kept as u64) << (idx % 64);
            });
        }
        // Slot 0 is magnitude 0, slot k − least + 1 magnitude k: slots in magnitude order.
        let slot = |x: f32| {
            let k = mag(x);
            ((k != 0) as u32).wrapping_mul(k.wrapping_sub(least).wrapping_add(1)) as usize
        };
        // Each slot's count (zeros counted above: a run of them would make one long chain
        // of increments; they go to four spare counters instead) at `start[s + 1]`, then
        // summed in place: slot s holds ranks `start[s]..start[s + 1]`.
        self.start.clear();
        self.start.resize(slots + 1 + 4, 0);
        // (a slice: the Vec's pointer and length are not reloaded after every increment)
        let start = &mut self.start[..];
        // (the places first, in a loop without branches that vectorises; then the counts)
        let places = &mut self.places;
        // (every place is written below: only a new length needs the buffer resized)
        places.resize(n, 0);
        for (i, (p, &x)) in places.iter_mut().zip(row).enumerate() {
            let s = slot(x);
            *p = (if s == 0 { slots + 1 + (i & 3) } else { s + 1 }) as u32;
        }
        for &p in places.iter() {
            start[p as usize] += 1;
        }
        start[1] = zeros;
        let mut rank = 0;
        for c in start[..slots + 1].iter_mut() {
            rank += *c;
            *c = rank;
        }
        let (start, t) = (&start[..slots + 1], &t[..n]);
        let draws = &mut self.draws;
        draws.resize(n, 0); // (every draw is written next)
        stream.draws53(at, draws);
        // 64 elements at a time. Every threshold lies between t's two ends (t is monotone),
        // so a draw below both keeps its element and one at or above both drops it, whatever
        // its rank: a loop without branches (it vectorises) decides those and marks the rest
        // (a fraction ε of them for DELLA's ramp), which look up their slot's thresholds.
        // A slot with an element holds at least one rank: `lo < hi ≤ n`. The lowest and
        // highest threshold of its ranks are those of its first and last. Those between
        // are undecided: their slot is collected and replayed below.
        // +0.0 is never kept, and never undecided: a group of zeros is replayed only for a
        // −0.0 in it.
        let (t_first, t_last) = (t[0], t[n - 1]);
        let (t_min, t_max) = (t_first.min(t_last), t_first.max(t_last));
        let undecided = &mut self.undecided;
        undecided.clear();
        let words = row.chunks(64).zip(keep.iter_mut()).zip(draws.chunks(64));
        for ((xs, word), us) in words {
            let (mut kept, mut open) = ([0u8; 64], [0u8; 64]);
            for (((&x, f), &u), o) in xs.iter().zip(&mut kept).zip(us).zip(&mut open) {
                let nonzero = x.to_bits() != 0;
                *f = (u < t_min && nonzero) as u8;
                *o = (u >= t_min && u < t_max && nonzero) as u8;
            }
            *word = bits::pack64(kept);
            let mut m = bits::pack64(open);
            while m != 0 {
                let j = m.trailing_zeros() as usize;
                m &= m - 1;
                let (x, u) = (xs[j], us[j]);
                // (lengths the compiler sees: `slot(x).min(slots - 1)` needs no bounds check)
                let s = slot(x).min(slots - 1);
                let (lo, hi) = (start[s] as usize, start[s + 1] as usize);
                let (a, b) = (t[lo.min(n - 1)], t[hi.max(1) - 1]);
                let (lowest, highest) = (a.min(b), a.max(b));
                *word |= ((u < lowest) as u64) << j;
                if u >= lowest && u < highest {
                    undecided.push(s as u32);
                }
            }
        }
        if undecided.is_empty() {
            return;
        }
        undecided.sort_unstable();
        let ranges = &mut self.ranges;
        ranges.clear();
        let mut last = u32::MAX;
        for &s in undecided.iter() {
            if s != last {
                ranges.push((start[s as usize] as usize, start[s as usize + 1] as usize));
                last = s;
            }
        }
        let keys = &mut self.k32;
        bf16_keys(row, keys);
        torch_sort::sort_ranges_by(keys, |a, b| a >> 16 < b >> 16, ranges);
        let index = |k: u32| (k & 0xffff) as usize;
        for &(lo, hi) in ranges.iter() {
            for (rank, &k) in (lo..hi).zip(&keys[lo..hi]) {
                let idx = index(k);
                let kept = draws[idx] < t[rank] && row[idx].to_bits() != 0;
                let (w, b) = (idx / 64, idx % 64);
                keep[w] = keep[w] & !(1 << b) | (kept as u64) << b;
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
