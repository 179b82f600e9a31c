//! The closed set of ops the tape records, and what each one keeps for its backward pass.
//!
//! This file sits on the tape's floor: it names the saved state of every op but holds no
//! math. Each op's forward (a `Graph` method) and backward (a method of its saved-state
//! struct, `backward(&self, values, grads, dy)`) live side by side in `ops/`; the reverse
//! walk that calls the backward methods is in `backward.rs`, above the ops.

use crate::kernels::Window;
use crate::params::ParamId;
use crate::tensor::Tensor;

/// Handle to a value recorded on a [`crate::Graph`]: the index of its node on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(pub(crate) usize);

/// One recorded op.
#[derive(Debug)]
pub(crate) enum Op {
    /// An input or constant: nothing to propagate further.
    Leaf,
    /// A value read from the parameter store.
    Param(ParamId),
    /// `x W^T + b`.
    Linear(LinearSaved),
    /// `a @ b`.
    Matmul(MatmulSaved),
    /// 2-D convolution, im2col + GEMM.
    Conv2d(Conv2dSaved),
    /// Max-pooling.
    MaxPool2d(MaxPoolSaved),
    /// Average pooling.
    AvgPool2d(AvgPoolSaved),
    /// Batch normalization in training mode (optionally with a ReLU fused in).
    BatchNorm(BatchNormSaved),
    /// Inverted dropout.
    Dropout(DropoutSaved),
    /// max(x, 0).
    Relu(ReluSaved),
    /// 1 / (1 + e^-x).
    Sigmoid(SigmoidSaved),
    /// tanh(x).
    Tanh(TanhSaved),
    /// a + b (same shape, or b a bias broadcast over the rows of a).
    Add(AddSaved),
    /// a * b elementwise (same shape).
    Mul(MulSaved),
    /// factor * x.
    Scale(ScaleSaved),
    /// Sum (factor 1) or mean (factor 1/n) of all elements.
    Sum(SumSaved),
    /// Same data, new shape.
    Reshape(ReshapeSaved),
    /// Mean softmax cross-entropy over the batch.
    SoftmaxCrossEntropy(SoftmaxCrossEntropySaved),
    /// The spherization map.
    Spherize(SpherizeSaved),
    /// Angle-based projection of rows onto weight rows.
    Angular(AngularSaved),
}

impl Op {
    /// The op's name, for profiles.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Leaf => "leaf",
            Op::Param(_) => "param",
            Op::Linear(_) => "linear",
            Op::Matmul(_) => "matmul",
            Op::Conv2d(_) => "conv2d",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::BatchNorm(s) if s.relu => "batch_norm_relu",
            Op::BatchNorm(_) => "batch_norm",
            Op::Dropout(_) => "dropout",
            Op::Relu(_) => "relu",
            Op::Sigmoid(_) => "sigmoid",
            Op::Tanh(_) => "tanh",
            Op::Add(_) => "add",
            Op::Mul(_) => "mul",
            Op::Scale(_) => "scale",
            Op::Sum(_) => "sum",
            Op::Reshape(_) => "reshape",
            Op::SoftmaxCrossEntropy(_) => "softmax_cross_entropy",
            Op::Spherize(_) => "spherize",
            Op::Angular(_) => "angular",
        }
    }
}

/// `y = x W^T + b`: the inputs.
#[derive(Debug)]
pub(crate) struct LinearSaved {
    pub(crate) x: Var,
    pub(crate) w: Var,
    pub(crate) b: Option<Var>,
}

/// `c = a @ b`: the inputs.
#[derive(Debug)]
pub(crate) struct MatmulSaved {
    pub(crate) a: Var,
    pub(crate) b: Var,
}

/// Convolution: the inputs and the geometry.
#[derive(Debug)]
pub(crate) struct Conv2dSaved {
    pub(crate) x: Var,
    pub(crate) w: Var,
    pub(crate) b: Option<Var>,
    pub(crate) window: Window,
}

/// Max-pooling: per output, the input index that won.
#[derive(Debug)]
pub(crate) struct MaxPoolSaved {
    pub(crate) x: Var,
    pub(crate) window: Window,
    pub(crate) argmax: Vec<u32>,
}

/// Average pooling: the input and the geometry.
#[derive(Debug)]
pub(crate) struct AvgPoolSaved {
    pub(crate) x: Var,
    pub(crate) window: Window,
}

/// Batch-norm: per-channel batch mean and 1/std, and whether a ReLU was fused in.
#[derive(Debug)]
pub(crate) struct BatchNormSaved {
    pub(crate) x: Var,
    pub(crate) gamma: Var,
    pub(crate) beta: Var,
    pub(crate) mean: Vec<f32>,
    pub(crate) inv_std: Vec<f32>,
    pub(crate) relu: bool,
}

/// Dropout: the mask, 0 or 1/(1-p) per element (a pooled buffer: a fresh 2 MB allocation
/// faults its pages in on every step).
#[derive(Debug)]
pub(crate) struct DropoutSaved {
    pub(crate) x: Var,
    pub(crate) mask: crate::buffers::Scratch,
}

/// ReLU: the input (its sign gates the gradient).
#[derive(Debug)]
pub(crate) struct ReluSaved {
    pub(crate) x: Var,
}

/// Sigmoid: the input; the backward reads the output y (dy/dx = y (1 - y)).
#[derive(Debug)]
pub(crate) struct SigmoidSaved {
    pub(crate) x: Var,
}

/// tanh: the input; the backward reads the output y (dy/dx = 1 - y^2).
#[derive(Debug)]
pub(crate) struct TanhSaved {
    pub(crate) x: Var,
}

/// a + b: the inputs.
#[derive(Debug)]
pub(crate) struct AddSaved {
    pub(crate) a: Var,
    pub(crate) b: Var,
}

/// a * b: the inputs.
#[derive(Debug)]
pub(crate) struct MulSaved {
    pub(crate) a: Var,
    pub(crate) b: Var,
}

/// factor * x.
#[derive(Debug)]
pub(crate) struct ScaleSaved {
    pub(crate) x: Var,
    pub(crate) factor: f32,
}

/// factor * sum(x): 1 for a sum, 1/n for a mean.
#[derive(Debug)]
pub(crate) struct SumSaved {
    pub(crate) x: Var,
    pub(crate) factor: f32,
}

/// A reshape: the input.
#[derive(Debug)]
pub(crate) struct ReshapeSaved {
    pub(crate) x: Var,
}

/// Softmax cross-entropy: the labels and the softmax outputs.
#[derive(Debug)]
pub(crate) struct SoftmaxCrossEntropySaved {
    pub(crate) logits: Var,
    pub(crate) labels: Vec<usize>,
    pub(crate) probs: Vec<f32>,
}

/// Spherization: the inputs, the lower angle phi_L, and what the forward pass kept of its
/// angles (sin, cos and P_k sig (1 - sig) per coordinate, in the kernel's tile order).
#[derive(Debug)]
pub(crate) struct SpherizeSaved {
    pub(crate) z: Var,
    pub(crate) alpha: Var,
    pub(crate) radius: Var,
    pub(crate) phi_lower: f64,
    pub(crate) angles: Tensor,
}

/// The function of the angle theta between an input row and a weight row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AngleFn {
    /// `1 - 2 theta / pi`.
    Linear,
    /// `cos theta`.
    Cosine,
    /// SphereConv's sigmoid of theta with k = 0.3.
    Sigmoid,
}

/// Whether the input's norm is thrown away or kept as a factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Projection {
    /// `y = f(theta)`: input and weights normalized.
    Direct,
    /// `y = |x| f(theta)`: only the weights normalized ("W-Softmax").
    Indirect,
}

/// Angular projection: the inputs, the angle function, and the row norms and cosines.
#[derive(Debug)]
pub(crate) struct AngularSaved {
    pub(crate) x: Var,
    pub(crate) w: Var,
    pub(crate) f: AngleFn,
    pub(crate) projection: Projection,
    pub(crate) x_norm: Vec<f32>,
    pub(crate) w_norm: Vec<f32>,
    pub(crate) cos: Vec<f32>,
}
