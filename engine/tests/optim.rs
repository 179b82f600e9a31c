//! Optimizer steps against hand-computed values. The expected numbers were evaluated in
//! float64 from the update rules documented for torch.optim.SGD / Adam / AdamW (written
//! out in each test), for p0 = [1, -2] and the gradients [0.5, -1], [0.25, 0.5], [-0.75, 1.5].

use engine::optim::{Adam, Optimizer, Schedule, Sgd};
use engine::{ParamStore, Tensor};

const GRADS: [[f32; 2]; 3] = [[0.5, -1.0], [0.25, 0.5], [-0.75, 1.5]];

fn run(opt: &mut dyn Optimizer) -> Vec<[f32; 2]> {
    let mut store = ParamStore::new();
    let id = store.add("p", Tensor::from_vec(&[2], vec![1.0, -2.0]).unwrap());
    let mut out = Vec::new();
    for g in GRADS {
        store.zero_grads();
        set_grad(&mut store, id, &g);
        opt.step(&mut store);
        let v = store.value(id).data();
        out.push([v[0], v[1]]);
    }
    out
}

/// Writes a gradient through a one-op graph: d(sum(p * g))/dp = g.
fn set_grad(store: &mut ParamStore, id: engine::ParamId, g: &[f32; 2]) {
    let mut graph = engine::Graph::new(store, engine::Mode::Train, 0);
    let p = graph.param(id);
    let gv = graph.input(Tensor::from_vec(&[2], g.to_vec()).unwrap());
    let prod = graph.mul(p, gv).unwrap();
    let loss = graph.sum(prod);
    graph.backward(loss).unwrap();
}

fn assert_close(got: &[[f32; 2]], want: &[[f64; 2]]) {
    for (step, (g, w)) in got.iter().zip(want).enumerate() {
        for k in 0..2 {
            assert!((g[k] as f64 - w[k]).abs() < 2e-6, "step {}: p[{k}] = {} expected {}", step + 1, g[k], w[k]);
        }
    }
}

#[test]
fn sgd_momentum_nesterov_weight_decay() {
    // g = grad + 0.1 p; buf = g (step 1), 0.9 buf + g after; p -= 0.1 (g + 0.9 buf)
    let got = run(&mut Sgd::new(0.1, 0.9, 0.1, true));
    assert_close(&got, &[[0.886, -1.772], [0.773066, -1.736132], [0.829711146, -1.926812292]]);
}

#[test]
fn adam_with_l2_weight_decay() {
    // g = grad + 0.1 p; m, v moments (0.9, 0.999); p -= (lr / (1 - 0.9^t)) m / (sqrt(v) / sqrt(1 - 0.999^t) + 1e-8), lr 0.01
    let got = run(&mut Adam::new(0.01, 0.1));
    assert_close(
        &got,
        &[
            [0.9900000001666667, -1.9900000000833333],
            [0.980465827519045, -1.985312258721214],
            [0.9794715651343595, -1.9874490709378538],
        ],
    );
}

#[test]
fn adamw_decoupled_weight_decay() {
    // p *= 1 - lr 0.1 first, then the Adam step on the raw gradient, lr 0.01
    let got = run(&mut Adam::new_w(0.01, 0.1));
    assert_close(
        &got,
        &[
            [0.9890000002, -1.9880000001],
            [0.9786892040475462, -1.9833486297369902],
            [0.9785302828068303, -1.9852591789691223],
        ],
    );
}

/// The official scripts: `for epoch in 1..=E: if epoch in milestones: lr *= gamma` (and for the
/// step schedule `if epoch % K == 0`), i.e. the decay applies from the 1-based epoch m on,
/// which is our 0-based epoch m - 1.
#[test]
fn schedules_count_epochs_as_the_official_scripts() {
    let step: Schedule = "step:30:0.5".parse().unwrap();
    assert_eq!(step.lr_at(0.05, 28), 0.05); // 1-based epoch 29
    assert_eq!(step.lr_at(0.05, 29), 0.025); // 1-based epoch 30: first decay
    assert_eq!(step.lr_at(0.05, 65), 0.0125);
    let multi: Schedule = "multistep:60,120,160:0.2".parse().unwrap();
    assert_eq!(multi.lr_at(0.1, 58), 0.1);
    assert!((multi.lr_at(0.1, 59) - 0.02).abs() < 1e-7); // 1-based epoch 60
    assert!((multi.lr_at(0.1, 199) - 0.0008).abs() < 1e-8);
    let paper: Schedule = "multistep:80,130:0.1".parse().unwrap();
    let epochs_at_base = (0..160).filter(|&e| paper.lr_at(1e-3, e) == 1e-3).count();
    assert_eq!(epochs_at_base, 79, "79 finished epochs before the first decay");
    assert_eq!("constant".parse::<Schedule>().unwrap().lr_at(0.3, 1000), 0.3);
    for bad in ["step:0:0.5", "step:x:0.5", "multistep:a,b:0.1", "cosine", "step:10"] {
        let err = bad.parse::<Schedule>().unwrap_err().to_string();
        assert!(err.contains(bad), "error for {bad} should quote it: {err}");
    }
}
