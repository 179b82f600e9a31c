//! Finite-difference checks of gradients: what every op's test uses, and what anyone adding
//! an op should run against its hand-written backward.

use crate::error::Result;
use crate::tensor::Tensor;

/// Central differences `(f(x + eps e_i) - f(x - eps e_i)) / 2 eps` of the scalar function
/// `f` at `x`, one per element of `x` (evaluate `f` in f64 where you can: the difference
/// of two nearby f32 values loses most of its digits).
pub fn numeric_gradient(x: &Tensor, eps: f32, mut f: impl FnMut(&Tensor) -> Result<f64>) -> Result<Tensor> {
    let mut grad = Tensor::zeros(x.shape());
    let mut probe = x.clone();
    for i in 0..x.len() {
        let v = x.data()[i];
        probe.data_mut()[i] = v + eps;
        let up = f(&probe)?;
        probe.data_mut()[i] = v - eps;
        let down = f(&probe)?;
        probe.data_mut()[i] = v;
        grad.data_mut()[i] = ((up - down) / (2.0 * eps as f64)) as f32;
    }
    Ok(grad)
}

/// The largest `|a - b| / max(1, |b|)` over the elements of two tensors of one shape.
pub fn max_relative_error(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape(), "max_relative_error: shapes differ");
    a.data()
        .iter()
        .zip(b.data())
        .map(|(&x, &y)| (x as f64 - y as f64).abs() / (y as f64).abs().max(1.0))
        .fold(0.0, f64::max)
}
