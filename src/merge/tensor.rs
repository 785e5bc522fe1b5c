//! One output tensor: read its inputs, cut embeddings to the planned shape (or re-lay them
//! out to the output vocabulary), round to the compute dtype, run the kernel — whole
//! ([`merge_one`]) or block by block through the streamed kernels ([`merge_streamed`]).
#![allow(clippy::result_large_err)]
use std::ops::Range;

use rayon::prelude::*;

use super::methods::{merge_tensor, ModelTensor, TensorJob};
use super::rng::RngKey;
use super::run::{Error, Result};
use super::sink::{Sink, TensorSource};
use super::stream;
use crate::model::vocab::{relayout, OutputVocab, Rows};
use crate::model::writer::f32_to_bytes;
use crate::model::DType;
use crate::plan::{Plan, TensorPlan};

/// Readers for the inputs of `t` (base first, if any): each reads a range of elements and
/// rounds it to the compute dtype, as [`merge_one`] loads whole tensors.
fn readers<'a>(
    plan: &'a Plan,
    t: &'a TensorPlan,
    sources: &'a [&'a dyn TensorSource],
) -> Vec<Box<stream::Reader<'a>>> {
    t.inputs()
        .map(|input| {
            let reader = move |range: Range<usize>| -> Result<Vec<f32>> {
                let mut data = sources[input.model]
                    .read_f32_range(&input.tensor, range)
                    .map_err(|source| Error::Read {
                        model: plan.models[input.model].clone(),
                        tensor: input.tensor.clone(),
                        source,
                    })?;
                if t.compute_dtype != DType::F32 && input.dtype != t.compute_dtype {
                    for x in &mut data {
                        *x = t.compute_dtype.round(*x);
                    }
                }
                Ok(data)
            };
            Box::new(reader) as Box<stream::Reader<'a>>
        })
        .collect()
}

fn block_job<'a>(
    plan: &'a Plan,
    t: &'a TensorPlan,
    readers: &'a [Box<stream::Reader<'a>>],
) -> stream::BlockJob<'a> {
    let skip = usize::from(t.base.is_some());
    stream::BlockJob {
        name: &t.name,
        shape: &t.shape,
        base: t.base.as_ref().map(|_| &*readers[0]),
        models: t
            .models
            .iter()
            .zip(&readers[skip..])
            .map(|(m, r)| (&**r, &m.params))
            .collect(),
        params: &t.params,
        compute_dtype: t.compute_dtype,
        rng: rng_key(plan, t),
        compat: plan.compat,
    }
}

/// The random stream key of tensor `t`: (seed, stage, tensor).
fn rng_key(plan: &Plan, t: &TensorPlan) -> RngKey {
    RngKey {
        seed: plan.seed,
        stage: plan.stage.clone(),
        tensor: t.name.clone(),
    }
}

/// A small tensor through the streamed kernels, as one block.
pub(super) fn merge_streamed_whole(
    plan: &Plan,
    t: &TensorPlan,
    sources: &[&dyn TensorSource],
) -> Result<Vec<f32>> {
    let readers = readers(plan, t, sources);
    let job = block_job(plan, t, &readers);
    let n = t.numel();
    let blocks = tensor_blocks(plan, t, n.max(1));
    // a tensor below one block: its task vectors are small enough to hold
    let holding = stream::Holding {
        parallel_models: false,
        task_vectors: true,
    };
    let prepared = stream::prepare(plan.method, &job, &blocks, holding)?;
    stream::apply(&prepared, &job, 0..n)
}

/// The blocks of about `block` elements in which tensor `t` is streamed.
fn tensor_blocks(plan: &Plan, t: &TensorPlan, block: usize) -> Vec<Range<usize>> {
    let granule = stream::granule(plan.method, &t.shape, &t.params);
    stream::blocks(t.numel(), block, granule)
}

/// A large tensor's whole-tensor decisions (the first step of [`merge_streamed`]), read in
/// blocks of `block` elements. Runs on the calling thread's rayon pool; the runner may call
/// it for the next tensor while the current one is applied.
pub(super) fn prepare_streamed(
    plan: &Plan,
    t: &TensorPlan,
    sources: &[&dyn TensorSource],
    block: usize,
    holding: stream::Holding,
) -> Result<stream::Prepared> {
    let readers = readers(plan, t, sources);
    let job = block_job(plan, t, &readers);
    let blocks = tensor_blocks(plan, t, block);
    stream::prepare(plan.method, &job, &blocks, holding)
}

/// A large tensor, block by block, from its [`prepare_streamed`] decisions: merge `threads`
/// blocks at a time and hand them to the sink in order.
pub(super) fn merge_streamed(
    plan: &Plan,
    t: &TensorPlan,
    sources: &[&dyn TensorSource],
    sink: &mut dyn Sink,
    pool: &rayon::ThreadPool,
    block: usize,
    prepared: &stream::Prepared,
) -> Result<()> {
    let readers = readers(plan, t, sources);
    let job = block_job(plan, t, &readers);
    let blocks = tensor_blocks(plan, t, block);
    for wave in blocks.chunks(pool.current_num_threads().max(1)) {
        // each worker also encodes its block, so the sink only queues bytes
        let outs: Vec<Result<Vec<u8>>> = pool.install(|| {
            wave.par_iter()
                .map(|r| {
                    let out = stream::apply(prepared, &job, r.clone())?;
                    Ok(f32_to_bytes(&out, t.out_dtype))
                })
                .collect()
        });
        for (r, out) in wave.iter().zip(outs) {
            sink.add_part(&t.name, &t.shape, t.out_dtype, r.start, out?)?;
        }
    }
    Ok(())
}

/// Read, cut (or re-lay out to the output vocabulary), round to the compute dtype, merge
/// one tensor.
pub(super) fn merge_one(
    plan: &Plan,
    t: &TensorPlan,
    sources: &[&dyn TensorSource],
) -> Result<Vec<f32>> {
    let vocab = plan.vocab.as_deref().filter(|_| t.is_embed);
    let load = |input: &crate::plan::TensorInput| -> Result<Vec<f32>> {
        let data = sources[input.model]
            .read_f32(&input.tensor)
            .map_err(|source| Error::Read {
                model: plan.models[input.model].clone(),
                tensor: input.tensor.clone(),
                source,
            })?;
        let mut data = match vocab {
            Some(_) => data,
            None => cut(data, &input.shape, &t.shape).map_err(|message| Error::Invalid {
                tensor: t.name.clone(),
                message,
            })?,
        };
        // mergekit casts inputs to the compute dtype on load; values already stored in it
        // are unchanged by that cast.
        if t.compute_dtype != DType::F32 && input.dtype != t.compute_dtype {
            for x in &mut data {
                *x = t.compute_dtype.round(*x);
            }
        }
        Ok(data)
    };
    let mut base = t.base.as_ref().map(load).transpose()?;
    let mut models = t
        .models
        .iter()
        .map(|m| load(&m.input))
        .collect::<Result<Vec<_>>>()?;
    if let Some(v) = vocab {
        (base, models) = relayout_inputs(plan, t, v, base, models)?;
    }
    let job = TensorJob {
        name: &t.name,
        shape: &t.shape,
        base: base.as_deref(),
        models: models
            .iter()
            .zip(&t.models)
            .map(|(data, m)| ModelTensor {
                data,
                params: &m.params,
            })
            .collect(),
        params: &t.params,
        compute_dtype: t.compute_dtype,
        rng: rng_key(plan, t),
        compat: plan.compat,
    };
    let out = merge_tensor(plan.method, &job).map_err(|source| Error::Kernel {
        tensor: t.name.clone(),
        source,
    })?;
    if out.len() != t.numel() {
        return Err(Error::Invalid {
            tensor: t.name.clone(),
            message: format!(
                "kernel returned {} values for shape {:?}",
                out.len(),
                t.shape
            ),
        });
    }
    Ok(out)
}

/// A job's inputs: the separate base (if any) and the other models, in plan order.
type BaseAndModels = (Option<Vec<f32>>, Vec<Vec<f32>>);

/// mergekit's `PermutedVocabulary`: every input of embedding `t` moved to the output
/// vocabulary's ids (fill rows for tokens an input lacks, padding rows).
fn relayout_inputs(
    plan: &Plan,
    t: &TensorPlan,
    vocab: &OutputVocab,
    base: Option<Vec<f32>>,
    models: Vec<Vec<f32>>,
) -> Result<BaseAndModels> {
    let has_base = base.is_some();
    let rows: Vec<Rows> = base
        .into_iter()
        .chain(models)
        .zip(t.inputs())
        .map(|(data, input)| Rows {
            model: input.model,
            name: &plan.models[input.model],
            data,
        })
        .collect();
    let base_pos = t
        .base_model
        .and_then(|b| rows.iter().position(|r| r.model == b));
    let cols = t.shape.get(1).copied().unwrap_or(0);
    let mut out = relayout(vocab, rows, base_pos, cols, t.compute_dtype, &t.name)
        .map_err(|source| Error::Vocab {
            tensor: t.name.clone(),
            source,
        })?
        .into_iter();
    let base = if has_base { out.next() } else { None };
    Ok((base, out.collect()))
}

/// The top-left `to` part of a row-major `from`-shaped tensor (1-D or 2-D).
fn cut(data: Vec<f32>, from: &[usize], to: &[usize]) -> Result<Vec<f32>, String> {
    if from == to {
        return Ok(data);
    }
    match (from, to) {
        ([n], [m]) if m <= n => Ok(data[..*m].to_vec()),
        ([r0, cols], [rows, c]) if c <= cols && rows <= r0 => Ok(data
            .chunks(*cols)
            .take(*rows)
            .flat_map(|row| row[..*c].iter().copied())
            .collect()),
        _ => Err(format!("cannot cut a tensor of shape {from:?} to {to:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cut_takes_the_top_left_part() {
        let m: Vec<f32> = (0..12).map(|x| x as f32).collect();
        assert_eq!(
            cut(m.clone(), &[3, 4], &[2, 3]).unwrap(),
            vec![0., 1., 2., 4., 5., 6.]
        );
        assert_eq!(cut(m.clone(), &[3, 4], &[3, 4]).unwrap(), m);
        assert_eq!(cut(vec![1., 2., 3.], &[3], &[2]).unwrap(), vec![1., 2.]);
        assert!(cut(m, &[3, 4], &[4, 4]).is_err());
    }
}
