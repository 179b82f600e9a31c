//! Modules: layers that own parameter ids (the values live in a [`ParamStore`]) and know
//! how to record their forward pass on a [`Graph`]. Names follow PyTorch's state dicts.

use rand::Rng;

use crate::autograd::{Graph, Var};
use crate::error::{EngineError, Result};
use crate::kernels::spherize::lower_angle;
use crate::ops::angular::{AngleFn, Projection};
use crate::ops::BatchNormIds;
use crate::params::{ParamId, ParamStore};
use crate::tensor::Tensor;

/// Anything that maps one var to another on a graph.
pub trait Module: Send + Sync {
    /// Records this module's forward pass.
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var>;
}

/// PyTorch's default init for Linear and Conv2d weights: kaiming-uniform with a = sqrt(5),
/// which works out to uniform in +-1/sqrt(fan_in); biases use the same bound.
fn torch_default_uniform(shape: &[usize], fan_in: usize, rng: &mut impl Rng) -> Tensor {
    let bound = 1.0 / (fan_in as f32).sqrt();
    Tensor::uniform(shape, -bound, bound, rng)
}

/// `y = x W^T + b`, W [out, in].
pub struct Linear {
    /// Weight id, [out, in].
    pub weight: ParamId,
    /// Bias id, `[out]`, if any.
    pub bias: Option<ParamId>,
}

impl Linear {
    /// Registers `{name}.weight` (and `{name}.bias`) with PyTorch's default init.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        fan_in: usize,
        fan_out: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Linear {
        let weight = store.add(format!("{name}.weight"), torch_default_uniform(&[fan_out, fan_in], fan_in, rng));
        let bias = bias.then(|| store.add(format!("{name}.bias"), torch_default_uniform(&[fan_out], fan_in, rng)));
        Linear { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let w = g.param(self.weight);
        let b = self.bias.map(|b| g.param(b));
        g.linear(x, w, b)
    }
}

/// 2-D convolution with a square kernel.
pub struct Conv2d {
    /// Weight id, [out, in, k, k].
    pub weight: ParamId,
    /// Bias id, `[out]`, if any.
    pub bias: Option<ParamId>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// Registers `{name}.weight` (and `{name}.bias`) with PyTorch's default init.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Conv2d {
        let fan_in = c_in * kernel * kernel;
        let weight =
            store.add(format!("{name}.weight"), torch_default_uniform(&[c_out, c_in, kernel, kernel], fan_in, rng));
        let bias = bias.then(|| store.add(format!("{name}.bias"), torch_default_uniform(&[c_out], fan_in, rng)));
        Conv2d { weight, bias, stride, padding }
    }
}

impl Module for Conv2d {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let w = g.param(self.weight);
        let b = self.bias.map(|b| g.param(b));
        g.conv2d(x, w, b, self.stride, self.padding)
    }
}

/// Batch normalization over channels, for [N, C] (1-d) and [N, C, H, W] (2-d) inputs.
pub struct BatchNorm {
    ids: BatchNormIds,
    momentum: f32,
    eps: f32,
    /// Whether a ReLU is fused in ([`Sequential::push_batch_norm_relu`]).
    relu: bool,
}

impl BatchNorm {
    /// Registers `{name}.weight` (ones), `{name}.bias` (zeros) and the buffers
    /// `{name}.running_mean` (zeros), `{name}.running_var` (ones); momentum 0.1, eps 1e-5.
    pub fn new(store: &mut ParamStore, name: &str, channels: usize) -> BatchNorm {
        let ids = BatchNormIds {
            gamma: store.add(format!("{name}.weight"), Tensor::ones(&[channels])),
            beta: store.add(format!("{name}.bias"), Tensor::zeros(&[channels])),
            running_mean: store.add_buffer(format!("{name}.running_mean"), Tensor::zeros(&[channels])),
            running_var: store.add_buffer(format!("{name}.running_var"), Tensor::ones(&[channels])),
        };
        BatchNorm { ids, momentum: 0.1, eps: 1e-5, relu: false }
    }
}

impl Module for BatchNorm {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        if self.relu {
            g.batch_norm_relu(x, self.ids, self.momentum, self.eps)
        } else {
            g.batch_norm(x, self.ids, self.momentum, self.eps)
        }
    }
}

/// The place of a ReLU that the batch-norm before it computes ([`Sequential::push_batch_norm_relu`]):
/// it passes its input on, and keeps the ReLU's index among the children.
struct FusedReLU;

impl Module for FusedReLU {
    fn forward(&self, _g: &mut Graph, x: Var) -> Result<Var> {
        Ok(x)
    }
}

/// Inverted dropout with probability `p`.
pub struct Dropout(pub f32);

impl Module for Dropout {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        g.dropout(x, self.0)
    }
}

/// Max-pooling with a square window.
pub struct MaxPool2d {
    /// Window size.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
}

impl Module for MaxPool2d {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        g.max_pool2d(x, self.kernel, self.stride)
    }
}

/// Average pooling with a square window.
pub struct AvgPool2d {
    /// Window size.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
}

impl Module for AvgPool2d {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        g.avg_pool2d(x, self.kernel, self.stride)
    }
}

/// max(x, 0).
pub struct ReLU;

impl Module for ReLU {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        Ok(g.relu(x))
    }
}

/// Logistic sigmoid.
pub struct Sigmoid;

impl Module for Sigmoid {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        Ok(g.sigmoid(x))
    }
}

/// [N, ...] -> [N, prod(...)].
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        g.flatten(x)
    }
}

/// Modules applied in order. Children are named `{name}.{index}`, as in PyTorch, so
/// a layer's parameters are `features.0.weight`, `features.1.running_mean`, ...
pub struct Sequential {
    name: String,
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty sequence whose children will be named `{name}.0`, `{name}.1`, ...
    pub fn new(name: &str) -> Sequential {
        Sequential { name: name.to_string(), layers: Vec::new() }
    }

    /// The name the next child will get.
    pub fn next_name(&self) -> String {
        format!("{}.{}", self.name, self.layers.len())
    }

    /// Appends a module.
    pub fn push(&mut self, m: impl Module + 'static) {
        self.layers.push(Box::new(m));
    }

    /// Appends a batch-norm and a ReLU, computed as one fused op (one pass over memory instead
    /// of two, one tensor instead of two); the ReLU still takes its index among the children,
    /// so that the children after it keep PyTorch's names.
    pub fn push_batch_norm_relu(&mut self, bn: BatchNorm) {
        self.push(BatchNorm { relu: true, ..bn });
        self.push(FusedReLU);
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, g: &mut Graph, mut x: Var) -> Result<Var> {
        for layer in &self.layers {
            x = layer.forward(g, x)?;
        }
        Ok(x)
    }
}

/// Settings of a spherization layer (the paper's defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SphereConfig {
    /// Lower bound of the last coordinate; sets the lower angle. In (0, 1).
    pub delta: f64,
    /// Pre-activation scale alpha.
    pub scaling: f32,
    /// Sphere radius r (> 0).
    pub radius: f32,
    /// Whether alpha is trained.
    pub learn_scaling: bool,
    /// Whether r is trained.
    pub learn_radius: bool,
}

impl Default for SphereConfig {
    fn default() -> Self {
        SphereConfig { delta: 1e-6, scaling: 1.0, radius: 1.0, learn_scaling: true, learn_radius: false }
    }
}

/// A scalar that is either a parameter in the store or a fixed constant.
#[derive(Clone, Copy, Debug)]
enum Scalar {
    Learned(ParamId),
    Fixed(f32),
}

impl Scalar {
    fn new(store: &mut ParamStore, name: String, value: f32, learnable: bool) -> Scalar {
        if learnable {
            // 0-d, as the official layer's `nn.Parameter(torch.tensor(value))`, so that a
            // state dict loads into PyTorch without reshaping.
            Scalar::Learned(store.add(name, Tensor::from_vec(&[], vec![value]).expect("one value")))
        } else {
            Scalar::Fixed(value)
        }
    }

    fn on(&self, g: &mut Graph) -> Var {
        match *self {
            Scalar::Learned(id) => g.param(id),
            Scalar::Fixed(v) => g.input(Tensor::from_vec(&[1], vec![v]).expect("one value")),
        }
    }
}

/// Spherization of n pre-activations into n+1 coordinates on a sphere of radius r
/// (rows [B, n], or per pixel along the channels of [N, n, H, W]).
pub struct Spherization {
    n: usize,
    phi_lower: f64,
    scaling: Scalar,
    radius: Scalar,
}

impl Spherization {
    /// Registers `{name}.scaling` and `{name}.radius` when they are learnable.
    /// Fails on n = 0, delta outside (0, 1) or a radius that is not > 0.
    pub fn new(store: &mut ParamStore, name: &str, n: usize, cfg: SphereConfig) -> Result<Spherization> {
        if n == 0 {
            return Err(EngineError::Config(format!("{name}: spherization needs n >= 1 inputs, found 0")));
        }
        if !(cfg.delta > 0.0 && cfg.delta < 1.0) {
            return Err(EngineError::Config(format!("{name}: delta must be in (0, 1), found {}", cfg.delta)));
        }
        if !(cfg.radius > 0.0 && cfg.radius.is_finite()) {
            return Err(EngineError::Config(format!("{name}: radius must be > 0, found {}", cfg.radius)));
        }
        if !cfg.scaling.is_finite() {
            return Err(EngineError::Config(format!("{name}: scaling must be finite, found {}", cfg.scaling)));
        }
        Ok(Spherization {
            n,
            phi_lower: lower_angle(n, cfg.delta),
            scaling: Scalar::new(store, format!("{name}.scaling"), cfg.scaling, cfg.learn_scaling),
            radius: Scalar::new(store, format!("{name}.radius"), cfg.radius, cfg.learn_radius),
        })
    }

    /// Number of inputs n (the output has n + 1).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Current (scaling, radius) values.
    pub fn values(&self, store: &ParamStore) -> (f32, f32) {
        let read = |s: &Scalar| match *s {
            Scalar::Learned(id) => store.value(id).item(),
            Scalar::Fixed(v) => v,
        };
        (read(&self.scaling), read(&self.radius))
    }
}

impl Module for Spherization {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        if g.shape(x).get(1) != Some(&self.n) {
            return Err(EngineError::Shape(format!("spherization of {} inputs fed {:?}", self.n, g.shape(x))));
        }
        let alpha = self.scaling.on(g);
        let radius = self.radius.on(g);
        g.spherize(x, alpha, radius, self.phi_lower)
    }
}

/// A bias-free layer `y = f(theta)` or `|x| f(theta)` over the angles between the input and
/// each weight row (SphereNet's angular projections), with the weight `{name}.fc.weight`
/// [out, in] as the official HSN code names it.
pub struct AngularLinear {
    weight: ParamId,
    f: AngleFn,
    projection: Projection,
}

impl AngularLinear {
    /// Registers `{name}.fc.weight` with PyTorch's default Linear init (uniform in +-1/sqrt(in)).
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        fan_in: usize,
        fan_out: usize,
        f: AngleFn,
        projection: Projection,
        rng: &mut impl Rng,
    ) -> AngularLinear {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w = Tensor::uniform(&[fan_out, fan_in], -bound, bound, rng);
        AngularLinear { weight: store.add(format!("{name}.fc.weight"), w), f, projection }
    }
}

impl Module for AngularLinear {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let w = g.param(self.weight);
        g.angular(x, w, self.f, self.projection)
    }
}

/// Spherization (n -> n+1) followed by a bias-free linear map (n+1 -> m): the paper's
/// replacement for a network's last linear layer. Names `{name}.sph.*`, `{name}.layer.weight`.
pub struct SpherizedLinear {
    /// The spherization step.
    pub sph: Spherization,
    /// The bias-free linear map.
    pub layer: Linear,
}

impl SpherizedLinear {
    /// Registers the spherization's scalars and `{name}.layer.weight` [m, n+1].
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        n: usize,
        m: usize,
        cfg: SphereConfig,
        rng: &mut impl Rng,
    ) -> Result<SpherizedLinear> {
        let sph = Spherization::new(store, &format!("{name}.sph"), n, cfg)?;
        let layer = Linear::new(store, &format!("{name}.layer"), n + 1, m, false, rng);
        Ok(SpherizedLinear { sph, layer })
    }

    /// Forward, returning (spherized representation, output).
    pub fn forward_with_representation(&self, g: &mut Graph, x: Var) -> Result<(Var, Var)> {
        let s = self.sph.forward(g, x)?;
        Ok((s, self.layer.forward(g, s)?))
    }
}

impl Module for SpherizedLinear {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        Ok(self.forward_with_representation(g, x)?.1)
    }
}

/// Channel-wise spherization (C -> C+1 per pixel) followed by a bias-free convolution.
pub struct SpherizedConv2d {
    /// The spherization step.
    pub sph: Spherization,
    /// The bias-free convolution over C+1 channels.
    pub layer: Conv2d,
}

impl SpherizedConv2d {
    /// Registers the spherization's scalars and `{name}.layer.weight` [c_out, c_in+1, k, k].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        cfg: SphereConfig,
        rng: &mut impl Rng,
    ) -> Result<SpherizedConv2d> {
        let sph = Spherization::new(store, &format!("{name}.sph"), c_in, cfg)?;
        let layer = Conv2d::new(store, &format!("{name}.layer"), c_in + 1, c_out, kernel, stride, padding, false, rng);
        Ok(SpherizedConv2d { sph, layer })
    }
}

impl Module for SpherizedConv2d {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let s = self.sph.forward(g, x)?;
        self.layer.forward(g, s)
    }
}
