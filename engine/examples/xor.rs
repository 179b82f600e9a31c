//! The smallest complete use of the engine: a 2-16-2 MLP learns XOR.
//! Run with `cargo run --release --example xor`.

use engine::nn::{Linear, Module, ReLU, Sequential};
use engine::optim::{Adam, Optimizer};
use engine::{Graph, Mode, ParamStore, Tensor};
use rand::SeedableRng;

fn main() -> engine::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut store = ParamStore::new();
    let mut net = Sequential::new("net");
    net.push(Linear::new(&mut store, &net.next_name(), 2, 16, true, &mut rng));
    net.push(ReLU);
    net.push(Linear::new(&mut store, &net.next_name(), 16, 2, true, &mut rng));

    let x = Tensor::from_vec(&[4, 2], vec![0., 0., 0., 1., 1., 0., 1., 1.])?;
    let labels = [0, 1, 1, 0];
    let mut opt = Adam::new(0.05, 0.0);
    for step in 0..200 {
        store.zero_grads();
        let mut g = Graph::new(&mut store, Mode::Train, step);
        let input = g.input(x.clone());
        let logits = net.forward(&mut g, input)?;
        let loss = g.softmax_cross_entropy(logits, &labels)?;
        g.backward(loss)?;
        let loss_value = g.value(loss).item();
        if step % 50 == 0 {
            println!("step {step:3}  loss {loss_value:.4}");
        }
        opt.step(&mut store);
    }
    let mut g = Graph::new(&mut store, Mode::Eval, 0);
    let input = g.input(x);
    let logits = net.forward(&mut g, input)?;
    println!("predictions for (0,0) (0,1) (1,0) (1,1): {:?}", g.value(logits).argmax_last());
    Ok(())
}
