//! Metrics as lm-eval computes them: `acc` / `acc_norm` for multiple choice (arg-max of the
//! log-likelihoods, of the log-likelihoods divided by each choice's length in characters,
//! first index on ties as `np.argmax`), `exact_match` after regex filters, and the mean
//! with its standard error (sample standard deviation / √n).
use regex::Regex;

use super::task::{ExactMatchOptions, FilterStep};
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
