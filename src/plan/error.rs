//! Errors of the `plan` module: each names the stage, and where relevant the model and tensor.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("stage `{stage}`: model `{model}` has no tensor `{tensor}` (needed for output tensor `{output}`)")]
    MissingTensor {
        stage: String,
        model: String,
        tensor: String,
        output: String,
    },
    #[error("stage `{stage}`: tensor `{tensor}` has shape {got:?} in model `{model}` but {expected:?} in model `{other}`")]
    ShapeMismatch {
        stage: String,
        tensor: String,
        model: String,
        got: Vec<usize>,
        other: String,
        expected: Vec<usize>,
    },
    #[error("stage `{stage}`: parameter `{param}` is required for model `{model}` (tensor `{tensor}`) but is not set at any level")]
    MissingParameter {
        stage: String,
        param: String,
        model: String,
        tensor: String,
    },
    #[error("stage `{stage}`: {message}")]
    Invalid { stage: String, message: String },
    #[error("stage `{stage}`: model `{reference}`: {source}")]
    ModelRef {
        stage: String,
        reference: String,
        #[source]
        source: crate::model::Error,
    },
    #[error(transparent)]
    Recipe(#[from] crate::recipe::Error),
    #[error("stage `{stage}`: tokenizer_source: {source}")]
    Vocab {
        stage: String,
        #[source]
        source: crate::model::vocab::Error,
    },
    #[error("stage `{stage}`: {source}")]
    Model {
        stage: String,
        #[source]
        source: crate::model::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
