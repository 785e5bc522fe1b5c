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
//! magnitudes whose k-th largest is the threshold). nuslerp and model_stock, DELLA under the
//! `mergekit-2024` profile, and embeddings that are cut or re-laid out run whole instead
//! ([`supported`]).
#![allow(clippy::result_large_err)]
use std::ops::Range;

use rayon::prelude::*;

use super::methods::{slerp, task_arithmetic::Variant, BaseUse, Kernel, MethodSpec, Params};
use super::ops::{self, floor_count, round64, Rescale, Sparsifier, CHUNK};
use super::rng::{RngKey, Stream};
use super::run::{Error, Result};
use super::Compat;
use crate::model::DType;
use tmp::Bits;

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
        Kernel::Nuslerp | Kernel::ModelStock => false,
    }
}

/// The block granule of a tensor: blocks start at multiples of it.
pub fn granule(method: &MethodSpec, shape: &[usize]) -> usize {
    let row_len = match shape {
        [] => 1,
        [n] => *n,
        [.., last] => *last,
    }
    .max(1);
    let della = matches!(method.kernel, Kernel::TaskArithmetic(v) if v.sparsifier == Some(Sparsifier::DellaMagprune));
    if della {
        lcm(CHUNK, row_len)
    } else {
        CHUNK
    }
}

fn lcm(a: usize, b: usize) -> usize {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
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
}

/// Prepared generalized task arithmetic (see `methods/task_arithmetic.rs` for the formula).
pub struct Gta {
    consensus: bool,
    normalize: bool,
    lambda: f64,
    weights: Vec<f32>,
    masks: Vec<ModelMask>,
    linear_divisor: f32,
}

/// Which elements of a task vector survive sparsification, and what happens to them.
struct ModelMask {
    keep: Keep,
    post: Post,
}

enum Keep {
    All,
    Nothing,
    Bits(Bits),
    Random { stream: Stream, p: f64 },
}

impl Keep {
    #[inline]
    fn get(&self, i: usize) -> bool {
        match self {
            Keep::All => true,
            Keep::Nothing => false,
            Keep::Bits(b) => b.get(i),
            Keep::Random { stream, p } => stream.bernoulli(i as u64, *p),
        }
    }
}

enum Post {
    None,
    /// L1 rescale: kept values times this factor (rounded to the compute dtype).
    Factor(f32),
    /// mergekit ≤ 0.0.6 DARE: kept values divided by the keep probability.
    Inverse(f64),
}

/// Read the whole-tensor decisions of `method` for `job`, block by block
/// (`blocks` from [`blocks`]). `parallel_models`: prepare the task vectors of several
/// models at once (each TIES/breadcrumbs selection holds 4 bytes per element).
pub fn prepare(
    method: &MethodSpec,
    job: &BlockJob,
    blocks: &[Range<usize>],
    parallel_models: bool,
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
            // Σ v₀², Σ v₁², Σ v₀v₁ per fixed chunk, as ops::l2_norm / ops::dot_f64 sum them.
            let parts = blocks
                .par_iter()
                .map(|r| -> Result<Vec<[f64; 3]>> {
                    let (a, b) = (base(r.clone())?, other(r.clone())?);
                    Ok(a.chunks(CHUNK)
                        .zip(b.chunks(CHUNK))
                        .map(|(x, y)| {
                            [
                                x.iter().map(|&p| p as f64 * p as f64).sum::<f64>(),
                                y.iter().map(|&q| q as f64 * q as f64).sum::<f64>(),
                                x.iter()
                                    .zip(y)
                                    .map(|(&p, &q)| p as f64 * q as f64)
                                    .sum::<f64>(),
                            ]
                        })
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
            &v,
            job,
            blocks,
            parallel_models,
        )?))),
        Kernel::Nuslerp | Kernel::ModelStock => Err(Error::Invalid {
            tensor: job.name.to_string(),
            message: format!("{} has no streamed form (internal error)", method.name),
        }),
    }
}

fn base_reader<'a>(job: &BlockJob<'a>, method: &'static str) -> Result<&'a Reader<'a>> {
    job.base.ok_or_else(|| {
        job.kernel_error(
            method,
            format!("tensor {}: needs a base_model tensor", job.name),
        )
    })
}

fn bool_value(b: bool) -> Option<f64> {
    Some(if b { 1.0 } else { 0.0 })
}

/// `r(x − b)` for one block: model `i`'s task vector.
fn task_vector(x: &[f32], b: &[f32], dtype: DType) -> Vec<f32> {
    x.iter().zip(b).map(|(&x, &y)| dtype.round(x - y)).collect()
}

fn prepare_gta(
    v: &Variant,
    job: &BlockJob,
    blocks: &[Range<usize>],
    parallel: bool,
) -> Result<Gta> {
    use Sparsifier::{DellaMagprune, Magnitude, MagnitudeOutliers, Random};
    let name = v.name;
    let base = base_reader(job, name)?;
    let dtype = job.compute_dtype;
    let n = job.numel();
    let normalize = job.global(name, "normalize", bool_value(v.default_normalize))? != 0.0;
    let rescale_on = job.global(name, "rescale", bool_value(v.default_rescale))? != 0.0;
    let lambda = match job.compat {
        Compat::Mergekit => job.global(name, "lambda", Some(1.0))?,
        Compat::Mergekit2024 if v.sparsifier == Some(DellaMagprune) => job.per_model(
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
            super::methods::task_arithmetic::check_della(density, epsilon).map_err(|m| {
                job.kernel_error(name, format!("tensor {}: model #{}: {m}", job.name, i + 1))
            })?;
        }
        let weight = dtype.round(job.per_model(name, i, "weight", None)? as f32);
        settings.push((weight, density, gamma, epsilon));
    }
    let weights: Vec<f32> = settings.iter().map(|s| s.0).collect();

    let mask_of = |i: usize| -> Result<ModelMask> {
        let (_, density, gamma, epsilon) = settings[i];
        let reader = job.models[i].0;
        let stream = job.rng.stream(i);
        let all = ModelMask {
            keep: Keep::All,
            post: Post::None,
        };
        let Some(mut sparsifier) = v.sparsifier else {
            return Ok(all);
        };
        if density >= 1.0 || n == 0 {
            return Ok(all);
        }
        if density <= 0.0 {
            return Ok(ModelMask {
                keep: Keep::Nothing,
                post: Post::None,
            });
        }
        // DELLA with ε = 0 is DARE (the same draws).
        if sparsifier == DellaMagprune && epsilon == 0.0 {
            sparsifier = Random;
        }
        let delta = |r: &Range<usize>| -> Result<Vec<f32>> {
            Ok(task_vector(&reader(r.clone())?, &base(r.clone())?, dtype))
        };
        // (keep, Σ|δ| per chunk, Σ|kept δ| per chunk); the sums only when rescaling by L1.
        let l1 = rescale == Rescale::L1;
        let (keep, before, after) = match sparsifier {
            Magnitude | MagnitudeOutliers => {
                let mut mags = vec![0u32; n];
                mags.par_chunks_mut(block_len(blocks))
                    .zip(blocks.par_iter())
                    .try_for_each(|(m, r)| -> Result<()> {
                        for (m, d) in m.iter_mut().zip(delta(r)?) {
                            *m = d.abs().to_bits();
                        }
                        Ok(())
                    })?;
                let before = if l1 {
                    chunk_sums(&mags, |_| true)
                } else {
                    Vec::new()
                };
                let (keep, before, after) = if sparsifier == Magnitude {
                    let k = floor_count(density, n).max(1);
                    if l1 {
                        // the mask consumes the magnitudes; L1 after needs them
                        let bits = tmp::top_k_bits(mags.clone(), k);
                        let after = chunk_sums(&mags, |j| bits.get(j));
                        (bits, before, after)
                    } else {
                        (tmp::top_k_bits(mags, k), before, Vec::new())
                    }
                } else {
                    let target = floor_count(density, n);
                    let n_top = floor_count(gamma, n);
                    let n_bot = n.saturating_sub(target + n_top);
                    if l1 {
                        let bits = tmp::ascending_window_bits(mags.clone(), n_bot, n_bot + target);
                        let after = chunk_sums(&mags, |j| bits.get(j));
                        (bits, before, after)
                    } else {
                        (
                            tmp::ascending_window_bits(mags, n_bot, n_bot + target),
                            before,
                            Vec::new(),
                        )
                    }
                };
                (Keep::Bits(keep), before, after)
            }
            Random => {
                let keep = Keep::Random { stream, p: density };
                if !l1 {
                    (keep, Vec::new(), Vec::new())
                } else {
                    let sums = blocks
                        .par_iter()
                        .map(|r| -> Result<(Vec<f64>, Vec<f64>)> {
                            let d = delta(r)?;
                            Ok(masked_sums(&d, r.start, |j| keep.get(j)))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let (before, after) = unzip_concat(sums);
                    (keep, before, after)
                }
            }
            DellaMagprune => {
                // Per row: ranks → keep probabilities → one draw per element (blocks
                // hold whole rows).
                let row_len = job.row_len();
                let parts = blocks
                    .par_iter()
                    .map(|r| -> Result<(Vec<u64>, Vec<f64>, Vec<f64>)> {
                        let d = delta(r)?;
                        let probs = ops::della_keep_probabilities(&d, density, epsilon, row_len);
                        let words: Vec<u64> = (0..d.len().div_ceil(64))
                            .map(|w| {
                                (0..64.min(d.len() - w * 64)).fold(0u64, |acc, b| {
                                    let j = w * 64 + b;
                                    let kept =
                                        stream.bernoulli((r.start + j) as u64, probs[j] as f64);
                                    acc | (u64::from(kept) << b)
                                })
                            })
                            .collect();
                        let (before, after) = if l1 {
                            masked_sums(&d, 0, |j| words[j / 64] >> (j % 64) & 1 == 1)
                        } else {
                            (Vec::new(), Vec::new())
                        };
                        Ok((words, before, after))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut bits = Bits::new(n);
                let (mut before, mut after) = (Vec::new(), Vec::new());
                for (r, (words, b, a)) in blocks.iter().zip(parts) {
                    for (w, word) in words.iter().enumerate() {
                        let mut word = *word;
                        while word != 0 {
                            let b = word.trailing_zeros() as usize;
                            bits.set(r.start + w * 64 + b);
                            word &= word - 1;
                        }
                    }
                    before.extend(b);
                    after.extend(a);
                }
                (Keep::Bits(bits), before, after)
            }
        };
        let post = match rescale {
            Rescale::None => Post::None,
            Rescale::InverseProbability => Post::Inverse(density),
            Rescale::L1 => {
                let (b, a): (f64, f64) = (before.iter().sum(), after.iter().sum());
                let (b, a) = (round64(dtype, b), round64(dtype, a));
                if b >= 1e-7 && a >= 1e-7 {
                    Post::Factor(round64(dtype, b / a) as f32)
                } else {
                    Post::None
                }
            }
        };
        Ok(ModelMask { keep, post })
    };
    let masks = if parallel {
        (0..job.models.len())
            .into_par_iter()
            .map(mask_of)
            .collect::<Result<Vec<_>>>()?
    } else {
        (0..job.models.len())
            .map(mask_of)
            .collect::<Result<Vec<_>>>()?
    };
    let r = |x: f32| dtype.round(x);
    let weight_sum = r(weights.iter().sum());
    Ok(Gta {
        consensus: v.consensus,
        normalize,
        lambda,
        weights,
        masks,
        linear_divisor: if weight_sum.abs() < 1e-8 {
            1.0
        } else {
            weight_sum
        },
    })
}

/// Length of the first block (all blocks but the last have it).
fn block_len(blocks: &[Range<usize>]) -> usize {
    blocks.first().map_or(1, |r| r.len().max(1))
}

/// Σ|m| per fixed chunk of `mags` (f32 bits of magnitudes) over the elements `keep`
/// accepts, as `ops::l1_norm` sums a tensor whose other elements were set to 0.
fn chunk_sums(mags: &[u32], keep: impl Fn(usize) -> bool + Sync) -> Vec<f64> {
    mags.par_chunks(CHUNK)
        .enumerate()
        .map(|(c, m)| {
            m.iter()
                .enumerate()
                .map(|(j, &b)| {
                    if keep(c * CHUNK + j) {
                        f32::from_bits(b) as f64
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        })
        .collect()
}

/// (Σ|δ|, Σ|kept δ|) per fixed chunk of one block starting at element `start`.
fn masked_sums(d: &[f32], start: usize, keep: impl Fn(usize) -> bool) -> (Vec<f64>, Vec<f64>) {
    let before = d
        .chunks(CHUNK)
        .map(|c| c.iter().map(|&x| x.abs() as f64).sum::<f64>())
        .collect();
    let after = d
        .chunks(CHUNK)
        .enumerate()
        .map(|(c, x)| {
            x.iter()
                .enumerate()
                .map(|(j, &x)| {
                    if keep(start + c * CHUNK + j) {
                        x.abs() as f64
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        })
        .collect();
    (before, after)
}

fn unzip_concat(parts: Vec<(Vec<f64>, Vec<f64>)>) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (x, y) in parts {
        a.extend(x);
        b.extend(y);
    }
    (a, b)
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
            let (a, b) = (base(range.clone())?, job.models[0].0(range)?);
            a.iter().zip(&b).map(|(&a, &b)| c0 * a + c1 * b).collect()
        }
        Prepared::Passthrough { scale } => {
            let x = job.models[0].0(range)?;
            match scale {
                Some(s) => x.iter().map(|v| v * s).collect(),
                None => x,
            }
        }
        Prepared::TaskArithmetic(g) => apply_gta(g, job, range)?,
    };
    if dtype != DType::F32 {
        out.iter_mut().for_each(|v| *v = dtype.round(*v));
    }
    Ok(out)
}

fn apply_gta(g: &Gta, job: &BlockJob, range: Range<usize>) -> Result<Vec<f32>> {
    let dtype = job.compute_dtype;
    let r = |x: f32| dtype.round(x);
    let base = base_reader(job, "task arithmetic")?(range.clone())?;
    // W_i = r(w_i · sparsified δ_i), one array per model. A dropped element is +0, and
    // +0 stays +0 through the rescale (factor > 0) as in the whole-tensor kernel.
    let mut weighted = Vec::with_capacity(job.models.len());
    for (((reader, _), mask), &w) in job.models.iter().zip(&g.masks).zip(&g.weights) {
        let mut d = reader(range.clone())?;
        for (x, &b) in d.iter_mut().zip(&base) {
            *x = r(*x - b);
        }
        match &mask.keep {
            Keep::All => {}
            Keep::Nothing => d.fill(0.0),
            keep => {
                for (j, v) in d.iter_mut().enumerate() {
                    if !keep.get(range.start + j) {
                        *v = 0.0;
                    }
                }
            }
        }
        match mask.post {
            Post::None => {}
            Post::Factor(f) => d.iter_mut().for_each(|v| *v = r(*v * f)),
            Post::Inverse(p) => d.iter_mut().for_each(|v| *v = r((*v as f64 / p) as f32)),
        }
        d.iter_mut().for_each(|v| *v = r(w * *v));
        weighted.push(d);
    }
    let weights = &g.weights;
    let lambda32 = g.lambda as f32;
    let k = weighted.len();
    let mut wd = vec![0f32; k];
    let mut out = base;
    for (idx, o) in out.iter_mut().enumerate() {
        for (x, w_d) in wd.iter_mut().zip(&weighted) {
            *x = w_d[idx];
        }
        let (mut mixed, divisor) = if g.consensus {
            let total: f32 = r(wd.iter().copied().sum());
            let positive = total >= 0.0;
            let (mut mixed, mut divisor) = (0f32, 0f32);
            for (&x, &w) in wd.iter().zip(weights) {
                if ops::agrees_with_majority(x, positive) {
                    mixed += x;
                    divisor += w;
                }
            }
            let divisor = r(divisor);
            (r(mixed), if divisor == 0.0 { 1.0 } else { divisor })
        } else {
            let mixed: f32 = wd.iter().copied().sum();
            (r(mixed), g.linear_divisor)
        };
        if g.normalize {
            mixed = r(mixed / divisor);
        }
        if g.lambda != 1.0 {
            mixed = r(mixed * lambda32);
        }
        *o += mixed;
    }
    Ok(out)
}

/// Whether the method reads the base as its reference (for the runner's reader setup).
pub fn uses_base(method: &MethodSpec) -> bool {
    matches!(method.base, BaseUse::Required | BaseUse::Optional)
}

/// Placeholder selections until ops gains its compact ones (same results, more memory).
mod tmp {
    pub struct Bits(Vec<bool>);
    impl Bits {
        pub fn new(n: usize) -> Bits {
            Bits(vec![false; n])
        }
        #[inline]
        pub fn get(&self, i: usize) -> bool {
            self.0[i]
        }
        pub fn set(&mut self, i: usize) {
            self.0[i] = true;
        }
    }
    fn floats(mags: &[u32]) -> Vec<f32> {
        mags.iter().map(|&b| f32::from_bits(b)).collect()
    }
    pub fn top_k_bits(mags: Vec<u32>, k: usize) -> Bits {
        Bits(super::ops::top_k_mask(&floats(&mags), k))
    }
    pub fn ascending_window_bits(mags: Vec<u32>, start: usize, end: usize) -> Bits {
        Bits(super::ops::ascending_window_mask(
            &floats(&mags),
            start,
            end,
        ))
    }
}
