//! `sph train`, `sph eval`, `sph models`, `sph data`: the training loop and its outputs
//! (config.json, metrics.jsonl, last/best checkpoints, curves.png).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use datasets::{Augment, Dataset, DatasetName, Loader, Normalize, Split};
use engine::checkpoint::{self, Checkpoint};
use engine::nn::SphereConfig;
use engine::ops::elementwise::mix_seed;
use engine::optim::{Adam, Optimizer, Schedule, Sgd};
use engine::{Graph, Mode, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use models::{Model, ModelConfig};
use plotters::prelude::SeriesLabelPosition;
use serde::{Deserialize, Serialize};

use crate::plot;
use crate::recipe::{self, Overrides, Settings};

/// Flags of `sph train`. Every setting is optional: what is not given comes from the
/// resumed checkpoint, then the recipe, then the defaults.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Registry model name (see `sph models`).
    #[arg(long)]
    pub model: String,
    /// mnist, fashion-mnist, cifar10 or cifar100.
    #[arg(long)]
    pub dataset: String,
    /// `paper` (the paper's settings for this model and data set) or `none` (plain defaults).
    #[arg(long, default_value = "paper")]
    pub recipe: String,
    /// Number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// sgd, adam or adamw.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    pub nesterov: bool,
    /// constant, step:K:GAMMA or multistep:E1,E2,..:GAMMA (epochs).
    #[arg(long)]
    pub schedule: Option<String>,
    /// Spherization scaling alpha (initial value).
    #[arg(long)]
    pub scaling: Option<f32>,
    /// Spherization radius r.
    #[arg(long)]
    pub radius: Option<f32>,
    /// Train the scaling alpha.
    #[arg(long, conflicts_with = "fixed_scaling")]
    pub learn_scaling: bool,
    /// Keep the scaling alpha fixed.
    #[arg(long)]
    pub fixed_scaling: bool,
    /// Train the radius r.
    #[arg(long, conflicts_with = "fixed_radius")]
    pub learn_radius: bool,
    /// Keep the radius r fixed.
    #[arg(long)]
    pub fixed_radius: bool,
    /// Spherization delta (lower bound of the last coordinate), in (0, 1).
    #[arg(long)]
    pub delta: Option<f64>,
    /// VGG widths, four numbers: 64,128,256,512.
    #[arg(long, value_delimiter = ',')]
    pub width: Option<Vec<usize>>,
    /// Channel multiplier for CNN-9 (e.g. 0.25).
    #[arg(long)]
    pub width_multiplier: Option<f32>,
    /// Turn the paper's training augmentation off.
    #[arg(long)]
    pub no_augment: bool,
    /// Seed for initialization, shuffling, augmentation and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads (default: RAYON_NUM_THREADS or all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Data directory (default: $SPH_DATA or data/).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output directory (default: runs/MODEL-DATASET-sSEED, numbered if it exists).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from a checkpoint (its settings are reused unless given again).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Train on the first N training images only.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub test_limit: Option<usize>,
}

impl TrainArgs {
    fn overrides(&self) -> Overrides {
        let flag = |on: bool, off: bool| {
            if on {
                Some(true)
            } else if off {
                Some(false)
            } else {
                None
            }
        };
        Overrides {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: self.optimizer.clone(),
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            nesterov: self.nesterov.then_some(true),
            schedule: self.schedule.clone(),
            scaling: self.scaling,
            radius: self.radius,
            learn_scaling: flag(self.learn_scaling, self.fixed_scaling),
            learn_radius: flag(self.learn_radius, self.fixed_radius),
            delta: self.delta,
            width: self.width.clone(),
            width_multiplier: self.width_multiplier,
            augment: self.no_augment.then_some(false),
            seed: self.seed,
            train_limit: self.train_limit,
            test_limit: self.test_limit,
        }
    }
}

/// Flags of `sph eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint written by `sph train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data set to evaluate on (default: the one the model was trained on).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Data directory (default: $SPH_DATA or data/).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Worker threads.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// One line of metrics.jsonl.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub lr: f32,
    /// (layer, scaling, radius) of every spherization layer after the epoch.
    pub sphere: Vec<(String, f32, f32)>,
    /// Wall-clock seconds of the epoch's training steps (absent from checkpoints).
    #[serde(default)]
    pub seconds: f64,
    /// Training images per second in the epoch (absent from checkpoints).
    #[serde(default)]
    pub images_per_sec: f64,
}

/// Where an interrupted epoch stopped, so that a resumed run continues exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// 0-based epoch in progress (or the next one when `steps_done` is 0).
    epoch: usize,
    steps_done: usize,
    loss_sum: f64,
    correct: usize,
    seen: usize,
    /// Wall-clock seconds of the epoch so far: kept in timing.json, not in checkpoints.
    #[serde(default, skip_serializing)]
    seconds: f64,
}

/// The most worker threads a run may ask for, per core: more only adds switching, and a
/// huge count stalls the machine while the threads are created.
const MAX_THREADS_PER_CORE: usize = 4;

fn set_threads(threads: Option<usize>) -> Result<usize> {
    if let Some(n) = threads {
        let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
        let max = MAX_THREADS_PER_CORE * cores;
        if n == 0 || n > max {
            bail!("--threads: expected 1 to {max} ({MAX_THREADS_PER_CORE} per core, {cores} cores), found {n}");
        }
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting the thread count")?;
    }
    Ok(rayon::current_num_threads())
}

/// A data set name from the command line, or an error listing the valid ones.
pub fn parse_dataset(name: &str) -> Result<DatasetName> {
    name.parse::<DatasetName>()
        .map_err(|_| anyhow!("unknown data set '{name}' (valid: {})", datasets::NAMES.join(", ")))
}

/// The model configuration a run's settings describe.
pub fn model_config(s: &Settings, classes: usize) -> Result<ModelConfig> {
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

/// The optimizer the settings name, with their learning rate, momentum and weight decay.
pub fn build_optimizer(s: &Settings) -> Result<Box<dyn Optimizer>> {
    Ok(match s.optimizer.as_str() {
        "sgd" => Box::new(Sgd::new(s.lr, s.momentum, s.weight_decay, s.nesterov)),
        "adam" => Box::new(Adam::new(s.lr, s.weight_decay)),
        "adamw" => Box::new(Adam::new_w(s.lr, s.weight_decay)),
        other => bail!("--optimizer: expected sgd, adam or adamw, found '{other}'"),
    })
}

/// Training and test loaders' augmentation: the model's input size decides a resize
/// (F-MNIST 28 -> 32 for the one-channel VGG); the channels must match.
pub fn input_pipeline(
    model: &Model,
    ds: &Dataset,
    name: DatasetName,
    augment: bool,
) -> Result<(Augment, Augment, Normalize)> {
    let [c, h, w] = model.input_shape();
    if c != ds.channels || h != w || (h != ds.height && !(ds.height == 28 && h == 32)) {
        bail!(
            "model '{}' expects {c}x{h}x{w} input but {} images are {}x{}x{} (pick a model for this data set; see `sph models`)",
            model.name(),
            name,
            ds.channels,
            ds.height,
            ds.width
        );
    }
    let resize = (h != ds.height).then_some(h);
    let mut train = if augment { datasets::paper_augment(name) } else { Augment::default() };
    train.resize_to = resize;
    let test = Augment { resize_to: resize, ..Augment::default() };
    Ok((train, test, datasets::paper_normalize(name)))
}

/// One split of a data set, cut to its first `limit` images when a limit is given.
pub fn load_split(name: DatasetName, dir: &Path, split: Split, limit: Option<usize>) -> Result<Dataset> {
    let ds = datasets::load(name, dir, split).map_err(|e| anyhow!("{e}"))?;
    Ok(match limit {
        Some(n) if n < ds.len => ds.limit(n),
        _ => ds,
    })
}

/// One optimization step on a batch: forward, loss, backward, update.
/// Returns (mean loss, number of correct predictions).
pub fn train_step(
    model: &mut Model,
    x: Tensor,
    labels: &[usize],
    seed: u64,
    opt: &mut dyn Optimizer,
) -> Result<(f32, usize)> {
    let (loss, correct) = forward_backward(model, x, labels, seed)?;
    opt.step(model.params_mut());
    Ok((loss, correct))
}

/// The first half of [`train_step`]: fresh gradients of the batch's mean loss in the model's
/// store, without the update (so that callers can read them, as `sph figure gradflow` does).
/// Returns (mean loss, number of correct predictions).
pub fn forward_backward(model: &mut Model, x: Tensor, labels: &[usize], seed: u64) -> Result<(f32, usize)> {
    model.params_mut().zero_grads();
    let (net, params) = model.split_mut();
    let mut g = Graph::new(params, Mode::Train, seed);
    let xv = g.input(x);
    let logits = net.forward(&mut g, xv)?;
    let loss = g.softmax_cross_entropy(logits, labels)?;
    g.backward(loss)?;
    Ok((g.value(loss).item(), count_correct(g.value(logits), labels)))
}

/// Forward pass in evaluation mode: (mean loss, predicted classes).
pub fn eval_step(model: &mut Model, x: Tensor, labels: &[usize]) -> Result<(f32, Vec<usize>)> {
    let (net, params) = model.split_mut();
    let mut g = Graph::new(params, Mode::Eval, 0);
    let xv = g.input(x);
    let logits = net.forward(&mut g, xv)?;
    let loss = g.softmax_cross_entropy(logits, labels)?;
    Ok((g.value(loss).item(), g.value(logits).argmax_last()))
}

fn count_correct(logits: &Tensor, labels: &[usize]) -> usize {
    logits.argmax_last().iter().zip(labels).filter(|(p, l)| p == l).count()
}

/// Mean loss, accuracy and confusion matrix (rows: true class) over a data set.
pub struct Evaluation {
    pub loss: f64,
    pub acc: f64,
    pub confusion: Vec<Vec<usize>>,
}

/// Evaluates `model` in evaluation mode over the whole loader.
pub fn evaluate(model: &mut Model, loader: &Loader) -> Result<Evaluation> {
    let classes = model.classes();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let (mut loss_sum, mut seen) = (0.0f64, 0usize);
    loader.for_each_prefetched(0, |batch| -> Result<()> {
        let n = batch.labels.len();
        let x = Tensor::from_vec(&batch.shape, batch.images)?;
        let (loss, pred) = eval_step(model, x, &batch.labels)?;
        loss_sum += loss as f64 * n as f64;
        seen += n;
        for (&p, &l) in pred.iter().zip(&batch.labels) {
            confusion[l][p] += 1;
        }
        Ok(())
    })?;
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    Ok(Evaluation { loss: loss_sum / seen.max(1) as f64, acc: correct as f64 / seen.max(1) as f64, confusion })
}

/// A fresh output directory for a run that is not a resume: never reuse one that holds a run.
fn choose_out_dir(args: &TrainArgs, s: &Settings) -> Result<PathBuf> {
    let holds_run = |d: &Path| d.join("metrics.jsonl").exists() || d.join("last.safetensors").exists();
    if let Some(resume) = &args.resume {
        // Resuming continues in the checkpoint's folder unless told otherwise.
        return Ok(args.out.clone().unwrap_or_else(|| resume.parent().map(Path::to_path_buf).unwrap_or_default()));
    }
    if let Some(out) = &args.out {
        if holds_run(out) {
            bail!(
                "{} already holds a run; choose another --out, or continue it with --resume {}",
                out.display(),
                out.join("last.safetensors").display()
            );
        }
        return Ok(out.clone());
    }
    let base = PathBuf::from("runs").join(format!("{}-{}-s{}", s.model, s.dataset, s.seed));
    let mut dir = base.clone();
    let mut k = 2;
    while holds_run(&dir) {
        dir = PathBuf::from(format!("{}-{k}", base.display()));
        k += 1;
    }
    Ok(dir)
}

/// Fails, naming the first file, when any of `paths` exists and `force` was not given:
/// a command never replaces a user's file unasked.
pub fn refuse_to_overwrite(paths: &[PathBuf], force: bool) -> Result<()> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) if !force => bail!("{} exists; pass --force to replace it, or choose another --out", p.display()),
        _ => Ok(()),
    }
}

/// Writes `text` to `path` through a temporary file, so a reader never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// File beside an interrupted run's checkpoint with the seconds spent in the unfinished epoch.
const TIMING_FILE: &str = "timing.json";

/// The history as checkpoints keep it: without wall-clock fields, so that runs with the
/// same seed and thread count write byte-identical checkpoints.
fn without_timings(history: &[EpochMetrics]) -> Result<Vec<serde_json::Value>> {
    history
        .iter()
        .map(|m| {
            let mut v = serde_json::to_value(m)?;
            if let Some(obj) = v.as_object_mut() {
                obj.remove("seconds");
                obj.remove("images_per_sec");
            }
            Ok(v)
        })
        .collect()
}

/// Puts back the timings that checkpoints leave out: per epoch from `dir/metrics.jsonl`,
/// for an unfinished epoch from `dir/timing.json` (when it describes the same stop).
/// Whatever cannot be found stays zero: timings are reports, not state.
fn restore_timings(history: &mut [EpochMetrics], progress: &mut Progress, dir: &Path) {
    if let Ok(text) = std::fs::read_to_string(dir.join("metrics.jsonl")) {
        let logged: Vec<EpochMetrics> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        for m in history.iter_mut() {
            if let Some(l) = logged.iter().find(|l| l.epoch == m.epoch) {
                m.seconds = l.seconds;
                m.images_per_sec = l.images_per_sec;
            }
        }
    }
    let timing = std::fs::read_to_string(dir.join(TIMING_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if let Some(t) = timing {
        let same_stop = t["epoch"].as_u64() == Some(progress.epoch as u64)
            && t["steps_done"].as_u64() == Some(progress.steps_done as u64);
        if same_stop {
            progress.seconds = t["seconds"].as_f64().filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(0.0);
        }
    }
}

/// The process-wide stop request: set by Ctrl-C (SIGINT) and SIGTERM, checked after every
/// step. One handler for the whole process, so runs started one after another (figures,
/// analyses) all see it.
fn stop_flag() -> &'static AtomicBool {
    static STOP: AtomicBool = AtomicBool::new(false);
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // If another handler already exists (an embedding program), signals keep their
        // default action and simply end the process.
        let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));
    });
    &STOP
}

/// What a checkpoint of `sph train` holds besides its tensors.
pub struct RunState {
    /// The run's resolved settings.
    pub settings: Settings,
    /// Metrics of the finished epochs (without timings).
    pub history: Vec<EpochMetrics>,
    /// Where the run stopped.
    progress: Progress,
    /// Best test accuracy so far.
    pub best_acc: f64,
}

/// Parses the metadata of a checkpoint written by `sph train`.
pub fn read_run_state(path: &Path, ckpt: &Checkpoint) -> Result<RunState> {
    Ok(RunState {
        settings: read_meta(path, ckpt, "settings")?,
        history: read_meta(path, ckpt, "history")?,
        progress: read_meta(path, ckpt, "progress")?,
        best_acc: ckpt.metadata.get("best_acc").and_then(|v| v.parse().ok()).unwrap_or(f64::NEG_INFINITY),
    })
}

/// Reads a run checkpoint into `model` as a resume does (tensors, optimizer state and
/// metadata), without training: the entry point `sph fuzz checkpoint` exercises.
pub fn read_run_checkpoint(path: &Path, model: &mut Model) -> Result<RunState> {
    let ckpt = checkpoint::load(path)?;
    let state = read_run_state(path, &ckpt)?;
    checkpoint::restore_store(path, &ckpt, model.params_mut())?;
    let mut opt = build_optimizer(&state.settings)?;
    opt.load_state(model.params(), &ckpt.tensors).with_context(|| format!("{}", path.display()))?;
    Ok(state)
}

/// Writes a checkpoint of a run at an epoch's end (as `sph train` does after each epoch).
pub fn save_run_checkpoint(
    path: &Path,
    model: &Model,
    opt: &dyn Optimizer,
    s: &Settings,
    history: &[EpochMetrics],
) -> Result<()> {
    let progress = Progress { epoch: history.len(), ..Progress::default() };
    let best = history.iter().map(|m| m.test_acc).fold(f64::NEG_INFINITY, f64::max);
    save_checkpoint(path, model, opt, s, history, &progress, best)
}

/// Saves parameters, buffers, optimizer state, settings, history and progress.
fn save_checkpoint(
    path: &Path,
    model: &Model,
    opt: &dyn Optimizer,
    s: &Settings,
    history: &[EpochMetrics],
    progress: &Progress,
    best_acc: f64,
) -> Result<()> {
    let mut tensors = checkpoint::store_tensors(model.params());
    tensors.extend(opt.state(model.params()));
    let meta = HashMap::from([
        ("format".to_string(), "spherize-run-v1".to_string()),
        ("model".to_string(), s.model.clone()),
        ("dataset".to_string(), s.dataset.clone()),
        ("settings".to_string(), serde_json::to_string(s)?),
        ("history".to_string(), serde_json::to_string(&without_timings(history)?)?),
        ("progress".to_string(), serde_json::to_string(progress)?),
        ("best_acc".to_string(), best_acc.to_string()),
    ]);
    checkpoint::save(path, &tensors, &meta).map_err(|e| anyhow!("{e}"))
}

pub fn read_meta<T: for<'de> Deserialize<'de>>(path: &Path, ckpt: &Checkpoint, key: &str) -> Result<T> {
    let text = ckpt.metadata.get(key).ok_or_else(|| {
        anyhow!("{}: not a checkpoint written by `sph train` (metadata '{key}' missing)", path.display())
    })?;
    serde_json::from_str(text).map_err(|e| anyhow!("{}: metadata '{key}' unreadable: {e}", path.display()))
}

fn draw_curves(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let pts = |f: fn(&EpochMetrics) -> f64| history.iter().map(|m| (m.epoch as f64, f(m))).collect::<Vec<_>>();
    plot::render_png(path, 1200, 480, |root| {
        let (left, right) = root.split_horizontally(600);
        plot::line_chart(
            &left,
            "Loss",
            "epoch",
            "cross-entropy",
            &[
                plot::Series { label: "train", points: pts(|m| m.train_loss), color: plot::PALETTE[0] },
                plot::Series { label: "test", points: pts(|m| m.test_loss), color: plot::PALETTE[1] },
            ],
            SeriesLabelPosition::UpperRight,
        )?;
        plot::line_chart(
            &right,
            "Accuracy",
            "epoch",
            "accuracy (%)",
            &[
                plot::Series { label: "train", points: pts(|m| 100.0 * m.train_acc), color: plot::PALETTE[0] },
                plot::Series { label: "test", points: pts(|m| 100.0 * m.test_acc), color: plot::PALETTE[1] },
            ],
            SeriesLabelPosition::LowerRight,
        )
    })
}

/// `sph train`.
pub fn run_train(args: TrainArgs) -> Result<()> {
    set_threads(args.threads)?;
    let name = parse_dataset(&args.dataset)?;
    let dataset_name = name.as_str().to_string();
    if !models::names().contains(&args.model.as_str()) {
        bail!("unknown model '{}' (valid: {})", args.model, models::names().join(", "));
    }
    // Settings: explicit flags > resumed run > recipe > defaults.
    let resumed = match &args.resume {
        Some(p) => Some((checkpoint::load(p).map_err(|e| anyhow!("{e}"))?, p.clone())),
        None => None,
    };
    let mut s = match (&resumed, args.recipe.as_str()) {
        (Some((ckpt, p)), _) => read_meta::<Settings>(p, ckpt, "settings")?,
        (None, "paper") => recipe::paper(&args.model, &dataset_name),
        (None, "none") => recipe::defaults(&args.model, &dataset_name),
        (None, other) => bail!("--recipe: expected paper or none, found '{other}'"),
    };
    if s.model != args.model || s.dataset != dataset_name {
        bail!("--resume: the checkpoint is {} on {}, not {} on {}", s.model, s.dataset, args.model, dataset_name);
    }
    s.apply(&args.overrides());
    s.validate()?;

    let data_dir = args.data.clone().unwrap_or_else(datasets::default_data_dir);
    let out = choose_out_dir(&args, &s)?;
    let run = execute(s, &data_dir, &out, resumed, Verbosity::Full)?;
    let last = run.history.last().ok_or_else(|| anyhow!("no epoch was run"))?;
    let best = run.history.iter().map(|m| m.test_acc).fold(f64::NEG_INFINITY, f64::max);
    println!(
        "done: test accuracy {:.2}% (best {:.2}%); results in {} (metrics.jsonl, curves.png, last.safetensors, best.safetensors)",
        100.0 * last.test_acc,
        100.0 * best,
        out.display()
    );
    Ok(())
}

/// The error a run returns when Ctrl-C or SIGTERM stopped it after saving its state; the
/// command exits with code 130 without printing it again.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// How much a run prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Settings, a progress bar (terminal) and one line per epoch.
    Full,
    /// One line per epoch.
    Epochs,
}

/// What a finished run leaves in memory.
pub struct RunOutput {
    /// The trained model (last epoch).
    pub model: Model,
    /// Metrics of every epoch.
    pub history: Vec<EpochMetrics>,
}

/// Trains with resolved settings `s`, writing config.json, metrics.jsonl, checkpoints and
/// curves.png into `out`. Returns `None` when Ctrl-C interrupted the run (after saving).
pub fn execute(
    s: Settings,
    data_dir: &Path,
    out: &Path,
    resumed: Option<(Checkpoint, PathBuf)>,
    verbosity: Verbosity,
) -> Result<RunOutput> {
    let name = parse_dataset(&s.dataset)?;
    let threads = rayon::current_num_threads();
    s.validate()?;
    let schedule: Schedule = s.schedule.parse().map_err(|e| anyhow!("--schedule: {e}"))?;
    let train_set = load_split(name, data_dir, Split::Train, s.train_limit)?;
    let test_set = load_split(name, data_dir, Split::Test, s.test_limit)?;
    let mut model = models::build(&s.model, &model_config(&s, train_set.num_classes)?).map_err(|e| anyhow!("{e}"))?;
    let (train_aug, test_aug, norm) = input_pipeline(&model, &train_set, name, s.augment)?;
    let train_loader = Loader::new(&train_set, s.batch_size, true, s.seed, false, train_aug, Some(norm.clone()))
        .map_err(|e| anyhow!("{e}"))?;
    let test_loader = Loader::new(&test_set, 500, false, 0, false, test_aug, Some(norm)).map_err(|e| anyhow!("{e}"))?;
    let mut opt = build_optimizer(&s)?;

    let mut history: Vec<EpochMetrics> = Vec::new();
    let mut progress = Progress::default();
    let mut best_acc = f64::NEG_INFINITY;
    if let Some((ckpt, path)) = &resumed {
        checkpoint::restore_store(path, ckpt, model.params_mut()).map_err(|e| anyhow!("{e}"))?;
        opt.load_state(model.params(), &ckpt.tensors).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let state = read_run_state(path, ckpt)?;
        (history, progress, best_acc) = (state.history, state.progress, state.best_acc);
        let saved = state.settings;
        // The skip is counted in steps of the saved batch size; another size would train
        // some images of the interrupted epoch twice and others not at all.
        if progress.steps_done > 0 && saved.batch_size != s.batch_size {
            bail!(
                "--batch-size: {} stopped in the middle of epoch {} with batch size {}; resume it with --batch-size {} (another size can be used from the next epoch-end checkpoint on)",
                path.display(),
                progress.epoch + 1,
                saved.batch_size,
                saved.batch_size
            );
        }
        // Timings are kept out of checkpoints (so that equal runs write equal bytes); take
        // them back from the metrics and timing files beside the checkpoint.
        let from = path.parent().unwrap_or(Path::new("."));
        restore_timings(&mut history, &mut progress, from);
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    let config = serde_json::json!({
        "settings": &s,
        "threads": threads,
        "data_dir": data_dir,
        "train_images": train_set.len,
        "test_images": test_set.len,
        "parameters": model.params().num_learnable(),
        "versions": { "spherize": env!("CARGO_PKG_VERSION"), "rustc_target": std::env::consts::ARCH },
        "resumed_from": resumed.as_ref().map(|r| r.1.clone()),
    });
    write_atomic(&out.join("config.json"), &serde_json::to_string_pretty(&config)?)?;
    // Installed before the run announces itself, so a Ctrl-C after that is always caught.
    let stop = stop_flag();
    stop.store(false, Ordering::SeqCst);
    if verbosity == Verbosity::Full {
        println!(
            "sph train: {} on {} ({} train / {} test images), {} parameters, {threads} threads",
            s.model,
            s.dataset,
            train_set.len,
            test_set.len,
            model.params().num_learnable()
        );
        println!("settings: {}", serde_json::to_string(&s)?);
        println!("output: {}", out.display());
    }

    let interactive = verbosity == Verbosity::Full && std::io::stdout().is_terminal();
    let last_path = out.join("last.safetensors");
    let steps_per_epoch = train_loader.num_batches();

    for epoch in progress.epoch..s.epochs {
        let lr = schedule.lr_at(s.lr, epoch);
        opt.set_lr(lr);
        let bar = if interactive {
            let b = ProgressBar::new(steps_per_epoch as u64);
            b.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_prefix(format!("{}/{}", epoch + 1, s.epochs));
            Some(b)
        } else {
            None
        };
        let skip = if progress.epoch == epoch { progress.steps_done } else { 0 };
        if skip == 0 {
            progress = Progress { epoch, ..Progress::default() };
        }
        let started = Instant::now() - std::time::Duration::from_secs_f64(progress.seconds);
        let mut step = 0usize;
        let mut interrupted = false;
        train_loader.for_each_prefetched(epoch, |batch| -> Result<()> {
            let this_step = step;
            step += 1;
            if this_step < skip || interrupted {
                return Ok(());
            }
            let n = batch.labels.len();
            let x = Tensor::from_vec(&batch.shape, batch.images)?;
            let seed = mix_seed(&[s.seed, epoch as u64, this_step as u64]);
            let (loss, correct) = train_step(&mut model, x, &batch.labels, seed, opt.as_mut())?;
            if !loss.is_finite() {
                // Only name a checkpoint that is really there.
                let saved = if last_path.is_file() {
                    format!("the last good checkpoint is {}", last_path.display())
                } else {
                    "no checkpoint was written before it (lower the learning rate and start again)".to_string()
                };
                bail!("loss became {loss} at epoch {}, step {} (lr {lr}); {saved}", epoch + 1, this_step + 1);
            }
            progress.steps_done = this_step + 1;
            progress.loss_sum += loss as f64 * n as f64;
            progress.correct += correct;
            progress.seen += n;
            if let Some(b) = &bar {
                let secs = started.elapsed().as_secs_f64();
                b.set_position(progress.steps_done as u64);
                b.set_message(format!(
                    "loss {:.4} acc {:.2}% {:.0} img/s",
                    progress.loss_sum / progress.seen as f64,
                    100.0 * progress.correct as f64 / progress.seen as f64,
                    progress.seen as f64 / secs.max(1e-9)
                ));
            }
            if stop.load(Ordering::SeqCst) {
                interrupted = true;
            }
            Ok(())
        })?;
        progress.seconds = started.elapsed().as_secs_f64();
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        if interrupted {
            save_checkpoint(&last_path, &model, opt.as_ref(), &s, &history, &progress, best_acc)?;
            let timing = serde_json::json!({
                "epoch": progress.epoch,
                "steps_done": progress.steps_done,
                "seconds": progress.seconds,
            });
            write_atomic(&out.join(TIMING_FILE), &timing.to_string())?;
            println!(
                "interrupted at epoch {}, step {}: saved {}; continue with --resume {}",
                epoch + 1,
                progress.steps_done,
                last_path.display(),
                last_path.display()
            );
            return Err(Interrupted.into());
        }
        let train_seconds = progress.seconds;
        let eval = evaluate(&mut model, &test_loader)?;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: progress.loss_sum / progress.seen.max(1) as f64,
            train_acc: progress.correct as f64 / progress.seen.max(1) as f64,
            test_loss: eval.loss,
            test_acc: eval.acc,
            lr,
            sphere: model.sphere_values(),
            seconds: train_seconds,
            images_per_sec: progress.seen as f64 / train_seconds.max(1e-9),
        };
        println!(
            "epoch {:>3}/{}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  lr {:.3e}  {:.1}s  {:.0} img/s",
            m.epoch,
            s.epochs,
            m.train_loss,
            100.0 * m.train_acc,
            m.test_loss,
            100.0 * m.test_acc,
            lr,
            m.seconds,
            m.images_per_sec
        );
        let improved = m.test_acc > best_acc;
        best_acc = best_acc.max(m.test_acc);
        history.push(m);
        progress = Progress { epoch: epoch + 1, ..Progress::default() };
        save_checkpoint(&last_path, &model, opt.as_ref(), &s, &history, &progress, best_acc)?;
        let _ = std::fs::remove_file(out.join(TIMING_FILE));
        if improved {
            std::fs::copy(&last_path, out.join("best.safetensors.tmp")).context("writing best.safetensors")?;
            std::fs::rename(out.join("best.safetensors.tmp"), out.join("best.safetensors"))
                .context("writing best.safetensors")?;
        }
        let lines: String =
            history.iter().map(|m| serde_json::to_string(m).map(|l| l + "\n")).collect::<Result<_, _>>()?;
        write_atomic(&out.join("metrics.jsonl"), &lines)?;
        draw_curves(&out.join("curves.png"), &history)?;
        std::io::stdout().flush().ok();
    }
    Ok(RunOutput { model, history })
}

/// `sph eval`.
pub fn run_eval(args: EvalArgs) -> Result<()> {
    set_threads(args.threads)?;
    let ckpt = checkpoint::load(&args.checkpoint).map_err(|e| anyhow!("{e}"))?;
    let s: Settings = read_meta(&args.checkpoint, &ckpt, "settings")?;
    let name = parse_dataset(args.dataset.as_deref().unwrap_or(&s.dataset))?;
    let data_dir = args.data.clone().unwrap_or_else(datasets::default_data_dir);
    let test_set = load_split(name, &data_dir, Split::Test, args.test_limit)?;
    let mut model = models::build(&s.model, &model_config(&s, test_set.num_classes)?).map_err(|e| anyhow!("{e}"))?;
    checkpoint::restore_store(&args.checkpoint, &ckpt, model.params_mut()).map_err(|e| anyhow!("{e}"))?;
    let (_, test_aug, norm) = input_pipeline(&model, &test_set, name, false)?;
    let loader = Loader::new(&test_set, 500, false, 0, false, test_aug, Some(norm)).map_err(|e| anyhow!("{e}"))?;
    let eval = evaluate(&mut model, &loader)?;
    println!(
        "{} on {} test ({} images): loss {:.4}, accuracy {:.2}%",
        s.model,
        name,
        test_set.len,
        eval.loss,
        100.0 * eval.acc
    );
    println!("confusion matrix (rows: true class, columns: predicted):");
    let names = &test_set.class_names;
    let width = names.iter().map(|n| n.len()).max().unwrap_or(5).clamp(5, 14);
    for (c, row) in eval.confusion.iter().enumerate() {
        let label = names.get(c).map(String::as_str).unwrap_or("?");
        let cells: Vec<String> = row.iter().map(|v| format!("{v:>5}")).collect();
        println!("{label:>width$} {}", cells.join(""));
    }
    Ok(())
}

/// `sph models`.
pub fn run_models() -> Result<()> {
    println!("{:<22} {:>12}  {:<9}  description", "name", "parameters", "input");
    for &name in models::names() {
        // The toy task has two classes; everything else is listed with ten.
        let classes = if name.ends_with("toy") { 2 } else { 10 };
        let model =
            models::build(name, &ModelConfig { classes, ..ModelConfig::default() }).map_err(|e| anyhow!("{e}"))?;
        let [c, h, w] = model.input_shape();
        println!(
            "{name:<22} {:>12}  {:<9}  {}",
            model.params().num_learnable(),
            format!("{c}x{h}x{w}"),
            models::describe(name).unwrap_or("")
        );
    }
    Ok(())
}

/// `sph data fetch`.
pub fn run_fetch(name: &str, dir: Option<PathBuf>) -> Result<()> {
    let name = parse_dataset(name)?;
    let dir = dir.unwrap_or_else(datasets::default_data_dir);
    datasets::fetch(name, &dir).map_err(|e| anyhow!("{e}"))?;
    println!("{name}: verified in {}", dir.join(name.dir_name()).display());
    Ok(())
}

/// `sph data show`.
pub fn run_show(
    name: &str,
    split: &str,
    count: usize,
    augmented: bool,
    data: Option<PathBuf>,
    out: &Path,
    force: bool,
) -> Result<()> {
    let name = parse_dataset(name)?;
    refuse_to_overwrite(&[out.to_path_buf()], force)?;
    let split = match split {
        "train" => Split::Train,
        "test" => Split::Test,
        other => bail!("--split: expected train or test, found '{other}'"),
    };
    if count == 0 {
        bail!("--count: expected at least 1, found 0");
    }
    let ds = load_split(name, &data.unwrap_or_else(datasets::default_data_dir), split, None)?;
    let indices: Vec<usize> = (0..count.min(ds.len)).collect();
    let cols = (indices.len() as f64).sqrt().ceil() as usize;
    let img = if augmented {
        let norm = datasets::paper_normalize(name);
        let loader = Loader::new(&ds, count, false, 0, false, datasets::paper_augment(name), Some(norm.clone()))
            .map_err(|e| anyhow!("{e}"))?;
        datasets::batch_grid(&loader.make_batch(0, &indices), Some(&norm), cols, 3)
    } else {
        datasets::sample_grid(&ds, &indices, cols, 3)
    };
    plot::save_png(out, &img)?;
    println!("wrote {} ({} samples, {cols} per row); classes in grid order:", out.display(), indices.len());
    for row in indices.chunks(cols) {
        let names: Vec<&str> =
            row.iter().map(|&i| ds.class_names.get(ds.labels[i] as usize).map(String::as_str).unwrap_or("?")).collect();
        println!("  {}", names.join(", "));
    }
    Ok(())
}
