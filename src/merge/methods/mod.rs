//! One file per merge method, each a pure function of (tensors, parameters).
//!
//! Which methods exist, their inputs and parameters are data in [`crate::registry`] (the
//! only registry, re-exported here); this module runs the kernel a registry row names.
//!
//! Input contract of [`merge_tensor`]: every slice in the [`TensorJob`] has `shape`'s element
//! count (embeddings already cut to a common shape). Values not representable in the compute
//! dtype are rounded to it first (mergekit casts inputs to `dtype:` at load time), and the
//! output holds compute-dtype values in f32; the caller casts once to the output dtype.
use super::rng::RngKey;
use crate::model::DType;
pub use crate::registry::{
    lookup, BaseUse, Compat, Error, Kernel, MethodSpec, ParamSpec, Params, METHODS,
};

pub mod linear;
pub mod model_stock;
pub mod nuslerp;
pub mod passthrough;
pub mod slerp;
pub mod task_arithmetic;

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
            fn run<R: crate::model::dtype::Rounding>(o: &mut [f32], x: &[f32], y: &[f32]) {
                for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                    *o = R::round(x - y);
                }
            }
            crate::model::dtype::with_rounding!(dtype, R => run::<R>(o, x, y))
        });
    out
}
