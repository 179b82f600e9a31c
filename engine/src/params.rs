//! Parameters and buffers live here, outside the tape, with their gradient buffers.

use crate::tensor::Tensor;

/// Index of a parameter or buffer in a [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub(crate) usize);

/// Whether an entry is trained or only carried along (batch-norm running statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Receives gradients and optimizer updates.
    Learnable,
    /// State saved in checkpoints but never trained.
    Buffer,
}

/// All named tensors of a model: values, gradients (kept across steps) and kinds.
///
/// ```
/// use engine::{Graph, Mode, ParamStore, Tensor};
/// let mut store = ParamStore::new();
/// let w = store.add("w", Tensor::from_vec(&[2], vec![1.0, -2.0])?);
/// assert_eq!(store.find("w"), Some(w));
/// // Gradients accumulate into the store during backward; optimizers read them there.
/// let mut g = Graph::new(&mut store, Mode::Train, 0);
/// let wv = g.param(w);
/// let loss = g.sum(wv);
/// g.backward(loss)?;
/// assert_eq!(store.grad(w).data(), &[1.0, 1.0]);
/// # Ok::<(), engine::EngineError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    names: Vec<String>,
    kinds: Vec<Kind>,
    pub(crate) values: Vec<Tensor>,
    pub(crate) grads: Vec<Tensor>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a learnable parameter under a PyTorch-style name such as `features.0.weight`.
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> ParamId {
        self.push(name.into(), value, Kind::Learnable)
    }

    /// Adds a buffer (saved, not trained), such as `features.1.running_mean`.
    pub fn add_buffer(&mut self, name: impl Into<String>, value: Tensor) -> ParamId {
        self.push(name.into(), value, Kind::Buffer)
    }

    fn push(&mut self, name: String, value: Tensor, kind: Kind) -> ParamId {
        // Buffers never get gradients, so they carry an empty gradient tensor.
        let grad = match kind {
            Kind::Learnable => Tensor::zeros(value.shape()),
            Kind::Buffer => Tensor::zeros(&[0]),
        };
        self.names.push(name);
        self.kinds.push(kind);
        self.values.push(value);
        self.grads.push(grad);
        ParamId(self.names.len() - 1)
    }

    /// Number of entries (parameters and buffers).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the store is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every entry's id, in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.names.len()).map(ParamId)
    }

    /// Ids of the learnable parameters, in insertion order.
    pub fn learnable(&self) -> impl Iterator<Item = ParamId> + '_ {
        self.ids().filter(|&id| self.kinds[id.0] == Kind::Learnable)
    }

    /// The entry's name.
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    /// The entry's kind.
    pub fn kind(&self, id: ParamId) -> Kind {
        self.kinds[id.0]
    }

    /// Finds an entry by name.
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.names.iter().position(|n| n == name).map(ParamId)
    }

    /// The entry's value.
    pub fn value(&self, id: ParamId) -> &Tensor {
        &self.values[id.0]
    }

    /// The entry's value, mutable.
    pub fn value_mut(&mut self, id: ParamId) -> &mut Tensor {
        &mut self.values[id.0]
    }

    /// The accumulated gradient of a learnable parameter.
    pub fn grad(&self, id: ParamId) -> &Tensor {
        &self.grads[id.0]
    }

    /// The accumulated gradient of a learnable parameter, mutable (to combine gradients
    /// computed elsewhere, e.g. on other processes).
    pub fn grad_mut(&mut self, id: ParamId) -> &mut Tensor {
        &mut self.grads[id.0]
    }

    /// Value and gradient together, for optimizers.
    pub fn value_and_grad_mut(&mut self, id: ParamId) -> (&mut Tensor, &Tensor) {
        (&mut self.values[id.0], &self.grads[id.0])
    }

    /// Sets every gradient to zero, keeping the buffers.
    pub fn zero_grads(&mut self) {
        // In parallel chunks for large gradients, like the optimizers' updates: a memory-bound
        // pass over every gradient.
        for g in &mut self.grads {
            crate::kernels::parallel::update(g.data_mut(), |v| *v = 0.0);
        }
    }

    /// Number of learnable scalars, as PyTorch counts `requires_grad` parameters.
    pub fn num_learnable(&self) -> usize {
        self.learnable().map(|id| self.values[id.0].len()).sum()
    }
}
