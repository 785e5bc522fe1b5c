//! `linear`: weighted average of the inputs (model soup).
//!
//! Formula: `out = Σᵢ wᵢ·Xᵢ / Σᵢ wᵢ` (the division only with `normalize`).
//!
//! Paper: Model soups: averaging weights of multiple fine-tuned models improves accuracy
//! without increasing inference time (arXiv:2203.05482).
//!
//! | name | scope | default | range |
//! |---|---|---|---|
//! | `weight` | per-model | required | any real; Σ ≠ 0 with `normalize` |
//! | `normalize` | global | true | bool |
//!
//! Matches mergekit 0.1.5 `merge_methods/linear.py`: f32 arithmetic (weights as f32, not
//! rounded to the compute dtype), accumulated in input order, then one division. A
//! `base_model` is an ordinary input (it needs a weight). Difference: weights summing to 0
//! with `normalize: true` are an error here; mergekit writes inf/NaN. Same in both compat
//! profiles.
//!
//! ```
//! use lamarck::merge::methods::{merge_vectors, Params};
//! let w = |w: f64| Params::from([("weight".to_string(), w)]);
//! let out = merge_vectors("linear", None, &[(&[1.0, 2.0], &w(3.0)), (&[5.0, -2.0], &w(1.0))], &Params::new());
//! assert_eq!(out.unwrap(), [2.0, 1.0]);
//! ```
use rayon::prelude::*;

use super::{Error, TensorJob};
use crate::merge::ops::CHUNK;

pub use crate::registry::LINEAR as SPEC;

pub(super) fn merge(job: &TensorJob) -> Result<Vec<f32>, Error> {
    let name = SPEC.name;
    let normalize = job.global(name, "normalize", Some(1.0))? != 0.0;
    let weights = (0..job.models.len())
        .map(|i| job.per_model(name, i, "weight", None).map(|w| w as f32))
        .collect::<Result<Vec<f32>, Error>>()?;
    let total: f32 = weights.iter().sum();
    if normalize && total == 0.0 {
        return Err(Error::Invalid {
            method: name,
            message: format!(
                "tensor {}: weights {weights:?} sum to 0 and normalize is on; change a weight or set `normalize: false`",
                job.name
            ),
        });
    }
    let mut out = vec![0f32; job.numel()];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let start = c * CHUNK;
        for (m, &w) in job.models.iter().zip(&weights) {
            for (o, &x) in o.iter_mut().zip(&m.data[start..]) {
                *o += x * w;
            }
        }
        if normalize {
            o.iter_mut().for_each(|v| *v /= total);
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::merge::methods::{merge_vectors, Params};

    fn w(w: f64) -> Params {
        Params::from([("weight".to_string(), w)])
    }

    #[test]
    fn identical_models_come_back_whatever_the_weights() {
        let x = [0.25, -1.5, 3.0];
        let out = merge_vectors(
            "linear",
            None,
            &[(&x, &w(0.1)), (&x, &w(1.0))],
            &Params::new(),
        )
        .unwrap();
        for (a, b) in out.iter().zip(x) {
            assert!((a - b).abs() <= 1e-6 * b.abs());
        }
    }

    #[test]
    fn normalize_off_sums_and_zero_sum_is_an_error() {
        let off = Params::from([("normalize".to_string(), 0.0)]);
        let out = merge_vectors(
            "linear",
            None,
            &[(&[1.0], &w(2.0)), (&[3.0], &w(-1.0))],
            &off,
        )
        .unwrap();
        assert_eq!(out, [-1.0]);
        let e = merge_vectors(
            "linear",
            None,
            &[(&[1.0], &w(1.0)), (&[3.0], &w(-1.0))],
            &Params::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sum to 0") && e.contains("normalize: false"),
            "{e}"
        );
    }
}
