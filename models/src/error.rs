//! The models crate's error type.

use engine::EngineError;

/// Everything that can go wrong while building a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The registry has no model of this name.
    #[error("unknown model '{name}'; valid names: {valid}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Every valid name, comma-separated.
        valid: String,
    },
    /// A [`crate::ModelConfig`] field does not fit the model.
    #[error("model {model}: {message}")]
    Config {
        /// The model being built.
        model: String,
        /// What was wrong: the field, what was expected, what was found.
        message: String,
    },
    /// A layer refused its settings (e.g. a spherization radius that is not > 0).
    #[error("model {model}: {source}")]
    Engine {
        /// The model being built.
        model: String,
        /// The engine's error.
        source: EngineError,
    },
}
