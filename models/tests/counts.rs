//! Parameter counts and names against PyTorch's for the same definitions (issue 4):
//! learnable scaling counted, fixed radius not. The full-size models are only built here,
//! never run, so the whole file takes a few seconds.

use models::{build, ModelConfig, ModelError};

fn count(name: &str, cfg: &ModelConfig) -> usize {
    build(name, cfg).unwrap_or_else(|e| panic!("{name}: {e}")).num_parameters()
}

#[test]
fn parameter_counts_match_pytorch() {
    let ten = ModelConfig::default();
    let hundred = ModelConfig { classes: 100, ..ModelConfig::default() };
    let two = ModelConfig { classes: 2, ..ModelConfig::default() };
    let narrow = ModelConfig { classes: 100, widths: Some([16, 32, 64, 128]), ..ModelConfig::default() };
    let cases: [(&str, &ModelConfig, usize); 17] = [
        ("simple_fnn", &ten, 545_810),
        ("sph_fnn", &ten, 545_811),
        ("lenet", &ten, 61_706),
        ("sph_lenet", &ten, 61_707),
        ("vgg11_bn", &ten, 28_149_514),
        ("sph_vgg11_bn", &ten, 28_149_515),
        ("vgg11_bn", &hundred, 28_518_244),
        ("vgg16_bn", &ten, 33_646_666),
        ("vgg19_bn", &ten, 38_958_922),
        ("vgg11_bn_one", &ten, 28_148_362),
        ("vgg11_bn", &narrow, 18_297_892),
        ("simple_cnn_2d", &ten, 1_893_760),
        ("simple_cnn_3d", &ten, 1_894_027),
        ("sph_cnn_3d", &ten, 1_893_761),
        ("toy", &two, 12),
        ("sph_toy", &two, 7),
        // Not listed in the issue: vgg11_bn_one plus the scaling (the spherized head gains one
        // weight column per class and loses the bias, which cancel).
        ("sph_vgg11_bn_one", &ten, 28_148_363),
    ];
    for (name, cfg, want) in cases {
        assert_eq!(count(name, cfg), want, "{name} with {} classes, widths {:?}", cfg.classes, cfg.widths);
    }
}

#[test]
fn cnn9_counts_follow_the_layer_definitions() {
    let cfg = ModelConfig::default();
    // features: 3x3 convs with bias + BN (2 per channel), classifier 4096-256-10.
    let conv = |c_in: usize, c_out: usize| c_in * c_out * 9 + c_out + 2 * c_out;
    let features =
        conv(3, 128) + 2 * conv(128, 128) + conv(128, 192) + 2 * conv(192, 192) + conv(192, 256) + 2 * conv(256, 256);
    let (first, last) = (4096 * 256 + 256, 256 * 10 + 10);
    assert_eq!(count("cnn9", &cfg), features + first + last);
    // Projections are bias-free.
    assert_eq!(count("cnn9_cosine_s", &cfg), features + first + 256 * 10);
    assert_eq!(count("cnn9_w_sigmoid_d", &cfg), features + 4096 * 256 + 256 * 10);
    // Spherization: one more input column, no bias, one scaling per layer.
    assert_eq!(count("sph_cnn9_s", &cfg), features + first + 257 * 10 + 1);
    assert_eq!(count("sph_cnn9_d", &cfg), features + 4097 * 256 + 1 + 257 * 10 + 1);
}

#[test]
fn learnable_radius_is_counted_and_fixed_scaling_is_not() {
    let mut cfg = ModelConfig::default();
    cfg.sphere.learn_radius = true;
    assert_eq!(count("sph_fnn", &cfg), 545_812);
    cfg.sphere.learn_scaling = false;
    assert_eq!(count("sph_fnn", &cfg), 545_811);
    cfg.sphere.learn_radius = false;
    assert_eq!(count("sph_fnn", &cfg), 545_810);
}

/// (name, shape) of every learnable parameter, in registration order.
fn learnable(name: &str, cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let model = build(name, cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    let p = model.params();
    p.learnable().map(|id| (p.name(id).to_string(), p.value(id).shape().to_vec())).collect()
}

fn owned(list: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    list.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
}

#[test]
fn parameter_names_follow_the_official_code() {
    let cfg = ModelConfig::default();
    assert_eq!(
        learnable("sph_lenet", &cfg),
        owned(&[
            ("conv1.weight", &[6, 1, 5, 5]),
            ("conv1.bias", &[6]),
            ("conv2.weight", &[16, 6, 5, 5]),
            ("conv2.bias", &[16]),
            ("fc3.weight", &[120, 400]),
            ("fc3.bias", &[120]),
            ("fc4.weight", &[84, 120]),
            ("fc4.bias", &[84]),
            ("sph_fc5.sph.scaling", &[]),
            ("sph_fc5.layer.weight", &[10, 85]),
        ])
    );
    assert_eq!(
        learnable("sph_toy", &ModelConfig { classes: 2, ..cfg.clone() }),
        owned(&[("fc1.weight", &[1, 2]), ("sph_fc2.sph.scaling", &[]), ("sph_fc2.layer.weight", &[2, 2])])
    );
    let small = ModelConfig { widths: Some([4, 4, 4, 4]), ..cfg.clone() };
    let vgg: Vec<String> = learnable("vgg11_bn", &small).into_iter().map(|(n, _)| n).collect();
    // torchvision's make_layers: conv, BN, ReLU per conv and a pool per stage.
    let mut want = Vec::new();
    let mut i = 0;
    for convs in [1, 1, 2, 2, 2] {
        for _ in 0..convs {
            want.extend([format!("features.{i}.weight"), format!("features.{i}.bias")]);
            want.extend([format!("features.{}.weight", i + 1), format!("features.{}.bias", i + 1)]);
            i += 3;
        }
        i += 1;
    }
    want.extend(
        [
            "classifier.0.weight",
            "classifier.0.bias",
            "classifier.3.weight",
            "classifier.3.bias",
            "classifier.6.weight",
            "classifier.6.bias",
        ]
        .map(String::from),
    );
    assert_eq!(vgg, want);
    let sph_vgg = learnable("sph_vgg11_bn", &small);
    assert_eq!(
        sph_vgg[sph_vgg.len() - 2..],
        owned(&[("classifier.4.sph.scaling", &[]), ("classifier.4.layer.weight", &[10, 4097])])
    );
    let bn = build("vgg11_bn", &small).unwrap();
    assert!(
        bn.params().find("features.1.running_mean").is_some() && bn.params().find("features.1.running_var").is_some()
    );
    let vis = learnable("sph_cnn_3d", &cfg);
    assert_eq!(
        vis[vis.len() - 6..],
        owned(&[
            ("classifier.0.weight", &[256, 6272]),
            ("classifier.0.bias", &[256]),
            ("classifier.2.weight", &[2, 256]),
            ("classifier.2.bias", &[2]),
            ("classifier.3.sph.scaling", &[]),
            ("classifier.3.layer.weight", &[10, 3]),
        ])
    );
    let quarter = ModelConfig { width_multiplier: 0.25, ..cfg.clone() };
    let cnn: Vec<_> = learnable("cnn9_w_linear_d", &quarter);
    assert_eq!(
        cnn[cnn.len() - 2..],
        owned(&[("classifier.0.fc.weight", &[64, 1024]), ("classifier.1.fc.weight", &[10, 64])])
    );
    assert_eq!(cnn[0], ("features.0.weight".to_string(), vec![32, 3, 3, 3]));
}

#[test]
fn same_seed_same_parameters_other_seed_other_parameters() {
    let cfg = ModelConfig { width_multiplier: 0.125, ..ModelConfig::default() };
    let values = |cfg: &ModelConfig| {
        let m = build("sph_vgg11_bn", cfg).unwrap();
        let p = m.params();
        p.ids().flat_map(|id| p.value(id).data().to_vec()).collect::<Vec<f32>>()
    };
    assert_eq!(values(&cfg), values(&cfg));
    assert_ne!(values(&cfg), values(&ModelConfig { seed: 1, ..cfg.clone() }));
}

#[test]
fn bad_configurations_are_refused_with_the_field_named() {
    let expect = |name: &str, cfg: ModelConfig, needle: &str| match build(name, &cfg) {
        Err(e @ (ModelError::Config { .. } | ModelError::Engine { .. })) => {
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains(needle), "{name}: message {msg:?} lacks {needle:?}");
        }
        Err(e) => panic!("{name}: unexpected error {e}"),
        Ok(_) => panic!("{name}: built despite a bad config ({needle})"),
    };
    expect("lenet", ModelConfig { classes: 0, ..ModelConfig::default() }, "classes");
    expect("cnn9", ModelConfig { width_multiplier: 0.0, ..ModelConfig::default() }, "width_multiplier");
    expect("cnn9", ModelConfig { width_multiplier: f32::NAN, ..ModelConfig::default() }, "width_multiplier");
    expect("lenet", ModelConfig { widths: Some([16, 32, 64, 128]), ..ModelConfig::default() }, "VGG");
    expect("vgg11_bn", ModelConfig { widths: Some([16, 0, 64, 128]), ..ModelConfig::default() }, "widths");
    let mut bad_radius = ModelConfig::default();
    bad_radius.sphere.radius = -1.0;
    expect("sph_fnn", bad_radius, "radius");
}
