//! Published checksums and download locations, in one place, and checking files against them.
//!
//! The md5s are those of ../shared/docs/data.md and of the data sets' own sites;
//! scripts/fetch-data.sh carries a copy of the same table.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use md5::{Digest, Md5};

use crate::source::{self, Source};
use crate::{DataError, DatasetName};

/// A file of a data set and the md5 of its (decompressed) content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownFile {
    /// File name inside the data set's folder (IDX files may also be stored as `name.gz`).
    pub file: &'static str,
    /// md5 of the decompressed content, lowercase hex.
    pub md5: &'static str,
}

/// A file as the data set's site distributes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Download {
    /// File name on the site (appended to the base URL).
    pub file: &'static str,
    /// Published md5 of that file as downloaded.
    pub md5: &'static str,
}

const MNIST_FILES: [KnownFile; 4] = [
    KnownFile { file: "train-images-idx3-ubyte", md5: "6bbc9ace898e44ae57da46a324031adb" },
    KnownFile { file: "train-labels-idx1-ubyte", md5: "a25bea736e30d166cdddb491f175f624" },
    KnownFile { file: "t10k-images-idx3-ubyte", md5: "2646ac647ad5339dbf082846283269ea" },
    KnownFile { file: "t10k-labels-idx1-ubyte", md5: "27ae3e4e09519cfbb04c329615203637" },
];

const FASHION_MNIST_FILES: [KnownFile; 4] = [
    KnownFile { file: "train-images-idx3-ubyte", md5: "f4a8712d7a061bf5bd6d2ca38dc4d50a" },
    KnownFile { file: "train-labels-idx1-ubyte", md5: "9018921c3c673c538a1fc5bad174d6f9" },
    KnownFile { file: "t10k-images-idx3-ubyte", md5: "8181f5470baa50b63fa0f6fddb340f0a" },
    KnownFile { file: "t10k-labels-idx1-ubyte", md5: "15d484375f8d13e6eb1aabb0c3f46965" },
];

const CIFAR10_FILES: [KnownFile; 6] = [
    KnownFile { file: "data_batch_1.bin", md5: "5dd7e06a14cb22eb9f671a540d1b7c25" },
    KnownFile { file: "data_batch_2.bin", md5: "5ea93a67294ea407fff1d09f752e9692" },
    KnownFile { file: "data_batch_3.bin", md5: "942cd6a4bcdd0dd3c604fbe906cb4421" },
    KnownFile { file: "data_batch_4.bin", md5: "ae636b3ba5c66a11e91e8cb52e771fcb" },
    KnownFile { file: "data_batch_5.bin", md5: "53f37980c15c3d472c316c40844f3f0d" },
    KnownFile { file: "test_batch.bin", md5: "803d5f7f4d78ea53de84dbe85f74fb6d" },
];

const CIFAR100_FILES: [KnownFile; 2] = [
    KnownFile { file: "train.bin", md5: "6172c7755cfe09b2fe270c85cebc1b15" },
    KnownFile { file: "test.bin", md5: "4499cfba6c016c1be1438163640a0898" },
];

const MNIST_DOWNLOADS: [Download; 4] = [
    Download { file: "train-images-idx3-ubyte.gz", md5: "f68b3c2dcbeaaa9fbdd348bbdeb94873" },
    Download { file: "train-labels-idx1-ubyte.gz", md5: "d53e105ee54ea40749a09fcbcd1e9432" },
    Download { file: "t10k-images-idx3-ubyte.gz", md5: "9fb629c4189551a2d022fa330f9573f3" },
    Download { file: "t10k-labels-idx1-ubyte.gz", md5: "ec29112dd5afa0611ce80d1b7f02629c" },
];

const FASHION_MNIST_DOWNLOADS: [Download; 4] = [
    Download { file: "train-images-idx3-ubyte.gz", md5: "8d4fb7e6c68d591d4c3dfef9ec88bf0d" },
    Download { file: "train-labels-idx1-ubyte.gz", md5: "25c81989df183df01b3e8a0aad5dffbe" },
    Download { file: "t10k-images-idx3-ubyte.gz", md5: "bef4ecab320f06d8554ea6380940ec79" },
    Download { file: "t10k-labels-idx1-ubyte.gz", md5: "bb300cfdad3c16e7a12a480ee83cd310" },
];

const CIFAR10_DOWNLOADS: [Download; 1] =
    [Download { file: "cifar-10-binary.tar.gz", md5: "c32a1d4ab5d03f1284b67883e8d87530" }];

const CIFAR100_DOWNLOADS: [Download; 1] =
    [Download { file: "cifar-100-binary.tar.gz", md5: "03b5dce01913d631647c71ecec9e9cb8" }];

/// The files of a data set's folder and their md5s.
pub fn known_files(name: DatasetName) -> &'static [KnownFile] {
    match name {
        DatasetName::Mnist => &MNIST_FILES,
        DatasetName::FashionMnist => &FASHION_MNIST_FILES,
        DatasetName::Cifar10 => &CIFAR10_FILES,
        DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => &CIFAR100_FILES,
    }
}

/// The files the data set's own site distributes, with their published md5s.
pub fn downloads(name: DatasetName) -> &'static [Download] {
    match name {
        DatasetName::Mnist => &MNIST_DOWNLOADS,
        DatasetName::FashionMnist => &FASHION_MNIST_DOWNLOADS,
        DatasetName::Cifar10 => &CIFAR10_DOWNLOADS,
        DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => &CIFAR100_DOWNLOADS,
    }
}

/// The data set's own download site (file names from [`downloads`] are appended).
pub fn site(name: DatasetName) -> &'static str {
    match name {
        DatasetName::Mnist => "https://yann.lecun.com/exdb/mnist/",
        DatasetName::FashionMnist => "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        DatasetName::Cifar10 | DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => {
            "https://www.cs.toronto.edu/~kriz/"
        }
    }
}

/// Feeds everything `reader` yields into an md5 and returns it as lowercase hex.
fn md5_reader(reader: &mut impl Read) -> io::Result<String> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// md5 of a file's bytes as stored (no decompression), lowercase hex.
pub fn md5_hex(path: &Path) -> io::Result<String> {
    md5_reader(&mut File::open(path)?)
}

/// md5 of a file's content, decompressing it first if it is gzip.
pub fn md5_content(path: &Path) -> Result<String, DataError> {
    let mut src = Source::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read_up_to(&mut buf)?;
        hasher.update(&buf[..n]);
        if n < buf.len() {
            break;
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks every file of the data set in `dir` against its published md5 (the md5 of the
/// decompressed content, so raw and .gz copies both pass).
pub fn verify(name: DatasetName, dir: &Path) -> Result<(), DataError> {
    verify_files(name, &dir.join(name.dir_name()), known_files(name))
}

/// Checks the files of `folder` against `files` (a published table, or a mirror's own).
pub(crate) fn verify_files(name: DatasetName, folder: &Path, files: &[KnownFile]) -> Result<(), DataError> {
    if !folder.is_dir() {
        return Err(DataError::Missing { path: folder.to_path_buf(), hint: name.fetch_hint() });
    }
    for known in files {
        let path = source::raw_or_gz(folder, known.file)
            .ok_or_else(|| DataError::Missing { path: folder.join(known.file), hint: name.fetch_hint() })?;
        let found = md5_content(&path)?;
        if found != known.md5 {
            return Err(DataError::Checksum { path, expected: known.md5.to_string(), found });
        }
    }
    Ok(())
}
