//! Write → read round trips through ModelWriter and ModelDir, and writer atomicity.
use std::path::Path;

use lamarck::model::writer::f32_to_bytes;
use lamarck::model::{DType, Error, ModelDir, ModelWriter, WriteOptions};

const CONFIG: &str =
    r#"{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "dtype": "float32"}"#;

fn values(n: usize, seed: u32) -> Vec<f32> {
    // Values that need rounding in bf16/f16 but stay in f16 range.
    (0..n)
        .map(|i| ((i as f32 + seed as f32) * 0.37).sin() * 3.1 + 1e-3 * i as f32)
        .collect()
}

fn write_model(
    out: &Path,
    dtype: DType,
    shard_size: u64,
    force: bool,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = (0..7)
        .map(|i| {
            let shape = vec![3 + i, 5];
            let n = shape.iter().product();
            (format!("model.layers.{i}.w"), shape, values(n, i as u32))
        })
        .collect();
    let mut w = ModelWriter::create(out, WriteOptions { shard_size, force }).unwrap();
    std::fs::write(w.temp_path().join("config.json"), CONFIG).unwrap();
    for (name, shape, data) in &tensors {
        w.add_tensor(name, dtype, shape, f32_to_bytes(data, dtype))
            .unwrap();
    }
    assert_eq!(w.finish().unwrap(), out);
    tensors
}

fn check_roundtrip(dtype: DType, shard_size: u64) -> (tempfile::TempDir, ModelDir) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let tensors = write_model(&out, dtype, shard_size, false);
    let dir = ModelDir::open(&out).unwrap();
    assert_eq!(dir.tensor_names().len(), tensors.len());
    for (name, shape, data) in &tensors {
        let info = dir.info(name).unwrap();
        assert_eq!(info.dtype, dtype);
        assert_eq!(&info.shape, shape);
        let read = dir.read_f32(name).unwrap();
        let expected: Vec<f32> = data.iter().map(|&v| dtype.round(v)).collect();
        assert_eq!(read, expected, "{name} in {dtype:?}");
        if dtype != DType::F32 {
            assert_ne!(&read, data, "rounding should change some values");
        }
    }
    (tmp, dir)
}

#[test]
fn roundtrip_single_file_each_dtype() {
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let (_tmp, dir) = check_roundtrip(dtype, 5_000_000_000);
        assert_eq!(dir.shard_paths().len(), 1);
        assert!(dir.path.join("model.safetensors").is_file());
        assert!(!dir.path.join("model.safetensors.index.json").exists());
    }
}

#[test]
fn roundtrip_sharded() {
    // Each tensor is 60..180 bytes in f32; 200-byte shards force several shards.
    let (_tmp, dir) = check_roundtrip(DType::F32, 200);
    let n = dir.shard_paths().len();
    assert!(n > 2, "expected several shards, got {n}");
    for i in 1..=n {
        assert!(dir
            .path
            .join(format!("model-{i:05}-of-{n:05}.safetensors"))
            .is_file());
    }
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        index["metadata"]["total_size"].as_u64(),
        Some(dir.total_bytes())
    );
    assert_eq!(index["weight_map"].as_object().unwrap().len(), 7);
    // No shard exceeds the limit unless it holds a single tensor.
    for p in dir.shard_paths() {
        let h = lamarck::model::safetensors::read_header(p, true).unwrap();
        let bytes: u64 = h.tensors.values().map(|t| t.len).sum();
        assert!(bytes <= 200 || h.tensors.len() == 1);
        assert_eq!(h.metadata.get("format").map(String::as_str), Some("pt"));
    }
}

#[cfg(unix)]
#[test]
fn written_files_are_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    write_model(&out, DType::BF16, 200, false);
    for e in std::fs::read_dir(&out).unwrap() {
        let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[test]
fn dropped_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    {
        let mut w = ModelWriter::create(
            &out,
            WriteOptions {
                shard_size: 100,
                force: false,
            },
        )
        .unwrap();
        for i in 0..5 {
            w.add_tensor(&format!("t{i}"), DType::F32, &[10], vec![0u8; 40])
                .unwrap();
        }
        assert!(w.temp_path().exists());
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temp folder left behind"
    );
}

#[test]
fn existing_out_refused_without_force_and_replaced_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("marker"), "old").unwrap();
    let err = ModelWriter::create(
        &out,
        WriteOptions {
            shard_size: 100,
            force: false,
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::OutputExists { .. }));
    assert!(err.to_string().contains("--force"), "{err}");
    assert!(out.join("marker").exists());

    // With force, the old folder stays intact until finish.
    let mut w = ModelWriter::create(
        &out,
        WriteOptions {
            shard_size: 100,
            force: true,
        },
    )
    .unwrap();
    std::fs::write(w.temp_path().join("config.json"), CONFIG).unwrap();
    w.add_tensor("t", DType::F32, &[2], f32_to_bytes(&[1.0, 2.0], DType::F32))
        .unwrap();
    assert!(out.join("marker").exists());
    w.finish().unwrap();
    assert!(!out.join("marker").exists());
    assert_eq!(
        ModelDir::open(&out).unwrap().read_f32("t").unwrap(),
        vec![1.0, 2.0]
    );
    // Only the output folder remains beside it.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn add_tensor_rejects_wrong_length_and_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut w = ModelWriter::create(
        &out,
        WriteOptions {
            shard_size: 100,
            force: false,
        },
    )
    .unwrap();
    let err = w
        .add_tensor("t", DType::BF16, &[3], vec![0u8; 4])
        .unwrap_err();
    assert!(err.to_string().contains("`t`"), "{err}");
    w.add_tensor("t", DType::BF16, &[2], vec![0u8; 4]).unwrap();
    assert!(w.add_tensor("t", DType::BF16, &[2], vec![0u8; 4]).is_err());
}

#[test]
fn header_only_open_refuses_data_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    write_model(&out, DType::F32, 5_000_000_000, false);
    // Truncate the file to its header, as dry-run fixtures are.
    let path = out.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    std::fs::write(&path, &bytes[..8 + n]).unwrap();
    assert!(ModelDir::open(&out).is_err());
    let dir = ModelDir::open_headers(&out).unwrap();
    assert_eq!(dir.info("model.layers.0.w").unwrap().shape, vec![3, 5]);
    let err = dir.read_f32("model.layers.0.w").unwrap_err();
    assert!(matches!(err, Error::HeaderOnly { .. }));
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}
