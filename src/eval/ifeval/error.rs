//! Errors of the IFEval checkers: each names the document, the instruction id and the
//! kwarg involved, and what to change.

/// An IFEval document that lamarck cannot check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The instruction id is not one lm-eval's `instructions_registry.py` registers.
    #[error("unknown IFEval instruction id `{id}`; the ids lm-eval registers are: {known}")]
    UnknownInstruction { id: String, known: String },
    /// A kwarg the checker needs is absent, null or falsy (lm-eval would draw it at random).
    #[error(
        "instruction `{id}` needs kwarg `{kwarg}` (absent, null, 0 or empty here; lm-eval would \
         pick a random value, lamarck needs it set in the document's `kwargs`)"
    )]
    MissingKwarg { id: String, kwarg: &'static str },
    /// A kwarg has the wrong type or a value lm-eval rejects.
    #[error("instruction `{id}`: kwarg `{kwarg}`: {message}")]
    BadKwarg {
        id: String,
        kwarg: &'static str,
        message: String,
    },
    /// The document lacks `instruction_id_list`, `kwargs` or `prompt`, or they do not fit.
    #[error("IFEval document: {message}")]
    Doc { message: String },
    /// Any of the above, in the document with this `key`.
    #[error("IFEval document with key {key}: {source}")]
    InDoc {
        key: String,
        #[source]
        source: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
