//! The small MNIST CNNs of the paper's visualization, whose representation has 2 or 3
//! dimensions. Names follow the official code: `conv_block.{i}`, `classifier.{i}`.
//!
//! ```text
//! conv_block  32,32 (BN, ReLU), M, 64,64 (BN, ReLU), M, 128,128 (BN, ReLU)   (28x28 -> 128x7x7)
//! plain       classifier.0 Linear(6272, 256), .1 ReLU, .2 Linear(256, k), .3 Linear(k, classes)  (features linear)
//! spherized   classifier.0 Linear(6272, 256), .1 ReLU, .2 Linear(256, k), .3 SpherizedLinear(k -> classes)
//! ```

use engine::nn::{Flatten, MaxPool2d, ReLU, Sequential};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::model::{Builder, ConvInit, Layer, Model};

/// `simple_cnn_2d` (k = 2), `simple_cnn_3d` (k = 3) and `sph_cnn_3d` (k = 2, spherized to 3).
/// The width multiplier scales the conv channels and the 256 units, never k.
pub(crate) fn vis_cnn(name: &'static str, cfg: &ModelConfig, k: usize, spherized: bool) -> Result<Model, ModelError> {
    let mut b = Builder::new(name, cfg);
    let mut conv_block = Sequential::new("conv_block");
    let mut c_in = 1;
    for (stage, width) in [32, 64, 128].map(|w| cfg.scaled(w)).into_iter().enumerate() {
        if stage > 0 {
            conv_block.push(MaxPool2d { kernel: 2, stride: 2 });
        }
        for _ in 0..2 {
            b.push_conv_bn_relu(&mut conv_block, c_in, width, ConvInit::TorchDefault);
            c_in = width;
        }
    }
    let hidden = cfg.scaled(256);
    let mut classifier = Sequential::new("classifier");
    b.push_linear(&mut classifier, c_in * 7 * 7, hidden);
    classifier.push(ReLU);
    b.push_linear(&mut classifier, hidden, k);
    // The k features stay linear in the plain networks too: with a ReLU on a 2- or 3-unit
    // layer the units die early under the paper's recipe (every unit zero on every test image),
    // in PyTorch as here (scripts/vis-collapse-pytorch.py: 3 of 3 seeds of the 2-D network at
    // 11.35% after one epoch; without the ReLU, 96.31% and no dead unit).
    let head = if spherized {
        Layer::Spherized(b.spherized(&classifier.next_name(), k, cfg.classes)?)
    } else {
        Layer::Linear(b.linear(&classifier.next_name(), k, cfg.classes, true))
    };
    let mut body = Sequential::new("vis_cnn");
    body.push(conv_block);
    body.push(Flatten);
    body.push(classifier);
    Ok(b.finish([1, 28, 28], false, body, head))
}
