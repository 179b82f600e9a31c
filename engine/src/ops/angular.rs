//! Angle-based projections (SphereNet's operators, Liu et al. 2017), used by CNN-9 in the
//! paper's dispersion analysis: forward and backward side by side.
//!
//! For rows x_i of x [B, n] and w_j of W [m, n] (no bias):
//!
//! ```text
//! c_ij     = <x_i, w_j> / (|x_i| |w_j|)            (cosine of the angle theta_ij)
//! theta_ij = acos(clamp(c_ij, -1 + 1e-6, 1 - 1e-6))
//! direct   y_ij = f(theta_ij)                      (input and weight normalized)
//! indirect y_ij = |x_i| f(theta_ij)                (weights normalized only: "W-Softmax")
//! ```
//!
//! with f one of
//!
//! ```text
//! linear   f = 1 - 2 theta / pi
//! cosine   f = cos theta = c                       (no acos, so no clamp)
//! sigmoid  f = K (1 - e^u) / (1 + e^u),  u = theta/k - pi/(2k),  k = 0.3,
//!          K = (1 + e^(-pi/2k)) / (1 - e^(-pi/2k))  (so f(0) = 1, f(pi/2) = 0, f(pi) = -1)
//! ```
//!
//! Norms are `sqrt(sum x^2 + 1e-12)`: the tiny epsilon keeps a zero row finite, and since
//! it sits inside the square root the derivative `d|x|/dx = x / |x|` stays exact.
//!
//! Backward. With `g = dL/dy` and `f'(c) = df/dc` (zero where the clamp is active, as
//! the clamped function is flat there), let `gc_ij = dL/dc_ij`:
//! direct `gc = g f'(c)`, indirect `gc = g |x_i| f'(c)`. From
//!
//! ```text
//! dc_ij/dx_i = w_j / (|x_i| |w_j|) - c_ij x_i / |x_i|^2
//! dc_ij/dw_j = x_i / (|x_i| |w_j|) - c_ij w_j / |w_j|^2
//! ```
//!
//! and `A_ij = gc_ij / (|x_i| |w_j|)`, two GEMMs and two diagonal corrections give
//!
//! ```text
//! dX = A W   - diag(sum_j gc_ij c_ij / |x_i|^2) X   [ + diag(sum_j g_ij f_ij / |x_i|) X  indirect ]
//! dW = A^T X - diag(sum_i gc_ij c_ij / |w_j|^2) W
//! ```
//!
//! where the bracket is the derivative of the `|x_i|` factor of the indirect projection.
//! `f'(c)`: linear `(2/pi) / sqrt(1 - c^2)`; cosine `1`; sigmoid
//! `2 K e^u / (k (1 + e^u)^2 sqrt(1 - c^2))` (from `df/dtheta = -2 K e^u / (k (1 + e^u)^2)`
//! and `dtheta/dc = -1 / sqrt(1 - c^2)`).

use std::f64::consts::PI;

use crate::autograd::{Grads, Graph, Values, Var};
use crate::error::{EngineError, Result};
use crate::kernels::{sgemm, Trans};
pub use crate::op::{AngleFn, Projection};
use crate::op::{AngularSaved, Op};
use crate::tensor::Tensor;

/// Cosines are clamped to `[-COS_LIMIT, COS_LIMIT]` before `acos`, whose slope is infinite at +-1.
const COS_LIMIT: f64 = 1.0 - 1e-6;
/// Added to squared norms so that an all-zero row has a finite (tiny) norm.
const NORM_EPS: f64 = 1e-12;
/// SphereConv's sigmoid sharpness k.
const SIGMOID_K: f64 = 0.3;

impl AngleFn {
    /// `(f, df/dc)` at cosine `c`.
    fn eval(self, c: f64) -> (f64, f64) {
        if self == AngleFn::Cosine {
            return (c, 1.0);
        }
        let inside = c.abs() < COS_LIMIT;
        let cc = c.clamp(-COS_LIMIT, COS_LIMIT);
        let theta = cc.acos();
        // 1 / sqrt(1 - c^2) = -dtheta/dc; zero outside the clamp, where f is flat in c.
        let dtheta = if inside { 1.0 / (1.0 - cc * cc).sqrt() } else { 0.0 };
        match self {
            AngleFn::Linear => (1.0 - 2.0 * theta / PI, 2.0 / PI * dtheta),
            AngleFn::Sigmoid => {
                let k = SIGMOID_K;
                let big_k = (1.0 + (-PI / (2.0 * k)).exp()) / (1.0 - (-PI / (2.0 * k)).exp());
                let e = (theta / k - PI / (2.0 * k)).exp();
                let f = big_k * (1.0 - e) / (1.0 + e);
                (f, 2.0 * big_k * e / (k * (1.0 + e) * (1.0 + e)) * dtheta)
            }
            AngleFn::Cosine => unreachable!("handled above"),
        }
    }
}

/// `sqrt(sum v^2 + eps)` of each row of a row-major [rows, cols] matrix.
fn row_norms(data: &[f32], cols: usize) -> Vec<f32> {
    data.chunks(cols).map(|r| (r.iter().map(|&v| v as f64 * v as f64).sum::<f64>() + NORM_EPS).sqrt() as f32).collect()
}

impl Graph<'_> {
    /// Angle-based projection of x [B, n] onto the rows of w [m, n]: `y[B, m] = f(theta)`
    /// (direct) or `|x| f(theta)` (indirect); see the module docs for the math.
    pub fn angular(&mut self, x: Var, w: Var, f: AngleFn, projection: Projection) -> Result<Var> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        if xs.len() != 2 || ws.len() != 2 || xs[1] != ws[1] {
            return Err(EngineError::Shape(format!(
                "angular: input {xs:?} does not fit weight {ws:?} (expected input [batch, {}])",
                ws.get(1).copied().unwrap_or(0)
            )));
        }
        let (batch, n, m) = (xs[0], xs[1], ws[0]);
        let (xv, wv) = (self.value(x).data(), self.value(w).data());
        let (x_norm, w_norm) = (row_norms(xv, n), row_norms(wv, n));
        // cos [B, m] = x [B, n] @ W^T [n, m], then divided by both norms.
        let mut cos = vec![0.0f32; batch * m];
        sgemm(Trans::N, Trans::T, batch, m, n, 1.0, xv, wv, 0.0, &mut cos);
        let mut y = Tensor::zeros(&[batch, m]);
        for (i, (c_row, y_row)) in cos.chunks_mut(m).zip(y.data_mut().chunks_mut(m)).enumerate() {
            let scale = if projection == Projection::Indirect { x_norm[i] as f64 } else { 1.0 };
            for (j, (c, y)) in c_row.iter_mut().zip(y_row).enumerate() {
                *c = (*c as f64 / (x_norm[i] as f64 * w_norm[j] as f64)) as f32;
                *y = (scale * f.eval(*c as f64).0) as f32;
            }
        }
        Ok(self.record(Op::Angular(AngularSaved { x, w, f, projection, x_norm, w_norm, cos }), y, &[x, w]))
    }
}

/// Gradients for x and w; the derivation is in the module docs.
#[allow(clippy::too_many_arguments)]
impl AngularSaved {
    pub(crate) fn backward(&self, values: &Values, grads: &mut Grads, dy: &[f32]) {
        let (x, w, f, projection) = (self.x, self.w, self.f, self.projection);
        let (x_norm, w_norm, cos) = (&self.x_norm[..], &self.w_norm[..], &self.cos[..]);
        let (xv, wv) = (values.get(x), values.get(w));
        let (batch, n, m) = (xv.shape()[0], xv.shape()[1], wv.shape()[0]);
        let indirect = projection == Projection::Indirect;
        // A = gc / (|x_i| |w_j|), and the sums that scale the diagonal corrections.
        let mut a = vec![0.0f32; batch * m];
        let mut row_coef = vec![0.0f32; batch];
        let mut col_sum = vec![0.0f64; m];
        for i in 0..batch {
            let nx = x_norm[i] as f64;
            let mut gc_c = 0.0f64;
            let mut g_f = 0.0f64;
            for j in 0..m {
                let k = i * m + j;
                let c = cos[k] as f64;
                let (fv, dfdc) = f.eval(c);
                let g = dy[k] as f64;
                let gc = if indirect { g * nx * dfdc } else { g * dfdc };
                a[k] = (gc / (nx * w_norm[j] as f64)) as f32;
                gc_c += gc * c;
                col_sum[j] += gc * c;
                g_f += g * fv;
            }
            let mut coef = gc_c / (nx * nx);
            if indirect {
                coef -= g_f / nx;
            }
            row_coef[i] = coef as f32;
        }
        if let Some(dx) = grads.slot(x) {
            // dX += A [B, m] @ W [m, n] - diag(row_coef) X
            sgemm(Trans::N, Trans::N, batch, n, m, 1.0, &a, wv.data(), 1.0, dx);
            for ((d_row, x_row), &coef) in dx.chunks_mut(n).zip(xv.data().chunks(n)).zip(&row_coef) {
                d_row.iter_mut().zip(x_row).for_each(|(d, &v)| *d -= coef * v);
            }
        }
        if let Some(dw) = grads.slot(w) {
            // dW += A^T [m, B] @ X [B, n] - diag(col_sum / |w_j|^2) W
            sgemm(Trans::T, Trans::N, m, n, batch, 1.0, &a, xv.data(), 1.0, dw);
            for (j, (d_row, w_row)) in dw.chunks_mut(n).zip(wv.data().chunks(n)).enumerate() {
                let nw = w_norm[j] as f64;
                let coef = (col_sum[j] / (nw * nw)) as f32;
                d_row.iter_mut().zip(w_row).for_each(|(d, &v)| *d -= coef * v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::Mode;
    use crate::params::ParamStore;

    /// Angles 0, pi/2 and pi map to 1, 0, -1 for every f; indirect scales by |x|; a zero
    /// row stays finite (its cosine is 0).
    #[test]
    fn known_angles_and_zero_row() {
        let mut store = ParamStore::new();
        let mut g = Graph::new(&mut store, Mode::Eval, 0);
        let x = g.input(Tensor::from_vec(&[2, 2], vec![2.0, 0.0, 0.0, 0.0]).unwrap());
        let w = g.input(Tensor::from_vec(&[3, 2], vec![1.0, 0.0, 0.0, 3.0, -1.0, 0.0]).unwrap());
        for f in [AngleFn::Linear, AngleFn::Cosine, AngleFn::Sigmoid] {
            for (projection, scale) in [(Projection::Direct, 1.0), (Projection::Indirect, 2.0)] {
                let y = g.angular(x, w, f, projection).unwrap();
                let y = g.value(y).data();
                // The clamp moves theta = 0 to acos(1 - 1e-6) ~ 1.4e-3, hence the tolerance.
                for (got, want) in y[..3].iter().zip([scale, 0.0, -scale]) {
                    assert!((got - want).abs() < 5e-3, "{f:?} {projection:?}: {got} vs {want}");
                }
                assert!(y[3..].iter().all(|v| v.abs() < 1e-5), "{f:?} {projection:?}: zero row gave {:?}", &y[3..]);
            }
        }
    }
}
