//! Planner tests on header-only inputs built in memory (no files).
use std::collections::BTreeMap;
use std::path::Path;

use super::{build, InputModel, Plan};
use crate::model::{Architecture, DType, HfConfig, TensorInfo};
use crate::recipe::Recipe;
use crate::registry::Compat;

/// A Qwen2-layout model's headers: `layers` layers, hidden 8, vocab `vocab`, `lm_head` unless tied.
pub(crate) fn qwen(reference: &str, layers: usize, vocab: usize, tied: bool) -> InputModel {
    let config = HfConfig::from_json_str(&format!(
        r#"{{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "num_hidden_layers": {layers},
            "hidden_size": 8, "tie_word_embeddings": {tied}, "torch_dtype": "bfloat16"}}"#
    ))
    .unwrap();
    let arch = Architecture::for_config(&config).unwrap();
    let mut tensors = BTreeMap::new();
    let mut add = |name: String, shape: Vec<usize>| {
        tensors.insert(
            name.clone(),
            TensorInfo {
                name,
                dtype: DType::BF16,
                shape,
            },
        );
    };
    let shape = |name: &str| {
        if name.contains("embed") || name.contains("lm_head") {
            vec![vocab, 8]
        } else if name.ends_with("norm.weight") || name.ends_with("bias") {
            vec![8]
        } else {
            vec![8, 8]
        }
    };
    for w in &arch.pre_weights {
        add(w.name.clone(), shape(&w.name));
    }
    for l in 0..layers {
        for w in &arch.layer_weights {
            add(Architecture::layer_name(&w.name, l), shape(&w.name));
        }
    }
    for w in &arch.post_weights {
        if !(tied && w.name == "lm_head.weight") {
            add(w.name.clone(), shape(&w.name));
        }
    }
    InputModel {
        reference: reference.to_string(),
        config,
        tensors,
        tokenizer: Default::default(),
    }
}

pub(crate) fn plan(
    yaml: &str,
    models: &[InputModel],
    compat: Option<Compat>,
) -> Result<Plan, String> {
    let recipe = Recipe::parse(yaml, Path::new("t.yaml"), compat).map_err(|e| e.to_string())?;
    let stage = &recipe.stages[0];
    let inputs: Vec<InputModel> = stage
        .model_refs()
        .iter()
        .map(|r| models.iter().find(|m| &m.reference == r).unwrap().clone())
        .collect();
    let arch = Architecture::for_config(&inputs[0].config).unwrap();
    build(stage, "s", arch, &inputs, 1).map_err(|e| e.to_string())
}

pub(crate) const SLERP_SLICES: &str = "merge_method: slerp\nbase_model: a\nparameters:\n  t: [0, 1]\nslices:\n  - sources: [{model: a, layer_range: [0, 2]}, {model: b, layer_range: [2, 4]}]\n  - sources: [{model: a, layer_range: [1, 4]}, {model: b, layer_range: [0, 3]}]\n";

#[test]
fn layers_are_renumbered_and_gradients_restart_per_slice() {
    let models = [qwen("a", 4, 16, false), qwen("b", 4, 16, false)];
    let p = plan(SLERP_SLICES, &models, None).unwrap();
    assert_eq!(p.num_hidden_layers, Some(5));
    assert_eq!(p.tensors.len(), 1 + 5 * 12 + 2);
    let t = |name: &str| p.tensors.iter().find(|t| t.name == name).unwrap();
    let l1 = t("model.layers.1.mlp.up_proj.weight");
    assert_eq!(
        l1.base.as_ref().unwrap().tensor,
        "model.layers.1.mlp.up_proj.weight"
    );
    assert_eq!(
        l1.models[0].input.tensor,
        "model.layers.3.mlp.up_proj.weight"
    );
    assert_eq!(l1.params["t"], 1.0, "last layer of a 2-layer slice");
    let l3 = t("model.layers.3.mlp.up_proj.weight");
    assert_eq!(
        (
            l3.base.as_ref().unwrap().tensor.as_str(),
            l3.models[0].input.tensor.as_str()
        ),
        (
            "model.layers.2.mlp.up_proj.weight",
            "model.layers.1.mlp.up_proj.weight"
        )
    );
    assert_eq!(l3.params["t"], 0.5, "middle of the 3-layer second slice");
    assert_eq!(
        p.bytes_written(),
        p.tensors.iter().map(|t| t.numel() as u64 * 2).sum::<u64>()
    );
}

#[test]
fn post_layer_tensors_take_the_first_or_last_gradient_value_by_profile() {
    let models = [qwen("a", 4, 16, false), qwen("b", 4, 16, false)];
    for (compat, want) in [(Compat::Mergekit, 0.0), (Compat::Mergekit2024, 1.0)] {
        let p = plan(SLERP_SLICES, &models, Some(compat)).unwrap();
        for name in ["model.norm.weight", "lm_head.weight"] {
            let t = p.tensors.iter().find(|t| t.name == name).unwrap();
            assert_eq!(t.params["t"], want, "{name} under {compat:?}");
        }
        let embed = p
            .tensors
            .iter()
            .find(|t| t.name == "model.embed_tokens.weight")
            .unwrap();
        assert_eq!(embed.params["t"], 0.0, "embeddings always use t = 0");
    }
}

#[test]
fn tied_models_supply_their_embedding_as_lm_head() {
    let yaml = "merge_method: linear\nmodels:\n  - {model: a, parameters: {weight: 1}}\n  - {model: b, parameters: {weight: 1}}\n";
    let p = plan(
        yaml,
        &[qwen("a", 2, 16, true), qwen("b", 2, 16, false)],
        None,
    )
    .unwrap();
    let head = p
        .tensors
        .iter()
        .find(|t| t.name == "lm_head.weight")
        .unwrap();
    assert_eq!(head.models[0].input.tensor, "model.embed_tokens.weight");
    assert_eq!(head.models[1].input.tensor, "lm_head.weight");
    let p = plan(
        yaml,
        &[qwen("a", 2, 16, true), qwen("b", 2, 16, true)],
        None,
    )
    .unwrap();
    assert!(
        p.tensors.iter().all(|t| t.name != "lm_head.weight"),
        "no input has lm_head: the output stays tied"
    );
}

#[test]
fn embeddings_are_cut_to_the_base_for_task_arithmetic_and_to_the_common_part_otherwise() {
    let models = [qwen("base", 2, 16, false), qwen("big", 2, 20, false)];
    let ties = "merge_method: ties\nbase_model: base\nparameters: {weight: 1, density: 1}\nmodels: [{model: big}]\n";
    let p = plan(ties, &models, None).unwrap();
    assert_eq!(
        p.tensors
            .iter()
            .find(|t| t.name == "model.embed_tokens.weight")
            .unwrap()
            .shape,
        vec![16, 8]
    );
    let small_base = "merge_method: ties\nbase_model: big\nparameters: {weight: 1, density: 1}\nmodels: [{model: base}]\n";
    let err = plan(small_base, &models, None).unwrap_err();
    assert!(
        err.contains("smaller than the base") && err.contains("`base`"),
        "{err}"
    );
    let linear = "merge_method: linear\nmodels: [{model: base, parameters: {weight: 1}}, {model: big, parameters: {weight: 1}}]\n";
    let p = plan(linear, &models, None).unwrap();
    assert_eq!(
        p.tensors
            .iter()
            .find(|t| t.name == "lm_head.weight")
            .unwrap()
            .shape,
        vec![16, 8]
    );
}

#[test]
fn errors_name_the_model_and_tensor() {
    let models = [qwen("a", 4, 16, false), qwen("b", 3, 16, false)];
    let range =
        "merge_method: passthrough\nslices:\n  - sources: [{model: b, layer_range: [0, 4]}]\n";
    let err = plan(range, &models, None).unwrap_err();
    assert!(
        err.contains("layer_range [0, 4] of model `b` is out of bounds: it has 3 layers"),
        "{err}"
    );
    let lengths = "merge_method: slerp\nbase_model: a\nparameters: {t: 0.5}\nslices:\n  - sources: [{model: a, layer_range: [0, 3]}, {model: b, layer_range: [0, 2]}]\n";
    let err = plan(lengths, &models, None).unwrap_err();
    assert!(
        err.contains("slices[0]: sources span different numbers of layers: `a` has 3, `b` has 2"),
        "{err}"
    );
    let mut broken = qwen("b", 4, 16, false);
    broken
        .tensors
        .remove("model.layers.2.self_attn.k_proj.bias");
    let err = plan("merge_method: slerp\nbase_model: a\nparameters: {t: 0.5}\nmodels: [{model: a}, {model: b}]\n", &[models[0].clone(), broken], None).unwrap_err();
    assert!(
        err.contains("model `b` has no tensor `model.layers.2.self_attn.k_proj.bias`"),
        "{err}"
    );
    let err = plan(
        "merge_method: ties\nbase_model: a\nmodels: [{model: b, parameters: {density: 1}}]\n",
        &[models[0].clone(), qwen("b", 4, 16, false)],
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("parameter `weight` is required for model `b`"),
        "{err}"
    );
    let two = "merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [0, 2]}, {model: b, layer_range: [0, 2]}]\n";
    let err = plan(two, &models, None).unwrap_err();
    assert!(
        err.contains("slices[0]: passthrough") && err.contains("got 2"),
        "{err}"
    );
}
