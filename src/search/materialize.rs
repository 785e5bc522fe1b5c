//! Candidates in memory: a recipe's stages run through the merge runner into
//! [`MemorySink`]s, each stage output cached under a content hash of (the stage's rendered
//! document, its name, seed, compat profile, the hashes of its inputs), so a candidate that
//! changes only the last stage's genes reuses every earlier stage.
//!
//! The merged weights' hash ([`hash_memory`] / [`hash_dir`]) is the same for the in-memory
//! candidate and for the folder `lamarck merge` writes from the exported recipe.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{Error, Result};
use crate::merge::run::{run, MemorySink, RunOptions, TensorSource};
use crate::model::writer::f32_to_bytes;
use crate::model::{resolve_model, Architecture, HfConfig, ModelDir, ModelMap, TensorInfo};
use crate::plan::{self, InputModel, Plan, TokenizerOrigin};
use crate::recipe::Recipe;

/// The seed `lamarck merge` uses when neither `--seed` nor the recipe gives one.
pub const DEFAULT_SEED: u64 = 42;

/// One merged stage, in memory.
#[derive(Debug)]
pub struct StageOutput {
    pub key: String,
    pub tensors: MemorySink,
    /// The `config.json` the stage would write.
    pub config: HfConfig,
    /// Folder whose tokenizer files the stage's output carries.
    pub tokenizer_dir: PathBuf,
    /// Its vocabulary, for later stages with `tokenizer_source`.
    pub tokenizer: TokenizerOrigin,
    /// f32 bytes held.
    pub bytes: u64,
}

impl StageOutput {
    fn input_model(&self, reference: &str) -> InputModel {
        let tensors = self
            .tensors
            .tensors
            .iter()
            .map(|(name, (shape, dtype, _))| {
                let info = TensorInfo {
                    name: name.clone(),
                    dtype: *dtype,
                    shape: shape.clone(),
                };
                (name.clone(), info)
            })
            .collect();
        InputModel {
            reference: reference.to_string(),
            config: self.config.clone(),
            tensors,
            tokenizer: self.tokenizer.clone(),
        }
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
    pub seconds: f64,
}

enum Held {
    Dir(Arc<ModelDir>),
    Mem(Arc<StageOutput>),
}

/// Runs recipes into memory, keeping stage outputs within a byte budget (least recently
/// used first out).
pub struct Materializer {
    map: Option<ModelMap>,
    opened: BTreeMap<PathBuf, Arc<ModelDir>>,
    cache: Vec<(Arc<StageOutput>, u64)>,
    cache_limit: u64,
    tick: u64,
    pub threads: usize,
    /// Overrides every stage's seed (the search file's `merge_seed`).
    pub merge_seed: Option<u64>,
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
            cache: Vec::new(),
            cache_limit,
            tick: 0,
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

    /// Bytes held by the stage cache.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.iter().map(|(o, _)| o.bytes).sum()
    }

    fn lookup(&mut self, key: &str) -> Option<Arc<StageOutput>> {
        self.tick += 1;
        let tick = self.tick;
        self.cache
            .iter_mut()
            .find(|(o, _)| o.key == key)
            .map(|(o, t)| {
                *t = tick;
                o.clone()
            })
    }

    fn store(&mut self, out: Arc<StageOutput>) {
        self.tick += 1;
        if out.bytes > self.cache_limit {
            return;
        }
        self.cache.push((out, self.tick));
        while self.cached_bytes() > self.cache_limit {
            let oldest = self
                .cache
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => {
                    self.cache.remove(i);
                }
                None => break,
            }
        }
    }

    /// Merge every stage the recipe's output needs, reusing cached stage outputs.
    pub fn materialize(&mut self, recipe: &Recipe) -> Result<Materialized> {
        let started = Instant::now();
        let target = recipe.output_stage(None)?;
        let order = recipe.build_order(target)?;
        let mut done: BTreeMap<usize, Arc<StageOutput>> = BTreeMap::new();
        let (mut run_count, mut reused) = (0, 0);
        // Position in `order` of each stage's last reader: its output is dropped after that
        // (the cache keeps its own reference within --cache-mem).
        let mut last_use: BTreeMap<usize, usize> = BTreeMap::new();
        for (pos, &i) in order.iter().enumerate() {
            for d in recipe.dependencies(i) {
                last_use.insert(d, pos);
            }
        }
        for (pos, &i) in order.iter().enumerate() {
            done.retain(|d, _| *d == target || last_use.get(d).is_some_and(|&l| l >= pos));
            let stage = &recipe.stages[i];
            let name = recipe.stage_name(i).to_string();
            let seed = self.seed_for(stage);
            let mut inputs = Vec::new();
            let mut held = Vec::new();
            let mut hasher = Sha256::new();
            for part in [
                stage.text.as_str(),
                name.as_str(),
                &seed.to_string(),
                stage.compat.name(),
            ] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part.as_bytes());
            }
            for reference in stage.model_refs() {
                let input_key = match recipe
                    .stage_for_reference(reference)
                    .and_then(|d| done.get(&d))
                {
                    Some(dep) => {
                        inputs.push(dep.input_model(reference));
                        held.push(Held::Mem(dep.clone()));
                        dep.key.clone()
                    }
                    None => {
                        let (path, dir) = self.external(reference)?;
                        inputs.push(InputModel::from_dir(reference, &dir));
                        held.push(Held::Dir(dir));
                        format!("model:{}", path.display())
                    }
                };
                hasher.update(reference.as_bytes());
                hasher.update(input_key.as_bytes());
            }
            let key = hex(&hasher.finalize());
            if let Some(hit) = self.lookup(&key) {
                done.insert(i, hit);
                reused += 1;
                continue;
            }
            let arch = architecture(&inputs, &name)?;
            let plan = plan::build(stage, &name, arch, &inputs, seed)?;
            let sources: Vec<&dyn TensorSource> = held
                .iter()
                .map(|h| match h {
                    Held::Dir(d) => &**d as &dyn TensorSource,
                    Held::Mem(m) => &m.tensors as &dyn TensorSource,
                })
                .collect();
            let mut sink = MemorySink::default();
            let opts = RunOptions {
                threads: self.threads,
                progress: false,
                ..RunOptions::default()
            };
            // The runner logs every stage at info level; a search merges thousands of them.
            tracing::subscriber::with_default(
                tracing::subscriber::NoSubscriber::default(),
                || run(&plan, &sources, &mut sink, &opts),
            )?;
            let out = StageOutput {
                key,
                bytes: sink
                    .tensors
                    .values()
                    .map(|(_, _, d)| d.len() as u64 * 4)
                    .sum(),
                config: output_config(&plan, &inputs),
                tokenizer: plan.output_tokenizer.clone(),
                tokenizer_dir: match &held[plan.tokenizer_donor] {
                    Held::Dir(d) => d.path.clone(),
                    Held::Mem(m) => m.tokenizer_dir.clone(),
                },
                tensors: sink,
            };
            let out = Arc::new(out);
            self.store(out.clone());
            done.insert(i, out);
            run_count += 1;
        }
        let output = done.remove(&target).ok_or_else(|| {
            Error::Invalid("the output stage was not built (internal error)".into())
        })?;
        let hash = hash_memory(&output.tensors);
        Ok(Materialized {
            output,
            hash,
            stages_run: run_count,
            stages_reused: reused,
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
pub fn hash_memory(sink: &MemorySink) -> String {
    let mut h = Sha256::new();
    for (name, (shape, dtype, data)) in &sink.tensors {
        hash_tensor(
            &mut h,
            name,
            dtype.hf_name(),
            shape,
            &f32_to_bytes(data, *dtype),
        );
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
