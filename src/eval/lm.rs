//! A Qwen2 model as a scorer: full-sequence log-probabilities, batched with right padding;
//! continuations scored against a cached context (prefix sharing); batched greedy
//! generation with a KV cache.
//!
//! The forward pass is [`super::qwen::Qwen2`] (positions, cache and mask are ours to set);
//! this applies the LM head (the embedding matrix when tied) only where a token is scored
//! or generated, in f32.
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_transformers::models::qwen2;

use super::qwen::{LayerKv, Qwen2};
use super::{Error, Result};

/// Fewest rows any scoring matmul gets (see [`Qwen2Lm::score`]).
const MIN_ROWS: usize = 17;
/// Sequence widths are rounded up to this (see [`Qwen2Lm::score`]).
const PAD_MULTIPLE: usize = 32;

/// One sequence to score: `input` is fed to the model; the last `targets.len()` positions
/// of `input` predict `targets` (the token that follows each of them).
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    pub input: Vec<u32>,
    pub targets: Vec<u32>,
}

/// Log-probabilities of a request's targets, in order, and whether each target was the
/// arg-max prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenScores {
    pub logprobs: Vec<f32>,
    pub is_greedy: bool,
}

/// Keys and values of a token prefix (batch 1), to score continuations against it.
#[derive(Debug, Clone, Default)]
pub struct PrefixCache {
    tokens: Vec<u32>,
    kv: Vec<LayerKv>,
}

impl PrefixCache {
    /// The tokens whose keys and values are held.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

/// A Qwen2 causal language model on one device.
pub struct Qwen2Lm {
    model: Qwen2,
    lm_head: Tensor,
    config: qwen2::Config,
    device: Device,
    dtype: DType,
}

impl Qwen2Lm {
    /// Load a model folder (`config.json` + single or sharded safetensors).
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Qwen2Lm> {
        let opened =
            crate::model::ModelDir::open(dir).map_err(|e| Error::Invalid(e.to_string()))?;
        let config = super::config::qwen2_config(&opened.config, &dir.join("config.json"))?;
        let tensors = super::weights::load_tensors(&opened, dtype, device)?;
        drop(opened);
        Qwen2Lm::from_tensors(tensors, &config, dtype, device)
            .map_err(|e| Error::model(dir, e.to_string()))
    }

    /// Build from tensors already in memory, named as in a checkpoint
    /// (`model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`...).
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        config: &qwen2::Config,
        dtype: DType,
        device: &Device,
    ) -> Result<Qwen2Lm> {
        let mut tensors = tensors;
        for t in tensors.values_mut() {
            if t.dtype() != dtype || !t.device().same_device(device) {
                *t = t.to_dtype(dtype)?.to_device(device)?;
            }
        }
        let model = Qwen2::new(&tensors, config, dtype, device)?;
        let lm_head = match tensors.get("lm_head.weight") {
            Some(t) if !config.tie_word_embeddings => t.clone(),
            _ => model.embedding().clone(),
        };
        let want = (config.vocab_size, config.hidden_size);
        if lm_head.dims2()? != want {
            return Err(Error::Invalid(format!(
                "LM head has shape {:?}, config says {want:?} (vocab_size, hidden_size)",
                lm_head.dims()
            )));
        }
        Ok(Qwen2Lm {
            model,
            lm_head,
            config: config.clone(),
            device: device.clone(),
            dtype,
        })
    }

    pub fn config(&self) -> &qwen2::Config {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Longest sequence the rotary table covers.
    pub fn max_length(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// f32 log-softmax of the LM head at `rows` of `hidden` (`[n, hidden]`).
    fn log_probs(&self, hidden: &Tensor, rows: &[u32], min_rows: usize) -> Result<Tensor> {
        let n = rows.len();
        let mut rows = rows.to_vec();
        rows.resize(n.max(min_rows), 0);
        let rows = Tensor::from_vec(rows.clone(), rows.len(), &self.device)?;
        let picked = hidden.index_select(&rows, 0)?;
        let logits = picked.matmul(&self.lm_head.t()?)?;
        let logits = logits.narrow(0, 0, n)?.to_dtype(DType::F32)?;
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
    }

    /// Per-request scores from log-probabilities of their target rows, in order.
    fn pick(&self, logp: &Tensor, batch: &[ScoreRequest]) -> Result<Vec<TokenScores>> {
        let argmax: Vec<u32> = logp.argmax(D::Minus1)?.to_vec1()?;
        let targets: Vec<u32> = batch.iter().flat_map(|r| r.targets.clone()).collect();
        let targets_t = Tensor::from_vec(targets.clone(), (targets.len(), 1), &self.device)?;
        let picked_lp: Vec<f32> = logp.gather(&targets_t, 1)?.squeeze(1)?.to_vec1()?;
        let mut out = Vec::with_capacity(batch.len());
        let mut at = 0;
        for r in batch {
            let n = r.targets.len();
            let is_greedy = (at..at + n).all(|i| argmax[i] == targets[i]);
            out.push(TokenScores {
                logprobs: picked_lp[at..at + n].to_vec(),
                is_greedy,
            });
            at += n;
        }
        Ok(out)
    }

    fn check_requests(batch: &[ScoreRequest]) -> Result<()> {
        for r in batch {
            if r.targets.is_empty() || r.targets.len() > r.input.len() {
                return Err(Error::Invalid(format!(
                    "score request with {} input and {} target tokens",
                    r.input.len(),
                    r.targets.len()
                )));
            }
        }
        Ok(())
    }

    /// Score a batch in one forward pass (rows padded on the right to the longest input),
    /// every request with its whole input: the reference path that prefix sharing
    /// ([`Qwen2Lm::score_after`]) is checked against. Logits only at target positions.
    pub fn score(&mut self, batch: &[ScoreRequest]) -> Result<Vec<TokenScores>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        Self::check_requests(batch)?;
        // Padding must not change any real position's numbers. Two reductions depend on
        // sizes: candle's softmax sums a row in 32-wide SIMD blocks plus a scalar tail, and
        // gemm computes small products (m·n <= 256, or m = 1) with dot-product kernels that
        // round differently. A width that is a multiple of PAD_MULTIPLE puts every real key
        // in the same SIMD lane whatever the padding (zeros add exactly), and an LM head
        // input of at least MIN_ROWS rows keeps gemm on one path.
        let longest = batch.iter().map(|r| r.input.len()).max().unwrap_or(0);
        let width = longest.div_ceil(PAD_MULTIPLE) * PAD_MULTIPLE;
        self.check_length(width, 0)?;
        let mut ids = Vec::with_capacity(batch.len() * width);
        for r in batch {
            ids.extend_from_slice(&r.input);
            ids.resize(ids.len() + width - r.input.len(), 0u32);
        }
        let ids = Tensor::from_vec(ids, (batch.len(), width), &self.device)?;
        let positions: Vec<u32> = (0..batch.len()).flat_map(|_| 0..width as u32).collect();
        let mask = self.model.mask(1, width, width, |_, i, j| j <= i)?;
        let (hidden, _) = self.model.forward(&ids, &positions, None, &mask)?;
        let mut rows = Vec::new();
        for (b, r) in batch.iter().enumerate() {
            let start = b * width + r.input.len() - r.targets.len();
            rows.extend((start..start + r.targets.len()).map(|i| i as u32));
        }
        let logp = self.log_probs(&hidden, &rows, MIN_ROWS)?;
        self.pick(&logp, batch)
    }

    fn check_length(&self, len: usize, extra: usize) -> Result<()> {
        if len + extra > self.max_length() {
            return Err(Error::Invalid(format!(
                "{len} + {extra} tokens exceed the model's {} positions (max_position_embeddings)",
                self.max_length()
            )));
        }
        Ok(())
    }

    /// The keys and values of `tokens`, reusing the part of `cache` that `tokens` starts
    /// with (a few-shot prefix, a shared context) and running only the rest.
    pub fn prefix(&mut self, cache: PrefixCache, tokens: &[u32]) -> Result<PrefixCache> {
        self.check_length(tokens.len(), 0)?;
        let common = cache
            .tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        if common == tokens.len() && common == cache.tokens.len() {
            return Ok(cache);
        }
        let kept: Vec<LayerKv> = if common == 0 {
            Vec::new()
        } else {
            cache
                .kv
                .iter()
                .map(|l| -> Result<LayerKv> {
                    Ok(LayerKv {
                        k: l.k.narrow(2, 0, common)?.contiguous()?,
                        v: l.v.narrow(2, 0, common)?.contiguous()?,
                    })
                })
                .collect::<Result<_>>()?
        };
        let rest = &tokens[common..];
        if rest.is_empty() {
            return Ok(PrefixCache {
                tokens: tokens.to_vec(),
                kv: kept,
            });
        }
        let s = rest.len();
        let ids = Tensor::from_slice(rest, (1, s), &self.device)?;
        let positions: Vec<u32> = (common..tokens.len()).map(|p| p as u32).collect();
        let mask = self
            .model
            .mask(1, s, common + s, |_, i, j| j <= common + i)?;
        let past = (!kept.is_empty()).then_some(kept.as_slice());
        let (_, kv) = self.model.forward(&ids, &positions, past, &mask)?;
        Ok(PrefixCache {
            tokens: tokens.to_vec(),
            kv,
        })
    }

    /// Score requests that continue `prefix`: each request's `input` is what follows the
    /// prefix tokens, and every position of it predicts a target (`input.len() ==
    /// targets.len()`). All requests go through the model in one pass against the cached
    /// keys and values; logits only at target positions.
    pub fn score_after(
        &mut self,
        prefix: &PrefixCache,
        batch: &[ScoreRequest],
    ) -> Result<Vec<TokenScores>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        Self::check_requests(batch)?;
        let p = prefix.tokens.len();
        let width = batch.iter().map(|r| r.input.len()).max().unwrap_or(0);
        self.check_length(p, width)?;
        let mut ids = Vec::with_capacity(batch.len() * width);
        for r in batch {
            ids.extend_from_slice(&r.input);
            ids.resize(ids.len() + width - r.input.len(), 0u32);
        }
        let ids = Tensor::from_vec(ids, (batch.len(), width), &self.device)?;
        let positions: Vec<u32> = (0..batch.len())
            .flat_map(|_| (p..p + width).map(|x| x as u32))
            .collect();
        let mask = self.model.mask(1, width, p + width, |_, i, j| j <= p + i)?;
        let past = (p > 0).then_some(prefix.kv.as_slice());
        let (hidden, _) = self.model.forward(&ids, &positions, past, &mask)?;
        let mut rows = Vec::new();
        for (b, r) in batch.iter().enumerate() {
            let start = b * width + r.input.len() - r.targets.len();
            rows.extend((start..start + r.targets.len()).map(|i| i as u32));
        }
        let logp = self.log_probs(&hidden, &rows, 0)?;
        self.pick(&logp, batch)
    }

    /// Greedy decoding of up to `max_new` tokens after `prompt`, with a KV cache.
    /// `stop` sees the generated tokens so far and ends generation when it returns true
    /// (the stopping token is kept; callers trim stop strings from the text).
    pub fn generate_greedy(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        stop: &mut dyn FnMut(&[u32]) -> bool,
    ) -> Result<Vec<u32>> {
        let mut out =
            self.generate_greedy_batch(&[prompt.to_vec()], max_new, &mut |_, g| stop(g))?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Greedy decoding of a batch of prompts, each up to `max_new` tokens; `stop(row,
    /// tokens)` ends row `row` when it returns true (the stopping token is kept).
    ///
    /// Prompts are padded on the right and each row keeps its own positions; a mask hides
    /// every padding key from every row, so a row's tokens are the ones it gets alone (the
    /// numbers differ only in rounding). Finished rows leave the batch.
    pub fn generate_greedy_batch(
        &mut self,
        prompts: &[Vec<u32>],
        max_new: usize,
        stop: &mut dyn FnMut(usize, &[u32]) -> bool,
    ) -> Result<Vec<Vec<u32>>> {
        let mut out = vec![Vec::new(); prompts.len()];
        if prompts.is_empty() || max_new == 0 {
            return Ok(out);
        }
        for p in prompts {
            if p.is_empty() {
                return Err(Error::Invalid("generation needs a non-empty prompt".into()));
            }
            if p.len() + max_new > self.max_length() {
                return Err(Error::Invalid(format!(
                    "prompt of {} tokens + {max_new} new tokens exceeds the model's {} positions",
                    p.len(),
                    self.max_length()
                )));
            }
        }
        let b = prompts.len();
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(b * width);
        for p in prompts {
            ids.extend_from_slice(p);
            ids.resize(ids.len() + width - p.len(), 0u32);
        }
        let ids = Tensor::from_vec(ids, (b, width), &self.device)?;
        let positions: Vec<u32> = (0..b).flat_map(|_| 0..width as u32).collect();
        let mask = self.model.mask(1, width, width, |_, i, j| j <= i)?;
        let (hidden, mut kv) = self.model.forward(&ids, &positions, None, &mask)?;
        let rows: Vec<u32> = prompts
            .iter()
            .enumerate()
            .map(|(r, p)| (r * width + p.len() - 1) as u32)
            .collect();
        let mut next = self.greedy(&hidden, &rows)?;
        // Rows still generating: (original index, prompt length).
        let mut active: Vec<(usize, usize)> = prompts.iter().map(Vec::len).enumerate().collect();
        for step in 0.. {
            let mut keep = Vec::with_capacity(active.len());
            for (slot, &(row, _)) in active.iter().enumerate() {
                out[row].push(next[slot]);
                if !(out[row].len() >= max_new || stop(row, &out[row])) {
                    keep.push(slot);
                }
            }
            if keep.is_empty() {
                break;
            }
            if keep.len() < active.len() {
                let idx = Tensor::from_vec(
                    keep.iter().map(|&s| s as u32).collect::<Vec<_>>(),
                    keep.len(),
                    &self.device,
                )?;
                kv = kv
                    .iter()
                    .map(|l| -> Result<LayerKv> {
                        Ok(LayerKv {
                            k: l.k.index_select(&idx, 0)?,
                            v: l.v.index_select(&idx, 0)?,
                        })
                    })
                    .collect::<Result<_>>()?;
                active = keep.iter().map(|&s| active[s]).collect();
                next = keep.iter().map(|&s| next[s]).collect();
            }
            // Keys: `width` prompt slots (row r's first len_r are real), then `step + 1`
            // generated ones.
            let a = active.len();
            let t = width + step + 1;
            let ids = Tensor::from_vec(next.clone(), (a, 1), &self.device)?;
            let positions: Vec<u32> = active.iter().map(|&(_, n)| (n + step) as u32).collect();
            let lens: Vec<usize> = active.iter().map(|&(_, n)| n).collect();
            let mask = self
                .model
                .mask(a, 1, t, |r, _, j| j < lens[r] || j >= width)?;
            let (hidden, new_kv) = self.model.forward(&ids, &positions, Some(&kv), &mask)?;
            kv = new_kv;
            let rows: Vec<u32> = (0..a as u32).collect();
            next = self.greedy(&hidden, &rows)?;
        }
        Ok(out)
    }

    /// Arg-max token of the LM head at `rows` of `hidden`.
    fn greedy(&self, hidden: &Tensor, rows: &[u32]) -> Result<Vec<u32>> {
        let idx = Tensor::from_slice(rows, rows.len(), &self.device)?;
        let logits = hidden
            .index_select(&idx, 0)?
            .matmul(&self.lm_head.t()?)?
            .to_dtype(DType::F32)?;
        Ok(logits.argmax(D::Minus1)?.to_vec1()?)
    }
}

/// `cpu` or `cuda` (`cuda:N`); CUDA needs the `cuda` cargo feature.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        Error::Invalid(format!("device `{name}`: use cpu, cuda or cuda:N"))
                    })?,
                None => {
                    return Err(Error::Invalid(format!(
                        "device `{name}`: use cpu, cuda or cuda:N"
                    )))
                }
            };
            open_cuda(name, ordinal)
        }
    }
}

/// Without the `cuda` feature candle refuses at once.
#[cfg(not(feature = "cuda"))]
fn open_cuda(name: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        Error::Invalid(format!(
            "device `{name}` is not available ({e}); build with `--features cuda` (tools/cuda/build.sh) on a machine with an NVIDIA GPU"
        ))
    })
}

/// With it, the CUDA libraries are loaded at run time (tools/cuda/build.sh), and cudarc
/// panics when the driver library is missing: that panic becomes an error saying a GPU and
/// its driver are needed.
#[cfg(feature = "cuda")]
fn open_cuda(name: &str, ordinal: usize) -> Result<Device> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(Error::Invalid(format!(
            "device `{name}` is not available ({e}); `--device cuda` needs an NVIDIA GPU and its driver"
        ))),
        Err(_) => Err(Error::Invalid(format!(
            "device `{name}`: no CUDA driver library (libcuda.so.1) on this machine; `--device cuda` needs an NVIDIA GPU and its driver (use --device cpu here)"
        ))),
    }
}

/// `f32` or `bf16` (also `float32`, `bfloat16`).
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        _ => Err(Error::Invalid(format!("dtype `{name}`: use f32 or bf16"))),
    }
}
