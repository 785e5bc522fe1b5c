//! `nuslerp`: slerp between two models by weight ratio, optionally of task vectors, per
//! tensor, per row or per column.
//!
//! Formula: `t = w₂/(w₁+w₂)` (0.5 when |w₁+w₂| < 1e-6). Without a base, `v₀ = X₁, v₁ = X₂`;
//! with a base B, `v₀ = X₁−B, v₁ = X₂−B` and the result is added back to B. Per vector
//! (see layout), `û = v/max(‖v‖, 1e-7)`, `cos θ = clamp(û₀·û₁, −1, 1)`,
//! `out = (sin((1−t)θ)·v₀ + sin(tθ)·v₁)/sin θ`, or the lerp `(1−t)v₀ + t·v₁` when
//! `1 − cos²θ ≤ 1e-16`. Layout: `nuslerp_flatten` (default) = the whole tensor is one vector;
//! otherwise each row (last dimension), or with `nuslerp_row_wise: true` each column
//! (vectors along dim 0 — mergekit's docs word this the other way round; this is what its
//! code does).
//!
//! Reference: mergekit's own generalisation of slerp (no paper).
//!
//! | name | scope | default | range |
//! |---|---|---|---|
//! | `weight` | per-model | required | real, w₁+w₂ ≠ 0 |
//! | `nuslerp_flatten` | global | true | bool |
//! | `nuslerp_row_wise` | global | false | bool |
//!
//! Matches mergekit 0.1.5 `merge_methods/nuslerp.py`. Under f32, lamarck computes norms and
//! coefficients in f64 and the combination in f32. Under a 16-bit compute dtype it rounds at
//! each of mergekit's torch ops (rounding once left up to 3% of bf16 elements beyond 2 ulps).
//! Same in both compat profiles.
//!
//! ```
//! use lamarck::merge::methods::{merge_vectors, Params};
//! let w = |w: f64| Params::from([("weight".to_string(), w)]);
//! // weights 1 and 3 → t = 0.75; parallel vectors → lerp
//! let out = merge_vectors("nuslerp", None, &[(&[1.0, 2.0], &w(1.0)), (&[3.0, 6.0], &w(3.0))], &Params::new());
//! assert_eq!(out.unwrap(), [2.5, 5.0]);
//! ```
use rayon::prelude::*;

use super::{Error, TensorJob};
use crate::merge::ops::{self, round64};
use crate::model::DType;

pub use crate::registry::NUSLERP as SPEC;

/// Coefficients `(c₀, c₁)` for one vector pair from ‖v₀‖², ‖v₁‖² and v₀·v₁.
fn coefficients(t: f64, n0_sq: f64, n1_sq: f64, dot: f64) -> (f64, f64) {
    let n0 = n0_sq.sqrt().max(1e-7);
    let n1 = n1_sq.sqrt().max(1e-7);
    let cos = (dot / (n0 * n1)).clamp(-1.0, 1.0);
    if 1.0 - cos * cos <= 1e-16 {
        return (1.0 - t, t);
    }
    let theta = cos.acos();
    let sin = theta.sin();
    (((1.0 - t) * theta).sin() / sin, (t * theta).sin() / sin)
}

/// One vector pair under a 16-bit compute dtype, rounding where mergekit's torch ops round
/// (normalised vectors, products, cos θ, θ, sines, each elementwise step).
fn slerp_rounded(t: f64, v0: &[f32], v1: &[f32], dtype: DType) -> Vec<f32> {
    let r = |x: f64| round64(dtype, x);
    let re = |x: f32| dtype.round(x);
    let n0 = r(ops::l2_norm(v0)).max(1e-7) as f32;
    let n1 = r(ops::l2_norm(v1)).max(1e-7) as f32;
    let cos: f64 = v0
        .iter()
        .zip(v1)
        .map(|(&a, &b)| re(re(a / n0) * re(b / n1)) as f64)
        .sum();
    let cos = r(cos).clamp(-1.0, 1.0);
    let (t32, s32) = (t as f32, (1.0 - t) as f32);
    if r(1.0 - r(cos * cos)) <= 1e-16 {
        return v0
            .iter()
            .zip(v1)
            .map(|(&a, &b)| re(re(s32 * a) + re(t32 * b)))
            .collect();
    }
    let theta = r(cos.acos());
    let sin = r(theta.sin()) as f32;
    let c0 = r(r((1.0 - t) * theta).sin()) as f32;
    let c1 = r(r(t * theta).sin()) as f32;
    v0.iter()
        .zip(v1)
        .map(|(&a, &b)| re(re(re(c0 * a) + re(c1 * b)) / sin))
        .collect()
}

/// Per-element coefficient index: which vector each element belongs to.
#[derive(Clone, Copy)]
enum Layout {
    /// Vectors are contiguous runs of `len` (the whole tensor when `len = numel`).
    Rows(usize),
    /// Vector j holds elements `i·stride + j`.
    Columns(usize),
}

pub(super) fn merge(job: &TensorJob) -> Result<Vec<f32>, Error> {
    let name = SPEC.name;
    let w1 = job.per_model(name, 0, "weight", None)?;
    let w2 = job.per_model(name, 1, "weight", None)?;
    let total = w1 + w2;
    let t = if total.abs() < 1e-6 { 0.5 } else { w2 / total };
    let flatten = job.global(name, "nuslerp_flatten", Some(1.0))? != 0.0;
    let row_wise = job.global(name, "nuslerp_row_wise", Some(0.0))? != 0.0;
    let n = job.numel();
    let layout = match (flatten, row_wise) {
        (true, _) => Layout::Rows(n.max(1)),
        (false, false) => Layout::Rows(job.row_len().max(1)),
        (false, true) => {
            Layout::Columns((n / job.shape.first().copied().unwrap_or(1).max(1)).max(1))
        }
    };
    let (v0, v1) = match job.base {
        Some(b) => (
            super::delta(job.models[0].data, b, job.compute_dtype),
            super::delta(job.models[1].data, b, job.compute_dtype),
        ),
        None => (job.models[0].data.to_vec(), job.models[1].data.to_vec()),
    };
    let mut out = vec![0f32; n];
    let dtype = job.compute_dtype;
    if dtype != DType::F32 {
        match layout {
            Layout::Rows(len) => out
                .par_chunks_mut(len)
                .zip(v0.par_chunks(len).zip(v1.par_chunks(len)))
                .for_each(|(o, (a, b))| o.copy_from_slice(&slerp_rounded(t, a, b, dtype))),
            Layout::Columns(stride) => {
                for j in 0..stride {
                    let a: Vec<f32> = v0.iter().skip(j).step_by(stride).copied().collect();
                    let b: Vec<f32> = v1.iter().skip(j).step_by(stride).copied().collect();
                    for (i, v) in slerp_rounded(t, &a, &b, dtype).into_iter().enumerate() {
                        out[i * stride + j] = v;
                    }
                }
            }
        }
        if let Some(b) = job.base {
            out.par_iter_mut()
                .zip(b.par_iter())
                .for_each(|(o, &b)| *o = dtype.round(*o + b));
        }
        return Ok(out);
    }
    match layout {
        Layout::Rows(len) => {
            out.par_chunks_mut(len)
                .zip(v0.par_chunks(len).zip(v1.par_chunks(len)))
                .for_each(|(o, (a, b))| {
                    let (mut s00, mut s11, mut s01) = (0f64, 0f64, 0f64);
                    for (&x, &y) in a.iter().zip(b) {
                        let (x, y) = (x as f64, y as f64);
                        s00 += x * x;
                        s11 += y * y;
                        s01 += x * y;
                    }
                    let (c0, c1) = coefficients(t, s00, s11, s01);
                    let (c0, c1) = (c0 as f32, c1 as f32);
                    for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                        *o = c0 * x + c1 * y;
                    }
                });
        }
        Layout::Columns(stride) => {
            let (mut s00, mut s11, mut s01) =
                (vec![0f64; stride], vec![0f64; stride], vec![0f64; stride]);
            for (a, b) in v0.chunks(stride).zip(v1.chunks(stride)) {
                for j in 0..a.len() {
                    let (x, y) = (a[j] as f64, b[j] as f64);
                    s00[j] += x * x;
                    s11[j] += y * y;
                    s01[j] += x * y;
                }
            }
            let coef: Vec<(f32, f32)> = (0..stride)
                .map(|j| {
                    let (c0, c1) = coefficients(t, s00[j], s11[j], s01[j]);
                    (c0 as f32, c1 as f32)
                })
                .collect();
            out.par_chunks_mut(stride)
                .zip(v0.par_chunks(stride).zip(v1.par_chunks(stride)))
                .for_each(|(o, (a, b))| {
                    for j in 0..o.len() {
                        o[j] = coef[j].0 * a[j] + coef[j].1 * b[j];
                    }
                });
        }
    }
    if let Some(b) = job.base {
        out.par_iter_mut()
            .zip(b.par_iter())
            .for_each(|(o, &b)| *o += b);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::merge::methods::{merge_tensor, merge_vectors, ModelTensor, Params, TensorJob};
    use crate::merge::rng::RngKey;
    use crate::model::DType;
    use crate::registry::Compat;

    fn w(w: f64) -> Params {
        Params::from([("weight".to_string(), w)])
    }

    #[test]
    fn equal_weights_with_base_slerp_the_task_vectors() {
        let base = [1.0, 1.0];
        let out = merge_vectors(
            "nuslerp",
            Some(&base),
            &[(&[2.0, 1.0], &w(1.0)), (&[1.0, 2.0], &w(1.0))],
            &Params::new(),
        )
        .unwrap();
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!(
            (out[0] - (1.0 + h)).abs() < 1e-6 && (out[1] - (1.0 + h)).abs() < 1e-6,
            "{out:?}"
        );
    }

    #[test]
    fn row_and_column_layouts_differ_as_documented() {
        let a = [1.0, 0.0, 1.0, 0.0]; // [[1, 0], [1, 0]]
        let b = [0.0, 1.0, 1.0, 0.0]; // [[0, 1], [1, 0]]
        let shape = [2usize, 2];
        let run = |flatten: f64, row_wise: f64| {
            let g = Params::from([
                ("nuslerp_flatten".into(), flatten),
                ("nuslerp_row_wise".into(), row_wise),
            ]);
            let (pa, pb) = (w(1.0), w(1.0));
            let job = TensorJob {
                name: "x",
                shape: &shape,
                base: None,
                models: vec![
                    ModelTensor {
                        data: &a,
                        params: &pa,
                    },
                    ModelTensor {
                        data: &b,
                        params: &pb,
                    },
                ],
                params: &g,
                compute_dtype: DType::F32,
                rng: RngKey::new(0, "", "x"),
                compat: Compat::Mergekit,
            };
            merge_tensor(&super::SPEC, &job).unwrap()
        };
        let h = std::f32::consts::FRAC_1_SQRT_2;
        let close = |x: Vec<f32>, y: [f32; 4]| {
            assert!(
                x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-6),
                "{x:?} vs {y:?}"
            );
        };
        // Rows: row 0 orthogonal → (h, h); row 1 identical → itself.
        close(run(0.0, 0.0), [h, h, 1.0, 0.0]);
        // Columns: col 0 (1,1)·(0,1) at 45° → sin(22.5°)/sin(45°)·(1,2); col 1 zero vs (1,0) → θ = 90°.
        let c = (std::f64::consts::PI / 8.0).sin() / (std::f64::consts::PI / 4.0).sin();
        let c = c as f32;
        close(run(0.0, 1.0), [c, h, 2.0 * c, 0.0]);
        // Flattened: cos = 1/2 → θ = 60°, both coefficients sin 30°/sin 60°.
        let f = (0.5f64 / (std::f64::consts::PI / 3.0).sin()) as f32;
        close(run(1.0, 0.0), [f, f, 2.0 * f, 0.0]);
    }
}
