//! `length_constraints:*`: sentences, paragraphs, words, first word of the nth paragraph.
use super::error::Result;
use super::kwargs::Kwargs;
use super::registry::Checker;
use super::text::{punkt, pystr};

/// Punkt sentences against `num_sentences`.
pub fn number_sentences(k: &Kwargs) -> Result<Checker> {
    let (n, rel) = (k.count("num_sentences")?, k.relation("relation")?);
    Ok(Box::new(move |v| {
        rel.holds(punkt::count_sentences(v) as i64, n)
    }))
}

fn divider() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\s?\*\*\*\s?").expect("static regex"))
}

/// Exactly `num_paragraphs` paragraphs between `***` dividers; an empty one inside fails.
pub fn number_paragraphs(k: &Kwargs) -> Result<Checker> {
    let n = k.count("num_paragraphs")?;
    Ok(Box::new(move |v| {
        let parts: Vec<&str> = divider().split(v).collect();
        let mut count = parts.len() as i64;
        for (i, p) in parts.iter().enumerate() {
            if pystr::strip(p).is_empty() {
                if i == 0 || i == parts.len() - 1 {
                    count -= 1;
                } else {
                    return false;
                }
            }
        }
        count == n
    }))
}

/// `\w+` runs against `num_words`.
pub fn number_words(k: &Kwargs) -> Result<Checker> {
    let (n, rel) = (k.count("num_words")?, k.relation("relation")?);
    Ok(Box::new(move |v| {
        rel.holds(pystr::count_words(v) as i64, n)
    }))
}

/// `num_paragraphs` paragraphs split on `\n\n`, the `nth_paragraph`-th starting with
/// `first_word` (lowercased, cut at the first `.,?!'"`).
pub fn nth_paragraph_first_word(k: &Kwargs) -> Result<Checker> {
    let num = k.count("num_paragraphs")?;
    let nth = k.int("nth_paragraph")?;
    if nth <= 0 || nth > num {
        return Err(k.bad(
            "nth_paragraph",
            format!("{nth} is not in 1..={num} (lm-eval would pick a random paragraph)"),
        ));
    }
    let first_word = k.str("first_word")?.to_lowercase();
    Ok(Box::new(move |v| {
        let paragraphs: Vec<&str> = v.split("\n\n").collect();
        let count = paragraphs
            .iter()
            .filter(|p| !pystr::strip(p).is_empty())
            .count() as i64;
        if nth > count {
            return false;
        }
        let paragraph = pystr::strip(paragraphs[(nth - 1) as usize]);
        let Some(word) = paragraph.split(pystr::is_space).find(|w| !w.is_empty()) else {
            return false;
        };
        let word = pystr::strip(word)
            .trim_start_matches('\'')
            .trim_start_matches('"');
        let got: String = word
            .chars()
            .take_while(|c| !matches!(c, '.' | ',' | '?' | '!' | '\'' | '"'))
            .flat_map(char::to_lowercase)
            .collect();
        count == num && got == first_word
    }))
}
