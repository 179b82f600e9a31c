//! The paper's toy task (Figure 3): two clusters of 100 points near (0,0) and (1,1) with
//! uniform jitter +-0.05; network 2 -> 1 (no bias) -> SpherizedLinear(1 -> 2) with
//! alpha = r = 1; SGD lr 0.01, batch 16. It must reach 100% training accuracy within 100
//! epochs, with every representation on the circle of radius r.

use engine::nn::{Linear, Module, SphereConfig, SpherizedLinear};
use engine::optim::{Optimizer, Sgd};
use engine::{Graph, Mode, ParamStore, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[test]
fn toy_task_reaches_full_accuracy_with_representations_on_the_circle() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2022);
    let mut points = Vec::new();
    for (label, center) in [(0usize, 0.0f32), (1, 1.0)] {
        for _ in 0..100 {
            points.push(([center + rng.gen_range(-0.05..0.05), center + rng.gen_range(-0.05..0.05)], label));
        }
    }
    let mut store = ParamStore::new();
    let first = Linear::new(&mut store, "fc", 2, 1, false, &mut rng);
    let cfg = SphereConfig { scaling: 1.0, radius: 1.0, ..SphereConfig::default() };
    let head = SpherizedLinear::new(&mut store, "sph_fc", 1, 2, cfg, &mut rng).unwrap();
    let mut opt = Sgd::new(0.01, 0.0, 0.0, false);

    let run = |store: &mut ParamStore, batch: &[([f32; 2], usize)], mode: Mode| {
        let x = Tensor::from_vec(&[batch.len(), 2], batch.iter().flat_map(|p| p.0).collect()).unwrap();
        let labels: Vec<usize> = batch.iter().map(|p| p.1).collect();
        let mut g = Graph::new(store, mode, 0);
        let xv = g.input(x);
        let z = first.forward(&mut g, xv).unwrap();
        let (s, logits) = head.forward_with_representation(&mut g, z).unwrap();
        let loss = g.softmax_cross_entropy(logits, &labels).unwrap();
        if mode == Mode::Train {
            g.backward(loss).unwrap();
        }
        let correct = g.value(logits).argmax_last().iter().zip(&labels).filter(|(p, l)| p == l).count();
        (correct, g.value(s).clone())
    };

    let mut reached = None;
    for epoch in 0..100 {
        points.shuffle(&mut rng);
        for batch in points.chunks(16) {
            store.zero_grads();
            run(&mut store, batch, Mode::Train);
            opt.step(&mut store);
        }
        let (correct, reprs) = run(&mut store, &points, Mode::Eval);
        for row in reprs.data().chunks(2) {
            let norm = (row[0] * row[0] + row[1] * row[1]).sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "representation {row:?} has norm {norm}");
            assert!(row[0] >= 0.0 && row[1] >= 0.0, "representation {row:?} left the first quadrant");
        }
        if correct == points.len() {
            reached = Some(epoch + 1);
            break;
        }
    }
    assert!(reached.is_some(), "the spherized toy network did not reach 100% training accuracy in 100 epochs");
    println!("100% training accuracy after {} epochs", reached.unwrap());
}
