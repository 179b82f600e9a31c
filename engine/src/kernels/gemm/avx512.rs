//! Our own sgemm for x86-64 CPUs with AVX-512, after the BLIS recipe:
//!
//! ```text
//! for jc in steps of NC columns of C:
//!   for pc in steps of KC along k:
//!     pack B[pc.., jc..] into NR-wide panels      B block  [KC, NC]  (L2/L3)
//!     for ic in steps of MC rows:
//!       pack A[ic.., pc..] into MR-tall panels    A block  [MC, KC]  (L2)
//!       for jr over the B panels:                 B panel  [KC, NR]  (L1)
//!         for ir over the A panels:               A panel  [MR, KC]
//!           C tile [MR, NR] = alpha * A panel @ B panel + beta' * C tile   (micro-kernel)
//! ```
//!
//! The micro-kernel keeps a 12 x 32 tile of C in 24 of the 32 zmm registers and, for each k,
//! loads one 32-wide row of the B panel (two registers) and broadcasts 12 values of the A
//! panel: 24 FMAs per 14 loads, enough to keep both FMA ports busy. Edges are zero-padded in
//! the packed panels and written back with masked stores, so there is one kernel for all shapes.
//! Every element of C is summed in the same order (KC blocks in turn, k in order inside), so
//! splitting C between threads (in `mod.rs`) changes no result.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::Operand;
use crate::buffers::with_thread_buffer as with_buffer;

/// Rows of C per micro-kernel tile (each broadcast from the A panel).
pub(super) const MR: usize = 12;
/// Columns of C per micro-kernel tile: two 16-lane zmm vectors.
pub(super) const NR: usize = 32;
/// Depth of one packed block: a [KC, NR] B panel (32 KB) stays in the 48 KB L1.
const KC: usize = 256;
/// Rows of one packed A block [MC, KC] (144 KB, in L2).
const MC: usize = 144;
/// Columns of one packed B block [KC, NC] (2 MB, in L2/L3).
const NC: usize = 2048;
/// NC when all of A's rows fit one A block (m <= MC, e.g. a batch of 128 times a classifier's
/// weight): each B block then serves that one block only, and a [KC, 512] block (512 KB) keeps
/// itself and C's rows in L2 across the depth blocks. Measured A/B on 2 threads:
/// (128x4096)@(4096x4096)^T 257-264 -> 269-274 GFLOP/s, (128x512)@(512x4096)^T 283-288 ->
/// 312-318; with larger m the 2 MB block is as fast or faster (1024^2 within noise).
const NC_ONE_A_BLOCK: usize = 512;

thread_local! {
    /// Per-thread packed A block, reused across calls so that a step allocates nothing.
    static PACKED_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread packed B block of the calling thread.
    static PACKED_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this CPU can run the kernels of this module (checked at run time, cached by std).
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// `C[m,n] = alpha * A[m,k] @ B[k,n] + beta * C` on the calling thread, with A and B strided
/// and C row-major with leading dimension `ldc`.
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]); A, B and C must be valid for every element
/// the shapes and strides reach, and C must not overlap A or B.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Operand,
    b: Operand,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        scale_rows(c, ldc, m, n, beta);
        return;
    }
    let nc_step = if m <= MC { NC_ONE_A_BLOCK } else { NC };
    for jc in (0..n).step_by(nc_step) {
        let nc = nc_step.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            // Later depth blocks add onto what the first one wrote.
            let beta_here = if pc == 0 { beta } else { 1.0 };
            with_buffer(&PACKED_B, nc.div_ceil(NR) * kc * NR, |packed_b| {
                pack::<NR>(b.ptr.offset(pc as isize * b.rs + jc as isize * b.cs), b.cs, b.rs, nc, kc, packed_b);
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    with_buffer(&PACKED_A, mc.div_ceil(MR) * MR * kc, |packed_a| {
                        pack::<MR>(a.ptr.offset(ic as isize * a.rs + pc as isize * a.cs), a.rs, a.cs, mc, kc, packed_a);
                        for (jr, b_panel) in packed_b.chunks_exact(kc * NR).enumerate() {
                            let j = jc + jr * NR;
                            let nr = NR.min(n - j);
                            for (ir, a_panel) in packed_a.chunks_exact(MR * kc).enumerate() {
                                let i = ic + ir * MR;
                                let mr = MR.min(m - i);
                                let tile = c.add(i * ldc + j);
                                kernel_12x32(
                                    kc,
                                    a_panel.as_ptr(),
                                    b_panel.as_ptr(),
                                    tile,
                                    ldc,
                                    mr,
                                    nr,
                                    alpha,
                                    beta_here,
                                );
                            }
                        }
                    });
                }
            });
        }
    }
}

/// C = beta * C over the m x n output (beta 0 writes zeros, whatever C held, NaN included).
unsafe fn scale_rows(c: *mut f32, ldc: usize, m: usize, n: usize, beta: f32) {
    for i in 0..m {
        let row = std::slice::from_raw_parts_mut(c.add(i * ldc), n);
        if beta == 0.0 {
            row.fill(0.0);
        } else if beta != 1.0 {
            row.iter_mut().for_each(|v| *v *= beta);
        }
    }
}

/// Packs a block into panels of `W` lanes laid out [panel][p][W], zero-padded: lane l of
/// panel q, depth p comes from `src + (q*W + l) * lane_stride + p * depth_stride`, for `lanes`
/// lanes in all and `kc` depths. A panels are W = MR rows of A (lanes along rows), B panels
/// W = NR columns of B (lanes along columns).
unsafe fn pack<const W: usize>(
    src: *const f32,
    lane_stride: isize,
    depth_stride: isize,
    lanes: usize,
    kc: usize,
    packed: &mut [f32],
) {
    for (panel, dst) in packed.chunks_exact_mut(W * kc).enumerate() {
        let first = panel * W;
        let width = W.min(lanes - first);
        let src = src.offset(first as isize * lane_stride);
        if lane_stride == 1 && width == W {
            // The lanes of one depth are contiguous: one fixed-size copy per depth.
            for (p, row) in dst.chunks_exact_mut(W).enumerate() {
                row.copy_from_slice(std::slice::from_raw_parts(src.offset(p as isize * depth_stride), W));
            }
        } else if lane_stride == 1 {
            for (p, row) in dst.chunks_exact_mut(W).enumerate() {
                row[..width].copy_from_slice(std::slice::from_raw_parts(src.offset(p as isize * depth_stride), width));
                row[width..].fill(0.0);
            }
        } else if width == W && depth_stride == 1 {
            // Each lane is a contiguous run along the depth (a row-major A, or the transpose of
            // a row-major B): transpose 16 x 16 blocks in registers.
            pack_transposed::<W>(src, lane_stride, kc, dst);
        } else if width == W {
            // Full panel: fixed trip counts, no per-element branch.
            let lines: [*const f32; W] = std::array::from_fn(|l| src.offset(l as isize * lane_stride));
            for (p, row) in dst.chunks_exact_mut(W).enumerate() {
                let p = p as isize * depth_stride;
                for (v, line) in row.iter_mut().zip(&lines) {
                    *v = *line.offset(p);
                }
            }
        } else {
            for (p, row) in dst.chunks_exact_mut(W).enumerate() {
                let s = src.offset(p as isize * depth_stride);
                for (l, v) in row.iter_mut().enumerate() {
                    *v = if l < width { *s.offset(l as isize * lane_stride) } else { 0.0 };
                }
            }
        }
    }
}

/// One full panel of `W` lanes (12 or 32), each lane `kc` contiguous floats `lane_stride`
/// apart, into `dst` [kc][W]: groups of 16 lanes x 16 depths are loaded as 16 vectors and
/// transposed in registers, so every load and store moves 16 floats instead of one.
#[target_feature(enable = "avx512f")]
unsafe fn pack_transposed<const W: usize>(src: *const f32, lane_stride: isize, kc: usize, dst: &mut [f32]) {
    let full = kc - kc % 16;
    for group in (0..W).step_by(16) {
        let lanes = 16.min(W - group);
        let store = mask(lanes);
        for p0 in (0..full).step_by(16) {
            let mut r = [_mm512_setzero_ps(); 16];
            for (l, v) in r.iter_mut().enumerate().take(lanes) {
                *v = _mm512_loadu_ps(src.offset((group + l) as isize * lane_stride + p0 as isize));
            }
            transpose_16x16(&mut r);
            for (q, v) in r.iter().enumerate() {
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add((p0 + q) * W + group), store, *v);
            }
        }
    }
    for p in full..kc {
        for l in 0..W {
            dst[p * W + l] = *src.offset(l as isize * lane_stride + p as isize);
        }
    }
}

/// Transposes the 16 x 16 matrix held in 16 row vectors, in place (4 rounds of shuffles).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose_16x16(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    // Interleave 32-bit elements of row pairs, then 64-bit pairs of those.
    for i in (0..16).step_by(2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for i in (0..16).step_by(4) {
        let pd = |v: __m512| _mm512_castps_pd(v);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[i]), pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[i]), pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[i + 1]), pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[i + 1]), pd(t[i + 3])));
    }
    // Then whole 128-bit lanes: even and odd lanes of rows 4 apart, then of rows 8 apart.
    for i in (0..16).step_by(8) {
        for j in 0..4 {
            t[i + j] = _mm512_shuffle_f32x4::<0x88>(r[i + j], r[i + j + 4]);
            t[i + j + 4] = _mm512_shuffle_f32x4::<0xdd>(r[i + j], r[i + j + 4]);
        }
    }
    for j in 0..8 {
        r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[j + 8]);
        r[j + 8] = _mm512_shuffle_f32x4::<0xdd>(t[j], t[j + 8]);
    }
}

/// Lane mask selecting the first `lanes` (0..=16) of a 16-lane vector.
fn mask(lanes: usize) -> __mmask16 {
    if lanes >= 16 {
        0xFFFF
    } else {
        ((1u32 << lanes) - 1) as __mmask16
    }
}

/// One 12 x 32 tile: `C[..mr, ..nr] = alpha * (A panel [kc, 12] ^T @ B panel [kc, 32]) + beta * C`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_12x32(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    beta: f32,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm512_loadu_ps(b);
        let b1 = _mm512_loadu_ps(b.add(16));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    let (m0, m1) = (mask(nr), mask(nr.saturating_sub(16)));
    let (va, vb) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
    for (i, row) in acc.iter().enumerate() {
        if i >= mr {
            break;
        }
        let dst = c.add(i * ldc);
        let mut lo = _mm512_mul_ps(row[0], va);
        let mut hi = _mm512_mul_ps(row[1], va);
        if beta != 0.0 {
            lo = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, dst), vb, lo);
            hi = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, dst.add(16)), vb, hi);
        }
        _mm512_mask_storeu_ps(dst, m0, lo);
        _mm512_mask_storeu_ps(dst.add(16), m1, hi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_16x16_transposes() {
        if !available() {
            eprintln!("SKIPPED transpose_16x16_transposes: this CPU has no AVX-512");
            return;
        }
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let mut out = vec![0.0f32; 256];
        // SAFETY: AVX-512F checked above; every load and store is within the 256-float buffers.
        unsafe {
            let mut r: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(m.as_ptr().add(i * 16)));
            transpose_16x16(&mut r);
            for (i, v) in r.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(i * 16), *v);
            }
        }
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(out[i * 16 + j], m[j * 16 + i], "element ({i}, {j})");
            }
        }
    }
}
