//! Reading safetensors files as f32 for comparisons, and distances in bf16 ulps.
use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

/// One tensor as read back: its stored dtype, shape and values widened to f32.
pub struct Tensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Name → (shape, values as f32).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of one safetensors file, with its dtype (F32, BF16 or F16).
pub fn read_file_typed(path: &Path) -> BTreeMap<String, Tensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for (name, v) in st.tensors() {
        let data = match v.dtype() {
            Dtype::F32 => v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::BF16 => v
                .data()
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F16 => v
                .data()
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            d => panic!("{}: {name}: unexpected dtype {d:?}", path.display()),
        };
        let t = Tensor {
            dtype: v.dtype(),
            shape: v.shape().to_vec(),
            data,
        };
        out.insert(name, t);
    }
    out
}

/// Every tensor of a model folder (single file or shards), with its dtype.
pub fn read_tensors_typed(dir: &Path) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            out.extend(read_file_typed(&p));
        }
    }
    out
}

fn untyped(t: BTreeMap<String, Tensor>) -> Tensors {
    t.into_iter().map(|(n, t)| (n, (t.shape, t.data))).collect()
}

/// Every tensor of one safetensors file as (shape, f32 values).
pub fn read_file(path: &Path) -> Tensors {
    untyped(read_file_typed(path))
}

/// Every tensor of a model folder (single file or shards) as (shape, f32 values).
pub fn read_tensors(dir: &Path) -> Tensors {
    untyped(read_tensors_typed(dir))
}

/// Distance in bf16 ulps between two bf16-representable values.
pub fn bf16_ulps(a: f32, b: f32) -> u32 {
    let key = |x: f32| {
        let bits = half::bf16::from_f32(x).to_bits() as i32;
        if bits & 0x8000 != 0 {
            -(bits & 0x7fff)
        } else {
            bits
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// Largest |a−b| / bf16 ulp of b (ulp = 2^(exponent−7)).
pub fn max_bf16_ulps(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let ulp = if *y == 0.0 {
                f32::MIN_POSITIVE
            } else {
                2f32.powi(y.abs().log2().floor() as i32 - 7)
            };
            (x - y).abs() / ulp
        })
        .fold(0.0, f32::max)
}
