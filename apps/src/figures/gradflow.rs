//! Figure 4: the mean absolute gradient of every weight layer, VGG-11-BN against its
//! spherized twin.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use datasets::{Batching, DatasetName, Loader, Split};
use engine::ParamId;
use models::Model;
use plotters::prelude::*;
use serde::Serialize;

use crate::data;
use crate::files;
use crate::plot::{self, plot_err};
use crate::recipe;
use crate::trainer::{Tally, Trainer};

use super::{Area, MARGIN, X_LABEL_AREA, Y_LABEL_AREA};

/// Figure 4's colours: VGG-11 red, the spherized VGG-11 cyan.
const GRAD_COLORS: [RGBColor; 2] = [RGBColor(220, 40, 40), RGBColor(0, 185, 205)];

/// Flags of `sph figure gradflow`.
#[derive(Args, Debug)]
pub struct GradflowArgs {
    /// Training steps of each network (default: 100).
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<usize>,
    /// Train whole epochs instead of a number of steps.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// VGG width multiplier (1 = the paper's 64/128/256/512 channels and 4096 hidden units).
    #[arg(long, default_value_t = 0.25)]
    pub width_multiplier: f32,
    /// Images per step (the paper: 128).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Seed of the initialization, shuffling, augmentation and dropout (the same for both networks).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (gradflow.png, gradflow.csv, gradflow.json).
    #[arg(long, default_value = "figures")]
    pub out: PathBuf,
    /// Data directory (default: $SPH_DATA or data/); CIFAR-100 is used when present, else CIFAR-10.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Replace the figure's files in the output folder if they exist.
    #[arg(long)]
    pub force: bool,
}

/// The two networks of Figure 4 and their display names.
pub(super) const GRAD_MODELS: [(&str, &str); 2] = [("vgg11_bn", "VGG-11-BN"), ("sph_vgg11_bn", "spherized VGG-11-BN")];

/// One layer whose weight gradients are recorded.
#[derive(Clone, Debug, Serialize)]
pub struct LayerGrad {
    /// Short name on the chart: conv1..conv8, fc1..fc3 in order from the input.
    pub label: String,
    /// The parameter's name in the store (PyTorch's).
    pub parameter: String,
    /// The weight's shape.
    pub shape: Vec<usize>,
    /// Mean over steps of the mean absolute gradient of the weight.
    pub mean_abs_grad: f64,
    /// The mean absolute gradient at every step.
    pub per_step: Vec<f64>,
}

/// The gradient record of one network.
#[derive(Clone, Debug, Serialize)]
pub struct GradFlow {
    /// Registry name.
    pub model: String,
    /// Steps recorded.
    pub steps: usize,
    /// Mean training loss over the recorded steps.
    pub mean_train_loss: f64,
    /// Training accuracy over the recorded steps.
    pub train_acc: f64,
    /// Every layer's weights, from the input to the output.
    pub layers: Vec<LayerGrad>,
}

/// The layers of a model whose gradients Figure 4 shows: the weights of every convolution
/// and linear map (rank 2 or 4), named conv1.., fc1.. from the input. Batch-norm scales and
/// biases are left out, as in the usual gradient-flow plots.
pub(super) fn weight_layers(model: &Model) -> Vec<(ParamId, String)> {
    let params = model.params();
    let (mut convs, mut fcs) = (0, 0);
    params
        .learnable()
        .filter_map(|id| match params.value(id).shape().len() {
            4 => {
                convs += 1;
                Some((id, format!("conv{convs}")))
            }
            2 => {
                fcs += 1;
                Some((id, format!("fc{fcs}")))
            }
            _ => None,
        })
        .collect()
}

/// Trains `model` for `steps` steps (paper recipe, the width and batch given) and records,
/// after every backward pass and before the update, each layer's mean absolute gradient.
pub(super) fn record_gradients(
    model_name: &str,
    name: DatasetName,
    data_dir: &Path,
    args: &GradflowArgs,
) -> Result<GradFlow> {
    let mut s = recipe::paper(model_name, name.as_str());
    s.width_multiplier = args.width_multiplier;
    s.batch_size = args.batch_size;
    s.seed = args.seed;
    s.train_limit = args.train_limit;
    let train_set = data::load_split(name, data_dir, Split::Train, args.train_limit)?;
    let model = models::build(model_name, &recipe::model_config(&s, train_set.num_classes)?)?;
    let (augment, _, norm) = data::input_pipeline(&model, &train_set, name, s.augment)?;
    let loader =
        Loader::new(&train_set, Batching::shuffled(s.batch_size, s.seed).augment(augment).normalize(Some(norm)))?;
    let mut trainer = Trainer::from_settings(model, &s)?;
    let steps = match (args.epochs, args.steps) {
        (Some(e), _) => e * loader.num_batches(),
        (None, Some(n)) => n,
        (None, None) => 100,
    };
    let layers = weight_layers(&trainer.model);
    let mut per_step: Vec<Vec<f64>> = vec![Vec::with_capacity(steps); layers.len()];
    println!(
        "{model_name}: {} parameters, {steps} steps of {} {} images (lr {}, {} {})",
        trainer.model.num_parameters(),
        s.batch_size,
        name,
        s.lr,
        s.optimizer,
        s.schedule
    );
    if loader.num_batches() == 0 {
        bail!("{name}: no training images");
    }
    let (mut tally, mut done, mut epoch) = (Tally::default(), 0usize, 0usize);
    while done < steps {
        trainer.begin_epoch(epoch);
        // The mean |gradient| of each weight layer, read between backward and the update.
        let record = |model: &Model| {
            for ((id, _), record) in layers.iter().zip(per_step.iter_mut()) {
                let g = model.params().grad(*id).data();
                record.push(g.iter().map(|v| v.abs() as f64).sum::<f64>() / g.len().max(1) as f64);
            }
        };
        trainer
            .epoch(&loader, epoch, 0, &mut tally, record, |_, _| {
                done += 1;
                done < steps
            })
            .with_context(|| model_name.to_string())?;
        epoch += 1;
    }
    let params = trainer.model.params();
    let layers = layers
        .iter()
        .zip(per_step)
        .map(|((id, label), values)| LayerGrad {
            label: label.clone(),
            parameter: params.name(*id).to_string(),
            shape: params.value(*id).shape().to_vec(),
            mean_abs_grad: values.iter().sum::<f64>() / values.len().max(1) as f64,
            per_step: values,
        })
        .collect();
    let flow = GradFlow {
        model: model_name.to_string(),
        steps,
        mean_train_loss: tally.mean_loss(),
        train_acc: tally.accuracy(),
        layers,
    };
    println!(
        "{model_name}: mean training loss {:.4}, accuracy {:.2}% over the {steps} steps",
        flow.mean_train_loss,
        100.0 * flow.train_acc
    );
    Ok(flow)
}

/// What gradflow.json holds.
#[derive(Serialize)]
pub(super) struct GradflowReport<'a> {
    dataset: &'a str,
    width_multiplier: f32,
    batch_size: usize,
    seed: u64,
    models: &'a [GradFlow],
}

/// `sph figure gradflow`.
pub fn run_gradflow(args: GradflowArgs) -> Result<()> {
    if args.steps == Some(0) || args.epochs == Some(0) || args.batch_size == 0 || args.train_limit == Some(0) {
        bail!("--steps, --epochs, --batch-size and --train-limit must be at least 1");
    }
    if !(args.width_multiplier > 0.0 && args.width_multiplier.is_finite()) {
        bail!("--width-multiplier: expected a positive number, found {}", args.width_multiplier);
    }
    let outputs = ["gradflow.png", "gradflow.csv", "gradflow.json"].map(|f| args.out.join(f));
    files::refuse_to_overwrite(&outputs, args.force)?;
    let data_dir = args.data.clone().unwrap_or_else(datasets::default_data_dir);
    // The paper's Figure 4 is on CIFAR-100; CIFAR-10 stands in when it is not on disk.
    let name = if data_dir.join(DatasetName::Cifar100Fine.dir_name()).is_dir() {
        DatasetName::Cifar100Fine
    } else {
        println!(
            "CIFAR-100 is not in {} ({}); using CIFAR-10",
            data_dir.display(),
            DatasetName::Cifar100Fine.fetch_hint()
        );
        DatasetName::Cifar10
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let flows =
        GRAD_MODELS.iter().map(|(m, _)| record_gradients(m, name, &data_dir, &args)).collect::<Result<Vec<_>>>()?;

    let mut csv = String::from("model,layer,parameter,shape,mean_abs_grad,min_step,max_step,steps\n");
    for f in &flows {
        for l in &f.layers {
            let (lo, hi) =
                l.per_step.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let shape: Vec<String> = l.shape.iter().map(|d| d.to_string()).collect();
            csv += &format!(
                "{},{},{},{},{:.6e},{lo:.6e},{hi:.6e},{}\n",
                f.model,
                l.label,
                l.parameter,
                shape.join("x"),
                l.mean_abs_grad,
                f.steps
            );
        }
    }
    let report = GradflowReport {
        dataset: name.as_str(),
        width_multiplier: args.width_multiplier,
        batch_size: args.batch_size,
        seed: args.seed,
        models: &flows,
    };
    files::write_atomic(&args.out.join("gradflow.csv"), &csv)?;
    files::write_atomic(&args.out.join("gradflow.json"), &serde_json::to_string_pretty(&report)?)?;

    let png = args.out.join("gradflow.png");
    let title = format!(
        "Gradient flow (paper's Figure 4): {name}, width x{}, batch {}, {} steps each, seed {}",
        args.width_multiplier, args.batch_size, flows[0].steps, args.seed
    );
    // Both bar panels share one log scale, so that the bars compare across panels.
    let all: Vec<f64> = flows
        .iter()
        .flat_map(|f| f.layers.iter().flat_map(|l| l.per_step.iter().copied()))
        .filter(|v| *v > 0.0 && v.is_finite())
        .collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if !(lo.is_finite() && hi.is_finite()) {
        bail!("every recorded gradient is zero or not finite; nothing to draw");
    }
    let y_range = (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()));
    plot::render_png(&png, 1400, 1000, |root| {
        let body = root.titled(&title, ("sans-serif", 20)).map_err(plot_err)?;
        let (top, bottom) = body.split_vertically(520);
        let (left, right) = top.split_horizontally(700);
        for (i, (flow, area)) in flows.iter().zip([left, right]).enumerate() {
            draw_grad_bars(&area, GRAD_MODELS[i].1, flow, GRAD_COLORS[i], y_range)?;
        }
        draw_grad_histograms(&bottom, &flows, (lo, hi))
    })?;
    println!(
        "wrote {}, {} and {}",
        png.display(),
        args.out.join("gradflow.csv").display(),
        args.out.join("gradflow.json").display()
    );
    Ok(())
}

/// One bar per layer: the mean absolute gradient averaged over steps, on a log scale.
pub(super) fn draw_grad_bars(
    area: &Area,
    display: &str,
    flow: &GradFlow,
    color: RGBColor,
    y: (f64, f64),
) -> Result<()> {
    let n = flow.layers.len();
    let labels: Vec<String> = flow.layers.iter().map(|l| l.label.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(format!("(a) {display}: mean |gradient| per layer"), ("sans-serif", 18))
        .margin(MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA + 10)
        // Segments 0..=n-1: one per layer.
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), (y.0..y.1).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .x_desc("layer (input to output)")
        .y_desc("mean |gradient| (log scale)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(flow.layers.iter().enumerate().filter(|(_, l)| l.mean_abs_grad > 0.0).map(|(i, l)| {
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), y.0), (SegmentValue::Exact(i + 1), l.mean_abs_grad)],
                color.mix(0.85).filled(),
            );
            bar.set_margin(0, 0, 6, 6);
            bar
        }))
        .map_err(plot_err)?
        .label(format!("{display} ({}), mean over {} steps", flow.model, flow.steps))
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_err)
}

/// Panel (b): histograms of every (layer, step) mean absolute gradient of both networks,
/// overlaid, with logarithmic bins.
pub(super) fn draw_grad_histograms(area: &Area, flows: &[GradFlow], (lo, hi): (f64, f64)) -> Result<()> {
    const BINS: usize = 40;
    let (a, b) = (lo.log10().floor(), hi.log10().ceil());
    let width = (b - a) / BINS as f64;
    let counts: Vec<Vec<usize>> = flows
        .iter()
        .map(|f| {
            let mut c = vec![0usize; BINS];
            for v in f.layers.iter().flat_map(|l| l.per_step.iter()).filter(|v| **v > 0.0 && v.is_finite()) {
                let bin = ((v.log10() - a) / width).floor() as usize;
                c[bin.min(BINS - 1)] += 1;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("(b) histograms of the layers' mean |gradient| at every step", ("sans-serif", 18))
        .margin(MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA + 10)
        .build_cartesian_2d((10f64.powf(a)..10f64.powf(b)).log_scale(), 0.0..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("mean |gradient| of a layer at a step (log scale)")
        .y_desc("count (layers x steps)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    for (i, (flow, c)) in flows.iter().zip(&counts).enumerate() {
        let color = GRAD_COLORS[i];
        let edge = |k: usize| 10f64.powf(a + k as f64 * width);
        chart
            .draw_series(
                c.iter()
                    .enumerate()
                    .filter(|(_, &n)| n > 0)
                    .map(|(k, &n)| Rectangle::new([(edge(k), 0.0), (edge(k + 1), n as f64)], color.mix(0.45).filled())),
            )
            .map_err(plot_err)?
            .label(format!("{} ({} layers x {} steps)", GRAD_MODELS[i].1, flow.layers.len(), flow.steps))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.mix(0.6).filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_err)
}
