//! Scoring: a candidate's merged tensors (or a parent's folder) → per-item outcomes →
//! per-objective scores and the fitness Σ weight × score, through the same evaluator as
//! `lamarck eval`. Every item goes through the [`ResponseCache`] first; the model is built
//! only when some asked item is not cached.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cache::{CachedItem, ItemKey, ResponseCache};
use super::materialize::StageOutput;
use super::spec::{EvalSettings, Objective};
use super::{Error, Result};
use crate::eval::config::qwen2_config;
use crate::eval::run::{evaluate_task_items, EvalOptions};
use crate::eval::task::{data, OutputType, TaskSpec};
use crate::eval::{parse_device, parse_dtype, Qwen2Lm, TextTokenizer};

/// One item's outcome, as written to `items.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct ItemLine {
    pub candidate: String,
    pub objective: String,
    pub task: String,
    pub split: String,
    pub doc_id: usize,
    pub correct: bool,
    pub score: f64,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
}

/// One scored item.
#[derive(Debug, Clone)]
pub struct ItemResult {
    /// Index into the search file's objectives.
    pub objective: usize,
    pub doc_id: usize,
    /// The objective's metric on this item.
    pub score: f64,
    pub item: CachedItem,
    /// Answered by the cache (no model call).
    pub cached: bool,
}

/// Scores of one model.
#[derive(Debug, Clone)]
pub struct Scores {
    /// One per objective, in the search file's order.
    pub values: Vec<f64>,
    pub fitness: f64,
    pub items: Vec<ItemResult>,
    pub seconds: f64,
}

/// What a model is scored from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Merged tensors in memory.
    Memory(&'a StageOutput),
    /// A model folder, with the tokenizer of another folder.
    Dir { dir: &'a Path, tokenizer: &'a Path },
    /// No model: every asked item must be in the cache (the racing incumbent's items).
    CacheOnly,
}

/// One model being scored, possibly over several calls (racing scores it in chunks): the
/// model is built on the first call that misses the cache, then kept.
pub struct Subject<'a> {
    source: Source<'a>,
    weights: String,
    lm: Option<Qwen2Lm>,
}

impl<'a> Subject<'a> {
    /// `weights`: the sha256 of the model's weights (the cache key).
    pub fn new(source: Source<'a>, weights: &str) -> Subject<'a> {
        Subject {
            source,
            weights: weights.to_string(),
            lm: None,
        }
    }
    /// Whether the model was built (some item was not in the cache).
    pub fn model_built(&self) -> bool {
        self.lm.is_some()
    }
}

struct ObjectiveTask {
    objective: Objective,
    spec: TaskSpec,
    /// The metric the objective reads.
    metric: String,
    /// Filled on first use: split, number of items, content hash.
    ready: Option<(String, usize, String)>,
}

/// The objectives' tasks, loaded once, and the evaluation settings.
pub struct Scorer {
    tasks: Vec<ObjectiveTask>,
    dtype: candle_core::DType,
    device: Device,
    batch_size: usize,
    decoding: String,
    tokenizers: BTreeMap<PathBuf, TextTokenizer>,
    /// Override every objective's split (the report's held-out split).
    split: Option<String>,
    limit_override: Option<Option<usize>>,
}

/// The first metric of a task, as `evaluate_task` names it.
fn first_metric(spec: &TaskSpec) -> String {
    let name = spec
        .metrics
        .first()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    match (&spec.output_type, spec.filters.first()) {
        (OutputType::GenerateUntil { .. }, Some(f)) => format!("{name},{}", f.name),
        _ => name,
    }
}

impl Scorer {
    pub fn new(objectives: &[Objective], settings: &EvalSettings) -> Result<Scorer> {
        // One bar for the whole search, not one per task and candidate.
        crate::eval::run::SHOW_PROGRESS.store(false, std::sync::atomic::Ordering::Relaxed);
        let mut tasks = Vec::new();
        for o in objectives {
            let spec = TaskSpec::from_file(&o.task)?;
            let metric = match &o.metric {
                Some(m) => {
                    if !spec
                        .metrics
                        .iter()
                        .any(|s| s.name == *m || m.starts_with(&format!("{},", s.name)))
                    {
                        return Err(Error::Invalid(format!(
                            "objective `{}`: task {} has no metric `{m}`; it has {}",
                            o.name,
                            o.task.display(),
                            spec.metrics
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    m.clone()
                }
                None => first_metric(&spec),
            };
            spec.eval_split(o.split.as_deref())?;
            tasks.push(ObjectiveTask {
                objective: o.clone(),
                spec,
                metric,
                ready: None,
            });
        }
        Ok(Scorer {
            tasks,
            dtype: parse_dtype(&settings.dtype)?,
            device: parse_device(&settings.device)?,
            batch_size: settings.batch_size,
            decoding: format!(
                "{}/{}/batch{}",
                settings.dtype, settings.device, settings.batch_size
            ),
            tokenizers: BTreeMap::new(),
            split: None,
            limit_override: None,
        })
    }

    /// Score on `split` instead of each objective's own split, with `limit` items per task
    /// (`None`: all of them).
    pub fn on_split(mut self, split: &str, limit: Option<usize>) -> Scorer {
        self.split = Some(split.to_string());
        self.limit_override = Some(limit);
        for t in &mut self.tasks {
            t.ready = None;
        }
        self
    }

    /// Resolve split, item count and content hash of every objective (reads the split's
    /// data file, and only that split's).
    fn ready(&mut self) -> Result<()> {
        for t in &mut self.tasks {
            if t.ready.is_some() {
                continue;
            }
            let split = t
                .spec
                .eval_split(self.split.as_deref().or(t.objective.split.as_deref()))?;
            let limit = self.limit_override.unwrap_or(t.objective.limit);
            let mut n = data::load_split(&t.spec, &split)?.len();
            if let Some(l) = limit {
                n = n.min(l);
            }
            let mut h = Sha256::new();
            let task_file = &t.spec.file;
            h.update(std::fs::read(task_file).map_err(|e| Error::io(task_file, e))?);
            for data_file in data::split_files(&t.spec, &split)? {
                h.update([0u8]);
                h.update(std::fs::read(&data_file).map_err(|e| Error::io(&data_file, e))?);
            }
            let hash: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            t.ready = Some((split, n, hash));
        }
        Ok(())
    }

    /// Items per objective on the scored split.
    pub fn item_counts(&mut self) -> Result<Vec<usize>> {
        self.ready()?;
        Ok(self
            .tasks
            .iter()
            .map(|t| t.ready.as_ref().map_or(0, |r| r.1))
            .collect())
    }

    /// The split each objective is scored on.
    pub fn splits(&mut self) -> Result<Vec<String>> {
        self.ready()?;
        Ok(self
            .tasks
            .iter()
            .map(|t| t.ready.as_ref().map_or(String::new(), |r| r.0.clone()))
            .collect())
    }

    /// Every item of every objective.
    pub fn all_items(&mut self) -> Result<Vec<(usize, Vec<usize>)>> {
        Ok(self
            .item_counts()?
            .into_iter()
            .enumerate()
            .map(|(o, n)| (o, (0..n).collect()))
            .collect())
    }

    fn tokenizer(&mut self, dir: &Path) -> Result<&TextTokenizer> {
        if !self.tokenizers.contains_key(dir) {
            let tok = TextTokenizer::from_dir(dir)?;
            self.tokenizers.insert(dir.to_path_buf(), tok);
        }
        Ok(&self.tokenizers[dir])
    }

    fn build(&self, source: Source) -> Result<Qwen2Lm> {
        match source {
            Source::Memory(out) => {
                let config = qwen2_config(&out.config, Path::new("<merged config.json>"))?;
                // One copy per tensor: candle's storage owns its buffer, so the stored bytes
                // (the stage's memory buffer, or pages of its mapped disk-cache file) are
                // copied into it as they are, in their dtype, then converted only when the
                // evaluation dtype differs. No f32 copy of the whole model is made.
                let mut tensors = HashMap::new();
                for name in out.tensors.names() {
                    let Some((shape, dtype, bytes)) = out.tensors.raw(name) else {
                        continue;
                    };
                    let t =
                        Tensor::from_raw_buffer(bytes, candle_dtype(dtype), shape, &self.device)
                            .and_then(|t| t.to_dtype(self.dtype))
                            .map_err(|e| Error::Invalid(format!("tensor `{name}`: {e}")))?;
                    out.tensors.release(name, 0..bytes.len() / dtype.size());
                    tensors.insert(name.to_string(), t);
                }
                Ok(Qwen2Lm::from_tensors(
                    tensors,
                    &config,
                    self.dtype,
                    &self.device,
                )?)
            }
            Source::Dir { dir, .. } => Ok(Qwen2Lm::from_dir(dir, self.dtype, &self.device)?),
            Source::CacheOnly => Err(Error::Invalid(
                "item not in the response cache and no model to score it".into(),
            )),
        }
    }

    /// Score the items `want` (objective index, doc ids) of `subject`: cached ones from
    /// `cache`, the rest with the model (then added to the cache, one write per
    /// objective). Results come in the order asked.
    pub fn score_items(
        &mut self,
        subject: &mut Subject,
        want: &[(usize, Vec<usize>)],
        cache: &mut ResponseCache,
    ) -> Result<Vec<ItemResult>> {
        self.ready()?;
        let mut out = Vec::new();
        for (o, ids) in want {
            let t = self.tasks.get(*o).ok_or_else(|| {
                Error::Invalid(format!("objective {o} asked; the search has fewer"))
            })?;
            let Some((split, _, task_hash)) = t.ready.clone() else {
                continue;
            };
            let decoding = self.decoding.clone();
            let key = |doc_id: usize| ItemKey {
                weights: subject.weights.clone(),
                task: task_hash.clone(),
                split: split.clone(),
                doc_id,
                decoding: decoding.clone(),
            };
            let mut got: BTreeMap<usize, (CachedItem, bool)> = BTreeMap::new();
            let mut missing = Vec::new();
            for &d in ids {
                match cache.get(&key(d)) {
                    Some(item) => {
                        got.insert(d, (item.clone(), true));
                    }
                    None => missing.push(d),
                }
            }
            missing.sort_unstable();
            missing.dedup();
            if !missing.is_empty() {
                if subject.lm.is_none() {
                    subject.lm = Some(self.build(subject.source)?);
                }
                let tok_dir = match subject.source {
                    Source::Memory(out) => out.tokenizer_dir.clone(),
                    Source::Dir { tokenizer, .. } => tokenizer.to_path_buf(),
                    Source::CacheOnly => PathBuf::new(),
                };
                self.tokenizer(&tok_dir)?;
                let tok = &self.tokenizers[&tok_dir];
                let t = &self.tasks[*o];
                let opts = EvalOptions {
                    split: Some(split.clone()),
                    limit: self.limit_override.unwrap_or(t.objective.limit),
                    batch_size: self.batch_size,
                    apply_chat_template: false,
                };
                let Some(lm) = subject.lm.as_mut() else {
                    continue;
                };
                let (_, records) = evaluate_task_items(lm, tok, &t.spec, &opts, Some(&missing))?;
                let mut fresh = Vec::new();
                for r in records {
                    let item = CachedItem {
                        task: r.task,
                        target: r.target,
                        generated: r.generated,
                        metrics: r.metrics,
                    };
                    fresh.push((key(r.doc_id), item.clone()));
                    got.insert(r.doc_id, (item, false));
                }
                cache.misses += fresh.len() as u64;
                cache.insert(fresh)?;
            }
            let t = &self.tasks[*o];
            for &d in ids {
                let (item, cached) = got.get(&d).cloned().ok_or_else(|| {
                    Error::Invalid(format!(
                        "task `{}`: item {d} was asked and not scored",
                        t.spec.name
                    ))
                })?;
                if cached {
                    cache.hits += 1;
                }
                let score = item.metrics.get(&t.metric).copied().ok_or_else(|| {
                    Error::Invalid(format!(
                        "task `{}` produced no metric `{}`",
                        t.spec.name, t.metric
                    ))
                })?;
                out.push(ItemResult {
                    objective: *o,
                    doc_id: d,
                    score,
                    item,
                    cached,
                });
            }
        }
        Ok(out)
    }

    /// Score every item of every objective.
    pub fn score_all(
        &mut self,
        subject: &mut Subject,
        cache: &mut ResponseCache,
    ) -> Result<Scores> {
        let started = std::time::Instant::now();
        let want = self.all_items()?;
        let items = self.score_items(subject, &want, cache)?;
        let (values, fitness) = self.summarize(&items);
        Ok(Scores {
            values,
            fitness,
            items,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Per-objective means (items in the order given) and Σ weight × mean.
    pub fn summarize(&self, items: &[ItemResult]) -> (Vec<f64>, f64) {
        let mut values = Vec::new();
        let mut fitness = 0.0;
        for (o, t) in self.tasks.iter().enumerate() {
            let xs: Vec<f64> = items
                .iter()
                .filter(|r| r.objective == o)
                .map(|r| r.score)
                .collect();
            let value = if xs.is_empty() {
                f64::NAN
            } else {
                xs.iter().sum::<f64>() / xs.len() as f64
            };
            fitness += t.objective.weight * value;
            values.push(value);
        }
        (values, fitness)
    }

    /// `items.jsonl` lines of one scored model.
    pub fn item_lines(&mut self, candidate: &str, items: &[ItemResult]) -> Result<Vec<ItemLine>> {
        let splits = self.splits()?;
        Ok(items
            .iter()
            .map(|r| ItemLine {
                candidate: candidate.to_string(),
                objective: self.tasks[r.objective].objective.name.clone(),
                task: r.item.task.clone(),
                split: splits[r.objective].clone(),
                doc_id: r.doc_id,
                correct: r.score >= 1.0,
                score: r.score,
                target: r.item.target.clone(),
                generated: r.item.generated.clone(),
            })
            .collect())
    }
}

fn candle_dtype(dtype: crate::model::DType) -> candle_core::DType {
    match dtype {
        crate::model::DType::F32 => candle_core::DType::F32,
        crate::model::DType::F16 => candle_core::DType::F16,
        crate::model::DType::BF16 => candle_core::DType::BF16,
    }
}
