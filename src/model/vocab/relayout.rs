//! [`relayout`]: mergekit's `PermutedVocabulary` — every model's embedding rows moved to
//! the output vocabulary's ids, with the fill rules for tokens a model lacks.
use super::{Error, OutputVocab, Result};
use crate::model::DType;

/// One model's input matrix for one tensor: row-major, `data.len() / cols` rows.
#[derive(Debug, Clone)]
pub struct Rows<'a> {
    /// Index into [`OutputVocab::permutations`] (the model's position in `build_output`).
    pub model: usize,
    /// Model name, for messages.
    pub name: &'a str,
    pub data: Vec<f32>,
}

/// Re-lay out the matrices of one tensor (`inputs`: every model merged for it, in the
/// merge's order; `base`: the position in `inputs` of the stage's base model, if any) to
/// `vocab`: returns one `[vocab.rows, cols]` matrix per input, in the same order.
///
/// Fill rows are computed from the inputs as given; means in f32, rounded once to `dtype`
/// (the compute dtype; mergekit computes them in the inputs' dtype). A matrix whose tokens
/// keep their ids (the usual case: models sharing a tokenizer) is reused in place, so
/// vocabulary-sized embeddings are not copied.
pub fn relayout(
    vocab: &OutputVocab,
    inputs: Vec<Rows>,
    base: Option<usize>,
    cols: usize,
    dtype: DType,
    tensor: &str,
) -> Result<Vec<Vec<f32>>> {
    if cols == 0 {
        return Err(Error::Invalid {
            message: format!("`{tensor}`: an embedding with no columns cannot be re-laid out"),
        });
    }
    let mut perms = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let perm = vocab
            .permutations
            .get(input.model)
            .ok_or_else(|| Error::Invalid {
                message: format!(
                    "`{tensor}`: model `{}` has no permutation (internal error)",
                    input.name
                ),
            })?;
        if input.data.len() % cols != 0 {
            return Err(Error::Invalid {
                message: format!(
                    "`{tensor}` of model `{}`: {} values is not a whole number of rows of {cols}",
                    input.name,
                    input.data.len()
                ),
            });
        }
        let have = input.data.len() / cols;
        if let Some((id, row)) = perm
            .iter()
            .enumerate()
            .find_map(|(id, r)| r.filter(|&r| r >= have).map(|r| (id, r)))
        {
            return Err(Error::Invalid {
                message: format!(
                    "`{tensor}` of model `{}` has {have} rows, but its tokenizer puts token \
                     {:?} at id {row}; its tokenizer does not belong to these weights",
                    input.name, vocab.tokens[id]
                ),
            });
        }
        perms.push(perm);
    }
    let n = vocab.tokens.len();
    let row = |i: usize, r: usize| &inputs[i].data[r * cols..(r + 1) * cols];
    // 1. the fill row of every token some input lacks (from the inputs as given)
    let mut fills: Vec<(usize, Vec<f32>)> = Vec::new();
    let mut zero_tokens = 0usize;
    #[allow(clippy::needless_range_loop)] // `id` indexes every permutation
    for id in 0..n {
        let present: Vec<usize> = (0..inputs.len())
            .filter(|&i| perms[i][id].is_some())
            .collect();
        let own = |i: usize| row(i, perms[i][id].unwrap_or(0)).to_vec();
        let fill = if present.len() == inputs.len() {
            continue;
        } else if present.len() == 1 {
            own(present[0])
        } else if present.is_empty() {
            zero_tokens += 1;
            vec![0f32; cols]
        } else if let Some(b) = base.filter(|&b| perms[b][id].is_some()) {
            own(b)
        } else {
            let mut mean = vec![0f32; cols];
            for &i in &present {
                for (m, x) in mean.iter_mut().zip(row(i, perms[i][id].unwrap_or(0))) {
                    *m += x;
                }
            }
            let count = present.len() as f32;
            mean.iter_mut().for_each(|m| *m = dtype.round(*m / count));
            mean
        };
        fills.push((id, fill));
    }
    if zero_tokens > 0 {
        tracing::warn!(
            "`{tensor}`: {zero_tokens} token(s) of the output vocabulary are in none of the \
             merged models; their rows are zeros"
        );
    }
    // 2. each input laid out to the output ids
    let mut out = Vec::with_capacity(inputs.len());
    for (input, perm) in inputs.into_iter().zip(&perms) {
        let in_place = perm
            .iter()
            .enumerate()
            .all(|(id, r)| r.is_none_or(|r| r == id));
        let mut m = if in_place {
            // a token the input lacks overwrites a row no output token reads
            let mut data = input.data;
            data.resize(vocab.rows * cols, 0.0);
            data
        } else {
            let mut m = vec![0f32; vocab.rows * cols];
            for (id, r) in perm.iter().enumerate() {
                if let Some(r) = r {
                    m[id * cols..(id + 1) * cols]
                        .copy_from_slice(&input.data[r * cols..(r + 1) * cols]);
                }
            }
            m
        };
        for (id, fill) in &fills {
            if perm[*id].is_none() {
                m[id * cols..(id + 1) * cols].copy_from_slice(fill);
            }
        }
        // 3. padding rows: the mean of the real rows (mergekit, after Hewitt's vocab
        // expansion)
        if vocab.rows > n {
            let mut acc = vec![0f64; cols];
            for r in m[..n * cols].chunks_exact(cols) {
                for (a, &x) in acc.iter_mut().zip(r) {
                    *a += f64::from(x);
                }
            }
            let avg: Vec<f32> = acc
                .iter()
                .map(|a| dtype.round((a / n as f64) as f32))
                .collect();
            for r in m[n * cols..].chunks_exact_mut(cols) {
                r.copy_from_slice(&avg);
            }
        }
        out.push(m);
    }
    Ok(out)
}
