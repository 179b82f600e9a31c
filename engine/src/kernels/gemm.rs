//! Matrix products through `matrixmultiply`, with transposes expressed as strides (no copies)
//! and rayon splitting of large products into independent blocks of the output.

use rayon::prelude::*;

/// Whether an operand is used as stored (`N`) or transposed (`T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored, row-major.
    N,
    /// Use the transpose of the stored row-major matrix.
    T,
}

/// Products smaller than this many multiply-adds run on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Strides (row, column) of `op(X)` for a row-major X whose `op(X)` is `rows x cols`.
fn strides(t: Trans, rows: usize, cols: usize) -> (isize, isize) {
    match t {
        Trans::N => (cols as isize, 1),
        Trans::T => (1, rows as isize),
    }
}

/// A raw pointer that may cross threads: each task writes a disjoint block of C.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: a SendPtr is only created in `sgemm` for the duration of one call, over buffers
// the caller borrows for that call; A and B are only read, and the tasks write disjoint
// blocks of C (see the SAFETY comment at the use), so sharing the pointer races nothing.
unsafe impl Send for SendPtr {}
// SAFETY: as for Send: shared access only reads A and B or writes disjoint parts of C.
unsafe impl Sync for SendPtr {}

/// `C[m,n] = alpha * op(A)[m,k] @ op(B)[k,n] + beta * C` on the calling thread.
/// C is row-major and contiguous; A and B are row-major as stored.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_serial(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "sgemm: buffers too small");
    let (rsa, csa) = strides(ta, m, k);
    let (rsb, csb) = strides(tb, k, n);
    // SAFETY: the asserts above keep every index the strides can reach inside the slices.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `C[m,n] = alpha * op(A) @ op(B) + beta * C`, split over rayon threads when large.
///
/// The output is cut into blocks of rows (or of columns when C is wide and short); each
/// block is one independent `matrixmultiply` call, so every element is summed in the same
/// order whatever the thread count.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    let threads = rayon::current_num_threads();
    if threads == 1 || m * n * k < PARALLEL_MIN_MACS {
        return sgemm_serial(ta, tb, m, n, k, alpha, a, b, beta, c);
    }
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "sgemm: buffers too small");
    let (rsa, csa) = strides(ta, m, k);
    let (rsb, csb) = strides(tb, k, n);
    let split_rows = m >= n;
    let extent = if split_rows { m } else { n };
    // Blocks of whole microkernel tiles (multiples of 16), a few per thread for balance.
    let block = extent.div_ceil(threads * 2).next_multiple_of(16).max(16);
    let blocks = extent.div_ceil(block);
    let (pa, pb, pc) = (SendPtr(a.as_ptr() as *mut f32), SendPtr(b.as_ptr() as *mut f32), SendPtr(c.as_mut_ptr()));
    (0..blocks).into_par_iter().for_each(move |i| {
        let (pa, pb, pc) = (pa, pb, pc);
        let start = i * block;
        let len = block.min(extent - start);
        // SAFETY: block i touches only rows (or columns) start..start+len of C, disjoint
        // from every other block; A and B are only read.
        unsafe {
            if split_rows {
                let a0 = pa.0.offset(start as isize * rsa);
                let c0 = pc.0.add(start * n);
                matrixmultiply::sgemm(len, k, n, alpha, a0, rsa, csa, pb.0, rsb, csb, beta, c0, n as isize, 1);
            } else {
                let b0 = pb.0.offset(start as isize * csb);
                let c0 = pc.0.add(start);
                matrixmultiply::sgemm(m, k, len, alpha, pa.0, rsa, csa, b0, rsb, csb, beta, c0, n as isize, 1);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(ta: Trans, tb: Trans, m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let at = |i: usize, p: usize| if ta == Trans::N { a[i * k + p] } else { a[p * m + i] };
        let bt = |p: usize, j: usize| if tb == Trans::N { b[p * n + j] } else { b[j * k + p] };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) as f64 * bt(p, j) as f64).sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn all_transposes_match_naive_product() {
        for &(m, n, k) in &[(3, 5, 7), (130, 70, 150), (20, 300, 200)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            for ta in [Trans::N, Trans::T] {
                for tb in [Trans::N, Trans::T] {
                    let want = naive(ta, tb, m, n, k, &a, &b);
                    let mut got = vec![1.0; m * n];
                    sgemm(ta, tb, m, n, k, 1.0, &a, &b, 0.0, &mut got);
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() < 1e-3 * (1.0 + w.abs()), "{ta:?}{tb:?} {m}x{n}x{k}: {g} vs {w}");
                    }
                }
            }
        }
    }
}
