//! `sph analyze overlap`: the paper's dispersion table. Trains (or loads) CNN-9 with each
//! operator on CIFAR-10, keeps only the angles of the test representations that feed the
//! last layer, and counts overlapping samples, the errors among them and label conflicts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use datasets::{Batching, DatasetName, Loader, Split};
use engine::checkpoint;
use engine::Tensor;
use models::Model;
use serde::Serialize;

use crate::data;
use crate::files;
use crate::overlap::{self, OverlapCounts};
use crate::recipe::{self, Settings};
use crate::report::mean_std;
use crate::run_state::{self, EpochMetrics};
use crate::train::{self, Verbosity, EVAL_BATCH};
use crate::trainer::count_matches;

/// Flags of `sph analyze overlap`.
#[derive(Args, Debug)]
pub struct OverlapArgs {
    /// Operators to compare (base, sigmoid, linear, cosine, w_sigmoid, w_linear, w_cosine, spherization).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "base,sigmoid,linear,cosine,w_sigmoid,w_linear,w_cosine,spherization"
    )]
    pub operators: Vec<String>,
    /// Training epochs per model (the paper: 160; its learning-rate drops at 80 and 130 are scaled to this).
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// CNN-9 width multiplier (1 = the paper's 128/192/256 channels).
    #[arg(long, default_value_t = 0.25)]
    pub width_multiplier: f32,
    /// Train on the first N CIFAR-10 training images only.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Analyze the first N test images only (default: all 10,000).
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Seeds; each operator is trained once per seed and the table shows mean +- std.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
    /// Overlap threshold in radians; the table also shows tau/10 and 10 tau.
    #[arg(long, default_value_t = 1e-3)]
    pub tau: f64,
    /// Folder for the runs (reused: a finished run with the same settings is loaded, not retrained) and the tables.
    #[arg(long, default_value = "runs/overlap")]
    pub out: PathBuf,
    /// Data directory (default: $SPH_DATA or data/).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Worker threads (default: RAYON_NUM_THREADS or all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// One operator of the paper's table.
struct Operator {
    key: &'static str,
    model: &'static str,
    role: &'static str,
    label: &'static str,
}

const OPERATORS: [Operator; 8] = [
    Operator { key: "base", model: "cnn9", role: "base", label: "Original Conv." },
    Operator { key: "sigmoid", model: "cnn9_sigmoid_s", role: "direct", label: "Sigmoid" },
    Operator { key: "linear", model: "cnn9_linear_s", role: "direct", label: "Linear" },
    Operator { key: "cosine", model: "cnn9_cosine_s", role: "direct", label: "Cosine" },
    Operator { key: "w_sigmoid", model: "cnn9_w_sigmoid_s", role: "indirect", label: "SW-Softmax" },
    Operator { key: "w_linear", model: "cnn9_w_linear_s", role: "indirect", label: "LW-Softmax" },
    Operator { key: "w_cosine", model: "cnn9_w_cosine_s", role: "indirect", label: "CW-Softmax" },
    Operator { key: "spherization", model: "sph_cnn9_s", role: "proposed", label: "Spherization" },
];

/// One analyzed run: an operator and a seed.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub operator: String,
    pub model: String,
    pub seed: u64,
    pub train_acc: f64,
    pub test_acc: f64,
    pub test_samples: usize,
    pub dims: usize,
    /// Counts at tau/10, tau and 10 tau.
    pub counts: Vec<Counts>,
    pub search_seconds: f64,
    /// Saturation diagnostics (spherization only).
    pub saturation: Option<Saturation>,
}

/// Overlap counts at one threshold.
#[derive(Clone, Debug, Serialize)]
pub struct Counts {
    pub tau: f64,
    pub overlapped: usize,
    pub errors: usize,
    pub conflicts: usize,
}

impl From<OverlapCounts> for Counts {
    fn from(c: OverlapCounts) -> Counts {
        Counts { tau: c.tau, overlapped: c.overlapped, errors: c.errors, conflicts: c.conflicts }
    }
}

/// The paper's schedule (x0.1 at epochs 80 and 130 of 160) scaled to `epochs`.
fn scaled_schedule(epochs: usize) -> String {
    recipe::scaled_milestones(&[80, 130], 160, epochs, 0.1)
}

/// Loads a finished run with exactly these settings from `dir`, resumes an unfinished one,
/// or trains a new one (ten-class data sets only).
pub fn train_or_load(s: &Settings, data_dir: &Path, dir: &Path) -> Result<(Model, Vec<EpochMetrics>)> {
    let last = dir.join("last.safetensors");
    if last.exists() {
        let ckpt = checkpoint::load(&last)?;
        let saved: Settings = run_state::read_meta(&last, &ckpt, "settings")?;
        if &saved != s {
            bail!("{} holds a run with other settings; pass another --out", dir.display());
        }
        let mut history: Vec<EpochMetrics> = run_state::read_meta(&last, &ckpt, "history")?;
        if history.len() >= s.epochs {
            run_state::restore_epoch_timings(&mut history, dir);
            println!("{}: loading the finished run in {}", s.model, dir.display());
            let mut model = models::build(&s.model, &recipe::model_config(s, 10)?)?;
            checkpoint::restore_store(&last, &ckpt, model.params_mut())?;
            return Ok((model, history));
        }
        println!("{}: resuming the run in {}", s.model, dir.display());
        let run = train::execute(s.clone(), data_dir, dir, Some((ckpt, last)), Verbosity::Epochs)?;
        return Ok((run.model, run.history));
    }
    println!("{}: training {} epochs into {}", s.model, s.epochs, dir.display());
    let run = train::execute(s.clone(), data_dir, dir, None, Verbosity::Epochs)?;
    Ok((run.model, run.history))
}

/// What a trained network makes of the test images: its representations (the input of the
/// last layer), the head's input (for spherized networks the pre-activations z of the
/// angles), predictions and labels.
pub struct Representations {
    /// Representations, rows of `dims` numbers.
    pub reprs: Vec<f32>,
    /// Width of a representation.
    pub dims: usize,
    /// The last layer's input before spherization, rows of `head_dims` numbers.
    pub head: Vec<f32>,
    /// Width of a head input.
    pub head_dims: usize,
    /// Predicted classes.
    pub preds: Vec<usize>,
    /// True classes.
    pub labels: Vec<usize>,
}

/// The [`Representations`] of the test images of data set `name` (normalized, not augmented),
/// a class-stratified sample of `limit` of them when a limit is given.
pub fn representations(
    model: &mut Model,
    name: DatasetName,
    data_dir: &Path,
    limit: Option<usize>,
) -> Result<Representations> {
    let test = data::load_split(name, data_dir, Split::Test, limit)?;
    let loader = Loader::new(&test, Batching::in_order(EVAL_BATCH).normalize(Some(datasets::paper_normalize(name))))?;
    let mut r = Representations {
        reprs: Vec::new(),
        dims: 0,
        head: Vec::new(),
        head_dims: 0,
        preds: Vec::new(),
        labels: Vec::new(),
    };
    loader.for_each_prefetched(0, |batch| -> Result<()> {
        let (head, repr, logits) = model.evaluate_parts(Tensor::from_vec(&batch.shape, batch.images)?)?;
        r.dims = repr.shape()[1];
        r.head_dims = head.len() / head.shape()[0].max(1);
        r.reprs.extend_from_slice(repr.data());
        r.head.extend_from_slice(head.data());
        r.preds.extend(logits.argmax_last());
        r.labels.extend(batch.labels);
        Ok(())
    })?;
    Ok(r)
}

/// Overlap at tau among the samples whose share of saturated angles falls in one quarter.
#[derive(Clone, Debug, Serialize)]
pub struct SaturationBin {
    /// The quarter, e.g. "25-50%" (the last one includes 100%).
    pub share: String,
    pub samples: usize,
    pub overlapped: usize,
    pub errors: usize,
}

/// What tells budget from method in a spherized network: how far its angles are saturated.
#[derive(Clone, Debug, Serialize)]
pub struct Saturation {
    /// The learned scaling alpha.
    pub scaling: f32,
    /// Saturated angles among all test angles.
    pub fraction: f64,
    /// Mean saturated angles per sample, among samples overlapped at tau and among the rest.
    pub per_overlapped: f64,
    pub per_other: f64,
    /// Overlap at tau by quarter of saturated share.
    pub bins: Vec<SaturationBin>,
}

/// The saturation diagnostics of a spherized model's test pass (None for other models).
fn saturation(model: &Model, s: &Settings, r: &Representations, overlapped: &[bool]) -> Option<Saturation> {
    let (_, scaling, _) = model.sphere_values().into_iter().last()?; // the head's spherization
    let n = r.head_dims;
    let phi_lower = engine::kernels::spherize::lower_angle(n, s.delta);
    let per_sample = overlap::saturated_per_sample(&r.head, n, scaling, phi_lower);
    let samples = per_sample.len().max(1);
    let mean_where = |want: bool| {
        let picked: Vec<usize> =
            per_sample.iter().zip(overlapped).filter(|(_, &o)| o == want).map(|(&k, _)| k).collect();
        picked.iter().sum::<usize>() as f64 / picked.len().max(1) as f64
    };
    let bins = (0..4)
        .map(|q| {
            let in_bin = |k: usize| (4 * k / n.max(1)).min(3) == q;
            let members: Vec<usize> = (0..per_sample.len()).filter(|&i| in_bin(per_sample[i])).collect();
            SaturationBin {
                share: format!("{}-{}%", 25 * q, 25 * (q + 1)),
                samples: members.len(),
                overlapped: members.iter().filter(|&&i| overlapped[i]).count(),
                errors: members.iter().filter(|&&i| overlapped[i] && r.preds[i] != r.labels[i]).count(),
            }
        })
        .collect();
    Some(Saturation {
        scaling,
        fraction: per_sample.iter().sum::<usize>() as f64 / (samples * n.max(1)) as f64,
        per_overlapped: mean_where(true),
        per_other: mean_where(false),
        bins,
    })
}

/// `sph analyze overlap`.
pub fn run_overlap(args: OverlapArgs) -> Result<()> {
    if !(args.tau > 0.0 && args.tau < std::f64::consts::PI / 10.0) {
        bail!("--tau: expected a positive angle in radians below pi/10, found {}", args.tau);
    }
    if args.epochs == 0 || args.seeds.is_empty() {
        bail!("--epochs and --seeds need at least one value");
    }
    let ops: Vec<&Operator> = args
        .operators
        .iter()
        .map(|k| {
            OPERATORS
                .iter()
                .find(|o| o.key == k.as_str())
                .ok_or_else(|| anyhow!("unknown operator '{k}' (valid: {})", OPERATORS.map(|o| o.key).join(", ")))
        })
        .collect::<Result<_>>()?;
    let data_dir = args.data.clone().unwrap_or_else(datasets::default_data_dir);
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    // The images the runs train and are analyzed on, listed for scripts/overlap-pytorch.py.
    for (split, limit) in [(Split::Train, args.train_limit), (Split::Test, args.test_limit)] {
        crate::data::write_subset_listing("cifar10", split, limit, &data_dir, &args.out.join("subsets"))?;
    }
    let taus = [args.tau / 10.0, args.tau, args.tau * 10.0];
    let mut rows = Vec::new();
    for op in &ops {
        for &seed in &args.seeds {
            let mut s = recipe::paper(op.model, "cifar10");
            s.epochs = args.epochs;
            s.schedule = scaled_schedule(args.epochs);
            s.width_multiplier = args.width_multiplier;
            s.train_limit = args.train_limit;
            s.seed = seed;
            let (mut model, history) = train_or_load(&s, &data_dir, &args.out.join(format!("{}-s{seed}", op.key)))?;
            let r = representations(&mut model, DatasetName::Cifar10, &data_dir, args.test_limit)?;
            let (dims, preds, labels) = (r.dims, &r.preds, &r.labels);
            let started = Instant::now();
            let pairs = overlap::close_pairs(&r.reprs, dims, taus[2]);
            let search_seconds = started.elapsed().as_secs_f64();
            let correct = count_matches(preds, labels);
            let saturation = saturation(&model, &s, &r, &overlap::overlapped_samples(&pairs, taus[1], labels.len()));
            let row = Row {
                operator: op.key.to_string(),
                model: op.model.to_string(),
                seed,
                train_acc: history.last().map(|m| m.train_acc).unwrap_or(f64::NAN),
                test_acc: correct as f64 / labels.len().max(1) as f64,
                test_samples: labels.len(),
                dims,
                counts: taus.iter().map(|&t| overlap::count(&pairs, t, labels, preds).into()).collect(),
                search_seconds,
                saturation,
            };
            println!(
                "{} seed {seed}: test acc {:.2}%, #ovlp {} #err {} at tau {:e} ({} samples x {dims} dims searched in {:.2}s)",
                op.key,
                100.0 * row.test_acc,
                row.counts[1].overlapped,
                row.counts[1].errors,
                args.tau,
                labels.len(),
                search_seconds
            );
            if let Some(sat) = &row.saturation {
                println!(
                    "  scaling {:.3}, {:.1}% of angles saturated; {:.1} saturated per overlapped sample, {:.1} per other",
                    sat.scaling,
                    100.0 * sat.fraction,
                    sat.per_overlapped,
                    sat.per_other
                );
            }
            rows.push(row);
        }
    }
    let mut table = render_table(&ops, &rows, &taus);
    table += &render_saturation(&rows, args.tau);
    table += &render_twin(&ops, &rows, &args.out.join("pytorch-overlap.csv"), args.tau)?;
    println!("\n{table}");
    write_outputs(&args.out, &rows, &table)?;
    println!("wrote {0}/overlap.csv, {0}/overlap.json and {0}/overlap.txt", args.out.display());
    Ok(())
}

/// The paper's layout: one line per operator, mean +- std over seeds.
fn render_table(ops: &[&Operator], rows: &[Row], taus: &[f64; 3]) -> String {
    let mut t = format!(
        "{:<9} {:<15} {:>7}  {:>15} {:>15}  {:>13} {:>13} {:>17} {:>11}   {:>13} {:>13}\n",
        "Role",
        "Operator",
        "No-bias",
        "Train acc.",
        "Test acc.",
        "# err.",
        "# ovlp.",
        "(ratio)",
        "# conflict",
        format!("ovlp@{:e}", taus[0]),
        format!("ovlp@{:e}", taus[2])
    );
    for op in ops {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.operator == op.key).collect();
        let stat = |f: &dyn Fn(&Row) -> f64| mean_std(&mine.iter().map(|r| f(r)).collect::<Vec<_>>());
        let pm = |(m, s): (f64, f64), digits: usize| format!("{m:.digits$} ± {s:.digits$}");
        let ratio = stat(&|r| {
            if r.counts[1].overlapped == 0 {
                0.0
            } else {
                100.0 * r.counts[1].errors as f64 / r.counts[1].overlapped as f64
            }
        });
        // Every operator here is bias-free except the ordinary CNN.
        let no_bias = if op.key == "base" { "" } else { "yes" };
        t += &format!(
            "{:<9} {:<15} {:>7}  {:>15} {:>15}  {:>13} {:>13} {:>17} {:>11}   {:>13} {:>13}\n",
            op.role,
            op.label,
            no_bias,
            pm(stat(&|r| 100.0 * r.train_acc), 2),
            pm(stat(&|r| 100.0 * r.test_acc), 2),
            pm(stat(&|r| r.counts[1].errors as f64), 0),
            pm(stat(&|r| r.counts[1].overlapped as f64), 0),
            format!("({}%)", pm(ratio, 2)),
            pm(stat(&|r| r.counts[1].conflicts as f64), 0),
            pm(stat(&|r| r.counts[0].overlapped as f64), 0),
            pm(stat(&|r| r.counts[2].overlapped as f64), 0),
        );
    }
    t
}

/// Per spherized run: learned scaling, saturated share, and overlap by quarter of saturated share.
fn render_saturation(rows: &[Row], tau: f64) -> String {
    let sat_rows: Vec<(&Row, &Saturation)> = rows.iter().filter_map(|r| Some((r, r.saturation.as_ref()?))).collect();
    if sat_rows.is_empty() {
        return String::new();
    }
    let mut t = format!(
        "\nSaturated angles (sigmoid(alpha z) = 1 or angle = phi_L in f32) and overlap at tau {tau:e} by share of saturated angles per sample:\n{:<14} {:>4} {:>9} {:>8} {:>10} {:>12} {:>11}  {}\n",
        "operator", "seed", "test acc", "scaling", "saturated", "sat./ovlp.", "sat./other", "samples/ovlp./err. by saturated share 0-25% | 25-50% | 50-75% | 75-100%"
    );
    for (r, sat) in sat_rows {
        let bins: Vec<String> =
            sat.bins.iter().map(|b| format!("{}/{}/{}", b.samples, b.overlapped, b.errors)).collect();
        t += &format!(
            "{:<14} {:>4} {:>8.2}% {:>8.3} {:>9.1}% {:>12.1} {:>11.1}  {}\n",
            r.operator,
            r.seed,
            100.0 * r.test_acc,
            sat.scaling,
            100.0 * sat.fraction,
            sat.per_overlapped,
            sat.per_other,
            bins.join(" | ")
        );
    }
    t
}

/// One line of `scripts/overlap-pytorch.py`'s `pytorch-overlap.csv` at the table's tau.
struct TwinRow {
    operator: String,
    test_acc: f64,
    counts: [f64; 3],
    saturated: Option<f64>,
}

/// The twin's lines at `tau` (an absent file is no twin; a malformed one is an error naming it).
fn read_twin(path: &Path, tau: f64) -> Result<Vec<TwinRow>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| anyhow!("{}: no column '{name}'", path.display()))
    };
    let [op, acc, tau_col, ovlp, err, conflict, sat] =
        ["operator", "test_acc", "tau", "overlapped", "errors", "conflicts", "saturated_fraction"].map(column);
    let (op, acc, tau_col, ovlp, err, conflict, sat) = (op?, acc?, tau_col?, ovlp?, err?, conflict?, sat?);
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let number = |c: usize| -> Result<f64> {
            let v = f.get(c).copied().unwrap_or_default();
            v.parse::<f64>().map_err(|_| {
                anyhow!("{}: line {}, column '{}': expected a number, found '{v}'", path.display(), i + 2, header[c])
            })
        };
        if (number(tau_col)? / tau - 1.0).abs() > 1e-6 {
            continue;
        }
        rows.push(TwinRow {
            operator: f[op].to_string(),
            test_acc: number(acc)?,
            counts: [number(ovlp)?, number(err)?, number(conflict)?],
            saturated: f.get(sat).filter(|v| !v.is_empty()).map(|_| number(sat)).transpose()?,
        });
    }
    Ok(rows)
}

/// Ours beside the PyTorch twin of the same protocol (means over the seeds each ran), when
/// `scripts/overlap-pytorch.py` has written its file; empty otherwise.
fn render_twin(ops: &[&Operator], rows: &[Row], path: &Path, tau: f64) -> Result<String> {
    let twin = read_twin(path, tau)?;
    if twin.is_empty() {
        return Ok(String::new());
    }
    let mut t = format!(
        "\nOurs / the PyTorch twin of the same protocol (scripts/overlap-pytorch.py), at tau {tau:e}:\n\
         | role | operator | test acc. (%) | # ovlp. | # err. | # conflict | saturated angles (%) |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n"
    );
    let mean = |v: Vec<f64>| if v.is_empty() { None } else { Some(mean_std(&v).0) };
    let pair = |ours: Option<f64>, theirs: Option<f64>, digits: usize| {
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        format!("{} / {}", show(ours), show(theirs))
    };
    for op in ops {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.operator == op.key).collect();
        let theirs: Vec<&TwinRow> = twin.iter().filter(|r| r.operator == op.key).collect();
        let ours_count = |k: usize| {
            mean(
                mine.iter()
                    .map(|r| [r.counts[1].overlapped, r.counts[1].errors, r.counts[1].conflicts][k] as f64)
                    .collect(),
            )
        };
        let twin_count = |k: usize| mean(theirs.iter().map(|r| r.counts[k]).collect());
        let saturated = if op.key == "spherization" {
            pair(
                mean(mine.iter().filter_map(|r| r.saturation.as_ref()).map(|s| 100.0 * s.fraction).collect()),
                mean(theirs.iter().filter_map(|r| r.saturated).map(|s| 100.0 * s).collect()),
                1,
            )
        } else {
            String::new()
        };
        t += &format!(
            "| {} | {} | {} | {} | {} | {} | {saturated} |\n",
            op.role,
            op.label,
            pair(
                mean(mine.iter().map(|r| 100.0 * r.test_acc).collect()),
                mean(theirs.iter().map(|r| r.test_acc).collect()),
                2
            ),
            pair(ours_count(0), twin_count(0), 0),
            pair(ours_count(1), twin_count(1), 0),
            pair(ours_count(2), twin_count(2), 0),
        );
    }
    Ok(t)
}

fn write_outputs(out: &Path, rows: &[Row], table: &str) -> Result<()> {
    let mut csv = String::from(
        "operator,model,seed,train_acc,test_acc,test_samples,dims,tau,overlapped,errors,conflicts,search_seconds,scaling,saturated_fraction\n",
    );
    for r in rows {
        let (scaling, saturated) = match &r.saturation {
            Some(sat) => (format!("{:.6}", sat.scaling), format!("{:.6}", sat.fraction)),
            None => (String::new(), String::new()),
        };
        for c in &r.counts {
            csv += &format!(
                "{},{},{},{:.6},{:.6},{},{},{:e},{},{},{},{:.4},{scaling},{saturated}\n",
                r.operator,
                r.model,
                r.seed,
                r.train_acc,
                r.test_acc,
                r.test_samples,
                r.dims,
                c.tau,
                c.overlapped,
                c.errors,
                c.conflicts,
                r.search_seconds
            );
        }
    }
    files::write_atomic(&out.join("overlap.csv"), &csv)?;
    files::write_atomic(&out.join("overlap.json"), &serde_json::to_string_pretty(rows)?)?;
    files::write_atomic(&out.join("overlap.txt"), table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_schedule_scales_to_the_epochs_given() {
        assert_eq!(scaled_schedule(160), "multistep:80,130:0.1");
        assert_eq!(scaled_schedule(16), "multistep:8,13:0.1");
        // Short budgets: decays on distinct epochs, none at the first, none past the last.
        assert_eq!(scaled_schedule(3), "multistep:2,3:0.1");
        assert_eq!(scaled_schedule(2), "multistep:2:0.1");
        assert_eq!(scaled_schedule(1), "constant");
    }

    fn row(operator: &str, test_acc: f64, overlapped: usize, errors: usize) -> Row {
        Row {
            operator: operator.into(),
            model: String::new(),
            seed: 0,
            train_acc: 0.0,
            test_acc,
            test_samples: 10_000,
            dims: 64,
            counts: [1e-4, 1e-3, 1e-2]
                .map(|tau| Counts { tau, overlapped: overlapped * (tau * 1e3) as usize, errors, conflicts: 0 })
                .to_vec(),
            search_seconds: 0.0,
            saturation: None,
        }
    }

    #[test]
    fn twin_table_takes_the_lines_at_tau_and_names_bad_fields() {
        let dir = std::env::temp_dir().join(format!("sph-twin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pytorch-overlap.csv");
        let header = "operator,model,seed,train_acc,test_acc,test_samples,dims,tau,overlapped,errors,conflicts,seconds,scaling,saturated_fraction\n";
        let lines = "base,cnn9,0,90.00,80.50,10000,64,1.000000e-4,1,0,0,60,,\n\
                     base,cnn9,0,90.00,80.50,10000,64,1.000000e-3,7,2,1,60,,\n\
                     base,cnn9,0,90.00,80.50,10000,64,1.000000e-2,70,9,5,60,,\n";
        std::fs::write(&path, format!("{header}{lines}")).unwrap();
        let ops: Vec<&Operator> = OPERATORS.iter().filter(|o| o.key == "base" || o.key == "linear").collect();
        let table = render_twin(&ops, &[row("base", 0.8125, 3, 1)], &path, 1e-3).unwrap();
        assert!(table.contains("| base | Original Conv. | 81.25 / 80.50 | 3 / 7 | 1 / 2 | 0 / 1 |  |"), "{table}");
        // An operator the twin has not run yet shows a dash on its side.
        assert!(table.contains("| direct | Linear | - / - | - / - |"), "{table}");

        std::fs::write(&path, format!("{header}base,cnn9,0,90.00,eighty,10000,64,1e-3,7,2,1,60,,\n")).unwrap();
        let err = render_twin(&ops, &[], &path, 1e-3).unwrap_err().to_string();
        assert!(err.contains("line 2, column 'test_acc'") && err.contains("'eighty'"), "{err}");
        // No twin file: no section.
        assert_eq!(render_twin(&ops, &[], &dir.join("absent.csv"), 1e-3).unwrap(), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
