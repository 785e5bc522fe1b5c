//! One file per merge method, each a pure function of (tensors, parameters).
//!
//! [`METHODS`] is the only registry: the recipe validator, the planner, `--help` text and
//! the search's gene bounds all read it.
//!
//! Input contract of [`merge_tensor`]: every slice in the [`TensorJob`] has `shape`'s element
//! count (embeddings already cut to a common shape). Values not representable in the compute
//! dtype are rounded to it first (mergekit casts inputs to `dtype:` at load time), and the
//! output holds compute-dtype values in f32; the caller casts once to the output dtype.
use std::collections::BTreeMap;

use super::{rng::RngKey, Compat};
use crate::model::DType;

pub mod linear;
pub mod model_stock;
pub mod nuslerp;
pub mod passthrough;
pub mod slerp;
pub mod task_arithmetic;

/// Resolved parameter values for one tensor (booleans are 0.0 / 1.0), defaults filled in.
pub type Params = BTreeMap<String, f64>;

/// How a method uses `base_model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseUse {
    /// Required reference point (task arithmetic family, slerp, model_stock, ...).
    Required,
    /// Optional third model (nuslerp).
    Optional,
    /// Not a reference: an appended base is one more ordinary input (linear).
    AsInput,
    /// Exactly one input, no base (passthrough).
    None,
}

#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    /// Global (method) parameter, or per-model ("tensor") parameter.
    pub per_model: bool,
    pub default: Option<f64>,
    pub required: bool,
    pub doc: &'static str,
    /// A boolean flag (YAML `true`/`false`, carried as 1.0/0.0).
    pub boolean: bool,
    /// Meaningful range (inclusive) for validation messages and search gene bounds.
    pub range: (f64, f64),
}

/// Which kernel a registry row runs.
#[derive(Debug, Clone, Copy)]
pub enum Kernel {
    Linear,
    Slerp,
    Nuslerp,
    TaskArithmetic(task_arithmetic::Variant),
    ModelStock,
    Passthrough,
}

#[derive(Debug, Clone, Copy)]
pub struct MethodSpec {
    pub name: &'static str,
    pub pretty_name: &'static str,
    pub paper: &'static str,
    pub base: BaseUse,
    pub stochastic: bool,
    /// Number of non-base inputs accepted (for [`BaseUse::AsInput`]: all inputs).
    pub min_models: usize,
    pub max_models: Option<usize>,
    pub kernel: Kernel,
}

const fn flag(name: &'static str, per_model: bool, default: bool, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        per_model,
        default: Some(if default { 1.0 } else { 0.0 }),
        required: false,
        doc,
        boolean: true,
        range: (0.0, 1.0),
    }
}

const fn number(
    name: &'static str,
    per_model: bool,
    default: Option<f64>,
    range: (f64, f64),
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        per_model,
        default,
        required: false,
        doc,
        boolean: false,
        range,
    }
}

const fn required(
    name: &'static str,
    per_model: bool,
    range: (f64, f64),
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        per_model,
        default: None,
        required: true,
        doc,
        boolean: false,
        range,
    }
}

impl MethodSpec {
    /// Parameters this method accepts under `compat` (the 2024 profile makes `lambda` and
    /// `epsilon` per-model for DELLA).
    pub fn params(&self, compat: Compat) -> Vec<ParamSpec> {
        const WEIGHT_DOC: &str = "this model's weight";
        match self.kernel {
            Kernel::Linear => vec![
                flag("normalize", false, true, "divide by the sum of weights"),
                required("weight", true, (-10.0, 10.0), WEIGHT_DOC),
            ],
            Kernel::Slerp => vec![required(
                "t",
                false,
                (0.0, 1.0),
                "interpolation factor: 0 = base, 1 = the other model",
            )],
            Kernel::Nuslerp => vec![
                flag(
                    "nuslerp_flatten",
                    false,
                    true,
                    "treat the whole tensor as one vector",
                ),
                flag(
                    "nuslerp_row_wise",
                    false,
                    false,
                    "with flatten off: slerp columns (dim 0) instead of rows",
                ),
                required("weight", true, (0.0, 10.0), WEIGHT_DOC),
            ],
            Kernel::TaskArithmetic(v) => v.params(compat),
            Kernel::ModelStock => vec![flag(
                "filter_wise",
                false,
                false,
                "one ratio per row instead of per tensor",
            )],
            Kernel::Passthrough => vec![number(
                "scale",
                true,
                None,
                (-10.0, 10.0),
                "multiply the tensor by this factor",
            )],
        }
    }

    /// Check the number of inputs (`models`: non-base inputs; for [`BaseUse::AsInput`] all
    /// inputs) and the presence of a base.
    pub fn check_inputs(&self, models: usize, has_base: bool) -> Result<(), Error> {
        let invalid = |message: String| Error::Invalid {
            method: self.name,
            message,
        };
        match self.base {
            BaseUse::Required if !has_base => {
                return Err(invalid(
                    "needs a base_model; add `base_model:` to the recipe".into(),
                ))
            }
            BaseUse::None | BaseUse::AsInput if has_base && self.base == BaseUse::None => {
                return Err(invalid(
                    "takes exactly one input and no base_model; remove `base_model:`".into(),
                ))
            }
            _ => {}
        }
        let max_ok = self.max_models.is_none_or(|max| models <= max);
        if models < self.min_models || !max_ok {
            let wanted = match self.max_models {
                Some(max) if max == self.min_models => format!("exactly {max}"),
                Some(max) => format!("{} to {max}", self.min_models),
                None => format!("at least {}", self.min_models),
            };
            let message = match self.base {
                BaseUse::AsInput | BaseUse::None => format!("needs {wanted} input model(s), got {models}"),
                BaseUse::Required => format!(
                    "needs the base_model plus {wanted} other model(s), got {models} besides the base"
                ),
                BaseUse::Optional => format!(
                    "needs {wanted} model(s) besides the optional base_model, got {models}"
                ),
            };
            return Err(invalid(message));
        }
        Ok(())
    }
}

impl MethodSpec {
    /// Check resolved parameters for one tensor before any work: every required parameter
    /// is present for every model (`per_model` in [`TensorJob::models`] order) and DELLA's
    /// `density ± epsilon` lies inside (0, 1). The planner can call this for every planned
    /// tensor so a bad value fails before a byte is written; the kernels check again.
    pub fn validate_params(
        &self,
        compat: Compat,
        global: &Params,
        per_model: &[&Params],
    ) -> Result<(), Error> {
        let invalid = |message: String| Error::Invalid {
            method: self.name,
            message,
        };
        for spec in self.params(compat).iter().filter(|p| p.required) {
            if spec.per_model {
                if let Some(i) = per_model.iter().position(|p| !p.contains_key(spec.name)) {
                    return Err(invalid(format!(
                        "model #{} (config order) has no `{}`; set it under that model's `parameters:` or globally",
                        i + 1,
                        spec.name
                    )));
                }
            } else if !global.contains_key(spec.name) {
                return Err(invalid(format!(
                    "missing required parameter `{}`",
                    spec.name
                )));
            }
        }
        if let Kernel::TaskArithmetic(v) = self.kernel {
            if v.sparsifier == Some(super::ops::Sparsifier::DellaMagprune) {
                for (i, p) in per_model.iter().enumerate() {
                    let density = p.get("density").copied().unwrap_or(1.0);
                    let epsilon = p.get("epsilon").copied().unwrap_or(0.15);
                    task_arithmetic::check_della(density, epsilon)
                        .map_err(|m| invalid(format!("model #{}: {m}", i + 1)))?;
                }
            }
        }
        Ok(())
    }
}

/// Every method lamarck implements.
pub static METHODS: &[MethodSpec] = &[
    linear::SPEC,
    slerp::SPEC,
    nuslerp::SPEC,
    task_arithmetic::TASK_ARITHMETIC,
    task_arithmetic::TIES,
    task_arithmetic::DARE_TIES,
    task_arithmetic::DARE_LINEAR,
    task_arithmetic::BREADCRUMBS,
    task_arithmetic::BREADCRUMBS_TIES,
    task_arithmetic::DELLA,
    task_arithmetic::DELLA_LINEAR,
    model_stock::SPEC,
    passthrough::SPEC,
];

pub fn lookup(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}

/// One model's input for one tensor.
#[derive(Debug, Clone, Copy)]
pub struct ModelTensor<'a> {
    pub data: &'a [f32],
    /// This model's per-model parameters, resolved for this tensor.
    pub params: &'a Params,
}

/// Everything a kernel sees for one output tensor. The runner has already cut embeddings
/// to a common shape, so every input has `shape`.
#[derive(Debug, Clone)]
pub struct TensorJob<'a> {
    /// Output tensor name (used for the RNG key and messages only).
    pub name: &'a str,
    pub shape: &'a [usize],
    /// The base model's tensor, for methods with [`BaseUse::Required`] / [`BaseUse::Optional`].
    pub base: Option<&'a [f32]>,
    /// Non-base inputs in config order (for [`BaseUse::AsInput`], the base is among them).
    pub models: Vec<ModelTensor<'a>>,
    /// Global parameters, resolved for this tensor.
    pub params: &'a Params,
    /// The recipe's compute dtype (`dtype:`), for mergekit-compatible rounding of weights.
    pub compute_dtype: DType,
    pub rng: RngKey,
    pub compat: Compat,
}

impl TensorJob<'_> {
    /// Number of elements of the output.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Length of a row (the last dimension; the whole tensor for 0-/1-D).
    pub fn row_len(&self) -> usize {
        match self.shape {
            [] => 1,
            [n] => *n,
            [.., last] => *last,
        }
    }

    /// A global parameter, or its default when the runner left it out.
    pub(crate) fn global(
        &self,
        method: &'static str,
        name: &str,
        default: Option<f64>,
    ) -> Result<f64, Error> {
        self.params
            .get(name)
            .copied()
            .or(default)
            .ok_or_else(|| Error::Invalid {
                method,
                message: format!("tensor {}: missing parameter `{name}`", self.name),
            })
    }

    /// Per-model parameter of model `index`, or its default.
    pub(crate) fn per_model(
        &self,
        method: &'static str,
        index: usize,
        name: &str,
        default: Option<f64>,
    ) -> Result<f64, Error> {
        self.models[index]
            .params
            .get(name)
            .copied()
            .or(default)
            .ok_or_else(|| Error::Invalid {
                method,
                message: format!(
                    "tensor {}: model #{} (config order) has no `{name}`; set it under that model's `parameters:` or globally",
                    self.name,
                    index + 1
                ),
            })
    }

    /// Check every input has the output's element count.
    fn check_lengths(&self, method: &'static str) -> Result<(), Error> {
        let n = self.numel();
        let bad = self
            .base
            .iter()
            .map(|b| ("base".to_string(), b.len()))
            .chain(
                self.models
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (format!("model #{}", i + 1), m.data.len())),
            )
            .find(|(_, len)| *len != n);
        match bad {
            Some((who, len)) => Err(Error::Invalid {
                method,
                message: format!(
                    "tensor {}: {who} has {len} elements, expected {n} (shape {:?})",
                    self.name, self.shape
                ),
            }),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{method}: {message}")]
    Invalid {
        method: &'static str,
        message: String,
    },
}

/// Run `method` on one tensor. Output is f32 in `job.shape`, holding values of the compute
/// dtype (mergekit's kernels return a tensor in the compute dtype; the caller then casts to
/// `out_dtype`). Inputs that are not representable in the compute dtype (f32 checkpoints
/// merged with `dtype: bfloat16`) are rounded to it first, as mergekit casts at load time.
pub fn merge_tensor(method: &MethodSpec, job: &TensorJob) -> Result<Vec<f32>, Error> {
    job.check_lengths(method.name)?;
    let dtype = job.compute_dtype;
    let representable = |xs: &[f32]| xs.iter().all(|&x| dtype.round(x) == x || x.is_nan());
    let needs_rounding = dtype != DType::F32
        && (job.base.is_some_and(|b| !representable(b))
            || job.models.iter().any(|m| !representable(m.data)));
    if needs_rounding {
        let round = |xs: &[f32]| xs.iter().map(|&x| dtype.round(x)).collect::<Vec<f32>>();
        let base = job.base.map(round);
        let data: Vec<Vec<f32>> = job.models.iter().map(|m| round(m.data)).collect();
        let rounded = TensorJob {
            base: base.as_deref(),
            models: job
                .models
                .iter()
                .zip(&data)
                .map(|(m, d)| ModelTensor {
                    data: d,
                    params: m.params,
                })
                .collect(),
            ..job.clone()
        };
        return merge_rounded(method, &rounded);
    }
    merge_rounded(method, job)
}

/// [`merge_tensor`] on inputs already in the compute dtype.
fn merge_rounded(method: &MethodSpec, job: &TensorJob) -> Result<Vec<f32>, Error> {
    // Only the base has this tensor (optional weights): mergekit returns the base.
    if let (true, Some(base)) = (job.models.is_empty(), job.base) {
        return Ok(base.to_vec());
    }
    method.check_inputs(job.models.len(), job.base.is_some())?;
    let mut out = match method.kernel {
        Kernel::Linear => linear::merge(job),
        Kernel::Slerp => slerp::merge(job),
        Kernel::Nuslerp => nuslerp::merge(job),
        Kernel::TaskArithmetic(v) => task_arithmetic::merge(&v, job),
        Kernel::ModelStock => model_stock::merge(job),
        Kernel::Passthrough => passthrough::merge(job),
    }?;
    let dtype = job.compute_dtype;
    if dtype != DType::F32 {
        use rayon::prelude::*;
        out.par_iter_mut().for_each(|v| *v = dtype.round(*v));
    }
    Ok(out)
}

/// Run a method by name on small vectors: f32 compute dtype, `mergekit` profile, seed 0.
/// For examples, doctests and quick experiments; the runner builds [`TensorJob`]s itself.
pub fn merge_vectors(
    method: &str,
    base: Option<&[f32]>,
    models: &[(&[f32], &Params)],
    params: &Params,
) -> Result<Vec<f32>, Error> {
    merge_vectors_with(
        method,
        base,
        models,
        params,
        DType::F32,
        Compat::Mergekit,
        0,
    )
}

/// [`merge_vectors`] with an explicit compute dtype, compat profile and seed.
pub fn merge_vectors_with(
    method: &str,
    base: Option<&[f32]>,
    models: &[(&[f32], &Params)],
    params: &Params,
    compute_dtype: DType,
    compat: Compat,
    seed: u64,
) -> Result<Vec<f32>, Error> {
    let spec = lookup(method).ok_or_else(|| Error::Invalid {
        method: "merge_vectors",
        message: format!("unknown method `{method}`"),
    })?;
    let n = base.map_or_else(|| models.first().map_or(0, |m| m.0.len()), |b| b.len());
    let shape = [n];
    let job = TensorJob {
        name: "vector",
        shape: &shape,
        base,
        models: models
            .iter()
            .map(|(data, params)| ModelTensor { data, params })
            .collect(),
        params,
        compute_dtype,
        rng: RngKey::new(seed, "", "vector"),
        compat,
    };
    merge_tensor(spec, &job)
}

/// `a − b` element-wise, rounded to the compute dtype as mergekit's subtraction in that dtype.
pub(crate) fn delta(a: &[f32], b: &[f32], dtype: DType) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(super::ops::CHUNK)
        .zip(
            a.par_chunks(super::ops::CHUNK)
                .zip(b.par_chunks(super::ops::CHUNK)),
        )
        .for_each(|(o, (x, y))| {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = dtype.round(x - y);
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_match_mergekit() {
        let names: Vec<_> = METHODS.iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "linear",
                "slerp",
                "nuslerp",
                "task_arithmetic",
                "ties",
                "dare_ties",
                "dare_linear",
                "breadcrumbs",
                "breadcrumbs_ties",
                "della",
                "della_linear",
                "model_stock",
                "passthrough"
            ]
        );
        assert!(lookup("dare").is_none());
    }

    fn defaults(method: &str, compat: Compat) -> Vec<(&'static str, bool, Option<f64>, bool)> {
        lookup(method)
            .unwrap()
            .params(compat)
            .iter()
            .map(|p| (p.name, p.per_model, p.default, p.required))
            .collect()
    }

    #[test]
    fn parameter_table_matches_mergekit_spec() {
        let m = Compat::Mergekit;
        assert_eq!(
            defaults("linear", m),
            [
                ("normalize", false, Some(1.0), false),
                ("weight", true, None, true)
            ]
        );
        assert_eq!(defaults("slerp", m), [("t", false, None, true)]);
        assert_eq!(
            defaults("model_stock", m),
            [("filter_wise", false, Some(0.0), false)]
        );
        assert_eq!(defaults("passthrough", m), [("scale", true, None, false)]);
        let gta = |normalize: f64, rescale: f64| {
            vec![
                ("int8_mask", false, Some(0.0), false),
                ("normalize", false, Some(normalize), false),
                ("rescale", false, Some(rescale), false),
                ("lambda", false, Some(1.0), false),
                ("weight", true, None, true),
                ("density", true, Some(1.0), false),
            ]
        };
        assert_eq!(defaults("task_arithmetic", m), gta(0.0, 0.0));
        assert_eq!(defaults("ties", m), gta(1.0, 0.0));
        assert_eq!(defaults("dare_ties", m), gta(0.0, 1.0));
        assert_eq!(defaults("dare_linear", m), gta(0.0, 1.0));
        let mut b = gta(0.0, 0.0);
        b.push(("gamma", true, Some(0.01), false));
        assert_eq!(defaults("breadcrumbs", m), b);
        assert_eq!(defaults("breadcrumbs_ties", m), b);
        let mut d = gta(1.0, 1.0);
        d.push(("epsilon", true, Some(0.15), false));
        assert_eq!(defaults("della", m), d);
        let mut dl = gta(0.0, 1.0);
        dl.push(("epsilon", true, Some(0.15), false));
        assert_eq!(defaults("della_linear", m), dl);
    }

    #[test]
    fn mergekit_2024_makes_della_lambda_and_epsilon_per_model() {
        let p = defaults("della", Compat::Mergekit2024);
        assert!(p.contains(&("lambda", true, Some(1.0), false)));
        assert!(p.contains(&("epsilon", true, Some(0.15), false)));
        // ≤ 0.0.6 had no `lambda` for the other task-arithmetic methods.
        assert!(!defaults("ties", Compat::Mergekit2024)
            .iter()
            .any(|p| p.0 == "lambda"));
    }

    #[test]
    fn validate_params_reports_missing_and_out_of_range_values() {
        let della = lookup("della").unwrap();
        let ok: Params = [("weight".to_string(), 1.0), ("density".to_string(), 0.5)].into();
        let bad: Params = [("weight".to_string(), 1.0), ("density".to_string(), 0.9)].into();
        let none = Params::new();
        assert!(della
            .validate_params(Compat::Mergekit, &none, &[&ok])
            .is_ok());
        // default epsilon 0.15: 0.9 + 0.15 ≥ 1
        let e = della
            .validate_params(Compat::Mergekit, &none, &[&ok, &bad])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("della: model #2: density ± epsilon"), "{e}");
        let e = della
            .validate_params(Compat::Mergekit, &none, &[&none])
            .unwrap_err()
            .to_string();
        assert!(e.contains("model #1") && e.contains("`weight`"), "{e}");
        let slerp = lookup("slerp").unwrap();
        let e = slerp
            .validate_params(Compat::Mergekit, &none, &[&none])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "slerp: missing required parameter `t`");
    }

    #[test]
    fn input_counts_are_checked() {
        let slerp = lookup("slerp").unwrap();
        assert!(slerp.check_inputs(1, true).is_ok());
        let e = slerp.check_inputs(2, true).unwrap_err().to_string();
        assert!(
            e.contains("needs the base_model plus exactly 1 other model(s), got 2"),
            "{e}"
        );
        assert!(slerp
            .check_inputs(1, false)
            .unwrap_err()
            .to_string()
            .contains("base_model"));
        let ms = lookup("model_stock").unwrap();
        assert!(ms
            .check_inputs(1, true)
            .unwrap_err()
            .to_string()
            .contains("at least 2"));
        let pt = lookup("passthrough").unwrap();
        assert!(pt.check_inputs(1, false).is_ok());
        assert!(pt.check_inputs(2, false).is_err());
        assert!(pt.check_inputs(1, true).is_err());
        let nu = lookup("nuslerp").unwrap();
        assert!(nu.check_inputs(2, false).is_ok() && nu.check_inputs(2, true).is_ok());
        assert!(nu.check_inputs(3, false).is_err());
    }
}
