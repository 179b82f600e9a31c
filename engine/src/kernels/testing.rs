//! What the kernels' tests share: deterministic test data and the reference convolution the
//! faster algorithms are checked against.

use super::im2col::{col2im_add, im2col};
use super::{sgemm, ConvBackward, ConvForward, ConvGrads, ConvShape, Trans, Window};

/// `len` values in [-1, 1], a different sequence for each `seed`.
pub(crate) fn filled(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) / 1001.0).collect()
}

/// A convolution and its gradients by im2col + GEMM, image by image (the general path):
/// `y = conv(x, w) + bias`, and `dx`, `dw` added to the values they hold.
#[allow(clippy::too_many_arguments)]
pub(crate) fn reference_conv(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    dy: &[f32],
    g: &Window,
    batch: usize,
    c_out: usize,
    dx: &mut [f32],
    dw: &mut [f32],
) -> Vec<f32> {
    let (rows, cols, in_size) = (g.col_rows(), g.col_cols(), g.channels * g.height * g.width);
    let mut y = vec![0.0; batch * c_out * cols];
    let mut col = vec![0.0; rows * cols];
    for n in 0..batch {
        im2col(&x[n * in_size..(n + 1) * in_size], g, &mut col, cols);
        let y_n = &mut y[n * c_out * cols..(n + 1) * c_out * cols];
        sgemm(Trans::N, Trans::N, c_out, cols, rows, 1.0, w, &col, 0.0, y_n);
        y_n.iter_mut().enumerate().for_each(|(i, v)| *v += bias[i / cols]);
        let dy_n = &dy[n * c_out * cols..(n + 1) * c_out * cols];
        sgemm(Trans::N, Trans::T, c_out, rows, cols, 1.0, dy_n, &col, 1.0, dw);
        let mut dcol = vec![0.0; rows * cols];
        sgemm(Trans::T, Trans::N, rows, cols, c_out, 1.0, w, dy_n, 0.0, &mut dcol);
        col2im_add(&dcol, g, &mut dx[n * in_size..(n + 1) * in_size], cols);
    }
    y
}

/// Asserts `|got - want| <= tol (1 + |want|)` element by element, naming the first miss.
pub(crate) fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}[{i}]: {a} vs {b}");
    }
}

/// A convolution's forward and backward (dx added to and stored into a new buffer, dw added
/// to) against [`reference_conv`], for one of the algorithms (they share these signatures).
/// The outputs must match within 1e-4 relative, the gradients (longer sums) within `tol`.
pub(crate) fn check_conv_against_reference(shape: &ConvShape, tol: f32, forward: ConvForward, backward: ConvBackward) {
    let ConvShape { window: g, batch, c_out } = *shape;
    let (rows, cols) = (g.col_rows(), g.col_cols());
    let (x, w, bias) = (filled(batch * g.channels * g.height * g.width, 1), filled(c_out * rows, 2), filled(c_out, 3));
    let dy = filled(batch * c_out * cols, 4);
    let mut y = vec![f32::NAN; batch * c_out * cols];
    forward(&x, &w, Some(&bias), shape, &mut y);
    let (mut dx, mut dw) = (vec![0.5; x.len()], vec![0.25; w.len()]);
    backward(&x, &w, &dy, shape, ConvGrads { dx: Some(&mut dx), store_dx: false, dw: Some(&mut dw) });
    // Stored into a new buffer: every element written (NaNs would show the others).
    let mut stored_dx = vec![f32::NAN; x.len()];
    backward(&x, &w, &dy, shape, ConvGrads { dx: Some(&mut stored_dx), store_dx: true, dw: None });
    let (mut want_dx, mut want_dw) = (vec![0.5; x.len()], vec![0.25; w.len()]);
    let want_y = reference_conv(&x, &w, &bias, &dy, &g, batch, c_out, &mut want_dx, &mut want_dw);
    assert_close(&format!("{g:?} y"), &y, &want_y, 1e-4);
    assert_close(&format!("{g:?} dx"), &dx, &want_dx, tol);
    let stored_plus_half: Vec<f32> = stored_dx.iter().map(|v| v + 0.5).collect();
    assert_close(&format!("{g:?} stored dx"), &stored_plus_half, &want_dx, tol);
    assert_close(&format!("{g:?} dw"), &dw, &want_dw, tol);
}
