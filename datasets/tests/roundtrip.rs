//! Generated files in every supported layout load back exactly.

mod common;

use common::{bytes, gz, TempDir};
use datasets::cifar::{encode_cifar10, encode_cifar100, PIXELS};
use datasets::idx::{encode_images, encode_labels};
use datasets::{load, DataError, Dataset, DatasetName, Split, CIFAR10_CLASSES, FASHION_MNIST_CLASSES, NAMES};

/// Writes an IDX pair under `dir/<sub>/` and returns (pixels, labels).
fn write_idx(
    dir: &TempDir,
    sub: &str,
    prefix: &str,
    count: u32,
    rows: u32,
    cols: u32,
    compress: bool,
) -> (Vec<u8>, Vec<u8>) {
    let pixels = bytes((count * rows * cols) as usize, count as u64);
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    let (img, lab) = (encode_images(count, rows, cols, &pixels), encode_labels(&labels));
    let ext = if compress { ".gz" } else { "" };
    let (img, lab) = if compress { (gz(&img), gz(&lab)) } else { (img, lab) };
    dir.write(&format!("{sub}/{prefix}-images-idx3-ubyte{ext}"), &img);
    dir.write(&format!("{sub}/{prefix}-labels-idx1-ubyte{ext}"), &lab);
    (pixels, labels)
}

fn check_idx(ds: &Dataset, name: &str, pixels: &[u8], labels: &[u8], rows: usize, cols: usize) {
    assert_eq!(ds.name, name);
    assert_eq!((ds.len, ds.channels, ds.height, ds.width), (labels.len(), 1, rows, cols));
    assert_eq!(ds.images, pixels);
    assert_eq!(ds.labels, labels);
    assert_eq!(ds.num_classes, 10);
    assert_eq!(ds.image(1), &pixels[rows * cols..2 * rows * cols]);
}

#[test]
fn idx_raw_round_trips() {
    let dir = TempDir::new("idx-raw");
    let (p, l) = write_idx(&dir, "mnist", "train", 13, 5, 4, false);
    let (pt, lt) = write_idx(&dir, "mnist", "t10k", 3, 5, 4, false);
    let ds = load(DatasetName::Mnist, &dir.0, Split::Train).unwrap();
    check_idx(&ds, "mnist", &p, &l, 5, 4);
    assert_eq!(ds.class_names, (0..10).map(|d| d.to_string()).collect::<Vec<_>>());
    let test = load(DatasetName::Mnist, &dir.0, Split::Test).unwrap();
    check_idx(&test, "mnist", &pt, &lt, 5, 4);
}

#[test]
fn idx_gz_round_trips_with_fashion_names() {
    let dir = TempDir::new("idx-gz");
    let (p, l) = write_idx(&dir, "fashion-mnist", "train", 11, 3, 7, true);
    let ds = load(DatasetName::FashionMnist, &dir.0, Split::Train).unwrap();
    check_idx(&ds, "fashion-mnist", &p, &l, 3, 7);
    assert_eq!(ds.class_names, FASHION_MNIST_CLASSES);
}

#[test]
fn gzip_is_detected_by_magic_not_name() {
    let dir = TempDir::new("idx-magic");
    let pixels = bytes(2 * 4, 9);
    dir.write("mnist/train-images-idx3-ubyte", &gz(&encode_images(2, 2, 2, &pixels)));
    dir.write("mnist/train-labels-idx1-ubyte", &encode_labels(&[3, 4]));
    let ds = load(DatasetName::Mnist, &dir.0, Split::Train).unwrap();
    assert_eq!(ds.images, pixels);
    assert_eq!(ds.labels, [3, 4]);
}

#[test]
fn raw_file_is_preferred_over_gz() {
    let dir = TempDir::new("idx-prefer");
    let (p, l) = write_idx(&dir, "mnist", "train", 4, 2, 2, false);
    // A .gz beside it with different content must be ignored.
    dir.write("mnist/train-images-idx3-ubyte.gz", &gz(&encode_images(4, 2, 2, &[0u8; 16])));
    dir.write("mnist/train-labels-idx1-ubyte.gz", &gz(&encode_labels(&[9, 9, 9, 9])));
    let ds = load(DatasetName::Mnist, &dir.0, Split::Train).unwrap();
    assert_eq!((ds.images, ds.labels), (p, l));
}

#[test]
fn cifar10_round_trips_across_batches() {
    let dir = TempDir::new("cifar10");
    let mut all_pixels = Vec::new();
    let mut all_labels = Vec::new();
    for b in 1..=5u8 {
        let n = b as usize; // batches of different sizes: 1, 2, .. 5 records
        let labels: Vec<u8> = (0..n).map(|i| ((i + b as usize) % 10) as u8).collect();
        let pixels = bytes(n * PIXELS, b as u64);
        dir.write(&format!("cifar-10-batches-bin/data_batch_{b}.bin"), &encode_cifar10(&labels, &pixels));
        all_pixels.extend_from_slice(&pixels);
        all_labels.extend_from_slice(&labels);
    }
    let test_pixels = bytes(2 * PIXELS, 77);
    dir.write("cifar-10-batches-bin/test_batch.bin", &encode_cifar10(&[0, 9], &test_pixels));

    let ds = load(DatasetName::Cifar10, &dir.0, Split::Train).unwrap();
    assert_eq!((ds.len, ds.channels, ds.height, ds.width, ds.num_classes), (15, 3, 32, 32, 10));
    assert_eq!(ds.images, all_pixels);
    assert_eq!(ds.labels, all_labels);
    assert_eq!(ds.class_names, CIFAR10_CLASSES);
    let test = load(DatasetName::Cifar10, &dir.0, Split::Test).unwrap();
    assert_eq!((test.images, test.labels), (test_pixels, vec![0, 9]));
}

#[test]
fn cifar10_class_names_come_from_meta_file() {
    let dir = TempDir::new("cifar10-meta");
    dir.write("cifar-10-batches-bin/test_batch.bin", &encode_cifar10(&[1], &bytes(PIXELS, 1)));
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    dir.write("cifar-10-batches-bin/batches.meta.txt", format!("{}\n\n", names.join("\n")).as_bytes());
    let ds = load(DatasetName::Cifar10, &dir.0, Split::Test).unwrap();
    assert_eq!(ds.class_names, names);
}

#[test]
fn cifar100_round_trips_fine_and_coarse() {
    let dir = TempDir::new("cifar100");
    let fine = [99u8, 0, 42, 5];
    let coarse = fine.map(|f| datasets::cifar::FINE_TO_COARSE[f as usize]);
    let pixels = bytes(4 * PIXELS, 100);
    dir.write("cifar-100-binary/train.bin", &encode_cifar100(&coarse, &fine, &pixels));
    let fine_names: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
    dir.write("cifar-100-binary/fine_label_names.txt", fine_names.join("\n").as_bytes());

    let f = load(DatasetName::Cifar100Fine, &dir.0, Split::Train).unwrap();
    assert_eq!((f.name.as_str(), f.len, f.num_classes), ("cifar100", 4, 100));
    assert_eq!((&f.images, &f.labels[..]), (&pixels, &fine[..]));
    assert_eq!(f.class_names, fine_names);

    let c = load(DatasetName::Cifar100Coarse, &dir.0, Split::Train).unwrap();
    assert_eq!((c.name.as_str(), c.num_classes), ("cifar100-coarse", 20));
    assert_eq!((&c.images, &c.labels[..]), (&pixels, &coarse[..]));
    // No coarse_label_names.txt: the built-in names are used.
    assert_eq!(c.class_names.len(), 20);
    assert_eq!(c.class_names[19], "vehicles_2");
}

#[test]
fn builtin_class_name_lists_have_the_right_lengths() {
    assert_eq!(datasets::CIFAR100_FINE_CLASSES.len(), 100);
    let mut sorted = datasets::CIFAR100_FINE_CLASSES.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 100, "fine names are distinct");
    assert_eq!(sorted, datasets::CIFAR100_FINE_CLASSES, "fine names are alphabetical like the original file");
}

#[test]
fn names_parse_and_unknown_names_list_the_choices() {
    for (s, n) in NAMES.iter().zip(DatasetName::ALL) {
        assert_eq!(s.parse::<DatasetName>().unwrap(), n);
        assert_eq!(n.as_str(), *s);
    }
    assert_eq!("Fashion_MNIST".parse::<DatasetName>().unwrap(), DatasetName::FashionMnist);
    let err = "imagenet".parse::<DatasetName>().unwrap_err();
    assert!(matches!(err, DataError::UnknownName { .. }));
    let msg = err.to_string();
    assert!(msg.contains("imagenet") && NAMES.iter().all(|n| msg.contains(n)), "{msg}");
    assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
    assert!("val".parse::<Split>().is_err());
}

#[test]
fn missing_data_names_the_fetch_commands() {
    let dir = TempDir::new("missing");
    let err = load(DatasetName::Mnist, &dir.0.join("nowhere"), Split::Train).unwrap_err();
    assert!(matches!(&err, DataError::Missing { path, .. } if path.ends_with("nowhere/mnist")), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("scripts/fetch-data.sh mnist") && msg.contains("sph data fetch mnist"), "{msg}");

    // Folder present but a file missing: the file is named.
    dir.write("cifar-10-batches-bin/data_batch_1.bin", &encode_cifar10(&[1], &bytes(PIXELS, 1)));
    let err = load(DatasetName::Cifar10, &dir.0, Split::Train).unwrap_err();
    assert!(matches!(&err, DataError::Missing { path, .. } if path.ends_with("data_batch_2.bin")), "{err:?}");
    assert!(err.to_string().contains("scripts/fetch-data.sh cifar10"));
}

#[test]
fn default_data_dir_follows_sph_data() {
    // The only test in this binary that touches the variable.
    std::env::set_var("SPH_DATA", "/tmp/some-data");
    assert_eq!(datasets::default_data_dir(), std::path::PathBuf::from("/tmp/some-data"));
    std::env::remove_var("SPH_DATA");
    assert_eq!(datasets::default_data_dir(), std::path::PathBuf::from("data"));
}

fn tiny(len: usize) -> Dataset {
    Dataset {
        name: "tiny".into(),
        images: (0..len * 4).map(|i| (i / 4) as u8).collect(),
        labels: (0..len).map(|i| (i % 10) as u8).collect(),
        len,
        channels: 1,
        height: 2,
        width: 2,
        num_classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
    }
}

#[test]
fn subset_and_limit_pick_the_right_images() {
    let ds = tiny(10);
    let s = ds.subset(&[7, 2, 99]);
    assert_eq!((s.len, &s.labels[..]), (2, &[7u8, 2][..]));
    assert_eq!(s.image(0), &[7, 7, 7, 7]);
    assert_eq!(ds.limit(3).labels, [0, 1, 2]);
    assert_eq!(ds.limit(50).len, 10);
}

/// A file sorted by class (100 records of each of 10 classes, as a CIFAR-100 copy rebuilt from
/// per-class folders is): its first 50 records are one class, a stratified 50 hold all ten.
fn class_sorted(per_class: usize) -> Dataset {
    let mut ds = tiny(per_class * 10);
    ds.labels = (0..ds.len).map(|i| (i / per_class) as u8).collect();
    ds
}

#[test]
fn stratified_subsets_keep_every_class_and_depend_only_on_the_seed() {
    let sorted = class_sorted(100);
    assert!(sorted.looks_sorted_by_class());
    assert!(!tiny(1000).looks_sorted_by_class(), "labels 0..9 repeating is not sorted");
    assert_eq!(sorted.limit(50).class_counts().iter().filter(|&&c| c > 0).count(), 1);
    let sample = sorted.stratified(50, 7);
    assert_eq!(sample.len, 50);
    assert_eq!(sample.class_counts(), vec![5; 10]);
    assert_eq!(sorted.stratified_indices(50, 7), sorted.stratified_indices(50, 7), "same seed, same sample");
    assert_ne!(sorted.stratified_indices(50, 7), sorted.stratified_indices(50, 8), "another seed, another sample");
    // Uneven shares: 3 of 10 classes get one more (largest remainders), the total is exact.
    let counts = sorted.stratified(33, 1).class_counts();
    assert_eq!(counts.iter().sum::<usize>(), 33);
    assert!(counts.iter().all(|&c| c == 3 || c == 4), "{counts:?}");
    assert_eq!(sorted.stratified(5000, 1).len, 1000, "asking for more than there is keeps all");
}
