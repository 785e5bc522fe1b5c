//! Python `str` semantics the checkers rely on: `isspace`, `strip`, `isupper`, `islower`
//! and the `\w` of Python's `re` module. Rust's `char` predicates differ at the edges
//! (Python counts U+001C..U+001F as space; `\w` has no combining marks), so the checks
//! go through these instead.

/// Python's `str.isspace()` for one character.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The whitespace of Python's `string.whitespace` (ASCII only).
pub fn is_ascii_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0b}' | '\u{0c}')
}

/// Python's `str.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python's `str.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// Titlecase letters (category Lt): cased, but neither upper nor lower for Python.
fn is_titlecase(c: char) -> bool {
    matches!(c, '\u{1c5}' | '\u{1c8}' | '\u{1cb}' | '\u{1f2}' | '\u{1f88}'..='\u{1f8f}'
        | '\u{1f98}'..='\u{1f9f}' | '\u{1fa8}'..='\u{1faf}' | '\u{1fbc}' | '\u{1fcc}' | '\u{1ffc}')
}

/// Python's `str.isupper()`: at least one cased character and none of them lowercase.
pub fn is_upper(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_uppercase() {
            cased = true;
        } else if c.is_lowercase() || is_titlecase(c) {
            return false;
        }
    }
    cased
}

/// Python's `str.islower()`: at least one cased character and none of them uppercase.
pub fn is_lower(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_lowercase() {
            cased = true;
        } else if c.is_uppercase() || is_titlecase(c) {
            return false;
        }
    }
    cased
}

/// A character of Python's `\w` on `str`: `isalnum()` or `_` (letters and numbers,
/// but not the combining marks Rust's `\w` adds).
pub fn is_word(c: char) -> bool {
    (c.is_alphabetic() && !is_mark_like(c)) || c.is_numeric() || c == '_'
}

/// Rust's `is_alphabetic` includes some marks (Other_Alphabetic); Python's `isalpha`
/// is categories L* only. This approximates the difference by the main mark blocks.
fn is_mark_like(c: char) -> bool {
    use std::sync::OnceLock;
    static MARK: OnceLock<regex::Regex> = OnceLock::new();
    let re = MARK.get_or_init(|| regex::Regex::new(r"^\p{M}$").expect("static regex"));
    let mut buf = [0u8; 4];
    re.is_match(c.encode_utf8(&mut buf))
}

/// The number of `\w+` runs, as nltk's `RegexpTokenizer(r"\w+")` counts words.
pub fn count_words(s: &str) -> usize {
    let mut n = 0;
    let mut in_word = false;
    for c in s.chars() {
        let w = is_word(c);
        if w && !in_word {
            n += 1;
        }
        in_word = w;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_predicates_follow_python() {
        assert!(is_upper("HELLO, WORLD 1"));
        assert!(!is_upper("123 !"));
        assert!(!is_upper("HELLo"));
        assert!(is_lower("hello 1"));
        assert!(!is_lower("ǅ"));
        assert_eq!(strip("\u{1f} a \n"), "a");
    }

    #[test]
    fn words_are_python_word_runs() {
        assert_eq!(count_words("don't stop-believing, it's 3.5 o'clock"), 10);
        assert_eq!(count_words("snake_case_word"), 1);
        // Devanagari vowel signs are marks: Python's \w splits the word at them.
        assert_eq!(count_words("किनारे"), 3);
    }
}
