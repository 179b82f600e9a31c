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
/// Serial below 128K elements: waking the pool costs more than the pieces save.
pub fn sum(x: &[f32]) -> f64 {
    let piece = |c: &[f32]| sum_f64(c, |v| v as f64);
    if x.len() < 1 << 17 {
        return x.chunks(CHUNK).map(piece).sum();
    }
    x.par_chunks(CHUNK).map(piece).collect::<Vec<_>>().iter().sum()
}

/// The f64 sum of f(v) over `values`, in eight interleaved partial sums: one running sum is a
/// chain of dependent additions (4 cycles each), eight of them vectorize. The order is fixed by
/// the data alone, so the result does not depend on the thread count.
pub(crate) fn sum_f64(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (acc, &v) in lanes.iter_mut().zip(chunk) {
            *acc += f(v);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Per channel of x [n, c, hw]: the f64 sum over the batch and pixels of f(channel, value),
/// channels in parallel, each summed in a fixed order (so independent of the thread count).
pub(crate) fn channel_sums(
    x: &[f32],
    (n, c, hw): (usize, usize, usize),
    f: impl Fn(usize, f32) -> f64 + Sync,
) -> Vec<f64> {
    (0..c)
        .into_par_iter()
        .map(|ch| (0..n).map(|i| sum_f64(&x[(i * c + ch) * hw..(i * c + ch + 1) * hw], |v| f(ch, v))).sum())
        .collect()
}
