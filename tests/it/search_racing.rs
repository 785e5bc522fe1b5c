//! Paired racing, the per-item response cache and the paired bootstrap of `report --split`:
//! racing stops a clearly worse candidate early and never an equal one; stopped candidates
//! never enter the frontier; duplicate weights cost no model call; kill -9 + resume with
//! racing and the cache records what an uninterrupted run does; the report's intervals are
//! recomputed here from items.jsonl; evolve never reads the test split.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::cmd::lamarck_in as lamarck;
use crate::support::repo;
use crate::support::s;
use crate::support::search::{content, kill_and_resume, rows, search_file};
use lamarck::search::racing::{chunks, order, Race, RacingSpec};

const WORDS: &[&str] = &[
    "river", "stone", "green", "seven", "apple", "cloud", "north", "silver", "tiger", "paper",
    "window", "music",
];

/// A multiple-choice task with `n` dev items and (when `test`) as many test items.
fn task(dir: &Path, n: usize, test: bool) -> PathBuf {
    let data = dir.join("race");
    std::fs::create_dir_all(&data).unwrap();
    let docs = |offset: usize| -> String {
        (0..n)
            .map(|i| {
                let k = i + offset;
                let choices: Vec<&str> = (0..4).map(|c| WORDS[(k * 5 + c * 7) % WORDS.len()]).collect();
                serde_json::json!({
                    "question": format!("Which word is number {} of {}?", k % 4, WORDS[k % WORDS.len()]),
                    "choices": choices,
                    "answer": k % 4,
                })
                .to_string()
                    + "\n"
            })
            .collect()
    };
    std::fs::write(data.join("dev.jsonl"), docs(0)).unwrap();
    if test {
        std::fs::write(data.join("test.jsonl"), docs(1000)).unwrap();
    }
    let path = dir.join("race.yaml");
    std::fs::write(
        &path,
        "task: race_mc\ndataset_path: race\noutput_type: multiple_choice\nvalidation_split: dev\ntest_split: test\ndoc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_choice: choices\ndoc_to_target: answer\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n",
    )
    .unwrap();
    path
}

/// The shared three-stage search, scored on `task`'s dev split.
fn racing_search(dir: &Path, budget: u64, extra: &str, task: &Path) -> PathBuf {
    let path = search_file(dir, budget, extra);
    let fixture = repo().join("tests/fixtures/eval/tasks/mc.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&fixture.display().to_string(), &task.display().to_string())
        .replace("metric: acc}", "metric: acc, split: dev}")
        .replace("metric: acc_norm,", "metric: acc_norm, split: dev,");
    std::fs::write(&path, text).unwrap();
    path
}

/// A CSV's rows without the timing columns, sorted.
fn sorted_content(path: &Path) -> Vec<Vec<String>> {
    let mut r = content(path);
    r.sort();
    r
}

#[test]
fn racing_stops_a_clearly_worse_candidate_early_and_never_an_equal_one() {
    let counts = [120, 80];
    let weights = [1.0, 0.5];
    let spec = RacingSpec {
        chunk: 20,
        confidence: 0.95,
    };
    let total: usize = counts.iter().sum();
    let plan = chunks(&order(&counts, 1), spec.chunk);
    // incumbent right on 80% of the items; a worse candidate on 30%; an equal one identical
    let incumbent = |o: usize, d: usize| f64::from((d * 7 + o) % 10 < 8);
    let worse = |o: usize, d: usize| f64::from((d * 3 + o) % 10 < 3);
    let run = |cand: &dyn Fn(usize, usize) -> f64| -> (usize, bool) {
        let mut race = Race::new(&weights, &spec, total);
        let mut seen = 0;
        for chunk in &plan {
            for (o, ids) in chunk {
                for &d in ids {
                    race.add(*o, cand(*o, d), incumbent(*o, d));
                    seen += 1;
                }
            }
            if seen < total && race.verdict().stop {
                return (seen, true);
            }
        }
        (seen, false)
    };
    let (seen, stopped) = run(&worse);
    assert!(
        stopped,
        "a 30% candidate against an 80% incumbent was not stopped"
    );
    assert!(
        seen <= 3 * spec.chunk,
        "stopped only after {seen} of {total} items"
    );
    let v = {
        let mut race = Race::new(&weights, &spec, total);
        for (o, ids) in &plan[0] {
            for &d in ids {
                race.add(*o, worse(*o, d), incumbent(*o, d));
            }
        }
        race.verdict()
    };
    assert!(v.diff < 0.0 && v.bound >= v.diff, "{v:?}");
    assert_eq!(
        run(&incumbent),
        (total, false),
        "the incumbent's twin was stopped"
    );
    // one item better here and there is never "behind"
    let better = |o: usize, d: usize| {
        if d.is_multiple_of(9) {
            1.0
        } else {
            incumbent(o, d)
        }
    };
    assert_eq!(run(&better), (total, false));
}

#[test]
fn stopped_candidates_stay_off_the_frontier_and_the_test_split_is_never_read() {
    let tmp = tempfile::tempdir().unwrap();
    // no test file: evolve must not need it
    let task = task(tmp.path(), 48, false);
    let search = racing_search(
        tmp.path(),
        21,
        "racing: {chunk: 8, confidence: 0.6}\n",
        &task,
    );
    let run = tmp.path().join("run");
    let (ok, _, err) = lamarck(
        &["evolve", s(&search), "--out", s(&run), "--quiet"],
        tmp.path(),
    );
    assert!(ok, "{err}");
    assert!(err.contains("item evaluations:"), "{err}");
    let full = rows(&run.join("candidates.csv"));
    let raced = rows(&run.join("raced.csv"));
    assert!(
        !raced.is_empty(),
        "no candidate was stopped early; the test cannot check partial rows"
    );
    let full_ids: BTreeSet<u64> = full.iter().map(|r| r[0].parse().unwrap()).collect();
    let raced_ids: BTreeSet<u64> = raced.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(full_ids.is_disjoint(&raced_ids));
    let all: BTreeSet<u64> = full_ids.union(&raced_ids).copied().collect();
    assert_eq!(all, (0..21).collect());
    let frontier: BTreeSet<u64> = rows(&run.join("frontier.csv"))
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    assert!(frontier.is_subset(&full_ids) && frontier.is_disjoint(&raced_ids));
    // partial rows: items seen < all items, a negative bound, told = incumbent + the paired
    // estimate D (≤ U < 0, so below the incumbent)
    let fitness: BTreeMap<u64, f64> = full
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[r.len() - 4].parse().unwrap()))
        .collect();
    let genes = 5;
    for r in &raced {
        let g = 2 + genes;
        let (items, of): (usize, usize) = (r[g].parse().unwrap(), r[g + 1].parse().unwrap());
        let diff: f64 = r[g + 3].parse().unwrap();
        let bound: f64 = r[g + 4].parse().unwrap();
        let incumbent: u64 = r[g + 5].parse().unwrap();
        let told: f64 = r[g + 6].parse().unwrap();
        assert!(items < of && of == 96, "{r:?}");
        assert!(diff <= bound && bound < 0.0, "{r:?}");
        assert!((told - (fitness[&incumbent] + diff)).abs() < 1e-12, "{r:?}");
        assert!(told < fitness[&incumbent], "{r:?}");
        let id: u64 = r[0].parse().unwrap();
        assert!(incumbent < id);
    }
    // evaluations.csv says what racing saved
    let evals = rows(&run.join("evaluations.csv"));
    let spent: usize = evals.iter().map(|r| r[1].parse::<usize>().unwrap()).sum();
    let full_cost: usize = evals.iter().map(|r| r[2].parse::<usize>().unwrap()).sum();
    assert!(spent < full_cost, "{spent} {full_cost}");
    let (ok, out, err) = lamarck(&["report", s(&run)], tmp.path());
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("{} stopped early", raced.len())) && out.contains("item evaluations"),
        "{out}"
    );
    // report --split test does need the test file
    let (ok, _, err) = lamarck(&["report", s(&run), "--split", "test"], tmp.path());
    assert!(!ok && err.contains("test"), "{err}");
}

#[test]
fn a_candidate_with_earlier_weights_costs_no_model_call() {
    let tmp = tempfile::tempdir().unwrap();
    let task = task(tmp.path(), 24, false);
    let search = racing_search(tmp.path(), 6, "", &task);
    // one gene, on a stage the output does not use: every candidate has the same weights
    let text = std::fs::read_to_string(&search).unwrap();
    let base = tmp.path().join("base").display().to_string();
    let a = tmp.path().join("a").display().to_string();
    let g0 = text.find("genes:\n").unwrap();
    let g1 = text.find("objectives:\n").unwrap();
    let text = format!(
        "{}genes:\n  - {{name: ghost, stage: unused, at: 'models[1].parameters.weight', range: [0.0, 1.0]}}\n{}",
        &text[..g0],
        &text[g1..]
    )
    .replacen(
        "recipe:\n",
        &format!("recipe:\n  - name: unused\n    merge_method: linear\n    models: [{{model: {base}, parameters: {{weight: 0.5}}}}, {{model: {a}, parameters: {{weight: 0.5}}}}]\n    dtype: float32\n"),
        1,
    );
    std::fs::write(&search, text).unwrap();
    let run = tmp.path().join("run");
    let (ok, _, err) = lamarck(
        &["evolve", s(&search), "--out", s(&run), "--quiet"],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let cands = rows(&run.join("candidates.csv"));
    assert_eq!(cands.len(), 6);
    let hashes: BTreeSet<&str> = cands.iter().map(|r| r[r.len() - 3].as_str()).collect();
    assert_eq!(hashes.len(), 1, "the ghost gene changed the weights");
    let ghosts: BTreeSet<&str> = cands.iter().map(|r| r[2].as_str()).collect();
    assert!(ghosts.len() > 1, "the optimizer did not move the gene");
    let evals: BTreeMap<String, Vec<usize>> = rows(&run.join("evaluations.csv"))
        .into_iter()
        .map(|r| {
            (
                r[0].clone(),
                r[1..].iter().map(|x| x.parse().unwrap()).collect(),
            )
        })
        .collect();
    // both objectives read the same task items: the second is answered by the cache
    assert_eq!(evals["0"], vec![48, 48, 24, 24], "{evals:?}");
    for id in 1..6 {
        assert_eq!(
            evals[&id.to_string()],
            vec![48, 48, 0, 48],
            "candidate {id} ran the model: {evals:?}"
        );
    }
    // the cache holds each distinct model's items once: candidate 0 and the three parents
    let cache = std::fs::read_to_string(run.join("responses.jsonl")).unwrap();
    assert_eq!(cache.lines().count(), 4 * 24);
    // a resumed, extended run scores nothing again
    let (ok, _, err) = lamarck(
        &[
            "evolve",
            "--resume",
            s(&run),
            "--quiet",
            "--candidates",
            "8",
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    assert!(err.contains("the model ran on 0 items"), "{err}");
    assert_eq!(rows(&run.join("candidates.csv")).len(), 8);
}

#[test]
fn kill_9_then_resume_with_racing_and_the_cache_records_what_an_uninterrupted_run_does() {
    let tmp = tempfile::tempdir().unwrap();
    let task = task(tmp.path(), 32, false);
    let budget = 13;
    let search = racing_search(
        tmp.path(),
        budget,
        "racing: {chunk: 8, confidence: 0.6}\n",
        &task,
    );
    let reference = tmp.path().join("reference");
    let (ok, _, err) = lamarck(
        &["evolve", s(&search), "--out", s(&reference), "--quiet"],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let run = tmp.path().join("killed");
    let recorded =
        |run: &Path| rows(&run.join("candidates.csv")).len() + rows(&run.join("raced.csv")).len();
    let kills = kill_and_resume(&search, &run, tmp.path(), recorded, |a| 5 * a % 23);
    assert!(kills >= 3, "only {kills} kills happened");
    let (ok, _, err) = lamarck(&["evolve", "--resume", s(&run), "--quiet"], tmp.path());
    assert!(ok, "{err}");
    assert_eq!(
        sorted_content(&run.join("candidates.csv")),
        sorted_content(&reference.join("candidates.csv"))
    );
    assert_eq!(
        sorted_content(&run.join("raced.csv")),
        sorted_content(&reference.join("raced.csv"))
    );
    assert_eq!(recorded(&run) as u64, budget);
    assert_eq!(
        std::fs::read_to_string(run.join("state.json")).unwrap(),
        std::fs::read_to_string(reference.join("state.json")).unwrap()
    );
    let lines = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        lines(&run.join("items.jsonl")),
        lines(&reference.join("items.jsonl"))
    );
    // every item scored before a kill was re-used, none scored twice
    let cache = lines(&run.join("responses.jsonl"));
    let unique: BTreeSet<&String> = cache.iter().collect();
    assert_eq!(unique.len(), cache.len(), "an item was scored twice");
    assert_eq!(cache, lines(&reference.join("responses.jsonl")));
}

/// SplitMix64, written again here so the intervals are checked independently.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn the_reports_paired_intervals_are_recomputed_from_items_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let task = task(tmp.path(), 24, false);
    let search = racing_search(tmp.path(), 6, "", &task);
    let run = tmp.path().join("run");
    let (ok, _, err) = lamarck(
        &["evolve", s(&search), "--out", s(&run), "--quiet"],
        tmp.path(),
    );
    assert!(ok, "{err}");
    self::task(tmp.path(), 24, true); // now the test split exists
    let json = tmp.path().join("report.json");
    let (ok, out, err) = lamarck(
        &["report", s(&run), "--split", "test", "--out", s(&json)],
        tmp.path(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("paired bootstrap 95% interval"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let held = &report["heldout"];
    let replicates = held["bootstrap"]["replicates"].as_u64().unwrap() as usize;
    let seed = held["bootstrap"]["seed"].as_u64().unwrap();
    let weights: Vec<f64> = report["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    let objectives: Vec<String> = report["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    // test-split items per (candidate, objective), in doc order
    let mut items: BTreeMap<(String, String), BTreeMap<u64, f64>> = BTreeMap::new();
    for line in std::fs::read_to_string(run.join("items.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["split"] != "test" {
            continue;
        }
        let key = (
            v["candidate"].as_str().unwrap().to_string(),
            v["objective"].as_str().unwrap().to_string(),
        );
        let old = items
            .entry(key)
            .or_default()
            .insert(v["doc_id"].as_u64().unwrap(), v["score"].as_f64().unwrap());
        assert!(old.is_none(), "a test item recorded twice");
    }
    let models = held["models"].as_array().unwrap();
    let best = models[0]["candidate"].as_str().unwrap();
    let paired = held["paired"].as_array().unwrap();
    assert_eq!(paired.len(), models.len() - 1);
    assert!(models.len() >= 4, "best, start and three parents");
    for (p, other) in paired.iter().zip(&models[1..]) {
        let other = other["candidate"].as_str().unwrap();
        let diffs: Vec<Vec<f64>> = objectives
            .iter()
            .map(|o| {
                let a = &items[&(best.to_string(), o.clone())];
                let b = &items[&(other.to_string(), o.clone())];
                assert_eq!(a.len(), 24);
                a.iter().map(|(d, x)| x - b[d]).collect()
            })
            .collect();
        let mut state = seed;
        let mut fits = Vec::new();
        let mut per = vec![Vec::new(); objectives.len()];
        for _ in 0..replicates {
            let mut f = 0.0;
            for (o, d) in diffs.iter().enumerate() {
                let n = d.len() as u64;
                let mut sum = 0.0;
                for _ in 0..n {
                    sum += d[(splitmix(&mut state) % n) as usize];
                }
                per[o].push(sum / n as f64);
                f += weights[o] * (sum / n as f64);
            }
            fits.push(f);
        }
        let check = |mut v: Vec<f64>, got: &serde_json::Value, mean: f64| {
            v.sort_by(f64::total_cmp);
            let b = v.len() as f64;
            let lo = v[(0.025 * b).floor() as usize];
            let hi = v[(0.975 * b).ceil() as usize - 1];
            for (name, want) in [("mean", mean), ("lo", lo), ("hi", hi)] {
                let g = got[name].as_f64().unwrap();
                assert!((g - want).abs() < 1e-12, "{name}: {g} vs {want} ({other})");
            }
        };
        let means: Vec<f64> = diffs
            .iter()
            .map(|d| d.iter().sum::<f64>() / d.len() as f64)
            .collect();
        let fit_mean: f64 = means.iter().zip(&weights).map(|(m, w)| m * w).sum();
        check(fits, &p["fitness"], fit_mean);
        for (o, name) in objectives.iter().enumerate() {
            check(per[o].clone(), &p["objectives"][name], means[o]);
        }
    }
    // a second report re-uses the cache and adds no item twice
    let before = std::fs::read_to_string(run.join("items.jsonl")).unwrap();
    let (ok, out, err) = lamarck(&["report", s(&run), "--split", "test"], tmp.path());
    assert!(ok, "{err}");
    assert!(out.contains("the model ran on 0 items"), "{out}");
    assert_eq!(
        std::fs::read_to_string(run.join("items.jsonl")).unwrap(),
        before
    );
}
