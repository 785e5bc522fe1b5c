//! Streamed kernels: one tensor merged in blocks of elements, never held whole.
//!
//! A method runs in two steps. [`prepare`] reads the inputs block by block and reduces them
//! to what the whole tensor decides: slerp's norms and angle, each task vector's keep mask
//! (one bit per element) and L1 rescale factor, linear's weight sum. [`apply`] then computes
//! any block of the output from the same blocks of the inputs and those prepared values, so
//! blocks can be merged in parallel and written as they finish.
//!
//! The result is bit-identical to the whole-tensor kernels in [`super::methods`] (tested in
//! `tests/merge_stream.rs` for every supported method, dtype and block size): blocks start at
//! multiples of [`ops::CHUNK`] elements (and of the row length for DELLA's per-row ranks),
//! so every f64 reduction sums exactly the same fixed chunks in the same order, and every
//! rounding point of the whole-tensor code is repeated here element by element.
//!
//! Memory per tensor: the blocks in flight plus one bit per element and model; a TIES or
//! breadcrumbs selection also needs 4 bytes per element for one model at a time (the
//! magnitudes whose k-th largest is the threshold), and a bf16 TIES/breadcrumbs/DELLA
//! prepare may hold the sparsified task vectors, 2 bytes per element and model
//! ([`Holding`]), so that the apply reads only the base again. model_stock prepares its
//! ratio from per-chunk sums (or per-row ratios with `filter_wise`), as slerp prepares its
//! angle.
//! nuslerp, DELLA under the `mergekit-2024` profile, and embeddings that are cut or
//! re-laid out run whole instead ([`supported`]).
#![allow(clippy::result_large_err)]
use std::ops::Range;

use rayon::prelude::*;

mod task_arithmetic;

use super::methods::{slerp, Kernel, MethodSpec, Params};
use super::ops::CHUNK;
use super::rng::RngKey;
use super::run::{Error, Result};
use crate::model::dtype::{wide_kernel, Rounding};
use crate::model::DType;
use crate::registry::{Compat, Sparsifier};
use task_arithmetic::{apply_gta, prepare_gta, Gta};

/// Reads elements `range` of one input, as f32 values already rounded to the compute dtype.
pub type Reader<'a> = dyn Fn(Range<usize>) -> Result<Vec<f32>> + Sync + 'a;

/// One tensor to merge in blocks: the whole-tensor [`super::TensorJob`] with readers in
/// place of data.
pub struct BlockJob<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub base: Option<&'a Reader<'a>>,
    /// Non-base inputs (config order) and their per-model parameters.
    pub models: Vec<(&'a Reader<'a>, &'a Params)>,
    pub params: &'a Params,
    pub compute_dtype: DType,
    pub rng: RngKey,
    pub compat: Compat,
}

impl BlockJob<'_> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn row_len(&self) -> usize {
        match self.shape {
            [] => 1,
            [n] => *n,
            [.., last] => *last,
        }
    }

    fn kernel_error(&self, method: &'static str, message: String) -> Error {
        Error::Kernel {
            tensor: self.name.to_string(),
            source: super::methods::Error::Invalid { method, message },
        }
    }

    fn global(&self, method: &'static str, key: &str, default: Option<f64>) -> Result<f64> {
        self.params.get(key).copied().or(default).ok_or_else(|| {
            self.kernel_error(
                method,
                format!("tensor {}: missing parameter `{key}`", self.name),
            )
        })
    }

    fn per_model(
        &self,
        method: &'static str,
        i: usize,
        key: &str,
        default: Option<f64>,
    ) -> Result<f64> {
        self.models[i].1.get(key).copied().or(default).ok_or_else(|| {
            self.kernel_error(
                method,
                format!(
                    "tensor {}: model #{} (config order) has no `{key}`; set it under that model's `parameters:` or globally",
                    self.name,
                    i + 1
                ),
            )
        })
    }
}

/// Whether `method` has a streamed form under `compat` (otherwise the runner merges the
/// tensor whole).
pub fn supported(method: &MethodSpec, compat: Compat) -> bool {
    match method.kernel {
        Kernel::Linear | Kernel::Slerp | Kernel::Passthrough => true,
        // 2024 DELLA divides each kept value by its own keep probability: per element
        // state that a bit mask does not carry.
        Kernel::TaskArithmetic(v) => {
            !(compat == Compat::Mergekit2024 && v.sparsifier == Some(Sparsifier::DellaMagprune))
        }
        Kernel::ModelStock => true,
        Kernel::Nuslerp => false,
    }
}

/// The block granule of a tensor merged with `params`: blocks start at multiples of it.
pub fn granule(method: &MethodSpec, shape: &[usize], params: &Params) -> usize {
    let row_len = match shape {
        [] => 1,
        [n] => *n,
        [.., last] => *last,
    }
    .max(1);
    // whole rows per block: DELLA's per-row ranks, model_stock's per-row ratios (with
    // `filter_wise`; otherwise its ratio sums whole chunks)
    let filter_wise = params.get("filter_wise").is_some_and(|&v| v != 0.0);
    let rows = matches!(method.kernel, Kernel::TaskArithmetic(v) if v.sparsifier == Some(Sparsifier::DellaMagprune))
        || (matches!(method.kernel, Kernel::ModelStock) && filter_wise);
    if rows {
        super::ops::lcm(CHUNK, row_len)
    } else {
        CHUNK
    }
}

/// The blocks of `0..n` for a block size (rounded down to a multiple of `granule`, at
/// least one granule).
pub fn blocks(n: usize, block: usize, granule: usize) -> Vec<Range<usize>> {
    let block = (block / granule).max(1) * granule;
    (0..n.div_ceil(block))
        .map(|b| b * block..((b + 1) * block).min(n))
        .collect()
}

/// What the whole tensor decided, ready for [`apply`].
pub enum Prepared {
    /// Only the base has this tensor: it is the output.
    BaseOnly,
    Linear {
        weights: Vec<f32>,
        normalize: bool,
        total: f32,
    },
    Slerp {
        c0: f32,
        c1: f32,
    },
    Passthrough {
        scale: Option<f32>,
    },
    TaskArithmetic(Box<Gta>),
    /// model_stock: the interpolation ratio of each row of `row` elements.
    ModelStock {
        ratios: Vec<f32>,
        row: usize,
    },
}

/// What [`prepare`] may hold in memory beyond one bit per element and model (the runner
/// decides from its budget; the output is the same either way).
#[derive(Debug, Clone, Copy, Default)]
pub struct Holding {
    /// Prepare the task vectors of several models at once (each TIES/breadcrumbs
    /// selection holds 4 bytes per element).
    pub parallel_models: bool,
    /// Keep the sparsified task vectors of a magnitude or DELLA selection (2 bytes per
    /// element and model, when the compute dtype is bf16), so that [`apply`] reads only the
    /// base again, not every model.
    pub task_vectors: bool,
}

/// Read the whole-tensor decisions of `method` for `job`, block by block
/// (`blocks` from [`blocks`]).
pub fn prepare(
    method: &MethodSpec,
    job: &BlockJob,
    blocks: &[Range<usize>],
    holding: Holding,
) -> Result<Prepared> {
    if job.models.is_empty() && job.base.is_some() {
        return Ok(Prepared::BaseOnly);
    }
    method
        .check_inputs(job.models.len(), job.base.is_some())
        .map_err(|source| Error::Kernel {
            tensor: job.name.to_string(),
            source,
        })?;
    let name = method.name;
    match method.kernel {
        Kernel::Linear => {
            let normalize = job.global(name, "normalize", Some(1.0))? != 0.0;
            let weights = (0..job.models.len())
                .map(|i| job.per_model(name, i, "weight", None).map(|w| w as f32))
                .collect::<Result<Vec<f32>>>()?;
            let total: f32 = weights.iter().sum();
            if normalize && total == 0.0 {
                return Err(job.kernel_error(name, format!(
                    "tensor {}: weights {weights:?} sum to 0 and normalize is on; change a weight or set `normalize: false`",
                    job.name
                )));
            }
            Ok(Prepared::Linear {
                weights,
                normalize,
                total,
            })
        }
        Kernel::Passthrough => Ok(Prepared::Passthrough {
            scale: job.models[0].1.get("scale").map(|&s| s as f32),
        }),
        Kernel::Slerp => {
            let t = job.global(name, "t", None)?;
            let base = base_reader(job, name)?;
            let other = job.models[0].0;
            // Σ v₀², Σ v₁², Σ v₀v₁ per fixed chunk, as ops::l2_norm / ops::dot_f64 sum them:
            // the chunk sums of two vectors, with f32's unrounded products.
            let parts = blocks
                .par_iter()
                .map(|r| -> Result<Vec<[f64; 3]>> {
                    let (a, b) = (base(r.clone())?, other(r.clone())?);
                    Ok(super::ops::chunk_sums_each(&[&a, &b], DType::F32)
                        .into_iter()
                        .map(|s| [s[0], s[1], s[2]])
                        .collect())
                })
                .collect::<Result<Vec<_>>>()?;
            let parts: Vec<[f64; 3]> = parts.into_iter().flatten().collect();
            let total = |k: usize| parts.iter().map(|p| p[k]).sum::<f64>();
            let (c0, c1) = slerp::coefficients_from(t, total(0).sqrt(), total(1).sqrt(), total(2));
            Ok(Prepared::Slerp {
                c0: c0 as f32,
                c1: c1 as f32,
            })
        }
        Kernel::TaskArithmetic(v) => Ok(Prepared::TaskArithmetic(Box::new(prepare_gta(
            &v, job, blocks, holding,
        )?))),
        Kernel::ModelStock => prepare_model_stock(job, blocks),
        Kernel::Nuslerp => Err(Error::Invalid {
            tensor: job.name.to_string(),
            message: format!("{} has no streamed form (internal error)", method.name),
        }),
    }
}

/// model_stock's ratios: per block, the task vectors' chunk sums (or, with `filter_wise`,
/// each whole row's ratio: blocks hold whole rows), then the tensor's ratio from the chunk
/// sums in order, as `methods::model_stock` computes them.
fn prepare_model_stock(job: &BlockJob, blocks: &[Range<usize>]) -> Result<Prepared> {
    use super::methods::model_stock::{ratio, ratio_from, SPEC};
    use super::ops::chunk_sums_each;
    let filter_wise = job.global(SPEC.name, "filter_wise", Some(0.0))? != 0.0;
    let base = base_reader(job, SPEC.name)?;
    let (n, dtype, k) = (job.numel(), job.compute_dtype, job.models.len());
    let row = if filter_wise {
        job.row_len().max(1)
    } else {
        n.max(1)
    };
    let parts = blocks
        .par_iter()
        .map(|r| -> Result<Vec<Vec<f64>>> {
            let b = base(r.clone())?;
            let ds = job
                .models
                .iter()
                .map(|(reader, _)| {
                    let mut x = reader(r.clone())?;
                    task_arithmetic::task_vector(&mut x, &b, dtype);
                    Ok(x)
                })
                .collect::<Result<Vec<_>>>()?;
            let ds: Vec<&[f32]> = ds.iter().map(|d| &d[..]).collect();
            if !filter_wise {
                return Ok(chunk_sums_each(&ds, dtype));
            }
            Ok((0..r.len().div_ceil(row))
                .map(|c| {
                    let s = c * row..((c + 1) * row).min(r.len());
                    let ds: Vec<&[f32]> = ds.iter().map(|d| &d[s.clone()]).collect();
                    vec![ratio(&ds, dtype)]
                })
                .collect())
        })
        .collect::<Result<Vec<_>>>()?;
    let parts: Vec<Vec<f64>> = parts.into_iter().flatten().collect();
    let ratios = match filter_wise {
        true => parts.iter().map(|p| p[0] as f32).collect(),
        false => vec![ratio_from(&parts, k, dtype) as f32],
    };
    Ok(Prepared::ModelStock { ratios, row })
}

fn base_reader<'a>(job: &BlockJob<'a>, method: &'static str) -> Result<&'a Reader<'a>> {
    job.base.ok_or_else(|| {
        job.kernel_error(
            method,
            format!("tensor {}: needs a base_model tensor", job.name),
        )
    })
}

/// Output elements `range`: compute-dtype values in f32, as the whole-tensor kernel
/// followed by its final rounding would give them.
pub fn apply(prepared: &Prepared, job: &BlockJob, range: Range<usize>) -> Result<Vec<f32>> {
    let dtype = job.compute_dtype;
    let mut out = match prepared {
        Prepared::BaseOnly => {
            let base = job.base.ok_or_else(|| Error::Invalid {
                tensor: job.name.to_string(),
                message: "no input (internal error)".into(),
            })?;
            return base(range);
        }
        Prepared::Linear {
            weights,
            normalize,
            total,
        } => {
            let mut out = vec![0f32; range.len()];
            for ((reader, _), &w) in job.models.iter().zip(weights) {
                for (o, x) in out.iter_mut().zip(reader(range.clone())?) {
                    *o += x * w;
                }
            }
            if *normalize {
                out.iter_mut().for_each(|v| *v /= total);
            }
            out
        }
        Prepared::Slerp { c0, c1 } => {
            let base = base_reader(job, "slerp")?;
            let (mut a, b) = (base(range.clone())?, job.models[0].0(range)?);
            slerp_mix(&mut a, &b, *c0, *c1);
            a
        }
        Prepared::Passthrough { scale } => {
            let x = job.models[0].0(range)?;
            match scale {
                Some(s) => x.iter().map(|v| v * s).collect(),
                None => x,
            }
        }
        Prepared::TaskArithmetic(g) => apply_gta(g, job, range)?,
        Prepared::ModelStock { ratios, row } => {
            let base = base_reader(job, "model_stock")?(range.clone())?;
            let xs = job
                .models
                .iter()
                .map(|(reader, _)| reader(range.clone()))
                .collect::<Result<Vec<_>>>()?;
            let xs: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
            let mut out = vec![0f32; range.len()];
            super::methods::model_stock::blend(
                &xs,
                &base,
                ratios,
                *row,
                range.start,
                dtype,
                &mut out,
            );
            out
        }
    };
    if dtype != DType::F32 {
        round_all(&mut out, dtype);
    }
    Ok(out)
}

wide_kernel! {
    /// slerp's blend of one block, `a ← c0·a + c1·b` (f32 products and sum, as written).
    fn slerp_mix(a: &mut [f32], b: &[f32], c0: f32, c1: f32) {
        a.iter_mut().zip(b).for_each(|(a, &b)| *a = c0 * *a + c1 * b);
    }
}

wide_kernel! {
    /// `x ← r(x)`: an output block's final rounding to the compute dtype.
    fn round_all(x: &mut [f32], dtype: DType) {
        crate::model::dtype::with_rounding!(dtype, R => x.iter_mut().for_each(|v| *v = R::round(*v)))
    }
}
