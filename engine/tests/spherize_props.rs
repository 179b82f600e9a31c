//! Property tests of the spherization kernel against a float64 reference written here
//! (plain libm sines and cosines, and the textbook backward with cot and suffix sums, so it
//! shares no code or formula with the kernel's division-free recursion), plus: channel form
//! equals row form, the backward from saved angles equals the recomputing one, thread-count
//! determinism, non-finite inputs.
//!
//! Tolerances (f32 kernel vs f64 truth), for one row with upstream gradient g = G_row:
//! * forward: |s_k - ref| <= 1e-5 r, norm within 1e-5 r, s_k >= 0, s_{n+1} >= r delta (1 - 1e-4);
//! * dL/dz_j: |got - want| <= 2e-4 |want| + alpha r |g|_1 (1e-5 phi'_j + 4e-35), where
//!   phi'_j = (pi/2 - phi_L) sig (1 - sig). alpha r |g|_1 phi'_j bounds the terms that make up
//!   dL/dz_j (|P_j| <= r, |U_j| <= |g|_1), so 1e-5 of it allows for cancellation between
//!   them; 4e-35 > (pi/2) 2^-115 is the largest slope the kernel can report where it clamps
//!   |alpha z| at 115 ln 2 = 79.7 (the true slope there is smaller still).
//! * dL/dalpha: 2e-4 |want| + the sum over rows and j of r |g|_1 |z_j| (1e-5 phi'_j + 4e-35);
//!   dL/dr: 2e-4 |want| + 1e-5 times the sum over rows of |g|_1.
//!
//! "want" is a central finite difference of the f64 loss sum(out * G) (step 1e-5 in alpha z,
//! 1e-5 relative in alpha and r), except for saturated inputs (|alpha z| > 20), where the
//! sigmoid is flat to 1e-9 and the difference would be rounding noise: there it is the f64
//! analytic gradient, itself checked against the finite differences on the other inputs.
//! Each comparison with a finite difference also allows its rounding noise,
//! 4 eps sum_k |g_k s_k| / h (about 1e-9 of the typical gradient).

use engine::kernels::spherize::{
    backward_channels, backward_channels_saved, backward_rows, forward_channels, forward_channels_saving, forward_rows,
    lower_angle, saved_len, SphereParams,
};
use proptest::prelude::*;
use std::f64::consts::FRAC_PI_2;

// ------------------------------------------------------------------------------------------
// float64 reference
// ------------------------------------------------------------------------------------------

/// sigmoid(t) without overflow for any t.
fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// The angles of one row.
fn angles(z: &[f64], alpha: f64, phi_l: f64) -> Vec<f64> {
    z.iter().map(|&zi| (FRAC_PI_2 - phi_l) * sigmoid(alpha * zi) + phi_l).collect()
}

/// Forward of one row in f64, by the definition.
fn ref_forward(z: &[f64], alpha: f64, r: f64, phi_l: f64) -> Vec<f64> {
    let mut p = r;
    let mut s = Vec::with_capacity(z.len() + 1);
    for phi in angles(z, alpha, phi_l) {
        s.push(p * phi.cos());
        p *= phi.sin();
    }
    s.push(p);
    s
}

/// sum(out * g) for one row.
fn ref_loss(z: &[f64], g: &[f64], alpha: f64, r: f64, phi_l: f64) -> f64 {
    ref_forward(z, alpha, r, phi_l).iter().zip(g).map(|(s, g)| s * g).sum()
}

/// dphi_j/dt_j = span sig (1 - sig), accurate for saturated t too.
fn slope(t: f64, phi_l: f64) -> f64 {
    (FRAC_PI_2 - phi_l) * sigmoid(t) * sigmoid(-t)
}

/// f64 analytic gradients of one row, the textbook way:
/// dL/dphi_j = cot(phi_j) T_j - g_j P_j sin(phi_j), T_j = sum_{k>j} g_k s_k.
/// Returns (dL/dz, dL/dalpha, dL/dr).
fn ref_backward(z: &[f64], g: &[f64], alpha: f64, r: f64, phi_l: f64) -> (Vec<f64>, f64, f64) {
    let n = z.len();
    let phi = angles(z, alpha, phi_l);
    let s = ref_forward(z, alpha, r, phi_l);
    let mut prefix = vec![r; n + 1];
    for j in 0..n {
        prefix[j + 1] = prefix[j] * phi[j].sin();
    }
    let mut tail = 0.0; // T_j
    let mut dz = vec![0.0; n];
    let mut d_alpha = 0.0;
    for j in (0..n).rev() {
        tail += g[j + 1] * s[j + 1];
        let d_phi = phi[j].cos() / phi[j].sin() * tail - g[j] * prefix[j] * phi[j].sin();
        let sl = slope(alpha * z[j], phi_l);
        dz[j] = d_phi * sl * alpha;
        d_alpha += d_phi * sl * z[j];
    }
    let d_r = s.iter().zip(g).map(|(s, g)| s * g).sum::<f64>() / r;
    (dz, d_alpha, d_r)
}

/// Bound on the slope the kernel reports for clamped |alpha z| >= 115 ln 2: (pi/2) 2^-115 < 4e-35.
const CLAMPED_SLOPE: f64 = 4e-35;

// ------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------

fn params(alpha: f32, r: f32, n: usize, delta: f64) -> SphereParams {
    SphereParams { alpha, radius: r, phi_lower: lower_angle(n, delta) }
}

/// A deterministic pseudo-random sequence in [-scale, scale) (tests need no rand crate).
fn lcg(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Coordinates to finite-difference: all of them for small n, else 48 spread over the row.
fn fd_indices(n: usize) -> Vec<usize> {
    if n <= 48 {
        (0..n).collect()
    } else {
        (0..48).map(|i| i * (n - 1) / 47).collect()
    }
}

fn check(what: &str, got: f64, want: f64, tol: f64) -> Result<(), TestCaseError> {
    prop_assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:e}, want {want:e}, |diff| {:e} > tol {tol:e}",
        (got - want).abs()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// properties
// ------------------------------------------------------------------------------------------

/// Inputs mixing ordinary values, exact zeros and +-1e4.
fn input() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -6.0f32..6.0,
        1 => Just(0.0f32),
        1 => Just(1e4f32),
        1 => Just(-1e4f32),
        1 => -1e4f32..1e4,
    ]
}

/// delta log-uniform in [1e-8, 0.5], or the default 1e-6.
fn delta() -> impl Strategy<Value = f64> {
    prop_oneof![Just(1e-6), (-8.0f64..-0.3).prop_map(|e| 10f64.powf(e))]
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    rows: usize,
    z: Vec<f32>,
    g: Vec<f32>,
    alpha: f32,
    r: f32,
    delta: f64,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..512, 1usize..=8, 0.1f32..10.0, 0.1f32..10.0, delta()).prop_flat_map(|(n, rows, alpha, r, delta)| {
        (proptest::collection::vec(input(), rows * n), proptest::collection::vec(-1.0f32..1.0, rows * (n + 1)))
            .prop_map(move |(z, g)| Case { n, rows, z, g, alpha, r, delta })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn forward_is_on_the_sphere_and_matches_f64(c in case()) {
        let (n, r) = (c.n, c.r as f64);
        let p = params(c.alpha, c.r, n, c.delta);
        let mut out = vec![f32::NAN; c.rows * (n + 1)];
        forward_rows(&c.z, n, p, &mut out);
        for (b, row) in out.chunks(n + 1).enumerate() {
            let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            check("norm", norm, r, 1e-5 * r)?;
            prop_assert!(row.iter().all(|&v| v >= 0.0), "negative coordinate in row {b}");
            prop_assert!(row[n] as f64 >= r * c.delta * (1.0 - 1e-4), "last {} < r delta", row[n]);
            let z64: Vec<f64> = c.z[b * n..(b + 1) * n].iter().map(|&v| v as f64).collect();
            let want = ref_forward(&z64, c.alpha as f64, r, p.phi_lower);
            for (k, (&got, &w)) in row.iter().zip(&want).enumerate() {
                check(&format!("s[{b}][{k}]"), got as f64, w, 1e-5 * r)?;
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences(c in case()) {
        let (n, alpha, r) = (c.n, c.alpha as f64, c.r as f64);
        let p = params(c.alpha, c.r, n, c.delta);
        let phi_l = p.phi_lower;
        let mut dz = vec![0.0f32; c.rows * n];
        let (d_alpha, d_r) = backward_rows(&c.z, n, p, &c.g, &mut dz);

        let (mut fd_alpha, mut fd_r) = (0.0, 0.0);
        let (mut scale_alpha, mut scale_r) = (0.0, 0.0);
        let (mut noise_alpha, mut noise_r) = (0.0, 0.0);
        for b in 0..c.rows {
            let z: Vec<f64> = c.z[b * n..(b + 1) * n].iter().map(|&v| v as f64).collect();
            let g: Vec<f64> = c.g[b * (n + 1)..(b + 1) * (n + 1)].iter().map(|&v| v as f64).collect();
            let g_l1: f64 = g.iter().map(|v| v.abs()).sum();
            let (an_z, _, _) = ref_backward(&z, &g, alpha, r, phi_l);
            let s_ref = ref_forward(&z, alpha, r, phi_l);
            let l_abs: f64 = s_ref.iter().zip(&g).map(|(s, g)| (s * g).abs()).sum();
            // s_k is a product of k sines and a cosine, so its f64 rounding error is up to about
            // (k + 2) ulps; perturbing z_j changes only the terms k > j, whose errors therefore do
            // not cancel in the difference quotient. product_noise[j] = sum_{k>j} (k + 2) |s_k g_k|.
            let mut product_noise = vec![0.0; n + 1];
            for k in (0..n).rev() {
                product_noise[k] = product_noise[k + 1] + (k + 3) as f64 * (s_ref[k + 1] * g[k + 1]).abs();
            }
            for j in fd_indices(n) {
                let t = alpha * z[j];
                let sl = 1e-5 * slope(t, phi_l) + CLAMPED_SLOPE;
                let tol = |want: f64| 2e-4 * want.abs() + alpha * r * g_l1 * sl;
                let got = dz[b * n + j] as f64;
                if t.abs() > 20.0 {
                    check(&format!("dz[{b}][{j}] (saturated, vs f64 analytic)"), got, an_z[j], tol(an_z[j]))?;
                } else {
                    let h = 1e-5 / alpha;
                    let mut zp = z.clone();
                    zp[j] = z[j] + h;
                    let lp = ref_loss(&zp, &g, alpha, r, phi_l);
                    zp[j] = z[j] - h;
                    let lm = ref_loss(&zp, &g, alpha, r, phi_l);
                    let fd = (lp - lm) / (2.0 * h);
                    // Rounding noise of the difference quotient: a few ulps of the loss's terms, plus
                    // the rounding of the sine products that the perturbation changes, over h.
                    let noise = f64::EPSILON * (4.0 * l_abs + product_noise[j]) / h;
                    check(&format!("dz[{b}][{j}] vs FD"), got, fd, tol(fd) + noise)?;
                    // The f64 analytic reference (used for saturated inputs) is itself right,
                    // to 1e-3 of the kernel's tolerance plus the FD noise:
                    check(&format!("f64 analytic dz[{b}][{j}] vs FD"), an_z[j], fd, 1e-3 * tol(fd) + noise)?;
                }
            }
            let ha = 1e-5 * alpha;
            fd_alpha += (ref_loss(&z, &g, alpha + ha, r, phi_l) - ref_loss(&z, &g, alpha - ha, r, phi_l)) / (2.0 * ha);
            let hr = 1e-5 * r;
            fd_r += (ref_loss(&z, &g, alpha, r + hr, phi_l) - ref_loss(&z, &g, alpha, r - hr, phi_l)) / (2.0 * hr);
            scale_alpha += z.iter().map(|&zj| r * g_l1 * zj.abs() * (1e-5 * slope(alpha * zj, phi_l) + CLAMPED_SLOPE)).sum::<f64>();
            scale_r += g_l1;
            noise_alpha += 4.0 * f64::EPSILON * l_abs / ha;
            noise_r += 4.0 * f64::EPSILON * l_abs / hr;
        }
        check("dL/dalpha vs FD", d_alpha as f64, fd_alpha, 2e-4 * fd_alpha.abs() + scale_alpha + noise_alpha)?;
        check("dL/dr vs FD", d_r as f64, fd_r, 2e-4 * fd_r.abs() + 1e-5 * scale_r + noise_r)?;
    }

    #[test]
    fn saved_angles_give_the_recomputed_backward_bit_for_bit(
        batch in 1usize..40, n in 1usize..90, hw in prop_oneof![Just(1usize), 1usize..30], seed in any::<u64>(),
        alpha in 0.1f32..10.0, r in 0.1f32..10.0, scale in prop_oneof![Just(1.0f32), Just(30.0f32)],
    ) {
        // n < 40 takes the kernel's mixed-angle path, n >= 40 the other; ragged tiles and
        // groups; scale 30 saturates many sigmoids.
        let p = params(alpha, r, n, 1e-6);
        let z = lcg(seed, batch * n * hw, scale);
        let g = lcg(seed ^ 3, batch * (n + 1) * hw, 1.0);
        let (mut out, mut out_saving) = (vec![0.0; g.len()], vec![0.0; g.len()]);
        forward_channels(&z, batch, n, hw, p, &mut out);
        let mut saved = vec![f32::NAN; saved_len(batch, n, hw)]; // every float must be written
        forward_channels_saving(&z, batch, n, hw, p, &mut out_saving, &mut saved);
        prop_assert!(out.iter().zip(&out_saving).all(|(a, b)| a.to_bits() == b.to_bits()), "forward differs");
        prop_assert!(saved.iter().all(|v| !v.is_nan()), "a saved float was left unwritten");
        let (mut dz, mut dz_saved) = (vec![0.25; z.len()], vec![0.25; z.len()]);
        let (da, dr) = backward_channels(&z, batch, n, hw, p, &g, &mut dz);
        let (da_s, dr_s) = backward_channels_saved(&z, batch, n, hw, p, &g, &mut dz_saved, &saved);
        prop_assert!(dz.iter().zip(&dz_saved).all(|(a, b)| a.to_bits() == b.to_bits()), "dL/dz differs");
        prop_assert_eq!((da.to_bits(), dr.to_bits()), (da_s.to_bits(), dr_s.to_bits()));
    }

    #[test]
    fn channel_form_equals_row_form(
        batch in 1usize..5, n in 1usize..70, hw in 1usize..40, seed in any::<u64>(),
        alpha in 0.1f32..10.0, r in 0.1f32..10.0,
    ) {
        let p = params(alpha, r, n, 1e-6);
        let z = lcg(seed, batch * n * hw, 3.0);
        let g = lcg(seed ^ 1, batch * (n + 1) * hw, 1.0);
        // The same pixel vectors as rows: row (b, px) = z[b, :, px].
        let to_rows = |x: &[f32], c: usize| -> Vec<f32> {
            (0..batch * hw * c).map(|i| {
                let (row, k) = (i / c, i % c);
                let (b, px) = (row / hw, row % hw);
                x[(b * c + k) * hw + px]
            }).collect()
        };
        let mut out_c = vec![0.0; batch * (n + 1) * hw];
        forward_channels(&z, batch, n, hw, p, &mut out_c);
        let mut out_r = vec![0.0; batch * hw * (n + 1)];
        forward_rows(&to_rows(&z, n), n, p, &mut out_r);
        prop_assert_eq!(to_rows(&out_c, n + 1), out_r, "forward differs");

        let mut dz_c = vec![0.5; batch * n * hw]; // non-zero: backward must add, not store
        let (da_c, dr_c) = backward_channels(&z, batch, n, hw, p, &g, &mut dz_c);
        let mut dz_r = vec![0.5; batch * hw * n];
        let (da_r, dr_r) = backward_rows(&to_rows(&z, n), n, p, &to_rows(&g, n + 1), &mut dz_r);
        prop_assert_eq!(to_rows(&dz_c, n), dz_r, "dL/dz differs");
        // Same per-pixel values, possibly summed in another grouping: equal to f32 rounding.
        check("dL/dalpha", da_c as f64, da_r as f64, 1e-6 * (da_r.abs() as f64) + 1e-30)?;
        check("dL/dr", dr_c as f64, dr_r as f64, 1e-6 * (dr_r.abs() as f64) + 1e-30)?;
    }
}

// ------------------------------------------------------------------------------------------
// fixed tests
// ------------------------------------------------------------------------------------------

fn run_in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn backward_is_bit_identical_for_1_and_2_threads() {
    // Large enough to take the parallel path, with a ragged last tile (and a ragged image).
    for &(rows, n, hw) in &[(300usize, 257usize, 1usize), (37, 64, 49), (128, 4096, 1)] {
        let p = params(5.0, 5.0, n, 1e-6);
        let z = lcg(7, rows * n * hw, 2.0);
        let g = lcg(8, rows * (n + 1) * hw, 1.0);
        let run = || {
            let mut dz = vec![0.0f32; z.len()];
            let mut out = vec![0.0f32; g.len()];
            forward_channels(&z, rows, n, hw, p, &mut out);
            let (da, dr) = backward_channels(&z, rows, n, hw, p, &g, &mut dz);
            (out, dz, da.to_bits(), dr.to_bits())
        };
        let one = run_in_pool(1, run);
        let two = run_in_pool(2, run);
        assert!(one == two, "results depend on the thread count for shape {rows}x{n}x{hw}");
        // The threaded path computes each image exactly as a lone, serial call would.
        let (out, dz) = (&two.0, &two.1);
        for b in 0..rows {
            let (zb, gb) = (&z[b * n * hw..(b + 1) * n * hw], &g[b * (n + 1) * hw..(b + 1) * (n + 1) * hw]);
            let mut out_b = vec![0.0f32; gb.len()];
            forward_channels(zb, 1, n, hw, p, &mut out_b);
            let mut dz_b = vec![0.0f32; zb.len()];
            backward_channels(zb, 1, n, hw, p, gb, &mut dz_b);
            assert!(out_b[..] == out[b * (n + 1) * hw..(b + 1) * (n + 1) * hw], "forward, image {b}");
            assert!(dz_b[..] == dz[b * n * hw..(b + 1) * n * hw], "backward, image {b}");
        }
        // And the row entry point agrees with itself across pools too.
        if hw == 1 {
            let rows_run = || {
                let mut dz = vec![0.0f32; z.len()];
                let (da, dr) = backward_rows(&z, n, p, &g, &mut dz);
                (dz, da.to_bits(), dr.to_bits())
            };
            assert!(run_in_pool(1, rows_run) == run_in_pool(2, rows_run));
        }
    }
}

#[test]
fn long_rows_stay_on_the_sphere_and_above_the_floor() {
    // Equal inputs make every rounding error the same: a plain f32 running product drifts by
    // n * 3e-8 here (1.2e-4 r at n = 4096, z ~ 6); the kernel's compensated product must not.
    let n = 4096;
    let rows = 64;
    let p = params(1.0, 3.0, n, 1e-6);
    let z: Vec<f32> = (0..rows).flat_map(|i| vec![-3.0 + 9.0 * i as f32 / rows as f32; n]).collect();
    let mut out = vec![0.0; rows * (n + 1)];
    forward_rows(&z, n, p, &mut out);
    for row in out.chunks(n + 1) {
        let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 3.0).abs() <= 3e-6, "norm {norm}");
    }
    // The floor r delta: all angles at phi_L (saturated negative inputs), uncapped phi_L.
    for &(n, delta) in &[(1usize, 1e-6), (3, 1e-12), (40, 1e-6), (511, 1e-12), (4096, 1e-6), (4096, 0.5)] {
        let p = params(10.0, 2.0, n, delta);
        let mut out = vec![0.0; n + 1];
        forward_rows(&vec![-1e4; n], n, p, &mut out);
        let ratio = out[n] as f64 / (2.0 * delta);
        assert!(ratio >= 1.0 - 1e-5, "n {n}, delta {delta}: s_(n+1) / (r delta) = {ratio}");
    }
}

#[test]
fn extreme_inputs_stay_finite_and_exact_on_the_sphere() {
    let n = 300;
    let p = params(10.0, 5.0, n, 1e-6);
    let z: Vec<f32> = (0..n).map(|i| [1e4, -1e4, 0.0, 3e38, -3e38][i % 5]).collect();
    let g = lcg(3, n + 1, 1.0);
    let mut out = vec![0.0; n + 1];
    forward_rows(&z, n, p, &mut out);
    assert!(out.iter().all(|v| v.is_finite() && *v >= 0.0));
    let norm = out.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    assert!((norm - 5.0).abs() <= 5e-5, "norm {norm}");
    let mut dz = vec![0.0; n];
    let (da, dr) = backward_rows(&z, n, p, &g, &mut dz);
    assert!(dz.iter().all(|v| v.is_finite()) && da.is_finite() && dr.is_finite());
}

#[test]
fn nonfinite_inputs_give_nan_without_panicking() {
    let n = 6;
    let p = params(1.0, 1.0, n, 1e-6);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        // z_3 is bad: s_1..s_3 (indices 0..3) are finite, s_4 onwards depend on it.
        let z = [0.1, -0.2, 0.3, bad, 0.5, 0.6];
        let mut out = [0.0; 7];
        forward_rows(&z, n, p, &mut out);
        assert!(out[..3].iter().all(|v| v.is_finite()), "{bad}: {out:?}");
        assert!(out[3..].iter().all(|v| v.is_nan()), "{bad}: {out:?}");
        let mut dz = [0.0; 6];
        let (da, dr) = backward_rows(&z, n, p, &[1.0; 7], &mut dz);
        assert!(da.is_nan() && dr.is_nan() && dz[3].is_nan(), "{bad}: {dz:?} {da} {dr}");
    }
    // NaN parameters poison everything.
    let mut out = [0.0; 7];
    forward_rows(&[0.0; 6], n, SphereParams { alpha: f32::NAN, ..p }, &mut out);
    assert!(out.iter().all(|v| v.is_nan()));
}

#[test]
fn degenerate_shapes() {
    let p = params(1.0, 2.0, 1, 1e-6);
    // n = 0: each vector is just (r).
    let mut out = [0.0; 3];
    forward_rows(&[], 0, p, &mut out);
    assert_eq!(out, [2.0; 3]);
    let (da, dr) = backward_rows(&[], 0, p, &[1.0, 2.0, 3.0], &mut []);
    assert_eq!((da, dr), (0.0, 6.0));
    // No rows at all.
    forward_rows(&[], 5, p, &mut []);
    assert_eq!(backward_rows(&[], 5, p, &[], &mut []), (0.0, 0.0));
}
