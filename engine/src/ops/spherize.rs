//! The spherization op (Kim & Kim, NeurIPS 2022): pre-activations -> points on a sphere of
//! radius r in one orthant, using only angles. The math lives in `kernels::spherize`;
//! this file records it on the tape and routes its gradients.
//!
//! Non-finite inputs: a NaN or infinite pre-activation gives NaN coordinates in its row
//! (and NaN gradients); nothing panics.

use crate::autograd::{Grads, Graph, Values, Var};
use crate::error::{EngineError, Result};
use crate::kernels::spherize::{self as kernel, SphereParams};
use crate::op::{Op, SpherizeSaved};
use crate::ops::channel_layout;
use crate::tensor::Tensor;

impl Graph<'_> {
    /// Spherizes `z` ([B, n] -> [B, n+1], or [N, C, H, W] -> [N, C+1, H, W] per pixel) with
    /// scaling `alpha` and radius `radius` (scalar vars) and lower angle `phi_lower`.
    pub fn spherize(&mut self, z: Var, alpha: Var, radius: Var, phi_lower: f64) -> Result<Var> {
        let shape = self.shape(z).to_vec();
        let (batch, n, hw) = channel_layout(&shape).filter(|d| d.1 >= 1).ok_or_else(|| {
            EngineError::Shape(format!("spherize: input {shape:?} must be [batch, n] or [N, C, H, W] with n, C >= 1"))
        })?;
        let p = SphereParams { alpha: self.value(alpha).item(), radius: self.value(radius).item(), phi_lower };
        let mut out_shape = shape.clone();
        out_shape[1] = n + 1;
        let mut s = Tensor::for_overwrite(&out_shape);
        // (The row form [B, n] is the channel form with hw = 1.) A training pass keeps the
        // angles for the backward pass (3 floats per input), which then need not recompute them.
        let angles = if self.is_training() {
            let mut angles = Tensor::for_overwrite(&[kernel::saved_len(batch, n, hw)]);
            kernel::forward_channels_saving(self.value(z).data(), batch, n, hw, p, s.data_mut(), angles.data_mut());
            angles
        } else {
            kernel::forward_channels(self.value(z).data(), batch, n, hw, p, s.data_mut());
            Tensor::zeros(&[0])
        };
        Ok(self.record(Op::Spherize(SpherizeSaved { z, alpha, radius, phi_lower, angles }), s, &[z, alpha, radius]))
    }
}

/// Gradients for z, alpha and r; see `kernels::spherize` for the O(n) derivation.
impl SpherizeSaved {
    pub(crate) fn backward(&self, values: &Values, grads: &mut Grads, dy: &[f32]) {
        let SpherizeSaved { z, alpha, radius, phi_lower, ref angles } = *self;
        let zv = values.get(z);
        let (batch, n, hw) = channel_layout(zv.shape()).expect("checked in forward");
        let p = SphereParams { alpha: values.get(alpha).item(), radius: values.get(radius).item(), phi_lower };
        // The kernel always produces dz; give it a scratch buffer when z needs no gradient.
        let mut scratch = Vec::new();
        let dz = match grads.slot(z) {
            Some(dz) => dz,
            None => {
                scratch.resize(zv.len(), 0.0);
                &mut scratch[..]
            }
        };
        let (d_alpha, d_radius) = kernel::backward_channels_saved(zv.data(), batch, n, hw, p, dy, dz, angles.data());
        if let Some(g) = grads.slot(alpha) {
            g[0] += d_alpha;
        }
        if let Some(g) = grads.slot(radius) {
            g[0] += d_radius;
        }
    }
}
