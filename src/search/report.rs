//! `lamarck report`: the frontier table, the best candidate against the starting recipe
//! and every parent, an SVG plot (fitness over candidates; two objectives with their
//! frontier), and optionally the same comparison re-scored on a held-out split.
use std::fmt::Write as _;

use super::frontier::pareto;
use super::materialize::Materializer;
use super::records::{CandidateRow, ParentRow};
use super::run::Session;
use super::score::Scorer;
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

/// The frontier table and the comparison, from the records.
pub fn text_report(session: &Session, rows: &[CandidateRow], parents: &[ParentRow]) -> String {
    let objectives = session.objective_names();
    let mut out = String::new();
    let front = pareto(rows, &session.weights());
    let _ = writeln!(
        out,
        "{} candidates; Pareto frontier over {} ({} candidates):\n",
        rows.len(),
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
    let best = rows
        .iter()
        .max_by(|a, b| a.fitness.total_cmp(&b.fitness).then(b.id.cmp(&a.id)));
    if let Some(best) = best {
        let _ = writeln!(
            out,
            "\nbest candidate #{} vs the starting recipe and the parents (search split):\n",
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

/// Best, start and parents re-scored on `split` (e.g. the held-out `test`): one row each.
pub fn heldout(
    session: &Session,
    rows: &[CandidateRow],
    split: &str,
    limit: Option<usize>,
    cache_mem: u64,
    threads: usize,
) -> Result<Vec<(String, Vec<f64>, f64)>> {
    let mut scorer =
        Scorer::new(&session.spec.objectives, &session.spec.eval)?.on_split(split, limit);
    let map = session.model_map()?;
    let mut mat = Materializer::new(map.clone(), cache_mem, threads, session.spec.merge_seed);
    let best = rows
        .iter()
        .max_by(|a, b| a.fitness.total_cmp(&b.fitness).then(b.id.cmp(&a.id)))
        .ok_or_else(|| Error::Invalid("no candidate recorded yet".into()))?;
    let mut out = Vec::new();
    let mut tokenizer = None;
    for (label, r) in [
        (format!("best (#{})", best.id), Some(best)),
        (
            "starting recipe (#0)".to_string(),
            rows.iter().find(|r| r.id == 0),
        ),
    ] {
        let Some(r) = r else { continue };
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
        let s = scorer.score_output(&m.output)?;
        out.push((label, s.values, s.fitness));
    }
    for reference in session.parents()? {
        let path = resolve_model(&reference, map.as_ref())?;
        let tok = if path.join("tokenizer.json").is_file() {
            path.clone()
        } else {
            tokenizer.clone().unwrap_or_else(|| path.clone())
        };
        let s = scorer.score_dir(&path, &tok)?;
        out.push((reference, s.values, s.fitness));
    }
    Ok(out)
}

/// Map `v` from [lo, hi] to [a, b].
fn scale(v: f64, lo: f64, hi: f64, a: f64, b: f64) -> f64 {
    if hi - lo < 1e-12 {
        (a + b) / 2.0
    } else {
        a + (v - lo) / (hi - lo) * (b - a)
    }
}

/// Widen a data range by 5% on each side (0.05 when it is a single value).
fn pad((lo, hi): (f64, f64)) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let m = if hi - lo > 1e-12 {
        0.05 * (hi - lo)
    } else {
        0.05
    };
    (lo - m, hi + m)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The plot: left, fitness of every candidate (dots) and the best so far (line); right,
/// objective `ax` against `ay` with the two-axis frontier joined and the parents marked.
pub fn svg(
    session: &Session,
    rows: &[CandidateRow],
    parents: &[ParentRow],
    ax: usize,
    ay: usize,
) -> String {
    let names = session.objective_names();
    let (w, h, m) = (460.0, 360.0, 50.0);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n", 2.0 * w);
    // Panel 1: fitness over candidates.
    let fits: Vec<f64> = rows
        .iter()
        .map(|r| r.fitness)
        .chain(parents.iter().map(|p| p.fitness))
        .collect();
    let (flo, fhi) = pad(fits
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        }));
    let n = rows.iter().map(|r| r.id).max().unwrap_or(0).max(1) as f64;
    let px = |id: f64| scale(id, 0.0, n, m, w - 20.0);
    let py = |f: f64| scale(f, flo, fhi, h - m, 30.0);
    frame(
        &mut s,
        0.0,
        w,
        h,
        m,
        "candidate id",
        "fitness",
        (0.0, n),
        (flo, fhi),
        "fitness over candidates",
    );
    let mut best = f64::NEG_INFINITY;
    let mut line = String::new();
    let mut sorted: Vec<&CandidateRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.id);
    for r in &sorted {
        best = best.max(r.fitness);
        let _ = write!(line, "{:.1},{:.1} ", px(r.id as f64), py(best));
        let _ = writeln!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"/>",
            px(r.id as f64),
            py(r.fitness),
            if r.id == 0 { "#d62728" } else { "#1f77b4" }
        );
    }
    let _ = writeln!(
        s,
        "<polyline points=\"{line}\" fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"1.5\"/>"
    );
    for p in parents {
        let y = py(p.fitness);
        let _ = writeln!(s, "<line x1=\"{m}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#999\" stroke-dasharray=\"3,3\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\" text-anchor=\"end\">{}</text>", w - 20.0, w - 22.0, y - 2.0, esc(&p.model));
    }
    // Panel 2: two objectives.
    if names.len() >= 2 && ax < names.len() && ay < names.len() {
        let xs: Vec<f64> = rows
            .iter()
            .map(|r| r.scores[ax])
            .chain(parents.iter().map(|p| p.scores[ax]))
            .collect();
        let ys: Vec<f64> = rows
            .iter()
            .map(|r| r.scores[ay])
            .chain(parents.iter().map(|p| p.scores[ay]))
            .collect();
        let range = |v: &[f64]| {
            pad(v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                }))
        };
        let ((xlo, xhi), (ylo, yhi)) = (range(&xs), range(&ys));
        let qx = |v: f64| scale(v, xlo, xhi, w + m, 2.0 * w - 20.0);
        let qy = |v: f64| scale(v, ylo, yhi, h - m, 30.0);
        frame(
            &mut s,
            w,
            w,
            h,
            m,
            &names[ax],
            &names[ay],
            (xlo, xhi),
            (ylo, yhi),
            "frontier of two objectives",
        );
        let two: Vec<CandidateRow> = rows
            .iter()
            .map(|r| CandidateRow {
                scores: vec![r.scores[ax], r.scores[ay]],
                ..r.clone()
            })
            .collect();
        let weights = session.weights();
        let mut front = pareto(&two, &[weights[ax], weights[ay]]);
        front.sort_by(|&a, &b| two[a].scores[0].total_cmp(&two[b].scores[0]));
        for r in rows {
            let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#1f77b4\" fill-opacity=\"0.5\"/>", qx(r.scores[ax]), qy(r.scores[ay]));
        }
        let pts: String = front
            .iter()
            .map(|&i| format!("{:.1},{:.1} ", qx(two[i].scores[0]), qy(two[i].scores[1])))
            .collect();
        let _ = writeln!(
            s,
            "<polyline points=\"{pts}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\"/>"
        );
        for p in parents {
            let (x, y) = (qx(p.scores[ax]), qy(p.scores[ay]));
            let _ = writeln!(s, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"6\" fill=\"#ff7f0e\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#444\">{}</text>", x - 3.0, y - 3.0, x + 5.0, y - 4.0, esc(&p.model));
        }
    }
    s.push_str("</svg>\n");
    s
}

#[allow(clippy::too_many_arguments)]
fn frame(
    s: &mut String,
    x0: f64,
    w: f64,
    h: f64,
    m: f64,
    xl: &str,
    yl: &str,
    xr: (f64, f64),
    yr: (f64, f64),
    title: &str,
) {
    let _ = writeln!(s, "<rect x=\"{:.1}\" y=\"30\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#333\"/>", x0 + m, w - m - 20.0, h - m - 30.0);
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"18\" font-size=\"13\">{}</text>",
        x0 + m,
        esc(title)
    );
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        x0 + w / 2.0,
        h - 12.0,
        esc(xl)
    );
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" transform=\"rotate(-90 {:.1} {:.1})\">{}</text>",
        x0 + 14.0,
        h / 2.0,
        x0 + 14.0,
        h / 2.0,
        esc(yl)
    );
    let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{:.1}\">{:.3}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.3}</text>", x0 + m, h - m + 14.0, xr.0, x0 + w - 20.0, h - m + 14.0, xr.1);
    let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.3}</text><text x=\"{:.1}\" y=\"40\" text-anchor=\"end\">{:.3}</text>", x0 + m - 3.0, h - m, yr.0, x0 + m - 3.0, yr.1);
}
