//! Generalized task arithmetic: task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs,
//! breadcrumbs_ties, della and della_linear, as rows of one table (mergekit's registry).
//!
//! Formula, per tensor, with base B, models i = 1..K (config order, base excluded):
//!
//! ```text
//! δᵢ  = Xᵢ − B                                  (rounded to the compute dtype)
//! δ̃ᵢ  = sparsify(δᵢ; densityᵢ, gammaᵢ, epsilonᵢ) (then rescale, see below)
//! Wᵢ  = wᵢ·δ̃ᵢ                                  (wᵢ rounded to the compute dtype)
//! consensus (ties-like rows):  mᵢ = [sign Wᵢ = sign Σⱼ Wⱼ], an exact 0 sum counts as +,
//!                              mixed = Σ mᵢWᵢ, divisor = Σ mᵢwᵢ (0 → 1), per element
//! no consensus (linear rows):  mixed = Σ Wᵢ,   divisor = Σ wᵢ (|·| < 1e-8 → 1), per tensor
//! out = B + λ · mixed / (normalize ? divisor : 1)
//! ```
//!
//! | method | sparsifier | consensus | normalize | rescale | paper |
//! |---|---|---|---|---|---|
//! | task_arithmetic | none | no | false | false | Editing Models with Task Arithmetic, arXiv:2212.04089 |
//! | ties | magnitude top-k | yes | true | false | TIES-Merging, arXiv:2306.01708 |
//! | dare_ties | random (DARE) | yes | false | true | Language Models are Super Mario, arXiv:2311.03099 |
//! | dare_linear | random (DARE) | no | false | true | arXiv:2311.03099 |
//! | breadcrumbs | magnitude_outliers | no | false | false | Model Breadcrumbs, arXiv:2312.06795 |
//! | breadcrumbs_ties | magnitude_outliers | yes | false | false | arXiv:2312.06795 |
//! | della | della_magprune | yes | true | true | DELLA-Merging, arXiv:2406.11617 |
//! | della_linear | della_magprune | no | false | true | arXiv:2406.11617 |
//!
//! Parameters:
//!
//! | name | scope | default | range |
//! |---|---|---|---|
//! | `weight` | per-model | required | any real (usually 0..1) |
//! | `density` | per-model | 1.0 | (0, 1]; ≥ 1 keeps everything, ≤ 0 drops everything |
//! | `gamma` (breadcrumbs*) | per-model | 0.01 | [0, 1] |
//! | `epsilon` (della*) | per-model | 0.15 | 0 ≤ ε, with 0 < density − ε and density + ε < 1 |
//! | `lambda` | global (per-model under `mergekit-2024`, della only) | 1.0 | any real |
//! | `normalize` | global | per method (table above) | bool |
//! | `rescale` | global | per method | bool |
//! | `int8_mask` | global | false | bool (no effect on the numbers, as in mergekit) |
//!
//! Matches mergekit 0.1.5 `merge_methods/generalized_task_arithmetic.py` and `sparsify.py`
//! (golden tests in `tests/kernels_golden.rs`; 0 of ~47k bf16 elements beyond 2 ulps):
//! * under a 16-bit compute dtype, values are rounded to it at the points where mergekit's
//!   torch ops round (task vectors, weights — 0.3 → 0.30078125 under bf16 —, weighted
//!   deltas, sums, normalisation, λ, rescale factors); computing in f32 and rounding once
//!   instead put 1–15% of bf16 elements more than 2 ulps away (cancellation in `B + mixed`).
//!   Under f32 this is a no-op and reductions run in f64;
//! * equal magnitudes at the TIES / breadcrumbs boundary are resolved exactly as torch's CPU
//!   sort leaves them (replayed in `ops::torch_sort`); common with bf16 task vectors;
//! * TIES `density` so small that `floor(density·n) = 0` keeps one element, as 0.1.5 does.
//!
//! Deliberate differences:
//! * DARE/DELLA masks come from lamarck's counter-based RNG ([`crate::merge::rng`]), so they
//!   agree with mergekit statistically, not bit-for-bit; the keep probability is the f64
//!   density (mergekit rounds it to bf16 under `dtype: bfloat16`);
//! * DELLA ranks are exact whatever the dtype: mergekit stores ranks in bf16 under
//!   `dtype: bfloat16`, turning the probability ramp into a staircase above rank 256;
//!   a one-element row gets p = density (mergekit fails with 0/0);
//! * breadcrumbs with `floor(gamma·n) = 0` keeps the top `floor(density·n)` magnitudes
//!   (as mergekit 0.1.5 does; mergekit ≤ 0.1.4 zeroed the whole task vector — that bug is
//!   not replicated in either profile);
//! * DELLA with ε = 0 draws exactly DARE's mask for the same seed.
//!
//! Compat profile `mergekit-2024` (mergekit ≤ 0.0.6): with `rescale`, DARE divides kept values
//! by `density` and DELLA divides each kept value by its own keep probability pᵢ (instead of
//! L1 matching); DELLA reads `lambda` per model and applies the first model's; the other
//! methods have no `lambda`.
//!
//! ```
//! use lamarck::merge::methods::{merge_vectors, Params};
//! let p = |w: f64| Params::from([("weight".to_string(), w)]);
//! let base = [1.0, 1.0, 1.0];
//! let a = [2.0, 0.0, 1.5]; // δ = [ 1, −1,  0.5]
//! let b = [0.0, 0.0, 3.0]; // δ = [−1, −1,  2  ]
//! // task_arithmetic: B + 0.5·δa + 0.5·δb
//! let out = merge_vectors("task_arithmetic", Some(&base), &[(&a, &p(0.5)), (&b, &p(0.5))], &Params::new()).unwrap();
//! assert_eq!(out, [1.0, 0.0, 2.25]);
//! // ties (normalize on): element 0 sums to 0 → "+" wins → only a contributes, /0.5
//! let out = merge_vectors("ties", Some(&base), &[(&a, &p(0.5)), (&b, &p(0.5))], &Params::new()).unwrap();
//! assert_eq!(out, [2.0, 0.0, 2.25]);
//! ```
use rayon::prelude::*;

use super::{Error, TensorJob};
use crate::merge::ops::{self, Rescale, SparsifyArgs, CHUNK};
use crate::registry::task_arithmetic::bool_value;
pub use crate::registry::task_arithmetic::*;
use crate::registry::Compat;
use crate::registry::Sparsifier::{DellaMagprune, Random};

/// Resolved parameters of one tensor: `normalize`, `lambda`, and per model (config order)
/// its rounded weight and sparsification arguments. Shared by this kernel and its streamed
/// form (`merge/stream/task_arithmetic.rs`), which passes a job without data.
pub(crate) struct Settings {
    pub normalize: bool,
    pub lambda: f64,
    pub models: Vec<(f32, SparsifyArgs)>,
}

pub(crate) fn settings(v: &Variant, job: &TensorJob) -> Result<Settings, Error> {
    let name = v.name;
    let invalid = |message: String| Error::Invalid {
        method: name,
        message,
    };
    let dtype = job.compute_dtype;
    let normalize = job.global(name, "normalize", bool_value(v.default_normalize))? != 0.0;
    let rescale_on = job.global(name, "rescale", bool_value(v.default_rescale))? != 0.0;
    let lambda = match job.compat {
        Compat::Mergekit => job.global(name, "lambda", Some(1.0))?,
        Compat::Mergekit2024 if v.is_della() => job.per_model(
            name,
            0,
            "lambda",
            job.params.get("lambda").copied().or(Some(1.0)),
        )?,
        Compat::Mergekit2024 => 1.0,
    };
    let rescale = match (rescale_on, job.compat, v.sparsifier) {
        (false, _, _) => Rescale::None,
        (true, Compat::Mergekit2024, Some(Random | DellaMagprune)) => Rescale::InverseProbability,
        (true, _, _) => Rescale::L1,
    };

    let mut settings = Vec::with_capacity(job.models.len());
    for i in 0..job.models.len() {
        let density = job.per_model(name, i, "density", Some(1.0))?;
        let gamma = job.per_model(name, i, "gamma", Some(0.01))?;
        let epsilon = job.per_model(name, i, "epsilon", Some(0.15))?;
        if v.sparsifier == Some(DellaMagprune) {
            check_della(density, epsilon)
                .map_err(|m| invalid(format!("tensor {}: model #{}: {m}", job.name, i + 1)))?;
        }
        let weight = dtype.round(job.per_model(name, i, "weight", None)? as f32);
        let args = SparsifyArgs {
            density,
            gamma,
            epsilon,
            rescale,
            dtype,
            row_len: job.row_len(),
        };
        settings.push((weight, args));
    }
    Ok(Settings {
        normalize,
        lambda,
        models: settings,
    })
}

pub(super) fn merge(v: &Variant, job: &TensorJob) -> Result<Vec<f32>, Error> {
    let name = v.name;
    let invalid = |message: String| Error::Invalid {
        method: name,
        message,
    };
    let base = job
        .base
        .ok_or_else(|| invalid(format!("tensor {}: needs a base_model tensor", job.name)))?;
    if job.models.is_empty() {
        return Ok(base.to_vec());
    }
    let dtype = job.compute_dtype;
    // Parameters first (cheap, fail fast), then the task vectors of all models in parallel:
    // each model's mask depends only on its own stream, so this is thread-count independent.
    let Settings {
        normalize,
        lambda,
        models: settings,
    } = settings(v, job)?;
    let weights: Vec<f32> = settings.iter().map(|(w, _)| *w).collect();
    let deltas: Vec<Vec<f32>> = job
        .models
        .par_iter()
        .zip(&settings)
        .enumerate()
        .map(|(i, (model, (_, args)))| {
            let mut d = super::delta(model.data, base, dtype);
            if let Some(sparsifier) = v.sparsifier {
                ops::sparsify(&mut d, sparsifier, *args, job.rng.stream(i));
            }
            d
        })
        .collect();

    // Rounding points follow mergekit's torch ops in the compute dtype (a no-op for f32):
    // W = r(w·δ); sums accumulate in f32 and round once; then r(/divisor), r(·λ), r(B + ·).
    let r = |x: f32| dtype.round(x);
    let weight_sum = r(weights.iter().sum());
    let linear_divisor = if weight_sum.abs() < 1e-8 {
        1.0
    } else {
        weight_sum
    };
    let lambda32 = lambda as f32;
    let mut out = vec![0f32; base.len()];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let start = c * CHUNK;
        for (j, o) in o.iter_mut().enumerate() {
            let idx = start + j;
            let (mut mixed, divisor) = if v.consensus {
                let total: f32 = r(deltas
                    .iter()
                    .zip(&weights)
                    .map(|(d, w)| r(w * d[idx]))
                    .sum());
                let positive = total >= 0.0;
                let (mut mixed, mut divisor) = (0f32, 0f32);
                for (d, &w) in deltas.iter().zip(&weights) {
                    let wd = r(w * d[idx]);
                    if ops::agrees_with_majority(wd, positive) {
                        mixed += wd;
                        divisor += w;
                    }
                }
                let divisor = r(divisor);
                (r(mixed), if divisor == 0.0 { 1.0 } else { divisor })
            } else {
                let mixed: f32 = deltas
                    .iter()
                    .zip(&weights)
                    .map(|(d, w)| r(w * d[idx]))
                    .sum();
                (r(mixed), linear_divisor)
            };
            if normalize {
                mixed = r(mixed / divisor);
            }
            if lambda != 1.0 {
                mixed = r(mixed * lambda32);
            }
            *o = base[idx] + mixed;
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::methods::{merge_vectors, merge_vectors_with, Params};
    use crate::model::DType;

    fn p(pairs: &[(&str, f64)]) -> Params {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn ties_elects_sign_by_weighted_mass_and_normalizes_by_agreeing_weights() {
        let base = [0.0, 0.0, 0.0, 0.0];
        let a = [1.0, -1.0, 2.0, 0.0];
        let b = [-3.0, -1.0, 0.0, 0.0];
        let (pa, pb) = (p(&[("weight", 1.0)]), p(&[("weight", 0.5)]));
        let out =
            merge_vectors("ties", Some(&base), &[(&a, &pa), (&b, &pb)], &Params::new()).unwrap();
        // e0: 1 − 1.5 < 0 → b wins: −1.5/0.5; e1: both agree (−1 −0.5)/1.5; e2: only a; e3: 0.
        assert_eq!(out, [-3.0, -1.0, 2.0, 0.0]);
        // negative weight flips the vote
        let pb = p(&[("weight", -1.0)]);
        let out = merge_vectors(
            "ties",
            Some(&base),
            &[(&a, &pa), (&b, &pb)],
            &p(&[("normalize", 0.0)]),
        )
        .unwrap();
        // e1: W = (−1, +1) sums to 0 → "+" wins → b alone.
        assert_eq!(out, [4.0, 1.0, 2.0, 0.0]);
    }

    #[test]
    fn lambda_scales_and_weights_round_to_bf16() {
        let base = [1.0, 2.0];
        let a = [2.0, 4.0];
        let out = merge_vectors(
            "task_arithmetic",
            Some(&base),
            &[(&a, &p(&[("weight", 0.3)]))],
            &p(&[("lambda", 2.0)]),
        )
        .unwrap();
        assert_eq!(out, [1.0 + 2.0 * 0.3f32, 2.0 + 2.0 * (0.3f32 * 2.0)]);
        // Under bf16, w = 0.3 becomes 0.30078125: −2 + 8w = 0.40625 (exact in bf16), where
        // an unrounded weight would give bf16(0.4) = 0.400390625.
        let out = merge_vectors_with(
            "task_arithmetic",
            Some(&[-2.0]),
            &[(&[6.0], &p(&[("weight", 0.3)]))],
            &Params::new(),
            DType::BF16,
            Compat::Mergekit,
            0,
        )
        .unwrap();
        assert_eq!(out, [0.40625]);
    }

    #[test]
    fn della_rejects_epsilon_outside_density_bounds() {
        let base = [0.0; 4];
        let a = [1.0, 2.0, 3.0, 4.0];
        let pa = p(&[("weight", 1.0), ("density", 0.3), ("epsilon", 0.3)]);
        let e = merge_vectors("della", Some(&base), &[(&a, &pa)], &Params::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("della: tensor") && e.contains("density ± epsilon"),
            "{e}"
        );
        let pa = p(&[("weight", 1.0), ("density", 0.8), ("epsilon", 0.2)]);
        assert!(merge_vectors("della", Some(&base), &[(&a, &pa)], &Params::new()).is_err());
        let pa = p(&[("weight", 1.0), ("density", 0.8), ("epsilon", 0.1)]);
        assert!(merge_vectors("della", Some(&base), &[(&a, &pa)], &Params::new()).is_ok());
    }

    #[test]
    fn missing_weight_is_a_clear_error() {
        let e = merge_vectors(
            "ties",
            Some(&[0.0]),
            &[(&[1.0], &Params::new())],
            &Params::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("model #1") && e.contains("`weight`"), "{e}");
    }

    #[test]
    fn della_2024_divides_by_keep_probability_and_uses_first_lambda() {
        let n = 4000;
        let base = vec![0.0f32; n];
        let a: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32).collect();
        let pa = p(&[
            ("weight", 1.0),
            ("density", 0.5),
            ("epsilon", 0.1),
            ("lambda", 0.5),
        ]);
        let pb = p(&[
            ("weight", 1.0),
            ("density", 0.5),
            ("epsilon", 0.1),
            ("lambda", 3.0),
        ]);
        let out = merge_vectors_with(
            "della_linear",
            Some(&base),
            &[(&a, &pa), (&a, &pb)],
            &Params::new(),
            DType::F32,
            Compat::Mergekit2024,
            5,
        )
        .unwrap();
        // E[mask/p] = 1, so the mean of out/(Σ weights·a) is λ₁ = 0.5.
        let ratio: f64 = out
            .iter()
            .zip(&a)
            .map(|(o, x)| (*o / (2.0 * x)) as f64)
            .sum::<f64>()
            / n as f64;
        assert!((ratio - 0.5).abs() < 0.03, "{ratio}");
    }
}
