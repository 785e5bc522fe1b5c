//! A differentiable twin of candle-transformers' Qwen2.
//!
//! candle-transformers' `qwen2::Model` uses fused RMSNorm, softmax and rotary kernels that
//! have no backward pass, so gradients would reach only the LM head. This twin computes the
//! same function from ops candle can differentiate (`rms_norm_slow`, `softmax` built from
//! exp/sum, `rope_slow`), reading its weights by their Hugging Face names, so a trained twin
//! is saved as an ordinary Qwen2 checkpoint. `tests/zoo_twin.rs` checks that its logits
//! equal candle-transformers' on the same weights.
use std::collections::BTreeMap;

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::Linear;

use super::rng::ZooRng;
use super::Result;

/// The architecture hyper-parameters of a zoo model (Qwen2 `config.json` keys).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZooShape {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
}

impl ZooShape {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// candle-transformers' config for this shape (tied embeddings, no sliding window).
    pub fn candle_config(&self) -> candle_transformers::models::qwen2::Config {
        candle_transformers::models::qwen2::Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads,
            max_position_embeddings: self.max_position_embeddings,
            sliding_window: self.max_position_embeddings,
            max_window_layers: self.num_hidden_layers,
            tie_word_embeddings: true,
            rope_theta: self.rope_theta,
            rms_norm_eps: self.rms_norm_eps,
            use_sliding_window: false,
            hidden_act: candle_nn::Activation::Silu,
        }
    }

    /// Every tensor name with its shape, in Hugging Face naming (no `lm_head`: tied).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, kv) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_key_value_heads * self.head_dim(),
        );
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab_size, h],
        )];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            out.push((format!("{p}.self_attn.q_proj.weight"), vec![h, h]));
            out.push((format!("{p}.self_attn.q_proj.bias"), vec![h]));
            out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
            out.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
            out.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, h]));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        out
    }

    pub fn parameter_count(&self) -> usize {
        self.tensor_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

/// Trainable weights by Hugging Face name (sorted, so iteration order is fixed).
pub struct Params {
    pub vars: BTreeMap<String, Var>,
}

impl Params {
    /// Seeded initial weights: norms 1, biases 0, other matrices N(0, 0.02²)
    /// (transformers' `initializer_range`), drawn in name order from our own generator.
    pub fn init(shape: &ZooShape, seed: u64) -> Result<Params> {
        let mut rng = ZooRng::new(seed, "init");
        let mut vars = BTreeMap::new();
        let mut shapes = shape.tensor_shapes();
        shapes.sort();
        for (name, dims) in shapes {
            let n: usize = dims.iter().product();
            let values: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| (0.02 * rng.normal()) as f32).collect()
            };
            let t = Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?;
            vars.insert(name, Var::from_tensor(&t)?);
        }
        Ok(Params { vars })
    }

    /// Trainable copies of `tensors` (converted to f32).
    pub fn from_tensors(tensors: &BTreeMap<String, Tensor>) -> Result<Params> {
        let mut vars = BTreeMap::new();
        for (name, t) in tensors {
            vars.insert(name.clone(), Var::from_tensor(&t.to_dtype(DType::F32)?)?);
        }
        Ok(Params { vars })
    }

    /// Current values, detached from the training graph.
    pub fn snapshot(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (name, v) in &self.vars {
            out.insert(name.clone(), v.as_tensor().detach().copy()?);
        }
        Ok(out)
    }

    pub fn all_vars(&self) -> Vec<Var> {
        self.vars.values().cloned().collect()
    }

    fn get(&self, name: &str) -> Result<Tensor> {
        self.vars
            .get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| super::Error::MissingTensor {
                name: name.to_string(),
            })
    }
}

struct Layer {
    input_layernorm: Tensor,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    post_attention_layernorm: Tensor,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

/// The twin: forward passes share the `Params`' variables, so an optimizer step on the
/// variables is seen by the next forward.
pub struct Twin {
    shape: ZooShape,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    cos: Tensor,
    sin: Tensor,
}

impl Twin {
    pub fn new(shape: &ZooShape, params: &Params) -> Result<Twin> {
        let lin = |name: &str, bias: bool| -> Result<Linear> {
            let b = if bias {
                Some(params.get(&format!("{name}.bias"))?)
            } else {
                None
            };
            Ok(Linear::new(params.get(&format!("{name}.weight"))?, b))
        };
        let mut layers = Vec::new();
        for l in 0..shape.num_hidden_layers {
            let p = format!("model.layers.{l}");
            layers.push(Layer {
                input_layernorm: params.get(&format!("{p}.input_layernorm.weight"))?,
                q_proj: lin(&format!("{p}.self_attn.q_proj"), true)?,
                k_proj: lin(&format!("{p}.self_attn.k_proj"), true)?,
                v_proj: lin(&format!("{p}.self_attn.v_proj"), true)?,
                o_proj: lin(&format!("{p}.self_attn.o_proj"), false)?,
                post_attention_layernorm: params
                    .get(&format!("{p}.post_attention_layernorm.weight"))?,
                gate_proj: lin(&format!("{p}.mlp.gate_proj"), false)?,
                up_proj: lin(&format!("{p}.mlp.up_proj"), false)?,
                down_proj: lin(&format!("{p}.mlp.down_proj"), false)?,
            });
        }
        // Rotary tables exactly as candle-transformers builds them.
        let dim = shape.head_dim();
        let inv_freq: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1f32 / shape.rope_theta.powf(i as f64 / dim as f64) as f32)
            .collect();
        let half = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), &Device::Cpu)?;
        let max = shape.max_position_embeddings;
        let t = Tensor::arange(0u32, max as u32, &Device::Cpu)?
            .to_dtype(DType::F32)?
            .reshape((max, 1))?;
        let freqs = t.matmul(&inv_freq)?;
        Ok(Twin {
            shape: shape.clone(),
            embed_tokens: params.get("model.embed_tokens.weight")?,
            layers,
            norm: params.get("model.norm.weight")?,
            cos: freqs.cos()?,
            sin: freqs.sin()?,
        })
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]` (causal, no padding mask:
    /// pad on the right and ignore padded positions).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let s_cfg = &self.shape;
        let eps = s_cfg.rms_norm_eps as f32;
        let mask: Vec<f32> = (0..s)
            .flat_map(|i| (0..s).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, s, s), &Device::Cpu)?;
        let cos = self.cos.narrow(0, 0, s)?;
        let sin = self.sin.narrow(0, 0, s)?;
        let (nh, nkv, hd) = (
            s_cfg.num_attention_heads,
            s_cfg.num_key_value_heads,
            s_cfg.head_dim(),
        );
        let mut xs = self
            .embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, s, s_cfg.hidden_size))?;
        for layer in &self.layers {
            let residual = xs.clone();
            let h = candle_nn::ops::rms_norm_slow(&xs, &layer.input_layernorm, eps)?;
            let q = layer
                .q_proj
                .forward(&h)?
                .reshape((b, s, nh, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = layer
                .k_proj
                .forward(&h)?
                .reshape((b, s, nkv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = layer
                .v_proj
                .forward(&h)?
                .reshape((b, s, nkv, hd))?
                .transpose(1, 2)?;
            let q = candle_nn::rotary_emb::rope_slow(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_slow(&k, &cos, &sin)?;
            let k = candle_transformers::utils::repeat_kv(k, nh / nkv)?.contiguous()?;
            let v = candle_transformers::utils::repeat_kv(v, nh / nkv)?.contiguous()?;
            let scale = 1f64 / (hd as f64).sqrt();
            let att = (q.matmul(&k.transpose(2, 3)?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let out = att
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, s, s_cfg.hidden_size))?;
            xs = (layer.o_proj.forward(&out)? + residual)?;
            let residual = xs.clone();
            let h = candle_nn::ops::rms_norm_slow(&xs, &layer.post_attention_layernorm, eps)?;
            let gate = layer.gate_proj.forward(&h)?.silu()?;
            let up = layer.up_proj.forward(&h)?;
            xs = (layer.down_proj.forward(&(gate * up)?)? + residual)?;
        }
        let xs = candle_nn::ops::rms_norm_slow(&xs, &self.norm, eps)?;
        Ok(xs.broadcast_matmul(&self.embed_tokens.t()?)?)
    }
}
