//! Spherization map (temporary scalar version; replaced by the vectorized kernel).

/// Lower angle bound phi_L = asin(delta^(1/n)), capped at (pi/2)(1 - 0.01); computed in f64.
pub fn lower_angle(n: usize, delta: f64) -> f64 {
    delta.powf(1.0 / n as f64).asin().min(std::f64::consts::FRAC_PI_2 * (1.0 - 0.01))
}

/// Scaling, radius and lower angle of one spherization.
#[derive(Clone, Copy, Debug)]
pub struct SphereParams {
    pub alpha: f32,
    pub radius: f32,
    pub phi_lower: f64,
}

fn angles(z: &[f32], p: SphereParams) -> Vec<(f64, f64)> {
    let span = std::f64::consts::FRAC_PI_2 - p.phi_lower;
    z.iter()
        .map(|&v| {
            let sig = 1.0 / (1.0 + (-(p.alpha as f64) * v as f64).exp());
            (span * sig + p.phi_lower, sig)
        })
        .collect()
}

/// z: [rows, n] -> out: [rows, n+1].
pub fn forward_rows(z: &[f32], n: usize, p: SphereParams, out: &mut [f32]) {
    for (zr, o) in z.chunks(n).zip(out.chunks_mut(n + 1)) {
        let mut prod = p.radius as f64;
        for (k, (phi, _)) in angles(zr, p).into_iter().enumerate() {
            o[k] = (prod * phi.cos()) as f32;
            prod *= phi.sin();
        }
        o[n] = prod as f32;
    }
}

/// Adds dL/dz into grad_z; returns (dL/dalpha, dL/dradius).
pub fn backward_rows(z: &[f32], n: usize, p: SphereParams, grad_out: &[f32], grad_z: &mut [f32]) -> (f32, f32) {
    let span = std::f64::consts::FRAC_PI_2 - p.phi_lower;
    let (mut da, mut dr) = (0.0f64, 0.0f64);
    for ((zr, g), dz) in z.chunks(n).zip(grad_out.chunks(n + 1)).zip(grad_z.chunks_mut(n)) {
        let a = angles(zr, p);
        let mut prefix = vec![p.radius as f64; n + 1];
        for k in 0..n {
            prefix[k + 1] = prefix[k] * a[k].0.sin();
        }
        let mut u = g[n] as f64;
        dr += g[n] as f64 * prefix[n] / p.radius as f64;
        for j in (0..n).rev() {
            let (phi, sig) = a[j];
            let dphi = prefix[j] * (phi.cos() * u - g[j] as f64 * phi.sin());
            dr += g[j] as f64 * prefix[j] * phi.cos() / p.radius as f64;
            u = g[j] as f64 * phi.cos() + phi.sin() * u;
            let dsig = span * sig * (1.0 - sig);
            dz[j] += (dphi * dsig * p.alpha as f64) as f32;
            da += dphi * dsig * zr[j] as f64;
        }
    }
    (da as f32, dr as f32)
}

/// Channel-wise form: z [batch, n, hw] -> out [batch, n+1, hw].
pub fn forward_channels(z: &[f32], batch: usize, n: usize, hw: usize, p: SphereParams, out: &mut [f32]) {
    let mut row = vec![0.0; n];
    let mut o = vec![0.0; n + 1];
    for b in 0..batch {
        for q in 0..hw {
            (0..n).for_each(|c| row[c] = z[(b * n + c) * hw + q]);
            forward_rows(&row, n, p, &mut o);
            (0..=n).for_each(|c| out[(b * (n + 1) + c) * hw + q] = o[c]);
        }
    }
}

/// Channel-wise backward.
pub fn backward_channels(z: &[f32], batch: usize, n: usize, hw: usize, p: SphereParams, grad_out: &[f32], grad_z: &mut [f32]) -> (f32, f32) {
    let (mut da, mut dr) = (0.0, 0.0);
    let mut row = vec![0.0; n];
    let mut g = vec![0.0; n + 1];
    for b in 0..batch {
        for q in 0..hw {
            (0..n).for_each(|c| row[c] = z[(b * n + c) * hw + q]);
            (0..=n).for_each(|c| g[c] = grad_out[(b * (n + 1) + c) * hw + q]);
            let mut dz = vec![0.0; n];
            let (a, r) = backward_rows(&row, n, p, &g, &mut dz);
            da += a;
            dr += r;
            (0..n).for_each(|c| grad_z[(b * n + c) * hw + q] += dz[c]);
        }
    }
    (da, dr)
}
