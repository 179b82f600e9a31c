//! VGG-11/16/19 with batch-norm for 32x32 inputs (CIFAR, or F-MNIST resized), plain and
//! spherized, with a width list. Layout and names follow torchvision's `make_layers`
//! (`features.{i}`) and the official code's classifier (`classifier.{i}`):
//!
//! ```text
//! plain      classifier.0 Linear(w4, 4096), .1 ReLU, .2 Dropout, .3 Linear(4096, 4096), .4 ReLU, .5 Dropout, .6 Linear(4096, classes)
//! spherized  classifier.0 Linear(w4, 4096), .1 ReLU, .2 Dropout, .3 Linear(4096, 4096), .4 SpherizedLinear(4096 -> classes)
//! ```
//!
//! Five 2x2 poolings take 32x32 to 1x1, so the classifier's input is the last width w4.

use engine::nn::{AvgPool2d, Dropout, Flatten, MaxPool2d, ReLU, Sequential};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::model::{Builder, ConvInit, Layer, Model};

/// Which VGG: the number of 3x3 convolutions in each of the five stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VggDepth {
    /// VGG-11, torchvision's configuration 'A'.
    A11,
    /// VGG-16, configuration 'D'.
    D16,
    /// VGG-19, configuration 'E'.
    E19,
}

impl VggDepth {
    fn convs_per_stage(self) -> [usize; 5] {
        match self {
            VggDepth::A11 => [1, 1, 2, 2, 2],
            VggDepth::D16 => [2, 2, 3, 3, 3],
            VggDepth::E19 => [2, 2, 4, 4, 4],
        }
    }
}

/// The paper's default width list.
const DEFAULT_WIDTHS: [usize; 4] = [64, 128, 256, 512];
/// Hidden units of the classifier.
const HIDDEN: usize = 4096;

/// A VGG-BN. `one_channel`: 1x32x32 input and average pooling (the official F-MNIST variant);
/// otherwise 3x32x32 and max-pooling. Convolutions use torchvision's VGG init; the
/// classifier, which the official code rebuilds after that init, PyTorch's default.
pub(crate) fn vgg(
    name: &'static str,
    cfg: &ModelConfig,
    depth: VggDepth,
    one_channel: bool,
    spherized: bool,
) -> Result<Model, ModelError> {
    let mut b = Builder::new(name, cfg);
    let widths = cfg.widths.unwrap_or(DEFAULT_WIDTHS).map(|w| cfg.scaled(w));
    let in_channels = if one_channel { 1 } else { 3 };
    let mut features = Sequential::new("features");
    let mut c_in = in_channels;
    for (stage, &convs) in depth.convs_per_stage().iter().enumerate() {
        // Stage 5 reuses the 4th width.
        let width = widths[stage.min(3)];
        for _ in 0..convs {
            b.push_conv_bn_relu(&mut features, c_in, width, ConvInit::KaimingFanOut);
            c_in = width;
        }
        if one_channel {
            features.push(AvgPool2d { kernel: 2, stride: 2 });
        } else {
            features.push(MaxPool2d { kernel: 2, stride: 2 });
        }
    }
    let hidden = cfg.scaled(HIDDEN);
    let mut classifier = Sequential::new("classifier");
    b.push_linear(&mut classifier, c_in, hidden);
    classifier.push(ReLU);
    classifier.push(Dropout(0.5));
    b.push_linear(&mut classifier, hidden, hidden);
    let head = if spherized {
        Layer::Spherized(b.spherized(&classifier.next_name(), hidden, cfg.classes)?)
    } else {
        classifier.push(ReLU);
        classifier.push(Dropout(0.5));
        Layer::Linear(b.linear(&classifier.next_name(), hidden, cfg.classes, true))
    };
    let mut body = Sequential::new("vgg");
    body.push(features);
    body.push(Flatten);
    body.push(classifier);
    Ok(b.finish([in_channels, 32, 32], false, body, head))
}
