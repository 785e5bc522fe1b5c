//! Architectures as data (`arch/*.json`), not code paths.
//!
//! Each file follows mergekit's architecture JSON (`model_type`, `architectures`,
//! `pre_weights`, `layer_templates.weights`, `post_weights`, `num_layers_config_key`), with
//! weights in mergekit's definition order. `is_embed` marks vocabulary-sized weights;
//! mergekit 0.1.5 spells it `vocabulary_axis: 0`, which is accepted too. Adding an
//! architecture is adding a file here and a line to [`TABLE_FILES`].
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use super::{Error, HfConfig, Result};

#[derive(Debug, Clone)]
pub struct WeightInfo {
    /// Name, or for layer weights a template containing `${layer_index}`.
    pub name: String,
    pub is_embed: bool,
    pub optional: bool,
    pub tied_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Architecture {
    pub name: String,
    pub architectures: Vec<String>,
    pub pre_weights: Vec<WeightInfo>,
    pub layer_weights: Vec<WeightInfo>,
    pub post_weights: Vec<WeightInfo>,
    /// `config.json` `model_type` (disambiguates class names shared by several entries).
    pub model_type: String,
    /// The config key holding the layer count (`num_hidden_layers`).
    pub num_layers_config_key: String,
}

/// The embedded table: (file name, JSON text).
const TABLE_FILES: &[(&str, &str)] = &[
    ("qwen2.json", include_str!("arch/qwen2.json")),
    ("llama.json", include_str!("arch/llama.json")),
    ("mistral.json", include_str!("arch/mistral.json")),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeight {
    name: String,
    #[serde(default)]
    is_embed: bool,
    #[serde(default)]
    vocabulary_axis: Option<u32>,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    tied_names: Vec<String>,
}

#[derive(Deserialize)]
struct RawLayers {
    weights: Vec<RawWeight>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArch {
    model_type: String,
    architectures: Vec<String>,
    pre_weights: Vec<RawWeight>,
    layer_templates: RawLayers,
    post_weights: Vec<RawWeight>,
    #[serde(default = "default_layers_key")]
    num_layers_config_key: String,
}

fn default_layers_key() -> String {
    "num_hidden_layers".to_string()
}

fn convert(weights: Vec<RawWeight>) -> Vec<WeightInfo> {
    weights
        .into_iter()
        .map(|w| WeightInfo {
            name: w.name,
            is_embed: w.is_embed || w.vocabulary_axis.is_some(),
            optional: w.optional,
            tied_names: w.tied_names,
        })
        .collect()
}

/// Parse one architecture file (the same format as the embedded table).
pub fn parse_architecture(file: &str, text: &str) -> std::result::Result<Architecture, String> {
    let raw: RawArch =
        serde_json::from_str(text).map_err(|e| format!("architecture file {file}: {e}"))?;
    Ok(Architecture {
        name: file.trim_end_matches(".json").to_string(),
        architectures: raw.architectures,
        pre_weights: convert(raw.pre_weights),
        layer_weights: convert(raw.layer_templates.weights),
        post_weights: convert(raw.post_weights),
        model_type: raw.model_type,
        num_layers_config_key: raw.num_layers_config_key,
    })
}

/// Every architecture lamarck supports.
pub fn table() -> &'static [Architecture] {
    static TABLE: OnceLock<Vec<Architecture>> = OnceLock::new();
    TABLE.get_or_init(|| {
        TABLE_FILES
            .iter()
            .map(|(file, text)| match parse_architecture(file, text) {
                Ok(a) => a,
                // The files are compiled in and parsed by a unit test: a failure here is a
                // build defect, not bad user input.
                Err(e) => panic!("embedded {e}"),
            })
            .collect()
    })
}

/// The class names of every supported architecture.
pub fn supported_architectures() -> Vec<String> {
    table()
        .iter()
        .flat_map(|a| a.architectures.iter().cloned())
        .collect()
}

impl Architecture {
    /// The table entry for this config; error lists the supported architectures.
    pub fn for_config(config: &HfConfig) -> super::Result<&'static Architecture> {
        Architecture::lookup(config, None)
    }

    /// As [`Architecture::for_config`], with the model folder named in the error.
    pub fn for_model_dir(dir: &Path, config: &HfConfig) -> Result<&'static Architecture> {
        Architecture::lookup(config, Some(dir.join("config.json")))
    }

    fn lookup(config: &HfConfig, path: Option<PathBuf>) -> Result<&'static Architecture> {
        let unsupported = |found: String| Error::UnsupportedArchitecture {
            path: path.clone().unwrap_or_else(|| PathBuf::from("config.json")),
            found,
            supported: supported_architectures(),
        };
        let names = config.architectures();
        let [class] = names.as_slice() else {
            return Err(unsupported(if names.is_empty() {
                "(none: `architectures` is missing or empty)".to_string()
            } else {
                format!("{names:?} (`architectures` must name exactly one class)")
            }));
        };
        let matches: Vec<&Architecture> = table()
            .iter()
            .filter(|a| a.architectures.iter().any(|n| n == class))
            .collect();
        match matches.as_slice() {
            [] => Err(unsupported(format!("`{class}`"))),
            [one] => Ok(one),
            several => several
                .iter()
                .find(|a| Some(a.model_type.as_str()) == config.model_type())
                .copied()
                .ok_or_else(|| {
                    unsupported(format!(
                        "`{class}` with model_type {:?}",
                        config.model_type()
                    ))
                }),
        }
    }

    /// `template` with `${layer_index}` replaced.
    pub fn layer_name(template: &str, layer: usize) -> String {
        template.replace("${layer_index}", &layer.to_string())
    }

    /// Every weight of a model with `num_layers` layers, names resolved, in definition
    /// order: pre weights, layer 0's, layer 1's, ..., post weights.
    pub fn all_weights(&self, num_layers: usize) -> Vec<WeightInfo> {
        let mut out = self.pre_weights.clone();
        for layer in 0..num_layers {
            out.extend(self.layer_weights.iter().map(|w| WeightInfo {
                name: Architecture::layer_name(&w.name, layer),
                ..w.clone()
            }));
        }
        out.extend(self.post_weights.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> HfConfig {
        HfConfig::from_json_str(json).unwrap()
    }

    #[test]
    fn embedded_table_parses_and_matches_mergekit_qwen2() {
        assert_eq!(table().len(), TABLE_FILES.len());
        let qwen = Architecture::for_config(&config(
            r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2"}"#,
        ))
        .unwrap();
        assert_eq!(qwen.layer_weights.len(), 12);
        // Qwen2.5-14B: 1 + 48 × 12 + 2 = 579 tensors (spec §3.1).
        let all = qwen.all_weights(48);
        assert_eq!(all.len(), 579);
        assert_eq!(all[0].name, "model.embed_tokens.weight");
        assert!(all[0].is_embed);
        assert_eq!(all[1].name, "model.layers.0.input_layernorm.weight");
        let lm_head = all.last().unwrap();
        assert_eq!(lm_head.name, "lm_head.weight");
        assert!(lm_head.optional && lm_head.is_embed);
        assert_eq!(lm_head.tied_names, ["model.embed_tokens.weight"]);
        let biases = qwen
            .layer_weights
            .iter()
            .filter(|w| w.name.ends_with(".bias"));
        assert_eq!(biases.count(), 3);
    }

    #[test]
    fn llama_and_mistral_have_no_biases() {
        for class in ["LlamaForCausalLM", "MistralForCausalLM"] {
            let arch =
                Architecture::for_config(&config(&format!(r#"{{"architectures":["{class}"]}}"#)))
                    .unwrap();
            assert_eq!(arch.layer_weights.len(), 9);
            assert!(arch
                .layer_weights
                .iter()
                .all(|w| !w.name.ends_with(".bias")));
        }
    }

    #[test]
    fn unsupported_architecture_lists_supported_ones() {
        let err = Architecture::for_model_dir(
            Path::new("/m/gpt"),
            &config(r#"{"architectures":["GPT2LMHeadModel"]}"#),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/m/gpt/config.json"), "{err}");
        assert!(err.contains("GPT2LMHeadModel"), "{err}");
        assert!(err.contains("Qwen2ForCausalLM, LlamaForCausalLM"), "{err}");
        let err = Architecture::for_config(&config("{}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing or empty"), "{err}");
    }

    #[test]
    fn mergekit_spelling_of_embed_is_accepted() {
        let a = parse_architecture(
            "x.json",
            r#"{"model_type":"x","architectures":["X"],
                "pre_weights":[{"name":"e","vocabulary_axis":0}],
                "layer_templates":{"weights":[]},"post_weights":[]}"#,
        )
        .unwrap();
        assert!(a.pre_weights[0].is_embed);
    }
}
