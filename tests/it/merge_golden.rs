//! The whole pipeline against mergekit 0.1.5 (`mergekit-multi`): a two-stage recipe with
//! slices, layer renumbering, gradients, filters and slice/source-level parameters, on
//! committed tiny f32 models. Goldens made by tools/golden/pipeline.py.
use std::path::Path;

use crate::support::cmd::lamarck;
use crate::support::merge::write_model_map;
use crate::support::tensors::read_tensors;

fn compare(ours: &Path, golden: &Path) {
    let bytes = std::fs::read(golden).unwrap();
    let want = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let got = read_tensors(ours);
    let mut names: Vec<String> = want.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut ours_names: Vec<&String> = got.keys().collect();
    ours_names.sort();
    assert_eq!(
        ours_names,
        names.iter().collect::<Vec<_>>(),
        "tensor names differ from mergekit's"
    );
    for name in names {
        let view = want.tensor(&name).unwrap();
        let b: Vec<f32> = view
            .data()
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (shape, a) = &got[&name];
        assert_eq!(shape.as_slice(), view.shape(), "{name}");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-6 + 1e-5 * y.abs(),
                "{name}[{i}]: lamarck {x}, mergekit {y}"
            );
        }
    }
}

#[test]
fn two_stage_recipe_matches_mergekit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/pipeline");
    let tmp = tempfile::tempdir().unwrap();
    let map = tmp.path().join("map.yaml");
    let entries: Vec<(&str, std::path::PathBuf)> = ["base", "ft-dense", "ft-sparse"]
        .iter()
        .map(|n| (*n, root.join("models").join(n)))
        .collect();
    write_model_map(&map, &entries);
    let out = tmp.path().join("final");
    let (ok, _, err) = lamarck(&[
        "merge",
        root.join("recipe.yaml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model-map",
        map.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    compare(
        &tmp.path().join("final.stages/stage-ties"),
        &root.join("stage-ties.safetensors"),
    );
    compare(&out, &root.join("final.safetensors"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_hidden_layers"], 6);
}
