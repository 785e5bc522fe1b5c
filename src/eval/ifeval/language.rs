//! `language:response_language`: the whole response in one language.
use super::error::Result;
use super::kwargs::Kwargs;
use super::registry::Checker;
use super::text::lang;

/// The detected language equals the ISO 639-1 `language`; text with no letters passes
/// (langdetect raises on it and lm-eval counts that as followed).
pub fn response_language(k: &Kwargs) -> Result<Checker> {
    let want = k.str("language")?.to_string();
    Ok(Box::new(move |v| {
        lang::detect(v).is_none_or(|got| got == want)
    }))
}
