//! Per-token log-probabilities and greedy generations against transformers' goldens
//! (tests/fixtures/eval/golden.json, made by tools/eval/make_fixture.py).
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use lamarck::eval::requests::{encode_pair, loglikelihoods, score_request, score_requests};
use lamarck::eval::{Qwen2Lm, TextTokenizer};
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

fn pairs(model: &Value) -> Vec<(String, String)> {
    model["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["context"].as_str().unwrap().to_string(),
                r["continuation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn context_continuation_split_matches_lm_eval() {
    let g = golden();
    let tok = TextTokenizer::from_dir(&fixtures().join("tiny-tied")).unwrap();
    assert_eq!(tok.eos_id, Some(g["eos_token_id"].as_u64().unwrap() as u32));
    for r in g["models"]["tiny-tied"]["requests"].as_array().unwrap() {
        let (ctx, cont) = encode_pair(
            &tok,
            r["context"].as_str().unwrap(),
            r["continuation"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(ctx, ids(&r["context_ids"]), "context of {r}");
        assert_eq!(cont, ids(&r["continuation_ids"]), "continuation of {r}");
    }
}

#[test]
fn token_logprobs_match_transformers_f32() {
    let g = golden();
    for name in ["tiny-tied", "tiny-sharded"] {
        let dir = fixtures().join(name);
        let model = &g["models"][name];
        let mut lm = Qwen2Lm::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let got = loglikelihoods(&mut lm, &tok, &pairs(model), 1, &mut |_| {}).unwrap();
        for (r, s) in model["requests"].as_array().unwrap().iter().zip(&got) {
            let want: Vec<f64> = r["token_logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(s.token_logprobs.len(), want.len(), "{name}: {r}");
            for (a, b) in s.token_logprobs.iter().zip(&want) {
                assert!(
                    (*a as f64 - b).abs() < 1e-4,
                    "{name}: token logprob {a} vs {b}"
                );
            }
            let total = r["loglikelihood"].as_f64().unwrap();
            assert!(
                (s.logprob - total).abs() < 1e-4,
                "{name}: sum {} vs {total}",
                s.logprob
            );
            assert_eq!(s.is_greedy, r["is_greedy"].as_bool().unwrap());
        }
    }
}

#[test]
fn batched_scores_equal_unbatched() {
    let g = golden();
    let dir = fixtures().join("tiny-tied");
    let mut lm = Qwen2Lm::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    let p = pairs(&g["models"]["tiny-tied"]);
    let one = loglikelihoods(&mut lm, &tok, &p, 1, &mut |_| {}).unwrap();
    for bs in [2, 3, 64] {
        let many = loglikelihoods(&mut lm, &tok, &p, bs, &mut |_| {}).unwrap();
        assert_eq!(one, many, "batch size {bs} changed the numbers");
    }
}

#[test]
fn bf16_runs_close_to_transformers_bf16() {
    let g = golden();
    let dir = fixtures().join("tiny-tied");
    let mut lm = Qwen2Lm::from_dir(&dir, DType::BF16, &Device::Cpu).unwrap();
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    let model = &g["models"]["tiny-tied"];
    let got = loglikelihoods(&mut lm, &tok, &pairs(model), 4, &mut |_| {}).unwrap();
    for (r, s) in model["requests"].as_array().unwrap().iter().zip(&got) {
        let n = r["token_logprobs"].as_array().unwrap().len() as f64;
        let f32_sum = r["loglikelihood"].as_f64().unwrap();
        let bf16_sum = r["loglikelihood_bf16"].as_f64().unwrap();
        // bf16 keeps 8 bits of mantissa: both runs land near the f32 value, not on it.
        assert!(s.logprob.is_finite());
        assert!(
            (s.logprob - f32_sum).abs() < 0.1 * n,
            "{} vs f32 {f32_sum}",
            s.logprob
        );
        assert!(
            (s.logprob - bf16_sum).abs() < 0.1 * n,
            "{} vs bf16 {bf16_sum}",
            s.logprob
        );
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    let g = golden();
    for name in ["tiny-tied", "tiny-sharded"] {
        let dir = fixtures().join(name);
        let mut lm = Qwen2Lm::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
        for gen in g["models"][name]["generations"].as_array().unwrap() {
            let prompt = ids(&gen["prompt_ids"]);
            let want = ids(&gen["generated_ids"]);
            let got = lm
                .generate_greedy(&prompt, want.len(), &mut |_| false)
                .unwrap();
            assert_eq!(got, want, "{name}: {}", gen["prompt"]);
        }
    }
}

#[test]
fn in_memory_tensors_give_the_same_scores_as_the_folder() {
    let dir = fixtures().join("tiny-sharded");
    let (_, cfg) = lamarck::eval::config::read_config(&dir).unwrap();
    let tensors = lamarck::eval::weights::load_dir_tensors(&dir, DType::F32, &Device::Cpu).unwrap();
    let mut from_mem = Qwen2Lm::from_tensors(tensors, &cfg, DType::F32, &Device::Cpu).unwrap();
    let mut from_dir = Qwen2Lm::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let req = score_request(&[5, 6, 7, 8], &[9, 10, 11], Some(0), 256).unwrap();
    let a = score_requests(&mut from_mem, std::slice::from_ref(&req), 1, &mut |_| {}).unwrap();
    let b = score_requests(&mut from_dir, &[req], 1, &mut |_| {}).unwrap();
    assert_eq!(a, b);
}

#[test]
fn long_inputs_are_truncated_on_the_left_like_lm_eval() {
    let ctx: Vec<u32> = (1..=10).collect();
    let req = score_request(&ctx, &[11, 12], Some(0), 6).unwrap();
    // (ctx + cont)[-(6 + 1):][:-1] = [6..=11]
    assert_eq!(req.input, vec![6, 7, 8, 9, 10, 11]);
    assert_eq!(req.targets, vec![11, 12]);
    let empty = score_request(&[], &[3, 4], Some(0), 6).unwrap();
    assert_eq!(empty.input, vec![0, 3]);
}
