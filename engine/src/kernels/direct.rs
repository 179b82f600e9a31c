//! Direct convolution for stride-1 layers with few input channels (LeNet's 5x5 layers, the
//! 3-channel first layers, CNN-9 at width x0.25, VGG-16's 64-channel layers; see
//! [`applies`]), where im2col + GEMM moves more memory than it computes, a GEMM tile of 12
//! output channels is half empty, and Winograd's transforms cost more than they save.
//!
//! Each image's input is copied into a zero-padded plane per channel, `wp = W + 2p` wide. In
//! that layout an output pixel (oy, ox) and its kernel offset (ky, kx) read input element
//! `q + ky * wp + kx` with `q = oy * wp + ox`: for a fixed offset the whole output plane is one
//! shifted run of the input. Outputs are therefore computed on the padded width (`ho * wp`
//! positions, of which `ox < wo` are kept), in strips of 16 positions with up to 8 output
//! channels accumulated in registers: per input channel and offset, one load of 16 inputs
//! feeds 8 multiply-adds of 16 lanes. The two inner kernels are written with AVX-512
//! intrinsics (the compiler vectorizes plain loops of this shape across the output channels,
//! with gathers); on CPUs without AVX-512 these layers stay with im2col + GEMM.
//!
//! ```text
//! forward   y[co][q]          += w[co][c][ky][kx] * xpad[c][q + ky*wp + kx]
//! dx        = the same loop on dy padded by k-1-p, with w flipped and transposed
//! dW        dw[co][c][ky][kx] += sum_(oy,ox) dyT[(oy,ox)][co] * xpad[c][(oy+ky)*wp + ox + kx]
//! ```
//!
//! The weight gradient vectorizes the other way: dy transposed so that one position's output
//! channels are one to four vectors, times one broadcast input per tap (see
//! [`weight_gradient_avx512`]).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use std::cell::RefCell;

use rayon::prelude::*;

use super::{ConvGrads, ConvShape, Window};
use crate::buffers::with_thread_buffer;

thread_local! {
    /// Per-thread scratch of the forward and backward loops, kept from call to call.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Lanes per strip of output positions.
const LANES: usize = 16;
/// Output channels accumulated together.
const BLOCK: usize = 8;
/// Images per backward task, fixed so that weight-gradient partial sums are added in the same
/// order whatever the thread count.
const IMAGES_PER_TASK: usize = 8;

/// Whether a convolution of this shape runs here: on a CPU with AVX-512 (where our own GEMM
/// runs), stride 1, a square kernel wider than the padding, and either at most 300 rows of
/// im2col (LeNet, first layers) or a 3x3 kernel with at most 64 channels in and out and an
/// output of at least 64 pixels (8x8).
/// Measured forward + backward against Winograd at batch 128 (ms): 48->48 on 16x16 16 vs 28,
/// 64->64 on 32x32 106 vs 156, 64->64 on 8x8 8.5 vs 10.1, 32->64 on 8x8 4.6 vs 6.7; from 64->128
/// on 16x16 (54 vs 57 here, 15% slower in `sph bench --kernels`) and 96->96 (65 vs 61) they are
/// even or Winograd wins, and on 4x4 maps the weight gradient here has too few positions.
pub(crate) fn applies(window: &Window, c_out: usize) -> bool {
    super::gemm::sgemm_backend() == "avx512"
        && window.stride == 1
        && window.kernel_h == window.kernel_w
        && window.padding < window.kernel_h
        && (window.col_rows() <= 300
            || (window.kernel_h == 3 && window.channels <= 64 && c_out <= 64 && window.out_h() * window.out_w() >= 64))
}

/// The padded-plane geometry of one layer.
#[derive(Clone, Copy, Debug)]
struct Plane {
    channels: usize,
    height: usize,
    width: usize,
    k: usize,
    pad: usize,
    /// Padded width: the row length of inputs and of outputs on the padded width.
    wp: usize,
    /// Padded height.
    hp: usize,
    out_h: usize,
    out_w: usize,
}

impl Plane {
    fn new(w: &Window) -> Self {
        let (wp, hp) = (w.width + 2 * w.padding, w.height + 2 * w.padding);
        Plane {
            channels: w.channels,
            height: w.height,
            width: w.width,
            k: w.kernel_h,
            pad: w.padding,
            wp,
            hp,
            out_h: w.out_h(),
            out_w: w.out_w(),
        }
    }

    /// Output positions on the padded width, rounded up to whole strips.
    fn positions(&self) -> usize {
        (self.out_h * self.wp).next_multiple_of(LANES)
    }

    /// Floats of one padded input plane, with room for the last strip's reads past its end.
    fn padded_len(&self) -> usize {
        (self.positions() + (self.k - 1) * (self.wp + 1)).max(self.hp * self.wp)
    }

    /// Where each tap (c, ky, kx), in weight order, starts reading the padded planes:
    /// `c * padded_len + ky * wp + kx`.
    fn tap_offsets(&self) -> Vec<usize> {
        let len = self.padded_len();
        (0..self.channels)
            .flat_map(|c| (0..self.k).flat_map(move |ky| (0..self.k).map(move |kx| c * len + ky * self.wp + kx)))
            .collect()
    }

    /// Copies one image [C, H, W] into zero-padded planes `xpad` [C][padded_len].
    fn pad(&self, x: &[f32], xpad: &mut [f32]) {
        xpad.fill(0.0);
        let len = self.padded_len();
        for (plane, dst) in x.chunks_exact(self.height * self.width).zip(xpad.chunks_exact_mut(len)) {
            for (iy, row) in plane.chunks_exact(self.width).enumerate() {
                dst[(iy + self.pad) * self.wp + self.pad..][..self.width].copy_from_slice(row);
            }
        }
    }
}

/// The weights [Co, C, k, k] as blocks of [`BLOCK`] output channels, each [tap][BLOCK] (zero
/// for the channels past the last), the order in which [`correlate`] reads them.
fn blocked_weights(w: &[f32], taps: usize, c_out: usize) -> Vec<f32> {
    let mut wb = vec![0.0f32; c_out.div_ceil(BLOCK) * taps * BLOCK];
    for co in 0..c_out {
        let block = &mut wb[co / BLOCK * taps * BLOCK..][..taps * BLOCK];
        for (t, &v) in w[co * taps..(co + 1) * taps].iter().enumerate() {
            block[t * BLOCK + co % BLOCK] = v;
        }
    }
    wb
}

/// What every image of one correlation shares, made once per call: the plane geometry, where
/// each tap reads, where each strip's outputs go, and the weights as [`blocked_weights`].
struct Correlation {
    g: Plane,
    offsets: Vec<usize>,
    destinations: Vec<(u16, usize)>,
    weights: Vec<f32>,
    c_out: usize,
}

impl Correlation {
    /// For weights `w` [Co, C, k, k] over planes of geometry `g`.
    fn new(g: Plane, w: &[f32], c_out: usize) -> Self {
        let weights = blocked_weights(w, g.channels * g.k * g.k, c_out);
        Correlation { offsets: g.tap_offsets(), destinations: strip_destinations(&g), g, weights, c_out }
    }
}

/// `out[co][oy][ox] = bias[co] + sum_{c, ky, kx} w[co][c][ky][kx] * xpad[c][q + ky * wp + kx]`
/// with `q = oy * wp + ox`, for `out` [Co][Ho * Wo].
fn correlate(xpad: &[f32], corr: &Correlation, bias: Option<&[f32]>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `applies` admits this module's layers only where AVX-512F runs.
    unsafe {
        correlate_avx512(xpad, corr, bias, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("direct convolution needs AVX-512 (see `applies`)")
}

/// Where each strip of 16 positions on the padded width goes in a dense output plane: the
/// lanes it keeps (`ox < wo`) and how many positions before it were kept. The kept lanes of a
/// strip land side by side in the plane, since it is the padded positions without the others.
fn strip_destinations(g: &Plane) -> Vec<(u16, usize)> {
    let kept = |q: usize| q < g.out_h * g.wp && q % g.wp < g.out_w;
    (0..g.positions() / LANES)
        .map(|s| {
            let q0 = s * LANES;
            let mask = (0..LANES).filter(|&l| kept(q0 + l)).fold(0u16, |m, l| m | 1 << l);
            let before = (q0 / g.wp) * g.out_w + (q0 % g.wp).min(g.out_w);
            (mask, before)
        })
        .collect()
}

/// [`correlate`] with 16-lane registers.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn correlate_avx512(xpad: &[f32], corr: &Correlation, bias: Option<&[f32]>, out: &mut [f32]) {
    let Correlation { g, ref offsets, ref destinations, weights: ref wb, c_out } = *corr;
    let (plane, taps) = (g.out_h * g.out_w, g.channels * g.k * g.k);
    assert!(xpad.len() >= g.channels * g.padded_len() && out.len() >= c_out * plane);
    for co0 in (0..c_out).step_by(BLOCK) {
        let block = BLOCK.min(c_out - co0);
        let wb = &wb[co0 * taps..(co0 + BLOCK) * taps];
        let start: [f32; BLOCK] =
            std::array::from_fn(|j| bias.map_or(0.0, |b| if j < block { b[co0 + j] } else { 0.0 }));
        let strips = destinations.len();
        let dst = out[co0 * plane..].as_mut_ptr();
        for s0 in (0..strips).step_by(3) {
            // Three strips at a time (24 accumulators), fewer at the end.
            let d = &destinations[s0..];
            match strips - s0 {
                1 => correlate_strips::<1>(xpad, offsets, wb, &start, s0 * LANES, d, dst, plane, block),
                2 => correlate_strips::<2>(xpad, offsets, wb, &start, s0 * LANES, d, dst, plane, block),
                _ => correlate_strips::<3>(xpad, offsets, wb, &start, s0 * LANES, d, dst, plane, block),
            }
        }
    }
}

/// `S` strips of 16 positions from `q0` for one block of output channels: per tap, S loads of
/// inputs and 8 broadcasts of weights feed 8 S multiply-adds. Each strip's kept lanes are
/// packed together and stored where [`strip_destinations`] says (no pass over a wide buffer).
///
/// # Safety
/// AVX-512F; `xpad` holds every plane the offsets reach plus `q0 + S * LANES` more floats,
/// `destinations` has `S` entries, and `out` the `block` planes of `plane` floats (checked by
/// the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn correlate_strips<const S: usize>(
    xpad: &[f32],
    offsets: &[usize],
    wb: &[f32],
    start: &[f32; BLOCK],
    q0: usize,
    destinations: &[(u16, usize)],
    out: *mut f32,
    plane: usize,
    block: usize,
) {
    let mut acc: [[__m512; S]; BLOCK] = std::array::from_fn(|j| [_mm512_set1_ps(start[j]); S]);
    let x = xpad.as_ptr().add(q0);
    for (&off, ws) in offsets.iter().zip(wb.chunks_exact(BLOCK)) {
        let xv: [__m512; S] = std::array::from_fn(|s| _mm512_loadu_ps(x.add(off + s * LANES)));
        for (a, &wv) in acc.iter_mut().zip(ws) {
            let w = _mm512_set1_ps(wv);
            for (a, &xv) in a.iter_mut().zip(&xv) {
                *a = _mm512_fmadd_ps(w, xv, *a);
            }
        }
    }
    for (s, &(mask, before)) in destinations[..S].iter().enumerate() {
        // The lanes stored: as many as the strip keeps, from its first destination on
        // (masked-off lanes are not touched, past the plane's end included).
        let stored = ((1u32 << mask.count_ones()) - 1) as u16;
        for (j, a) in acc.iter().enumerate().take(block) {
            let packed = _mm512_maskz_compress_ps(mask, a[s]);
            _mm512_mask_storeu_ps(out.add(j * plane + before), stored, packed);
        }
    }
}

/// `y [N, Co, Ho, Wo] = conv(x [N, C, H, W], w [Co, C, k, k]) + bias`, stride 1, in parallel
/// over images.
pub(crate) fn conv_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, shape: &ConvShape, y: &mut [f32]) {
    let ConvShape { window, c_out, .. } = *shape;
    let g = Plane::new(&window);
    let (in_size, out_plane) = (g.channels * g.height * g.width, g.out_h * g.out_w);
    let corr = Correlation::new(g, w, c_out);
    let xpad_len = g.channels * g.padded_len();
    y.par_chunks_mut(c_out * out_plane).enumerate().for_each(|(n, y_n)| {
        with_thread_buffer(&SCRATCH, xpad_len, |xpad| {
            g.pad(&x[n * in_size..(n + 1) * in_size], xpad);
            correlate(xpad, &corr, bias, y_n);
        })
    });
}

/// The gradients of [`conv_forward`] (but the bias's): `dx += d/dx` (or `dx = d/dx` with
/// `store_dx`, into a new buffer, saving a pass over it), `dw += d/dw`, each only where asked for. Images are processed in fixed tasks of [`IMAGES_PER_TASK`]; each task's
/// partial weight gradient is added in task order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward(x: &[f32], w: &[f32], dy: &[f32], shape: &ConvShape, grads: ConvGrads) {
    let (ConvShape { window, batch, c_out }, ConvGrads { dx, store_dx, dw }) = (*shape, grads);
    let g = Plane::new(&window);
    let (in_size, out_plane) = (g.channels * g.height * g.width, g.out_h * g.out_w);
    let taps = g.channels * g.k * g.k;
    // dx is the forward loop over dy padded by k-1-p, with w[co][c][ky][kx] moved to
    // wt[c][co][k-1-ky][k-1-kx]: a convolution from Co channels to C.
    let back = Plane::new(&Window {
        channels: c_out,
        height: g.out_h,
        width: g.out_w,
        kernel_h: g.k,
        kernel_w: g.k,
        stride: 1,
        padding: g.k - 1 - g.pad,
    });
    let kk = g.k * g.k;
    let mut wt = vec![0.0f32; w.len()];
    for co in 0..c_out {
        for c in 0..g.channels {
            for t in 0..kk {
                wt[(c * c_out + co) * kk + (kk - 1 - t)] = w[(co * g.channels + c) * kk + t];
            }
        }
    }
    let back_corr = Correlation::new(back, &wt, g.channels);
    let (want_dw, want_dx) = (dw.is_some(), dx.is_some());
    let group = images_per_group(&g);
    let layout = GradientLayout::new(&g, c_out);
    // Scratch of one task, each part only when its gradient is asked for: for dw a group's
    // padded inputs and transposed dy, and the sums (over the task's images, added to dw at
    // the end; the first group stores them, so they need no zeroing); for dx one image's
    // padded dy, and its dx when added rather than stored. Each a whole number of cache lines,
    // so that the transposed dy and the sums start on one and their loads split none.
    let lens = [
        if want_dw { group * g.channels * g.padded_len() } else { 0 },
        if want_dw { group * layout.dy_len(out_plane) } else { 0 },
        if want_dx { c_out * back.padded_len() } else { 0 },
        if want_dx && !store_dx { in_size } else { 0 },
        if want_dw { layout.sums_len() } else { 0 },
    ]
    .map(|len| len.next_multiple_of(LANES));
    let work = |(task, dx_task): (usize, Option<&mut [f32]>)| -> Vec<f32> {
        let mut dx_task = dx_task;
        let mut dw_part = vec![0.0f32; if want_dw { c_out * taps } else { 0 }];
        with_thread_buffer(&SCRATCH, lens.iter().sum(), |buf| {
            let (xpad, rest) = buf.split_at_mut(lens[0]);
            let (dy_packed, rest) = rest.split_at_mut(lens[1]);
            let (dypad, rest) = rest.split_at_mut(lens[2]);
            let (dx_image, sums) = rest.split_at_mut(lens[3]);
            let first = task * IMAGES_PER_TASK;
            let images = IMAGES_PER_TASK.min(batch - first);
            // Group by group, so that a group's inputs and dy are still in L2 for both gradients.
            for g0 in (0..images).step_by(group) {
                let (n0, n1) = (first + g0, first + (g0 + group).min(images));
                let dy_group = &dy[n0 * c_out * out_plane..n1 * c_out * out_plane];
                if want_dw {
                    for (x_n, xpad_n) in x[n0 * in_size..n1 * in_size]
                        .chunks_exact(in_size)
                        .zip(xpad.chunks_exact_mut(g.channels * g.padded_len()))
                    {
                        g.pad(x_n, xpad_n);
                    }
                    transpose_dy(dy_group, out_plane, c_out, &layout, dy_packed);
                    let last = n1 == first + images;
                    let reduce_into = if last { Some(&mut dw_part[..]) } else { None };
                    let images = GradientImages {
                        xpad,
                        dy: dy_packed,
                        g: &g,
                        layout: &layout,
                        images: n1 - n0,
                        first_group: g0 == 0,
                    };
                    weight_gradient(&images, sums, reduce_into);
                }
                if let Some(dx) = dx_task.as_deref_mut() {
                    let dx_group = &mut dx[g0 * in_size..(n1 - first) * in_size];
                    for (dy_n, dx_n) in dy_group.chunks_exact(c_out * out_plane).zip(dx_group.chunks_exact_mut(in_size))
                    {
                        back.pad(dy_n, dypad);
                        if store_dx {
                            correlate(dypad, &back_corr, None, dx_n);
                        } else {
                            correlate(dypad, &back_corr, None, dx_image);
                            dx_n.iter_mut().zip(&*dx_image).for_each(|(d, &s)| *d += s);
                        }
                    }
                }
            }
        });
        dw_part
    };
    let tasks = batch.div_ceil(IMAGES_PER_TASK);
    let partials: Vec<Vec<f32>> = match dx {
        Some(dx) => dx.par_chunks_mut(IMAGES_PER_TASK * in_size).enumerate().map(|(i, d)| work((i, Some(d)))).collect(),
        None => (0..tasks).into_par_iter().map(|i| work((i, None))).collect(),
    };
    if let Some(dw) = dw {
        for part in &partials {
            for (g, &p) in dw.iter_mut().zip(part) {
                *g += p;
            }
        }
    }
}

/// How the weight gradient holds output channels: chunks of `vectors` 16-lane vectors (at
/// most 4, 64 channels), and taps in groups of `group_taps`, so that a group's accumulators
/// (`group_taps * vectors`, 24 or 12) and their tap offsets fit the registers.
#[derive(Clone, Debug)]
struct GradientLayout {
    vectors: usize,
    chunks: usize,
    group_taps: usize,
    /// Where each tap reads the padded input planes (see [`Plane::tap_offsets`]), the taps
    /// rounded up to whole groups: the extra taps read the first input of each position, and
    /// their sums are dropped.
    offsets: Vec<usize>,
}

impl GradientLayout {
    fn new(g: &Plane, c_out: usize) -> Self {
        let vectors = c_out.div_ceil(LANES).min(4);
        let group_taps = match vectors {
            1 | 2 => 12,
            3 => 8,
            _ => 6,
        };
        let mut offsets = g.tap_offsets();
        offsets.resize(offsets.len().next_multiple_of(group_taps), 0);
        GradientLayout { vectors, chunks: c_out.div_ceil(vectors * LANES), group_taps, offsets }
    }

    /// Output channels of one chunk.
    fn width(&self) -> usize {
        self.vectors * LANES
    }

    /// Floats of one image's transposed dy, [chunk][Ho*Wo][width].
    fn dy_len(&self, plane: usize) -> usize {
        self.chunks * plane * self.width()
    }

    /// Floats of the sums, [chunk][padded tap][width].
    fn sums_len(&self) -> usize {
        self.chunks * self.offsets.len() * self.width()
    }
}

/// dy of some images [image][Co][Ho*Wo] transposed to [image][chunk][Ho*Wo][width] (zero past
/// the last channel), so that one position's output channels are one to four vectors, in
/// 16 x 16 tiles.
fn transpose_dy(dy: &[f32], plane: usize, c_out: usize, layout: &GradientLayout, packed: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `applies` admits this module's layers only where AVX-512F runs.
    unsafe {
        transpose_dy_avx512(dy, plane, c_out, layout, packed)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("direct convolution needs AVX-512 (see `applies`)")
}

/// [`transpose_dy`] with 16-lane registers.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_dy_avx512(dy: &[f32], plane: usize, c_out: usize, layout: &GradientLayout, packed: &mut [f32]) {
    use super::gemm::avx512::transpose_16x16;
    let width = layout.width();
    let images = dy.len() / (c_out * plane);
    assert!(packed.len() >= images * layout.dy_len(plane));
    for n in 0..images {
        let dy_n = &dy[n * c_out * plane..(n + 1) * c_out * plane];
        for chunk in 0..layout.chunks {
            let out = &mut packed[(n * layout.chunks + chunk) * plane * width..][..plane * width];
            for v in 0..layout.vectors {
                let co0 = chunk * width + v * LANES;
                for q0 in (0..plane).step_by(LANES) {
                    let lanes = LANES.min(plane - q0);
                    let mask = ((1u32 << lanes) - 1) as u16;
                    let mut r: [__m512; LANES] = std::array::from_fn(|i| {
                        if co0 + i < c_out {
                            _mm512_maskz_loadu_ps(mask, dy_n.as_ptr().add((co0 + i) * plane + q0))
                        } else {
                            _mm512_setzero_ps()
                        }
                    });
                    transpose_16x16(&mut r);
                    for (j, row) in r.iter().enumerate().take(lanes) {
                        _mm512_storeu_ps(out.as_mut_ptr().add((q0 + j) * width + v * LANES), *row);
                    }
                }
            }
        }
    }
}

/// Images whose weight gradient is taken together: about [`GRADIENT_POSITIONS`] output
/// positions (one image of a 32x32 map, four of 16x16, eight of 8x8), so that a group's
/// inputs and dy stay in L2 for both gradients.
fn images_per_group(g: &Plane) -> usize {
    (GRADIENT_POSITIONS / (g.out_h * g.out_w)).clamp(1, IMAGES_PER_TASK)
}

/// Output positions per weight-gradient group of images (see [`images_per_group`]).
const GRADIENT_POSITIONS: usize = 1024;

/// Some images of a task for [`weight_gradient`].
struct GradientImages<'a> {
    /// Their padded inputs, [image][C][padded_len].
    xpad: &'a [f32],
    /// Their dy as [`transpose_dy`] made it.
    dy: &'a [f32],
    g: &'a Plane,
    layout: &'a GradientLayout,
    images: usize,
    /// The task's first images: the sums are stored, not added to.
    first_group: bool,
}

/// `sums[chunk][tap][co] += sum_q xpad[c][q + ky * wp + kx] * dy[q][co]` over the kept positions
/// q of some images (`=` for the task's first images); for the task's last images, the sums
/// are then added to `reduce_into` (dw [Co][taps]).
fn weight_gradient(batch: &GradientImages, sums: &mut [f32], reduce_into: Option<&mut [f32]>) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `applies` admits this module's layers only where AVX-512F runs.
    unsafe {
        weight_gradient_avx512(batch, sums, reduce_into)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("direct convolution needs AVX-512 (see `applies`)")
}

/// [`weight_gradient`] with 16-lane registers: per position, one to four vectors of dy (its
/// output channels) and one broadcast input per tap feed `group_taps * vectors` multiply-adds.
/// Broadcasts replaced the earlier form (16 positions as lanes, three misaligned input loads
/// and eight dy loads per 24 multiply-adds: 73% of the FMA rate in L1 against 83-90% for this
/// mix), and the positions past the output width (7-33% of the padded rows) are skipped.
///
/// The positions go in blocks of about [`GRADIENT_BLOCK_BYTES`] of dy, every tap group over
/// one block before the next, so that the block's dy stays in L1 while the inputs stream by.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_gradient_avx512(batch: &GradientImages, sums: &mut [f32], mut reduce_into: Option<&mut [f32]>) {
    let GradientImages { xpad, dy, g, layout, images, first_group } = *batch;
    let (plane, image_len) = (g.out_h * g.out_w, g.channels * g.padded_len());
    let taps = g.channels * g.k * g.k;
    let width = layout.width();
    assert!(dy.len() >= images * layout.dy_len(plane) && xpad.len() >= images * image_len);
    assert!(sums.len() >= layout.sums_len());
    // Every image's rows in parts of at most one block, then consecutive parts gathered into
    // blocks of at most that many positions (at least one part each).
    let block_rows = (GRADIENT_BLOCK_BYTES / (width * 4) / g.out_w).clamp(1, g.out_h);
    let rows_per_part = g.out_h.div_ceil(g.out_h.div_ceil(block_rows));
    let parts: Vec<(usize, std::ops::Range<usize>)> = (0..images)
        .flat_map(|n| (0..g.out_h).step_by(rows_per_part).map(move |r0| (n, r0..(r0 + rows_per_part).min(g.out_h))))
        .collect();
    let mut blocks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut rows_in_block = 0;
    for (i, (_, rows)) in parts.iter().enumerate() {
        match blocks.last_mut() {
            Some(b) if rows_in_block + rows.len() <= block_rows => {
                b.end = i + 1;
                rows_in_block += rows.len();
            }
            _ => {
                blocks.push(i..i + 1);
                rows_in_block = rows.len();
            }
        }
    }
    let chunk_len = layout.offsets.len() * width;
    for (chunk, sums) in sums.chunks_exact_mut(chunk_len).enumerate().take(layout.chunks) {
        let segments: Vec<Segment> = parts
            .iter()
            .map(|(n, rows)| Segment {
                x: xpad[n * image_len..].as_ptr(),
                dy: dy[((n * layout.chunks + chunk) * plane + rows.start * g.out_w) * width..].as_ptr(),
                rows: rows.clone(),
            })
            .collect();
        let geometry = (g.out_w, g.wp);
        for (i, b) in blocks.iter().enumerate() {
            let (segments, store) = (&segments[b.clone()], first_group && i == 0);
            let groups =
                layout.offsets.chunks_exact(layout.group_taps).zip(sums.chunks_exact_mut(layout.group_taps * width));
            for (group, sums) in groups {
                match layout.vectors {
                    1 => gradient_taps::<12, 1>(segments, group, geometry, store, sums),
                    2 => gradient_taps::<12, 2>(segments, group, geometry, store, sums),
                    3 => gradient_taps::<8, 3>(segments, group, geometry, store, sums),
                    _ => gradient_taps::<6, 4>(segments, group, geometry, store, sums),
                }
            }
        }
        if let Some(dw) = reduce_into.as_deref_mut() {
            for co in chunk * width..((chunk + 1) * width).min(dw.len() / taps) {
                for (t, d) in dw[co * taps..(co + 1) * taps].iter_mut().enumerate() {
                    *d += sums[t * width + co % width];
                }
            }
        }
    }
}

/// Bytes of dy per block of positions in [`weight_gradient_avx512`] (8, 16, 32 and 64 KB
/// measured: 32 and 64 KB 3-9% faster than 16 KB, 8 KB no faster).
const GRADIENT_BLOCK_BYTES: usize = 32 * 1024;

/// Some rows of one image in [`weight_gradient_avx512`]: its padded input, its transposed dy
/// for one chunk of output channels from the first of the rows, and the rows.
struct Segment {
    x: *const f32,
    dy: *const f32,
    rows: std::ops::Range<usize>,
}

/// `sums[t][co] += x[off_t + oy * wp + ox] * dy[(oy, ox)][co]` for `T` taps and `V` vectors of
/// output channels over the rows of some segments (`sums` [tap][V * 16]; `=` with `store`).
///
/// # Safety
/// AVX-512F; every tap's offset plus the last row's positions lies within each segment's input,
/// its dy holds `rows.len() * wo * V * 16` floats, and `sums` has `T * V * 16` (checked by the
/// caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gradient_taps<const T: usize, const V: usize>(
    segments: &[Segment],
    offsets: &[usize],
    (wo, wp): (usize, usize),
    store: bool,
    sums: &mut [f32],
) {
    let sums = sums.as_mut_ptr();
    let offsets: [usize; T] = std::array::from_fn(|t| offsets[t]);
    let mut acc: [[__m512; V]; T] =
        std::array::from_fn(|t| {
            std::array::from_fn(|v| {
                if store {
                    _mm512_setzero_ps()
                } else {
                    _mm512_loadu_ps(sums.add((t * V + v) * LANES))
                }
            })
        });
    for seg in segments {
        let mut d = seg.dy;
        for oy in seg.rows.clone() {
            let x = seg.x.add(oy * wp);
            for ox in 0..wo {
                // V vectors of dy and one broadcast per tap: T V accumulators + V + 1 registers.
                let dv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(d.add(v * LANES)));
                for (a, &off) in acc.iter_mut().zip(&offsets) {
                    let xb = _mm512_set1_ps(*x.add(off + ox));
                    for (a, &dv) in a.iter_mut().zip(&dv) {
                        *a = _mm512_fmadd_ps(xb, dv, *a);
                    }
                }
                d = d.add(V * LANES);
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        for (v, &s) in a.iter().enumerate() {
            _mm512_storeu_ps(sums.add((t * V + v) * LANES), s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::check_conv_against_reference;

    /// Forward and backward (dx added to and stored) against im2col + GEMM (the general path),
    /// for LeNet's two layers, 3-channel first layers, 40 and 64 input channels, and odd
    /// shapes, with a batch that ends on a partial task; 32x32 and 40x40 maps split an image's
    /// weight gradient into several blocks of rows; 32, 40, 64 and 70 output channels hold
    /// them in two, three and four vectors and in two chunks.
    #[test]
    fn matches_im2col_forward_and_backward() {
        for &(c, co, h, w, k, p) in &[
            (1, 6, 28, 28, 5, 2),
            (6, 16, 14, 14, 5, 0),
            (3, 9, 8, 7, 3, 1),
            (2, 3, 5, 6, 3, 0),
            (40, 13, 16, 16, 3, 1),
            (64, 10, 8, 9, 3, 1),
            (3, 11, 32, 32, 3, 1),
            (8, 5, 40, 40, 3, 1),
            (32, 32, 16, 16, 3, 1),
            (16, 40, 8, 8, 3, 1),
            (24, 64, 8, 8, 3, 1),
            (3, 70, 12, 12, 3, 1),
        ] {
            let g = Window { channels: c, height: h, width: w, kernel_h: k, kernel_w: k, stride: 1, padding: p };
            if crate::kernels::sgemm_backend() != "avx512" {
                eprintln!("SKIPPED matches_im2col_forward_and_backward: this CPU has no AVX-512");
                return;
            }
            assert!(applies(&g, co), "{g:?} -> {co} no longer runs here");
            let shape = ConvShape { window: g, batch: 11, c_out: co };
            check_conv_against_reference(&shape, 1e-3, conv_forward, conv_backward);
        }
    }
}
