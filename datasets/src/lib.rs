//! MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100: reading the original binary files,
//! fetching and verifying them, and turning them into shuffled, augmented mini-batches.
//!
//! Plain buffers only (`Vec<u8>` pixels, `Vec<f32>` batches in NCHW), so this crate does
//! not depend on the autograd engine.
//!
//! ```no_run
//! use datasets::{Batching, DatasetName, Loader, Split, default_data_dir, load, paper_augment, paper_normalize};
//! let train = load(DatasetName::Cifar10, &default_data_dir(), Split::Train)?;
//! let name = DatasetName::Cifar10;
//! let batching = Batching::shuffled(128, 42).augment(paper_augment(name)).normalize(Some(paper_normalize(name)));
//! let loader = Loader::new(&train, batching)?;
//! for batch in loader.epoch(0) {
//!     assert_eq!(batch.shape[1..], [3, 32, 32]);
//! }
//! # Ok::<(), datasets::DataError>(())
//! ```

#![warn(missing_docs)]

pub mod augment;
pub mod checksums;
pub mod cifar;
mod dataset;
mod error;
mod fetch;
mod grid;
pub mod idx;
mod loader;
mod source;

pub use augment::{
    denormalize, hflip, normalize, paper_augment, paper_normalize, random_crop, random_rotate, resize_bilinear, rotate,
    shift, to_unit, Augment, ImageShape, Normalize,
};
pub use checksums::{md5_content, md5_hex, verify, KnownFile};
pub use dataset::{
    default_data_dir, load, Dataset, DatasetName, Split, CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES,
    CIFAR10_CLASSES, FASHION_MNIST_CLASSES, NAMES,
};
pub use error::DataError;
pub use fetch::{fetch, fetch_from, fetch_with, FetchOptions, MIRROR_VAR};
pub use grid::{batch_grid, sample_grid};
pub use loader::{Batch, Batching, Epoch, Loader};

/// Per-channel mean and (population) standard deviation of pixels / 255.
///
/// Sums are kept as exact integers, so the result does not depend on the order in which
/// the threads add up images.
pub fn channel_mean_std(ds: &Dataset) -> (Vec<f64>, Vec<f64>) {
    use rayon::prelude::*;
    let c = ds.channels;
    let plane = ds.height * ds.width;
    let zero = || (vec![0u64; c], vec![0u64; c]);
    let (sum, sq) = (0..ds.len)
        .into_par_iter()
        .fold(zero, |(mut sum, mut sq), i| {
            for (ch, px) in ds.image(i).chunks_exact(plane.max(1)).enumerate() {
                for &p in px {
                    sum[ch] += p as u64;
                    sq[ch] += (p as u64) * (p as u64);
                }
            }
            (sum, sq)
        })
        .reduce(zero, |(mut s1, mut q1), (s2, q2)| {
            for ch in 0..c {
                s1[ch] += s2[ch];
                q1[ch] += q2[ch];
            }
            (s1, q1)
        });
    let n = (ds.len * plane) as f64;
    if n == 0.0 {
        return (vec![0.0; c], vec![0.0; c]);
    }
    let mean: Vec<f64> = sum.iter().map(|&s| s as f64 / n / 255.0).collect();
    let std = sq.iter().zip(&mean).map(|(&q, &m)| (q as f64 / n / (255.0 * 255.0) - m * m).max(0.0).sqrt()).collect();
    (mean, std)
}
