//! sum, mean and reshape: forward and backward.

use crate::autograd::{Grads, Graph, Op, Var};
use crate::error::Result;
use crate::kernels::parallel;
use crate::tensor::Tensor;

impl Graph<'_> {
    /// Sum of all elements, as a scalar.
    pub fn sum(&mut self, x: Var) -> Var {
        let s = parallel::sum(self.value(x).data()) as f32;
        self.record(Op::Sum { x }, Tensor::scalar(s), &[x])
    }

    /// Mean of all elements, as a scalar.
    pub fn mean(&mut self, x: Var) -> Var {
        let v = self.value(x);
        let m = (parallel::sum(v.data()) / v.len().max(1) as f64) as f32;
        self.record(Op::Mean { x }, Tensor::scalar(m), &[x])
    }

    /// Same data under a new shape.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let y = self.value(x).clone().reshape(shape)?;
        Ok(self.record(Op::Reshape { x }, y, &[x]))
    }

    /// [N, ...] -> [N, prod(...)].
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let s = self.shape(x);
        let rows = s.first().copied().unwrap_or(1);
        let cols = s.iter().skip(1).product();
        self.reshape(x, &[rows, cols])
    }
}

/// dx += factor * dy (a scalar broadcast): 1 for sum, 1/n for mean.
pub(crate) fn sum_backward(grads: &mut Grads, dy: &[f32], x: Var, factor: f32) {
    if let Some(dx) = grads.slot(x) {
        let g = dy[0] * factor;
        dx.iter_mut().for_each(|d| *d += g);
    }
}

/// dx += dy, element for element (only the shape changed).
pub(crate) fn reshape_backward(grads: &mut Grads, dy: &[f32], x: Var) {
    if let Some(dx) = grads.slot(x) {
        parallel::axpy(dx, 1.0, dy);
    }
}
