//! Planning side of `tokenizer_source`: read the inputs' tokenizers and build the output
//! vocabulary ([`crate::model::vocab`]) that the runner re-lays embeddings out to, as
//! mergekit 0.1.5 does before merging.
use std::sync::Arc;

use super::error::{Error, Result};
use super::{InputModel, TokenizerOrigin};
use crate::model::vocab::{build_output, OutputSource, OutputVocab, VocabModel, Vocabulary};
use crate::recipe::TokenizerSource;

/// The output vocabulary of stage `stage` (`None` without `tokenizer_source`). `base`:
/// the base model (else the first model); `named`: the model given as `tokenizer_source`.
/// When the tokenizer it is built from has no `tokenizer.json`, embeddings are merged by
/// id as without `tokenizer_source`, with a warning (mergekit cannot merge those at all).
pub(super) fn output_vocab(
    stage: &str,
    source: Option<&TokenizerSource>,
    inputs: &[InputModel],
    base: usize,
    named: Option<usize>,
) -> Result<Option<Arc<OutputVocab>>> {
    let Some(source) = source else {
        return Ok(None);
    };
    let err = |source| Error::Vocab {
        stage: stage.to_string(),
        source,
    };
    let mut vocabs: Vec<Option<Arc<Vocabulary>>> = Vec::with_capacity(inputs.len());
    for m in inputs {
        vocabs.push(match &m.tokenizer {
            TokenizerOrigin::None => None,
            TokenizerOrigin::Folder(p) => Vocabulary::read(p).map_err(err)?.map(Arc::new),
            TokenizerOrigin::Built(v) => Some(v.clone()),
        });
    }
    let needed = match source {
        TokenizerSource::Base => base,
        TokenizerSource::Model(_) => named.unwrap_or(base),
    };
    if vocabs[needed].is_none() || vocabs[base].is_none() {
        let missing = if vocabs[base].is_none() { base } else { needed };
        tracing::warn!(
            "stage `{stage}`: model `{}` has no tokenizer.json, so `tokenizer_source` cannot \
             build the output vocabulary; embeddings are merged by id and the tokenizer \
             files are copied as they are",
            inputs[missing].reference
        );
        return Ok(None);
    }
    let models: Vec<VocabModel> = inputs
        .iter()
        .zip(&vocabs)
        .map(|(m, v)| VocabModel {
            name: &m.reference,
            vocab: v.as_deref(),
            vocab_size: m.config.vocab_size(),
        })
        .collect();
    let out_source = match (source, vocabs[needed].as_deref()) {
        (TokenizerSource::Model(_), Some(v)) => OutputSource::Tokenizer(v),
        _ => OutputSource::Base,
    };
    let out = build_output(&models, base, out_source, None).map_err(err)?;
    tracing::info!(
        "stage `{stage}`: output vocabulary of {} tokens ({} rows)",
        out.tokens.len(),
        out.rows
    );
    Ok(Some(Arc::new(out)))
}

/// The tokenizer a stage with output vocabulary `vocab` writes, for stages that read it.
pub(super) fn built_tokenizer(stage: &str, vocab: &OutputVocab) -> TokenizerOrigin {
    TokenizerOrigin::Built(Arc::new(Vocabulary::from_pairs(
        format!("output of stage `{stage}`"),
        vocab.tokens.iter().cloned().zip(0..),
    )))
}
