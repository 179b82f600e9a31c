//! Winograd F(2x2, 3x3): a 3x3, stride-1 convolution as 16 matrix products over 4x4 tiles.
//!
//! Each 2x2 block of outputs (a tile) depends on a 4x4 block of inputs. In the transformed
//! domain the 9 multiply-adds per output and channel pair become 16 per 2x2 tile, i.e. 4 per
//! output: 2.25x fewer, and the input expands 4x instead of im2col's 9x. With
//! `B^T`, `G`, `A^T` the matrices of Lavin & Gray (2016), for one tile `d` [4, 4] and filter `g`:
//!
//! ```text
//! U = G g G^T          [4, 4] per (co, c)       weights, once per step
//! V = B^T d B          [4, 4] per (c, tile)     input
//! M[t] = U[t] @ V[t]   for each of the 16 points t: [Co, C] @ [C, tiles]
//! y = A^T M A          [2, 2] per (co, tile)    output
//! ```
//!
//! The backward pass uses the exact adjoints of the three transforms (so it is the gradient of
//! what the forward computed, to rounding): `dM = A dy A^T`, `dV[t] = U[t]^T dM[t]`,
//! `dd = B dV B^T` added onto the overlapping input tiles, `dU[t] = dM[t] V[t]^T` and
//! `dg = G^T dU G`.
//!
//! Layouts put the channel outermost, so that each parallel task owns one contiguous block:
//! weights `U` [Co][16][C], tiles `V` [C][16][ld] and `M` [Co][16][ld], with tile
//! `ty * tiles_w + tx` of the j-th image of a group at column `j * tiles_per_image + ty *
//! tiles_w + tx`; the 16 products then read and write their matrices through strides. Each
//! input plane is first copied into a zero-padded plane, so that every tile's transform is the
//! same branch-free code (late VGG layers have only 1 to 4 tiles per row, too few to vectorize
//! along a row).

use rayon::prelude::*;

use super::gemm::{sgemm_batched, Strided};
use super::{ConvGrads, ConvShape, Window};
use crate::buffers::Scratch;

/// Transform points per tile (4 x 4).
pub(crate) const POINTS: usize = 16;

/// Whether a convolution of this shape runs through Winograd: 3x3 kernels at stride 1, with
/// enough input channels that the 16 products are not too thin (a 3-channel first layer
/// stays with im2col, whose single product has depth 27).
pub(crate) fn applies(window: &Window) -> bool {
    window.kernel_h == 3 && window.kernel_w == 3 && window.stride == 1 && window.channels >= 16
}

/// Tiles of 2x2 outputs covering one image's output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tiles {
    window: Window,
    /// Tile rows: ceil(out_h / 2).
    rows: usize,
    /// Tile columns: ceil(out_w / 2).
    cols: usize,
}

impl Tiles {
    /// The tiling of a 3x3, stride-1 window.
    pub(crate) fn new(window: &Window) -> Self {
        debug_assert!(window.kernel_h == 3 && window.kernel_w == 3 && window.stride == 1);
        Tiles { window: *window, rows: window.out_h().div_ceil(2), cols: window.out_w().div_ceil(2) }
    }

    /// Tiles per image.
    pub(crate) fn per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Width of the zero-padded input plane the tiles read: `2 * cols + 2` (at least the
    /// padded input width, so every input value has its place).
    fn padded_width(&self) -> usize {
        2 * self.cols + 2
    }

    /// Floats of the zero-padded input plane: `(2 * rows + 2) x padded_width`.
    fn padded_len(&self) -> usize {
        (2 * self.rows + 2) * self.padded_width()
    }

    /// Whether the output plane is exactly the tiles' 2x2 blocks (even height and width), so
    /// that tiles write it directly.
    fn exact_output(&self) -> bool {
        self.window.out_h() == 2 * self.rows && self.window.out_w() == 2 * self.cols
    }

    /// Copies an input plane [H, W] into `padded` with `padding` zeros before it (and zeros
    /// after, up to the tiles' extent).
    fn pad(&self, plane: &[f32], padded: &mut [f32]) {
        let (w, p, pw) = (self.window.width, self.window.padding, self.padded_width());
        padded.fill(0.0);
        for (iy, row) in plane.chunks_exact(w).enumerate() {
            padded[(iy + p) * pw + p..][..w].copy_from_slice(row);
        }
    }

    /// Adds the interior of a padded plane's gradient onto the input plane's gradient: the
    /// adjoint of [`Tiles::pad`].
    fn unpad_add(&self, padded: &[f32], plane: &mut [f32]) {
        let (w, p, pw) = (self.window.width, self.window.padding, self.padded_width());
        for (iy, row) in plane.chunks_exact_mut(w).enumerate() {
            for (d, &s) in row.iter_mut().zip(&padded[(iy + p) * pw + p..][..w]) {
                *d += s;
            }
        }
    }
}

/// Per-task scratch of the transforms: one padded input plane and one output plane of tiles.
struct Rows {
    padded: Vec<f32>,
    out: Vec<f32>,
}

impl Rows {
    fn new(tiles: &Tiles) -> Self {
        Rows { padded: vec![0.0; tiles.padded_len()], out: vec![0.0; 4 * tiles.per_image()] }
    }
}

/// `U[co][t][c]` from weights `w` [Co, C, 3, 3]: `G g G^T`, in parallel over output channels.
pub(crate) fn weights(w: &[f32], c_out: usize, channels: usize, u: &mut [f32]) {
    u[..c_out * POINTS * channels].par_chunks_mut(POINTS * channels).enumerate().for_each(|(co, u_co)| {
        for c in 0..channels {
            let g = &w[(co * channels + c) * 9..][..9];
            // G g: [4, 3], then (G g) G^T: [4, 4]; G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]].
            let mut gg = [[0.0f32; 3]; 4];
            for l in 0..3 {
                let (g0, g1, g2) = (g[l], g[3 + l], g[6 + l]);
                gg[0][l] = g0;
                gg[1][l] = 0.5 * (g0 + g1 + g2);
                gg[2][l] = 0.5 * (g0 - g1 + g2);
                gg[3][l] = g2;
            }
            for (a, r) in gg.iter().enumerate() {
                let row = [r[0], 0.5 * (r[0] + r[1] + r[2]), 0.5 * (r[0] - r[1] + r[2]), r[2]];
                for (b, &v) in row.iter().enumerate() {
                    u_co[(a * 4 + b) * channels + c] = v;
                }
            }
        }
    });
}

/// `dw[co][c] += G^T dU G` for `dU[co][t][c]`: the adjoint of [`weights`].
pub(crate) fn weights_adjoint(du: &[f32], c_out: usize, channels: usize, dw: &mut [f32]) {
    dw[..c_out * channels * 9].par_chunks_mut(channels * 9).enumerate().for_each(|(co, dw_co)| {
        let du_co = &du[co * POINTS * channels..(co + 1) * POINTS * channels];
        for c in 0..channels {
            let at = |t: usize| du_co[t * channels + c];
            // G^T dU: [3, 4], then (G^T dU) G: [3, 3]; G^T = [[1,.5,.5,0],[0,.5,-.5,0],[0,.5,.5,1]].
            let cols: [[f32; 3]; 4] = std::array::from_fn(|b| {
                let (u0, u1, u2, u3) = (at(b), at(4 + b), at(8 + b), at(12 + b));
                [u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3]
            });
            let g = &mut dw_co[c * 9..(c + 1) * 9];
            for k in 0..3 {
                let r = [cols[0][k], cols[1][k], cols[2][k], cols[3][k]];
                g[k * 3] += r[0] + 0.5 * (r[1] + r[2]);
                g[k * 3 + 1] += 0.5 * (r[1] - r[2]);
                g[k * 3 + 2] += 0.5 * (r[1] + r[2]) + r[3];
            }
        }
    });
}

/// `B^T d B` of the 4x4 tile whose top-left corner is `p[0]`, rows `pw` apart, as [a * 4 + b].
#[inline(always)]
fn input_tile(p: &[f32], pw: usize) -> [f32; 16] {
    // Along each row (B on the right): d0 - d2, d1 + d2, d2 - d1, d1 - d3.
    let row = |i: usize| {
        let d = &p[i * pw..i * pw + 4];
        [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
    };
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
    // Then down each column (B^T on the left), the same combination of rows.
    let mut v = [0.0f32; 16];
    for b in 0..4 {
        v[b] = r0[b] - r2[b];
        v[4 + b] = r1[b] + r2[b];
        v[8 + b] = r2[b] - r1[b];
        v[12 + b] = r1[b] - r3[b];
    }
    v
}

/// `dd = B dV B^T` for one tile's 16 values, added onto the 4x4 block at `p[0]` (rows `pw`
/// apart): the adjoint of [`input_tile`].
#[inline(always)]
fn input_tile_adjoint(dv: &[f32; 16], p: &mut [f32], pw: usize) {
    // Down each column: w_i[b] = sum_a B^T[a][i] dV[a][b].
    let mut w = [[0.0f32; 4]; 4];
    for b in 0..4 {
        let (v0, v1, v2, v3) = (dv[b], dv[4 + b], dv[8 + b], dv[12 + b]);
        w[0][b] = v0;
        w[1][b] = v1 - v2 + v3;
        w[2][b] = v1 + v2 - v0;
        w[3][b] = -v3;
    }
    // Along each row: dd[i][j] = sum_b w_i[b] B^T[b][j].
    for (i, r) in w.iter().enumerate() {
        let d = &mut p[i * pw..i * pw + 4];
        d[0] += r[0];
        d[1] += r[1] - r[2] + r[3];
        d[2] += r[1] + r[2] - r[0];
        d[3] -= r[3];
    }
}

/// `A^T M A` of one tile's 16 values: the 2x2 outputs [y00, y01, y10, y11].
#[inline(always)]
fn output_tile(m: &[f32; 16]) -> [f32; 4] {
    // Along each row (A on the right): m0 + m1 + m2, m1 - m2 - m3.
    let row = |a: usize| [m[a * 4] + m[a * 4 + 1] + m[a * 4 + 2], m[a * 4 + 1] - m[a * 4 + 2] - m[a * 4 + 3]];
    let (s0, s1, s2, s3) = (row(0), row(1), row(2), row(3));
    [s0[0] + s1[0] + s2[0], s0[1] + s1[1] + s2[1], s1[0] - s2[0] - s3[0], s1[1] - s2[1] - s3[1]]
}

/// `A dy A^T` of one tile's 2x2 output gradient [y00, y01, y10, y11]: the adjoint of
/// [`output_tile`].
#[inline(always)]
fn output_tile_adjoint(dy: [f32; 4]) -> [f32; 16] {
    // u_i[b] = sum_j dy_ij A[b][j]: dy_i0, dy_i0 + dy_i1, dy_i0 - dy_i1, -dy_i1.
    let u = |i: usize| {
        let (d0, d1) = (dy[2 * i], dy[2 * i + 1]);
        [d0, d0 + d1, d0 - d1, -d1]
    };
    let (u0, u1) = (u(0), u(1));
    // dM[a][b] = sum_i A[a][i] u_i[b]: u_0, u_0 + u_1, u_0 - u_1, -u_1.
    let mut m = [0.0f32; 16];
    for b in 0..4 {
        m[b] = u0[b];
        m[4 + b] = u0[b] + u1[b];
        m[8 + b] = u0[b] - u1[b];
        m[12 + b] = -u1[b];
    }
    m
}

/// The 16 values of tile column `col` of one channel's block [16][ld].
#[inline(always)]
fn gather(block: &[f32], ld: usize, col: usize) -> [f32; 16] {
    std::array::from_fn(|t| block[t * ld + col])
}

/// Stores one tile's 16 values at column `col` of one channel's block [16][ld].
#[inline(always)]
fn scatter(block: &mut [f32], ld: usize, col: usize, values: &[f32; 16]) {
    for (t, &v) in values.iter().enumerate() {
        block[t * ld + col] = v;
    }
}

/// `V[t][col0 + tile] = (B^T d B)[t]` for every tile of one input plane [H, W]; `v` is one
/// channel's block [16][ld].
fn input_plane(plane: &[f32], tiles: &Tiles, v: &mut [f32], ld: usize, col0: usize, rows: &mut Rows) {
    let pw = tiles.padded_width();
    tiles.pad(plane, &mut rows.padded);
    for ty in 0..tiles.rows {
        for tx in 0..tiles.cols {
            let tile = input_tile(&rows.padded[2 * ty * pw + 2 * tx..], pw);
            scatter(v, ld, col0 + ty * tiles.cols + tx, &tile);
        }
    }
}

/// `dx += B dV B^T` summed over the overlapping tiles of one input plane, for one channel's
/// block `dV` [16][ld]: the adjoint of [`input_plane`]. `dx` is the plane's gradient [H, W].
fn input_plane_adjoint(dv: &[f32], tiles: &Tiles, ld: usize, col0: usize, dx: &mut [f32], rows: &mut Rows) {
    let pw = tiles.padded_width();
    rows.padded.fill(0.0);
    for ty in 0..tiles.rows {
        for tx in 0..tiles.cols {
            let tile = gather(dv, ld, col0 + ty * tiles.cols + tx);
            input_tile_adjoint(&tile, &mut rows.padded[2 * ty * pw + 2 * tx..], pw);
        }
    }
    tiles.unpad_add(&rows.padded, dx);
}

/// One output plane `y` [Ho, Wo] = `A^T M A` + bias, from one output channel's block
/// `M` [16][ld].
fn output_plane(m: &[f32], tiles: &Tiles, ld: usize, col0: usize, bias: f32, y: &mut [f32], rows: &mut Rows) {
    // Tiles write their 2x2 blocks into a plane of 2 * rows x 2 * cols: y itself when the
    // sizes are even, else the scratch plane, whose valid part is then copied.
    let ow2 = 2 * tiles.cols;
    let exact = tiles.exact_output();
    let out: &mut [f32] = if exact { y } else { &mut rows.out };
    for ty in 0..tiles.rows {
        for tx in 0..tiles.cols {
            let [y00, y01, y10, y11] = output_tile(&gather(m, ld, col0 + ty * tiles.cols + tx));
            let at = 2 * ty * ow2 + 2 * tx;
            out[at] = y00 + bias;
            out[at + 1] = y01 + bias;
            out[at + ow2] = y10 + bias;
            out[at + ow2 + 1] = y11 + bias;
        }
    }
    if !exact {
        let ow = tiles.window.out_w();
        for (row, src) in y.chunks_exact_mut(ow).zip(rows.out.chunks_exact(ow2)) {
            row.copy_from_slice(&src[..ow]);
        }
    }
}

/// One output channel's block `dM` [16][ld] = `A dy A^T` from the gradient of one output plane
/// `dy` [Ho, Wo]: the adjoint of [`output_plane`].
fn output_plane_adjoint(dy: &[f32], tiles: &Tiles, dm: &mut [f32], ld: usize, col0: usize, rows: &mut Rows) {
    let ow2 = 2 * tiles.cols;
    let src: &[f32] = if tiles.exact_output() {
        dy
    } else {
        // The gradient of outputs beyond the plane (odd sizes) is zero.
        let ow = tiles.window.out_w();
        rows.out.fill(0.0);
        for (dst, row) in rows.out.chunks_exact_mut(ow2).zip(dy.chunks_exact(ow)) {
            dst[..ow].copy_from_slice(row);
        }
        &rows.out
    };
    for ty in 0..tiles.rows {
        for tx in 0..tiles.cols {
            let at = 2 * ty * ow2 + 2 * tx;
            let tile = output_tile_adjoint([src[at], src[at + 1], src[at + ow2], src[at + ow2 + 1]]);
            scatter(dm, ld, col0 + ty * tiles.cols + tx, &tile);
        }
    }
}

/// Images per group of the pipeline: enough tiles for the 16 products to run at speed (at
/// least 128 columns), at most 512, and few enough that the group's transformed tiles (16
/// floats per tile and channel, in and out) stay within about 16 MB of cache. Fixed by the
/// shapes alone, so results do not depend on the thread count.
fn images_per_group(tiles: &Tiles, batch: usize, channels: usize, c_out: usize) -> usize {
    let cached_tiles = (1 << 22) / (POINTS * (channels + c_out));
    cached_tiles.clamp(128, 512).div_ceil(tiles.per_image()).clamp(1, batch.max(1))
}

/// The planes [image][channel][plane] of some images, grouped by channel (image order within
/// each), so that parallel tasks by channel can each own one channel's planes.
fn planes_by_channel(data: &mut [f32], plane: usize, channels: usize) -> Vec<Vec<&mut [f32]>> {
    let mut by_channel: Vec<Vec<&mut [f32]>> = (0..channels).map(|_| Vec::new()).collect();
    for (i, p) in data.chunks_mut(plane).enumerate() {
        by_channel[i % channels].push(p);
    }
    by_channel
}

/// Sizes of one convolution: per image, per plane, per group.
struct Plan {
    tiles: Tiles,
    channels: usize,
    in_plane: usize,
    out_plane: usize,
    group: usize,
}

impl Plan {
    fn new(window: &Window, batch: usize, c_out: usize) -> Self {
        let tiles = Tiles::new(window);
        Plan {
            tiles,
            channels: window.channels,
            in_plane: window.height * window.width,
            out_plane: window.out_h() * window.out_w(),
            group: images_per_group(&tiles, batch, window.channels, c_out),
        }
    }

    /// Columns of a full group's transformed matrices.
    fn group_cols(&self) -> usize {
        self.group * self.tiles.per_image()
    }

    /// V [C][16][ld] of the images `first..first + images` of `x`, in parallel over channels.
    fn input(&self, x: &[f32], first: usize, images: usize, v: &mut [f32]) {
        let (per_image, ld) = (self.tiles.per_image(), images * self.tiles.per_image());
        let in_size = self.channels * self.in_plane;
        v[..self.channels * POINTS * ld].par_chunks_mut(POINTS * ld).enumerate().for_each_init(
            || Rows::new(&self.tiles),
            |rows, (c, v_c)| {
                for j in 0..images {
                    let plane = &x[(first + j) * in_size + c * self.in_plane..][..self.in_plane];
                    input_plane(plane, &self.tiles, v_c, ld, j * per_image, rows);
                }
            },
        );
    }
}

/// `y [N, Co, Ho, Wo] = conv(x [N, C, H, W], w [Co, C, 3, 3]) + bias`, stride 1, through the
/// transforms: groups of images in turn, each transformed, multiplied (16 products) and
/// transformed back, every phase in parallel.
pub(crate) fn conv_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, shape: &ConvShape, y: &mut [f32]) {
    let ConvShape { window, batch, c_out } = *shape;
    let plan = Plan::new(&window, batch, c_out);
    let (channels, per_image) = (plan.channels, plan.tiles.per_image());
    let out_size = c_out * plan.out_plane;
    let mut u = Scratch::overwritten(c_out * POINTS * channels);
    weights(w, c_out, channels, &mut u);
    let mut v = Scratch::overwritten(channels * POINTS * plan.group_cols());
    let mut m = Scratch::overwritten(c_out * POINTS * plan.group_cols());
    for first in (0..batch).step_by(plan.group) {
        let images = plan.group.min(batch - first);
        let ld = images * per_image;
        plan.input(x, first, images, &mut v);
        // M[co][t][j] = sum_c U[co][t][c] V[c][t][j], one product per point t.
        let u_t = Strided { data: &u, batch: channels, rs: POINTS * channels, cs: 1 };
        let v_t = Strided { data: &v, batch: ld, rs: POINTS * ld, cs: 1 };
        sgemm_batched(POINTS, c_out, ld, channels, 1.0, u_t, v_t, 0.0, &mut m, ld, POINTS * ld);
        let m = &m;
        // By output channel: each task reads its channel's block of M in order (by image, a
        // task read a 16-tile slice of every channel's 16 rows: 5.1 -> 3.5 ms on 256 -> 256 8x8).
        let planes = planes_by_channel(&mut y[first * out_size..(first + images) * out_size], plan.out_plane, c_out);
        planes.into_par_iter().enumerate().for_each_init(
            || Rows::new(&plan.tiles),
            |rows, (co, y_co)| {
                let b = bias.map_or(0.0, |b| b[co]);
                for (j, y_plane) in y_co.into_iter().enumerate() {
                    output_plane(
                        &m[co * POINTS * ld..][..POINTS * ld],
                        &plan.tiles,
                        ld,
                        j * per_image,
                        b,
                        y_plane,
                        rows,
                    );
                }
            },
        );
    }
}

/// The gradients of [`conv_forward`] (but the bias's): `dx += d/dx`, `dw += d/dw` of
/// `sum(dy * y)`, each only where asked for.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward(x: &[f32], w: &[f32], dy: &[f32], shape: &ConvShape, grads: ConvGrads) {
    let (ConvShape { window, batch, c_out }, ConvGrads { mut dx, store_dx, dw }) = (*shape, grads);
    if store_dx {
        // The tiles' adjoints add onto overlapping inputs: a new buffer starts at zero.
        dx.iter_mut().for_each(|dx| dx.fill(0.0));
    }
    let plan = Plan::new(&window, batch, c_out);
    let (channels, per_image) = (plan.channels, plan.tiles.per_image());
    let (in_size, out_size) = (channels * plan.in_plane, c_out * plan.out_plane);
    let u = dx.is_some().then(|| {
        let mut u = Scratch::overwritten(c_out * POINTS * channels);
        weights(w, c_out, channels, &mut u);
        u
    });
    let mut du = dw.is_some().then(|| Scratch::zeroed(c_out * POINTS * channels));
    // v holds V for the weight gradient, then dV for the input gradient.
    let mut v = Scratch::overwritten(channels * POINTS * plan.group_cols());
    let mut dm = Scratch::overwritten(c_out * POINTS * plan.group_cols());
    for first in (0..batch).step_by(plan.group) {
        let images = plan.group.min(batch - first);
        let ld = images * per_image;
        dm[..c_out * POINTS * ld].par_chunks_mut(POINTS * ld).enumerate().for_each_init(
            || Rows::new(&plan.tiles),
            |rows, (co, dm_co)| {
                for j in 0..images {
                    let plane = &dy[(first + j) * out_size + co * plan.out_plane..][..plan.out_plane];
                    output_plane_adjoint(plane, &plan.tiles, dm_co, ld, j * per_image, rows);
                }
            },
        );
        let dm_t = Strided { data: &dm, batch: ld, rs: POINTS * ld, cs: 1 };
        if let Some(du) = du.as_deref_mut() {
            plan.input(x, first, images, &mut v);
            // dU[co][t][c] += sum_j dM[co][t][j] V[c][t][j]: B is V[t] read transposed.
            let v_t = Strided { data: &v, batch: ld, rs: 1, cs: POINTS * ld };
            sgemm_batched(POINTS, c_out, channels, ld, 1.0, dm_t, v_t, 1.0, du, channels, POINTS * channels);
        }
        if let (Some(dx), Some(u)) = (dx.as_deref_mut(), u.as_deref()) {
            // dV[c][t][j] = sum_co U[co][t][c] dM[co][t][j]: A is U[t] read transposed.
            let u_t = Strided { data: u, batch: channels, rs: 1, cs: POINTS * channels };
            sgemm_batched(POINTS, channels, ld, c_out, 1.0, u_t, dm_t, 0.0, &mut v, ld, POINTS * ld);
            let dv = &v;
            // By input channel, each task reading its channel's block of dV in order (as the
            // forward's output transform).
            let planes =
                planes_by_channel(&mut dx[first * in_size..(first + images) * in_size], plan.in_plane, channels);
            planes.into_par_iter().enumerate().for_each_init(
                || Rows::new(&plan.tiles),
                |rows, (c, dx_c)| {
                    let dv_c = &dv[c * POINTS * ld..][..POINTS * ld];
                    for (j, dx_plane) in dx_c.into_iter().enumerate() {
                        input_plane_adjoint(dv_c, &plan.tiles, ld, j * per_image, dx_plane, rows);
                    }
                },
            );
        }
    }
    if let (Some(dw), Some(du)) = (dw, du) {
        weights_adjoint(&du, c_out, channels, dw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::filled;

    fn window(channels: usize, height: usize, width: usize, padding: usize) -> Window {
        Window { channels, height, width, kernel_h: 3, kernel_w: 3, stride: 1, padding }
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    /// A direct convolution of a batch, the definition the transforms must reproduce.
    fn direct(x: &[f32], w: &[f32], g: &Window, batch: usize, c_out: usize) -> Vec<f32> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut y = vec![0.0f32; batch * c_out * oh * ow];
        for n in 0..batch {
            for co in 0..c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0f64;
                        for c in 0..g.channels {
                            for ki in 0..3 {
                                for kj in 0..3 {
                                    let iy = (oy + ki) as isize - g.padding as isize;
                                    let ix = (ox + kj) as isize - g.padding as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < g.height && (ix as usize) < g.width {
                                        acc += w[((co * g.channels + c) * 3 + ki) * 3 + kj] as f64
                                            * x[((n * g.channels + c) * g.height + iy as usize) * g.width + ix as usize]
                                                as f64;
                                    }
                                }
                            }
                        }
                        y[((n * c_out + co) * oh + oy) * ow + ox] = acc as f32;
                    }
                }
            }
        }
        y
    }

    /// Shapes that exercise even and odd sizes, paddings 0 to 2, one and several groups.
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 6] = [
        (3, 2, 3, 6, 6, 1),
        (2, 3, 2, 5, 7, 1),
        (4, 2, 2, 4, 4, 0),
        (2, 1, 2, 3, 5, 2),
        (5, 2, 1, 2, 2, 1),
        (600, 2, 3, 2, 2, 1),
    ];

    /// The whole pipeline equals the direct convolution (plus bias).
    #[test]
    fn forward_computes_the_convolution() {
        for &(batch, c, co, h, w, p) in &SHAPES {
            let g = window(c, h, w, p);
            let (x, wt) = (filled(batch * c * h * w, 1), filled(co * c * 9, 2));
            let bias: Vec<f32> = (0..co).map(|i| i as f32 * 0.25).collect();
            let mut y = vec![f32::NAN; batch * co * g.out_h() * g.out_w()];
            conv_forward(&x, &wt, Some(&bias), &ConvShape { window: g, batch, c_out: co }, &mut y);
            let want = direct(&x, &wt, &g, batch, co);
            let plane = g.out_h() * g.out_w();
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                let b = b + bias[i / plane % co];
                assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{g:?} at {i}: {a} vs {b}");
            }
        }
    }

    /// The backward pass is the adjoint of the forward one: <dy, conv(x, w)> is bilinear, so
    /// <dx, x> and <dw, w> must both equal it.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for &(batch, c, co, h, w, p) in &SHAPES {
            let g = window(c, h, w, p);
            let (x, wt) = (filled(batch * c * h * w, 3), filled(co * c * 9, 4));
            let mut y = vec![0.0; batch * co * g.out_h() * g.out_w()];
            let shape = ConvShape { window: g, batch, c_out: co };
            conv_forward(&x, &wt, None, &shape, &mut y);
            let dy = filled(y.len(), 5);
            let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
            conv_backward(&x, &wt, &dy, &shape, ConvGrads { dx: Some(&mut dx), store_dx: false, dw: Some(&mut dw) });
            let want = dot(&y, &dy);
            for (name, got) in [("dx", dot(&dx, &x)), ("dw", dot(&dw, &wt))] {
                assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "{name} {g:?}: {got} vs {want}");
            }
        }
    }

    /// <T x, y> = <x, T* y> for the weight transform and its adjoint.
    #[test]
    fn weight_transform_adjoint_is_adjoint() {
        let (co, c) = (3, 5);
        let wt = filled(co * c * 9, 6);
        let mut u = vec![0.0; POINTS * co * c];
        weights(&wt, co, c, &mut u);
        let du = filled(u.len(), 7);
        let mut dw = vec![0.0; wt.len()];
        weights_adjoint(&du, co, c, &mut dw);
        let (lhs, rhs) = (dot(&u, &du), dot(&wt, &dw));
        assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "weights: {lhs} vs {rhs}");
    }
}
