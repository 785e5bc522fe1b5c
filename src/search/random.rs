//! Random search: each generation draws `population` points uniformly from the unit cube.
//! The baseline any smarter optimizer has to beat at the same budget.
use serde::{Deserialize, Serialize};

use super::optimizer::Rng;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RandomSearch {
    pub n: usize,
    pub population: usize,
    pub generation: u64,
    pub seed: u64,
}

impl RandomSearch {
    pub fn new(n: usize, population: usize, seed: u64) -> RandomSearch {
        RandomSearch {
            n,
            population: population.max(1),
            generation: 0,
            seed,
        }
    }

    pub fn ask(&self) -> Vec<Vec<f64>> {
        let mut rng = Rng::for_generation(self.seed, self.generation);
        (0..self.population)
            .map(|_| (0..self.n).map(|_| rng.uniform()).collect())
            .collect()
    }

    /// Point `k` of generation `stream` (`ask()[k]` for the current generation).
    pub fn sample(&self, stream: u64, k: usize) -> Vec<f64> {
        let mut rng = Rng::for_generation(self.seed, stream);
        for _ in 0..k * self.n {
            rng.uniform();
        }
        (0..self.n).map(|_| rng.uniform()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_uniform_in_the_cube_and_differ_by_generation() {
        let mut r = RandomSearch::new(3, 400, 7);
        let a = r.ask();
        assert!(a.iter().flatten().all(|x| (0.0..1.0).contains(x)));
        let mean = a.iter().flatten().sum::<f64>() / 1200.0;
        assert!((mean - 0.5).abs() < 0.03, "{mean}");
        assert_eq!(r.ask(), a);
        r.generation += 1;
        assert_ne!(r.ask(), a);
    }
}
