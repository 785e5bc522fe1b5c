//! `lamarck export results/<run> [--best | --id N] [--out recipe.yaml]`: a recorded
//! candidate as a multi-document recipe for `lamarck merge`.
use std::path::PathBuf;

use clap::Args;

use crate::search::export::{pick, recipe_text, Pick};
use crate::search::run::Session;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The run folder.
    pub run: PathBuf,
    /// The candidate with the highest fitness (the default).
    #[arg(long, conflicts_with = "id")]
    pub best: bool,
    /// The candidate with this id (see candidates.csv).
    #[arg(long)]
    pub id: Option<u64>,
    /// Write the recipe here instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Instead of exporting, check that the model folder DIR (e.g. what `lamarck merge`
    /// wrote from an exported recipe) holds the candidate's weights: same weights hash.
    #[arg(long, value_name = "DIR")]
    pub verify: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let session = Session::open(&args.run)?;
    let which = args.id.map_or(Pick::Best, Pick::Id);
    let row = pick(&session, which)?;
    if let Some(dir) = &args.verify {
        let hash = crate::search::materialize::hash_dir(dir)?;
        if hash != row.hash {
            anyhow::bail!(
                "{} holds other weights than candidate {}: weights sha256 {hash}, recorded {}",
                dir.display(),
                row.id,
                row.hash
            );
        }
        println!(
            "{}: weights sha256 {hash} = candidate {}",
            dir.display(),
            row.id
        );
        return Ok(());
    }
    let text = recipe_text(&session, &row)?;
    match &args.out {
        Some(p) => {
            std::fs::write(p, &text)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
            eprintln!(
                "wrote {} (candidate {}, fitness {:.4}, weights sha256 {})",
                p.display(),
                row.id,
                row.fitness,
                row.hash
            );
            if let Some(map) = &session.spec.model_map {
                eprintln!(
                    "merge it with `lamarck merge {} --out DIR --model-map {}`",
                    p.display(),
                    map.display()
                );
            }
        }
        None => print!("{text}"),
    }
    Ok(())
}
