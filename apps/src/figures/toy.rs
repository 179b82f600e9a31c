//! Figure 3: the toy task, plain against spherized.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use engine::nn::SphereConfig;
use engine::ops::elementwise::mix_seed;
use engine::optim::Sgd;
use engine::Tensor;
use models::{Model, ModelConfig};
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::files;
use crate::plot::{self, plot_err, PALETTE};
use crate::trainer::{count_correct, Trainer};

use super::geometry::{clip_line, zero_contour};
use super::{chart_ranges, square_chart, Area, Chart};

/// The toy task's label colours: red for 0 and green for 1, as in the paper.
const TOY_COLORS: [RGBColor; 2] = [PALETTE[3], PALETTE[2]];

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
pub(super) struct ToyRun {
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
pub(super) fn train_toy(name: &str, args: &ToyArgs, points: &[f32], labels: &[usize]) -> Result<ToyRun> {
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
pub(super) struct ToySummary<'a> {
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
pub(super) fn draw_toy_row(row: &Area, name: &str, run: &mut ToyRun, points: &[f32], labels: &[usize]) -> Result<()> {
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
pub(super) fn grid_nodes(x: (f64, f64), y: (f64, f64), n: usize) -> Vec<(f64, f64)> {
    let (dx, dy) = ((x.1 - x.0) / n as f64, (y.1 - y.0) / n as f64);
    (0..=n).flat_map(|j| (0..=n).map(move |i| (x.0 + i as f64 * dx, y.0 + j as f64 * dy))).collect()
}

/// Shades each grid cell with the light colour of the class at its lower-left node
/// (`margin` > 0: class 1).
pub(super) fn draw_regions(chart: &mut Chart, nodes: &[(f64, f64)], margin: &[f64], n: usize) -> Result<()> {
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
pub(super) fn draw_contour(chart: &mut Chart, segments: &[[(f64, f64); 2]]) -> Result<()> {
    chart
        .draw_series(segments.iter().map(|s| PathElement::new(s.to_vec(), BLACK.stroke_width(2))))
        .map_err(plot_err)?
        .label("decision boundary")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    Ok(())
}

/// The toy points, coloured by label, one legend entry per label.
pub(super) fn draw_labelled_points(chart: &mut Chart, xy: &[(f64, f64)], labels: &[usize]) -> Result<()> {
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
pub(super) fn samples([a, b]: [(f64, f64); 2]) -> impl Iterator<Item = (f64, f64)> {
    (0..20).map(move |i| {
        let t = i as f64 / 19.0;
        (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
    })
}

/// Draws the legend in the corner with the fewest of the given obstacle points.
pub(super) fn finish_legend<'a, 'b: 'a>(
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
pub(super) fn emptiest_corner(points: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
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
