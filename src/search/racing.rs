//! Paired racing: a candidate is scored on the dev items in chunks, in one fixed seeded
//! order shared by every candidate, and stopped as soon as it is behind the incumbent (the
//! best fully evaluated candidate so far) with the configured confidence.
//!
//! **Order.** Each objective's items are put in a seeded random order (Fisher–Yates with
//! the search's `seed`); the objectives are then interleaved in proportion to their sizes
//! (item j of an objective with n items sits at (j + ½)/n), so every chunk covers every
//! objective in the proportions of the full split.
//!
//! **Test.** After each chunk, with m_o items of objective o seen, the difference
//! candidate − incumbent is estimated per objective (mean of the paired per-item score
//! differences) and for the fitness: D = Σ_o w_o · mean_o, with standard error
//! SE = sqrt(Σ_o w_o² · s_o² / m_o) (s_o the sample standard deviation of objective o's
//! differences). The one-sided upper bound is U = D + t · SE with t the Student-t quantile
//! at 1 − α/K on Σ_o (m_o − 1) degrees of freedom, α = 1 − confidence and K the number of
//! chunks (Bonferroni over every look, so the chance that a candidate not truly behind is
//! ever stopped stays ≤ α under the t approximation). The candidate is stopped when
//! U < 0. A candidate with the incumbent's weights has every difference 0, so U = 0 and it
//! is never stopped.
//!
//! **Told value.** A stopped candidate's optimizer value is the incumbent's fitness + D:
//! the paired estimate of its fitness on the items it was scored on. It is below the
//! incumbent's (D ≤ U < 0), so the optimizer ranks it below the best, and stopped candidates
//! keep their order among themselves and against fully scored ones. The upper bound U is not
//! used: it is within a few hundredths of 0 for every stopped candidate, whatever its
//! deficit, and mostly says how many items it saw, so CMA-ES told U ranked a clearly bad
//! candidate stopped late above a fully scored one just below the incumbent. On the demo's
//! dev split (seeds 1–4, σ 0.25) the best fitness was 1.55–1.79 told U, 1.54–1.78 told D,
//! and the worst seed's run told U found nothing better than its start at σ 0.15.
use super::optimizer::Rng;

/// `racing: {chunk: N, confidence: 0.95}` of the search file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RacingSpec {
    /// Items per chunk (over all objectives).
    pub chunk: usize,
    pub confidence: f64,
}

/// The fixed scoring order: (objective, doc id) pairs.
pub fn order(counts: &[usize], seed: u64) -> Vec<(usize, usize)> {
    let mut rng = Rng::for_generation(seed ^ 0x7261_6369_6e67, 0);
    let mut keyed = Vec::new();
    for (o, &n) in counts.iter().enumerate() {
        let mut ids: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            ids.swap(i, j);
        }
        for (j, d) in ids.into_iter().enumerate() {
            keyed.push(((j as f64 + 0.5) / n as f64, o, d));
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, o, d)| (o, d)).collect()
}

/// Racing chunks: each a list of (objective, ascending doc ids).
pub type Chunks = Vec<Vec<(usize, Vec<usize>)>>;

/// The order cut into chunks, each chunk grouped by objective with ascending doc ids.
pub fn chunks(order: &[(usize, usize)], chunk: usize) -> Chunks {
    order
        .chunks(chunk.max(1))
        .map(|c| {
            let mut by: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
            for &(o, d) in c {
                by.entry(o).or_default().push(d);
            }
            by.into_iter()
                .map(|(o, mut ids)| {
                    ids.sort_unstable();
                    (o, ids)
                })
                .collect()
        })
        .collect()
}

/// The state of one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Items seen.
    pub items: usize,
    /// Estimated fitness difference candidate − incumbent.
    pub diff: f64,
    /// One-sided upper confidence bound on it.
    pub bound: f64,
    /// The candidate's own fitness estimate on the items seen (Σ w_o · mean_o).
    pub estimate: f64,
    pub stop: bool,
}

/// Paired differences collected so far.
pub struct Race {
    weights: Vec<f64>,
    /// Per objective: candidate scores and differences.
    seen: Vec<(Vec<f64>, Vec<f64>)>,
    /// α / K.
    level: f64,
}

impl Race {
    pub fn new(weights: &[f64], spec: &RacingSpec, total_items: usize) -> Race {
        let looks = total_items.div_ceil(spec.chunk.max(1)).max(1);
        Race {
            weights: weights.to_vec(),
            seen: vec![(Vec::new(), Vec::new()); weights.len()],
            level: (1.0 - spec.confidence) / looks as f64,
        }
    }

    /// Add one item: objective, candidate's score, incumbent's score.
    pub fn add(&mut self, objective: usize, candidate: f64, incumbent: f64) {
        if let Some(s) = self.seen.get_mut(objective) {
            s.0.push(candidate);
            s.1.push(candidate - incumbent);
        }
    }

    /// The decision after the items added so far. No stop while an objective with
    /// weight ≠ 0 has fewer than two items.
    pub fn verdict(&self) -> Verdict {
        let mut diff = 0.0;
        let mut var = 0.0;
        let mut df = 0usize;
        let mut estimate = 0.0;
        let mut items = 0;
        let mut enough = true;
        for ((c, d), w) in self.seen.iter().zip(&self.weights) {
            items += d.len();
            if *w == 0.0 {
                continue;
            }
            if d.len() < 2 {
                enough = false;
                continue;
            }
            let m = d.len() as f64;
            let mean = d.iter().sum::<f64>() / m;
            let s2 = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1.0);
            diff += w * mean;
            var += w * w * s2 / m;
            df += d.len() - 1;
            estimate += w * c.iter().sum::<f64>() / m;
        }
        if !enough || df == 0 {
            return Verdict {
                items,
                diff,
                bound: f64::INFINITY,
                estimate,
                stop: false,
            };
        }
        let bound = diff + t_quantile(1.0 - self.level, df as f64) * var.sqrt();
        Verdict {
            items,
            diff,
            bound,
            estimate,
            stop: bound < 0.0,
        }
    }
}

/// ln Γ(x) (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction of the incomplete beta function (Numerical Recipes' betacf).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// Regularized incomplete beta I_x(a, b).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Student-t CDF with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * inc_beta(df / 2.0, 0.5, x);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The `p` quantile of Student's t (p in (0.5, 1)), by bisection on the CDF.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1.0);
    while t_cdf(hi, df) < p && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// One row of `raced.csv`: a candidate stopped early (partial: never on the frontier).
#[derive(Debug, Clone, PartialEq)]
pub struct RacedRow {
    pub id: u64,
    pub generation: u64,
    pub genes: Vec<f64>,
    /// Items seen, of the full dev set.
    pub items: usize,
    pub of: usize,
    /// The candidate's fitness estimate on the items seen.
    pub estimate: f64,
    /// Estimated fitness difference to the incumbent and its upper confidence bound.
    pub diff: f64,
    pub bound: f64,
    /// The incumbent's id.
    pub incumbent: u64,
    /// The value the optimizer was told: incumbent fitness + bound.
    pub told: f64,
    pub hash: String,
    pub merge_s: f64,
    pub eval_s: f64,
}

pub fn raced_header(genes: &[String]) -> String {
    let mut cols = vec!["id".to_string(), "generation".into()];
    cols.extend(genes.iter().cloned());
    cols.extend(
        [
            "items",
            "of",
            "estimate",
            "diff",
            "bound",
            "incumbent",
            "told",
            "hash",
            "merge_s",
            "eval_s",
        ]
        .map(String::from),
    );
    cols.join(",")
}

impl RacedRow {
    pub fn to_line(&self) -> String {
        let mut cols = vec![self.id.to_string(), self.generation.to_string()];
        cols.extend(self.genes.iter().map(|g| g.to_string()));
        cols.extend([
            self.items.to_string(),
            self.of.to_string(),
            self.estimate.to_string(),
            self.diff.to_string(),
            self.bound.to_string(),
            self.incumbent.to_string(),
            self.told.to_string(),
            self.hash.clone(),
            format!("{:.3}", self.merge_s),
            format!("{:.3}", self.eval_s),
        ]);
        cols.join(",")
    }

    pub fn parse(line: &str, genes: usize) -> Result<RacedRow, String> {
        let cols: Vec<&str> = line.split(',').collect();
        let want = 2 + genes + 10;
        if cols.len() != want {
            return Err(format!("{} columns, expected {want}", cols.len()));
        }
        let num = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| format!("`{s}` is not a number"))
        };
        let int = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("`{s}` is not an integer"))
        };
        let g = 2 + genes;
        Ok(RacedRow {
            id: int(cols[0])?,
            generation: int(cols[1])?,
            genes: cols[2..g]
                .iter()
                .map(|s| num(s))
                .collect::<Result<_, _>>()?,
            items: int(cols[g])? as usize,
            of: int(cols[g + 1])? as usize,
            estimate: num(cols[g + 2])?,
            diff: num(cols[g + 3])?,
            bound: num(cols[g + 4])?,
            incumbent: int(cols[g + 5])?,
            told: num(cols[g + 6])?,
            hash: cols[g + 7].to_string(),
            merge_s: num(cols[g + 8])?,
            eval_s: num(cols[g + 9])?,
        })
    }
}

/// One row of `evaluations.csv`: what scoring one candidate (or `parent:<ref>`) cost.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    pub who: String,
    /// Items scored (from the model or the cache), of the full dev set.
    pub items: usize,
    pub of: usize,
    /// Items the model was run on.
    pub model_items: usize,
    /// Items answered by the response cache.
    pub cached_items: usize,
}

pub const EVAL_HEADER: &str = "who,items,of,model_items,cached_items";

impl EvalRow {
    pub fn to_line(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.who, self.items, self.of, self.model_items, self.cached_items
        )
    }
    pub fn parse(line: &str) -> Result<EvalRow, String> {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() != 5 {
            return Err(format!("{} columns, expected 5", cols.len()));
        }
        let int = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| format!("`{s}` is not an integer"))
        };
        Ok(EvalRow {
            who: cols[0].to_string(),
            items: int(cols[1])?,
            of: int(cols[2])?,
            model_items: int(cols[3])?,
            cached_items: int(cols[4])?,
        })
    }
}

/// Totals over `evaluations.csv`: the last line of each id counts for items; every line
/// counts for model calls (work done before a crash was done).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Spent {
    /// Candidates (full or stopped) and parents.
    pub scored: usize,
    /// Item evaluations the search used (model or cache).
    pub items: usize,
    /// What scoring every one of them on every item would have used.
    pub full: usize,
    pub model_items: usize,
    pub cached_items: usize,
}

pub fn spent(rows: &[EvalRow]) -> Spent {
    let mut last: std::collections::BTreeMap<&str, &EvalRow> = Default::default();
    let mut s = Spent::default();
    for r in rows {
        last.insert(&r.who, r);
        s.model_items += r.model_items;
    }
    for r in last.values() {
        s.scored += 1;
        s.items += r.items;
        s.full += r.of;
        s.cached_items += r.cached_items;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        for (p, df, want) in [
            (0.975, 1.0, 12.706),
            (0.95, 5.0, 2.015),
            (0.975, 10.0, 2.228),
            (0.999, 30.0, 3.385),
            (0.95, 1000.0, 1.646),
        ] {
            let t = t_quantile(p, df);
            assert!((t - want).abs() < 2e-3, "t({p}, {df}) = {t}, want {want}");
        }
    }

    #[test]
    fn the_order_interleaves_objectives_and_is_a_permutation() {
        let o = order(&[10, 5], 3);
        assert_eq!(o.len(), 15);
        let mut a: Vec<usize> = o.iter().filter(|x| x.0 == 0).map(|x| x.1).collect();
        a.sort_unstable();
        assert_eq!(a, (0..10).collect::<Vec<_>>());
        // the first three items hold both objectives
        assert!(o[..3].iter().any(|x| x.0 == 1) && o[..3].iter().any(|x| x.0 == 0));
        assert_eq!(order(&[10, 5], 3), o);
        assert_ne!(order(&[10, 5], 4), o);
        let c = chunks(&o, 6);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].iter().map(|(_, ids)| ids.len()).sum::<usize>(), 6);
    }
}
