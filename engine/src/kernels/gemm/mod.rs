//! Matrix products, with transposes expressed as strides (no copies).
//!
//! Two back-ends, chosen once at run time: on x86-64 CPUs with AVX-512 our own packed,
//! register-blocked sgemm (`avx512.rs`), because `matrixmultiply` has no AVX-512 kernel and
//! reaches only about 70% of such a CPU's FMA peak; elsewhere `matrixmultiply`. Large products
//! are split into one block of rows or columns of C per thread, each an independent serial
//! product, so every element is summed in the same order whatever the thread count.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

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

/// The back-end [`sgemm`] uses on this CPU: `"avx512"` or `"matrixmultiply"`.
pub fn sgemm_backend() -> &'static str {
    if use_avx512() {
        "avx512"
    } else {
        "matrixmultiply"
    }
}

/// Whether our AVX-512 kernels run here; `SPH_GEMM=matrixmultiply` forces the portable path,
/// to compare the two on one machine.
fn use_avx512() -> bool {
    use std::sync::OnceLock;
    static CHOICE: OnceLock<bool> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            avx512::available() && !std::env::var("SPH_GEMM").is_ok_and(|v| v == "matrixmultiply")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Strides (row, column) of `op(X)` for a row-major X whose `op(X)` is `rows x cols`.
fn strides(t: Trans, rows: usize, cols: usize) -> (isize, isize) {
    match t {
        Trans::N => (cols as isize, 1),
        Trans::T => (1, rows as isize),
    }
}

/// An operand by pointer and strides: element (i, j) at `ptr + i*rs + j*cs`.
#[derive(Clone, Copy)]
struct Operand {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl Operand {
    /// The operand starting `rows` rows and `cols` columns further on.
    fn offset(self, rows: usize, cols: usize) -> Self {
        // wrapping: only dereferenced inside the bounds the callers assert.
        Operand { ptr: self.ptr.wrapping_offset(rows as isize * self.rs + cols as isize * self.cs), ..self }
    }
}

/// The raw pointers of one product, shared by the tasks of a parallel split.
#[derive(Clone, Copy)]
struct Product {
    a: Operand,
    b: Operand,
    c: *mut f32,
    ldc: usize,
}

// SAFETY: a Product only lives for one `sgemm` call, over buffers the caller borrows for that
// call; A and B are only read and the tasks write disjoint blocks of C (see `sgemm`).
unsafe impl Send for Product {}
// SAFETY: as for Send: shared access only reads A and B or writes disjoint blocks of C.
unsafe impl Sync for Product {}

/// `C[m,n] = alpha * A @ B + beta * C` on the calling thread, through the chosen back-end.
///
/// # Safety
/// A, B and C must be valid for every element the shapes and strides reach; C must not
/// overlap A or B.
unsafe fn serial_product(p: Product, m: usize, n: usize, k: usize, alpha: f32, beta: f32) {
    #[cfg(target_arch = "x86_64")]
    if use_avx512() {
        return avx512::sgemm(m, n, k, alpha, p.a, p.b, beta, p.c, p.ldc);
    }
    portable_product(p, m, n, k, alpha, beta)
}

/// [`serial_product`] through `matrixmultiply`, whatever the CPU.
///
/// # Safety
/// As for [`serial_product`].
unsafe fn portable_product(p: Product, m: usize, n: usize, k: usize, alpha: f32, beta: f32) {
    let (a, b) = (p.a, p.b);
    matrixmultiply::sgemm(m, k, n, alpha, a.ptr, a.rs, a.cs, b.ptr, b.rs, b.cs, beta, p.c, p.ldc as isize, 1);
}

/// The product of row-major slices, checked, as raw operands.
#[allow(clippy::too_many_arguments)]
fn product(ta: Trans, tb: Trans, m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) -> Product {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "sgemm: buffers too small");
    let (rs, cs) = strides(ta, m, k);
    let a = Operand { ptr: a.as_ptr(), rs, cs };
    let (rs, cs) = strides(tb, k, n);
    let b = Operand { ptr: b.as_ptr(), rs, cs };
    Product { a, b, c: c.as_mut_ptr(), ldc: n }
}

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
    let p = product(ta, tb, m, n, k, a, b, c);
    // SAFETY: `product` checked that the slices hold every element the strides reach; C is a
    // distinct &mut slice.
    unsafe { serial_product(p, m, n, k, alpha, beta) }
}

/// `C[m,n] = alpha * op(A) @ op(B) + beta * C`, split over rayon threads when large, into one
/// block of whole micro-kernel tiles per thread (see `split`).
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
    let p = product(ta, tb, m, n, k, a, b, c);
    let Split { rows: split_rows, block } = split(m, n, threads, tile());
    let extent = if split_rows { m } else { n };
    let blocks = extent.div_ceil(block);
    (0..blocks).into_par_iter().for_each(move |i| {
        let p = p;
        let start = i * block;
        let len = block.min(extent - start);
        // SAFETY: block i writes only rows (or columns) start..start+len of C, disjoint from
        // every other block; A and B are only read; `product` checked the bounds.
        unsafe {
            if split_rows {
                let part = Product { a: p.a.offset(start, 0), c: p.c.add(start * p.ldc), ..p };
                serial_product(part, len, n, k, alpha, beta);
            } else {
                let part = Product { b: p.b.offset(0, start), c: p.c.add(start), ..p };
                serial_product(part, m, len, k, alpha, beta);
            }
        }
    });
}

/// Rows and columns of one micro-kernel tile of the back-end in use.
fn tile() -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    if use_avx512() {
        return (avx512::MR, avx512::NR);
    }
    // Multiples of matrixmultiply's f32 tiles.
    (16, 32)
}

/// How [`sgemm`] cuts C between threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Split {
    /// Blocks of rows (each packs all of B again) rather than of columns (all of A again).
    rows: bool,
    /// Rows or columns per block: a whole number of tiles.
    block: usize,
}

/// The cut of an `m x n` C into one block per thread that leaves the busiest thread the fewest
/// `(mr, nr)` tiles: a tile costs the same whether full or an edge, so 128 rows on 2 threads as
/// 96 + 32 rows (8 and 3 tiles of 12) take a third longer than 72 + 56. Ties go to rows when C
/// is taller than wide, where packing B again costs less than packing A again.
fn split(m: usize, n: usize, threads: usize, (mr, nr): (usize, usize)) -> Split {
    let (row_tiles, col_tiles) = (m.div_ceil(mr), n.div_ceil(nr));
    let busiest_by_rows = row_tiles.div_ceil(threads) * col_tiles;
    let busiest_by_cols = row_tiles * col_tiles.div_ceil(threads);
    if busiest_by_rows < busiest_by_cols || (busiest_by_rows == busiest_by_cols && m >= n) {
        Split { rows: true, block: row_tiles.div_ceil(threads) * mr }
    } else {
        Split { rows: false, block: col_tiles.div_ceil(threads) * nr }
    }
}

/// A batch of matrices read through strides: element (i, j) of matrix `t` is
/// `data[t * batch + i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    /// The storage of every matrix of the batch.
    pub data: &'a [f32],
    /// Distance between the first elements of consecutive matrices.
    pub batch: usize,
    /// Distance between rows.
    pub rs: usize,
    /// Distance between columns.
    pub cs: usize,
}

impl Strided<'_> {
    /// The operand of matrix `t` (a `rows x cols` matrix), after checking that it lies in `data`
    /// (an empty one is never read).
    fn operand(&self, t: usize, rows: usize, cols: usize) -> Operand {
        let (rs, cs) = (self.rs as isize, self.cs as isize);
        if rows == 0 || cols == 0 {
            return Operand { ptr: self.data.as_ptr(), rs, cs };
        }
        let last = t * self.batch + (rows - 1) * self.rs + (cols - 1) * self.cs;
        assert!(last < self.data.len(), "sgemm_batched: operand {t} reaches {last}, beyond {}", self.data.len());
        Operand { ptr: self.data[t * self.batch..].as_ptr(), rs, cs }
    }
}

/// `C_t = alpha * A_t @ B_t + beta * C_t` for `t` in `0..count`: `A_t` is `m x k`, `B_t` `k x n`,
/// `C_t` row-major with leading dimension `ldc`, starting at `c[t * c_batch]`. The products run
/// in parallel, each on one thread (so results do not depend on the thread count). The
/// matrices C_t must not overlap: either their rows interleave (`n <= c_batch` and
/// `count * c_batch <= ldc`) or they follow one another (`c_batch >= (m - 1) * ldc + n`).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    count: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Strided,
    b: Strided,
    beta: f32,
    c: &mut [f32],
    c_batch: usize,
    ldc: usize,
) {
    if count == 0 || m == 0 || n == 0 {
        return;
    }
    let interleaved = n <= c_batch && count * c_batch <= ldc;
    let blocked = c_batch >= (m - 1) * ldc + n;
    assert!(n <= ldc && (count == 1 || interleaved || blocked), "sgemm_batched: the C matrices overlap");
    assert!((count - 1) * c_batch + (m - 1) * ldc + n <= c.len(), "sgemm_batched: C too small");
    let operands: Vec<(Operand, Operand)> = (0..count).map(|t| (a.operand(t, m, k), b.operand(t, k, n))).collect();
    let c_ptr = c.as_mut_ptr();
    let products: Vec<Product> = operands
        .into_iter()
        .enumerate()
        // SAFETY: `t * c_batch` is within `c`, checked above.
        .map(|(t, (a, b))| Product { a, b, c: unsafe { c_ptr.add(t * c_batch) }, ldc })
        .collect();
    let run = |p: &Product| {
        // SAFETY: the operands were checked to lie in their slices, the C matrices lie in `c`
        // and do not overlap one another (checked above), and C is a distinct &mut slice.
        unsafe { serial_product(*p, m, n, k, alpha, beta) }
    };
    if rayon::current_num_threads() == 1 || count * m * n * k < PARALLEL_MIN_MACS {
        products.iter().for_each(run);
    } else {
        products.par_iter().for_each(run);
    }
}

/// `sgemm_serial` through `matrixmultiply`, whatever the CPU: the reference our kernel is tested against.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
fn sgemm_portable(
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
    let p = product(ta, tb, m, n, k, a, b, c);
    // SAFETY: `product` checked the bounds; C is a distinct &mut slice.
    unsafe { portable_product(p, m, n, k, alpha, beta) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::filled;

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

    /// Our AVX-512 kernel against `matrixmultiply` (the portable path it replaces), over shapes
    /// that hit every edge: partial MR/NR tiles, several KC/MC/NC blocks (of both NC sizes), k = 1, all transposes,
    /// alpha and beta. Skipped (with a line saying so) on CPUs without AVX-512.
    #[test]
    fn avx512_matches_matrixmultiply() {
        if sgemm_backend() == "avx512" {
            let shapes = [
                (1, 1, 1),
                (12, 32, 1),
                (13, 33, 7),
                (5, 70, 300),
                (150, 31, 257),
                (290, 2100, 40),
                (37, 4, 520),
                (100, 1100, 30),
            ];
            for &(m, n, k) in &shapes {
                let (a, b, c0) = (filled(m * k, 1), filled(k * n, 2), filled(m * n, 3));
                for ta in [Trans::N, Trans::T] {
                    for tb in [Trans::N, Trans::T] {
                        for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                            let mut want = c0.clone();
                            sgemm_portable(ta, tb, m, n, k, alpha, &a, &b, beta, &mut want);
                            for parallel in [false, true] {
                                let mut got = c0.clone();
                                if parallel {
                                    sgemm(ta, tb, m, n, k, alpha, &a, &b, beta, &mut got);
                                } else {
                                    sgemm_serial(ta, tb, m, n, k, alpha, &a, &b, beta, &mut got);
                                }
                                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                                    assert!(
                                        (g - w).abs() <= 1e-4 * (k as f32).sqrt() * (1.0 + w.abs()),
                                        "{ta:?}{tb:?} {m}x{n}x{k} alpha {alpha} beta {beta} at {i}: {g} vs {w}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        } else {
            eprintln!("SKIPPED avx512_matches_matrixmultiply: this CPU has no AVX-512");
        }
    }

    /// beta = 0 overwrites C without reading it (NaN in C must not leak); k = 0 and alpha = 0
    /// only scale C by beta.
    #[test]
    fn beta_zero_ignores_c_and_empty_products_scale_c() {
        let (m, n, k) = (13, 40, 9);
        let (a, b) = (filled(m * k, 4), filled(k * n, 5));
        let want = naive(Trans::N, Trans::N, m, n, k, &a, &b);
        for c in [vec![f32::NAN; m * n], vec![3.0; m * n]] {
            let mut got = c;
            sgemm(Trans::N, Trans::N, m, n, k, 1.0, &a, &b, 0.0, &mut got);
            assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-4), "beta 0 must ignore C");
        }
        let mut c = vec![2.0; m * n];
        sgemm(Trans::N, Trans::N, m, n, 0, 1.0, &[], &[], 0.5, &mut c);
        assert!(c.iter().all(|&v| v == 1.0), "k = 0 scales C by beta");
        sgemm(Trans::N, Trans::N, m, n, k, 0.0, &a, &b, 0.0, &mut c);
        assert!(c.iter().all(|&v| v == 0.0), "alpha = 0 and beta = 0 zero C");
    }

    /// On 2 threads, the busiest thread of the paper's products (LeNet's 128x400x120 and
    /// 128x120x84, the kernel benches' shapes) gets at most an even share of the 12 x 32 tiles
    /// plus one line of tiles (what a cut along one direction can miss by); a cut into 48-row
    /// blocks gave 128 x 120 as 96 + 32 rows, 32 of 44 tiles on one thread.
    #[test]
    fn split_gives_each_thread_an_even_share_of_tiles() {
        for (m, n) in [(128, 120), (1024, 1024), (128, 512), (256, 500), (128, 84), (300, 520)] {
            let s = split(m, n, 2, (12, 32));
            let (row_tiles, col_tiles) = (m.div_ceil(12), n.div_ceil(32));
            let busiest = if s.rows { s.block / 12 * col_tiles } else { row_tiles * (s.block / 32) };
            assert!(s.block.is_multiple_of(if s.rows { 12 } else { 32 }), "{m}x{n}: whole tiles per block");
            let even = (row_tiles * col_tiles).div_ceil(2);
            assert!(busiest <= even + row_tiles.min(col_tiles), "{m}x{n}: {s:?}, {busiest} tiles of {even}");
        }
    }

    /// The same product on 1 and on 3 threads is bitwise identical (each element of C is summed
    /// in one fixed order, whatever the split).
    #[test]
    fn thread_count_does_not_change_results() {
        let (m, n, k) = (300, 520, 700);
        let (a, b) = (filled(m * k, 6), filled(k * n, 7));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = vec![0.0; m * n];
            pool.install(|| sgemm(Trans::N, Trans::T, m, n, k, 1.0, &a, &b, 0.0, &mut c));
            c
        };
        assert_eq!(run(1), run(3));
    }
}
