//! `lamarck merge` on every end-to-end golden recipe (`tests/golden/e2e/`), compared tensor
//! by tensor with mergekit 0.1.5's output: f32 |a−b| ≤ 1e-6 + 1e-5·|b|, bf16 ≥ 99.9% of each
//! tensor's elements within 2 ulps. Covers the whole pipeline: recipe parsing, gradients,
//! filters, slices, layer renumbering, multi-document stages, kernels and writing.
use std::path::Path;

use crate::support::cmd::merge_from_repo;
use crate::support::repo;
use crate::support::tensors::{bf16_ulps, read_file, read_tensors, Tensors};

/// Mismatch descriptions for one case (empty when it matches).
fn check(case: &str) -> Vec<String> {
    let dir = repo().join("tests/golden/e2e").join(case);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    if let Err(e) = merge_from_repo(&dir.join("recipe.yaml"), &["--threads", "2"], &out) {
        return vec![format!("{case}: {e}")];
    }
    let ours = read_tensors(&out);
    let want = read_file(&dir.join("expected.safetensors"));
    let bf16 = case.ends_with("bf16");
    let mut problems = Vec::new();
    // Qwen2, 4 layers × 12 tensors + embed, norm, lm_head.
    assert_eq!(
        want.len(),
        51,
        "{case}: golden holds {} tensors",
        want.len()
    );
    for name in want.keys().filter(|k| !ours.contains_key(*k)) {
        problems.push(format!("{case}: {name} missing from lamarck's output"));
    }
    for name in ours.keys().filter(|k| !want.contains_key(*k)) {
        problems.push(format!("{case}: {name} not in mergekit's output"));
    }
    for (name, (_, w)) in &want {
        let Some((_, o)) = ours.get(name) else {
            continue;
        };
        if o.len() != w.len() {
            problems.push(format!(
                "{case}: {name} has {} elements, mergekit {}",
                o.len(),
                w.len()
            ));
            continue;
        }
        let bad: Vec<usize> = (0..w.len())
            .filter(|&i| {
                if bf16 {
                    bf16_ulps(o[i], w[i]) > 2
                } else {
                    (o[i] - w[i]).abs() > 1e-6 + 1e-5 * w[i].abs()
                }
            })
            .collect();
        let allowed = if bf16 { w.len() / 1000 } else { 0 };
        if bad.len() > allowed {
            let i = bad[0];
            problems.push(format!(
                "{case}: {name}: {}/{} elements off (first [{i}]: lamarck {} vs mergekit {})",
                bad.len(),
                w.len(),
                o[i],
                w[i]
            ));
        }
    }
    problems
}

#[test]
fn lamarck_merge_matches_mergekit_on_every_e2e_recipe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/golden/e2e/cases.json")).unwrap(),
    )
    .unwrap();
    let mut problems = Vec::new();
    for case in cases["cases"].as_array().unwrap() {
        problems.extend(check(case.as_str().unwrap()));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---- DARE / DELLA end to end: statistics against mergekit's runs ----------------------

/// Run `lamarck merge` on a stochastic golden recipe; returns the output tensors.
fn run_seeded(case: &str, seed: u64, threads: usize) -> Tensors {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let recipe = repo()
        .join("tests/golden/e2e")
        .join(case)
        .join("recipe.yaml");
    let (seed, threads) = (seed.to_string(), threads.to_string());
    if let Err(e) = merge_from_repo(&recipe, &["--seed", &seed, "--threads", &threads], &out) {
        panic!("{case}: {e}");
    }
    read_tensors(&out)
}

/// (fraction of elements changed from the base, sd of the change, L1 of the change) over
/// the whole model.
fn change_stats(out: &Tensors, base: &Tensors) -> (f64, f64, f64) {
    let d: Vec<f64> = base
        .iter()
        .flat_map(|(name, (_, b))| out[name].1.iter().zip(b).map(|(o, b)| (o - b) as f64))
        .collect();
    let n = d.len() as f64;
    let changed = d.iter().filter(|x| **x != 0.0).count() as f64 / n;
    let mean = d.iter().sum::<f64>() / n;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    (changed, sd, d.iter().map(|x| x.abs()).sum())
}

#[test]
fn dare_and_della_merges_agree_with_mergekit_statistically_and_reproduce() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/golden/e2e/cases.json")).unwrap(),
    )
    .unwrap();
    let cases = index["stochastic"].as_array().unwrap();
    assert_eq!(
        cases.len(),
        4,
        "dare_ties, dare_linear, della, della_linear"
    );
    for case in cases.iter().map(|c| c.as_str().unwrap()) {
        let dir = root.join("tests/golden/e2e").join(case);
        let recipe: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("recipe.yaml")).unwrap())
                .unwrap();
        let base = read_tensors(&root.join(recipe["base_model"].as_str().unwrap()));
        let theirs: Vec<(f64, f64, f64)> = [1, 2]
            .iter()
            .map(|s| {
                let t = read_file(&dir.join(format!("expected-seed{s}.safetensors")));
                change_stats(&t, &base)
            })
            .collect();
        let one = run_seeded(case, 1, 1);
        let ours: Vec<(f64, f64, f64)> = [&one, &run_seeded(case, 2, 2)]
            .iter()
            .map(|t| change_stats(t, &base))
            .collect();
        let avg = |v: &[(f64, f64, f64)], f: fn(&(f64, f64, f64)) -> f64| {
            v.iter().map(f).sum::<f64>() / v.len() as f64
        };
        let (cm, co) = (avg(&theirs, |s| s.0), avg(&ours, |s| s.0));
        let (sm, so) = (avg(&theirs, |s| s.1), avg(&ours, |s| s.1));
        let (lm, lo) = (avg(&theirs, |s| s.2), avg(&ours, |s| s.2));
        eprintln!(
            "{case}: changed fraction mergekit {cm:.4} lamarck {co:.4}; sd {sm:.5} / {so:.5}; L1 {lm:.3} / {lo:.3}"
        );
        let n: f64 = base.values().map(|(_, b)| b.len() as f64).sum();
        let bound = 5.0 * (cm * (1.0 - cm) / n).sqrt();
        assert!(
            (co - cm).abs() < bound,
            "{case}: changed fraction {co} vs mergekit {cm} (±{bound})"
        );
        assert!((so / sm - 1.0).abs() < 0.08, "{case}: spread {so} vs {sm}");
        assert!((lo / lm - 1.0).abs() < 0.08, "{case}: L1 {lo} vs {lm}");
        // Same seed, other thread count: identical bits; other seed: different masks.
        let again = run_seeded(case, 1, 2);
        assert!(
            one == again,
            "{case}: seed 1 differs between 1 and 2 threads"
        );
        assert!(
            one != run_seeded(case, 2, 1),
            "{case}: seeds 1 and 2 gave the same model"
        );
    }
}
