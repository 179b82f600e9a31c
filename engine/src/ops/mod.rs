//! Ops, one file per family; in each, an op's forward (a `Graph` method that records it)
//! sits next to its backward (called from the one `match` in `autograd`).

pub mod angular;
pub mod conv;
pub mod elementwise;
pub mod linalg;
pub mod loss;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod spherize;

/// (batch, channels, pixels per channel) of a [N, C] or [N, C, H, W] input: the shapes that
/// batch-norm and spherization treat per channel (one pixel per channel for [N, C]).
pub(crate) fn channel_layout(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match *shape {
        [n, c] => Some((n, c, 1)),
        [n, c, h, w] => Some((n, c, h * w)),
        _ => None,
    }
}
