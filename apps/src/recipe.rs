//! Training settings: every knob of a run, resolved from explicit flags, a resumed run's
//! saved settings, the paper's recipe (../shared/docs/spherization.md) and defaults, in
//! that order of precedence.

use anyhow::bail;
use engine::nn::SphereConfig;
use models::ModelConfig;
use serde::{Deserialize, Serialize};

/// Every resolved setting of a training run (written to config.json and checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Registry name of the model.
    pub model: String,
    /// Data set name.
    pub dataset: String,
    /// Number of epochs to train in total.
    pub epochs: usize,
    /// Images per training step.
    pub batch_size: usize,
    /// sgd, adam or adamw.
    pub optimizer: String,
    /// Base learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// Weight decay (L2 for sgd/adam, decoupled for adamw).
    pub weight_decay: f32,
    /// Nesterov momentum for SGD.
    pub nesterov: bool,
    /// constant, step:K:GAMMA or multistep:E1,E2:GAMMA (1-based epochs, see `engine::optim::Schedule`).
    pub schedule: String,
    /// Initial spherization scaling alpha.
    pub scaling: f32,
    /// Spherization radius r.
    pub radius: f32,
    /// Whether alpha is trained.
    pub learn_scaling: bool,
    /// Whether r is trained.
    pub learn_radius: bool,
    /// Spherization delta.
    pub delta: f64,
    /// VGG widths (four numbers), if not the default.
    pub width: Option<Vec<usize>>,
    /// Channel multiplier (CNN-9).
    pub width_multiplier: f32,
    /// The paper's augmentation (crop/flip/rotation) on the training set.
    pub augment: bool,
    /// Seed of initialization, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Use only the first N training images.
    pub train_limit: Option<usize>,
    /// Use only the first N test images.
    pub test_limit: Option<usize>,
}

/// Settings the user may give; `None` means "not given".
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub optimizer: Option<String>,
    pub lr: Option<f32>,
    pub momentum: Option<f32>,
    pub weight_decay: Option<f32>,
    pub nesterov: Option<bool>,
    pub schedule: Option<String>,
    pub scaling: Option<f32>,
    pub radius: Option<f32>,
    pub learn_scaling: Option<bool>,
    pub learn_radius: Option<bool>,
    pub delta: Option<f64>,
    pub width: Option<Vec<usize>>,
    pub width_multiplier: Option<f32>,
    pub augment: Option<bool>,
    pub seed: Option<u64>,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
}

/// Plain defaults, used without a recipe: Adam 1e-3, batch 128, 10 epochs, alpha = r = 1.
pub fn defaults(model: &str, dataset: &str) -> Settings {
    Settings {
        model: model.to_string(),
        dataset: dataset.to_string(),
        epochs: 10,
        batch_size: 128,
        optimizer: "adam".into(),
        lr: 1e-3,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
        schedule: "constant".into(),
        scaling: 1.0,
        radius: 1.0,
        learn_scaling: true,
        learn_radius: false,
        delta: 1e-6,
        width: None,
        width_multiplier: 1.0,
        augment: false,
        seed: 0,
        train_limit: None,
        test_limit: None,
    }
}

/// The paper's settings for this model family and data set (spherization.md, "Experiments").
pub fn paper(model: &str, dataset: &str) -> Settings {
    let mut s = defaults(model, dataset);
    let family = model.trim_start_matches("sph_");
    // Image benchmarks use scaling 5, radius 5 (alpha learnable, r fixed); the toy task and
    // the 3-D visualization use 1 and 1.
    if !family.starts_with("toy") && !family.starts_with("cnn_3d") && !family.starts_with("simple_cnn") {
        s.scaling = 5.0;
        s.radius = 5.0;
    }
    s.augment = matches!(dataset, "cifar10" | "cifar100" | "cifar100-coarse" | "fashion-mnist");
    let set = |s: &mut Settings, opt: &str, lr: f32, wd: f32, batch: usize, epochs: usize, schedule: &str| {
        s.optimizer = opt.into();
        s.lr = lr;
        s.weight_decay = wd;
        s.batch_size = batch;
        s.epochs = epochs;
        s.schedule = schedule.into();
    };
    if family.starts_with("fnn") || family.starts_with("simple_fnn") {
        set(&mut s, "adam", 1e-3, 5e-5, 256, 100, "constant");
    } else if family.starts_with("lenet") {
        set(&mut s, "adam", 1e-3, 0.0, 128, 20, "constant");
    } else if family.starts_with("vgg") {
        match dataset {
            "cifar10" => set(&mut s, "sgd", 0.05, 5e-4, 128, 300, "step:30:0.5"),
            "cifar100" | "cifar100-coarse" => set(&mut s, "sgd", 0.1, 5e-4, 128, 200, "multistep:60,120,160:0.2"),
            _ => set(&mut s, "sgd", 0.01, 5e-4, 128, 100, "step:20:0.5"),
        }
    } else if family.starts_with("cnn9") {
        set(&mut s, "adam", 1e-3, 5e-4, 128, 160, "multistep:80,130:0.1");
    } else {
        set(&mut s, "adam", 1e-3, 0.0, 128, 20, "constant");
    }
    s
}

impl Settings {
    /// Checks every numeric setting before a run starts: finite and in its range, so that a
    /// typo fails at once with the flag's name instead of training on nonsense.
    pub fn validate(&self) -> anyhow::Result<()> {
        fn check(flag: &str, ok: bool, expected: &str, found: impl std::fmt::Display) -> anyhow::Result<()> {
            if ok {
                Ok(())
            } else {
                anyhow::bail!("--{flag}: expected {expected}, found {found}")
            }
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        check("epochs", self.epochs >= 1, "at least 1", self.epochs)?;
        check("batch-size", self.batch_size >= 1, "at least 1", self.batch_size)?;
        check(
            "optimizer",
            matches!(self.optimizer.as_str(), "sgd" | "adam" | "adamw"),
            "sgd, adam or adamw",
            &self.optimizer,
        )?;
        check("lr", positive(self.lr), "a finite number above 0", self.lr)?;
        check(
            "momentum",
            self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum),
            "a number in [0, 1)",
            self.momentum,
        )?;
        check(
            "weight-decay",
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "a finite number >= 0",
            self.weight_decay,
        )?;
        check("scaling", positive(self.scaling), "a finite number above 0", self.scaling)?;
        check("radius", positive(self.radius), "a finite number above 0", self.radius)?;
        check(
            "delta",
            self.delta.is_finite() && self.delta > 0.0 && self.delta < 1.0,
            "a number in (0, 1)",
            self.delta,
        )?;
        check("width-multiplier", positive(self.width_multiplier), "a finite number above 0", self.width_multiplier)?;
        if let Some(w) = &self.width {
            check(
                "width",
                w.len() == 4 && w.iter().all(|&v| v > 0),
                "four positive numbers such as 64,128,256,512",
                format!("{w:?}"),
            )?;
        }
        if let Some(n) = self.train_limit {
            check("train-limit", n >= 1, "at least 1", n)?;
        }
        if let Some(n) = self.test_limit {
            check("test-limit", n >= 1, "at least 1", n)?;
        }
        Ok(())
    }

    /// Applies every override that was given.
    pub fn apply(&mut self, o: &Overrides) {
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = o.$f.clone() { self.$f = v; } )* };
        }
        take!(
            epochs,
            batch_size,
            optimizer,
            lr,
            momentum,
            weight_decay,
            nesterov,
            schedule,
            scaling,
            radius,
            learn_scaling,
            learn_radius,
            delta,
            width_multiplier,
            augment,
            seed
        );
        if o.width.is_some() {
            self.width = o.width.clone();
        }
        if o.train_limit.is_some() {
            self.train_limit = o.train_limit;
        }
        if o.test_limit.is_some() {
            self.test_limit = o.test_limit;
        }
    }
}

/// The model configuration a run's settings describe.
pub fn model_config(s: &Settings, classes: usize) -> anyhow::Result<ModelConfig> {
    let widths = match &s.width {
        None => None,
        Some(w) if w.len() == 4 && w.iter().all(|&v| v > 0) => Some([w[0], w[1], w[2], w[3]]),
        Some(w) => bail!("--width: expected four positive numbers such as 64,128,256,512, found {w:?}"),
    };
    Ok(ModelConfig {
        classes,
        widths,
        width_multiplier: s.width_multiplier,
        sphere: SphereConfig {
            delta: s.delta,
            scaling: s.scaling,
            radius: s.radius,
            learn_scaling: s.learn_scaling,
            learn_radius: s.learn_radius,
        },
        seed: s.seed,
    })
}

/// A multistep schedule with a recipe's `milestones` (1-based epochs of a `total`-epoch run)
/// moved to the same fractions of an `epochs`-epoch run: never before epoch 2, strictly
/// increasing (two decays never fall on one epoch) and dropped past the last epoch;
/// `constant` when none is left. `(&[80, 130], 160, 3)` gives `multistep:2,3`.
pub fn scaled_milestones(milestones: &[usize], total: usize, epochs: usize, gamma: f32) -> String {
    let mut kept: Vec<usize> = Vec::new();
    for &m in milestones {
        let scaled = ((m * epochs) as f64 / total.max(1) as f64).round() as usize;
        let at = scaled.max(2).max(kept.last().map_or(0, |&last| last + 1));
        if at <= epochs {
            kept.push(at);
        }
    }
    if kept.is_empty() {
        return "constant".into();
    }
    let list: Vec<String> = kept.iter().map(usize::to_string).collect();
    format!("multistep:{}:{gamma}", list.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_recipes_follow_the_table_and_flags_win() {
        let s = paper("sph_lenet", "mnist");
        assert_eq!(
            (s.optimizer.as_str(), s.lr, s.batch_size, s.epochs, s.scaling, s.radius),
            ("adam", 1e-3, 128, 20, 5.0, 5.0)
        );
        let s = paper("vgg11_bn", "cifar10");
        assert_eq!(
            (s.optimizer.as_str(), s.lr, s.weight_decay, s.schedule.as_str(), s.epochs),
            ("sgd", 0.05, 5e-4, "step:30:0.5", 300)
        );
        let s = paper("sph_vgg16_bn", "cifar100");
        assert_eq!((s.lr, s.schedule.as_str(), s.epochs), (0.1, "multistep:60,120,160:0.2", 200));
        let s = paper("sph_fnn", "mnist");
        assert_eq!((s.batch_size, s.weight_decay, s.epochs), (256, 5e-5, 100));
        let s = paper("sph_cnn_3d", "mnist");
        assert_eq!((s.scaling, s.radius), (1.0, 1.0));
        let mut s = paper("sph_lenet", "mnist");
        s.apply(&Overrides { epochs: Some(3), lr: Some(0.5), ..Default::default() });
        assert_eq!((s.epochs, s.lr, s.batch_size), (3, 0.5, 128));
    }
}
