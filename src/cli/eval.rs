//! `lamarck eval MODEL --tasks ...`: score a model folder on task files; print a table,
//! optionally write results JSON (`--out`) and one JSON line per item (`--items`).
//! `lamarck eval --responses FILE --tasks ...` scores saved responses without a model.
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::eval::responses::{score_task, Responses};
use crate::eval::run::{evaluate_task, EvalOptions, TaskResult};
use crate::eval::task::TaskSpec;
use crate::eval::{parse_device, parse_dtype, Qwen2Lm, TextTokenizer};
use crate::model::{resolve_model, ModelMap};
use anyhow::Context;
use clap::Args;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model folder (config.json, safetensors, tokenizer.json) or a model reference
    /// (`org/name`, `org/name@rev`), resolved as `lamarck merge` does. Not needed with
    /// --responses.
    #[arg(required_unless_present = "responses")]
    pub model: Option<String>,
    /// Score saved responses instead of running a model: JSON Lines of `{task, doc_id,
    /// generated}` (or `loglikelihoods` for multiple choice), e.g. an earlier `--items`.
    #[arg(long, conflicts_with = "model")]
    pub responses: Option<PathBuf>,
    /// YAML mapping from model reference to local folder.
    #[arg(long)]
    pub model_map: Option<PathBuf>,
    /// Task files or folders of task files (*.yaml), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub tasks: Vec<PathBuf>,
    /// Split to evaluate (default: each task's test_split, else validation_split).
    #[arg(long)]
    pub split: Option<String>,
    /// Evaluate only the first N documents of each task.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Few-shot examples per prompt for every task, overriding each task's `num_fewshot`
    /// (as lm-eval's `--num_fewshot`).
    #[arg(long)]
    pub num_fewshot: Option<usize>,
    /// Prompts generated together (one batch, KV-cached); multiple choice scores all
    /// choices of a context in one pass against its cached keys and values.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Compute dtype: f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Wrap prompts in the tokenizer's chat template (one user turn).
    #[arg(long)]
    pub apply_chat_template: bool,
    /// Write the results table as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write one JSON object per item (JSON Lines).
    #[arg(long)]
    pub items: Option<PathBuf>,
}

/// Task files named by `--tasks`: files as given, folders expanded to their *.yaml/*.yml.
pub fn collect_task_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading task folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            files.sort();
            if files.is_empty() {
                anyhow::bail!("task folder {} holds no .yaml files", p.display());
            }
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            anyhow::bail!(
                "task {} does not exist (give a task file or a folder of them)",
                p.display()
            );
        }
    }
    Ok(out)
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let specs = collect_task_files(&args.tasks)?
        .iter()
        .map(|f| TaskSpec::from_file(f))
        .collect::<Result<Vec<_>, _>>()?;
    let specs: Vec<TaskSpec> = specs
        .into_iter()
        .map(|mut s| {
            s.num_fewshot = args.num_fewshot.unwrap_or(s.num_fewshot);
            s
        })
        .collect();
    if let Some(file) = &args.responses {
        return run_responses(&args, file, &specs);
    }
    let Some(model) = &args.model else {
        anyhow::bail!("give a MODEL folder or reference, or --responses FILE");
    };
    let map = args.model_map.as_deref().map(ModelMap::load).transpose()?;
    let dir = resolve_model(model, map.as_ref())?;
    let dtype = parse_dtype(&args.dtype)?;
    let device = parse_device(&args.device)?;
    let tok = TextTokenizer::from_dir(&dir)?;
    let load = std::time::Instant::now();
    let mut lm = Qwen2Lm::from_dir(&dir, dtype, &device)?;
    tracing::info!(
        "loaded {} in {:.1}s",
        dir.display(),
        load.elapsed().as_secs_f64()
    );
    let opts = EvalOptions {
        split: args.split.clone(),
        limit: args.limit,
        batch_size: args.batch_size.max(1),
        apply_chat_template: args.apply_chat_template,
    };
    let mut items_out = match &args.items {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut results = Vec::new();
    for spec in &specs {
        let (result, records) = evaluate_task(&mut lm, &tok, spec, &opts)
            .with_context(|| format!("task `{}` ({})", spec.name, spec.file.display()))?;
        if let Some(w) = items_out.as_mut() {
            for r in &records {
                serde_json::to_writer(&mut *w, r)?;
                w.write_all(b"\n")?;
            }
        }
        results.push(result);
    }
    if let Some(mut w) = items_out {
        w.flush()?;
    }
    print!("{}", format_table(&results));
    if let Some(out) = &args.out {
        write_json(out, Some(&dir), &args, &results)?;
    }
    Ok(())
}

/// `--responses FILE`: score saved responses; the same table, `--out` and `--items`.
fn run_responses(args: &EvalArgs, file: &Path, specs: &[TaskSpec]) -> anyhow::Result<()> {
    let responses = Responses::from_file(file)?;
    responses.check_tasks(specs)?;
    let mut results = Vec::new();
    let mut all_records = Vec::new();
    for spec in specs {
        let (result, records) = score_task(spec, &responses, args.split.as_deref(), args.limit)
            .with_context(|| format!("task `{}` ({})", spec.name, spec.file.display()))?;
        results.push(result);
        all_records.extend(records);
    }
    if let Some(p) = &args.items {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        );
        for r in &all_records {
            serde_json::to_writer(&mut w, r)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    print!("{}", format_table(&results));
    if let Some(out) = &args.out {
        write_json(out, None, args, &results)?;
    }
    Ok(())
}

/// The results table: task, metric, value ± stderr, items, seconds.
pub fn format_table(results: &[TaskResult]) -> String {
    let mut rows = vec![[
        "task".to_string(),
        "metric".into(),
        "value".into(),
        "± stderr".into(),
        "items".into(),
        "seconds".into(),
    ]];
    for r in results {
        for name in &r.metric_order {
            let m = &r.metrics[name];
            rows.push([
                r.task.clone(),
                name.clone(),
                format!("{:.4}", m.value),
                m.stderr.map_or("N/A".into(), |s| format!("± {s:.4}")),
                r.items.to_string(),
                format!("{:.1}", r.seconds),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn write_json(
    out: &Path,
    model: Option<&Path>,
    args: &EvalArgs,
    results: &[TaskResult],
) -> anyhow::Result<()> {
    let mut json = serde_json::json!({
        "model": model.map(|m| m.display().to_string()),
        "dtype": args.dtype,
        "device": args.device,
        "limit": args.limit,
        "results": results,
    });
    if let Some(r) = &args.responses {
        json["responses"] = r.display().to_string().into();
    }
    std::fs::write(out, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", out.display()))
}
