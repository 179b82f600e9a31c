//! [`Model`] (a network and its parameters) and [`Network`] (the layers, which hold only
//! parameter ids), plus the [`Builder`] every architecture file uses to assemble one.

use std::sync::Arc;

use engine::nn::{AngularLinear, BatchNorm, Conv2d, Linear, Module, Sequential, SpherizedLinear};
use engine::{EngineError, Graph, Mode, ParamStore, Result, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::config::ModelConfig;
use crate::error::ModelError;

/// A layer whose kind is chosen when the model is built: every network's last layer (whose
/// input is the representation the analyses read) and CNN-9's first classifier layer.
pub(crate) enum Layer {
    /// An ordinary `x W^T + b`.
    Linear(Linear),
    /// Spherization then a bias-free linear map; shared with the network's list of spheres.
    Spherized(Arc<SpherizedLinear>),
    /// An angle-based projection (CNN-9's dispersion analysis).
    Angular(AngularLinear),
}

impl Module for Layer {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        match self {
            Layer::Linear(layer) => layer.forward(g, x),
            Layer::Spherized(layer) => layer.forward(g, x),
            Layer::Angular(layer) => layer.forward(g, x),
        }
    }
}

/// The layers of one network. They hold parameter ids only; the values live in a
/// [`ParamStore`] (the [`Model`]'s), which the [`Graph`] of each pass borrows.
pub struct Network {
    name: &'static str,
    input_shape: [usize; 3],
    /// Whether a flat [batch, C*H*W] input is accepted too (the networks that flatten first).
    flat_input: bool,
    classes: usize,
    /// Everything before the last layer.
    body: Sequential,
    head: Layer,
    /// Every spherization layer with its name (`sph_fc3.sph`, `classifier.4.sph`, ...).
    spheres: Vec<(String, Arc<SpherizedLinear>)>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("name", &self.name)
            .field("input_shape", &self.input_shape)
            .field("classes", &self.classes)
            .field("spheres", &self.spheres.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Records the forward pass of a batch [batch, C, H, W] and returns the logits [batch, classes].
    pub fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        Ok(self.forward_with_representation(g, x)?.1)
    }

    /// Records the forward pass and returns (representation, logits): the representation is
    /// the input of the last layer, and for spherized models the spherized vector (norm = radius).
    pub fn forward_with_representation(&self, g: &mut Graph, x: Var) -> Result<(Var, Var)> {
        let (_, repr, logits) = self.forward_parts(g, x)?;
        Ok((repr, logits))
    }

    /// Records the forward pass and returns (head input, representation, logits). The head
    /// input is what the last layer receives: for spherized models the pre-activations z that
    /// the spherization turns into angles, for the others the representation itself.
    pub fn forward_parts(&self, g: &mut Graph, x: Var) -> Result<(Var, Var, Var)> {
        self.check_input(g.shape(x))?;
        let h = self.body.forward(g, x)?;
        match &self.head {
            // The spherized vector, not the pre-activations, is what the last map sees.
            Layer::Spherized(layer) => {
                let (s, y) = layer.forward_with_representation(g, h)?;
                Ok((h, s, y))
            }
            other => Ok((h, h, other.forward(g, h)?)),
        }
    }

    fn check_input(&self, shape: &[usize]) -> Result<()> {
        let [c, h, w] = self.input_shape;
        let fits = match *shape {
            [b, sc, sh, sw] => b > 0 && [sc, sh, sw] == self.input_shape,
            [b, features] => b > 0 && self.flat_input && features == c * h * w,
            _ => false,
        };
        if fits {
            return Ok(());
        }
        let flat = if self.flat_input { format!(" or [batch, {}]", c * h * w) } else { String::new() };
        Err(EngineError::Shape(format!("{}: input {shape:?} does not fit [batch, {c}, {h}, {w}]{flat}", self.name)))
    }

    /// The registry name this network was built under.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Input shape of one sample: (channels, height, width).
    pub fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// (layer name, scaling, radius) of every spherization layer, reading learned values from `params`.
    pub fn sphere_values(&self, params: &ParamStore) -> Vec<(String, f32, f32)> {
        self.spheres
            .iter()
            .map(|(name, layer)| {
                let (scaling, radius) = layer.sph.values(params);
                (name.clone(), scaling, radius)
            })
            .collect()
    }
}

/// A network together with its parameters and batch-norm buffers.
///
/// A [`Graph`] borrows the parameter store mutably for a whole pass, so a pass borrows the
/// network and the store separately through [`Model::split_mut`]:
///
/// ```
/// use engine::{Graph, Mode, Tensor};
/// let mut model = models::build("sph_lenet", &models::ModelConfig::default())?;
/// let batch = Tensor::zeros(&[2, 1, 28, 28]);
/// // Evaluation: (representation, logits) as plain tensors.
/// let (representation, logits) = model.evaluate(&batch)?;
/// assert_eq!((representation.shape(), logits.shape()), (&[2, 85][..], &[2, 10][..]));
/// // Training: a tape over the network and the store, borrowed separately.
/// let (net, params) = model.split_mut();
/// let mut g = Graph::new(params, Mode::Train, 0);
/// let x = g.input(batch);
/// let logits = net.forward(&mut g, x)?;
/// let loss = g.softmax_cross_entropy(logits, &[3, 7])?;
/// g.backward(loss)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Model {
    network: Network,
    params: ParamStore,
}

impl std::fmt::Debug for Model {
    /// The network and the parameter count; the values themselves would be millions of numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("network", &self.network).field("parameters", &self.num_parameters()).finish()
    }
}

impl Model {
    /// The layers.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Parameters and buffers, with PyTorch's names (`features.0.weight`, `classifier.6.bias`, ...).
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// Parameters and buffers, mutable (optimizer steps, checkpoint loading, zeroing gradients).
    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }

    /// The network and its store, borrowed separately so that a [`Graph`] can hold the store.
    pub fn split_mut(&mut self) -> (&Network, &mut ParamStore) {
        (&self.network, &mut self.params)
    }

    /// The registry name this model was built under.
    pub fn name(&self) -> &'static str {
        self.network.name
    }

    /// Input shape of one sample: (channels, height, width).
    pub fn input_shape(&self) -> [usize; 3] {
        self.network.input_shape
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.network.classes
    }

    /// Number of learnable scalars, as PyTorch counts them (a fixed radius is not one).
    pub fn num_parameters(&self) -> usize {
        self.params.num_learnable()
    }

    /// (layer name, scaling, radius) of every spherization layer, for logging.
    pub fn sphere_values(&self) -> Vec<(String, f32, f32)> {
        self.network.sphere_values(&self.params)
    }

    /// Evaluation-mode pass over a batch: (head input, representation, logits) as plain
    /// tensors (see [`Network::forward_parts`]).
    pub fn evaluate_parts(&mut self, x: Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (net, params) = self.split_mut();
        let mut g = Graph::new(params, Mode::Eval, 0);
        let xv = g.input(x);
        let (head, repr, logits) = net.forward_parts(&mut g, xv)?;
        Ok((g.value(head).clone(), g.value(repr).clone(), g.value(logits).clone()))
    }

    /// Evaluation-mode pass over a batch: (representation, logits) as plain tensors.
    pub fn evaluate(&mut self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (repr, logits, _) = self.eval_forward(x.clone(), None)?;
        Ok((repr, logits))
    }

    /// Like [`Model::evaluate`], with the mean softmax cross-entropy against `labels`:
    /// (representation, logits, loss).
    pub fn evaluate_with_loss(&mut self, x: Tensor, labels: &[usize]) -> Result<(Tensor, Tensor, f32)> {
        let (repr, logits, loss) = self.eval_forward(x, Some(labels))?;
        Ok((repr, logits, loss.unwrap_or(f32::NAN)))
    }

    /// The one evaluation-mode forward pass (no tape, running statistics, no dropout) that
    /// every evaluation goes through.
    fn eval_forward(&mut self, x: Tensor, labels: Option<&[usize]>) -> Result<(Tensor, Tensor, Option<f32>)> {
        let (net, params) = self.split_mut();
        let mut g = Graph::new(params, Mode::Eval, 0);
        let xv = g.input(x);
        let (repr, logits) = net.forward_with_representation(&mut g, xv)?;
        let loss = match labels {
            Some(labels) => {
                let loss = g.softmax_cross_entropy(logits, labels)?;
                Some(g.value(loss).item())
            }
            None => None,
        };
        Ok((g.value(repr).clone(), g.value(logits).clone(), loss))
    }
}

/// How a convolution's weights start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvInit {
    /// PyTorch's default: uniform in +-1/sqrt(fan_in), bias too (the official CNN-9 and visualization CNNs).
    TorchDefault,
    /// torchvision's VGG: normal with std sqrt(2 / fan_out), zero bias.
    KaimingFanOut,
}

/// Collects parameters, in PyTorch's registration order, while a network is assembled.
pub(crate) struct Builder<'c> {
    /// The model's store, filled as layers are created.
    pub(crate) store: ParamStore,
    /// Initialization randomness, seeded from the config.
    pub(crate) rng: StdRng,
    /// The settings being built.
    pub(crate) cfg: &'c ModelConfig,
    name: &'static str,
    spheres: Vec<(String, Arc<SpherizedLinear>)>,
}

impl<'c> Builder<'c> {
    /// An empty builder for the model `name`.
    pub(crate) fn new(name: &'static str, cfg: &'c ModelConfig) -> Self {
        Builder { store: ParamStore::new(), rng: StdRng::seed_from_u64(cfg.seed), cfg, name, spheres: Vec::new() }
    }

    /// `{name}.weight` [out, in] and `{name}.bias`, PyTorch's default init.
    pub(crate) fn linear(&mut self, name: &str, fan_in: usize, fan_out: usize, bias: bool) -> Linear {
        Linear::new(&mut self.store, name, fan_in, fan_out, bias, &mut self.rng)
    }

    /// A linear layer appended to `seq` under the next child name.
    pub(crate) fn push_linear(&mut self, seq: &mut Sequential, fan_in: usize, fan_out: usize) {
        let layer = self.linear(&seq.next_name(), fan_in, fan_out, true);
        seq.push(layer);
    }

    /// `{name}.weight` [c_out, c_in, k, k] and `{name}.bias`, stride 1, initialized by `init`.
    pub(crate) fn conv(
        &mut self,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
        init: ConvInit,
    ) -> Conv2d {
        let conv = Conv2d::new(&mut self.store, name, c_in, c_out, kernel, 1, padding, true, &mut self.rng);
        if init == ConvInit::KaimingFanOut {
            // torchvision's VGG: kaiming_normal_(mode="fan_out", nonlinearity="relu"), zero bias.
            let std = (2.0 / (c_out * kernel * kernel) as f32).sqrt();
            *self.store.value_mut(conv.weight) =
                Tensor::normal(&[c_out, c_in, kernel, kernel], 0.0, std, &mut self.rng);
            if let Some(bias) = conv.bias {
                self.store.value_mut(bias).fill_zero();
            }
        }
        conv
    }

    /// Conv 3x3 (padding 1) + batch-norm + ReLU appended to `seq` as three children (the
    /// batch-norm and the ReLU computed as one fused op).
    pub(crate) fn push_conv_bn_relu(&mut self, seq: &mut Sequential, c_in: usize, c_out: usize, init: ConvInit) {
        let conv = self.conv(&seq.next_name(), c_in, c_out, 3, 1, init);
        seq.push(conv);
        let bn = BatchNorm::new(&mut self.store, &seq.next_name(), c_out);
        seq.push_batch_norm_relu(bn);
    }

    /// Spherization (n -> n+1) and a bias-free n+1 -> m map named `{name}.sph.*`, `{name}.layer.weight`.
    pub(crate) fn spherized(
        &mut self,
        name: &str,
        n: usize,
        m: usize,
    ) -> std::result::Result<Arc<SpherizedLinear>, ModelError> {
        let layer = SpherizedLinear::new(&mut self.store, name, n, m, self.cfg.sphere, &mut self.rng)
            .map_err(|source| ModelError::Engine { model: self.name.to_string(), source })?;
        let layer = Arc::new(layer);
        self.spheres.push((format!("{name}.sph"), Arc::clone(&layer)));
        Ok(layer)
    }

    /// The finished model: `body` then `head`, taking inputs of `input_shape`.
    pub(crate) fn finish(self, input_shape: [usize; 3], flat_input: bool, body: Sequential, head: Layer) -> Model {
        let network = Network {
            name: self.name,
            input_shape,
            flat_input,
            classes: self.cfg.classes,
            body,
            head,
            spheres: self.spheres,
        };
        Model { network, params: self.store }
    }
}
