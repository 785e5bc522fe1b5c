//! Streamed generalized task arithmetic (task_arithmetic, ties, dare_*, breadcrumbs*,
//! della*): per model, a keep mask (one bit per element, or the RNG itself for DARE) and a
//! rescale factor prepared from the whole tensor; then any block of the output. Same
//! operations, same rounding points and same reductions as
//! `methods/task_arithmetic.rs` + `ops::sparsify`, so the same bits.
use std::ops::Range;

use rayon::prelude::*;

use super::{base_reader, BlockJob, Holding};
use crate::merge::methods::task_arithmetic::{self, Variant};
use crate::merge::methods::{ModelTensor, TensorJob};
use crate::merge::ops::{self, floor_count, round64, Bits, Rescale, CHUNK};
use crate::merge::rng::Stream;
use crate::merge::run::{Error, Result};
use crate::model::dtype::{wide_kernel, Rounding};
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
    /// The sparsified task vector itself, as bf16 bits (`r(x − b)` where kept, +0 where
    /// dropped), when the prepare holds it ([`Holding::task_vectors`], a bf16 compute
    /// dtype): the apply reads it instead of the model's input.
    held: Option<Vec<u16>>,
}

enum Keep {
    All,
    Nothing,
    Bits(Bits),
    /// DARE: each element's own draw against `rng::threshold(density)`.
    Random {
        stream: Stream,
        threshold: u64,
    },
}

impl Keep {
    #[inline]
    fn get(&self, i: usize) -> bool {
        match self {
            Keep::All => true,
            Keep::Nothing => false,
            Keep::Bits(b) => b.get(i),
            Keep::Random { stream, threshold } => stream.keep(i as u64, *threshold),
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

wide_kernel! {
    /// `x ← r(x − b)` for one block: a model's task vector.
    pub(super) fn task_vector(x: &mut [f32], b: &[f32], dtype: DType) {
        #[inline(always)]
        fn run<R: Rounding>(x: &mut [f32], b: &[f32]) {
            x.iter_mut()
                .zip(b)
                .for_each(|(x, &y)| *x = R::round(*x - y));
        }
        crate::model::dtype::with_rounding!(dtype, R => run::<R>(x, b))
    }
}

pub(super) fn prepare_gta(
    v: &Variant,
    job: &BlockJob,
    blocks: &[Range<usize>],
    holding: Holding,
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
            held: None,
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
                held: None,
            });
        }
        // DELLA with ε = 0 is DARE (the same draws).
        if sparsifier == DellaMagprune && epsilon == 0.0 {
            sparsifier = Random;
        }
        let delta = |r: &Range<usize>| -> Result<Vec<f32>> {
            let mut x = reader(r.clone())?;
            task_vector(&mut x, &base(r.clone())?, dtype);
            Ok(x)
        };
        // (keep, Σ|δ| per chunk, Σ|kept δ| per chunk); the sums only when rescaling by L1.
        let l1 = rescale == Rescale::L1;
        // hold the sparsified task vector for the apply: bf16 values fit in 2 bytes
        let hold = holding.task_vectors && dtype == DType::BF16;
        let mut held = None;
        let (keep, before, after) = match sparsifier {
            Magnitude | MagnitudeOutliers => {
                let mut mags = vec![0u32; n];
                // the task vector, a slice per block (empty ones when not held)
                let mut kept = vec![0u16; if hold { n } else { 0 }];
                let slots = block_slots(&mut kept, blocks);
                mags.par_chunks_mut(block_len(blocks))
                    .zip(blocks.par_iter())
                    .zip(slots)
                    .try_for_each(|((m, r), slot)| -> Result<()> {
                        let d = delta(r)?;
                        for (m, d) in m.iter_mut().zip(&d) {
                            *m = d.abs().to_bits();
                        }
                        if !slot.is_empty() {
                            bf16_bits(&d, slot);
                        }
                        Ok(())
                    })?;
                let (keep, before, after) = if sparsifier == Magnitude {
                    let k = floor_count(density, n).max(1);
                    if l1 {
                        // the mask consumes the magnitudes; the L1 norms need them
                        let bits = ops::top_k_bits(mags.clone(), k);
                        let (before, after) = magnitude_sums(&mags, &bits);
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
                        let (before, after) = magnitude_sums(&mags, &bits);
                        (bits, before, after)
                    } else {
                        (
                            ops::ascending_window_bits(mags, n_bot, n_bot + target),
                            Vec::new(),
                            Vec::new(),
                        )
                    }
                };
                if hold {
                    const WORDS: usize = 1024;
                    kept.par_chunks_mut(64 * WORDS)
                        .enumerate()
                        .for_each(|(c, h)| clear_dropped(h, &keep, c * WORDS));
                    held = Some(kept);
                }
                (Keep::Bits(keep), before, after)
            }
            Random => {
                let keep = Keep::Random {
                    stream,
                    threshold: crate::merge::rng::threshold(density),
                };
                if !l1 {
                    (keep, Vec::new(), Vec::new())
                } else {
                    let sums = blocks
                        .par_iter()
                        .map(|r| -> Result<(Vec<f64>, Vec<f64>)> {
                            let d = delta(r)?;
                            let kept = Bits::from_fn(d.len(), |j| keep.get(r.start + j));
                            Ok(ops::masked_l1_sums(&d, &kept, 0))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let (before, after) = unzip_concat(sums);
                    (keep, before, after)
                }
            }
            DellaMagprune => {
                // Per row: ranks → keep probabilities → one draw per element (blocks
                // hold whole rows and whole mask words).
                let row_len = job.row_len();
                // the kept task vector, a slice per block (empty ones when not held)
                let mut kept = vec![0u16; if hold { n } else { 0 }];
                let slots = block_slots(&mut kept, blocks);
                let parts = blocks
                    .par_iter()
                    .zip(slots)
                    .map(|(r, slot)| -> Result<(Bits, Vec<f64>, Vec<f64>)> {
                        let d = delta(r)?;
                        let keep =
                            ops::della_keep_bits(&d, density, epsilon, row_len, stream, r.start);
                        let (before, after) = if l1 {
                            ops::masked_l1_sums(&d, &keep, 0)
                        } else {
                            (Vec::new(), Vec::new())
                        };
                        if !slot.is_empty() {
                            bf16_bits(&d, slot);
                            clear_dropped(slot, &keep, 0);
                        }
                        Ok((keep, before, after))
                    })
                    .collect::<Result<Vec<_>>>()?;
                held = hold.then_some(kept);
                let mut words = Vec::with_capacity(n.div_ceil(64));
                let (mut before, mut after) = (Vec::new(), Vec::new());
                for (keep, b, a) in parts {
                    words.extend((0..keep.len().div_ceil(64)).map(|w| keep.word(w)));
                    before.extend(b);
                    after.extend(a);
                }
                (Keep::Bits(Bits::from_words(words, n)), before, after)
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
        Ok(ModelMask { keep, post, held })
    };
    let masks = if holding.parallel_models {
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

wide_kernel! {
    /// `out[i] ←` the bf16 bits of task-vector value `d[i]` (a bf16 value: its low half is
    /// zero).
    fn bf16_bits(d: &[f32], out: &mut [u16]) {
        for (o, &x) in out.iter_mut().zip(d) {
            *o = (x.to_bits() >> 16) as u16;
        }
    }
}

wide_kernel! {
    /// `held[i] ← +0` where bit `64 · first_word + i` of `keep` is clear.
    fn clear_dropped(held: &mut [u16], keep: &Bits, first_word: usize) {
        for (w, hs) in held.chunks_mut(64).enumerate() {
            let word = keep.word(first_word + w);
            for (k, h) in hs.iter_mut().enumerate() {
                *h = if word >> k & 1 == 1 { *h } else { 0 };
            }
        }
    }
}

/// `kept` cut into one slice per block (empty slices when `kept` is empty: not held).
fn block_slots<'a>(kept: &'a mut [u16], blocks: &[Range<usize>]) -> Vec<&'a mut [u16]> {
    let mut slots: Vec<&mut [u16]> = kept.chunks_mut(block_len(blocks)).collect();
    slots.resize_with(blocks.len(), Default::default);
    slots
}

/// Length of the first block (all blocks but the last have it).
fn block_len(blocks: &[Range<usize>]) -> usize {
    blocks.first().map_or(1, |r| r.len().max(1))
}

/// (Σ|m|, Σ|m| over the elements `keep` accepts) per fixed chunk of `mags` (f32 bits of
/// magnitudes), as `ops::l1_norm` sums the tensor before and after its other elements were
/// set to 0; in parallel over groups of [`ops::L1_LANES`] chunks (the sums' interleaving).
fn magnitude_sums(mags: &[u32], keep: &Bits) -> (Vec<f64>, Vec<f64>) {
    let mags: &[f32] = bytemuck::cast_slice(mags);
    let group = ops::L1_LANES * CHUNK;
    let parts = mags
        .par_chunks(group)
        .enumerate()
        .map(|(g, m)| ops::masked_l1_sums(m, keep, g * group))
        .collect();
    unzip_concat(parts)
}

fn unzip_concat(parts: Vec<(Vec<f64>, Vec<f64>)>) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (x, y) in parts {
        a.extend(x);
        b.extend(y);
    }
    (a, b)
}

wide_kernel! {
    pub(super) fn apply_gta(g: &Gta, job: &BlockJob, range: Range<usize>) -> Result<Vec<f32>> {
        crate::model::dtype::with_rounding!(job.compute_dtype, R => apply_gta_r::<R>(g, job, range))
    }
}

/// Elements per pass of [`apply_gta_r`]: its scratch (one row per model, three more) stays
/// in the L1/L2 cache instead of streaming block-long arrays through memory once per step.
const SUB: usize = 1024;

/// [`apply_gta`] with the compute dtype's rounding known at compile time, so the
/// element-wise passes below vectorise.
#[inline(always)]
fn apply_gta_r<R: Rounding>(g: &Gta, job: &BlockJob, range: Range<usize>) -> Result<Vec<f32>> {
    let r = R::round;
    let mut out = base_reader(job, "task arithmetic")?(range.clone())?;
    // a model whose sparsified task vector the prepare held is not read again
    let inputs = job
        .models
        .iter()
        .zip(&g.masks)
        .map(|((reader, _), mask)| match &mask.held {
            Some(_) => Ok(Vec::new()),
            None => reader(range.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    // `Sum` for f32 folds from a fixed start value (−0.0 in current Rust); start from it.
    let start: f32 = std::iter::empty::<f32>().sum();
    let mut weighted = vec![0f32; inputs.len() * SUB];
    let (mut total, mut mixed, mut divisor) = ([0f32; SUB], [0f32; SUB], [0f32; SUB]);
    let n = range.len();
    for s in (0..n).step_by(SUB) {
        let len = SUB.min(n - s);
        let base = &mut out[s..s + len];
        // W_i = r(w_i · sparsified δ_i), one row per model. A dropped element is +0, and
        // +0 stays +0 through the rescale (factor > 0), as in the whole-tensor kernel.
        for (i, ((x, mask), &w)) in inputs.iter().zip(&g.masks).zip(&g.weights).enumerate() {
            let row = &mut weighted[i * SUB..i * SUB + len];
            let at = range.start + s;
            let delta = match &mask.held {
                Some(held) => Delta::Held(&held[at..at + len]),
                None => Delta::Input(&x[s..s + len], base, &mask.keep),
            };
            match mask.post {
                Post::None => fuse::<R, _>(row, delta, at, |v| v, w),
                Post::Factor(f) => fuse::<R, _>(row, delta, at, move |v| R::round(v * f), w),
                Post::Inverse(p) => fuse::<R, _>(
                    row,
                    delta,
                    at,
                    move |v: f32| R::round((v as f64 / p) as f32),
                    w,
                ),
            }
        }
        // Element-wise mixing, as whole-row passes (which vectorise) that perform exactly
        // the per-element operations of the whole-tensor kernel, in the same order.
        let total = &mut total[..len];
        total.fill(start);
        for row in weighted.chunks(SUB) {
            for (t, &x) in total.iter_mut().zip(row) {
                *t += x;
            }
        }
        if g.consensus {
            // majority sign of r(Σ W); agreeing models add their W and their weight
            total.iter_mut().for_each(|t| *t = r(*t));
            let (mixed, divisor) = (&mut mixed[..len], &mut divisor[..len]);
            mixed.fill(0.0);
            divisor.fill(0.0);
            for (row, &w) in weighted.chunks(SUB).zip(&g.weights) {
                for (((m, d), &x), &t) in mixed
                    .iter_mut()
                    .zip(divisor.iter_mut())
                    .zip(row)
                    .zip(&*total)
                {
                    let agree = if t >= 0.0 { x > 0.0 } else { x < 0.0 };
                    // A non-agreeing model adds +0: the sums start at +0 and only grow by
                    // non-zero values, so this equals skipping it.
                    *m += if agree { x } else { 0.0 };
                    *d += if agree { w } else { 0.0 };
                }
            }
            for ((o, &m), &d) in base.iter_mut().zip(&*mixed).zip(&*divisor) {
                let d = r(d);
                *o += finish::<R>(g, r(m), if d == 0.0 { 1.0 } else { d });
            }
        } else {
            for (o, &t) in base.iter_mut().zip(&*total) {
                *o += finish::<R>(g, r(t), g.linear_divisor);
            }
        }
    }
    Ok(out)
}

/// Where one model's sparsified task vector comes from in [`fuse`].
#[derive(Clone, Copy)]
enum Delta<'a> {
    /// The model's input, the base and the keep mask: `keep ? r(x − base) : 0`.
    Input(&'a [f32], &'a [f32], &'a Keep),
    /// As the prepare held it ([`ModelMask::held`]): the same values as bf16 bits.
    Held(&'a [u16]),
}

/// `row ← r(w · post(δ))` over elements starting at element `at`, δ the sparsified task
/// vector (`keep ? r(x − base) : 0`).
#[inline(always)]
fn fuse<R: Rounding, P: Fn(f32) -> f32 + Copy>(
    row: &mut [f32],
    delta: Delta,
    at: usize,
    post: P,
    w: f32,
) {
    let r = R::round;
    let (x, base, keep) = match delta {
        Delta::Input(x, base, keep) => (x, base, keep),
        Delta::Held(held) => {
            for (o, &h) in row.iter_mut().zip(held) {
                *o = r(w * post(f32::from_bits(u32::from(h) << 16)));
            }
            return;
        }
    };
    // what a dropped element becomes (+0 through post and the weight)
    let dropped = r(w * post(0.0));
    let elems = row.iter_mut().zip(x).zip(base);
    match keep {
        Keep::All => {
            for ((o, &x), &b) in elems {
                *o = r(w * post(r(x - b)));
            }
        }
        Keep::Nothing => row.fill(dropped),
        // passes start at multiples of 64 elements: whole mask words
        Keep::Bits(bits) if at % 64 == 0 => {
            for (c, ((os, xs), bs)) in row
                .chunks_mut(64)
                .zip(x.chunks(64))
                .zip(base.chunks(64))
                .enumerate()
            {
                let word = bits.word(at / 64 + c);
                for (k, ((o, &x), &b)) in os.iter_mut().zip(xs).zip(bs).enumerate() {
                    let kept = r(w * post(r(x - b)));
                    *o = if word >> k & 1 == 1 { kept } else { dropped };
                }
            }
        }
        keep => {
            for (j, ((o, &x), &b)) in elems.enumerate() {
                *o = if keep.get(at + j) {
                    r(w * post(r(x - b)))
                } else {
                    dropped
                };
            }
        }
    }
}

/// Normalisation and λ on one mixed value, rounded as the whole-tensor kernel rounds them.
#[inline(always)]
fn finish<R: Rounding>(g: &Gta, mut mixed: f32, divisor: f32) -> f32 {
    if g.normalize {
        mixed = R::round(mixed / divisor);
    }
    if g.lambda != 1.0 {
        mixed = R::round(mixed * g.lambda as f32);
    }
    mixed
}
