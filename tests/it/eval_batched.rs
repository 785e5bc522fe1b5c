//! Prefix-shared multiple choice and batched greedy generation give the numbers and tokens
//! of the one-sequence-at-a-time paths: whatever the batch size, the thread count, or what
//! else shares the batch; in f32 and (within a stated tolerance) in bf16.
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device};
use lamarck::eval::requests::{
    encode_pair, score_request, score_requests, score_requests_shared, Loglikelihood,
};
use lamarck::eval::{Qwen2Lm, ScoreRequest, TextTokenizer};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn golden() -> Value {
    let text = std::fs::read_to_string(fixtures().join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Every golden context with every golden continuation (groups that share a context), and
/// each context after a common few-shot-like block (groups that share a prefix).
fn shared_requests(name: &str, max_length: usize) -> Vec<ScoreRequest> {
    let g = golden();
    let dir = fixtures().join(name);
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    let reqs = g["models"][name]["requests"].as_array().unwrap();
    let shots = "Question: 2 + 2 = ?\nAnswer: 4\n\nQuestion: 3 + 5 = ?\nAnswer: 8\n\n";
    let mut out = Vec::new();
    for prefix in ["", shots] {
        for c in reqs {
            for k in reqs {
                let ctx = format!("{prefix}{}", c["context"].as_str().unwrap());
                let (a, b) = encode_pair(&tok, &ctx, k["continuation"].as_str().unwrap()).unwrap();
                out.push(score_request(&a, &b, tok.eos_id, max_length).unwrap());
            }
        }
    }
    out
}

fn assert_close(a: &[Loglikelihood], b: &[Loglikelihood], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(
            x.token_logprobs.len(),
            y.token_logprobs.len(),
            "{what}: request {i}"
        );
        for (p, q) in x.token_logprobs.iter().zip(&y.token_logprobs) {
            assert!(
                (*p as f64 - *q as f64).abs() <= tol,
                "{what}: request {i}: token log-probability {p} vs {q}"
            );
        }
        assert_eq!(x.is_greedy, y.is_greedy, "{what}: request {i}");
    }
}

#[test]
fn prefix_shared_scores_equal_the_full_sequence_path() {
    for name in ["tiny-tied", "tiny-sharded"] {
        let mut lm = Qwen2Lm::from_dir(&fixtures().join(name), DType::F32, &Device::Cpu).unwrap();
        let reqs = shared_requests(name, lm.max_length());
        let full = score_requests(&mut lm, &reqs, 1, &mut |_| {}).unwrap();
        let mut done = 0;
        let shared = score_requests_shared(&mut lm, &reqs, &mut |n| done += n).unwrap();
        assert_eq!(done, reqs.len());
        // f32 rounding only: the cached prefix runs as separate matmuls, so the sums are
        // grouped differently, by how much depends on the gemm kernels the CPU gets (at
        // most 1.1e-5 on an AVX-512 Xeon, under 1e-5 on AVX2 machines).
        assert_close(&shared, &full, 5e-5, name);
        // Order of requests (which prefix is cached when) does not change the numbers
        // beyond rounding either.
        let reversed: Vec<ScoreRequest> = reqs.iter().rev().cloned().collect();
        let mut back = score_requests_shared(&mut lm, &reversed, &mut |_| {}).unwrap();
        back.reverse();
        assert_close(&back, &full, 5e-5, name);
    }
}

#[test]
fn prefix_shared_bf16_stays_within_tolerance_of_f32() {
    let dir = fixtures().join("tiny-tied");
    let mut f32_lm = Qwen2Lm::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let mut bf16_lm = Qwen2Lm::from_dir(&dir, DType::BF16, &Device::Cpu).unwrap();
    let reqs = shared_requests("tiny-tied", f32_lm.max_length());
    let a = score_requests_shared(&mut f32_lm, &reqs, &mut |_| {}).unwrap();
    let b = score_requests_shared(&mut bf16_lm, &reqs, &mut |_| {}).unwrap();
    let full = score_requests(&mut bf16_lm, &reqs, 1, &mut |_| {}).unwrap();
    // The README's bf16 tolerances: prefix sharing changes bf16 numbers by rounding only
    // (0.01 per token), and bf16 stays within 0.15 per token of f32 (8 bits of mantissa in
    // every matmul; the worst case on these requests is ~0.11).
    for ((x, y), z) in a.iter().zip(&b).zip(&full) {
        assert!(y.logprob.is_finite());
        let n = x.token_logprobs.len() as f64;
        assert!(
            (y.logprob - z.logprob).abs() <= 0.01 * n,
            "bf16 shared {} vs bf16 full {}",
            y.logprob,
            z.logprob
        );
        assert!(
            (x.logprob - y.logprob).abs() < 0.15 * n,
            "bf16 {} vs f32 {}",
            y.logprob,
            x.logprob
        );
    }
}

/// Deterministic prompts of 1..=40 tokens below `vocab`.
fn prompts(n: usize, vocab: u32) -> Vec<Vec<u32>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = 1 + (next() % 40) as usize;
            (0..len).map(|_| (next() % vocab as u64) as u32).collect()
        })
        .collect()
}

#[test]
fn batched_generation_gives_each_prompt_its_output_alone() {
    let g = golden();
    for (name, dtype) in [
        ("tiny-tied", DType::F32),
        ("tiny-sharded", DType::F32),
        ("tiny-tied", DType::BF16),
    ] {
        let mut lm = Qwen2Lm::from_dir(&fixtures().join(name), dtype, &Device::Cpu).unwrap();
        let gens = g["models"][name]["generations"].as_array().unwrap();
        let mut all: Vec<Vec<u32>> = gens.iter().map(|x| ids(&x["prompt_ids"])).collect();
        all.extend(prompts(14, 360));
        let alone: Vec<Vec<u32>> = all
            .iter()
            .map(|p| lm.generate_greedy(p, 12, &mut |_| false).unwrap())
            .collect();
        if dtype == DType::F32 {
            for (x, got) in gens.iter().zip(&alone) {
                assert_eq!(
                    got,
                    &ids(&x["generated_ids"]),
                    "{name}: transformers' tokens"
                );
            }
        }
        for bs in [2, 5, all.len()] {
            for (c, chunk) in all.chunks(bs).enumerate() {
                let got = lm
                    .generate_greedy_batch(chunk, 12, &mut |_, _| false)
                    .unwrap();
                for (i, row) in got.iter().enumerate() {
                    assert_eq!(
                        row,
                        &alone[c * bs + i],
                        "{name} {dtype:?}: batch {bs}, prompt {}",
                        c * bs + i
                    );
                }
            }
        }
    }
}

#[test]
fn a_row_that_stops_leaves_the_others_unchanged() {
    let mut lm =
        Qwen2Lm::from_dir(&fixtures().join("tiny-tied"), DType::F32, &Device::Cpu).unwrap();
    let all = prompts(6, 360);
    let alone: Vec<Vec<u32>> = all
        .iter()
        .map(|p| lm.generate_greedy(p, 10, &mut |_| false).unwrap())
        .collect();
    // Rows 1 and 4 stop after 2 and 5 tokens; the stopping token is kept.
    let mut calls = vec![0usize; all.len()];
    let got = lm
        .generate_greedy_batch(&all, 10, &mut |row, gen| {
            calls[row] += 1;
            assert_eq!(gen.len(), calls[row], "stop sees the tokens so far");
            (row == 1 && gen.len() == 2) || (row == 4 && gen.len() == 5)
        })
        .unwrap();
    for (i, row) in got.iter().enumerate() {
        let want = match i {
            1 => &alone[i][..2],
            4 => &alone[i][..5],
            _ => &alone[i][..],
        };
        assert_eq!(row.as_slice(), want, "prompt {i}");
    }
}

fn eval_items(task: &Path, batch_size: usize, threads: usize, dtype: &str) -> Vec<Value> {
    let tmp = tempfile::tempdir().unwrap();
    let items = tmp.path().join("items.jsonl");
    let res = Command::new(env!("CARGO_BIN_EXE_lamarck"))
        .arg("eval")
        .arg(fixtures().join("tiny-tied"))
        .arg("--tasks")
        .arg(task)
        .args(["--batch-size", &batch_size.to_string(), "--dtype", dtype])
        .arg("--items")
        .arg(&items)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    std::fs::read_to_string(&items)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn results_do_not_depend_on_batch_size_or_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let docs: String = prompts(23, 26)
        .iter()
        .map(|p| {
            let text: String = p.iter().map(|&t| char::from(b'a' + t as u8)).collect();
            serde_json::json!({"p": format!("Spell {text}:"), "a": text}).to_string() + "\n"
        })
        .collect();
    std::fs::write(tmp.path().join("gen.jsonl"), docs).unwrap();
    let gen_task = tmp.path().join("gen.yaml");
    std::fs::write(
        &gen_task,
        "task: gen\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: gen.jsonl\n\
         test_split: test\noutput_type: generate_until\ndoc_to_text: \"{{p}}\"\n\
         doc_to_target: a\ngeneration_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 8\n\
         metric_list:\n  - metric: exact_match\n",
    )
    .unwrap();
    let mc_task = fixtures().join("tasks/mc.yaml");
    for dtype in ["f32", "bf16"] {
        let mc = eval_items(&mc_task, 1, 1, dtype);
        let gen = eval_items(&gen_task, 1, 1, dtype);
        assert_eq!(mc.len(), 4);
        assert_eq!(gen.len(), 23);
        for (bs, threads) in [(8, 1), (3, 2), (64, 2)] {
            let other = eval_items(&mc_task, bs, threads, dtype);
            for (a, b) in mc.iter().zip(&other) {
                assert_eq!(
                    a["loglikelihoods"], b["loglikelihoods"],
                    "{dtype}: batch {bs}, {threads} threads"
                );
            }
            let other = eval_items(&gen_task, bs, threads, dtype);
            for (a, b) in gen.iter().zip(&other) {
                assert_eq!(
                    a["generated"], b["generated"],
                    "{dtype}: batch {bs}, {threads} threads"
                );
            }
        }
    }
}
