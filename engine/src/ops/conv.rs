//! conv2d by im2col + GEMM, parallel over the images of the batch: forward and backward.

use rayon::prelude::*;

use crate::autograd::{Graph, Grads, Op, Values, Var};
use crate::error::{EngineError, Result};
use crate::kernels::im2col::{col2im_add, im2col};
use crate::kernels::{sgemm_serial, Trans, Window};
use crate::tensor::Tensor;

/// Images per backward task; a fixed size keeps weight-gradient sums in the same order
/// whatever the thread count.
fn backward_chunk(batch: usize) -> usize {
    batch.div_ceil(8).max(1)
}

impl Graph<'_> {
    /// `y[N, Co, Ho, Wo] = conv(x[N, C, H, W], w[Co, C, k, k]) + b[Co]`, square kernel,
    /// the same stride and zero padding on both axes.
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, stride: usize, padding: usize) -> Result<Var> {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        if xs.len() != 4 || ws.len() != 4 || xs[1] != ws[1] {
            return Err(EngineError::Shape(format!("conv2d: input {xs:?} does not fit weight {ws:?} (expected [N, {}, H, W])", ws.get(1).copied().unwrap_or(0))));
        }
        if stride == 0 || xs[2] + 2 * padding < ws[2] || xs[3] + 2 * padding < ws[3] {
            return Err(EngineError::Shape(format!("conv2d: kernel {}x{} (padding {padding}, stride {stride}) does not fit input {xs:?}", ws[2], ws[3])));
        }
        let window = Window { channels: xs[1], height: xs[2], width: xs[3], kernel_h: ws[2], kernel_w: ws[3], stride, padding };
        let (batch, c_out) = (xs[0], ws[0]);
        let (rows, cols) = (window.col_rows(), window.col_cols());
        let mut y = Tensor::zeros(&[batch, c_out, window.out_h(), window.out_w()]);
        let (xv, wv) = (self.value(x).data(), self.value(w).data());
        let in_size = window.channels * window.height * window.width;
        y.data_mut().par_chunks_mut(c_out * cols).enumerate().for_each_init(
            || vec![0.0f32; rows * cols],
            |col, (n, y_n)| {
                im2col(&xv[n * in_size..(n + 1) * in_size], &window, col);
                // y_n [Co, HoWo] = W [Co, C*k*k] @ col [C*k*k, HoWo]
                sgemm_serial(Trans::N, Trans::N, c_out, cols, rows, 1.0, wv, col, 0.0, y_n);
            },
        );
        if let Some(b) = b {
            if self.shape(b) != [c_out] {
                return Err(EngineError::Shape(format!("conv2d: bias {:?} does not fit {c_out} output channels", self.shape(b))));
            }
            let bias = self.value(b).data().to_vec();
            y.data_mut().par_chunks_mut(cols).enumerate().for_each(|(i, plane)| {
                let bv = bias[i % c_out];
                plane.iter_mut().for_each(|v| *v += bv);
            });
        }
        let inputs: Vec<Var> = [x, w].into_iter().chain(b).collect();
        Ok(self.record(Op::Conv2d { x, w, b, window }, y, &inputs))
    }
}

/// Per image n: col_n = im2col(x_n);  dW += dy_n @ col_n^T;  dx_n += col2im(W^T @ dy_n);  db += sums of dy_n.
pub(crate) fn conv2d_backward(values: &Values, grads: &mut Grads, dy: &[f32], x: Var, w: Var, b: Option<Var>, window: &Window) {
    let (xv, wv) = (values.get(x), values.get(w));
    let batch = xv.shape()[0];
    let c_out = wv.shape()[0];
    let (rows, cols) = (window.col_rows(), window.col_cols());
    let in_size = xv.len() / batch.max(1);
    let out_size = c_out * cols;
    let chunk = backward_chunk(batch);

    if let Some(db) = b.and_then(|b| grads.slot(b)) {
        for dy_n in dy.chunks(out_size) {
            for (g, plane) in db.iter_mut().zip(dy_n.chunks(cols)) {
                *g += plane.iter().sum::<f32>();
            }
        }
    }
    let want_dw = grads.slot(w).is_some();
    // Each chunk of images returns its partial dW; partials are added in chunk order.
    let work = |(ci, dx_chunk): (usize, Option<&mut [f32]>)| -> Vec<f32> {
        let mut col = vec![0.0f32; rows * cols];
        let mut dw_part = if want_dw { vec![0.0f32; c_out * rows] } else { Vec::new() };
        let first = ci * chunk;
        let last = (first + chunk).min(batch);
        let mut dx_chunk = dx_chunk;
        for n in first..last {
            let dy_n = &dy[n * out_size..(n + 1) * out_size];
            if want_dw {
                im2col(&xv.data()[n * in_size..(n + 1) * in_size], window, &mut col);
                // dW [Co, C*k*k] += dy_n [Co, HoWo] @ col^T [HoWo, C*k*k]
                sgemm_serial(Trans::N, Trans::T, c_out, rows, cols, 1.0, dy_n, &col, 1.0, &mut dw_part);
            }
            if let Some(dx) = dx_chunk.as_deref_mut() {
                // dcol [C*k*k, HoWo] = W^T @ dy_n, then scattered back onto the image.
                sgemm_serial(Trans::T, Trans::N, rows, cols, c_out, 1.0, wv.data(), dy_n, 0.0, &mut col);
                let local = n - first;
                col2im_add(&col, window, &mut dx[local * in_size..(local + 1) * in_size]);
            }
        }
        dw_part
    };
    let partials: Vec<Vec<f32>> = match grads.slot(x) {
        Some(dx) => dx.par_chunks_mut(chunk * in_size).enumerate().map(|(i, d)| work((i, Some(d)))).collect(),
        None => (0..batch.div_ceil(chunk)).into_par_iter().map(|i| work((i, None))).collect(),
    };
    if let Some(dw) = grads.slot(w) {
        for part in &partials {
            for (g, &p) in dw.iter_mut().zip(part) {
                *g += p;
            }
        }
    }
}
