//! `sph report`: summarizes finished runs (their metrics.jsonl and config.json) grouped by
//! model and data set: mean +- std over seeds of the last-epoch, best-epoch and
//! last-10-epochs test accuracy, the time to reach a target accuracy, and images/s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::Args;

use crate::recipe::Settings;
use crate::run_state::EpochMetrics;

/// Flags of `sph report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run folders (each with metrics.jsonl and config.json).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Report the training time until the test accuracy first reaches this (percent).
    #[arg(long, default_value_t = 99.0)]
    pub target: f64,
}

pub(crate) struct Run {
    settings: Settings,
    history: Vec<EpochMetrics>,
}

pub(crate) fn read_run(dir: &Path) -> Result<Run> {
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("config.json"))
            .with_context(|| format!("reading {}", dir.join("config.json").display()))?,
    )
    .with_context(|| format!("{}: not JSON", dir.join("config.json").display()))?;
    let settings: Settings = serde_json::from_value(config["settings"].clone())
        .with_context(|| format!("{}: field settings", dir.join("config.json").display()))?;
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let history = text
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| anyhow!("{} line {}: {e}", path.display(), i + 1)))
        .collect::<Result<Vec<EpochMetrics>>>()?;
    if history.is_empty() {
        return Err(anyhow!("{}: no epoch recorded", path.display()));
    }
    Ok(Run { settings, history })
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// `sph report`.
pub fn run_report(args: ReportArgs) -> Result<()> {
    let mut groups: BTreeMap<(String, String), Vec<Run>> = BTreeMap::new();
    for dir in &args.runs {
        let run = read_run(dir)?;
        groups.entry((run.settings.dataset.clone(), run.settings.model.clone())).or_default().push(run);
    }
    println!(
        "| data set | model | seeds | epochs | last epoch | best epoch | mean of last 10 | time to {:.1}% | train img/s | wall time |",
        args.target
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for ((dataset, model), runs) in &groups {
        let pm = |v: Vec<f64>| {
            let (m, s) = mean_std(&v);
            format!("{m:.2} ± {s:.2}")
        };
        let last = pm(runs.iter().map(|r| 100.0 * r.history.last().map(|m| m.test_acc).unwrap_or(f64::NAN)).collect());
        let best =
            pm(runs.iter().map(|r| 100.0 * r.history.iter().map(|m| m.test_acc).fold(f64::MIN, f64::max)).collect());
        let tail = pm(runs
            .iter()
            .map(|r| {
                let k = r.history.len().min(10);
                100.0 * r.history[r.history.len() - k..].iter().map(|m| m.test_acc).sum::<f64>() / k as f64
            })
            .collect());
        // Training seconds summed until the first epoch at or above the target.
        let reach: Vec<String> = runs
            .iter()
            .map(|r| {
                let mut secs = 0.0;
                for m in &r.history {
                    secs += m.seconds;
                    if 100.0 * m.test_acc >= args.target {
                        return format!("{secs:.0} s");
                    }
                }
                "not reached".to_string()
            })
            .collect();
        let speed =
            mean_std(&runs.iter().flat_map(|r| r.history.iter().map(|m| m.images_per_sec)).collect::<Vec<_>>()).0;
        let wall =
            mean_std(&runs.iter().map(|r| r.history.iter().map(|m| m.seconds).sum::<f64>()).collect::<Vec<_>>()).0;
        let epochs = runs.iter().map(|r| r.history.len()).max().unwrap_or(0);
        println!(
            "| {dataset} | {model} | {} | {epochs} | {last} | {best} | {tail} | {} | {speed:.0} | {:.0} s per run |",
            runs.len(),
            reach.join(", "),
            wall
        );
    }
    Ok(())
}
