//! `slerp`: spherical linear interpolation between the base and one other model.
//!
//! Formula, per tensor, both flattened to one vector: `v̂ = v/‖v‖` (only when ‖v‖ > 1e-8),
//! `dot = clamp(v̂₀·v̂₁, −1, 1)`, `θ = acos(dot)`;
//! `out = sin((1−t)θ)/sin θ · v₀ + sin(tθ)/sin θ · v₁` on the *unnormalised* tensors, or
//! the lerp `(1−t)·v₀ + t·v₁` when `|dot| > 0.9995` (parallel or anti-parallel).
//! `t = 0` gives the base, `t = 1` the other model.
//!
//! Reference: Shoemake, Animating rotation with quaternion curves (SIGGRAPH 1985); no arXiv id.
//!
//! | name | scope | default | range |
//! |---|---|---|---|
//! | `t` | global | required | [0, 1] (extrapolation allowed) |
//!
//! Matches mergekit 0.1.5 `merge_methods/slerp.py`: f32 elements, one output rounding;
//! lamarck computes the norms, the dot product and the coefficients in f64 (mergekit: f32),
//! a difference far below the f32 tolerance. Same in both compat profiles.
//!
//! ```
//! use lamarck::merge::methods::{merge_vectors, Params};
//! let t = |t: f64| Params::from([("t".to_string(), t)]);
//! let none = Params::new();
//! // orthogonal unit vectors: halfway is (cos 45°, sin 45°)
//! let out = merge_vectors("slerp", Some(&[1.0, 0.0]), &[(&[0.0, 1.0], &none)], &t(0.5)).unwrap();
//! assert_eq!(out, [std::f32::consts::FRAC_1_SQRT_2; 2]);
//! // parallel vectors: plain lerp
//! let out = merge_vectors("slerp", Some(&[1.0, 2.0]), &[(&[2.0, 4.0], &none)], &t(0.25)).unwrap();
//! assert_eq!(out, [1.25, 2.5]);
//! ```
use rayon::prelude::*;

use super::{Error, TensorJob};
use crate::merge::ops::{self, CHUNK};

pub use crate::registry::SLERP as SPEC;

/// Interpolation coefficients `(c₀, c₁)` for `out = c₀·v₀ + c₁·v₁`.
pub fn coefficients(t: f64, v0: &[f32], v1: &[f32]) -> (f64, f64) {
    coefficients_from(t, ops::l2_norm(v0), ops::l2_norm(v1), ops::dot_f64(v0, v1))
}

/// [`coefficients`] from the norms ‖v₀‖₂, ‖v₁‖₂ and the dot product v₀·v₁ (the streamed
/// runner computes them block by block, with the same fixed-chunk sums).
pub fn coefficients_from(t: f64, n0: f64, n1: f64, dot: f64) -> (f64, f64) {
    const EPS: f64 = 1e-8;
    let n0 = if n0 > EPS { n0 } else { 1.0 };
    let n1 = if n1 > EPS { n1 } else { 1.0 };
    let dot = (dot / (n0 * n1)).clamp(-1.0, 1.0);
    if dot.abs() > 0.9995 {
        return (1.0 - t, t);
    }
    let theta = dot.acos();
    let sin_theta = theta.sin();
    (
        ((1.0 - t) * theta).sin() / sin_theta,
        (t * theta).sin() / sin_theta,
    )
}

/// `c₀·v₀ + c₁·v₁` element-wise in f32.
pub(super) fn combine(c0: f64, v0: &[f32], c1: f64, v1: &[f32]) -> Vec<f32> {
    let (c0, c1) = (c0 as f32, c1 as f32);
    let mut out = vec![0f32; v0.len()];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let start = c * CHUNK;
        for ((o, &a), &b) in o.iter_mut().zip(&v0[start..]).zip(&v1[start..]) {
            *o = c0 * a + c1 * b;
        }
    });
    out
}

pub(super) fn merge(job: &TensorJob) -> Result<Vec<f32>, Error> {
    let t = job.global(SPEC.name, "t", None)?;
    let base = job.base.ok_or_else(|| Error::Invalid {
        method: SPEC.name,
        message: format!("tensor {}: needs a base_model tensor", job.name),
    })?;
    let other = job.models[0].data;
    let (c0, c1) = coefficients(t, base, other);
    Ok(combine(c0, base, c1, other))
}

#[cfg(test)]
mod tests {
    use crate::merge::methods::{merge_vectors, Params};

    fn t(t: f64) -> Params {
        Params::from([("t".to_string(), t)])
    }

    #[test]
    fn endpoints_return_the_inputs() {
        let (a, b) = ([0.3, -1.0, 2.0], [1.0, 0.5, -0.25]);
        let none = Params::new();
        assert_eq!(
            merge_vectors("slerp", Some(&a), &[(&b, &none)], &t(0.0)).unwrap(),
            a
        );
        let out = merge_vectors("slerp", Some(&a), &[(&b, &none)], &t(1.0)).unwrap();
        for (o, x) in out.iter().zip(b) {
            assert!((o - x).abs() < 1e-6);
        }
    }

    #[test]
    fn antiparallel_falls_back_to_lerp_and_missing_t_is_an_error() {
        let none = Params::new();
        let out = merge_vectors(
            "slerp",
            Some(&[1.0, 1.0]),
            &[(&[-1.0, -1.0], &none)],
            &t(0.5),
        )
        .unwrap();
        assert_eq!(out, [0.0, 0.0]);
        let e = merge_vectors("slerp", Some(&[1.0]), &[(&[2.0], &none)], &none).unwrap_err();
        assert!(e.to_string().contains("missing parameter `t`"), "{e}");
    }
}
