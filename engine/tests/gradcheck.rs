//! Central finite differences against the backward pass, for every op and every input.
//!
//! Each check builds `L = sum(op(inputs) * R)` with a fixed random `R`, takes the analytic
//! gradient from `Graph::backward`, and compares it with `(L(x + h) - L(x - h)) / 2h`
//! for every element of every input and parameter. Tolerance: |fd - analytic| <=
//! ATOL + RTOL * |fd|, with h = 1e-2 (inputs are f32, the loss is summed in f64).

use engine::kernels::spherize::lower_angle;
use engine::ops::angular::{AngleFn, Projection};
use engine::ops::BatchNormIds;
use engine::{Graph, Mode, ParamStore, Tensor, Var};
use rand::{Rng, SeedableRng};

const H: f32 = 1e-2;
const ATOL: f64 = 2e-3;
const RTOL: f64 = 2e-2;

type Build = dyn Fn(&mut Graph, &[Var]) -> Var;

/// The loss `sum(out * r)` in f64, and the graph's output shape.
fn loss_of(store: &mut ParamStore, inputs: &[Tensor], build: &Build, r: &Option<Tensor>) -> (f64, Vec<f32>) {
    let mut g = Graph::new(store, Mode::Train, 7);
    let vars: Vec<Var> = inputs.iter().map(|t| g.variable(t.clone())).collect();
    let out = build(&mut g, &vars);
    let y = g.value(out).data().to_vec();
    let loss = match r {
        Some(r) => y.iter().zip(r.data()).map(|(&a, &b)| a as f64 * b as f64).sum(),
        None => y.iter().map(|&a| a as f64).sum(),
    };
    (loss, y)
}

/// Checks every element of every input (graph variables) and every learnable parameter.
fn check(name: &str, store: ParamStore, inputs: Vec<Tensor>, build: &Build) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    // Output shape first, to draw R.
    let (_, y) = loss_of(&mut store.clone(), &inputs, build, &None);
    let r = Tensor::uniform(&[y.len()], -1.0, 1.0, &mut rng);
    // Analytic gradients.
    let mut analytic_store = store.clone();
    let input_grads: Vec<Tensor> = {
        let mut g = Graph::new(&mut analytic_store, Mode::Train, 7);
        let vars: Vec<Var> = inputs.iter().map(|t| g.variable(t.clone())).collect();
        let out = build(&mut g, &vars);
        let flat = g.reshape(out, &[y.len()]).unwrap();
        let rv = g.input(r.clone());
        let prod = g.mul(flat, rv).unwrap();
        let loss = g.sum(prod);
        g.backward(loss).unwrap();
        vars.iter().map(|&v| g.grad(v).cloned().unwrap_or_else(|| Tensor::zeros(&[0]))).collect()
    };
    let r = Some(r);
    let mut worst = 0.0f64;
    let mut compare = |what: String, fd: f64, an: f64| {
        let err = (fd - an).abs();
        worst = worst.max(err / (ATOL + RTOL * fd.abs()));
        assert!(err <= ATOL + RTOL * fd.abs(), "{name}: {what}: finite difference {fd:.6} vs backward {an:.6}");
    };
    for (k, t) in inputs.iter().enumerate() {
        assert_eq!(input_grads[k].len(), t.len(), "{name}: input {k} got no gradient");
        for i in 0..t.len() {
            let mut plus = inputs.clone();
            plus[k].data_mut()[i] += H;
            let mut minus = inputs.clone();
            minus[k].data_mut()[i] -= H;
            let fd = (loss_of(&mut store.clone(), &plus, build, &r).0
                - loss_of(&mut store.clone(), &minus, build, &r).0)
                / (2.0 * H as f64);
            compare(format!("input {k}[{i}]"), fd, input_grads[k].data()[i] as f64);
        }
    }
    for id in store.learnable().collect::<Vec<_>>() {
        let pname = store.name(id).to_string();
        for i in 0..store.value(id).len() {
            let mut plus = store.clone();
            plus.value_mut(id).data_mut()[i] += H;
            let mut minus = store.clone();
            minus.value_mut(id).data_mut()[i] -= H;
            let fd = (loss_of(&mut plus, &inputs, build, &r).0 - loss_of(&mut minus, &inputs, build, &r).0)
                / (2.0 * H as f64);
            compare(format!("{pname}[{i}]"), fd, analytic_store.grad(id).data()[i] as f64);
        }
    }
    println!("{name}: worst error / tolerance = {worst:.3}");
}

fn rand_t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape, -1.0, 1.0, &mut rand::rngs::StdRng::seed_from_u64(seed))
}

/// Values at least 0.05 apart (shuffled), so that max-pool winners and relu signs do not
/// change under a perturbation of H.
fn spaced_t(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05 + 0.025).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.gen_range(0..=i));
    }
    Tensor::from_vec(shape, v).unwrap()
}

#[test]
fn linear_with_and_without_bias() {
    let mut store = ParamStore::new();
    let w = store.add("w", rand_t(&[4, 5], 1));
    let b = store.add("b", rand_t(&[4], 2));
    check("linear", store.clone(), vec![rand_t(&[3, 5], 3)], &move |g, v| {
        let (wv, bv) = (g.param(w), g.param(b));
        g.linear(v[0], wv, Some(bv)).unwrap()
    });
    check("linear_nobias", store, vec![rand_t(&[3, 5], 3)], &move |g, v| {
        let wv = g.param(w);
        g.linear(v[0], wv, None).unwrap()
    });
}

#[test]
fn matmul_both_operands() {
    check("matmul", ParamStore::new(), vec![rand_t(&[3, 4], 1), rand_t(&[4, 2], 2)], &|g, v| {
        g.matmul(v[0], v[1]).unwrap()
    });
}

#[test]
fn conv2d_stride2_pad1_and_stride1_pad0() {
    let mut store = ParamStore::new();
    let w = store.add("w", rand_t(&[3, 2, 3, 3], 1));
    let b = store.add("b", rand_t(&[3], 2));
    check("conv2d_s2_p1", store.clone(), vec![rand_t(&[2, 2, 5, 5], 3)], &move |g, v| {
        let (wv, bv) = (g.param(w), g.param(b));
        g.conv2d(v[0], wv, Some(bv), 2, 1).unwrap()
    });
    check("conv2d_s1_p0_nobias", store, vec![rand_t(&[2, 2, 4, 5], 4)], &move |g, v| {
        let wv = g.param(w);
        g.conv2d(v[0], wv, None, 1, 0).unwrap()
    });
}

#[test]
fn conv2d_groups_images_per_gemm_with_a_ragged_last_group() {
    // 10x10 outputs: 3 images per GEMM (>= 256 columns), so a batch of 4 ends on a group of 1.
    let mut store = ParamStore::new();
    let w = store.add("w", rand_t(&[2, 1, 3, 3], 1));
    check("conv2d_grouped", store, vec![rand_t(&[4, 1, 10, 10], 2)], &move |g, v| {
        let wv = g.param(w);
        g.conv2d(v[0], wv, None, 1, 1).unwrap()
    });
}

#[test]
fn conv2d_3x3_stride1_direct_winograd_and_pixel_pairs() {
    // 3x3 at stride 1: 16 input channels take the direct kernel (on CPUs with AVX-512, else
    // Winograd), 36 take Winograd; odd output sizes leave partial tiles. 130 images of 2x2
    // maps take the pixel-pair GEMMs (`kernels::pairs`); Winograd's pipeline over several
    // groups is checked against a direct convolution in its own tests.
    for channels in [16, 36] {
        let mut store = ParamStore::new();
        let w = store.add("w", rand_t(&[3, channels, 3, 3], 1));
        let b = store.add("b", rand_t(&[3], 2));
        check(
            &format!("conv2d_3x3_c{channels}_p1"),
            store.clone(),
            vec![rand_t(&[2, channels, 5, 3], 3)],
            &move |g, v| {
                let (wv, bv) = (g.param(w), g.param(b));
                g.conv2d(v[0], wv, Some(bv), 1, 1).unwrap()
            },
        );
        check(
            &format!("conv2d_3x3_c{channels}_p0"),
            store.clone(),
            vec![rand_t(&[1, channels, 5, 6], 4)],
            &move |g, v| {
                let wv = g.param(w);
                g.conv2d(v[0], wv, None, 1, 0).unwrap()
            },
        );
        check(
            &format!("conv2d_3x3_c{channels}_2x2_maps"),
            store,
            vec![rand_t(&[130, channels, 2, 2], 5)],
            &move |g, v| {
                let (wv, bv) = (g.param(w), g.param(b));
                g.conv2d(v[0], wv, Some(bv), 1, 1).unwrap()
            },
        );
    }
}

#[test]
fn max_pool_kernel3_stride2_overlapping_and_kernel2() {
    check("max_pool_k3_s2", ParamStore::new(), vec![spaced_t(&[2, 2, 7, 7], 1)], &|g, v| {
        g.max_pool2d(v[0], 3, 2).unwrap()
    });
    check("max_pool_k2_s2", ParamStore::new(), vec![spaced_t(&[1, 2, 4, 6], 2)], &|g, v| {
        g.max_pool2d(v[0], 2, 2).unwrap()
    });
    // Behind a reshape the pool's input gradient is a new buffer, which 2x2 windows write
    // whole (odd sizes leave a last row and column outside every window, which must get 0).
    check("max_pool_k2_s2_fresh_odd", ParamStore::new(), vec![spaced_t(&[2, 2, 5, 7], 3)], &|g, v| {
        let x = g.reshape(v[0], &[2, 2, 5, 7]).unwrap();
        g.max_pool2d(x, 2, 2).unwrap()
    });
}

#[test]
fn avg_pool() {
    check("avg_pool_k2_s2", ParamStore::new(), vec![rand_t(&[2, 2, 4, 4], 1)], &|g, v| {
        g.avg_pool2d(v[0], 2, 2).unwrap()
    });
    check("avg_pool_k3_s1", ParamStore::new(), vec![rand_t(&[1, 1, 5, 4], 2)], &|g, v| {
        g.avg_pool2d(v[0], 3, 1).unwrap()
    });
}

fn bn_store(channels: usize) -> (ParamStore, BatchNormIds) {
    let mut store = ParamStore::new();
    let ids = BatchNormIds {
        gamma: store.add("bn.weight", rand_t(&[channels], 5)),
        beta: store.add("bn.bias", rand_t(&[channels], 6)),
        running_mean: store.add_buffer("bn.running_mean", Tensor::zeros(&[channels])),
        running_var: store.add_buffer("bn.running_var", Tensor::ones(&[channels])),
    };
    (store, ids)
}

#[test]
fn batch_norm_training_2d_and_1d() {
    let (store, ids) = bn_store(3);
    check("batch_norm2d_train", store.clone(), vec![rand_t(&[2, 3, 2, 3], 1)], &move |g, v| {
        g.batch_norm(v[0], ids, 0.1, 1e-5).unwrap()
    });
    check("batch_norm1d_train", store, vec![rand_t(&[5, 3], 2)], &move |g, v| {
        g.batch_norm(v[0], ids, 0.1, 1e-5).unwrap()
    });
}

/// x feeding batch-norm and a second op: batch-norm's backward then adds to the gradient the
/// other op left, instead of storing into a new buffer.
#[test]
fn batch_norm_input_with_two_consumers() {
    let (store, ids) = bn_store(3);
    check("batch_norm2d_plus_input", store, vec![rand_t(&[2, 3, 2, 3], 3)], &move |g, v| {
        let bn = g.batch_norm(v[0], ids, 0.1, 1e-5).unwrap();
        g.add(bn, v[0]).unwrap()
    });
}

/// Ops that store their input gradient into a new buffer get one recycled from earlier ops
/// (pooled, not zeroed, for tensors of 4,096 floats and more): the gradient `op` stores into
/// such a buffer must equal the one it adds to a zeroed buffer (made by a second consumer of
/// x that contributes nothing, 0 x, whose backward runs first).
fn assert_stored_gradient_equals_accumulated(
    store: &ParamStore,
    x: &Tensor,
    op: &dyn Fn(&mut Graph, engine::Var) -> engine::Var,
) {
    let dx = |second_consumer: bool| {
        let mut store = store.clone();
        let mut g = Graph::new(&mut store, Mode::Train, 7);
        let xv = g.variable(x.clone());
        let mut y = op(&mut g, xv);
        if second_consumer {
            let nothing = g.scale(xv, 0.0);
            let nothing = op(&mut g, nothing);
            y = g.add(y, nothing).unwrap();
        }
        let n = g.value(y).len();
        let flat = g.reshape(y, &[n]).unwrap();
        let rv = g.input(rand_t(&[n], 11));
        let prod = g.mul(flat, rv).unwrap();
        let loss = g.sum(prod);
        g.backward(loss).unwrap();
        g.grad(xv).unwrap().data().to_vec()
    };
    let accumulated = dx(true);
    assert!(accumulated.iter().any(|&v| v != 0.0));
    for _ in 0..3 {
        assert!(dx(false) == accumulated, "the stored gradient differs from the accumulated one");
    }
}

#[test]
fn batch_norm_gradient_ignores_what_a_recycled_buffer_held() {
    let (store, ids) = bn_store(8);
    assert_stored_gradient_equals_accumulated(&store, &rand_t(&[4, 8, 16, 16], 10), &move |g, x| {
        g.batch_norm_relu(x, ids, 0.1, 1e-5).unwrap()
    });
}

/// The direct convolution (8 channels, 3x3: 72 im2col rows, on AVX-512 CPUs) stores dx.
#[test]
fn conv2d_gradient_ignores_what_a_recycled_buffer_held() {
    let mut store = ParamStore::new();
    let w = store.add("w", rand_t(&[8, 8, 3, 3], 12));
    assert_stored_gradient_equals_accumulated(&store, &rand_t(&[4, 8, 16, 16], 10), &move |g, x| {
        let wv = g.param(w);
        g.conv2d(x, wv, None, 1, 1).unwrap()
    });
}

/// The fused op against the two ops it replaces: the same values and the same gradients of
/// the input and both parameters (a finite-difference check would trip on outputs near the
/// ReLU's kink; each of the two ops has its own check above and below).
#[test]
fn batch_norm_relu_equals_batch_norm_then_relu() {
    let (store, ids) = bn_store(3);
    let x = rand_t(&[4, 3, 3, 5], 8);
    let r = rand_t(&[4 * 3 * 3 * 5], 9);
    let run = |fused: bool| {
        let mut store = store.clone();
        let mut g = Graph::new(&mut store, Mode::Train, 7);
        let xv = g.variable(x.clone());
        let y = if fused {
            g.batch_norm_relu(xv, ids, 0.1, 1e-5).unwrap()
        } else {
            let bn = g.batch_norm(xv, ids, 0.1, 1e-5).unwrap();
            g.relu(bn)
        };
        let out = g.value(y).data().to_vec();
        let flat = g.reshape(y, &[r.len()]).unwrap();
        let rv = g.input(r.clone());
        let prod = g.mul(flat, rv).unwrap();
        let loss = g.sum(prod);
        g.backward(loss).unwrap();
        let dx = g.grad(xv).unwrap().data().to_vec();
        drop(g);
        let (dg, db) = (store.grad(ids.gamma).data().to_vec(), store.grad(ids.beta).data().to_vec());
        (out, dx, dg, db)
    };
    let (fused, plain) = (run(true), run(false));
    assert!(fused.0.contains(&0.0) && fused.0.iter().any(|&v| v > 0.0), "both sides of the kink");
    for (name, a, b) in [
        ("y", &fused.0, &plain.0),
        ("dx", &fused.1, &plain.1),
        ("dgamma", &fused.2, &plain.2),
        ("dbeta", &fused.3, &plain.3),
    ] {
        for (i, (u, v)) in a.iter().zip(b.iter()).enumerate() {
            assert!((u - v).abs() <= 1e-6 * (1.0 + v.abs()), "{name}[{i}]: fused {u} vs separate {v}");
        }
    }
}

#[test]
fn elementwise_ops() {
    check("relu", ParamStore::new(), vec![spaced_t(&[3, 4], 1)], &|g, v| g.relu(v[0]));
    check("sigmoid", ParamStore::new(), vec![rand_t(&[3, 4], 2)], &|g, v| g.sigmoid(v[0]));
    check("tanh", ParamStore::new(), vec![rand_t(&[3, 4], 3)], &|g, v| g.tanh(v[0]));
    check("scale", ParamStore::new(), vec![rand_t(&[3, 4], 4)], &|g, v| g.scale(v[0], -2.5));
    check("add", ParamStore::new(), vec![rand_t(&[3, 4], 5), rand_t(&[3, 4], 6)], &|g, v| g.add(v[0], v[1]).unwrap());
    check("add_row_bias", ParamStore::new(), vec![rand_t(&[3, 4], 7), rand_t(&[4], 8)], &|g, v| {
        g.add(v[0], v[1]).unwrap()
    });
    check("mul", ParamStore::new(), vec![rand_t(&[3, 4], 9), rand_t(&[3, 4], 10)], &|g, v| g.mul(v[0], v[1]).unwrap());
    check("mul_self", ParamStore::new(), vec![rand_t(&[5], 11)], &|g, v| g.mul(v[0], v[0]).unwrap());
}

#[test]
fn dropout_in_training() {
    check("dropout", ParamStore::new(), vec![rand_t(&[4, 8], 1)], &|g, v| g.dropout(v[0], 0.5).unwrap());
}

#[test]
fn reductions_and_reshape() {
    check("sum", ParamStore::new(), vec![rand_t(&[3, 4], 1)], &|g, v| g.sum(v[0]));
    check("mean", ParamStore::new(), vec![rand_t(&[3, 4], 2)], &|g, v| g.mean(v[0]));
    check("reshape", ParamStore::new(), vec![rand_t(&[3, 4], 3)], &|g, v| g.reshape(v[0], &[2, 6]).unwrap());
    check("flatten", ParamStore::new(), vec![rand_t(&[2, 2, 3], 4)], &|g, v| g.flatten(v[0]).unwrap());
}

#[test]
fn softmax_cross_entropy() {
    check("softmax_ce", ParamStore::new(), vec![rand_t(&[4, 5], 1)], &|g, v| {
        g.softmax_cross_entropy(v[0], &[0, 3, 4, 1]).unwrap()
    });
}

#[test]
fn spherize_rows_and_channels_with_learnable_scaling_and_radius() {
    let mut store = ParamStore::new();
    let alpha = store.add("sph.scaling", Tensor::from_vec(&[1], vec![1.5]).unwrap());
    let radius = store.add("sph.radius", Tensor::from_vec(&[1], vec![2.0]).unwrap());
    let phi_l = lower_angle(6, 1e-6);
    check("spherize_rows", store.clone(), vec![rand_t(&[3, 6], 1)], &move |g, v| {
        let (a, r) = (g.param(alpha), g.param(radius));
        g.spherize(v[0], a, r, phi_l).unwrap()
    });
    let phi_l3 = lower_angle(3, 1e-6);
    check("spherize_channels", store, vec![rand_t(&[2, 3, 2, 2], 2)], &move |g, v| {
        let (a, r) = (g.param(alpha), g.param(radius));
        g.spherize(v[0], a, r, phi_l3).unwrap()
    });
}

#[test]
fn angular_projections_direct_and_indirect() {
    // Random rows in [-1, 1]^5 keep every cosine well inside the clamp of acos.
    let mut store = ParamStore::new();
    let w = store.add("w", rand_t(&[4, 5], 1));
    for f in [AngleFn::Linear, AngleFn::Cosine, AngleFn::Sigmoid] {
        for projection in [Projection::Direct, Projection::Indirect] {
            check(&format!("angular_{f:?}_{projection:?}"), store.clone(), vec![rand_t(&[3, 5], 2)], &move |g, v| {
                let wv = g.param(w);
                g.angular(v[0], wv, f, projection).unwrap()
            });
        }
    }
}
