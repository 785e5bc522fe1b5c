//! The runner: executes a [`Plan`] tensor by tensor — read f32 inputs, cut embeddings to
//! the planned shape, call the method's kernel, hand the result to a [`Sink`].
//!
//! Tensors are merged in parallel (rayon) in fixed-size batches and handed to the sink in
//! plan order, and every random stream is keyed by (seed, stage, tensor), so the output is
//! identical for any thread count. The same code path feeds a model folder ([`DirSink`])
//! or memory ([`MemorySink`], for search candidates that never touch disk).
// Errors are cold and carry the file, path, model and tensor a user needs; their size
// does not matter, so clippy's result_large_err is allowed here.
#![allow(clippy::result_large_err)]
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::methods::{merge_tensor, ModelTensor, TensorJob};
use super::rng::RngKey;
use super::{ops, stream};
use crate::model::vocab::{relayout, strip_tokenizer_files, OutputVocab, Rows};
use crate::model::{writer::f32_to_bytes, Announced, DType, ModelDir, ModelWriter, WriteOptions};
use crate::plan::{Plan, RecipePlan, StageInput, TensorPlan};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("reading `{tensor}` from model `{model}`: {source}")]
    Read {
        model: String,
        tensor: String,
        #[source]
        source: crate::model::Error,
    },
    #[error("merging `{tensor}`: {source}")]
    Kernel {
        tensor: String,
        #[source]
        source: super::methods::Error,
    },
    #[error("merging `{tensor}`: {message}")]
    Invalid { tensor: String, message: String },
    #[error("merging `{tensor}`: tokenizer_source: {source}")]
    Vocab {
        tensor: String,
        #[source]
        source: crate::model::vocab::Error,
    },
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {threads} worker threads: {message}")]
    Threads { threads: usize, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where input tensors come from (a model folder, or an in-memory stage output).
pub trait TensorSource: Sync {
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, crate::model::Error>;

    /// Elements `range` (row-major) of a tensor. The default reads the whole tensor.
    fn read_f32_range(
        &self,
        name: &str,
        range: Range<usize>,
    ) -> Result<Vec<f32>, crate::model::Error> {
        let all = self.read_f32(name)?;
        all.get(range.clone())
            .map(<[f32]>::to_vec)
            .ok_or_else(|| crate::model::Error::Invalid {
                path: PathBuf::from("<memory>"),
                message: format!("tensor `{name}`: elements {range:?} out of range"),
            })
    }

    /// Hint that elements `range` of a tensor will be read soon.
    fn prefetch(&self, _name: &str, _range: Range<usize>) {}
}

impl TensorSource for ModelDir {
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, crate::model::Error> {
        ModelDir::read_f32(self, name)
    }
    fn read_f32_range(
        &self,
        name: &str,
        range: Range<usize>,
    ) -> Result<Vec<f32>, crate::model::Error> {
        ModelDir::read_f32_range(self, name, range)
    }
    fn prefetch(&self, name: &str, range: Range<usize>) {
        ModelDir::prefetch(self, name, range)
    }
}

/// Where merged tensors go, in plan order. `data` is f32; the sink stores it as `dtype`.
pub trait Sink {
    fn add(&mut self, name: &str, shape: &[usize], dtype: DType, data: &[f32]) -> Result<()> {
        self.add_part(name, shape, dtype, 0, data)
    }

    /// Elements `start..start + data.len()` of a tensor; a large tensor arrives as
    /// consecutive parts, in order.
    fn add_part(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        start: usize,
        data: &[f32],
    ) -> Result<()>;
}

/// Writes a model folder through [`ModelWriter`].
pub struct DirSink {
    pub writer: ModelWriter,
}

impl Sink for DirSink {
    fn add(&mut self, name: &str, shape: &[usize], dtype: DType, data: &[f32]) -> Result<()> {
        Ok(self
            .writer
            .add_tensor(name, dtype, shape, f32_to_bytes(data, dtype))?)
    }
    fn add_part(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        start: usize,
        data: &[f32],
    ) -> Result<()> {
        Ok(self
            .writer
            .add_tensor_part(name, dtype, shape, start, f32_to_bytes(data, dtype))?)
    }
}

/// Keeps tensors in memory, values already rounded to their output dtype (so they equal
/// what a [`DirSink`] would have written).
#[derive(Debug, Default)]
pub struct MemorySink {
    pub tensors: BTreeMap<String, (Vec<usize>, DType, Vec<f32>)>,
}

impl Sink for MemorySink {
    fn add_part(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        start: usize,
        data: &[f32],
    ) -> Result<()> {
        let n: usize = shape.iter().product();
        let entry = self
            .tensors
            .entry(name.to_string())
            .or_insert_with(|| (shape.to_vec(), dtype, vec![0.0; n]));
        let slot = entry
            .2
            .get_mut(start..start + data.len())
            .ok_or_else(|| Error::Invalid {
                tensor: name.to_string(),
                message: format!("part at {start} does not fit shape {shape:?}"),
            })?;
        for (o, &x) in slot.iter_mut().zip(data) {
            *o = dtype.round(x);
        }
        Ok(())
    }
}

/// A stage kept in memory can feed the next stage.
impl TensorSource for MemorySink {
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, crate::model::Error> {
        let n = self.tensors.get(name).map_or(0, |t| t.2.len());
        self.read_f32_range(name, 0..n)
    }
    fn read_f32_range(
        &self,
        name: &str,
        range: Range<usize>,
    ) -> Result<Vec<f32>, crate::model::Error> {
        let invalid = |message: String| crate::model::Error::Invalid {
            path: PathBuf::from("<memory>"),
            message,
        };
        let (_, _, data) = self
            .tensors
            .get(name)
            .ok_or_else(|| invalid(format!("no tensor named `{name}`")))?;
        data.get(range.clone())
            .map(<[f32]>::to_vec)
            .ok_or_else(|| invalid(format!("tensor `{name}`: elements {range:?} out of range")))
    }
}

/// Default memory budget (`--max-memory`): a 14B merge fits a 16 GB machine.
pub const DEFAULT_MAX_MEMORY: u64 = 6 << 30;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads (0 = rayon's default, one per core).
    pub threads: usize,
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Memory budget in bytes for tensors in flight, temporaries and the writer's queue.
    pub max_memory: u64,
    /// Elements per block of a streamed tensor (0: derived from `max_memory`). Tensors
    /// larger than a block are merged block by block; the output does not depend on it.
    pub block: usize,
    /// Use the streamed kernels where a method has them (false: every tensor whole,
    /// through the reference kernels of [`super::methods`]; same output, more memory).
    pub streamed: bool,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            threads: 0,
            progress: false,
            max_memory: DEFAULT_MAX_MEMORY,
            block: 0,
            streamed: true,
        }
    }
}

impl RunOptions {
    /// Elements per block for a plan whose jobs have at most `inputs` inputs.
    pub fn block_elems(&self, threads: usize, inputs: usize) -> usize {
        if self.block > 0 {
            return self.block;
        }
        // A quarter of the budget for the blocks in flight: per element, the f32 inputs,
        // one task vector per input, the output and its encoding.
        let per_element = (8 * inputs.max(1) + 6) as u64;
        let elems = self.max_memory / 4 / (threads.max(1) as u64 * per_element);
        (elems as usize).clamp(ops::CHUNK, 1 << 18)
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct RunStats {
    pub tensors: usize,
    pub bytes_written: u64,
    pub seconds: f64,
}

/// Execute `plan`: `sources[i]` serves `plan.models[i]`.
pub fn run(
    plan: &Plan,
    sources: &[&dyn TensorSource],
    sink: &mut dyn Sink,
    opts: &RunOptions,
) -> Result<RunStats> {
    if sources.len() != plan.models.len() {
        return Err(Error::Invalid {
            tensor: String::new(),
            message: format!("{} sources for {} models", sources.len(), plan.models.len()),
        });
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| Error::Threads {
            threads: opts.threads,
            message: e.to_string(),
        })?;
    let started = std::time::Instant::now();
    let bar = if opts.progress {
        let bar = indicatif::ProgressBar::new(plan.tensors.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} tensors {elapsed_precise} (eta {eta}) {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(plan.stage.clone());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let threads = pool.current_num_threads();
    let inputs = plan
        .tensors
        .iter()
        .map(|t| t.inputs().count())
        .max()
        .unwrap_or(1);
    let block = opts.block_elems(threads, inputs);
    let streamable = |t: &TensorPlan| opts.streamed && streamable(plan, t);
    let units = schedule(plan, block, threads, opts.max_memory, &streamable);
    let estimate = estimate_memory(plan, opts, threads);
    if estimate > opts.max_memory {
        tracing::warn!(
            "stage `{}`: its largest tensor needs about {} of working memory, more than --max-memory {}; the merge goes on and may use that much (raise --max-memory to silence this, or free memory)",
            plan.stage,
            crate::plan::human_bytes(estimate),
            crate::plan::human_bytes(opts.max_memory)
        );
    }
    // A reader thread asks for the next unit's inputs (madvise WILLNEED, which may block
    // until the reads are queued) while this one merges, so cold reads overlap the work.
    let (ahead, wanted) = std::sync::mpsc::channel::<usize>();
    let units = &units;
    let written = std::thread::scope(|scope| -> Result<u64> {
        // not worth a thread for small merges (a search runs thousands of them)
        if plan.bytes_read() >= PREFETCH_MIN {
            scope.spawn(move || {
                for u in wanted {
                    prefetch(plan, &units[u], sources);
                }
            });
        }
        let _ = ahead.send(0);
        let mut written = 0u64;
        for (u, unit) in units.iter().enumerate() {
            if u + 1 < units.len() {
                let _ = ahead.send(u + 1);
            }
            match unit {
                Unit::Batch(range) => {
                    let chunk = &plan.tensors[range.clone()];
                    let results: Vec<Result<Vec<f32>>> = pool.install(|| {
                        chunk
                            .par_iter()
                            .map(|t| match streamable(t) {
                                true => merge_streamed_whole(plan, t, sources),
                                false => merge_one(plan, t, sources),
                            })
                            .collect()
                    });
                    for (t, result) in chunk.iter().zip(results) {
                        let data = result?;
                        sink.add(&t.name, &t.shape, t.out_dtype, &data)?;
                        written += (data.len() * t.out_dtype.size()) as u64;
                        bar.inc(1);
                    }
                }
                Unit::Streamed(i) => {
                    let t = &plan.tensors[*i];
                    let parallel_models =
                        (t.models.len() as u64) * 4 * t.numel() as u64 <= opts.max_memory / 2;
                    merge_streamed(plan, t, sources, sink, &pool, block, parallel_models)?;
                    written += (t.numel() * t.out_dtype.size()) as u64;
                    bar.inc(1);
                }
                Unit::Whole(i) => {
                    let t = &plan.tensors[*i];
                    let data = pool.install(|| merge_one(plan, t, sources))?;
                    sink.add(&t.name, &t.shape, t.out_dtype, &data)?;
                    written += (data.len() * t.out_dtype.size()) as u64;
                    bar.inc(1);
                }
            }
        }
        drop(ahead);
        Ok(written)
    })?;
    bar.finish_and_clear();
    let stats = RunStats {
        tensors: plan.tensors.len(),
        bytes_written: written,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(
        "stage `{}`: merged {} tensors in {:.1}s",
        plan.stage,
        stats.tensors,
        stats.seconds
    );
    Ok(stats)
}

/// Run every stage of `planned` in memory, each stage reading the previous stages'
/// memory sinks: what `lamarck merge` would write, without touching disk. Returns the
/// output stage's tensors. `planned` must have been opened with data (not header-only).
pub fn materialize(planned: &RecipePlan, opts: &RunOptions) -> Result<MemorySink> {
    let mut done: Vec<(usize, MemorySink)> = Vec::new();
    for stage in &planned.stages {
        let sources = stage
            .inputs
            .iter()
            .map(|input| match input {
                StageInput::Folder(path) => {
                    planned.opened.get(path).map(|d| d as &dyn TensorSource)
                }
                StageInput::Stage(d) => done
                    .iter()
                    .find(|(i, _)| i == d)
                    .map(|(_, s)| s as &dyn TensorSource),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Invalid {
                tensor: String::new(),
                message: format!(
                    "stage `{}`: an input was not opened or not built (internal error)",
                    stage.plan.stage
                ),
            })?;
        let mut sink = MemorySink::default();
        run(&stage.plan, &sources, &mut sink, opts)?;
        done.push((stage.index, sink));
    }
    done.pop()
        .map(|(_, sink)| sink)
        .ok_or_else(|| Error::Invalid {
            tensor: String::new(),
            message: "no stage to run".into(),
        })
}

/// How the runner takes the plan's tensors, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Consecutive small tensors merged in parallel, each whole.
    Batch(Range<usize>),
    /// One large tensor merged block by block (blocks in parallel).
    Streamed(usize),
    /// One large tensor of a method without a streamed form, merged whole.
    Whole(usize),
}

/// Whether tensor `t` can run through the streamed kernels: a method with a streamed form,
/// and inputs that need no cut or vocabulary re-layout.
fn streamable(plan: &Plan, t: &TensorPlan) -> bool {
    stream::supported(plan.method, plan.compat)
        && !(t.is_embed && plan.vocab.is_some())
        && t.inputs().all(|i| i.shape == t.shape)
}

/// Tensors larger than `block` elements run alone; the others in batches of at most
/// `2 × threads` tensors whose working memory stays within half the budget.
pub(crate) fn schedule(
    plan: &Plan,
    block: usize,
    threads: usize,
    max_memory: u64,
    streamable: &dyn Fn(&TensorPlan) -> bool,
) -> Vec<Unit> {
    let mut units = Vec::new();
    let (mut start, mut used) = (0usize, 0u64);
    let most = 2 * threads.max(1);
    for (i, t) in plan.tensors.iter().enumerate() {
        let large = t.numel() > block;
        let w = t.work_bytes();
        if i > start && (large || i - start == most || used + w > max_memory / 2) {
            units.push(Unit::Batch(start..i));
            (start, used) = (i, 0);
        }
        if large {
            units.push(match streamable(t) {
                true => Unit::Streamed(i),
                false => Unit::Whole(i),
            });
            start = i + 1;
            continue;
        }
        used += w;
    }
    if start < plan.tensors.len() {
        units.push(Unit::Batch(start..plan.tensors.len()));
    }
    units
}

/// Bytes the writer may hold queued under `max_memory`.
pub fn writer_queue_bytes(max_memory: u64) -> u64 {
    (max_memory / 8).clamp(16 << 20, crate::model::stream_writer::DEFAULT_QUEUE_BYTES)
}

/// Estimated peak working memory of [`run`] on `plan` (inputs are read in blocks, so their
/// pages are not counted): the largest unit of work plus the writer's queue.
pub fn estimate_memory(plan: &Plan, opts: &RunOptions, threads: usize) -> u64 {
    let threads = threads.max(1);
    let inputs = plan
        .tensors
        .iter()
        .map(|t| t.inputs().count())
        .max()
        .unwrap_or(1);
    let block = opts.block_elems(threads, inputs);
    let streamable = |t: &TensorPlan| opts.streamed && streamable(plan, t);
    let selects = matches!(
        plan.method.kernel,
        super::methods::Kernel::TaskArithmetic(v)
            if matches!(v.sparsifier, Some(ops::Sparsifier::Magnitude | ops::Sparsifier::MagnitudeOutliers))
    );
    schedule(plan, block, threads, opts.max_memory, &streamable)
        .iter()
        .map(|unit| match unit {
            Unit::Batch(r) => plan.tensors[r.clone()]
                .iter()
                .map(TensorPlan::work_bytes)
                .sum(),
            Unit::Whole(i) => plan.tensors[*i].work_bytes(),
            Unit::Streamed(i) => {
                let t = &plan.tensors[*i];
                let (n, k) = (t.numel() as u64, t.models.len() as u64);
                let in_flight = threads as u64 * block as u64 * (8 * inputs as u64 + 6);
                let masks = k * n.div_ceil(8);
                let selection = if !selects {
                    0
                } else if k * 4 * n <= opts.max_memory / 2 {
                    k * 4 * n
                } else {
                    4 * n
                };
                in_flight + masks + selection
            }
        })
        .max()
        .unwrap_or(0)
        + writer_queue_bytes(opts.max_memory).min(plan.bytes_written())
}

/// Merges reading less than this (bytes) do not prefetch.
const PREFETCH_MIN: u64 = 256 << 20;

/// Start reading the inputs of `unit` in the background.
fn prefetch(plan: &Plan, unit: &Unit, sources: &[&dyn TensorSource]) {
    let range = match unit {
        Unit::Batch(r) => r.clone(),
        Unit::Streamed(i) | Unit::Whole(i) => *i..*i + 1,
    };
    for t in &plan.tensors[range] {
        for input in t.inputs() {
            let n = input.shape.iter().product();
            sources[input.model].prefetch(&input.tensor, 0..n);
        }
    }
}

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
fn merge_streamed_whole(
    plan: &Plan,
    t: &TensorPlan,
    sources: &[&dyn TensorSource],
) -> Result<Vec<f32>> {
    let readers = readers(plan, t, sources);
    let job = block_job(plan, t, &readers);
    let n = t.numel();
    let blocks = stream::blocks(n, n.max(1), stream::granule(plan.method, &t.shape));
    let prepared = stream::prepare(plan.method, &job, &blocks, false)?;
    stream::apply(&prepared, &job, 0..n)
}

/// A large tensor, block by block: prepare (whole-tensor decisions), then merge `threads`
/// blocks at a time and hand them to the sink in order.
fn merge_streamed(
    plan: &Plan,
    t: &TensorPlan,
    sources: &[&dyn TensorSource],
    sink: &mut dyn Sink,
    pool: &rayon::ThreadPool,
    block: usize,
    parallel_models: bool,
) -> Result<()> {
    let readers = readers(plan, t, sources);
    let job = block_job(plan, t, &readers);
    let blocks = stream::blocks(t.numel(), block, stream::granule(plan.method, &t.shape));
    let prepared = pool.install(|| stream::prepare(plan.method, &job, &blocks, parallel_models))?;
    for wave in blocks.chunks(pool.current_num_threads().max(1)) {
        let outs: Vec<Result<Vec<f32>>> = pool.install(|| {
            wave.par_iter()
                .map(|r| stream::apply(&prepared, &job, r.clone()))
                .collect()
        });
        for (r, out) in wave.iter().zip(outs) {
            sink.add_part(&t.name, &t.shape, t.out_dtype, r.start, &out?)?;
        }
    }
    Ok(())
}

/// Read, cut (or re-lay out to the output vocabulary), round to the compute dtype, merge
/// one tensor.
fn merge_one(plan: &Plan, t: &TensorPlan, sources: &[&dyn TensorSource]) -> Result<Vec<f32>> {
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

/// The files of a model folder that are not weights: config, tokenizer, recipe, card.
pub struct FolderFiles<'a> {
    pub plan: &'a Plan,
    /// Configs/folders of `plan.models`, same order.
    pub models: &'a [&'a ModelDir],
    /// This stage's recipe text (written as `mergekit_config.yml` and into the card).
    pub recipe_text: &'a str,
    /// References that are Hugging Face ids (for the card's `base_model:` list).
    pub hub_ids: Vec<String>,
}

/// Merge `plan` into the folder `out` (refused if it exists unless `opts.force`). Inputs
/// must already be open (validated); the folder appears only when complete.
pub fn write_folder(
    files: &FolderFiles,
    out: &Path,
    write: WriteOptions,
    opts: &RunOptions,
) -> Result<(PathBuf, RunStats)> {
    let mut writer = ModelWriter::create(out, write)?;
    // The plan knows every output tensor: stream them to disk as they are merged (a
    // bounded background writer) instead of holding a whole shard in memory.
    let announced: Vec<Announced> = files
        .plan
        .tensors
        .iter()
        .map(|t| Announced {
            name: t.name.clone(),
            dtype: t.out_dtype,
            shape: t.shape.clone(),
        })
        .collect();
    writer.expect_tensors(&announced)?;
    writer.set_queue_bytes(writer_queue_bytes(opts.max_memory));
    let sources: Vec<&dyn TensorSource> = files
        .models
        .iter()
        .map(|m| *m as &dyn TensorSource)
        .collect();
    let mut sink = DirSink { writer };
    let stats = run(files.plan, &sources, &mut sink, opts)?;
    let writer = sink.writer;
    let dir = writer.temp_path().to_path_buf();
    let io = |path: PathBuf| move |source| Error::Io { path, source };
    let plan = files.plan;

    let mut config = files.models[plan.config_donor].config.clone();
    plan.update_config(&mut config);
    config.write(&dir.join("config.json"))?;

    // tokenizer, chat template and generation config travel from the tokenizer donor
    let donor = files.models[plan.tokenizer_donor];
    for name in donor.tag_along_files() {
        let from = donor.path.join(name);
        std::fs::copy(&from, dir.join(name)).map_err(io(from.clone()))?;
    }
    // `tokenizer_source: base` whose tokenizer has ids beyond the base's vocab_size
    if let Some(n) = plan.vocab.as_ref().and_then(|v| v.strip_at) {
        strip_tokenizer_files(&dir, n).map_err(|source| Error::Vocab {
            tensor: "tokenizer.json".into(),
            source,
        })?;
    }
    std::fs::write(dir.join("mergekit_config.yml"), files.recipe_text)
        .map_err(io(dir.join("mergekit_config.yml")))?;
    std::fs::write(dir.join("README.md"), model_card(files, out))
        .map_err(io(dir.join("README.md")))?;
    let path = writer.finish()?;
    Ok((path, stats))
}

/// The README.md model card: front matter (base models, tags), method, models, recipe.
pub fn model_card(files: &FolderFiles, out: &Path) -> String {
    let plan = files.plan;
    let title = out
        .file_name()
        .map_or_else(|| plan.stage.clone(), |n| n.to_string_lossy().into_owned());
    let mut s = String::from("---\n");
    if !files.hub_ids.is_empty() {
        s.push_str("base_model:\n");
        for id in &files.hub_ids {
            s.push_str(&format!("- {id}\n"));
        }
    }
    s.push_str("library_name: transformers\ntags:\n- merge\n- lamarck\n---\n");
    s.push_str(&format!("# {title}\n\nThis is a merge of pre-trained language models created with lamarck {}, which runs mergekit recipes with its own kernels.\n\n", env!("CARGO_PKG_VERSION")));
    s.push_str("## Merge details\n\n");
    let method = plan.method;
    let base = plan
        .tensors
        .iter()
        .find_map(|t| t.base.as_ref())
        .map(|b| plan.models[b.model].clone());
    s.push_str(&format!(
        "- Method: [{}]({})",
        method.pretty_name, method.paper
    ));
    if let Some(b) = &base {
        s.push_str(&format!(", using `{b}` as a base"));
    }
    s.push_str(&format!(
        "\n- Stage: `{}`\n- Seed: {}\n- Compatibility profile: `{}`\n\n### Models merged\n\n",
        plan.stage,
        plan.seed,
        plan.compat.name()
    ));
    let mut used: Vec<usize> = plan
        .tensors
        .iter()
        .flat_map(|t| t.inputs().map(|i| i.model))
        .collect();
    used.sort_unstable();
    used.dedup();
    for m in used {
        s.push_str(&format!("- `{}`\n", plan.models[m]));
    }
    s.push_str("\n### Recipe\n\n```yaml\n");
    s.push_str(files.recipe_text.trim_end());
    s.push_str("\n```\n");
    s
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
