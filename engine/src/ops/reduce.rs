//! sum, mean and reshape: forward and backward.

use crate::autograd::{Grads, Graph, Values, Var};
use crate::error::Result;
use crate::kernels::parallel;
use crate::op::{Op, ReshapeSaved, SumSaved};
use crate::tensor::Tensor;

impl Graph<'_> {
    /// Sum of all elements, as a scalar.
    pub fn sum(&mut self, x: Var) -> Var {
        let s = parallel::sum(self.value(x).data()) as f32;
        self.record(Op::Sum(SumSaved { x, factor: 1.0 }), Tensor::scalar(s), &[x])
    }

    /// Mean of all elements, as a scalar.
    pub fn mean(&mut self, x: Var) -> Var {
        let v = self.value(x);
        let n = v.len().max(1) as f32;
        let m = (parallel::sum(v.data()) / n as f64) as f32;
        self.record(Op::Sum(SumSaved { x, factor: 1.0 / n }), Tensor::scalar(m), &[x])
    }

    /// Same data under a new shape.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let y = self.value(x).clone().reshape(shape)?;
        Ok(self.record(Op::Reshape(ReshapeSaved { x }), y, &[x]))
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
impl SumSaved {
    pub(crate) fn backward(&self, _values: &Values, grads: &mut Grads, dy: &[f32]) {
        let SumSaved { x, factor } = *self;
        // A fresh gradient buffer is filled, not zeroed and then added to: one pass, not two.
        if let Some((dx, fresh)) = grads.slot_fresh(x) {
            let g = dy[0] * factor;
            if fresh {
                parallel::update(dx, |d| *d = g);
            } else {
                parallel::update(dx, |d| *d += g);
            }
        }
    }
}

/// dx += dy, element for element (only the shape changed).
impl ReshapeSaved {
    pub(crate) fn backward(&self, _values: &Values, grads: &mut Grads, dy: &[f32]) {
        let x = self.x;
        if let Some((dx, fresh)) = grads.slot_fresh(x) {
            if fresh {
                parallel::map(dx, dy, |v| v);
            } else {
                parallel::axpy(dx, 1.0, dy);
            }
        }
    }
}
