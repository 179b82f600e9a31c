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
