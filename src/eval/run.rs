//! One task × one model: build prompts (few-shot, optional chat template), score, and
//! aggregate metrics; per-item records for `--items`.
use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::lm::Qwen2Lm;
use super::requests::loglikelihoods;
use super::score::{
    acc_norm_prediction, aggregate, aggregation_context, apply_filters, argmax, cut_at_stops,
    exact_match, process_results,
};
use super::task::hooks::{Results, Score};
use super::task::template::{Input, Target, Templates};
use super::task::{data, FilterStep, OutputType, TaskSpec};
use super::tokenizer::TextTokenizer;
use super::{Error, Result};
use crate::model::splitmix::SplitMix64;

/// Seed of the few-shot sampler (lm-eval's default `fewshot_seed`).
pub const FEWSHOT_SEED: u64 = 1234;

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

/// Metrics of one item and their per-sub-item values.
pub(crate) type ItemMetrics = (BTreeMap<String, f64>, BTreeMap<String, Vec<f64>>);

/// One multiple-choice document's metrics from its choices' log-likelihoods: the task's
/// `process_results` hook when it names one, else `acc` / `acc_norm` against `gold`. The
/// one rule for live runs and for saved responses (`--responses`).
pub(crate) fn choice_metrics(
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

/// One generated document's metrics: the task's `process_results` hook when it names one
/// (IFEval), else each metric after each filter pipeline (`exact_match,strict-match`, ...).
pub(crate) fn generation_metrics(
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
        let (metrics, sub_scores) =
            choice_metrics(task, &order, &docs[i], doc_ids[i], &choices, gold, &ll)?;
        records.push(ItemRecord {
            task: task.name.clone(),
            doc_id: doc_ids[i],
            prompt: prompts[i].clone(),
            target: choices[gold].clone(),
            correct: order.first().is_some_and(|m| metrics[m] == 1.0),
            choices: Some(choices),
            loglikelihoods: Some(ll),
            generated: None,
            metrics,
            sub_scores,
        });
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
        let (metrics, sub_scores) =
            generation_metrics(task, &order, &filters, &docs[i], doc_ids[i], &target, &text)?;
        records.push(ItemRecord {
            task: task.name.clone(),
            doc_id: doc_ids[i],
            prompt: prompts[i].clone(),
            target,
            correct: order.first().is_some_and(|m| metrics[m] == 1.0),
            choices: None,
            loglikelihoods: None,
            generated: Some(text),
            metrics,
            sub_scores,
        });
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

/// One user turn through the tokenizer's chat template, with the generation prompt.
pub fn apply_chat_template(tok: &TextTokenizer, content: &str) -> Result<String> {
    let template = tok.chat_template.as_ref().ok_or_else(|| {
        Error::Invalid("--apply-chat-template: tokenizer_config.json has no chat_template".into())
    })?;
    let mut env = minijinja::Environment::new();
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    let eos = match tok.eos_id {
        Some(id) => tok.decode(&[id], false)?,
        None => String::new(),
    };
    env.render_str(
        template,
        minijinja::context! {
            messages => vec![minijinja::context! { role => "user", content => content }],
            add_generation_prompt => true,
            bos_token => tok.bos_token.clone().unwrap_or_default(),
            eos_token => eos,
        },
    )
    .map_err(|e| Error::Invalid(format!("chat template: {e:#}")))
}

/// Few-shot examples: drawn without replacement from the task's few-shot split with a
/// fixed seed, skipping the document being evaluated (as lm-eval does when the few-shot
/// and evaluation splits are the same). The RNG is lamarck's own, so the examples drawn
/// are reproducible but not the ones Python's `random.Random(1234)` would pick.
struct FewshotSource {
    examples: Vec<(Value, String)>,
    same_split: bool,
}

impl FewshotSource {
    fn new(task: &TaskSpec, eval_split: &str, templates: &Templates) -> Result<FewshotSource> {
        if task.num_fewshot == 0 {
            return Ok(FewshotSource {
                examples: Vec::new(),
                same_split: false,
            });
        }
        let split = task.fewshot_source().ok_or_else(|| Error::Task {
            path: task.file.clone(),
            key: "num_fewshot".into(),
            message: "few-shot examples need a fewshot_split (or training/validation split)".into(),
        })?;
        let docs = task.process_docs(data::load_split(task, &split)?)?;
        let mut examples = Vec::with_capacity(docs.len());
        for (i, doc) in docs.into_iter().enumerate() {
            // Multiple input: the example's question is its gold context (lm-eval's
            // `q = c[q]`).
            let text =
                match templates.input(&task.doc_to_text, &doc, i, "doc_to_text (few-shot)")? {
                    Input::Text(t) => t,
                    Input::Choice(gold) => {
                        let spec = task.doc_to_choice.as_ref().ok_or_else(|| Error::Task {
                            path: task.file.clone(),
                            key: "doc_to_choice".into(),
                            message: "doc_to_text gives an index: the task needs doc_to_choice"
                                .into(),
                        })?;
                        let choices = templates.choices(spec, &doc, i)?;
                        let g = gold_index(&Target::Index(gold), &choices, task, i)?;
                        choices[g].clone()
                    }
                };
            let target =
                templates.target(&task.doc_to_target, &doc, i, task.doc_to_choice.is_some())?;
            let target = match (target, &task.doc_to_choice) {
                (Target::Index(idx), Some(spec)) => {
                    let choices = templates.choices(spec, &doc, i)?;
                    gold_index(&Target::Index(idx), &choices, task, i)
                        .map(|g| choices[g].clone())?
                }
                (Target::Index(idx), None) => idx.to_string(),
                (Target::Text(t), _) => t,
            };
            let shot = format!("{text}{}{target}", task.target_delimiter);
            examples.push((doc, shot));
        }
        if examples.len() < task.num_fewshot {
            return Err(Error::Task {
                path: task.file.clone(),
                key: "num_fewshot".into(),
                message: format!(
                    "{} few-shot examples asked, split `{split}` has {}",
                    task.num_fewshot,
                    examples.len()
                ),
            });
        }
        Ok(FewshotSource {
            examples,
            same_split: split == eval_split,
        })
    }

    fn context(&self, task: &TaskSpec, doc: &Value, rng: &mut SplitMix64) -> Result<String> {
        if task.num_fewshot == 0 {
            return Ok(String::new());
        }
        let n = task.num_fewshot + usize::from(self.same_split);
        let n = n.min(self.examples.len());
        let picked = if task.fewshot_first_n {
            (0..n).collect()
        } else {
            sample(rng, self.examples.len(), n)
        };
        let shots: Vec<&str> = picked
            .into_iter()
            .filter(|&i| !(self.same_split && &self.examples[i].0 == doc))
            .take(task.num_fewshot)
            .map(|i| self.examples[i].1.as_str())
            .collect();
        Ok(format!(
            "{}{}",
            shots.join(&task.fewshot_delimiter),
            task.fewshot_delimiter
        ))
    }
}

/// `k` distinct indices below `n` (partial Fisher–Yates), drawn from the crate's one
/// SplitMix64 (few-shot sampling).
fn sample(rng: &mut SplitMix64, n: usize, k: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + (rng.next_u64() % (n - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool
}
