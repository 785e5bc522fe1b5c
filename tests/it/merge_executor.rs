//! The multi-stage executor as a user meets it: stage reuse decided by stage hash (a changed
//! upstream stage rebuilds everything downstream), `--dry-run` saying what would be reused
//! and why, a `kill -9` mid-merge cleaned up by the next run, bad parameter values refused
//! before anything is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cmd::lamarck;
use crate::support::merge::{write_model, write_model_map, Shape};
use crate::support::s;
use crate::support::tensors::read_tensors;

fn zoo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("zoo").join(name)
}

/// `up → mid → down`: linear, slerp, linear over zoo models; `w` is `up`'s first weight.
fn three_stages(w: f64) -> String {
    format!(
        "name: up\nmerge_method: linear\nmodels:\n  - {{model: zoo/base, parameters: {{weight: {w}}}}}\n  - {{model: zoo/specialist-add, parameters: {{weight: 0.5}}}}\n\
         ---\nname: mid\nmerge_method: slerp\nbase_model: zoo/base\nparameters: {{t: 0.4}}\nmodels:\n  - model: zoo/base\n  - model: up\n\
         ---\nname: down\nmerge_method: linear\nmodels:\n  - {{model: mid, parameters: {{weight: 0.7}}}}\n  - {{model: zoo/specialist-sort, parameters: {{weight: 0.3}}}}\n"
    )
}

/// The bytes of every file of a folder, by name.
fn folder_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Regression test for issue 11 (stale stage reuse): changing a weight in `up` and merging
/// again with `--force` used to rebuild `up` but reuse `mid`, writing the first run's
/// weights again.
#[test]
fn issue_11_a_changed_upstream_stage_rebuilds_everything_downstream() {
    let tmp = tempfile::tempdir().unwrap();
    let map = tmp.path().join("map.yaml");
    write_model_map(
        &map,
        &[
            ("zoo/base", zoo("base")),
            ("zoo/specialist-add", zoo("specialist-add")),
            ("zoo/specialist-sort", zoo("specialist-sort")),
        ],
    );
    let recipe = tmp.path().join("r.yaml");
    let out = tmp.path().join("out");
    let merge = |extra: &[&str]| {
        let mut args = vec![
            "merge",
            s(&recipe),
            "--out",
            s(&out),
            "--model-map",
            s(&map),
        ];
        args.extend_from_slice(extra);
        lamarck(&args)
    };
    std::fs::write(&recipe, three_stages(0.5)).unwrap();
    let (ok, _, err) = merge(&[]);
    assert!(ok, "{err}");
    let first = folder_bytes(&out);
    for stage in ["up", "mid"] {
        let record = out
            .with_extension("stages")
            .join(stage)
            .join("lamarck-stage.json");
        assert!(record.is_file(), "{} has no stage record", record.display());
    }

    // Unchanged: both intermediate stages are reused, the output is the same.
    let (ok, stdout, err) = merge(&["--dry-run"]);
    assert!(ok, "{err}");
    assert_eq!(stdout.matches("reuse: yes").count(), 2, "{stdout}");
    let (ok, _, err) = merge(&["--force"]);
    assert!(ok, "{err}");
    assert_eq!(err.matches("reusing complete output").count(), 2, "{err}");
    assert_eq!(folder_bytes(&out), first);

    // A weight of `up` changes: `--dry-run` says why each stage is rebuilt ...
    std::fs::write(&recipe, three_stages(0.9)).unwrap();
    let (ok, stdout, err) = merge(&["--dry-run"]);
    assert!(ok, "{err}");
    assert!(!stdout.contains("reuse: yes"), "{stdout}");
    assert!(
        stdout.contains("reuse: no, will be built (the stage's recipe text changed)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("reuse: no, will be built (input `up` (a stage) changed)"),
        "{stdout}"
    );
    // ... and the merge rebuilds `up` and `mid`.
    let (ok, _, err) = merge(&["--force"]);
    assert!(ok, "{err}");
    assert!(!err.contains("reusing"), "{err}");
    assert!(err.contains("input `up` (a stage) changed"), "{err}");
    let second = read_tensors(&out);

    // The same recipe into a fresh --out (fresh stages folder) gives the same weights.
    let fresh = tmp.path().join("fresh");
    let (ok, _, err) = lamarck(&[
        "merge",
        s(&recipe),
        "--out",
        s(&fresh),
        "--model-map",
        s(&map),
    ]);
    assert!(ok, "{err}");
    let fresh = read_tensors(&fresh);
    assert_eq!(second.len(), fresh.len());
    for (name, (shape, data)) in &fresh {
        let (s2, d2) = &second[name];
        assert_eq!(shape, s2, "{name}");
        let same = data.iter().zip(d2).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name} differs from a fresh merge");
    }
    // and the change of `up` did reach the output
    let changed = first.iter().any(|(n, b)| {
        n.ends_with(".safetensors") && folder_bytes(&out).iter().any(|(m, c)| m == n && c != b)
    });
    assert!(changed, "the output did not change with `up`");
}

/// Two bf16 models big enough that a single-threaded DELLA merge takes a while.
fn slow_merge(dir: &Path) -> (PathBuf, PathBuf) {
    let shape = Shape {
        layers: 6,
        hidden: 384,
        intermediate: 1024,
        heads: 4,
        kv_heads: 2,
        vocab: 4096,
        tied: false,
    };
    write_model(&dir.join("a"), shape, 1, None, 0.0);
    write_model(&dir.join("b"), shape, 1, Some(2), 0.05);
    let map = dir.join("map.yaml");
    write_model_map(&map, &[("org/a", dir.join("a")), ("org/b", dir.join("b"))]);
    let recipe = dir.join("r.yaml");
    std::fs::write(
        &recipe,
        "merge_method: della\nbase_model: org/a\ndtype: float32\nout_dtype: float32\nparameters: {density: 0.5, epsilon: 0.1, weight: 1.0}\nmodels:\n  - model: org/b\n",
    )
    .unwrap();
    (recipe, map)
}

fn temps(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}.lamarck-")))
        .collect()
}

#[test]
fn kill_9_mid_merge_then_a_rerun_leaves_no_temporary_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (recipe, map) = slow_merge(tmp.path());
    let out = tmp.path().join("out");
    let args = [
        "merge",
        s(&recipe),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
        "--threads",
        "1",
        "--shard-size",
        "2M",
    ];
    let mut killed = false;
    for attempt in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lamarck"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // kill once the temporary folder holds a written shard
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let written = temps(tmp.path(), "out").iter().any(|t| {
                std::fs::read_dir(tmp.path().join(t))
                    .map(|d| d.count() > 0)
                    .unwrap_or(false)
            });
            if written || started.elapsed() > Duration::from_secs(120) {
                std::thread::sleep(Duration::from_millis(20 * attempt));
                child.kill().unwrap(); // SIGKILL
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.wait().unwrap();
        if killed && !out.exists() {
            break;
        }
        let _ = std::fs::remove_dir_all(&out);
        killed = false;
    }
    assert!(
        killed,
        "the merge always finished before it could be killed"
    );
    let left = temps(tmp.path(), "out");
    assert!(
        left.iter().any(|t| t.contains("lamarck-tmp-")),
        "the crash should have left its temporary folder: {left:?}"
    );
    // --dry-run reports it and removes nothing
    let (ok, stdout, err) = lamarck(&[&args[..], &["--dry-run"]].concat());
    assert!(ok, "{err}");
    assert!(stdout.contains("stale temporary folder"), "{stdout}");
    assert_eq!(temps(tmp.path(), "out"), left);
    // the rerun removes it and writes the output; nothing hidden is left
    let (ok, _, err) = lamarck(&args);
    assert!(ok, "{err}");
    assert!(err.contains("left by a merge that did not finish"), "{err}");
    assert!(out.join("config.json").is_file());
    assert_eq!(temps(tmp.path(), "out"), Vec::<String>::new());
}

#[test]
fn an_out_of_range_della_epsilon_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    write_model(&tmp.path().join("a"), Shape::tiny(2), 1, None, 0.0);
    write_model(&tmp.path().join("b"), Shape::tiny(2), 1, Some(2), 0.05);
    let map = tmp.path().join("map.yaml");
    write_model_map(
        &map,
        &[
            ("org/a", tmp.path().join("a")),
            ("org/b", tmp.path().join("b")),
        ],
    );
    // a good first stage, then DELLA with density 0.3 ± 0.35 reaching below 0
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(
        &recipe,
        "name: first\nmerge_method: linear\nmodels:\n  - {model: org/a, parameters: {weight: 1}}\n  - {model: org/b, parameters: {weight: 1}}\n\
         ---\nmerge_method: della\nbase_model: org/a\nparameters: {weight: 1.0}\nmodels:\n  - model: first\n    parameters: {density: 0.3, epsilon: 0.35}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let before: Vec<_> = folder_names(tmp.path());
    for extra in [&["--dry-run"][..], &[][..]] {
        let mut args = vec![
            "merge",
            s(&recipe),
            "--out",
            s(&out),
            "--model-map",
            s(&map),
        ];
        args.extend_from_slice(extra);
        let (ok, stdout, err) = lamarck(&args);
        assert!(!ok, "{extra:?} accepted it: {stdout}");
        assert!(
            err.contains("della: model #1: density ± epsilon must lie inside (0, 1)")
                && err.contains("epsilon 0.35")
                && err.contains("stage `final`"),
            "{err}"
        );
        assert!(
            !stdout.contains("stage 1 of"),
            "{extra:?} printed a plan: {stdout}"
        );
        assert_eq!(
            folder_names(tmp.path()),
            before,
            "{extra:?} wrote something"
        );
    }
}

fn folder_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn slerp_with_three_models_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let map = tmp.path().join("map.yaml");
    write_model_map(
        &map,
        &[
            ("zoo/base", zoo("base")),
            ("zoo/specialist-add", zoo("specialist-add")),
            ("zoo/specialist-sort", zoo("specialist-sort")),
        ],
    );
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(
        &recipe,
        "merge_method: slerp\nbase_model: zoo/base\nparameters: {t: 0.5}\nmodels:\n  - model: zoo/base\n  - model: zoo/specialist-add\n  - model: zoo/specialist-sort\n",
    )
    .unwrap();
    let before = folder_names(tmp.path());
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
    assert!(err.contains("slerp") && err.contains("exactly 1"), "{err}");
    assert_eq!(folder_names(tmp.path()), before);
}
