//! Shared helpers of the search tests: a tiny model family with a tokenizer (the eval
//! fixture `tiny-tied` as base, plus perturbed "fine-tunes"), a search file over it, and
//! running the `lamarck` binary.
use std::path::{Path, PathBuf};

use lamarck::model::writer::f32_to_bytes;
use lamarck::model::{DType, ModelDir, ModelWriter, WriteOptions};

use super::repo;

/// Deterministic noise in [-1, 1).
fn noise(seed: u64, i: u64) -> f32 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 29;
    ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
}

/// Write `base` (the tiny-tied fixture) and `variants` perturbed copies of it under `dir`.
pub fn family(dir: &Path, variants: &[&str]) -> Vec<PathBuf> {
    let src = repo().join("tests/fixtures/eval/tiny-tied");
    let base = ModelDir::open(&src).unwrap();
    let mut out = Vec::new();
    for (k, name) in std::iter::once(&"base").chain(variants).enumerate() {
        let path = dir.join(name);
        let mut w = ModelWriter::create(
            &path,
            WriteOptions {
                shard_size: 1 << 40,
                force: false,
            },
        )
        .unwrap();
        for (t, tensor) in base.tensor_names().into_iter().enumerate() {
            let info = base.info(tensor).unwrap().clone();
            let mut data = base.read_f32(tensor).unwrap();
            if k > 0 {
                let scale = data.iter().map(|x| x.abs()).sum::<f32>() / data.len() as f32;
                for (i, x) in data.iter_mut().enumerate() {
                    *x += 0.5 * scale * noise(k as u64 * 1000 + t as u64, i as u64);
                }
            }
            w.add_tensor(
                tensor,
                DType::F32,
                &info.shape,
                f32_to_bytes(&data, DType::F32),
            )
            .unwrap();
        }
        for f in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            std::fs::copy(src.join(f), w.temp_path().join(f)).unwrap();
        }
        out.push(w.finish().unwrap());
    }
    out
}

/// A three-stage search (DELLA → SLERP in two layer slices → TIES) over `family`'s models.
pub fn search_file(dir: &Path, budget: u64, extra: &str) -> PathBuf {
    let models = family(dir, &["a", "b"]);
    let [base, a, b] = [&models[0], &models[1], &models[2]].map(|p| p.display().to_string());
    let task = repo().join("tests/fixtures/eval/tasks/mc.yaml");
    let text = format!(
        r#"recipe:
  - name: branch
    merge_method: della
    base_model: {base}
    parameters: {{density: 0.5, weight: 0.5, epsilon: 0.05, lambda: 1.0}}
    models:
      - model: {a}
        parameters: {{density: 0.6, weight: 0.8}}
      - model: {b}
        parameters: {{density: 0.4, weight: 0.6}}
    dtype: float32
  - name: blend
    merge_method: slerp
    base_model: {base}
    slices:
      - sources: [{{model: {base}, layer_range: [0, 1]}}, {{model: branch, layer_range: [0, 1]}}]
        parameters: {{t: [0.2, 0.3]}}
      - sources: [{{model: {base}, layer_range: [1, 2]}}, {{model: branch, layer_range: [1, 2]}}]
        parameters: {{t: [0.3, 0.6]}}
  - merge_method: ties
    base_model: {base}
    parameters: {{density: 1.0, weight: 1.0}}
    models: [{{model: blend}}]
    out_dtype: bfloat16
seed: 3
population: 4
budget: {{candidates: {budget}}}
genes:
  - {{name: a_density, stage: branch, at: 'models[0].parameters.density', range: [0.2, 0.9]}}
  - {{name: b_weight, stage: branch, at: 'models[1].parameters.weight', range: [0.0, 1.0]}}
  - {{name: epsilon, stage: branch, at: parameters.epsilon, range: [0.0, 0.08]}}
  - {{name: t_mid, stage: blend, at: ['slices[0].parameters.t[1]', 'slices[1].parameters.t[0]'], range: [0.0, 1.0]}}
  - {{name: t_end, stage: blend, at: 'slices[1].parameters.t[1]', range: [0.0, 1.0]}}
objectives:
  - {{task: {task}, name: mc_acc, metric: acc}}
  - {{task: {task}, name: mc_norm, metric: acc_norm, weight: 0.5}}
{extra}"#,
        task = task.display()
    );
    let path = dir.join("search.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Data rows of a CSV file (header skipped), only complete lines.
pub fn rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .skip(1)
        .filter(|l| l.ends_with('\n'))
        .map(|l| l.trim_end().split(',').map(str::to_string).collect())
        .collect()
}

/// Data rows of a run's CSV file without the timing columns (the last two), which
/// legitimately differ between runs.
pub fn content(path: &Path) -> Vec<Vec<String>> {
    rows(path)
        .into_iter()
        .map(|mut r| {
            r.truncate(r.len() - 2);
            r
        })
        .collect()
}

/// `lamarck evolve search --out run` in `cwd`, then `--resume` again and again, each process
/// killed (SIGKILL) once `recorded(run)` grew by one or two rows, after a short pause that
/// varies with the attempt (`pause_ms(attempt)`), until a process finishes on its own (at
/// most 40 attempts). Returns how many kills happened.
pub fn kill_and_resume(
    search: &Path,
    run: &Path,
    cwd: &Path,
    recorded: impl Fn(&Path) -> usize,
    pause_ms: impl Fn(u64) -> u64,
) -> usize {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut kills = 0;
    for attempt in 0..40u64 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lamarck"));
        if attempt == 0 {
            cmd.args([
                "evolve",
                super::s(search),
                "--out",
                super::s(run),
                "--quiet",
            ]);
        } else {
            cmd.args(["evolve", "--resume", super::s(run), "--quiet"]);
        }
        let mut child = cmd
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait_for = recorded(run) + 1 + (attempt % 2) as usize;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "resume attempt {attempt} failed");
                return kills;
            }
            if recorded(run) >= wait_for || started.elapsed() > Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(pause_ms(attempt)));
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    kills
}
