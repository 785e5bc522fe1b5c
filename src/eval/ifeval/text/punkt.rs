//! nltk's Punkt sentence splitter (`PunktSentenceTokenizer.span_tokenize` of nltk 3.10)
//! with the English model, which lm-eval's `count_sentences` and `word_tokenize` use.
//!
//! The algorithm is carried over step by step: candidate ends (`.`, `?`, `!` followed by
//! punctuation or by whitespace and a token), the context around each, Punkt's word
//! tokenizer on that context, the first (type-based) and second (token-based)
//! annotation passes, and the realignment of closing quotes and brackets. The model's
//! abbreviations, collocations and sentence starters are complete; its orthographic
//! context is an excerpt ([`super::punkt_data`]), which is the one documented source
//! of disagreement (an abbreviation or initial followed by a capitalised word that the
//! excerpt does not list).
use super::punkt_data::{ABBREV_TYPES, COLLOCATIONS, ORTHO_CONTEXT, SENT_STARTERS};
use super::pystr::{is_ascii_space, is_space, is_word};

const ORTHO_BEG_UC: u8 = 1 << 1;
const ORTHO_MID_UC: u8 = 1 << 2;
const ORTHO_UNK_UC: u8 = 1 << 3;
const ORTHO_BEG_LC: u8 = 1 << 4;
const ORTHO_MID_LC: u8 = 1 << 5;
const ORTHO_UNK_LC: u8 = 1 << 6;
const ORTHO_UC: u8 = ORTHO_BEG_UC | ORTHO_MID_UC | ORTHO_UNK_UC;
const ORTHO_LC: u8 = ORTHO_BEG_LC | ORTHO_MID_LC | ORTHO_UNK_LC;

/// Punkt's `_re_non_word_chars`: characters that cannot appear within words.
fn is_non_word(c: char) -> bool {
    matches!(
        c,
        ')' | '"'
            | ';'
            | '}'
            | ']'
            | '*'
            | ':'
            | '@'
            | '\''
            | '('
            | '{'
            | '['
            | '?'
            | '!'
            | '\u{2018}'
            | '\u{2019}'
            | '\u{201c}'
            | '\u{201d}'
            | '\u{ab}'
            | '\u{bb}'
    )
}

/// Punkt's `_re_word_start` excludes these from starting a word token.
fn is_word_start(c: char) -> bool {
    !matches!(
        c,
        '(' | '"'
            | '`'
            | '{'
            | '['
            | ':'
            | ';'
            | '&'
            | '#'
            | '*'
            | '@'
            | ')'
            | '}'
            | ']'
            | '-'
            | ','
    )
}

fn is_sent_end(c: char) -> bool {
    matches!(c, '.' | '?' | '!')
}

/// Length of Punkt's `_re_multi_char_punct` (`-{2,}`, `.{2,}`, `(?:\.\s){2,}\.`) at `p`.
fn multi_char_at(s: &[char], p: usize) -> Option<usize> {
    let run = |ch: char| s[p..].iter().take_while(|&&c| c == ch).count();
    match s.get(p)? {
        '-' if run('-') >= 2 => Some(run('-')),
        '.' if run('.') >= 2 => Some(run('.')),
        '.' => {
            let mut reps = 0;
            while s.get(p + 2 * reps) == Some(&'.')
                && s.get(p + 2 * reps + 1).is_some_and(|&c| is_space(c))
            {
                reps += 1;
            }
            if reps >= 2 && s.get(p + 2 * reps) == Some(&'.') {
                Some(2 * reps + 1)
            } else if reps >= 3 {
                Some(2 * reps - 1)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Punkt's `word_tokenize` (the `_word_tokenize_fmt` regex) on one line.
fn word_tokenize(line: &[char]) -> Vec<String> {
    let n = line.len();
    let ends_word = |k: usize| {
        k == n
            || is_space(line[k])
            || is_non_word(line[k])
            || multi_char_at(line, k).is_some()
            || (line[k] == ','
                && (k + 1 == n
                    || is_space(line[k + 1])
                    || is_non_word(line[k + 1])
                    || multi_char_at(line, k + 1).is_some()))
    };
    let mut out = Vec::new();
    let mut p = 0;
    while p < n {
        if let Some(len) = multi_char_at(line, p) {
            out.push(line[p..p + len].iter().collect());
            p += len;
        } else if is_space(line[p]) {
            p += 1;
        } else if is_word_start(line[p]) {
            let mut k = p + 1;
            while !ends_word(k) {
                k += 1;
            }
            out.push(line[p..k].iter().collect());
            p = k;
        } else {
            out.push(line[p].to_string());
            p += 1;
        }
    }
    out
}

struct Token {
    tok: String,
    typ: String,
    sentbreak: bool,
    abbr: bool,
    ellipsis: bool,
}

fn is_numeric_type(s: &str) -> bool {
    use std::sync::OnceLock;
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^-?[\.,]?\d[\d,\.-]*\.?$").expect("static regex"))
        .is_match(s)
}

impl Token {
    fn new(tok: String) -> Token {
        let lower = tok.to_lowercase();
        let typ = if is_numeric_type(&lower) {
            "##number##".to_string()
        } else {
            lower
        };
        Token {
            tok,
            typ,
            sentbreak: false,
            abbr: false,
            ellipsis: false,
        }
    }
    fn period_final(&self) -> bool {
        self.tok.ends_with('.')
    }
    fn type_no_period(&self) -> &str {
        if self.typ.chars().count() > 1 && self.typ.ends_with('.') {
            &self.typ[..self.typ.len() - 1]
        } else {
            &self.typ
        }
    }
    fn type_no_sentperiod(&self) -> &str {
        if self.sentbreak {
            self.type_no_period()
        } else {
            &self.typ
        }
    }
    fn first_upper(&self) -> bool {
        self.tok.chars().next().is_some_and(char::is_uppercase)
    }
    fn first_lower(&self) -> bool {
        self.tok.chars().next().is_some_and(char::is_lowercase)
    }
    fn is_ellipsis(&self) -> bool {
        self.tok.len() >= 2 && self.tok.chars().all(|c| c == '.')
    }
    fn is_initial(&self) -> bool {
        let c: Vec<char> = self.tok.chars().collect();
        c.len() == 2 && c[1] == '.' && is_word(c[0]) && !c[0].is_numeric()
    }
}

fn ortho_context(typ: &str) -> u8 {
    ORTHO_CONTEXT
        .iter()
        .find(|(w, _)| *w == typ)
        .map_or(0, |&(_, f)| f)
}

fn first_pass(t: &mut Token) {
    if matches!(t.tok.as_str(), "." | "?" | "!") {
        t.sentbreak = true;
    } else if t.is_ellipsis() {
        t.ellipsis = true;
    } else if t.period_final() && !t.tok.ends_with("..") {
        let base = t.tok[..t.tok.len() - 1].to_lowercase();
        let last = base.rsplit('-').next().unwrap_or("");
        if ABBREV_TYPES.contains(&base.as_str()) || ABBREV_TYPES.contains(&last) {
            t.abbr = true;
        } else {
            t.sentbreak = true;
        }
    }
}

/// `Some(true)`: starts a sentence, `Some(false)`: does not, `None`: unknown.
fn ortho_heuristic(t: &Token) -> Option<bool> {
    if matches!(t.tok.as_str(), ";" | ":" | "," | "." | "!" | "?") {
        return Some(false);
    }
    let ortho = ortho_context(t.type_no_sentperiod());
    if t.first_upper() && ortho & ORTHO_LC != 0 && ortho & ORTHO_MID_UC == 0 {
        return Some(true);
    }
    if t.first_lower() && (ortho & ORTHO_UC != 0 || ortho & ORTHO_BEG_LC == 0) {
        return Some(false);
    }
    None
}

fn second_pass(t1: &mut Token, t2: &Token) {
    if !t1.period_final() {
        return;
    }
    let typ = t1.type_no_period().to_string();
    let next_typ = t2.type_no_sentperiod();
    let initial = t1.is_initial();
    if COLLOCATIONS.iter().any(|&(a, b)| a == typ && b == next_typ) {
        t1.sentbreak = false;
        t1.abbr = true;
        return;
    }
    if (t1.abbr || t1.ellipsis) && !initial {
        if ortho_heuristic(t2) == Some(true) {
            t1.sentbreak = true;
            return;
        }
        if t2.first_upper() && SENT_STARTERS.contains(&next_typ) {
            t1.sentbreak = true;
            return;
        }
    }
    if initial || typ == "##number##" {
        let starter = ortho_heuristic(t2);
        if starter == Some(false) {
            t1.sentbreak = false;
            t1.abbr = true;
            return;
        }
        if starter.is_none()
            && initial
            && t2.first_upper()
            && ortho_context(next_typ) & ORTHO_LC == 0
        {
            t1.sentbreak = false;
            t1.abbr = true;
        }
    }
}

/// Punkt's `text_contains_sentbreak`: a sentence break followed by another token.
fn contains_sentbreak(context: &str) -> bool {
    let mut tokens: Vec<Token> = context
        .split('\n')
        .filter(|line| !super::pystr::strip(line).is_empty())
        .flat_map(|line| word_tokenize(&line.chars().collect::<Vec<_>>()))
        .map(Token::new)
        .collect();
    tokens.iter_mut().for_each(first_pass);
    for i in 0..tokens.len() {
        if i + 1 < tokens.len() {
            let (a, b) = tokens.split_at_mut(i + 1);
            second_pass(&mut a[i], &b[0]);
        }
        if tokens[i].sentbreak && i + 1 < tokens.len() {
            return true;
        }
    }
    false
}

struct EndMatch {
    /// Index of the `.`, `?` or `!`.
    at: usize,
    /// End (exclusive) of `after_tok`.
    after_end: usize,
    /// Start of `next_tok`, when the end char is followed by whitespace.
    next_tok: Option<usize>,
}

/// Punkt's `period_context_re().finditer`.
fn end_matches(s: &[char]) -> Vec<EndMatch> {
    let n = s.len();
    let mut out = Vec::new();
    for i in 0..n {
        if !is_sent_end(s[i]) || i + 1 >= n {
            continue;
        }
        if is_non_word(s[i + 1]) {
            out.push(EndMatch {
                at: i,
                after_end: i + 2,
                next_tok: None,
            });
        } else if is_space(s[i + 1]) {
            let mut j = i + 1;
            while j < n && is_space(s[j]) {
                j += 1;
            }
            if j < n {
                let mut k = j;
                while k < n && !is_space(s[k]) {
                    k += 1;
                }
                out.push(EndMatch {
                    at: i,
                    after_end: k,
                    next_tok: Some(j),
                });
            }
        }
    }
    out
}

/// Punkt's `_match_potential_end_contexts`: each surviving match with its context.
fn end_contexts(s: &[char]) -> Vec<(EndMatch, String)> {
    let text = |a: usize, b: usize| -> String {
        if a < b {
            s[a..b].iter().collect()
        } else {
            String::new()
        }
    };
    let mut out = Vec::new();
    let mut prev_slice = (0usize, 0usize);
    let mut prev: Option<EndMatch> = None;
    for m in end_matches(s) {
        let before = if prev_slice.1 < m.at {
            &s[prev_slice.1..m.at]
        } else {
            &[][..]
        };
        let last_ws = before.iter().rposition(|&c| is_ascii_space(c)).unwrap_or(0);
        let start = if last_ws != 0 {
            last_ws + prev_slice.1 + 1
        } else {
            prev_slice.0
        };
        let word = (start, m.at);
        if let Some(p) = prev.take() {
            if prev_slice.1 <= word.0 {
                let ctx = text(prev_slice.0, prev_slice.1) + &text(p.at, p.after_end);
                out.push((p, ctx));
            }
        }
        prev = Some(m);
        prev_slice = word;
    }
    if let Some(p) = prev {
        let ctx = text(prev_slice.0, prev_slice.1) + &text(p.at, p.after_end);
        out.push((p, ctx));
    }
    out
}

/// Length of Punkt's `re_boundary_realignment` match at the start of `s`, as
/// `(group_rstripped_len, end)`.
fn realignment(s: &[char]) -> Option<(usize, usize)> {
    let closing = |c: char| {
        matches!(
            c,
            '"' | '\''
                | ')'
                | ']'
                | '}'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201c}'
                | '\u{201d}'
                | '\u{ab}'
                | '\u{bb}'
        )
    };
    let mut k = 0;
    while k < s.len() && closing(s[k]) {
        k += 1;
        if k < s.len() && is_space(s[k]) {
            let mut e = k;
            while e < s.len() && is_space(s[e]) {
                e += 1;
            }
            return Some((k, e));
        }
        if k == s.len() || s[k] == '\n' || s[k..].starts_with(&['-', '-']) {
            return Some((k, k));
        }
    }
    None
}

/// Sentence spans in characters, as `PunktSentenceTokenizer.span_tokenize` gives them.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let s: Vec<char> = text.chars().collect();
    let mut slices = Vec::new();
    let mut last_break = 0;
    for (m, ctx) in end_contexts(&s) {
        if contains_sentbreak(&ctx) {
            slices.push((last_break, m.at + 1));
            last_break = m.next_tok.unwrap_or(m.at + 1);
        }
    }
    slices.push((last_break, super::pystr::rstrip(text).chars().count()));

    let nonempty = |(a, b): (usize, usize)| a < b;
    let mut out = Vec::new();
    let mut realign = 0;
    for i in 0..slices.len() {
        let s1 = (slices[i].0 + realign, slices[i].1);
        let Some(&s2) = slices.get(i + 1) else {
            if nonempty(s1) {
                out.push(s1);
            }
            continue;
        };
        let s2_text = if s2.0 < s2.1 { &s[s2.0..s2.1] } else { &[][..] };
        if let Some((len, end)) = realignment(s2_text) {
            out.push((s1.0, s2.0 + len));
            realign = end;
        } else {
            realign = 0;
            if nonempty(s1) {
                out.push(s1);
            }
        }
    }
    out
}

/// Sentences of `text` (nltk's `sent_tokenize` with the English model).
pub fn sentences(text: &str) -> Vec<String> {
    let s: Vec<char> = text.chars().collect();
    sentence_spans(text)
        .into_iter()
        .map(|(a, b)| s[a..b].iter().collect())
        .collect()
}

/// lm-eval's `count_sentences`.
pub fn count_sentences(text: &str) -> usize {
    sentence_spans(text).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_nltk_english() {
        // nltk 3.10.4 with punkt_tab/english gives these four sentences.
        let text =
            "Dr. Smith went home. It was 5 p.m. Then we left! Why? Because U.S. law says so... ok.";
        assert_eq!(
            sentences(text),
            [
                "Dr. Smith went home.",
                "It was 5 p.m. Then we left!",
                "Why?",
                "Because U.S. law says so... ok."
            ]
        );
    }

    #[test]
    fn closing_quote_stays_with_its_sentence() {
        assert_eq!(sentences("He said \"Hi.\""), ["He said \"Hi.\""]);
        assert_eq!(sentences("(One.) Two."), ["(One.)", "Two."]);
        assert_eq!(count_sentences(""), 0);
        assert_eq!(count_sentences("   "), 0);
    }
}
