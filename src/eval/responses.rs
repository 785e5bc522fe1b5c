//! Scoring saved responses (`lamarck eval --responses FILE`): no model is loaded.
//!
//! FILE is JSON Lines, one object per scored document: `task` (the task's name),
//! `doc_id` (index into the evaluated split, as `--items` writes it), and
//! `generated` (text) for generation tasks or `loglikelihoods` (one per choice, in choice
//! order) for multiple choice. An `--items` file of an earlier `lamarck eval` run is
//! such a file; so is any other engine's output put in that shape. Other keys are
//! ignored (`prompt` is carried to the new records). Only the documents present are
//! scored; metrics are computed exactly as a live run computes them from the same text or
//! log-likelihoods.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use super::item::{
    choice_record, filter_pipelines, generation_record, generation_target, gold_index,
};
use super::run::{aggregate_records, ItemRecord, TaskResult};
use super::score::cut_at_stops;
use super::task::template::Templates;
use super::task::{data, OutputType, TaskSpec};
use super::{Error, Result};

/// One line of a responses file.
#[derive(Debug, Clone)]
pub struct Response {
    /// 1-based line number, for errors.
    pub line: usize,
    pub doc_id: usize,
    pub generated: Option<String>,
    pub loglikelihoods: Option<Vec<f64>>,
    pub prompt: Option<String>,
}

/// The responses of a file, by task name, in file order.
#[derive(Debug, Clone)]
pub struct Responses {
    pub file: PathBuf,
    pub by_task: BTreeMap<String, Vec<Response>>,
}

impl Responses {
    /// Read a responses file; a malformed line is an error naming it.
    pub fn from_file(path: &Path) -> Result<Responses> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |line: usize, message: String| Error::Data {
            path: path.to_path_buf(),
            message: format!("line {line}: {message}"),
        };
        let mut by_task: BTreeMap<String, Vec<Response>> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(raw).map_err(|e| bad(line, format!("not valid JSON: {e}")))?;
            let task = v
                .get("task")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(line, "no `task` (the task's name, a string)".into()))?;
            let doc_id = v
                .get("doc_id")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(line, "no `doc_id` (a non-negative integer)".into()))?
                as usize;
            let generated = match v.get("generated") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(bad(line, "`generated` is not a string".into())),
            };
            let loglikelihoods = match v.get("loglikelihoods") {
                None | Some(Value::Null) => None,
                Some(Value::Array(xs)) => Some(
                    xs.iter()
                        .map(Value::as_f64)
                        .collect::<Option<Vec<f64>>>()
                        .ok_or_else(|| bad(line, "`loglikelihoods` holds a non-number".into()))?,
                ),
                Some(_) => return Err(bad(line, "`loglikelihoods` is not a list".into())),
            };
            if generated.is_none() && loglikelihoods.is_none() {
                return Err(bad(
                    line,
                    "neither `generated` (generation) nor `loglikelihoods` (multiple choice)"
                        .into(),
                ));
            }
            let entries = by_task.entry(task.to_string()).or_default();
            if let Some(first) = entries.iter().find(|r| r.doc_id == doc_id) {
                return Err(bad(
                    line,
                    format!(
                        "task `{task}` doc_id {doc_id} again (first on line {})",
                        first.line
                    ),
                ));
            }
            entries.push(Response {
                line,
                doc_id,
                generated,
                loglikelihoods,
                prompt: v.get("prompt").and_then(Value::as_str).map(str::to_string),
            });
        }
        Ok(Responses {
            file: path.to_path_buf(),
            by_task,
        })
    }

    /// Task names with responses but not in `tasks`: an error naming the first line.
    pub fn check_tasks(&self, tasks: &[TaskSpec]) -> Result<()> {
        for (name, rs) in &self.by_task {
            if !tasks.iter().any(|t| &t.name == name) {
                return Err(Error::Data {
                    path: self.file.clone(),
                    message: format!(
                        "line {}: task `{name}` is not among --tasks ({})",
                        rs[0].line,
                        tasks
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Score `task` from its saved responses on `split` (default: the task's own) after
/// `limit`.
pub fn score_task(
    task: &TaskSpec,
    responses: &Responses,
    split: Option<&str>,
    limit: Option<usize>,
) -> Result<(TaskResult, Vec<ItemRecord>)> {
    let start = Instant::now();
    let split = task.eval_split(split)?;
    let mut docs = data::load_split(task, &split)?;
    if let Some(n) = limit {
        docs.truncate(n);
    }
    let mut rs: Vec<&Response> = responses
        .by_task
        .get(&task.name)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    if rs.is_empty() {
        return Err(Error::Data {
            path: responses.file.clone(),
            message: format!(
                "no responses for task `{}` ({})",
                task.name,
                task.file.display()
            ),
        });
    }
    rs.sort_by_key(|r| r.doc_id);
    let line_err = |r: &Response, message: String| Error::Data {
        path: responses.file.clone(),
        message: format!(
            "line {}: task `{}` doc_id {}: {message}",
            r.line, task.name, r.doc_id
        ),
    };
    let templates = Templates::new(&task.name);
    let has_choices = task.doc_to_choice.is_some();
    let mut order: Vec<String> = Vec::new();
    let mut records = Vec::with_capacity(rs.len());
    for r in rs {
        let doc = docs.get(r.doc_id).ok_or_else(|| {
            line_err(
                r,
                format!(
                    "split `{split}` of {} has {} document(s)",
                    task.file.display(),
                    docs.len()
                ),
            )
        })?;
        let record = match &task.output_type {
            OutputType::MultipleChoice => {
                let spec = task.doc_to_choice.as_ref().ok_or_else(|| {
                    Error::Invalid(format!("task `{}`: no doc_to_choice", task.name))
                })?;
                let ll = r.loglikelihoods.clone().ok_or_else(|| {
                    line_err(r, "a multiple-choice task needs `loglikelihoods`".into())
                })?;
                let choices = templates.choices(spec, doc, r.doc_id)?;
                if ll.len() != choices.len() {
                    return Err(line_err(
                        r,
                        format!("{} loglikelihoods for {} choices", ll.len(), choices.len()),
                    ));
                }
                let target = templates.target(&task.doc_to_target, doc, r.doc_id, true)?;
                let gold = gold_index(&target, &choices, task, r.doc_id)?;
                order = task.metrics.iter().map(|m| m.name.clone()).collect();
                let prompt = r.prompt.clone().unwrap_or_default();
                choice_record(task, &order, doc, r.doc_id, prompt, choices, gold, ll)?
            }
            OutputType::GenerateUntil { until, .. } => {
                let text = r
                    .generated
                    .as_deref()
                    .ok_or_else(|| line_err(r, "a generation task needs `generated`".into()))?;
                let text = cut_at_stops(text, until);
                let target = generation_target(task, &templates, doc, r.doc_id, has_choices)?;
                let (filters, names) = filter_pipelines(task);
                order = names;
                let prompt = r.prompt.clone().unwrap_or_default();
                generation_record(task, &order, &filters, doc, r.doc_id, prompt, target, text)?
            }
        };
        records.push(record);
    }
    let metrics = aggregate_records(task, &order, &records)?;
    Ok((
        TaskResult {
            task: task.name.clone(),
            split,
            num_fewshot: task.num_fewshot,
            metrics,
            metric_order: order,
            items: records.len(),
            seconds: start.elapsed().as_secs_f64(),
        },
        records,
    ))
}
