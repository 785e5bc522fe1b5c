//! Candidates in memory: a recipe's stages run through the one multi-stage executor
//! ([`crate::merge::exec`]) into [`MemorySink`]s (or, for a stage larger than the cache's
//! memory budget, straight into its disk cache file: [`StageFileSink`]), each stage output cached under its stage
//! hash (the stage's rendered document, its name, seed, compat profile, lamarck's kernel
//! version and the identities of its inputs), so a candidate that changes only the last
//! stage's genes reuses every earlier stage.
//!
//! The merged weights' hash ([`hash_memory`] / [`hash_dir`]) is the same for the in-memory
//! candidate and for the folder `lamarck merge` writes from the exported recipe.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::stage_cache::{CacheStats, Held, StageCache};
use super::stage_file::StageFileSink;
use super::{Error, Result};
use crate::merge::exec::{
    execute, folder_fingerprint, hex, identities, Input, StageIdentity, StageStore,
};
use crate::merge::folder::announced;
use crate::merge::run::{
    run, writer_queue_bytes, Error as MergeError, MemorySink, Result as MergeResult, RunOptions,
    TensorSource,
};
use crate::model::safetensors::bytes_to_f32;
use crate::model::{resolve_model, Architecture, HfConfig, ModelDir, ModelMap};
use crate::plan::{plan_recipe, InputModel, Plan, PlannedStage, RecipeOptions, TokenizerOrigin};
use crate::recipe::Recipe;

/// The seed `lamarck merge` uses when neither `--seed` nor the recipe gives one.
pub const DEFAULT_SEED: u64 = 42;

/// One merged stage: its tensors in their output dtype, in memory or mapped from the
/// disk cache ([`Held`]).
#[derive(Debug)]
pub struct StageOutput {
    pub key: String,
    pub tensors: Held,
    /// The `config.json` the stage would write.
    pub config: HfConfig,
    /// Folder whose tokenizer files the stage's output carries.
    pub tokenizer_dir: PathBuf,
    /// Its vocabulary, for later stages with `tokenizer_source`.
    pub tokenizer: TokenizerOrigin,
    /// Bytes of tensor data held (in the output dtype).
    pub bytes: u64,
}

impl StageOutput {
    /// A tensor converted to f32 (the stored values exactly).
    pub fn f32(&self, name: &str) -> Option<Vec<f32>> {
        self.tensors
            .raw(name)
            .map(|(_, dtype, bytes)| bytes_to_f32(bytes, dtype))
    }
}

/// A stage output can feed the next stage: the stored bytes of the range asked are
/// converted to f32 (the one copy a kernel needs, block by block for large tensors).
impl TensorSource for StageOutput {
    fn read_f32(&self, name: &str) -> std::result::Result<Vec<f32>, crate::model::Error> {
        let n = self
            .tensors
            .raw(name)
            .map_or(0, |(_, d, b)| b.len() / d.size());
        self.read_f32_range(name, 0..n)
    }
    fn read_f32_range(
        &self,
        name: &str,
        range: std::ops::Range<usize>,
    ) -> std::result::Result<Vec<f32>, crate::model::Error> {
        let invalid = |message: String| crate::model::Error::Invalid {
            path: PathBuf::from(format!("<stage {}>", self.key)),
            message,
        };
        let (_, dtype, bytes) = self
            .tensors
            .raw(name)
            .ok_or_else(|| invalid(format!("no tensor named `{name}`")))?;
        let size = dtype.size();
        let out = bytes
            .get(range.start * size..range.end * size)
            .map(|b| bytes_to_f32(b, dtype))
            .ok_or_else(|| invalid(format!("tensor `{name}`: elements {range:?} out of range")))?;
        self.tensors.release(name, range);
        Ok(out)
    }
}

/// A materialized candidate.
#[derive(Debug)]
pub struct Materialized {
    pub output: Arc<StageOutput>,
    /// sha256 of the merged weights (see [`hash_memory`]).
    pub hash: String,
    pub stages_run: usize,
    pub stages_reused: usize,
    /// Names of the stages merged (not reused), in build order.
    pub rebuilt: Vec<String>,
    pub seconds: f64,
}

/// Runs recipes into memory through the one executor ([`crate::merge::exec`]), keeping
/// stage outputs in a cache keyed by stage hash.
pub struct Materializer {
    map: Option<ModelMap>,
    opened: BTreeMap<PathBuf, Arc<ModelDir>>,
    /// Fingerprint of each opened input folder (computed once per run).
    fingerprints: BTreeMap<PathBuf, String>,
    cache: StageCache,
    pub threads: usize,
    /// Overrides every stage's seed (the search file's `merge_seed`).
    pub merge_seed: Option<u64>,
}

/// The in-memory [`StageStore`]: the stage cache, and the runner into [`MemorySink`]s.
struct MemoryStore<'a> {
    cache: &'a mut StageCache,
    threads: usize,
    built: Vec<String>,
}

impl StageStore for MemoryStore<'_> {
    type Output = Arc<StageOutput>;

    fn reuse(
        &mut self,
        stage: &PlannedStage,
        id: &StageIdentity,
    ) -> MergeResult<Option<Arc<StageOutput>>> {
        Ok(self.cache.lookup(&id.key, stage))
    }

    fn build(
        &mut self,
        stage: &PlannedStage,
        id: &StageIdentity,
        inputs: &[Input<'_, Arc<StageOutput>>],
    ) -> MergeResult<Arc<StageOutput>> {
        let plan = &stage.plan;
        let sources: Vec<&dyn TensorSource> = inputs.iter().map(|i| i.source()).collect();
        let opts = RunOptions {
            threads: self.threads,
            progress: false,
            ..RunOptions::default()
        };
        let tokenizer_dir = match &inputs[plan.tokenizer_donor] {
            Input::Folder(d) => d.path.clone(),
            Input::Stage(m) => m.tokenizer_dir.clone(),
        };
        let output = |tensors: Held, bytes: u64| {
            Arc::new(StageOutput {
                key: id.key.clone(),
                bytes,
                config: stage.output_config.clone(),
                tokenizer: plan.output_tokenizer.clone(),
                tokenizer_dir: tokenizer_dir.clone(),
                tensors,
            })
        };
        // The runner logs every stage at info level; a search merges thousands of them.
        let quiet = tracing::subscriber::NoSubscriber::default;
        let stored = match self.cache.stream_dir(plan.bytes_written()) {
            // Larger than --cache-mem: straight into its disk cache file as it is merged.
            Some(dir) => {
                let announced = announced(plan);
                let queue = writer_queue_bytes(opts.max_memory);
                let mut sink =
                    StageFileSink::create(dir, &id.key, &tokenizer_dir, &announced, queue)
                        .map_err(cache_error(&plan.stage))?;
                tracing::subscriber::with_default(quiet(), || {
                    run(plan, &sources, &mut sink, &opts)
                })?;
                let mapped = sink.finish().map_err(cache_error(&plan.stage))?;
                let bytes = plan.bytes_written();
                self.cache.store_streamed(output(Held::Disk(mapped), bytes))
            }
            None => {
                let mut sink = MemorySink::default();
                tracing::subscriber::with_default(quiet(), || {
                    run(plan, &sources, &mut sink, &opts)
                })?;
                let bytes = sink.bytes();
                // The cache's copy: the mapped file if it spilled at once, so the merged
                // buffer is freed now rather than kept alive until the last stage reading
                // it has run.
                self.cache.store(output(Held::Memory(sink), bytes))
            }
        };
        self.built.push(plan.stage.clone());
        stored.map_err(cache_error(&plan.stage))
    }
}

/// A stage cache error as a merge error of stage `stage`.
fn cache_error(stage: &str) -> impl Fn(Error) -> MergeError + '_ {
    move |e| match e {
        Error::Io { path, source } => MergeError::Io { path, source },
        Error::Model(e) => MergeError::Model(e),
        Error::Merge(e) => e,
        e => MergeError::Model(crate::model::Error::Invalid {
            path: PathBuf::from("<stage cache>"),
            message: format!("stage `{stage}`: {e}"),
        }),
    }
}

impl Materializer {
    pub fn new(
        map: Option<ModelMap>,
        cache_limit: u64,
        threads: usize,
        merge_seed: Option<u64>,
    ) -> Materializer {
        Materializer {
            map,
            opened: BTreeMap::new(),
            fingerprints: BTreeMap::new(),
            cache: StageCache::new(cache_limit),
            threads,
            merge_seed,
        }
    }

    /// The seed stage `stage` is merged with.
    pub fn seed_for(&self, stage: &crate::recipe::Stage) -> u64 {
        self.merge_seed.or(stage.seed).unwrap_or(DEFAULT_SEED)
    }

    /// Resolve and open (validate) an external model once.
    pub fn external(&mut self, reference: &str) -> Result<(PathBuf, Arc<ModelDir>)> {
        let path = resolve_model(reference, self.map.as_ref())?;
        if let Some(d) = self.opened.get(&path) {
            return Ok((path, d.clone()));
        }
        let dir = Arc::new(ModelDir::open(&path)?);
        self.opened.insert(path.clone(), dir.clone());
        Ok((path, dir))
    }

    /// Spill stage outputs beyond the memory budget to `dir` (see [`super::stage_cache`]),
    /// at most `disk_limit` bytes there; files a previous run left are re-used.
    pub fn with_disk_cache(mut self, dir: &Path, disk_limit: u64) -> Result<Materializer> {
        self.cache =
            std::mem::replace(&mut self.cache, StageCache::new(0)).with_disk(dir, disk_limit)?;
        Ok(self)
    }

    /// Bytes held by the stage cache in memory.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.mem_bytes()
    }

    /// Bytes held by the stage cache on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.cache.disk_bytes()
    }

    /// Peaks and counts of the stage cache so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats
    }

    /// Merge every stage the recipe's output needs, reusing cached stage outputs whose
    /// stage hash matches.
    pub fn materialize(&mut self, recipe: &Recipe) -> Result<Materialized> {
        let started = Instant::now();
        let target = recipe.output_stage(None)?;
        let opts = RecipeOptions {
            map: self.map.as_ref(),
            headers_only: false,
            seed: self.merge_seed,
            default_seed: DEFAULT_SEED,
            opened: Some(&self.opened),
        };
        let planned = plan_recipe(recipe, target, &opts)?;
        for (path, dir) in &planned.opened {
            self.opened
                .entry(path.clone())
                .or_insert_with(|| dir.clone());
        }
        let fingerprints = &mut self.fingerprints;
        let ids = identities(recipe, &planned, &mut |path, dir| {
            if let Some(f) = fingerprints.get(path) {
                return Ok(f.clone());
            }
            let f = folder_fingerprint(dir)?;
            fingerprints.insert(path.to_path_buf(), f.clone());
            Ok(f)
        })?;
        let mut store = MemoryStore {
            cache: &mut self.cache,
            threads: self.threads,
            built: Vec::new(),
        };
        let done = execute(&planned, &ids, &mut store)?;
        let rebuilt = store.built;
        let hash = hash_memory(&done.output.tensors);
        Ok(Materialized {
            output: done.output,
            hash,
            stages_run: done.built,
            stages_reused: done.reused,
            rebuilt,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The `config.json` a stage writes: its donor's, with the layer count and dtype it sets.
pub(crate) fn output_config(plan: &Plan, inputs: &[InputModel]) -> HfConfig {
    let mut config = inputs[plan.config_donor].config.clone();
    plan.update_config(&mut config);
    config
}

/// Every input must share one architecture.
pub fn architecture(inputs: &[InputModel], stage: &str) -> Result<&'static Architecture> {
    let mut found: Option<(&'static Architecture, &str)> = None;
    for m in inputs {
        let arch = Architecture::for_config(&m.config)?;
        match found {
            Some((a, first)) if a.name != arch.name => {
                return Err(Error::Invalid(format!(
                "stage `{stage}`: models `{first}` ({}) and `{}` ({}) have different architectures",
                a.name, m.reference, arch.name
            )))
            }
            None => found = Some((arch, &m.reference)),
            _ => {}
        }
    }
    found
        .map(|(a, _)| a)
        .ok_or_else(|| Error::Invalid(format!("stage `{stage}` has no models")))
}

fn hash_tensor(h: &mut Sha256, name: &str, dtype: &str, shape: &[usize], bytes: &[u8]) {
    h.update((name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    h.update(dtype.as_bytes());
    h.update((shape.len() as u64).to_le_bytes());
    for d in shape {
        h.update((*d as u64).to_le_bytes());
    }
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// sha256 over the tensors in name order: name, dtype, shape and the stored bytes.
pub fn hash_memory(held: &Held) -> String {
    let mut h = Sha256::new();
    for name in held.names() {
        if let Some((shape, dtype, bytes)) = held.raw(name) {
            hash_tensor(&mut h, name, dtype.hf_name(), shape, bytes);
        }
    }
    hex(&h.finalize())
}

/// The same hash for a model folder (what `lamarck merge` wrote).
pub fn hash_dir(path: &Path) -> Result<String> {
    let dir = ModelDir::open(path)?;
    let mut h = Sha256::new();
    for name in dir.tensor_names() {
        let info = dir.info(name).ok_or_else(|| {
            Error::Invalid(format!("{}: tensor `{name}` vanished", path.display()))
        })?;
        hash_tensor(
            &mut h,
            name,
            info.dtype.hf_name(),
            &info.shape,
            dir.raw(name)?,
        );
    }
    Ok(hex(&h.finalize()))
}
