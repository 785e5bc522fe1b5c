//! Metrics as lm-eval computes them: `acc` / `acc_norm` for multiple choice (arg-max of the
//! log-likelihoods, of the log-likelihoods divided by each choice's length in characters,
//! first index on ties as `np.argmax`), `exact_match` after regex filters, the mean
//! with its standard error (sample standard deviation / √n), and the task's built-in
//! `process_results` / aggregation hooks ([`super::task::hooks`]).
use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use super::task::hooks::{self, AggContext, Hook, Results, Score};
use super::task::{ExactMatchOptions, FilterStep, TaskSpec};
use super::{Error, Result};

/// Index of the largest value; the first one on ties (`np.argmax`).
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// lm-eval's `acc_norm` prediction: log-likelihood over the choice's length in characters
/// (`len(choice)` in Python; equal to bytes for ASCII).
pub fn acc_norm_prediction(loglikelihoods: &[f64], choices: &[String]) -> usize {
    let normed: Vec<f64> = loglikelihoods
        .iter()
        .zip(choices)
        .map(|(ll, c)| ll / c.chars().count() as f64)
        .collect();
    argmax(&normed)
}

/// Mean and standard error of the mean (`None` below two items, as lm-eval's "N/A").
pub fn mean_stderr(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, None);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some((var / n).sqrt()))
}

/// Run a filter pipeline on one response (lm-eval's `regex` then `take_first`).
pub fn apply_filters(steps: &[FilterStep], response: &str) -> Result<String> {
    let mut out = response.to_string();
    for step in steps {
        out = match step {
            FilterStep::Regex {
                pattern,
                group_select,
                fallback,
            } => regex_filter(pattern, *group_select, fallback, &out)?,
            FilterStep::TakeFirst => out,
            FilterStep::Lowercase => out.to_lowercase(),
            FilterStep::Uppercase => out.to_uppercase(),
        };
    }
    Ok(out)
}

/// Python `re.findall(pattern)[group_select]`, tuples reduced to their first non-empty
/// group, stripped; `fallback` when nothing matches.
fn regex_filter(pattern: &str, group_select: i64, fallback: &str, text: &str) -> Result<String> {
    let re = compile(pattern)?;
    let groups = re.captures_len() - 1;
    let matches: Vec<String> = re
        .captures_iter(text)
        .map(|c| match groups {
            0 => c.get(0).map_or("", |m| m.as_str()).to_string(),
            1 => c.get(1).map_or("", |m| m.as_str()).to_string(),
            _ => (1..=groups)
                .filter_map(|g| c.get(g).map(|m| m.as_str()))
                .find(|s| !s.is_empty())
                .unwrap_or(fallback)
                .to_string(),
        })
        .collect();
    let n = matches.len() as i64;
    let idx = if group_select < 0 {
        n + group_select
    } else {
        group_select
    };
    if matches.is_empty() || idx < 0 || idx >= n {
        return Ok(fallback.to_string());
    }
    Ok(matches[idx as usize].trim().to_string())
}

/// `exact_match` of one prediction against one reference (1.0 or 0.0).
pub fn exact_match(opts: &ExactMatchOptions, prediction: &str, reference: &str) -> Result<f64> {
    let mut p = prediction.to_string();
    let mut r = reference.to_string();
    for pattern in &opts.regexes_to_ignore {
        let re = compile(pattern)?;
        p = re.replace_all(&p, "").into_owned();
        r = re.replace_all(&r, "").into_owned();
    }
    if opts.ignore_case {
        p = p.to_lowercase();
        r = r.to_lowercase();
    }
    if opts.ignore_punctuation {
        p.retain(|c| !c.is_ascii_punctuation());
        r.retain(|c| !c.is_ascii_punctuation());
    }
    Ok(if p == r { 1.0 } else { 0.0 })
}

fn compile(pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| Error::Invalid(format!("bad regex `{pattern}`: {e}")))
}

/// Cut a generation at the first occurrence of each stop string, in order (lm-eval).
pub fn cut_at_stops(text: &str, until: &[String]) -> String {
    let mut s = text;
    for stop in until.iter().filter(|s| !s.is_empty()) {
        if let Some(i) = s.find(stop.as_str()) {
            s = &s[..i];
        }
    }
    s.to_string()
}

/// One document's metrics (`metric_list` order → value) and, for those with one value per
/// sub-item, the sub-item values.
pub type ItemMetrics = (BTreeMap<String, f64>, BTreeMap<String, Vec<f64>>);

/// Run the task's `process_results` hook `name` on one document and pick the metrics of
/// `order` from what it returns; a metric it does not return is an error naming both.
pub fn process_results(
    task: &TaskSpec,
    name: &str,
    order: &[String],
    doc: &Value,
    doc_id: usize,
    results: Results,
) -> Result<ItemMetrics> {
    let err = |message: String| Error::Template {
        task: task.name.clone(),
        doc_id,
        key: format!("process_results `{name}`"),
        message,
    };
    let Hook::ProcessResults(f) = hooks::lookup(name, "process_results").map_err(err)? else {
        return Err(err("not a process_results hook".into()));
    };
    let mut scores = f(doc, results).map_err(err)?;
    let mut metrics = BTreeMap::new();
    let mut lists = BTreeMap::new();
    for metric in order {
        let base = metric.split(',').next().unwrap_or(metric);
        let score = scores.remove(base).ok_or_else(|| {
            err(format!(
                "metric_list names `{base}`, which it does not return (it returns: {})",
                scores.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        metrics.insert(metric.clone(), score.value());
        if let Score::Many(xs) = score {
            lists.insert(metric.clone(), xs);
        }
    }
    Ok((metrics, lists))
}

/// What the task's aggregation hooks need: the gp-IRT parameters, if there are any.
pub fn aggregation_context(task: &TaskSpec) -> Result<AggContext> {
    let irt = hooks::gpirt::IrtFile::find(&task.file).map_err(|message| Error::Task {
        path: task.file.clone(),
        key: "metric_list".into(),
        message,
    })?;
    Ok(AggContext { irt })
}

/// One metric over all documents: its `aggregation` hook, else the mean ± standard error.
/// A hook's note (gp-IRT that fell back to the mean) is printed once per task and metric.
pub fn aggregate(
    task: &TaskSpec,
    metric: &str,
    scores: &[Score],
    ctx: &AggContext,
) -> Result<(f64, Option<f64>)> {
    let spec = task
        .metrics
        .iter()
        .find(|m| metric == m.name || metric.starts_with(&format!("{},", m.name)));
    let Some(name) = spec.and_then(|m| m.aggregation.as_deref()) else {
        let xs: Vec<f64> = scores.iter().map(Score::value).collect();
        return Ok(mean_stderr(&xs));
    };
    let err = |message: String| Error::Task {
        path: task.file.clone(),
        key: format!("metric_list ({metric}).aggregation `{name}`"),
        message,
    };
    let Hook::Aggregation(f) = hooks::lookup(name, "aggregation").map_err(err)? else {
        return Err(err("not an aggregation hook".into()));
    };
    let agg = f(scores, ctx).map_err(err)?;
    if let Some(note) = &agg.note {
        note_once(
            &format!("{}/{metric}", task.name),
            &format!("task `{}`: {metric} is {note}", task.name),
        );
    }
    Ok((agg.value, agg.stderr))
}

/// Print `line` on stderr once per process for `key` (a note that every candidate of a
/// search would otherwise repeat).
fn note_once(key: &str, line: &str) {
    static SEEN: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    if let Ok(mut seen) = SEEN.lock() {
        if seen.insert(key.to_string()) {
            eprintln!("lamarck: note: {line}");
        }
    }
}
