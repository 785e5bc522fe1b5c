//! `detectable_content:*`: placeholders in brackets, a postscript.
use super::error::Result;
use super::kwargs::Kwargs;
use super::registry::Checker;
use super::text::pystr;

fn placeholder() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\[.*?\]").expect("static regex"))
}

/// At least `num_placeholders` `[...]` on one line each.
pub fn number_placeholders(k: &Kwargs) -> Result<Checker> {
    let n = k.count("num_placeholders")?;
    Ok(Box::new(move |v| {
        placeholder().find_iter(v).count() as i64 >= n
    }))
}

/// A line (of the lowercased response) starting with the marker; `P.S.` and `P.P.S`
/// allow a space after each dot, other markers are used as a regex, as in lm-eval.
pub fn postscript(k: &Kwargs) -> Result<Checker> {
    let marker = pystr::strip(k.str("postscript_marker")?);
    let pattern = match marker {
        "P.P.S" => r"(?m)\s*p\.\s?p\.\s?s.*$".to_string(),
        "P.S." => r"(?m)\s*p\.\s?s\..*$".to_string(),
        other => format!(r"(?m)\s*{}.*$", other.to_lowercase()),
    };
    let re = k.regex("postscript_marker", &pattern, false)?;
    Ok(Box::new(move |v| re.is_match(&v.to_lowercase())))
}
