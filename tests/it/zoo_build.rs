//! `lamarck zoo build` is reproducible and writes ordinary Qwen2 folders and task files.
//! Uses a short build (1% of the shipped steps) so it runs in seconds.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lamarck::zoo::build::specialist_name;
use lamarck::zoo::skills::{EvalSplits, TrainStream, DEV_ITEMS, TEST_ITEMS};
use lamarck::zoo::{build, BuildOptions, Skill, ZooRecipe};

fn short_build(out: &Path, seed: u64) -> BTreeMap<PathBuf, Vec<u8>> {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let recipe = ZooRecipe::standard(seed, 0.01);
    let opts = BuildOptions {
        out: out.join("zoo"),
        evals: Some(out.join("evals")),
        force: false,
        show_progress: false,
        parallel: 2,
        reuse_trunk: false,
    };
    build(&recipe, &opts).unwrap();
    files(out)
}

/// Every file under `root`, by relative path.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_other_seed_other_weights() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = short_build(a.path(), 3);
    let second = short_build(b.path(), 3);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &first {
        assert!(
            bytes == &second[path],
            "{} differs between two builds with seed 3",
            path.display()
        );
    }
    let other = short_build(c.path(), 4);
    let weights = PathBuf::from("zoo/generalist/model.safetensors");
    assert_ne!(
        first[&weights], other[&weights],
        "seed must change the weights"
    );
}

#[test]
fn folders_are_ordinary_qwen2_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    short_build(dir.path(), 5);
    let zoo = dir.path().join("zoo");
    let mut names = vec!["base".to_string(), "generalist".to_string()];
    names.extend(Skill::ALL.iter().map(|s| specialist_name(*s)));
    let shape = ZooRecipe::standard(5, 1.0).shape;
    for name in names {
        let folder = zoo.join(&name);
        for file in [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            let path = folder.join(file);
            let meta =
                std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(
                    meta.permissions().mode() & 0o777,
                    0o644,
                    "{}",
                    path.display()
                );
            }
            assert!(
                meta.len() <= 5_000_000,
                "{} is {} bytes",
                path.display(),
                meta.len()
            );
        }
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["architectures"][0], "Qwen2ForCausalLM");
        assert_eq!(config["model_type"], "qwen2");
        assert_eq!(config["torch_dtype"], "bfloat16");
        let candle_cfg: candle_transformers::models::qwen2::Config =
            serde_json::from_value(config).unwrap();
        assert_eq!(candle_cfg, shape.candle_config());

        let bytes = std::fs::read(folder.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut got: Vec<(String, Vec<usize>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, v.shape().to_vec()))
            .collect();
        got.sort();
        let mut want = shape.tensor_shapes();
        want.sort();
        assert_eq!(got, want, "{name}: tensor names and shapes");
        assert!(st
            .tensors()
            .iter()
            .all(|(_, v)| v.dtype() == safetensors::Dtype::BF16));
    }
}

#[test]
fn written_tasks_have_disjoint_splits_absent_from_training() {
    let dir = tempfile::tempdir().unwrap();
    short_build(dir.path(), 6);
    let evals = dir.path().join("evals");
    let splits = EvalSplits::generate(6, DEV_ITEMS, TEST_ITEMS);
    let recipe = ZooRecipe::standard(6, 1.0);
    for skill in Skill::ALL {
        assert!(evals.join(format!("{}.yaml", skill.name())).is_file());
        let read = |split: &str| -> Vec<String> {
            let text =
                std::fs::read_to_string(evals.join(skill.name()).join(format!("{split}.jsonl")))
                    .unwrap();
            text.lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["prompt"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        let (dev, test) = (read("dev"), read("test"));
        assert!(
            dev.len() >= 100 && test.len() >= 200,
            "{skill:?}: {} dev, {} test",
            dev.len(),
            test.len()
        );
        let held: std::collections::BTreeSet<&String> = dev.iter().chain(&test).collect();
        assert_eq!(
            held.len(),
            dev.len() + test.len(),
            "{skill:?}: dev and test overlap"
        );
        // Replay the training streams of every phase of the full recipe for as many items
        // as the shipped build draws, and look for held-out prompts.
        let mut phases = vec![&recipe.base, &recipe.generalist];
        phases.extend(recipe.specialists.iter().map(|(_, p)| p));
        for phase in phases {
            if !phase.skills.contains(&skill) && !phase.replay_skills.contains(&skill) {
                continue;
            }
            let mut stream = TrainStream::for_phase(6, phase, &splits);
            for _ in 0..phase.steps * phase.batch_size {
                let (_, item) = stream.next_item();
                assert!(
                    !held.contains(&item.prompt),
                    "{} trains on held-out {:?}",
                    phase.name,
                    item.prompt
                );
            }
        }
    }
}
