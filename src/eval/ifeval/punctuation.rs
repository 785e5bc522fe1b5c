//! `punctuation:no_comma`.
use super::error::Result;
use super::kwargs::Kwargs;
use super::registry::Checker;

/// No ASCII comma anywhere.
pub fn no_comma(_: &Kwargs) -> Result<Checker> {
    Ok(Box::new(|v| !v.contains(',')))
}
