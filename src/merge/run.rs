//! The runner: executes a [`Plan`] tensor by tensor — read f32 inputs, cut embeddings to
//! the planned shape, call the method's kernel, hand the result to a [`Sink`].
//!
//! Tensors are merged in parallel (rayon) in fixed-size batches ([`schedule`]) and handed
//! to the sink in plan order, and every random stream is keyed by (seed, stage, tensor), so
//! the output is identical for any thread count. The same code path feeds a model folder
//! ([`DirSink`]) or memory ([`MemorySink`], for search candidates that never touch disk).
//! One tensor's merge is in [`super::tensor`]; sources and sinks in [`super::sink`]; the
//! folder around the weights in [`super::folder`]; multi-stage recipes in [`super::exec`].
// Errors are cold and carry the file, path, model and tensor a user needs; their size
// does not matter, so clippy's result_large_err is allowed here.
#![allow(clippy::result_large_err)]
use std::ops::Range;
use std::path::PathBuf;

use rayon::prelude::*;

use super::tensor::{merge_one, merge_streamed, merge_streamed_whole, prepare_streamed};
use super::{ops, stream};
use crate::model::writer::f32_to_bytes;
use crate::plan::{Plan, TensorPlan};

pub use super::folder::{model_card, write_folder, FolderFiles};
pub use super::sink::{DirSink, MemorySink, Sink, TensorSource};

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
    #[error(transparent)]
    Lock(#[from] super::lock::Error),
    #[error("cannot start {threads} worker threads: {message}")]
    Threads { threads: usize, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    let memory = UnitMemory::new(plan, opts, threads);
    let block = memory.block;
    let streamable = |t: &TensorPlan| opts.streamed && streamable(plan, t);
    let units = schedule(plan, block, threads, opts.max_memory, &streamable);
    let estimate = memory.peak(&units);
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
        // The next large tensor's decisions, prepared while the unit before it merged.
        let mut ready: Option<(usize, Result<stream::Prepared>)> = None;
        for (u, unit) in units.iter().enumerate() {
            if u + 1 < units.len() {
                let _ = ahead.send(u + 1);
            }
            // Preparing a tensor is partly serial (TIES' top-k replays torch's sort), so
            // the next large tensor is prepared on the pool while this unit merges, when
            // both fit in the memory budget together.
            let next = match units.get(u + 1) {
                Some(&Unit::Streamed(j)) if memory.overlaps(units, u) => Some(j),
                _ => None,
            };
            let mut next_prepared = None;
            let this_prepared = ready.take();
            pool.in_place_scope(|s| -> Result<()> {
                if let Some(j) = next {
                    let (t, slot) = (&plan.tensors[j], &mut next_prepared);
                    let holding = memory.holding(t);
                    s.spawn(move |_| {
                        *slot = Some(prepare_streamed(plan, t, sources, block, holding));
                    });
                }
                match unit {
                    Unit::Batch(range) => {
                        let chunk = &plan.tensors[range.clone()];
                        // merged and encoded in parallel; the sink only queues bytes
                        let results: Vec<Result<Vec<u8>>> = pool.install(|| {
                            chunk
                                .par_iter()
                                .map(|t| {
                                    let data = match streamable(t) {
                                        true => merge_streamed_whole(plan, t, sources),
                                        false => merge_one(plan, t, sources),
                                    }?;
                                    Ok(f32_to_bytes(&data, t.out_dtype))
                                })
                                .collect()
                        });
                        for (t, result) in chunk.iter().zip(results) {
                            let bytes = result?;
                            written += bytes.len() as u64;
                            sink.add(&t.name, &t.shape, t.out_dtype, bytes)?;
                            bar.inc(1);
                        }
                    }
                    &Unit::Streamed(i) => {
                        let t = &plan.tensors[i];
                        let prepared = match this_prepared {
                            Some((k, prepared)) if k == i => prepared?,
                            _ => pool.install(|| {
                                prepare_streamed(plan, t, sources, block, memory.holding(t))
                            })?,
                        };
                        merge_streamed(plan, t, sources, sink, &pool, block, &prepared)?;
                        written += (t.numel() * t.out_dtype.size()) as u64;
                        bar.inc(1);
                    }
                    &Unit::Whole(i) => {
                        let t = &plan.tensors[i];
                        let bytes = pool.install(|| {
                            merge_one(plan, t, sources).map(|d| f32_to_bytes(&d, t.out_dtype))
                        })?;
                        written += bytes.len() as u64;
                        sink.add(&t.name, &t.shape, t.out_dtype, bytes)?;
                        bar.inc(1);
                    }
                }
                Ok(())
            })?;
            ready = next.zip(next_prepared);
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
/// pages are not counted): the largest unit of work (with the next tensor's preparation,
/// where the runner overlaps them) plus the writer's queue.
pub fn estimate_memory(plan: &Plan, opts: &RunOptions, threads: usize) -> u64 {
    let memory = UnitMemory::new(plan, opts, threads);
    let streamable = |t: &TensorPlan| opts.streamed && streamable(plan, t);
    memory.peak(&schedule(
        plan,
        memory.block,
        memory.threads,
        opts.max_memory,
        &streamable,
    ))
}

/// The working memory of the runner's units of one plan.
struct UnitMemory<'a> {
    plan: &'a Plan,
    max_memory: u64,
    threads: usize,
    block: usize,
    inputs: usize,
    /// TIES/breadcrumbs: a magnitude selection holds 4 bytes per element per model.
    selects: bool,
    /// TIES/breadcrumbs/DELLA: the prepare may hold the sparsified task vectors (bf16, 2
    /// bytes per element per model).
    sparsifies: bool,
    writer: u64,
}

impl<'a> UnitMemory<'a> {
    fn new(plan: &'a Plan, opts: &RunOptions, threads: usize) -> UnitMemory<'a> {
        use crate::registry::Sparsifier::{DellaMagprune, Magnitude, MagnitudeOutliers};
        let threads = threads.max(1);
        let sparsifier = match plan.method.kernel {
            super::methods::Kernel::TaskArithmetic(v) => v.sparsifier,
            _ => None,
        };
        let inputs = plan
            .tensors
            .iter()
            .map(|t| t.inputs().count())
            .max()
            .unwrap_or(1);
        UnitMemory {
            plan,
            max_memory: opts.max_memory,
            threads,
            block: opts.block_elems(threads, inputs),
            inputs,
            selects: matches!(sparsifier, Some(Magnitude | MagnitudeOutliers)),
            sparsifies: matches!(
                sparsifier,
                Some(Magnitude | MagnitudeOutliers | DellaMagprune)
            ),
            writer: writer_queue_bytes(opts.max_memory).min(plan.bytes_written()),
        }
    }

    /// Bytes one unit holds while it merges.
    fn of(&self, unit: &Unit) -> u64 {
        let tensors = &self.plan.tensors;
        match unit {
            Unit::Batch(r) => tensors[r.clone()].iter().map(TensorPlan::work_bytes).sum(),
            Unit::Whole(i) => tensors[*i].work_bytes(),
            Unit::Streamed(i) => {
                let t = &tensors[*i];
                let (n, k) = (t.numel() as u64, t.models.len() as u64);
                let in_flight =
                    self.threads as u64 * self.block as u64 * (8 * self.inputs as u64 + 6);
                let masks = k * n.div_ceil(8);
                let selection = if !self.selects {
                    0
                } else if self.parallel_models(t) {
                    k * 4 * n
                } else {
                    4 * n
                };
                let held = match self.holds_task_vectors(t) {
                    true => k * 2 * n,
                    false => 0,
                };
                in_flight + masks + selection + held
            }
        }
    }

    /// What the prepare of streamed tensor `t` may hold.
    fn holding(&self, t: &TensorPlan) -> stream::Holding {
        stream::Holding {
            parallel_models: self.parallel_models(t),
            task_vectors: self.holds_task_vectors(t),
        }
    }

    /// Whether the prepare keeps `t`'s sparsified task vectors (bf16: 2 bytes per element
    /// and model) for its apply, within a quarter of the budget.
    fn holds_task_vectors(&self, t: &TensorPlan) -> bool {
        self.sparsifies
            && t.compute_dtype == crate::model::DType::BF16
            && t.models.len() as u64 * 2 * t.numel() as u64 <= self.max_memory / 4
    }

    /// Whether the task vectors of `t`'s models are prepared at once (each TIES/breadcrumbs
    /// selection holds 4 bytes per element), within half the budget.
    fn parallel_models(&self, t: &TensorPlan) -> bool {
        t.models.len() as u64 * 4 * t.numel() as u64 <= self.max_memory / 2
    }

    /// Whether the runner prepares unit `u + 1` (a streamed tensor) while unit `u` merges:
    /// only when both fit in the budget together.
    fn overlaps(&self, units: &[Unit], u: usize) -> bool {
        match units.get(u + 1) {
            Some(next @ Unit::Streamed(_)) => {
                self.of(&units[u]) + self.of(next) + self.writer <= self.max_memory
            }
            _ => false,
        }
    }

    /// The estimated peak over `units`.
    fn peak(&self, units: &[Unit]) -> u64 {
        (0..units.len())
            .map(|u| match self.overlaps(units, u) {
                true => self.of(&units[u]) + self.of(&units[u + 1]),
                false => self.of(&units[u]),
            })
            .max()
            .unwrap_or(0)
            + self.writer
    }
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

#[cfg(test)]
mod tests {
    use super::{schedule, Unit};
    use crate::plan::tests::{plan, qwen, SLERP_SLICES};

    #[test]
    fn the_runner_takes_every_tensor_in_order_and_large_ones_alone() {
        let models = [qwen("a", 4, 4096, false), qwen("b", 4, 4096, false)];
        let p = plan(SLERP_SLICES, &models, None).unwrap();
        let embed =
            |i: usize| p.tensors[i].name.contains("embed") || p.tensors[i].name.contains("lm_head");
        // a block as large as the largest non-vocabulary tensor: only the vocabulary ones stream
        let block = (0..p.tensors.len())
            .filter(|&i| !embed(i))
            .map(|i| p.tensors[i].numel())
            .max()
            .unwrap();
        for threads in [1, 2, 8] {
            for max_memory in [1u64 << 20, 1 << 40] {
                let units = schedule(&p, block, threads, max_memory, &|_| true);
                let flat: Vec<usize> = units
                    .iter()
                    .flat_map(|u| match u {
                        Unit::Batch(r) => r.clone().collect::<Vec<_>>(),
                        Unit::Streamed(i) | Unit::Whole(i) => vec![*i],
                    })
                    .collect();
                assert_eq!(flat, (0..p.tensors.len()).collect::<Vec<_>>());
                for u in &units {
                    match u {
                        Unit::Batch(r) => {
                            assert!(r.len() <= 2 * threads);
                            assert!(
                                r.clone().all(|i| !embed(i)),
                                "a vocabulary tensor in a batch"
                            );
                            let work: u64 =
                                p.tensors[r.clone()].iter().map(|t| t.work_bytes()).sum();
                            assert!(r.len() == 1 || work <= max_memory / 2);
                        }
                        Unit::Streamed(i) => assert!(embed(*i)),
                        Unit::Whole(_) => panic!("every tensor is streamable here"),
                    }
                }
            }
        }
    }
}
