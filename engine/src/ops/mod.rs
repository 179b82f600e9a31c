//! Ops, one file per family; in each, an op's forward (a `Graph` method that records it)
//! sits next to its backward (a method of the op's saved state, called from the one `match`
//! in `backward.rs`).

pub mod angular;
mod conv;
pub mod elementwise;
mod linalg;
mod loss;
mod norm;
mod pool;
mod reduce;
mod spherize;

pub use norm::BatchNormIds;

/// (batch, channels, pixels per channel) of a [N, C] or [N, C, H, W] input: the shapes that
/// batch-norm and spherization treat per channel (one pixel per channel for [N, C]).
pub(crate) fn channel_layout(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match *shape {
        [n, c] => Some((n, c, 1)),
        [n, c, h, w] => Some((n, c, h * w)),
        _ => None,
    }
}
