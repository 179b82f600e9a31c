//! The one list of models: every network of the paper by name, with a one-line description
//! and the recipe that builds it. The naming scheme is described in the crate docs.

use std::sync::OnceLock;

use engine::ops::angular::{AngleFn, Projection};

use crate::cnn9::{cnn9, Operator, Scope};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::fnn::simple_fnn;
use crate::lenet::lenet;
use crate::model::Model;
use crate::toy::toy;
use crate::vgg::{vgg, VggDepth};
use crate::vis::vis_cnn;

/// How to build one entry.
#[derive(Clone, Copy, Debug)]
enum Recipe {
    Fnn { spherized: bool },
    LeNet { spherized: bool },
    Vgg { depth: VggDepth, one_channel: bool, spherized: bool },
    Cnn9 { op: Operator, scope: Scope },
    Vis { k: usize, spherized: bool },
    Toy { spherized: bool },
}

/// One registry entry.
struct Entry {
    name: &'static str,
    description: &'static str,
    recipe: Recipe,
}

const fn entry(name: &'static str, description: &'static str, recipe: Recipe) -> Entry {
    Entry { name, description, recipe }
}

use AngleFn::{Cosine, Linear, Sigmoid};
use Projection::{Direct, Indirect};
use Recipe::{Cnn9, Fnn, LeNet, Toy, Vgg, Vis};
use VggDepth::{A11, D16, E19};

const fn angle(f: AngleFn, p: Projection, scope: Scope) -> Recipe {
    Cnn9 { op: Operator::Angle(f, p), scope }
}

static ENTRIES: &[Entry] = &[
    entry("simple_fnn", "SimpleFNN 784-500-300-10 (ReLU), MNIST", Fnn { spherized: false }),
    entry("sph_fnn", "SimpleFNN 784-500 (ReLU) -300 -> spherize -> bias-free 301-10, MNIST", Fnn { spherized: true }),
    entry("lenet", "LeNet-5: conv 6, conv 16 (5x5, max-pool), 400-120-84-10, MNIST", LeNet { spherized: false }),
    entry(
        "sph_lenet",
        "LeNet-5 with 400-120 (ReLU) -84 -> spherize -> bias-free 85-10, MNIST",
        LeNet { spherized: true },
    ),
    entry(
        "vgg11_bn",
        "VGG-11-BN (config A) for 3x32x32, classifier w4-4096-4096-classes",
        Vgg { depth: A11, one_channel: false, spherized: false },
    ),
    entry(
        "vgg16_bn",
        "VGG-16-BN (config D) for 3x32x32, classifier w4-4096-4096-classes",
        Vgg { depth: D16, one_channel: false, spherized: false },
    ),
    entry(
        "vgg19_bn",
        "VGG-19-BN (config E) for 3x32x32, classifier w4-4096-4096-classes",
        Vgg { depth: E19, one_channel: false, spherized: false },
    ),
    entry(
        "vgg11_bn_one",
        "VGG-11-BN for 1x32x32 (F-MNIST resized) with average pooling",
        Vgg { depth: A11, one_channel: true, spherized: false },
    ),
    entry(
        "sph_vgg11_bn",
        "VGG-11-BN, classifier w4-4096 (ReLU, dropout) -4096 -> spherize -> bias-free",
        Vgg { depth: A11, one_channel: false, spherized: true },
    ),
    entry(
        "sph_vgg16_bn",
        "VGG-16-BN, classifier w4-4096 (ReLU, dropout) -4096 -> spherize -> bias-free",
        Vgg { depth: D16, one_channel: false, spherized: true },
    ),
    entry(
        "sph_vgg19_bn",
        "VGG-19-BN, classifier w4-4096 (ReLU, dropout) -4096 -> spherize -> bias-free",
        Vgg { depth: E19, one_channel: false, spherized: true },
    ),
    entry(
        "sph_vgg11_bn_one",
        "VGG-11-BN for 1x32x32 with average pooling, spherized classifier",
        Vgg { depth: A11, one_channel: true, spherized: true },
    ),
    entry(
        "cnn9",
        "CNN-9 (dispersion analysis), ordinary classifier 4096-256-classes",
        Cnn9 { op: Operator::Plain, scope: Scope::Both },
    ),
    entry(
        "cnn9_linear_s",
        "CNN-9, last layer: direct projection, linear 1 - 2 theta/pi",
        angle(Linear, Direct, Scope::Last),
    ),
    entry("cnn9_cosine_s", "CNN-9, last layer: direct projection, cos theta", angle(Cosine, Direct, Scope::Last)),
    entry(
        "cnn9_sigmoid_s",
        "CNN-9, last layer: direct projection, SphereConv sigmoid (k 0.3)",
        angle(Sigmoid, Direct, Scope::Last),
    ),
    entry(
        "cnn9_w_linear_s",
        "CNN-9, last layer: indirect projection (W-Softmax), |x| (1 - 2 theta/pi)",
        angle(Linear, Indirect, Scope::Last),
    ),
    entry(
        "cnn9_w_cosine_s",
        "CNN-9, last layer: indirect projection (W-Softmax), |x| cos theta",
        angle(Cosine, Indirect, Scope::Last),
    ),
    entry(
        "cnn9_w_sigmoid_s",
        "CNN-9, last layer: indirect projection (W-Softmax), |x| sigmoid(theta)",
        angle(Sigmoid, Indirect, Scope::Last),
    ),
    entry(
        "cnn9_linear_d",
        "CNN-9, both classifier layers: direct projection, linear",
        angle(Linear, Direct, Scope::Both),
    ),
    entry(
        "cnn9_cosine_d",
        "CNN-9, both classifier layers: direct projection, cosine",
        angle(Cosine, Direct, Scope::Both),
    ),
    entry(
        "cnn9_sigmoid_d",
        "CNN-9, both classifier layers: direct projection, sigmoid",
        angle(Sigmoid, Direct, Scope::Both),
    ),
    entry(
        "cnn9_w_linear_d",
        "CNN-9, both classifier layers: indirect projection, linear",
        angle(Linear, Indirect, Scope::Both),
    ),
    entry(
        "cnn9_w_cosine_d",
        "CNN-9, both classifier layers: indirect projection, cosine",
        angle(Cosine, Indirect, Scope::Both),
    ),
    entry(
        "cnn9_w_sigmoid_d",
        "CNN-9, both classifier layers: indirect projection, sigmoid",
        angle(Sigmoid, Indirect, Scope::Both),
    ),
    entry(
        "sph_cnn9_s",
        "CNN-9, last classifier layer spherized (256 -> spherize -> bias-free 257-classes)",
        Cnn9 { op: Operator::Spherized, scope: Scope::Last },
    ),
    entry(
        "sph_cnn9_d",
        "CNN-9, both classifier layers spherized",
        Cnn9 { op: Operator::Spherized, scope: Scope::Both },
    ),
    entry(
        "simple_cnn_2d",
        "MNIST CNN with a 2-D feature layer: 6272-256 (ReLU) -2 (linear) -10",
        Vis { k: 2, spherized: false },
    ),
    entry(
        "simple_cnn_3d",
        "MNIST CNN with a 3-D feature layer: 6272-256 (ReLU) -3 (linear) -10",
        Vis { k: 3, spherized: false },
    ),
    entry(
        "sph_cnn_3d",
        "MNIST CNN: 6272-256 (ReLU) -2 -> spherize (3-D sphere) -> bias-free 3-10",
        Vis { k: 2, spherized: true },
    ),
    entry("toy", "toy task: 2-2 (sigmoid) -2", Toy { spherized: false }),
    entry("sph_toy", "toy task: 2 -> 1 (no bias) -> spherize -> bias-free 2-2", Toy { spherized: true }),
];

/// Every model name, in registry order.
pub fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| ENTRIES.iter().map(|e| e.name).collect())
}

/// The one-line description of a model, or `None` for an unknown name.
pub fn describe(name: &str) -> Option<&'static str> {
    ENTRIES.iter().find(|e| e.name == name).map(|e| e.description)
}

/// Builds the model `name` with fresh parameters; an unknown name's error lists every valid one.
pub fn build(name: &str, cfg: &ModelConfig) -> Result<Model, ModelError> {
    let Some(e) = ENTRIES.iter().find(|e| e.name == name) else {
        return Err(ModelError::UnknownModel { name: name.to_string(), valid: names().join(", ") });
    };
    cfg.validate(e.name, matches!(e.recipe, Vgg { .. }))?;
    match e.recipe {
        Fnn { spherized } => simple_fnn(e.name, cfg, spherized),
        LeNet { spherized } => lenet(e.name, cfg, spherized),
        Vgg { depth, one_channel, spherized } => vgg(e.name, cfg, depth, one_channel, spherized),
        Cnn9 { op, scope } => cnn9(e.name, cfg, op, scope),
        Vis { k, spherized } => vis_cnn(e.name, cfg, k, spherized),
        Toy { spherized } => toy(e.name, cfg, spherized),
    }
}
