//! Validated safetensors headers and mmapped reads.
//!
//! A safetensors file is `u64 little-endian header length N`, `N` bytes of JSON
//! (`{"__metadata__": {..}, name: {dtype, shape, data_offsets: [begin, end]}}`), then the
//! tensor data, offsets relative to its start. A corrupt or hostile file must not make us
//! read out of bounds or allocate absurdly, so every entry is checked before any tensor is
//! used: header length bounded, JSON valid, dtype supported, `shape × dtype size` equal to
//! the byte range, ranges inside the file and not overlapping. We parse the header
//! ourselves (rather than through the `safetensors` crate) so each error names the file
//! and the tensor.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::dtype::wide_kernel;
use super::{DType, Error, Result, TensorInfo};

/// Largest header we accept (the `safetensors` crate's own bound).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor entry of a validated header.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub info: TensorInfo,
    /// Absolute byte offset of the data in the file.
    pub start: u64,
    /// Byte length of the data.
    pub len: u64,
}

/// A validated header of one safetensors file.
#[derive(Debug, Clone)]
pub struct Header {
    pub path: PathBuf,
    /// Tensors by name.
    pub tensors: BTreeMap<String, TensorEntry>,
    /// `__metadata__` string entries.
    pub metadata: BTreeMap<String, String>,
    /// Size of the file on disk.
    pub file_len: u64,
    /// Where tensor data starts (8 + header length).
    pub data_start: u64,
}

/// Map a safetensors dtype code to ours; others are an error naming file and tensor.
pub fn parse_dtype(code: &str, path: &Path, tensor: &str) -> Result<DType> {
    match code {
        "F32" => Ok(DType::F32),
        "F16" => Ok(DType::F16),
        "BF16" => Ok(DType::BF16),
        other => Err(Error::UnsupportedDtype {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            dtype: other.to_string(),
        }),
    }
}

/// The safetensors dtype code.
pub fn dtype_code(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
    }
}

/// Read and validate the header of `path`. With `data_present == false` (header-only
/// folders for dry runs) the tensor byte ranges are not required to lie inside the file;
/// everything else is still checked.
pub fn read_header(path: &Path, data_present: bool) -> Result<Header> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if file_len < 8 {
        return Err(Error::invalid(
            path,
            format!(
                "not a safetensors file: {file_len} bytes, shorter than the 8-byte header length"
            ),
        ));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|e| Error::io(path, e))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::invalid(
            path,
            format!(
                "safetensors header length {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit: corrupt or not a safetensors file"
            ),
        ));
    }
    if 8 + header_len > file_len {
        return Err(Error::invalid(
            path,
            format!(
                "truncated: header length is {header_len} bytes but the file has only {} bytes after the length field",
                file_len - 8
            ),
        ));
    }
    let mut header_bytes = vec![0u8; header_len as usize];
    file.read_exact(&mut header_bytes)
        .map_err(|e| Error::io(path, e))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    parse_header(
        path,
        &header_bytes,
        data_start,
        data_present.then_some(data_len),
    )
    .map(|(tensors, metadata)| Header {
        path: path.to_path_buf(),
        tensors,
        metadata,
        file_len,
        data_start,
    })
}

type Parsed = (BTreeMap<String, TensorEntry>, BTreeMap<String, String>);

fn parse_header(
    path: &Path,
    bytes: &[u8],
    data_start: u64,
    data_len: Option<u64>,
) -> Result<Parsed> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::invalid(path, format!("safetensors header is not UTF-8: {e}")))?;
    let root: Value = serde_json::from_str(text.trim_end_matches(' '))
        .map_err(|e| Error::invalid(path, format!("safetensors header is not valid JSON: {e}")))?;
    let Value::Object(root) = root else {
        return Err(Error::invalid(
            path,
            "safetensors header is not a JSON object",
        ));
    };
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in root {
        if name == "__metadata__" {
            let Value::Object(m) = value else {
                return Err(Error::invalid(path, "`__metadata__` is not a JSON object"));
            };
            for (k, v) in m {
                if let Value::String(s) = v {
                    metadata.insert(k, s);
                }
            }
            continue;
        }
        let entry = parse_entry(path, &name, &value, data_start, data_len)?;
        tensors.insert(name, entry);
    }
    check_no_overlap(path, &tensors)?;
    Ok((tensors, metadata))
}

fn bad(path: &Path, tensor: &str, message: impl Into<String>) -> Error {
    Error::BadTensor {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        message: message.into(),
    }
}

fn parse_entry(
    path: &Path,
    name: &str,
    value: &Value,
    data_start: u64,
    data_len: Option<u64>,
) -> Result<TensorEntry> {
    let obj = value
        .as_object()
        .ok_or_else(|| bad(path, name, "header entry is not a JSON object"))?;
    let code = obj
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(path, name, "missing or non-string `dtype`"))?;
    let dtype = parse_dtype(code, path, name)?;
    let shape = obj
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(path, name, "missing or non-array `shape`"))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| bad(path, name, "`shape` holds a non-integer dimension"))?;
    let offsets = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .and_then(|a| match a.as_slice() {
            [b, e] => Some((b.as_u64()?, e.as_u64()?)),
            _ => None,
        })
        .ok_or_else(|| bad(path, name, "`data_offsets` is not a pair of integers"))?;
    let (begin, end) = offsets;
    if end < begin {
        return Err(bad(
            path,
            name,
            format!("data_offsets [{begin}, {end}] end before they begin"),
        ));
    }
    let expected = shape
        .iter()
        .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| bad(path, name, format!("shape {shape:?} overflows")))?;
    if expected != end - begin {
        return Err(bad(
            path,
            name,
            format!(
                "shape {shape:?} × {code} needs {expected} bytes but data_offsets [{begin}, {end}] span {} bytes",
                end - begin
            ),
        ));
    }
    if let Some(data_len) = data_len {
        if end > data_len {
            return Err(bad(
                path,
                name,
                format!(
                    "data_offsets [{begin}, {end}] run past the end of the data ({data_len} bytes): truncated or corrupt file"
                ),
            ));
        }
    }
    // Header-only reads do not bound `end` by the data; it must still be a file offset.
    if data_start.checked_add(end).is_none() {
        return Err(bad(
            path,
            name,
            format!("data_offsets [{begin}, {end}] lie beyond any possible file: corrupt header"),
        ));
    }
    Ok(TensorEntry {
        info: TensorInfo {
            name: name.to_string(),
            dtype,
            shape,
        },
        start: data_start + begin,
        len: end - begin,
    })
}

fn check_no_overlap(path: &Path, tensors: &BTreeMap<String, TensorEntry>) -> Result<()> {
    let mut ranges: Vec<(u64, u64, &str)> = tensors
        .values()
        .filter(|t| t.len > 0)
        .map(|t| (t.start, t.start + t.len, t.info.name.as_str()))
        .collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let (_, prev_end, prev) = pair[0];
        let (start, _, name) = pair[1];
        if start < prev_end {
            return Err(bad(
                path,
                name,
                format!("data overlaps the data of tensor `{prev}`"),
            ));
        }
    }
    Ok(())
}

/// Convert little-endian bytes of `dtype` to f32 (bulk; exact for every input).
///
/// The bytes may be unaligned (they come straight from an mmap): f32 is a byte copy, bf16
/// a shift of each 16-bit word (16 at a time, so the loop vectorises), f16 `half`'s
/// conversion. The output is written once, never zero-filled first.
///
/// Large tensors are converted in parallel blocks (rayon), which also spreads the page
/// faults of a cold memory-mapped read over every core; the result does not depend on the
/// thread count.
pub fn bytes_to_f32(bytes: &[u8], dtype: DType) -> Vec<f32> {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 18; // elements
    let n = bytes.len() / dtype.size();
    let bytes = &bytes[..n * dtype.size()];
    let mut out = Vec::with_capacity(n);
    let spare = &mut out.spare_capacity_mut()[..n];
    if n <= BLOCK {
        convert_into(bytes, dtype, spare);
    } else {
        spare
            .par_chunks_mut(BLOCK)
            .zip(bytes.par_chunks(BLOCK * dtype.size()))
            .for_each(|(o, b)| convert_into(b, dtype, o));
    }
    // SAFETY: `convert_into` wrote every one of the first n elements (its `out` is exactly
    // as long as its `bytes` hold elements, in both branches).
    unsafe { out.set_len(n) };
    out
}

/// Write all of `out` from `bytes` (exactly `out.len()` elements of `dtype`).
fn convert_into(bytes: &[u8], dtype: DType, out: &mut [MaybeUninit<f32>]) {
    debug_assert_eq!(bytes.len(), out.len() * dtype.size());
    if cfg!(target_endian = "big") {
        return convert_portable(bytes, dtype, out);
    }
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.as_chunks::<4>().0) {
                o.write(f32::from_le_bytes(*c));
            }
        }
        DType::BF16 => bf16_into(bytes, out),
        DType::F16 => {
            use half::slice::HalfFloatSliceExt;
            let mut halves = vec![half::f16::ZERO; out.len()];
            bytemuck::cast_slice_mut::<half::f16, u8>(&mut halves).copy_from_slice(bytes);
            let mut values = vec![0f32; out.len()];
            halves.as_slice().convert_to_f32_slice(&mut values);
            for (o, v) in out.iter_mut().zip(values) {
                o.write(v);
            }
        }
    }
}

wide_kernel! {
    /// bf16 → f32 (exact: the bf16 bits are the high half of the f32 bits), 16 at a time.
    fn bf16_into(bytes: &[u8], out: &mut [MaybeUninit<f32>]) {
        let bf16 = |c: [u8; 2]| f32::from_bits(u32::from(u16::from_le_bytes(c)) << 16);
        let (outs, out_rest) = out.as_chunks_mut::<16>();
        let (ins, in_rest) = bytes.as_chunks::<32>();
        for (o, c) in outs.iter_mut().zip(ins) {
            for (i, o) in o.iter_mut().enumerate() {
                o.write(bf16([c[2 * i], c[2 * i + 1]]));
            }
        }
        for (o, c) in out_rest.iter_mut().zip(in_rest.as_chunks::<2>().0) {
            o.write(bf16(*c));
        }
    }
}

fn convert_portable(bytes: &[u8], dtype: DType, out: &mut [MaybeUninit<f32>]) {
    let halves = bytes.as_chunks::<2>().0;
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.as_chunks::<4>().0) {
                o.write(f32::from_le_bytes(*c));
            }
        }
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(halves) {
                o.write(half::bf16::from_le_bytes(*c).to_f32());
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(halves) {
                o.write(half::f16::from_le_bytes(*c).to_f32());
            }
        }
    }
}

/// Convert f32 values to `dtype` little-endian bytes (round to nearest even).
///
/// The element loops run inside `half`/`bytemuck` (built optimised even in dev builds);
/// large tensors are converted in parallel blocks (same bytes for any thread count).
pub fn f32_to_bytes(data: &[f32], dtype: DType) -> Vec<u8> {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 18; // elements
    if data.len() <= BLOCK || dtype == DType::F32 {
        return f32_to_bytes_serial(data, dtype);
    }
    let mut out = vec![0u8; data.len() * dtype.size()];
    out.par_chunks_mut(BLOCK * dtype.size())
        .zip(data.par_chunks(BLOCK))
        .for_each(|(o, d)| o.copy_from_slice(&f32_to_bytes_serial(d, dtype)));
    out
}

fn f32_to_bytes_serial(data: &[f32], dtype: DType) -> Vec<u8> {
    use half::slice::HalfFloatSliceExt;
    if cfg!(target_endian = "big") {
        return f32_to_bytes_portable(data, dtype);
    }
    match dtype {
        DType::F32 => bytemuck::cast_slice::<f32, u8>(data).to_vec(),
        DType::BF16 => {
            let mut out = Vec::with_capacity(2 * data.len());
            bf16_from(data, &mut out.spare_capacity_mut()[..2 * data.len()]);
            // SAFETY: `bf16_from` wrote all 2 · data.len() bytes.
            unsafe { out.set_len(2 * data.len()) };
            out
        }
        DType::F16 => {
            let mut halves = vec![half::f16::ZERO; data.len()];
            halves.as_mut_slice().convert_from_f32_slice(data);
            bytemuck::cast_slice::<half::f16, u8>(&halves).to_vec()
        }
    }
}

wide_kernel! {
    /// f32 → bf16 little-endian bytes, rounded as `half::bf16::from_f32` rounds (to nearest,
    /// ties to even; NaN stays NaN with its quiet bit set): the upper half of
    /// [`crate::model::dtype::round_bf16`], 16 values at a time. Writes all of `out`
    /// (`2 · data.len()` bytes).
    fn bf16_from(data: &[f32], out: &mut [MaybeUninit<u8>]) {
        let bf16 = |x: f32| ((crate::model::dtype::round_bf16(x).to_bits() >> 16) as u16).to_le_bytes();
        let (outs, out_rest) = out.as_chunks_mut::<32>();
        let (ins, in_rest) = data.as_chunks::<16>();
        for (o, c) in outs.iter_mut().zip(ins) {
            for (i, &x) in c.iter().enumerate() {
                let [lo, hi] = bf16(x);
                o[2 * i].write(lo);
                o[2 * i + 1].write(hi);
            }
        }
        for (o, &x) in out_rest.as_chunks_mut::<2>().0.iter_mut().zip(in_rest) {
            let [lo, hi] = bf16(x);
            o[0].write(lo);
            o[1].write(hi);
        }
    }
}

fn f32_to_bytes_portable(data: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::BF16 => data
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        DType::F16 => data
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_is_the_same_in_parallel_blocks() {
        let data: Vec<f32> = (0..700_001)
            .map(|i| ((i as f32) * 0.618).sin() * 1e3)
            .collect();
        for dtype in [DType::BF16, DType::F16, DType::F32] {
            let bytes = f32_to_bytes(&data, dtype);
            assert_eq!(bytes, f32_to_bytes_serial(&data, dtype));
            let back = bytes_to_f32(&bytes, dtype);
            let want: Vec<f32> = data.iter().map(|&x| dtype.round(x)).collect();
            assert_eq!(back, want);
        }
    }

    #[test]
    fn bf16_encoding_is_halfs_bit_for_bit() {
        // every upper half with the low halves that decide rounding (NaNs, infinities and
        // subnormals among them), in a length that leaves a tail after the 16-wide chunks
        let mut data = Vec::new();
        for upper in 0..=0xFFFFu32 {
            for lower in [0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF] {
                data.push(f32::from_bits(upper << 16 | lower));
            }
        }
        data.push(1.5);
        let want: Vec<u8> = data
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        assert_eq!(f32_to_bytes_serial(&data, DType::BF16), want);
        crate::model::dtype::set_wide_kernels(false);
        let plain = f32_to_bytes_serial(&data, DType::BF16);
        crate::model::dtype::set_wide_kernels(true);
        assert_eq!(plain, want);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0).
        let halfway = 1.0f32 + 2f32.powi(-8);
        let above = f32::from_bits(halfway.to_bits() + 1);
        let bytes = f32_to_bytes(&[halfway, above], DType::BF16);
        assert_eq!(
            half::bf16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
            1.0
        );
        assert_eq!(
            half::bf16::from_le_bytes([bytes[2], bytes[3]]).to_f32(),
            1.0 + 2f32.powi(-7)
        );
    }
}
