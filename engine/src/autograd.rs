//! The tape: a [`Graph`] records each op as a node in execution order, holding its value
//! and what its backward pass needs (`op.rs`); `Graph::backward` (in `backward.rs`)
//! walks the nodes once in reverse. This file knows no op's math and imports nothing from
//! `ops/`.
//!
//! Parameters are not copied onto the tape: a parameter node refers to its entry in the
//! [`ParamStore`], and its gradient is accumulated straight into the store's buffer.

use crate::op::Op;
pub use crate::op::Var;
use crate::params::{ParamId, ParamStore};
use crate::tensor::Tensor;

/// Training (batch statistics, dropout on, gradients recorded) or evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Record ops for backward; batch-norm uses batch statistics; dropout is active.
    Train,
    /// Record nothing; batch-norm uses running statistics; dropout is the identity.
    Eval,
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
///
/// ```
/// use engine::{Graph, Mode, ParamStore, Tensor};
/// let mut store = ParamStore::new();
/// let mut g = Graph::new(&mut store, Mode::Train, 0);
/// let x = g.variable(Tensor::from_vec(&[1, 3], vec![1.0, -2.0, 3.0])?);
/// let y = g.relu(x); // recorded on the tape
/// let loss = g.sum(y);
/// g.backward(loss)?; // walks the tape once, last node first
/// assert_eq!(g.grad(x).unwrap().data(), &[1.0, 0.0, 1.0]);
/// # Ok::<(), engine::EngineError>(())
/// ```
pub struct Graph<'p> {
    pub(crate) params: &'p mut ParamStore,
    pub(crate) nodes: Vec<Node>,
    mode: Mode,
    seed: u64,
    /// Gradients of leaf nodes created with [`Graph::variable`], kept after backward.
    pub(crate) leaf_grads: Vec<Option<Tensor>>,
    /// When the last node was pushed, while [`crate::profile`] collects.
    last_push: Option<std::time::Instant>,
}

/// Read access to every value on the tape, for backward functions.
pub struct Values<'a> {
    pub(crate) nodes: &'a [Node],
    pub(crate) params: &'a [Tensor],
    /// The node whose backward runs (its output is [`Values::output`]).
    pub(crate) current: usize,
}

impl<'a> Values<'a> {
    /// The value of `v`, wherever it lives.
    pub fn get(&self, v: Var) -> &'a Tensor {
        match self.nodes[v.0].op {
            Op::Param(id) => &self.params[id.0],
            _ => &self.nodes[v.0].value,
        }
    }

    /// The output of the op whose backward runs (sigmoid and tanh differentiate through it).
    pub fn output(&self) -> &'a Tensor {
        &self.nodes[self.current].value
    }
}

/// Write access to gradient buffers, for backward functions.
pub struct Grads<'a> {
    pub(crate) nodes: &'a [Node],
    pub(crate) node_grads: &'a mut [Option<Tensor>],
    pub(crate) param_grads: &'a mut [Tensor],
}

impl Grads<'_> {
    /// The gradient buffer of `v` to accumulate into, or `None` when no gradient is wanted.
    /// Allocated (zeroed) on first use; parameter gradients go straight to the store.
    pub fn slot(&mut self, v: Var) -> Option<&mut [f32]> {
        let (grad, fresh) = self.slot_fresh(v)?;
        if fresh {
            grad.fill(0.0);
        }
        Some(grad)
    }

    /// Like [`Grads::slot`], for an op that writes every element of the gradient: also says
    /// whether the buffer is new, in which case it is not zeroed and the op must store its
    /// values (`true`) rather than add them to what earlier ops accumulated (`false`).
    pub fn slot_fresh(&mut self, v: Var) -> Option<(&mut [f32], bool)> {
        let node = &self.nodes[v.0];
        if !node.needs_grad {
            return None;
        }
        match node.op {
            Op::Param(id) => Some((self.param_grads[id.0].data_mut(), false)),
            _ => {
                let fresh = self.node_grads[v.0].is_none();
                let grad = self.node_grads[v.0].get_or_insert_with(|| Tensor::for_overwrite(node.value.shape()));
                Some((grad.data_mut(), fresh))
            }
        }
    }

    /// The gradient buffers of two vars at once, for ops that fill both in one pass (each
    /// `None` when no gradient is wanted). The two must not share a buffer.
    pub fn two_slots(&mut self, a: Var, b: Var) -> (Option<&mut [f32]>, Option<&mut [f32]>) {
        // Allocate both first, then borrow them side by side.
        let (want_a, want_b) = (self.slot(a).is_some(), self.slot(b).is_some());
        let (nodes, node_grads, param_grads) = (self.nodes, &mut *self.node_grads, &mut *self.param_grads);
        let (ga, gb) = match (&nodes[a.0].op, &nodes[b.0].op) {
            (Op::Param(i), Op::Param(j)) => {
                let (x, y) = pair_mut(param_grads, i.0, j.0);
                (x.data_mut(), y.data_mut())
            }
            (Op::Param(i), _) => (param_grads[i.0].data_mut(), node_grad(node_grads, b.0)),
            (_, Op::Param(j)) => (node_grad(node_grads, a.0), param_grads[j.0].data_mut()),
            _ => {
                let (x, y) = pair_mut(node_grads, a.0, b.0);
                (grad_data(x), grad_data(y))
            }
        };
        (want_a.then_some(ga), want_b.then_some(gb))
    }
}

/// Mutable references to two different elements of a slice.
fn pair_mut<T>(items: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j, "two_slots: both vars share one gradient buffer");
    if i < j {
        let (head, tail) = items.split_at_mut(j);
        (&mut head[i], &mut tail[0])
    } else {
        let (head, tail) = items.split_at_mut(i);
        (&mut tail[0], &mut head[j])
    }
}

/// The data of a node gradient that [`Grads::slot`] allocated (an empty slice if none was).
fn grad_data(g: &mut Option<Tensor>) -> &mut [f32] {
    g.as_mut().map_or(&mut [], |t| t.data_mut())
}

/// [`grad_data`] of node `i`.
fn node_grad(node_grads: &mut [Option<Tensor>], i: usize) -> &mut [f32] {
    grad_data(&mut node_grads[i])
}

impl<'p> Graph<'p> {
    /// A new, empty tape over `params`. `seed` drives dropout masks for this pass.
    pub fn new(params: &'p mut ParamStore, mode: Mode, seed: u64) -> Self {
        Graph { params, nodes: Vec::new(), mode, seed, leaf_grads: Vec::new(), last_push: crate::profile::clock() }
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
        if let Some(start) = self.last_push {
            crate::profile::add(op.name(), start.elapsed(), false);
            self.last_push = crate::profile::clock();
        }
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
}
