//! Fused softmax cross-entropy, mean over the batch: forward and backward.

use crate::autograd::{Grads, Graph, Values, Var};
use crate::error::{EngineError, Result};
use crate::op::{Op, SoftmaxCrossEntropySaved};
use crate::tensor::Tensor;

impl Graph<'_> {
    /// `mean_b( -log softmax(logits_b)[label_b] )`, computed with the max subtracted so
    /// logits of +-1e4 stay finite.
    pub fn softmax_cross_entropy(&mut self, logits: Var, labels: &[usize]) -> Result<Var> {
        let shape = self.shape(logits).to_vec();
        if shape.len() != 2 || shape[0] != labels.len() {
            return Err(EngineError::Shape(format!(
                "softmax_cross_entropy: logits {shape:?} need [batch, classes] with batch = {} labels",
                labels.len()
            )));
        }
        let classes = shape[1];
        if let Some(&bad) = labels.iter().find(|&&l| l >= classes) {
            return Err(EngineError::Shape(format!(
                "softmax_cross_entropy: label {bad} is out of range for {classes} classes"
            )));
        }
        let mut probs = self.value(logits).data().to_vec();
        let mut total = 0.0f64;
        for (row, &label) in probs.chunks_mut(classes).zip(labels) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let shifted_label = (row[label] - max) as f64;
            let mut norm = 0.0f64;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                norm += *v as f64;
            }
            // log softmax[label] = (z_label - max) - log(sum exp(z - max))
            total += norm.ln() - shifted_label;
            let inv = (1.0 / norm) as f32;
            row.iter_mut().for_each(|v| *v *= inv);
        }
        let loss = (total / labels.len().max(1) as f64) as f32;
        Ok(self.record(
            Op::SoftmaxCrossEntropy(SoftmaxCrossEntropySaved { logits, labels: labels.to_vec(), probs }),
            Tensor::scalar(loss),
            &[logits],
        ))
    }
}

/// dlogits += dloss * (softmax - onehot(label)) / batch.
impl SoftmaxCrossEntropySaved {
    pub(crate) fn backward(&self, _values: &Values, grads: &mut Grads, dy: &[f32]) {
        let (logits, labels, probs) = (self.logits, &self.labels[..], &self.probs[..]);
        let Some(dx) = grads.slot(logits) else { return };
        let classes = probs.len() / labels.len().max(1);
        let scale = dy[0] / labels.len() as f32;
        for ((d, p), &label) in dx.chunks_mut(classes).zip(probs.chunks(classes)).zip(labels) {
            for (j, (dv, &pv)) in d.iter_mut().zip(p).enumerate() {
                *dv += scale * (pv - if j == label { 1.0 } else { 0.0 });
            }
        }
    }
}
