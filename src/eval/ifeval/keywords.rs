//! `keywords:*`: existence, frequency, forbidden words, letter frequency.
use super::error::Result;
use super::kwargs::Kwargs;
use super::registry::Checker;

/// Every keyword found, case-insensitively (each keyword is a regex, as in lm-eval).
pub fn existence(k: &Kwargs) -> Result<Checker> {
    let res = k
        .str_list("keywords")?
        .into_iter()
        .map(|w| k.regex("keywords", w, true))
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(move |v| res.iter().all(|re| re.is_match(v))))
}

/// The keyword's case-insensitive match count against `frequency`.
pub fn frequency(k: &Kwargs) -> Result<Checker> {
    let re = k.regex(
        "keyword",
        super::text::pystr::strip(k.str("keyword")?),
        true,
    )?;
    let (n, rel) = (k.count("frequency")?, k.relation("relation")?);
    Ok(Box::new(move |v| {
        rel.holds(re.find_iter(v).count() as i64, n)
    }))
}

/// None of the words as a whole word (`\bword\b`), case-insensitively.
pub fn forbidden_words(k: &Kwargs) -> Result<Checker> {
    let res = k
        .str_list("forbidden_words")?
        .into_iter()
        .map(|w| k.regex("forbidden_words", &format!(r"\b{w}\b"), true))
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(move |v| !res.iter().any(|re| re.is_match(v))))
}

/// How often one letter occurs in the lowercased response.
pub fn letter_frequency(k: &Kwargs) -> Result<Checker> {
    let letter = k.str("letter")?;
    let mut chars = letter.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        return Err(k.bad(
            "letter",
            format!("`{letter}` is not one letter (lm-eval would pick a random one)"),
        ));
    };
    let lc: Vec<char> = c.to_lowercase().collect();
    let [lc] = lc[..] else {
        return Err(k.bad("letter", format!("`{letter}` is not a letter a-z")));
    };
    if !lc.is_ascii_lowercase() {
        return Err(k.bad(
            "letter",
            format!("`{letter}` is not a letter a-z (lm-eval would pick a random one)"),
        ));
    }
    let (n, rel) = (k.count("let_frequency")?, k.relation("let_relation")?);
    Ok(Box::new(move |v| {
        let count = v.to_lowercase().chars().filter(|&ch| ch == lc).count();
        rel.holds(count as i64, n)
    }))
}
