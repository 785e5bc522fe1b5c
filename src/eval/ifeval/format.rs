//! `detectable_format:*`: bullet lists, a constrained answer, highlighted sections,
//! numbered sections, JSON, a `<<title>>`.
use std::sync::OnceLock;

use regex::Regex;

use super::error::Result;
use super::kwargs::Kwargs;
use super::registry::Checker;
use super::text::{pyjson, pystr};

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

/// Exactly `num_bullets` lines starting with `*` (not `**`) or `-`.
pub fn number_bullet_lists(k: &Kwargs) -> Result<Checker> {
    static STAR: OnceLock<Regex> = OnceLock::new();
    static DASH: OnceLock<Regex> = OnceLock::new();
    let n = k.count("num_bullets")?;
    Ok(Box::new(move |v| {
        let stars = re(&STAR, r"(?m)^\s*\*[^\*].*$").find_iter(v).count();
        let dashes = re(&DASH, r"(?m)^\s*-.*$").find_iter(v).count();
        (stars + dashes) as i64 == n
    }))
}

/// lm-eval's three options: `My answer is yes.` / `no.` / `maybe.` anywhere.
pub fn constrained_response(_: &Kwargs) -> Result<Checker> {
    const OPTIONS: [&str; 3] = [
        "My answer is yes.",
        "My answer is no.",
        "My answer is maybe.",
    ];
    Ok(Box::new(|v| {
        let v = pystr::strip(v);
        OPTIONS.iter().any(|o| v.contains(o))
    }))
}

/// At least `num_highlights` non-blank `*x*` or `**x**` spans (a `**x**` counts twice,
/// as lm-eval counts it once in each pattern).
pub fn number_highlighted_sections(k: &Kwargs) -> Result<Checker> {
    static SINGLE: OnceLock<Regex> = OnceLock::new();
    static DOUBLE: OnceLock<Regex> = OnceLock::new();
    let n = k.count("num_highlights")?;
    Ok(Box::new(move |v| {
        let single = re(&SINGLE, r"\*[^\n\*]*\*")
            .find_iter(v)
            .filter(|m| !pystr::strip(m.as_str().trim_matches('*')).is_empty())
            .count();
        let double = re(&DOUBLE, r"\*\*[^\n\*]*\*\*")
            .find_iter(v)
            .filter(|m| {
                let s = m.as_str();
                let s = s.strip_prefix("**").unwrap_or(s);
                !pystr::strip(s.strip_suffix("**").unwrap_or(s)).is_empty()
            })
            .count();
        (single + double) as i64 >= n
    }))
}

/// At least `num_sections` `<section_spliter> <number>` headers (the splitter is a regex).
pub fn multiple_sections(k: &Kwargs) -> Result<Checker> {
    let splitter = pystr::strip(k.str("section_spliter")?);
    let sections = k.regex(
        "section_spliter",
        &format!(r"\s?{splitter}\s?\d+\s?"),
        false,
    )?;
    let n = k.count("num_sections")?;
    Ok(Box::new(move |v| sections.find_iter(v).count() as i64 >= n))
}

/// The response (less one Markdown code fence) is a value Python's `json.loads` takes.
pub fn json_format(_: &Kwargs) -> Result<Checker> {
    Ok(Box::new(|v| {
        let mut s = pystr::strip(v);
        for prefix in ["```json", "```Json", "```JSON", "```"] {
            s = s.strip_prefix(prefix).unwrap_or(s);
        }
        s = s.strip_suffix("```").unwrap_or(s);
        pyjson::python_json_loads_ok(pystr::strip(s))
    }))
}

/// A non-blank `<<title>>` on one line.
pub fn title(_: &Kwargs) -> Result<Checker> {
    static TITLE: OnceLock<Regex> = OnceLock::new();
    Ok(Box::new(|v| {
        re(&TITLE, r"<<[^\n]+>>").find_iter(v).any(|m| {
            let t = m.as_str().trim_start_matches('<').trim_end_matches('>');
            !pystr::strip(t).is_empty()
        })
    }))
}
