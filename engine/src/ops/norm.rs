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

/// Per channel: sum over the batch and pixels of f(channel, value), in f64.
fn channel_sums(x: &[f32], (n, c, hw): (usize, usize, usize), f: impl Fn(usize, f32) -> f64 + Sync) -> Vec<f64> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            (0..n).map(|i| x[(i * c + ch) * hw..(i * c + ch + 1) * hw].iter().map(|&v| f(ch, v)).sum::<f64>()).sum()
        })
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
        let dbeta: Vec<f64> = (0..c)
            .into_par_iter()
            .map(|ch| {
                (0..n)
                    .map(|i| dy[(i * c + ch) * hw..(i * c + ch + 1) * hw].iter().map(|&d| d as f64).sum::<f64>())
                    .sum()
            })
            .collect();
        let dgamma: Vec<f64> = (0..c)
            .into_par_iter()
            .map(|ch| {
                (0..n)
                    .map(|i| {
                        let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                        dy[r.clone()].iter().zip(&xd[r]).map(|(&d, &v)| d as f64 * xhat(ch, v) as f64).sum::<f64>()
                    })
                    .sum()
            })
            .collect();
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
