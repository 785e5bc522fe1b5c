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
//! guard). Difference: mergekit computes in the input dtype (bf16 cosines and t under
//! `dtype: bfloat16`); lamarck computes dot products and t in f64, the blend in f32. Same in
//! both compat profiles.
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
use rayon::prelude::*;

use super::{BaseUse, Error, Kernel, MethodSpec, TensorJob};
use crate::merge::ops::CHUNK;

pub const SPEC: MethodSpec = MethodSpec {
    name: "model_stock",
    pretty_name: "Model Stock",
    paper: "Model Stock: All we need is just a few fine-tuned models (arXiv:2403.19522)",
    base: BaseUse::Required,
    stochastic: false,
    min_models: 2,
    max_models: None,
    kernel: Kernel::ModelStock,
};

/// Σ (aᵢ−bᵢ)(cᵢ−bᵢ) in f64 over fixed chunks (deterministic for any thread count).
fn delta_dot(a: &[f32], c: &[f32], b: &[f32]) -> f64 {
    let parts: Vec<f64> = a
        .par_chunks(CHUNK)
        .zip(c.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .map(|(a, (c, b))| {
            a.iter()
                .zip(c)
                .zip(b)
                .map(|((&a, &c), &b)| (a as f64 - b as f64) * (c as f64 - b as f64))
                .sum::<f64>()
        })
        .collect();
    parts.iter().sum()
}

/// The interpolation ratio t for one vector (a slice range of every input).
fn ratio(base: &[f32], models: &[&[f32]]) -> f64 {
    let k = models.len();
    let norms: Vec<f64> = models
        .iter()
        .map(|m| delta_dot(m, m, base).sqrt())
        .collect();
    let (mut sum, mut pairs) = (0f64, 0usize);
    for i in 0..k {
        for j in i + 1..k {
            let dot = delta_dot(models[i], models[j], base);
            sum += (dot / (norms[i] * norms[j]).max(1e-6)).clamp(-1.0, 1.0);
            pairs += 1;
        }
    }
    let cos = sum / pairs as f64;
    let denominator = 1.0 + (k as f64 - 1.0) * cos;
    if denominator.abs() < 1e-6 {
        0.0
    } else {
        k as f64 * cos / denominator
    }
}

pub(super) fn merge(job: &TensorJob) -> Result<Vec<f32>, Error> {
    let filter_wise = job.global(SPEC.name, "filter_wise", Some(0.0))? != 0.0;
    let base = job.base.ok_or_else(|| Error::Invalid {
        method: SPEC.name,
        message: format!("tensor {}: needs a base_model tensor", job.name),
    })?;
    let n = base.len();
    let row = if filter_wise {
        job.row_len().max(1)
    } else {
        n.max(1)
    };
    let k = job.models.len() as f32;
    let ratios: Vec<f32> = (0..n.div_ceil(row))
        .map(|r| {
            let range = r * row..((r + 1) * row).min(n);
            let ms: Vec<&[f32]> = job.models.iter().map(|m| &m.data[range.clone()]).collect();
            ratio(&base[range], &ms) as f32
        })
        .collect();
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let start = c * CHUNK;
        for (j, o) in o.iter_mut().enumerate() {
            let idx = start + j;
            let t = ratios[idx / row];
            let mean = job.models.iter().map(|m| m.data[idx]).sum::<f32>() / k;
            *o = t * mean + (1.0 - t) * base[idx];
        }
    });
    Ok(out)
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
