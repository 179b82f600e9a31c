//! spherize's engine: tensors, a tape for reverse-mode autodiff, fast CPU kernels, layers,
//! optimizers and checkpoints, written from scratch for the CPU.
//!
//! Floors, bottom up: [`tensor`] (shape + f32 storage), [`kernels`] (plain slice functions),
//! [`autograd`] (the tape, with `op`: what each op saves for backward), [`ops`] (forward +
//! backward per op), `backward` (the reverse walk, one `match` over the ops), [`nn`]
//! (modules), [`optim`] (optimizers, schedules), [`checkpoint`] (safetensors files).
//! Each floor uses only the floors below it.

#![warn(missing_docs)]

pub mod autograd;
mod backward;
mod buffers;
pub use buffers::release_all as release_buffers;
pub mod check;
pub mod error;
pub mod kernels;
mod op;
pub mod ops;
pub mod params;
pub mod profile;
pub mod tensor;

pub use autograd::{Graph, Mode, Var};
pub use error::{EngineError, Result};
pub use params::{Kind, ParamId, ParamStore};
pub use tensor::Tensor;
pub mod checkpoint;
pub mod nn;
pub mod optim;
