//! Synthetic checkpoint families: determinism, layout, and the character of each variant.
use std::collections::BTreeMap;
use std::path::Path;

use lamarck::model::synth::{tensor_values, write_family, SynthOptions, SynthShape, Variant};
use lamarck::model::{Architecture, DType, ModelDir, WriteOptions};

fn opts(seed: u64, shard_size: u64) -> SynthOptions {
    SynthOptions {
        seed,
        transformers5: false,
        write: WriteOptions {
            shard_size,
            force: false,
        },
    }
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for member in std::fs::read_dir(dir).unwrap() {
        let member = member.unwrap().path();
        for f in std::fs::read_dir(&member).unwrap() {
            let f = f.unwrap().path();
            let key = f.strip_prefix(dir).unwrap().display().to_string();
            out.insert(key, std::fs::read(&f).unwrap());
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let shape = SynthShape {
        dtype: DType::BF16,
        tied: false,
        ..SynthShape::tiny()
    };
    write_family(&tmp.path().join("a"), &shape, &opts(42, 4000)).unwrap();
    write_family(&tmp.path().join("b"), &shape, &opts(42, 4000)).unwrap();
    write_family(&tmp.path().join("c"), &shape, &opts(43, 4000)).unwrap();
    let (a, b, c) = (
        tree(&tmp.path().join("a")),
        tree(&tmp.path().join("b")),
        tree(&tmp.path().join("c")),
    );
    assert!(
        a.len() > 6 * 3,
        "expected sharded members, got {} files",
        a.len()
    );
    assert_eq!(a, b);
    let differing = a
        .iter()
        .filter(|(k, v)| k.ends_with(".safetensors") && c.get(*k) != Some(v))
        .count();
    let shards = a.keys().filter(|k| k.ends_with(".safetensors")).count();
    assert_eq!(differing, shards, "every shard should change with the seed");
}

#[test]
fn family_members_load_with_the_qwen2_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let shape = SynthShape::tiny();
    let dirs = write_family(tmp.path(), &shape, &opts(1, 5_000_000_000)).unwrap();
    assert_eq!(dirs.len(), 6);
    let base = ModelDir::open(&dirs[0]).unwrap();
    let arch = Architecture::for_config(&base.config).unwrap();
    let expected: Vec<String> = arch
        .all_weights(shape.layers)
        .into_iter()
        .filter(|w| !w.optional)
        .map(|w| w.name)
        .collect();
    let mut names: Vec<&str> = base.tensor_names();
    names.sort();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(names, want);
    assert_eq!(base.config.num_hidden_layers(), Some(shape.layers));
    assert_eq!(base.config.vocab_size(), Some(shape.vocab));
    assert!(base.config.tie_word_embeddings());
    assert_eq!(base.config.rope_theta(), Some(1e6));
    assert_eq!(base.config.dtype(), Some(DType::F32));
    // Stored values are the generator's values (f32: exactly).
    let name = "model.layers.1.self_attn.q_proj.weight";
    let shape_q = base.info(name).unwrap().shape.clone();
    assert_eq!(
        base.read_f32(name).unwrap(),
        tensor_values(1, &Variant::Base, name, &shape_q)
    );
}

#[test]
fn layer_limited_variant_leaves_other_layers_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let shape = SynthShape {
        layers: 4,
        dtype: DType::BF16,
        ..SynthShape::tiny()
    };
    let dirs = write_family(tmp.path(), &shape, &opts(7, 5_000_000_000)).unwrap();
    let base = ModelDir::open(&dirs[0]).unwrap();
    let limited = ModelDir::open(&tmp.path().join("ft-layers")).unwrap();
    for name in base.tensor_names() {
        let same = base.raw(name).unwrap() == limited.raw(name).unwrap();
        let in_range = name.starts_with("model.layers.0.") || name.starts_with("model.layers.1.");
        assert_eq!(same, !in_range, "{name}");
    }
}

#[test]
fn transformers5_config_style() {
    let tmp = tempfile::tempdir().unwrap();
    let o = SynthOptions {
        transformers5: true,
        ..opts(1, 5_000_000_000)
    };
    lamarck::model::synth::write_model(
        &tmp.path().join("m"),
        &SynthShape::tiny(),
        &Variant::Base,
        &o,
    )
    .unwrap();
    let m = ModelDir::open(&tmp.path().join("m")).unwrap();
    assert_eq!(
        m.config.raw.get("sliding_window"),
        Some(&serde_json::Value::Null)
    );
    assert!(m.config.raw.contains_key("dtype") && !m.config.raw.contains_key("torch_dtype"));
    assert_eq!(m.config.rope_theta(), Some(1e6));
}

#[test]
fn values_do_not_depend_on_the_thread_count() {
    // 3 × 65536-element blocks plus a partial one.
    let shape = [3 * 65536 / 64 + 7, 64];
    let name = "model.embed_tokens.weight";
    let run = |threads: usize, variant: &Variant| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| tensor_values(11, variant, name, &shape))
    };
    for variant in [
        Variant::Base,
        Variant::Sparse {
            density: 0.2,
            scale: 0.01,
        },
        Variant::LowRank {
            rank: 3,
            scale: 0.004,
        },
    ] {
        let one = run(1, &variant);
        assert_eq!(one, run(3, &variant), "{variant:?}");
        // Blocks are distinct streams: no block repeats another.
        assert_ne!(one[..65536], one[65536..2 * 65536]);
    }
}
