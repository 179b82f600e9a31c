//! Batch normalization over [N, C] (1-d) or [N, C, H, W] (2-d): forward and backward.

use rayon::prelude::*;

use crate::autograd::{Grads, Graph, Values, Var};
use crate::error::{EngineError, Result};
use crate::kernels::batchnorm::{gated_sums, shifted_sums, ChannelMap};
use crate::kernels::parallel::plane_sums;
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

impl Graph<'_> {
    /// `y = gamma (x - mean) / sqrt(var + eps) + beta` per channel. Training: batch
    /// statistics, and the running ones move by `momentum` (PyTorch's 0.1); evaluation:
    /// running statistics.
    pub fn batch_norm(&mut self, x: Var, ids: BatchNormIds, momentum: f32, eps: f32) -> Result<Var> {
        self.batch_norm_maybe_relu(x, ids, momentum, eps, false)
    }

    /// `max(batch_norm(x), 0)` in one pass, forward and backward: what a batch-norm followed
    /// by a ReLU computes, without the ReLU's own pass over memory and its output tensor.
    pub fn batch_norm_relu(&mut self, x: Var, ids: BatchNormIds, momentum: f32, eps: f32) -> Result<Var> {
        self.batch_norm_maybe_relu(x, ids, momentum, eps, true)
    }

    fn batch_norm_maybe_relu(&mut self, x: Var, ids: BatchNormIds, momentum: f32, eps: f32, relu: bool) -> Result<Var> {
        let shape = self.shape(x).to_vec();
        let channels = self.params().value(ids.gamma).len();
        let dims = channel_layout(&shape).filter(|d| d.1 == channels).ok_or_else(|| {
            EngineError::Shape(format!("batch_norm: input {shape:?} does not fit {channels} channels (expected [N, {channels}] or [N, {channels}, H, W])"))
        })?;
        let (gamma, beta) = (self.param(ids.gamma), self.param(ids.beta));
        let (n, c, hw) = dims;
        let count = n * hw;
        let (mean, inv_std): (Vec<f32>, Vec<f32>) = if self.is_training() {
            if count < 2 {
                return Err(EngineError::Shape(format!(
                    "batch_norm: training needs more than one value per channel, input {shape:?}"
                )));
            }
            let xv = self.value(x).data();
            // One pass: sums about each channel's first value (see `shifted_sums`).
            let shift: Vec<f32> = (0..c).map(|ch| xv[ch * hw]).collect();
            let sums = plane_sums(n, c, hw, |i, ch| shifted_sums(&xv[(i * c + ch) * hw..][..hw], shift[ch]));
            let (mean, var): (Vec<f64>, Vec<f64>) = sums
                .iter()
                .zip(&shift)
                .map(|(&[s1, s2], &k)| {
                    let d = s1 / count as f64;
                    (k as f64 + d, (s2 / count as f64 - d * d).max(0.0))
                })
                .unzip();
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
        let mut y = Tensor::for_overwrite(&shape);
        {
            let p = self.params();
            let (gv, bv) = (p.value(ids.gamma).data(), p.value(ids.beta).data());
            let xv = self.value(x).data();
            let maps = ChannelMap::per_channel(&mean, &inv_std, gv, bv);
            let per = planes_per_task(hw);
            y.data_mut().par_chunks_mut(per * hw).zip(xv.par_chunks(per * hw)).enumerate().for_each(
                |(task, (y_t, x_t))| {
                    for (j, (y_p, x_p)) in y_t.chunks_mut(hw).zip(x_t.chunks(hw)).enumerate() {
                        let map = maps[(task * per + j) % c];
                        y_p.iter_mut().zip(x_p).for_each(|(o, &v)| *o = map.output(v, relu));
                    }
                },
            );
        }
        Ok(self.record(Op::BatchNorm(BatchNormSaved { x, gamma, beta, mean, inv_std, relu }), y, &[x, gamma, beta]))
    }
}

/// Planes of `hw` values per parallel task of the elementwise passes: whole planes, at least
/// 4K values, so that the 2x2 and 4x4 maps of late VGG layers are not one task per 4 values.
fn planes_per_task(hw: usize) -> usize {
    (1usize << 12).div_ceil(hw.max(1))
}

/// With xhat = (x - mean) inv_std, per channel over the M = N*H*W values:
/// dbeta = sum dy;  dgamma = sum dy xhat;  dx = gamma inv_std (dy - dbeta/M - xhat dgamma/M)
/// (the batch statistics depend on x, which gives the two subtracted terms). With a fused
/// ReLU, dy is first zeroed where the output was clamped, i.e. where gamma xhat + beta <= 0
/// (recomputed from x, as the forward computed it).
#[allow(clippy::too_many_arguments)]
impl BatchNormSaved {
    pub(crate) fn backward(&self, values: &Values, grads: &mut Grads, dy: &[f32]) {
        if self.relu {
            self.backward_gated::<true>(values, grads, dy)
        } else {
            self.backward_gated::<false>(values, grads, dy)
        }
    }

    /// The backward pass, with `RELU` fixed at compile time so that the mask is a select the
    /// loops vectorize (or nothing at all).
    fn backward_gated<const RELU: bool>(&self, values: &Values, grads: &mut Grads, dy: &[f32]) {
        let (x, gamma, beta, mean, inv_std) = (self.x, self.gamma, self.beta, &self.mean[..], &self.inv_std[..]);
        let xv = values.get(x);
        let dims = channel_layout(xv.shape()).expect("checked in forward");
        let (n, c, hw) = dims;
        let count = (n * hw) as f64;
        let xd = xv.data();
        let (gamma_v, beta_v) = (values.get(gamma).data(), values.get(beta).data());
        // The forward's statistics and affine map per channel, as it made them, for the ReLU's mask.
        let maps = ChannelMap::per_channel(mean, inv_std, gamma_v, beta_v);
        // Per channel, in one pass over dy and x: (sum dy, sum dy xhat), in eight f64 lanes each.
        let sums = plane_sums(n, c, hw, |i, ch| {
            let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
            gated_sums::<RELU>(&dy[r.clone()], &xd[r], maps[ch])
        });
        let (dbeta, dgamma): (Vec<f64>, Vec<f64>) = sums.into_iter().map(|[b, g]| (b, g)).unzip();
        // Usually x's gradient is new here (x feeds only this op): stored, not added to zeros.
        if let Some((dx, fresh)) = grads.slot_fresh(x) {
            let mean_dbeta: Vec<f32> = dbeta.iter().map(|&b| (b / count) as f32).collect();
            let mean_dgamma: Vec<f32> = dgamma.iter().map(|&g| (g / count) as f32).collect();
            let per = planes_per_task(hw);
            dx.par_chunks_mut(per * hw).zip(dy.par_chunks(per * hw).zip(xd.par_chunks(per * hw))).enumerate().for_each(
                |(task, (dx_t, (dy_t, x_t)))| {
                    for (j, (dx_p, (dy_p, x_p))) in
                        dx_t.chunks_mut(hw).zip(dy_t.chunks(hw).zip(x_t.chunks(hw))).enumerate()
                    {
                        let ch = (task * per + j) % c;
                        let map = maps[ch];
                        let (m, s) = (map.mean, map.inv_std);
                        let k = gamma_v[ch] * s;
                        let (mb, mg) = (mean_dbeta[ch], mean_dgamma[ch]);
                        let value = |d: f32, v: f32| k * (map.gate::<RELU>(d, v) - mb - (v - m) * s * mg);
                        let pairs = dx_p.iter_mut().zip(dy_p.iter().zip(x_p));
                        if fresh {
                            pairs.for_each(|(o, (&d, &v))| *o = value(d, v));
                        } else {
                            pairs.for_each(|(o, (&d, &v))| *o += value(d, v));
                        }
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
