//! tinyBenchmarks' gp-IRT estimate (lm-eval's `tinyBenchmarks/agg_functions.py`, which
//! calls `tinyBenchmarks.evaluate(items, bench)["gpirt"]`; Polo et al., "tinyBenchmarks:
//! evaluating LLMs with fewer examples", arXiv:2402.14992).
//!
//! From the 100 item scores `y` of a tiny task and the IRT model fitted on the full
//! benchmark (item parameters `A` (D × N), `B` (D × N)):
//! 1. ability θ = argmin −Σ_seen [y log(P+ε) + (1−y) log(1−P+ε)], P_j(θ) =
//!    σ(Σ_d clip(A_dj θ_d − B_dj, −30, 30)), ε = 1e-10 (tinyBenchmarks: scipy BFGS from 0;
//!    here damped Newton with a line search to a tighter optimum);
//! 2. with balance weights w (per sub-scenario, N_sce / (n_sub · n_i)) and λ = 100 / N_sce:
//!    p-IRT = λ · mean_seen(w·y) + (1−λ) · mean_unseen(w·P(θ));
//! 3. IRT = Σ examples_weights · y_seen; gp-IRT = λ* · IRT + (1−λ*) · p-IRT with the file's
//!    `optimal_lambdas`.
//!
//! The parameters come from tinyBenchmarks' `tinyBenchmarks.pkl` converted once to JSON
//! (`evals/README.md`); lamarck reads `$LAMARCK_TINYBENCHMARKS_IRT`, else
//! `tinyBenchmarks.json` beside the task file. Without it the aggregate is the plain mean
//! and a note says so.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use super::{AggContext, Aggregate, HookResult, Score};

/// Items per tiny task (`number_of_examples` in tinyBenchmarks).
const TINY_ITEMS: usize = 100;
/// The leaderboard scenarios estimated with the shared `lb` IRT model.
const LB_SCENARIOS: &[&str] = &["truthfulqa", "gsm8k", "winogrande", "arc", "hellaswag"];
/// Environment variable naming the converted IRT file.
pub const IRT_ENV: &str = "LAMARCK_TINYBENCHMARKS_IRT";
/// File name looked up beside the task file.
pub const IRT_FILE: &str = "tinyBenchmarks.json";

/// One benchmark entry of `tinyBenchmarks.pkl` (`lb`, `mmlu`, ...).
#[derive(Debug, Clone)]
pub struct IrtBench {
    pub seen_examples: Vec<usize>,
    /// Scenario → weight of each seen example of that scenario.
    pub examples_weights: BTreeMap<String, Vec<f64>>,
    /// D × N.
    pub a: Vec<Vec<f64>>,
    pub b: Vec<Vec<f64>>,
    pub optimal_lambdas: BTreeMap<String, f64>,
    /// Scenario → item positions, in the file's order (it decides each scenario's slice
    /// of `seen_examples`).
    pub scenarios_position: Vec<(String, Vec<usize>)>,
    /// Scenario → sub-scenario → item positions.
    pub subscenarios_position: BTreeMap<String, Vec<Vec<usize>>>,
}

/// The converted `tinyBenchmarks.pkl`: benchmark name → parameters.
#[derive(Debug, Clone)]
pub struct IrtFile {
    pub path: PathBuf,
    pub benches: BTreeMap<String, IrtBench>,
}

impl IrtFile {
    /// Parse the JSON form (`{"lb": {...}, "mmlu": {...}}`).
    pub fn from_json(path: &Path, text: &str) -> HookResult<IrtFile> {
        let bad = |m: String| format!("{}: {m}", path.display());
        let root: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let root = root
            .as_object()
            .ok_or_else(|| bad("expected an object of benchmark → parameters".into()))?;
        let mut benches = BTreeMap::new();
        for (name, v) in root {
            let b = parse_bench(v).map_err(|m| bad(format!("`{name}`: {m}")))?;
            benches.insert(name.clone(), b);
        }
        Ok(IrtFile {
            path: path.to_path_buf(),
            benches,
        })
    }

    /// The file for a task: `$LAMARCK_TINYBENCHMARKS_IRT`, else `tinyBenchmarks.json`
    /// beside `task_file`; `Ok(None)` when neither exists. Read once per path.
    pub fn find(task_file: &Path) -> HookResult<Option<Arc<IrtFile>>> {
        let path = match std::env::var_os(IRT_ENV) {
            Some(p) => {
                let p = PathBuf::from(p);
                if !p.is_file() {
                    return Err(format!(
                        "${IRT_ENV} names {}, which is not a file",
                        p.display()
                    ));
                }
                p
            }
            None => {
                let p = task_file.parent().unwrap_or(Path::new(".")).join(IRT_FILE);
                if !p.is_file() {
                    return Ok(None);
                }
                p
            }
        };
        static CACHE: OnceLock<Mutex<BTreeMap<PathBuf, Arc<IrtFile>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(f) = cache.lock().ok().and_then(|c| c.get(&path).cloned()) {
            return Ok(Some(f));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = Arc::new(IrtFile::from_json(&path, &text)?);
        if let Ok(mut c) = cache.lock() {
            c.insert(path, file.clone());
        }
        Ok(Some(file))
    }
}

fn parse_bench(v: &Value) -> HookResult<IrtBench> {
    let field = |k: &str| v.get(k).ok_or_else(|| format!("missing `{k}`"));
    let positions = |v: &Value, what: &str| -> HookResult<Vec<usize>> {
        v.as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|u| u as usize)).collect())
            .ok_or_else(|| format!("`{what}` is not a list of item positions"))
    };
    let floats = |v: &Value, what: &str| -> HookResult<Vec<f64>> {
        v.as_array()
            .and_then(|a| a.iter().map(Value::as_f64).collect())
            .ok_or_else(|| format!("`{what}` is not a list of numbers"))
    };
    let object = |v: &Value, what: &str| -> HookResult<serde_json::Map<String, Value>> {
        v.as_object()
            .cloned()
            .ok_or_else(|| format!("`{what}` is not an object"))
    };
    // A and B are (1, D, N) arrays in the pickle; accept (D, N) too.
    let matrix = |v: &Value, what: &str| -> HookResult<Vec<Vec<f64>>> {
        let mut v = v;
        if let Some([inner]) = v.as_array().map(Vec::as_slice) {
            if inner
                .as_array()
                .is_some_and(|r| r.first().is_some_and(Value::is_array))
            {
                v = inner;
            }
        }
        let rows = v
            .as_array()
            .ok_or_else(|| format!("`{what}` is not a (1, D, N) array"))?;
        rows.iter().map(|r| floats(r, what)).collect()
    };
    let seen_examples = positions(field("seen_examples")?, "seen_examples")?;
    let irt = field("irt_parameters")?;
    let a = matrix(irt.get("A").ok_or("missing `irt_parameters.A`")?, "A")?;
    let b = matrix(irt.get("B").ok_or("missing `irt_parameters.B`")?, "B")?;
    let n = a.first().map_or(0, Vec::len);
    if a.is_empty() || a.len() != b.len() || a.iter().chain(&b).any(|r| r.len() != n) {
        return Err("`irt_parameters.A` and `B` must both be D × N".into());
    }
    let mut examples_weights = BTreeMap::new();
    for (k, w) in object(field("examples_weights")?, "examples_weights")? {
        examples_weights.insert(k.clone(), floats(&w, &format!("examples_weights.{k}"))?);
    }
    let mut optimal_lambdas = BTreeMap::new();
    for (k, l) in object(field("optimal_lambdas")?, "optimal_lambdas")? {
        let l = l
            .as_f64()
            .ok_or_else(|| format!("`optimal_lambdas.{k}` is not a number"))?;
        optimal_lambdas.insert(k, l);
    }
    let mut scenarios_position = Vec::new();
    for (k, p) in object(field("scenarios_position")?, "scenarios_position")? {
        let p = positions(&p, &format!("scenarios_position.{k}"))?;
        scenarios_position.push((k, p));
    }
    let mut subscenarios_position = BTreeMap::new();
    for (k, subs) in object(field("subscenarios_position")?, "subscenarios_position")? {
        let subs = object(&subs, &format!("subscenarios_position.{k}"))?
            .iter()
            .map(|(s, p)| positions(p, &format!("subscenarios_position.{k}.{s}")))
            .collect::<HookResult<Vec<_>>>()?;
        subscenarios_position.insert(k, subs);
    }
    let items = scenarios_position
        .iter()
        .flat_map(|(_, p)| p.iter())
        .max()
        .map_or(0, |m| m + 1);
    let too_far = seen_examples
        .iter()
        .chain(subscenarios_position.values().flatten().flatten())
        .any(|&i| i >= items);
    if items != n || too_far {
        return Err(format!(
            "item positions reach {items} but the IRT model has {n} items"
        ));
    }
    Ok(IrtBench {
        seen_examples,
        examples_weights,
        a,
        b,
        optimal_lambdas,
        scenarios_position,
        subscenarios_position,
    })
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `item_curve`: P_j(θ) for items `items`.
fn item_curve(bench: &IrtBench, theta: &[f64], j: usize) -> f64 {
    let z: f64 = (0..theta.len())
        .map(|d| (bench.a[d][j] * theta[d] - bench.b[d][j]).clamp(-30.0, 30.0))
        .sum();
    sigmoid(z)
}

const EPS: f64 = 1e-10;

/// The negative log-likelihood of `y` on `seen`, and its gradient.
fn nll(bench: &IrtBench, y: &[f64], seen: &[usize], theta: &[f64]) -> (f64, Vec<f64>) {
    let dims = theta.len();
    let mut f = 0.0;
    let mut grad = vec![0.0; dims];
    for &j in seen {
        let p = item_curve(bench, theta, j);
        f -= y[j] * (p + EPS).ln() + (1.0 - y[j]) * (1.0 - p + EPS).ln();
        let df_dz = -(y[j] / (p + EPS) - (1.0 - y[j]) / (1.0 - p + EPS)) * p * (1.0 - p);
        for (d, g) in grad.iter_mut().enumerate() {
            let u = bench.a[d][j] * theta[d] - bench.b[d][j];
            if (-30.0..=30.0).contains(&u) {
                *g += df_dz * bench.a[d][j];
            }
        }
    }
    (f, grad)
}

/// θ minimising the negative log-likelihood (damped Newton with a backtracking line search;
/// the problem is logistic regression, convex where no term is clipped).
pub fn fit_theta(bench: &IrtBench, y: &[f64], seen: &[usize]) -> Vec<f64> {
    let dims = bench.a.len();
    let mut theta = vec![0.0; dims];
    let (mut f, mut grad) = nll(bench, y, seen, &theta);
    for _ in 0..200 {
        if grad.iter().all(|g| g.abs() < 1e-10) {
            break;
        }
        // Gauss–Newton Hessian Σ P(1−P) a aᵀ, with a small ridge.
        let mut h = vec![vec![0.0; dims]; dims];
        for &j in seen {
            let p = item_curve(bench, &theta, j);
            let w = p * (1.0 - p);
            for r in 0..dims {
                for c in 0..dims {
                    h[r][c] += w * bench.a[r][j] * bench.a[c][j];
                }
            }
        }
        for (r, row) in h.iter_mut().enumerate() {
            row[r] += 1e-9;
        }
        let step = solve(h, grad.iter().map(|g| -g).collect())
            .unwrap_or_else(|| grad.iter().map(|g| -g).collect());
        let slope: f64 = step.iter().zip(&grad).map(|(s, g)| s * g).sum();
        let step = if slope < 0.0 {
            step
        } else {
            grad.iter().map(|g| -g).collect()
        };
        let slope: f64 = step.iter().zip(&grad).map(|(s, g)| s * g).sum();
        let mut t = 1.0;
        let mut moved = false;
        while t > 1e-12 {
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(x, s)| x + t * s).collect();
            let (fc, gc) = nll(bench, y, seen, &cand);
            if fc <= f + 1e-4 * t * slope {
                moved = fc < f || gc.iter().all(|g| g.abs() < 1e-10);
                theta = cand;
                f = fc;
                grad = gc;
                break;
            }
            t *= 0.5;
        }
        if !moved {
            break;
        }
    }
    theta
}

/// Solve `h x = g` (Gaussian elimination with partial pivoting); `None` if singular.
fn solve(mut h: Vec<Vec<f64>>, mut g: Vec<f64>) -> Option<Vec<f64>> {
    let n = g.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| h[a][col].abs().total_cmp(&h[b][col].abs()))?;
        if h[pivot][col].abs() < 1e-300 {
            return None;
        }
        h.swap(col, pivot);
        g.swap(col, pivot);
        for r in col + 1..n {
            let k = h[r][col] / h[col][col];
            for c in col..n {
                h[r][c] -= k * h[col][c];
            }
            g[r] -= k * g[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| h[r][c] * x[c]).sum();
        x[r] = (g[r] - s) / h[r][r];
    }
    Some(x)
}

/// The irt, p-IRT and gp-IRT estimates of `bench` (`arc`, `mmlu`, ...) from the tiny
/// task's item scores in dataset order, as `tinyBenchmarks.evaluate` computes them.
pub fn estimate(file: &IrtFile, bench: &str, y_input: &[f64]) -> HookResult<[f64; 3]> {
    let lb = LB_SCENARIOS.contains(&bench);
    let name = if lb { "lb" } else { bench };
    let b = file.benches.get(name).ok_or_else(|| {
        format!(
            "{} has no `{name}` entry (it has: {})",
            file.path.display(),
            file.benches.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let items = b.a[0].len();
    let mut balance = vec![1.0; items];
    for (scenario, positions) in &b.scenarios_position {
        let n_sce = positions.len() as f64;
        let subs = b
            .subscenarios_position
            .get(scenario)
            .map_or(&[][..], Vec::as_slice);
        for sub in subs {
            for &i in sub {
                balance[i] = n_sce / (subs.len() as f64 * sub.len() as f64);
            }
        }
    }
    let scenario_index = b
        .scenarios_position
        .iter()
        .position(|(s, _)| s == bench)
        .ok_or_else(|| format!("`{name}` has no scenario `{bench}`"))?;
    let seen: Vec<usize> = if lb {
        let start = TINY_ITEMS * scenario_index;
        b.seen_examples
            .get(start..start + TINY_ITEMS)
            .ok_or_else(|| format!("`{name}.seen_examples` is too short for `{bench}`"))?
            .to_vec()
    } else {
        b.seen_examples.clone()
    };
    if y_input.len() != seen.len() {
        return Err(format!(
            "gp-IRT needs the {} items of the tiny task in dataset order, got {}",
            seen.len(),
            y_input.len()
        ));
    }
    let mut y = vec![0.0; items];
    for (i, &j) in seen.iter().enumerate() {
        y[j] = y_input[i];
    }
    let theta = fit_theta(b, &y, &seen);
    let positions = &b.scenarios_position[scenario_index].1;
    let in_scenario: std::collections::BTreeSet<usize> = positions.iter().copied().collect();
    let seen_set: std::collections::BTreeSet<usize> = seen.iter().copied().collect();
    let seen_sce: Vec<usize> = seen
        .iter()
        .copied()
        .filter(|s| in_scenario.contains(s))
        .collect();
    let unseen_sce: Vec<usize> = (0..items)
        .filter(|i| !seen_set.contains(i) && in_scenario.contains(i))
        .collect();
    let mean = |xs: &mut dyn Iterator<Item = f64>, n: usize| xs.sum::<f64>() / n as f64;
    let data_part = mean(
        &mut seen_sce.iter().map(|&s| balance[s] * y[s]),
        seen_sce.len(),
    );
    let irt_part = mean(
        &mut unseen_sce
            .iter()
            .map(|&u| balance[u] * item_curve(b, &theta, u)),
        unseen_sce.len(),
    );
    let lambda = TINY_ITEMS as f64 / positions.len() as f64;
    let weights = b
        .examples_weights
        .get(bench)
        .ok_or_else(|| format!("`{name}.examples_weights` has no `{bench}`"))?;
    if weights.len() != seen_sce.len() {
        return Err(format!(
            "`{name}.examples_weights.{bench}` has {} weights for {} seen items",
            weights.len(),
            seen_sce.len()
        ));
    }
    let irt: f64 = weights.iter().zip(&seen_sce).map(|(w, &s)| w * y[s]).sum();
    let pirt = lambda * data_part + (1.0 - lambda) * irt_part;
    let opt = *b
        .optimal_lambdas
        .get(bench)
        .ok_or_else(|| format!("`{name}.optimal_lambdas` has no `{bench}`"))?;
    Ok([irt, pirt, opt * irt + (1.0 - opt) * pirt])
}

/// gp-IRT when the IRT file is there and the scores are the full tiny task; else the
/// plain mean (with its standard error) and a note.
fn agg_gpirt(bench: &str, scores: &[Score], ctx: &AggContext) -> HookResult<Aggregate> {
    let y: Vec<f64> = scores.iter().map(Score::value).collect();
    let fallback = |why: String| {
        let (value, stderr) = crate::eval::score::mean_stderr(&y);
        Aggregate {
            value,
            stderr,
            note: Some(format!(
                "the plain mean of {} items, not tinyBenchmarks' gp-IRT estimate: {why}",
                y.len()
            )),
        }
    };
    let Some(file) = &ctx.irt else {
        return Ok(fallback(format!(
            "no IRT parameters (set ${IRT_ENV} or put {IRT_FILE} beside the task file; see evals/README.md)"
        )));
    };
    if y.len() != TINY_ITEMS {
        return Ok(fallback(format!(
            "gp-IRT needs all {TINY_ITEMS} items, got {}",
            y.len()
        )));
    }
    let [_, _, gpirt] = estimate(file, bench, &y)?;
    Ok(Aggregate {
        value: gpirt,
        stderr: None,
        note: None,
    })
}

pub fn agg_gpirt_arc(s: &[Score], c: &AggContext) -> HookResult<Aggregate> {
    agg_gpirt("arc", s, c)
}
pub fn agg_gpirt_gsm8k(s: &[Score], c: &AggContext) -> HookResult<Aggregate> {
    agg_gpirt("gsm8k", s, c)
}
pub fn agg_gpirt_hellaswag(s: &[Score], c: &AggContext) -> HookResult<Aggregate> {
    agg_gpirt("hellaswag", s, c)
}
pub fn agg_gpirt_mmlu(s: &[Score], c: &AggContext) -> HookResult<Aggregate> {
    agg_gpirt("mmlu", s, c)
}
pub fn agg_gpirt_truthfulqa(s: &[Score], c: &AggContext) -> HookResult<Aggregate> {
    agg_gpirt("truthfulqa", s, c)
}
pub fn agg_gpirt_winogrande(s: &[Score], c: &AggContext) -> HookResult<Aggregate> {
    agg_gpirt("winogrande", s, c)
}
