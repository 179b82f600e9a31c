//! Facts about the real files (../shared/docs/data.md). The data must be fetched first with
//! `scripts/fetch-data.sh`; without it these tests fail and say so.

mod common;

use common::real_data_dir;
use datasets::checksums::known_files;
use datasets::{channel_mean_std, load, md5_hex, verify, DatasetName, Split};

#[test]
fn mnist_counts_and_checksums() {
    let dir = real_data_dir("mnist");
    verify(DatasetName::Mnist, &dir).unwrap();
    for known in known_files(DatasetName::Mnist) {
        let raw = dir.join("mnist").join(known.file);
        if raw.is_file() {
            assert_eq!(md5_hex(&raw).unwrap(), known.md5, "{}", raw.display());
        }
    }
    let train = load(DatasetName::Mnist, &dir, Split::Train).unwrap();
    let test = load(DatasetName::Mnist, &dir, Split::Test).unwrap();
    assert_eq!((train.len, test.len), (60_000, 10_000));
    assert_eq!((train.channels, train.height, train.width), (1, 28, 28));
    assert_eq!(train.images.len(), 60_000 * 784);
    let counts = train.class_counts();
    assert!(counts.iter().all(|&c| (5_421..=6_742).contains(&c)), "{counts:?}");
    assert_eq!(counts.iter().min(), Some(&5_421), "class 5 is the rarest");
    assert_eq!(counts.iter().max(), Some(&6_742), "class 1 is the most common");
    assert_eq!(test.class_counts().iter().sum::<usize>(), 10_000);
}

#[test]
fn fashion_mnist_has_balanced_classes() {
    let dir = real_data_dir("fashion-mnist");
    verify(DatasetName::FashionMnist, &dir).unwrap();
    let train = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap();
    let test = load(DatasetName::FashionMnist, &dir, Split::Test).unwrap();
    assert_eq!(train.class_counts(), vec![6_000; 10]);
    assert_eq!(test.class_counts(), vec![1_000; 10]);
    // The paper normalizes F-MNIST with mean 0.286 and std 0.353: check that is its own.
    let (mean, std) = channel_mean_std(&train);
    assert!((mean[0] - 0.286).abs() < 1e-3 && (std[0] - 0.353).abs() < 1e-3, "{mean:?} {std:?}");
}

#[test]
fn cifar10_counts_checksums_and_channel_statistics() {
    let dir = real_data_dir("cifar-10-batches-bin");
    verify(DatasetName::Cifar10, &dir).unwrap();
    let train = load(DatasetName::Cifar10, &dir, Split::Train).unwrap();
    let test = load(DatasetName::Cifar10, &dir, Split::Test).unwrap();
    assert_eq!((train.len, test.len), (50_000, 10_000));
    assert_eq!(train.class_counts(), vec![5_000; 10]);
    assert_eq!(test.class_counts(), vec![1_000; 10]);
    assert_eq!(train.class_names[0], "airplane");
    let (mean, std) = channel_mean_std(&train);
    for (got, want) in mean.iter().zip([0.4914, 0.4822, 0.4465]) {
        assert!((got - want).abs() < 1e-4, "mean {mean:?}");
    }
    for (got, want) in std.iter().zip([0.2470, 0.2435, 0.2616]) {
        assert!((got - want).abs() < 1e-3, "std {std:?}");
    }
}
