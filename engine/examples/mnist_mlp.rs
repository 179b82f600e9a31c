//! The whole engine API on one screen: load MNIST with `datasets`, train a 784-128-10 MLP
//! for one epoch in a plain loop, then measure test accuracy.
//! Run with `cargo run --release --example mnist_mlp` after `scripts/fetch-data.sh mnist`.

use datasets::{default_data_dir, load, paper_normalize, Batching, DatasetName, Loader, Split};
use engine::nn::{Flatten, Linear, Module, ReLU, Sequential};
use engine::optim::{Adam, Optimizer};
use engine::{Graph, Mode, ParamStore, Tensor};
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Data: the original IDX files, shuffled batches of 128 normalized images [128, 1, 28, 28].
    let (dir, name) = (default_data_dir(), DatasetName::Mnist);
    let train = load(name, &dir, Split::Train)?;
    let test = load(name, &dir, Split::Test)?;
    let norm = Some(paper_normalize(name));
    let train_batches = Loader::new(&train, Batching::shuffled(128, 0).normalize(norm.clone()))?;
    let test_batches = Loader::new(&test, Batching::in_order(1000).normalize(norm))?;

    // Model: parameters live in a store outside the tape; layers hold their ids.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut store = ParamStore::new();
    let mut net = Sequential::new("net");
    net.push(Flatten);
    net.push(Linear::new(&mut store, &net.next_name(), 784, 128, true, &mut rng));
    net.push(ReLU);
    net.push(Linear::new(&mut store, &net.next_name(), 128, 10, true, &mut rng));
    let mut opt = Adam::new(1e-3, 0.0);

    // One epoch: a fresh tape per step; forward, loss, backward, update.
    for (step, batch) in train_batches.epoch(0).enumerate() {
        store.zero_grads();
        let mut g = Graph::new(&mut store, Mode::Train, step as u64);
        let x = g.input(Tensor::from_vec(&batch.shape, batch.images)?);
        let logits = net.forward(&mut g, x)?;
        let loss = g.softmax_cross_entropy(logits, &batch.labels)?;
        g.backward(loss)?;
        if step % 100 == 0 {
            println!("step {step:3}  loss {:.4}", g.value(loss).item());
        }
        opt.step(&mut store);
    }

    // Evaluation mode records nothing: the tape only computes.
    let mut correct = 0;
    for batch in test_batches.epoch(0) {
        let mut g = Graph::new(&mut store, Mode::Eval, 0);
        let x = g.input(Tensor::from_vec(&batch.shape, batch.images)?);
        let logits = net.forward(&mut g, x)?;
        let predictions = g.value(logits).argmax_last();
        correct += predictions.iter().zip(&batch.labels).filter(|(p, l)| p == l).count();
    }
    println!("test accuracy after one epoch: {:.2}%", 100.0 * correct as f64 / test.len as f64);
    Ok(())
}
