//! Architectures as data (`arch/*.json`), not code paths.
use super::HfConfig;

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
}

impl Architecture {
    /// The table entry for this config; error lists the supported architectures.
    pub fn for_config(_config: &HfConfig) -> super::Result<&'static Architecture> {
        todo!("model helper")
    }
    /// `template` with `${layer_index}` replaced.
    pub fn layer_name(template: &str, layer: usize) -> String {
        template.replace("${layer_index}", &layer.to_string())
    }
}
