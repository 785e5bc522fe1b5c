//! Streamed generalized task arithmetic (task_arithmetic, ties, dare_*, breadcrumbs*,
//! della*): per model, a keep mask (one bit per element, or the RNG itself for DARE) and a
//! rescale factor prepared from the whole tensor; then any block of the output. Same
//! operations, same rounding points and same reductions as
//! `methods/task_arithmetic.rs` + `ops::sparsify`, so the same bits.
use std::ops::Range;

use rayon::prelude::*;

use super::{base_reader, BlockJob};
use crate::merge::methods::task_arithmetic::{self, Variant};
use crate::merge::methods::{ModelTensor, TensorJob};
use crate::merge::ops::{self, floor_count, round64, Bits, Rescale, CHUNK};
use crate::merge::rng::Stream;
use crate::merge::run::{Error, Result};
use crate::model::DType;
use crate::registry::Sparsifier;

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

/// `r(x − b)` for one block: model `i`'s task vector.
fn task_vector(x: &[f32], b: &[f32], dtype: DType) -> Vec<f32> {
    x.iter().zip(b).map(|(&x, &y)| dtype.round(x - y)).collect()
}

pub(super) fn prepare_gta(
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
    // The whole-tensor kernel's parameter resolution, on a job without data.
    let params_only = TensorJob {
        name: job.name,
        shape: job.shape,
        base: None,
        models: job
            .models
            .iter()
            .map(|(_, params)| ModelTensor { data: &[], params })
            .collect(),
        params: job.params,
        compute_dtype: dtype,
        rng: job.rng.clone(),
        compat: job.compat,
    };
    let settings = task_arithmetic::settings(v, &params_only).map_err(|source| Error::Kernel {
        tensor: job.name.to_string(),
        source,
    })?;
    let (normalize, lambda) = (settings.normalize, settings.lambda);
    let rescale = settings
        .models
        .first()
        .map_or(Rescale::None, |(_, a)| a.rescale);
    let settings: Vec<(f32, f64, f64, f64)> = settings
        .models
        .iter()
        .map(|(w, a)| (*w, a.density, a.gamma, a.epsilon))
        .collect();
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
                let (keep, before, after) = if sparsifier == Magnitude {
                    let k = floor_count(density, n).max(1);
                    if l1 {
                        // the mask consumes the magnitudes; the L1 norms need them
                        let bits = ops::top_k_bits(mags.clone(), k);
                        let (before, after) = chunk_sums(&mags, |j| bits.get(j));
                        (bits, before, after)
                    } else {
                        (ops::top_k_bits(mags, k), Vec::new(), Vec::new())
                    }
                } else {
                    let target = floor_count(density, n);
                    let n_top = floor_count(gamma, n);
                    let n_bot = n.saturating_sub(target + n_top);
                    if l1 {
                        let bits = ops::ascending_window_bits(mags.clone(), n_bot, n_bot + target);
                        let (before, after) = chunk_sums(&mags, |j| bits.get(j));
                        (bits, before, after)
                    } else {
                        (
                            ops::ascending_window_bits(mags, n_bot, n_bot + target),
                            Vec::new(),
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

/// (Σ|m|, Σ|m| over the elements `keep` accepts) per fixed chunk of `mags` (f32 bits of
/// magnitudes), as `ops::l1_norm` sums the tensor before and after its other elements were
/// set to 0.
fn chunk_sums(mags: &[u32], keep: impl Fn(usize) -> bool + Sync) -> (Vec<f64>, Vec<f64>) {
    mags.par_chunks(CHUNK)
        .enumerate()
        .map(|(c, m)| {
            two_sums(m.iter().enumerate().map(|(j, &b)| {
                let m = f32::from_bits(b) as f64;
                (m, if keep(c * CHUNK + j) { m } else { 0.0 })
            }))
        })
        .unzip()
}

/// (Σ|δ|, Σ|kept δ|) per fixed chunk of one block starting at element `start`.
fn masked_sums(d: &[f32], start: usize, keep: impl Fn(usize) -> bool) -> (Vec<f64>, Vec<f64>) {
    d.chunks(CHUNK)
        .enumerate()
        .map(|(c, x)| {
            two_sums(x.iter().enumerate().map(|(j, &x)| {
                let m = x.abs() as f64;
                (m, if keep(start + c * CHUNK + j) { m } else { 0.0 })
            }))
        })
        .unzip()
}

/// (Σ aᵢ, Σ bᵢ) over pairs, each summed in order from the start value of `Sum for f64`
/// (so each equals its own `.sum::<f64>()`), in one pass: the two dependency chains of
/// additions overlap instead of running one after the other.
#[inline(always)]
fn two_sums(pairs: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    let start: f64 = std::iter::empty::<f64>().sum();
    pairs.fold((start, start), |(sa, sb), (a, b)| (sa + a, sb + b))
}

fn unzip_concat(parts: Vec<(Vec<f64>, Vec<f64>)>) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (x, y) in parts {
        a.extend(x);
        b.extend(y);
    }
    (a, b)
}

pub(super) fn apply_gta(g: &Gta, job: &BlockJob, range: Range<usize>) -> Result<Vec<f32>> {
    let dtype = job.compute_dtype;
    let r = |x: f32| dtype.round(x);
    let base = base_reader(job, "task arithmetic")?(range.clone())?;
    // W_i = r(w_i · sparsified δ_i), one array per model, in one fused pass. A dropped
    // element is +0, and +0 stays +0 through the rescale (factor > 0), as in the
    // whole-tensor kernel.
    let mut weighted = Vec::with_capacity(job.models.len());
    for (((reader, _), mask), &w) in job.models.iter().zip(&g.masks).zip(&g.weights) {
        let mut d = reader(range.clone())?;
        match mask.post {
            Post::None => fuse(&mut d, &base, range.start, &mask.keep, |v| v, w, dtype),
            Post::Factor(f) => fuse(
                &mut d,
                &base,
                range.start,
                &mask.keep,
                move |v: f32| dtype.round(v * f),
                w,
                dtype,
            ),
            Post::Inverse(p) => fuse(
                &mut d,
                &base,
                range.start,
                &mask.keep,
                move |v: f32| dtype.round((v as f64 / p) as f32),
                w,
                dtype,
            ),
        }
        weighted.push(d);
    }
    // Element-wise mixing, written as whole-array passes (which vectorise) that perform
    // exactly the per-element operations of the whole-tensor kernel, in the same order.
    // `Sum` for f32 folds from a fixed start value (−0.0 in current Rust); start from it.
    let start: f32 = std::iter::empty::<f32>().sum();
    let n = range.len();
    let mut total = vec![start; n];
    for w_d in &weighted {
        for (t, &x) in total.iter_mut().zip(w_d) {
            *t += x;
        }
    }
    let mut out = base;
    if g.consensus {
        // majority sign of r(Σ W); agreeing models add their W and their weight
        total.iter_mut().for_each(|t| *t = r(*t));
        let mut mixed = vec![0f32; n];
        let mut divisor = vec![0f32; n];
        for (w_d, &w) in weighted.iter().zip(&g.weights) {
            for (((m, d), &x), &t) in mixed
                .iter_mut()
                .zip(divisor.iter_mut())
                .zip(w_d)
                .zip(&total)
            {
                let agree = if t >= 0.0 { x > 0.0 } else { x < 0.0 };
                // A non-agreeing model adds +0: the sums start at +0 and only grow by
                // non-zero values, so this equals skipping it.
                *m += if agree { x } else { 0.0 };
                *d += if agree { w } else { 0.0 };
            }
        }
        for ((o, &m), &d) in out.iter_mut().zip(&mixed).zip(&divisor) {
            let d = r(d);
            *o += finish(g, r, r(m), if d == 0.0 { 1.0 } else { d });
        }
    } else {
        for (o, &t) in out.iter_mut().zip(&total) {
            *o += finish(g, r, r(t), g.linear_divisor);
        }
    }
    Ok(out)
}

/// `d ← r(w · post(keep ? r(d − base) : 0))` over one block starting at element `at`.
#[inline(always)]
fn fuse<P: Fn(f32) -> f32 + Copy>(
    d: &mut [f32],
    base: &[f32],
    at: usize,
    keep: &Keep,
    post: P,
    w: f32,
    dtype: DType,
) {
    let r = |x: f32| dtype.round(x);
    // what a dropped element becomes (+0 through post and the weight)
    let dropped = r(w * post(0.0));
    match keep {
        Keep::All => {
            for (x, &b) in d.iter_mut().zip(base) {
                *x = r(w * post(r(*x - b)));
            }
        }
        Keep::Nothing => d.fill(dropped),
        // blocks start at multiples of 64 elements: whole mask words
        Keep::Bits(bits) if at % 64 == 0 => {
            for (c, (xs, bs)) in d.chunks_mut(64).zip(base.chunks(64)).enumerate() {
                let word = bits.word(at / 64 + c);
                for (k, (x, &b)) in xs.iter_mut().zip(bs).enumerate() {
                    let kept = r(w * post(r(*x - b)));
                    *x = if word >> k & 1 == 1 { kept } else { dropped };
                }
            }
        }
        keep => {
            for (j, (x, &b)) in d.iter_mut().zip(base).enumerate() {
                *x = if keep.get(at + j) {
                    r(w * post(r(*x - b)))
                } else {
                    dropped
                };
            }
        }
    }
}

/// Normalisation and λ on one mixed value, rounded as the whole-tensor kernel rounds them.
#[inline(always)]
fn finish(g: &Gta, r: impl Fn(f32) -> f32, mut mixed: f32, divisor: f32) -> f32 {
    if g.normalize {
        mixed = r(mixed / divisor);
    }
    if g.lambda != 1.0 {
        mixed = r(mixed * g.lambda as f32);
    }
    mixed
}
