//! The toy task's networks (two clusters in the plane). Names follow the official
//! `toy_task.py`: `fc1`, then `fc2` or `sph_fc2`. Their hidden layer is the representation
//! the paper plots, so the width multiplier leaves it alone.

use engine::nn::{Flatten, Sequential, Sigmoid};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::model::{Builder, Layer, Model};

/// `toy`: 2-2 (sigmoid) -2; `sph_toy`: 2 -> 1 (no bias) -> SpherizedLinear(1 -> classes).
/// Inputs are points [batch, 2] (or [batch, 2, 1, 1]).
pub(crate) fn toy(name: &'static str, cfg: &ModelConfig, spherized: bool) -> Result<Model, ModelError> {
    let mut b = Builder::new(name, cfg);
    let mut body = Sequential::new("toy");
    body.push(Flatten);
    let head = if spherized {
        body.push(b.linear("fc1", 2, 1, false));
        Layer::Spherized(b.spherized("sph_fc2", 1, cfg.classes)?)
    } else {
        body.push(b.linear("fc1", 2, 2, true));
        body.push(Sigmoid);
        Layer::Linear(b.linear("fc2", 2, cfg.classes, true))
    };
    Ok(b.finish([2, 1, 1], true, body, head))
}
