//! `sph figure toy|sphere|gradflow`: the paper's Figures 3, 5 and 4, trained from scratch
//! on a small budget and drawn with plotters.
//!
//! - `toy` (Figure 3): the two-cluster toy task, `toy` (2-2 sigmoid -2) against `sph_toy`
//!   (2 -> 1 -> spherize -> bias-free 2-2): input space with the decision boundary, and the
//!   representation space with the last layer's hyperplanes (through the origin for the
//!   spherized net, whose representations all lie on the circle of radius r).
//! - `sphere` (Figure 5): MNIST test representations of `simple_cnn_2d`, `simple_cnn_3d` and
//!   `sph_cnn_3d`; the 3-D ones seen from fixed viewpoints by an orthographic projection.
//! - `gradflow` (Figure 4): the mean absolute gradient of every layer's weights while
//!   `vgg11_bn` and `sph_vgg11_bn` train, as bars per layer and as histograms.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use datasets::{DatasetName, Loader, Split};
use engine::nn::SphereConfig;
use engine::ops::elementwise::mix_seed;
use engine::optim::Sgd;
use engine::{ParamId, Tensor};
use models::{Model, ModelConfig};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::analyze;
use crate::data;
use crate::files;
use crate::plot::{self, plot_err, PALETTE};
use crate::recipe;
use crate::trainer::{count_correct, Tally, Trainer};

/// A drawing area in pixels, as `plot::render_png` hands it out.
type Area<'b> = DrawingArea<BitMapBackend<'b>, Shift>;
/// A chart with real-valued axes.
type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Pixels around every chart.
const MARGIN: u32 = 12;
/// Pixels below a chart for the x tick labels and description.
const X_LABEL_AREA: u32 = 46;
/// Pixels left of a chart for the y tick labels and description.
const Y_LABEL_AREA: u32 = 60;

/// The toy task's label colours: red for 0 and green for 1, as in the paper.
const TOY_COLORS: [RGBColor; 2] = [PALETTE[3], PALETTE[2]];
/// Figure 4's colours: VGG-11 red, the spherized VGG-11 cyan.
const GRAD_COLORS: [RGBColor; 2] = [RGBColor(220, 40, 40), RGBColor(0, 185, 205)];

// ---------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------

/// Flags of `sph figure toy`.
#[derive(Args, Debug)]
pub struct ToyArgs {
    /// Training epochs of each network (the paper: 100).
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Plain SGD learning rate (the paper: 0.01).
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    /// Points per step (the paper: 16).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Spherization scaling alpha, learned from this value (the paper: 1).
    #[arg(long, default_value_t = 1.0)]
    pub scaling: f32,
    /// Spherization radius r, fixed (the paper: 1).
    #[arg(long, default_value_t = 1.0)]
    pub radius: f32,
    /// Seed of the points, the initialization and the shuffling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder (toy.png, toy.json).
    #[arg(long, default_value = "figures")]
    pub out: PathBuf,
    /// Replace the figure's files in the output folder if they exist.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `sph figure sphere`.
#[derive(Args, Debug)]
pub struct SphereArgs {
    /// Training epochs of each network (the paper: 20; Adam 1e-3, batch 128, alpha = r = 1).
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Train on the first N MNIST training images only.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Draw (and evaluate on) the first N test images only (default: all 10,000).
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Seed of the initialization and the shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder: sphere.png, and the runs under OUT/runs (a finished run with the same settings is reused).
    #[arg(long, default_value = "figures")]
    pub out: PathBuf,
    /// Data directory (default: $SPH_DATA or data/).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Replace the figure's files in the output folder if they exist.
    #[arg(long)]
    pub force: bool,
}

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

// ---------------------------------------------------------------------------------------
// Figure 3: the toy task
// ---------------------------------------------------------------------------------------

/// The toy task: `per_class` points near (0, 0) labelled 0, then as many near (1, 1)
/// labelled 1, each coordinate moved uniformly within +-`jitter`. Returns the points as
/// rows of a [2 per_class, 2] matrix and the labels.
pub fn toy_data(per_class: usize, jitter: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut points = Vec::with_capacity(4 * per_class);
    let mut labels = Vec::with_capacity(2 * per_class);
    for (label, center) in [0.0f32, 1.0].into_iter().enumerate() {
        for _ in 0..per_class {
            points.push(center + rng.gen_range(-jitter..=jitter));
            points.push(center + rng.gen_range(-jitter..=jitter));
            labels.push(label);
        }
    }
    (points, labels)
}

/// One trained toy network and what the figure needs from it.
struct ToyRun {
    model: Model,
    /// Accuracy on the 200 training points after training.
    accuracy: f64,
    /// Rows w_k of the last layer (representation -> logit k).
    w: [[f64; 2]; 2],
    /// Its bias (zero for the spherized net, which has none).
    b: [f64; 2],
    /// The sphere's radius, for the spherized net.
    radius: Option<f64>,
}

/// Trains `name` on the toy points with plain SGD (no momentum, no weight decay), as the
/// official `toy_task.py` does, and reads the last layer.
fn train_toy(name: &str, args: &ToyArgs, points: &[f32], labels: &[usize]) -> Result<ToyRun> {
    let sphere = SphereConfig { scaling: args.scaling, radius: args.radius, ..SphereConfig::default() };
    let cfg = ModelConfig { classes: 2, sphere, seed: args.seed, ..ModelConfig::default() };
    let model = models::build(name, &cfg)?;
    let mut trainer = Trainer::new(model, Box::new(Sgd::new(args.lr, 0.0, 0.0, false)), args.seed);
    let mut rng = StdRng::seed_from_u64(mix_seed(&[args.seed, 0x70]));
    let mut order: Vec<usize> = (0..labels.len()).collect();
    for epoch in 0..args.epochs {
        order.shuffle(&mut rng);
        for (step, batch) in order.chunks(args.batch_size).enumerate() {
            let x: Vec<f32> = batch.iter().flat_map(|&i| [points[2 * i], points[2 * i + 1]]).collect();
            let y: Vec<usize> = batch.iter().map(|&i| labels[i]).collect();
            let x = Tensor::from_vec(&[batch.len(), 2], x)?;
            trainer.step(x, &y, epoch, step, |_| {}).with_context(|| name.to_string())?;
        }
    }
    let mut model = trainer.model;
    let (_, logits) = model.evaluate(&Tensor::from_vec(&[labels.len(), 2], points.to_vec())?)?;
    let correct = count_correct(&logits, labels);
    // The layer names follow the official toy_task.py (see models/src/toy.rs).
    let params = model.params();
    let (w_name, b_name) =
        if name == "sph_toy" { ("sph_fc2.layer.weight", None) } else { ("fc2.weight", Some("fc2.bias")) };
    let w_id = params.find(w_name).ok_or_else(|| anyhow!("{name}: no parameter {w_name}"))?;
    let wd = params.value(w_id).data();
    if wd.len() != 4 {
        bail!("{name}: expected a 2x2 last layer, found {:?}", params.value(w_id).shape());
    }
    let mut b = [0.0; 2];
    if let Some(b_name) = b_name {
        let b_id = params.find(b_name).ok_or_else(|| anyhow!("{name}: no parameter {b_name}"))?;
        let bd = params.value(b_id).data();
        b = [bd[0] as f64, bd[1] as f64];
    }
    let w = [[wd[0] as f64, wd[1] as f64], [wd[2] as f64, wd[3] as f64]];
    let radius = model.sphere_values().first().map(|s| s.2 as f64);
    Ok(ToyRun { model, accuracy: correct as f64 / labels.len() as f64, w, b, radius })
}

/// What toy.json holds for one network.
#[derive(Serialize)]
struct ToySummary<'a> {
    model: &'a str,
    train_accuracy: f64,
    last_layer_weight: [[f64; 2]; 2],
    last_layer_bias: Option<[f64; 2]>,
    radius: Option<f64>,
}

/// `sph figure toy`.
pub fn run_toy(args: ToyArgs) -> Result<()> {
    if args.epochs == 0 || args.batch_size == 0 {
        bail!("--epochs and --batch-size must be at least 1");
    }
    if !(args.lr > 0.0 && args.lr.is_finite()) {
        bail!("--lr: expected a positive number, found {}", args.lr);
    }
    for (flag, v) in [("scaling", args.scaling), ("radius", args.radius)] {
        if !(v > 0.0 && v.is_finite()) {
            bail!("--{flag}: expected a finite number above 0, found {v}");
        }
    }
    files::refuse_to_overwrite(&[args.out.join("toy.png"), args.out.join("toy.json")], args.force)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let (points, labels) = toy_data(100, 0.05, args.seed);
    let mut runs = Vec::new();
    for name in ["toy", "sph_toy"] {
        let run = train_toy(name, &args, &points, &labels)?;
        println!(
            "{name}: final training accuracy {:.2}% ({} epochs, SGD lr {}, batch {})",
            100.0 * run.accuracy,
            args.epochs,
            args.lr,
            args.batch_size
        );
        runs.push((name, run));
    }
    let png = args.out.join("toy.png");
    let title = format!(
        "Toy task (paper's Figure 3): 2 x 100 points, SGD lr {}, batch {}, {} epochs, alpha = {}, r = {}, seed {}",
        args.lr, args.batch_size, args.epochs, args.scaling, args.radius, args.seed
    );
    plot::render_png(&png, 1200, 1060, |root| {
        let body = root.titled(&title, ("sans-serif", 20)).map_err(plot_err)?;
        let rows = body.split_evenly((2, 1));
        for ((name, run), row) in runs.iter_mut().zip(&rows) {
            draw_toy_row(row, name, run, &points, &labels)?;
        }
        Ok(())
    })?;
    let summary: Vec<ToySummary> = runs
        .iter()
        .map(|(name, r)| ToySummary {
            model: name,
            train_accuracy: r.accuracy,
            last_layer_weight: r.w,
            last_layer_bias: r.radius.is_none().then_some(r.b),
            radius: r.radius,
        })
        .collect();
    files::write_atomic(&args.out.join("toy.json"), &serde_json::to_string_pretty(&summary)?)?;
    println!("wrote {} and {}", png.display(), args.out.join("toy.json").display());
    Ok(())
}

/// One row of Figure 3: input space (left) and representation space (right) of one network.
fn draw_toy_row(row: &Area, name: &str, run: &mut ToyRun, points: &[f32], labels: &[usize]) -> Result<()> {
    let (left, right) = row.split_horizontally(600);
    let acc = 100.0 * run.accuracy;
    let xy: Vec<(f64, f64)> = points.chunks_exact(2).map(|p| (p[0] as f64, p[1] as f64)).collect();

    // Input space: the network's class over a grid of inputs, and where it changes.
    let panel =
        left.titled(&format!("{name}: input space (train acc. {acc:.1}%)"), ("sans-serif", 18)).map_err(plot_err)?;
    let mut chart = square_chart(&panel, (-0.35, 1.35), (-0.35, 1.35), "x1", "x2", false)?;
    let (view_x, view_y) = chart_ranges(&chart);
    let n = 120;
    let nodes = grid_nodes(view_x, view_y, n);
    let flat: Vec<f32> = nodes.iter().flat_map(|&(x, y)| [x as f32, y as f32]).collect();
    let (_, logits) = run.model.evaluate(&Tensor::from_vec(&[nodes.len(), 2], flat)?)?;
    let margin: Vec<f64> = logits.data().chunks_exact(2).map(|l| (l[1] - l[0]) as f64).collect();
    draw_regions(&mut chart, &nodes, &margin, n)?;
    let step = ((view_x.1 - view_x.0) / n as f64, (view_y.1 - view_y.0) / n as f64);
    let contour = zero_contour(&margin, n, n, (view_x.0, view_y.0), step);
    draw_contour(&mut chart, &contour)?;
    draw_labelled_points(&mut chart, &xy, labels)?;
    // The legend avoids the points and the boundary (twenty points of it, as much as a line weighs below).
    let every = contour.len().div_ceil(20).max(1);
    let obstacles: Vec<(f64, f64)> = xy.iter().copied().chain(contour.iter().step_by(every).map(|s| s[0])).collect();
    finish_legend(&mut chart, &obstacles, view_x, view_y)?;

    // Representation space: the vectors that feed the last layer, which classifies them
    // with argmax_k (w_k . h + b_k); its hyperplanes and boundary are straight lines.
    let (repr, _) = run.model.evaluate(&Tensor::from_vec(&[labels.len(), 2], points.to_vec())?)?;
    let hs: Vec<(f64, f64)> = repr.data().chunks_exact(2).map(|h| (h[0] as f64, h[1] as f64)).collect();
    let (view_x, view_y, axis) = match run.radius {
        // Room below the circle for the legend, where no representation can lie.
        Some(r) => ((-1.3 * r, 1.3 * r), (-2.1 * r, 1.3 * r), "s"),
        // Sigmoid outputs lie in the unit square.
        None => ((-0.15, 1.15), (-0.15, 1.15), "h"),
    };
    let what = if run.radius.is_some() { "spherized representation s" } else { "representation h = sigmoid(fc1 x)" };
    let panel = right.titled(&format!("{name}: {what}"), ("sans-serif", 18)).map_err(plot_err)?;
    let mut chart = square_chart(&panel, view_x, view_y, &format!("{axis}1"), &format!("{axis}2"), false)?;
    let (view_x, view_y) = chart_ranges(&chart);
    let rn = 120;
    let rnodes = grid_nodes(view_x, view_y, rn);
    let (w, b) = (run.w, run.b);
    let logit = |k: usize, (x, y): (f64, f64)| w[k][0] * x + w[k][1] * y + b[k];
    let rmargin: Vec<f64> = rnodes.iter().map(|&p| logit(1, p) - logit(0, p)).collect();
    draw_regions(&mut chart, &rnodes, &rmargin, rn)?;
    if let Some(r) = run.radius {
        let circle: Vec<(f64, f64)> =
            (0..=360).map(|d| (d as f64).to_radians()).map(|t| (r * t.cos(), r * t.sin())).collect();
        chart
            .draw_series(LineSeries::new(circle, BLACK.mix(0.45).stroke_width(2)))
            .map_err(plot_err)?
            .label(format!("circle of radius r = {r}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.45).stroke_width(2)));
    }
    // Every drawn line, so that the legend can keep clear of them.
    let mut lines: Vec<[(f64, f64); 2]> = Vec::new();
    for (k, &color) in TOY_COLORS.iter().enumerate() {
        let seg = clip_line(w[k][0], w[k][1], b[k], view_x, view_y);
        lines.extend(seg);
        let label = match (seg, run.radius) {
            (None, _) => format!("hyperplane w{k}: outside the view"),
            (Some(_), Some(_)) => format!("hyperplane w{k} . s = 0 (through 0)"),
            (Some(_), None) => format!("hyperplane w{k} . h + b{k} = 0"),
        };
        // An empty series still gets its legend entry, so a line outside the view is listed too.
        chart
            .draw_series(seg.map(|seg| plotters::element::DashedPathElement::new(seg, 9, 6, color.stroke_width(2))))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    let boundary = clip_line(w[1][0] - w[0][0], w[1][1] - w[0][1], b[1] - b[0], view_x, view_y);
    lines.extend(boundary);
    let boundary_label = if boundary.is_some() { "decision boundary" } else { "decision boundary: outside the view" };
    chart
        .draw_series(boundary.map(|seg| PathElement::new(seg.to_vec(), BLACK.stroke_width(2))))
        .map_err(plot_err)?
        .label(boundary_label)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    draw_labelled_points(&mut chart, &hs, labels)?;
    let obstacles: Vec<(f64, f64)> = hs.iter().copied().chain(lines.iter().flat_map(|s| samples(*s))).collect();
    finish_legend(&mut chart, &obstacles, view_x, view_y)?;
    Ok(())
}

/// The nodes of an (n+1) x (n+1) grid over the box, row by row from the bottom.
fn grid_nodes(x: (f64, f64), y: (f64, f64), n: usize) -> Vec<(f64, f64)> {
    let (dx, dy) = ((x.1 - x.0) / n as f64, (y.1 - y.0) / n as f64);
    (0..=n).flat_map(|j| (0..=n).map(move |i| (x.0 + i as f64 * dx, y.0 + j as f64 * dy))).collect()
}

/// Shades each grid cell with the light colour of the class at its lower-left node
/// (`margin` > 0: class 1).
fn draw_regions(chart: &mut Chart, nodes: &[(f64, f64)], margin: &[f64], n: usize) -> Result<()> {
    let cells = (0..n).flat_map(|j| (0..n).map(move |i| (i, j)));
    chart
        .draw_series(cells.map(|(i, j)| {
            let k = j * (n + 1) + i;
            let class = usize::from(margin[k] > 0.0);
            Rectangle::new([nodes[k], nodes[k + n + 2]], TOY_COLORS[class].mix(0.13).filled())
        }))
        .map_err(plot_err)?;
    Ok(())
}

/// Draws contour segments as the "decision boundary" series.
fn draw_contour(chart: &mut Chart, segments: &[[(f64, f64); 2]]) -> Result<()> {
    chart
        .draw_series(segments.iter().map(|s| PathElement::new(s.to_vec(), BLACK.stroke_width(2))))
        .map_err(plot_err)?
        .label("decision boundary")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    Ok(())
}

/// The toy points, coloured by label, one legend entry per label.
fn draw_labelled_points(chart: &mut Chart, xy: &[(f64, f64)], labels: &[usize]) -> Result<()> {
    for (class, &color) in TOY_COLORS.iter().enumerate() {
        let mine = xy.iter().zip(labels).filter(|(_, &l)| l == class).map(|(&p, _)| p);
        chart
            .draw_series(mine.map(|p| Circle::new(p, 4, color.filled())))
            .map_err(plot_err)?
            .label(format!("label {class}"))
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
    }
    Ok(())
}

/// Twenty points evenly spaced along a segment, ends included.
fn samples([a, b]: [(f64, f64); 2]) -> impl Iterator<Item = (f64, f64)> {
    (0..20).map(move |i| {
        let t = i as f64 / 19.0;
        (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
    })
}

/// Draws the legend in the corner with the fewest of the given obstacle points.
fn finish_legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    points: &[(f64, f64)],
    x: (f64, f64),
    y: (f64, f64),
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(emptiest_corner(points, x, y))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_err)
}

/// The corner of the box whose nearest 55% (across) x 45% (up) holds the fewest points (ties: the first
/// of upper left, upper right, lower left, lower right).
fn emptiest_corner(points: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let (fx, fy) = (0.55 * (x.1 - x.0), 0.45 * (y.1 - y.0));
    let count = |left: bool, top: bool| {
        points
            .iter()
            .filter(|&&(px, py)| {
                (if left { px < x.0 + fx } else { px > x.1 - fx }) && (if top { py > y.1 - fy } else { py < y.0 + fy })
            })
            .count()
    };
    let corners = [
        (count(true, true), SeriesLabelPosition::UpperLeft),
        (count(false, true), SeriesLabelPosition::UpperRight),
        (count(true, false), SeriesLabelPosition::LowerLeft),
        (count(false, false), SeriesLabelPosition::LowerRight),
    ];
    // min_by_key keeps the first of equal counts.
    corners.into_iter().min_by_key(|c| c.0).map(|c| c.1).unwrap_or(SeriesLabelPosition::UpperLeft)
}

/// Segments of the zero level set of a function sampled on the nodes of an (nx+1) x (ny+1)
/// grid (`values[j * (nx + 1) + i]` at (x0 + i dx, y0 + j dy)), by marching squares: on every
/// cell edge whose ends differ in sign the crossing is interpolated linearly, and a cell's
/// crossings are joined in pairs.
pub fn zero_contour(
    values: &[f64],
    nx: usize,
    ny: usize,
    origin: (f64, f64),
    step: (f64, f64),
) -> Vec<[(f64, f64); 2]> {
    let at =
        |i: usize, j: usize| ((origin.0 + i as f64 * step.0, origin.1 + j as f64 * step.1), values[j * (nx + 1) + i]);
    let mut segments = Vec::new();
    for j in 0..ny {
        for i in 0..nx {
            // Corners counter-clockwise; edge e joins corner e and e + 1.
            let corners = [at(i, j), at(i + 1, j), at(i + 1, j + 1), at(i, j + 1)];
            let mut crossings = Vec::with_capacity(4);
            for e in 0..4 {
                let ((pa, a), (pb, b)) = (corners[e], corners[(e + 1) % 4]);
                if (a > 0.0) != (b > 0.0) {
                    let t = a / (a - b);
                    crossings.push((pa.0 + t * (pb.0 - pa.0), pa.1 + t * (pb.1 - pa.1)));
                }
            }
            // Two crossings: one segment; four (a saddle): two, either pairing is a valid contour.
            for pair in crossings.chunks_exact(2) {
                segments.push([pair[0], pair[1]]);
            }
        }
    }
    segments
}

/// The part of the line a x + b y + c = 0 inside the box, or `None` when it misses it.
pub fn clip_line(a: f64, b: f64, c: f64, x: (f64, f64), y: (f64, f64)) -> Option<[(f64, f64); 2]> {
    let mut hits: Vec<(f64, f64)> = Vec::new();
    let tol = 1e-9 * ((x.1 - x.0) + (y.1 - y.0));
    if b.abs() > f64::EPSILON {
        for xv in [x.0, x.1] {
            let yv = -(a * xv + c) / b;
            if yv >= y.0 - tol && yv <= y.1 + tol {
                hits.push((xv, yv));
            }
        }
    }
    if a.abs() > f64::EPSILON {
        for yv in [y.0, y.1] {
            let xv = -(b * yv + c) / a;
            if xv >= x.0 - tol && xv <= x.1 + tol {
                hits.push((xv, yv));
            }
        }
    }
    // A line through a corner hits two edges there; keep the two hits farthest apart.
    let mut best: Option<([(f64, f64); 2], f64)> = None;
    for (i, &p) in hits.iter().enumerate() {
        for &q in &hits[i + 1..] {
            let d = (p.0 - q.0).hypot(p.1 - q.1);
            if d > tol && best.is_none_or(|(_, bd)| d > bd) {
                best = Some(([p, q], d));
            }
        }
    }
    best.map(|(seg, _)| seg)
}

// ---------------------------------------------------------------------------------------
// Shared chart helpers
// ---------------------------------------------------------------------------------------

/// Widens the narrower of two ranges so that a unit has the same length in pixels on both
/// axes of a `plot` (width, height) pixel area, so that circles stay round.
fn equal_aspect(plot: (u32, u32), x: (f64, f64), y: (f64, f64)) -> ((f64, f64), (f64, f64)) {
    let (w, h) = (plot.0.max(1) as f64, plot.1.max(1) as f64);
    let (units_x, units_y) = ((x.1 - x.0) / w, (y.1 - y.0) / h);
    if units_x > units_y {
        let (c, half) = ((y.0 + y.1) / 2.0, units_x * h / 2.0);
        (x, (c - half, c + half))
    } else {
        let (c, half) = ((x.0 + x.1) / 2.0, units_y * w / 2.0);
        ((c - half, c + half), y)
    }
}

/// A chart with equal units on both axes; with `axes`, tick labels and descriptions
/// (and a light grid when `grid`), without them a bare plotting area for projections.
fn square_chart<'a, 'b>(
    panel: &'a Area<'b>,
    x: (f64, f64),
    y: (f64, f64),
    x_desc: &str,
    y_desc: &str,
    grid: bool,
) -> Result<Chart<'a, 'b>> {
    let axes = !(x_desc.is_empty() && y_desc.is_empty());
    let (xl, yl) = if axes { (X_LABEL_AREA, Y_LABEL_AREA) } else { (0, 0) };
    let (w, h) = panel.dim_in_pixel();
    let plot = (w.saturating_sub(2 * MARGIN + yl), h.saturating_sub(2 * MARGIN + xl));
    let (x, y) = equal_aspect(plot, x, y);
    let mut chart = ChartBuilder::on(panel)
        .margin(MARGIN)
        .x_label_area_size(xl)
        .y_label_area_size(yl)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(plot_err)?;
    if axes {
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .x_labels(7)
            .y_labels(7);
        if !grid {
            mesh.disable_mesh();
        }
        mesh.draw().map_err(plot_err)?;
    }
    Ok(chart)
}

/// The x and y ranges a chart was finally built with.
fn chart_ranges(chart: &Chart) -> ((f64, f64), (f64, f64)) {
    let (xr, yr) = (chart.x_range(), chart.y_range());
    ((xr.start, xr.end), (yr.start, yr.end))
}

// ---------------------------------------------------------------------------------------
// Figure 5: 2-D and 3-D MNIST representations
// ---------------------------------------------------------------------------------------

/// The networks of Figure 5, in the paper's order (a), (b), (c).
const VIS_MODELS: [&str; 3] = ["simple_cnn_2d", "simple_cnn_3d", "sph_cnn_3d"];

/// Viewpoints of the 3-D panels: (azimuth, elevation) in degrees. The first looks down the
/// diagonal (1, 1, 1) onto the positive octant, where every spherized vector lies.
const VIEWS: [(f64, f64); 3] = [(45.0, 35.26), (-20.0, 12.0), (110.0, 62.0)];

/// Test representations of one trained visualization network.
struct VisRun {
    model: &'static str,
    /// Rows of `dims` numbers.
    reprs: Vec<f32>,
    dims: usize,
    labels: Vec<usize>,
    test_acc: f64,
    /// The spherization radius, for the spherized network.
    radius: Option<f64>,
    /// How many coordinates are zero on every test image.
    dead: usize,
}

/// The number of coordinates (columns of `dims`-wide rows) that are zero in every row.
fn dead_units(reprs: &[f32], dims: usize) -> usize {
    (0..dims).filter(|&d| reprs.chunks_exact(dims).all(|row| row[d] == 0.0)).count()
}

/// `sph figure sphere`.
pub fn run_sphere(args: SphereArgs) -> Result<()> {
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if args.train_limit == Some(0) || args.test_limit == Some(0) {
        bail!("--train-limit and --test-limit must be at least 1");
    }
    // The runs under OUT/runs are reused on purpose; only the picture would be replaced.
    files::refuse_to_overwrite(&[args.out.join("sphere.png")], args.force)?;
    let data_dir = args.data.clone().unwrap_or_else(datasets::default_data_dir);
    let runs_dir = args.out.join("runs");
    std::fs::create_dir_all(&runs_dir).with_context(|| format!("creating {}", runs_dir.display()))?;
    let mut runs = Vec::new();
    for model in VIS_MODELS {
        let mut s = recipe::paper(model, "mnist");
        s.epochs = args.epochs;
        s.train_limit = args.train_limit;
        s.test_limit = args.test_limit;
        s.seed = args.seed;
        // The budget is in the folder's name, so that another budget trains anew instead of
        // meeting a run with other settings.
        let limit = args.train_limit.map_or("all".to_string(), |n| n.to_string());
        let dir = runs_dir.join(format!("{model}-e{}-n{limit}-s{}", args.epochs, args.seed));
        let (mut trained, _) = analyze::train_or_load(&s, &data_dir, &dir)?;
        let (reprs, dims, preds, labels) =
            analyze::representations(&mut trained, DatasetName::Mnist, &data_dir, args.test_limit)?;
        let correct = preds.iter().zip(&labels).filter(|(p, l)| p == l).count();
        let test_acc = correct as f64 / labels.len().max(1) as f64;
        let radius = trained.sphere_values().first().map(|s| s.2 as f64);
        println!(
            "{model}: test accuracy {:.2}% on {} images; representations of {dims} dimensions",
            100.0 * test_acc,
            labels.len()
        );
        let dead = dead_units(&reprs, dims);
        if dead > 0 {
            // A ReLU bottleneck of two or three units can die for good early in training; the
            // picture then shows a collapsed cloud, and the reader should know why.
            println!("warning: {model}: {dead} of {dims} feature units are zero on every test image (dead ReLUs); try another --seed or more --epochs");
        }
        runs.push(VisRun { model, reprs, dims, labels, test_acc, radius, dead });
    }
    for run in &runs {
        let expected = if run.model == "simple_cnn_2d" { 2 } else { 3 };
        if run.dims != expected {
            bail!("{}: expected {expected}-dimensional representations, found {}", run.model, run.dims);
        }
    }
    let png = args.out.join("sphere.png");
    let n = runs[0].labels.len();
    let title = format!(
        "MNIST test representations (paper's Figure 5): {n} test images, {} epoch(s), Adam 1e-3, batch 128, seed {}",
        args.epochs, args.seed
    );
    plot::render_png(&png, 1500, 1500, |root| {
        let body = root.titled(&title, ("sans-serif", 20)).map_err(plot_err)?;
        let rows = body.split_evenly((3, 1));
        // Row (a): the 2-D scatter, the digit legend and the accuracies.
        let (scatter, rest) = rows[0].split_horizontally(620);
        let (legend, notes) = rest.split_horizontally(200);
        draw_2d_scatter(&scatter, &runs[0])?;
        draw_digit_legend(&legend)?;
        let lines: Vec<String> = runs
            .iter()
            .map(|r| {
                let sphere = r.radius.map_or(String::new(), |rad| format!(", on a sphere of radius {rad}"));
                let dead = if r.dead > 0 { format!(" ({} of {} units dead)", r.dead, r.dims) } else { String::new() };
                format!("{}: test accuracy {:.2}%{sphere}{dead}", r.model, 100.0 * r.test_acc)
            })
            .chain([
                String::new(),
                "(a) simple_cnn_2d: 2-D feature layer (ReLU)".to_string(),
                "(b) simple_cnn_3d: 3-D feature layer (ReLU)".to_string(),
                "(c) sph_cnn_3d: 2 pre-activations spherized to 3-D".to_string(),
                "3-D panels: orthographic views, azimuth / elevation in degrees;".to_string(),
                "points nearer the viewer are drawn on top; on the sphere,".to_string(),
                "great circles and points on its far side are drawn lighter.".to_string(),
            ])
            .collect();
        draw_text_lines(&notes, &lines)?;
        for (run, row) in runs[1..].iter().zip(&rows[1..]) {
            for (view, panel) in VIEWS.iter().zip(row.split_evenly((1, 3))) {
                draw_3d_view(&panel, run, *view)?;
            }
        }
        Ok(())
    })?;
    println!("wrote {}", png.display());
    Ok(())
}

/// Panel (a): the 2-D representations as a scatter.
fn draw_2d_scatter(area: &Area, run: &VisRun) -> Result<()> {
    let pts: Vec<(f64, f64)> = run.reprs.chunks_exact(2).map(|p| (p[0] as f64, p[1] as f64)).collect();
    let (mut x, mut y) = ((f64::MAX, f64::MIN), (f64::MAX, f64::MIN));
    for &(px, py) in pts.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
        x = (x.0.min(px), x.1.max(px));
        y = (y.0.min(py), y.1.max(py));
    }
    if x.0 > x.1 {
        (x, y) = ((0.0, 1.0), (0.0, 1.0));
    }
    // A collapsed cloud (e.g. every unit dead after too short a training) still gets a readable window.
    let span = (x.1 - x.0).max(y.1 - y.0);
    let pad = if span < 1e-6 { 0.5 } else { 0.05 * span };
    let panel =
        area.titled(&format!("(a) {}: 2-D representations", run.model), ("sans-serif", 18)).map_err(plot_err)?;
    let mut chart = square_chart(&panel, (x.0 - pad, x.1 + pad), (y.0 - pad, y.1 + pad), "z1", "z2", true)?;
    chart
        .draw_series(pts.iter().zip(&run.labels).map(|(&p, &l)| Circle::new(p, 2, PALETTE[l % 10].mix(0.7).filled())))
        .map_err(plot_err)?;
    Ok(())
}

/// The ten digit colours, in pixels.
fn draw_digit_legend(area: &Area) -> Result<()> {
    area.draw(&Text::new("digit", (30, 30), ("sans-serif", 18))).map_err(plot_err)?;
    for (d, color) in PALETTE.iter().enumerate() {
        let y = 70 + 34 * d as i32;
        area.draw(&Circle::new((40, y), 7, color.filled())).map_err(plot_err)?;
        area.draw(&Text::new(format!("{d}"), (58, y - 9), ("sans-serif", 18))).map_err(plot_err)?;
    }
    area.draw(&Rectangle::new([(15, 15), (120, 70 + 34 * 10 - 10)], BLACK.stroke_width(1))).map_err(plot_err)?;
    Ok(())
}

/// Lines of text from the top left of `area`.
fn draw_text_lines(area: &Area, lines: &[String]) -> Result<()> {
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(line.clone(), (10, 40 + 26 * i as i32), ("sans-serif", 16))).map_err(plot_err)?;
    }
    Ok(())
}

/// An orthographic camera: `project(p)` gives screen coordinates (u, v) and the depth
/// along the viewing direction (larger = nearer the viewer).
#[derive(Clone, Copy, Debug)]
struct Camera {
    right: [f64; 3],
    up: [f64; 3],
    toward_viewer: [f64; 3],
}

impl Camera {
    /// The camera at azimuth `az` (from the x axis towards y) and elevation `el` (towards z), in degrees.
    fn new(az: f64, el: f64) -> Camera {
        let (a, e) = (az.to_radians(), el.to_radians());
        Camera {
            right: [-a.sin(), a.cos(), 0.0],
            up: [-e.sin() * a.cos(), -e.sin() * a.sin(), e.cos()],
            toward_viewer: [e.cos() * a.cos(), e.cos() * a.sin(), e.sin()],
        }
    }

    /// (u, v, depth) of a point.
    fn project(&self, p: [f64; 3]) -> (f64, f64, f64) {
        let dot = |q: [f64; 3]| p[0] * q[0] + p[1] * q[1] + p[2] * q[2];
        (dot(self.right), dot(self.up), dot(self.toward_viewer))
    }
}

/// One 3-D panel: axes, for the spherized net the sphere (outline and three great
/// circles), and the representations from far to near.
fn draw_3d_view(area: &Area, run: &VisRun, (az, el): (f64, f64)) -> Result<()> {
    let cam = Camera::new(az, el);
    let pts: Vec<[f64; 3]> = run
        .reprs
        .chunks_exact(3)
        .map(|p| [p[0] as f64, p[1] as f64, p[2] as f64])
        .filter(|p| p.iter().all(|v| v.is_finite()))
        .collect();
    // Axis length: past the sphere, or past nearly all points (a few outliers would
    // otherwise squeeze the cloud into a corner).
    let length = match run.radius {
        Some(r) => 1.35 * r,
        None => {
            let mut norms: Vec<f64> = pts.iter().map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt()).collect();
            norms.sort_by(f64::total_cmp);
            1.1 * norms.get(norms.len() * 99 / 100).copied().unwrap_or(1.0).max(1e-6)
        }
    };
    let tips: Vec<(f64, f64, f64)> = (0..3).map(|k| cam.project(unit(k, length))).collect();
    let (x, y) = match run.radius {
        Some(r) => ((-1.45 * r, 1.45 * r), (-1.45 * r, 1.45 * r)),
        None => {
            let mut x = (0.0f64, 0.0f64);
            let mut y = (0.0f64, 0.0f64);
            for &(u, v, _) in &tips {
                x = (x.0.min(u), x.1.max(u));
                y = (y.0.min(v), y.1.max(v));
            }
            let pad = 0.12 * (x.1 - x.0).max(y.1 - y.0);
            ((x.0 - pad, x.1 + pad), (y.0 - pad, y.1 + pad))
        }
    };
    let tag = if run.radius.is_some() { "(c)" } else { "(b)" };
    let panel = area
        .titled(&format!("{tag} {}: azimuth {az:.0}, elevation {el:.0}", run.model), ("sans-serif", 17))
        .map_err(plot_err)?;
    let mut chart = square_chart(&panel, x, y, "", "", false)?;
    let (xs, ys) = chart_ranges(&chart);
    chart
        .draw_series(std::iter::once(Rectangle::new([(xs.0, ys.0), (xs.1, ys.1)], BLACK.mix(0.3).stroke_width(1))))
        .map_err(plot_err)?;

    if let Some(r) = run.radius {
        let outline: Vec<(f64, f64)> =
            (0..=360).map(|d| (d as f64).to_radians()).map(|t| (r * t.cos(), r * t.sin())).collect();
        chart.draw_series(LineSeries::new(outline, BLACK.mix(0.6).stroke_width(2))).map_err(plot_err)?;
        // The great circles in the planes z = 0, y = 0 and x = 0; pieces behind the sphere lighter.
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            let ring: Vec<(f64, f64, f64)> = (0..=180)
                .map(|d| (2 * d) as f64 * PI / 180.0)
                .map(|t| cam.project(add(unit(a, r * t.cos()), unit(b, r * t.sin()))))
                .collect();
            chart
                .draw_series(ring.windows(2).map(|s| {
                    let front = s[0].2 + s[1].2 >= 0.0;
                    let style = if front { BLACK.mix(0.45).stroke_width(1) } else { BLACK.mix(0.15).stroke_width(1) };
                    PathElement::new(vec![(s[0].0, s[0].1), (s[1].0, s[1].1)], style)
                }))
                .map_err(plot_err)?;
        }
    }
    // The coordinate axes from the origin, named at their tips.
    let axis = if run.radius.is_some() { "s" } else { "z" };
    for (k, &(u, v, _)) in tips.iter().enumerate() {
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0), (u, v)], BLACK.stroke_width(1))))
            .map_err(plot_err)?;
        let style = TextStyle::from(("sans-serif", 16)).pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .draw_series(std::iter::once(Text::new(format!("{axis}{}", k + 1), (1.08 * u, 1.08 * v), style)))
            .map_err(plot_err)?;
    }
    // Painter's algorithm: far points first, so that near ones cover them.
    let mut order: Vec<(f64, f64, f64, usize)> = pts
        .iter()
        .zip(&run.labels)
        .map(|(&p, &l)| {
            let (u, v, d) = cam.project(p);
            (u, v, d, l)
        })
        .collect();
    order.sort_by(|a, b| a.2.total_cmp(&b.2));
    let on_sphere = run.radius.is_some();
    chart
        .draw_series(order.iter().map(|&(u, v, d, l)| {
            // A point on the sphere's far half is seen through it: lighter.
            let alpha = if on_sphere && d < 0.0 { 0.25 } else { 0.75 };
            Circle::new((u, v), 2, PALETTE[l % 10].mix(alpha).filled())
        }))
        .map_err(plot_err)?;
    Ok(())
}

/// `len` times the k-th unit vector.
fn unit(k: usize, len: f64) -> [f64; 3] {
    let mut v = [0.0; 3];
    v[k] = len;
    v
}

/// The sum of two 3-vectors.
fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

// ---------------------------------------------------------------------------------------
// Figure 4: gradient flow
// ---------------------------------------------------------------------------------------

/// The two networks of Figure 4 and their display names.
const GRAD_MODELS: [(&str, &str); 2] = [("vgg11_bn", "VGG-11-BN"), ("sph_vgg11_bn", "spherized VGG-11-BN")];

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
fn weight_layers(model: &Model) -> Vec<(ParamId, String)> {
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
fn record_gradients(model_name: &str, name: DatasetName, data_dir: &Path, args: &GradflowArgs) -> Result<GradFlow> {
    let mut s = recipe::paper(model_name, name.as_str());
    s.width_multiplier = args.width_multiplier;
    s.batch_size = args.batch_size;
    s.seed = args.seed;
    s.train_limit = args.train_limit;
    let train_set = data::load_split(name, data_dir, Split::Train, args.train_limit)?;
    let model = models::build(model_name, &recipe::model_config(&s, train_set.num_classes)?)?;
    let (augment, _, norm) = data::input_pipeline(&model, &train_set, name, s.augment)?;
    let loader = Loader::new(&train_set, s.batch_size, true, s.seed, false, augment, Some(norm))?;
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
struct GradflowReport<'a> {
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
fn draw_grad_bars(area: &Area, display: &str, flow: &GradFlow, color: RGBColor, y: (f64, f64)) -> Result<()> {
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
fn draw_grad_histograms(area: &Area, flows: &[GradFlow], (lo, hi): (f64, f64)) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toy_data_has_100_points_per_class_within_the_jitter_box() {
        let (points, labels) = toy_data(100, 0.05, 7);
        assert_eq!(points.len(), 400);
        assert_eq!(labels.iter().filter(|&&l| l == 0).count(), 100);
        assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 100);
        for (p, &l) in points.chunks_exact(2).zip(&labels) {
            let center = l as f32;
            assert!(p.iter().all(|v| (v - center).abs() <= 0.05), "{p:?} is not within 0.05 of ({center}, {center})");
        }
        // Seeded: the same seed gives the same points, another seed others.
        assert_eq!(toy_data(100, 0.05, 7).0, points);
        assert_ne!(toy_data(100, 0.05, 8).0, points);
    }

    #[test]
    fn a_contour_of_a_linear_function_lies_on_its_zero_line() {
        // f(x, y) = x + y - 1 on [0, 2] x [0, 2], 10 x 10 cells.
        let n = 10;
        let step = 0.2;
        let values: Vec<f64> =
            (0..=n).flat_map(|j| (0..=n).map(move |i| i as f64 * step + j as f64 * step - 1.0)).collect();
        let segments = zero_contour(&values, n, n, (0.0, 0.0), (step, step));
        assert!(!segments.is_empty());
        for s in &segments {
            for p in s {
                assert!((p.0 + p.1 - 1.0).abs() < 1e-9, "{p:?} is off the line");
            }
        }
    }

    #[test]
    fn lines_are_clipped_to_the_box() {
        // y = x through the unit box: corner to corner.
        let seg = clip_line(1.0, -1.0, 0.0, (0.0, 1.0), (0.0, 1.0)).unwrap();
        let mut ends = seg.to_vec();
        ends.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!((ends[0].0).abs() < 1e-12 && (ends[1].0 - 1.0).abs() < 1e-12);
        // x = 0.5 (vertical).
        let seg = clip_line(1.0, 0.0, -0.5, (0.0, 1.0), (0.0, 2.0)).unwrap();
        assert!(seg.iter().all(|p| (p.0 - 0.5).abs() < 1e-12));
        // y = 5 misses the box.
        assert!(clip_line(0.0, 1.0, -5.0, (0.0, 1.0), (0.0, 1.0)).is_none());
    }

    #[test]
    fn dead_units_are_the_columns_that_are_zero_everywhere() {
        let reprs = [0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(dead_units(&reprs, 3), 2);
        assert_eq!(dead_units(&[0.5, 0.0, 0.0, 0.5], 2), 0);
    }

    #[test]
    fn equal_aspect_widens_the_narrow_axis() {
        // 200 x 100 pixels showing [0, 1] x [0, 1]: x must widen to [-0.5, 1.5].
        let (x, y) = equal_aspect((200, 100), (0.0, 1.0), (0.0, 1.0));
        assert_eq!(y, (0.0, 1.0));
        assert!((x.0 + 0.5).abs() < 1e-12 && (x.1 - 1.5).abs() < 1e-12);
    }

    #[test]
    fn the_camera_is_orthonormal_and_looks_from_its_direction() {
        let cam = Camera::new(45.0, 35.26);
        let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        for (a, b) in [(cam.right, cam.up), (cam.right, cam.toward_viewer), (cam.up, cam.toward_viewer)] {
            assert!(dot(a, b).abs() < 1e-12);
        }
        // The diagonal (1, 1, 1) points almost straight at the viewer.
        let (u, v, d) = cam.project([1.0, 1.0, 1.0]);
        assert!(u.abs() < 1e-3 && v.abs() < 1e-3 && (d - 3f64.sqrt()).abs() < 1e-3);
    }
}
