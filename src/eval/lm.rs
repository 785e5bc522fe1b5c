//! candle Qwen2 as a scorer: full-sequence log-probabilities, batched with right padding,
//! and greedy generation with a KV cache.
//!
//! candle's `ModelForCausalLM` returns only the last position and its attention-mask
//! argument replaces the causal mask, so this wraps `qwen2::Model` (hidden states), applies
//! the LM head itself (the embedding matrix when tied), and pads on the right with no mask:
//! a causal model never looks right, so the real positions of a padded row are computed
//! exactly as without padding.
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::qwen2;

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

/// A Qwen2 causal language model on one device.
pub struct Qwen2Lm {
    model: qwen2::Model,
    lm_head: Tensor,
    config: qwen2::Config,
    device: Device,
    dtype: DType,
}

impl Qwen2Lm {
    /// Load a model folder (`config.json` + single or sharded safetensors).
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Qwen2Lm> {
        let (_, config) = super::config::read_config(dir)?;
        let tensors = super::weights::load_dir_tensors(dir, dtype, device)?;
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
        let lm_head = match tensors.get("lm_head.weight") {
            Some(t) if !config.tie_word_embeddings => t.clone(),
            _ => tensors
                .get("model.embed_tokens.weight")
                .ok_or_else(|| {
                    Error::Invalid("tensor `model.embed_tokens.weight` is missing".into())
                })?
                .clone(),
        };
        let want = (config.vocab_size, config.hidden_size);
        if lm_head.dims2()? != want {
            return Err(Error::Invalid(format!(
                "LM head has shape {:?}, config says {want:?} (vocab_size, hidden_size)",
                lm_head.dims()
            )));
        }
        let lm_head = lm_head.to_dtype(dtype)?.to_device(device)?;
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        let model = qwen2::Model::new(config, vb)?;
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

    /// Score a batch in one forward pass (rows padded on the right to the longest input).
    /// Logits are computed only at target positions, in f32.
    pub fn score(&mut self, batch: &[ScoreRequest]) -> Result<Vec<TokenScores>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        for r in batch {
            if r.targets.is_empty() || r.targets.len() > r.input.len() {
                return Err(Error::Invalid(format!(
                    "score request with {} input and {} target tokens",
                    r.input.len(),
                    r.targets.len()
                )));
            }
        }
        // Padding must not change any real position's numbers. Two reductions depend on
        // sizes: candle's softmax sums a row in 32-wide SIMD blocks plus a scalar tail, and
        // gemm computes small products (m·n <= 256, or m = 1) with dot-product kernels that
        // round differently. A width that is a multiple of PAD_MULTIPLE puts every real key
        // in the same SIMD lane whatever the padding (zeros add exactly), and an LM head
        // input of at least MIN_ROWS rows keeps gemm on one path.
        let longest = batch.iter().map(|r| r.input.len()).max().unwrap_or(0);
        let width = longest.div_ceil(PAD_MULTIPLE) * PAD_MULTIPLE;
        let mut ids = Vec::with_capacity(batch.len() * width);
        for r in batch {
            ids.extend_from_slice(&r.input);
            ids.resize(ids.len() + width - r.input.len(), 0u32);
        }
        let ids = Tensor::from_vec(ids, (batch.len(), width), &self.device)?;
        self.model.clear_kv_cache();
        let hidden = self.model.forward(&ids, 0, None);
        self.model.clear_kv_cache();
        let hidden = hidden?.reshape((batch.len() * width, self.config.hidden_size))?;
        // Gather the hidden states that predict targets: rows [len - n, len) of each sequence.
        let mut rows = Vec::new();
        for (b, r) in batch.iter().enumerate() {
            let start = b * width + r.input.len() - r.targets.len();
            rows.extend((start..start + r.targets.len()).map(|i| i as u32));
        }
        let n_rows = rows.len();
        rows.resize(n_rows.max(MIN_ROWS), 0);
        let rows = Tensor::from_vec(rows.clone(), rows.len(), &self.device)?;
        let picked = hidden.index_select(&rows, 0)?;
        let logits = picked.matmul(&self.lm_head.t()?)?;
        let logits = logits.narrow(0, 0, n_rows)?.to_dtype(DType::F32)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let argmax: Vec<u32> = logp.argmax(D::Minus1)?.to_vec1()?;
        let mut targets = Vec::with_capacity(n_rows);
        for r in batch {
            targets.extend_from_slice(&r.targets);
        }
        let targets_t = Tensor::from_vec(targets.clone(), (n_rows, 1), &self.device)?;
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

    /// Greedy decoding of up to `max_new` tokens after `prompt`, with a KV cache.
    /// `stop` sees the generated tokens so far and ends generation when it returns true
    /// (the stopping token is kept; callers trim stop strings from the text).
    pub fn generate_greedy(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        stop: &mut dyn FnMut(&[u32]) -> bool,
    ) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(Error::Invalid("generation needs a non-empty prompt".into()));
        }
        if prompt.len() + max_new > self.max_length() {
            return Err(Error::Invalid(format!(
                "prompt of {} tokens + {max_new} new tokens exceeds the model's {} positions",
                prompt.len(),
                self.max_length()
            )));
        }
        self.model.clear_kv_cache();
        let result = self.decode_loop(prompt, max_new, stop);
        self.model.clear_kv_cache();
        result
    }

    fn decode_loop(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        stop: &mut dyn FnMut(&[u32]) -> bool,
    ) -> Result<Vec<u32>> {
        let mut generated = Vec::new();
        let mut input = Tensor::from_slice(prompt, (1, prompt.len()), &self.device)?;
        let mut offset = 0;
        while generated.len() < max_new {
            let seq = input.dim(1)?;
            let hidden = self.model.forward(&input, offset, None)?;
            offset += seq;
            let last = hidden.i((0, seq - 1))?.unsqueeze(0)?;
            let logits = last.matmul(&self.lm_head.t()?)?.to_dtype(DType::F32)?;
            let next: u32 = logits.argmax(D::Minus1)?.i(0)?.to_scalar()?;
            generated.push(next);
            if stop(&generated) {
                break;
            }
            input = Tensor::from_slice(&[next], (1, 1), &self.device)?;
        }
        Ok(generated)
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
            Device::new_cuda(ordinal).map_err(|e| {
                Error::Invalid(format!(
                    "device `{name}` is not available ({e}); build with `--features cuda` on a machine with CUDA"
                ))
            })
        }
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
