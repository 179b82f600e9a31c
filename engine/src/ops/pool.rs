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
        let mut y = Tensor::zeros(&[batch, g.channels, oh, ow]);
        let mut argmax = vec![0u32; y.len()];
        let xv = self.value(x).data();
        let plane_in = g.height * g.width;
        y.data_mut().par_chunks_mut(oh * ow).zip(argmax.par_chunks_mut(oh * ow)).enumerate().for_each(
            |(p, (y_p, arg_p))| {
                let x_p = &xv[p * plane_in..(p + 1) * plane_in];
                for (o, (yv, av)) in y_p.iter_mut().zip(arg_p.iter_mut()).enumerate() {
                    let (oy, ox) = (o / ow, o % ow);
                    let corner = oy * stride * g.width + ox * stride;
                    // Local best and index: the window is scanned row by row, the first value
                    // seen wins ties, and NaN always wins, so it propagates as in PyTorch.
                    let (mut best, mut at) = (x_p[corner], corner);
                    for ky in 0..kernel {
                        let row_start = corner + ky * g.width;
                        for (kx, &v) in x_p[row_start..row_start + kernel].iter().enumerate() {
                            if v > best || v.is_nan() {
                                best = v;
                                at = row_start + kx;
                            }
                        }
                    }
                    *yv = best;
                    *av = at as u32;
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
        let mut y = Tensor::zeros(&[batch, g.channels, oh, ow]);
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

/// Each output's gradient goes to the input that won its window (added: windows may overlap).
/// Planes (one image, one channel) are independent, so they run in parallel.
impl MaxPoolSaved {
    pub(crate) fn backward(&self, _values: &Values, grads: &mut Grads, dy: &[f32]) {
        let (x, g, argmax) = (self.x, &self.window, &self.argmax[..]);
        let Some(dx) = grads.slot(x) else { return };
        let out_plane = g.out_h() * g.out_w();
        dx.par_chunks_mut(g.height * g.width).zip(dy.par_chunks(out_plane).zip(argmax.par_chunks(out_plane))).for_each(
            |(dx_p, (dy_p, arg_p))| {
                for (&gv, &i) in dy_p.iter().zip(arg_p) {
                    dx_p[i as usize] += gv;
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
