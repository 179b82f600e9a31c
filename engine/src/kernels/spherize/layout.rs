//! Moving data between the caller's layouts ([rows, n] and [batch, n, hw]) and tiles of
//! [n][LANES].

use super::{Lane, LANES};

// ---------------------------------------------------------------------------------------------
// Moving data between the caller's layout and tiles.
// ---------------------------------------------------------------------------------------------

/// Calls `f(image, pixel, first_lane, len)` for each run of consecutive pixels of one image
/// among the lanes `q0 .. q0 + m` (pixel index q = image * hw + pixel).
#[inline(always)]
pub(super) fn for_each_run(q0: usize, m: usize, hw: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    let mut q = q0;
    while q < q0 + m {
        let (img, px) = (q / hw, q % hw);
        let len = (hw - px).min(q0 + m - q);
        f(img, px, q - q0, len);
        q += len;
    }
}

/// Copies lanes `q0 .. q0+m` of `src` ([images, rows, hw]) into the tile `dst` ([rows][LANES]),
/// zeroing unused lanes (they then compute harmless finite values that are never stored).
pub(super) fn pack(src: &[f32], rows: usize, hw: usize, q0: usize, m: usize, dst: &mut [Lane]) {
    if m < LANES {
        for v in dst.iter_mut() {
            v[m..].fill(0.0);
        }
    }
    if hw == 1 {
        // Row form: a transpose of m rows, 8 x 8 blocks at a time.
        let src = &src[q0 * rows..(q0 + m) * rows];
        transpose_blocks(src, rows, dst.as_flattened_mut(), LANES, m, rows, |d, v| *d = v);
    } else {
        for_each_run(q0, m, hw, |img, px, l0, len| {
            let base = img * rows * hw + px;
            if len == LANES {
                // The common case (hw a multiple of LANES): whole lanes, a fixed-size copy.
                for (k, d) in dst.iter_mut().enumerate() {
                    d.copy_from_slice(&src[base + k * hw..base + k * hw + LANES]);
                }
            } else {
                for (k, d) in dst.iter_mut().enumerate() {
                    d[l0..l0 + len].copy_from_slice(&src[base + k * hw..base + k * hw + len]);
                }
            }
        });
    }
}

/// The inverse of [`pack`] for lanes `q0 .. q0+m`, combining with `op(destination, value)`
/// (store for the forward output, add for the gradient).
pub(super) fn unpack(
    src: &[Lane],
    dst: &mut [f32],
    rows: usize,
    hw: usize,
    q0: usize,
    m: usize,
    op: impl Fn(&mut f32, f32) + Copy,
) {
    if hw == 1 {
        let dst = &mut dst[q0 * rows..(q0 + m) * rows];
        transpose_blocks(src.as_flattened(), LANES, dst, rows, rows, m, op);
    } else {
        for_each_run(q0, m, hw, |img, px, l0, len| {
            let base = img * rows * hw + px;
            for (k, s) in src.iter().enumerate() {
                let row = &mut dst[base + k * hw..base + k * hw + len];
                if len == LANES {
                    // Whole lanes: a fixed-length loop that compiles to one vector operation.
                    let row: &mut Lane = row.try_into().expect("len == LANES");
                    for (d, &v) in row.iter_mut().zip(s) {
                        op(d, v);
                    }
                } else {
                    for (d, &v) in row.iter_mut().zip(&s[l0..l0 + len]) {
                        op(d, v);
                    }
                }
            }
        });
    }
}

/// `op(dst[c * dst_stride + r], src[r * src_stride + c])` for r < `height`, c < `width`:
/// a transpose, by 16 x 16 blocks with AVX-512 (detected at run time), by 8 x 8 blocks
/// otherwise and on the edges, the ragged rest element by element.
pub(super) fn transpose_blocks(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    height: usize,
    width: usize,
    op: impl Fn(&mut f32, f32) + Copy,
) {
    let region = Region { src_stride, dst_stride, height, width };
    #[cfg(target_arch = "x86_64")]
    if height >= 16 && width >= 16 && std::arch::is_x86_feature_detected!("avx512f") {
        let (h16, w16) = (height - height % 16, width - width % 16);
        // SAFETY: AVX-512F was detected just above.
        unsafe { transpose16_blocks(src, dst, Region { height: h16, width: w16, ..region }, op) };
        // The strips the 16 x 16 blocks left: the last columns of their rows, then the last rows.
        if width > w16 {
            let strip = Region { height: h16, width: width - w16, ..region };
            transpose8_blocks(&src[w16..], &mut dst[w16 * dst_stride..], strip, op);
        }
        if height > h16 {
            let strip = Region { height: height - h16, ..region };
            transpose8_blocks(&src[h16 * src_stride..], &mut dst[h16..], strip, op);
        }
        return;
    }
    transpose8_blocks(src, dst, region, op);
}

/// The strides and size of a transpose (see [`transpose_blocks`]).
#[derive(Clone, Copy)]
struct Region {
    src_stride: usize,
    dst_stride: usize,
    height: usize,
    width: usize,
}

/// [`transpose_blocks`] by 8 x 8 blocks where possible (the ragged edges element by element).
fn transpose8_blocks(src: &[f32], dst: &mut [f32], region: Region, op: impl Fn(&mut f32, f32) + Copy) {
    let Region { src_stride, dst_stride, height, width } = region;
    let (h8, w8) = (height - height % 8, width - width % 8);
    // Column blocks outer: the tile side (stride LANES) is then written or read whole lines
    // at a time.
    for c0 in (0..w8).step_by(8) {
        for r0 in (0..h8).step_by(8) {
            transpose8(&src[r0 * src_stride + c0..], src_stride, &mut dst[c0 * dst_stride + r0..], dst_stride, op);
        }
    }
    // Ragged edges: the last width % 8 columns of the blocked rows, then the leftover rows.
    for r in 0..height {
        let c_start = if r < h8 { w8 } else { 0 };
        for c in c_start..width {
            op(&mut dst[c * dst_stride + r], src[r * src_stride + c]);
        }
    }
}

/// The 16 x 16 blocks of a `height` x `width` region (both positive multiples of 16), in registers
/// (the GEMM's packing transpose): 16 loads, 64 shuffles and 16 stores of whole 64-byte rows
/// per block, where 8 x 8 blocks need twice the instructions and two half stores per tile line.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16_blocks(src: &[f32], dst: &mut [f32], region: Region, op: impl Fn(&mut f32, f32) + Copy) {
    let Region { src_stride, dst_stride, height, width } = region;
    use crate::kernels::gemm::avx512::transpose_16x16;
    use std::arch::x86_64::*;
    // The caller passes whole blocks, at least one each way.
    debug_assert!(height >= 16 && width >= 16 && height.is_multiple_of(16) && width.is_multiple_of(16));
    // Every load reads src[r * src_stride + c .. + 16] with r < height, c + 16 <= width, and
    // every store writes dst[c * dst_stride + r .. + 16] likewise: both within these bounds.
    assert!(src.len() >= (height - 1) * src_stride + width && dst.len() >= (width - 1) * dst_stride + height);
    for c0 in (0..width).step_by(16) {
        for r0 in (0..height).step_by(16) {
            // SAFETY: the assert above bounds every 16-float load and store of this block.
            let mut block: [__m512; 16] =
                std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.as_ptr().add((r0 + i) * src_stride + c0)) });
            // SAFETY: AVX-512F is enabled in this function.
            unsafe { transpose_16x16(&mut block) };
            for (j, column) in block.into_iter().enumerate() {
                let mut vals = [0.0f32; 16];
                // SAFETY: `vals` holds 16 floats.
                unsafe { _mm512_storeu_ps(vals.as_mut_ptr(), column) };
                // `op` is a store or an add; on a 16-float array LLVM keeps it in registers.
                for (d, v) in dst[(c0 + j) * dst_stride + r0..][..16].iter_mut().zip(vals) {
                    op(d, v);
                }
            }
        }
    }
}

/// One 8 x 8 block of [`transpose_blocks`], portable version (LLVM cannot turn this into
/// shuffles by itself, hence the AVX version below).
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
#[inline(always)]
pub(super) fn transpose8(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    op: impl Fn(&mut f32, f32),
) {
    for r in 0..8 {
        for c in 0..8 {
            op(&mut dst[c * dst_stride + r], src[r * src_stride + c]);
        }
    }
}

/// One 8 x 8 block of [`transpose_blocks`] with AVX shuffles: 24 shuffles for 64 values
/// instead of 64 scalar stores. Element by element, the transposes took a third of the row
/// form's time. The `unsafe` is pointer loads and stores, with the bounds asserted first (the
/// crate's other `unsafe` is the GEMM's call into matrixmultiply).
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
#[inline(always)]
pub(super) fn transpose8(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    op: impl Fn(&mut f32, f32),
) {
    use std::arch::x86_64::*;
    assert!(src.len() >= 7 * src_stride + 8 && dst.len() >= 7 * dst_stride + 8);
    // SAFETY: the assert keeps every 8-float load and store inside its slice, and AVX is
    // enabled at compile time (the cfg above), so the intrinsics exist on this CPU.
    unsafe {
        let row = |r: usize| _mm256_loadu_ps(src.as_ptr().add(r * src_stride));
        let (a, b, c, d) = (row(0), row(1), row(2), row(3));
        let (e, f, g, h) = (row(4), row(5), row(6), row(7));
        // Interleave pairs of rows: t0 = a0 b0 a1 b1 | a4 b4 a5 b5, t1 = a2 b2 a3 b3 | a6 b6 a7 b7.
        let (t0, t1) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
        let (t2, t3) = (_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
        let (t4, t5) = (_mm256_unpacklo_ps(e, f), _mm256_unpackhi_ps(e, f));
        let (t6, t7) = (_mm256_unpacklo_ps(g, h), _mm256_unpackhi_ps(g, h));
        // Pairs of pairs: u0 = a0 b0 c0 d0 | a4 b4 c4 d4, and so on.
        let (u0, u1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
        let (u2, u3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
        let (u4, u5) = (_mm256_shuffle_ps::<0x44>(t4, t6), _mm256_shuffle_ps::<0xEE>(t4, t6));
        let (u6, u7) = (_mm256_shuffle_ps::<0x44>(t5, t7), _mm256_shuffle_ps::<0xEE>(t5, t7));
        // Join the 128-bit halves: column j = a_j .. h_j.
        let cols = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (j, col) in cols.into_iter().enumerate() {
            let mut vals = [0.0f32; 8];
            _mm256_storeu_ps(vals.as_mut_ptr(), col);
            // `op` is a store or an add; on an 8-float array LLVM keeps it in registers.
            for (dv, v) in dst[j * dst_stride..j * dst_stride + 8].iter_mut().zip(vals) {
                op(dv, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose_blocks;

    /// Every block size (16 x 16 with AVX-512, 8 x 8, the ragged edges) against the definition,
    /// with strides wider than the region, for a store and for an add.
    #[test]
    fn transpose_blocks_is_a_transpose() {
        for height in [0, 1, 7, 8, 15, 16, 17, 24, 33, 40] {
            for width in [0, 1, 8, 9, 16, 31, 32, 48, 301] {
                let (src_stride, dst_stride) = (width + 3, height + 5);
                let src: Vec<f32> = (0..height * src_stride).map(|i| i as f32).collect();
                let mut stored = vec![-1.0; width * dst_stride];
                transpose_blocks(&src, src_stride, &mut stored, dst_stride, height, width, |d, v| *d = v);
                let mut added = vec![0.5; width * dst_stride];
                transpose_blocks(&src, src_stride, &mut added, dst_stride, height, width, |d, v| *d += v);
                for c in 0..width {
                    for r in 0..dst_stride {
                        let i = c * dst_stride + r;
                        let (want_stored, want_added) = if r < height {
                            (src[r * src_stride + c], src[r * src_stride + c] + 0.5)
                        } else {
                            (-1.0, 0.5)
                        };
                        assert_eq!((stored[i], added[i]), (want_stored, want_added), "{height}x{width} at c {c} r {r}");
                    }
                }
            }
        }
    }
}
