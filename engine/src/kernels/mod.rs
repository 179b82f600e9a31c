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

/// A convolution's sizes beyond one image's window, as every algorithm takes them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvShape {
    /// The window over one image.
    pub window: Window,
    /// Images in the batch.
    pub batch: usize,
    /// Output channels.
    pub c_out: usize,
}

/// Where a convolution's backward pass puts its gradients, each only where asked for: dx
/// stored into a new buffer (`store_dx`) or added to, dw added to.
pub(crate) struct ConvGrads<'a> {
    /// The input's gradient, if wanted.
    pub dx: Option<&'a mut [f32]>,
    /// Whether `dx` is new (to be stored into) rather than holding sums to add to.
    pub store_dx: bool,
    /// The weight's gradient, if wanted.
    pub dw: Option<&'a mut [f32]>,
}

/// Every convolution algorithm's forward: `y = conv(x, w) + bias`.
pub(crate) type ConvForward = fn(&[f32], &[f32], Option<&[f32]>, &ConvShape, &mut [f32]);
/// Every convolution algorithm's backward: `(x, w, dy, shape, where the gradients go)`.
pub(crate) type ConvBackward = fn(&[f32], &[f32], &[f32], &ConvShape, ConvGrads);
