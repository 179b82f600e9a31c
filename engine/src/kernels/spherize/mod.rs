//! The spherization layer's numerical kernel (Kim & Kim, "Spherization Layer:
//! Representation Using Only Angles", NeurIPS 2022), forward and backward, in O(n) per vector.
//!
//! A vector `z` in R^n becomes a point `s` in R^(n+1) on the sphere of radius `r`:
//!
//! ```text
//! phi_i = (pi/2 - phi_L) * sigmoid(alpha z_i) + phi_L          (angles in [phi_L, pi/2])
//! P_1 = r,  P_{k+1} = P_k sin(phi_k)                           (running product of sines)
//! s_k = P_k cos(phi_k)  for k <= n,   s_{n+1} = P_{n+1}
//! ```
//!
//! so `|s| = r` exactly and every `s_k >= 0`. The official code evaluates this with
//! logarithms and two (n+1) x (n+1) matrix products; the running product is exact and O(n).
//!
//! # How it is fast
//! * **Lanes.** The running product is a chain along `k`, so one vector alone cannot use SIMD.
//!   We process `LANES` (16) vectors side by side: a *tile* is stored as `[n][LANES]`, and every
//!   step of the chain is one SIMD operation across the lanes. The row form `[rows, n]` is
//!   transposed into tiles (and back); the channel form `[batch, n, hw]` already has its lanes
//!   contiguous along `hw` and is copied. Both forms share one core routine per direction;
//!   the row form is simply the channel form with `hw = 1`.
//! * **No libm in the inner loop.** `sin`, `cos` and `exp` are branch-free f32 polynomials
//!   (about 1 ulp; libm would cost 10-20 ns a call). The angles lie in `[0, pi/2]`, so
//!   sin/cos need no range reduction: each lane evaluates them on whichever of `phi` and
//!   `pi/2 - phi` is at most `pi/4`, which keeps both `sin(phi)` and `cos(phi)` *relatively*
//!   accurate at both ends (`phi` near `phi_L` ~ 1e-6 for n = 1, `phi` near `pi/2` for
//!   saturated inputs). For n >= 40 (delta = 1e-6) every angle is above `pi/4` and a cheaper
//!   specialization runs (see `scalar::angle`).
//! * **An exact running product.** Near `pi/2` the product is carried in two parts so that
//!   `|s|` stays `r` to ~1e-7 relative however long it is (see `scalar::Angle`).
//! * **Nothing computed twice.** The forward pass of a training step keeps, per coordinate,
//!   sin phi, cos phi and P_k sig (1 - sig) (three floats, in tile order: see [`saved_len`]);
//!   the backward pass then only runs its reverse sweep. Without them (the plain entry points)
//!   the backward recomputes them with the same code, so both give bit-identical gradients.
//! * **Threads.** Above `PAR_MIN_ELEMS` inputs, fixed groups (whole images, at least one
//!   tile's worth: 16 rows in the row form) are spread over the rayon pool and the calling
//!   thread. The parameter gradients are summed
//!   per group (f32 within blocks of 64 coordinates, f64 above) and the group partials are
//!   added in group order, so they are bit-identical for any number of threads.
//!
//! # Accuracy (f32 in and out)
//! `|s| = r` within ~1e-7 r for any n, every `s_k >= 0`, and `s_{n+1} >= r delta (1 - 1e-5)`
//! unless phi_L is capped (then the bound does not hold even in exact arithmetic). Against the
//! float64 golden vectors the outputs agree to ~2e-7 r and the gradients to ~1e-6 relative.
//!
//! # Non-finite inputs
//! A NaN or ±inf in `z_j` makes `s_j ..= s_{n+1}` of that vector NaN (they are the coordinates
//! that depend on `z_j`), and the gradients that depend on it NaN; nothing panics. (±inf is
//! treated as an error, like NaN, rather than silently saturating the sigmoid.) NaN `alpha`
//! or `radius` give NaN everywhere. Only slice lengths that disagree with the shapes panic.

use std::cell::RefCell;
use std::f64::consts::FRAC_PI_2;
use std::sync::Mutex;

mod layout;
mod scalar;

use layout::{pack, unpack};
use scalar::{angle, fma, Consts};

/// Number of vectors processed side by side (16 f32 = one AVX-512 register, two AVX2 ones).
pub(crate) const LANES: usize = 16;

/// Inputs (`rows * n` or `batch * n * hw`) at or above which work is spread over rayon threads.
pub(crate) const PAR_MIN_ELEMS: usize = 16_384;

/// Pixels (lanes) at least per parallel work item: one tile, so that small `hw` (1 for the
/// row form) groups several images, while larger images are one group each.
const GROUP_LANES: usize = LANES;

/// `|alpha z| / ln 2` is clamped here before computing `2^-|alpha z / ln 2| = e^-|alpha z|`:
/// 2^-115 is still a normal f32, and the sigmoid is exactly 0 or 1 in f32 long before that,
/// so the clamp changes no output (only a slope sig (1 - sig) below 2.5e-35 becomes 2.5e-35).
const W_MAX: f32 = 115.0;

/// One SIMD vector's worth of lanes: coordinate `k` of `LANES` different vectors.
type Lane = [f32; LANES];

/// Lower angle bound phi_L = asin(delta^(1/n)), capped at (pi/2)(1 - 0.01); computed in f64.
pub fn lower_angle(n: usize, delta: f64) -> f64 {
    let cap = FRAC_PI_2 * (1.0 - 0.01);
    let phi = delta.powf(1.0 / n as f64).asin();
    // Written as a comparison (not `f64::min`) so that a NaN delta stays NaN.
    if phi > cap {
        cap
    } else {
        phi
    }
}

/// The layer's parameters: scaling `alpha`, radius `r` (> 0) and the lower angle bound phi_L.
#[derive(Clone, Copy, Debug)]
pub struct SphereParams {
    /// Pre-activation scale alpha ("scaling").
    pub alpha: f32,
    /// Sphere radius r.
    pub radius: f32,
    /// Lower angle bound phi_L, usually from [`lower_angle`].
    pub phi_lower: f64,
}

/// z: [rows, n] row-major -> out: [rows, n+1]
pub fn forward_rows(z: &[f32], n: usize, p: SphereParams, out: &mut [f32]) {
    assert_eq!(z.len() % n.max(1), 0, "forward_rows: z.len() is not a multiple of n");
    // n = 0: each output row is the single coordinate r, so the rows are counted in `out`.
    let rows = z.len().checked_div(n).unwrap_or(out.len());
    forward_channels(z, rows, n, 1, p, out);
}

/// grad_out: [rows, n+1]; ADDS dL/dz into grad_z ([rows, n]); returns (dL/dalpha, dL/dradius) summed over rows.
pub fn backward_rows(z: &[f32], n: usize, p: SphereParams, grad_out: &[f32], grad_z: &mut [f32]) -> (f32, f32) {
    assert_eq!(grad_out.len() % (n + 1), 0, "backward_rows: grad_out.len() is not a multiple of n+1");
    let rows = grad_out.len() / (n + 1);
    backward_channels(z, rows, n, 1, p, grad_out, grad_z)
}

/// Channel-wise form for feature maps: z [batch, n, hw] (NCHW with n = C) -> out [batch, n+1, hw]: each pixel's channel vector spherized.
pub fn forward_channels(z: &[f32], batch: usize, n: usize, hw: usize, p: SphereParams, out: &mut [f32]) {
    forward(z, batch, n, hw, p, out, &mut []);
}

/// Floats that [`forward_channels_saving`] keeps for [`backward_channels_saved`]: sin phi,
/// cos phi and P_k sig (1 - sig) of every coordinate, padded to whole tiles of `LANES` vectors.
pub fn saved_len(batch: usize, n: usize, hw: usize) -> usize {
    let g = images_per_group(hw);
    let tiles = batch / g * (g * hw).div_ceil(LANES) + (batch % g * hw).div_ceil(LANES);
    tiles * 3 * n * LANES
}

/// [`forward_channels`] that also fills `saved` ([`saved_len`] floats) for the backward pass.
pub fn forward_channels_saving(
    z: &[f32],
    batch: usize,
    n: usize,
    hw: usize,
    p: SphereParams,
    out: &mut [f32],
    saved: &mut [f32],
) {
    assert_eq!(saved.len(), saved_len(batch, n, hw), "forward: saved must hold saved_len(batch, n, hw) floats");
    forward(z, batch, n, hw, p, out, saved);
}

/// The forward pass; `saved` is empty (keep nothing) or [`saved_len`] floats.
fn forward(z: &[f32], batch: usize, n: usize, hw: usize, p: SphereParams, out: &mut [f32], saved: &mut [f32]) {
    assert_eq!(z.len(), batch * n * hw, "forward: z must hold batch * n * hw values");
    assert_eq!(out.len(), batch * (n + 1) * hw, "forward: out must hold batch * (n+1) * hw values");
    if out.is_empty() {
        return;
    }
    if n == 0 {
        // No angles: every vector is the single coordinate s_1 = P_1 = r.
        out.fill(p.radius);
        return;
    }
    let c = Consts::new(p);
    // A group = a fixed number of whole images, so each work item owns contiguous slices.
    let g = images_per_group(hw);
    let (z_len, out_len) = (g * n * hw, g * (n + 1) * hw);
    let saved = saved_by_group_mut(saved, batch.div_ceil(g), g, n, hw);
    let groups: Vec<_> = z.chunks(z_len).zip(out.chunks_mut(out_len)).zip(saved).collect();
    map_groups(groups, z.len() >= PAR_MIN_ELEMS, |((zg, og), sg)| forward_group(zg, og, n, hw, &c, sg));
}

/// Floats of saved data per group of `g` images (the last group may hold fewer).
fn saved_per_group(g: usize, n: usize, hw: usize) -> usize {
    (g * hw).div_ceil(LANES) * 3 * n * LANES
}

/// `saved` split by group of `g` images (`groups` of them), or empty slices when nothing is saved.
fn saved_by_group_mut(saved: &mut [f32], groups: usize, g: usize, n: usize, hw: usize) -> Vec<&mut [f32]> {
    if saved.is_empty() {
        return (0..groups).map(|_| Default::default()).collect();
    }
    saved.chunks_mut(saved_per_group(g, n, hw)).collect()
}

/// Read-only [`saved_by_group_mut`].
fn saved_by_group(saved: &[f32], groups: usize, g: usize, n: usize, hw: usize) -> Vec<&[f32]> {
    if saved.is_empty() {
        return vec![&[]; groups];
    }
    saved.chunks(saved_per_group(g, n, hw)).collect()
}

/// Backward of [`forward_channels`]: ADDS dL/dz into grad_z ([batch, n, hw]); returns (dL/dalpha, dL/dradius) summed over all pixels.
pub fn backward_channels(
    z: &[f32],
    batch: usize,
    n: usize,
    hw: usize,
    p: SphereParams,
    grad_out: &[f32],
    grad_z: &mut [f32],
) -> (f32, f32) {
    backward(z, batch, n, hw, p, grad_out, grad_z, &[])
}

/// [`backward_channels`] from what [`forward_channels_saving`] kept of the same z and
/// parameters: the same gradients, bit for bit, without recomputing the angles.
#[allow(clippy::too_many_arguments)]
pub fn backward_channels_saved(
    z: &[f32],
    batch: usize,
    n: usize,
    hw: usize,
    p: SphereParams,
    grad_out: &[f32],
    grad_z: &mut [f32],
    saved: &[f32],
) -> (f32, f32) {
    assert_eq!(saved.len(), saved_len(batch, n, hw), "backward: saved must hold saved_len(batch, n, hw) floats");
    backward(z, batch, n, hw, p, grad_out, grad_z, saved)
}

/// The backward pass; `saved` is empty (recompute the angles) or [`saved_len`] floats.
#[allow(clippy::too_many_arguments)]
fn backward(
    z: &[f32],
    batch: usize,
    n: usize,
    hw: usize,
    p: SphereParams,
    grad_out: &[f32],
    grad_z: &mut [f32],
    saved: &[f32],
) -> (f32, f32) {
    assert_eq!(z.len(), batch * n * hw, "backward: z must hold batch * n * hw values");
    assert_eq!(grad_z.len(), z.len(), "backward: grad_z must have the shape of z");
    assert_eq!(grad_out.len(), batch * (n + 1) * hw, "backward: grad_out must hold batch * (n+1) * hw values");
    if grad_out.is_empty() {
        return (0.0, 0.0);
    }
    if n == 0 {
        // s_1 = r, so dL/dr = sum of the upstream gradient; there is no angle, so no dL/dalpha.
        let dr: f64 = grad_out.iter().map(|&g| g as f64).sum();
        return (0.0, dr as f32);
    }
    let c = Consts::new(p);
    let g = images_per_group(hw);
    let (z_len, out_len) = (g * n * hw, g * (n + 1) * hw);
    let saved = saved_by_group(saved, batch.div_ceil(g), g, n, hw);
    let groups: Vec<_> =
        z.chunks(z_len).zip(grad_out.chunks(out_len)).zip(grad_z.chunks_mut(z_len)).zip(saved).collect();
    // One partial per group, in group order whatever the thread count: the final sums below
    // are therefore bit-identical for 1 or many threads.
    let partials =
        map_groups(groups, z.len() >= PAR_MIN_ELEMS, |(((zg, gg), dg), sg)| backward_group(zg, gg, dg, n, hw, &c, sg));
    let (mut d_alpha, mut d_radius) = (0.0f64, 0.0f64);
    for (a, r) in partials {
        d_alpha += a;
        d_radius += r;
    }
    (d_alpha as f32, d_radius as f32)
}

// ---------------------------------------------------------------------------------------------
// The core: one tile of LANES vectors in [coordinate][lane] layout.
// ---------------------------------------------------------------------------------------------

/// Forward on a tile: `zt` is [n][LANES], writes `st` [n+1][LANES]. With `SAVE`, also
/// writes what the backward pass needs into `keep` [3n][LANES]: sin phi_k, cos phi_k and
/// P_k sig (1 - sig), n lanes each (P_j is only ever needed times sig (1 - sig)).
fn forward_tile<const MIXED: bool, const SAVE: bool>(zt: &[Lane], c: &Consts, st: &mut [Lane], keep: &mut [Lane]) {
    let n = zt.len();
    let (sin, rest) = keep.split_at_mut(if SAVE { n } else { 0 });
    let (cos, weight) = rest.split_at_mut(if SAVE { n } else { 0 });
    // P_k = p + err, one pair per lane: the only loop-carried values, so the angle maths of
    // different k overlap freely.
    let mut p: Lane = [c.radius; LANES];
    let mut err: Lane = [0.0; LANES];
    for (k, (z, s)) in zt.iter().zip(st[..n].iter_mut()).enumerate() {
        // Computed into locals and stored whole: LLVM cannot tell that the rows of `keep`
        // do not overlap, and would not vectorize direct stores.
        let (mut s_row, mut c_row, mut w_row) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
        for l in 0..LANES {
            let a = angle::<MIXED>(z[l], c);
            s[l] = p[l] * a.cos; // s_k = P_k cos(phi_k) (err is below half an ulp of p)
            (s_row[l], c_row[l], w_row[l]) = (a.sin, a.cos, p[l] * a.sig_slope);
            (p[l], err[l]) = a.times_sin(p[l], err[l]); // P_{k+1} = P_k sin(phi_k)
        }
        if SAVE {
            (sin[k], cos[k], weight[k]) = (s_row, c_row, w_row);
        }
    }
    st[n] = p; // s_{n+1} = P_{n+1} (err is below half an ulp of p)
}

/// Backward on a tile: `zt` [n][LANES] is overwritten with dL/dz, `gt` [n+1][LANES] is
/// dL/ds, `keep` [3n][LANES] what [`forward_tile`] saved. Returns per lane (dL/dalpha, dL/dr).
///
/// Derivation (one vector, g = dL/ds, P_k = r prod_{i<k} sin phi_i as in the module docs).
/// phi_j enters s_j = P_j cos phi_j directly and every later s_k (k > j) through the factor
/// sin phi_j inside P_k, so
///
/// ```text
/// dL/dphi_j = -g_j P_j sin phi_j + cot(phi_j) T_j,      T_j = sum_{k>j} g_k s_k.
/// ```
///
/// Dividing by sin (cot) is what we avoid. Every s_k with k > j carries the factor P_{j+1},
/// so define U_j = T_j / P_{j+1}, which needs no division because it obeys
///
/// ```text
/// U_n     = g_{n+1}                                   (T_n = g_{n+1} P_{n+1})
/// U_{j-1} = T_{j-1} / P_j = (g_j P_j cos phi_j + P_{j+1} U_j) / P_j
///         = g_j cos phi_j + sin phi_j U_j
/// ```
///
/// and then cot(phi_j) T_j = cot(phi_j) P_j sin(phi_j) U_j = P_j cos(phi_j) U_j, i.e.
///
/// ```text
/// dL/dphi_j = P_j (cos phi_j U_j - g_j sin phi_j).
/// ```
///
/// The chain rule through phi_j = span sigmoid(alpha z_j) + phi_L gives
/// dL/dz_j = dL/dphi_j phi'_j alpha and dL/dalpha = sum_j dL/dphi_j phi'_j z_j with
/// phi'_j = span sig (1 - sig). Finally r scales every s_k, so
/// dL/dr = sum_k g_k s_k / r = T_0 / P_1 = U_0: the recursion's last value, no division.
// Not inlined: inlined into `backward_group`'s loop (which the compiler did or did not do
// depending on how the crate was split into codegen units) it ran 1.7x slower.
#[inline(never)]
fn backward_tile(zt: &mut [Lane], gt: &[Lane], keep: &[Lane], c: &Consts) -> ([f64; LANES], [f64; LANES]) {
    let n = zt.len();
    let (sin, rest) = keep.split_at(n);
    let (cos, weight) = rest.split_at(n);

    // The reverse sweep: the suffix recursion for U_j (see above), in blocks of ACC_BLOCK
    // coordinates: dL/dalpha is summed in f32 within a block and in f64 across blocks, which
    // is as accurate as f64 throughout for any realistic n and keeps the loop in f32 SIMD.
    // (U is plain f32: its rounding perturbs only the gradients, by ~1e-7 relative per step.)
    const ACC_BLOCK: usize = 64;
    let mut u: Lane = gt[n];
    let mut d_alpha = [0.0f64; LANES];
    for ((((zb, gb), sb), cb), wb) in zt
        .rchunks_mut(ACC_BLOCK)
        .zip(gt[..n].rchunks(ACC_BLOCK))
        .zip(sin.rchunks(ACC_BLOCK))
        .zip(cos.rchunks(ACC_BLOCK))
        .zip(weight.rchunks(ACC_BLOCK))
    {
        let mut acc: Lane = [0.0; LANES];
        for ((((z, g), sn), cs), wt) in zb.iter_mut().zip(gb).zip(sb).zip(cb).zip(wb).rev() {
            for l in 0..LANES {
                // q = dL/dphi_j sig (1 - sig) = P_j (cos_j U_j - g_j sin_j) sig (1 - sig),
                // which is dL/dt_j / span for t_j = alpha z_j.
                let q = wt[l] * fma(cs[l], u[l], -(g[l] * sn[l]));
                acc[l] = fma(q, z[l], acc[l]); // dL/dalpha / span += q z_j
                z[l] = c.alpha_span * q; // dL/dz_j replaces z_j, which is no longer needed
                u[l] = fma(sn[l], u[l], g[l] * cs[l]); // U_{j-1}
            }
        }
        for l in 0..LANES {
            d_alpha[l] += acc[l] as f64 * c.span as f64;
        }
    }
    (d_alpha, u.map(|v| v as f64)) // U_0 = dL/dr
}

/// `job` applied to every group, results in group order. With `parallel`, the calling thread
/// and up to (pool size - 1) rayon tasks take groups one at a time, the caller from the front
/// of the batch and the tasks from its back.
///
/// Why not a plain `par_iter`: called from outside the pool, it parks the caller until the
/// pool is done, and waking workers and caller costs ~10 us per call (a tenth of the whole
/// [256, 300] forward + backward). Here the caller starts at once, and if a worker is slow to
/// wake (a busy machine) the caller simply takes its groups too. Which thread runs a group
/// never changes its result, so the results are the same for any number of threads.
fn map_groups<T: Send, R: Send>(groups: Vec<T>, parallel: bool, job: impl Fn(T) -> R + Sync) -> Vec<R> {
    let helpers = if parallel { rayon::current_num_threads().min(groups.len()).saturating_sub(1) } else { 0 };
    if helpers == 0 {
        return groups.into_iter().map(job).collect();
    }
    let count = groups.len();
    // One uncontended lock per group (a handful to a few hundred per call): the safe way to
    // hand each thread its group's slices and to collect the results in group order.
    let inputs: Vec<Mutex<Option<T>>> = groups.into_iter().map(|g| Mutex::new(Some(g))).collect();
    let outputs: Vec<Mutex<Option<R>>> = (0..count).map(|_| Mutex::new(None)).collect();
    // The range of groups not yet taken: the caller takes from its front, the helpers
    // from the back, so that on two threads each keeps the same half of the batch from the
    // forward to the backward pass, and finds that half's data still in its own cache.
    let remaining = Mutex::new(0..count);
    let work = |from_front: bool| loop {
        let i = {
            let mut r = lock(&remaining);
            match if from_front { r.next() } else { r.next_back() } {
                Some(i) => i,
                None => break,
            }
        };
        let group = lock(&inputs[i]).take().expect("each group is taken once");
        let result = job(group);
        *lock(&outputs[i]) = Some(result);
    };
    rayon::in_place_scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|_| work(false));
        }
        work(true);
    });
    outputs.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every group ran")).collect()
}

/// Locks a mutex, ignoring poisoning (a panicking job is re-raised by the scope anyway).
fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Images per work item: whole images, at least GROUP_LANES pixels.
fn images_per_group(hw: usize) -> usize {
    GROUP_LANES.div_ceil(hw.max(1))
}

thread_local! {
    /// Per-thread tile scratch, reused across calls: a backward tile of n = 4096 needs
    /// 1.3 MB, and fresh large allocations would be zero pages faulted in on every call.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The first `len` lanes of `buf` from a 64-byte boundary: a lane is then one cache line, and
/// no SIMD load or store of a tile straddles two lines (split accesses cost twice as much).
fn aligned_lanes(buf: &mut Vec<f32>, len: usize) -> &mut [Lane] {
    let floats = (len + 1) * LANES; // one lane of slack to reach the boundary
    if buf.len() < floats {
        buf.resize(floats, 0.0);
    }
    let skip = buf.as_ptr().align_offset(64).min(LANES - 1);
    buf[skip..skip + len * LANES].as_chunks_mut::<LANES>().0
}

/// Runs `f` on `len` lanes of this thread's scratch (a fresh buffer if it is somehow in use).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Lane]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(aligned_lanes(&mut buf, len)),
        Err(_) => f(aligned_lanes(&mut Vec::new(), len)),
    })
}

/// [`forward_tile`], `MIXED` chosen from the constants.
fn forward_tile_for<const SAVE: bool>(zt: &[Lane], c: &Consts, st: &mut [Lane], keep: &mut [Lane]) {
    if c.mixed {
        forward_tile::<true, SAVE>(zt, c, st, keep);
    } else {
        forward_tile::<false, SAVE>(zt, c, st, keep);
    }
}

/// Forward on a group of whole images: z [images, n, hw] -> out [images, n+1, hw]; `saved`
/// is empty or the group's [`saved_per_group`] floats, filled tile by tile.
fn forward_group(z: &[f32], out: &mut [f32], n: usize, hw: usize, c: &Consts, saved: &mut [f32]) {
    let pixels = z.len() / n;
    let (saved, _) = saved.as_chunks_mut::<LANES>();
    with_scratch(2 * n + 1, |buf| {
        let (zt, st) = buf.split_at_mut(n);
        for (t, q0) in (0..pixels).step_by(LANES).enumerate() {
            let m = LANES.min(pixels - q0);
            pack(z, n, hw, q0, m, zt);
            if saved.is_empty() {
                forward_tile_for::<false>(zt, c, st, &mut []);
            } else {
                forward_tile_for::<true>(zt, c, st, &mut saved[t * 3 * n..(t + 1) * 3 * n]);
            }
            unpack(st, out, n + 1, hw, q0, m, |d, v| *d = v);
        }
    })
}

/// Backward on a group of whole images; adds into `grad_z`, returns (dL/dalpha, dL/dr) in f64.
/// `saved` is the group's part of what the forward pass kept, or empty: then each tile's
/// angles are recomputed by the forward pass's own code (into scratch), so both ways agree.
fn backward_group(
    z: &[f32],
    grad_out: &[f32],
    grad_z: &mut [f32],
    n: usize,
    hw: usize,
    c: &Consts,
    saved: &[f32],
) -> (f64, f64) {
    let pixels = z.len() / n;
    let (saved, _) = saved.as_chunks::<LANES>();
    // zt, gt, and when recomputing, the forward's output (unused) and the angles.
    let scratch = if saved.is_empty() { 6 * n + 2 } else { 2 * n + 1 };
    with_scratch(scratch, |buf| {
        let (zt, rest) = buf.split_at_mut(n);
        let (gt, rest) = rest.split_at_mut(n + 1);
        let (st, work) = rest.split_at_mut(if saved.is_empty() { n + 1 } else { 0 });
        let (mut d_alpha, mut d_radius) = (0.0f64, 0.0f64);
        for (t, q0) in (0..pixels).step_by(LANES).enumerate() {
            let m = LANES.min(pixels - q0);
            pack(z, n, hw, q0, m, zt);
            pack(grad_out, n + 1, hw, q0, m, gt);
            let keep: &[Lane] = if saved.is_empty() {
                forward_tile_for::<true>(zt, c, st, work);
                work
            } else {
                &saved[t * 3 * n..(t + 1) * 3 * n]
            };
            let (da, dr) = backward_tile(zt, gt, keep, c);
            unpack(zt, grad_z, n, hw, q0, m, |d, v| *d += v);
            // Only real lanes count, in lane order (a fixed order: determinism).
            for l in 0..m {
                d_alpha += da[l];
                d_radius += dr[l];
            }
        }
        (d_alpha, d_radius)
    })
}
