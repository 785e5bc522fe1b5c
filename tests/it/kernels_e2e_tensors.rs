//! The end-to-end goldens (`tests/golden/e2e/`), replayed tensor by tensor through the
//! kernels alone, for the single-stage recipes whose parameters are plain scalars.
//!
//! This checks the kernels on real checkpoint layouts (every Qwen2 tensor, f32 and bf16,
//! through mergekit's whole pipeline) independently of the recipe/plan/runner code; the
//! `lamarck merge` end-to-end test covers the rest (gradients, slices, multi-stage).
use std::path::Path;

use lamarck::merge::methods::{lookup, merge_tensor, ModelTensor, Params, TensorJob};
use lamarck::merge::rng::RngKey;
use lamarck::model::DType;
use lamarck::registry::Compat;
use serde_yaml_ng::Value;

use crate::support::tensors::{bf16_ulps, read_file, Tensors};

fn scalar_params(v: Option<&Value>) -> Params {
    let mut p = Params::new();
    if let Some(Value::Mapping(m)) = v {
        for (k, v) in m {
            let x = match v {
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::Number(n) => n.as_f64().unwrap(),
                _ => panic!("non-scalar parameter {k:?}"),
            };
            p.insert(k.as_str().unwrap().to_string(), x);
        }
    }
    p
}

/// Replay one case; returns (elements compared, elements beyond tolerance).
fn replay(case: &str) -> (usize, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/golden/e2e").join(case);
    let recipe: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("recipe.yaml")).unwrap())
            .unwrap();
    let method = lookup(recipe["merge_method"].as_str().unwrap()).unwrap();
    let dtype = DType::parse_hf(recipe["dtype"].as_str().unwrap()).unwrap();
    let global = scalar_params(recipe.get("parameters"));
    let base_path = recipe.get("base_model").and_then(Value::as_str);
    // Per-model parameters fall back to the top-level ones (mergekit's precedence), so a
    // global `gamma` or `density` is every model's default.
    let models: Vec<(String, Params)> = recipe["models"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            let mut p = global.clone();
            p.extend(scalar_params(m.get("parameters")));
            (m["model"].as_str().unwrap().to_string(), p)
        })
        .filter(|(path, _)| Some(path.as_str()) != base_path)
        .collect();
    let base = base_path.map(|p| read_file(&root.join(p).join("model.safetensors")));
    let inputs: Vec<Tensors> = models
        .iter()
        .map(|(p, _)| read_file(&root.join(p).join("model.safetensors")))
        .collect();
    let expected = read_file(&dir.join("expected.safetensors"));
    let (mut total, mut bad) = (0, 0);
    for (name, (shape, want)) in &expected {
        let job = TensorJob {
            name,
            shape,
            base: base.as_ref().map(|b| b[name].1.as_slice()),
            models: inputs
                .iter()
                .zip(&models)
                .map(|(t, (_, p))| ModelTensor {
                    data: &t[name].1,
                    params: p,
                })
                .collect(),
            params: &global,
            compute_dtype: dtype,
            rng: RngKey::new(0, "", name),
            compat: Compat::Mergekit,
        };
        let ours = merge_tensor(method, &job).unwrap_or_else(|e| panic!("{case} {name}: {e}"));
        for (a, b) in ours.iter().zip(want) {
            total += 1;
            let off = match dtype {
                DType::F32 => (a - b).abs() > 1e-6 + 1e-5 * b.abs(),
                _ => bf16_ulps(*a, *b) > 2,
            };
            bad += usize::from(off);
        }
    }
    (total, bad)
}

#[test]
fn scalar_recipes_match_mergekit_tensor_by_tensor() {
    let mut report = Vec::new();
    for method in [
        "linear",
        "nuslerp",
        "task_arithmetic",
        "ties",
        "breadcrumbs",
        "breadcrumbs_ties",
        "model_stock",
    ] {
        for dt in ["f32", "bf16"] {
            let case = format!("{method}_{dt}");
            let (total, bad) = replay(&case);
            report.push(format!("{case}: {bad}/{total} beyond tolerance"));
            // Selection methods may differ where magnitudes tie at the threshold (bf16).
            let allowed = if method.contains("ties") || method.contains("breadcrumbs") {
                total / 100
            } else {
                total / 1000
            };
            if dt == "f32" && !method.contains("breadcrumbs") && method != "ties" {
                assert_eq!(bad, 0, "{case}");
            }
            assert!(
                bad <= allowed,
                "{case}: {bad}/{total} elements beyond tolerance"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}
