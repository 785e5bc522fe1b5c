//! CMA-ES (Hansen's `purecma` formulation: weighted recombination, cumulative step-size
//! adaptation, rank-one + rank-μ covariance update), minimizing.
//!
//! Written here rather than taken from a crate: the searches have ≤ ~50 genes, so a
//! Jacobi eigendecomposition per generation costs microseconds, and owning the code keeps
//! the whole state a plain serializable struct (resume after `kill -9`) and every sample a
//! pure function of (seed, generation), so a resumed run asks exactly the same points.
use serde::{Deserialize, Serialize};

use super::optimizer::Rng;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cmaes {
    pub n: usize,
    pub lambda: usize,
    pub mu: usize,
    weights: Vec<f64>,
    mueff: f64,
    cc: f64,
    cs: f64,
    c1: f64,
    cmu: f64,
    damps: f64,
    chi_n: f64,
    pub mean: Vec<f64>,
    pub sigma: f64,
    c: Vec<Vec<f64>>,
    pc: Vec<f64>,
    ps: Vec<f64>,
    /// Eigenvectors (columns) and square roots of eigenvalues of `c`.
    b: Vec<Vec<f64>>,
    d: Vec<f64>,
    /// Generations told so far (the next `ask` samples generation `generation`).
    pub generation: u64,
    pub seed: u64,
}

impl Cmaes {
    /// Start at `mean` with step size `sigma`; `lambda` = 0 picks `4 + ⌊3 ln n⌋`.
    pub fn new(mean: Vec<f64>, sigma: f64, lambda: usize, seed: u64) -> Cmaes {
        let n = mean.len().max(1);
        let nf = n as f64;
        let lambda = if lambda == 0 {
            4 + (3.0 * nf.ln()).floor() as usize
        } else {
            lambda.max(2)
        };
        let mu = lambda / 2;
        let raw: Vec<f64> = (0..mu)
            .map(|i| ((lambda as f64 + 1.0) / 2.0).ln() - ((i + 1) as f64).ln())
            .collect();
        let sum: f64 = raw.iter().sum();
        let weights: Vec<f64> = raw.iter().map(|w| w / sum).collect();
        let mueff = 1.0 / weights.iter().map(|w| w * w).sum::<f64>();
        let cc = (4.0 + mueff / nf) / (nf + 4.0 + 2.0 * mueff / nf);
        let cs = (mueff + 2.0) / (nf + mueff + 5.0);
        let c1 = 2.0 / ((nf + 1.3).powi(2) + mueff);
        let cmu = (1.0 - c1).min(2.0 * (mueff - 2.0 + 1.0 / mueff) / ((nf + 2.0).powi(2) + mueff));
        let damps = 1.0 + 2.0 * (0.0f64).max(((mueff - 1.0) / (nf + 1.0)).sqrt() - 1.0) + cs;
        let chi_n = nf.sqrt() * (1.0 - 1.0 / (4.0 * nf) + 1.0 / (21.0 * nf * nf));
        let identity: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
            .collect();
        Cmaes {
            n,
            lambda,
            mu,
            weights,
            mueff,
            cc,
            cs,
            c1,
            cmu,
            damps,
            chi_n,
            mean,
            sigma,
            c: identity.clone(),
            pc: vec![0.0; n],
            ps: vec![0.0; n],
            b: identity,
            d: vec![1.0; n],
            generation: 0,
            seed,
        }
    }

    /// The `lambda` points of the current generation (deterministic).
    pub fn ask(&self) -> Vec<Vec<f64>> {
        let mut rng = Rng::for_generation(self.seed, self.generation);
        (0..self.lambda).map(|_| self.point(&mut rng)).collect()
    }

    /// Point `k` of the random stream of generation `stream`, drawn from the current
    /// distribution: `ask()[k]` when `stream` is the current generation (the asynchronous
    /// loop asks points one at a time, possibly past the current generation's λ).
    pub fn sample(&self, stream: u64, k: usize) -> Vec<f64> {
        let mut rng = Rng::for_generation(self.seed, stream);
        for _ in 0..k * self.n {
            rng.normal();
        }
        self.point(&mut rng)
    }

    fn point(&self, rng: &mut Rng) -> Vec<f64> {
        let z: Vec<f64> = (0..self.n).map(|_| rng.normal()).collect();
        (0..self.n)
            .map(|i| {
                let y: f64 = (0..self.n).map(|j| self.b[i][j] * self.d[j] * z[j]).sum();
                self.mean[i] + self.sigma * y
            })
            .collect()
    }

    /// Update from the generation's points and their values (lower is better).
    pub fn tell(&mut self, xs: &[Vec<f64>], values: &[f64]) {
        let n = self.n;
        let mut order: Vec<usize> = (0..xs.len()).collect();
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        let old = self.mean.clone();
        let mut mean = vec![0.0; n];
        for (w, &k) in self.weights.iter().zip(&order) {
            for (m, x) in mean.iter_mut().zip(&xs[k]) {
                *m += w * x;
            }
        }
        self.mean = mean;
        let y: Vec<f64> = (0..n)
            .map(|i| (self.mean[i] - old[i]) / self.sigma)
            .collect();
        // C^{-1/2} y = B D^{-1} Bᵀ y
        let bty: Vec<f64> = (0..n)
            .map(|j| (0..n).map(|i| self.b[i][j] * y[i]).sum::<f64>() / self.d[j])
            .collect();
        let inv_sqrt_y: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| self.b[i][j] * bty[j]).sum())
            .collect();
        let cs = self.cs;
        for i in 0..n {
            self.ps[i] =
                (1.0 - cs) * self.ps[i] + (cs * (2.0 - cs) * self.mueff).sqrt() * inv_sqrt_y[i];
        }
        let ps_norm = self.ps.iter().map(|v| v * v).sum::<f64>().sqrt();
        let gen = (self.generation + 1) as f64;
        let hsig = ps_norm / (1.0 - (1.0 - cs).powf(2.0 * gen)).sqrt() / self.chi_n
            < 1.4 + 2.0 / (n as f64 + 1.0);
        let hs = if hsig { 1.0 } else { 0.0 };
        for i in 0..n {
            self.pc[i] = (1.0 - self.cc) * self.pc[i]
                + hs * (self.cc * (2.0 - self.cc) * self.mueff).sqrt() * y[i];
        }
        let c1a = self.c1 * (1.0 - (1.0 - hs * hs) * self.cc * (2.0 - self.cc));
        let wsum: f64 = self.weights.iter().sum();
        for i in 0..n {
            for j in 0..=i {
                let mut rank_mu = 0.0;
                for (w, &k) in self.weights.iter().zip(&order) {
                    let yi = (xs[k][i] - old[i]) / self.sigma;
                    let yj = (xs[k][j] - old[j]) / self.sigma;
                    rank_mu += w * yi * yj;
                }
                let v = (1.0 - c1a - self.cmu * wsum) * self.c[i][j]
                    + self.c1 * self.pc[i] * self.pc[j]
                    + self.cmu * rank_mu;
                self.c[i][j] = v;
                self.c[j][i] = v;
            }
        }
        self.sigma *= ((cs / self.damps) * (ps_norm / self.chi_n - 1.0))
            .min(1.0)
            .exp();
        let (vals, vecs) = jacobi_eigen(&self.c);
        self.d = vals.iter().map(|v| v.max(1e-20).sqrt()).collect();
        self.b = vecs;
        self.generation += 1;
    }
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix, by cyclic Jacobi rotations.
pub fn jacobi_eigen(m: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = m.len();
    let mut a: Vec<Vec<f64>> = m.to_vec();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sphere(x: &[f64]) -> f64 {
        x.iter().map(|v| (v - 0.3) * (v - 0.3)).sum()
    }

    fn rosenbrock(x: &[f64]) -> f64 {
        x.windows(2)
            .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
            .sum()
    }

    fn minimize(f: fn(&[f64]) -> f64, n: usize, evals: usize, seed: u64) -> (f64, usize) {
        let mut es = Cmaes::new(vec![0.0; n], 0.5, 0, seed);
        let mut best = f64::INFINITY;
        let mut used = 0;
        while used < evals {
            let xs = es.ask();
            let fs: Vec<f64> = xs.iter().map(|x| f(x)).collect();
            used += xs.len();
            best = fs.iter().copied().fold(best, f64::min);
            es.tell(&xs, &fs);
            if best < 1e-10 {
                break;
            }
        }
        (best, used)
    }

    #[test]
    fn sphere_10d_converges() {
        let (best, used) = minimize(sphere, 10, 6000, 1);
        assert!(best < 1e-10, "sphere: best {best} after {used}");
        // cma reaches 1e-10 on the 10-D sphere in about 2,000 evaluations.
        assert!(used < 4000, "sphere took {used} evaluations");
    }

    #[test]
    fn rosenbrock_finds_the_valley_minimum() {
        for seed in [1, 2, 3] {
            let (best, used) = minimize(rosenbrock, 5, 20000, seed);
            assert!(
                best < 1e-8,
                "rosenbrock seed {seed}: best {best} after {used}"
            );
        }
    }

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let m = vec![
            vec![4.0, 1.0, 0.5],
            vec![1.0, 3.0, 0.2],
            vec![0.5, 0.2, 1.0],
        ];
        let (vals, vecs) = jacobi_eigen(&m);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| vecs[i][k] * vals[k] * vecs[j][k]).sum();
                assert!((r - m[i][j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn state_round_trips_and_asks_the_same_points() {
        let mut es = Cmaes::new(vec![0.5; 4], 0.2, 6, 9);
        let xs = es.ask();
        let fs: Vec<f64> = xs.iter().map(|x| sphere(x)).collect();
        es.tell(&xs, &fs);
        // Plain serde_json may read a float back one ulp off; the state file goes through
        // `Optimizer::to_json`, which is exact.
        let opt = super::super::optimizer::Optimizer::Cmaes(es.clone());
        let text = serde_json::to_string(&opt.to_json()).unwrap();
        let back =
            super::super::optimizer::Optimizer::from_json(&serde_json::from_str(&text).unwrap())
                .unwrap();
        assert_eq!(back.ask(), opt.ask());
        assert_ne!(es.ask(), xs, "a new generation samples new points");
    }
}
