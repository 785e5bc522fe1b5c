//! Corrupt model folders are refused on open, with an error naming the file (and tensor).
use std::fs;
use std::path::{Path, PathBuf};

use lamarck::model::{Error, ModelDir};

const CONFIG: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}"#;

/// A safetensors file from a raw header string and `data_len` zero bytes of data.
fn st_bytes(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

fn folder_with(file_bytes: Vec<u8>) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("config.json"), CONFIG).unwrap();
    fs::write(dir.join("model.safetensors"), file_bytes).unwrap();
    (tmp, dir)
}

/// Open must fail, and the message must name `file` and contain every `needle`.
fn assert_refused(dir: &Path, file: &str, needles: &[&str]) -> Error {
    let err = ModelDir::open(dir).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&dir.join(file).display().to_string()),
        "no file in: {text}"
    );
    for n in needles {
        assert!(text.contains(n), "missing `{n}` in: {text}");
    }
    err
}

const GOOD: &str = r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}}"#;

#[test]
fn a_good_file_opens() {
    let (_t, dir) = folder_with(st_bytes(GOOD, 32));
    let m = ModelDir::open(&dir).unwrap();
    assert_eq!(m.tensor_names(), ["a", "b"]);
    assert_eq!(m.total_bytes(), 32);
    assert_eq!(m.read_f32("b").unwrap(), vec![0.0; 4]);
    let err = m.read_f32("c").unwrap_err().to_string();
    assert!(err.contains("`c`"), "{err}");
}

#[test]
fn truncated_data_is_refused() {
    let (_t, dir) = folder_with(st_bytes(GOOD, 30));
    assert_refused(&dir, "model.safetensors", &["`b`", "past the end"]);
}

#[test]
fn truncated_header_is_refused() {
    let mut bytes = st_bytes(GOOD, 32);
    bytes.truncate(8 + GOOD.len() / 2);
    let (_t, dir) = folder_with(bytes);
    assert_refused(&dir, "model.safetensors", &["truncated"]);
    let (_t, dir) = folder_with(vec![1, 2, 3]);
    assert_refused(&dir, "model.safetensors", &["not a safetensors file"]);
}

#[test]
fn bad_json_header_is_refused() {
    let (_t, dir) = folder_with(st_bytes(r#"{"a":{"dtype":"F32""#, 0));
    assert_refused(&dir, "model.safetensors", &["not valid JSON"]);
    let (_t, dir) = folder_with(st_bytes(r#"[1, 2]"#, 0));
    assert_refused(&dir, "model.safetensors", &["not a JSON object"]);
    let (_t, dir) = folder_with(st_bytes(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#,
        8,
    ));
    assert_refused(&dir, "model.safetensors", &["`a`", "data_offsets"]);
}

#[test]
fn absurd_header_size_is_refused() {
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let (_t, dir) = folder_with(bytes);
    assert_refused(&dir, "model.safetensors", &["exceeds"]);
}

#[test]
fn offsets_past_end_are_refused() {
    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[1000,1016]}}"#;
    let (_t, dir) = folder_with(st_bytes(header, 16));
    assert_refused(&dir, "model.safetensors", &["`a`", "past the end"]);
}

#[test]
fn overlapping_tensors_are_refused() {
    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#;
    let (_t, dir) = folder_with(st_bytes(header, 16));
    assert_refused(&dir, "model.safetensors", &["overlaps", "`a`", "`b`"]);
}

#[test]
fn shape_length_mismatch_is_refused() {
    let header = r#"{"a":{"dtype":"BF16","shape":[3,3],"data_offsets":[0,16]}}"#;
    let (_t, dir) = folder_with(st_bytes(header, 16));
    assert_refused(
        &dir,
        "model.safetensors",
        &["`a`", "needs 18 bytes", "span 16"],
    );
}

#[test]
fn unsupported_dtype_is_refused_by_name() {
    let header = r#"{"q":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}"#;
    let (_t, dir) = folder_with(st_bytes(header, 4));
    let err = assert_refused(&dir, "model.safetensors", &["`q`", "I8", "F32, F16, BF16"]);
    assert!(matches!(err, Error::UnsupportedDtype { .. }));
}

#[test]
fn missing_config_and_missing_weights_are_refused() {
    let (_t, dir) = folder_with(st_bytes(GOOD, 32));
    fs::remove_file(dir.join("config.json")).unwrap();
    assert_refused(&dir, "config.json", &[]);
    fs::write(dir.join("config.json"), "{not json").unwrap();
    assert_refused(&dir, "config.json", &["not valid JSON"]);
    fs::write(dir.join("config.json"), CONFIG).unwrap();
    fs::remove_file(dir.join("model.safetensors")).unwrap();
    fs::write(dir.join("pytorch_model.bin"), "x").unwrap();
    let text = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(
        text.contains(&dir.display().to_string()) && text.contains("pytorch_model.bin"),
        "{text}"
    );
}

/// A sharded folder: two shards with tensors a (shard 1) and b (shard 2).
fn sharded(index: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("config.json"), CONFIG).unwrap();
    let one = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let two = r#"{"b":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    fs::write(
        dir.join("model-00001-of-00002.safetensors"),
        st_bytes(one, 8),
    )
    .unwrap();
    fs::write(
        dir.join("model-00002-of-00002.safetensors"),
        st_bytes(two, 4),
    )
    .unwrap();
    fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    (tmp, dir)
}

#[test]
fn sharded_folder_opens() {
    let (_t, dir) = sharded(
        r#"{"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#,
    );
    let m = ModelDir::open(&dir).unwrap();
    assert_eq!(m.tensor_names(), ["a", "b"]);
    assert_eq!(m.shard_paths().len(), 2);
    assert_eq!(m.read_f32("b").unwrap(), vec![0.0, 0.0]);
}

#[test]
fn index_naming_a_missing_shard_is_refused() {
    let (_t, dir) = sharded(
        r#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00003-of-00002.safetensors"}}"#,
    );
    assert_refused(
        &dir,
        "model.safetensors.index.json",
        &["model-00003-of-00002.safetensors", "does not exist"],
    );
}

#[test]
fn index_naming_a_missing_tensor_is_refused() {
    let (_t, dir) = sharded(
        r#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}"#,
    );
    assert_refused(
        &dir,
        "model.safetensors.index.json",
        &["`c`", "model-00002-of-00002.safetensors"],
    );
}

#[test]
fn index_escaping_the_folder_is_refused() {
    let (_t, dir) = sharded(r#"{"weight_map":{"a":"../model-00001-of-00002.safetensors"}}"#);
    assert_refused(&dir, "model.safetensors.index.json", &["plain file names"]);
}

#[test]
fn a_bad_shard_is_named_even_when_others_are_fine() {
    let (_t, dir) = sharded(
        r#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#,
    );
    let bad = r#"{"b":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#;
    fs::write(
        dir.join("model-00002-of-00002.safetensors"),
        st_bytes(bad, 16),
    )
    .unwrap();
    assert_refused(&dir, "model-00002-of-00002.safetensors", &["`b`", "F64"]);
}

#[test]
fn header_only_mode_still_validates_structure() {
    // Data absent is fine in header-only mode; a wrong shape is not.
    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let (_t, dir) = folder_with(st_bytes(header, 0));
    assert!(ModelDir::open(&dir).is_err());
    let m = ModelDir::open_headers(&dir).unwrap();
    assert!(!m.has_data());
    let header = r#"{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}"#;
    let (_t, dir) = folder_with(st_bytes(header, 0));
    let text = ModelDir::open_headers(&dir).unwrap_err().to_string();
    assert!(
        text.contains("model.safetensors") && text.contains("`a`"),
        "{text}"
    );
}
