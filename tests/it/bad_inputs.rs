//! Bad inputs as a user meets them: every `tests/bad/<case>.yaml` (a recipe, a search file
//! or a task file) is run through the `lamarck` binary in a fresh temp dir, and must fail
//! with exit code 1, print exactly `tests/bad/<case>.stderr`, and write nothing (no output
//! folder, no stages folder, no hidden temporary folder, no run directory).
//!
//! A case's leading comment lines say how it is run (all optional):
//!
//! ```text
//! # lamarck merge CASE --out out        the command line; CASE is the case file
//! # models: a b base                    tiny stand-in models written first (4 layers)
//! # copy: tests/fixtures/eval/tasks/mc mc   a repository file or folder copied first
//! # known-defect-writes: run            a path the command still writes (a known defect;
//!                                       the test fails once it no longer does)
//! ```
//!
//! The default command is `lamarck merge CASE --out out`. stderr is normalised in two ways
//! only: the temp dir's path is printed as `$TMP` (it differs on every run), and durations
//! (`0.3s`) as `<secs>`. `BLESS=1` rewrites the `.stderr` files from what the binary prints
//! (review the diff before committing).
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::cmd::{check_golden, run_in};
use crate::support::merge::{write_model, Shape};
use crate::support::repo;

/// How one case is run, from its leading comments.
struct Case {
    name: String,
    file: PathBuf,
    args: Vec<String>,
    models: Vec<String>,
    copies: Vec<(String, String)>,
    known_writes: Vec<String>,
}

fn parse_case(file: &Path) -> Case {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file.file_stem().unwrap().to_string_lossy().into_owned();
    let mut case = Case {
        file: file.to_path_buf(),
        args: vec![],
        models: vec![],
        copies: vec![],
        known_writes: vec![],
        name,
    };
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(cmd) = line.strip_prefix("# lamarck ") {
            case.args = cmd.split_whitespace().map(str::to_string).collect();
        } else if let Some(m) = line.strip_prefix("# models: ") {
            case.models = m.split_whitespace().map(str::to_string).collect();
        } else if let Some(c) = line.strip_prefix("# copy: ") {
            let (from, to) = c
                .split_once(' ')
                .unwrap_or_else(|| panic!("{}: `# copy: FROM TO` needs two paths", file.display()));
            case.copies.push((from.to_string(), to.trim().to_string()));
        } else if let Some(w) = line.strip_prefix("# known-defect-writes: ") {
            case.known_writes = w.split_whitespace().map(str::to_string).collect();
        }
    }
    if case.args.is_empty() {
        case.args = ["merge", "CASE", "--out", "out"].map(String::from).to_vec();
    }
    case
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// Every path under `root` (files and folders, hidden ones included), relative.
fn listing(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Run one case; a description of what is wrong, if anything.
fn check(case: &Case) -> Option<String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file_name = format!("{}.yaml", case.name);
    std::fs::copy(&case.file, dir.join(&file_name)).unwrap();
    for m in &case.models {
        write_model(&dir.join(m), Shape::tiny(4), 1, Some(7), 0.01);
    }
    for (from, to) in &case.copies {
        copy_tree(&repo().join(from), &dir.join(to));
    }
    let before = listing(dir);
    let args: Vec<&str> = case
        .args
        .iter()
        .map(|a| if a == "CASE" { &file_name } else { a.as_str() })
        .collect();
    let run = run_in(&args, dir);
    let after = listing(dir);
    let mut problems = Vec::new();
    if run.code != Some(1) {
        problems.push(format!("exit code {:?}, expected 1", run.code));
    }
    let written: Vec<_> = after.difference(&before).collect();
    let known = |p: &&PathBuf| case.known_writes.iter().any(|k| p.starts_with(k));
    let unexpected: Vec<_> = written.iter().filter(|p| !known(p)).collect();
    if !unexpected.is_empty() {
        problems.push(format!("wrote {unexpected:?}"));
    }
    if !case.known_writes.is_empty() && !written.iter().any(known) {
        problems.push(format!(
            "no longer writes {:?}: remove its `# known-defect-writes:` line",
            case.known_writes
        ));
    }
    // The temp dir, also in the canonical form that resolution may print.
    let mut stderr = run.stderr.clone();
    if let Ok(canonical) = dir.canonicalize() {
        stderr = stderr.replace(&*canonical.to_string_lossy(), "$TMP");
    }
    stderr = stderr.replace(&*dir.to_string_lossy(), "$TMP");
    let secs = regex::Regex::new(r"\b\d+\.\d+s\b").unwrap();
    let stderr = secs.replace_all(&stderr, "<secs>").into_owned();
    let golden = case.file.with_extension("stderr");
    if let Some(diff) = check_golden(&golden, &stderr) {
        problems.push(diff);
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{}: {}\n(stdout: {:?})",
            case.name,
            problems.join("\n"),
            run.stdout
        )
    })
}

#[test]
fn every_bad_input_fails_with_its_golden_stderr_and_writes_nothing() {
    let dir = repo().join("tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "only {} bad inputs", files.len());
    // Every golden belongs to a case (a renamed case leaves no stale golden behind).
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "stderr") {
            assert!(
                p.with_extension("yaml").exists(),
                "{} has no case",
                p.display()
            );
        }
    }
    let cases: Vec<Case> = files.iter().map(|f| parse_case(f)).collect();
    // Two threads: the binary is what takes the time, and each case has its own temp dir.
    let failures: Vec<String> = std::thread::scope(|s| {
        let (left, right) = cases.split_at(cases.len() / 2);
        let a = s.spawn(|| left.iter().filter_map(check).collect::<Vec<_>>());
        let b = right.iter().filter_map(check).collect::<Vec<_>>();
        let mut all = a.join().unwrap();
        all.extend(b);
        all
    });
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
