//! Optimizers with PyTorch's update rules, and learning-rate schedules.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::error::{EngineError, Result};
use crate::params::{ParamId, ParamStore};
use crate::tensor::Tensor;

/// An optimizer updates the learnable parameters of a store from their gradients.
pub trait Optimizer: Send {
    /// One update from the current gradients.
    fn step(&mut self, params: &mut ParamStore);
    /// Current learning rate.
    fn lr(&self) -> f32;
    /// Sets the learning rate (schedules call this each epoch).
    fn set_lr(&mut self, lr: f32);
    /// The optimizer's state as named tensors, for checkpoints (`optim.<param>.<buffer>`).
    fn state(&self, params: &ParamStore) -> Vec<(String, Tensor)>;
    /// Restores state written by [`Optimizer::state`].
    fn load_state(&mut self, params: &ParamStore, state: &HashMap<String, Tensor>) -> Result<()>;
}

/// Elements per parallel task of an update: the elementwise loops' chunk. An update is
/// memory-bound (VGG-11-BN's 28 M parameters: 560 MB read and written per SGD step, 7% of a
/// step on one thread), so large parameters are split over the threads; each element is
/// updated alone, so the result is the same for any split.
const UPDATE_CHUNK: usize = crate::kernels::parallel::CHUNK;

/// Per-parameter buffers, created on first use, keyed by parameter id.
type Buffers = Vec<Option<Tensor>>;

fn buffer<'a>(bufs: &'a mut Buffers, id: ParamId, shape: &[usize]) -> &'a mut Tensor {
    if bufs.len() <= id.0 {
        bufs.resize(id.0 + 1, None);
    }
    bufs[id.0].get_or_insert_with(|| Tensor::zeros(shape))
}

fn save_buffers(out: &mut Vec<(String, Tensor)>, params: &ParamStore, bufs: &Buffers, what: &str) {
    for (i, b) in bufs.iter().enumerate() {
        if let Some(b) = b {
            out.push((format!("optim.{}.{what}", params.name(ParamId(i))), b.clone()));
        }
    }
}

fn load_buffers(bufs: &mut Buffers, params: &ParamStore, state: &HashMap<String, Tensor>, what: &str) -> Result<()> {
    bufs.clear();
    for id in params.learnable() {
        let key = format!("optim.{}.{what}", params.name(id));
        if let Some(t) = state.get(&key) {
            if t.shape() != params.value(id).shape()
                && !crate::checkpoint::one_value_each(t.shape(), params.value(id).shape())
            {
                return Err(EngineError::Shape(format!(
                    "{key}: expected {:?}, found {:?}",
                    params.value(id).shape(),
                    t.shape()
                )));
            }
            // In the parameter's own shape (an old [1] scalar buffer becomes 0-d).
            let shape = params.value(id).shape().to_vec();
            *buffer(bufs, id, &shape) = Tensor::from_vec(&shape, t.data().to_vec())?;
        }
    }
    Ok(())
}

/// Stochastic gradient descent as `torch.optim.SGD` (dampening 0):
/// g = grad + wd p;  buf = momentum buf + g (buf = g at the first step);
/// g = nesterov ? g + momentum buf : buf;  p -= lr g.
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 disables the buffer).
    pub momentum: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    momentum_buffers: Buffers,
}

impl Sgd {
    /// A new SGD optimizer.
    pub fn new(lr: f32, momentum: f32, weight_decay: f32, nesterov: bool) -> Sgd {
        Sgd { lr, momentum, weight_decay, nesterov, momentum_buffers: Vec::new() }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut ParamStore) {
        let ids: Vec<ParamId> = params.learnable().collect();
        for id in ids {
            let (p, grad) = params.value_and_grad_mut(id);
            let (lr, wd, mom, nesterov) = (self.lr, self.weight_decay, self.momentum, self.nesterov);
            if mom == 0.0 {
                let chunks = p.data_mut().par_chunks_mut(UPDATE_CHUNK).zip(grad.data().par_chunks(UPDATE_CHUNK));
                chunks.for_each(|(p, g)| {
                    for (p, &g) in p.iter_mut().zip(g) {
                        *p -= lr * (g + wd * *p);
                    }
                });
                continue;
            }
            let fresh = self.momentum_buffers.get(id.0).is_none_or(|b| b.is_none());
            let buf = buffer(&mut self.momentum_buffers, id, p.shape());
            let chunks = p.data_mut().par_chunks_mut(UPDATE_CHUNK).zip(grad.data().par_chunks(UPDATE_CHUNK));
            chunks.zip(buf.data_mut().par_chunks_mut(UPDATE_CHUNK)).for_each(|((p, g), b)| {
                for ((p, &g), b) in p.iter_mut().zip(g).zip(b) {
                    let g = g + wd * *p;
                    *b = if fresh { g } else { mom * *b + g };
                    *p -= lr * if nesterov { g + mom * *b } else { *b };
                }
            });
        }
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self, params: &ParamStore) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        save_buffers(&mut out, params, &self.momentum_buffers, "momentum_buffer");
        out
    }
    fn load_state(&mut self, params: &ParamStore, state: &HashMap<String, Tensor>) -> Result<()> {
        load_buffers(&mut self.momentum_buffers, params, state, "momentum_buffer")
    }
}

/// Adam as `torch.optim.Adam` (L2 decay added to the gradient) or, with `decoupled`,
/// `torch.optim.AdamW` (p -= lr wd p before the Adam step).
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// (beta1, beta2).
    pub betas: (f32, f32),
    /// Added to the denominator.
    pub eps: f32,
    /// Weight decay (L2 for Adam, decoupled for AdamW).
    pub weight_decay: f32,
    /// AdamW's decoupled decay.
    pub decoupled: bool,
    steps: u64,
    exp_avg: Buffers,
    exp_avg_sq: Buffers,
}

impl Adam {
    /// Adam with PyTorch's defaults (betas 0.9, 0.999; eps 1e-8).
    pub fn new(lr: f32, weight_decay: f32) -> Adam {
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            decoupled: false,
            steps: 0,
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
        }
    }

    /// AdamW with PyTorch's defaults.
    pub fn new_w(lr: f32, weight_decay: f32) -> Adam {
        Adam { decoupled: true, ..Adam::new(lr, weight_decay) }
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut ParamStore) {
        self.steps += 1;
        let (b1, b2) = self.betas;
        let t = self.steps as i32;
        let bias1 = 1.0 - (b1 as f64).powi(t);
        let bias2_sqrt = (1.0 - (b2 as f64).powi(t)).sqrt();
        let step_size = (self.lr as f64 / bias1) as f32;
        let (lr, wd, eps, decoupled) = (self.lr, self.weight_decay, self.eps, self.decoupled);
        let ids: Vec<ParamId> = params.learnable().collect();
        for id in ids {
            let (p, grad) = params.value_and_grad_mut(id);
            let m = buffer(&mut self.exp_avg, id, p.shape()).data_mut();
            let v = buffer(&mut self.exp_avg_sq, id, p.shape()).data_mut();
            let chunks = p.data_mut().par_chunks_mut(UPDATE_CHUNK).zip(grad.data().par_chunks(UPDATE_CHUNK));
            let state = m.par_chunks_mut(UPDATE_CHUNK).zip(v.par_chunks_mut(UPDATE_CHUNK));
            chunks.zip(state).for_each(|((p, g), (m, v))| {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = if decoupled {
                        *p *= 1.0 - lr * wd;
                        g
                    } else {
                        g + wd * *p
                    };
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    let denom = (v.sqrt() as f64 / bias2_sqrt) as f32 + eps;
                    *p -= step_size * *m / denom;
                }
            });
        }
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self, params: &ParamStore) -> Vec<(String, Tensor)> {
        let mut out =
            vec![("optim.step".to_string(), Tensor::from_vec(&[1], vec![self.steps as f32]).expect("one value"))];
        save_buffers(&mut out, params, &self.exp_avg, "exp_avg");
        save_buffers(&mut out, params, &self.exp_avg_sq, "exp_avg_sq");
        out
    }
    fn load_state(&mut self, params: &ParamStore, state: &HashMap<String, Tensor>) -> Result<()> {
        self.steps = state.get("optim.step").map(|t| t.item() as u64).unwrap_or(0);
        load_buffers(&mut self.exp_avg, params, state, "exp_avg")?;
        load_buffers(&mut self.exp_avg_sq, params, state, "exp_avg_sq")
    }
}

/// Learning rate as a function of the epoch, counted as the paper's official scripts count:
/// their loop runs `for epoch in 1..=E` and decays when the 1-based epoch reaches a milestone,
/// so `multistep:80,130` trains 79 epochs at the base rate (PyTorch's MultiStepLR, stepped
/// after each epoch, would train 80).
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiplied by `gamma` at every 1-based epoch that is a multiple of `every`.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor of each decay.
        gamma: f32,
    },
    /// Multiplied by `gamma` at each listed epoch.
    MultiStep {
        /// 1-based epochs from which the rate is decayed once more (after m - 1 finished epochs).
        milestones: Vec<usize>,
        /// Factor of each decay.
        gamma: f32,
    },
}

impl Schedule {
    /// The learning rate during `epoch` (0-based: the trainer's count; its 1-based number is
    /// `epoch + 1`, which is what milestones are compared with).
    pub fn lr_at(&self, base: f32, epoch: usize) -> f32 {
        let number = epoch + 1;
        match self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((number / (*every).max(1)) as i32),
            Schedule::MultiStep { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| m <= number).count() as i32)
            }
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = EngineError;
    /// Parses `constant`, `step:K:GAMMA` or `multistep:E1,E2,..:GAMMA`.
    fn from_str(s: &str) -> Result<Schedule> {
        let bad = |why: &str| {
            EngineError::Config(format!(
                "schedule '{s}': {why} (expected constant, step:K:GAMMA or multistep:E1,E2,..:GAMMA)"
            ))
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["constant"] => Ok(Schedule::Constant),
            ["step", k, gamma] => Ok(Schedule::Step {
                every: k.parse().ok().filter(|&k: &usize| k > 0).ok_or_else(|| bad("K must be a positive integer"))?,
                gamma: gamma.parse().map_err(|_| bad("GAMMA must be a number"))?,
            }),
            ["multistep", list, gamma] => Ok(Schedule::MultiStep {
                milestones: list
                    .split(',')
                    .map(|e| e.trim().parse::<usize>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| bad("milestones must be integers"))?,
                gamma: gamma.parse().map_err(|_| bad("GAMMA must be a number"))?,
            }),
            _ => Err(bad("unknown form")),
        }
    }
}
