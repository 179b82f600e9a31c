//! The reverse walk: `Graph::backward` visits the tape's nodes once, last to first, and
//! hands each node's output gradient to its op's backward method (in `ops/`, next to the
//! forward). The one `match` over [`Op`] lives here, above the ops, so that the tape below
//! them needs none of their code.

use crate::autograd::{Grads, Graph, Values, Var};
use crate::error::{EngineError, Result};
use crate::op::Op;
use crate::tensor::Tensor;

impl Graph<'_> {
    /// Reverse-mode differentiation of the scalar `loss`: walks the tape once, from the
    /// last node to the first, accumulating into parameter gradients in the store (which
    /// are not zeroed here) and into the gradients of [`Graph::variable`] inputs.
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        if self.value(loss).len() != 1 {
            return Err(EngineError::Shape(format!(
                "backward needs a scalar loss, found shape {:?}",
                self.shape(loss)
            )));
        }
        if !self.nodes[loss.0].needs_grad {
            return Err(EngineError::Config(
                "backward: the loss does not depend on anything trainable (evaluation mode?)".into(),
            ));
        }
        let mut node_grads: Vec<Option<Tensor>> = (0..self.nodes.len()).map(|_| None).collect();
        node_grads[loss.0] = Some(Tensor::ones(self.shape(loss)));
        let params = &mut *self.params;
        for i in (0..=loss.0).rev() {
            let node = &self.nodes[i];
            if matches!(node.op, Op::Leaf | Op::Param(_)) {
                continue; // leaves keep their gradient; parameter gradients are already in the store
            }
            let Some(dy) = node_grads[i].take() else { continue };
            let values = Values { nodes: &self.nodes, params: &params.values, current: i };
            let mut grads = Grads { nodes: &self.nodes, node_grads: &mut node_grads, param_grads: &mut params.grads };
            let (g, dy) = (&mut grads, dy.data());
            let clock = crate::profile::clock();
            match &node.op {
                Op::Leaf | Op::Param(_) => unreachable!("skipped above"),
                Op::Linear(s) => s.backward(&values, g, dy),
                Op::Matmul(s) => s.backward(&values, g, dy),
                Op::Conv2d(s) => s.backward(&values, g, dy),
                Op::MaxPool2d(s) => s.backward(&values, g, dy),
                Op::AvgPool2d(s) => s.backward(&values, g, dy),
                Op::BatchNorm(s) => s.backward(&values, g, dy),
                Op::Dropout(s) => s.backward(&values, g, dy),
                Op::Relu(s) => s.backward(&values, g, dy),
                Op::Sigmoid(s) => s.backward(&values, g, dy),
                Op::Tanh(s) => s.backward(&values, g, dy),
                Op::Add(s) => s.backward(&values, g, dy),
                Op::Mul(s) => s.backward(&values, g, dy),
                Op::Scale(s) => s.backward(&values, g, dy),
                Op::Sum(s) => s.backward(&values, g, dy),
                Op::Reshape(s) => s.backward(&values, g, dy),
                Op::SoftmaxCrossEntropy(s) => s.backward(&values, g, dy),
                Op::Spherize(s) => s.backward(&values, g, dy),
                Op::Angular(s) => s.backward(&values, g, dy),
            }
            if let Some(start) = clock {
                crate::profile::add(node.op.name(), start.elapsed(), true);
            }
        }
        // Keep the gradients of variables (leaves that asked for one) for the caller.
        self.leaf_grads = node_grads
            .into_iter()
            .zip(&self.nodes)
            .map(|(g, n)| if matches!(n.op, Op::Leaf) && n.needs_grad { g } else { None })
            .collect();
        Ok(())
    }
}
