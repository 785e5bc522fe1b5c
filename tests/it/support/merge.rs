//! Shared helpers for the merge tests: tiny Qwen2-layout stand-in checkpoints (full or
//! header-only) written directly with the `safetensors` crate, and a model map.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Shape of a stand-in model.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub tied: bool,
}

impl Shape {
    pub fn tiny(layers: usize) -> Shape {
        Shape {
            layers,
            hidden: 32,
            intermediate: 64,
            heads: 4,
            kv_heads: 2,
            vocab: 96,
            tied: false,
        }
    }
    /// Qwen2.5-14B's shapes.
    pub fn qwen14b() -> Shape {
        Shape {
            layers: 48,
            hidden: 5120,
            intermediate: 13824,
            heads: 40,
            kv_heads: 8,
            vocab: 152064,
            tied: false,
        }
    }
    /// (name, shape) of every tensor, Qwen2 layout.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i) = (self.hidden, self.intermediate);
        let kv = h / self.heads * self.kv_heads;
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![self.vocab, h])];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}.");
            for (n, s) in [
                ("input_layernorm.weight", vec![h]),
                ("post_attention_layernorm.weight", vec![h]),
                ("mlp.gate_proj.weight", vec![i, h]),
                ("mlp.up_proj.weight", vec![i, h]),
                ("mlp.down_proj.weight", vec![h, i]),
                ("self_attn.q_proj.weight", vec![h, h]),
                ("self_attn.q_proj.bias", vec![h]),
                ("self_attn.k_proj.weight", vec![kv, h]),
                ("self_attn.k_proj.bias", vec![kv]),
                ("self_attn.v_proj.weight", vec![kv, h]),
                ("self_attn.v_proj.bias", vec![kv]),
                ("self_attn.o_proj.weight", vec![h, h]),
            ] {
                out.push((format!("{p}{n}"), s));
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tied {
            out.push(("lm_head.weight".to_string(), vec![self.vocab, h]));
        }
        out
    }
    pub fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "vocab_size": self.vocab,
            "max_position_embeddings": 256,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "hidden_act": "silu",
            "tie_word_embeddings": self.tied,
            "sliding_window": null,
            "use_sliding_window": false,
            "torch_dtype": "bfloat16",
            "layer_types": vec!["full_attention"; self.layers]
        })
    }
}

/// Deterministic noise in [-1, 1) from (seed, tensor name, index).
fn noise(seed: u64, name: &str, n: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed.wrapping_mul(0x9E3779B97F4A7C15);
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    (0..n)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A full stand-in: `base_seed` fixes the shared "pretrained" weights, `delta_seed`
/// (if any) adds a fine-tune delta of size `delta`. Stored as bf16.
pub fn write_model(dir: &Path, shape: Shape, base_seed: u64, delta_seed: Option<u64>, delta: f32) {
    std::fs::create_dir_all(dir).unwrap();
    let mut data: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, s) in shape.tensors() {
        let n: usize = s.iter().product();
        let mut v = noise(base_seed, &name, n);
        if name.contains("norm") {
            v.iter_mut().for_each(|x| *x = 1.0 + 0.1 * *x);
        } else {
            v.iter_mut().for_each(|x| *x *= 0.1);
        }
        if let Some(d) = delta_seed {
            for (x, e) in v.iter_mut().zip(noise(d, &name, n)) {
                *x += delta * e;
            }
        }
        let bytes = v
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect();
        data.insert(name, (s, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, (s, b))| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    write_side_files(dir, shape);
}

fn write_side_files(dir: &Path, shape: Shape) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&shape.config()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        format!(
            "{{\"model_max_length\": 256, \"from\": {:?}}}",
            dir.display().to_string()
        ),
    )
    .unwrap();
}

/// A header-only stand-in: `config.json` plus a safetensors file truncated after its
/// header (what `--dry-run` must accept).
pub fn write_header_only(dir: &Path, shape: Shape) {
    std::fs::create_dir_all(dir).unwrap();
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    let mut tensors = shape.tensors();
    tensors.sort();
    for (name, s) in tensors {
        let len = s.iter().product::<usize>() * 2;
        header.insert(name, serde_json::json!({"dtype": "BF16", "shape": s, "data_offsets": [offset, offset + len]}));
        offset += len;
    }
    let mut json = serde_json::to_string(&header).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    write_side_files(dir, shape);
}

/// Write a model map (YAML) from (reference, folder) pairs.
pub fn write_model_map(path: &Path, entries: &[(&str, PathBuf)]) {
    let text: String = entries
        .iter()
        .map(|(r, p)| format!("{r}: {}\n", p.display()))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Every Hugging Face id the shipped Lamarck-v0.3 recipe and search name.
pub const LAMARCK_V03_IDS: &[&str] = &[
    "Qwen/Qwen2.5-14B",
    "arcee-ai/Virtuoso-Small",
    "CultriX/SeQwence-14B-EvolMerge",
    "sometimesanotion/lamarck-14b-reason-model_stock",
    "CultriX/Qwen2.5-14B-Wernicke",
    "sthenno-com/miscii-14b-1028",
    "sometimesanotion/lamarck-14b-prose-model_stock",
    "underwoods/medius-erebus-magnum-14b",
    "Qwen/Qwen2.5-14B-Instruct",
];

/// Header-only 14B-shaped stand-ins for [`LAMARCK_V03_IDS`] under `models` (one folder
/// each) and a model map naming them at `map`; returns `map`.
pub fn lamarck_v03_headers(models: &Path, map: &Path) -> PathBuf {
    let mut entries = Vec::new();
    for id in LAMARCK_V03_IDS {
        let dir = models.join(id.replace('/', "--"));
        write_header_only(&dir, Shape::qwen14b());
        entries.push((*id, dir));
    }
    write_model_map(map, &entries);
    map.to_path_buf()
}

/// The first stage of recipe `text` (models named relative to `dir`) planned with `seed`
/// and run into an in-memory sink: what `lamarck merge` computes, without disk.
pub fn merge_in_memory(
    dir: &Path,
    text: &str,
    compat: Option<lamarck::registry::Compat>,
    seed: u64,
    opts: &lamarck::merge::run::RunOptions,
) -> lamarck::merge::run::MemorySink {
    use lamarck::merge::run::{run, MemorySink, TensorSource};
    use lamarck::model::{Architecture, ModelDir};
    use lamarck::plan::{self, InputModel};
    let recipe = lamarck::recipe::Recipe::parse(text, &dir.join("r.yaml"), compat).unwrap();
    let stage = &recipe.stages[0];
    let dirs: Vec<ModelDir> = stage
        .model_refs()
        .iter()
        .map(|r| ModelDir::open(&dir.join(r)).unwrap())
        .collect();
    let inputs: Vec<InputModel> = stage
        .model_refs()
        .iter()
        .zip(&dirs)
        .map(|(r, d)| InputModel::from_dir(r, d))
        .collect();
    let arch = Architecture::for_config(&inputs[0].config).unwrap();
    let plan = plan::build(stage, "final", arch, &inputs, seed).unwrap();
    let sources: Vec<&dyn TensorSource> = dirs.iter().map(|d| d as &dyn TensorSource).collect();
    let mut sink = MemorySink::default();
    run(&plan, &sources, &mut sink, opts).unwrap();
    sink
}
