//! linear (`x W^T + b`) and matmul: forward and backward side by side.

use crate::autograd::{Grads, Graph, Values, Var};
use crate::error::{EngineError, Result};
use crate::kernels::{sgemm, Trans};
use crate::op::{LinearSaved, MatmulSaved, Op};
use crate::tensor::Tensor;

impl Graph<'_> {
    /// `y[B, out] = x[B, in] @ W[out, in]^T + b[out]`.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        if xs.len() != 2 || ws.len() != 2 || xs[1] != ws[1] {
            return Err(EngineError::Shape(format!(
                "linear: input {xs:?} does not fit weight {ws:?} (expected input [batch, {}])",
                ws.get(1).copied().unwrap_or(0)
            )));
        }
        let (batch, fan_in, fan_out) = (xs[0], xs[1], ws[0]);
        if let Some(b) = b {
            if self.shape(b) != [fan_out] {
                return Err(EngineError::Shape(format!("linear: bias {:?} does not fit weight {ws:?}", self.shape(b))));
            }
        }
        let mut y = Tensor::for_overwrite(&[batch, fan_out]);
        // y [B, out] = x [B, in] @ W^T [in, out]
        sgemm(
            Trans::N,
            Trans::T,
            batch,
            fan_out,
            fan_in,
            1.0,
            self.value(x).data(),
            self.value(w).data(),
            0.0,
            y.data_mut(),
        );
        if let Some(b) = b {
            let bias = self.value(b).data();
            for row in y.data_mut().chunks_mut(fan_out) {
                for (v, &bv) in row.iter_mut().zip(bias) {
                    *v += bv;
                }
            }
        }
        let inputs: Vec<Var> = [x, w].into_iter().chain(b).collect();
        Ok(self.record(Op::Linear(LinearSaved { x, w, b }), y, &inputs))
    }

    /// `c[M, N] = a[M, K] @ b[K, N]`.
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        let (as_, bs) = (self.shape(a), self.shape(b));
        if as_.len() != 2 || bs.len() != 2 || as_[1] != bs[0] {
            return Err(EngineError::Shape(format!("matmul: {as_:?} @ {bs:?}: inner dimensions differ")));
        }
        let (m, k, n) = (as_[0], as_[1], bs[1]);
        let mut c = Tensor::for_overwrite(&[m, n]);
        sgemm(Trans::N, Trans::N, m, n, k, 1.0, self.value(a).data(), self.value(b).data(), 0.0, c.data_mut());
        Ok(self.record(Op::Matmul(MatmulSaved { a, b }), c, &[a, b]))
    }
}

/// dx [B, in] += dy [B, out] @ W [out, in];  dW [out, in] += dy^T @ x;  db [out] += column sums of dy.
impl LinearSaved {
    pub(crate) fn backward(&self, values: &Values, grads: &mut Grads, dy: &[f32]) {
        let LinearSaved { x, w, b } = *self;
        let (xv, wv) = (values.get(x), values.get(w));
        let (batch, fan_in, fan_out) = (xv.shape()[0], xv.shape()[1], wv.shape()[0]);
        // A new dx buffer is written by the product (beta 0) rather than zeroed and added to.
        if let Some((dx, fresh)) = grads.slot_fresh(x) {
            let beta = if fresh { 0.0 } else { 1.0 };
            sgemm(Trans::N, Trans::N, batch, fan_in, fan_out, 1.0, dy, wv.data(), beta, dx);
        }
        if let Some(dw) = grads.slot(w) {
            sgemm(Trans::T, Trans::N, fan_out, fan_in, batch, 1.0, dy, xv.data(), 1.0, dw);
        }
        if let Some(db) = b.and_then(|b| grads.slot(b)) {
            for row in dy.chunks(fan_out) {
                for (g, &d) in db.iter_mut().zip(row) {
                    *g += d;
                }
            }
        }
    }
}

/// da [M, K] += dc [M, N] @ b^T;  db [K, N] += a^T @ dc.
impl MatmulSaved {
    pub(crate) fn backward(&self, values: &Values, grads: &mut Grads, dc: &[f32]) {
        let MatmulSaved { a, b } = *self;
        let (av, bv) = (values.get(a), values.get(b));
        let (m, k, n) = (av.shape()[0], av.shape()[1], bv.shape()[1]);
        if let Some(da) = grads.slot(a) {
            sgemm(Trans::N, Trans::T, m, k, n, 1.0, dc, bv.data(), 1.0, da);
        }
        if let Some(db) = grads.slot(b) {
            sgemm(Trans::T, Trans::N, k, n, m, 1.0, av.data(), dc, 1.0, db);
        }
    }
}
