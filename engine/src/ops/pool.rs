//! Max- and average-pooling over square windows (no padding): forward and backward.

use rayon::prelude::*;

use crate::autograd::{Grads, Graph, Values, Var};
use crate::error::{EngineError, Result};
use crate::kernels::Window;
use crate::op::{AvgPoolSaved, MaxPoolSaved, Op};
use crate::tensor::Tensor;

impl Graph<'_> {
    fn pool_window(&self, x: Var, kernel: usize, stride: usize, what: &str) -> Result<Window> {
        let xs = self.shape(x);
        if xs.len() != 4 || kernel == 0 || stride == 0 || xs[2] < kernel || xs[3] < kernel {
            return Err(EngineError::Shape(format!("{what}: kernel {kernel} stride {stride} does not fit input {xs:?} (expected [N, C, H, W], H, W >= kernel)")));
        }
        Ok(Window {
            channels: xs[1],
            height: xs[2],
            width: xs[3],
            kernel_h: kernel,
            kernel_w: kernel,
            stride,
            padding: 0,
        })
    }

    /// Max over each `kernel x kernel` window (windows may overlap when stride < kernel).
    pub fn max_pool2d(&mut self, x: Var, kernel: usize, stride: usize) -> Result<Var> {
        let g = self.pool_window(x, kernel, stride, "max_pool2d")?;
        let batch = self.shape(x)[0];
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut y = Tensor::for_overwrite(&[batch, g.channels, oh, ow]);
        let mut argmax = vec![0u32; y.len()];
        let xv = self.value(x).data();
        let plane_in = g.height * g.width;
        y.data_mut().par_chunks_mut(oh * ow).zip(argmax.par_chunks_mut(oh * ow)).enumerate().for_each(
            |(p, (y_p, arg_p))| {
                let x_p = &xv[p * plane_in..(p + 1) * plane_in];
                if kernel == 2 && stride == 2 {
                    max_pool_2x2(x_p, g.width, ow, y_p, arg_p);
                } else {
                    max_pool_plane(x_p, &g, y_p, arg_p);
                }
            },
        );
        let argmax = if self.is_training() { argmax } else { Vec::new() };
        Ok(self.record(Op::MaxPool2d(MaxPoolSaved { x, window: g, argmax }), y, &[x]))
    }

    /// Mean over each `kernel x kernel` window.
    pub fn avg_pool2d(&mut self, x: Var, kernel: usize, stride: usize) -> Result<Var> {
        let g = self.pool_window(x, kernel, stride, "avg_pool2d")?;
        let batch = self.shape(x)[0];
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut y = Tensor::for_overwrite(&[batch, g.channels, oh, ow]);
        let xv = self.value(x).data();
        let plane_in = g.height * g.width;
        let scale = 1.0 / (kernel * kernel) as f32;
        y.data_mut().par_chunks_mut(oh * ow).enumerate().for_each(|(p, y_p)| {
            let x_p = &xv[p * plane_in..(p + 1) * plane_in];
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0;
                    for ky in 0..kernel {
                        let row = (oy * stride + ky) * g.width + ox * stride;
                        acc += x_p[row..row + kernel].iter().sum::<f32>();
                    }
                    y_p[oy * ow + ox] = acc * scale;
                }
            }
        });
        Ok(self.record(Op::AvgPool2d(AvgPoolSaved { x, window: g }), y, &[x]))
    }
}

/// The windows of one plane: maxima into `y`, the winners' indices into `argmax`. Each window
/// is scanned row by row, the first value seen wins ties, and NaN always wins, so it
/// propagates as in PyTorch.
fn max_pool_plane(x: &[f32], g: &Window, y: &mut [f32], argmax: &mut [u32]) {
    let (ow, kernel, stride) = (g.out_w(), g.kernel_h, g.stride);
    for (o, (yv, av)) in y.iter_mut().zip(argmax.iter_mut()).enumerate() {
        let (oy, ox) = (o / ow, o % ow);
        let corner = oy * stride * g.width + ox * stride;
        let (mut best, mut at) = (x[corner], corner);
        for ky in 0..kernel {
            let row_start = corner + ky * g.width;
            for (kx, &v) in x[row_start..row_start + kernel].iter().enumerate() {
                if v > best || v.is_nan() {
                    best = v;
                    at = row_start + kx;
                }
            }
        }
        *yv = best;
        *av = at as u32;
    }
}

/// The 2x2, stride-2 windows of one plane (what every network here uses), with the general
/// path's rules (row by row, the first value wins ties, NaN always wins), written as selects
/// over whole rows so that they vectorize.
fn max_pool_2x2(x: &[f32], width: usize, ow: usize, y: &mut [f32], argmax: &mut [u32]) {
    for (oy, (y_row, a_row)) in y.chunks_exact_mut(ow).zip(argmax.chunks_exact_mut(ow)).enumerate() {
        let top = 2 * oy * width;
        // Pairs of columns as fixed-size chunks, so that no index needs a bounds check.
        let (r0, r1) =
            (x[top..top + 2 * ow].as_chunks::<2>().0, x[top + width..top + width + 2 * ow].as_chunks::<2>().0);
        for (ox, (((yv, av), &[a, b]), &[c, d])) in y_row.iter_mut().zip(a_row.iter_mut()).zip(r0).zip(r1).enumerate() {
            let (mut best, mut at) = (a, 0);
            if b > best || b.is_nan() {
                (best, at) = (b, 1);
            }
            if c > best || c.is_nan() {
                (best, at) = (c, width);
            }
            if d > best || d.is_nan() {
                (best, at) = (d, width + 1);
            }
            *yv = best;
            *av = (top + 2 * ox + at) as u32;
        }
    }
}

/// The gradient of one plane of [`max_pool_2x2`], stored: every input of a window gets its
/// output's gradient if it won the window, else 0; inputs outside every window (the last row
/// or column of an odd size) get 0.
fn max_unpool_2x2(dy: &[f32], argmax: &[u32], width: usize, ow: usize, dx: &mut [f32]) {
    let covered_rows = 2 * (dy.len() / ow.max(1));
    for (oy, (dy_row, a_row)) in dy.chunks_exact(ow).zip(argmax.chunks_exact(ow)).enumerate() {
        let top = 2 * oy * width;
        let (r0, rest) = dx[top..].split_at_mut(width);
        let r1 = &mut rest[..width];
        for (ox, (&gv, &at)) in dy_row.iter().zip(a_row).enumerate() {
            // Where the winner lies in its window: 0, 1, width or width + 1.
            let offset = at as usize - (top + 2 * ox);
            r0[2 * ox] = if offset == 0 { gv } else { 0.0 };
            r0[2 * ox + 1] = if offset == 1 { gv } else { 0.0 };
            r1[2 * ox] = if offset == width { gv } else { 0.0 };
            r1[2 * ox + 1] = if offset == width + 1 { gv } else { 0.0 };
        }
        r0[2 * ow..].fill(0.0);
        r1[2 * ow..].fill(0.0);
    }
    dx[covered_rows * width..].fill(0.0);
}

/// Each output's gradient goes to the input that won its window (added: windows may overlap).
/// Planes (one image, one channel) are independent, so they run in parallel.
impl MaxPoolSaved {
    pub(crate) fn backward(&self, _values: &Values, grads: &mut Grads, dy: &[f32]) {
        let (x, g, argmax) = (self.x, &self.window, &self.argmax[..]);
        let Some((dx, fresh)) = grads.slot_fresh(x) else { return };
        let out_plane = g.out_h() * g.out_w();
        // 2x2 windows at stride 2 do not overlap: a new gradient buffer is written window by
        // window (the winner gets dy, the other three 0), not zeroed first and then added to.
        let write_windows = fresh && g.kernel_h == 2 && g.stride == 2;
        if fresh && !write_windows {
            dx.fill(0.0);
        }
        dx.par_chunks_mut(g.height * g.width).zip(dy.par_chunks(out_plane).zip(argmax.par_chunks(out_plane))).for_each(
            |(dx_p, (dy_p, arg_p))| {
                if write_windows {
                    max_unpool_2x2(dy_p, arg_p, g.width, g.out_w(), dx_p);
                } else {
                    for (&gv, &i) in dy_p.iter().zip(arg_p) {
                        dx_p[i as usize] += gv;
                    }
                }
            },
        );
    }
}

/// Each output's gradient is shared equally by the inputs of its window.
impl AvgPoolSaved {
    pub(crate) fn backward(&self, _values: &Values, grads: &mut Grads, dy: &[f32]) {
        let (x, g) = (self.x, &self.window);
        let Some(dx) = grads.slot(x) else { return };
        let (oh, ow) = (g.out_h(), g.out_w());
        let (k, s) = (g.kernel_h, g.stride);
        let scale = 1.0 / (k * k) as f32;
        dx.par_chunks_mut(g.height * g.width).zip(dy.par_chunks(oh * ow)).for_each(|(dx_p, dy_p)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let gv = dy_p[oy * ow + ox] * scale;
                    for ky in 0..k {
                        let row = (oy * s + ky) * g.width + ox * s;
                        dx_p[row..row + k].iter_mut().for_each(|d| *d += gv);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2x2 path gives the general path's maxima and winners, ties and NaNs included, on
    /// even and odd plane sizes.
    #[test]
    fn two_by_two_path_matches_the_general_one() {
        for (h, w) in [(4, 6), (5, 7), (2, 2), (3, 9)] {
            let g = Window { channels: 1, height: h, width: w, kernel_h: 2, kernel_w: 2, stride: 2, padding: 0 };
            // Few distinct values (many ties), a NaN now and then, and negative zeros.
            let x: Vec<f32> = (0..h * w)
                .map(|i| match i * 7 % 11 {
                    0 => f32::NAN,
                    1 => -0.0,
                    k => (k % 3) as f32 - 1.0,
                })
                .collect();
            let n = g.out_h() * g.out_w();
            let (mut y1, mut a1, mut y2, mut a2) = (vec![0.0; n], vec![0; n], vec![0.0; n], vec![0; n]);
            max_pool_plane(&x, &g, &mut y1, &mut a1);
            max_pool_2x2(&x, w, g.out_w(), &mut y2, &mut a2);
            assert_eq!(a1, a2, "{h}x{w}: winners");
            let bits = |y: &[f32]| y.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y1), bits(&y2), "{h}x{w}: maxima");
        }
    }

    /// Written into a buffer full of NaN (a recycled one holds anything), the 2x2 gradient
    /// equals the scattered one added to zeros, on even and odd plane sizes.
    #[test]
    fn unpool_2x2_writes_every_input() {
        for (h, w) in [(2, 2), (4, 6), (5, 7), (3, 2)] {
            let x: Vec<f32> = (0..h * w).map(|i| ((i * 37) % 11) as f32).collect();
            let (oh, ow) = (h / 2, w / 2);
            let (mut y, mut arg) = (vec![0.0; oh * ow], vec![0u32; oh * ow]);
            max_pool_2x2(&x, w, ow, &mut y, &mut arg);
            let dy: Vec<f32> = (0..oh * ow).map(|i| i as f32 + 1.0).collect();
            let mut want = vec![0.0f32; h * w];
            for (&g, &i) in dy.iter().zip(&arg) {
                want[i as usize] += g;
            }
            let mut got = vec![f32::NAN; h * w];
            max_unpool_2x2(&dy, &arg, w, ow, &mut got);
            assert_eq!(got, want, "{h}x{w}");
        }
    }
}
