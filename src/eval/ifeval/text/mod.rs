//! Text utilities the checkers share, each a port of what lm-eval's checkers call in
//! Python: `str` predicates ([`pystr`]), nltk's Punkt sentence splitter ([`punkt`]) and
//! word tokenizer ([`treebank`]), `json.loads` acceptance ([`pyjson`]) and language
//! detection ([`lang`]).
pub mod lang;
pub mod punkt;
mod punkt_data;
pub mod pyjson;
pub mod pystr;
pub mod treebank;
