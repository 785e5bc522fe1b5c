//! `lamarck report results/<run>`: frontier table, best vs starting recipe vs parents,
//! item evaluations spent, `frontier.svg`; `--split test` re-scores them on a held-out
//! split with paired bootstrap intervals; `--out` writes it all as JSON.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::model::writer::parse_size;
use crate::search::plot::svg;
use crate::search::racing::spent;
use crate::search::records;
use crate::search::report::{heldout, heldout_text, json_report, text_report};
use crate::search::run::{read_evaluations, read_raced, Session};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run folder.
    pub run: PathBuf,
    /// The two objectives of the frontier plot (default: the first two).
    #[arg(long, value_delimiter = ',')]
    pub axes: Vec<String>,
    /// Also score the best candidate, the starting recipe and every parent on this split
    /// (e.g. `test`, the held-out items the search never saw), with the best's paired
    /// differences to each of them and their bootstrap 95% intervals.
    #[arg(long)]
    pub split: Option<String>,
    /// With --split: items per task (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Where to write the plot (default: <run>/frontier.svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write the report as JSON to this file (scores, paired intervals, items spent).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Memory for cached stage outputs when re-merging (--split).
    #[arg(long, default_value = "2G")]
    pub cache_mem: String,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let session = Session::open(&args.run)?;
    let names = session.objective_names();
    let rows = session
        .dir
        .read_candidates(session.genome.len(), names.len())?;
    let raced = read_raced(&session.dir, session.genome.len())?;
    let parents = session.dir.read_parents(names.len())?;
    let spent = spent(&read_evaluations(&session.dir)?);
    print!("{}", text_report(&session, &rows, &parents, &raced, &spent));
    let axis = |i: usize| -> anyhow::Result<usize> {
        match args.axes.get(i) {
            None => Ok(i.min(names.len().saturating_sub(1))),
            Some(a) => names.iter().position(|n| n == a).with_context(|| {
                format!(
                    "--axes: no objective `{a}`; objectives: {}",
                    names.join(", ")
                )
            }),
        }
    };
    let (ax, ay) = (axis(0)?, axis(1)?);
    let plot = args
        .plot
        .clone()
        .unwrap_or_else(|| session.dir.root.join("frontier.svg"));
    records::write_atomic(&plot, &svg(&session, &rows, &raced, &parents, ax, ay))?;
    println!("\nplot: {}", plot.display());
    let held = match &args.split {
        Some(split) => {
            let cache =
                parse_size(&args.cache_mem).map_err(|e| anyhow::anyhow!("--cache-mem: {e}"))?;
            let h = heldout(&session, &rows, split, args.limit, cache, 0)?;
            println!();
            print!("{}", heldout_text(&session, &h));
            Some(h)
        }
        None => None,
    };
    if let Some(out) = &args.out {
        let v = json_report(&session, &rows, &raced, &spent, held.as_ref());
        let text = serde_json::to_string_pretty(&v).context("report JSON")? + "\n";
        records::write_atomic(out, &text).with_context(|| format!("--out {}", out.display()))?;
        println!("json: {}", out.display());
    }
    Ok(())
}
