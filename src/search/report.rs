//! `lamarck report`: the frontier table, the best candidate against the starting recipe
//! and every parent, an SVG plot (fitness over candidates; two objectives with their
//! frontier), and optionally the same comparison re-scored on a held-out split.
use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::cache::ResponseCache;
use super::frontier::pareto;
use super::materialize::{hash_dir, Materializer};
use super::paired::{bootstrap, Interval, Paired, REPLICATES, SEED};
use super::racing::{RacedRow, Spent};
use super::records::{self, CandidateRow, ParentRow};
use super::run::{best_row, Session};
use super::score::{ItemResult, Scorer, Source, Subject};
use super::{Error, Result};
use crate::model::resolve_model;

/// A table with left-aligned columns.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn f4(x: f64) -> String {
    format!("{x:.4}")
}

/// How much scoring the search did, as one sentence.
pub fn spent_line(spent: &Spent, raced: usize) -> String {
    let pct = |a: usize, b: usize| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    format!(
        "item evaluations: {} of the {} a full evaluation of every candidate and parent needs ({:.1}%); the model ran on {} items, the response cache answered {}; {raced} candidate(s) stopped early by racing",
        spent.items,
        spent.full,
        pct(spent.items, spent.full),
        spent.model_items,
        spent.cached_items,
    )
}

/// The frontier table and the comparison, from the records.
pub fn text_report(
    session: &Session,
    rows: &[CandidateRow],
    parents: &[ParentRow],
    raced: &[RacedRow],
    spent: &Spent,
) -> String {
    let objectives = session.objective_names();
    let mut out = String::new();
    let front = pareto(rows, &session.weights());
    let _ = writeln!(
        out,
        "{} candidates fully scored, {} stopped early; Pareto frontier over {} ({} candidates):\n",
        rows.len(),
        raced.len(),
        objectives.join(", "),
        front.len()
    );
    let mut t = vec![{
        let mut h = vec!["id".to_string(), "gen".into()];
        h.extend(objectives.iter().cloned());
        h.push("fitness".into());
        h
    }];
    let mut sorted = front.clone();
    sorted.sort_by(|&a, &b| rows[b].fitness.total_cmp(&rows[a].fitness));
    for i in sorted {
        let r = &rows[i];
        let mut line = vec![r.id.to_string(), r.generation.to_string()];
        line.extend(r.scores.iter().map(|s| f4(*s)));
        line.push(f4(r.fitness));
        t.push(line);
    }
    out.push_str(&table(&t));
    let _ = writeln!(out, "\n{}", spent_line(spent, raced.len()));
    if let Some(best) = best_row(rows) {
        let _ = writeln!(
            out,
            "\nbest candidate #{} vs the starting recipe and the parents (search split, dev):\n",
            best.id
        );
        let mut t = vec![{
            let mut h = vec!["model".to_string()];
            h.extend(objectives.iter().cloned());
            h.push("fitness".into());
            h
        }];
        let mut push = |name: String, scores: &[f64], fitness: f64| {
            let mut line = vec![name];
            line.extend(scores.iter().map(|s| f4(*s)));
            line.push(f4(fitness));
            t.push(line);
        };
        push(format!("best (#{})", best.id), &best.scores, best.fitness);
        if let Some(s) = rows.iter().find(|r| r.id == 0) {
            push("starting recipe (#0)".into(), &s.scores, s.fitness);
        }
        for p in parents {
            push(p.model.clone(), &p.scores, p.fitness);
        }
        out.push_str(&table(&t));
        let _ = writeln!(out, "\ngenes of #{} (start → best):", best.id);
        if let Some(s) = rows.iter().find(|r| r.id == 0) {
            for ((g, a), b) in session.spec.genes.iter().zip(&s.genes).zip(&best.genes) {
                let _ = writeln!(
                    out,
                    "  {:<28} {a:.4} → {b:.4}   [{}, {}]",
                    g.name, g.range.0, g.range.1
                );
            }
        }
    }
    out
}

/// One model scored on the held-out split.
#[derive(Debug, Clone)]
pub struct Scored {
    pub label: String,
    /// Its name in `items.jsonl` (candidate id or `parent:<reference>`).
    pub who: String,
    pub values: Vec<f64>,
    pub fitness: f64,
    pub items: Vec<ItemResult>,
}

/// The held-out comparison: every model's scores, and the best against each other one.
#[derive(Debug, Clone)]
pub struct HeldOut {
    pub split: String,
    pub models: Vec<Scored>,
    /// (label of the other model, best − other).
    pub paired: Vec<(String, Paired)>,
    /// Items answered by the response cache / by the model.
    pub cache_hits: u64,
    pub model_items: u64,
}

/// Best, start and parents scored on `split` (e.g. the held-out `test`), through the run's
/// response cache; their items are appended to `items.jsonl` (with `"split"`, once), and
/// the best is compared with each of the others by the paired bootstrap of [`super::paired`].
pub fn heldout(
    session: &Session,
    rows: &[CandidateRow],
    split: &str,
    limit: Option<usize>,
    cache_mem: u64,
    threads: usize,
) -> Result<HeldOut> {
    let mut scorer =
        Scorer::new(&session.spec.objectives, &session.spec.eval)?.on_split(split, limit);
    let mut cache = ResponseCache::open(&session.dir.responses())?;
    let map = session.model_map()?;
    let mut mat = Materializer::new(map.clone(), cache_mem, threads, session.spec.merge_seed);
    let best = best_row(rows).ok_or_else(|| Error::Invalid("no candidate recorded yet".into()))?;
    let mut models = Vec::new();
    let mut tokenizer = None;
    let mut picks = vec![(format!("best (#{})", best.id), best)];
    if let Some(start) = rows.iter().find(|r| r.id == 0) {
        picks.push(("starting recipe (#0)".to_string(), start));
    }
    for (label, r) in picks {
        let m = mat.materialize(&session.recipe(&r.genes)?)?;
        if m.hash != r.hash {
            return Err(Error::Candidate {
                id: r.id,
                message: format!(
                    "re-merged weights hash {} differs from the recorded {}",
                    m.hash, r.hash
                ),
            });
        }
        tokenizer.get_or_insert_with(|| m.output.tokenizer_dir.clone());
        let mut subject = Subject::new(Source::Memory(&m.output), &m.hash);
        let s = scorer.score_all(&mut subject, &mut cache)?;
        models.push(Scored {
            label,
            who: r.id.to_string(),
            values: s.values,
            fitness: s.fitness,
            items: s.items,
        });
    }
    for reference in session.parents()? {
        let path = resolve_model(&reference, map.as_ref())?;
        let tok = if path.join("tokenizer.json").is_file() {
            path.clone()
        } else {
            tokenizer.clone().unwrap_or_else(|| path.clone())
        };
        let weights = hash_dir(&path)?;
        let mut subject = Subject::new(
            Source::Dir {
                dir: &path,
                tokenizer: &tok,
            },
            &weights,
        );
        let s = scorer.score_all(&mut subject, &mut cache)?;
        models.push(Scored {
            label: reference.clone(),
            who: format!("parent:{reference}"),
            values: s.values,
            fitness: s.fitness,
            items: s.items,
        });
    }
    // items.jsonl: append what is not there yet
    let items_path = session.dir.items();
    let mut have: BTreeSet<(String, String, String, usize)> = BTreeSet::new();
    if let Ok(text) = std::fs::read_to_string(&items_path) {
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                let f = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                let doc = v.get("doc_id").and_then(|x| x.as_u64()).unwrap_or(0) as usize;
                have.insert((f("candidate"), f("objective"), f("split"), doc));
            }
        }
    }
    let mut seen_who = BTreeSet::new();
    let mut lines = Vec::new();
    for m in &models {
        if !seen_who.insert(m.who.clone()) {
            continue; // the best is the starting recipe
        }
        for l in scorer.item_lines(&m.who, &m.items)? {
            let key = (
                l.candidate.clone(),
                l.objective.clone(),
                l.split.clone(),
                l.doc_id,
            );
            if !have.contains(&key) {
                if let Ok(text) = serde_json::to_string(&l) {
                    lines.push(text);
                }
            }
        }
    }
    records::append_lines(&items_path, &lines)?;
    let weights = session.weights();
    let objectives = session.spec.objectives.len();
    let mut paired = Vec::new();
    for other in &models[1..] {
        let diffs: Vec<Vec<f64>> = (0..objectives)
            .map(|o| {
                let a = models[0].items.iter().filter(|r| r.objective == o);
                let b = other.items.iter().filter(|r| r.objective == o);
                a.zip(b).map(|(x, y)| x.score - y.score).collect()
            })
            .collect();
        paired.push((
            other.label.clone(),
            bootstrap(&diffs, &weights, REPLICATES, SEED),
        ));
    }
    Ok(HeldOut {
        split: split.to_string(),
        models,
        paired,
        cache_hits: cache.hits,
        model_items: cache.misses,
    })
}

fn signed(x: f64) -> String {
    format!("{x:+.4}")
}

fn interval(i: &Interval) -> String {
    format!("{} [{}, {}]", signed(i.mean), signed(i.lo), signed(i.hi))
}

/// The held-out tables: scores, then the paired differences.
pub fn heldout_text(session: &Session, h: &HeldOut) -> String {
    let names = session.objective_names();
    let mut out = String::new();
    let mut t = vec![{
        let mut v = vec!["model".to_string()];
        v.extend(names.iter().cloned());
        v.push("fitness".into());
        v
    }];
    for m in &h.models {
        let mut line = vec![m.label.clone()];
        line.extend(m.values.iter().map(|v| f4(*v)));
        line.push(f4(m.fitness));
        t.push(line);
    }
    let items: Vec<String> = h
        .models
        .first()
        .map(|m| {
            (0..names.len())
                .map(|o| m.items.iter().filter(|r| r.objective == o).count())
                .map(|n| n.to_string())
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "on split `{}` ({} items per objective):\n",
        h.split,
        items.join(" / ")
    );
    out.push_str(&table(&t));
    if let Some(best) = h.models.first() {
        let _ = writeln!(
            out,
            "\n{} minus each model on the same `{}` items: mean difference [paired bootstrap 95% interval; {REPLICATES} resamples of the items within each objective, seed {SEED}]:\n",
            best.label, h.split
        );
        let mut t = vec![{
            let mut v = vec!["against".to_string()];
            v.extend(names.iter().cloned());
            v.push("fitness".into());
            v
        }];
        for (label, p) in &h.paired {
            let mut line = vec![label.clone()];
            line.extend(p.objectives.iter().map(interval));
            line.push(interval(&p.fitness));
            t.push(line);
        }
        out.push_str(&table(&t));
        let above = h.paired.iter().filter(|(_, p)| p.fitness.lo > 0.0).count();
        let _ = writeln!(
            out,
            "\nthe best's fitness interval lies above zero against {above} of {} models",
            h.paired.len()
        );
    }
    let _ = writeln!(
        out,
        "scoring `{}`: the model ran on {} items, the response cache answered {}",
        h.split, h.model_items, h.cache_hits
    );
    out
}

#[derive(Serialize)]
struct JsonModel<'a> {
    label: &'a str,
    candidate: &'a str,
    scores: serde_json::Map<String, serde_json::Value>,
    fitness: f64,
}

/// The `--out` JSON: search totals, and the held-out comparison when there is one.
pub fn json_report(
    session: &Session,
    rows: &[CandidateRow],
    raced: &[RacedRow],
    spent: &Spent,
    heldout: Option<&HeldOut>,
) -> serde_json::Value {
    let names = session.objective_names();
    let scores = |v: &[f64]| -> serde_json::Map<String, serde_json::Value> {
        names
            .iter()
            .zip(v)
            .map(|(n, x)| (n.clone(), serde_json::json!(x)))
            .collect()
    };
    let best = best_row(rows);
    let mut out = serde_json::json!({
        "run": session.dir.root.display().to_string(),
        "objectives": names,
        "weights": session.weights(),
        "candidates": rows.len(),
        "stopped_early": raced.len(),
        "item_evaluations": spent,
        "best": best.map(|b| serde_json::json!({
            "id": b.id,
            "hash": b.hash,
            "dev": {"scores": scores(&b.scores), "fitness": b.fitness},
        })),
    });
    if let Some(h) = heldout {
        let models: Vec<JsonModel> = h
            .models
            .iter()
            .map(|m| JsonModel {
                label: &m.label,
                candidate: &m.who,
                scores: scores(&m.values),
                fitness: m.fitness,
            })
            .collect();
        let paired: Vec<serde_json::Value> = h
            .paired
            .iter()
            .map(|(label, p)| {
                let per: serde_json::Map<String, serde_json::Value> = names
                    .iter()
                    .zip(&p.objectives)
                    .map(|(n, i)| (n.clone(), serde_json::json!(i)))
                    .collect();
                let items: serde_json::Map<String, serde_json::Value> = names
                    .iter()
                    .zip(&p.items)
                    .map(|(n, i)| (n.clone(), serde_json::json!(i)))
                    .collect();
                serde_json::json!({
                    "best": h.models.first().map(|m| m.label.clone()),
                    "against": label,
                    "items": items,
                    "objectives": per,
                    "fitness": p.fitness,
                    "fitness_above_zero": p.fitness.lo > 0.0,
                })
            })
            .collect();
        out["heldout"] = serde_json::json!({
            "split": h.split,
            "models": models,
            "paired": paired,
            "bootstrap": {
                "replicates": REPLICATES,
                "seed": SEED,
                "rng": "SplitMix64, restarted for every comparison; index = next() mod n",
                "resampling": "items with replacement, within each objective, n_o draws per objective per replicate",
                "interval": "percentile 95%: sorted replicates v, [v[floor(0.025 B)], v[ceil(0.975 B) - 1]]",
                "statistic": "per objective: mean of score(best) - score(other) over the split's items; fitness: sum of weight x that mean",
            },
            "cache_hits": h.cache_hits,
            "model_items": h.model_items,
        });
    }
    out
}
