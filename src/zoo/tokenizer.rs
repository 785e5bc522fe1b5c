//! The zoo's character-level tokenizer, written as an ordinary `tokenizer.json`.
//!
//! One token per printable ASCII character and newline (ids 0–95), then Qwen's special
//! tokens `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`. It is a BPE model with an empty
//! merge list (so every character is its own token) and a `Fuse` decoder (so decoding
//! concatenates characters instead of joining them with spaces). Characters outside the
//! alphabet are dropped by the tokenizer; the skills never use them.
use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::BPE;
use tokenizers::{AddedToken, Tokenizer};

use super::{Error, Result};

pub const ENDOFTEXT: &str = "<|endoftext|>";
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

/// The ordinary characters, in id order.
pub fn alphabet() -> Vec<char> {
    let mut chars: Vec<char> = (0x20u8..=0x7e).map(char::from).collect();
    chars.push('\n');
    chars
}

/// Id of `<|endoftext|>` (padding and end of sequence).
pub fn endoftext_id() -> u32 {
    alphabet().len() as u32
}

/// Tokens the tokenizer knows, special ones included.
pub fn token_count() -> usize {
    alphabet().len() + 3
}

/// Build the tokenizer.
pub fn build() -> Result<Tokenizer> {
    let vocab: tokenizers::models::bpe::Vocab = alphabet()
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .map_err(|e| Error::Tokenizer {
            message: e.to_string(),
        })?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_decoder(Some(Fuse::new()));
    let specials: Vec<AddedToken> = [ENDOFTEXT, IM_START, IM_END]
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| Error::Tokenizer {
            message: e.to_string(),
        })?;
    Ok(tokenizer)
}

/// `tokenizer.json` text (pretty-printed, deterministic).
pub fn tokenizer_json(tokenizer: &Tokenizer) -> Result<String> {
    tokenizer.to_string(true).map_err(|e| Error::Tokenizer {
        message: e.to_string(),
    })
}

/// `tokenizer_config.json` as Qwen2 checkpoints write it (Qwen's ChatML template).
pub fn tokenizer_config_json() -> String {
    let added: serde_json::Map<String, serde_json::Value> = [ENDOFTEXT, IM_START, IM_END]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                (endoftext_id() as usize + i).to_string(),
                serde_json::json!({
                    "content": t, "lstrip": false, "normalized": false,
                    "rstrip": false, "single_word": false, "special": true
                }),
            )
        })
        .collect();
    let config = serde_json::json!({
        "add_bos_token": false,
        "add_prefix_space": false,
        "added_tokens_decoder": added,
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": null,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "eos_token": ENDOFTEXT,
        "errors": "replace",
        "model_max_length": 512,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": false,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": null
    });
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

/// Qwen2's ChatML template without the default system prompt.
const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Token ids of `text` (no special tokens added).
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let enc = tokenizer
        .encode(text, false)
        .map_err(|e| Error::Tokenizer {
            message: e.to_string(),
        })?;
    Ok(enc.get_ids().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_character_and_round_trip() {
        let tok = build().unwrap();
        let text = "reverse abc=cba\n12+345=357\n";
        let ids = encode(&tok, text).unwrap();
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        let ids = encode(&tok, "ab<|endoftext|>").unwrap();
        assert_eq!(ids, vec![65, 66, endoftext_id()]);
    }

    #[test]
    fn serialized_tokenizer_loads_back() {
        let tok = build().unwrap();
        let json = tokenizer_json(&tok).unwrap();
        let back: Tokenizer = json.parse().unwrap();
        assert_eq!(
            encode(&back, "sort dcba=abcd\n").unwrap(),
            encode(&tok, "sort dcba=abcd\n").unwrap()
        );
        assert_eq!(back.get_vocab_size(true), token_count());
    }
}
