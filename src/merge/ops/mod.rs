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
//! survive is decided by that algorithm's data movement. lamarck finds the boundary in O(n)
//! by selection; only when equal magnitudes straddle it (common with bf16 task vectors) does
//! it replay torch's sort ([`torch_sort`]) to keep exactly the elements mergekit keeps.
//! DELLA's per-row ranks use the same replayed order.
use rayon::prelude::*;

pub mod torch_sort;

use super::rng::Stream;
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

/// Which sparsifier a task-arithmetic method applies to each task vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sparsifier {
    /// TIES: keep the `floor(density·n)` largest |δ| of the whole tensor (at least one).
    Magnitude,
    /// DARE: keep each element with probability `density`.
    Random,
    /// Model Breadcrumbs: drop the `floor(gamma·n)` largest and the smallest, keep
    /// `floor(density·n)`.
    MagnitudeOutliers,
    /// DELLA: per row, keep with probability ramping from `density−ε` (smallest |δ|) to
    /// `density+ε` (largest).
    DellaMagprune,
}

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

/// Value at position `pos` of `mags` sorted ascending (`mags` is reordered).
fn select_ascending(mags: &mut [f32], pos: usize) -> f32 {
    *mags.select_nth_unstable_by(pos, f32::total_cmp).1
}

/// Keep mask for the `k` largest |x|, ties at the boundary resolved as torch's
/// `argsort(descending=True)[:k]` does.
pub fn top_k_mask(xs: &[f32], k: usize) -> Vec<bool> {
    let n = xs.len();
    if k >= n {
        return vec![true; n];
    }
    if k == 0 {
        return vec![false; n];
    }
    let mut mags: Vec<f32> = xs.iter().map(|x| x.abs()).collect();
    // The k-th largest is at ascending position n − k.
    let threshold = select_ascending(&mut mags, n - k);
    let greater = xs.iter().filter(|x| x.abs() > threshold).count();
    let equal = xs.iter().filter(|x| x.abs() == threshold).count();
    if greater + equal == k {
        return xs.iter().map(|x| x.abs() >= threshold).collect();
    }
    // Equal magnitudes straddle the boundary: torch's order decides.
    let mags: Vec<f32> = xs.iter().map(|x| x.abs()).collect();
    let mut keep = vec![false; n];
    for &i in &torch_sort::select_indices(&mags, true, &[k])[..k] {
        keep[i as usize] = true;
    }
    keep
}

/// Keep mask for the elements at positions `[start, end)` of `torch.sort(|x|)` (ascending),
/// ties at the boundaries resolved as torch's sort does.
pub fn ascending_window_mask(xs: &[f32], start: usize, end: usize) -> Vec<bool> {
    let n = xs.len();
    let end = end.min(n);
    if start >= end {
        return vec![false; n];
    }
    let mut mags: Vec<f32> = xs.iter().map(|x| x.abs()).collect();
    let hi = select_ascending(&mut mags, end - 1);
    let lo = select_ascending(&mut mags[..end], start);
    let count = |pred: &dyn Fn(f32) -> bool| xs.iter().filter(|x| pred(x.abs())).count();
    let (less_lo, equal_lo) = (count(&|m| m < lo), count(&|m| m == lo));
    let (less_hi, equal_hi) = (count(&|m| m < hi), count(&|m| m == hi));
    // Unambiguous when every element equal to a boundary value is on the same side of it.
    if less_lo == start && less_hi + equal_hi == end {
        return xs.iter().map(|x| (lo..=hi).contains(&x.abs())).collect();
    }
    let _ = equal_lo;
    let mags: Vec<f32> = xs.iter().map(|x| x.abs()).collect();
    let mut keep = vec![false; n];
    for &i in &torch_sort::select_indices(&mags, false, &[start, end])[start..end] {
        keep[i as usize] = true;
    }
    keep
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
    match method {
        Sparsifier::Magnitude => {
            let k = floor_count(density, n).max(1);
            let keep = top_k_mask(delta, k);
            apply_mask(delta, |i| keep[i], args.rescale, |_| density, args.dtype);
        }
        Sparsifier::MagnitudeOutliers => {
            let target = floor_count(density, n);
            let n_top = floor_count(args.gamma, n);
            let n_bot = n.saturating_sub(target + n_top);
            let keep = ascending_window_mask(delta, n_bot, n_bot + target);
            apply_mask(delta, |i| keep[i], args.rescale, |_| density, args.dtype);
        }
        // DELLA with ε = 0 is DARE: the same draws, so the same mask for the same seed.
        Sparsifier::Random => {
            apply_mask(
                delta,
                |i| stream.bernoulli(i as u64, density),
                args.rescale,
                |_| density,
                args.dtype,
            );
        }
        // DELLA with ε = 0 is DARE: the same draws, so the same mask for the same seed.
        Sparsifier::DellaMagprune if args.epsilon == 0.0 => {
            sparsify(delta, Sparsifier::Random, args, stream);
        }
        Sparsifier::DellaMagprune => {
            let probs = della_keep_probabilities(delta, density, args.epsilon, args.row_len);
            apply_mask(
                delta,
                |i| stream.bernoulli(i as u64, probs[i] as f64),
                args.rescale,
                |i| probs[i] as f64,
                args.dtype,
            );
        }
    }
}

/// DELLA's per-element keep probability: per row of `row_len`, rank r ∈ 0..n in the order of
/// torch's `argsort(|δ|)` (ties as torch leaves them), `p = (density − ε) + 2ε·r/(n−1)`, in f32 whatever the
/// storage dtype. A one-element row (where mergekit divides 0 by 0) gets `p = density`.
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
        .for_each(|(p_row, d_row)| {
            let n = d_row.len();
            if n == 1 {
                p_row[0] = density as f32;
                return;
            }
            let mags: Vec<f32> = d_row.iter().map(|x| x.abs()).collect();
            let order = torch_sort::sort_indices(&mags, false);
            let denom = (n - 1) as f32;
            for (rank, &idx) in order.iter().enumerate() {
                p_row[idx as usize] = low + (rank as f32 / denom) * span;
            }
        });
    probs
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
mod tests {
    use super::*;
    use crate::merge::rng::RngKey;

    fn stream() -> Stream {
        RngKey::new(1, "s", "t").stream(0)
    }

    fn args(density: f64, rescale: Rescale) -> SparsifyArgs {
        SparsifyArgs {
            density,
            gamma: 0.0,
            epsilon: 0.0,
            rescale,
            dtype: DType::F32,
            row_len: 1,
        }
    }

    #[test]
    fn top_k_resolves_ties_like_torch() {
        // n ≤ 16: torch's introsort is a plain insertion sort, i.e. stable.
        let x = [1.0, -3.0, 2.0, 3.0, -2.0, 0.5];
        assert_eq!(top_k_mask(&x, 2), [false, true, false, true, false, false]);
        assert_eq!(top_k_mask(&x, 3), [false, true, true, true, false, false]);
        assert_eq!(top_k_mask(&x, 0), [false; 6]);
        assert_eq!(top_k_mask(&x, 9), [true; 6]);
    }

    #[test]
    fn ascending_window_matches_torch_sort_positions() {
        // n ≤ 16: torch's order is the stable one.
        let x = [0.0f32, 2.0, -1.0, 2.0, 0.0, 1.0, -2.0, 3.0];
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&a, &b| x[a].abs().total_cmp(&x[b].abs()).then(a.cmp(&b)));
        for start in 0..=x.len() {
            for end in start..=x.len() {
                let mut expected = vec![false; x.len()];
                for &i in &order[start..end] {
                    expected[i] = true;
                }
                assert_eq!(
                    ascending_window_mask(&x, start, end),
                    expected,
                    "{start}..{end}"
                );
            }
        }
    }

    #[test]
    fn magnitude_keeps_floor_density_n_at_least_one_and_rescales_l1() {
        let mut d = vec![0.1, -0.4, 0.3, 0.2];
        sparsify(
            &mut d,
            Sparsifier::Magnitude,
            args(0.5, Rescale::None),
            stream(),
        );
        assert_eq!(d, [0.0, -0.4, 0.3, 0.0]);
        let mut d = vec![0.1, -0.4, 0.3, 0.2];
        sparsify(
            &mut d,
            Sparsifier::Magnitude,
            args(0.1, Rescale::None),
            stream(),
        );
        assert_eq!(d, [0.0, -0.4, 0.0, 0.0]);
        let mut d = vec![0.1, -0.4, 0.3, 0.2];
        sparsify(
            &mut d,
            Sparsifier::Magnitude,
            args(0.5, Rescale::L1),
            stream(),
        );
        // L1 before 1.0, after 0.7: factor 1/0.7.
        let f = (1.0f64 / 0.7) as f32;
        assert_eq!(d, [0.0, -0.4 * f, 0.3 * f, 0.0]);
        assert!((l1_norm(&d) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn density_one_is_identity_and_zero_clears() {
        for m in [
            Sparsifier::Magnitude,
            Sparsifier::Random,
            Sparsifier::MagnitudeOutliers,
            Sparsifier::DellaMagprune,
        ] {
            let mut d = vec![1.0, -2.0, 3.0];
            sparsify(&mut d, m, args(1.0, Rescale::L1), stream());
            assert_eq!(d, [1.0, -2.0, 3.0]);
            sparsify(&mut d, m, args(0.0, Rescale::L1), stream());
            assert_eq!(d, [0.0; 3]);
        }
    }

    #[test]
    fn breadcrumbs_drops_top_gamma_and_bottom() {
        let x: Vec<f32> = (1..=10).map(|v| v as f32).collect();
        let mut d = x.clone();
        let a = SparsifyArgs {
            gamma: 0.2,
            ..args(0.5, Rescale::None)
        };
        sparsify(&mut d, Sparsifier::MagnitudeOutliers, a, stream());
        assert_eq!(d, [0., 0., 0., 4., 5., 6., 7., 8., 0., 0.]);
        // gamma·n < 1: keeps the top `target` (mergekit ≤ 0.1.4 zeroed everything here).
        let mut d = x.clone();
        sparsify(
            &mut d,
            Sparsifier::MagnitudeOutliers,
            args(0.3, Rescale::None),
            stream(),
        );
        assert_eq!(d, [0., 0., 0., 0., 0., 0., 0., 8., 9., 10.]);
    }

    #[test]
    fn dare_keep_fraction_and_inverse_density() {
        let n = 100_000;
        let mut d = vec![1.0f32; n];
        sparsify(
            &mut d,
            Sparsifier::Random,
            args(0.3, Rescale::InverseProbability),
            stream(),
        );
        let kept = d.iter().filter(|&&v| v != 0.0).count() as f64;
        let sd = (n as f64 * 0.3 * 0.7).sqrt();
        assert!((kept - 0.3 * n as f64).abs() < 5.0 * sd);
        assert!(d.iter().all(|&v| v == 0.0 || v == (1.0f64 / 0.3) as f32));
    }

    #[test]
    fn della_probabilities_ramp_per_row() {
        let d = [0.3, -0.1, 0.2, 5.0, 1.0, -2.0];
        let p = della_keep_probabilities(&d, 0.5, 0.2, 3);
        let expect = [0.7f32, 0.3, 0.5, 0.7, 0.3, 0.5];
        for (a, b) in p.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{p:?}");
        }
        // Ties (n ≤ 16, torch's order is stable): lower index ranks lower.
        let p = della_keep_probabilities(&[0.0, 0.0, 0.0], 0.5, 0.2, 3);
        assert!(p[0] < p[1] && p[1] < p[2]);
        assert_eq!(della_keep_probabilities(&[1.0], 0.4, 0.1, 1), [0.4]);
    }

    #[test]
    fn selection_follows_torch_order_when_ties_straddle_the_boundary() {
        // Tie-heavy vector longer than 16: the boundary ties are resolved by the replayed
        // introsort, not by index.
        let x: Vec<f32> = (0..200)
            .map(|i| ((i * 37) % 7) as f32 * 0.5 - 1.5)
            .collect();
        let mags: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        let desc = torch_sort::sort_indices(&mags, true);
        let asc = torch_sort::sort_indices(&mags, false);
        for k in [1, 37, 100, 150, 199] {
            let mut want = vec![false; x.len()];
            desc[..k].iter().for_each(|&i| want[i as usize] = true);
            assert_eq!(top_k_mask(&x, k), want, "k = {k}");
        }
        for (start, end) in [(10, 90), (0, 57), (120, 200), (33, 34)] {
            let mut want = vec![false; x.len()];
            asc[start..end]
                .iter()
                .for_each(|&i| want[i as usize] = true);
            assert_eq!(
                ascending_window_mask(&x, start, end),
                want,
                "{start}..{end}"
            );
        }
    }

    #[test]
    fn reductions_do_not_depend_on_thread_count() {
        let xs: Vec<f32> = (0..300_000u64)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let a = one.install(|| (l1_norm(&xs), dot_f64(&xs, &xs)));
        let b = four.install(|| (l1_norm(&xs), dot_f64(&xs, &xs)));
        assert_eq!(a.0.to_bits(), b.0.to_bits());
        assert_eq!(a.1.to_bits(), b.1.to_bits());
    }
}
