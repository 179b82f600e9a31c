//! A new op and its backward, checked by finite differences: swish(x) = x sigmoid(x).
//! Run with `cargo run --release --example custom_op`.
//!
//! Inside the engine an op is a saved-state struct in `op.rs`, a forward in `ops/`, a
//! `backward` method beside it and one arm in `backward.rs` (docs/engine.md, "Adding an
//! op"). From outside, compose existing ops; either way, derive the backward by hand and
//! check it against finite differences before trusting it.

use engine::check::{max_relative_error, numeric_gradient};
use engine::{Graph, Mode, ParamStore, Result, Tensor, Var};
use rand::{Rng, SeedableRng};

/// Forward: swish from two recorded ops, so the tape knows how to differentiate it.
fn swish(g: &mut Graph, x: Var) -> Result<Var> {
    let s = g.sigmoid(x);
    g.mul(x, s)
}

/// Backward by hand: d swish / dx = s + x s (1 - s), with s = sigmoid(x).
fn swish_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(dy)
        .map(|(&x, &dy)| {
            let s = 1.0 / (1.0 + (-x).exp());
            dy * (s + x * s * (1.0 - s))
        })
        .collect()
}

/// The checked loss L(x) = sum(w * swish(x)), with fixed random weights w (so that every
/// element gets its own dL/dy), in f64 for the finite differences.
fn loss_f64(x: &Tensor, w: &[f32]) -> f64 {
    let swish = |v: f64| v / (1.0 + (-v).exp());
    x.data().iter().zip(w).map(|(&v, &w)| w as f64 * swish(v as f64)).sum()
}

fn main() -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let x = Tensor::from_vec(&[4, 5], (0..20).map(|_| rng.gen_range(-4.0..4.0)).collect())?;
    let w: Vec<f32> = (0..20).map(|_| rng.gen_range(-1.0..1.0)).collect();

    // The tape's gradient of L = sum(w * swish(x)).
    let mut store = ParamStore::new();
    let mut g = Graph::new(&mut store, Mode::Train, 0);
    let xv = g.variable(x.clone());
    let wv = g.input(Tensor::from_vec(&[4, 5], w.clone())?);
    let y = swish(&mut g, xv)?;
    let weighted = g.mul(y, wv)?;
    let loss = g.sum(weighted);
    g.backward(loss)?;
    let tape = g.grad(xv).expect("x is a variable").clone();

    // The hand-written backward with dL/dy = w, and central differences of L.
    let by_hand = Tensor::from_vec(&[4, 5], swish_backward(x.data(), &w))?;
    let numeric = numeric_gradient(&x, 1e-3, |x| Ok(loss_f64(x, &w)))?;

    println!("x[0..4]            {:?}", &x.data()[..4]);
    println!("tape gradient      {:?}", &tape.data()[..4]);
    println!("hand-written       {:?}", &by_hand.data()[..4]);
    println!("finite differences {:?}", &numeric.data()[..4]);
    let (e_tape, e_hand) = (max_relative_error(&tape, &numeric), max_relative_error(&by_hand, &numeric));
    println!("max relative error vs finite differences: tape {e_tape:.2e}, hand-written {e_hand:.2e}");
    assert!(e_tape < 1e-3 && e_hand < 1e-3, "a backward disagrees with finite differences");
    println!("both backwards agree with finite differences");
    Ok(())
}
