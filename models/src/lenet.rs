//! LeNet-5 for MNIST, plain and spherized. Parameter names follow the official code:
//! `conv1`, `conv2`, `fc3`, `fc4`, then `output` or `sph_fc5`.

use engine::nn::{Flatten, MaxPool2d, ReLU, Sequential};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::model::{Builder, ConvInit, Layer, Model};

/// `lenet` / `sph_lenet`: conv 1->6 5x5 pad 2, ReLU, max-pool 2; conv 6->16 5x5, ReLU,
/// max-pool 2; 400-120-84-classes with ReLU. The spherized version drops the ReLU after 84
/// and replaces the last layer by SpherizedLinear(84 -> classes).
pub(crate) fn lenet(name: &'static str, cfg: &ModelConfig, spherized: bool) -> Result<Model, ModelError> {
    let mut b = Builder::new(name, cfg);
    let (c1, c2, f3, f4) = (cfg.scaled(6), cfg.scaled(16), cfg.scaled(120), cfg.scaled(84));
    let mut body = Sequential::new("lenet");
    body.push(b.conv("conv1", 1, c1, 5, 2, ConvInit::TorchDefault));
    body.push(ReLU);
    body.push(MaxPool2d { kernel: 2, stride: 2 });
    body.push(b.conv("conv2", c1, c2, 5, 0, ConvInit::TorchDefault));
    body.push(ReLU);
    body.push(MaxPool2d { kernel: 2, stride: 2 });
    body.push(Flatten);
    // 28 -> 28 (pad 2) -> 14 -> 10 (5x5, no pad) -> 5.
    body.push(b.linear("fc3", c2 * 5 * 5, f3, true));
    body.push(ReLU);
    body.push(b.linear("fc4", f3, f4, true));
    let head = if spherized {
        Layer::Spherized(b.spherized("sph_fc5", f4, cfg.classes)?)
    } else {
        body.push(ReLU);
        Layer::Linear(b.linear("output", f4, cfg.classes, true))
    };
    Ok(b.finish([1, 28, 28], false, body, head))
}
