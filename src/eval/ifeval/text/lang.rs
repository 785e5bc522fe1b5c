//! Language detection for `language:response_language` and `change_case:english_*`.
//!
//! lm-eval calls `langdetect.detect` (a port of Google's language-detection, 55
//! languages, randomised unless seeded); lamarck uses the `whatlang` crate (trigram
//! model, 69 languages, deterministic, no data files) and maps its ISO 639-3 codes to the
//! ISO 639-1 codes langdetect returns, considering only the 50 languages both know. They agree on clear text of a sentence or more;
//! they can disagree on very short or mixed-language text (see evals/README.md).

/// What langdetect would say: `None` where it raises "No features in text" (no letter
/// at all), which lm-eval's checkers count as followed; otherwise the ISO 639-1 code,
/// or an empty string when nothing is recognised.
pub fn detect(text: &str) -> Option<String> {
    if !text.chars().any(char::is_alphabetic) {
        return None;
    }
    let code = detector().detect_lang(text).map_or("", iso_639_1);
    Some(code.to_string())
}

/// whatlang restricted to the languages langdetect knows: a verdict can only be one
/// langdetect could give (whatlang alone reads short English as Latin).
fn detector() -> &'static whatlang::Detector {
    use whatlang::Lang::*;
    static DETECTOR: std::sync::OnceLock<whatlang::Detector> = std::sync::OnceLock::new();
    DETECTOR.get_or_init(|| {
        whatlang::Detector::with_allowlist(vec![
            Afr, Ara, Ben, Bul, Cat, Ces, Cmn, Dan, Deu, Ell, Eng, Est, Fin, Fra, Guj, Heb, Hin,
            Hrv, Hun, Ind, Ita, Jpn, Kan, Kor, Lav, Lit, Mal, Mar, Mkd, Nep, Nld, Nob, Pan, Pes,
            Pol, Por, Ron, Rus, Slk, Slv, Spa, Swe, Tam, Tel, Tgl, Tha, Tur, Ukr, Urd, Vie,
        ])
    })
}

/// langdetect's code for a whatlang language (`zh-cn` for Mandarin, as langdetect has).
fn iso_639_1(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Epo => "eo",
        Eng => "en",
        Rus => "ru",
        Cmn => "zh-cn",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Ben => "bn",
        Fra => "fr",
        Deu => "de",
        Ukr => "uk",
        Kat => "ka",
        Ara => "ar",
        Hin => "hi",
        Jpn => "ja",
        Heb => "he",
        Yid => "yi",
        Pol => "pl",
        Amh => "am",
        Jav => "jv",
        Kor => "ko",
        Nob => "no",
        Dan => "da",
        Swe => "sv",
        Fin => "fi",
        Tur => "tr",
        Nld => "nl",
        Hun => "hu",
        Ces => "cs",
        Ell => "el",
        Bul => "bg",
        Bel => "be",
        Mar => "mr",
        Kan => "kn",
        Ron => "ro",
        Slv => "sl",
        Hrv => "hr",
        Srp => "sr",
        Mkd => "mk",
        Lit => "lt",
        Lav => "lv",
        Est => "et",
        Tam => "ta",
        Vie => "vi",
        Urd => "ur",
        Tha => "th",
        Guj => "gu",
        Uzb => "uz",
        Pan => "pa",
        Aze => "az",
        Ind => "id",
        Tel => "te",
        Pes => "fa",
        Mal => "ml",
        Ori => "or",
        Mya => "my",
        Nep => "ne",
        Sin => "si",
        Khm => "km",
        Tuk => "tk",
        Aka => "ak",
        Zul => "zu",
        Sna => "sn",
        Afr => "af",
        Lat => "la",
        Slk => "sk",
        Cat => "ca",
        Tgl => "tl",
        Hye => "hy",
        #[allow(unreachable_patterns)]
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn detects_clear_text_and_no_features() {
        let en = "The village sits at the edge of a quiet valley, where farmers grow apples.";
        assert_eq!(detect(en).as_deref(), Some("en"));
        assert_eq!(detect(&en.to_uppercase()).as_deref(), Some("en"));
        assert_eq!(detect("12345 !!!"), None);
    }
}
