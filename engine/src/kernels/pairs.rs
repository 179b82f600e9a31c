//! Convolution on maps of at most four pixels (VGG's last layers on CIFAR, 2x2) as one GEMM
//! per pair of pixels that a kernel tap connects: with the images side by side, output pixel
//! o of every image is `sum over its pairs (p, t) of x_p W_t`, an [N, C] x [C, Co] product.
//!
//! On a 2x2 map with padding 1 every output sees only 4 of the 9 taps (the rest read
//! padding): 16 pairs, 4/9 of the multiply-adds im2col would do, the same count as Winograd
//! F(2x2, 3x3) but without its transforms, which on one tile per image cost more than the
//! products: 512 -> 512 on 2x2 at batch 128 took 29 ms forward + backward with Winograd, and
//! with its two such layers here VGG-11-BN trains at 281-286 instead of 267-273 img/s (both
//! measured with our AVX-512 GEMM; on other CPUs the choice was not measured). On 4x4 maps
//! the pairs (100 of them) do 1.5x Winograd's multiply-adds, and VGG-11-BN ran 4% slower.
//!
//! ```text
//! xt [P][N][C]   = x [N][C][P]            (P input pixels)
//! wt [T][Co][C]  = w [Co][C][T]           (T = k*k taps)
//! yt[o]  = sum_(p,t) xt[p] @ wt[t]^T      [N, Co]      y [N][Co][O] = yt + bias
//! dxt[p] = sum_(o,t) dyt[o] @ wt[t]       [N, C]
//! dwt[t] = sum_(o,p) dyt[o]^T @ xt[p]     [Co, C]      dw += dwt as [Co][C][T]
//! ```

use rayon::prelude::*;

use super::{sgemm, ConvGrads, ConvShape, Trans, Window};
use crate::buffers::Scratch;

/// Whether a convolution of this shape runs here: input and output maps of at most 4 pixels.
pub(crate) fn applies(window: &Window) -> bool {
    window.height * window.width <= 4 && window.out_h() * window.out_w() <= 4
}

/// One tap connecting an output pixel to an input pixel.
#[derive(Clone, Copy, Debug)]
struct Pair {
    output: usize,
    input: usize,
    tap: usize,
}

/// Every (output pixel, input pixel, tap) whose input lies inside the map, in the order
/// output, tap.
fn pairs(w: &Window) -> Vec<Pair> {
    let mut out = Vec::new();
    for oy in 0..w.out_h() {
        for ox in 0..w.out_w() {
            for ky in 0..w.kernel_h {
                for kx in 0..w.kernel_w {
                    let (iy, ix) = (
                        (oy * w.stride + ky) as isize - w.padding as isize,
                        (ox * w.stride + kx) as isize - w.padding as isize,
                    );
                    if (0..w.height as isize).contains(&iy) && (0..w.width as isize).contains(&ix) {
                        out.push(Pair {
                            output: oy * w.out_w() + ox,
                            input: iy as usize * w.width + ix as usize,
                            tap: ky * w.kernel_w + kx,
                        });
                    }
                }
            }
        }
    }
    out
}

/// `to [cols][rows] = from [rows][cols]` transposed, for a short last axis (pixels, taps):
/// in parallel blocks of rows, each read once in order and written to `cols` runs.
fn transpose(from: &[f32], rows: usize, cols: usize, to: &mut [f32]) {
    const ROWS_PER_TASK: usize = 4096;
    let mut tasks: Vec<Vec<&mut [f32]>> = (0..rows.div_ceil(ROWS_PER_TASK)).map(|_| Vec::with_capacity(cols)).collect();
    for plane in to[..rows * cols].chunks_mut(rows) {
        for (task, run) in tasks.iter_mut().zip(plane.chunks_mut(ROWS_PER_TASK)) {
            task.push(run);
        }
    }
    tasks.into_par_iter().enumerate().for_each(|(b, mut runs)| {
        let first = b * ROWS_PER_TASK;
        for (k, row) in from[first * cols..].chunks_exact(cols).take(runs[0].len()).enumerate() {
            for (run, &v) in runs.iter_mut().zip(row) {
                run[k] = v;
            }
        }
    });
}

/// `out[k] = sum of product(pair) over the pairs whose `key` is k`, each k a block of `len`
/// floats of `out`: pairs in their order within a key, the first product storing (beta 0)
/// and the others adding (beta 1). Returns which keys some pair has (the others are not
/// written).
fn sum_by_key(
    pairs: &[Pair],
    key: impl Fn(&Pair) -> usize,
    keys: usize,
    len: usize,
    out: &mut [f32],
    product: impl Fn(&Pair, f32, &mut [f32]),
) -> Vec<bool> {
    let mut sorted = pairs.to_vec();
    sorted.sort_by_key(&key); // stable: a key's pairs keep their order
    let mut reached = vec![false; keys];
    for pr in &sorted {
        let k = key(pr);
        let beta = if reached[k] { 1.0 } else { 0.0 };
        reached[k] = true;
        product(pr, beta, &mut out[k * len..(k + 1) * len]);
    }
    reached
}

/// `y [N, Co, O] = conv(x [N, C, P], w [Co, C, T]) + bias`.
pub(crate) fn conv_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, shape: &ConvShape, y: &mut [f32]) {
    let ConvShape { window, batch, c_out } = *shape;
    let window = &window;
    let (c, p, o, t) =
        (window.channels, window.height * window.width, window.col_cols(), window.kernel_h * window.kernel_w);
    let mut xt = Scratch::overwritten(p * batch * c);
    transpose(x, batch * c, p, &mut xt);
    let mut wt = Scratch::overwritten(t * c_out * c);
    transpose(w, c_out * c, t, &mut wt);
    let mut yt = Scratch::overwritten(o * batch * c_out);
    // An output pixel no tap reaches (possible only with padding, e.g. a 1x1 kernel with
    // padding 1 at stride 2) is the bias alone.
    let reached = sum_by_key(
        &pairs(window),
        |pr| pr.output,
        o,
        batch * c_out,
        &mut yt,
        |pr, beta, yo| {
            let (xp, wk) = (&xt[pr.input * batch * c..][..batch * c], &wt[pr.tap * c_out * c..][..c_out * c]);
            sgemm(Trans::N, Trans::T, batch, c_out, c, 1.0, xp, wk, beta, yo);
        },
    );
    y.par_chunks_mut(c_out * o).enumerate().for_each(|(n, y_n)| {
        for (co, y_c) in y_n.chunks_mut(o).enumerate() {
            let b = bias.map_or(0.0, |b| b[co]);
            for (q, v) in y_c.iter_mut().enumerate() {
                *v = b + if reached[q] { yt[(q * batch + n) * c_out + co] } else { 0.0 };
            }
        }
    });
}

/// The gradients of [`conv_forward`] but the bias's: `dx += d/dx` (`dx = d/dx` with
/// `store_dx`), `dw += d/dw`, each only where asked for.
pub(crate) fn conv_backward(x: &[f32], w: &[f32], dy: &[f32], shape: &ConvShape, grads: ConvGrads) {
    let (ConvShape { window, batch, c_out }, ConvGrads { dx, store_dx, dw }) = (*shape, grads);
    let window = &window;
    let (c, p, o, t) =
        (window.channels, window.height * window.width, window.col_cols(), window.kernel_h * window.kernel_w);
    let pairs = pairs(window);
    let mut dyt = Scratch::overwritten(o * batch * c_out);
    transpose(dy, batch * c_out, o, &mut dyt);
    if let Some(dw) = dw {
        let mut xt = Scratch::overwritten(p * batch * c);
        transpose(x, batch * c, p, &mut xt);
        let mut dwt = Scratch::overwritten(t * c_out * c);
        let used = sum_by_key(
            &pairs,
            |pr| pr.tap,
            t,
            c_out * c,
            &mut dwt,
            |pr, beta, dwk| {
                let (dyo, xp) =
                    (&dyt[pr.output * batch * c_out..][..batch * c_out], &xt[pr.input * batch * c..][..batch * c]);
                sgemm(Trans::T, Trans::N, c_out, c, batch, 1.0, dyo, xp, beta, dwk);
            },
        );
        // dw [Co][C][T] += dwt [T][Co][C]
        dw.par_chunks_mut(c * t).enumerate().for_each(|(co, dw_co)| {
            for (i, d) in dw_co.iter_mut().enumerate() {
                let tap = i % t;
                if used[tap] {
                    *d += dwt[(tap * c_out + co) * c + i / t];
                }
            }
        });
    }
    if let Some(dx) = dx {
        let mut wt = Scratch::overwritten(t * c_out * c);
        transpose(w, c_out * c, t, &mut wt);
        let mut dxt = Scratch::overwritten(p * batch * c);
        let reached = sum_by_key(
            &pairs,
            |pr| pr.input,
            p,
            batch * c,
            &mut dxt,
            |pr, beta, dxp| {
                let (dyo, wk) =
                    (&dyt[pr.output * batch * c_out..][..batch * c_out], &wt[pr.tap * c_out * c..][..c_out * c]);
                sgemm(Trans::N, Trans::N, batch, c, c_out, 1.0, dyo, wk, beta, dxp);
            },
        );
        dx.par_chunks_mut(c * p).enumerate().for_each(|(n, dx_n)| {
            for (i, d) in dx_n.iter_mut().enumerate() {
                let q = i % p;
                let v = if reached[q] { dxt[(q * batch + n) * c + i / p] } else { 0.0 };
                if store_dx {
                    *d = v;
                } else {
                    *d += v;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::check_conv_against_reference;

    /// Forward and backward (dx added to and stored) against im2col + GEMM, on 2x2, 1x1 and
    /// 1x2 maps, with padding 1 and 0, stride 1 and 2, and 1x1 kernels at stride 2 that leave
    /// outputs no tap reaches (padding 1) and inputs no output reads (padding 0).
    #[test]
    fn matches_im2col_forward_and_backward() {
        for &(c, co, h, w, k, s, pad) in &[
            (5, 7, 2, 2, 3, 1, 1),
            (4, 3, 1, 1, 3, 1, 1),
            (3, 6, 1, 2, 3, 1, 1),
            (6, 4, 2, 2, 1, 1, 0),
            (3, 5, 2, 2, 3, 2, 1),
            (4, 3, 2, 2, 1, 2, 1),
            (4, 3, 2, 2, 1, 2, 0),
        ] {
            let g = Window { channels: c, height: h, width: w, kernel_h: k, kernel_w: k, stride: s, padding: pad };
            assert!(applies(&g), "{g:?}");
            let shape = ConvShape { window: g, batch: 3, c_out: co };
            check_conv_against_reference(&shape, 1e-4, conv_forward, conv_backward);
        }
    }
}
