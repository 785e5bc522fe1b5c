//! The training twin computes the same function as candle-transformers' Qwen2 (+ tied LM
//! head) on the same weights, and it trains: gradients reach every parameter.
use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::qwen2;
use lamarck::zoo::twin::{Params, Twin, ZooShape};
use lamarck::zoo::ZooRecipe;

fn candle_logits(shape: &ZooShape, weights: &BTreeMap<String, Tensor>, ids: &Tensor) -> Tensor {
    let map: HashMap<String, Tensor> = weights
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    let mut model = qwen2::Model::new(&shape.candle_config(), vb).unwrap();
    let hidden = model.forward(ids, 0, None).unwrap();
    hidden
        .broadcast_matmul(&weights["model.embed_tokens.weight"].t().unwrap())
        .unwrap()
}

/// Weights that are not at their initial values (norms ≠ 1, biases ≠ 0) so every term of
/// the forward pass matters.
fn perturbed(shape: &ZooShape) -> BTreeMap<String, Tensor> {
    let params = Params::init(shape, 5).unwrap();
    let mut noise = lamarck::zoo::rng::ZooRng::new(9, "test-perturb");
    params
        .snapshot()
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let n = t.elem_count();
            let delta: Vec<f32> = (0..n).map(|_| (0.3 * noise.normal()) as f32).collect();
            let delta = Tensor::from_vec(delta, t.dims(), &Device::Cpu).unwrap();
            let t = if name.contains("norm") || name.ends_with("bias") {
                (t + delta).unwrap()
            } else {
                (t * 5.0).unwrap()
            };
            (name, t)
        })
        .collect()
}

#[test]
fn twin_logits_match_candle_transformers_qwen2() {
    let shape = ZooRecipe::standard(1, 1.0).shape;
    let weights = perturbed(&shape);
    let ids: Vec<u32> = (0..2 * 23).map(|i| (i * 37 % 99) as u32).collect();
    let ids = Tensor::from_vec(ids, (2, 23), &Device::Cpu).unwrap();
    let expected = candle_logits(&shape, &weights, &ids);
    let twin = Twin::new(&shape, &Params::from_tensors(&weights).unwrap()).unwrap();
    let got = twin.forward(&ids).unwrap();
    assert_eq!(got.dims(), expected.dims());
    let scale = expected
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = (got - &expected)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        scale > 0.5,
        "logits too small to make the comparison meaningful: {scale}"
    );
    assert!(
        diff <= 1e-5 * scale.max(1.0),
        "max |twin - candle| = {diff} (logit scale {scale})"
    );
}

#[test]
fn every_parameter_gets_a_gradient() {
    let shape = ZooRecipe::standard(1, 1.0).shape;
    let params = Params::from_tensors(&perturbed(&shape)).unwrap();
    let twin = Twin::new(&shape, &params).unwrap();
    let ids = Tensor::from_vec((0..16u32).collect::<Vec<_>>(), (2, 8), &Device::Cpu).unwrap();
    let logits = twin.forward(&ids).unwrap();
    let loss = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in &params.vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "zero gradient for {name}");
    }
}
