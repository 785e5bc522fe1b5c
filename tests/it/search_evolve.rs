//! `lamarck evolve` end to end on a tiny three-stage recipe: records, export → merge gives
//! the recorded weights hash, report, and kill -9 / resume with nothing lost or duplicated.
use std::collections::BTreeSet;
use std::path::Path;

use crate::support::cmd::lamarck_in;
use crate::support::s;
use crate::support::search::{content, kill_and_resume, rows, search_file};
use lamarck::search::materialize::hash_dir;

#[test]
fn a_run_records_every_candidate_and_its_export_merges_to_the_recorded_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let search = search_file(tmp.path(), 9, "");
    let run = tmp.path().join("run");
    let (ok, out, err) = lamarck_in(
        &["evolve", s(&search), "--out", s(&run), "--quiet"],
        tmp.path(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("best #"), "{out}");
    let cands = rows(&run.join("candidates.csv"));
    let ids: Vec<u64> = cands.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(ids, (0..9).collect::<Vec<_>>());
    // the starting point holds the recipe's values: a_density 0.6, b_weight 0.6, epsilon 0.05, t 0.3, 0.6
    assert_eq!(&cands[0][2..7], &["0.6", "0.6", "0.05", "0.3", "0.6"]);
    // genes stay inside their ranges
    for r in &cands {
        let a: f64 = r[2].parse().unwrap();
        let eps: f64 = r[4].parse().unwrap();
        assert!(
            (0.2..=0.9).contains(&a) && (0.0..=0.08).contains(&eps),
            "{r:?}"
        );
    }
    // distinct genes give distinct weights
    let hashes: BTreeSet<&str> = cands.iter().map(|r| r[10].as_str()).collect();
    assert_eq!(hashes.len(), 9);
    // 4 items × (9 candidates + 3 parents), none twice
    let items = std::fs::read_to_string(run.join("items.jsonl")).unwrap();
    assert_eq!(items.lines().count(), 2 * 4 * 12);
    assert_eq!(rows(&run.join("parents.csv")).len(), 3);
    for f in ["run.yaml", "state.json", "frontier.csv"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let run_yaml = std::fs::read_to_string(run.join("run.yaml")).unwrap();
    assert!(run_yaml.contains("lamarck_version") && run_yaml.contains("t_mid"));

    for (pick, id) in [("--best", None), ("--id", Some("0")), ("--id", Some("5"))] {
        let recipe = tmp
            .path()
            .join(format!("export-{}.yaml", id.unwrap_or("best")));
        let mut args = vec!["export", s(&run), "--out", s(&recipe), pick];
        args.extend(id);
        let (ok, _, err) = lamarck_in(&args, tmp.path());
        assert!(ok, "{err}");
        let text = std::fs::read_to_string(&recipe).unwrap();
        assert!(
            text.contains("seed: 42") && text.contains("compat: mergekit"),
            "{text}"
        );
        let merged = tmp.path().join(format!("merged-{}", id.unwrap_or("best")));
        let (ok, _, err) = lamarck_in(&["merge", s(&recipe), "--out", s(&merged)], tmp.path());
        assert!(ok, "{err}");
        let hash = hash_dir(&merged).unwrap();
        let fitness = |r: &Vec<String>| r[9].parse::<f64>().unwrap();
        let row = match id {
            Some(i) => cands.iter().find(|r| r[0] == i).unwrap(),
            // highest fitness, the earliest on ties
            None => cands.iter().fold(
                &cands[0],
                |best, r| if fitness(r) > fitness(best) { r } else { best },
            ),
        };
        assert_eq!(
            hash, row[10],
            "exported candidate {id:?} merges to other weights"
        );
    }

    // another candidate's folder does not verify
    let (ok, _, err) = lamarck_in(
        &[
            "export",
            s(&run),
            "--id",
            "1",
            "--verify",
            s(&tmp.path().join("merged-0")),
        ],
        tmp.path(),
    );
    assert!(!ok && err.contains("other weights"), "{err}");

    let (ok, out, err) = lamarck_in(&["report", s(&run)], tmp.path());
    assert!(ok, "{err}");
    assert!(
        out.contains("Pareto frontier")
            && out.contains("starting recipe (#0)")
            && out.contains("base"),
        "{out}"
    );
    let svg = std::fs::read_to_string(run.join("frontier.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );

    // a finished run resumed with the same budget does nothing; a larger one continues
    let (ok, _, err) = lamarck_in(&["evolve", "--resume", s(&run), "--quiet"], tmp.path());
    assert!(ok, "{err}");
    assert_eq!(rows(&run.join("candidates.csv")).len(), 9);
    let (ok, _, err) = lamarck_in(
        &[
            "evolve",
            "--resume",
            s(&run),
            "--quiet",
            "--candidates",
            "11",
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    assert_eq!(rows(&run.join("candidates.csv")).len(), 11);
    // an existing run folder is not overwritten
    let (ok, _, err) = lamarck_in(&["evolve", s(&search), "--out", s(&run)], tmp.path());
    assert!(!ok && err.contains("--resume"), "{err}");
    if std::env::var_os("LAMARCK_KEEP_TEST_DIR").is_some() {
        eprintln!("kept {}", tmp.keep().display());
    }
}

#[test]
fn kill_9_at_any_moment_then_resume_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let budget = 14;
    let search = search_file(tmp.path(), budget, "");
    let reference = tmp.path().join("reference");
    let (ok, _, err) = lamarck_in(
        &["evolve", s(&search), "--out", s(&reference), "--quiet"],
        tmp.path(),
    );
    assert!(ok, "{err}");

    let run = tmp.path().join("killed");
    // each process killed once one or two more rows appeared, at varying moments
    let recorded = |run: &Path| rows(&run.join("candidates.csv")).len();
    let kills = kill_and_resume(&search, &run, tmp.path(), recorded, |a| 3 * a % 17);
    assert!(kills >= 3, "only {kills} kills happened");
    let (ok, _, err) = lamarck_in(&["evolve", "--resume", s(&run), "--quiet"], tmp.path());
    assert!(ok, "{err}");

    let got = content(&run.join("candidates.csv"));
    let ids: Vec<&str> = got.iter().map(|r| r[0].as_str()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "duplicated candidates: {ids:?}");
    assert_eq!(ids.len() as u64, budget, "lost candidates: {ids:?}");
    // the interrupted run recorded exactly what the uninterrupted one did
    let mut want = content(&reference.join("candidates.csv"));
    let mut got_sorted = got.clone();
    want.sort();
    got_sorted.sort();
    assert_eq!(got_sorted, want);
    assert_eq!(
        rows(&run.join("parents.csv")),
        rows(&reference.join("parents.csv"))
    );
    let items = std::fs::read_to_string(run.join("items.jsonl")).unwrap();
    let mut seen = BTreeSet::new();
    for line in items.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["candidate"].to_string(),
            v["objective"].to_string(),
            v["doc_id"].to_string(),
            v["score"].to_string(),
        );
        assert!(seen.insert(key.clone()), "item recorded twice: {key:?}");
    }
    let ref_items = std::fs::read_to_string(reference.join("items.jsonl")).unwrap();
    assert_eq!(items.lines().count(), ref_items.lines().count());
}

#[test]
fn random_search_draws_from_the_whole_range_within_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let search = search_file(tmp.path(), 7, "optimizer: random\n");
    let run = tmp.path().join("run");
    let (ok, _, err) = lamarck_in(
        &["evolve", s(&search), "--out", s(&run), "--quiet"],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let cands = rows(&run.join("candidates.csv"));
    assert_eq!(cands.len(), 7);
    let t_end: Vec<f64> = cands[1..].iter().map(|r| r[6].parse().unwrap()).collect();
    assert!(t_end.iter().all(|t| (0.0..=1.0).contains(t)));
    // uniform draws, not steps around the start (0.6)
    assert!(t_end.iter().any(|t| (t - 0.6).abs() > 0.2), "{t_end:?}");
    let state = std::fs::read_to_string(run.join("state.json")).unwrap();
    assert!(state.contains("\"name\": \"random\""), "{state}");
}
