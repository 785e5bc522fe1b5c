//! The optimizer without a generation barrier, for the workers: points are asked one at a
//! time, whenever a worker is free, and results are told in the order they arrive; the
//! distribution is updated each time λ results are in.
//!
//! This is a generation-asynchronous CMA-ES: an update uses the λ earliest arrivals, whatever
//! distribution each was drawn from (with N workers a point may have been drawn up to one
//! update earlier). Telling CMA-ES points that the current distribution did not sample is
//! what Hansen calls injection ("Injecting External Solutions Into CMA-ES", arXiv:1110.4181);
//! the update itself is the synchronous one of [`super::cmaes`] (Hansen's tutorial,
//! arXiv:1604.00772), unchanged. Point `s` (candidate id `1 + s`) uses the random stream of
//! generation `s / λ`, so while one worker runs one point at a time, every point, every
//! update and every record equals the synchronous loop's.
//!
//! The whole state (the optimizer, points handed out and not yet told, results told since
//! the last update, in arrival order) is checkpointed after every change, so a resumed run
//! continues exactly where the killed one stood.
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::optimizer::Optimizer;

/// A point handed to a worker and not yet told.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Point {
    pub id: u64,
    /// In the unit cube (as the optimizer is told it).
    pub x: Vec<f64>,
}

/// A result told since the last update.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Told {
    pub id: u64,
    pub x: Vec<f64>,
    /// Higher is better (as [`Optimizer::tell`] takes it).
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Steady {
    pub opt: Optimizer,
    /// Points asked so far (the next one is point `sampled`, candidate id `1 + sampled`).
    pub sampled: u64,
    pub in_flight: Vec<Point>,
    pub arrived: Vec<Told>,
}

#[derive(Serialize, Deserialize)]
struct Extra {
    sampled: u64,
    in_flight: Vec<Point>,
    arrived: Vec<Told>,
}

impl Steady {
    pub fn new(opt: Optimizer) -> Steady {
        Steady {
            opt,
            sampled: 0,
            in_flight: Vec::new(),
            arrived: Vec::new(),
        }
    }

    /// Continue a synchronous run: its current generation's points recorded so far (in id
    /// order, as the synchronous loop scores them) count as arrived.
    pub fn from_generational(opt: Optimizer, recorded: impl Fn(u64) -> Option<f64>) -> Steady {
        let lambda = opt.population() as u64;
        let first = opt.generation() * lambda;
        let mut s = Steady::new(opt);
        s.sampled = first;
        for k in 0..lambda {
            let Some(value) = recorded(1 + first + k) else {
                break;
            };
            let x = s.opt.sample(first + k);
            s.arrived.push(Told {
                id: 1 + first + k,
                x,
                value,
            });
            s.sampled += 1;
        }
        s
    }

    /// Updates of the distribution so far.
    pub fn generation(&self) -> u64 {
        self.opt.generation()
    }

    /// The next point (recorded as in flight).
    pub fn ask(&mut self) -> Point {
        let x = self.opt.sample(self.sampled);
        let p = Point {
            id: 1 + self.sampled,
            x,
        };
        self.sampled += 1;
        self.in_flight.push(p.clone());
        p
    }

    /// The candidate id of an in-flight point's generation (for the records' `generation`
    /// column: the generation whose random stream drew it, plus one, as the synchronous loop
    /// writes it).
    pub fn generation_of(&self, id: u64) -> u64 {
        let lambda = self.opt.population().max(1) as u64;
        (id.saturating_sub(1)) / lambda + 1
    }

    /// Tell the value of an in-flight point; returns whether the distribution was updated.
    /// A point not in flight (told already) is ignored.
    pub fn tell(&mut self, id: u64, value: f64) -> bool {
        let Some(i) = self.in_flight.iter().position(|p| p.id == id) else {
            return false;
        };
        let p = self.in_flight.remove(i);
        self.arrived.push(Told { id, x: p.x, value });
        if self.arrived.len() < self.opt.population() {
            return false;
        }
        let told = std::mem::take(&mut self.arrived);
        let xs: Vec<Vec<f64>> = told.iter().map(|t| t.x.clone()).collect();
        let fs: Vec<f64> = told.iter().map(|t| t.value).collect();
        self.opt.tell(&xs, &fs);
        true
    }

    /// The part of `state.json` beyond the optimizer (floats exact: serde_json reads them
    /// back bit for bit with `float_roundtrip`).
    pub fn extra_json(&self) -> Value {
        serde_json::to_value(Extra {
            sampled: self.sampled,
            in_flight: self.in_flight.clone(),
            arrived: self.arrived.clone(),
        })
        .unwrap_or(Value::Null)
    }

    pub fn from_json(opt: Optimizer, extra: &Value) -> Result<Steady, String> {
        let e: Extra = serde_json::from_value(extra.clone())
            .map_err(|e| format!("asynchronous optimizer state: {e}"))?;
        Ok(Steady {
            opt,
            sampled: e.sampled,
            in_flight: e.in_flight,
            arrived: e.arrived,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::cmaes::Cmaes;
    use super::super::optimizer::Rng;
    use super::*;

    fn sphere(x: &[f64]) -> f64 {
        x.iter().map(|v| (v - 0.3) * (v - 0.3)).sum()
    }

    fn rosenbrock(x: &[f64]) -> f64 {
        // in the unit cube: the valley's minimum (1, …, 1) moved to 0.6
        let y: Vec<f64> = x.iter().map(|v| (v - 0.6) * 4.0 + 1.0).collect();
        y.windows(2)
            .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
            .sum()
    }

    /// `workers` simulated workers whose evaluations take random times, so results arrive
    /// out of order; returns (best value, evaluations used).
    fn minimize(
        f: fn(&[f64]) -> f64,
        n: usize,
        workers: usize,
        evals: u64,
        seed: u64,
    ) -> (f64, u64) {
        // CMA-ES minimizes; the optimizer is told -f (higher is better).
        let opt = Optimizer::Cmaes(Cmaes::new(vec![0.5; n], 0.2, 0, seed));
        let mut s = Steady::new(opt);
        let mut clock = Rng::for_generation(seed, 999);
        let mut running: Vec<(f64, Point)> = Vec::new();
        let (mut now, mut best, mut used) = (0.0, f64::INFINITY, 0);
        while used < evals && best > 1e-10 {
            while running.len() < workers {
                running.push((now + 0.5 + clock.uniform(), s.ask()));
            }
            running.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (t, p) = running.remove(0);
            now = t;
            let v = f(&p.x);
            best = best.min(v);
            used += 1;
            s.tell(p.id, -v);
        }
        (best, used)
    }

    #[test]
    fn one_worker_is_the_synchronous_loop_point_for_point() {
        let mut sync = Optimizer::Cmaes(Cmaes::new(vec![0.4; 3], 0.2, 5, 11));
        let mut steady = Steady::new(sync.clone());
        for _ in 0..6 {
            let xs = sync.ask();
            let fs: Vec<f64> = xs.iter().map(|x| -sphere(x)).collect();
            for (x, f) in xs.iter().zip(&fs) {
                let p = steady.ask();
                assert_eq!(&p.x, x);
                steady.tell(p.id, *f);
            }
            sync.tell(&xs, &fs);
            assert_eq!(steady.opt, sync);
        }
    }

    #[test]
    fn sphere_converges_with_four_workers_out_of_order() {
        for seed in [1, 2] {
            let (best, used) = minimize(sphere, 10, 4, 8000, seed);
            assert!(best < 1e-10, "sphere seed {seed}: {best} after {used}");
            // the synchronous loop needs about 2,000; asynchrony may cost some
            assert!(used < 5000, "sphere seed {seed} took {used}");
        }
    }

    #[test]
    fn rosenbrock_finds_the_valley_minimum_with_eight_workers() {
        for seed in [1, 2, 3] {
            let (best, used) = minimize(rosenbrock, 5, 8, 30000, seed);
            assert!(best < 1e-8, "rosenbrock seed {seed}: {best} after {used}");
        }
    }

    #[test]
    fn the_state_round_trips_and_continues_exactly() {
        let mut s = Steady::new(Optimizer::Cmaes(Cmaes::new(vec![0.5; 4], 0.2, 6, 3)));
        let ps: Vec<Point> = (0..9).map(|_| s.ask()).collect();
        for p in ps.iter().rev().take(7) {
            s.tell(p.id, -sphere(&p.x));
        }
        let text = serde_json::to_string(&(s.opt.to_json(), s.extra_json())).unwrap();
        let (o, e): (Value, Value) = serde_json::from_str(&text).unwrap();
        let mut back = Steady::from_json(Optimizer::from_json(&o).unwrap(), &e).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.ask(), s.ask());
    }

    #[test]
    fn a_generational_run_continues_where_it_stood() {
        let mut sync = Optimizer::Cmaes(Cmaes::new(vec![0.4; 3], 0.2, 4, 5));
        let xs = sync.ask();
        sync.tell(&xs, &[0.1, 0.2, 0.3, 0.4]);
        // generation 1 (ids 5..8): ids 5 and 6 recorded
        let xs = sync.ask();
        let mut s = Steady::from_generational(sync.clone(), |id| {
            (5..=6).contains(&id).then_some(id as f64)
        });
        assert_eq!(s.sampled, 6);
        let p = s.ask();
        assert_eq!((p.id, &p.x), (7, &xs[2]));
        s.tell(7, 7.0);
        let q = s.ask();
        assert!(s.tell(q.id, 8.0), "the fourth result updates");
        sync.tell(&xs, &[5.0, 6.0, 7.0, 8.0]);
        assert_eq!(s.opt, sync);
    }
}
