//! Malformed files: each is rejected with its own specific error, and none panics.

mod common;

use common::{bytes, gz, TempDir};
use datasets::cifar::{encode_cifar10, encode_cifar100, PIXELS};
use datasets::idx::{encode_images, encode_labels, read_images, read_labels};
use datasets::{load, DataError, DatasetName, Split};

/// A valid MNIST-layout labels file for `n` images.
fn labels(n: usize) -> Vec<u8> {
    encode_labels(&(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>())
}

/// A valid images file of `n` 2x3 images.
fn images(n: u32) -> Vec<u8> {
    encode_images(n, 2, 3, &bytes(n as usize * 6, 1))
}

/// An images header followed by `body` bytes.
fn header(count: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
    let mut v = encode_images(count, rows, cols, &[]);
    v.resize(v.len() + body, 7);
    v
}

struct Case {
    name: &'static str,
    dataset: DatasetName,
    /// (path relative to the data dir, content)
    files: Vec<(&'static str, Vec<u8>)>,
    check: fn(&DataError) -> bool,
    /// Substrings the message must contain.
    message: &'static [&'static str],
    /// The file the message must name.
    names: &'static str,
}

const IMG: &str = "mnist/train-images-idx3-ubyte";
const LAB: &str = "mnist/train-labels-idx1-ubyte";
const C10: &str = "cifar-10-batches-bin/test_batch.bin";
const C100: &str = "cifar-100-binary/test.bin";

fn cases() -> Vec<Case> {
    let good_gz_images = gz(&images(5));
    let mut corrupt_gz = good_gz_images.clone();
    // Keep the 10-byte gzip header, garble the deflate data.
    for b in corrupt_gz[10..].iter_mut() {
        *b = 0xff;
    }
    // A valid header, then a stream cut in the middle of its (incompressible) body.
    let truncated_gz = gz(&encode_images(5000, 8, 5, &bytes(200_000, 5)))[..1000].to_vec();
    let mut cifar_bad_label = encode_cifar10(&[3, 4, 5], &bytes(3 * PIXELS, 2));
    cifar_bad_label[2 * (PIXELS + 1)] = 10;
    vec![
        Case {
            name: "empty file",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, vec![]), (LAB, labels(5))],
            check: |e| matches!(e, DataError::Empty { .. }),
            message: &["train-images-idx3-ubyte: file length", "empty"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "3-byte file",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, vec![0, 0, 8]), (LAB, labels(5))],
            check: |e| matches!(e, DataError::HeaderTooShort { field: "magic number", expected: 4, found: 3, .. }),
            message: &["magic number: expected 4 bytes, found only 3"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "wrong magic (a labels file where images belong)",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, labels(5)), (LAB, labels(5))],
            check: |e| matches!(e, DataError::BadMagic { expected: 0x803, found: 0x801, .. }),
            message: &["magic number: expected 0x00000803", "found 0x00000801"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "wrong magic in the labels file",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, images(5)), (LAB, images(5))],
            check: |e| matches!(e, DataError::BadMagic { expected: 0x801, found: 0x803, .. }),
            message: &["train-labels-idx1-ubyte: magic number: expected 0x00000801"],
            names: "train-labels-idx1-ubyte",
        },
        Case {
            name: "not an IDX file at all (a zip file)",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, b"PK\x03\x04 some zip".to_vec()), (LAB, labels(5))],
            check: |e| matches!(e, DataError::BadMagic { found: 0x504b0304, .. }),
            message: &["found 0x504b0304"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "truncated header",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, images(5)[..9].to_vec()), (LAB, labels(5))],
            check: |e| {
                matches!(e, DataError::HeaderTooShort { field: "header dimensions", expected: 16, found: 9, .. })
            },
            message: &["header dimensions: expected 16 bytes, found only 9"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "truncated body",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, header(5, 2, 3, 29)), (LAB, labels(5))],
            check: |e| matches!(e, DataError::Truncated { field: "file length", expected: 46, found: 45, .. }),
            message: &["file length: expected 46 bytes as the header promises, found only 45"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "header claims 60,000 images in a tiny file (rejected before allocating)",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, header(60_000, 28, 28, 100)), (LAB, labels(60_000))],
            check: |e| matches!(e, DataError::Truncated { expected: 47_040_016, found: 116, .. }),
            message: &["expected 47040016 bytes"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "trailing bytes after the data",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, header(5, 2, 3, 31)), (LAB, labels(5))],
            check: |e| matches!(e, DataError::TrailingBytes { field: "file length", expected: 46, .. }),
            message: &["expected 46 bytes as the header promises, found 47"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "image count differs from label count",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, images(4)), (LAB, labels(5))],
            check: |e| matches!(e, DataError::CountMismatch { expected: 5, found: 4, .. }),
            message: &["train-images-idx3-ubyte: header count: expected 5 images to match labels, found 4"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "label out of range",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, images(3)), (LAB, encode_labels(&[1, 2, 10]))],
            check: |e| matches!(e, DataError::LabelOutOfRange { field: "label", record: 2, limit: 10, found: 10, .. }),
            message: &["train-labels-idx1-ubyte: label of record 2: expected below 10, found 10"],
            names: "train-labels-idx1-ubyte",
        },
        Case {
            name: "zero rows",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, header(5, 0, 3, 0)), (LAB, labels(5))],
            check: |e| matches!(e, DataError::ZeroDimension { field: "rows", .. }),
            message: &["header rows: expected at least 1, found 0"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "zero images",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, header(0, 28, 28, 0)), (LAB, labels(5))],
            check: |e| matches!(e, DataError::ZeroDimension { field: "count", .. }),
            message: &["header count: expected at least 1, found 0"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "dimensions whose product overflows",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, header(u32::MAX, u32::MAX, u32::MAX, 10)), (LAB, labels(5))],
            check: |e| matches!(e, DataError::Overflow { .. }),
            message: &["header dimensions", "4294967295 x 4294967295 x 4294967295"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "corrupt gzip data",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, corrupt_gz), (LAB, labels(5))],
            check: |e| matches!(e, DataError::Gzip { .. }),
            message: &["gzip stream: expected valid gzip data"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "truncated gzip stream",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, truncated_gz), (LAB, labels(5000))],
            check: |e| matches!(e, DataError::Gzip { .. }),
            message: &["gzip stream"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "gzip header promising more than deflate can hold (zip bomb guard)",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, gz(&header(60_000, 1000, 1000, 64))), (LAB, labels(5))],
            check: |e| matches!(e, DataError::ImplausibleSize { promised: 60_000_000_016, .. }),
            message: &["header size: expected at most", "promising 60000000016"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "gzip content shorter than its header",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, gz(&header(5, 2, 3, 20))), (LAB, labels(5))],
            check: |e| matches!(e, DataError::Truncated { field: "decompressed length", expected: 46, found: 36, .. }),
            message: &["decompressed length: expected 46 bytes as the header promises, found only 36"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "gzip content longer than its header",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, gz(&header(5, 2, 3, 300))), (LAB, labels(5))],
            check: |e| matches!(e, DataError::TrailingBytes { field: "decompressed length", .. }),
            message: &["found more than 46"],
            names: "train-images-idx3-ubyte",
        },
        Case {
            name: "CIFAR-10 size not a multiple of the record size",
            dataset: DatasetName::Cifar10,
            files: vec![(C10, vec![0u8; 3073 * 2 + 5])],
            check: |e| matches!(e, DataError::RecordSize { record: 3073, found: 6151, .. }),
            message: &["test_batch.bin: file length: expected a multiple of the 3073-byte record, found 6151 bytes"],
            names: "test_batch.bin",
        },
        Case {
            name: "CIFAR-10 empty file",
            dataset: DatasetName::Cifar10,
            files: vec![(C10, vec![])],
            check: |e| matches!(e, DataError::Empty { .. }),
            message: &["test_batch.bin"],
            names: "test_batch.bin",
        },
        Case {
            name: "CIFAR-10 label out of range",
            dataset: DatasetName::Cifar10,
            files: vec![(C10, cifar_bad_label)],
            check: |e| matches!(e, DataError::LabelOutOfRange { record: 2, limit: 10, found: 10, .. }),
            message: &["label of record 2: expected below 10, found 10"],
            names: "test_batch.bin",
        },
        Case {
            name: "CIFAR-100 fine label out of range",
            dataset: DatasetName::Cifar100Fine,
            files: vec![(C100, encode_cifar100(&[1, 2], &[5, 100], &bytes(2 * PIXELS, 3)))],
            check: |e| {
                matches!(e, DataError::LabelOutOfRange { field: "fine label", record: 1, limit: 100, found: 100, .. })
            },
            message: &["test.bin: fine label of record 1: expected below 100, found 100"],
            names: "test.bin",
        },
        Case {
            name: "CIFAR-100 coarse label out of range (checked even when loading fine labels)",
            dataset: DatasetName::Cifar100Fine,
            files: vec![(C100, encode_cifar100(&[20, 2], &[5, 6], &bytes(2 * PIXELS, 3)))],
            check: |e| {
                matches!(e, DataError::LabelOutOfRange { field: "coarse label", record: 0, limit: 20, found: 20, .. })
            },
            message: &["coarse label of record 0: expected below 20, found 20"],
            names: "test.bin",
        },
        Case {
            // Beaver (fine 4) is an aquatic mammal (coarse 0), not a fish (coarse 1).
            name: "CIFAR-100 coarse label that is not the fine label's superclass",
            dataset: DatasetName::Cifar100Coarse,
            files: vec![(C100, encode_cifar100(&[0, 1], &[4, 4], &bytes(2 * PIXELS, 3)))],
            check: |e| matches!(e, DataError::CoarseMismatch { record: 1, fine: 4, expected: 0, found: 1, .. }),
            message: &["coarse label of record 1: expected 0 (the superclass of fine label 4), found 1"],
            names: "test.bin",
        },
        Case {
            name: "CIFAR-10 records in a CIFAR-100 file",
            dataset: DatasetName::Cifar100Coarse,
            files: vec![(C100, encode_cifar10(&[1, 2], &bytes(2 * PIXELS, 4)))],
            check: |e| matches!(e, DataError::RecordSize { record: 3074, found: 6146, .. }),
            message: &["3074-byte record"],
            names: "test.bin",
        },
        Case {
            name: "class-names file with a name missing",
            dataset: DatasetName::Cifar10,
            files: vec![
                (C10, encode_cifar10(&[1], &bytes(PIXELS, 4))),
                ("cifar-10-batches-bin/batches.meta.txt", b"a\nb\nc\nd\ne\nf\ng\nh\ni\n".to_vec()),
            ],
            check: |e| matches!(e, DataError::ClassNames { expected: 10, found: 9, .. }),
            message: &["batches.meta.txt: class names: expected 10 names, found 9"],
            names: "batches.meta.txt",
        },
        Case {
            name: "labels file missing",
            dataset: DatasetName::Mnist,
            files: vec![(IMG, images(5))],
            check: |e| matches!(e, DataError::Missing { .. }),
            message: &["train-labels-idx1-ubyte: not found", "scripts/fetch-data.sh mnist"],
            names: "train-labels-idx1-ubyte",
        },
    ]
}

#[test]
fn every_malformed_input_has_its_own_error() {
    let cases = cases();
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for case in cases {
        let dir = TempDir::new("malformed");
        for (rel, content) in &case.files {
            dir.write(rel, content);
        }
        let split = if case.dataset == DatasetName::Mnist { Split::Train } else { Split::Test };
        match load(case.dataset, &dir.0, split) {
            Ok(ds) => failures.push(format!("{}: loaded {} images instead of failing", case.name, ds.len)),
            Err(e) => {
                let msg = e.to_string();
                let file = case.names;
                if !(case.check)(&e) {
                    failures.push(format!("{}: wrong variant {e:?}", case.name));
                } else if let Some(missing) = case.message.iter().find(|m| !msg.contains(*m)) {
                    failures.push(format!("{}: message {msg:?} lacks {missing:?}", case.name));
                } else if !msg.contains(file) {
                    failures.push(format!("{}: message {msg:?} does not name {file}", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn messages_show_the_full_path() {
    let dir = TempDir::new("path");
    let p = dir.write("x/train-images-idx3-ubyte", &header(60_000, 28, 28, 0));
    let err = read_images(&p).unwrap_err();
    assert!(err.to_string().starts_with(&format!("{}: file length", p.display())), "{err}");
}

/// Byte flips and truncations of valid files (raw and gzip): every one must come back as
/// Ok or Err, never as a panic or an allocation the file cannot back.
#[test]
fn mutated_files_never_panic() {
    let dir = TempDir::new("fuzz");
    let originals = [
        images(6),
        labels(6),
        gz(&images(6)),
        gz(&labels(6)),
        encode_cifar10(&[1, 2], &bytes(2 * PIXELS, 8)),
        encode_cifar100(&[8, 0], &[3, 4], &bytes(2 * PIXELS, 9)),
    ];
    let mut rng = 0x1234_5678_u64;
    let mut next = move |n: usize| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((rng >> 33) as usize) % n.max(1)
    };
    let path = dir.0.join("f");
    let (mut ok, mut err) = (0, 0);
    for round in 0..600 {
        let mut data = originals[round % originals.len()].clone();
        for _ in 0..1 + next(4) {
            match next(3) {
                0 => {
                    let i = next(data.len().min(40)); // headers live at the start
                    data[i] = next(256) as u8;
                }
                1 => {
                    let i = next(data.len());
                    data[i] ^= 1 << next(8);
                }
                _ => data.truncate(next(data.len() + 1)),
            }
            if data.is_empty() {
                break;
            }
        }
        std::fs::write(&path, &data).unwrap();
        for result in [
            read_images(&path).map(|_| ()),
            read_labels(&path, 10).map(|_| ()),
            datasets::cifar::read_cifar10(&path).map(|_| ()),
            datasets::cifar::read_cifar100(&path).map(|_| ()),
        ] {
            match result {
                Ok(()) => ok += 1,
                Err(_) => err += 1,
            }
        }
    }
    // Both outcomes occur, so the mutations neither always nor never break the files.
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}
