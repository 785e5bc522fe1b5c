//! `change_case:*`: words in capitals, all capitals in English, all lowercase in English.
use super::error::Result;
use super::kwargs::Kwargs;
use super::registry::Checker;
use super::text::{lang, pystr, treebank};

/// nltk `word_tokenize` tokens that are all capitals, against `capital_frequency`.
pub fn capital_word_frequency(k: &Kwargs) -> Result<Checker> {
    let (n, rel) = (k.int("capital_frequency")?, k.relation("capital_relation")?);
    Ok(Box::new(move |v| {
        let capitals = treebank::word_tokenize(v)
            .iter()
            .filter(|w| pystr::is_upper(w))
            .count();
        rel.holds(capitals as i64, n)
    }))
}

/// `isupper()` and detected as English (text with no letters cannot be upper).
pub fn english_capital(_: &Kwargs) -> Result<Checker> {
    Ok(Box::new(|v| {
        pystr::is_upper(v) && lang::detect(v).is_none_or(|l| l == "en")
    }))
}

/// `islower()` and detected as English.
pub fn english_lowercase(_: &Kwargs) -> Result<Checker> {
    Ok(Box::new(|v| {
        pystr::is_lower(v) && lang::detect(v).is_none_or(|l| l == "en")
    }))
}
