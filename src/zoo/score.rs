//! The zoo's own scorer: greedy decoding with candle-transformers' `qwen2::Model` on a
//! saved folder (or tensors in memory), exact match against the answer, plus the two
//! simple merges of the specialists (equal-weight linear, TIES onto the generalist) used
//! to tune the skills.
//!
//! This is a development measuring stick, not `lamarck eval`: the README's table says which
//! of the two produced each number.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::qwen2;
use tokenizers::Tokenizer;

use super::save::io_err;
use super::skills::Item;
use super::tokenizer::{encode, endoftext_id};
use super::{Error, Result};

/// A model ready for greedy decoding.
pub struct Greedy {
    model: qwen2::Model,
    lm_head: Tensor,
    tokenizer: Tokenizer,
}

/// The tensors of a model folder's `model.safetensors`, as f32, with its candle config.
pub fn load_folder(dir: &Path) -> Result<(qwen2::Config, BTreeMap<String, Tensor>)> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
    let config: qwen2::Config = serde_json::from_str(&text).map_err(|e| Error::Invalid {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    let weights = dir.join("model.safetensors");
    let raw = candle_core::safetensors::load(&weights, &Device::Cpu)?;
    let mut tensors = BTreeMap::new();
    for (name, t) in raw {
        tensors.insert(name, t.to_dtype(DType::F32)?);
    }
    Ok((config, tensors))
}

impl Greedy {
    pub fn new(
        config: &qwen2::Config,
        tensors: &BTreeMap<String, Tensor>,
        tokenizer: Tokenizer,
    ) -> Result<Greedy> {
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let lm_head = tensors
            .get("lm_head.weight")
            .or_else(|| tensors.get("model.embed_tokens.weight"))
            .ok_or_else(|| Error::MissingTensor {
                name: "model.embed_tokens.weight".into(),
            })?
            .clone();
        let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
        Ok(Greedy {
            model: qwen2::Model::new(config, vb)?,
            lm_head,
            tokenizer,
        })
    }

    /// Greedy continuations of `prompts`, cut before the first newline or end of text,
    /// at most `max_new` tokens each.
    pub fn generate(&mut self, prompts: &[String], max_new: usize) -> Result<Vec<String>> {
        let newline = encode(&self.tokenizer, "\n")?[0];
        let eos = endoftext_id();
        let mut out = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(64) {
            let mut rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|p| encode(&self.tokenizer, p))
                .collect::<Result<_>>()?;
            let starts: Vec<usize> = rows.iter().map(Vec::len).collect();
            let mut done = vec![false; rows.len()];
            for _ in 0..max_new {
                if done.iter().all(|d| *d) {
                    break;
                }
                let len = rows.iter().map(Vec::len).max().unwrap_or(1);
                let flat: Vec<u32> = rows
                    .iter()
                    .flat_map(|r| r.iter().copied().chain(std::iter::repeat(eos)).take(len))
                    .collect();
                let ids = Tensor::from_vec(flat, (rows.len(), len), &Device::Cpu)?;
                // Full recompute each step: clear what the previous forward cached.
                self.model.clear_kv_cache();
                let hidden = self.model.forward(&ids, 0, None)?;
                let logits = hidden
                    .broadcast_matmul(&self.lm_head.t()?)?
                    .to_vec3::<f32>()?;
                for (r, row) in rows.iter_mut().enumerate() {
                    if done[r] {
                        continue;
                    }
                    let last = &logits[r][row.len() - 1];
                    let next = argmax(last);
                    if next == newline || next == eos {
                        done[r] = true;
                    } else {
                        row.push(next);
                    }
                }
            }
            for (r, row) in rows.iter().enumerate() {
                let text = self
                    .tokenizer
                    .decode(&row[starts[r]..], true)
                    .map_err(|e| Error::Tokenizer {
                        message: e.to_string(),
                    })?;
                out.push(text);
            }
        }
        Ok(out)
    }

    /// Fraction of `items` whose greedy answer equals the target exactly.
    pub fn accuracy(&mut self, items: &[Item], max_new: usize) -> Result<f64> {
        let prompts: Vec<String> = items.iter().map(|i| i.prompt.clone()).collect();
        let answers = self.generate(&prompts, max_new)?;
        let correct = answers
            .iter()
            .zip(items)
            .filter(|(a, i)| **a == i.answer)
            .count();
        Ok(correct as f64 / items.len().max(1) as f64)
    }
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// Items of a task's split file (`{"prompt": …, "answer": …}` per line).
pub fn read_items(path: &Path) -> Result<Vec<Item>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut items = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Invalid {
            path: path.to_path_buf(),
            message: format!("line {}: {e}", n + 1),
        })?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| Error::Invalid {
                    path: path.to_path_buf(),
                    message: format!("line {}: no string field `{k}`", n + 1),
                })
        };
        items.push(Item {
            prompt: field("prompt")?,
            answer: field("answer")?,
        });
    }
    Ok(items)
}

/// Equal-weight average of `models`.
pub fn linear_merge(models: &[&BTreeMap<String, Tensor>]) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    let Some(first) = models.first() else {
        return Ok(out);
    };
    for (name, t) in first.iter() {
        let mut sum = t.clone();
        for m in &models[1..] {
            sum = (sum + tensor(m, name)?)?;
        }
        out.insert(name.clone(), (sum / models.len() as f64)?);
    }
    Ok(out)
}

/// Task arithmetic (Ilharco et al. 2023): `base + weight · Σ (model − base)`.
pub fn task_arithmetic(
    base: &BTreeMap<String, Tensor>,
    models: &[&BTreeMap<String, Tensor>],
    weight: f64,
) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (name, b) in base {
        let mut sum = b.zeros_like()?;
        for m in models {
            sum = (sum + (tensor(m, name)? - b)?)?;
        }
        out.insert(name.clone(), (b + (sum * weight)?)?);
    }
    Ok(out)
}

/// TIES (Yadav et al. 2023) as mergekit runs it with weight 1 and `normalize: true`: task
/// vectors against `base`, each pruned to its `density` largest magnitudes per tensor, a
/// per-element sign elected by the summed pruned vectors, and the agreeing entries averaged.
pub fn ties_merge(
    base: &BTreeMap<String, Tensor>,
    models: &[&BTreeMap<String, Tensor>],
    density: f64,
) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (name, b) in base {
        let bv = b.flatten_all()?.to_vec1::<f32>()?;
        let mut deltas = Vec::new();
        for m in models {
            let mv = tensor(m, name)?.flatten_all()?.to_vec1::<f32>()?;
            let mut d: Vec<f32> = mv.iter().zip(&bv).map(|(x, y)| x - y).collect();
            let k = ((d.len() as f64) * density).round() as usize;
            if k < d.len() {
                let mut mags: Vec<f32> = d.iter().map(|x| x.abs()).collect();
                mags.sort_by(|a, b| b.total_cmp(a));
                let threshold = mags[k.saturating_sub(1)];
                let mut kept = 0;
                for x in d.iter_mut() {
                    if x.abs() >= threshold && kept < k {
                        kept += 1;
                    } else {
                        *x = 0.0;
                    }
                }
            }
            deltas.push(d);
        }
        let merged: Vec<f32> = (0..bv.len())
            .map(|i| {
                let sign = deltas.iter().map(|d| d[i]).sum::<f32>() >= 0.0;
                let agree: Vec<f32> = deltas
                    .iter()
                    .map(|d| d[i])
                    .filter(|x| *x != 0.0 && (*x > 0.0) == sign)
                    .collect();
                let mean = if agree.is_empty() {
                    0.0
                } else {
                    agree.iter().sum::<f32>() / agree.len() as f32
                };
                bv[i] + mean
            })
            .collect();
        out.insert(
            name.clone(),
            Tensor::from_vec(merged, b.dims(), &Device::Cpu)?,
        );
    }
    Ok(out)
}

fn tensor<'a>(model: &'a BTreeMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    model.get(name).ok_or_else(|| Error::MissingTensor {
        name: name.to_string(),
    })
}
