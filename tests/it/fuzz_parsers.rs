//! Parsers never panic: the safetensors header reader, the recipe parser, the search-file
//! parser and the task-file parser are fed random and mutated inputs (byte flips,
//! truncations, splices, deletions, duplicated lines, inserted YAML tokens; random YAML
//! trees over each format's own keys; hostile safetensors headers). Each input must give
//! an error or a success: never a panic (the input that panics is printed, with the case
//! seed to replay it), never a hang (each call is timed), never an allocation sized by
//! untrusted input (a header length up to 2^64 − 1 is refused before any read).
//!
//! The inputs come from lamarck's SplitMix64, so a run is reproducible; `FUZZ_CASES=N`
//! runs N cases per property instead of the defaults (which keep the whole module at a
//! few seconds), `FUZZ_SEED=S` starts from another seed, e.g.
//! `FUZZ_CASES=100000 cargo test --release --test it fuzz_parsers::`.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use lamarck::eval::task::TaskSpec;
use lamarck::model::safetensors::{read_header, MAX_HEADER_BYTES};
use lamarck::model::splitmix::SplitMix64;
use lamarck::recipe::Recipe;
use lamarck::search::genes::Genome;
use lamarck::search::SearchSpec;
use serde_yaml_ng::Value;

use crate::support::repo;

/// The slowest any single parse may be (generous: the inputs are a few KB).
const SLOW: Duration = Duration::from_secs(5);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Run `check` on `default_cases` inputs made by `make` (or `FUZZ_CASES`); panics with
/// the case number, seed and input of the first failure.
fn fuzz(
    name: &str,
    default_cases: u64,
    make: impl Fn(&mut Gen) -> Vec<u8>,
    check: impl Fn(&[u8]) -> Result<(), String>,
) {
    let cases = env_u64("FUZZ_CASES").unwrap_or(default_cases);
    let base = env_u64("FUZZ_SEED").unwrap_or(0x1a3a_2c4b);
    for case in 0..cases {
        let seed = base ^ lamarck::model::splitmix::mix64(case.wrapping_add(name.len() as u64));
        let mut g = Gen(SplitMix64::new(seed));
        let input = make(&mut g);
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let took = start.elapsed();
        let shown = String::from_utf8_lossy(&input[..input.len().min(8192)]).into_owned();
        match outcome {
            Err(_) => panic!(
                "{name}: case {case} (FUZZ_SEED={base} seed {seed}) panicked on input {shown:?}"
            ),
            Ok(Err(e)) => panic!("{name}: case {case} (seed {seed}): {e}; input {shown:?}"),
            Ok(Ok(())) if took > SLOW => {
                panic!("{name}: case {case} (seed {seed}) took {took:?} on input {shown:?}")
            }
            Ok(Ok(())) => {}
        }
    }
}

/// Random choices from a SplitMix64 stream.
struct Gen(SplitMix64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        self.0.next_f64() < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

fn seeds(paths: &[&str]) -> Vec<Vec<u8>> {
    paths
        .iter()
        .map(|p| std::fs::read(repo().join(p)).unwrap_or_else(|e| panic!("{p}: {e}")))
        .collect()
}

// ---- mutations of valid files ----

const TOKENS: &[&str] = &[
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "\n  ",
    "\n    - ",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!str ",
    "!function ",
    "? ",
    "|\n",
    ">\n",
    "#",
    "---\n",
    "...\n",
    "~",
    "null",
    "true",
    "-1",
    "0",
    "1e400",
    "-0.0",
    ".nan",
    ".inf",
    "18446744073709551616",
    "4294967296",
    "1e-320",
    "[0, 0]",
    "[4, 2]",
    "[]",
    "{}",
    "<<: *a",
    "\t",
    "\u{feff}",
    "\0",
    "é",
];

const RECIPE_SEEDS: &[&str] = &[
    "tests/golden/pipeline/recipe.yaml",
    "tests/golden/e2e/multi_stage_f32/recipe.yaml",
    "tests/golden/e2e/della_bf16/recipe.yaml",
    "tests/golden/e2e/passthrough_f32/recipe.yaml",
    "tests/golden/e2e/slerp_f32/recipe.yaml",
    "tests/golden/vocab/outsider_slerp_f32/recipe.yaml",
    "searches/lamarck-v0.3/recipe.yaml",
    "zoo/merges/ties.yaml",
];

const RECIPE_KEYS: &[&str] = &[
    "merge_method",
    "base_model",
    "models",
    "model",
    "parameters",
    "slices",
    "sources",
    "layer_range",
    "name",
    "dtype",
    "out_dtype",
    "tokenizer_source",
    "tokenizer",
    "weight",
    "density",
    "epsilon",
    "lambda",
    "t",
    "filter",
    "value",
    "normalize",
    "int8_mask",
    "chat_template",
    "linear",
    "slerp",
    "ties",
    "della",
    "passthrough",
    "bfloat16",
    "float32",
    "base",
    "union",
];

const SEARCH_SEEDS: &[&str] = &["searches/lamarck-v0.3.yaml", "searches/zoo-lamarck.yaml"];

const SEARCH_KEYS: &[&str] = &[
    "recipe",
    "seed",
    "population",
    "budget",
    "candidates",
    "minutes",
    "genes",
    "name",
    "stage",
    "at",
    "range",
    "start",
    "objectives",
    "task",
    "metric",
    "weight",
    "limit",
    "split",
    "optimizer",
    "sigma",
    "cmaes",
    "random",
    "eval",
    "batch_size",
    "dtype",
    "device",
    "profile",
    "merge_method",
    "models",
    "model",
    "parameters",
    "slices",
    "sources",
    "layer_range",
    "base_model",
    "density",
    "models[0].parameters.weight",
    "parameters.t[1]",
    "slices[*].parameters.t[0]",
    "linear",
    "slerp",
];

const TASK_SEEDS: &[&str] = &[
    "tests/fixtures/eval/tasks/mc.yaml",
    "evals/tinybenchmarks/tinyArc.yaml",
    "evals/tinybenchmarks/tinyGSM8k.yaml",
    "evals/tinybenchmarks/tinyMMLU.yaml",
    "evals/examples/arithmetic.yaml",
    "evals/zoo/sort.yaml",
];

const TASK_KEYS: &[&str] = &[
    "task",
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "data_files",
    "test_split",
    "validation_split",
    "training_split",
    "fewshot_split",
    "description",
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "target_delimiter",
    "fewshot_delimiter",
    "num_fewshot",
    "output_type",
    "generation_kwargs",
    "until",
    "max_gen_toks",
    "do_sample",
    "temperature",
    "metric_list",
    "metric",
    "aggregation",
    "higher_is_better",
    "ignore_case",
    "ignore_punctuation",
    "regexes_to_ignore",
    "filter_list",
    "name",
    "filter",
    "function",
    "regex_pattern",
    "group_select",
    "fallback",
    "fewshot_config",
    "sampler",
    "first_n",
    "multiple_choice",
    "generate_until",
    "acc",
    "acc_norm",
    "exact_match",
    "regex",
    "take_first",
];

const INLINE_SEARCH: &str = "recipe:\n  - name: a\n    merge_method: linear\n    models:\n      - {model: x, parameters: {weight: 1}}\n      - {model: y, parameters: {weight: [0.5, 1.0]}}\n  - merge_method: slerp\n    base_model: x\n    parameters: {t: [0.2, 0.3]}\n    models: [{model: x}, {model: a}]\nbudget: {candidates: 5, minutes: 3}\npopulation: 4\noptimizer: {name: cmaes, sigma: 0.3}\ngenes:\n  - {name: w, stage: a, at: 'models[0].parameters.weight', range: [0, 2], start: 1}\n  - {name: t, stage: 1, at: ['parameters.t[1]', 'parameters.t[0]'], range: [0, 1]}\nobjectives:\n  - {task: t.yaml, metric: acc, weight: 2, limit: 10}\n";

/// One to five mutations of one seed: bit flips, truncation, inserted tokens, deletions,
/// splices from another seed, duplicated lines.
fn mutate(g: &mut Gen, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = g.pick(seeds).clone();
    for _ in 0..1 + g.below(5) {
        let n = b.len();
        let p = g.below(n + 1);
        match g.below(6) {
            0 if n > 0 => b[p.min(n - 1)] ^= 1 << g.below(8),
            1 => b.truncate(p),
            2 => {
                let t = g.pick(TOKENS).as_bytes();
                b.splice(p..p, t.iter().copied());
            }
            3 => {
                let len = 1 + g.below(64);
                b.drain(p..(p + len).min(n));
            }
            4 => {
                let other = g.pick(seeds);
                let from = g.below(other.len());
                let len = 1 + g.below(200);
                let piece = other[from..(from + len).min(other.len())].to_vec();
                b.splice(p..p, piece);
            }
            _ => {
                let start = b[..p]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |i| i + 1);
                let end = b[p..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(n, |i| p + i + 1);
                let line = b[start..end].to_vec();
                b.splice(end..end, line);
            }
        }
    }
    b
}

// ---- random YAML trees over a format's keys ----

fn scalar(g: &mut Gen, keys: &[&str]) -> Value {
    match g.below(9) {
        0 => Value::Null,
        1 => Value::Bool(g.chance(0.5)),
        2 => Value::Number((g.u64() as i64).into()),
        3 => Value::Number(g.u64().into()),
        4 => Value::Number(
            (*g.pick(&[f64::NAN, f64::INFINITY, -0.0, 1e308, -1.0, 0.5, 1.5, 2.0])).into(),
        ),
        5 => Value::Number((g.0.next_f64() * 4.0 - 2.0).into()),
        6 => Value::Number((g.below(6) as u64).into()),
        7 => Value::String(g.pick(TOKENS).to_string()),
        _ => Value::String(g.pick(keys).to_string()),
    }
}

/// A random tree whose mapping keys are mostly `keys` (the format's own) and whose string
/// values often are too (method names, paths, metric names).
fn tree(g: &mut Gen, keys: &[&str], depth: usize) -> Value {
    if depth == 0 || g.chance(0.3) {
        return scalar(g, keys);
    }
    if g.chance(0.35) {
        Value::Sequence((0..g.below(5)).map(|_| tree(g, keys, depth - 1)).collect())
    } else {
        let mut m = serde_yaml_ng::Mapping::new();
        for _ in 0..g.below(7) {
            let k = if g.chance(0.9) {
                g.pick(keys).to_string()
            } else {
                format!("x{}", g.below(100))
            };
            m.insert(Value::String(k), tree(g, keys, depth - 1));
        }
        Value::Mapping(m)
    }
}

fn yaml(v: &Value) -> Vec<u8> {
    serde_yaml_ng::to_string(v).unwrap_or_default().into_bytes()
}

// ---- the parsers, each behind one function ----

/// Parse a recipe and do what `lamarck merge` does before it needs models.
fn recipe(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(r) = Recipe::parse(&text, Path::new("fuzz.yaml"), None) {
        if let Ok(target) = r.output_stage(None) {
            let _ = r.build_order(target);
        }
        for i in 0..r.stages.len() {
            let _ = r.dependencies(i);
        }
    }
    Ok(())
}

/// Parse a search file and check its genes against its recipe, as `evolve` does first.
fn search(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(spec) = SearchSpec::parse(&text, Path::new("/fuzz/search.yaml")) {
        if let Ok(genome) = Genome::new(&spec.genes, &spec.recipe_text) {
            let mid = genome.from_unit(&vec![0.5; genome.len()]);
            let _ = genome.substitute(&mid);
        }
    }
    Ok(())
}

fn task(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(spec) = TaskSpec::from_yaml(&text, Path::new("/fuzz/task.yaml")) {
        let _ = spec.eval_split(None);
        let _ = spec.fewshot_source();
    }
    Ok(())
}

#[test]
fn recipe_parser_never_panics_on_mutated_recipes() {
    let seeds = seeds(RECIPE_SEEDS);
    fuzz("mutated recipes", 1500, |g| mutate(g, &seeds), recipe);
}

#[test]
fn recipe_parser_never_panics_on_random_trees() {
    let make = |g: &mut Gen| {
        let docs: Vec<String> = (0..1 + g.below(3))
            .map(|_| String::from_utf8(yaml(&tree(g, RECIPE_KEYS, 5))).unwrap())
            .collect();
        docs.join("---\n").into_bytes()
    };
    fuzz("random recipes", 1000, make, recipe);
}

#[test]
fn search_parser_never_panics_on_mutated_search_files() {
    let mut seeds = seeds(SEARCH_SEEDS);
    // An inline-recipe search (every gene form: list of paths, stage by index, start).
    seeds.push(INLINE_SEARCH.as_bytes().to_vec());
    fuzz("mutated search files", 1500, |g| mutate(g, &seeds), search);
}

#[test]
fn search_parser_never_panics_on_random_trees() {
    fuzz(
        "random search files",
        1000,
        |g| yaml(&tree(g, SEARCH_KEYS, 5)),
        search,
    );
}

#[test]
fn task_parser_never_panics_on_mutated_task_files() {
    let seeds = seeds(TASK_SEEDS);
    fuzz("mutated task files", 1500, |g| mutate(g, &seeds), task);
}

#[test]
fn task_parser_never_panics_on_random_trees() {
    fuzz(
        "random task files",
        1000,
        |g| yaml(&tree(g, TASK_KEYS, 5)),
        task,
    );
}

// ---- safetensors headers ----

/// A valid safetensors file of one to three small BF16 tensors, then their data.
fn valid_safetensors(g: &mut Gen) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0;
    for i in 0..1 + g.below(3) {
        let shape: Vec<usize> = (0..g.below(3)).map(|_| g.below(5)).collect();
        let len = shape.iter().product::<usize>() * 2;
        header.insert(
            format!("t{i}"),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let json = serde_json::to_string(&header).unwrap();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    bytes.resize(bytes.len() + offset, 0x3f);
    bytes
}

/// JSON numbers a hostile header might hold.
fn hostile_number(g: &mut Gen) -> serde_json::Value {
    match g.below(6) {
        0 | 1 => serde_json::json!(g.below(64)),
        2 => serde_json::json!(*g.pick(&[
            u64::MAX,
            u64::MAX - 1,
            1u64 << 60,
            1u64 << 32,
            i64::MAX as u64
        ])),
        3 => serde_json::json!(g.u64()),
        4 => serde_json::json!(-1),
        _ => g
            .pick(&[
                serde_json::json!(1.5),
                serde_json::json!("8"),
                serde_json::Value::Null,
            ])
            .clone(),
    }
}

/// A header of hostile entries (any dtype string, shapes and offsets of hostile numbers),
/// then up to 255 data bytes.
fn hostile_header(g: &mut Gen) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    for i in 0..g.below(4) {
        let dtype = *g.pick(&["F32", "F16", "BF16", "I8", "F8_E4M3", "", "bf16"]);
        let mut shape: Vec<_> = (0..g.below(4)).map(|_| hostile_number(g)).collect();
        let mut offsets: Vec<_> = (0..if g.chance(0.8) { 2 } else { g.below(4) })
            .map(|_| hostile_number(g))
            .collect();
        if g.chance(0.3) {
            // An empty tensor (its byte count is right whatever the offset) at a hostile
            // offset: only the offset checks stand between it and the arithmetic.
            shape = vec![serde_json::json!(0)];
            let at = hostile_number(g);
            offsets = vec![at.clone(), at];
        }
        header.insert(
            format!("t{i}"),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": offsets}),
        );
    }
    let json = serde_json::to_string(&header).unwrap();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    bytes.resize(bytes.len() + g.below(256), 0);
    bytes
}

/// Read `bytes` as a safetensors file, with and without requiring the data.
fn header_of(file: &Path) -> impl Fn(&[u8]) -> Result<(), String> + '_ {
    move |bytes| {
        std::fs::write(file, bytes).unwrap();
        let _ = read_header(file, true);
        let _ = read_header(file, false);
        Ok(())
    }
}

#[test]
fn safetensors_header_reader_never_panics_on_mutated_files() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model.safetensors");
    let make = |g: &mut Gen| {
        let valid = [valid_safetensors(g)];
        mutate(g, &valid)
    };
    fuzz("mutated safetensors", 1500, make, header_of(&file));
}

#[test]
fn safetensors_header_reader_never_panics_on_hostile_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model.safetensors");
    fuzz(
        "hostile safetensors headers",
        1500,
        hostile_header,
        header_of(&file),
    );
}

/// A header length beyond the limit (up to 2^64 − 1) is refused from the 8 length bytes
/// alone, before anything of that size is allocated or read; so is one longer than the
/// file.
#[test]
fn safetensors_header_length_is_bounded_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model.safetensors");
    let make = |g: &mut Gen| {
        let len = match g.below(4) {
            0 => *g.pick(&[1u64 << 60, u64::MAX, MAX_HEADER_BYTES + 1, MAX_HEADER_BYTES]),
            1 => 17 + g.u64() % (MAX_HEADER_BYTES - 17),
            _ => g.u64().max(MAX_HEADER_BYTES + 1),
        };
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{\"a\": 1}        ");
        bytes
    };
    let check = |bytes: &[u8]| {
        std::fs::write(&file, bytes).unwrap();
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let err = match read_header(&file, true) {
            Ok(_) => return Err(format!("header length {len} accepted")),
            Err(e) => e.to_string(),
        };
        let why = if len > MAX_HEADER_BYTES {
            "exceeds the"
        } else {
            "truncated"
        };
        if !err.contains(why) || !err.contains("model.safetensors") {
            return Err(format!("header length {len}: {err}"));
        }
        Ok(())
    };
    fuzz("header lengths", 500, make, check);
}

/// Regression (found by the hostile-header property): a header-only read of a zero-length
/// tensor at offset 2^64 − 2 overflowed `data_start + begin`.
#[test]
fn safetensors_offsets_near_u64_max_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model.safetensors");
    let big = u64::MAX - 1;
    let json = format!(
        "{{\"t\": {{\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [{big}, {big}]}}}}"
    );
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    std::fs::write(&file, &bytes).unwrap();
    for data_present in [true, false] {
        let err = read_header(&file, data_present).unwrap_err().to_string();
        assert!(err.contains("model.safetensors"), "{err}");
    }
}
