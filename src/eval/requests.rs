//! lm-eval's log-likelihood requests on top of [`Qwen2Lm`].
//!
//! `encode_pair` is lm-eval's `HFLM._encode_pair`: trailing spaces of the context move to
//! the continuation, the pair is encoded whole and the context's tokens are cut off, so the
//! continuation tokens are exactly those the whole string tokenizes to. An empty context is
//! replaced by the EOS token. Inputs longer than the model are truncated on the left.
use super::lm::{Qwen2Lm, ScoreRequest};
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

/// Log-likelihoods of `pairs` (context, continuation) in order, scored `batch_size` at a
/// time, longest first (as lm-eval, so padding is small). `progress` is called with the
/// number of requests done after each batch.
pub fn loglikelihoods(
    lm: &mut Qwen2Lm,
    tok: &TextTokenizer,
    pairs: &[(String, String)],
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Loglikelihood>> {
    let mut reqs = Vec::with_capacity(pairs.len());
    for (ctx, cont) in pairs {
        let (c, k) = encode_pair(tok, ctx, cont)?;
        reqs.push(score_request(&c, &k, tok.eos_id, lm.max_length())?);
    }
    score_requests(lm, &reqs, batch_size, progress)
}

/// Score token-level requests in batches, longest first; results in input order.
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
            out[i] = Some(Loglikelihood {
                logprob: s.logprobs.iter().map(|&x| x as f64).sum(),
                is_greedy: s.is_greedy,
                token_logprobs: s.logprobs,
            });
        }
        progress(chunk.len());
    }
    Ok(out.into_iter().flatten().collect())
}
