//! One document's metrics, the one rule for live runs ([`super::run`]) and for saved
//! responses ([`super::responses`]): the gold choice, a generation's target text, the
//! filter pipelines and the per-item metric values.
use std::collections::BTreeMap;

use serde_json::Value;

use super::run::ItemRecord;
use super::score::{
    acc_norm_prediction, apply_filters, argmax, exact_match, process_results, ItemMetrics,
};
use super::task::hooks::Results;
use super::task::template::{Target, Templates};
use super::task::{FilterStep, TaskSpec};
use super::{Error, Result};

/// The index of a document's gold choice, checked against its choices.
pub(crate) fn gold_index(
    target: &Target,
    choices: &[String],
    task: &TaskSpec,
    doc_id: usize,
) -> Result<usize> {
    let idx = match target {
        Target::Index(i) => Some(*i),
        Target::Text(t) => choices.iter().position(|c| c == t),
    };
    idx.filter(|&i| i < choices.len())
        .ok_or_else(|| Error::Template {
            task: task.name.clone(),
            doc_id,
            key: "doc_to_target".into(),
            message: format!(
                "target {target:?} is not one of the {} choices {choices:?}",
                choices.len()
            ),
        })
}

/// A generation task's filter pipelines (`(",name", steps)`; one unnamed empty pipeline when
/// the task has none) and the metric names they make (`exact_match,strict-match`, ...), in
/// order.
pub(crate) fn filter_pipelines(task: &TaskSpec) -> (Vec<(String, Vec<FilterStep>)>, Vec<String>) {
    let filters: Vec<(String, Vec<FilterStep>)> = if task.filters.is_empty() {
        vec![(String::new(), Vec::new())]
    } else {
        task.filters
            .iter()
            .map(|f| (format!(",{}", f.name), f.steps.clone()))
            .collect()
    };
    let mut order = Vec::new();
    for m in &task.metrics {
        for (suffix, _) in &filters {
            order.push(format!("{}{suffix}", m.name));
        }
    }
    (filters, order)
}

/// A generated document's target text: `doc_to_target`, or the choice it indexes.
pub(crate) fn generation_target(
    task: &TaskSpec,
    templates: &Templates,
    doc: &Value,
    doc_id: usize,
    has_choices: bool,
) -> Result<String> {
    Ok(
        match templates.target(&task.doc_to_target, doc, doc_id, has_choices)? {
            Target::Text(t) => t,
            Target::Index(idx) => match &task.doc_to_choice {
                Some(spec) => templates
                    .choices(spec, doc, doc_id)?
                    .get(idx)
                    .cloned()
                    .unwrap_or_default(),
                None => idx.to_string(),
            },
        },
    )
}

/// One multiple-choice document's metrics from its choices' log-likelihoods: the task's
/// `process_results` hook when it names one, else `acc` / `acc_norm` against `gold`. The
/// one rule for live runs and for saved responses (`--responses`).
fn choice_metrics(
    task: &TaskSpec,
    order: &[String],
    doc: &Value,
    doc_id: usize,
    choices: &[String],
    gold: usize,
    ll: &[f64],
) -> Result<ItemMetrics> {
    if let Some(name) = &task.process_results {
        return process_results(task, name, order, doc, doc_id, Results::Loglikelihoods(ll));
    }
    let mut metrics = BTreeMap::new();
    for name in order {
        // acc_norm divides by the length of each choice (the contexts, for multiple
        // input: lm-eval's `len(doc_to_choice(doc)[i])`).
        let pred = if name == "acc_norm" {
            acc_norm_prediction(ll, choices)
        } else {
            argmax(ll)
        };
        metrics.insert(name.clone(), if pred == gold { 1.0 } else { 0.0 });
    }
    Ok((metrics, BTreeMap::new()))
}

/// A scored multiple-choice document as it is recorded (its metrics from [`choice_metrics`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn choice_record(
    task: &TaskSpec,
    order: &[String],
    doc: &Value,
    doc_id: usize,
    prompt: String,
    choices: Vec<String>,
    gold: usize,
    ll: Vec<f64>,
) -> Result<ItemRecord> {
    let (metrics, sub_scores) = choice_metrics(task, order, doc, doc_id, &choices, gold, &ll)?;
    Ok(ItemRecord {
        task: task.name.clone(),
        doc_id,
        prompt,
        target: choices[gold].clone(),
        correct: order.first().is_some_and(|m| metrics[m] == 1.0),
        choices: Some(choices),
        loglikelihoods: Some(ll),
        generated: None,
        metrics,
        sub_scores,
    })
}

/// A scored generated document as it is recorded (its metrics from [`generation_metrics`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn generation_record(
    task: &TaskSpec,
    order: &[String],
    filters: &[(String, Vec<FilterStep>)],
    doc: &Value,
    doc_id: usize,
    prompt: String,
    target: String,
    text: String,
) -> Result<ItemRecord> {
    let (metrics, sub_scores) =
        generation_metrics(task, order, filters, doc, doc_id, &target, &text)?;
    Ok(ItemRecord {
        task: task.name.clone(),
        doc_id,
        prompt,
        target,
        correct: order.first().is_some_and(|m| metrics[m] == 1.0),
        choices: None,
        loglikelihoods: None,
        generated: Some(text),
        metrics,
        sub_scores,
    })
}

/// One generated document's metrics: the task's `process_results` hook when it names one
/// (IFEval), else each metric after each filter pipeline (`exact_match,strict-match`, ...).
fn generation_metrics(
    task: &TaskSpec,
    order: &[String],
    filters: &[(String, Vec<FilterStep>)],
    doc: &Value,
    doc_id: usize,
    target: &str,
    text: &str,
) -> Result<ItemMetrics> {
    if let Some(name) = &task.process_results {
        return process_results(task, name, order, doc, doc_id, Results::Generation(text));
    }
    let mut metrics = BTreeMap::new();
    for m in &task.metrics {
        for (suffix, steps) in filters {
            let filtered = apply_filters(steps, text)?;
            metrics.insert(
                format!("{}{suffix}", m.name),
                exact_match(&m.exact_match, &filtered, target)?,
            );
        }
    }
    Ok((metrics, BTreeMap::new()))
}
