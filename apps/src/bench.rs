//! `sph bench`: images/s of a registry model's training step (forward, loss, backward,
//! optimizer: the same `Trainer::step` as `sph train`) on synthetic data of the model's input
//! shape, and with `--kernels` the GFLOP/s of the GEMM and convolution shapes the paper's
//! networks use. Warm-up steps first, then timed steps; medians, not means, since the
//! machines are shared.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use engine::kernels::{sgemm, sgemm_backend, Trans};
use engine::nn::{Conv2d, Module, SphereConfig, Spherization};
use engine::{Graph, Mode, ParamId, ParamStore, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::recipe::{self, model_config, Settings};
use crate::train::ShapeArgs;
use crate::trainer::Trainer;

/// Flags of `sph bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Registry model name (see `sph models`); not needed with --kernels.
    #[arg(long, required_unless_present = "kernels")]
    pub model: Option<String>,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Worker threads (default: RAYON_NUM_THREADS or all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Untimed steps first (allocation, caches, thread wake-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// The model-shaping flags, as in `sph train`.
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// GEMM and convolution GFLOP/s for the paper's shapes instead of a training step.
    #[arg(long)]
    pub kernels: bool,
    /// Also print where the timed steps went: time per op kind, forward and backward.
    #[arg(long)]
    pub profile: bool,
}

/// What `sph bench --json` prints for a training step.
#[derive(Serialize)]
struct StepReport {
    model: String,
    batch_size: usize,
    threads: usize,
    precision: &'static str,
    steps: usize,
    median_images_per_sec: f64,
    min_images_per_sec: f64,
    max_images_per_sec: f64,
    cpu_features: Vec<&'static str>,
    /// MPI ranks the global batch was split over (1 in one process).
    ranks: usize,
    /// Milliseconds per timed step spent summing gradients across ranks (0 in one process).
    allreduce_ms_per_step: f64,
}

/// SIMD features this CPU offers, detected at run time.
fn cpu_features() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => { $( if std::arch::is_x86_feature_detected!($f) { found.push($f); } )* };
        }
        probe!("avx", "avx2", "fma", "avx512f", "avx512bf16", "avx512vnni");
    }
    found
}

/// Median, min and max of `values` (not empty).
fn median_min_max(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { 0.5 * (values[n / 2 - 1] + values[n / 2]) };
    (median, values[0], values[n - 1])
}

/// The data set whose images have this shape, for the model's recipe (optimizer, scaling).
fn dataset_for(shape: [usize; 3]) -> &'static str {
    match shape {
        [1, 28, 28] => "mnist",
        [1, 32, 32] => "fashion-mnist",
        _ => "cifar10",
    }
}

/// `sph bench`.
pub fn run_bench(args: BenchArgs) -> Result<()> {
    let threads = rayon::current_num_threads();
    if args.steps == 0 || args.batch_size == 0 {
        bail!("--steps and --batch-size must be at least 1");
    }
    if args.kernels {
        return bench_kernels(threads, args.json);
    }
    let name = args.model.clone().unwrap_or_default();
    if !models::names().contains(&name.as_str()) {
        bail!("unknown model '{name}' (valid: {})", models::names().join(", "));
    }
    let classes = if name.ends_with("toy") { 2 } else { 10 };
    // The recipe of the data set the model reads; shaping flags as in `sph train`.
    let probe = models::build(&name, &model_config(&recipe::defaults(&name, "cifar10"), classes)?)?;
    let shape = probe.input_shape();
    let mut s = recipe::paper(&name, dataset_for(shape));
    s.width = args.shape.width.clone().or(s.width);
    s.width_multiplier = args.shape.width_multiplier.unwrap_or(s.width_multiplier);
    s.batch_size = args.batch_size;
    s.validate()?;
    let model = models::build(&name, &model_config(&s, classes)?)?;
    engine::profile::enable(false);
    let (mut rates, allreduce_seconds) = step_rates(model, &s, classes, args.warmup, args.steps, args.profile)?;
    let step_seconds: f64 = rates.iter().map(|r| args.batch_size as f64 / r).sum::<f64>() / rates.len() as f64;
    let (median, min, max) = median_min_max(&mut rates);
    let report = StepReport {
        model: name,
        batch_size: args.batch_size,
        threads,
        precision: "f32",
        steps: args.steps,
        median_images_per_sec: median,
        min_images_per_sec: min,
        max_images_per_sec: max,
        cpu_features: cpu_features(),
        ranks: crate::dist::group().size,
        allreduce_ms_per_step: 1e3 * allreduce_seconds / args.steps as f64,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: batch {}, {} threads, {} timed steps after {} warm-up: median {:.0} images/s (min {:.0}, max {:.0}); CPU: {}",
            report.model,
            report.batch_size,
            threads,
            args.steps,
            args.warmup,
            median,
            min,
            max,
            report.cpu_features.join(" ")
        );
        if report.ranks > 1 {
            println!(
                "{} MPI ranks ({threads} threads each): {:.1} ms per step summing gradients across ranks",
                report.ranks, report.allreduce_ms_per_step
            );
        }
    }
    if args.profile {
        print_profile(args.steps, step_seconds);
    }
    Ok(())
}

/// The op profile of the timed steps: per op kind, forward and backward milliseconds per step
/// and their share of the mean step; what no op accounts for (optimizer, tape) last.
fn print_profile(steps: usize, step_seconds: f64) {
    let mut ops = engine::profile::collected();
    ops.sort_by_key(|op| std::cmp::Reverse(op.1.forward + op.1.backward));
    let per_step = |d: std::time::Duration| d.as_secs_f64() * 1e3 / steps as f64;
    let step_ms = step_seconds * 1e3;
    println!("{:<24} {:>8} {:>12} {:>12} {:>8}", "op", "calls", "forward ms", "backward ms", "share");
    let mut counted = 0.0;
    for (name, t) in &ops {
        let (f, b) = (per_step(t.forward), per_step(t.backward));
        counted += f + b;
        println!("{name:<24} {:>8} {f:>12.2} {b:>12.2} {:>7.1}%", t.calls / steps, 100.0 * (f + b) / step_ms);
    }
    let rest = step_ms - counted;
    println!("{:<24} {:>8} {:>12} {:>12.2} {:>7.1}%", "(optimizer, tape, rest)", "", "", rest, 100.0 * rest / step_ms);
    println!("{:<24} {:>8} {:>12} {:>12.2}", "mean step", "", "", step_ms);
}

/// Images/s of each of `steps` training steps (after `warmup` more) of `model` with settings
/// `s` at its (global) batch size, on synthetic data of the model's input shape, and the
/// seconds the timed steps spent summing gradients across MPI ranks.
fn step_rates(
    model: models::Model,
    s: &Settings,
    classes: usize,
    warmup: usize,
    steps: usize,
    profile: bool,
) -> Result<(Vec<f64>, f64)> {
    let shape = model.input_shape();
    let batch = s.batch_size;
    let mut trainer = Trainer::from_settings(model, s)?;
    trainer.begin_epoch(0);
    let mut rng = StdRng::seed_from_u64(0);
    let x = Tensor::uniform(&[batch, shape[0], shape[1], shape[2]], -1.0, 1.0, &mut rng);
    let x = if shape[1] == 1 && shape[2] == 1 { x.reshape(&[batch, shape[0]])? } else { x };
    let labels: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..classes)).collect();
    let mut rates = Vec::with_capacity(steps);
    let mut reduced_before = 0.0;
    for step in 0..warmup + steps {
        if step == warmup {
            reduced_before = trainer.reducer.seconds;
            engine::profile::enable(profile);
        }
        let started = Instant::now();
        trainer.step(x.clone(), &labels, 0, step, |_| {})?;
        if step >= warmup {
            rates.push(batch as f64 / started.elapsed().as_secs_f64().max(1e-12));
        }
    }
    engine::profile::enable(false);
    Ok((rates, trainer.reducer.seconds - reduced_before))
}

/// The median training-step rate (images/s) of the run `s` on this machine, from 2 steps after
/// one warm-up step: what `sph reproduce` plans with.
pub fn step_rate(s: &Settings, classes: usize) -> Result<f64> {
    let model = models::build(&s.model, &model_config(s, classes)?)?;
    let (mut rates, _) = step_rates(model, s, classes, 1, 2, false)?;
    Ok(median_min_max(&mut rates).0)
}

/// One kernel measurement: a rate (GEMM, convolution) or a time (the spherization op).
#[derive(Serialize)]
struct KernelReport {
    kernel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    median_gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    median_us: Option<f64>,
}

impl KernelReport {
    /// A measured rate.
    fn rate(kernel: String, gflops: f64) -> Self {
        KernelReport { kernel, median_gflops: Some(gflops), median_us: None }
    }
    /// A measured time.
    fn time(kernel: String, us: f64) -> Self {
        KernelReport { kernel, median_gflops: None, median_us: Some(us) }
    }
}

/// Median GFLOP/s of `run` (which does `flops` floating-point operations) over a few runs.
fn time_gflops(flops: f64, run: impl FnMut() -> Result<()>) -> Result<f64> {
    Ok(flops / median_seconds(7, run)?.max(1e-12) / 1e9)
}

/// Median seconds of `repeats` runs of `run`, after one untimed run.
fn median_seconds(repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
    run()?; // warm-up
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let started = Instant::now();
        run()?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(median_min_max(&mut times).0)
}

/// One training-mode forward and backward of `module` on the input `x` (the sum of its outputs
/// as the loss), gradients into `store`. The input lives in the store as a learnable tensor,
/// like PyTorch's `requires_grad` leaf: it reaches the tape without a copy and its gradient
/// accumulates in place, so only the op itself is timed.
fn forward_backward(store: &mut ParamStore, module: &dyn Module, x: ParamId) -> Result<()> {
    let mut g = Graph::new(store, Mode::Train, 0);
    let xv = g.param(x);
    let y = module.forward(&mut g, xv)?;
    let loss = g.sum(y);
    g.backward(loss)?;
    Ok(())
}

/// Median microseconds of the spherization op, forward and backward through the tape, at the
/// SimpleFNN head's shape [256, 300] with the paper's settings (scaling 5 learned, radius 5).
fn spherize_time(rng: &mut StdRng) -> Result<KernelReport> {
    let (rows, n) = (256, 300);
    let mut store = ParamStore::new();
    let cfg = SphereConfig { scaling: 5.0, radius: 5.0, ..SphereConfig::default() };
    let sph = Spherization::new(&mut store, "sph", n, cfg)?;
    let z = store.add("z", Tensor::uniform(&[rows, n], -1.0, 1.0, rng));
    let median = 1e6 * median_seconds(51, || forward_backward(&mut store, &sph, z))?;
    Ok(KernelReport::time(format!("spherize fwd+bwd [{rows}, {n}]"), median))
}

/// The machine's f32 FMA ceiling in GFLOP/s on `threads` threads, and the vector width used:
/// each thread runs 12 independent multiply-add chains (enough to hide the FMA latency) from
/// registers, so that nothing but the FMA units limits it; 16 lanes with AVX-512, else 8.
fn fma_peak(threads: usize) -> (f64, usize) {
    const CHAINS: usize = 12;
    const ITERS: usize = 20_000_000 / CHAINS;
    let lanes = if avx512_fma::available() { 16 } else { 8 };
    let run = move || {
        if lanes == 16 {
            avx512_fma::chains(ITERS);
            return;
        }
        let mut acc = [[1.0f32; 8]; CHAINS];
        let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
        for _ in 0..ITERS {
            for chain in acc.iter_mut() {
                for v in chain.iter_mut() {
                    *v = v.mul_add(a, b);
                }
            }
        }
        std::hint::black_box(acc);
    };
    let flops = (threads * ITERS * CHAINS * lanes * 2) as f64;
    let mut rates = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        rayon::scope(|s| {
            for _ in 0..threads {
                s.spawn(|_| run());
            }
        });
        rates.push(flops / started.elapsed().as_secs_f64().max(1e-12) / 1e9);
    }
    (median_min_max(&mut rates).0, lanes)
}

/// The FMA loop with 16-lane AVX-512 vectors (the compiler alone prefers 8-lane ones).
mod avx512_fma {
    /// Whether this CPU has AVX-512F.
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// 12 chains x 16 lanes of `iters` dependent FMAs each.
    pub fn chains(iters: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: only called after `available()` said AVX-512F is present.
        unsafe {
            run(iters)
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = iters;
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn run(iters: usize) {
        use std::arch::x86_64::*;
        let mut acc = [_mm512_set1_ps(1.0); 12];
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999f32));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7f32));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        std::hint::black_box(acc);
    }
}

/// GEMM shapes of the paper's networks and convolution layers, forward + backward.
fn bench_kernels(threads: usize, json: bool) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(0);
    let (peak, lanes) = fma_peak(threads);
    let mut reports = vec![KernelReport::rate(format!("FMA peak (12 chains x {lanes} lanes)"), peak)];
    for (m, k, n) in [(1024, 1024, 1024), (128, 400, 120), (128, 4608, 512), (256, 784, 500)] {
        let a = Tensor::uniform(&[m, k], -1.0, 1.0, &mut rng);
        let b = Tensor::uniform(&[k, n], -1.0, 1.0, &mut rng);
        let mut c = vec![0.0f32; m * n];
        let gflops = time_gflops(2.0 * (m * n * k) as f64, || {
            sgemm(Trans::N, Trans::N, m, n, k, 1.0, a.data(), b.data(), 0.0, &mut c);
            Ok(())
        })?;
        reports.push(KernelReport::rate(format!("sgemm ({m}x{k})@({k}x{n})"), gflops));
    }
    // (name, c_in, c_out, kernel, padding, size), batch 128; backward costs twice the forward.
    for (name, c_in, c_out, k, pad, size) in [
        ("LeNet conv1 1->6 5x5 28x28", 1, 6, 5, 2, 28),
        ("LeNet conv2 6->16 5x5 14x14", 6, 16, 5, 0, 14),
        ("CNN-9 x0.25 32->32 3x3 32x32", 32, 32, 3, 1, 32),
        ("CNN-9 x0.25 48->48 3x3 16x16", 48, 48, 3, 1, 16),
        ("CNN-9 x0.25 64->64 3x3 8x8", 64, 64, 3, 1, 8),
        ("VGG 3->64 3x3 32x32", 3, 64, 3, 1, 32),
        ("VGG 64->128 3x3 16x16", 64, 128, 3, 1, 16),
        ("VGG 128->256 3x3 8x8", 128, 256, 3, 1, 8),
    ] {
        let batch = 128;
        let mut store = ParamStore::new();
        let conv = Conv2d::new(&mut store, "conv", c_in, c_out, k, 1, pad, true, &mut rng);
        let x = store.add("x", Tensor::uniform(&[batch, c_in, size, size], -1.0, 1.0, &mut rng));
        let out = size + 2 * pad - k + 1;
        let flops = 3.0 * 2.0 * (batch * c_out * out * out * c_in * k * k) as f64;
        let gflops = time_gflops(flops, || forward_backward(&mut store, &conv, x))?;
        reports.push(KernelReport::rate(format!("conv fwd+bwd {name}, batch 128"), gflops));
    }
    reports.push(spherize_time(&mut rng)?);
    if json {
        let out = serde_json::json!({ "threads": threads, "cpu_features": cpu_features(), "sgemm_backend": sgemm_backend(), "kernels": reports });
        println!("{out}");
    } else {
        println!("kernels, {threads} threads, sgemm: {}, CPU: {}", sgemm_backend(), cpu_features().join(" "));
        for r in &reports {
            match (r.median_gflops, r.median_us) {
                (Some(gflops), _) => println!("  {:<52} {gflops:>8.1} GFLOP/s", r.kernel),
                (_, Some(us)) => println!("  {:<52} {us:>8.1} us", r.kernel),
                _ => {}
            }
        }
    }
    Ok(())
}
