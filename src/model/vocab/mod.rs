//! The output vocabulary of a merge with `tokenizer_source`, as mergekit 0.1.5 builds it
//! (`mergekit/tokenizer/build.py`, `embed.py`), and the re-layout of embedding rows to it.
//!
//! Without this, a merge combines embedding rows by id: rows of different tokens get
//! averaged whenever two tokenizers order their tokens differently, and Qwen2.5's padding
//! rows (152064 rows for 151665 tokens) are kept where mergekit drops them.
//!
//! mergekit's rules, carried over:
//! - **Output vocabulary.** `base`: the base model's tokenizer (else the first model's)
//!   stripped of every token whose id is ≥ that model's `config.json` `vocab_size`. A model
//!   reference: that model's tokenizer as it is (not stripped). Its size (rounded up to
//!   `pad_to_multiple_of`) is the output's row count and `vocab_size`.
//! - **Permutation** of each model: output id → that model's id of the same token string,
//!   none when it lacks the token. A model without a tokenizer is assumed to share the
//!   base's (with a warning).
//! - **Fill** ([`relayout`]) for a token a model lacks: the row of the only model that has
//!   it; zeros when none has it; the base's row when the base has it; else the mean of the
//!   rows of the models that have it. Rows beyond the vocabulary (padding) are the mean of
//!   the real rows.
//!
//! Deliberate differences (mergekit 0.1.5 crashes in these cases): a token whose id is ≥ its
//! model's `vocab_size` counts as absent from that model (mergekit: `KeyError`), and
//! stripping a merged BPE token also drops the merges that produce it (mergekit keeps them
//! and `tokenizers` then refuses its own output).
mod relayout;
mod strip;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use relayout::{relayout, Rows};
pub use strip::strip_tokenizer_files;

/// Errors of vocabulary building; each names the tokenizer file or model it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "model `{model}` has no tokenizer.json, but `tokenizer_source` needs its vocabulary; \
         copy the tokenizer files into its folder"
    )]
    MissingTokenizer { model: String },
    #[error("{message}")]
    Invalid { message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One tokenizer's vocabulary: token string → id, added tokens included (what
/// transformers' `get_vocab()` returns).
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    /// The `tokenizer.json` it was read from (for messages).
    pub path: PathBuf,
    pub ids: HashMap<String, usize>,
}

impl Vocabulary {
    /// Read `folder/tokenizer.json` (with the `tokenizers` crate); `None` when the folder
    /// has no `tokenizer.json`.
    pub fn read(folder: &Path) -> Result<Option<Vocabulary>> {
        let path = folder.join("tokenizer.json");
        if !path.is_file() {
            return Ok(None);
        }
        let tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
            path: path.clone(),
            message: format!("cannot load the tokenizer: {e}"),
        })?;
        let ids = tokenizer
            .get_vocab(true)
            .into_iter()
            .map(|(t, id)| (t, id as usize))
            .collect();
        Ok(Some(Vocabulary { path, ids }))
    }

    /// A vocabulary from `(token, id)` pairs (tests, in-memory tokenizers).
    pub fn from_pairs<S: Into<String>>(
        path: impl Into<PathBuf>,
        pairs: impl IntoIterator<Item = (S, usize)>,
    ) -> Vocabulary {
        Vocabulary {
            path: path.into(),
            ids: pairs.into_iter().map(|(t, i)| (t.into(), i)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The tokens whose id is below `vocab_size` (mergekit's `get_stripped_tokenizer`).
    pub fn stripped(&self, vocab_size: usize) -> Vocabulary {
        Vocabulary {
            path: self.path.clone(),
            ids: self
                .ids
                .iter()
                .filter(|(_, &id)| id < vocab_size)
                .map(|(t, &id)| (t.clone(), id))
                .collect(),
        }
    }

    /// Tokens ordered by id; the ids must be exactly `0..len` (an output vocabulary is laid
    /// out row by row).
    fn dense_tokens(&self) -> Result<Vec<String>> {
        let mut tokens: Vec<Option<&String>> = vec![None; self.ids.len()];
        for (token, &id) in &self.ids {
            match tokens.get_mut(id) {
                Some(slot @ None) => *slot = Some(token),
                Some(Some(other)) => {
                    return Err(Error::Tokenizer {
                        path: self.path.clone(),
                        message: format!(
                            "tokens {other:?} and {token:?} share id {id}; the output \
                             vocabulary needs one token per id"
                        ),
                    })
                }
                None => {
                    return Err(Error::Tokenizer {
                        path: self.path.clone(),
                        message: format!(
                            "token {token:?} has id {id}, but the tokenizer has only {} \
                             tokens; the output vocabulary needs ids 0..{} without gaps",
                            self.ids.len(),
                            self.ids.len()
                        ),
                    })
                }
            }
        }
        Ok(tokens.into_iter().flatten().cloned().collect())
    }
}

/// A model taking part in a merge with `tokenizer_source`.
#[derive(Debug, Clone, Copy)]
pub struct VocabModel<'a> {
    /// The model reference (for messages).
    pub name: &'a str,
    /// Its tokenizer; `None` when its folder has none (then the base's is assumed).
    pub vocab: Option<&'a Vocabulary>,
    /// `vocab_size` from its `config.json`, if set.
    pub vocab_size: Option<usize>,
}

/// Where the output vocabulary comes from.
#[derive(Debug, Clone, Copy)]
pub enum OutputSource<'a> {
    /// The base model's tokenizer, stripped of ids ≥ its `vocab_size`.
    Base,
    /// This tokenizer as it is (a model given as `tokenizer_source`; it need not be merged).
    Tokenizer(&'a Vocabulary),
}

/// The output vocabulary and each model's permutation to it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputVocab {
    /// Token strings by output id.
    pub tokens: Vec<String>,
    /// Rows of every re-laid-out embedding: `tokens.len()` rounded up to
    /// `pad_to_multiple_of`. This is the output's `vocab_size`.
    pub rows: usize,
    /// For each model (in the order given to [`build_output`]): output id → that model's row
    /// of the same token, `None` where it lacks the token.
    pub permutations: Vec<Vec<Option<usize>>>,
    /// `Some(vocab_size)` when the output tokenizer is the base's with its ids ≥ `vocab_size`
    /// removed: its files must be rewritten ([`strip_tokenizer_files`]), not just copied.
    pub strip_at: Option<usize>,
}

/// Build the output vocabulary from `models` (`base`: index of the base model, or of the
/// first model when there is none) and every model's permutation, as mergekit's
/// `build_tokenizer` does.
pub fn build_output(
    models: &[VocabModel],
    base: usize,
    source: OutputSource,
    pad_to_multiple_of: Option<usize>,
) -> Result<OutputVocab> {
    let base_model = models.get(base).ok_or_else(|| Error::Invalid {
        message: format!(
            "base index {base} out of {} models (internal error)",
            models.len()
        ),
    })?;
    let base_vocab = base_model.vocab.ok_or_else(|| Error::MissingTokenizer {
        model: base_model.name.to_string(),
    })?;
    let base_size = base_model.vocab_size.unwrap_or(base_vocab.len());
    let stripped = base_vocab.stripped(base_size);
    let (out, strip_at) = match source {
        OutputSource::Base => {
            let strip_at = (stripped.len() < base_vocab.len()).then_some(base_size);
            if let Some(n) = strip_at {
                tracing::info!(
                    "{}: dropping {} token(s) with ids >= vocab_size {n} from the output tokenizer",
                    base_vocab.path.display(),
                    base_vocab.len() - stripped.len()
                );
            }
            (&stripped, strip_at)
        }
        OutputSource::Tokenizer(v) => (v, None),
    };
    let tokens = out.dense_tokens()?;
    if tokens.is_empty() {
        return Err(Error::Tokenizer {
            path: out.path.clone(),
            message: "the output vocabulary is empty".into(),
        });
    }
    let rows = match pad_to_multiple_of {
        Some(0) => {
            return Err(Error::Invalid {
                message: "pad_to_multiple_of must be at least 1".into(),
            })
        }
        Some(k) => tokens.len().div_ceil(k) * k,
        None => tokens.len(),
    };
    let mut permutations = Vec::with_capacity(models.len());
    for model in models {
        let vocab = match model.vocab {
            Some(v) => v,
            None => {
                tracing::warn!(
                    "model `{}` has no tokenizer.json; assuming the same tokenizer as `{}`",
                    model.name,
                    base_model.name
                );
                &stripped
            }
        };
        let size = model.vocab_size.unwrap_or(vocab.len());
        let mut beyond = 0usize;
        let perm = tokens
            .iter()
            .map(|t| match vocab.ids.get(t) {
                Some(&id) if id < size => Some(id),
                Some(_) => {
                    beyond += 1;
                    None
                }
                None => None,
            })
            .collect();
        if beyond > 0 {
            tracing::warn!(
                "model `{}`: {beyond} token(s) of the output vocabulary have ids >= its \
                 vocab_size {size}; treating them as absent from it",
                model.name
            );
        }
        permutations.push(perm);
    }
    Ok(OutputVocab {
        tokens,
        rows,
        permutations,
        strip_at,
    })
}
