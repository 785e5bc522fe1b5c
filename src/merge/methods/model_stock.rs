//! `model_stock`: interpolate between the base and the average of N ≥ 2 fine-tunes, by a
//! ratio derived from the angle between their task vectors.
//!
//! Formula: `dᵢ = Xᵢ − B`; `cos θ = mean over pairs i<j of clamp(dᵢ·dⱼ / max(‖dᵢ‖‖dⱼ‖, 1e-6),
//! −1, 1)`; `t = N·cos θ / (1 + (N−1)·cos θ)`, or `t = 0` (keep the base) when
//! `|1 + (N−1)·cos θ| < 1e-6`; `out = t·mean(X₁..X_N) + (1−t)·B`. Per tensor, or per row
//! (last dimension) with `filter_wise`.
//!
//! Paper: Model Stock: All we need is just a few fine-tuned models (arXiv:2403.19522).
//!
//! | name | scope | default | range |
//! |---|---|---|---|
//! | `filter_wise` | global | false | bool |
//!
//! Matches mergekit 0.1.5 `merge_methods/model_stock.py` (including its singular-denominator
//! guard). Under f32, lamarck computes dot products and t in f64 (mergekit: f32); under a
//! 16-bit compute dtype it rounds the task vectors, products, norms, cosines, t and the
//! blend where mergekit's torch ops do, since t's bf16 precision alone moved 15% of
//! elements beyond 2 bf16 ulps. Same in both compat profiles.
//!
//! ```
//! use lamarck::merge::methods::{merge_vectors, Params};
//! let none = Params::new();
//! // orthogonal task vectors: cos θ = 0 → t = 0 → the base
//! let out = merge_vectors("model_stock", Some(&[1.0, 1.0]), &[(&[2.0, 1.0], &none), (&[1.0, 2.0], &none)], &none);
//! assert_eq!(out.unwrap(), [1.0, 1.0]);
//! // identical task vectors: cos θ = 1 → t = 1 → their average
//! let out = merge_vectors("model_stock", Some(&[1.0, 1.0]), &[(&[2.0, 3.0], &none), (&[2.0, 3.0], &none)], &none);
//! assert_eq!(out.unwrap(), [2.0, 3.0]);
//! ```
use std::ops::Range;

use rayon::prelude::*;

use super::{Error, TensorJob};
use crate::merge::ops::{chunk_sums, round64, CHUNK};
use crate::model::dtype::{wide_kernel, Rounding};
use crate::model::DType;

pub use crate::registry::MODEL_STOCK as SPEC;

/// The interpolation ratio t of one vector (the whole tensor, or one row) from its
/// [`chunk_sums`], chunk by chunk in order (each total summed in that order, so any
/// blocking gives the same bits). Scalars are rounded to the compute dtype where
/// mergekit's torch scalars are (no-op for f32).
pub(crate) fn ratio_from(parts: &[Vec<f64>], k: usize, dtype: DType) -> f64 {
    let r = |x: f64| round64(dtype, x);
    let total = |c: usize| {
        parts
            .iter()
            .map(|p| p[c])
            .collect::<Vec<f64>>()
            .iter()
            .sum::<f64>()
    };
    let norms: Vec<f64> = (0..k).map(|i| r(total(i).sqrt())).collect();
    let mut cosines = Vec::new();
    let mut pair = k;
    for i in 0..k {
        for j in i + 1..k {
            let product = r(norms[i] * norms[j]).max(1e-6);
            cosines.push(r(r(total(pair)) / product).clamp(-1.0, 1.0));
            pair += 1;
        }
    }
    let cos = r(cosines.iter().sum::<f64>() / cosines.len() as f64);
    let denominator = r(1.0 + r((k as f64 - 1.0) * cos));
    if denominator.abs() < 1e-6 {
        0.0
    } else {
        r(r(k as f64 * cos) / denominator)
    }
}

/// The ratio of one vector from its task vectors' slices, its chunks summed in parallel.
pub(crate) fn ratio(deltas: &[&[f32]], dtype: DType) -> f64 {
    let n = deltas.first().map_or(0, |d| d.len());
    let parts: Vec<Vec<f64>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let range = c * CHUNK..((c + 1) * CHUNK).min(n);
            let ds: Vec<&[f32]> = deltas.iter().map(|d| &d[range.clone()]).collect();
            chunk_sums(&ds, dtype)
        })
        .collect();
    ratio_from(&parts, deltas.len(), dtype)
}

pub(super) fn merge(job: &TensorJob) -> Result<Vec<f32>, Error> {
    let filter_wise = job.global(SPEC.name, "filter_wise", Some(0.0))? != 0.0;
    let base = job.base.ok_or_else(|| Error::Invalid {
        method: SPEC.name,
        message: format!("tensor {}: needs a base_model tensor", job.name),
    })?;
    let dtype = job.compute_dtype;
    let n = base.len();
    let row = if filter_wise {
        job.row_len().max(1)
    } else {
        n.max(1)
    };
    let deltas: Vec<Vec<f32>> = job
        .models
        .iter()
        .map(|m| super::delta(m.data, base, dtype))
        .collect();
    let ratios: Vec<f32> = (0..n.div_ceil(row))
        .map(|r| {
            let range = r * row..((r + 1) * row).min(n);
            let ds: Vec<&[f32]> = deltas.iter().map(|d| &d[range.clone()]).collect();
            ratio(&ds, dtype) as f32
        })
        .collect();
    let mut out = vec![0f32; n];
    let models: Vec<&[f32]> = job.models.iter().map(|m| m.data).collect();
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let at = c * CHUNK;
        let xs: Vec<&[f32]> = models.iter().map(|x| &x[at..at + o.len()]).collect();
        blend(&xs, &base[at..at + o.len()], &ratios, row, at, dtype, o);
    });
    Ok(out)
}

wide_kernel! {
    /// `out = t·mean(X) + (1−t)·B` per element of the stretch starting at element `at` of the
    /// tensor (`xs`, `base` and `out` that stretch), `t` of the element's row of `row`
    /// elements. The rounding is known at compile time, so the passes vectorise.
    pub(crate) fn blend(
        xs: &[&[f32]],
        base: &[f32],
        ratios: &[f32],
        row: usize,
        at: usize,
        dtype: DType,
        out: &mut [f32],
    ) {
        /// The runs of elements sharing one t (a row, or the whole stretch): (t, range).
        #[inline(always)]
        fn runs(
            ratios: &[f32],
            row: usize,
            at: usize,
            len: usize,
        ) -> impl Iterator<Item = (f32, Range<usize>)> + '_ {
            let mut j = 0;
            std::iter::from_fn(move || {
                (j < len).then(|| {
                    let end = len.min((at + j) / row * row + row - at);
                    let run = (ratios[(at + j) / row], j..end);
                    j = end;
                    run
                })
            })
        }
        #[inline(always)]
        fn run<R: Rounding>(
            xs: &[&[f32]],
            base: &[f32],
            ratios: &[f32],
            row: usize,
            at: usize,
            o: &mut [f32],
        ) {
            let k = xs.len() as f32;
            let rd = R::round;
            // mergekit: sum(ws) / count, then t·avg + (1−t)·w₀, each op in the compute dtype.
            o.fill(0.0);
            for x in xs {
                for (s, &x) in o.iter_mut().zip(*x) {
                    *s = rd(*s + x);
                }
            }
            for (t, r) in runs(ratios, row, at, o.len()) {
                let a = rd(1.0 - t);
                for (o, &b) in o[r.clone()].iter_mut().zip(&base[r]) {
                    let mean = rd(*o / k);
                    *o = rd(t * mean) + rd(a * b);
                }
            }
        }
        /// [`run`] for `K` models in one pass per element (the same operations in the same
        /// order, the sum over models unrolled).
        #[inline(always)]
        fn fused<R: Rounding, const K: usize>(
            xs: &[&[f32]],
            base: &[f32],
            ratios: &[f32],
            row: usize,
            at: usize,
            o: &mut [f32],
        ) {
            let rd = R::round;
            let n = o.len();
            let xs: [&[f32]; K] = std::array::from_fn(|i| &xs[i][..n]);
            let base = &base[..n];
            for (t, r) in runs(ratios, row, at, n) {
                let a = rd(1.0 - t);
                for e in r {
                    let mut sum = 0.0;
                    for x in xs {
                        sum = rd(sum + x[e]);
                    }
                    let mean = rd(sum / K as f32);
                    o[e] = rd(t * mean) + rd(a * base[e]);
                }
            }
        }
    crate::model::dtype::with_rounding!(dtype, R => match xs.len() {
            2 => fused::<R, 2>(xs, base, ratios, row, at, out),
            3 => fused::<R, 3>(xs, base, ratios, row, at, out),
            4 => fused::<R, 4>(xs, base, ratios, row, at, out),
            _ => run::<R>(xs, base, ratios, row, at, out),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::merge::methods::{merge_vectors, Params};

    #[test]
    fn t_follows_the_paper_formula_for_three_models() {
        let none = Params::new();
        let base = [0.0, 0.0];
        // Pairwise cosines: (1,0)·(1,1)/√2, (1,0)·(0,1) = 0, (1,1)·(0,1)/√2 → mean √2/3.
        let ms: [[f32; 2]; 3] = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        let inputs: Vec<(&[f32], &Params)> = ms.iter().map(|m| (&m[..], &none)).collect();
        let out = merge_vectors("model_stock", Some(&base), &inputs, &none).unwrap();
        let cos = 2f64.sqrt() / 3.0;
        let t = 3.0 * cos / (1.0 + 2.0 * cos);
        let mean = 2.0 / 3.0;
        for v in out {
            assert!((v as f64 - t * mean).abs() < 1e-6, "{v}");
        }
    }

    #[test]
    fn opposite_task_vectors_keep_the_base() {
        let none = Params::new();
        let out = merge_vectors(
            "model_stock",
            Some(&[1.0, 2.0]),
            &[(&[2.0, 3.0], &none), (&[0.0, 1.0], &none)],
            &none,
        )
        .unwrap();
        assert_eq!(out, [1.0, 2.0]);
    }
}
