//! spherize's engine: tensors, a tape for reverse-mode autodiff, fast CPU kernels, layers,
//! optimizers and checkpoints, written from scratch for the CPU.
//!
//! Floors, bottom up: [`tensor`] (shape + f32 storage), [`kernels`] (plain slice functions),
//! [`autograd`] (the tape), [`ops`] (forward + backward per op), [`nn`] (modules),
//! [`optim`] (optimizers, schedules), [`checkpoint`] (safetensors files).

pub mod autograd;
pub mod error;
pub mod kernels;
pub mod ops;
pub mod params;
pub mod tensor;

pub use autograd::{Graph, Mode, Var};
pub use error::{EngineError, Result};
pub use params::{Kind, ParamId, ParamStore};
pub use tensor::Tensor;
pub mod checkpoint;
pub mod nn;
pub mod optim;
