//! A candidate whose merge a method refuses (DELLA's density ± epsilon outside (0, 1)) is
//! recorded in `failed.csv` with the reason, never scored or put on the frontier, and the
//! search goes on; `merges.csv` says per merged candidate which stages were merged.
use std::collections::BTreeSet;

use crate::support::cmd::lamarck_in;
use crate::support::s;
use crate::support::search::{rows, search_file};

#[test]
fn a_refused_gene_combination_is_a_failed_candidate_and_the_search_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let search = search_file(tmp.path(), 10, "optimizer: random\n");
    // epsilon up to 0.5 (DELLA's own bound): model a's density ± epsilon leaves (0, 1) when
    // epsilon ≥ min(a_density, 1 − a_density), model b's (0.4) when epsilon ≥ 0.4
    let text = std::fs::read_to_string(&search)
        .unwrap()
        .replace("range: [0.0, 0.08]", "range: [0.0, 0.5]");
    std::fs::write(&search, text).unwrap();
    let run = tmp.path().join("run");
    let (ok, _, err) = lamarck_in(
        &[
            "evolve",
            s(&search),
            "--out",
            s(&run),
            "--quiet",
            "--cache-mem",
            "1",
        ],
        tmp.path(),
    );
    assert!(ok, "the run goes on past failed merges: {err}");
    let failed = rows(&run.join("failed.csv"));
    let cands = rows(&run.join("candidates.csv"));
    assert!(!failed.is_empty() && !cands.is_empty(), "{failed:?}");
    assert_eq!(
        failed.len() + cands.len(),
        10,
        "failed candidates count towards the budget"
    );
    let bound = |r: &[String]| {
        let a: f64 = r[2].parse().unwrap();
        let eps: f64 = r[4].parse().unwrap();
        (eps, 0.4f64.min(a).min(1.0 - a))
    };
    for f in &failed {
        let (eps, max) = bound(f);
        assert!(eps >= max, "only refused combinations fail: {f:?}");
        let reason = f[8..].join(",");
        assert!(reason.contains("epsilon"), "{reason}");
        let told: f64 = f[7].parse().unwrap();
        assert!(
            told < 0.0,
            "the optimizer is told a value below any fitness: {told}"
        );
    }
    for c in &cands {
        let (eps, max) = bound(c);
        assert!(eps < max, "{c:?}");
    }
    let failed_ids: BTreeSet<&str> = failed.iter().map(|r| r[0].as_str()).collect();
    let frontier = rows(&run.join("frontier.csv"));
    assert!(frontier.iter().all(|r| !failed_ids.contains(r[0].as_str())));
    let items = std::fs::read_to_string(run.join("items.jsonl")).unwrap();
    for id in &failed_ids {
        assert!(
            !items.contains(&format!("\"candidate\":\"{id}\"")),
            "failed #{id} was scored"
        );
    }
    // one merges.csv row per merged candidate; under a 1-byte --cache-mem every stage
    // comes from the disk cache or is merged again
    let merges = rows(&run.join("merges.csv"));
    let merged: BTreeSet<&str> = merges.iter().map(|r| r[0].as_str()).collect();
    let scored: BTreeSet<&str> = cands.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(merged, scored);
    assert_eq!(&merges[0][1..3], &["3", "0"]);
    assert!(merges[0][3].starts_with("branch;blend;"), "{:?}", merges[0]);
    assert!(merges.iter().all(|r| r[5] == "0"), "nothing held in memory");
    assert!(run.join("stage-cache").read_dir().unwrap().count() > 0);

    // a resume with a larger budget keeps the failed rows and does not try them again
    let (ok, _, err) = lamarck_in(
        &[
            "evolve",
            "--resume",
            s(&run),
            "--quiet",
            "--candidates",
            "14",
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let again = rows(&run.join("failed.csv"));
    assert_eq!(&again[..failed.len()], &failed[..]);
    let ids: Vec<String> = again
        .iter()
        .chain(&rows(&run.join("candidates.csv")))
        .map(|r| r[0].clone())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (14, 14));
}
