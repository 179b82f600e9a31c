//! `sph train`: a run from its settings to its outputs (config.json, metrics.jsonl,
//! last/best checkpoints, curves.png), through the one training loop of [`crate::trainer`].
//! `execute` reads top to bottom: prepare (data, model, resume), write the config, then per
//! epoch train (Ctrl-C/SIGTERM save and stop) and finish (evaluate, log, checkpoint, plot).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use datasets::{Batching, Dataset, Loader, Split};
use engine::checkpoint::{self, Checkpoint};
use indicatif::{ProgressBar, ProgressStyle};
use models::Model;
use plotters::prelude::SeriesLabelPosition;

use crate::data::{input_pipeline, load_split, parse_dataset};
use crate::files::{copy_atomic, write_atomic};
use crate::plot;
use crate::recipe::{self, model_config, Overrides, Settings};
use crate::run_state::{
    read_meta, read_run_state, restore_timings, save_checkpoint, EpochMetrics, Progress, TIMING_FILE,
};
use crate::trainer::{evaluate, Diverged, Trainer};

/// Images per batch when evaluating (no gradients, so larger than training batches).
pub const EVAL_BATCH: usize = 500;

/// Flags that shape a registry model, shared by `sph train` and `sph bench`.
#[derive(Args, Debug, Clone, Default)]
pub struct ShapeArgs {
    /// VGG widths, four numbers: 64,128,256,512.
    #[arg(long, value_delimiter = ',')]
    pub width: Option<Vec<usize>>,
    /// Channel multiplier for CNN-9 (e.g. 0.25).
    #[arg(long)]
    pub width_multiplier: Option<f32>,
}

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
    /// constant, step:K:GAMMA or multistep:E1,E2,..:GAMMA. Epochs are 1-based, as the paper's scripts count: the rate is multiplied by GAMMA from epoch E on (multistep:80,130 trains 79 epochs at the base rate); step:K decays at epochs K, 2K, ...
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
    /// The model-shaping flags.
    #[command(flatten)]
    pub shape: ShapeArgs,
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
    /// In an MPI run, compare a hash of the parameters across ranks after every epoch (debug
    /// builds always do).
    #[arg(long)]
    pub check_sync: bool,
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
            width: self.shape.width.clone(),
            width_multiplier: self.shape.width_multiplier,
            augment: self.no_augment.then_some(false),
            seed: self.seed,
            train_limit: self.train_limit,
            test_limit: self.test_limit,
        }
    }
}

/// The most worker threads a run may ask for, per core: more only adds switching, and a
/// huge count stalls the machine while the threads are created.
const MAX_THREADS_PER_CORE: usize = 4;

/// Runs `command` on a worker of a global pool of `threads` workers (bounded per core;
/// `None`: rayon's default) whose threads flush subnormal floats to zero (see
/// [`engine::kernels::flush_subnormals_to_zero`]).
///
/// On a worker, not on the main thread: a parallel loop started from outside the pool parks
/// its caller and wakes it when done, 5 to 40 us per loop on this kind of machine, which made
/// a (128x400)@(400x120) product on 2 threads no faster than on one (inside the pool: 41 us
/// against 46 to 80). A worker that starts a loop works on it itself and never sleeps; the
/// other workers are kept polling for work (see [`engine::kernels::with_workers_awake`]).
pub(crate) fn in_pool<R: Send>(threads: Option<usize>, command: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    if let Some(n) = threads {
        let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
        let max = MAX_THREADS_PER_CORE * cores;
        if n == 0 || n > max {
            bail!("--threads: expected 1 to {max} ({MAX_THREADS_PER_CORE} per core, {cores} cores), found {n}");
        }
    }
    flushing_pool(threads.unwrap_or(0)).build_global().context("setting the thread count")?;
    // Runs its body on a worker of the global pool.
    engine::kernels::with_workers_awake(command)
}

/// A pool of `threads` workers (0: rayon's default) that flush subnormals to zero.
fn flushing_pool(threads: usize) -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new().num_threads(threads).start_handler(|_| {
        engine::kernels::flush_subnormals_to_zero();
    })
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

/// curves.png: loss and accuracy per epoch, train and test.
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
    let name = parse_dataset(&args.dataset)?;
    let dataset_name = name.as_str().to_string();
    if !models::names().contains(&args.model.as_str()) {
        bail!("unknown model '{}' (valid: {})", args.model, models::names().join(", "));
    }
    // Settings: explicit flags > resumed run > recipe > defaults.
    let resumed = match &args.resume {
        Some(p) => Some((checkpoint::load(p)?, p.clone())),
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
    crate::dist::set_check_sync(args.check_sync);
    let out = choose_out_dir(&args, &s)?;
    // Every rank has checked the output folder before rank 0 creates it.
    crate::dist::barrier();
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

/// A run set up to train: loaders over its data, the trainer, and where it stands.
struct Run<'d> {
    s: Settings,
    out: PathBuf,
    train_loader: Loader<'d>,
    test_loader: Loader<'d>,
    trainer: Trainer,
    history: Vec<EpochMetrics>,
    progress: Progress,
    best_acc: f64,
}

impl Run<'_> {
    /// Writes the run's state (model, optimizer, settings, history, progress) to `path`; in an
    /// MPI run, with the ranks' batch-norm statistics averaged first, by rank 0.
    fn save(&mut self, path: &Path) -> Result<()> {
        crate::dist::average_buffers(self.trainer.model.params_mut());
        let t = &self.trainer;
        save_checkpoint(path, &t.model, t.opt.as_ref(), &self.s, &self.history, &self.progress, self.best_acc)
    }
}

/// Trains with resolved settings `s`, writing config.json, metrics.jsonl, checkpoints and
/// curves.png into `out`. Ctrl-C or SIGTERM stops it after saving: an [`Interrupted`] error.
pub fn execute(
    s: Settings,
    data_dir: &Path,
    out: &Path,
    resumed: Option<(Checkpoint, PathBuf)>,
    verbosity: Verbosity,
) -> Result<RunOutput> {
    s.validate()?;
    let name = parse_dataset(&s.dataset)?;
    let train_set = load_split(name, data_dir, Split::Train, s.train_limit)?;
    let test_set = load_split(name, data_dir, Split::Test, s.test_limit)?;
    let mut run = prepare(s, &train_set, &test_set, out, resumed.as_ref())?;
    let images = (train_set.len, test_set.len);
    write_config(&run, data_dir, resumed.as_ref().map(|r| r.1.as_path()), images)?;
    // Installed before the run announces itself, so a Ctrl-C after that is always caught.
    // Never reset: a stop requested between two runs (figures, analyses) stops the next.
    let stop = stop_flag();
    if verbosity == Verbosity::Full {
        announce(&run, images)?;
    }
    let interactive = verbosity == Verbosity::Full && std::io::stdout().is_terminal();
    for epoch in run.progress.epoch..run.s.epochs {
        train_epoch(&mut run, epoch, interactive, stop)?;
        finish_epoch(&mut run, epoch)?;
    }
    Ok(RunOutput { model: run.trainer.model, history: run.history })
}

/// Builds the model, its trainer and the loaders, and restores a resumed run's state.
fn prepare<'d>(
    s: Settings,
    train_set: &'d Dataset,
    test_set: &'d Dataset,
    out: &Path,
    resumed: Option<&(Checkpoint, PathBuf)>,
) -> Result<Run<'d>> {
    let name = parse_dataset(&s.dataset)?;
    let model = models::build(&s.model, &model_config(&s, train_set.num_classes)?)?;
    let (train_aug, test_aug, norm) = input_pipeline(&model, train_set, name, s.augment)?;
    let train_loader = Loader::new(
        train_set,
        Batching::shuffled(s.batch_size, s.seed).augment(train_aug).normalize(Some(norm.clone())),
    )?;
    let test_loader = Loader::new(test_set, Batching::in_order(EVAL_BATCH).augment(test_aug).normalize(Some(norm)))?;
    let trainer = Trainer::from_settings(model, &s)?;
    let mut run = Run {
        s,
        out: out.to_path_buf(),
        train_loader,
        test_loader,
        trainer,
        history: Vec::new(),
        progress: Progress::default(),
        best_acc: f64::NEG_INFINITY,
    };
    if let Some((ckpt, path)) = resumed {
        resume(&mut run, ckpt, path)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    Ok(run)
}

/// Restores parameters, optimizer state, history and progress from a checkpoint.
fn resume(run: &mut Run, ckpt: &Checkpoint, path: &Path) -> Result<()> {
    checkpoint::restore_store(path, ckpt, run.trainer.model.params_mut())?;
    run.trainer
        .opt
        .load_state(run.trainer.model.params(), &ckpt.tensors)
        .with_context(|| path.display().to_string())?;
    let state = read_run_state(path, ckpt)?;
    // The skip is counted in steps of the saved batch size; another size would train some
    // images of the interrupted epoch twice and others not at all.
    if state.progress.steps_done > 0 && state.settings.batch_size != run.s.batch_size {
        bail!(
            "--batch-size: {} stopped in the middle of epoch {} with batch size {}; resume it with --batch-size {} (another size can be used from the next epoch-end checkpoint on)",
            path.display(),
            state.progress.epoch + 1,
            state.settings.batch_size,
            state.settings.batch_size
        );
    }
    (run.history, run.progress, run.best_acc) = (state.history, state.progress, state.best_acc);
    // Timings are kept out of checkpoints (so that equal runs write equal bytes); take them
    // back from the metrics and timing files beside the checkpoint.
    restore_timings(&mut run.history, &mut run.progress, path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// config.json: the settings and the facts of this run (threads, data, sizes, versions).
fn write_config(run: &Run, data_dir: &Path, resumed_from: Option<&Path>, images: (usize, usize)) -> Result<()> {
    let (train_images, test_images) = images;
    let config = serde_json::json!({
        "settings": &run.s,
        "threads": rayon::current_num_threads(),
        "data_dir": data_dir,
        "train_images": train_images,
        "test_images": test_images,
        "subset": (run.s.train_limit.is_some() || run.s.test_limit.is_some())
            .then(|| serde_json::json!({ "rule": crate::data::SUBSET_RULE, "subset_seed": crate::data::SUBSET_SEED })),
        "parameters": run.trainer.model.params().num_learnable(),
        "versions": { "spherize": env!("CARGO_PKG_VERSION"), "rustc_target": std::env::consts::ARCH },
        "resumed_from": resumed_from,
    });
    write_atomic(&run.out.join("config.json"), serde_json::to_string_pretty(&config)?)
}

/// The run's first lines: what trains on what, the settings, the output folder.
fn announce(run: &Run, (train_images, test_images): (usize, usize)) -> Result<()> {
    let s = &run.s;
    println!(
        "sph train: {} on {} ({} train / {} test images), {} parameters, {} threads",
        s.model,
        s.dataset,
        train_images,
        test_images,
        run.trainer.model.params().num_learnable(),
        rayon::current_num_threads()
    );
    println!("settings: {}", serde_json::to_string(s)?);
    println!("output: {}", run.out.display());
    Ok(())
}

/// A progress bar for a terminal.
fn progress_bar(steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    let b = ProgressBar::new(steps as u64);
    b.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_prefix(format!("{}/{epochs}", epoch + 1));
    b
}

/// Trains one epoch (the rest of it, after a resume); on a stop request saves the state and
/// returns [`Interrupted`].
fn train_epoch(run: &mut Run, epoch: usize, interactive: bool, stop: &AtomicBool) -> Result<()> {
    run.trainer.begin_epoch(epoch);
    let bar = interactive.then(|| progress_bar(run.train_loader.num_batches(), epoch, run.s.epochs));
    if run.progress.epoch != epoch || run.progress.steps_done == 0 {
        run.progress = Progress { epoch, ..Progress::default() };
    }
    let started = Instant::now() - Duration::from_secs_f64(run.progress.seconds);
    let mut tally = run.progress.tally;
    let skip = run.progress.steps_done;
    let last_path = run.out.join("last.safetensors");
    let outcome = run.trainer.epoch(
        &run.train_loader,
        epoch,
        skip,
        &mut tally,
        |_| {},
        |steps, tally| {
            if let Some(b) = &bar {
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                b.set_position(steps as u64);
                let (loss, acc) = (tally.mean_loss(), 100.0 * tally.accuracy());
                b.set_message(format!("loss {loss:.4} acc {acc:.2}% {:.0} img/s", tally.seen as f64 / secs));
            }
            !stop.load(Ordering::SeqCst)
        },
    );
    let end = match outcome {
        Ok(end) => end,
        Err(e) => match e.downcast_ref::<Diverged>() {
            // Only name a checkpoint that is really there.
            Some(d) if last_path.is_file() => bail!("{d}; the last good checkpoint is {}", last_path.display()),
            Some(d) => bail!("{d}; no checkpoint was written before it (lower the learning rate and start again)"),
            None => return Err(e),
        },
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    run.progress = Progress { epoch, steps_done: end.steps_done, tally, seconds: started.elapsed().as_secs_f64() };
    if end.stopped {
        run.save(&last_path)?;
        let timing = serde_json::json!({
            "epoch": run.progress.epoch,
            "steps_done": run.progress.steps_done,
            "seconds": run.progress.seconds,
        });
        write_atomic(&run.out.join(TIMING_FILE), timing.to_string())?;
        println!(
            "interrupted at epoch {}, step {}: saved {}; continue with --resume {}",
            epoch + 1,
            run.progress.steps_done,
            last_path.display(),
            last_path.display()
        );
        return Err(Interrupted.into());
    }
    Ok(())
}

/// After an epoch's training: evaluate, print, log, checkpoint (last and best), plot.
fn finish_epoch(run: &mut Run, epoch: usize) -> Result<()> {
    let eval = evaluate(&mut run.trainer.model, &run.test_loader)?;
    let p = &run.progress;
    let m = EpochMetrics {
        epoch: epoch + 1,
        train_loss: p.tally.mean_loss(),
        train_acc: p.tally.accuracy(),
        test_loss: eval.loss,
        test_acc: eval.acc,
        lr: run.trainer.opt.lr(),
        sphere: run.trainer.model.sphere_values(),
        seconds: p.seconds,
        images_per_sec: p.tally.seen as f64 / p.seconds.max(1e-9),
    };
    println!(
        "epoch {:>3}/{}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  lr {:.3e}  {:.1}s  {:.0} img/s",
        m.epoch,
        run.s.epochs,
        m.train_loss,
        100.0 * m.train_acc,
        m.test_loss,
        100.0 * m.test_acc,
        m.lr,
        m.seconds,
        m.images_per_sec
    );
    crate::dist::check_in_sync(run.trainer.model.params(), epoch)?;
    let improved = m.test_acc > run.best_acc;
    run.best_acc = run.best_acc.max(m.test_acc);
    run.history.push(m);
    run.progress = Progress { epoch: epoch + 1, ..Progress::default() };
    let last_path = run.out.join("last.safetensors");
    run.save(&last_path)?;
    let _ = std::fs::remove_file(run.out.join(TIMING_FILE));
    if improved {
        copy_atomic(&last_path, &run.out.join("best.safetensors"))?;
    }
    let lines: String =
        run.history.iter().map(|m| serde_json::to_string(m).map(|l| l + "\n")).collect::<Result<_, _>>()?;
    write_atomic(&run.out.join("metrics.jsonl"), lines)?;
    if crate::dist::is_root() {
        draw_curves(&run.out.join("curves.png"), &run.history)?;
    }
    // The other ranks of an MPI run read nothing rank 0 writes, but wait for it, so that a
    // command that reads this run's files next finds them.
    crate::dist::barrier();
    std::io::stdout().flush().ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    /// Every worker of the pool `in_pool` installs reads and makes subnormals as zero
    /// (late in training they made a SimpleFNN epoch 15x slower); a plain pool does not.
    #[test]
    fn pool_workers_flush_subnormals() {
        let flushes = |pool: rayon::ThreadPool| {
            pool.broadcast(|_| black_box(1e-30f32) * black_box(1e-10f32) == 0.0).into_iter().all(|z| z)
        };
        assert!(!flushes(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()));
        if cfg!(target_arch = "x86_64") {
            assert!(flushes(super::flushing_pool(2).build().unwrap()));
        }
    }
}
