//! What a training run keeps on disk besides its pictures: checkpoints that hold the
//! settings, the history and where an interrupted epoch stopped (no timings, so equal runs
//! write equal bytes), `metrics.jsonl` (one line per epoch, timings included) and
//! `timing.json` (the seconds of an interrupted epoch).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use engine::checkpoint::{self, Checkpoint};
use engine::optim::Optimizer;
use models::Model;
use serde::{Deserialize, Serialize};

use crate::recipe::Settings;
use crate::trainer::{build_optimizer, Tally};

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
pub(crate) struct Progress {
    /// 0-based epoch in progress (or the next one when `steps_done` is 0).
    pub(crate) epoch: usize,
    /// Steps of that epoch already trained.
    pub(crate) steps_done: usize,
    /// Loss and accuracy counters of those steps (stored flat, as `loss_sum`, `correct`, `seen`).
    #[serde(flatten)]
    pub(crate) tally: Tally,
    /// Wall-clock seconds of the epoch so far: kept in timing.json, not in checkpoints.
    #[serde(default, skip_serializing)]
    pub(crate) seconds: f64,
}

/// File beside an interrupted run's checkpoint with the seconds spent in the unfinished epoch.
pub(crate) const TIMING_FILE: &str = "timing.json";

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
pub(crate) fn restore_timings(history: &mut [EpochMetrics], progress: &mut Progress, dir: &Path) {
    restore_epoch_timings(history, dir);
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

/// The epochs logged in `dir/metrics.jsonl` (none when it is missing; unreadable lines skipped).
pub(crate) fn logged_metrics(dir: &Path) -> Vec<EpochMetrics> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|text| text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

/// Puts back the per-epoch timings that checkpoints leave out, from `dir/metrics.jsonl`.
pub(crate) fn restore_epoch_timings(history: &mut [EpochMetrics], dir: &Path) {
    let logged = logged_metrics(dir);
    for m in history.iter_mut() {
        if let Some(l) = logged.iter().find(|l| l.epoch == m.epoch) {
            m.seconds = l.seconds;
            m.images_per_sec = l.images_per_sec;
        }
    }
}

/// What a checkpoint of `sph train` holds besides its tensors.
pub struct RunState {
    /// The run's resolved settings.
    pub settings: Settings,
    /// Metrics of the finished epochs (without timings).
    pub history: Vec<EpochMetrics>,
    /// Where the run stopped.
    pub(crate) progress: Progress,
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

/// Saves parameters, buffers, optimizer state, settings, history and progress (rank 0 of an
/// MPI run alone writes).
pub(crate) fn save_checkpoint(
    path: &Path,
    model: &Model,
    opt: &dyn Optimizer,
    s: &Settings,
    history: &[EpochMetrics],
    progress: &Progress,
    best_acc: f64,
) -> Result<()> {
    if !crate::dist::is_root() {
        return Ok(());
    }
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
    Ok(checkpoint::save(path, &tensors, &meta)?)
}

/// Parses the JSON metadata entry `key` of a checkpoint written by `sph train`.
pub fn read_meta<T: for<'de> Deserialize<'de>>(path: &Path, ckpt: &Checkpoint, key: &str) -> Result<T> {
    let text = ckpt.metadata.get(key).ok_or_else(|| {
        anyhow!("{}: not a checkpoint written by `sph train` (metadata '{key}' missing)", path.display())
    })?;
    serde_json::from_str(text).map_err(|e| anyhow!("{}: metadata '{key}' unreadable: {e}", path.display()))
}
