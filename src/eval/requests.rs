//! lm-eval's log-likelihood requests on top of [`Qwen2Lm`].
//!
//! `encode_pair` is lm-eval's `HFLM._encode_pair`: trailing spaces of the context move to
//! the continuation, the pair is encoded whole and the context's tokens are cut off, so the
//! continuation tokens are exactly those the whole string tokenizes to. An empty context is
//! replaced by the EOS token. Inputs longer than the model are truncated on the left.
//!
//! Scoring shares prefixes: requests with the same tokens before their first scored
//! position (an item's context, for every choice) run that prefix once and their
//! continuations together against its KV cache; consecutive prefixes reuse their common
//! start (a shared few-shot block). [`score_requests`] is the whole-sequence reference.
use std::collections::HashMap;

use super::lm::{PrefixCache, Qwen2Lm, ScoreRequest};
use super::tokenizer::TextTokenizer;
use super::{Error, Result};

/// Score of one (context, continuation) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Loglikelihood {
    /// Sum of the continuation tokens' log-probabilities.
    pub logprob: f64,
    /// Whether greedy decoding would have produced the continuation.
    pub is_greedy: bool,
    /// One log-probability per continuation token.
    pub token_logprobs: Vec<f32>,
}

/// lm-eval's context/continuation token split.
pub fn encode_pair(
    tok: &TextTokenizer,
    context: &str,
    continuation: &str,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let trimmed = context.trim_end();
    let (context, continuation) = if trimmed.len() < context.len() {
        (
            trimmed.to_string(),
            format!("{}{continuation}", &context[trimmed.len()..]),
        )
    } else {
        (context.to_string(), continuation.to_string())
    };
    let whole = tok.encode(&format!("{context}{continuation}"))?;
    let ctx = tok.encode(&context)?;
    let cont = whole.get(ctx.len()..).unwrap_or(&[]).to_vec();
    Ok((ctx, cont))
}

/// The model input for context and continuation tokens (empty context → EOS prefix,
/// left-truncated to `max_length` as lm-eval's `(ctx + cont)[-(max_length + 1):][:-1]`).
pub fn score_request(
    ctx: &[u32],
    cont: &[u32],
    eos: Option<u32>,
    max_length: usize,
) -> Result<ScoreRequest> {
    if cont.is_empty() {
        return Err(Error::Invalid(
            "a continuation encodes to no tokens; it cannot be scored".into(),
        ));
    }
    let mut all: Vec<u32> = if ctx.is_empty() {
        let eos = eos.ok_or_else(|| {
            Error::Invalid(
                "empty context and no EOS token (set eos_token in tokenizer_config.json)".into(),
            )
        })?;
        vec![eos]
    } else {
        ctx.to_vec()
    };
    all.extend_from_slice(cont);
    let start = all.len().saturating_sub(max_length + 1);
    let input = all[start..all.len() - 1].to_vec();
    let n = cont.len().min(input.len());
    Ok(ScoreRequest {
        input,
        targets: cont[cont.len() - n..].to_vec(),
    })
}

/// Log-likelihoods of `pairs` (context, continuation) in order, prefix-shared (see
/// [`score_requests_shared`]). `batch_size` does not change the grouping: the choices of
/// one context always go through the model together, so results do not depend on it.
/// `progress` is called with the number of requests done after each group.
pub fn loglikelihoods(
    lm: &mut Qwen2Lm,
    tok: &TextTokenizer,
    pairs: &[(String, String)],
    _batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Loglikelihood>> {
    let mut reqs = Vec::with_capacity(pairs.len());
    for (ctx, cont) in pairs {
        let (c, k) = encode_pair(tok, ctx, cont)?;
        reqs.push(score_request(&c, &k, tok.eos_id, lm.max_length())?);
    }
    score_requests_shared(lm, &reqs, progress)
}

/// Most continuations scored in one pass against a prefix (bounds memory; a fixed number,
/// so results never depend on `--batch-size`).
const MAX_CONTINUATIONS: usize = 64;

/// Score token-level requests with prefix sharing; results in input order. Requests are
/// grouped by the tokens before their first scored position (in order of first
/// appearance); each group's prefix runs once, reusing what it shares with the previous
/// group's, and its continuations are scored together against that cache.
pub fn score_requests_shared(
    lm: &mut Qwen2Lm,
    reqs: &[ScoreRequest],
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Loglikelihood>> {
    let mut groups: Vec<(&[u32], Vec<usize>)> = Vec::new();
    let mut index: HashMap<&[u32], usize> = HashMap::new();
    for (i, r) in reqs.iter().enumerate() {
        let split = r.input.len().checked_sub(r.targets.len()).ok_or_else(|| {
            Error::Invalid(format!(
                "score request with {} input and {} target tokens",
                r.input.len(),
                r.targets.len()
            ))
        })?;
        let prefix = &r.input[..split];
        let g = *index.entry(prefix).or_insert_with(|| {
            groups.push((prefix, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let mut out: Vec<Option<Loglikelihood>> = vec![None; reqs.len()];
    let mut cache = PrefixCache::default();
    for (prefix, members) in groups {
        cache = lm.prefix(cache, prefix)?;
        for chunk in members.chunks(MAX_CONTINUATIONS) {
            let batch: Vec<ScoreRequest> = chunk
                .iter()
                .map(|&i| ScoreRequest {
                    input: reqs[i].input[prefix.len()..].to_vec(),
                    targets: reqs[i].targets.clone(),
                })
                .collect();
            let scores = lm.score_after(&cache, &batch)?;
            for (&i, s) in chunk.iter().zip(scores) {
                out[i] = Some(loglikelihood(s));
            }
            progress(chunk.len());
        }
    }
    Ok(out.into_iter().flatten().collect())
}

fn loglikelihood(s: super::lm::TokenScores) -> Loglikelihood {
    Loglikelihood {
        logprob: s.logprobs.iter().map(|&x| x as f64).sum(),
        is_greedy: s.is_greedy,
        token_logprobs: s.logprobs,
    }
}

/// Score token-level requests in batches, longest first, each with its whole input (the
/// reference for prefix sharing, and what lm-eval does); results in input order.
pub fn score_requests(
    lm: &mut Qwen2Lm,
    reqs: &[ScoreRequest],
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Loglikelihood>> {
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    order.sort_by(|&a, &b| {
        reqs[b]
            .input
            .len()
            .cmp(&reqs[a].input.len())
            .then(a.cmp(&b))
    });
    let mut out: Vec<Option<Loglikelihood>> = vec![None; reqs.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<ScoreRequest> = chunk.iter().map(|&i| reqs[i].clone()).collect();
        let scores = lm.score(&batch)?;
        for (&i, s) in chunk.iter().zip(scores) {
            out[i] = Some(loglikelihood(s));
        }
        progress(chunk.len());
    }
    Ok(out.into_iter().flatten().collect())
}
