//! The per-plane sums of batch-norm: forward, `(sum (x - k), sum (x - k)^2)` about a shift k
//! near the mean (one pass for mean and variance); backward, `(sum g, sum g xhat)` with
//! `xhat = (x - mean) inv_std` and `g` the output gradient, zeroed where a fused ReLU clamped
//! the output. In eight f64 lanes (element i to lane i % 8), the same order with or without AVX.
//!
//! The plain loops compile to 128-bit and scalar conversions (LLVM's choice for f32 -> f64
//! over eight lanes), about 10 cycles per element: on CNN-9 the backward sums cost three times
//! the pass that writes dx. With AVX the eight lanes are two 4-wide f64 registers per sum.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// What one channel's forward pass computed: its statistics and affine map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelMap {
    /// Batch mean.
    pub mean: f32,
    /// 1 / sqrt(var + eps).
    pub inv_std: f32,
    /// gamma inv_std: the output is `x scale + shift`, clamped at 0 with a fused ReLU.
    pub scale: f32,
    /// beta - mean scale.
    pub shift: f32,
}

impl ChannelMap {
    /// The map of every channel, from the batch statistics and the affine parameters.
    pub(crate) fn per_channel(mean: &[f32], inv_std: &[f32], gamma: &[f32], beta: &[f32]) -> Vec<ChannelMap> {
        (0..mean.len())
            .map(|ch| {
                let scale = gamma[ch] * inv_std[ch];
                ChannelMap { mean: mean[ch], inv_std: inv_std[ch], scale, shift: beta[ch] - mean[ch] * scale }
            })
            .collect()
    }

    /// `x scale + shift`: the output before a fused ReLU.
    #[inline(always)]
    fn affine(&self, x: f32) -> f32 {
        x * self.scale + self.shift
    }

    /// The output for input `x`: [`ChannelMap::affine`], 0 where a fused ReLU clamps it
    /// (`<= 0`; a NaN passes, as it does without the ReLU).
    #[inline(always)]
    pub(crate) fn output(&self, x: f32, relu: bool) -> f32 {
        let out = self.affine(x);
        if relu && out <= 0.0 {
            0.0
        } else {
            out
        }
    }

    /// `dy`, or 0 where the fused ReLU clamped [`ChannelMap::output`].
    #[inline(always)]
    pub(crate) fn gate<const RELU: bool>(&self, dy: f32, x: f32) -> f32 {
        if RELU && self.affine(x) <= 0.0 {
            0.0
        } else {
            dy
        }
    }
}

/// `[sum (x - k), sum (x - k)^2]` over one plane, in f64. With k one of the channel's values,
/// `var = S2 / M - (S1 / M)^2` loses about `((k - mean) / std)^2 * 2^-53` relative to
/// cancellation: nothing an f32 result shows unless k lies some 10^4 deviations out.
pub(crate) fn shifted_sums(x: &[f32], k: f32) -> [f64; 2] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: AVX was detected just now.
        return unsafe { shifted_sums_avx(x, k) };
    }
    shifted_sums_plain(x, k)
}

/// [`shifted_sums`] in plain Rust.
fn shifted_sums_plain(x: &[f32], k: f32) -> [f64; 2] {
    let (mut s1, mut s2) = ([0.0f64; 8], [0.0f64; 8]);
    let (x8, tail) = x.as_chunks::<8>();
    for v8 in x8 {
        for l in 0..8 {
            let d = v8[l] as f64 - k as f64;
            s1[l] += d;
            s2[l] += d * d;
        }
    }
    finish_shifted(s1, s2, tail, k)
}

/// The lanes summed in order, then the last `len % 8` elements.
fn finish_shifted(s1: [f64; 8], s2: [f64; 8], tail: &[f32], k: f32) -> [f64; 2] {
    let mut rest = (0.0f64, 0.0f64);
    for &v in tail {
        let d = v as f64 - k as f64;
        rest.0 += d;
        rest.1 += d * d;
    }
    [s1.iter().sum::<f64>() + rest.0, s2.iter().sum::<f64>() + rest.1]
}

/// [`shifted_sums`] with 256-bit registers: each half of 8 values widened to four f64 lanes.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn shifted_sums_avx(x: &[f32], k: f32) -> [f64; 2] {
    let (x8, tail) = x.as_chunks::<8>();
    let shift = _mm256_set1_pd(k as f64);
    let [mut s1_lo, mut s1_hi, mut s2_lo, mut s2_hi] = [_mm256_setzero_pd(); 4];
    for v8 in x8 {
        let v = _mm256_loadu_ps(v8.as_ptr());
        let lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), shift);
        let hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)), shift);
        s1_lo = _mm256_add_pd(s1_lo, lo);
        s1_hi = _mm256_add_pd(s1_hi, hi);
        s2_lo = _mm256_add_pd(s2_lo, _mm256_mul_pd(lo, lo));
        s2_hi = _mm256_add_pd(s2_hi, _mm256_mul_pd(hi, hi));
    }
    finish_shifted(lanes(s1_lo, s1_hi), lanes(s2_lo, s2_hi), tail, k)
}

/// Two 4-wide registers as eight lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn lanes(lo: __m256d, hi: __m256d) -> [f64; 8] {
    let mut out = [0.0f64; 8];
    _mm256_storeu_pd(out.as_mut_ptr(), lo);
    _mm256_storeu_pd(out.as_mut_ptr().add(4), hi);
    out
}

/// `[sum g, sum g xhat]` over one plane of `dy` and `x` (equal lengths).
pub(crate) fn gated_sums<const RELU: bool>(dy: &[f32], x: &[f32], map: ChannelMap) -> [f64; 2] {
    debug_assert_eq!(dy.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: AVX was detected just now.
        return unsafe { gated_sums_avx::<RELU>(dy, x, map) };
    }
    gated_sums_plain::<RELU>(dy, x, map)
}

/// [`gated_sums`] in plain Rust.
fn gated_sums_plain<const RELU: bool>(dy: &[f32], x: &[f32], map: ChannelMap) -> [f64; 2] {
    let (mut sum_g, mut sum_g_xhat) = ([0.0f64; 8], [0.0f64; 8]);
    let ((dy8, dy_tail), (x8, x_tail)) = (dy.as_chunks::<8>(), x.as_chunks::<8>());
    for (d8, v8) in dy8.iter().zip(x8) {
        for l in 0..8 {
            let g = map.gate::<RELU>(d8[l], v8[l]) as f64;
            sum_g[l] += g;
            sum_g_xhat[l] += g * ((v8[l] - map.mean) * map.inv_std) as f64;
        }
    }
    finish::<RELU>(sum_g, sum_g_xhat, dy_tail, x_tail, map)
}

/// The lanes summed in order, then the last `len % 8` elements.
fn finish<const RELU: bool>(
    sum_g: [f64; 8],
    sum_g_xhat: [f64; 8],
    dy_tail: &[f32],
    x_tail: &[f32],
    map: ChannelMap,
) -> [f64; 2] {
    let mut tail = (0.0f64, 0.0f64);
    for (&d, &v) in dy_tail.iter().zip(x_tail) {
        let g = map.gate::<RELU>(d, v) as f64;
        tail.0 += g;
        tail.1 += g * ((v - map.mean) * map.inv_std) as f64;
    }
    [sum_g.iter().sum::<f64>() + tail.0, sum_g_xhat.iter().sum::<f64>() + tail.1]
}

/// [`gated_sums`] with 256-bit registers: per 8 elements, the gate and xhat in f32, then each
/// half widened to four f64 lanes (multiply, then add, as the plain loop rounds).
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn gated_sums_avx<const RELU: bool>(dy: &[f32], x: &[f32], map: ChannelMap) -> [f64; 2] {
    let ((dy8, dy_tail), (x8, x_tail)) = (dy.as_chunks::<8>(), x.as_chunks::<8>());
    let (mean, inv_std) = (_mm256_set1_ps(map.mean), _mm256_set1_ps(map.inv_std));
    let (scale, shift, zero) = (_mm256_set1_ps(map.scale), _mm256_set1_ps(map.shift), _mm256_setzero_ps());
    let [mut g_lo, mut g_hi, mut gx_lo, mut gx_hi] = [_mm256_setzero_pd(); 4];
    for (d8, v8) in dy8.iter().zip(x8) {
        let (d, v) = (_mm256_loadu_ps(d8.as_ptr()), _mm256_loadu_ps(v8.as_ptr()));
        let g = if RELU {
            // Kept where not (out <= 0): NaN outputs keep their gradient, as in `gate`.
            let out = _mm256_add_ps(_mm256_mul_ps(v, scale), shift);
            _mm256_and_ps(_mm256_cmp_ps::<_CMP_NLE_UQ>(out, zero), d)
        } else {
            d
        };
        let xhat = _mm256_mul_ps(_mm256_sub_ps(v, mean), inv_std);
        let (gl, gh) = (_mm256_cvtps_pd(_mm256_castps256_ps128(g)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(g)));
        let (xl, xh) =
            (_mm256_cvtps_pd(_mm256_castps256_ps128(xhat)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(xhat)));
        g_lo = _mm256_add_pd(g_lo, gl);
        g_hi = _mm256_add_pd(g_hi, gh);
        gx_lo = _mm256_add_pd(gx_lo, _mm256_mul_pd(gl, xl));
        gx_hi = _mm256_add_pd(gx_hi, _mm256_mul_pd(gh, xh));
    }
    finish::<RELU>(lanes(g_lo, g_hi), lanes(gx_lo, gx_hi), dy_tail, x_tail, map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX path gives the plain loop's sums bit for bit, with and without the gate, with
    /// NaNs among the inputs and lengths with and without a tail.
    #[test]
    fn avx_sums_equal_the_plain_loop() {
        let map = ChannelMap { mean: 0.125, inv_std: 1.75, scale: 0.9, shift: -0.05 };
        for len in [0, 5, 8, 64, 1024, 1027] {
            let dy: Vec<f32> = (0..len).map(|i| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0).collect();
            let mut x: Vec<f32> = (0..len).map(|i| ((i * 104_729) % 1999) as f32 / 999.0 - 1.0).collect();
            if len > 3 {
                x[3] = f32::NAN;
            }
            let got = gated_sums::<true>(&dy, &x, map);
            let want = gated_sums_plain::<true>(&dy, &x, map);
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "relu, len {len}: {got:?} vs {want:?}");
            let got = gated_sums::<false>(&dy, &x, map);
            let want = gated_sums_plain::<false>(&dy, &x, map);
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "plain, len {len}: {got:?} vs {want:?}");
            let (got, want) = (shifted_sums(&x, 0.5), shifted_sums_plain(&x, 0.5));
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "shifted, len {len}: {got:?} vs {want:?}");
        }
    }

    /// Mean and variance from the shifted sums match a two-pass f64 computation on values far
    /// from zero (1000 + noise, where f32 sums of squares would lose the variance entirely).
    #[test]
    fn shifted_sums_give_the_two_pass_variance() {
        let x: Vec<f32> = (0..10_007).map(|i| 1000.0 + ((i * 7919) % 2003) as f32 / 2003.0).collect();
        let m = x.len() as f64;
        let [s1, s2] = shifted_sums(&x, x[0]);
        let (mean, var) = (x[0] as f64 + s1 / m, s2 / m - (s1 / m).powi(2));
        let want_mean = x.iter().map(|&v| v as f64).sum::<f64>() / m;
        let want_var = x.iter().map(|&v| (v as f64 - want_mean).powi(2)).sum::<f64>() / m;
        assert!((mean - want_mean).abs() < 1e-12 * want_mean, "mean {mean} vs {want_mean}");
        assert!((var - want_var).abs() < 1e-9 * want_var, "var {var} vs {want_var}");
    }
}
