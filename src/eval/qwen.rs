//! Qwen2's forward pass for inference, with the caller in charge of positions, the KV cache
//! and the attention mask.
//!
//! candle-transformers' `qwen2::Model` keeps its KV cache inside and builds one mask layout
//! (causal, or a mask that replaces the causal one), so it cannot score several
//! continuations against one cached context, nor decode a batch whose rows have different
//! lengths. This is the same computation (RMSNorm, rotary embedding, grouped-query
//! attention, SwiGLU MLP, the fused candle kernels it uses) with three inputs made explicit:
//! each token's position (rotary index), the keys and values of earlier tokens (`past`,
//! batch 1 is broadcast to every row), and an additive mask over past + new keys.
//!
//! Grouped-query attention folds each key/value head's query heads into one matmul
//! (`[b, kv, group·s, d] × [b, kv, d, t]`) instead of copying keys and values per head.
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::Activation;
use candle_transformers::models::qwen2::Config;

use super::{Error, Result};

/// Keys and values of one layer, `[batch, kv_heads, positions, head_dim]`.
#[derive(Debug, Clone)]
pub struct LayerKv {
    pub k: Tensor,
    pub v: Tensor,
}

impl LayerKv {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.k.dims().get(2).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Layer {
    q: (Tensor, Tensor),
    k: (Tensor, Tensor),
    v: (Tensor, Tensor),
    o: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    ln_attn: Tensor,
    ln_mlp: Tensor,
}

/// The decoder of a Qwen2 model (embedding → layers → final norm), without the LM head.
pub struct Qwen2 {
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    cos: Tensor,
    sin: Tensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    hidden: usize,
    eps: f32,
    act: Activation,
    dtype: DType,
    device: Device,
}

fn take(tensors: &HashMap<String, Tensor>, name: &str, shape: &[usize]) -> Result<Tensor> {
    let t = tensors
        .get(name)
        .ok_or_else(|| Error::Invalid(format!("tensor `{name}` is missing")))?;
    if t.dims() != shape {
        return Err(Error::Invalid(format!(
            "tensor `{name}` has shape {:?}, the config implies {shape:?}",
            t.dims()
        )));
    }
    Ok(t.clone())
}

impl Qwen2 {
    /// Build from checkpoint-named tensors (already in `dtype` on `device`).
    pub fn new(
        tensors: &HashMap<String, Tensor>,
        cfg: &Config,
        dtype: DType,
        device: &Device,
    ) -> Result<Qwen2> {
        let h = cfg.hidden_size;
        let heads = cfg.num_attention_heads;
        let kv_heads = cfg.num_key_value_heads;
        if heads == 0 || kv_heads == 0 || h % heads != 0 || heads % kv_heads != 0 {
            return Err(Error::Invalid(format!(
                "config: hidden_size {h}, num_attention_heads {heads}, num_key_value_heads \
                 {kv_heads}: heads must divide hidden_size and key/value heads must divide heads"
            )));
        }
        let d = h / heads;
        let kvd = kv_heads * d;
        let im = cfg.intermediate_size;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let get = |n: &str, s: &[usize]| take(tensors, &format!("{p}.{n}"), s);
            layers.push(Layer {
                q: (
                    get("self_attn.q_proj.weight", &[h, h])?,
                    get("self_attn.q_proj.bias", &[h])?,
                ),
                k: (
                    get("self_attn.k_proj.weight", &[kvd, h])?,
                    get("self_attn.k_proj.bias", &[kvd])?,
                ),
                v: (
                    get("self_attn.v_proj.weight", &[kvd, h])?,
                    get("self_attn.v_proj.bias", &[kvd])?,
                ),
                o: get("self_attn.o_proj.weight", &[h, h])?,
                gate: get("mlp.gate_proj.weight", &[im, h])?,
                up: get("mlp.up_proj.weight", &[im, h])?,
                down: get("mlp.down_proj.weight", &[h, im])?,
                ln_attn: get("input_layernorm.weight", &[h])?,
                ln_mlp: get("post_attention_layernorm.weight", &[h])?,
            });
        }
        // Rotary tables in f32 (as transformers), then the model dtype.
        let max = cfg.max_position_embeddings;
        let inv: Vec<f32> = (0..d)
            .step_by(2)
            .map(|i| 1f32 / cfg.rope_theta.powf(i as f64 / d as f64) as f32)
            .collect();
        let inv = Tensor::from_vec(inv, (1, d / 2), device)?;
        let t = Tensor::arange(0u32, max as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max, 1))?;
        let freqs = t.matmul(&inv)?;
        Ok(Qwen2 {
            embed: take(tensors, "model.embed_tokens.weight", &[cfg.vocab_size, h])?,
            layers,
            norm: take(tensors, "model.norm.weight", &[h])?,
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
            heads,
            kv_heads,
            head_dim: d,
            hidden: h,
            eps: cfg.rms_norm_eps as f32,
            act: cfg.hidden_act,
            dtype,
            device: device.clone(),
        })
    }

    pub fn embedding(&self) -> &Tensor {
        &self.embed
    }

    /// An additive mask `[rows, 1, 1, s, t]` from `allowed(row, query, key)`; `rows` is 1
    /// (shared by the batch) or the batch size.
    pub fn mask(
        &self,
        rows: usize,
        s: usize,
        t: usize,
        allowed: impl Fn(usize, usize, usize) -> bool,
    ) -> Result<Tensor> {
        let mut m = Vec::with_capacity(rows * s * t);
        for r in 0..rows {
            for i in 0..s {
                for j in 0..t {
                    m.push(if allowed(r, i, j) {
                        0f32
                    } else {
                        f32::NEG_INFINITY
                    });
                }
            }
        }
        Ok(Tensor::from_vec(m, (rows, 1, 1, s, t), &self.device)?.to_dtype(self.dtype)?)
    }

    /// Hidden states after the final norm, `[b·s, hidden]`, and every layer's keys and
    /// values of past + new positions (`[b, kv, past + s, d]`).
    ///
    /// `ids` is `[b, s]`; `positions` holds the rotary index of each token (row-major,
    /// `b·s`); `past` has batch 1 (shared) or `b`; `mask` comes from [`Qwen2::mask`] with
    /// `t = past + s`.
    pub fn forward(
        &self,
        ids: &Tensor,
        positions: &[u32],
        past: Option<&[LayerKv]>,
        mask: &Tensor,
    ) -> Result<(Tensor, Vec<LayerKv>)> {
        let (b, s) = ids.dims2()?;
        if positions.len() != b * s {
            return Err(Error::Invalid(format!(
                "{} positions for a [{b}, {s}] batch",
                positions.len()
            )));
        }
        let pos = Tensor::from_slice(positions, b * s, &self.device)?;
        let cos = self
            .cos
            .index_select(&pos, 0)?
            .reshape((b, s, self.head_dim / 2))?;
        let sin = self
            .sin
            .index_select(&pos, 0)?
            .reshape((b, s, self.head_dim / 2))?;
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?;
        let mut kvs = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let past = past.and_then(|p| p.get(i));
            let (attn, kv) = self.attention(layer, &x, b, s, &cos, &sin, past, mask)?;
            x = (x + attn)?;
            let y = candle_nn::ops::rms_norm(&x, &layer.ln_mlp, self.eps)?;
            let gate = y.matmul(&layer.gate.t()?)?.apply(&self.act)?;
            let up = y.matmul(&layer.up.t()?)?;
            x = (x + (gate * up)?.matmul(&layer.down.t()?)?)?;
            kvs.push(kv);
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.eps)?;
        Ok((x, kvs))
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        b: usize,
        s: usize,
        cos: &Tensor,
        sin: &Tensor,
        past: Option<&LayerKv>,
        mask: &Tensor,
    ) -> Result<(Tensor, LayerKv)> {
        let (kv, d) = (self.kv_heads, self.head_dim);
        let group = self.heads / kv;
        let y = candle_nn::ops::rms_norm(x, &layer.ln_attn, self.eps)?;
        let proj = |(w, bias): &(Tensor, Tensor), heads: usize| -> Result<Tensor> {
            Ok(y.matmul(&w.t()?)?
                .broadcast_add(bias)?
                .reshape((b, s, heads, d))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = candle_nn::rotary_emb::rope(&proj(&layer.q, self.heads)?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&proj(&layer.k, kv)?, cos, sin)?;
        let v = proj(&layer.v, kv)?;
        let (k, v) = match past {
            Some(p) if !p.is_empty() => {
                let widen = |t: &Tensor| -> Result<Tensor> {
                    Ok(if t.dim(0)? == b {
                        t.clone()
                    } else {
                        t.broadcast_as((b, kv, p.len(), d))?.contiguous()?
                    })
                };
                (
                    Tensor::cat(&[&widen(&p.k)?, &k], 2)?,
                    Tensor::cat(&[&widen(&p.v)?, &v], 2)?,
                )
            }
            _ => (k, v),
        };
        let t = k.dim(2)?;
        let scale = 1f64 / (d as f64).sqrt();
        let q = q.reshape((b, kv, group * s, d))?;
        let scores = (q.matmul(&k.t()?)? * scale)?
            .reshape((b, kv, group, s, t))?
            .broadcast_add(mask)?
            .reshape((b, kv, group * s, t))?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = weights
            .matmul(&v)?
            .reshape((b, self.heads, s, d))?
            .transpose(1, 2)?
            .reshape((b * s, self.hidden))?
            .matmul(&layer.o.t()?)?;
        Ok((out, LayerKv { k, v }))
    }
}
