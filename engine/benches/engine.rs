//! Engine benchmarks: sgemm GFLOP/s, conv2d forward+backward GFLOP/s, and whole training
//! steps (forward, loss, backward, SGD with momentum) in images/s.
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p engine --bench engine`
//! (criterion's "elem/s" is FLOP/s for the first two groups and images/s for the last).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::kernels::{sgemm, Trans};
use engine::nn::{Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential};
use engine::optim::{Optimizer, Sgd};
use engine::{Graph, Mode, ParamStore, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn bench_sgemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    group.sample_size(20);
    for &(m, k, n) in &[(1024, 1024, 1024), (2048, 2048, 2048), (128, 400, 120), (128, 4608, 512)] {
        let mut rng = StdRng::seed_from_u64(0);
        let a = Tensor::uniform(&[m, k], -1.0, 1.0, &mut rng);
        let b = Tensor::uniform(&[k, n], -1.0, 1.0, &mut rng);
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{m}x{k}@{k}x{n}")), |bench| {
            bench.iter(|| sgemm(Trans::N, Trans::N, m, n, k, 1.0, a.data(), b.data(), 0.0, &mut out))
        });
    }
    group.finish();
}

fn bench_conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d_fwd_bwd");
    group.sample_size(10);
    // (name, c_in, c_out, kernel, padding, size), batch 128
    for &(name, c_in, c_out, k, pad, size) in
        &[("lenet_conv1", 1, 6, 5, 2, 28), ("lenet_conv2", 6, 16, 5, 0, 14), ("vgg_128_256_8x8", 128, 256, 3, 1, 8)]
    {
        let batch = 128;
        let mut rng = StdRng::seed_from_u64(0);
        let mut store = ParamStore::new();
        let conv = Conv2d::new(&mut store, "conv", c_in, c_out, k, 1, pad, true, &mut rng);
        let x = Tensor::uniform(&[batch, c_in, size, size], -1.0, 1.0, &mut rng);
        let out = size + 2 * pad - k + 1;
        // forward 2*MACs, backward twice that (input and weight gradients)
        let flops = 3 * 2 * batch * c_out * out * out * c_in * k * k;
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let mut g = Graph::new(&mut store, Mode::Train, 0);
                let xv = g.variable(x.clone());
                let y = conv.forward(&mut g, xv).unwrap();
                let loss = g.sum(y);
                g.backward(loss).unwrap();
            })
        });
    }
    group.finish();
}

fn lenet(store: &mut ParamStore) -> Sequential {
    let mut rng = StdRng::seed_from_u64(0);
    let mut f = Sequential::new("net");
    f.push(Conv2d::new(store, &f.next_name(), 1, 6, 5, 1, 2, true, &mut rng));
    f.push(ReLU);
    f.push(MaxPool2d { kernel: 2, stride: 2 });
    f.push(Conv2d::new(store, &f.next_name(), 6, 16, 5, 1, 0, true, &mut rng));
    f.push(ReLU);
    f.push(MaxPool2d { kernel: 2, stride: 2 });
    f.push(Flatten);
    f.push(Linear::new(store, &f.next_name(), 400, 120, true, &mut rng));
    f.push(ReLU);
    f.push(Linear::new(store, &f.next_name(), 120, 84, true, &mut rng));
    f.push(ReLU);
    f.push(Linear::new(store, &f.next_name(), 84, 10, true, &mut rng));
    f
}

fn mlp(store: &mut ParamStore) -> Sequential {
    let mut rng = StdRng::seed_from_u64(0);
    let mut f = Sequential::new("net");
    f.push(Flatten);
    f.push(Linear::new(store, &f.next_name(), 784, 500, true, &mut rng));
    f.push(ReLU);
    f.push(Linear::new(store, &f.next_name(), 500, 300, true, &mut rng));
    f.push(ReLU);
    f.push(Linear::new(store, &f.next_name(), 300, 10, true, &mut rng));
    f
}

fn bench_train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group.sample_size(20);
    for (name, batch, build) in
        [("lenet5_b128", 128usize, lenet as fn(&mut ParamStore) -> Sequential), ("mlp_784_500_300_10_b256", 256, mlp)]
    {
        let mut store = ParamStore::new();
        let net = build(&mut store);
        let mut rng = StdRng::seed_from_u64(1);
        let x = Tensor::uniform(&[batch, 1, 28, 28], 0.0, 1.0, &mut rng);
        let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
        let mut opt = Sgd::new(0.01, 0.9, 0.0, false);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(name, |bench| {
            bench.iter(|| {
                store.zero_grads();
                {
                    let mut g = Graph::new(&mut store, Mode::Train, 0);
                    let xv = g.input(x.clone());
                    let logits = net.forward(&mut g, xv).unwrap();
                    let loss = g.softmax_cross_entropy(logits, &labels).unwrap();
                    g.backward(loss).unwrap();
                }
                opt.step(&mut store);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_sgemm, bench_conv, bench_train_step);
criterion_main!(benches);
