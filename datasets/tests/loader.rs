//! Batches: order, coverage, drop_last, determinism, augmentation output, prefetching.

use std::collections::HashSet;

use datasets::{batch_grid, sample_grid, Augment, Batch, Batching, DataError, Dataset, Loader, Normalize};

/// `len` 3x4x4 images; image i has every pixel equal to i % 256 and label i % 10.
fn data(len: usize) -> Dataset {
    Dataset {
        name: "synthetic".into(),
        images: (0..len).flat_map(|i| [(i % 256) as u8; 48]).collect(),
        labels: (0..len).map(|i| (i % 10) as u8).collect(),
        len,
        channels: 3,
        height: 4,
        width: 4,
        num_classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
    }
}

fn loader(ds: &Dataset, bs: usize, shuffle: bool, drop_last: bool) -> Loader<'_> {
    Loader::new(
        ds,
        Batching { batch_size: bs, shuffle, seed: 42, drop_last, augment: Augment::default(), normalize: None },
    )
    .unwrap()
}

fn order_of(l: &Loader, epoch: usize) -> Vec<usize> {
    l.epoch(epoch).flat_map(|b| b.indices).collect()
}

#[test]
fn same_seed_and_epoch_give_the_same_order_other_epochs_differ() {
    let ds = data(100);
    let l = loader(&ds, 16, true, false);
    assert_eq!(order_of(&l, 0), order_of(&l, 0));
    assert_ne!(order_of(&l, 0), order_of(&l, 1));
    assert_ne!(order_of(&l, 0), (0..100).collect::<Vec<_>>(), "shuffled");
    let other_seed = Loader::new(&ds, Batching::shuffled(16, 43)).unwrap();
    assert_ne!(order_of(&l, 0), order_of(&other_seed, 0));
    assert_eq!(order_of(&loader(&ds, 16, false, false), 3), (0..100).collect::<Vec<_>>(), "no shuffle");
}

#[test]
fn every_sample_is_seen_exactly_once_per_epoch() {
    let ds = data(103);
    let l = loader(&ds, 10, true, false);
    assert_eq!(l.num_batches(), 11);
    for epoch in 0..3 {
        let batches: Vec<Batch> = l.epoch(epoch).collect();
        assert_eq!(batches.len(), 11);
        assert_eq!(batches.last().unwrap().shape, [3, 3, 4, 4], "short last batch");
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..103).collect::<Vec<_>>());
        for b in &batches {
            // Without augmentation each image is its index / 255 everywhere, with its label.
            for (k, &i) in b.indices.iter().enumerate() {
                assert_eq!(b.labels[k], i % 10);
                assert!(b.images[k * 48..(k + 1) * 48].iter().all(|&v| v == (i % 256) as f32 / 255.0));
            }
        }
    }
}

#[test]
fn drop_last_drops_only_the_short_batch() {
    let ds = data(103);
    let l = loader(&ds, 10, true, true);
    assert_eq!(l.num_batches(), 10);
    let batches: Vec<Batch> = l.epoch(0).collect();
    assert_eq!(batches.len(), 10);
    assert!(batches.iter().all(|b| b.shape[0] == 10 && b.labels.len() == 10 && b.images.len() == 480));
    let seen: HashSet<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(seen.len(), 100, "distinct samples");
    // An exact multiple keeps every batch.
    assert_eq!(loader(&data(100), 10, false, true).num_batches(), 10);
    assert_eq!(loader(&data(5), 10, false, true).num_batches(), 0);
    assert_eq!(loader(&data(5), 10, false, false).num_batches(), 1);
}

#[test]
fn invalid_loader_arguments_are_errors() {
    let ds = data(10);
    let bad =
        |bs, aug: Augment, norm| Loader::new(&ds, Batching::shuffled(bs, 0).augment(aug).normalize(norm)).map(|_| ());
    assert!(matches!(bad(0, Augment::default(), None), Err(DataError::InvalidArgument { field: "batch size", .. })));
    let resize0 = Augment { resize_to: Some(0), ..Augment::default() };
    assert!(matches!(bad(4, resize0, None), Err(DataError::InvalidArgument { field: "resize", .. })));
    let nan = Augment { rotate_degrees: Some(f32::NAN), ..Augment::default() };
    assert!(matches!(bad(4, nan, None), Err(DataError::InvalidArgument { field: "rotation", .. })));
    let two = Normalize { mean: vec![0.5; 2], std: vec![0.5; 2] };
    assert!(matches!(
        bad(4, Augment::default(), Some(two)),
        Err(DataError::InvalidArgument { field: "normalize", .. })
    ));
}

/// A data set with structure (a gradient), so crops and flips change the output.
fn gradient(len: usize, side: usize) -> Dataset {
    let per = 3 * side * side;
    Dataset {
        images: (0..len * per).map(|i| ((i % per) * 7 % 251) as u8).collect(),
        labels: vec![1; len],
        len,
        height: side,
        width: side,
        ..data(0)
    }
}

fn full_augment() -> Augment {
    Augment { crop_padding: Some(4), hflip: true, rotate_degrees: Some(15.0), resize_to: Some(40) }
}

#[test]
fn augmentation_is_deterministic_and_independent_of_threads_and_batch_size() {
    let ds = gradient(64, 32);
    let norm = Some(Normalize { mean: vec![0.5, 0.4, 0.3], std: vec![0.2, 0.25, 0.3] });
    let make =
        |bs| Loader::new(&ds, Batching::shuffled(bs, 9).augment(full_augment()).normalize(norm.clone())).unwrap();
    let l = make(16);
    assert_eq!(l.image_shape().height, 40);
    let by_index = |batches: Vec<Batch>| {
        let mut v: Vec<(usize, Vec<f32>)> = batches
            .iter()
            .flat_map(|b| {
                b.indices.iter().enumerate().map(move |(k, &i)| (i, b.images[k * 4800..(k + 1) * 4800].to_vec()))
            })
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v
    };
    let two_threads = by_index(l.epoch(2).collect());
    assert_eq!(l.epoch(2).next().unwrap().shape, [16, 3, 40, 40]);
    let one_thread =
        rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| by_index(l.epoch(2).collect()));
    assert_eq!(two_threads, one_thread, "same result on 1 thread");
    assert_eq!(two_threads, by_index(make(5).epoch(2).collect()), "same result with another batch size");
    let next_epoch = by_index(l.epoch(3).collect());
    assert_ne!(two_threads, next_epoch, "augmentation differs per epoch");
    // Different samples get different augmentations: not all identical images stay identical.
    let distinct: HashSet<Vec<u32>> =
        two_threads.iter().map(|(_, v)| v.iter().map(|f| f.to_bits()).collect()).collect();
    assert!(distinct.len() > 32, "{} distinct of 64", distinct.len());
}

#[test]
fn crop_and_flip_batches_match_the_standalone_functions_up_to_a_shift_or_flip() {
    // Each augmented image equals the plain image shifted by at most 4 and maybe flipped.
    let ds = gradient(20, 8);
    let aug = Augment { crop_padding: Some(4), hflip: true, ..Augment::default() };
    let l = Loader::new(&ds, Batching { seed: 1, ..Batching::in_order(20) }.augment(aug)).unwrap();
    let b = l.epoch(0).next().unwrap();
    let shape = datasets::ImageShape::new(3, 8, 8);
    let mut flips = 0;
    for (k, &i) in b.indices.iter().enumerate() {
        let plain = datasets::to_unit(ds.image(i));
        let got = &b.images[k * 192..(k + 1) * 192];
        let mut found = false;
        for dy in -4..=4 {
            for dx in -4..=4 {
                let s = datasets::shift(&plain, shape, dy, dx);
                if s == got {
                    found = true;
                } else if datasets::hflip(&s, shape) == got {
                    found = true;
                    flips += 1;
                }
            }
        }
        assert!(found, "image {i} is a shifted (and maybe flipped) copy");
    }
    assert!(flips > 0, "some images are flipped");
}

#[test]
fn prefetching_gives_the_same_batches_and_stops_early() {
    let ds = gradient(50, 8);
    let aug = Augment { crop_padding: Some(2), hflip: true, ..Augment::default() };
    let l = Loader::new(&ds, Batching::shuffled(8, 5).augment(aug)).unwrap();
    let direct: Vec<Batch> = l.epoch(1).collect();
    let mut prefetched = Vec::new();
    l.for_each_prefetched(1, |b| -> Result<(), ()> {
        prefetched.push(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(direct, prefetched);
    let mut count = 0;
    let r = l.for_each_prefetched(1, |_| {
        count += 1;
        if count == 2 {
            Err("stop")
        } else {
            Ok(())
        }
    });
    assert_eq!((r, count), (Err("stop"), 2));
}

#[test]
fn grids_have_the_expected_size_and_pixels() {
    let ds = data(10);
    let img = sample_grid(&ds, &[0, 5, 9, 100], 3, 2);
    // 3 columns of 4*2 pixels plus 2-pixel gaps; 2 rows.
    assert_eq!(img.dimensions(), (3 * 10 + 2, 2 * 10 + 2));
    assert_eq!(img.get_pixel(2 + 10, 2).0, [5, 5, 5], "tile 1 shows image 5");
    let l =
        Loader::new(&ds, Batching::in_order(4).normalize(Some(Normalize { mean: vec![0.5], std: vec![0.5] }))).unwrap();
    let b = l.epoch(0).next().unwrap();
    let g = batch_grid(&b, Some(&Normalize { mean: vec![0.5], std: vec![0.5] }), 4, 1);
    assert_eq!(g.dimensions(), (4 * 6 + 2, 6 + 2));
    assert_eq!(g.get_pixel(2 + 3 * 6, 2).0, [3, 3, 3], "denormalized back to the byte value");
}
