//! `lamarck report results/<run>`: frontier table, best vs starting recipe vs parents,
//! `frontier.svg`; `--split test` re-scores them on a held-out split.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::model::writer::parse_size;
use crate::search::records;
use crate::search::report::{heldout, svg, table, text_report};
use crate::search::run::Session;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run folder.
    pub run: PathBuf,
    /// The two objectives of the frontier plot (default: the first two).
    #[arg(long, value_delimiter = ',')]
    pub axes: Vec<String>,
    /// Also score the best candidate, the starting recipe and every parent on this split
    /// (e.g. `test`, the held-out items the search never saw).
    #[arg(long)]
    pub split: Option<String>,
    /// With --split: items per task (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Where to write the plot (default: <run>/frontier.svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
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
    let parents = session.dir.read_parents(names.len())?;
    print!("{}", text_report(&session, &rows, &parents));
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
    records::write_atomic(&plot, &svg(&session, &rows, &parents, ax, ay))?;
    println!("\nplot: {}", plot.display());
    if let Some(split) = &args.split {
        let cache = parse_size(&args.cache_mem).map_err(|e| anyhow::anyhow!("--cache-mem: {e}"))?;
        let scored = heldout(&session, &rows, split, args.limit, cache, 0)?;
        let mut t = vec![{
            let mut h = vec!["model".to_string()];
            h.extend(names.iter().cloned());
            h.push("fitness".into());
            h
        }];
        for (label, values, fitness) in scored {
            let mut line = vec![label];
            line.extend(values.iter().map(|v| format!("{v:.4}")));
            line.push(format!("{fitness:.4}"));
            t.push(line);
        }
        println!("\non split `{split}`:\n");
        print!("{}", table(&t));
    }
    Ok(())
}
