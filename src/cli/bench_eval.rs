//! `lamarck bench-eval`: evaluation throughput on token-id requests, for
//! `tools/eval/bench_eval.py`, which runs transformers on the same model and requests and
//! reports the ratios. Not a test: numbers depend on the machine and its load.
//!
//! Three modes, one request file each:
//! - `mc`: `[{"context": [ids], "continuations": [[ids], ...]}]`, scored with prefix
//!   sharing (as `lamarck eval` scores multiple choice);
//! - `full`: `[{"context": [ids], "continuation": [ids]}]`, every pair with its whole
//!   context, `--batch-size` sequences per pass (lm-eval's way);
//! - `generate`: `{"prompts": [[ids], ...], "max_new": N}`, greedy, `--batch-size`
//!   prompts per batch, never stopping early.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::eval::requests::{score_request, score_requests, score_requests_shared};
use crate::eval::{parse_device, parse_dtype, Qwen2Lm, ScoreRequest};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    Mc,
    Full,
    Generate,
}

#[derive(Args, Debug)]
pub struct BenchEvalArgs {
    /// Model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Request file (its shape depends on --mode; see `lamarck bench-eval --help`).
    #[arg(long)]
    pub requests: PathBuf,
    #[arg(long, value_enum, default_value = "mc")]
    pub mode: Mode,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Untimed warm-up passes over the first few requests.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
}

#[derive(Deserialize)]
struct Pair {
    context: Vec<u32>,
    continuation: Vec<u32>,
}

#[derive(Deserialize)]
struct Question {
    context: Vec<u32>,
    continuations: Vec<Vec<u32>>,
}

#[derive(Deserialize)]
struct Prompts {
    prompts: Vec<Vec<u32>>,
    max_new: usize,
}

fn read<T: for<'de> Deserialize<'de>>(args: &BenchEvalArgs) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(&args.requests)
        .with_context(|| format!("reading {}", args.requests.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a request file for --mode {:?}",
            args.requests.display(),
            args.mode
        )
    })
}

pub fn run(args: BenchEvalArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let mut lm = Qwen2Lm::from_dir(&args.model, parse_dtype(&args.dtype)?, &device)?;
    let bs = args.batch_size.max(1);
    let max = lm.max_length();
    let pairs_to_requests = |pairs: &[(&[u32], &[u32])]| -> anyhow::Result<Vec<ScoreRequest>> {
        Ok(pairs
            .iter()
            .map(|(c, k)| score_request(c, k, None, max))
            .collect::<Result<Vec<_>, _>>()?)
    };
    let report = match args.mode {
        Mode::Mc | Mode::Full => {
            let reqs = match args.mode {
                Mode::Mc => {
                    let qs: Vec<Question> = read(&args)?;
                    let pairs: Vec<(&[u32], &[u32])> = qs
                        .iter()
                        .flat_map(|q| {
                            q.continuations
                                .iter()
                                .map(|k| (q.context.as_slice(), k.as_slice()))
                        })
                        .collect();
                    pairs_to_requests(&pairs)?
                }
                _ => {
                    let ps: Vec<Pair> = read(&args)?;
                    let pairs: Vec<(&[u32], &[u32])> = ps
                        .iter()
                        .map(|p| (p.context.as_slice(), p.continuation.as_slice()))
                        .collect();
                    pairs_to_requests(&pairs)?
                }
            };
            let shared = matches!(args.mode, Mode::Mc);
            let score = |lm: &mut Qwen2Lm, reqs: &[ScoreRequest]| {
                if shared {
                    score_requests_shared(lm, reqs, &mut |_| {})
                } else {
                    score_requests(lm, reqs, bs, &mut |_| {})
                }
            };
            for _ in 0..args.warmup {
                score(&mut lm, &reqs[..bs.min(reqs.len())])?;
            }
            // lm-eval's input tokens (every pair with its whole context), so that
            // tokens/s ratios are time ratios for the same requests.
            let tokens: usize = reqs.iter().map(|r| r.input.len()).sum();
            let start = Instant::now();
            let scores = score(&mut lm, &reqs)?;
            let seconds = start.elapsed().as_secs_f64();
            let lls: Vec<f64> = scores.iter().map(|s| s.logprob).collect();
            serde_json::json!({
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_second": tokens as f64 / seconds,
                "loglikelihoods": lls,
            })
        }
        Mode::Generate => {
            let p: Prompts = read(&args)?;
            for _ in 0..args.warmup {
                let n = bs.min(p.prompts.len());
                lm.generate_greedy_batch(&p.prompts[..n], 2, &mut |_, _| false)?;
            }
            let start = Instant::now();
            let mut generated = Vec::with_capacity(p.prompts.len());
            for chunk in p.prompts.chunks(bs) {
                generated.extend(lm.generate_greedy_batch(chunk, p.max_new, &mut |_, _| false)?);
            }
            let seconds = start.elapsed().as_secs_f64();
            let tokens: usize = generated.iter().map(Vec::len).sum();
            serde_json::json!({
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_second": tokens as f64 / seconds,
                "generated": generated,
            })
        }
    };
    println!("{report}");
    Ok(())
}
