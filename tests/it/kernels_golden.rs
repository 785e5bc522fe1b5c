//! lamarck's merge kernels against mergekit 0.1.5's own numbers.
//!
//! `tests/golden/kernels/` was produced by `tools/golden/kernels.py`, which calls mergekit's
//! merge-method objects on small tensors (dense, sparse, low-rank, sign-conflicting and
//! quantized task vectors; several shapes; f32 and bf16). Deterministic methods must agree
//! within dtype rounding (f32: |a−b| ≤ 1e-6 + 1e-5·|b|; bf16: ≤ 2 ulps for ≥ 99.9% of
//! elements). The quantized and bf16 inputs put many equal magnitudes at the TIES /
//! breadcrumbs thresholds, so these cases also pin the torch sort-order replay
//! (`merge::ops::torch_sort`). DARE/DELLA use a different RNG, so they are compared
//! statistically.
use std::collections::BTreeMap;

use lamarck::merge::methods::{lookup, merge_tensor, ModelTensor, Params, TensorJob};
use lamarck::merge::rng::RngKey;
use lamarck::model::DType;
use lamarck::registry::Compat;
use safetensors::SafeTensors;
use serde_json::Value;

use crate::support::tensors::bf16_ulps;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/kernels");

struct Golden {
    tensors: BTreeMap<String, Vec<f32>>,
    cases: Vec<Value>,
}

fn load() -> Golden {
    let bytes = std::fs::read(format!("{DIR}/kernels.safetensors")).expect("golden tensors");
    let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => panic!("unexpected dtype {other:?} for {name}"),
        };
        tensors.insert(name, values);
    }
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/cases.json")).unwrap())
            .unwrap();
    Golden {
        tensors,
        cases: json["cases"].as_array().unwrap().clone(),
    }
}

fn to_params(v: &Value) -> Params {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let x = match v {
                Value::Bool(b) => f64::from(u8::from(*b)),
                other => other.as_f64().unwrap(),
            };
            (k.clone(), x)
        })
        .collect()
}

fn dtype(case: &Value) -> DType {
    DType::parse_hf(case["dtype"].as_str().unwrap()).unwrap()
}

/// Run lamarck on one golden case with `seed` (and `compat`).
fn run(g: &Golden, case: &Value, seed: u64) -> Vec<f32> {
    let set = case["input_set"].as_str().unwrap();
    let k = case["models"].as_u64().unwrap() as usize;
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let base = &g.tensors[&format!("inputs/{set}.base")];
    let mut inputs: Vec<&[f32]> = (0..k)
        .map(|i| g.tensors[&format!("inputs/{set}.m{i}")].as_slice())
        .collect();
    let base_kind = case["base"].as_str().unwrap();
    if base_kind == "input" {
        inputs.push(base);
    }
    let per_model: Vec<Params> = case["per_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(to_params)
        .collect();
    let empty = Params::new();
    let global = to_params(&case["global"]);
    let job = TensorJob {
        name: case["name"].as_str().unwrap(),
        shape: &shape,
        base: (base_kind == "base").then_some(base.as_slice()),
        models: inputs
            .iter()
            .enumerate()
            .map(|(i, data)| ModelTensor {
                data,
                params: per_model.get(i).unwrap_or(&empty),
            })
            .collect(),
        params: &global,
        compute_dtype: dtype(case),
        rng: RngKey::new(seed, "golden", case["name"].as_str().unwrap()),
        compat: Compat::Mergekit,
    };
    let method = lookup(case["method"].as_str().unwrap()).unwrap();
    merge_tensor(method, &job).unwrap_or_else(|e| panic!("{}: {e}", case["name"]))
}

#[test]
fn deterministic_methods_match_mergekit() {
    let g = load();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut worst_f32 = 0f64;
    let mut bf16_off = (0usize, 0usize);
    for case in g
        .cases
        .iter()
        .filter(|c| !c["stochastic"].as_bool().unwrap())
    {
        let name = case["name"].as_str().unwrap();
        let expected = &g.tensors[case["outputs"][0].as_str().unwrap()];
        let ours = run(&g, case, 0);
        assert_eq!(ours.len(), expected.len(), "{name}");
        checked += 1;
        match dtype(case) {
            DType::BF16 => {
                let bad = (0..ours.len())
                    .filter(|&i| bf16_ulps(DType::BF16.round(ours[i]), expected[i]) > 2)
                    .count();
                bf16_off.0 += bad;
                bf16_off.1 += ours.len();
                if bad as f64 > 0.001 * ours.len() as f64 {
                    failures.push(format!(
                        "{name}: {bad}/{} elements beyond 2 bf16 ulps",
                        ours.len()
                    ));
                }
            }
            _ => {
                for (i, (a, b)) in ours.iter().zip(expected).enumerate() {
                    let diff = (a - b).abs() as f64;
                    worst_f32 = worst_f32.max(diff / (1e-6 + 1e-5 * b.abs() as f64));
                    if diff > 1e-6 + 1e-5 * b.abs() as f64 {
                        failures.push(format!("{name}[{i}]: lamarck {a} vs mergekit {b}"));
                        break;
                    }
                }
            }
        }
    }
    eprintln!(
        "{checked} cases; worst f32 error / tolerance = {worst_f32:.3}; bf16 elements beyond 2 ulps: {}/{}",
        bf16_off.0, bf16_off.1
    );
    assert!(checked >= 150, "only {checked} deterministic cases");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- Stochastic methods: statistics against mergekit's masks ---------------------------

const OUR_SEEDS: [u64; 4] = [11, 12, 13, 14];

fn case<'a>(g: &'a Golden, name: &str) -> &'a Value {
    g.cases
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no golden case {name}"))
}

/// mergekit's outputs (one per torch seed) and lamarck's (one per seed in [`OUR_SEEDS`]).
fn outputs(g: &Golden, c: &Value) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let theirs = c["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| g.tensors[o.as_str().unwrap()].clone())
        .collect();
    let ours = OUR_SEEDS.iter().map(|&s| run(g, c, s)).collect();
    (theirs, ours)
}

fn inputs<'a>(g: &'a Golden, c: &Value) -> (&'a [f32], &'a [f32]) {
    let set = c["input_set"].as_str().unwrap();
    (
        &g.tensors[&format!("inputs/{set}.base")],
        &g.tensors[&format!("inputs/{set}.m0")],
    )
}

/// Per element of a one-model, weight-1, no-rescale case: Some(kept) where keeping would
/// be visible in the output, None where it would not (δ rounds away).
fn kept(c: &Value, base: &[f32], model: &[f32], out: &[f32]) -> Vec<Option<bool>> {
    let dt = dtype(c);
    base.iter()
        .zip(model)
        .zip(out)
        .map(|((&b, &x), &o)| {
            let visible = dt.round(b + dt.round(x - b)) != b;
            visible.then_some(o != b)
        })
        .collect()
}

fn fraction(flags: &[Option<bool>]) -> (f64, f64) {
    let known: Vec<bool> = flags.iter().flatten().copied().collect();
    let k = known.iter().filter(|&&b| b).count() as f64;
    (k / known.len() as f64, known.len() as f64)
}

/// |observed − p| within 5 binomial standard deviations of `count` draws.
fn assert_binomial(label: &str, observed: f64, p: f64, count: f64) {
    let sd = (p * (1.0 - p) / count).sqrt();
    assert!(
        (observed - p).abs() < 5.0 * sd,
        "{label}: keep fraction {observed:.4}, expected {p:.4} ± {:.4}",
        5.0 * sd
    );
}

#[test]
fn dare_keep_fraction_matches_mergekit_within_binomial_bounds() {
    let g = load();
    for dt in ["float32", "bfloat16"] {
        let c = case(&g, &format!("dare_linear_norescale_{dt}"));
        let (base, model) = inputs(&g, c);
        let (theirs, ours) = outputs(&g, c);
        for (who, outs) in [("mergekit", &theirs), ("lamarck", &ours)] {
            for (i, out) in outs.iter().enumerate() {
                let (f, n) = fraction(&kept(c, base, model, out));
                assert_binomial(&format!("{dt} {who} #{i}"), f, 0.3, n);
                eprintln!("DARE {dt} {who} #{i}: keep fraction {f:.4} of {n}");
            }
        }
    }
}

#[test]
fn della_keep_rate_ramps_by_rank_quartile_like_mergekit() {
    let g = load();
    for dt in ["float32", "bfloat16"] {
        let c = case(&g, &format!("della_linear_norescale_{dt}"));
        let (base, model) = inputs(&g, c);
        let cols = c["shape"][1].as_u64().unwrap() as usize;
        let (density, epsilon) = (0.4, 0.2);
        let delta: Vec<f32> = model
            .iter()
            .zip(base)
            .map(|(x, b)| dtype(c).round(x - b))
            .collect();
        // Rank quartile of every element within its row (|δ| ascending).
        let mut quartile = vec![0usize; delta.len()];
        for (r, row) in delta.chunks(cols).enumerate() {
            let mut order: Vec<usize> = (0..cols).collect();
            order.sort_by(|&a, &b| row[a].abs().total_cmp(&row[b].abs()).then(a.cmp(&b)));
            for (rank, &j) in order.iter().enumerate() {
                quartile[r * cols + j] = rank * 4 / cols;
            }
        }
        let expected: Vec<f64> = (0..4)
            .map(|q| {
                let ranks: Vec<f64> = (0..cols)
                    .filter(|r| r * 4 / cols == q)
                    .map(|r| r as f64 / (cols - 1) as f64)
                    .collect();
                density - epsilon + 2.0 * epsilon * ranks.iter().sum::<f64>() / ranks.len() as f64
            })
            .collect();
        let (theirs, ours) = outputs(&g, c);
        for (who, outs) in [("mergekit", &theirs), ("lamarck", &ours)] {
            let mut hits = [(0f64, 0f64); 4];
            for out in outs.iter() {
                for (i, k) in kept(c, base, model, out).iter().enumerate() {
                    if let Some(k) = k {
                        hits[quartile[i]].0 += f64::from(u8::from(*k));
                        hits[quartile[i]].1 += 1.0;
                    }
                }
            }
            let rates: Vec<f64> = hits.iter().map(|(k, n)| k / n).collect();
            eprintln!(
                "DELLA {dt} {who}: keep rate by rank quartile {rates:.3?}, expected {expected:.3?}"
            );
            for q in 0..4 {
                assert_binomial(
                    &format!("{dt} {who} quartile {q}"),
                    rates[q],
                    expected[q],
                    hits[q].1,
                );
            }
        }
    }
}

#[test]
fn rescale_preserves_the_l1_norm_like_mergekit() {
    let g = load();
    for name in ["dare_linear_rescale", "della_linear_rescale"] {
        for dt in ["float32", "bfloat16"] {
            let c = case(&g, &format!("{name}_{dt}"));
            let (base, model) = inputs(&g, c);
            let l1 = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs() as f64)
                    .sum::<f64>()
            };
            let want = l1(model, base);
            let tol = if dt == "float32" { 1e-5 } else { 2e-2 };
            let (theirs, ours) = outputs(&g, c);
            for (who, outs) in [("mergekit", &theirs), ("lamarck", &ours)] {
                for out in outs {
                    let ratio = l1(out, base) / want;
                    assert!(
                        (ratio - 1.0).abs() < tol,
                        "{name} {dt} {who}: L1 ratio {ratio}"
                    );
                }
            }
        }
    }
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (
        mean,
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

#[test]
fn merged_delta_mean_and_spread_agree_with_mergekit() {
    let g = load();
    for name in ["dare_ties", "della"] {
        for dt in ["float32", "bfloat16"] {
            let c = case(&g, &format!("{name}_{dt}"));
            let (base, _) = inputs(&g, c);
            let (theirs, ours) = outputs(&g, c);
            let stats = |outs: &[Vec<f32>]| {
                let all: Vec<f64> = outs
                    .iter()
                    .flat_map(|o| o.iter().zip(base).map(|(x, b)| (x - b) as f64))
                    .collect();
                mean_sd(&all)
            };
            let ((m1, s1), (m2, s2)) = (stats(&theirs), stats(&ours));
            eprintln!("{name} {dt}: merged delta mean/sd mergekit {m1:.5}/{s1:.5}, lamarck {m2:.5}/{s2:.5}");
            let n = base.len() as f64;
            assert!(
                (s2 / s1 - 1.0).abs() < 0.06,
                "{name} {dt}: spread {s2} vs {s1}"
            );
            assert!(
                (m2 - m1).abs() < 5.0 * s1 / n.sqrt(),
                "{name} {dt}: mean {m2} vs {m1}"
            );
        }
    }
}

#[test]
fn della_with_epsilon_zero_is_dare_with_the_same_mask() {
    let g = load();
    for dt in ["float32", "bfloat16"] {
        let della = case(&g, &format!("della_linear_eps0_{dt}"));
        let dare = case(&g, &format!("dare_linear_norescale_{dt}"));
        for seed in OUR_SEEDS {
            let mut a = run(&g, della, seed);
            // Same inputs and density; the RNG key includes the case name, so align it.
            let mut d = dare.clone();
            d["name"] = della["name"].clone();
            let b = run(&g, &d, seed);
            assert_eq!(a, b, "{dt} seed {seed}");
            a.clear();
        }
        // mergekit's ε = 0 masks have DARE's keep fraction too.
        let (base, model) = inputs(&g, della);
        let (theirs, _) = outputs(&g, della);
        for out in &theirs {
            let (f, n) = fraction(&kept(della, base, model, out));
            assert_binomial(&format!("{dt} mergekit della ε=0"), f, 0.3, n);
        }
    }
}

/// A synthetic job big enough to span several reduction chunks.
fn big_job_output(method: &str, seed: u64, threads: usize, compat: Compat) -> Vec<f32> {
    let n = 3 * lamarck::merge::ops::CHUNK + 123;
    let shape = [n / 512, 512];
    let n = shape[0] * shape[1];
    let base: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3)
        .collect();
    let a: Vec<f32> = (0..n)
        .map(|i| base[i] + ((i * 13 % 29) as f32 - 14.0) * 1e-3)
        .collect();
    let b: Vec<f32> = (0..n)
        .map(|i| base[i] - ((i * 7 % 31) as f32 - 15.0) * 1e-3)
        .collect();
    let pa: Params = [("weight", 0.6), ("density", 0.4), ("epsilon", 0.1)]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let pb: Params = [("weight", 0.5), ("density", 0.7), ("epsilon", 0.2)]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let global = Params::new();
    let job = TensorJob {
        name: "model.layers.0.mlp.down_proj.weight",
        shape: &shape,
        base: Some(&base),
        models: vec![
            ModelTensor {
                data: &a,
                params: &pa,
            },
            ModelTensor {
                data: &b,
                params: &pb,
            },
        ],
        params: &global,
        compute_dtype: DType::BF16,
        rng: RngKey::new(seed, "stage-1", "model.layers.0.mlp.down_proj.weight"),
        compat,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| merge_tensor(lookup(method).unwrap(), &job).unwrap())
}

#[test]
fn random_methods_are_bit_identical_across_threads_and_runs_and_change_with_the_seed() {
    for method in ["dare_ties", "dare_linear", "della", "della_linear"] {
        for compat in [Compat::Mergekit, Compat::Mergekit2024] {
            let one = big_job_output(method, 7, 1, compat);
            let four = big_job_output(method, 7, 4, compat);
            let again = big_job_output(method, 7, 2, compat);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&one),
                bits(&four),
                "{method} {compat:?}: 1 vs 4 threads"
            );
            assert_eq!(bits(&one), bits(&again), "{method} {compat:?}: rerun");
            let other = big_job_output(method, 8, 1, compat);
            let differing = one.iter().zip(&other).filter(|(a, b)| a != b).count();
            assert!(
                differing > one.len() / 10,
                "{method}: seed 8 changed only {differing} elements"
            );
        }
    }
}

#[test]
fn dare_2024_rescales_kept_values_by_one_over_density() {
    let g = load();
    let c = case(&g, "dare_linear_rescale_float32");
    let (base, model) = inputs(&g, c);
    let shape = [base.len()];
    let pm: Params = [("weight".to_string(), 1.0), ("density".to_string(), 0.3)].into();
    let global = Params::new();
    let job = TensorJob {
        name: "t",
        shape: &shape,
        base: Some(base),
        models: vec![ModelTensor {
            data: model,
            params: &pm,
        }],
        params: &global,
        compute_dtype: DType::F32,
        rng: RngKey::new(3, "s", "t"),
        compat: Compat::Mergekit2024,
    };
    let out = merge_tensor(lookup("dare_linear").unwrap(), &job).unwrap();
    let mut kept = 0;
    for ((o, b), x) in out.iter().zip(base).zip(model) {
        if o != b {
            kept += 1;
            let want = b + ((x - b) as f64 / 0.3) as f32;
            assert!(
                (o - want).abs() <= 1e-6 + 1e-5 * want.abs(),
                "{o} vs {want}"
            );
        }
    }
    assert_binomial(
        "2024 DARE",
        kept as f64 / out.len() as f64,
        0.3,
        out.len() as f64,
    );
}

#[test]
fn torch_sort_order_is_replayed_exactly() {
    let g = load();
    for i in 0..4 {
        let values = &g.tensors[&format!("sort/{i}.values")];
        for (dir, descending) in [("desc", true), ("asc", false)] {
            let want: Vec<u32> = g.tensors[&format!("sort/{i}.{dir}")]
                .iter()
                .map(|&x| x as u32)
                .collect();
            let ours = lamarck::merge::ops::torch_sort::sort_indices(values, descending);
            assert_eq!(ours, want, "vector {i} ({} elements) {dir}", values.len());
        }
    }
}

/// Throughput on a 2048×2048 tensor with three bf16 models (run with `--ignored
/// --nocapture`; numbers depend on the machine and profile).
#[test]
#[ignore]
fn throughput_report() {
    let (rows, cols) = (2048, 2048);
    let n = rows * cols;
    let r = |i: usize, s: usize| DType::BF16.round((((i * s) % 1009) as f32 - 504.0) * 1e-4);
    let base: Vec<f32> = (0..n).map(|i| r(i, 7)).collect();
    let models: Vec<Vec<f32>> = (1..=3)
        .map(|m| {
            (0..n)
                .map(|i| DType::BF16.round(base[i] + r(i, 13 + m) * 0.1))
                .collect()
        })
        .collect();
    let pm: Params = [("weight", 0.5), ("density", 0.4), ("epsilon", 0.1)]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let global: Params = [("t".to_string(), 0.3)].into();
    let shape = [rows, cols];
    for method in [
        "linear",
        "slerp",
        "task_arithmetic",
        "ties",
        "breadcrumbs",
        "dare_ties",
        "della",
        "model_stock",
    ] {
        let k = match method {
            "slerp" => 1,
            _ => 3,
        };
        let job = TensorJob {
            name: "w",
            shape: &shape,
            base: (method != "linear").then_some(base.as_slice()),
            models: models[..k]
                .iter()
                .map(|d| ModelTensor {
                    data: d,
                    params: &pm,
                })
                .collect(),
            params: &global,
            compute_dtype: DType::BF16,
            rng: RngKey::new(1, "s", "w"),
            compat: Compat::Mergekit,
        };
        let start = std::time::Instant::now();
        merge_tensor(lookup(method).unwrap(), &job).unwrap();
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{method:16} {:7.1} ms  {:6.1} M elements/s",
            secs * 1e3,
            n as f64 / secs / 1e6
        );
    }
}
