//! `lamarck bench-eval`: evaluation throughput on token-id requests, for
//! `tools/eval/bench_eval.py` (which runs transformers on the same model and requests and
//! reports the ratios) and `tools/device/gpu_check.sh`. Not a test: numbers depend on the
//! machine and its load.
//!
//! Modes, one request file each (or `--random N` requests drawn from `--seed`):
//! - `mc`: `[{"context": [ids], "continuations": [[ids], ...]}]`, scored with prefix
//!   sharing (as `lamarck eval` scores multiple choice);
//! - `full`: `[{"context": [ids], "continuation": [ids]}]`, every pair with its whole
//!   context, `--batch-size` sequences per pass (lm-eval's way);
//! - `generate`: `{"prompts": [[ids], ...], "max_new": N}`, greedy, `--batch-size`
//!   prompts per batch, never stopping early;
//! - `prefill`: `{"prompts": [[ids], ...]}`, `--batch-size` prompts per forward pass (the
//!   LM head only at each prompt's last position);
//! - `golden`: `--requests tests/fixtures/eval/golden.json` and one of its model folders:
//!   the fixture's requests and generations on `--device` against the same model on the
//!   CPU and against transformers' numbers, with a pass/fail verdict (see [`golden`]).
//!
//! `prefill` and `generate` also report the model FLOPs they did (see [`Flops`]) and, with
//! `--peak-tflops`, the share of the device's peak.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::eval::requests::{score_request, score_requests, score_requests_shared, Loglikelihood};
use crate::eval::{parse_device, parse_dtype, Qwen2Lm, ScoreRequest};
use crate::model::splitmix::SplitMix64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Mc,
    Full,
    Generate,
    Prefill,
    Golden,
}

#[derive(Args, Debug)]
pub struct BenchEvalArgs {
    /// Model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Request file (its shape depends on --mode; see `lamarck bench-eval --help`).
    #[arg(long, required_unless_present = "random")]
    pub requests: Option<PathBuf>,
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
    /// Instead of --requests: N random requests (questions for mc, pairs for full,
    /// prompts for prefill and generate), token ids drawn from --seed below vocab_size.
    #[arg(long, conflicts_with = "requests")]
    pub random: Option<usize>,
    /// Context (prompt) length of random requests.
    #[arg(long, default_value_t = 256)]
    pub prompt_len: usize,
    /// Continuation length of random mc/full requests.
    #[arg(long, default_value_t = 8)]
    pub continuation_len: usize,
    /// Choices per random mc question.
    #[arg(long, default_value_t = 4)]
    pub choices: usize,
    /// New tokens per prompt for random generate requests.
    #[arg(long, default_value_t = 32)]
    pub max_new: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The device's dense peak in TFLOP/s for --dtype (H200 bf16: 989), to report the
    /// share of it that prefill and generate reach.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Leave per-request outputs (log-likelihoods, generated ids) out of the report.
    #[arg(long)]
    pub summary: bool,
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
    #[serde(default)]
    max_new: usize,
}

fn read<T: for<'de> Deserialize<'de>>(args: &BenchEvalArgs) -> anyhow::Result<T> {
    let path = args
        .requests
        .as_ref()
        .context("--requests FILE or --random N is needed")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a request file for --mode {:?}",
            path.display(),
            args.mode
        )
    })
}

/// `n` random token ids below `vocab`.
fn random_ids(rng: &mut SplitMix64, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| (rng.next_u64() % vocab.max(1) as u64) as u32)
        .collect()
}

/// The request file, or `--random` requests of the same shape.
fn questions(args: &BenchEvalArgs, vocab: usize) -> anyhow::Result<Vec<Question>> {
    let Some(n) = args.random else {
        return read(args);
    };
    let mut rng = SplitMix64::new(args.seed);
    Ok((0..n)
        .map(|_| Question {
            context: random_ids(&mut rng, args.prompt_len, vocab),
            continuations: (0..args.choices.max(1))
                .map(|_| random_ids(&mut rng, args.continuation_len.max(1), vocab))
                .collect(),
        })
        .collect())
}

fn pairs(args: &BenchEvalArgs, vocab: usize) -> anyhow::Result<Vec<Pair>> {
    if args.random.is_none() {
        return read(args);
    }
    Ok(questions(args, vocab)?
        .into_iter()
        .map(|q| Pair {
            context: q.context,
            continuation: q.continuations.into_iter().next().unwrap_or_default(),
        })
        .collect())
}

fn prompts(args: &BenchEvalArgs, vocab: usize) -> anyhow::Result<Prompts> {
    let Some(n) = args.random else {
        return read(args);
    };
    let mut rng = SplitMix64::new(args.seed);
    Ok(Prompts {
        prompts: (0..n)
            .map(|_| random_ids(&mut rng, args.prompt_len.max(1), vocab))
            .collect(),
        max_new: args.max_new,
    })
}

/// Model FLOPs of a Qwen2 forward pass, counted as 2 per multiply-add of the matmuls that
/// matter: the layers' projections and MLP (2 × their weights per token), attention
/// (4 × hidden per key a query attends to: scores and the weighted sum, causal keys only)
/// and the LM head at the rows where it is applied. Norms, rotary embedding, softmax and
/// biases are left out (well under 1% at these sizes).
pub struct Flops {
    layers: f64,
    hidden: f64,
    per_token: f64,
    lm_head: f64,
}

impl Flops {
    fn new(cfg: &candle_transformers::models::qwen2::Config) -> Flops {
        let h = cfg.hidden_size as f64;
        let kv = (cfg.num_key_value_heads * (cfg.hidden_size / cfg.num_attention_heads)) as f64;
        let i = cfg.intermediate_size as f64;
        let l = cfg.num_hidden_layers as f64;
        let weights = l * (h * h * 2.0 + h * kv * 2.0 + 3.0 * h * i);
        Flops {
            layers: l,
            hidden: h,
            per_token: 2.0 * weights,
            lm_head: 2.0 * h * cfg.vocab_size as f64,
        }
    }

    /// Tokens at positions `start..end` of one row, each attending to every earlier
    /// position and itself; `lm_rows` rows of LM head.
    fn tokens(&self, start: usize, end: usize, lm_rows: usize) -> f64 {
        let n = end.saturating_sub(start) as f64;
        // Sum over p in start..end of (p + 1) keys.
        let keys = (start + 1 + end) as f64 * n / 2.0;
        n * self.per_token + 4.0 * self.layers * self.hidden * keys + lm_rows as f64 * self.lm_head
    }
}

fn throughput(report: &mut Value, flops: f64, seconds: f64, peak: Option<f64>) {
    let tflops = flops / seconds / 1e12;
    report["model_tflop"] = json!(flops / 1e12);
    report["tflop_per_second"] = json!(tflops);
    if let Some(peak) = peak {
        report["peak_tflop_per_second"] = json!(peak);
        report["percent_of_peak"] = json!(100.0 * tflops / peak);
    }
}

pub fn run(args: BenchEvalArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype)?;
    if args.mode == Mode::Golden {
        let report = golden(&args, &device, dtype)?;
        println!("{report}");
        if report["pass"] != json!(true) {
            anyhow::bail!("{}: outside the stated tolerances", args.model.display());
        }
        return Ok(());
    }
    let load = Instant::now();
    let mut lm = Qwen2Lm::from_dir(&args.model, dtype, &device)?;
    let load_seconds = load.elapsed().as_secs_f64();
    let vocab = lm.config().vocab_size;
    let flops = Flops::new(lm.config());
    let bs = args.batch_size.max(1);
    let max = lm.max_length();
    let to_requests = |pairs: &[(&[u32], &[u32])]| -> anyhow::Result<Vec<ScoreRequest>> {
        Ok(pairs
            .iter()
            .map(|(c, k)| score_request(c, k, None, max))
            .collect::<Result<Vec<_>, _>>()?)
    };
    let mut report = match args.mode {
        Mode::Mc | Mode::Full => {
            let reqs = if args.mode == Mode::Mc {
                let qs = questions(&args, vocab)?;
                let pairs: Vec<(&[u32], &[u32])> = qs
                    .iter()
                    .flat_map(|q| {
                        q.continuations
                            .iter()
                            .map(|k| (q.context.as_slice(), k.as_slice()))
                    })
                    .collect();
                to_requests(&pairs)?
            } else {
                let ps = pairs(&args, vocab)?;
                let pairs: Vec<(&[u32], &[u32])> = ps
                    .iter()
                    .map(|p| (p.context.as_slice(), p.continuation.as_slice()))
                    .collect();
                to_requests(&pairs)?
            };
            let shared = args.mode == Mode::Mc;
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
            let mut report = json!({
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_second": tokens as f64 / seconds,
            });
            if !args.summary {
                let lls: Vec<f64> = scores.iter().map(|s| s.logprob).collect();
                report["loglikelihoods"] = json!(lls);
            }
            report
        }
        Mode::Prefill => {
            let p = prompts(&args, vocab)?;
            for _ in 0..args.warmup {
                let n = bs.min(p.prompts.len());
                lm.generate_greedy_batch(&p.prompts[..n], 1, &mut |_, _| false)?;
            }
            let start = Instant::now();
            for chunk in p.prompts.chunks(bs) {
                lm.generate_greedy_batch(chunk, 1, &mut |_, _| false)?;
            }
            let seconds = start.elapsed().as_secs_f64();
            let tokens: usize = p.prompts.iter().map(Vec::len).sum();
            let work: f64 = p.prompts.iter().map(|q| flops.tokens(0, q.len(), 1)).sum();
            let mut report = json!({
                "prompts": p.prompts.len(),
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_second": tokens as f64 / seconds,
            });
            throughput(&mut report, work, seconds, args.peak_tflops);
            report
        }
        Mode::Generate => {
            let p = prompts(&args, vocab)?;
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
            // The prompt, then every generated token but the last (it is never fed back).
            let work: f64 = p
                .prompts
                .iter()
                .zip(&generated)
                .map(|(q, g)| {
                    let fed = q.len() + g.len().saturating_sub(1);
                    flops.tokens(0, q.len(), 1) + flops.tokens(q.len(), fed, fed - q.len())
                })
                .sum();
            let mut report = json!({
                "prompts": p.prompts.len(),
                "prompt_tokens": p.prompts.iter().map(Vec::len).sum::<usize>(),
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_second": tokens as f64 / seconds,
            });
            throughput(&mut report, work, seconds, args.peak_tflops);
            if !args.summary {
                report["generated"] = json!(generated);
            }
            report
        }
        Mode::Golden => unreachable!("handled above"),
    };
    report["mode"] = json!(format!("{:?}", args.mode).to_lowercase());
    report["device"] = json!(args.device);
    report["dtype"] = json!(args.dtype);
    report["batch_size"] = json!(bs);
    report["load_seconds"] = json!(load_seconds);
    println!("{report}");
    Ok(())
}

/// Per-token tolerance of `--device` against the CPU and transformers in f32.
const F32_TOKEN_TOL: f64 = 1e-4;
/// Per-request tolerance of a log-likelihood sum in bf16, per scored token: bf16 keeps 8
/// bits of mantissa, so two bf16 runs (or bf16 against f32) land near each other, not on
/// each other (the CPU test in tests/it/eval_golden.rs uses the same bound).
const BF16_SUM_TOL_PER_TOKEN: f64 = 0.1;

/// The fixture's requests and greedy generations for one model of
/// `tests/fixtures/eval/golden.json` (the model folder's name is its key), on `--device`
/// in `--dtype`, both whole-sequence and prefix-shared, against the same model on the CPU
/// in the same dtype and against transformers' f32 numbers. f32: every token's
/// log-probability within 1e-4 of both and the greedy generations identical; bf16: every
/// request's sum within 0.1 per token of both (generations are reported, not judged).
fn golden(
    args: &BenchEvalArgs,
    device: &Device,
    dtype: candle_core::DType,
) -> anyhow::Result<Value> {
    let path = args
        .requests
        .as_ref()
        .context("--mode golden needs --requests tests/fixtures/eval/golden.json")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let g: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let name = args
        .model
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let model = g["models"].get(name).with_context(|| {
        format!(
            "{}: no entry models.{name} (the model folder's name selects it)",
            path.display()
        )
    })?;
    let ids = |v: &Value, what: &str| -> anyhow::Result<Vec<u32>> {
        v.as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as u32)).collect())
            .with_context(|| {
                format!(
                    "{}: models.{name}: `{what}` is not a list of ids",
                    path.display()
                )
            })
    };
    let floats = |v: &Value, what: &str| -> anyhow::Result<Vec<f64>> {
        v.as_array()
            .and_then(|a| a.iter().map(Value::as_f64).collect())
            .with_context(|| {
                format!(
                    "{}: models.{name}: `{what}` is not a list of numbers",
                    path.display()
                )
            })
    };
    let eos = g["eos_token_id"].as_u64().map(|e| e as u32);
    let mut on_device = Qwen2Lm::from_dir(&args.model, dtype, device)?;
    let mut on_cpu = Qwen2Lm::from_dir(&args.model, dtype, &Device::Cpu)?;
    let max = on_device.max_length();
    let empty = Vec::new();
    let listed = model["requests"].as_array().unwrap_or(&empty);
    let mut reqs = Vec::new();
    let mut want = Vec::new();
    for r in listed {
        let c = ids(&r["context_ids"], "context_ids")?;
        let k = ids(&r["continuation_ids"], "continuation_ids")?;
        reqs.push(score_request(&c, &k, eos, max)?);
        want.push(floats(&r["token_logprobs"], "token_logprobs")?);
    }
    let bs = args.batch_size.max(1);
    let start = Instant::now();
    let full = score_requests(&mut on_device, &reqs, bs, &mut |_| {})?;
    let shared = score_requests_shared(&mut on_device, &reqs, &mut |_| {})?;
    let device_seconds = start.elapsed().as_secs_f64();
    let cpu = score_requests(&mut on_cpu, &reqs, bs, &mut |_| {})?;
    let token_diff = |a: &[Loglikelihood], b: &dyn Fn(usize) -> Vec<f64>| -> f64 {
        a.iter()
            .enumerate()
            .flat_map(|(i, s)| {
                let b = b(i);
                s.token_logprobs
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (*x as f64 - y).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0.0, f64::max)
    };
    let cpu_tokens = |i: usize| cpu[i].token_logprobs.iter().map(|&x| x as f64).collect();
    let hf_tokens = |i: usize| want[i].clone();
    // Worst |sum difference| / tokens over requests.
    let sum_diff = |a: &[Loglikelihood], b: &dyn Fn(usize) -> f64| -> f64 {
        a.iter()
            .enumerate()
            .map(|(i, s)| (s.logprob - b(i)).abs() / s.token_logprobs.len().max(1) as f64)
            .fold(0.0, f64::max)
    };
    let cpu_sum = |i: usize| cpu[i].logprob;
    let hf_sum = |i: usize| want[i].iter().sum::<f64>();
    let vs_cpu = token_diff(&full, &cpu_tokens).max(token_diff(&shared, &cpu_tokens));
    let vs_hf = token_diff(&full, &hf_tokens).max(token_diff(&shared, &hf_tokens));
    let sum_vs_cpu = sum_diff(&full, &cpu_sum).max(sum_diff(&shared, &cpu_sum));
    let sum_vs_hf = sum_diff(&full, &hf_sum).max(sum_diff(&shared, &hf_sum));
    let mut generations_equal = 0;
    let gens = model["generations"].as_array().unwrap_or(&empty);
    for gen in gens {
        let prompt = ids(&gen["prompt_ids"], "prompt_ids")?;
        let expected = ids(&gen["generated_ids"], "generated_ids")?;
        let got = on_device.generate_greedy(&prompt, expected.len(), &mut |_| false)?;
        generations_equal += usize::from(got == expected);
    }
    let f32 = dtype == candle_core::DType::F32;
    let pass = if f32 {
        vs_cpu <= F32_TOKEN_TOL && vs_hf <= F32_TOKEN_TOL && generations_equal == gens.len()
    } else {
        sum_vs_cpu <= BF16_SUM_TOL_PER_TOKEN && sum_vs_hf <= BF16_SUM_TOL_PER_TOKEN
    };
    let tolerance = if f32 {
        json!({"token_logprob_abs": F32_TOKEN_TOL, "generations": "identical"})
    } else {
        json!({"sum_abs_per_token": BF16_SUM_TOL_PER_TOKEN})
    };
    Ok(json!({
        "mode": "golden",
        "model": name,
        "device": args.device,
        "dtype": args.dtype,
        "requests": reqs.len(),
        "tokens": want.iter().map(Vec::len).sum::<usize>(),
        "device_seconds": device_seconds,
        "max_token_diff_vs_cpu": vs_cpu,
        "max_token_diff_vs_transformers_f32": vs_hf,
        "max_sum_diff_per_token_vs_cpu": sum_vs_cpu,
        "max_sum_diff_per_token_vs_transformers_f32": sum_vs_hf,
        "generations": gens.len(),
        "generations_equal": generations_equal,
        "tolerance": tolerance,
        "pass": pass,
    }))
}

#[cfg(test)]
mod tests {
    use super::Flops;
    use crate::model::synth::SynthShape;

    fn qwen2_5_14b() -> (SynthShape, candle_transformers::models::qwen2::Config) {
        let shape = SynthShape {
            hidden: 5120,
            layers: 48,
            heads: 40,
            kv_heads: 8,
            intermediate: 13824,
            vocab: 152_064,
            tied: false,
            dtype: crate::model::DType::BF16,
        };
        let cfg = candle_transformers::models::qwen2::Config {
            vocab_size: shape.vocab,
            hidden_size: shape.hidden,
            intermediate_size: shape.intermediate,
            num_hidden_layers: shape.layers,
            num_attention_heads: shape.heads,
            num_key_value_heads: shape.kv_heads,
            max_position_embeddings: 32768,
            sliding_window: 32768,
            max_window_layers: 48,
            tie_word_embeddings: false,
            rope_theta: 1e6,
            rms_norm_eps: 1e-6,
            use_sliding_window: false,
            hidden_act: candle_nn::Activation::Silu,
        };
        (shape, cfg)
    }

    #[test]
    fn flops_per_token_are_twice_the_layer_weights() {
        let (shape, cfg) = qwen2_5_14b();
        // Every matrix of the layers: all parameters but embeddings, LM head, norms, biases.
        let (h, kv, l, v) = (shape.hidden, 1024, shape.layers, shape.vocab);
        let small = l * (2 * h + h + 2 * kv) + h;
        let matrices = shape.num_params() - 2 * v * h - small;
        let f = Flops::new(&cfg);
        assert_eq!(f.per_token, 2.0 * matrices as f64);
        assert_eq!(f.lm_head, 2.0 * (h * v) as f64);
        // One token at position 0 attends to one key; a 3-token prompt to 1 + 2 + 3 keys.
        let one = f.tokens(0, 1, 0) - f.per_token;
        assert_eq!(one, 4.0 * (l * h) as f64);
        let three = f.tokens(0, 3, 1) - 3.0 * f.per_token - f.lm_head;
        assert_eq!(three, 6.0 * one);
        // Continuing after 3 tokens: positions 3 and 4 attend to 4 + 5 keys.
        let more = f.tokens(3, 5, 0) - 2.0 * f.per_token;
        assert_eq!(more, 9.0 * one);
        assert!((shape.num_params() as f64 - 14.77e9).abs() < 0.01e9);
    }
}
