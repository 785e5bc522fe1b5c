//! The optimizer behind the loop: CMA-ES or random search, asked for one generation at a
//! time in the unit cube (each gene scaled to [0, 1]); points outside are mirrored back in.
//!
//! Every generation's points are a pure function of (state, seed, generation), so after a
//! crash the loop asks the same generation again and skips the candidates already recorded.
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cmaes::Cmaes;
use super::random::RandomSearch;

/// SplitMix64 with Box–Muller normals; one stream per (seed, generation).
pub struct Rng(u64);

impl Rng {
    pub fn for_generation(seed: u64, generation: u64) -> Rng {
        let mut r = Rng(seed ^ 0x6a09_e667_f3bc_c909);
        let mix = r.next_u64() ^ generation.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Rng(mix)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Fold any real number into [0, 1] by mirroring at the bounds (period 2).
pub fn mirror(x: f64) -> f64 {
    if !x.is_finite() {
        return 0.5;
    }
    let m = x.rem_euclid(2.0);
    if m > 1.0 {
        2.0 - m
    } else {
        m
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "name", rename_all = "lowercase")]
#[allow(clippy::large_enum_variant)] // one per run
pub enum Optimizer {
    Cmaes(Cmaes),
    Random(RandomSearch),
}

impl Optimizer {
    pub fn generation(&self) -> u64 {
        match self {
            Optimizer::Cmaes(c) => c.generation,
            Optimizer::Random(r) => r.generation,
        }
    }
    pub fn population(&self) -> usize {
        match self {
            Optimizer::Cmaes(c) => c.lambda,
            Optimizer::Random(r) => r.population,
        }
    }
    /// The current generation's points, already mirrored into the unit cube.
    pub fn ask(&self) -> Vec<Vec<f64>> {
        let raw = match self {
            Optimizer::Cmaes(c) => c.ask(),
            Optimizer::Random(r) => r.ask(),
        };
        raw.into_iter()
            .map(|x| x.into_iter().map(mirror).collect())
            .collect()
    }
    /// Point `s` of the run (candidate id `1 + s`), mirrored into the unit cube, drawn from
    /// the current distribution with the random stream of generation `s / λ`: the same
    /// point as the synchronous `ask()` while the loop keeps to one generation at a time.
    pub fn sample(&self, s: u64) -> Vec<f64> {
        let lambda = self.population().max(1) as u64;
        let (stream, k) = (s / lambda, (s % lambda) as usize);
        let raw = match self {
            Optimizer::Cmaes(c) => c.sample(stream, k),
            Optimizer::Random(r) => r.sample(stream, k),
        };
        raw.into_iter().map(mirror).collect()
    }
    /// Report the generation's fitness values (higher is better).
    pub fn tell(&mut self, xs: &[Vec<f64>], fitness: &[f64]) {
        match self {
            // CMA-ES minimizes; it is told the mirrored points it was evaluated at.
            Optimizer::Cmaes(c) => c.tell(xs, &fitness.iter().map(|f| -f).collect::<Vec<_>>()),
            Optimizer::Random(r) => r.generation += 1,
        }
    }

    /// JSON with every float written as a decimal string, so that it reads back bit-exactly
    /// (serde_json's float parser may be one ulp off) and a resumed run asks the same points.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        floats_to_strings(&mut v);
        v
    }
    pub fn from_json(v: &Value) -> Result<Optimizer, String> {
        let mut v = v.clone();
        strings_to_floats(&mut v);
        serde_json::from_value(v).map_err(|e| format!("optimizer state: {e}"))
    }
}

const FLOAT_TAG: &str = "f64:";

fn floats_to_strings(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64() {
                *v = Value::String(format!("{FLOAT_TAG}{x:?}"));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(floats_to_strings),
        Value::Object(o) => o.values_mut().for_each(floats_to_strings),
        _ => {}
    }
}

fn strings_to_floats(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some(x) = s
                .strip_prefix(FLOAT_TAG)
                .and_then(|t| t.parse::<f64>().ok())
            {
                if let Some(n) = serde_json::Number::from_f64(x) {
                    *v = Value::Number(n);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strings_to_floats),
        Value::Object(o) => o.values_mut().for_each(strings_to_floats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_folds_into_the_unit_interval() {
        for (x, want) in [
            (0.3, 0.3),
            (1.2, 0.8),
            (-0.25, 0.25),
            (2.5, 0.5),
            (-1.5, 0.5),
            (1.0, 1.0),
        ] {
            assert!((mirror(x) - want).abs() < 1e-12, "{x}");
        }
    }

    #[test]
    fn json_state_is_bit_exact() {
        let mut c = Cmaes::new(vec![0.123_456_789_012_345_68, 1.0 / 3.0], 0.2, 4, 5);
        let xs = c.ask();
        c.tell(&xs, &[0.1, 0.7, 0.3, 0.9]);
        let o = Optimizer::Cmaes(c);
        let text = serde_json::to_string(&o.to_json()).unwrap();
        let back = Optimizer::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.ask(), o.ask());
    }

    #[test]
    fn normals_have_unit_variance() {
        let mut r = Rng::for_generation(3, 0);
        let xs: Vec<f64> = (0..20000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
