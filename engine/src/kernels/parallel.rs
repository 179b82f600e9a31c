//! Elementwise loops: plain zips the compiler vectorizes, split over rayon when long.

use rayon::prelude::*;

/// Slices shorter than this run on the calling thread: spawning costs more than it saves.
pub(crate) const PARALLEL_MIN_LEN: usize = 1 << 15;
/// Elements per parallel task (also of the optimizers' updates and `zero_grads`).
pub(crate) const CHUNK: usize = 1 << 14;

/// `out[i] = f(x[i])`.
pub fn map(out: &mut [f32], x: &[f32], f: impl Fn(f32) -> f32 + Sync) {
    assert_eq!(out.len(), x.len());
    let body = |(o, x): (&mut [f32], &[f32])| {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = f(v);
        }
    };
    if out.len() < PARALLEL_MIN_LEN {
        body((out, x));
    } else {
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(body);
    }
}

/// `f(&mut out[i])` for every element (a fill, or adding a constant).
pub fn update(out: &mut [f32], f: impl Fn(&mut f32) + Sync) {
    let body = |o: &mut [f32]| o.iter_mut().for_each(&f);
    if out.len() < PARALLEL_MIN_LEN {
        body(out);
    } else {
        out.par_chunks_mut(CHUNK).for_each(body);
    }
}

/// `acc[i] += f(a[i], b[i])`: the shape of most backward passes.
pub fn accumulate2(acc: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    assert!(acc.len() == a.len() && a.len() == b.len());
    let body = |((o, a), b): ((&mut [f32], &[f32]), &[f32])| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o += f(a, b);
        }
    };
    if acc.len() < PARALLEL_MIN_LEN {
        body(((acc, a), b));
    } else {
        acc.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(b.par_chunks(CHUNK)).for_each(body);
    }
}

/// `out[i] = f(a[i], b[i])`.
pub fn map2(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    assert!(out.len() == a.len() && a.len() == b.len());
    let body = |((o, a), b): ((&mut [f32], &[f32]), &[f32])| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    };
    if out.len() < PARALLEL_MIN_LEN {
        body(((out, a), b));
    } else {
        out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(b.par_chunks(CHUNK)).for_each(body);
    }
}

/// `acc[i] += alpha * x[i]`.
pub fn axpy(acc: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(acc.len(), x.len());
    let body = |(o, x): (&mut [f32], &[f32])| {
        for (o, &v) in o.iter_mut().zip(x) {
            *o += alpha * v;
        }
    };
    if acc.len() < PARALLEL_MIN_LEN {
        body((acc, x));
    } else {
        acc.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(body);
    }
}

/// Sum in f64, in fixed-size pieces added in order, so the result does not depend on threads.
/// Serial below [`PARALLEL_MIN_LEN`] elements, like the other loops here.
pub fn sum(x: &[f32]) -> f64 {
    let piece = |c: &[f32]| sum_f64(c, |v| v as f64);
    if x.len() < PARALLEL_MIN_LEN {
        return x.chunks(CHUNK).map(piece).sum();
    }
    x.par_chunks(CHUNK).map(piece).collect::<Vec<_>>().iter().sum()
}

/// The f64 sum of f(v) over `values`, in eight interleaved partial sums: one running sum is a
/// chain of dependent additions (4 cycles each), eight of them vectorize. The order is fixed by
/// the data alone, so the result does not depend on the thread count.
#[inline(always)]
pub(crate) fn sum_f64(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    // Fixed-size chunks, always inlined: the same build with `chunks_exact` measured CNN-9's
    // batch-norm backward at 29-30 ms instead of 24 (code generation, the sums are the same).
    let (chunks, tail) = values.as_chunks::<8>();
    for chunk in chunks {
        for (acc, &v) in lanes.iter_mut().zip(chunk) {
            *acc += f(v);
        }
    }
    lanes.iter().sum::<f64>() + tail.iter().map(|&v| f(v)).sum::<f64>()
}

/// Per channel of x [n, c, hw]: the f64 sum over the batch and pixels of `per_channel(ch)(v)`.
/// The function is made once per channel, so that what it captures (a channel's mean, say) is
/// a constant of the inner loop rather than an indexed load with a bounds check.
pub(crate) fn channel_sums<F: Fn(f32) -> f64 + Sync>(
    x: &[f32],
    (n, c, hw): (usize, usize, usize),
    per_channel: impl Fn(usize) -> F,
) -> Vec<f64> {
    let fs: Vec<F> = (0..c).map(per_channel).collect();
    let plane = |i: usize, ch: usize| [sum_f64(&x[(i * c + ch) * hw..][..hw], &fs[ch])];
    plane_sums(n, c, hw, plane).into_iter().map(|[s]| s).collect()
}

/// Per channel of a tensor [n, c, hw], the sums `plane(image, channel)` added over the images.
///
/// Read in memory order: tasks of whole images (a fixed number for the shape, so the result
/// does not depend on the thread count), each summing its planes channel by channel, and the
/// tasks' partial sums added in task order. Walking one channel through the batch instead
/// jumps c * hw floats between planes, and the hardware prefetchers restart at every plane:
/// that made batch-norm's statistics wait on memory.
pub(crate) fn plane_sums<const K: usize>(
    n: usize,
    c: usize,
    hw: usize,
    plane: impl Fn(usize, usize) -> [f64; K] + Sync,
) -> Vec<[f64; K]> {
    // At least CHUNK values per task, in whole images.
    let images_per_task = CHUNK.div_ceil((c * hw).max(1)).clamp(1, n.max(1));
    let partials: Vec<Vec<[f64; K]>> = (0..n.div_ceil(images_per_task))
        .into_par_iter()
        .map(|task| {
            let mut sums = vec![[0.0f64; K]; c];
            for i in task * images_per_task..((task + 1) * images_per_task).min(n) {
                for (ch, acc) in sums.iter_mut().enumerate() {
                    for (a, p) in acc.iter_mut().zip(plane(i, ch)) {
                        *a += p;
                    }
                }
            }
            sums
        })
        .collect();
    let mut total = vec![[0.0f64; K]; c];
    for part in &partials {
        for (t, p) in total.iter_mut().zip(part) {
            for (a, b) in t.iter_mut().zip(p) {
                *a += b;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Channel sums equal a plain f64 sum, bit for bit the same on 1 and 3 threads, for shapes
    /// with one task and with many (a ragged last one among them).
    #[test]
    fn channel_sums_are_exact_and_thread_independent() {
        for (n, c, hw) in [(1, 1, 1), (3, 2, 5), (300, 2, 64), (40, 3, 1000)] {
            let x: Vec<f32> = (0..n * c * hw).map(|i| ((i * 7919 % 2003) as f32 - 1001.0) / 7.0).collect();
            let sums_on = |threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                pool.install(|| channel_sums(&x, (n, c, hw), |ch| move |v| v as f64 * (ch + 1) as f64))
            };
            let (one, three) = (sums_on(1), sums_on(3));
            assert_eq!(one, three, "[{n}, {c}, {hw}]: thread count changed the sums");
            for (ch, &got) in one.iter().enumerate() {
                let want: f64 =
                    (0..n).flat_map(|i| x[(i * c + ch) * hw..][..hw].iter()).map(|&v| v as f64 * (ch + 1) as f64).sum();
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "[{n}, {c}, {hw}] channel {ch}: {got} vs {want}"
                );
            }
        }
    }
}
