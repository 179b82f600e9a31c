//! Scalar building blocks of the spherization kernel: the per-call constants, exp2, sine
//! and versine polynomials and the angle of one coordinate. Each is branch-free, so the lane
//! loops that call them auto-vectorize.

use std::f64::consts::FRAC_PI_2;

use super::{SphereParams, W_MAX};

// ---------------------------------------------------------------------------------------------
// Scalar building blocks. Each is branch-free (comparisons become SIMD selects), so the lane
// loops that call them auto-vectorize.
// ---------------------------------------------------------------------------------------------

/// Per-call constants, converted to f32 once (`span` is computed in f64 first).
#[derive(Clone, Copy)]
pub(super) struct Consts {
    /// alpha / ln 2: the sigmoid is evaluated with powers of 2.
    pub(super) alpha_log2e: f32,
    /// alpha * span = dphi/dz / (sig (1 - sig)).
    pub(super) alpha_span: f32,
    pub(super) radius: f32,
    /// pi/2 - phi_L: the width of the angle interval.
    pub(super) span: f32,
    pub(super) phi_lower: f32,
    /// phi_L < pi/4: angles may lie on both sides of pi/4 (see [`angle`]).
    pub(super) mixed: bool,
}

impl Consts {
    pub(super) fn new(p: SphereParams) -> Self {
        let span = FRAC_PI_2 - p.phi_lower;
        Consts {
            alpha_log2e: (p.alpha as f64 * std::f64::consts::LOG2_E) as f32,
            alpha_span: (p.alpha as f64 * span) as f32,
            radius: p.radius,
            span: span as f32,
            phi_lower: p.phi_lower as f32,
            mixed: p.phi_lower < std::f64::consts::FRAC_PI_4 || p.phi_lower.is_nan(),
        }
    }
}

/// a * b + c, fused (one rounding) where the CPU has FMA; `mul_add` without hardware FMA
/// would be a slow libm call, so fall back to the plain expression there.
#[inline(always)]
pub(super) fn fma(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_feature = "fma")]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        a * b + c
    }
}

/// 2^(-u) for u in [0, W_MAX], relative error < 2e-7 (garbage for NaN: see [`angle`]).
#[inline(always)]
#[allow(clippy::approx_constant)] // -0.693147 is a fitted coefficient, not -ln 2
pub(super) fn exp2_neg(u: f32) -> f32 {
    // 2^-u = 2^k 2^-g with k = round(-u) and g = u + k in [-1/2, 1/2].
    // Subtracting u from 1.5 * 2^23 rounds -u to an integer that lands in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let y = SHIFTER - u;
    let k = y - SHIFTER; // exact
    let g = u + k; // exact: u and -k are within 1/2 of each other
                   // 2^-g: degree-5 minimax polynomial for 2^f on [-1/2, 1/2] (relative error 1.1e-7),
                   // evaluated at f = -g by flipping the signs of the odd coefficients.
    let mut p = -1.326_472_7e-3f32;
    p = fma(p, g, 9.671_513e-3);
    p = fma(p, g, -5.550_733_6e-2);
    p = fma(p, g, 2.402_224_2e-1);
    p = fma(p, g, -6.931_47e-1);
    p = fma(p, g, 1.0);
    // Times 2^k by adding k to p's exponent field: y's bits are SHIFTER's bits + k, and
    // SHIFTER's bits shifted left by 23 are 0 (mod 2^32), so (y bits << 23) == k << 23.
    // p is in [0.7, 1.42] and k in [-115, 0], so the result is a normal number.
    f32::from_bits(p.to_bits().wrapping_add(y.to_bits() << 23))
}

/// sin(x) for x in [0, pi/4] given x2 = x^2 (Cephes sinf polynomial); >= 0 there.
#[inline(always)]
pub(super) fn sin_small(x: f32, x2: f32) -> f32 {
    let p = fma(fma(-1.951_529_6e-4, x2, 8.332_161e-3), x2, -1.666_665_5e-1);
    fma(p * x2, x, x)
}

/// The versine 1 - cos(x) for x in [0, pi/4] given x2 = x^2, to full *relative* precision
/// (Cephes cosf polynomial, cos x = 1 - x^2/2 + x^4 p(x^2), rearranged).
#[inline(always)]
pub(super) fn versine_small(x2: f32) -> f32 {
    let p = fma(fma(2.443_315_7e-5, x2, -1.388_731_6e-3), x2, 4.166_664_6e-2);
    x2 * fma(-x2, p, 0.5)
}

/// What one coordinate needs from its angle phi.
///
/// Why sin(phi) comes in two parts: near pi/2 (saturated inputs, or large n where phi_L is
/// close to pi/2) sin(phi) = 1 - v with v below half an f32 ulp of 1. A plain f32 product
/// `P * sin` then rounds back to `P` at every step, the same way at every step, and the
/// norm drifts: we measured |s| - r = 1.2e-4 r for n = 4096 equal inputs. So sin(phi) is
/// carried as `sin_hi - sin_lo`, with either `sin_lo = 0` (phi <= pi/4) or `sin_hi = 1` and
/// `sin_lo = v` (phi > pi/4, v to full relative precision), and the running product as an
/// unevaluated sum `p + err` (see [`Angle::times_sin`]). Each step then loses only a few ulps
/// of what it *changes*, and the norm stays within ~1e-7 r for any n.
#[derive(Clone, Copy)]
pub(super) struct Angle {
    pub(super) cos: f32,
    pub(super) sin_hi: f32,
    pub(super) sin_lo: f32,
    /// sin(phi) = sin_hi - sin_lo, rounded (for the backward's local terms).
    pub(super) sin: f32,
    /// sig (1 - sig) with sig = sigmoid(alpha z): dphi/dz = alpha span sig (1 - sig).
    pub(super) sig_slope: f32,
}

impl Angle {
    /// (p + err) * sin(phi) as a new pair (p', err') with |err'| <= half an ulp of p'.
    ///
    /// p' + err' is p sin_hi - p sin_lo + err exactly: the term that would stall, p * v, is
    /// never rounded away. What is dropped, the rounding of p sin_hi when sin_hi < 1 and
    /// err (1 - sin), is at most an ulp of p and cannot pile up: the first only occurs for
    /// phi <= pi/4, where P shrinks by at least 1/sqrt(2) per step (total effect on |s|^2
    /// below 2^-23 r^2), the second is err v, second order.
    #[inline(always)]
    pub(super) fn times_sin(&self, p: f32, err: f32) -> (f32, f32) {
        let head = p * self.sin_hi; // exact when sin_hi == 1
        let tail = fma(-p, self.sin_lo, err); // the small parts: -p v + err
                                              // Fast two-sum (|head| >= |tail|): new_p + new_err == head + tail exactly.
        let new_p = head + tail;
        (new_p, tail - (new_p - head))
    }
}

/// The angle phi = span * sigmoid(alpha z) + phi_L, as its cosine, sine and slope.
///
/// `MIXED` says whether angles can lie on both sides of pi/4 (phi_L < pi/4, i.e. small n:
/// n < 40 for delta = 1e-6). Without it every phi > pi/4, the polynomials always run on
/// psi = pi/2 - phi, and about a fifth of the work (phi itself, the choice, the swaps) goes.
#[inline(always)]
pub(super) fn angle<const MIXED: bool>(z: f32, c: &Consts) -> Angle {
    // w = alpha z / ln 2, so that e^-|alpha z| = 2^-|w|.
    let w = z * c.alpha_log2e;
    // Clamp |w| so 2^-|w| stays a normal number.
    let mut u = w.abs();
    if u > W_MAX {
        u = W_MAX;
    }
    let e = exp2_neg(u);
    // z * 0 is 0 for finite z and NaN for NaN or ±inf: this makes non-finite inputs NaN here,
    // whatever the clamp and the bit tricks above made of them (one FMA, no branch).
    let e = fma(z, 0.0, e);
    // Both sigmoid(|t|) and sigmoid(-|t|) from one exp and one division, each accurate to
    // full *relative* precision (no 1 - sigmoid cancellation): e = e^-|t| in (0, 1].
    let big = 1.0 / (1.0 + e); // sigmoid(|t|)
    let small = e * big; // sigmoid(-|t|) = 1 - sigmoid(|t|)
    let positive = w >= 0.0;
    // psi = pi/2 - phi = span * (1 - sigmoid(t)), computed without cancellation.
    let psi = c.span * if positive { small } else { big };
    let sig_slope = big * small;
    if !MIXED {
        // phi > pi/4: sin(phi) = cos(psi) = 1 - versine(psi), cos(phi) = sin(psi).
        let x2 = psi * psi;
        let vers = versine_small(x2);
        return Angle { cos: sin_small(psi, x2), sin_hi: 1.0, sin_lo: vers, sin: 1.0 - vers, sig_slope };
    }
    // The polynomials run on whichever of phi and psi is <= pi/4, i.e. the smaller one.
    let phi = fma(c.span, if positive { big } else { small }, c.phi_lower);
    let direct = phi <= psi;
    // Not `f32::min` (its NaN rule costs extra instructions; phi and psi are NaN together) and
    // not `if direct`: with the same condition as the selects below, LLVM would substitute x
    // in each arm and evaluate both polynomials twice.
    let x = if phi < psi { phi } else { psi };
    let x2 = x * x;
    let (sin_x, vers_x) = (sin_small(x, x2), versine_small(x2));
    let (cos, sin_hi, sin_lo) = if direct { (1.0 - vers_x, sin_x, 0.0) } else { (sin_x, 1.0, vers_x) };
    Angle { cos, sin_hi, sin_lo, sin: sin_hi - sin_lo, sig_slope }
}
