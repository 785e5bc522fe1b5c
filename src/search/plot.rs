//! `frontier.svg`: left, the fitness of every candidate over its id (fully scored: dots;
//! stopped early by racing: crosses at their estimate) with the best so far as a line and
//! every parent as a dashed level; right, two objectives against each other with their
//! Pareto frontier and the parents. Axes carry ticks with values and titles; the starting
//! recipe, the best and the parents are named in a label column beside each panel (laid
//! out so labels never overlap, with leader lines to their points), and a legend explains
//! every mark.
use std::fmt::Write as _;

use super::frontier::pareto;
use super::racing::RacedRow;
use super::records::{CandidateRow, ParentRow};
use super::run::{best_row, Session};

const W: f64 = 1240.0;
const H: f64 = 520.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 396.0;
const PLOT_W: f64 = 390.0;
const LABEL_GAP: f64 = 14.0;
const LINE_H: f64 = 13.0;

const BLUE: &str = "#1f77b4";
const GREEN: &str = "#2ca02c";
const RED: &str = "#d62728";
const GOLD: &str = "#e6a700";
const ORANGE: &str = "#ff7f0e";
const GREY: &str = "#8c8c8c";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Axis range widened to whole tick steps, and the ticks.
fn axis(lo: f64, hi: f64, integer: bool) -> ((f64, f64), Vec<f64>, usize) {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    if hi - lo < 1e-9 {
        lo -= 0.05_f64.max(lo.abs() * 0.05);
        hi += 0.05_f64.max(hi.abs() * 0.05);
    }
    let mut step = nice_step(hi - lo, 5.0);
    if integer {
        step = step.max(1.0).round();
    }
    let a = (lo / step).floor() * step;
    let b = (hi / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut k = 0.0;
    while a + k * step <= b + step * 1e-6 {
        ticks.push(a + k * step);
        k += 1.0;
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    ((a, b), ticks, decimals)
}

struct Panel {
    x0: f64,
    xr: (f64, f64),
    yr: (f64, f64),
}

impl Panel {
    fn x(&self, v: f64) -> f64 {
        self.x0 + (v - self.xr.0) / (self.xr.1 - self.xr.0).max(1e-12) * PLOT_W
    }
    fn y(&self, v: f64) -> f64 {
        BOTTOM - (v - self.yr.0) / (self.yr.1 - self.yr.0).max(1e-12) * (BOTTOM - TOP)
    }
}

#[allow(clippy::too_many_arguments)]
fn frame(
    s: &mut String,
    x0: f64,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    xs: (f64, f64, bool),
    ys: (f64, f64),
) -> Panel {
    let ((xa, xb), xt, xd) = axis(xs.0, xs.1, xs.2);
    let ((ya, yb), yt, yd) = axis(ys.0, ys.1, false);
    let p = Panel {
        x0,
        xr: (xa, xb),
        yr: (ya, yb),
    };
    let _ = writeln!(
        s,
        "<text x=\"{x0:.1}\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    for v in &yt {
        let y = p.y(*v);
        let _ = writeln!(s, "<line x1=\"{x0:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/><line x1=\"{:.1}\" x2=\"{x0:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#333\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.yd$}</text>", x0 + PLOT_W, x0 - 5.0, x0 - 8.0, y + 4.0);
    }
    for v in &xt {
        let x = p.x(*v);
        let _ = writeln!(s, "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP:.1}\" y2=\"{BOTTOM:.1}\" stroke=\"#f0f0f0\"/><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{BOTTOM:.1}\" y2=\"{:.1}\" stroke=\"#333\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.xd$}</text>", BOTTOM + 5.0, BOTTOM + 18.0);
    }
    let _ = writeln!(s, "<rect x=\"{x0:.1}\" y=\"{TOP:.1}\" width=\"{PLOT_W:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#333\"/>", BOTTOM - TOP);
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
        x0 + PLOT_W / 2.0,
        BOTTOM + 38.0,
        esc(xlabel)
    );
    let (lx, ly) = (x0 - 52.0, (TOP + BOTTOM) / 2.0);
    let _ = writeln!(s, "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 {lx:.1} {ly:.1})\">{}</text>", esc(ylabel));
    p
}

fn dot(s: &mut String, x: f64, y: f64, r: f64, fill: &str, opacity: f64) {
    let _ = writeln!(s, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\" fill=\"{fill}\" fill-opacity=\"{opacity}\"/>");
}

fn cross(s: &mut String, x: f64, y: f64) {
    let _ = writeln!(s, "<path d=\"M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}\" stroke=\"{GREY}\" stroke-width=\"1.3\"/>", x - 3.0, y - 3.0, x + 3.0, y + 3.0, x - 3.0, y + 3.0, x + 3.0, y - 3.0);
}

fn diamond(s: &mut String, x: f64, y: f64) {
    let r = 6.5;
    let _ = writeln!(s, "<path d=\"M{x:.1},{:.1}L{:.1},{y:.1}L{x:.1},{:.1}L{:.1},{y:.1}Z\" fill=\"{RED}\" stroke=\"black\" stroke-width=\"0.8\"/>", y - r, x + r, y + r, x - r);
}

fn star(s: &mut String, x: f64, y: f64) {
    let mut d = String::new();
    for k in 0..10 {
        let r = if k % 2 == 0 { 9.0 } else { 3.8 };
        let a = std::f64::consts::PI * (k as f64 / 5.0 - 0.5);
        let _ = write!(
            d,
            "{}{:.1},{:.1}",
            if k == 0 { "M" } else { "L" },
            x + r * a.cos(),
            y + r * a.sin()
        );
    }
    let _ = writeln!(
        s,
        "<path d=\"{d}Z\" fill=\"{GOLD}\" stroke=\"black\" stroke-width=\"0.8\"/>"
    );
}

fn square(s: &mut String, x: f64, y: f64) {
    let _ = writeln!(s, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"{ORANGE}\" stroke=\"black\" stroke-width=\"0.6\"/>", x - 4.0, y - 4.0);
}

/// Labels in the column right of a panel: (point x, point y, text, colour), placed at
/// their point's height where possible and pushed apart to one line each.
fn labels(s: &mut String, panel: &Panel, mut items: Vec<(f64, f64, String, &str)>) {
    items.sort_by(|a, b| a.1.total_cmp(&b.1));
    let n = items.len();
    let mut ys: Vec<f64> = items.iter().map(|i| i.1).collect();
    for k in 0..n {
        let min = if k == 0 {
            TOP + 4.0
        } else {
            ys[k - 1] + LINE_H
        };
        ys[k] = ys[k].max(min);
    }
    for k in (0..n).rev() {
        let max = if k + 1 == n {
            BOTTOM + 4.0
        } else {
            ys[k + 1] - LINE_H
        };
        ys[k] = ys[k].min(max);
    }
    let lx = panel.x0 + PLOT_W + LABEL_GAP;
    for ((px, py, text, colour), y) in items.iter().zip(ys) {
        let _ = writeln!(s, "<polyline points=\"{px:.1},{py:.1} {:.1},{py:.1} {:.1},{y:.1} {:.1},{y:.1}\" fill=\"none\" stroke=\"{colour}\" stroke-opacity=\"0.55\" stroke-width=\"0.8\"/>", panel.x0 + PLOT_W, lx - 6.0, lx - 2.0);
        let _ = writeln!(
            s,
            "<text x=\"{lx:.1}\" y=\"{:.1}\" fill=\"{colour}\">{}</text>",
            y + 4.0,
            esc(text)
        );
    }
}

fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        })
}

/// The plot; `ax`, `ay`: the objectives of the right panel.
pub fn svg(
    session: &Session,
    rows: &[CandidateRow],
    raced: &[RacedRow],
    parents: &[ParentRow],
    ax: usize,
    ay: usize,
) -> String {
    let names = session.objective_names();
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let best = best_row(rows);
    let start = rows.iter().find(|r| r.id == 0);

    // Left: fitness over candidates.
    let n = rows
        .iter()
        .map(|r| r.id)
        .chain(raced.iter().map(|r| r.id))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (flo, fhi) = range(
        rows.iter()
            .map(|r| r.fitness)
            .chain(raced.iter().map(|r| r.estimate))
            .chain(parents.iter().map(|p| p.fitness)),
    );
    let a = frame(
        &mut s,
        80.0,
        "Fitness of every candidate (dev split)",
        "candidate id (order of evaluation)",
        "fitness = Σ weight × score",
        (0.0, n, true),
        (flo, fhi),
    );
    let mut lab: Vec<(f64, f64, String, &str)> = Vec::new();
    for p in parents {
        let y = a.y(p.fitness);
        let _ = writeln!(s, "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{ORANGE}\" stroke-opacity=\"0.7\" stroke-dasharray=\"4,3\"/>", a.x0, a.x0 + PLOT_W);
        lab.push((
            a.x0 + PLOT_W,
            y,
            format!("{} {:.3}", p.model, p.fitness),
            "#a04a00",
        ));
    }
    for r in raced {
        cross(&mut s, a.x(r.id as f64), a.y(r.estimate));
    }
    let mut sorted: Vec<&CandidateRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.id);
    let mut so_far = f64::NEG_INFINITY;
    let mut line = String::new();
    for r in &sorted {
        so_far = so_far.max(r.fitness);
        let _ = write!(line, "{:.1},{:.1} ", a.x(r.id as f64), a.y(so_far));
        dot(&mut s, a.x(r.id as f64), a.y(r.fitness), 2.6, BLUE, 0.75);
    }
    let _ = writeln!(
        s,
        "<polyline points=\"{line}\" fill=\"none\" stroke=\"{GREEN}\" stroke-width=\"1.8\"/>"
    );
    if let Some(r) = start {
        let (x, y) = (a.x(0.0), a.y(r.fitness));
        diamond(&mut s, x, y);
        lab.push((x, y, format!("starting recipe #0 {:.3}", r.fitness), RED));
    }
    if let Some(b) = best {
        let (x, y) = (a.x(b.id as f64), a.y(b.fitness));
        star(&mut s, x, y);
        lab.push((x, y, format!("best #{} {:.3}", b.id, b.fitness), "#8a6400"));
    }
    labels(&mut s, &a, lab);

    // Right: two objectives.
    if names.len() >= 2 && ax < names.len() && ay < names.len() {
        let xr = range(
            rows.iter()
                .map(|r| r.scores[ax])
                .chain(parents.iter().map(|p| p.scores[ax])),
        );
        let yr = range(
            rows.iter()
                .map(|r| r.scores[ay])
                .chain(parents.iter().map(|p| p.scores[ay])),
        );
        let b = frame(
            &mut s,
            W / 2.0 + 80.0,
            &format!(
                "{} vs {}: Pareto frontier (dev split)",
                names[ax], names[ay]
            ),
            &format!("{} score", names[ax]),
            &format!("{} score", names[ay]),
            (xr.0, xr.1, false),
            yr,
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
        front.sort_by(|&i, &j| two[i].scores[0].total_cmp(&two[j].scores[0]));
        for r in rows {
            dot(
                &mut s,
                b.x(r.scores[ax]),
                b.y(r.scores[ay]),
                2.6,
                BLUE,
                0.45,
            );
        }
        let pts: String = front
            .iter()
            .map(|&i| format!("{:.1},{:.1} ", b.x(two[i].scores[0]), b.y(two[i].scores[1])))
            .collect();
        let _ = writeln!(
            s,
            "<polyline points=\"{pts}\" fill=\"none\" stroke=\"{RED}\" stroke-width=\"1.6\"/>"
        );
        let mut lab: Vec<(f64, f64, String, &str)> = Vec::new();
        for p in parents {
            let (x, y) = (b.x(p.scores[ax]), b.y(p.scores[ay]));
            square(&mut s, x, y);
            lab.push((x, y, p.model.clone(), "#a04a00"));
        }
        if let Some(r) = start {
            let (x, y) = (b.x(r.scores[ax]), b.y(r.scores[ay]));
            diamond(&mut s, x, y);
            lab.push((x, y, "starting recipe #0".into(), RED));
        }
        if let Some(r) = best {
            let (x, y) = (b.x(r.scores[ax]), b.y(r.scores[ay]));
            star(&mut s, x, y);
            lab.push((x, y, format!("best #{}", r.id), "#8a6400"));
        }
        labels(&mut s, &b, lab);
    }

    // Legend, wrapped into rows.
    type Mark = Box<dyn Fn(&mut String, f64, f64)>;
    let line_mark = |colour: &'static str| -> Mark {
        Box::new(move |s: &mut String, x: f64, y: f64| {
            let _ = writeln!(s, "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>", x - 7.0, x + 7.0);
        })
    };
    let entries: Vec<(Mark, &str)> = vec![
        (
            Box::new(|s: &mut String, x, y| dot(s, x, y, 3.0, BLUE, 0.8)),
            "candidate (all dev items)",
        ),
        (
            Box::new(|s: &mut String, x, y| cross(s, x, y)),
            "stopped early by racing (estimate on items seen)",
        ),
        (line_mark(GREEN), "best so far"),
        (
            Box::new(|s: &mut String, x, y| diamond(s, x, y)),
            "starting recipe",
        ),
        (
            Box::new(|s: &mut String, x, y| star(s, x, y)),
            "best candidate",
        ),
        (
            Box::new(|s: &mut String, x, y| square(s, x, y)),
            "parent (dashed line: its fitness)",
        ),
        (line_mark(RED), "Pareto frontier of the two objectives"),
    ];
    let (mut x, mut y) = (80.0, H - 44.0);
    for (mark, text) in entries {
        let width = 12.0 + 6.4 * text.chars().count() as f64 + 26.0;
        if x + width > W - 20.0 {
            x = 80.0;
            y += 20.0;
        }
        mark(&mut s, x, y - 4.0);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            x + 12.0,
            esc(text)
        );
        x += width;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let ((a, b), t, d) = axis(0.513, 1.237, false);
        assert!(a <= 0.513 && b >= 1.237, "{a} {b}");
        assert_eq!(d, 1);
        assert!(t.len() >= 4 && t.len() <= 10, "{t:?}");
        let ((_, _), t, d) = axis(0.0, 145.0, true);
        assert_eq!(d, 0);
        assert!(t.iter().all(|v| v.fract() == 0.0), "{t:?}");
    }
}
