//! SimpleFNN (784-500-300-classes, ReLU) for MNIST, plain and spherized. Parameter names
//! follow the official code: `fc1`, `fc2`, then `output` or `sph_fc3`.

use engine::nn::{Flatten, ReLU, Sequential};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::model::{Builder, Layer, Model};

/// `simple_fnn` / `sph_fnn`: the spherized version drops the ReLU after 300 and replaces
/// the last layer by SpherizedLinear(300 -> classes).
pub(crate) fn simple_fnn(name: &'static str, cfg: &ModelConfig, spherized: bool) -> Result<Model, ModelError> {
    let mut b = Builder::new(name, cfg);
    let (h1, h2) = (cfg.scaled(500), cfg.scaled(300));
    let mut body = Sequential::new("fnn");
    body.push(Flatten);
    body.push(b.linear("fc1", 28 * 28, h1, true));
    body.push(ReLU);
    body.push(b.linear("fc2", h1, h2, true));
    let head = if spherized {
        Layer::Spherized(b.spherized("sph_fc3", h2, cfg.classes)?)
    } else {
        body.push(ReLU);
        Layer::Linear(b.linear("output", h2, cfg.classes, true))
    };
    Ok(b.finish([1, 28, 28], true, body, head))
}
