//! Model reference resolution: model map, local directory, Hugging Face cache.
//!
//! The cache location comes from the environment, which is process-wide, so every test
//! that sets it lives in one test function.
use std::fs;
use std::path::Path;

use lamarck::model::{resolve_model, Error, ModelMap};

fn snapshot(cache: &Path, repo: &str, commit: &str) -> std::path::PathBuf {
    let dir = cache
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(commit);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config.json"), "{}").unwrap();
    dir
}

fn set_ref(cache: &Path, repo: &str, name: &str, commit: &str) {
    let refs = cache
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("refs");
    fs::create_dir_all(&refs).unwrap();
    fs::write(refs.join(name), commit).unwrap();
}

#[test]
fn model_map_paths_are_relative_to_the_map_file() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("maps/models/a")).unwrap();
    fs::write(
        tmp.path().join("maps/map.yaml"),
        "org/a: models/a\n'org/b': /nonexistent/b\n",
    )
    .unwrap();
    let map = ModelMap::load(&tmp.path().join("maps/map.yaml")).unwrap();
    assert_eq!(
        resolve_model("org/a", Some(&map)).unwrap(),
        tmp.path().join("maps/models/a")
    );
    // A map entry pointing nowhere is reported, not silently skipped.
    let err = resolve_model("org/b", Some(&map)).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/b (not a directory)"), "{err}");
}

#[test]
fn model_map_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("map.yaml");
    fs::write(&path, "- a\n- b\n").unwrap();
    let err = ModelMap::load(&path).unwrap_err().to_string();
    assert!(err.contains("map.yaml"), "{err}");
    fs::write(&path, "a: [1, 2]\n").unwrap();
    let err = ModelMap::load(&path).unwrap_err().to_string();
    assert!(err.contains("map.yaml"), "{err}");
}

#[test]
fn resolution_order_and_hf_cache_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::remove_var("HF_HOME");

    let main_commit = "a".repeat(40);
    let old_commit = format!("b{}", "0".repeat(39));
    let main_dir = snapshot(&cache, "Org/Model", &main_commit);
    let old_dir = snapshot(&cache, "Org/Model", &old_commit);
    set_ref(&cache, "Org/Model", "main", &format!("{main_commit}\n"));
    set_ref(&cache, "Org/Model", "v1", &old_commit);

    // refs/main is honoured.
    assert_eq!(resolve_model("Org/Model", None).unwrap(), main_dir);
    // @rev by ref name, by full hash, by unique prefix.
    assert_eq!(resolve_model("Org/Model@v1", None).unwrap(), old_dir);
    assert_eq!(
        resolve_model(&format!("Org/Model@{old_commit}"), None).unwrap(),
        old_dir
    );
    assert_eq!(resolve_model("Org/Model@b000000", None).unwrap(), old_dir);
    let err = resolve_model("Org/Model@nope", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no ref or snapshot `nope`") && err.contains("v1"),
        "{err}"
    );

    // A local directory wins over the cache; the model map wins over both.
    let cwd_model = tmp.path().join("Org/Model");
    fs::create_dir_all(&cwd_model).unwrap();
    let local_ref = cwd_model.to_str().unwrap();
    assert_eq!(resolve_model(local_ref, None).unwrap(), cwd_model);
    let elsewhere = tmp.path().join("mapped");
    fs::create_dir_all(&elsewhere).unwrap();
    let map = ModelMap {
        entries: [(local_ref.to_string(), elsewhere.clone())]
            .into_iter()
            .collect(),
    };
    assert_eq!(resolve_model(local_ref, Some(&map)).unwrap(), elsewhere);

    // HF_HOME/hub is used when HF_HUB_CACHE is unset.
    std::env::remove_var("HF_HUB_CACHE");
    std::env::set_var("HF_HOME", tmp.path());
    assert_eq!(resolve_model("Org/Model", None).unwrap(), main_dir);

    // A snapshot without config.json (partial download) is not a model.
    let partial = cache.join("models--Org--Partial/snapshots/c1");
    fs::create_dir_all(&partial).unwrap();
    set_ref(&cache, "Org/Partial", "main", "c1");
    let err = resolve_model("Org/Partial", None).unwrap_err().to_string();
    assert!(err.contains("has no config.json"), "{err}");

    // A miss lists every place tried.
    let err = resolve_model("Org/Missing", Some(&map)).unwrap_err();
    let Error::ModelNotFound { tried, .. } = &err else {
        panic!("unexpected error {err}");
    };
    assert_eq!(tried.len(), 3, "{tried:?}");
    let text = err.to_string();
    assert!(text.contains("model map: no entry `Org/Missing`"), "{text}");
    assert!(text.contains("local directory"), "{text}");
    assert!(text.contains("models--Org--Missing"), "{text}");

    // Something that cannot be a repo id skips the cache, and says so.
    let text = resolve_model("./not/here/at/all", None)
        .unwrap_err()
        .to_string();
    assert!(text.contains("not a repo id"), "{text}");
}
