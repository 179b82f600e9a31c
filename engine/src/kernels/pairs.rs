//! Convolution on maps of at most four pixels (VGG's last layers on CIFAR, 2x2) as one GEMM
//! per pair of pixels that a kernel tap connects: with the images side by side, output pixel
//! o of every image is `sum over its pairs (p, t) of x_p W_t`, an [N, C] x [C, Co] product.
//!
//! On a 2x2 map with padding 1 every output sees only 4 of the 9 taps (the rest read
//! padding): 16 pairs, 4/9 of the multiply-adds im2col would do, the same count as Winograd
//! F(2x2, 3x3) but without its transforms, which on one tile per image cost more than the
//! products (512 -> 512 on 2x2 at batch 128: 29 ms forward + backward with Winograd; VGG-11-BN
//! trains 267-273 -> 281-286 img/s with its two such layers here). On 4x4 maps the pairs
//! (100 of them) do 1.5x Winograd's multiply-adds, and VGG-11-BN ran 4% slower.
//!
//! ```text
//! xt [P][N][C]   = x [N][C][P]            (P input pixels)
//! wt [T][Co][C]  = w [Co][C][T]           (T = k*k taps)
//! yt[o]  = sum_(p,t) xt[p] @ wt[t]^T      [N, Co]      y [N][Co][O] = yt + bias
//! dxt[p] = sum_(o,t) dyt[o] @ wt[t]       [N, C]
//! dwt[t] = sum_(o,p) dyt[o]^T @ xt[p]     [Co, C]      dw += dwt as [Co][C][T]
//! ```

use rayon::prelude::*;

use super::{sgemm, Trans, Window};
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

/// `y [N, Co, O] = conv(x [N, C, P], w [Co, C, T]) + bias`.
pub(crate) fn conv_forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    window: &Window,
    batch: usize,
    c_out: usize,
    y: &mut [f32],
) {
    let (c, p, o, t) =
        (window.channels, window.height * window.width, window.col_cols(), window.kernel_h * window.kernel_w);
    let mut xt = Scratch::overwritten(p * batch * c);
    transpose(x, batch * c, p, &mut xt);
    let mut wt = Scratch::overwritten(t * c_out * c);
    transpose(w, c_out * c, t, &mut wt);
    let mut yt = Scratch::overwritten(o * batch * c_out);
    let pairs = pairs(window);
    for (i, pair) in pairs.iter().enumerate() {
        let first = i == 0 || pairs[i - 1].output != pair.output;
        let (xp, wk) = (&xt[pair.input * batch * c..][..batch * c], &wt[pair.tap * c_out * c..][..c_out * c]);
        let yo = &mut yt[pair.output * batch * c_out..][..batch * c_out];
        sgemm(Trans::N, Trans::T, batch, c_out, c, 1.0, xp, wk, if first { 0.0 } else { 1.0 }, yo);
    }
    // An output pixel no tap reaches (possible with padding 0 only) is the bias alone.
    let reached: Vec<bool> = (0..o).map(|q| pairs.iter().any(|pr| pr.output == q)).collect();
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
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    window: &Window,
    batch: usize,
    c_out: usize,
    dx: Option<&mut [f32]>,
    store_dx: bool,
    dw: Option<&mut [f32]>,
) {
    let (c, p, o, t) =
        (window.channels, window.height * window.width, window.col_cols(), window.kernel_h * window.kernel_w);
    let pairs = pairs(window);
    let mut dyt = Scratch::overwritten(o * batch * c_out);
    transpose(dy, batch * c_out, o, &mut dyt);
    if let Some(dw) = dw {
        let mut xt = Scratch::overwritten(p * batch * c);
        transpose(x, batch * c, p, &mut xt);
        // Tap by tap; each tap's first product stores, a tap no pair uses adds nothing.
        let mut by_tap = pairs.clone();
        by_tap.sort_by_key(|pr| (pr.tap, pr.output));
        let mut dwt = Scratch::overwritten(t * c_out * c);
        for (i, pr) in by_tap.iter().enumerate() {
            let first = i == 0 || by_tap[i - 1].tap != pr.tap;
            let (dyo, xp) =
                (&dyt[pr.output * batch * c_out..][..batch * c_out], &xt[pr.input * batch * c..][..batch * c]);
            let dwk = &mut dwt[pr.tap * c_out * c..][..c_out * c];
            sgemm(Trans::T, Trans::N, c_out, c, batch, 1.0, dyo, xp, if first { 0.0 } else { 1.0 }, dwk);
        }
        let used: Vec<bool> = (0..t).map(|k| pairs.iter().any(|pr| pr.tap == k)).collect();
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
        // Input pixel by input pixel, as for the taps above.
        let mut by_input = pairs.clone();
        by_input.sort_by_key(|pr| (pr.input, pr.output));
        let mut dxt = Scratch::overwritten(p * batch * c);
        for (i, pr) in by_input.iter().enumerate() {
            let first = i == 0 || by_input[i - 1].input != pr.input;
            let (dyo, wk) =
                (&dyt[pr.output * batch * c_out..][..batch * c_out], &wt[pr.tap * c_out * c..][..c_out * c]);
            let dxp = &mut dxt[pr.input * batch * c..][..batch * c];
            sgemm(Trans::N, Trans::N, batch, c, c_out, 1.0, dyo, wk, if first { 0.0 } else { 1.0 }, dxp);
        }
        let reached: Vec<bool> = (0..p).map(|q| pairs.iter().any(|pr| pr.input == q)).collect();
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
    use crate::kernels::im2col::{col2im_add, im2col};

    fn filled(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) / 1001.0).collect()
    }

    /// Forward and backward (dx added to and stored) against im2col + GEMM, on 2x2, 1x1 and
    /// 1x2 maps, with padding 1 and 0, stride 1 and 2.
    #[test]
    fn matches_im2col_forward_and_backward() {
        for &(c, co, h, w, k, s, pad) in &[
            (5, 7, 2, 2, 3, 1, 1),
            (4, 3, 1, 1, 3, 1, 1),
            (3, 6, 1, 2, 3, 1, 1),
            (6, 4, 2, 2, 1, 1, 0),
            (3, 5, 2, 2, 3, 2, 1),
        ] {
            let g = Window { channels: c, height: h, width: w, kernel_h: k, kernel_w: k, stride: s, padding: pad };
            assert!(applies(&g), "{g:?}");
            let batch = 3;
            let (rows, cols) = (g.col_rows(), g.col_cols());
            let (x, wt, bias) = (filled(batch * c * h * w, 1), filled(co * rows, 2), filled(co, 3));
            let dy = filled(batch * co * cols, 4);
            let mut y = vec![f32::NAN; batch * co * cols];
            conv_forward(&x, &wt, Some(&bias), &g, batch, co, &mut y);
            let (mut dx, mut dw) = (vec![0.5; x.len()], vec![0.25; wt.len()]);
            conv_backward(&x, &wt, &dy, &g, batch, co, Some(&mut dx), false, Some(&mut dw));
            let mut stored_dx = vec![f32::NAN; x.len()];
            conv_backward(&x, &wt, &dy, &g, batch, co, Some(&mut stored_dx), true, None);
            let (mut want_dx, mut want_dw) = (vec![0.5; x.len()], vec![0.25; wt.len()]);
            let mut col = vec![0.0; rows * cols];
            for n in 0..batch {
                let x_n = &x[n * c * h * w..(n + 1) * c * h * w];
                im2col(x_n, &g, &mut col, cols);
                let mut want = vec![0.0; co * cols];
                sgemm(Trans::N, Trans::N, co, cols, rows, 1.0, &wt, &col, 0.0, &mut want);
                for (i, (a, b)) in y[n * co * cols..(n + 1) * co * cols].iter().zip(&want).enumerate() {
                    let b = b + bias[i / cols];
                    assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{g:?} y[{n}][{i}]: {a} vs {b}");
                }
                let dy_n = &dy[n * co * cols..(n + 1) * co * cols];
                sgemm(Trans::N, Trans::T, co, rows, cols, 1.0, dy_n, &col, 1.0, &mut want_dw);
                let mut dcol = vec![0.0; rows * cols];
                sgemm(Trans::T, Trans::N, rows, cols, co, 1.0, &wt, dy_n, 0.0, &mut dcol);
                col2im_add(&dcol, &g, &mut want_dx[n * c * h * w..(n + 1) * c * h * w], cols);
            }
            let stored_plus_half: Vec<f32> = stored_dx.iter().map(|v| v + 0.5).collect();
            for (name, got, want) in
                [("dx", &dx, &want_dx), ("stored dx", &stored_plus_half, &want_dx), ("dw", &dw, &want_dw)]
            {
                for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                    assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{g:?} {name}[{i}]: {a} vs {b}");
                }
            }
        }
    }
}
