//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Operand shapes do not fit the operation.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A layer or optimizer was configured with an invalid value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A checkpoint file could not be read or does not match the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An I/O failure, with the file it concerned (the operating system's error is part of
    /// the message, not a separate cause, so that an error chain names it once).
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
}

/// Result with [`EngineError`].
pub type Result<T> = std::result::Result<T, EngineError>;
