//! `lamarck export`: a recorded candidate → the multi-document recipe that means it, with
//! every stage's seed and compatibility profile written in, so that `lamarck merge` of the
//! exported file writes weights with the hash recorded for the candidate.
use super::materialize::DEFAULT_SEED;
use super::records::CandidateRow;
use super::run::Session;
use super::{Error, Result};

/// Which candidate to export.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pick {
    Best,
    Id(u64),
}

/// The chosen row.
pub fn pick(session: &Session, which: Pick) -> Result<CandidateRow> {
    let rows = session
        .dir
        .read_candidates(session.genome.len(), session.spec.objectives.len())?;
    let found = match which {
        Pick::Best => rows
            .iter()
            .max_by(|a, b| a.fitness.total_cmp(&b.fitness).then(b.id.cmp(&a.id)))
            .cloned(),
        Pick::Id(id) => rows.iter().find(|r| r.id == id).cloned(),
    };
    found.ok_or_else(|| Error::Records {
        path: session.dir.candidates(),
        message: match which {
            Pick::Best => "no candidate recorded yet".into(),
            Pick::Id(id) => format!(
                "no candidate {id}; recorded ids are {}..={}",
                rows.first().map_or(0, |r| r.id),
                rows.iter().map(|r| r.id).max().unwrap_or(0)
            ),
        },
    })
}

/// The recipe text of `row`, seeds and profiles pinned.
pub fn recipe_text(session: &Session, row: &CandidateRow) -> Result<String> {
    let recipe = session.recipe(&row.genes)?;
    let mut seeds = Vec::new();
    let mut compat = Vec::new();
    for (i, s) in recipe.stages.iter().enumerate() {
        let name = recipe.stage_name(i).to_string();
        seeds.push((
            name.clone(),
            session.spec.merge_seed.or(s.seed).unwrap_or(DEFAULT_SEED),
        ));
        compat.push((name, s.compat));
    }
    let mut docs = session.genome.substitute(&row.genes)?;
    docs.pin(&seeds, &compat);
    let mut out = format!(
        "# Exported by lamarck {} from {}: candidate {}, fitness {}.\n# `lamarck merge` of this file writes weights with sha256 {} (lamarck's weights hash).\n",
        env!("CARGO_PKG_VERSION"),
        session.dir.root.display(),
        row.id,
        row.fitness,
        row.hash
    );
    for (g, v) in session.spec.genes.iter().zip(&row.genes) {
        out.push_str(&format!("#   {} = {v}\n", g.name));
    }
    out.push_str(&docs.render()?);
    Ok(out)
}
