//! The streamed kernels (tensors merged block by block, `src/merge/stream.rs`) give exactly
//! what the whole-tensor reference kernels give, for every method that has a streamed form,
//! both compute dtypes, several block sizes and thread counts. Tensors here span several
//! reduction chunks (65,536 elements), so the block boundaries really cut them.
use std::collections::BTreeMap;

use crate::support::merge::{merge_in_memory, write_model, Shape};
use lamarck::merge::ops::CHUNK;
use lamarck::merge::run::RunOptions;
use lamarck::registry::Compat;

/// Vocabulary 1200 × hidden 128 (2.3 chunks), MLP 640 × 128 (1.25 chunks).
fn shape() -> Shape {
    Shape {
        layers: 1,
        hidden: 128,
        intermediate: 640,
        heads: 4,
        kv_heads: 2,
        vocab: 1200,
        tied: false,
    }
}

type Tensors = BTreeMap<String, (Vec<usize>, Vec<u32>)>;

fn merge(dir: &std::path::Path, text: &str, compat: Compat, opts: &RunOptions) -> Tensors {
    merge_in_memory(dir, text, Some(compat), 5, opts)
        .tensors
        .into_iter()
        .map(|(name, (shape, dtype, data))| {
            let values = lamarck::model::safetensors::bytes_to_f32(&data, dtype);
            (name, (shape, values.iter().map(|x| x.to_bits()).collect()))
        })
        .collect()
}

fn recipes() -> Vec<String> {
    let gta = |method: &str, extra: &str, models: &str| {
        format!("merge_method: {method}\nbase_model: a\nparameters: {{{extra}}}\nmodels:\n{models}")
    };
    let three = "  - model: b\n    parameters: {weight: 0.5, density: 0.4}\n  - model: c\n    parameters: {weight: 0.3, density: 0.6}\n  - model: d\n    parameters: {weight: -0.2, density: 0.5}\n";
    let mut out = vec![
        "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 0.7}\n  - model: b\n    parameters: {weight: 0.4}\n".to_string(),
        "merge_method: slerp\nbase_model: a\nparameters: {t: [0.1, 0.7]}\nmodels:\n  - model: a\n  - model: b\n".to_string(),
        "merge_method: passthrough\nmodels:\n  - model: c\n    parameters: {scale: 0.5}\n".to_string(),
    ];
    for method in [
        "task_arithmetic",
        "ties",
        "dare_ties",
        "dare_linear",
        "breadcrumbs",
        "breadcrumbs_ties",
    ] {
        out.push(gta(method, "lambda: 0.9", three));
        out.push(gta(method, "rescale: true, normalize: true", three));
    }
    for method in ["della", "della_linear"] {
        out.push(gta(method, "epsilon: 0.1", three));
        out.push(gta(
            method,
            "epsilon: 0.1, rescale: false, lambda: 1.2",
            three,
        ));
        out.push(gta(method, "epsilon: 0.0", three));
    }
    let plain = "  - model: b\n  - model: c\n  - model: d\n";
    for filter_wise in [false, true] {
        out.push(gta(
            "model_stock",
            &format!("filter_wise: {filter_wise}"),
            plain,
        ));
    }
    out.push(gta(
        "breadcrumbs",
        "gamma: 0.2",
        "  - model: b\n    parameters: {weight: 1.0, density: 0.5}\n",
    ));
    out
}

#[test]
fn streamed_kernels_equal_the_whole_tensor_kernels() {
    let tmp = tempfile::tempdir().unwrap();
    write_model(&tmp.path().join("a"), shape(), 1, None, 0.0);
    for (name, seed) in [("b", 2), ("c", 3), ("d", 4)] {
        write_model(&tmp.path().join(name), shape(), 1, Some(seed), 0.02);
    }
    let whole = RunOptions {
        threads: 2,
        streamed: false,
        ..RunOptions::default()
    };
    // (block, threads, --max-memory): the default budget lets a bf16 TIES/DELLA prepare
    // hold its task vectors for the apply; 1 MiB does not, so the apply reads them again
    let default = RunOptions::default().max_memory;
    let blocks = [
        (CHUNK, 2, default),
        (CHUNK, 2, 1 << 20),
        (CHUNK, 1, default),
        (3 * CHUNK, 2, default),
        (usize::MAX / 2, 2, default), // every tensor one block
    ];
    let cases = ["bfloat16", "float32"]
        .into_iter()
        .flat_map(|d| recipes().into_iter().map(move |r| (d, r, Compat::Mergekit)));
    // mergekit ≤ 0.0.6 rescales DARE by 1/density (streamed) and DELLA by 1/pᵢ (whole).
    let old = [("dare_linear", "rescale: true"), ("della", "epsilon: 0.1")].into_iter().map(|(m, p)| {
        let r = format!("merge_method: {m}\nbase_model: a\nparameters: {{{p}}}\nmodels:\n  - model: b\n    parameters: {{weight: 0.8, density: 0.5}}\n");
        ("bfloat16", r, Compat::Mergekit2024)
    });
    for (dtype, recipe, compat) in cases.chain(old) {
        {
            let text = format!("dtype: {dtype}\nseed: 9\n{recipe}");
            let want = merge(tmp.path(), &text, compat, &whole);
            assert!(want["model.embed_tokens.weight"].1.len() > 2 * CHUNK);
            for (block, threads, max_memory) in blocks {
                let opts = RunOptions {
                    threads,
                    block,
                    max_memory,
                    ..RunOptions::default()
                };
                let got = merge(tmp.path(), &text, compat, &opts);
                assert_eq!(got.len(), want.len());
                for (name, (shape, bits)) in &want {
                    let (s, b) = &got[name];
                    assert_eq!(s, shape, "{name}");
                    let diff = b.iter().zip(bits).position(|(x, y)| x != y);
                    assert!(
                        diff.is_none(),
                        "{name}: element {diff:?} differs (block {block}, {threads} threads, budget {max_memory})\n{text}"
                    );
                }
            }
        }
    }
}

/// The kernels' AVX2 / AVX-512 copies (`wide_kernel!`, picked at run time) give the bits
/// of the baseline build, for every streamed method and both compute dtypes. (Other tests running
/// meanwhile may take either copy; by this test, that does not change their results.)
#[test]
fn wide_kernels_give_the_baseline_bits() {
    let tmp = tempfile::tempdir().unwrap();
    write_model(&tmp.path().join("a"), shape(), 1, None, 0.0);
    for (name, seed) in [("b", 2), ("c", 3), ("d", 4)] {
        write_model(&tmp.path().join(name), shape(), 1, Some(seed), 0.02);
    }
    let opts = RunOptions {
        threads: 2,
        ..RunOptions::default()
    };
    for dtype in ["bfloat16", "float32"] {
        for recipe in recipes() {
            let text = format!("dtype: {dtype}\nseed: 9\n{recipe}");
            lamarck::model::dtype::set_wide_kernels(false);
            let baseline = merge(tmp.path(), &text, Compat::Mergekit, &opts);
            lamarck::model::dtype::set_wide_kernels(true);
            let wide = merge(tmp.path(), &text, Compat::Mergekit, &opts);
            assert!(
                baseline == wide,
                "the wide (AVX2 / AVX-512) copies changed the result of\n{text}"
            );
        }
    }
}
