//! Scoring: a candidate's merged tensors (or a parent's folder) → per-objective scores and
//! the fitness Σ weight × score, through the same evaluator as `lamarck eval`.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::materialize::StageOutput;
use super::spec::{EvalSettings, Objective};
use super::{Error, Result};
use crate::eval::config::qwen2_config;
use crate::eval::run::{evaluate_task, EvalOptions, ItemRecord};
use crate::eval::task::TaskSpec;
use crate::eval::{parse_device, parse_dtype, Qwen2Lm, TextTokenizer};

/// One item's outcome, as written to `items.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct ItemLine {
    pub candidate: String,
    pub objective: String,
    pub task: String,
    pub doc_id: usize,
    pub correct: bool,
    pub score: f64,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
}

/// Scores of one model.
#[derive(Debug, Clone)]
pub struct Scores {
    /// One per objective, in the search file's order.
    pub values: Vec<f64>,
    pub fitness: f64,
    /// (objective, metric, record) per item.
    pub items: Vec<(String, String, ItemRecord)>,
    pub seconds: f64,
}

/// The objectives' tasks, loaded once, and the evaluation settings.
pub struct Scorer {
    tasks: Vec<(Objective, TaskSpec, String)>,
    dtype: candle_core::DType,
    device: Device,
    batch_size: usize,
    tokenizers: BTreeMap<PathBuf, TextTokenizer>,
    /// Override every objective's split (the report's held-out split).
    split: Option<String>,
    limit_override: Option<Option<usize>>,
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
                None => String::new(),
            };
            spec.eval_split(o.split.as_deref())?;
            tasks.push((o.clone(), spec, metric));
        }
        Ok(Scorer {
            tasks,
            dtype: parse_dtype(&settings.dtype)?,
            device: parse_device(&settings.device)?,
            batch_size: settings.batch_size,
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
        self
    }

    fn tokenizer(&mut self, dir: &Path) -> Result<&TextTokenizer> {
        if !self.tokenizers.contains_key(dir) {
            let tok = TextTokenizer::from_dir(dir)?;
            self.tokenizers.insert(dir.to_path_buf(), tok);
        }
        Ok(&self.tokenizers[dir])
    }

    /// Score merged tensors held in memory.
    pub fn score_output(&mut self, out: &StageOutput) -> Result<Scores> {
        let started = std::time::Instant::now();
        let json = serde_json::Value::Object(out.config.raw.clone());
        let config = qwen2_config(&json, Path::new("<merged config.json>"))?;
        let mut tensors = HashMap::new();
        for (name, (shape, _, data)) in &out.tensors.tensors {
            let t = Tensor::from_slice(data, shape.as_slice(), &self.device)
                .and_then(|t| t.to_dtype(self.dtype))
                .map_err(|e| Error::Invalid(format!("tensor `{name}`: {e}")))?;
            tensors.insert(name.clone(), t);
        }
        let lm = Qwen2Lm::from_tensors(tensors, &config, self.dtype, &self.device)?;
        let mut s = self.score_lm(lm, &out.tokenizer_dir)?;
        s.seconds = started.elapsed().as_secs_f64();
        Ok(s)
    }

    /// Score a model folder (a parent), with the tokenizer of `tokenizer_dir`.
    pub fn score_dir(&mut self, dir: &Path, tokenizer_dir: &Path) -> Result<Scores> {
        let started = std::time::Instant::now();
        let lm = Qwen2Lm::from_dir(dir, self.dtype, &self.device)?;
        let mut s = self.score_lm(lm, tokenizer_dir)?;
        s.seconds = started.elapsed().as_secs_f64();
        Ok(s)
    }

    fn score_lm(&mut self, mut lm: Qwen2Lm, tokenizer_dir: &Path) -> Result<Scores> {
        self.tokenizer(tokenizer_dir)?;
        let tok = &self.tokenizers[tokenizer_dir];
        let mut values = Vec::new();
        let mut items = Vec::new();
        let mut fitness = 0.0;
        for (o, spec, metric) in &self.tasks {
            let opts = EvalOptions {
                split: self.split.clone().or_else(|| o.split.clone()),
                limit: self.limit_override.unwrap_or(o.limit),
                batch_size: self.batch_size,
                apply_chat_template: false,
            };
            let (result, records) = evaluate_task(&mut lm, tok, spec, &opts)?;
            let name = if metric.is_empty() {
                result.metric_order.first().cloned().unwrap_or_default()
            } else {
                metric.clone()
            };
            let value = result.metrics.get(&name).map(|m| m.value).ok_or_else(|| {
                Error::Invalid(format!("task `{}` produced no metric `{name}`", spec.name))
            })?;
            fitness += o.weight * value;
            values.push(value);
            items.extend(
                records
                    .into_iter()
                    .map(|r| (o.name.clone(), name.clone(), r)),
            );
        }
        Ok(Scores {
            values,
            fitness,
            items,
            seconds: 0.0,
        })
    }
}

/// `items.jsonl` lines of one scored model.
pub fn item_lines(candidate: &str, scores: &Scores) -> Vec<ItemLine> {
    scores
        .items
        .iter()
        .map(|(objective, metric, r)| ItemLine {
            candidate: candidate.to_string(),
            objective: objective.clone(),
            task: r.task.clone(),
            doc_id: r.doc_id,
            correct: r.metrics.get(metric).is_some_and(|v| *v >= 1.0),
            score: r.metrics.get(metric).copied().unwrap_or(0.0),
            target: r.target.clone(),
            generated: r.generated.clone(),
        })
        .collect()
}
