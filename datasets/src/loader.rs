//! Shuffled, augmented, normalized mini-batches.
//!
//! All randomness is derived from (seed, epoch) for the order and from (seed, epoch, sample
//! index) for the augmentation of one sample, so a run is reproducible whatever the number
//! of threads or the batch size.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::augment::{self, Augment, ImageShape, Normalize};
use crate::{DataError, Dataset};

/// One mini-batch: f32 images in NCHW and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `shape[0] * shape[1] * shape[2] * shape[3]` values, NCHW.
    pub images: Vec<f32>,
    /// Class index per image.
    pub labels: Vec<usize>,
    /// [batch, channels, height, width].
    pub shape: [usize; 4],
    /// Position of each image in the data set.
    pub indices: Vec<usize>,
}

/// Turns a data set into batches, one epoch at a time.
///
/// ```
/// use datasets::{Batching, Dataset, Loader};
/// // Ten 1x2x2 images in memory, labels 0..9.
/// let ds = Dataset {
///     name: "tiny".into(),
///     images: (0..40).collect(),
///     labels: (0..10).collect(),
///     len: 10,
///     channels: 1,
///     height: 2,
///     width: 2,
///     num_classes: 10,
///     class_names: (0..10).map(|c| c.to_string()).collect(),
/// };
/// let loader = Loader::new(&ds, Batching::shuffled(4, 42))?;
/// let batches: Vec<_> = loader.epoch(0).collect();
/// assert_eq!(batches.len(), 3); // 4 + 4 + 2 images
/// assert_eq!(batches[0].shape, [4, 1, 2, 2]);
/// // The order depends only on the seed and the epoch.
/// assert_eq!(loader.epoch(0).next().unwrap().labels, batches[0].labels);
/// # Ok::<(), datasets::DataError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Loader<'a> {
    dataset: &'a Dataset,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
    augment: Augment,
    normalize: Option<Normalize>,
}

/// How a [`Loader`] cuts a data set into batches: named settings instead of positional
/// flags. Start from [`Batching::shuffled`] (training) or [`Batching::in_order`]
/// (evaluation) and add what differs.
#[derive(Debug, Clone, PartialEq)]
pub struct Batching {
    /// Images per batch (at least 1).
    pub batch_size: usize,
    /// A fresh order every epoch (from `seed` and the epoch), or the data set's order.
    pub shuffle: bool,
    /// Seed of the order and of the augmentation.
    pub seed: u64,
    /// Leave out a short last batch.
    pub drop_last: bool,
    /// Augmentation applied to each image.
    pub augment: Augment,
    /// Per-channel normalization after augmentation.
    pub normalize: Option<Normalize>,
}

impl Batching {
    /// Batches in a new order every epoch, from `seed`.
    pub fn shuffled(batch_size: usize, seed: u64) -> Batching {
        Batching { batch_size, shuffle: true, seed, drop_last: false, augment: Augment::default(), normalize: None }
    }

    /// Batches in the data set's order (augmentation, if any, seeded with 0).
    pub fn in_order(batch_size: usize) -> Batching {
        Batching { shuffle: false, ..Batching::shuffled(batch_size, 0) }
    }

    /// With this augmentation.
    pub fn augment(self, augment: Augment) -> Batching {
        Batching { augment, ..self }
    }

    /// With this normalization (or none).
    pub fn normalize(self, normalize: Option<Normalize>) -> Batching {
        Batching { normalize, ..self }
    }
}

/// SplitMix64 finalizer: spreads nearby inputs (epoch 1, 2, ...) over unrelated seeds.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_add(0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<'a> Loader<'a> {
    /// Builds a loader; rejects a batch size of 0, a resize to 0, a non-finite rotation and
    /// normalization statistics that do not fit the channels.
    pub fn new(dataset: &'a Dataset, batching: Batching) -> Result<Loader<'a>, DataError> {
        let Batching { batch_size, shuffle, seed, drop_last, augment, normalize } = batching;
        if batch_size == 0 {
            return Err(DataError::InvalidArgument {
                field: "batch size",
                expected: "at least 1".into(),
                found: "0".into(),
            });
        }
        if augment.resize_to == Some(0) {
            return Err(DataError::InvalidArgument {
                field: "resize",
                expected: "at least 1 pixel".into(),
                found: "0".into(),
            });
        }
        if let Some(d) = augment.rotate_degrees {
            if !d.is_finite() {
                return Err(DataError::InvalidArgument {
                    field: "rotation",
                    expected: "a finite number of degrees".into(),
                    found: d.to_string(),
                });
            }
        }
        if let Some(n) = &normalize {
            n.check(dataset.channels)?;
        }
        Ok(Loader { dataset, batch_size, shuffle, seed, drop_last, augment, normalize })
    }

    /// Number of batches per epoch (a short last batch counts unless `drop_last`).
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.dataset.len / self.batch_size
        } else {
            self.dataset.len.div_ceil(self.batch_size)
        }
    }

    /// Shape of one output image (after the optional resize).
    pub fn image_shape(&self) -> ImageShape {
        let (h, w) = match self.augment.resize_to {
            Some(s) => (s, s),
            None => (self.dataset.height, self.dataset.width),
        };
        ImageShape::new(self.dataset.channels, h, w)
    }

    /// The order in which epoch `epoch` visits the data set.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len).collect();
        if self.shuffle {
            order.shuffle(&mut StdRng::seed_from_u64(mix(self.seed, epoch as u64)));
        }
        order
    }

    /// The batches of epoch `epoch`, each built (in parallel) when asked for.
    pub fn epoch(&self, epoch: usize) -> Epoch<'_, 'a> {
        Epoch { loader: self, epoch, order: self.order(epoch), next: 0 }
    }

    /// Runs `f` on every batch of the epoch while the next batch is prepared beside it, so
    /// data preparation overlaps the training step. Stops at the first error.
    ///
    /// The next batch is a task of the rayon pool, not a thread of its own: `sph` runs its
    /// commands, and so `f`, on a worker of the pool, and a thread of our own that waited for
    /// the pool to build a batch while that worker waited for the batch would deadlock a
    /// one-thread pool. A task runs on whichever worker is free, or on this one as it waits.
    pub fn for_each_prefetched<E>(&self, epoch: usize, mut f: impl FnMut(Batch) -> Result<(), E>) -> Result<(), E> {
        let order = self.order(epoch);
        let batches = self.num_batches();
        if batches == 0 {
            return Ok(());
        }
        let mut current = self.make_batch(epoch, self.batch_indices(&order, 0));
        for b in 1..=batches {
            let mut next = None;
            rayon::in_place_scope(|scope| {
                if b < batches {
                    let (next, order) = (&mut next, &order);
                    scope.spawn(move |_| *next = Some(self.make_batch(epoch, self.batch_indices(order, b))));
                }
                f(current)
            })?;
            match next {
                Some(batch) => current = batch,
                None => break,
            }
        }
        Ok(())
    }

    /// Indices of batch `b` within `order`.
    fn batch_indices<'o>(&self, order: &'o [usize], b: usize) -> &'o [usize] {
        let start = (b * self.batch_size).min(order.len());
        let end = (start + self.batch_size).min(order.len());
        &order[start..end]
    }

    /// Builds the batch of the given data-set indices (those past the end are skipped),
    /// one sample per rayon task; e.g. to show chosen samples as augmented in `epoch`.
    pub fn make_batch(&self, epoch: usize, indices: &[usize]) -> Batch {
        let indices: Vec<usize> = indices.iter().copied().filter(|&i| i < self.dataset.len).collect();
        let shape = self.image_shape();
        let per = shape.len();
        let mut images = vec![0.0f32; indices.len() * per];
        images.par_chunks_mut(per.max(1)).zip(indices.par_iter()).for_each(|(out, &i)| self.prepare(epoch, i, out));
        Batch {
            images,
            labels: indices.iter().map(|&i| self.dataset.labels[i] as usize).collect(),
            shape: [indices.len(), shape.channels, shape.height, shape.width],
            indices,
        }
    }

    /// Converts, augments and normalizes sample `index` into `out`.
    fn prepare(&self, epoch: usize, index: usize, out: &mut [f32]) {
        let ds = self.dataset;
        let aug = &self.augment;
        let mut shape = ImageShape::new(ds.channels, ds.height, ds.width);
        let mut img = augment::to_unit(ds.image(index));
        // Seeded by the sample itself, not by the thread or the position in the batch.
        let mut rng = StdRng::seed_from_u64(mix(mix(self.seed, epoch as u64), index as u64));
        if let Some(side) = aug.resize_to {
            if (side, side) != (shape.height, shape.width) {
                img = augment::resize_bilinear(&img, shape, side, side);
                shape = ImageShape::new(shape.channels, side, side);
            }
        }
        if let Some(p) = aug.crop_padding {
            if p > 0 {
                img = augment::random_crop(&img, shape, p, &mut rng);
            }
        }
        if aug.hflip && rng.gen_bool(0.5) {
            img = augment::hflip(&img, shape);
        }
        if let Some(d) = aug.rotate_degrees {
            if d != 0.0 {
                img = augment::random_rotate(&img, shape, d, &mut rng);
            }
        }
        if let Some(n) = &self.normalize {
            augment::normalize(&mut img, shape.channels, n);
        }
        out.copy_from_slice(&img);
    }
}

/// Iterator over the batches of one epoch (see [`Loader::epoch`]).
#[derive(Debug)]
pub struct Epoch<'l, 'a> {
    loader: &'l Loader<'a>,
    epoch: usize,
    order: Vec<usize>,
    next: usize,
}

impl Iterator for Epoch<'_, '_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.loader.num_batches() {
            return None;
        }
        let indices = self.loader.batch_indices(&self.order, self.next);
        self.next += 1;
        Some(self.loader.make_batch(self.epoch, indices))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.loader.num_batches().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Epoch<'_, '_> {}
