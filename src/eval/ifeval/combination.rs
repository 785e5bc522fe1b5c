//! `combination:*`: two different responses, the prompt repeated first.
use super::error::Result;
use super::kwargs::Kwargs;
use super::registry::Checker;
use super::text::pystr::strip;

/// Exactly two non-blank, different parts around `******` (blank only at the ends).
pub fn two_responses(_: &Kwargs) -> Result<Checker> {
    Ok(Box::new(|v| {
        let parts: Vec<&str> = v.split("******").collect();
        let mut valid = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if strip(p).is_empty() {
                if i != 0 && i != parts.len() - 1 {
                    return false;
                }
            } else {
                valid.push(*p);
            }
        }
        valid.len() == 2 && strip(valid[0]) != strip(valid[1])
    }))
}

/// The response starts with `prompt_to_repeat`, case-insensitively.
pub fn repeat_prompt(k: &Kwargs) -> Result<Checker> {
    let prompt = strip(k.str("prompt_to_repeat")?).to_lowercase();
    Ok(Box::new(move |v| {
        strip(v).to_lowercase().starts_with(&prompt)
    }))
}
