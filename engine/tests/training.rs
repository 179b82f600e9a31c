//! End-to-end behaviour: learning, determinism, checkpoint round trips, bad input.

use std::collections::HashMap;

use engine::checkpoint;
use engine::nn::{BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential};
use engine::optim::{Adam, Optimizer, Sgd};
use engine::{Graph, Mode, ParamStore, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// conv(1->8, 3x3, pad 1) - BN - ReLU - maxpool 2 - flatten - dropout - linear(128 -> 4)
fn small_conv_net(store: &mut ParamStore, seed: u64) -> Sequential {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = Sequential::new("net");
    net.push(Conv2d::new(store, &net.next_name(), 1, 8, 3, 1, 1, true, &mut rng));
    net.push(BatchNorm::new(store, &net.next_name(), 8));
    net.push(ReLU);
    net.push(MaxPool2d { kernel: 2, stride: 2 });
    net.push(Flatten);
    net.push(Dropout(0.1));
    net.push(Linear::new(store, &net.next_name(), 128, 4, true, &mut rng));
    net
}

fn mlp(store: &mut ParamStore, seed: u64) -> Sequential {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = Sequential::new("mlp");
    net.push(Linear::new(store, &net.next_name(), 2, 64, true, &mut rng));
    net.push(ReLU);
    net.push(Linear::new(store, &net.next_name(), 64, 2, true, &mut rng));
    net
}

/// One training step; returns the loss.
fn train_step(
    store: &mut ParamStore,
    net: &dyn Module,
    opt: &mut dyn Optimizer,
    x: &Tensor,
    labels: &[usize],
    seed: u64,
) -> f32 {
    store.zero_grads();
    let loss_value = {
        let mut g = Graph::new(store, Mode::Train, seed);
        let xv = g.input(x.clone());
        let logits = net.forward(&mut g, xv).unwrap();
        let loss = g.softmax_cross_entropy(logits, labels).unwrap();
        g.backward(loss).unwrap();
        g.value(loss).item()
    };
    opt.step(store);
    loss_value
}

fn accuracy(store: &mut ParamStore, net: &dyn Module, x: &Tensor, labels: &[usize]) -> f32 {
    let mut g = Graph::new(store, Mode::Eval, 0);
    let xv = g.input(x.clone());
    let logits = net.forward(&mut g, xv).unwrap();
    let pred = g.value(logits).argmax_last();
    pred.iter().zip(labels).filter(|(p, l)| p == l).count() as f32 / labels.len() as f32
}

fn random_images(n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let x = Tensor::normal(&[n, 1, 8, 8], 0.0, 1.0, &mut rng);
    let labels = (0..n).map(|_| rng.gen_range(0..4)).collect();
    (x, labels)
}

/// Two interleaved spirals, 100 points each.
fn two_spirals() -> (Tensor, Vec<usize>) {
    let mut data = Vec::new();
    let mut labels = Vec::new();
    for i in 0..100 {
        let t = i as f32 / 100.0 * 3.0 * std::f32::consts::PI;
        let r = 0.1 + t / (3.0 * std::f32::consts::PI);
        for (class, phase) in [(0usize, 0.0f32), (1, std::f32::consts::PI)] {
            data.push(r * (t + phase).cos());
            data.push(r * (t + phase).sin());
            labels.push(class);
        }
    }
    (Tensor::from_vec(&[200, 2], data).unwrap(), labels)
}

#[test]
fn mlp_learns_two_spirals_to_full_accuracy() {
    let mut store = ParamStore::new();
    let net = mlp(&mut store, 1);
    let (x, labels) = two_spirals();
    let mut opt = Adam::new(0.01, 0.0);
    for step in 0..3000 {
        train_step(&mut store, &net, &mut opt, &x, &labels, step);
        if step % 100 == 99 && accuracy(&mut store, &net, &x, &labels) == 1.0 {
            return;
        }
    }
    panic!("accuracy after 3000 steps: {}", accuracy(&mut store, &net, &x, &labels));
}

#[test]
fn conv_net_overfits_64_random_images() {
    let mut store = ParamStore::new();
    let net = small_conv_net(&mut store, 2);
    let (x, labels) = random_images(64, 3);
    let mut opt = Sgd::new(0.05, 0.9, 0.0, false);
    for step in 0..300 {
        train_step(&mut store, &net, &mut opt, &x, &labels, step);
    }
    let acc = accuracy(&mut store, &net, &x, &labels);
    assert_eq!(acc, 1.0, "training accuracy {acc}");
}

fn twenty_steps(threads: usize) -> ParamStore {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut store = ParamStore::new();
        let net = small_conv_net(&mut store, 5);
        let (x, labels) = random_images(32, 6);
        let mut opt = Sgd::new(0.05, 0.9, 5e-4, true);
        for step in 0..20 {
            train_step(&mut store, &net, &mut opt, &x, &labels, step);
        }
        store
    })
}

#[test]
fn same_seed_and_threads_give_bit_identical_parameters() {
    for threads in [1, 2] {
        let (a, b) = (twenty_steps(threads), twenty_steps(threads));
        for id in a.ids() {
            assert_eq!(a.value(id).data(), b.value(id).data(), "{} differs with {threads} threads", a.name(id));
        }
    }
}

fn tmp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Saves model + optimizer after 5 steps, reloads both into fresh objects, continues 5
/// steps, and compares with 10 uninterrupted steps.
fn round_trip(make_opt: fn() -> Box<dyn Optimizer>, file: &str) {
    let (x, labels) = random_images(16, 8);
    let mut store = ParamStore::new();
    let net = small_conv_net(&mut store, 9);
    let mut opt = make_opt();
    for step in 0..5 {
        train_step(&mut store, &net, opt.as_mut(), &x, &labels, step);
    }
    let path = tmp_path(file);
    let mut tensors = checkpoint::store_tensors(&store);
    tensors.extend(opt.state(&store));
    checkpoint::save(&path, &tensors, &HashMap::from([("step".to_string(), "5".to_string())])).unwrap();
    for step in 5..10 {
        train_step(&mut store, &net, opt.as_mut(), &x, &labels, step);
    }

    let mut fresh = ParamStore::new();
    let net2 = small_conv_net(&mut fresh, 1234); // different init: everything must come from the file
    let mut opt2 = make_opt();
    let ckpt = checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.metadata.get("step").map(String::as_str), Some("5"));
    checkpoint::restore_store(&path, &ckpt, &mut fresh).unwrap();
    opt2.load_state(&fresh, &ckpt.tensors).unwrap();
    for step in 5..10 {
        train_step(&mut fresh, &net2, opt2.as_mut(), &x, &labels, step);
    }
    for id in store.ids() {
        assert_eq!(store.value(id).data(), fresh.value(id).data(), "{}: resumed run differs", store.name(id));
    }
}

#[test]
fn checkpoint_round_trip_continues_exactly_sgd_and_adam() {
    round_trip(|| Box::new(Sgd::new(0.05, 0.9, 5e-4, true)), "sgd.safetensors");
    round_trip(|| Box::new(Adam::new(1e-3, 5e-4)), "adam.safetensors");
}

#[test]
fn checkpoint_names_follow_pytorch_and_python_can_read_them() {
    let mut store = ParamStore::new();
    let _net = small_conv_net(&mut store, 1);
    let names: Vec<&str> = store.ids().map(|id| store.name(id)).collect();
    assert_eq!(
        names,
        [
            "net.0.weight",
            "net.0.bias",
            "net.1.weight",
            "net.1.bias",
            "net.1.running_mean",
            "net.1.running_var",
            "net.6.weight",
            "net.6.bias"
        ]
    );
    // A 0-d scalar, as the spherization layer's scaling (PyTorch holds it 0-d too).
    store.add("sphere.scaling", Tensor::from_vec(&[], vec![5.0]).unwrap());
    let path = tmp_path("python.safetensors");
    checkpoint::save(&path, &checkpoint::store_tensors(&store), &HashMap::new()).unwrap();

    // The `safetensors` crate is one independent reader ...
    let bytes = std::fs::read(&path).unwrap();
    let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(parsed.tensor("net.0.weight").unwrap().shape(), &[8, 1, 3, 3]);
    // ... a hand-written parse of the format is another.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let entry = &header["net.6.bias"];
    assert_eq!(entry["dtype"], "F32");
    let start = 8 + header_len + entry["data_offsets"][0].as_u64().unwrap() as usize;
    let first = f32::from_le_bytes(bytes[start..start + 4].try_into().unwrap());
    assert_eq!(first, store.value(store.find("net.6.bias").unwrap()).data()[0]);

    assert_eq!(parsed.tensor("sphere.scaling").unwrap().shape(), &[] as &[usize]);

    // ... and Python's safetensors package is the one users will use. scripts/test.sh puts
    // it in a local venv and names that interpreter in SPH_PYTHON.
    let python = std::env::var("SPH_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let has_reader = std::process::Command::new(&python)
        .args(["-c", "import safetensors, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_reader {
        eprintln!(
            "SKIPPED the Python part of this test: {python} cannot import safetensors and numpy (run the tests with scripts/test.sh, which installs them into a local venv)"
        );
        return;
    }
    let script = format!(
        "from safetensors.numpy import load_file; t = load_file('{}'); print(t['net.0.weight'].shape, t['sphere.scaling'].shape, float(t['net.6.bias'][0]))",
        path.display()
    );
    let out = std::process::Command::new(&python).args(["-c", &script]).output().expect("python runs");
    assert!(out.status.success(), "python could not read the checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("(8, 1, 3, 3) ()"), "python read {text}");
    let py_first: f32 = text.split_whitespace().last().unwrap().parse().unwrap();
    assert_eq!(py_first, first);
}

#[test]
fn truncated_or_corrupt_checkpoints_are_errors_naming_the_file() {
    let mut store = ParamStore::new();
    let _net = small_conv_net(&mut store, 1);
    let path = tmp_path("good.safetensors");
    checkpoint::save(&path, &checkpoint::store_tensors(&store), &HashMap::new()).unwrap();
    let good = std::fs::read(&path).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("three_bytes", good[..3].to_vec()),
        ("truncated_header", good[..20].to_vec()),
        ("truncated_body", good[..good.len() - 10].to_vec()),
        ("huge_header_len", {
            let mut b = good.clone();
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
        ("garbage_json", {
            let mut b = good.clone();
            b[8] = b'!';
            b
        }),
    ];
    for (name, bytes) in cases {
        let p = tmp_path(&format!("{name}.safetensors"));
        std::fs::write(&p, bytes).unwrap();
        let err = checkpoint::load(&p).expect_err(name).to_string();
        assert!(err.contains(&*p.to_string_lossy()), "{name}: error does not name the file: {err}");
    }
    // A valid file from another model: restore names the missing tensor.
    let mut other = ParamStore::new();
    let _mlp = mlp(&mut other, 1);
    let ckpt = checkpoint::load(&path).unwrap();
    let err = checkpoint::restore_store(&path, &ckpt, &mut other).unwrap_err().to_string();
    assert!(err.contains("mlp.0.weight") && err.contains("missing"), "{err}");
    let err = checkpoint::load(&tmp_path("does-not-exist.safetensors")).unwrap_err().to_string();
    assert!(err.contains("does-not-exist.safetensors"), "{err}");
}

#[test]
fn shape_mismatch_names_both_shapes() {
    let mut store = ParamStore::new();
    let mut rng = StdRng::seed_from_u64(0);
    let layer = Linear::new(&mut store, "fc", 784, 500, true, &mut rng);
    let mut g = Graph::new(&mut store, Mode::Train, 0);
    let x = g.input(Tensor::zeros(&[4, 10]));
    let err = layer.forward(&mut g, x).unwrap_err().to_string();
    assert!(err.contains("[4, 10]") && err.contains("[500, 784]"), "{err}");
}

#[test]
fn evaluation_mode_records_nothing_and_cannot_backpropagate() {
    let mut store = ParamStore::new();
    let net = small_conv_net(&mut store, 1);
    let (x, _) = random_images(4, 1);
    let mut g = Graph::new(&mut store, Mode::Eval, 0);
    let xv = g.input(x);
    let out = net.forward(&mut g, xv).unwrap();
    let loss = g.sum(out);
    assert!(g.backward(loss).is_err());
}

#[test]
fn softmax_cross_entropy_is_stable_for_huge_logits() {
    let mut store = ParamStore::new();
    let mut g = Graph::new(&mut store, Mode::Train, 0);
    let logits = g.variable(Tensor::from_vec(&[2, 3], vec![1e4, -1e4, 0.0, -1e4, 1e4, 1e4]).unwrap());
    let loss = g.softmax_cross_entropy(logits, &[1, 0]).unwrap();
    // Row 1: label logit is 2e4 below the max -> loss 2e4; row 2: 2e4 + ln 2.
    let want = (2e4 + 2e4 + 2f64.ln()) / 2.0;
    assert!((g.value(loss).item() as f64 - want).abs() < 1.0, "{}", g.value(loss).item());
    g.backward(loss).unwrap();
    assert!(g.grad(logits).unwrap().data().iter().all(|v| v.is_finite()));
}
