//! The paired bootstrap of `lamarck report --split`: the best candidate against another
//! model on the same held-out items.
//!
//! For objective o with items i = 1..n_o (every item of the split, doc ids in order), the
//! paired difference is d_oi = score_best(o, i) − score_other(o, i); the statistic per
//! objective is mean_i d_oi and for the fitness Σ_o w_o · mean_i d_oi. One bootstrap
//! replicate draws, for each objective in the search file's order, n_o indices with
//! replacement (index = x mod n_o for successive outputs x of SplitMix64 started at
//! [`SEED`]; the state is restarted for every comparison) and recomputes the statistics;
//! [`REPLICATES`] replicates. The 95% interval is the percentile interval: sorted
//! replicate values v, [v[⌊0.025·B⌋], v[⌈0.975·B⌉ − 1]].
use serde::Serialize;

/// Bootstrap replicates.
pub const REPLICATES: usize = 2000;
/// SplitMix64 start state of every comparison.
pub const SEED: u64 = 20_261_201;

/// SplitMix64 (Steele, Lea, Flood 2014).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A mean difference with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

/// One comparison: per objective and for the fitness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    pub objectives: Vec<Interval>,
    pub fitness: Interval,
    pub items: Vec<usize>,
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

fn percentile(mut v: Vec<f64>, mean: f64) -> Interval {
    v.sort_by(f64::total_cmp);
    let b = v.len();
    if b == 0 {
        return Interval {
            mean,
            lo: mean,
            hi: mean,
        };
    }
    let lo = v[((0.025 * b as f64).floor() as usize).min(b - 1)];
    let hi = v[((0.975 * b as f64).ceil() as usize).clamp(1, b) - 1];
    Interval { mean, lo, hi }
}

/// `diffs[o]`: the paired differences of objective o; `weights[o]`: its fitness weight.
pub fn bootstrap(diffs: &[Vec<f64>], weights: &[f64], replicates: usize, seed: u64) -> Paired {
    let means: Vec<f64> = diffs.iter().map(|d| mean(d)).collect();
    let fit: f64 = means.iter().zip(weights).map(|(m, w)| m * w).sum();
    let mut rng = SplitMix64(seed);
    let mut per: Vec<Vec<f64>> = vec![Vec::with_capacity(replicates); diffs.len()];
    let mut fits = Vec::with_capacity(replicates);
    for _ in 0..replicates {
        let mut f = 0.0;
        for (o, d) in diffs.iter().enumerate() {
            let n = d.len();
            let m = if n == 0 {
                0.0
            } else {
                let mut s = 0.0;
                for _ in 0..n {
                    s += d[(rng.next() % n as u64) as usize];
                }
                s / n as f64
            };
            per[o].push(m);
            f += weights[o] * m;
        }
        fits.push(f);
    }
    Paired {
        objectives: per
            .into_iter()
            .zip(&means)
            .map(|(v, m)| percentile(v, *m))
            .collect(),
        fitness: percentile(fits, fit),
        items: diffs.iter().map(Vec::len).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_gain_has_an_interval_above_zero_and_no_difference_a_point() {
        let gain: Vec<f64> = (0..200)
            .map(|i| if i % 3 == 0 { 1.0 } else { 0.0 })
            .collect();
        let p = bootstrap(&[gain.clone(), vec![0.0; 50]], &[1.0, 2.0], 500, 7);
        assert!(p.fitness.lo > 0.2 && p.fitness.hi < 0.5, "{p:?}");
        assert!((p.fitness.mean - 67.0 / 200.0).abs() < 1e-12);
        assert_eq!(
            p.objectives[1],
            Interval {
                mean: 0.0,
                lo: 0.0,
                hi: 0.0
            }
        );
        // seeded: the same inputs give the same interval
        assert_eq!(bootstrap(&[gain, vec![0.0; 50]], &[1.0, 2.0], 500, 7), p);
    }
}
