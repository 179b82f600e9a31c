//! Criterion benchmarks of the spherization kernel, forward + backward, next to a reference
//! O(n^2) "log trick" implementation (the official formulation: r exp(log(|sin|+eps) U +
//! log(|cos|+eps) I) with two (n+1) x (n+1) matrix products forward and two backward), so
//! the ratio shows in one run. Run with `RAYON_NUM_THREADS=2 cargo bench --bench spherize`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use engine::kernels::spherize::{
    backward_channels, backward_rows, forward_channels, forward_rows, lower_angle, SphereParams,
};
use rayon::prelude::*;
use std::time::Duration;

/// Deterministic inputs in [-scale, scale).
fn data(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn params(n: usize) -> SphereParams {
    // The paper's experimental setting: scaling 5, radius 5, delta 1e-6.
    SphereParams { alpha: 5.0, radius: 5.0, phi_lower: lower_angle(n, 1e-6) }
}

// ------------------------------------------------------------------------------------------
// Reference: the O(n^2) log-trick formulation, forward and backward, in plain f32 loops.
// ------------------------------------------------------------------------------------------

const EPS: f32 = 1e-6;

/// C[m, k2] = A[m, k] B[k, k2] (row-major), rows in parallel, blocked so a block of C and
/// the current rows of B stay in cache; the inner loop is an auto-vectorized axpy.
fn matmul(a: &[f32], b: &[f32], c: &mut [f32], k: usize, k2: usize) {
    const ROWS: usize = 8;
    const COLS: usize = 512;
    c.fill(0.0);
    c.par_chunks_mut(ROWS * k2).zip(a.par_chunks(ROWS * k)).for_each(|(cb, ab)| {
        let rows = ab.len() / k;
        for j0 in (0..k2).step_by(COLS) {
            let j1 = (j0 + COLS).min(k2);
            for kk in 0..k {
                let brow = &b[kk * k2 + j0..kk * k2 + j1];
                for r in 0..rows {
                    let av = ab[r * k + kk];
                    for (cv, &bv) in cb[r * k2 + j0..r * k2 + j1].iter_mut().zip(brow) {
                        *cv += av * bv;
                    }
                }
            }
        }
    });
}

/// Buffers and fixed matrices of the reference for one shape.
struct LogTrick {
    n: usize,
    /// (n+1) x (n+1): strictly upper triangular ones (sum of log sines of earlier angles).
    upper: Vec<f32>,
    /// (n+1) x (n+1) identity (the official code also multiplies the cosine part by a matrix).
    ident: Vec<f32>,
    upper_t: Vec<f32>,
    log_sin: Vec<f32>,
    log_cos: Vec<f32>,
    tmp: Vec<f32>,
    tmp2: Vec<f32>,
    theta: Vec<f32>,
}

impl LogTrick {
    fn new(rows: usize, n: usize) -> Self {
        let m = n + 1;
        let upper: Vec<f32> = (0..m * m).map(|ik| if ik / m < ik % m { 1.0 } else { 0.0 }).collect();
        let ident: Vec<f32> = (0..m * m).map(|ik| if ik / m == ik % m { 1.0 } else { 0.0 }).collect();
        let upper_t: Vec<f32> = (0..m * m).map(|ik| upper[(ik % m) * m + ik / m]).collect();
        let z = vec![0.0; rows * m];
        LogTrick {
            n,
            upper,
            ident,
            upper_t,
            log_sin: z.clone(),
            log_cos: z.clone(),
            tmp: z.clone(),
            tmp2: z.clone(),
            theta: vec![0.0; rows * n],
        }
    }

    /// Forward + backward; returns (dL/dalpha, dL/dr) and fills `out`, `grad_z`.
    fn fwd_bwd(&mut self, z: &[f32], p: SphereParams, g: &[f32], out: &mut [f32], grad_z: &mut [f32]) -> (f32, f32) {
        let (n, m) = (self.n, self.n + 1);
        let span = (std::f64::consts::FRAC_PI_2 - p.phi_lower) as f32;
        let phi_l = p.phi_lower as f32;
        for (t, &zi) in self.theta.iter_mut().zip(z) {
            *t = span / (1.0 + (-p.alpha * zi).exp()) + phi_l;
        }
        // Padded with a last angle 0: sin 0 = 0 is never used (upper has a zero last row), cos 0 = 1.
        for row in 0..z.len() / n {
            for k in 0..m {
                let t = if k < n { self.theta[row * n + k] } else { 0.0 };
                self.log_sin[row * m + k] = (t.sin().abs() + EPS).ln();
                self.log_cos[row * m + k] = (t.cos().abs() + EPS).ln();
            }
        }
        matmul(&self.log_sin, &self.upper, &mut self.tmp, m, m);
        matmul(&self.log_cos, &self.ident, &mut self.tmp2, m, m);
        for ((o, a), b) in out.iter_mut().zip(&self.tmp).zip(&self.tmp2) {
            *o = p.radius * (a + b).exp();
        }
        // Backward: d(exponent) = g * out, then back through both products and the logs.
        let mut d_r = 0.0f64;
        for ((e, &gi), &o) in self.tmp.iter_mut().zip(g).zip(out.iter()) {
            *e = gi * o;
            d_r += (gi * o) as f64;
        }
        let d_exp = std::mem::take(&mut self.tmp);
        matmul(&d_exp, &self.upper_t, &mut self.log_sin, m, m); // d log_sin
        matmul(&d_exp, &self.ident, &mut self.log_cos, m, m); // d log_cos (identity is symmetric)
        self.tmp = d_exp;
        let mut d_alpha = 0.0f64;
        for row in 0..z.len() / n {
            for k in 0..n {
                let t = self.theta[row * n + k];
                let (s, c) = t.sin_cos();
                let d_theta = self.log_sin[row * m + k] * c * s.signum() / (s.abs() + EPS)
                    - self.log_cos[row * m + k] * s * c.signum() / (c.abs() + EPS);
                let sig = (t - phi_l) / span;
                let d_t = d_theta * span * sig * (1.0 - sig);
                grad_z[row * n + k] += d_t * p.alpha;
                d_alpha += (d_t * z[row * n + k]) as f64;
            }
        }
        (d_alpha as f32, (d_r / p.radius as f64) as f32)
    }
}

// ------------------------------------------------------------------------------------------

fn bench_rows(c: &mut Criterion) {
    let mut group = c.benchmark_group("spherize_fwd_bwd");
    for &(rows, n) in &[(256usize, 300usize), (128, 4096), (128, 84)] {
        let p = params(n);
        let z = data(1, rows * n, 1.0);
        let g = data(2, rows * (n + 1), 1.0);
        let mut out = vec![0.0; rows * (n + 1)];
        let mut dz = vec![0.0; rows * n];
        group.bench_function(BenchmarkId::new("rows", format!("{rows}x{n}")), |b| {
            b.iter(|| {
                forward_rows(black_box(&z), n, p, &mut out);
                dz.fill(0.0);
                black_box(backward_rows(&z, n, p, black_box(&g), &mut dz))
            })
        });
    }
    let (batch, ch, hw) = (128usize, 64usize, 64usize);
    let p = params(ch);
    let z = data(3, batch * ch * hw, 1.0);
    let g = data(4, batch * (ch + 1) * hw, 1.0);
    let mut out = vec![0.0; g.len()];
    let mut dz = vec![0.0; z.len()];
    group.bench_function(BenchmarkId::new("channels", "128x64x8x8"), |b| {
        b.iter(|| {
            forward_channels(black_box(&z), batch, ch, hw, p, &mut out);
            dz.fill(0.0);
            black_box(backward_channels(&z, batch, ch, hw, p, black_box(&g), &mut dz))
        })
    });
    group.finish();
}

fn bench_reference(c: &mut Criterion) {
    let mut group = c.benchmark_group("logtrick_reference_fwd_bwd");
    for &(rows, n, samples) in &[(256usize, 300usize, 30usize), (128, 4096, 10)] {
        let p = params(n);
        let z = data(1, rows * n, 1.0);
        let g = data(2, rows * (n + 1), 1.0);
        let mut out = vec![0.0; rows * (n + 1)];
        let mut dz = vec![0.0; rows * n];
        let mut reference = LogTrick::new(rows, n);
        // Sanity: the reference agrees with the kernel up to the log trick's eps drift.
        let mut out_k = vec![0.0; out.len()];
        forward_rows(&z, n, p, &mut out_k);
        reference.fwd_bwd(&z, p, &g, &mut out, &mut dz);
        let drift = out.iter().zip(&out_k).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(drift < 1e-2 * p.radius, "reference disagrees with the kernel by {drift}");
        group.sample_size(samples);
        if n > 1000 {
            group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
        }
        group.bench_function(BenchmarkId::new("rows", format!("{rows}x{n}")), |b| {
            b.iter(|| {
                dz.fill(0.0);
                black_box(reference.fwd_bwd(black_box(&z), p, black_box(&g), &mut out, &mut dz))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_rows, bench_reference);
criterion_main!(benches);
