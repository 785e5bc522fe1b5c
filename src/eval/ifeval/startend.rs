//! `startend:*`: an exact closing phrase, the whole response in double quotes.
use super::error::Result;
use super::kwargs::Kwargs;
use super::registry::Checker;
use super::text::pystr::strip;

/// Ends with `end_phrase`, case-insensitively, ignoring surrounding `"`.
pub fn end_checker(k: &Kwargs) -> Result<Checker> {
    let end = strip(k.str("end_phrase")?).to_lowercase();
    Ok(Box::new(move |v| {
        strip(v).trim_matches('"').to_lowercase().ends_with(&end)
    }))
}

/// Starts and ends with `"` (after stripping whitespace), at least two characters.
pub fn quotation(_: &Kwargs) -> Result<Checker> {
    Ok(Box::new(|v| {
        let v = strip(v);
        v.chars().count() > 1 && v.starts_with('"') && v.ends_with('"')
    }))
}
