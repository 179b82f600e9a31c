//! `Tensor`: a shape and contiguous, row-major f32 storage. Nothing else.

use crate::error::{EngineError, Result};
use rand::Rng;

/// A dense, row-major f32 array.
///
/// ```
/// use engine::Tensor;
/// let logits = Tensor::from_vec(&[2, 3], vec![0.1, 2.0, -1.0, 5.0, 0.0, 0.3])?;
/// assert_eq!(logits.shape(), &[2, 3]);
/// assert_eq!(logits.argmax_last(), vec![1, 0]);
/// assert!(Tensor::from_vec(&[2, 2], vec![1.0]).is_err()); // 4 values needed
/// # Ok::<(), engine::EngineError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor { shape: shape.to_vec(), data: crate::buffers::zeroed(shape.iter().product()) }
    }

    /// A tensor for an op that writes every element before anything reads it: its storage may
    /// hold a recycled buffer's old values, which saves zeroing it.
    pub(crate) fn for_overwrite(shape: &[usize]) -> Tensor {
        Tensor { shape: shape.to_vec(), data: crate::buffers::overwritten(shape.iter().product()) }
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// A tensor with every element equal to `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor { shape: shape.to_vec(), data: crate::buffers::filled(shape.iter().product(), value) }
    }

    /// A zero-dimensional tensor holding one number.
    pub fn scalar(value: f32) -> Tensor {
        Tensor { shape: vec![], data: vec![value] }
    }

    /// Wraps `data`, checking that its length matches `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(EngineError::Shape(format!(
                "Tensor::from_vec: shape {shape:?} needs {expected} elements, found {}",
                data.len()
            )));
        }
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    /// Uniform samples in `[low, high)`.
    pub fn uniform(shape: &[usize], low: f32, high: f32, rng: &mut impl Rng) -> Tensor {
        let n = shape.iter().product();
        let data = (0..n).map(|_| rng.gen_range(low..high)).collect();
        Tensor { shape: shape.to_vec(), data }
    }

    /// Normal samples (Box-Muller, so no extra crate is needed).
    pub fn normal(shape: &[usize], mean: f32, std: f32, rng: &mut impl Rng) -> Tensor {
        let n: usize = shape.iter().product();
        let mut data = Vec::with_capacity(n + 1);
        while data.len() < n {
            let u1: f64 = 1.0 - rng.gen::<f64>(); // in (0, 1], so ln is finite
            let u2: f64 = rng.gen();
            let radius = (-2.0 * u1.ln()).sqrt();
            let angle = 2.0 * std::f64::consts::PI * u2;
            data.push(mean + std * (radius * angle.cos()) as f32);
            data.push(mean + std * (radius * angle.sin()) as f32);
        }
        data.truncate(n);
        Tensor { shape: shape.to_vec(), data }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The elements, row-major, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its storage.
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.data)
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> f32 {
        self.data[0]
    }

    /// Same data, new shape (same element count).
    pub fn reshape(mut self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.data.len() {
            return Err(EngineError::Shape(format!(
                "reshape: cannot view {:?} ({} elements) as {shape:?} ({n} elements)",
                self.shape,
                self.data.len()
            )));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Keeps the first axis and flattens the rest: [N, ...] -> [N, prod(...)].
    pub fn flatten(mut self) -> Tensor {
        let rows = self.shape.first().copied().unwrap_or(1);
        let cols = self.data.len().checked_div(rows).unwrap_or(0);
        Tensor { shape: vec![rows, cols], data: std::mem::take(&mut self.data) }
    }

    /// Index of the largest value along the last axis, for each leading index.
    pub fn argmax_last(&self) -> Vec<usize> {
        let cols = self.shape.last().copied().unwrap_or(1).max(1);
        self.data
            .chunks(cols)
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }

    /// Sets every element to zero, keeping the allocation.
    pub fn fill_zero(&mut self) {
        self.data.fill(0.0);
    }
}

/// Large buffers go back to the engine's pool for the next step (see `buffers.rs`).
impl Drop for Tensor {
    fn drop(&mut self) {
        crate::buffers::recycle(std::mem::take(&mut self.data));
    }
}
