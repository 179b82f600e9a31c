//! Every registry entry, run: output shape [batch, classes] on its input shape, finite
//! values, a gradient for every parameter after one backward pass, and spherized
//! representations on the sphere. Big networks run narrowed by the width multiplier.

use engine::{Graph, Mode, ParamStore, Tensor};
use models::{build, describe, names, Model, ModelConfig, ModelError};
use rand::rngs::StdRng;
use rand::SeedableRng;

const BATCH: usize = 3;

/// A config that keeps the test fast: VGG and CNN-9 at 1/8 width, spherization settings
/// away from the defaults so that the radius check means something.
fn test_config(name: &str) -> ModelConfig {
    let mut cfg = ModelConfig { classes: if name.contains("toy") { 2 } else { 10 }, seed: 3, ..ModelConfig::default() };
    if name.contains("vgg") || name.contains("cnn9") {
        cfg.width_multiplier = 0.125;
    }
    cfg.sphere.scaling = 1.5;
    cfg.sphere.radius = 2.5;
    cfg
}

fn random_batch(model: &Model, seed: u64) -> Tensor {
    let [c, h, w] = model.input_shape();
    Tensor::normal(&[BATCH, c, h, w], 0.0, 1.0, &mut StdRng::seed_from_u64(seed))
}

/// A bias whose layer feeds batch-norm: the mean subtraction cancels it, so its true
/// gradient is zero (in PyTorch too). Recognized by PyTorch naming: `{seq}.{i}.bias`
/// followed by `{seq}.{i+1}.running_mean`.
fn feeds_batch_norm(params: &ParamStore, name: &str) -> bool {
    let Some(layer) = name.strip_suffix(".bias") else { return false };
    let Some((seq, index)) = layer.rsplit_once('.') else { return false };
    let Ok(index) = index.parse::<usize>() else { return false };
    params.find(&format!("{seq}.{}.running_mean", index + 1)).is_some()
}

fn assert_on_sphere(name: &str, repr: &Tensor, radius: f32) {
    let width = repr.shape()[1];
    for (i, row) in repr.data().chunks(width).enumerate() {
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() as f32;
        assert!(
            (norm - radius).abs() <= 1e-4 * radius,
            "{name}: representation row {i} has norm {norm}, radius {radius}"
        );
    }
}

/// One training-mode pass with a cross-entropy loss; checks shapes, finiteness and that every
/// learnable parameter got a non-zero gradient.
fn check_training_pass(name: &str, cfg: &ModelConfig) {
    let mut model = build(name, cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    let x = random_batch(&model, 11);
    let labels: Vec<usize> = (0..BATCH).map(|i| i % cfg.classes).collect();
    let spherized = !model.sphere_values().is_empty();
    let (net, params) = model.split_mut();
    let mut g = Graph::new(params, Mode::Train, 5);
    let xv = g.input(x);
    let (repr, logits) = net.forward_with_representation(&mut g, xv).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(g.shape(logits), [BATCH, cfg.classes], "{name}: logits shape");
    assert!(g.value(logits).data().iter().all(|v| v.is_finite()), "{name}: non-finite logits");
    assert_eq!(g.shape(repr)[0], BATCH, "{name}: representation shape");
    if spherized {
        assert_on_sphere(name, g.value(repr), cfg.sphere.radius);
    }
    let loss = g.softmax_cross_entropy(logits, &labels).unwrap();
    g.backward(loss).unwrap_or_else(|e| panic!("{name}: {e}"));
    drop(g);
    let p = model.params();
    for id in p.learnable() {
        let pname = p.name(id);
        let grad = p.grad(id).data();
        assert!(grad.iter().all(|v| v.is_finite()), "{name}: {pname} has a non-finite gradient");
        let largest = grad.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if feeds_batch_norm(p, pname) {
            // Only rounding noise should reach it: far below its layer's weight gradient.
            let weight = p.find(&pname.replace(".bias", ".weight")).expect("a bias has a weight");
            let weight_largest = p.grad(weight).data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(largest <= 1e-3 * weight_largest, "{name}: {pname} feeds batch-norm yet has gradient {largest:e}");
            continue;
        }
        assert!(largest > 0.0, "{name}: {pname} received no gradient");
    }
}

#[test]
fn every_entry_trains_one_step_plain_networks() {
    for name in names().iter().filter(|n| !n.starts_with("sph_")) {
        check_training_pass(name, &test_config(name));
    }
}

#[test]
fn every_entry_trains_one_step_spherized_networks() {
    for name in names().iter().filter(|n| n.starts_with("sph_")) {
        check_training_pass(name, &test_config(name));
    }
}

#[test]
fn full_size_spherized_vgg11_trains_one_step() {
    // The narrowed runs above share the code path; this one checks the real sizes once.
    let cfg = ModelConfig { width_multiplier: 1.0, ..test_config("sph_vgg11_bn") };
    check_training_pass("sph_vgg11_bn", &cfg);
}

#[test]
fn every_entry_evaluates_and_spherized_representations_lie_on_the_sphere() {
    for name in names() {
        let cfg = test_config(name);
        let mut model = build(name, &cfg).unwrap();
        assert_eq!(model.name(), *name);
        assert_eq!(model.classes(), cfg.classes);
        let x = random_batch(&model, 12);
        let (repr, logits) = model.evaluate(&x).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(logits.shape(), [BATCH, cfg.classes], "{name}: eval logits shape");
        assert!(logits.data().iter().chain(repr.data()).all(|v| v.is_finite()), "{name}: non-finite eval output");
        let spheres = model.sphere_values();
        assert_eq!(!spheres.is_empty(), name.starts_with("sph_"), "{name}: spherization layers {spheres:?}");
        for (layer, scaling, radius) in &spheres {
            assert!(layer.ends_with(".sph"), "{name}: layer name {layer}");
            assert_eq!((*scaling, *radius), (cfg.sphere.scaling, cfg.sphere.radius), "{name}: {layer}");
        }
        if !spheres.is_empty() {
            assert_on_sphere(name, &repr, cfg.sphere.radius);
        }
    }
}

#[test]
fn representations_have_the_documented_sizes() {
    let size = |name: &str| {
        let cfg = test_config(name);
        let mut model = build(name, &cfg).unwrap();
        let x = random_batch(&model, 1);
        model.evaluate(&x).unwrap().0.shape().to_vec()
    };
    assert_eq!(size("simple_fnn"), [BATCH, 300]);
    assert_eq!(size("sph_fnn"), [BATCH, 301]);
    assert_eq!(size("sph_lenet"), [BATCH, 85]);
    assert_eq!(size("simple_cnn_2d"), [BATCH, 2]);
    assert_eq!(size("sph_cnn_3d"), [BATCH, 3]);
    assert_eq!(size("sph_toy"), [BATCH, 2]);
    assert_eq!(size("sph_vgg11_bn"), [BATCH, 4096 / 8 + 1]);
    assert_eq!(size("cnn9_w_cosine_s"), [BATCH, 256 / 8]);
    assert_eq!(size("sph_cnn9_d"), [BATCH, 256 / 8 + 1]);
}

#[test]
fn learned_sphere_values_are_reported_after_a_change() {
    let mut model = build("sph_cnn9_d", &test_config("sph_cnn9_d")).unwrap();
    let id = model.params().find("classifier.0.sph.scaling").expect("first layer's scaling");
    model.params_mut().value_mut(id).data_mut()[0] = 4.0;
    let values = model.sphere_values();
    assert_eq!(values, vec![("classifier.0.sph".to_string(), 4.0, 2.5), ("classifier.1.sph".to_string(), 1.5, 2.5)]);
}

#[test]
fn flat_inputs_where_the_network_flattens_first_and_shape_errors_elsewhere() {
    let mut fnn = build("simple_fnn", &ModelConfig::default()).unwrap();
    assert_eq!(fnn.evaluate(&Tensor::zeros(&[2, 784])).unwrap().1.shape(), [2, 10]);
    let mut toy = build("toy", &ModelConfig { classes: 2, ..ModelConfig::default() }).unwrap();
    assert_eq!(toy.evaluate(&Tensor::zeros(&[4, 2])).unwrap().1.shape(), [4, 2]);
    let mut lenet = build("lenet", &ModelConfig::default()).unwrap();
    let err = lenet.evaluate(&Tensor::zeros(&[2, 784])).unwrap_err().to_string();
    assert!(err.contains("lenet") && err.contains("[batch, 1, 28, 28]"), "{err}");
    let mut vgg = build("vgg11_bn", &ModelConfig { width_multiplier: 0.125, ..ModelConfig::default() }).unwrap();
    let err = vgg.evaluate(&Tensor::zeros(&[2, 1, 32, 32])).unwrap_err().to_string();
    assert!(err.contains("vgg11_bn") && err.contains("[batch, 3, 32, 32]"), "{err}");
}

#[test]
fn unknown_name_lists_every_valid_name() {
    let Err(err) = build("vgg13_bn", &ModelConfig::default()) else { panic!("vgg13_bn built") };
    assert!(matches!(err, ModelError::UnknownModel { .. }));
    let msg = err.to_string();
    assert!(msg.contains("vgg13_bn"), "{msg}");
    for name in names() {
        assert!(msg.contains(name), "{msg} lacks {name}");
    }
}

#[test]
fn registry_names_are_unique_described_and_complete() {
    let all = names();
    let mut sorted = all.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), all.len(), "duplicate names in {all:?}");
    for name in all {
        assert!(describe(name).is_some_and(|d| !d.is_empty() && !d.contains('\n')), "{name}: no one-line description");
    }
    assert_eq!(describe("nonexistent"), None);
    // The networks issue 4 names, and the CNN-9 operator grid.
    let mut expected: Vec<String> = [
        "simple_fnn",
        "sph_fnn",
        "lenet",
        "sph_lenet",
        "vgg11_bn",
        "vgg16_bn",
        "vgg19_bn",
        "vgg11_bn_one",
        "sph_vgg11_bn",
        "sph_vgg16_bn",
        "sph_vgg19_bn",
        "sph_vgg11_bn_one",
        "cnn9",
        "sph_cnn9_s",
        "sph_cnn9_d",
        "simple_cnn_2d",
        "simple_cnn_3d",
        "sph_cnn_3d",
        "toy",
        "sph_toy",
    ]
    .map(String::from)
    .to_vec();
    for op in ["linear", "cosine", "sigmoid", "w_linear", "w_cosine", "w_sigmoid"] {
        for scope in ["s", "d"] {
            expected.push(format!("cnn9_{op}_{scope}"));
        }
    }
    expected.sort_unstable();
    assert_eq!(sorted, expected);
}
