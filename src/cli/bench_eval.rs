//! `lamarck bench-eval`: log-likelihood scoring throughput on token-id requests, for
//! `tools/eval/bench_eval.py`, which runs transformers on the same model and requests and
//! reports the ratio. Not a test: numbers depend on the machine and its load.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

use crate::eval::requests::score_requests;
use crate::eval::{parse_device, parse_dtype, Qwen2Lm, ScoreRequest};

#[derive(Args, Debug)]
pub struct BenchEvalArgs {
    /// Model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// JSON list of {"context": [ids], "continuation": [ids]}.
    #[arg(long)]
    pub requests: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Untimed warm-up passes over the first batch.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
}

#[derive(Deserialize)]
struct Pair {
    context: Vec<u32>,
    continuation: Vec<u32>,
}

pub fn run(args: BenchEvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.requests)
        .with_context(|| format!("reading {}", args.requests.display()))?;
    let pairs: Vec<Pair> = serde_json::from_str(&text).context("requests JSON")?;
    let device = parse_device(&args.device)?;
    let mut lm = Qwen2Lm::from_dir(&args.model, parse_dtype(&args.dtype)?, &device)?;
    let reqs = pairs
        .iter()
        .map(|p| {
            crate::eval::requests::score_request(&p.context, &p.continuation, None, lm.max_length())
        })
        .collect::<Result<Vec<ScoreRequest>, _>>()?;
    let tokens: usize = reqs.iter().map(|r| r.input.len()).sum();
    let bs = args.batch_size.max(1);
    for _ in 0..args.warmup {
        score_requests(&mut lm, &reqs[..bs.min(reqs.len())], bs, &mut |_| {})?;
    }
    let start = Instant::now();
    let scores = score_requests(&mut lm, &reqs, bs, &mut |_| {})?;
    let seconds = start.elapsed().as_secs_f64();
    let loglikelihoods: Vec<f64> = scores.iter().map(|s| s.logprob).collect();
    println!(
        "{}",
        serde_json::json!({
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_second": tokens as f64 / seconds,
            "loglikelihoods": loglikelihoods,
        })
    );
    Ok(())
}
