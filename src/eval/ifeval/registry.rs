//! The instruction ids lm-eval's `instructions_registry.py` registers, each with the
//! builder that reads its kwargs (as `build_description` does) and returns its check.
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::kwargs::Kwargs;
use super::{change_case, combination, content, format, keywords, language, length};
use super::{punctuation, startend};

/// One instruction's check of a response (lm-eval's `check_following`).
pub type Checker = Box<dyn Fn(&str) -> bool + Send + Sync>;

type Builder = fn(&Kwargs) -> Result<Checker>;

/// Every registered id, in `instructions_registry.INSTRUCTION_DICT`'s order.
pub const INSTRUCTIONS: &[(&str, Builder)] = &[
    ("keywords:existence", keywords::existence),
    ("keywords:frequency", keywords::frequency),
    ("keywords:forbidden_words", keywords::forbidden_words),
    ("keywords:letter_frequency", keywords::letter_frequency),
    ("language:response_language", language::response_language),
    (
        "length_constraints:number_sentences",
        length::number_sentences,
    ),
    (
        "length_constraints:number_paragraphs",
        length::number_paragraphs,
    ),
    ("length_constraints:number_words", length::number_words),
    (
        "length_constraints:nth_paragraph_first_word",
        length::nth_paragraph_first_word,
    ),
    (
        "detectable_content:number_placeholders",
        content::number_placeholders,
    ),
    ("detectable_content:postscript", content::postscript),
    (
        "detectable_format:number_bullet_lists",
        format::number_bullet_lists,
    ),
    (
        "detectable_format:constrained_response",
        format::constrained_response,
    ),
    (
        "detectable_format:number_highlighted_sections",
        format::number_highlighted_sections,
    ),
    (
        "detectable_format:multiple_sections",
        format::multiple_sections,
    ),
    ("detectable_format:json_format", format::json_format),
    ("detectable_format:title", format::title),
    ("combination:two_responses", combination::two_responses),
    ("combination:repeat_prompt", combination::repeat_prompt),
    ("startend:end_checker", startend::end_checker),
    (
        "change_case:capital_word_frequency",
        change_case::capital_word_frequency,
    ),
    ("change_case:english_capital", change_case::english_capital),
    (
        "change_case:english_lowercase",
        change_case::english_lowercase,
    ),
    ("punctuation:no_comma", punctuation::no_comma),
    ("startend:quotation", startend::quotation),
];

/// The check for instruction `id` with its `kwargs` (a document's `kwargs[i]`).
pub fn build(id: &str, kwargs: Option<&Map<String, Value>>) -> Result<Checker> {
    let Some((_, builder)) = INSTRUCTIONS.iter().find(|(name, _)| *name == id) else {
        let known = INSTRUCTIONS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::UnknownInstruction {
            id: id.to_string(),
            known,
        });
    };
    builder(&Kwargs::new(id, kwargs))
}
