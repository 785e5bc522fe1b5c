//! nltk's `word_tokenize`: Punkt sentences, then `NLTKWordTokenizer` (the improved
//! Treebank tokenizer of nltk 3.10) on each, its regex substitutions carried over in
//! order. lm-eval uses it in `change_case:capital_word_frequency`, where what matters
//! is which pieces a word is cut into (`DON'T` → `DO`, `N'T`; `CANNOT` → `CAN`, `NOT`).
use std::sync::OnceLock;

use fancy_regex::Regex;

use super::punkt;

/// `(pattern, replacement)` in the order `NLTKWordTokenizer.tokenize` applies them;
/// `None` marks where it pads the text with a space on each side.
const RULES: &[Option<(&str, &str)>] = &[
    // STARTING_QUOTES
    Some(("([«“‘„]|[`]+)", " $1 ")),
    Some((r#"^""#, "``")),
    Some(("(``)", " $1 ")),
    Some((r#"([ \(\[{<])("|'{2})"#, "$1 `` ")),
    Some((r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", "$1 ")),
    // PUNCTUATION
    Some((r#"([^\.])(\.)((?>[\]\)}>"'»”’ ]*))\s*$"#, "$1 $2 $3 ")),
    Some((r"([:,])([^\d])", " $1 $2")),
    Some((r"([:,])$", " $1 ")),
    Some((r"\.{2,}", " $0 ")),
    Some((r"[;@#$%&]", " $0 ")),
    Some((r"[\x{2012}-\x{2015}]", " $0 ")),
    Some((r#"([^\.])(\.)([\]\)}>"']*)\s*$"#, "$1 $2$3 ")),
    Some((r"[?!]", " $0 ")),
    Some((r"([^'])' ", "$1 ' ")),
    Some((r"[*]", " $0 ")),
    // PARENS_BRACKETS, DOUBLE_DASHES
    Some((r"[\]\[\(\)\{\}\<\>]", " $0 ")),
    Some(("--", " -- ")),
    None,
    // ENDING_QUOTES
    Some(("([»”’])", " $1 ")),
    Some(("''", " '' ")),
    Some(("\"", " '' ")),
    Some((r"\s+", " ")),
    Some((r"([^' ])('[sS]|'[mM]|'[dD]|') ", "$1 $2 ")),
    Some((r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", "$1 $2 ")),
    // CONTRACTIONS2, CONTRACTIONS3
    Some((r"(?i)\b(can)(not)\b", " $1 $2 ")),
    Some((r"(?i)\b(d)('ye)\b", " $1 $2 ")),
    Some((r"(?i)\b(gim)(me)\b", " $1 $2 ")),
    Some((r"(?i)\b(gon)(na)\b", " $1 $2 ")),
    Some((r"(?i)\b(got)(ta)\b", " $1 $2 ")),
    Some((r"(?i)\b(lem)(me)\b", " $1 $2 ")),
    Some((r"(?i)\b(more)('n)\b", " $1 $2 ")),
    Some((r"(?i)\b(wan)(na)(?=\s)", " $1 $2 ")),
    Some((r"(?i) ('t)(is)\b", " $1 $2 ")),
    Some((r"(?i) ('t)(was)\b", " $1 $2 ")),
];

fn compiled() -> &'static [Option<(Regex, &'static str)>] {
    static RE: OnceLock<Vec<Option<(Regex, &'static str)>>> = OnceLock::new();
    RE.get_or_init(|| {
        RULES
            .iter()
            .map(|r| r.map(|(p, s)| (Regex::new(p).expect("static tokenizer regex"), s)))
            .collect()
    })
}

/// `NLTKWordTokenizer().tokenize(sentence)`.
pub fn treebank_tokenize(sentence: &str) -> Vec<String> {
    let mut text = sentence.to_string();
    for rule in compiled() {
        text = match rule {
            Some((re, rep)) => match re.try_replacen(&text, 0, *rep) {
                Ok(t) => t.into_owned(),
                // A backtracking limit on a pathological input: keep the text as is.
                Err(_) => text,
            },
            None => format!(" {text} "),
        };
    }
    text.split_whitespace().map(str::to_string).collect()
}

/// nltk's `word_tokenize(text)` with the English Punkt model.
pub fn word_tokenize(text: &str) -> Vec<String> {
    punkt::sentences(text)
        .iter()
        .flat_map(|s| treebank_tokenize(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_nltk() {
        // nltk 3.10.4's word_tokenize on the same text.
        let got = word_tokenize(
            "I DON'T KNOW, CAN'T SAY. WELL-KNOWN U.S.A. \"QUOTE\" (PAREN) it's $5.00 50% I'M",
        );
        let want = [
            "I",
            "DO",
            "N'T",
            "KNOW",
            ",",
            "CA",
            "N'T",
            "SAY",
            ".",
            "WELL-KNOWN",
            "U.S.A.",
            "``",
            "QUOTE",
            "''",
            "(",
            "PAREN",
            ")",
            "it",
            "'s",
            "$",
            "5.00",
            "50",
            "%",
            "I",
            "'M",
        ];
        assert_eq!(got, want);
    }
}
