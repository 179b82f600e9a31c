//! Plain functions on slices: matrix products, im2col, elementwise loops, the spherization map.
//! Nothing in here knows about autograd.

mod awake;
pub(crate) mod batchnorm;
pub(crate) mod direct;
mod gemm;
pub(crate) mod im2col;
pub(crate) mod pairs;
pub(crate) mod parallel;
mod subnormal;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod winograd;

pub use awake::with_workers_awake;
pub use gemm::{sgemm, sgemm_backend, sgemm_batched, sgemm_serial, Strided, Trans};
pub use im2col::Window;
pub use subnormal::flush_subnormals_to_zero;
pub mod spherize;
