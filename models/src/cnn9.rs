//! CNN-9 for the paper's dispersion analysis (CIFAR-10): nine 3x3 conv + BN + ReLU layers,
//! then a two-layer classifier whose layers use a chosen operator.
//!
//! ```text
//! features    128,128,128, M, 192,192,192, M, 256,256,256, M       (32x32 -> 256x4x4)
//! classifier  .0: 4096 -> 256   .1: 256 -> classes                 (no activation between)
//! ```
//!
//! Operators: ordinary linear, an angle-based projection (see `engine::ops::angular`), or
//! spherization. Names: `features.{i}`; an ordinary layer `classifier.{i}.weight/.bias`; a
//! projection `classifier.{i}.fc.weight` (as the official `HSNLinear`); a spherized layer
//! `classifier.{i}.sph.scaling`, `classifier.{i}.layer.weight`.

use engine::nn::{AngularLinear, Flatten, MaxPool2d, Sequential};
use engine::ops::angular::{AngleFn, Projection};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::model::{Builder, ConvInit, Layer, Model};

/// What a CNN-9 classifier layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operator {
    /// Ordinary `x W^T + b`.
    Plain,
    /// An angle-based projection, bias-free.
    Angle(AngleFn, Projection),
    /// Spherization then a bias-free linear map.
    Spherized,
}

/// Which classifier layers get the operator (the other one stays ordinary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Only the last layer (256 -> classes): the `_s` variants.
    Last,
    /// Both layers (4096 -> 256 and 256 -> classes): the `_d` variants.
    Both,
}

/// One classifier layer `n -> m` computing `op`.
fn classifier_layer(
    b: &mut Builder,
    name: &str,
    op: Operator,
    n: usize,
    m: usize,
) -> std::result::Result<Layer, ModelError> {
    Ok(match op {
        Operator::Plain => Layer::Linear(b.linear(name, n, m, true)),
        Operator::Angle(f, projection) => {
            Layer::Angular(AngularLinear::new(&mut b.store, name, n, m, f, projection, &mut b.rng))
        }
        Operator::Spherized => Layer::Spherized(b.spherized(name, n, m)?),
    })
}

/// The stage widths of the feature extractor, 'M' being a 2x2 max-pool.
const STAGES: [usize; 3] = [128, 192, 256];
/// Hidden units of the classifier.
const HIDDEN: usize = 256;

/// A CNN-9 whose last classifier layer (`Scope::Last`) or both (`Scope::Both`) compute `op`.
pub(crate) fn cnn9(
    name: &'static str,
    cfg: &ModelConfig,
    op: Operator,
    scope: Scope,
) -> std::result::Result<Model, ModelError> {
    let mut b = Builder::new(name, cfg);
    let mut features = Sequential::new("features");
    let mut c_in = 3;
    for width in STAGES.map(|w| cfg.scaled(w)) {
        for _ in 0..3 {
            b.push_conv_bn_relu(&mut features, c_in, width, ConvInit::TorchDefault);
            c_in = width;
        }
        features.push(MaxPool2d { kernel: 2, stride: 2 });
    }
    let hidden = cfg.scaled(HIDDEN);
    let mut classifier = Sequential::new("classifier");
    let first_op = if scope == Scope::Both { op } else { Operator::Plain };
    let first = classifier_layer(&mut b, &classifier.next_name(), first_op, c_in * 4 * 4, hidden)?;
    classifier.push(first);
    let head = classifier_layer(&mut b, &classifier.next_name(), op, hidden, cfg.classes)?;
    let mut body = Sequential::new("cnn9");
    body.push(features);
    body.push(Flatten);
    body.push(classifier);
    Ok(b.finish([3, 32, 32], false, body, head))
}
