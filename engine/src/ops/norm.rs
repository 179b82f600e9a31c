//! Batch normalization over [N, C] (1-d) or [N, C, H, W] (2-d): forward and backward.

use rayon::prelude::*;

use crate::autograd::{Grads, Graph, Values, Var};
use crate::error::{EngineError, Result};
use crate::op::{BatchNormSaved, Op};
use crate::ops::channel_layout;
use crate::params::ParamId;
use crate::tensor::Tensor;

/// The parameters and buffers of one batch-norm layer, by id in the store.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormIds {
    /// Scale (PyTorch `weight`).
    pub gamma: ParamId,
    /// Shift (PyTorch `bias`).
    pub beta: ParamId,
    /// Running mean buffer.
    pub running_mean: ParamId,
    /// Running (unbiased) variance buffer.
    pub running_var: ParamId,
}

/// The f64 sum of f(v) over `values`, in eight interleaved partial sums: one running sum is a
/// chain of dependent additions (4 cycles each), eight of them vectorize. The order is fixed by
/// the data alone, so the result does not depend on the thread count.
fn sum_f64(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (acc, &v) in lanes.iter_mut().zip(chunk) {
            *acc += f(v);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Per channel: sum over the batch and pixels of f(channel, value), in f64.
fn channel_sums(x: &[f32], (n, c, hw): (usize, usize, usize), f: impl Fn(usize, f32) -> f64 + Sync) -> Vec<f64> {
    (0..c)
        .into_par_iter()
        .map(|ch| (0..n).map(|i| sum_f64(&x[(i * c + ch) * hw..(i * c + ch + 1) * hw], |v| f(ch, v))).sum())
        .collect()
}

impl Graph<'_> {
    /// `y = gamma (x - mean) / sqrt(var + eps) + beta` per channel. Training: batch
    /// statistics, and the running ones move by `momentum` (PyTorch's 0.1); evaluation:
    /// running statistics.
    pub fn batch_norm(&mut self, x: Var, ids: BatchNormIds, momentum: f32, eps: f32) -> Result<Var> {
        let shape = self.shape(x).to_vec();
        let channels = self.params().value(ids.gamma).len();
        let dims = channel_layout(&shape).filter(|d| d.1 == channels).ok_or_else(|| {
            EngineError::Shape(format!("batch_norm: input {shape:?} does not fit {channels} channels (expected [N, {channels}] or [N, {channels}, H, W])"))
        })?;
        let (n, c, hw) = dims;
        let count = n * hw;
        let (mean, inv_std): (Vec<f32>, Vec<f32>) = if self.is_training() {
            if count < 2 {
                return Err(EngineError::Shape(format!(
                    "batch_norm: training needs more than one value per channel, input {shape:?}"
                )));
            }
            let xv = self.value(x).data();
            let mean: Vec<f64> =
                channel_sums(xv, dims, |_, v| v as f64).into_iter().map(|s| s / count as f64).collect();
            let var: Vec<f64> = channel_sums(xv, dims, |ch, v| (v as f64 - mean[ch]).powi(2))
                .into_iter()
                .map(|s| s / count as f64)
                .collect();
            let unbias = count as f64 / (count as f64 - 1.0);
            let params = self.params_mut();
            for (r, &m) in params.value_mut(ids.running_mean).data_mut().iter_mut().zip(&mean) {
                *r = (1.0 - momentum) * *r + momentum * m as f32;
            }
            for (r, &v) in params.value_mut(ids.running_var).data_mut().iter_mut().zip(&var) {
                *r = (1.0 - momentum) * *r + momentum * (v * unbias) as f32;
            }
            (
                mean.iter().map(|&m| m as f32).collect(),
                var.iter().map(|&v| (1.0 / (v + eps as f64).sqrt()) as f32).collect(),
            )
        } else {
            let p = self.params();
            let mean = p.value(ids.running_mean).data().to_vec();
            let inv_std = p.value(ids.running_var).data().iter().map(|&v| 1.0 / (v + eps).sqrt()).collect();
            (mean, inv_std)
        };
        let mut y = Tensor::zeros(&shape);
        {
            let p = self.params();
            let (gamma, beta) = (p.value(ids.gamma).data(), p.value(ids.beta).data());
            let xv = self.value(x).data();
            y.data_mut().par_chunks_mut(hw).zip(xv.par_chunks(hw)).enumerate().for_each(|(plane, (y_p, x_p))| {
                let ch = plane % c;
                let scale = gamma[ch] * inv_std[ch];
                let shift = beta[ch] - mean[ch] * scale;
                for (o, &v) in y_p.iter_mut().zip(x_p) {
                    *o = v * scale + shift;
                }
            });
        }
        let (gamma, beta) = (self.param(ids.gamma), self.param(ids.beta));
        if !self.is_training() {
            return Ok(self.record(Op::Leaf, y, &[]));
        }
        Ok(self.record(Op::BatchNorm(BatchNormSaved { x, gamma, beta, mean, inv_std }), y, &[x, gamma, beta]))
    }
}

/// With xhat = (x - mean) inv_std, per channel over the M = N*H*W values:
/// dbeta = sum dy;  dgamma = sum dy xhat;  dx = gamma inv_std (dy - dbeta/M - xhat dgamma/M)
/// (the batch statistics depend on x, which gives the two subtracted terms).
#[allow(clippy::too_many_arguments)]
impl BatchNormSaved {
    pub(crate) fn backward(&self, values: &Values, grads: &mut Grads, dy: &[f32]) {
        let (x, gamma, beta, mean, inv_std) = (self.x, self.gamma, self.beta, &self.mean[..], &self.inv_std[..]);
        let xv = values.get(x);
        let dims = channel_layout(xv.shape()).expect("checked in forward");
        let (n, c, hw) = dims;
        let count = (n * hw) as f64;
        let xd = xv.data();
        let xhat = |ch: usize, v: f32| (v - mean[ch]) * inv_std[ch];
        // Per channel, in one pass over dy and x: (sum dy, sum dy xhat).
        let (dbeta, dgamma): (Vec<f64>, Vec<f64>) = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut sum_dy, mut sum_dy_xhat) = (0.0, 0.0);
                for i in 0..n {
                    let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                    let (dy_p, x_p) = (&dy[r.clone()], &xd[r]);
                    sum_dy += sum_f64(dy_p, |d| d as f64);
                    // sum dy (x - mean) inv_std, as (sum dy x - mean sum dy) inv_std would cancel.
                    let mut lanes = [0.0f64; 8];
                    let (dy_c, x_c) = (dy_p.chunks_exact(8), x_p.chunks_exact(8));
                    let tail: f64 = dy_c
                        .remainder()
                        .iter()
                        .zip(x_c.remainder())
                        .map(|(&d, &v)| d as f64 * xhat(ch, v) as f64)
                        .sum();
                    for (d8, v8) in dy_c.zip(x_c) {
                        for ((acc, &d), &v) in lanes.iter_mut().zip(d8).zip(v8) {
                            *acc += d as f64 * xhat(ch, v) as f64;
                        }
                    }
                    sum_dy_xhat += lanes.iter().sum::<f64>() + tail;
                }
                (sum_dy, sum_dy_xhat)
            })
            .unzip();
        let gamma_v = values.get(gamma).data();
        if let Some(dx) = grads.slot(x) {
            dx.par_chunks_mut(hw).zip(dy.par_chunks(hw).zip(xd.par_chunks(hw))).enumerate().for_each(
                |(plane, (dx_p, (dy_p, x_p)))| {
                    let ch = plane % c;
                    let k = gamma_v[ch] * inv_std[ch];
                    let (mb, mg) = ((dbeta[ch] / count) as f32, (dgamma[ch] / count) as f32);
                    for ((o, &d), &v) in dx_p.iter_mut().zip(dy_p).zip(x_p) {
                        *o += k * (d - mb - xhat(ch, v) * mg);
                    }
                },
            );
        }
        if let Some(dg) = grads.slot(gamma) {
            dg.iter_mut().zip(&dgamma).for_each(|(g, &s)| *g += s as f32);
        }
        if let Some(db) = grads.slot(beta) {
            db.iter_mut().zip(&dbeta).for_each(|(g, &s)| *g += s as f32);
        }
    }
}
