//! The spherization layer's forward and backward written out in f64, straight from the
//! formulas, next to the engine's fused O(n) kernel, printing both.
//! Run with `cargo run --release --example spherize_by_hand`.

use std::f64::consts::FRAC_PI_2;

use engine::kernels::spherize::lower_angle;
use engine::{Graph, Mode, ParamStore, Result, Tensor};

/// phi_i = (pi/2 - phi_L) sigmoid(alpha z_i) + phi_L;  s_k = r sin(phi_1)..sin(phi_{k-1}) cos(phi_k)
/// for k <= n, and s_{n+1} = r sin(phi_1)..sin(phi_n).
fn forward(z: &[f64], alpha: f64, r: f64, phi_l: f64) -> (Vec<f64>, Vec<f64>) {
    let phi: Vec<f64> = z.iter().map(|&z| (FRAC_PI_2 - phi_l) / (1.0 + (-alpha * z).exp()) + phi_l).collect();
    let mut s = Vec::new();
    let mut p = r; // the running product r sin(phi_1) .. sin(phi_{k-1})
    for &f in &phi {
        s.push(p * f.cos());
        p *= f.sin();
    }
    s.push(p);
    (s, phi)
}

/// Given g = dL/ds: dL/dz, dL/dalpha, dL/dr, by the chain rule term by term (O(n^2)):
/// ds_k/dphi_j = s_k cot(phi_j) for j < k, -r sin(phi_1)..sin(phi_k) for j = k, 0 for j > k.
fn backward(z: &[f64], g: &[f64], alpha: f64, r: f64, phi_l: f64) -> (Vec<f64>, f64, f64) {
    let (s, phi) = forward(z, alpha, r, phi_l);
    let n = z.len();
    let (mut dz, mut dalpha) = (vec![0.0; n], 0.0);
    for j in 0..n {
        let mut dphi = 0.0;
        for k in 0..=n {
            dphi += g[k]
                * if k > j {
                    s[k] * phi[j].cos() / phi[j].sin()
                } else if k == j {
                    -r * phi[..=j].iter().map(|f| f.sin()).product::<f64>()
                } else {
                    0.0
                };
        }
        let sig = 1.0 / (1.0 + (-alpha * z[j]).exp());
        let dphi_dx = (FRAC_PI_2 - phi_l) * sig * (1.0 - sig); // dphi_j / d(alpha z_j)
        dz[j] = dphi * dphi_dx * alpha;
        dalpha += dphi * dphi_dx * z[j];
    }
    let dr = s.iter().zip(g).map(|(s, g)| g * s / r).sum();
    (dz, dalpha, dr)
}

fn main() -> Result<()> {
    let (n, alpha, r) = (5, 1.5, 2.0);
    let z = [0.3, -1.2, 2.0, 0.0, -0.4];
    let w = [0.5, -1.0, 0.25, 2.0, -0.75, 1.0]; // L = sum(w * s), so dL/ds = w
    let phi_l = lower_angle(n, 1e-6);

    // The engine: the fused kernel through the tape, with alpha and r as variables.
    let mut store = ParamStore::new();
    let mut g = Graph::new(&mut store, Mode::Train, 0);
    let zv = g.variable(Tensor::from_vec(&[1, n], z.map(|v| v as f32).to_vec())?);
    let av = g.variable(Tensor::from_vec(&[], vec![alpha as f32])?);
    let rv = g.variable(Tensor::from_vec(&[], vec![r as f32])?);
    let s = g.spherize(zv, av, rv, phi_l)?;
    let wv = g.input(Tensor::from_vec(&[1, n + 1], w.map(|v| v as f32).to_vec())?);
    let weighted = g.mul(s, wv)?;
    let loss = g.sum(weighted);
    g.backward(loss)?;

    let (s_ref, _) = forward(&z, alpha, r, phi_l);
    let (dz_ref, da_ref, dr_ref) = backward(&z, &w, alpha, r, phi_l);
    let grad = |v| g.grad(v).expect("a variable").data().to_vec();
    println!("s      by hand {:.6?}", s_ref);
    println!("       kernel  {:.6?}", g.value(s).data());
    println!("|s|    by hand {:.6}  (r = {r})", s_ref.iter().map(|v| v * v).sum::<f64>().sqrt());
    println!("dL/dz  by hand {:.6?}", dz_ref);
    println!("       kernel  {:.6?}", grad(zv));
    println!("dL/da  by hand {da_ref:.6}  kernel {:.6}", grad(av)[0]);
    println!("dL/dr  by hand {dr_ref:.6}  kernel {:.6}", grad(rv)[0]);
    let worst = s_ref
        .iter()
        .zip(g.value(s).data())
        .chain(dz_ref.iter().zip(g.grad(zv).expect("a variable").data()))
        .map(|(a, &b)| (a - b as f64).abs())
        .fold((da_ref - grad(av)[0] as f64).abs().max((dr_ref - grad(rv)[0] as f64).abs()), f64::max);
    println!("largest difference: {worst:.2e} (f32 kernel against f64 formulas)");
    assert!(worst < 1e-4, "the kernel disagrees with the formulas");
    Ok(())
}
