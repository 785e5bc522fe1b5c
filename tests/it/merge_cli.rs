//! `lamarck merge` as a user runs it: outputs, error paths, determinism, stage reuse.
use std::path::Path;

use crate::support::cmd::lamarck;
use crate::support::merge::{write_model, write_model_map, Shape};
use crate::support::s;
use crate::support::tensors::{max_bf16_ulps, read_tensors};

/// Two tiny 4-layer models `a` (= base weights) and `b` (base + delta) and a model map.
fn two_models(dir: &Path) -> std::path::PathBuf {
    write_model(&dir.join("a"), Shape::tiny(4), 1, None, 0.0);
    write_model(&dir.join("b"), Shape::tiny(4), 1, Some(2), 0.05);
    let map = dir.join("map.yaml");
    write_model_map(&map, &[("org/a", dir.join("a")), ("org/b", dir.join("b"))]);
    map
}

#[test]
fn linear_merge_writes_a_complete_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let map = two_models(tmp.path());
    let recipe = tmp.path().join("r.yaml");
    let text = "merge_method: linear\ndtype: float32\nout_dtype: bfloat16\nmodels:\n  - {model: org/a, parameters: {weight: 1.0}}\n  - {model: org/b, parameters: {weight: 3.0}}\n";
    std::fs::write(&recipe, text).unwrap();
    let out = tmp.path().join("out");
    let (ok, _, err) = lamarck(&[
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
        "--threads",
        "2",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("seed 42"),
        "the default seed is printed: {err}"
    );
    let (a, b, o) = (
        read_tensors(&tmp.path().join("a")),
        read_tensors(&tmp.path().join("b")),
        read_tensors(&out),
    );
    assert_eq!(o.len(), a.len());
    for (name, (shape, got)) in &o {
        assert_eq!(shape, &a[name].0);
        let want: Vec<f32> = a[name]
            .1
            .iter()
            .zip(&b[name].1)
            .map(|(x, y)| half::bf16::from_f32((x + 3.0 * y) / 4.0).to_f32())
            .collect();
        assert!(max_bf16_ulps(got, &want) <= 1.0, "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("mergekit_config.yml")).unwrap(),
        text
    );
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    for needle in [
        "- org/a\n",
        "- org/b\n",
        "- merge\n",
        "- lamarck\n",
        "Seed: 42",
        "linear",
    ] {
        assert!(card.contains(needle), "card lacks {needle:?}:\n{card}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "bfloat16");
    assert_eq!(config["num_hidden_layers"], 4);
    let tok = std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap();
    assert!(
        tok.contains(s(&tmp.path().join("a"))),
        "tokenizer copied from the first model: {tok}"
    );
}

#[test]
fn slices_renumber_layers_and_set_the_layer_count() {
    let tmp = tempfile::tempdir().unwrap();
    let map = two_models(tmp.path());
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(&recipe, "merge_method: passthrough\nslices:\n  - sources: [{model: org/a, layer_range: [0, 2]}]\n  - sources: [{model: org/b, layer_range: [1, 4]}]\n").unwrap();
    let out = tmp.path().join("out");
    let (ok, _, err) = lamarck(&[
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
    ]);
    assert!(ok, "{err}");
    let (a, b, o) = (
        read_tensors(&tmp.path().join("a")),
        read_tensors(&tmp.path().join("b")),
        read_tensors(&out),
    );
    let w = "mlp.up_proj.weight";
    assert_eq!(
        o[&format!("model.layers.1.{w}")].1,
        a[&format!("model.layers.1.{w}")].1
    );
    assert_eq!(
        o[&format!("model.layers.2.{w}")].1,
        b[&format!("model.layers.1.{w}")].1
    );
    assert_eq!(
        o[&format!("model.layers.4.{w}")].1,
        b[&format!("model.layers.3.{w}")].1
    );
    assert!(!o.contains_key("model.layers.5.mlp.up_proj.weight"));
    assert_eq!(
        o["model.embed_tokens.weight"].1, a["model.embed_tokens.weight"].1,
        "embeddings from the first slice"
    );
    assert_eq!(
        o["lm_head.weight"].1, b["lm_head.weight"].1,
        "lm_head from the last slice"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_hidden_layers"], 5);
    // transformers 5 refuses a config whose `layer_types` does not have one entry per layer.
    assert_eq!(config["layer_types"].as_array().map(Vec::len), Some(5));
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let map = two_models(tmp.path());
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(&recipe, "name: mid\nmerge_method: slerp\nbase_model: org/a\nparameters: {t: [0, 1]}\nmodels: [{model: org/a}, {model: org/b}]\n---\nmerge_method: linear\nmodels:\n  - {model: mid, parameters: {weight: 1}}\n  - {model: org/a, parameters: {weight: 1}}\n").unwrap();
    let out = tmp.path().join("out");
    let (ok, stdout, err) = lamarck(&[
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
        "--dry-run",
    ]);
    assert!(ok, "{err}");
    for needle in [
        "stage 1 of 2: `mid` (slerp)",
        "stage 2 of 2: `final` (linear)",
        "mid -> output of stage `mid`",
        "output tensors: 51",
        "read: ",
        "write: ",
        "estimated peak memory",
    ] {
        assert!(stdout.contains(needle), "plan lacks {needle:?}:\n{stdout}");
    }
    assert!(!out.exists() && !tmp.path().join("out.stages").exists());
}

#[test]
fn missing_model_lists_the_places_tried_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let map = two_models(tmp.path());
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(&recipe, "merge_method: linear\nmodels:\n  - {model: org/a, parameters: {weight: 1}}\n  - {model: nowhere/model, parameters: {weight: 1}}\n").unwrap();
    let out = tmp.path().join("out");
    let (ok, _, err) = lamarck(&[
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
    ]);
    assert!(!ok);
    assert!(
        err.contains("nowhere/model") && err.contains("tried"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn corrupt_input_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let map = two_models(tmp.path());
    // Cut the data short: the header's offsets now point past the end of the file.
    let file = tmp.path().join("b/model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(&recipe, "merge_method: linear\nmodels:\n  - {model: org/a, parameters: {weight: 1}}\n  - {model: org/b, parameters: {weight: 1}}\n").unwrap();
    let out = tmp.path().join("out");
    let (ok, _, err) = lamarck(&[
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
    ]);
    assert!(!ok);
    assert!(
        err.contains("model.safetensors") && err.contains("org/b"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("out"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn existing_output_is_refused_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let map = two_models(tmp.path());
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(
        &recipe,
        "merge_method: linear\nmodels:\n  - {model: org/a, parameters: {weight: 1}}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let (ok, _, err) = lamarck(&[
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
    ]);
    assert!(!ok);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    let (ok, _, err) = lamarck(&[
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
        "--force",
    ]);
    assert!(ok, "{err}");
    assert!(out.join("config.json").is_file() && !out.join("keep.txt").exists());
}

#[test]
fn bad_recipe_fails_with_its_path_and_exit_code_1() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad/param_typo.yaml");
    let out = tmp.path().join("out");
    let (ok, _, err) = lamarck(&["merge", s(&recipe), "--out", s(&out)]);
    assert!(!ok);
    assert!(
        err.contains("slices[1].sources[0].parameters.desnity")
            && err.contains("did you mean `density`?"),
        "{err}"
    );
}

const STOCHASTIC: &str = "name: mid\nmerge_method: della\nbase_model: org/a\nparameters: {density: 0.5, epsilon: 0.1, weight: 1.0, lambda: 1.0}\nmodels:\n  - model: org/b\n---\nmerge_method: dare_ties\nbase_model: org/a\nparameters: {density: 0.5, weight: 1.0}\nmodels:\n  - model: mid\n  - model: org/b\n";

fn folder_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

#[test]
fn output_is_identical_for_any_thread_count_and_changes_with_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let map = two_models(tmp.path());
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(&recipe, STOCHASTIC).unwrap();
    let run = |out: &str, threads: &str, seed: &str| {
        let out = tmp.path().join(out);
        let (ok, _, err) = lamarck(&[
            "merge",
            s(&recipe),
            "--out",
            s(&out),
            "--model-map",
            s(&map),
            "--threads",
            threads,
            "--seed",
            seed,
            "--no-reuse",
        ]);
        assert!(ok, "{err}");
        folder_bytes(&out)
    };
    let one = run("t1", "1", "5");
    assert_eq!(one, run("t2", "2", "5"), "--threads 1 vs 2");
    assert_eq!(one, run("again", "2", "5"), "same seed twice");
    assert_ne!(one, run("other", "2", "6"), "different seed");
}

#[test]
fn complete_stage_outputs_are_reused_unless_no_reuse() {
    let tmp = tempfile::tempdir().unwrap();
    let map = two_models(tmp.path());
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(&recipe, STOCHASTIC).unwrap();
    let out = tmp.path().join("out");
    let args = [
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
    ];
    let (ok, _, err) = lamarck(&args);
    assert!(ok, "{err}");
    assert!(tmp.path().join("out.stages/mid/config.json").is_file());
    let first = folder_bytes(&out);
    let (ok, _, err) = lamarck(&[&args[..], &["--force"]].concat());
    assert!(ok && err.contains("reusing complete output"), "{err}");
    assert_eq!(folder_bytes(&out), first);
    let (ok, _, err) = lamarck(&[&args[..], &["--force", "--no-reuse"]].concat());
    assert!(ok && !err.contains("reusing"), "{err}");
    // A different seed must not reuse the stage built with the old one.
    let (ok, _, err) = lamarck(&[&args[..], &["--force", "--seed", "9"]].concat());
    assert!(ok && !err.contains("reusing"), "{err}");
}

#[test]
fn a_failing_kernel_leaves_no_output_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let map = two_models(tmp.path());
    let recipe = tmp.path().join("r.yaml");
    // density + epsilon >= 1 is refused when the recipe is planned, before anything is written.
    std::fs::write(&recipe, "merge_method: della\nbase_model: org/a\nparameters: {density: 0.95, epsilon: 0.1, weight: 1.0}\nmodels:\n  - model: org/b\n").unwrap();
    let out = tmp.path().join("out");
    let (ok, _, err) = lamarck(&[
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
    ]);
    assert!(!ok);
    assert!(
        err.contains("density ± epsilon") && err.contains("tensor `"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("out"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
