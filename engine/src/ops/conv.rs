//! conv2d: forward and backward, through one of four algorithms chosen by shape alone
//! ([`Algorithm::for_shape`]; the thresholds were measured per layer with `sph bench --kernels`):
//!
//! - Maps of at most 4 pixels (VGG's last layers, 2x2): one GEMM per pair of pixels a tap
//!   connects (`kernels::pairs`), no transforms and no multiplications by padding.
//! - Stride-1 layers with few channels (at most 300 im2col rows, or 3x3 with up to 64 channels
//!   in and out and outputs of at least 64 pixels), on CPUs with AVX-512 (LeNet, first layers,
//!   CNN-9 at x0.25, VGG-16's 64-channel layers): a direct convolution (`kernels::direct`), 8
//!   output channels per register block.
//! - Other 3x3 stride-1 layers with at least 16 input channels (VGG's and CNN-9's wider
//!   layers): Winograd F(2x2, 3x3) (`kernels::winograd`), 2.25x fewer multiply-adds.
//! - Everything else (strides, wide kernels over many channels): im2col + GEMM,
//!   parallel over groups of images whose column matrices sit side by side in one wide
//!   matrix [C*k*k, group*Ho*Wo], so that late layers with tiny feature maps (4x4, 2x2) still
//!   give the GEMM enough columns to run at speed.

use rayon::prelude::*;

use crate::autograd::{Grads, Graph, Values, Var};
use crate::buffers::Scratch;
use crate::error::{EngineError, Result};
use crate::kernels::im2col::{col2im_add, im2col};
use crate::kernels::parallel::channel_sums;
use crate::kernels::{
    direct, pairs, sgemm_serial, winograd, ConvBackward, ConvForward, ConvGrads, ConvShape, Trans, Window,
};
use crate::op::{Conv2dSaved, Op};
use crate::tensor::Tensor;

/// Columns one GEMM should see at least: below this, images are grouped. Each GEMM packs the
/// weights again, which costs about as much as 32 columns of multiply-adds: at 1024 columns
/// that is 3%, at 256 it was 12% of the late VGG layers.
const MIN_GEMM_COLS: usize = 1024;
/// Groups per batch at least, so that both threads (and a few more) get work in late layers.
const MIN_GROUPS: usize = 4;

/// Images per GEMM: enough for MIN_GEMM_COLS columns, but at least MIN_GROUPS groups per batch.
/// Fixed by the shapes alone (never by the thread count), so results do not depend on it.
fn images_per_gemm(window: &Window, batch: usize) -> usize {
    MIN_GEMM_COLS.div_ceil(window.col_cols()).min(batch.div_ceil(MIN_GROUPS)).max(1)
}

/// Images per backward task: a multiple of the GEMM group, about an eighth of the batch.
/// Fixed by the shapes alone, so weight-gradient partial sums are added in the same order
/// whatever the thread count.
fn backward_chunk(window: &Window, batch: usize) -> usize {
    let group = images_per_gemm(window, batch);
    batch.div_ceil(8).max(1).next_multiple_of(group)
}

/// Copies a group's GEMM output `wide` [Co, group*HoWo] into NCHW images `y` [group, Co, HoWo].
fn scatter_group(wide: &[f32], y: &mut [f32], c_out: usize, cols: usize) {
    let ld = wide.len() / c_out;
    for (j, y_n) in y.chunks_mut(c_out * cols).enumerate() {
        for (co, y_row) in y_n.chunks_mut(cols).enumerate() {
            y_row.copy_from_slice(&wide[co * ld + j * cols..co * ld + (j + 1) * cols]);
        }
    }
}

/// The inverse of [`scatter_group`]: NCHW images `dy` [group, Co, HoWo] into `wide` [Co, group*HoWo].
fn gather_group(dy: &[f32], wide: &mut [f32], c_out: usize, cols: usize) {
    let ld = wide.len() / c_out;
    for (j, dy_n) in dy.chunks(c_out * cols).enumerate() {
        for (co, row) in dy_n.chunks(cols).enumerate() {
            wide[co * ld + j * cols..co * ld + (j + 1) * cols].copy_from_slice(row);
        }
    }
}

/// How a convolution of some shape is computed, forward and backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    Pairs,
    Direct,
    Winograd,
    Im2col,
}

impl Algorithm {
    /// The algorithm for this shape (the backward pass makes the same choice again).
    fn for_shape(window: &Window, c_out: usize) -> Algorithm {
        if pairs::applies(window) {
            Algorithm::Pairs
        } else if direct::applies(window, c_out) {
            Algorithm::Direct
        } else if winograd::applies(window) {
            Algorithm::Winograd
        } else {
            Algorithm::Im2col
        }
    }
}

impl Graph<'_> {
    /// `y[N, Co, Ho, Wo] = conv(x[N, C, H, W], w[Co, C, k, k]) + b[Co]`, square kernel,
    /// the same stride and zero padding on both axes.
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, stride: usize, padding: usize) -> Result<Var> {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        if xs.len() != 4 || ws.len() != 4 || xs[1] != ws[1] {
            return Err(EngineError::Shape(format!(
                "conv2d: input {xs:?} does not fit weight {ws:?} (expected [N, {}, H, W])",
                ws.get(1).copied().unwrap_or(0)
            )));
        }
        if stride == 0 || xs[2] + 2 * padding < ws[2] || xs[3] + 2 * padding < ws[3] {
            return Err(EngineError::Shape(format!(
                "conv2d: kernel {}x{} (padding {padding}, stride {stride}) does not fit input {xs:?}",
                ws[2], ws[3]
            )));
        }
        let window =
            Window { channels: xs[1], height: xs[2], width: xs[3], kernel_h: ws[2], kernel_w: ws[3], stride, padding };
        let (batch, c_out) = (xs[0], ws[0]);
        if let Some(b) = b {
            if self.shape(b) != [c_out] {
                return Err(EngineError::Shape(format!(
                    "conv2d: bias {:?} does not fit {c_out} output channels",
                    self.shape(b)
                )));
            }
        }
        let mut y = Tensor::for_overwrite(&[batch, c_out, window.out_h(), window.out_w()]);
        let (xv, wv) = (self.value(x).data(), self.value(w).data());
        let bias = b.map(|b| self.value(b).data());
        let forward: ConvForward = match Algorithm::for_shape(&window, c_out) {
            Algorithm::Pairs => pairs::conv_forward,
            Algorithm::Direct => direct::conv_forward,
            Algorithm::Winograd => winograd::conv_forward,
            Algorithm::Im2col => im2col_forward,
        };
        forward(xv, wv, bias, &ConvShape { window, batch, c_out }, y.data_mut());
        let inputs: Vec<Var> = [x, w].into_iter().chain(b).collect();
        Ok(self.record(Op::Conv2d(Conv2dSaved { x, w, b, window }), y, &inputs))
    }
}

/// The bias gradient is the sum of dy per channel; the others come from the algorithm the
/// forward pass used (the same choice, made again from the shape).
impl Conv2dSaved {
    pub(crate) fn backward(&self, values: &Values, grads: &mut Grads, dy: &[f32]) {
        let (x, w, b, window) = (self.x, self.w, self.b, &self.window);
        let (xv, wv) = (values.get(x), values.get(w));
        let (batch, c_out) = (xv.shape()[0], wv.shape()[0]);
        let cols = window.col_cols();
        if let Some(db) = b.and_then(|b| grads.slot(b)) {
            // Per channel, over the images in order, in eight f64 lanes: one f32 running sum
            // was a dependent add per element, on one thread (a tenth of VGG's conv backward).
            let sums = channel_sums(dy, (batch, c_out, cols), |_| |v| v as f64);
            db.iter_mut().zip(sums).for_each(|(g, s)| *g += s as f32);
        }
        let (xd, wd) = (xv.data(), wv.data());
        let backward: ConvBackward = match Algorithm::for_shape(window, c_out) {
            Algorithm::Pairs => pairs::conv_backward,
            Algorithm::Direct => direct::conv_backward,
            Algorithm::Winograd => winograd::conv_backward,
            Algorithm::Im2col => return im2col_backward(xd, wd, dy, window, c_out, grads, x, w),
        };
        // Allocated here when new (then stored into, not zeroed and added to).
        let store_dx = grads.slot_fresh(x).is_some_and(|(_, fresh)| fresh);
        let (dx, dw) = grads.two_slots(x, w);
        backward(xd, wd, dy, &ConvShape { window: *window, batch, c_out }, ConvGrads { dx, store_dx, dw });
    }
}

/// Per group of images (columns side by side): col = im2col(x_group); dy_wide = dy_group as
/// [Co, group*HoWo];  dW += dy_wide @ col^T;  dx_group += col2im(W^T @ dy_wide).
#[allow(clippy::too_many_arguments)]
fn im2col_backward(
    xv: &[f32],
    wv: &[f32],
    dy: &[f32],
    window: &Window,
    c_out: usize,
    grads: &mut Grads,
    x: Var,
    w: Var,
) {
    let (rows, cols) = (window.col_rows(), window.col_cols());
    let in_size = window.channels * window.height * window.width;
    let batch = xv.len() / in_size.max(1);
    let out_size = c_out * cols;
    let group = images_per_gemm(window, batch);
    let chunk = backward_chunk(window, batch);
    let want_dw = grads.slot(w).is_some();
    // Each chunk of images returns its partial dW; partials are added in chunk order.
    let work = |(ci, dx_chunk): (usize, Option<&mut [f32]>)| -> Scratch {
        let mut col = Scratch::overwritten(rows * group * cols);
        let mut dy_wide = Scratch::overwritten(if group > 1 { c_out * group * cols } else { 0 });
        let mut dw_part = if want_dw { Scratch::zeroed(c_out * rows) } else { Scratch::zeroed(0) };
        let first = ci * chunk;
        let last = (first + chunk).min(batch);
        let mut dx_chunk = dx_chunk;
        for start in (first..last).step_by(group) {
            let images = group.min(last - start);
            let ld = images * cols;
            let dy_group = &dy[start * out_size..(start + images) * out_size];
            // One image's [Co, HoWo] gradient already is the wide matrix.
            let dy_wide: &[f32] = if images == 1 {
                dy_group
            } else {
                gather_group(dy_group, &mut dy_wide[..c_out * ld], c_out, cols);
                &dy_wide[..c_out * ld]
            };
            if want_dw {
                for j in 0..images {
                    let n = start + j;
                    im2col(&xv[n * in_size..(n + 1) * in_size], window, &mut col[j * cols..], ld);
                }
                // dW [Co, C*k*k] += dy_wide [Co, images*HoWo] @ col^T [images*HoWo, C*k*k]
                sgemm_serial(Trans::N, Trans::T, c_out, rows, ld, 1.0, dy_wide, &col[..rows * ld], 1.0, &mut dw_part);
            }
            if let Some(dx) = dx_chunk.as_deref_mut() {
                // dcol [C*k*k, images*HoWo] = W^T @ dy_wide, then scattered back onto each image.
                sgemm_serial(Trans::T, Trans::N, rows, ld, c_out, 1.0, wv, dy_wide, 0.0, &mut col[..rows * ld]);
                for j in 0..images {
                    let local = start + j - first;
                    col2im_add(&col[j * cols..], window, &mut dx[local * in_size..(local + 1) * in_size], ld);
                }
            }
        }
        dw_part
    };
    let partials: Vec<Scratch> = match grads.slot(x) {
        Some(dx) => dx.par_chunks_mut(chunk * in_size).enumerate().map(|(i, d)| work((i, Some(d)))).collect(),
        None => (0..batch.div_ceil(chunk)).into_par_iter().map(|i| work((i, None))).collect(),
    };
    if let Some(dw) = grads.slot(w) {
        for part in &partials {
            for (g, &p) in dw.iter_mut().zip(part.iter()) {
                *g += p;
            }
        }
    }
}

/// The im2col forward: groups of images in parallel, one GEMM per group, then the bias.
fn im2col_forward(xv: &[f32], wv: &[f32], bias: Option<&[f32]>, shape: &ConvShape, y: &mut [f32]) {
    let ConvShape { window, batch, c_out } = *shape;
    let window = &window;
    let (rows, cols) = (window.col_rows(), window.col_cols());
    let in_size = window.channels * window.height * window.width;
    let group = images_per_gemm(window, batch);
    y.par_chunks_mut(group * c_out * cols).enumerate().for_each_init(
        || {
            (
                Scratch::overwritten(rows * group * cols),
                Scratch::overwritten(if group > 1 { c_out * group * cols } else { 0 }),
            )
        },
        |(col, wide), (gi, y_g)| {
            let images = y_g.len() / (c_out * cols);
            let ld = images * cols;
            for j in 0..images {
                let n = gi * group + j;
                im2col(&xv[n * in_size..(n + 1) * in_size], window, &mut col[j * cols..], ld);
            }
            // wide [Co, images*HoWo] = W [Co, C*k*k] @ col [C*k*k, images*HoWo]; one image's
            // [Co, HoWo] is already its NCHW output, so it is written in place.
            let out: &mut [f32] = if images == 1 { y_g } else { &mut wide[..c_out * ld] };
            sgemm_serial(Trans::N, Trans::N, c_out, ld, rows, 1.0, wv, &col[..rows * ld], 0.0, out);
            if images > 1 {
                scatter_group(&wide[..c_out * ld], y_g, c_out, cols);
            }
        },
    );
    if let Some(bias) = bias {
        y.par_chunks_mut(cols).enumerate().for_each(|(i, plane)| {
            let bv = bias[i % c_out];
            plane.iter_mut().for_each(|v| *v += bv);
        });
    }
}
