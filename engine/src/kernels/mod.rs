//! Plain functions on slices: matrix products, im2col, elementwise loops, the spherization map.
//! Nothing in here knows about autograd.

pub mod gemm;
pub mod im2col;
pub mod parallel;

pub use gemm::{sgemm, sgemm_serial, Trans};
pub use im2col::Window;
pub mod spherize;
