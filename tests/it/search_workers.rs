//! `lamarck evolve --workers N`: one worker records what the in-process loop records; two
//! workers with one killed mid-candidate, and a coordinator killed and resumed, lose and
//! duplicate nothing; the same through a real Slurm (`LAMARCK_SLURM=1`, see
//! tools/slurm/local-cluster.sh).
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cmd::lamarck_in;
use crate::support::s;
use crate::support::search::{content, rows, search_file};

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The search file with population `lambda` (so that `1 + lambda` candidates are all drawn
/// from the starting distribution, whatever order results arrive in).
fn search_with(dir: &Path, budget: u64, lambda: usize, extra: &str) -> PathBuf {
    let p = search_file(dir, budget, extra);
    let t = text(&p).replace("population: 4", &format!("population: {lambda}"));
    std::fs::write(&p, t).unwrap();
    p
}

fn evolve(dir: &Path, search: &Path, run: &Path, workers: usize) {
    let w = workers.to_string();
    let mut args = vec!["evolve", s(search), "--out", s(run), "--quiet"];
    if workers > 0 {
        args.extend(["--workers", w.as_str()]);
    }
    let (ok, _, err) = lamarck_in(&args, dir);
    assert!(ok, "{err}");
}

#[test]
fn one_worker_records_what_the_in_process_loop_records() {
    for extra in ["", "racing: {chunk: 2, confidence: 0.6}"] {
        let tmp = tempfile::tempdir().unwrap();
        let search = search_file(tmp.path(), 10, extra);
        let (inproc, worker) = (tmp.path().join("in"), tmp.path().join("w1"));
        evolve(tmp.path(), &search, &inproc, 0);
        evolve(tmp.path(), &search, &worker, 1);
        for f in ["candidates.csv", "raced.csv"] {
            assert_eq!(
                content(&inproc.join(f)),
                content(&worker.join(f)),
                "{f} ({extra})"
            );
        }
        for f in [
            "parents.csv",
            "evaluations.csv",
            "items.jsonl",
            "responses.jsonl",
        ] {
            assert_eq!(
                text(&inproc.join(f)),
                text(&worker.join(f)),
                "{f} ({extra})"
            );
        }
        assert_eq!(
            rows(&worker.join("candidates.csv")).len() + rows(&worker.join("raced.csv")).len(),
            10
        );
        // every result's arrival is recorded (10 candidates + 3 parents), the queue is gone
        assert_eq!(rows(&worker.join("arrivals.csv")).len(), 13);
        assert!(!worker.join("queue").exists());
        // the run continues in process only with workers
        let (ok, _, err) = lamarck_in(
            &[
                "evolve",
                "--resume",
                s(&worker),
                "--candidates",
                "12",
                "--quiet",
            ],
            tmp.path(),
        );
        assert!(!ok && err.contains("--workers"), "{err}");
    }
}

/// Wait until some worker holds a claim; returns (claim file, worker name).
fn wait_for_claim(
    run: &Path,
    child: &mut Child,
    not: &BTreeSet<String>,
) -> Option<(String, String)> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if let Ok(rd) = std::fs::read_dir(run.join("queue/claimed")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some((key, worker)) = n.strip_suffix(".json").and_then(|x| x.split_once('.'))
                {
                    if key.starts_with("2-c") && !not.contains(worker) {
                        return Some((key.to_string(), worker.to_string()));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Every candidate id once, and (without timings) the same rows as `reference`.
fn same_candidates(run: &Path, reference: &Path, budget: usize) {
    let got = content(&run.join("candidates.csv"));
    let ids: Vec<&str> = got.iter().map(|r| r[0].as_str()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "duplicated: {ids:?}");
    assert_eq!(ids.len(), budget, "lost: {ids:?}");
    let mut want = content(&reference.join("candidates.csv"));
    let mut got = got.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    let mut p = content(&run.join("parents.csv"));
    let mut q = content(&reference.join("parents.csv"));
    p.sort();
    q.sort();
    assert_eq!(p, q);
    let items: BTreeSet<String> = text(&run.join("items.jsonl"))
        .lines()
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = text(&reference.join("items.jsonl"))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        items.len(),
        text(&run.join("items.jsonl")).lines().count(),
        "duplicated items"
    );
    assert_eq!(items, want);
}

fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lamarck"));
    c.args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn finish(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_workers_one_killed_mid_candidate_record_every_candidate_once() {
    let tmp = tempfile::tempdir().unwrap();
    let budget = 13;
    let search = search_with(tmp.path(), budget as u64, 12, "");
    let reference = tmp.path().join("reference");
    evolve(tmp.path(), &search, &reference, 0);
    let run = tmp.path().join("run");
    let mut child = spawn(
        tmp.path(),
        &[
            "evolve",
            s(&search),
            "--out",
            s(&run),
            "--quiet",
            "--workers",
            "2",
            "--stale",
            "5",
        ],
        &[],
    );
    let (key, worker) = wait_for_claim(&run, &mut child, &BTreeSet::new()).expect("no claim seen");
    let pid = text(&run.join(format!("queue/workers/{worker}.beat")));
    let killed = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill {pid}");
    let mid = run
        .join(format!("queue/claimed/{key}.{worker}.json"))
        .exists();
    finish(child);
    same_candidates(&run, &reference, budget);
    // the killed worker's task was done by another worker (or its restart)
    let arrivals = text(&run.join("arrivals.csv"));
    let id = key.trim_start_matches("2-c").trim_start_matches('0');
    let line = arrivals
        .lines()
        .find(|l| l.ends_with(&format!(",{id}")))
        .unwrap_or_else(|| panic!("candidate {id} not in\n{arrivals}"));
    if mid {
        assert!(!line.starts_with(&format!("{worker},")), "{line}");
    }
}

#[test]
fn a_killed_coordinator_resumes_with_workers_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let budget = 14;
    let search = search_file(tmp.path(), budget, "");
    let run = tmp.path().join("run");
    let mut kills = 0;
    for attempt in 0..20 {
        let mut child = if attempt == 0 {
            spawn(
                tmp.path(),
                &[
                    "evolve",
                    s(&search),
                    "--out",
                    s(&run),
                    "--quiet",
                    "--workers",
                    "2",
                ],
                &[],
            )
        } else {
            spawn(
                tmp.path(),
                &["evolve", "--resume", s(&run), "--quiet", "--workers", "2"],
                &[],
            )
        };
        let have = rows(&run.join("candidates.csv")).len();
        let started = Instant::now();
        let mut done = false;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "attempt {attempt} failed");
                done = true;
                break;
            }
            if rows(&run.join("candidates.csv")).len() > have + attempt % 3
                || started.elapsed() > Duration::from_secs(120)
            {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if done {
            break;
        }
    }
    assert!(kills >= 2, "only {kills} kills");
    let (ok, _, err) = lamarck_in(
        &["evolve", "--resume", s(&run), "--quiet", "--workers", "2"],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let got = content(&run.join("candidates.csv"));
    let ids: BTreeSet<u64> = got.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "duplicated rows");
    assert_eq!(ids, (0..budget).collect::<BTreeSet<_>>());
    assert_eq!(rows(&run.join("parents.csv")).len(), 3);
    let items = text(&run.join("items.jsonl"));
    let unique: BTreeSet<&str> = items.lines().collect();
    assert_eq!(unique.len(), items.lines().count());
    assert_eq!(items.lines().count(), 2 * 4 * (budget as usize + 3));
}

/// Through a real Slurm: `tools/slurm/local-cluster.sh up` first (`.ci/run` does), then
/// `LAMARCK_SLURM=1 cargo test --test it search_workers::slurm`.
#[test]
fn slurm_two_workers_one_job_cancelled_mid_candidate_lose_nothing() {
    if std::env::var("LAMARCK_SLURM").as_deref() != Ok("1") {
        eprintln!("skipped: set LAMARCK_SLURM=1 after tools/slurm/local-cluster.sh up");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let budget = 13;
    let search = search_with(
        tmp.path(),
        budget as u64,
        12,
        "executor: {kind: slurm, max_jobs: 2, time: '10:00', sbatch_extra: ['--cpus-per-task=1']}",
    );
    let reference = tmp.path().join("reference");
    evolve(tmp.path(), &search, &reference, 0);
    let run = tmp.path().join("run");
    let mut child = spawn(
        tmp.path(),
        &[
            "evolve",
            s(&search),
            "--out",
            s(&run),
            "--quiet",
            "--workers",
            "2",
            "--stale",
            "10",
        ],
        &[],
    );
    let (_, worker) = wait_for_claim(&run, &mut child, &BTreeSet::new()).expect("no claim seen");
    let cancelled = Command::new("scancel")
        .args(["--name", &format!("lamarck-{worker}")])
        .status()
        .unwrap();
    assert!(cancelled.success());
    finish(child);
    same_candidates(&run, &reference, budget);
    // the coordinator cancelled its jobs on exit (a cancelled job may still show while
    // Slurm completes it: wait for that, up to 60 s)
    let mut left = String::new();
    for _ in 0..60 {
        let q = Command::new("squeue")
            .args(["-h", "-o", "%j %T"])
            .output()
            .unwrap();
        left = String::from_utf8_lossy(&q.stdout).into_owned();
        if !left.contains("lamarck-s") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert!(!left.contains("lamarck-s"), "jobs left: {left}");
}
