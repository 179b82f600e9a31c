//! The dispersion (overlap) analysis of the paper's first table: how many test samples have
//! an angular representation within `tau` radians of another's, how many of those the model
//! gets wrong, and how many overlapping pairs carry different true labels.
//!
//! Neighbour search: all pairs' cosines come from a blocked GEMM of unit vectors in f32,
//! used only as a filter with a generous margin; every candidate is then decided by the
//! exact angle in f64, `2 asin(|u_i - u_j| / 2)`, which stays accurate for tiny angles
//! where `acos` of an f32 cosine cannot (cos 1e-3 = 1 - 5e-7, below f32's resolution).

use engine::kernels::{sgemm, Trans};

/// Counts at one threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct OverlapCounts {
    /// Angle threshold in radians.
    pub tau: f64,
    /// Samples with at least one other sample within tau.
    pub overlapped: usize,
    /// Overlapped samples the model misclassifies.
    pub errors: usize,
    /// Overlapping pairs whose true labels differ.
    pub conflicts: usize,
}

/// Unit vectors of the rows of `x` [n, d], in f64 (zero rows stay zero).
fn unit_rows(x: &[f32], d: usize) -> Vec<f64> {
    let mut u: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for row in u.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    u
}

/// Exact angle between two unit vectors, accurate near zero.
fn angle(a: &[f64], b: &[f64]) -> f64 {
    let chord = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    2.0 * (chord / 2.0).min(1.0).asin()
}

/// All pairs (i < j) of rows of `x` [n, d] whose angle is below `max_tau`, with the angle.
pub fn close_pairs(x: &[f32], d: usize, max_tau: f64) -> Vec<(usize, usize, f64)> {
    let n = x.len() / d.max(1);
    let unit = unit_rows(x, d);
    let unit32: Vec<f32> = unit.iter().map(|&v| v as f32).collect();
    // f32 cosines are off by at most ~d * 6e-8; keep everything that could be within max_tau.
    let threshold = (max_tau.cos() - 1e-6 - d as f64 * 1e-7) as f32;
    const BLOCK: usize = 1024;
    let mut pairs = Vec::new();
    let mut cos = vec![0.0f32; BLOCK * n];
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        let block = &unit32[start * d..(start + rows) * d];
        // cos [rows, n] = U_block [rows, d] @ U^T [d, n]
        sgemm(Trans::N, Trans::T, rows, n, d, 1.0, block, &unit32, 0.0, &mut cos[..rows * n]);
        for r in 0..rows {
            let i = start + r;
            let line = &cos[r * n..(r + 1) * n];
            for (j, &c) in line.iter().enumerate().skip(i + 1) {
                if c >= threshold {
                    let a = angle(&unit[i * d..(i + 1) * d], &unit[j * d..(j + 1) * d]);
                    if a < max_tau {
                        pairs.push((i, j, a));
                    }
                }
            }
        }
    }
    pairs
}

/// Counts overlaps at `tau` from the close pairs (found with a threshold of at least `tau`).
pub fn count(pairs: &[(usize, usize, f64)], tau: f64, labels: &[usize], predictions: &[usize]) -> OverlapCounts {
    let overlapped = overlapped_samples(pairs, tau, labels.len());
    let conflicts = pairs.iter().filter(|&&(i, j, a)| a < tau && labels[i] != labels[j]).count();
    let errors = overlapped.iter().enumerate().filter(|&(i, &o)| o && predictions[i] != labels[i]).count();
    OverlapCounts { tau, overlapped: overlapped.iter().filter(|&&o| o).count(), errors, conflicts }
}

/// Which of `n` samples have another within `tau` radians.
pub fn overlapped_samples(pairs: &[(usize, usize, f64)], tau: f64, n: usize) -> Vec<bool> {
    let mut overlapped = vec![false; n];
    for &(i, j, a) in pairs {
        if a < tau {
            overlapped[i] = true;
            overlapped[j] = true;
        }
    }
    overlapped
}

/// Per sample (rows of `z` [samples, n], the pre-activations of a spherization layer), how
/// many of its n angles are saturated in the official f32 formulation
/// `phi = (pi/2 - phi_L) sigmoid(alpha z) + phi_L`: the sigmoid rounds to 1 (|alpha z| above
/// about 17) or the angle rounds to phi_L. Such an angle no longer tells samples apart.
pub fn saturated_per_sample(z: &[f32], n: usize, alpha: f32, phi_lower: f64) -> Vec<usize> {
    let span = (std::f64::consts::FRAC_PI_2 - phi_lower) as f32;
    let lower = phi_lower as f32;
    let saturated = |v: f32| {
        let sig = 1.0 / (1.0 + (-(alpha * v)).exp());
        sig == 1.0 || span * sig + lower == lower
    };
    z.chunks(n.max(1)).map(|row| row.iter().filter(|&&v| saturated(v)).count()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made set in 3-D: a cluster of exact duplicates (different norms), a near
    /// duplicate inside tau, one just beyond tau, and loners.
    #[test]
    fn counts_on_known_duplicates_and_near_duplicates() {
        let tau = 1e-3;
        let inside = 0.5e-3; // radians
        let beyond = 1.5e-3;
        let x: Vec<f32> = [
            [1.0, 0.0, 0.0],                                     // 0
            [3.0, 0.0, 0.0],                                     // 1: same direction as 0, other norm
            [0.0, 1.0, 0.0],                                     // 2
            [0.0, (inside as f32).cos(), (inside as f32).sin()], // 3: 0.5 mrad from 2
            [0.0, 0.0, 1.0],                                     // 4
            [(beyond as f32).sin(), 0.0, (beyond as f32).cos()], // 5: 1.5 mrad from 4
            [1.0, 1.0, 1.0],                                     // 6: alone
        ]
        .concat();
        let labels = [0, 1, 2, 2, 4, 4, 6];
        let predictions = [0, 0, 2, 3, 4, 4, 6];
        let pairs = close_pairs(&x, 3, 10.0 * tau);
        let at = count(&pairs, tau, &labels, &predictions);
        // Overlapped: 0, 1 (exact duplicates), 2, 3 (inside tau). 5 is beyond tau.
        assert_eq!(at.overlapped, 4);
        // Misclassified among them: 1 (predicted 0, label 1) and 3 (predicted 3, label 2).
        assert_eq!(at.errors, 2);
        // Pairs with different labels: (0, 1) only; (2, 3) share label 2.
        assert_eq!(at.conflicts, 1);
        // At 10 tau the pair (4, 5) joins; at tau / 10 only the exact duplicates remain.
        let wide = count(&pairs, 10.0 * tau, &labels, &predictions);
        assert_eq!((wide.overlapped, wide.errors, wide.conflicts), (6, 2, 1));
        let narrow = count(&pairs, tau / 10.0, &labels, &predictions);
        assert_eq!((narrow.overlapped, narrow.errors, narrow.conflicts), (2, 1, 1));
    }

    #[test]
    fn saturation_counts_angles_the_f32_sigmoid_cannot_move() {
        let phi_lower = engine::kernels::spherize::lower_angle(4, 1e-6);
        // alpha z = 20 rounds the sigmoid to 1; -25 puts the angle on phi_L; +-3 do neither.
        let z = [4.0, -5.0, 0.6, -0.6, /* next sample */ 0.0, 0.1, 0.2, 0.3];
        assert_eq!(saturated_per_sample(&z, 4, 5.0, phi_lower), vec![2, 0]);
        assert_eq!(saturated_per_sample(&z, 4, 1.0, phi_lower), vec![0, 0], "alpha z = 4 or -5 is not saturated");
    }

    #[test]
    fn blocked_search_matches_brute_force_on_many_random_vectors() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (n, d) = (2500, 8);
        let mut x: Vec<f32> = (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // Plant near copies across block boundaries.
        for k in 0..40 {
            let (src, dst) = (k * 61 % n, (k * 977 + 1500) % n);
            for c in 0..d {
                x[dst * d + c] = x[src * d + c] * 2.0 + rng.gen_range(-1e-4..1e-4);
            }
        }
        let tau = 1e-3;
        let pairs = close_pairs(&x, d, tau);
        let unit = unit_rows(&x, d);
        let mut brute = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                if angle(&unit[i * d..(i + 1) * d], &unit[j * d..(j + 1) * d]) < tau {
                    brute.push((i, j));
                }
            }
        }
        let found: Vec<(usize, usize)> = pairs.iter().map(|&(i, j, _)| (i, j)).collect();
        assert_eq!(found, brute);
        assert!(!brute.is_empty());
    }
}
