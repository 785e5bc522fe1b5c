//! One task × one model: build prompts (few-shot, optional chat template), score, and
//! aggregate metrics; per-item records for `--items`.
use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::item::{
    choice_record, filter_pipelines, generation_record, generation_target, gold_index,
};
use super::lm::Qwen2Lm;
use super::prompt::{apply_chat_template, FewshotSource, FEWSHOT_SEED};
use super::requests::loglikelihoods;
use super::score::{aggregate, aggregation_context, cut_at_stops};
use super::task::hooks::Score;
use super::task::template::{Input, Target, Templates};
use super::task::{data, OutputType, TaskSpec};
use super::tokenizer::TextTokenizer;
use super::{Error, Result};
use crate::model::splitmix::SplitMix64;

/// How to run a task.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Split to evaluate (default: the task's test split, else its validation split).
    pub split: Option<String>,
    /// Evaluate only the first N documents.
    pub limit: Option<usize>,
    /// Prompts per generation batch (multiple choice scores all choices of a context in
    /// one pass, whatever this is).
    pub batch_size: usize,
    /// Wrap each prompt in the tokenizer's chat template (one user turn).
    pub apply_chat_template: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            split: None,
            limit: None,
            batch_size: 8,
            apply_chat_template: false,
        }
    }
}

/// One metric's mean and standard error.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricValue {
    pub value: f64,
    pub stderr: Option<f64>,
}

/// A task's scores.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub task: String,
    pub split: String,
    pub num_fewshot: usize,
    /// `acc`, `acc_norm`, `exact_match` or `exact_match,<filter>`, in metric_list order.
    pub metrics: BTreeMap<String, MetricValue>,
    pub metric_order: Vec<String>,
    pub items: usize,
    pub seconds: f64,
}

/// One document's outcome (a line of `--items`).
#[derive(Debug, Clone, Serialize)]
pub struct ItemRecord {
    pub task: String,
    pub doc_id: usize,
    pub prompt: String,
    pub target: String,
    /// Whether the item counts as correct under the task's first metric.
    pub correct: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loglikelihoods: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    /// Metrics with one value per sub-item (IFEval's instruction-level verdicts); their
    /// entry in `metrics` is the mean.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub sub_scores: BTreeMap<String, Vec<f64>>,
}

/// Evaluate `task` on `lm`.
pub fn evaluate_task(
    lm: &mut Qwen2Lm,
    tok: &TextTokenizer,
    task: &TaskSpec,
    opts: &EvalOptions,
) -> Result<(TaskResult, Vec<ItemRecord>)> {
    evaluate_task_items(lm, tok, task, opts, None)
}

/// As [`evaluate_task`], scoring only the documents `only` (ids into the split after
/// `limit`, ascending; `None`: all). Prompts, few-shot draws included, are built for every
/// document first, so an item's prompt and outcome do not depend on which others are scored.
pub fn evaluate_task_items(
    lm: &mut Qwen2Lm,
    tok: &TextTokenizer,
    task: &TaskSpec,
    opts: &EvalOptions,
    only: Option<&[usize]>,
) -> Result<(TaskResult, Vec<ItemRecord>)> {
    let start = Instant::now();
    let split = task.eval_split(opts.split.as_deref())?;
    let mut docs = task.process_docs(data::load_split(task, &split)?)?;
    if let Some(n) = opts.limit {
        docs.truncate(n);
    }
    let templates = Templates::new(&task.name);
    let has_choices = task.doc_to_choice.is_some();
    let fewshot = FewshotSource::new(task, &split, &templates)?;
    let mut rng = SplitMix64::new(FEWSHOT_SEED);
    let mut prompts = Vec::with_capacity(docs.len());
    // Multiple input (winogrande): the prompt is the shared prefix, the document's gold
    // index comes from doc_to_text and each choice completes the context.
    let mut input_golds: Vec<Option<usize>> = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let mut ctx = task.description.clone();
        ctx.push_str(&fewshot.context(task, doc, &mut rng)?);
        match templates.input(&task.doc_to_text, doc, i, "doc_to_text")? {
            Input::Text(text) => {
                ctx.push_str(&text);
                input_golds.push(None);
            }
            Input::Choice(gold) => input_golds.push(Some(gold)),
        }
        if opts.apply_chat_template && input_golds[i].is_none() {
            ctx = apply_chat_template(tok, &ctx)?;
        }
        prompts.push(ctx);
    }
    let ids: Vec<usize> = match only {
        None => (0..docs.len()).collect(),
        Some(ids) => {
            if let Some(&bad) = ids.iter().find(|&&i| i >= docs.len()) {
                return Err(Error::Invalid(format!(
                    "task `{}`: item {bad} asked, split `{split}` has {}",
                    task.name,
                    docs.len()
                )));
            }
            let keep: Vec<(Value, String)> = ids
                .iter()
                .map(|&i| (docs[i].clone(), prompts[i].clone()))
                .collect();
            input_golds = ids.iter().map(|&i| input_golds[i]).collect();
            (docs, prompts) = keep.into_iter().unzip();
            ids.to_vec()
        }
    };
    let (metric_order, records) = match &task.output_type {
        OutputType::MultipleChoice => multiple_choice(
            lm,
            tok,
            task,
            &templates,
            &docs,
            &ids,
            &prompts,
            &input_golds,
            opts,
        )?,
        OutputType::GenerateUntil {
            until,
            max_gen_toks,
        } => generate(
            lm,
            tok,
            task,
            &templates,
            &docs,
            &ids,
            &prompts,
            until,
            *max_gen_toks,
            has_choices,
            opts.batch_size,
        )?,
    };
    let metrics = aggregate_records(task, &metric_order, &records)?;
    Ok((
        TaskResult {
            task: task.name.clone(),
            split,
            num_fewshot: task.num_fewshot,
            metrics,
            metric_order,
            items: records.len(),
            seconds: start.elapsed().as_secs_f64(),
        },
        records,
    ))
}

/// Every metric of `order` over the items: the task's aggregation (its hook, e.g. gp-IRT or
/// IFEval's instruction level, else the mean) and its standard error.
pub(crate) fn aggregate_records(
    task: &TaskSpec,
    order: &[String],
    records: &[ItemRecord],
) -> Result<BTreeMap<String, MetricValue>> {
    let mut metrics = BTreeMap::new();
    let agg_ctx = aggregation_context(task)?;
    for name in order {
        let scores: Vec<Score> = records
            .iter()
            .map(|r| match r.sub_scores.get(name) {
                Some(xs) => Score::Many(xs.clone()),
                None => Score::One(r.metrics[name]),
            })
            .collect();
        let (value, stderr) = aggregate(task, name, &scores, &agg_ctx)?;
        metrics.insert(name.clone(), MetricValue { value, stderr });
    }
    Ok(metrics)
}

#[allow(clippy::too_many_arguments)]
fn multiple_choice(
    lm: &mut Qwen2Lm,
    tok: &TextTokenizer,
    task: &TaskSpec,
    templates: &Templates,
    docs: &[Value],
    doc_ids: &[usize],
    prompts: &[String],
    input_golds: &[Option<usize>],
    opts: &EvalOptions,
) -> Result<(Vec<String>, Vec<ItemRecord>)> {
    let choice_spec = task
        .doc_to_choice
        .as_ref()
        .ok_or_else(|| Error::Invalid("no doc_to_choice".into()))?;
    let mut pairs = Vec::new();
    let mut per_doc = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let choices = templates.choices(choice_spec, doc, doc_ids[i])?;
        let target = templates.target(&task.doc_to_target, doc, doc_ids[i], true)?;
        match input_golds[i] {
            // Each choice completes the context; the continuation is the target text.
            Some(gold) => {
                let gold = gold_index(&Target::Index(gold), &choices, task, doc_ids[i])?;
                let cont = match &target {
                    Target::Text(t) => t.clone(),
                    Target::Index(idx) => idx.to_string(),
                };
                for c in &choices {
                    pairs.push((
                        format!("{}{c}", prompts[i]),
                        format!("{}{cont}", task.target_delimiter),
                    ));
                }
                per_doc.push((choices, gold));
            }
            None => {
                let gold = gold_index(&target, &choices, task, doc_ids[i])?;
                for c in &choices {
                    pairs.push((prompts[i].clone(), format!("{}{c}", task.target_delimiter)));
                }
                per_doc.push((choices, gold));
            }
        }
    }
    let bar = progress(pairs.len() as u64, &task.name);
    let lls = loglikelihoods(lm, tok, &pairs, opts.batch_size, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let order: Vec<String> = task.metrics.iter().map(|m| m.name.clone()).collect();
    let mut records = Vec::new();
    let mut at = 0;
    for (i, (choices, gold)) in per_doc.into_iter().enumerate() {
        let ll: Vec<f64> = lls[at..at + choices.len()]
            .iter()
            .map(|l| l.logprob)
            .collect();
        at += choices.len();
        records.push(choice_record(
            task,
            &order,
            &docs[i],
            doc_ids[i],
            prompts[i].clone(),
            choices,
            gold,
            ll,
        )?);
    }
    Ok((order, records))
}

#[allow(clippy::too_many_arguments)]
fn generate(
    lm: &mut Qwen2Lm,
    tok: &TextTokenizer,
    task: &TaskSpec,
    templates: &Templates,
    docs: &[Value],
    doc_ids: &[usize],
    prompts: &[String],
    until: &[String],
    max_gen_toks: usize,
    has_choices: bool,
    batch_size: usize,
) -> Result<(Vec<String>, Vec<ItemRecord>)> {
    let mut stops: Vec<String> = until.to_vec();
    if let Some(eos) = tok.eos_id {
        let eos_text = tok.decode(&[eos], false)?;
        if !stops.contains(&eos_text) {
            stops.push(eos_text);
        }
    }
    let (filters, order) = filter_pipelines(task);
    let mut targets = Vec::with_capacity(docs.len());
    let mut inputs = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let target = generation_target(task, templates, doc, doc_ids[i], has_choices)?;
        targets.push(target);
        let mut ids = tok.encode(&prompts[i])?;
        let room = lm.max_length().saturating_sub(max_gen_toks).max(1);
        if ids.len() > room {
            ids.drain(..ids.len() - room);
        }
        if ids.is_empty() {
            ids.extend(tok.eos_id);
        }
        inputs.push(ids);
    }
    // Longest prompts first (as lm-eval), so a batch's rows have similar lengths; each
    // row's output is the one it gets alone, so the order changes no result.
    let mut by_length: Vec<usize> = (0..docs.len()).collect();
    by_length.sort_by(|&a, &b| inputs[b].len().cmp(&inputs[a].len()).then(a.cmp(&b)));
    let eos = tok.eos_id;
    let bar = progress(docs.len() as u64, &task.name);
    let mut generated: Vec<Vec<u32>> = vec![Vec::new(); docs.len()];
    for chunk in by_length.chunks(batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| inputs[i].clone()).collect();
        let mut stop_check = |_: usize, gen: &[u32]| -> bool {
            if eos.is_some() && gen.last().copied() == eos {
                return true;
            }
            let text = tok.decode(gen, false).unwrap_or_default();
            stops
                .iter()
                .any(|s| !s.is_empty() && text.contains(s.as_str()))
        };
        let out = lm.generate_greedy_batch(&batch, max_gen_toks, &mut stop_check)?;
        for (&i, g) in chunk.iter().zip(out) {
            generated[i] = g;
        }
        bar.inc(chunk.len() as u64);
    }
    let mut records = Vec::new();
    for (i, (target, gen_ids)) in targets.into_iter().zip(generated).enumerate() {
        let text = cut_at_stops(&tok.decode(&gen_ids, true)?, &stops);
        records.push(generation_record(
            task,
            &order,
            &filters,
            &docs[i],
            doc_ids[i],
            prompts[i].clone(),
            target,
            text,
        )?);
    }
    bar.finish_and_clear();
    Ok((order, records))
}

/// Whether tasks show their own progress bars (the search turns them off: it shows one
/// bar for the whole run).
pub static SHOW_PROGRESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn progress(len: u64, task: &str) -> indicatif::ProgressBar {
    if !SHOW_PROGRESS.load(std::sync::atomic::Ordering::Relaxed) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed}<{eta}]")
    {
        bar.set_style(style);
    }
    bar.set_message(task.to_string());
    bar
}
