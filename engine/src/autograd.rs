//! The tape: a [`Graph`] records each op as a node in execution order; [`Graph::backward`]
//! walks the nodes once in reverse and calls each op's own backward function.
//!
//! Parameters are not copied onto the tape: a parameter node refers to its entry in the
//! [`ParamStore`], and its gradient is accumulated straight into the store's buffer.

use crate::error::{EngineError, Result};
use crate::kernels::Window;
use crate::ops;
use crate::params::{ParamId, ParamStore};
use crate::tensor::Tensor;

/// Handle to a value recorded on a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(pub(crate) usize);

/// Training (batch statistics, dropout on, gradients recorded) or evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Record ops for backward; batch-norm uses batch statistics; dropout is active.
    Train,
    /// Record nothing; batch-norm uses running statistics; dropout is the identity.
    Eval,
}

/// The closed set of ops; each variant keeps what its backward pass needs.
#[derive(Debug)]
pub enum Op {
    /// An input or constant: nothing to propagate further.
    Leaf,
    /// A value read from the parameter store.
    Param(ParamId),
    /// `x W^T + b`.
    Linear { x: Var, w: Var, b: Option<Var> },
    /// `a @ b`.
    Matmul { a: Var, b: Var },
    /// 2-D convolution, im2col + GEMM.
    Conv2d { x: Var, w: Var, b: Option<Var>, window: Window },
    /// Max-pooling; `argmax` holds, per output, the input index that won.
    MaxPool2d { x: Var, window: Window, argmax: Vec<u32> },
    /// Average pooling.
    AvgPool2d { x: Var, window: Window },
    /// Batch normalization in training mode; per-channel batch mean and 1/std.
    BatchNorm { x: Var, gamma: Var, beta: Var, mean: Vec<f32>, inv_std: Vec<f32> },
    /// Inverted dropout; `mask` holds 0 or 1/(1-p).
    Dropout { x: Var, mask: Vec<f32> },
    /// max(x, 0).
    Relu { x: Var },
    /// 1 / (1 + e^-x).
    Sigmoid { x: Var },
    /// tanh(x).
    Tanh { x: Var },
    /// a + b (same shape, or b a bias broadcast over the rows of a).
    Add { a: Var, b: Var },
    /// a * b elementwise (same shape).
    Mul { a: Var, b: Var },
    /// factor * x.
    Scale { x: Var, factor: f32 },
    /// Sum of all elements.
    Sum { x: Var },
    /// Mean of all elements.
    Mean { x: Var },
    /// Same data, new shape.
    Reshape { x: Var },
    /// Mean softmax cross-entropy over the batch; `probs` are the softmax outputs.
    SoftmaxCrossEntropy { logits: Var, labels: Vec<usize>, probs: Vec<f32> },
    /// The spherization map (rows [B, n] -> [B, n+1], or channels [N, C, H, W] -> [N, C+1, H, W]).
    Spherize { z: Var, alpha: Var, radius: Var, phi_lower: f64 },
    /// Angle-based projection of rows [B, n] onto weight rows [m, n]; keeps the norms and cosines.
    Angular {
        x: Var,
        w: Var,
        f: ops::angular::AngleFn,
        projection: ops::angular::Projection,
        x_norm: Vec<f32>,
        w_norm: Vec<f32>,
        cos: Vec<f32>,
    },
}

/// One recorded value and the op that produced it.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) op: Op,
    /// Empty for parameter nodes (their value lives in the store).
    pub(crate) value: Tensor,
    /// Whether any gradient needs to flow into this node.
    pub(crate) needs_grad: bool,
}

/// A tape of ops for one forward (and backward) pass over a model's parameters.
pub struct Graph<'p> {
    pub(crate) params: &'p mut ParamStore,
    pub(crate) nodes: Vec<Node>,
    mode: Mode,
    seed: u64,
    /// Gradients of leaf nodes created with [`Graph::variable`], kept after backward.
    leaf_grads: Vec<Option<Tensor>>,
}

/// Read access to every value on the tape, for backward functions.
pub struct Values<'a> {
    nodes: &'a [Node],
    params: &'a [Tensor],
}

impl<'a> Values<'a> {
    /// The value of `v`, wherever it lives.
    pub fn get(&self, v: Var) -> &'a Tensor {
        match self.nodes[v.0].op {
            Op::Param(id) => &self.params[id.0],
            _ => &self.nodes[v.0].value,
        }
    }
}

/// Write access to gradient buffers, for backward functions.
pub struct Grads<'a> {
    nodes: &'a [Node],
    node_grads: &'a mut [Option<Tensor>],
    param_grads: &'a mut [Tensor],
}

impl Grads<'_> {
    /// The gradient buffer of `v` to accumulate into, or `None` when no gradient is wanted.
    /// Allocated (zeroed) on first use; parameter gradients go straight to the store.
    pub fn slot(&mut self, v: Var) -> Option<&mut [f32]> {
        let node = &self.nodes[v.0];
        if !node.needs_grad {
            return None;
        }
        match node.op {
            Op::Param(id) => Some(self.param_grads[id.0].data_mut()),
            _ => Some(self.node_grads[v.0].get_or_insert_with(|| Tensor::zeros(node.value.shape())).data_mut()),
        }
    }
}

impl<'p> Graph<'p> {
    /// A new, empty tape over `params`. `seed` drives dropout masks for this pass.
    pub fn new(params: &'p mut ParamStore, mode: Mode, seed: u64) -> Self {
        Graph { params, nodes: Vec::new(), mode, seed, leaf_grads: Vec::new() }
    }

    /// The mode this graph runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True in training mode (gradients are recorded).
    pub fn is_training(&self) -> bool {
        self.mode == Mode::Train
    }

    /// The seed of this pass (for dropout).
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// The parameter store this graph reads.
    pub fn params(&self) -> &ParamStore {
        self.params
    }

    /// Mutable access to the store, for running statistics.
    pub(crate) fn params_mut(&mut self) -> &mut ParamStore {
        self.params
    }

    /// Records a constant input.
    pub fn input(&mut self, value: Tensor) -> Var {
        self.push_node(Op::Leaf, value, false)
    }

    /// Records an input whose gradient is wanted (read it with [`Graph::grad`] after backward).
    pub fn variable(&mut self, value: Tensor) -> Var {
        let needs = self.is_training();
        self.push_node(Op::Leaf, value, needs)
    }

    /// Brings a parameter onto the tape without copying it.
    pub fn param(&mut self, id: ParamId) -> Var {
        let needs = self.is_training() && self.params.kind(id) == crate::params::Kind::Learnable;
        self.push_node(Op::Param(id), Tensor::zeros(&[0]), needs)
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> &Tensor {
        match self.nodes[v.0].op {
            Op::Param(id) => self.params.value(id),
            _ => &self.nodes[v.0].value,
        }
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> &[usize] {
        self.value(v).shape()
    }

    /// The gradient of a [`Graph::variable`] after backward.
    pub fn grad(&self, v: Var) -> Option<&Tensor> {
        self.leaf_grads.get(v.0).and_then(|g| g.as_ref())
    }

    fn push_node(&mut self, op: Op, value: Tensor, needs_grad: bool) -> Var {
        self.nodes.push(Node { op, value, needs_grad });
        Var(self.nodes.len() - 1)
    }

    /// Records the result of an op. In evaluation mode, or when no input needs a gradient,
    /// the op is dropped and only the value is kept, so nothing is saved for backward.
    pub(crate) fn record(&mut self, op: Op, value: Tensor, inputs: &[Var]) -> Var {
        let needs_grad = self.is_training() && inputs.iter().any(|v| self.nodes[v.0].needs_grad);
        let op = if needs_grad { op } else { Op::Leaf };
        self.push_node(op, value, needs_grad)
    }

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
        let values = Values { nodes: &self.nodes, params: &params.values };
        for i in (0..=loss.0).rev() {
            let node = &self.nodes[i];
            if matches!(node.op, Op::Leaf | Op::Param(_)) {
                continue; // leaves keep their gradient; parameter gradients are already in the store
            }
            let Some(dy) = node_grads[i].take() else { continue };
            let mut grads = Grads { nodes: &self.nodes, node_grads: &mut node_grads, param_grads: &mut params.grads };
            let dy = dy.data();
            match &node.op {
                Op::Leaf | Op::Param(_) => unreachable!(),
                Op::Linear { x, w, b } => ops::linalg::linear_backward(&values, &mut grads, dy, *x, *w, *b),
                Op::Matmul { a, b } => ops::linalg::matmul_backward(&values, &mut grads, dy, *a, *b),
                Op::Conv2d { x, w, b, window } => {
                    ops::conv::conv2d_backward(&values, &mut grads, dy, *x, *w, *b, window)
                }
                Op::MaxPool2d { x, window, argmax } => {
                    ops::pool::max_pool2d_backward(&mut grads, dy, *x, window, argmax)
                }
                Op::AvgPool2d { x, window } => ops::pool::avg_pool2d_backward(&mut grads, dy, *x, window),
                Op::BatchNorm { x, gamma, beta, mean, inv_std } => {
                    ops::norm::batch_norm_backward(&values, &mut grads, dy, *x, *gamma, *beta, mean, inv_std)
                }
                Op::Dropout { x, mask } => ops::elementwise::dropout_backward(&mut grads, dy, *x, mask),
                Op::Relu { x } => ops::elementwise::relu_backward(&values, &mut grads, dy, *x),
                Op::Sigmoid { x } => ops::elementwise::sigmoid_backward(&mut grads, dy, *x, &node.value),
                Op::Tanh { x } => ops::elementwise::tanh_backward(&mut grads, dy, *x, &node.value),
                Op::Add { a, b } => ops::elementwise::add_backward(&values, &mut grads, dy, *a, *b),
                Op::Mul { a, b } => ops::elementwise::mul_backward(&values, &mut grads, dy, *a, *b),
                Op::Scale { x, factor } => ops::elementwise::scale_backward(&mut grads, dy, *x, *factor),
                Op::Sum { x } => ops::reduce::sum_backward(&mut grads, dy, *x, 1.0),
                Op::Mean { x } => {
                    let n = values.get(*x).len() as f32;
                    ops::reduce::sum_backward(&mut grads, dy, *x, 1.0 / n)
                }
                Op::Reshape { x } => ops::reduce::reshape_backward(&mut grads, dy, *x),
                Op::SoftmaxCrossEntropy { logits, labels, probs } => {
                    ops::loss::softmax_cross_entropy_backward(&mut grads, dy, *logits, labels, probs)
                }
                Op::Spherize { z, alpha, radius, phi_lower } => {
                    ops::spherize::spherize_backward(&values, &mut grads, dy, *z, *alpha, *radius, *phi_lower)
                }
                Op::Angular { x, w, f, projection, x_norm, w_norm, cos } => ops::angular::angular_backward(
                    &values,
                    &mut grads,
                    dy,
                    *x,
                    *w,
                    *f,
                    *projection,
                    x_norm,
                    w_norm,
                    cos,
                ),
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
