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
//!
//! One module per figure; `geometry` holds the plane and space geometry they draw with
//! (marching squares, line clipping, an orthographic camera), this file the chart helpers.

mod geometry;
mod gradflow;
mod sphere;
mod toy;

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plot::plot_err;

pub use gradflow::{run_gradflow, GradflowArgs};
pub use sphere::{run_sphere, SphereArgs};
pub use toy::{run_toy, ToyArgs};

/// A drawing area in pixels, as `plot::render_png` hands it out.
pub(super) type Area<'b> = DrawingArea<BitMapBackend<'b>, Shift>;
/// A chart with real-valued axes.
pub(super) type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Pixels around every chart.
pub(super) const MARGIN: u32 = 12;
/// Pixels below a chart for the x tick labels and description.
pub(super) const X_LABEL_AREA: u32 = 46;
/// Pixels left of a chart for the y tick labels and description.
pub(super) const Y_LABEL_AREA: u32 = 60;

/// Widens the narrower of two ranges so that a unit has the same length in pixels on both
/// axes of a `plot` (width, height) pixel area, so that circles stay round.
pub(super) fn equal_aspect(plot: (u32, u32), x: (f64, f64), y: (f64, f64)) -> ((f64, f64), (f64, f64)) {
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
pub(super) fn square_chart<'a, 'b>(
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
pub(super) fn chart_ranges(chart: &Chart) -> ((f64, f64), (f64, f64)) {
    let (xr, yr) = (chart.x_range(), chart.y_range());
    ((xr.start, xr.end), (yr.start, yr.end))
}

#[cfg(test)]
mod tests {
    use super::geometry::{clip_line, zero_contour, Camera};
    use super::sphere::dead_units;
    use super::toy::toy_data;
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
