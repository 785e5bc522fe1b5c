//! One writer per folder: a second `lamarck evolve` on a live run folder and a second
//! `lamarck merge` on an `--out` being written are refused with the holder's pid, and a
//! killed holder's lock goes with it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cmd::lamarck_in as lamarck;
use crate::support::merge as merge_support;
use crate::support::s;
use crate::support::search::{rows, search_file};

fn spawn(args: &[&str], cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lamarck"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait until `ready()` or the child ends; true when ready while the child still runs.
fn wait_until(child: &mut Child, ready: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Regression test for issue 11: a second `evolve --resume` beside a running one appended
/// rows next to it (218 rows, 145 distinct ids).
#[test]
fn issue_11_a_second_evolve_on_a_live_run_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let search = search_file(tmp.path(), 400, "");
    let run = tmp.path().join("run");
    let mut first = spawn(
        &["evolve", s(&search), "--out", s(&run), "--quiet"],
        tmp.path(),
    );
    let pid = first.id();
    let live = wait_until(&mut first, || {
        run.join(".lamarck-lock").is_file() && !rows(&run.join("candidates.csv")).is_empty()
    });
    assert!(live, "the first run ended or never started");
    let (ok, _, err) = lamarck(&["evolve", "--resume", s(&run), "--quiet"], tmp.path());
    assert!(!ok, "a second process resumed a live run");
    assert!(
        err.contains(&format!("is in use by process {pid} (lamarck evolve"))
            && err.contains("kill"),
        "{err}"
    );
    first.kill().unwrap(); // SIGKILL: the kernel drops its lock
    first.wait().unwrap();
    // the lock went with the killed process: a resume with the budget already spent runs
    let done = rows(&run.join("candidates.csv")).len();
    let budget = done.to_string();
    let (ok, _, err) = lamarck(
        &[
            "evolve",
            "--resume",
            s(&run),
            "--quiet",
            "--candidates",
            &budget,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let ids: Vec<String> = rows(&run.join("candidates.csv"))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicated candidates: {ids:?}");
    assert!(
        !run.join(".lamarck-lock").exists(),
        "the lock file is left behind"
    );
}

#[test]
fn a_second_merge_into_an_out_being_written_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // a slow single-threaded DELLA merge of two bf16 models
    let shape = merge_support::Shape {
        layers: 6,
        hidden: 384,
        intermediate: 1024,
        heads: 4,
        kv_heads: 2,
        vocab: 4096,
        tied: false,
    };
    let (base, a) = (dir.join("base"), dir.join("a"));
    merge_support::write_model(&base, shape, 1, None, 0.0);
    merge_support::write_model(&a, shape, 1, Some(2), 0.05);
    let recipe = dir.join("r.yaml");
    std::fs::write(
        &recipe,
        format!(
            "merge_method: della\nbase_model: {}\nparameters: {{density: 0.5, epsilon: 0.1, weight: 1.0}}\nmodels:\n  - model: {}\n",
            base.display(),
            a.display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let args = ["merge", s(&recipe), "--out", s(&out), "--threads", "1"];
    let lock = dir.join(".out.lamarck-lock");
    // retry (a fast machine may finish first) until the second process meets a live holder
    let mut refused = None;
    for _ in 0..50 {
        let _ = std::fs::remove_dir_all(&out);
        let mut first = spawn(&args, dir);
        if !wait_until(&mut first, || lock.is_file()) {
            first.wait().unwrap();
            continue;
        }
        let (ok, _, err) = lamarck(&[&args[..], &["--force"]].concat(), dir);
        let status = first.wait().unwrap();
        assert!(status.success());
        if !ok && err.contains("is in use by") {
            refused = Some((first.id(), err));
            break;
        }
    }
    let (pid, err) = refused.expect("never caught the first merge while it held its lock");
    assert!(
        err.contains(&format!("is in use by process {pid} (lamarck merge")),
        "{err}"
    );
    assert!(
        out.join("config.json").is_file(),
        "the first merge completed"
    );
    assert!(!lock.exists(), "the lock file is left behind");
}
