//! Random tiny Qwen2-layout checkpoints for tests and benchmarks.
//!
//! Merge tests need a base model plus fine-tune-like variants whose task vectors have
//! known character: dense small deltas, sparse deltas, low-rank deltas, deltas whose signs
//! conflict with another variant's, and deltas limited to some layers. Benchmarks need the
//! same at real sizes (0.5B-shaped). [`write_family`] writes such a family from a seed.
//!
//! Determinism: every block of 65536 elements of every tensor is drawn from its own
//! stream, keyed by (seed, variant, tensor name, block) through SplitMix64 (written here,
//! so no dependency can change the sequence), and values use only integer arithmetic and
//! basic float operations (no libm), so the same seed gives the same bytes on every
//! platform, in any tensor order and with any number of threads.
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::writer::f32_to_bytes;
use super::{Architecture, DType, HfConfig, ModelWriter, Result, WriteOptions};

pub use super::splitmix::SplitMix64;
use super::splitmix::{fnv1a, mix64};

/// The stream of one block of one tensor of one variant.
fn stream(seed: u64, salt: u64, name: &str, block: u64) -> SplitMix64 {
    let key = mix64(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ fnv1a(name);
    SplitMix64::new(mix64(mix64(key) ^ block))
}

/// Elements per independently seeded block: blocks are generated in parallel, and the
/// values do not depend on the number of threads.
const BLOCK: usize = 1 << 16;

/// `numel` values, block `i` filled by `fill` from `stream(seed, salt, name, i)`.
fn generate(
    seed: u64,
    salt: u64,
    name: &str,
    numel: usize,
    fill: impl Fn(&mut SplitMix64, &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0f32; numel];
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(i, chunk)| fill(&mut stream(seed, salt, name, i as u64), chunk));
    out
}

/// The shape of a synthetic Qwen2 checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthShape {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    /// Tied embeddings: no `lm_head.weight`, `tie_word_embeddings: true`.
    pub tied: bool,
    pub dtype: DType,
}

impl SynthShape {
    /// A few-kilobyte model for unit tests: hidden 16, 2 layers, 4/2 heads, vocab 32.
    pub fn tiny() -> SynthShape {
        SynthShape {
            hidden: 16,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 32,
            vocab: 32,
            tied: true,
            dtype: DType::F32,
        }
    }
    /// Qwen2.5-0.5B's shape (494M parameters, tied), for benchmarks.
    pub fn qwen2_0_5b() -> SynthShape {
        SynthShape {
            hidden: 896,
            layers: 24,
            heads: 14,
            kv_heads: 2,
            intermediate: 4864,
            vocab: 151_936,
            tied: true,
            dtype: DType::BF16,
        }
    }
    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
    /// Check the shape is a valid Qwen2 layout.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let all = [
            self.hidden,
            self.layers,
            self.heads,
            self.kv_heads,
            self.intermediate,
            self.vocab,
        ];
        if all.contains(&0) {
            return Err("every dimension must be at least 1".into());
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(format!(
                "hidden {} is not divisible by heads {}",
                self.hidden, self.heads
            ));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "heads {} is not divisible by kv heads {}",
                self.heads, self.kv_heads
            ));
        }
        Ok(())
    }
    /// Every tensor (name, shape) in the Qwen2 table's order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, hd) = (self.hidden, self.head_dim());
        let (q, kv) = (self.heads * hd, self.kv_heads * hd);
        let arch = qwen2();
        arch.all_weights(self.layers)
            .into_iter()
            .filter(|w| !(self.tied && w.name == "lm_head.weight"))
            .map(|w| {
                let suffix = w
                    .name
                    .rsplit_once("layers.")
                    .map_or(w.name.as_str(), |(_, s)| {
                        s.split_once('.').map_or(s, |(_, rest)| rest)
                    });
                let shape = match suffix {
                    "model.embed_tokens.weight" | "lm_head.weight" => vec![self.vocab, h],
                    "model.norm.weight"
                    | "input_layernorm.weight"
                    | "post_attention_layernorm.weight" => vec![h],
                    "mlp.down_proj.weight" => vec![h, self.intermediate],
                    "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![self.intermediate, h],
                    "self_attn.q_proj.weight" => vec![q, h],
                    "self_attn.q_proj.bias" => vec![q],
                    "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![kv, h],
                    "self_attn.k_proj.bias" | "self_attn.v_proj.bias" => vec![kv],
                    "self_attn.o_proj.weight" => vec![h, q],
                    other => unreachable!("qwen2 table has unexpected weight {other}"),
                };
                (w.name, shape)
            })
            .collect()
    }
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.tensors()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

fn qwen2() -> &'static Architecture {
    // The Qwen2 entry is part of the embedded table (tested in `arch`).
    super::arch::table()
        .iter()
        .find(|a| a.model_type == "qwen2")
        .unwrap_or_else(|| unreachable!("embedded table lacks qwen2"))
}

/// How a variant differs from the base model.
#[derive(Debug, Clone, PartialEq)]
pub enum Variant {
    /// The base model itself.
    Base,
    /// Every element moves by N(0, scale²).
    Dense { scale: f32 },
    /// A `density` fraction of elements moves by N(0, scale²); the rest are exactly base.
    Sparse { density: f64, scale: f32 },
    /// Matrices move by a rank-`rank` product (1-D tensors densely), overall std ≈ scale.
    LowRank { rank: usize, scale: f32 },
    /// Minus `factor` times the delta of `Dense { scale }` with the same seed, plus
    /// 10% independent noise: task vectors whose signs conflict with that variant's.
    SignConflict { scale: f32, factor: f32 },
    /// Dense deltas only on layers `first..end`; every other tensor is exactly base.
    LayerLimited {
        first: usize,
        end: usize,
        scale: f32,
    },
}

impl Variant {
    fn salt(&self) -> u64 {
        match self {
            Variant::Base => 0,
            Variant::Dense { .. } => 1,
            Variant::Sparse { .. } => 2,
            Variant::LowRank { .. } => 3,
            Variant::SignConflict { .. } => 4,
            Variant::LayerLimited { .. } => 5,
        }
    }
}

/// The standard family: (folder name, variant) for a model with `layers` layers.
pub fn standard_family(layers: usize) -> Vec<(&'static str, Variant)> {
    vec![
        ("base", Variant::Base),
        ("ft-dense", Variant::Dense { scale: 0.004 }),
        (
            "ft-sparse",
            Variant::Sparse {
                density: 0.1,
                scale: 0.01,
            },
        ),
        (
            "ft-lowrank",
            Variant::LowRank {
                rank: 2,
                scale: 0.004,
            },
        ),
        (
            "ft-conflict",
            Variant::SignConflict {
                scale: 0.004,
                factor: 0.8,
            },
        ),
        (
            "ft-layers",
            Variant::LayerLimited {
                first: 0,
                end: layers.div_ceil(2),
                scale: 0.004,
            },
        ),
    ]
}

/// Base values of one tensor: norms 1 + N(0, 0.02²), everything else N(0, 0.02²).
fn base_values(seed: u64, name: &str, numel: usize) -> Vec<f32> {
    let offset = if name.ends_with("norm.weight") {
        1.0
    } else {
        0.0
    };
    generate(seed, 0, name, numel, |rng, out| {
        out.iter_mut()
            .for_each(|v| *v = offset + 0.02 * rng.next_normal())
    })
}

/// N(0, scale²) values from the stream (seed, salt, name).
fn dense(seed: u64, salt: u64, name: &str, numel: usize, scale: f32) -> Vec<f32> {
    generate(seed, salt, name, numel, |rng, out| {
        out.iter_mut().for_each(|v| *v = scale * rng.next_normal())
    })
}

fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("model.layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The delta a variant adds to one tensor (None: the tensor equals the base).
fn delta(seed: u64, variant: &Variant, name: &str, shape: &[usize]) -> Option<Vec<f32>> {
    use rayon::prelude::*;
    let numel: usize = shape.iter().product();
    let salt = variant.salt();
    match *variant {
        Variant::Base => None,
        Variant::Dense { scale } => Some(dense(seed, salt, name, numel, scale)),
        Variant::Sparse { density, scale } => {
            Some(generate(seed, salt, name, numel, |rng, out| {
                for v in out.iter_mut() {
                    let keep = rng.next_f64() < density;
                    let x = scale * rng.next_normal();
                    *v = if keep { x } else { 0.0 };
                }
            }))
        }
        Variant::LowRank { rank, scale } => match shape {
            [rows, cols] => {
                // A [rows, rank] · B [rank, cols], entries N(0,1): products have variance
                // `rank`, rescaled to `scale`.
                let a = dense(seed, salt, &format!("{name}#A"), rows * rank, 1.0);
                let b = dense(seed, salt, &format!("{name}#B"), rank * cols, 1.0);
                let s = scale / (rank as f32).sqrt();
                let mut out = vec![0f32; rows * cols];
                out.par_chunks_mut(*cols).enumerate().for_each(|(r, row)| {
                    for k in 0..rank {
                        let ar = a[r * rank + k] * s;
                        for (o, bv) in row.iter_mut().zip(&b[k * cols..(k + 1) * cols]) {
                            *o += ar * bv;
                        }
                    }
                });
                Some(out)
            }
            _ => Some(dense(seed, salt, name, numel, scale)),
        },
        Variant::SignConflict { scale, factor } => {
            let opposite = dense(seed, Variant::Dense { scale }.salt(), name, numel, scale);
            let noise = dense(seed, salt, name, numel, 0.1 * scale);
            Some(
                opposite
                    .into_iter()
                    .zip(noise)
                    .map(|(d, n)| -factor * d + n)
                    .collect(),
            )
        }
        Variant::LayerLimited { first, end, scale } => match layer_of(name) {
            Some(l) if (first..end).contains(&l) => Some(dense(seed, salt, name, numel, scale)),
            _ => None,
        },
    }
}

/// One tensor of a variant, in f32 (before rounding to the storage dtype).
pub fn tensor_values(seed: u64, variant: &Variant, name: &str, shape: &[usize]) -> Vec<f32> {
    let mut values = base_values(seed, name, shape.iter().product());
    if let Some(d) = delta(seed, variant, name, shape) {
        values.iter_mut().zip(d).for_each(|(v, d)| *v += d);
    }
    values
}

/// `config.json` as real Qwen2 checkpoints write it: transformers 4 style (`torch_dtype`,
/// top-level `rope_theta`, numeric `sliding_window`) or transformers 5 style (`dtype`,
/// `rope_parameters`, `sliding_window: null`).
pub fn qwen2_config(shape: &SynthShape, transformers5: bool) -> HfConfig {
    let special = 151_643.min(shape.vocab - 1);
    let mut c = json!({
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": special,
        "eos_token_id": special,
        "hidden_act": "silu",
        "hidden_size": shape.hidden,
        "initializer_range": 0.02,
        "intermediate_size": shape.intermediate,
        "max_position_embeddings": 32768,
        "max_window_layers": shape.layers,
        "model_type": "qwen2",
        "num_attention_heads": shape.heads,
        "num_hidden_layers": shape.layers,
        "num_key_value_heads": shape.kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": shape.tied,
        "torch_dtype": shape.dtype.hf_name(),
        "transformers_version": "4.43.1",
        "use_cache": true,
        "use_sliding_window": false,
        "vocab_size": shape.vocab,
    });
    if transformers5 {
        let m = c.as_object_mut().unwrap_or_else(|| unreachable!());
        m.remove("rope_theta");
        m.remove("torch_dtype");
        m.insert("dtype".into(), Value::from(shape.dtype.hf_name()));
        m.insert(
            "rope_parameters".into(),
            json!({"rope_theta": 1_000_000.0, "rope_type": "default"}),
        );
        m.insert("sliding_window".into(), Value::Null);
        m.insert("transformers_version".into(), Value::from("5.0.0"));
    }
    match c {
        Value::Object(raw) => HfConfig::from_map(raw),
        _ => unreachable!(),
    }
}

/// Options for writing synthetic models.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub seed: u64,
    pub transformers5: bool,
    pub write: WriteOptions,
}

/// Write one synthetic model folder to `out`.
pub fn write_model(
    out: &Path,
    shape: &SynthShape,
    variant: &Variant,
    opts: &SynthOptions,
) -> Result<PathBuf> {
    shape
        .validate()
        .map_err(|m| super::Error::invalid(out, m))?;
    let mut writer = ModelWriter::create(out, opts.write.clone())?;
    qwen2_config(shape, opts.transformers5).write(&writer.temp_path().join("config.json"))?;
    // Every tensor is known: stream them to disk instead of buffering a shard.
    let tensors = shape.tensors();
    let announced: Vec<super::Announced> = tensors
        .iter()
        .map(|(name, dims)| super::Announced {
            name: name.clone(),
            dtype: shape.dtype,
            shape: dims.clone(),
        })
        .collect();
    writer.expect_tensors(&announced)?;
    for (name, dims) in tensors {
        let values = tensor_values(opts.seed, variant, &name, &dims);
        writer.add_tensor(
            &name,
            shape.dtype,
            &dims,
            f32_to_bytes(&values, shape.dtype),
        )?;
    }
    writer.finish()
}

/// Write the [`standard_family`] into `out/<name>/` folders; returns their paths.
pub fn write_family(out: &Path, shape: &SynthShape, opts: &SynthOptions) -> Result<Vec<PathBuf>> {
    standard_family(shape.layers)
        .into_iter()
        .map(|(name, variant)| {
            tracing::info!("writing {}", out.join(name).display());
            write_model(&out.join(name), shape, &variant, opts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_qwen2_0_5b() {
        let s = SynthShape::qwen2_0_5b();
        assert_eq!(s.num_params(), 494_032_768);
        assert_eq!(s.tensors().len(), 1 + 24 * 12 + 1);
    }

    #[test]
    fn variants_have_their_character() {
        let (seed, name, shape) = (3, "model.layers.1.mlp.up_proj.weight", [32usize, 16]);
        let base = tensor_values(seed, &Variant::Base, name, &shape);
        let tv = |v: &Variant| -> Vec<f32> {
            tensor_values(seed, v, name, &shape)
                .iter()
                .zip(&base)
                .map(|(a, b)| a - b)
                .collect()
        };
        let sparse = tv(&Variant::Sparse {
            density: 0.1,
            scale: 0.01,
        });
        let nonzero = sparse.iter().filter(|v| **v != 0.0).count();
        assert!((20..90).contains(&nonzero), "{nonzero} of 512");
        let dense = tv(&Variant::Dense { scale: 0.004 });
        let conflict = tv(&Variant::SignConflict {
            scale: 0.004,
            factor: 0.8,
        });
        let opposite = dense
            .iter()
            .zip(&conflict)
            .filter(|(a, b)| a.signum() != b.signum())
            .count();
        assert!(opposite > 480, "{opposite} of 512 signs conflict");
        let limited = Variant::LayerLimited {
            first: 0,
            end: 1,
            scale: 0.004,
        };
        assert!(
            tv(&limited).iter().all(|v| *v == 0.0),
            "layer 1 is outside 0..1"
        );
    }
}
