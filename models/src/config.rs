//! [`ModelConfig`]: what a caller may choose when building a network.

use engine::nn::SphereConfig;

use crate::error::ModelError;

/// How to build a network: class count, widths, spherization settings and seed.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Number of output classes (10 for (F-)MNIST and CIFAR-10, 100 for CIFAR-100, 2 for the toy task).
    pub classes: usize,
    /// VGG's four stage widths (`None` = 64/128/256/512; stage 5 reuses the 4th). VGG models only.
    pub widths: Option<[usize; 4]>,
    /// Factor on every hidden width (conv channels and hidden linear units); 1 = the paper's sizes.
    /// Inputs, classes and the toy's and visualization CNNs' 1/2/3-unit feature layers are never scaled.
    pub width_multiplier: f32,
    /// Settings of every spherization layer (ignored by plain models).
    pub sphere: SphereConfig,
    /// Seed of the parameter initialization.
    pub seed: u64,
}

impl Default for ModelConfig {
    /// The paper's defaults: 10 classes, default widths, multiplier 1, scaling 1 (learned),
    /// radius 1 (fixed), delta 1e-6, seed 0.
    fn default() -> Self {
        ModelConfig { classes: 10, widths: None, width_multiplier: 1.0, sphere: SphereConfig::default(), seed: 0 }
    }
}

impl ModelConfig {
    /// A hidden width after the multiplier, rounded to the nearest integer and at least 1.
    pub(crate) fn scaled(&self, width: usize) -> usize {
        ((width as f64 * self.width_multiplier as f64).round() as usize).max(1)
    }

    /// Checks the fields that do not depend on a layer; `takes_widths` says whether the
    /// model has a width list (VGG) so that `widths` is not silently ignored elsewhere.
    pub(crate) fn validate(&self, model: &str, takes_widths: bool) -> Result<(), ModelError> {
        let fail = |message: String| Err(ModelError::Config { model: model.to_string(), message });
        if self.classes == 0 {
            return fail("classes must be at least 1, found 0".into());
        }
        if !(self.width_multiplier.is_finite() && self.width_multiplier > 0.0) {
            return fail(format!("width_multiplier must be a finite number > 0, found {}", self.width_multiplier));
        }
        match self.widths {
            Some(w) if !takes_widths => fail(format!("widths {w:?} apply to VGG models only")),
            Some(w) if w.contains(&0) => fail(format!("widths must all be at least 1, found {w:?}")),
            _ => Ok(()),
        }
    }
}
