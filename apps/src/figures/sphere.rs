//! Figure 5: 2-D and 3-D MNIST representations, the spherized ones on a sphere.

use std::f64::consts::PI;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use datasets::DatasetName;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analyze;
use crate::files;
use crate::plot::{self, plot_err, PALETTE};
use crate::recipe;
use crate::trainer::count_matches;

use super::geometry::{add, unit, Camera};
use super::{chart_ranges, square_chart, Area};

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

/// The networks of Figure 5, in the paper's order (a), (b), (c).
pub(super) const VIS_MODELS: [&str; 3] = ["simple_cnn_2d", "simple_cnn_3d", "sph_cnn_3d"];

/// Viewpoints of the 3-D panels: (azimuth, elevation) in degrees. The first looks down the
/// diagonal (1, 1, 1) onto the positive octant, where every spherized vector lies.
pub(super) const VIEWS: [(f64, f64); 3] = [(45.0, 35.26), (-20.0, 12.0), (110.0, 62.0)];

/// Test representations of one trained visualization network.
pub(super) struct VisRun {
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
pub(super) fn dead_units(reprs: &[f32], dims: usize) -> usize {
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
        let analyze::Representations { reprs, dims, preds, labels, .. } =
            analyze::representations(&mut trained, DatasetName::Mnist, &data_dir, args.test_limit)?;
        let correct = count_matches(&preds, &labels);
        let test_acc = correct as f64 / labels.len().max(1) as f64;
        let radius = trained.sphere_values().first().map(|s| s.2 as f64);
        println!(
            "{model}: test accuracy {:.2}% on {} images; representations of {dims} dimensions",
            100.0 * test_acc,
            labels.len()
        );
        let dead = dead_units(&reprs, dims);
        if dead > 0 {
            // A feature unit that is zero on every test image means a collapsed picture; the
            // reader should know why (the plain networks' features are linear since this was
            // seen with a ReLU on them).
            println!("warning: {model}: {dead} of {dims} feature units are zero on every test image ; try another --seed or more --epochs");
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
    let trained_on = args.train_limit.map_or("all".to_string(), |n| n.to_string());
    let title = format!(
        "MNIST test representations (paper's Figure 5): {n} test images; {} epoch(s) on {trained_on} training images, Adam 1e-3, batch 128, seed {}",
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
                "(a) simple_cnn_2d: 2-D feature layer (linear)".to_string(),
                "(b) simple_cnn_3d: 3-D feature layer (linear)".to_string(),
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
pub(super) fn draw_2d_scatter(area: &Area, run: &VisRun) -> Result<()> {
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
pub(super) fn draw_digit_legend(area: &Area) -> Result<()> {
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
pub(super) fn draw_text_lines(area: &Area, lines: &[String]) -> Result<()> {
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(line.clone(), (10, 40 + 26 * i as i32), ("sans-serif", 16))).map_err(plot_err)?;
    }
    Ok(())
}

/// One 3-D panel: axes, for the spherized net the sphere (outline and three great
/// circles), and the representations from far to near.
pub(super) fn draw_3d_view(area: &Area, run: &VisRun, (az, el): (f64, f64)) -> Result<()> {
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
