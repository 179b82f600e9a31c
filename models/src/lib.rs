//! The paper's networks, plain and spherized, built from the engine's modules, and a
//! registry by name ([`build`], [`names`], [`describe`]).
//!
//! A [`Model`] owns its parameters and batch-norm buffers (named as in the official PyTorch
//! code, so checkpoints compare) and its [`Network`] of layers; train or eval is chosen by the
//! [`engine::Graph`]'s mode. Models know nothing of files, flags or terminals.
//!
//! Every network gives its logits and the *representation* that feeds its last layer: for
//! spherized networks the spherized vector, whose norm is the radius.
//!
//! # Names
//! `simple_fnn`, `lenet`, `vgg11_bn`, `vgg16_bn`, `vgg19_bn`, `vgg11_bn_one` (1 channel, average
//! pooling), `simple_cnn_2d`, `simple_cnn_3d`, `toy`, and `cnn9`; a `sph_` prefix names the
//! spherized version (`sph_fnn`, `sph_lenet`, `sph_vgg11_bn`, ..., `sph_cnn_3d`, `sph_toy`), whose
//! last linear layer becomes spherization + a bias-free map. CNN-9 variants for the dispersion
//! analysis are `cnn9_{operator}_{scope}`:
//! - operator `linear`, `cosine`, `sigmoid`: direct projections (input and weights normalized,
//!   `y = f(theta)`); `w_linear`, `w_cosine`, `w_sigmoid`: indirect projections ("W-Softmax",
//!   weights normalized only, `y = |x| f(theta)`); all bias-free;
//! - scope `s`: the last classifier layer only; `d`: both classifier layers.
//!
//! `sph_cnn9_s` / `sph_cnn9_d` spherize the last or both classifier layers.
//!
//! # Sizes
//! [`ModelConfig::width_multiplier`] scales every hidden width (conv channels, hidden linear
//! units such as VGG's 4096 and CNN-9's 256), rounding to the nearest integer (at least 1); the
//! input, the classes, and the 1/2/3-unit feature layers of the toy and visualization networks
//! keep their sizes. [`ModelConfig::widths`] sets VGG's stage widths before the multiplier.
//!
//! # Departures from the official code (on purpose, following issue 4)
//! - CNN-9's direct projections use only the angle (bias-free); the official `HSNLinear`
//!   adds a bias to `<x/|x|, w>` before dividing by `|w|`.
//! - `cnn9_*_d` applies the operator to both classifier layers and `sph_cnn9_d` spherizes
//!   both; the official `-d` networks put `--norm` on the first layer and `--w_norm` on the last.
//! - `cnn9` is the ordinary CNN-9 (the official `CNN9`); the official "base" run used
//!   `HSNLinear(operator='none')`, which also normalizes the last layer's input.

#![warn(missing_docs)]

mod cnn9;
mod config;
mod error;
mod fnn;
mod lenet;
mod model;
mod registry;
mod toy;
mod vgg;
mod vis;

pub use config::ModelConfig;
pub use error::ModelError;
pub use model::{Model, Network};
pub use registry::{build, describe, names};
