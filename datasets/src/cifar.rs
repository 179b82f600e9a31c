//! The binary versions of CIFAR-10 and CIFAR-100.
//!
//! There is no header: a file is a run of fixed-size records. A CIFAR-10 record is one
//! label byte and 3072 pixel bytes; a CIFAR-100 record is a coarse label byte, a fine label
//! byte and 3072 pixel bytes. Pixels are the red plane, then green, then blue, each 32x32
//! row-major, which is already CHW.

use std::fs;
use std::path::Path;

use crate::idx::check_labels;
use crate::source::read_up_to;
use crate::DataError;

/// Bytes of pixels per CIFAR image (3 x 32 x 32).
pub const PIXELS: usize = 3 * 32 * 32;
/// Bytes per CIFAR-10 record.
pub const RECORD_10: usize = 1 + PIXELS;
/// Bytes per CIFAR-100 record.
pub const RECORD_100: usize = 2 + PIXELS;

/// Records of one CIFAR file, split into labels and pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CifarRecords {
    /// CIFAR-10 label or CIFAR-100 fine label, one per record.
    pub labels: Vec<u8>,
    /// CIFAR-100 coarse labels (empty for CIFAR-10).
    pub coarse: Vec<u8>,
    /// `records * 3072` pixels, CHW per image.
    pub pixels: Vec<u8>,
}

/// Reads the whole file after checking that its length is a whole number of records.
fn read_records(path: &Path, record: usize) -> Result<Vec<u8>, DataError> {
    let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let len = meta.len();
    if len == 0 {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    if len % record as u64 != 0 {
        return Err(DataError::RecordSize { path: path.to_path_buf(), record, found: len });
    }
    let size = usize::try_from(len)
        .map_err(|_| DataError::Overflow { path: path.to_path_buf(), dims: format!("{len} bytes") })?;
    let mut file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut data = vec![0u8; size];
    let got = read_up_to(&mut file, &mut data).map_err(|e| DataError::io(path, e))?;
    if got < size {
        // The file shrank between the size check and the read.
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            field: "file length",
            expected: len,
            found: got as u64,
        });
    }
    Ok(data)
}

/// Reads a CIFAR-10 batch file (`data_batch_N.bin` or `test_batch.bin`).
pub fn read_cifar10(path: &Path) -> Result<CifarRecords, DataError> {
    let data = read_records(path, RECORD_10)?;
    check_labels(path, "label", &data, RECORD_10, 0, 10)?;
    let n = data.len() / RECORD_10;
    let mut out =
        CifarRecords { labels: Vec::with_capacity(n), coarse: Vec::new(), pixels: Vec::with_capacity(n * PIXELS) };
    for rec in data.chunks_exact(RECORD_10) {
        out.labels.push(rec[0]);
        out.pixels.extend_from_slice(&rec[1..]);
    }
    Ok(out)
}

/// The superclass (coarse label) of every CIFAR-100 fine label, from the data set's
/// published table of 20 superclasses with 5 classes each (labels in alphabetical order).
pub const FINE_TO_COARSE: [u8; 100] = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10,
    12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17, 10, 3, 2, 12, 12, 16,
    12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14,
    13,
];

/// Reads a CIFAR-100 file (`train.bin` or `test.bin`); both label kinds are checked, and
/// each coarse label against the superclass of its fine label.
pub fn read_cifar100(path: &Path) -> Result<CifarRecords, DataError> {
    let data = read_records(path, RECORD_100)?;
    check_labels(path, "coarse label", &data, RECORD_100, 0, 20)?;
    check_labels(path, "fine label", &data, RECORD_100, 1, 100)?;
    for (record, rec) in data.chunks_exact(RECORD_100).enumerate() {
        let (found, fine) = (rec[0], rec[1]);
        let expected = FINE_TO_COARSE[fine as usize];
        if found != expected {
            return Err(DataError::CoarseMismatch { path: path.to_path_buf(), record, fine, expected, found });
        }
    }
    let n = data.len() / RECORD_100;
    let mut out = CifarRecords {
        labels: Vec::with_capacity(n),
        coarse: Vec::with_capacity(n),
        pixels: Vec::with_capacity(n * PIXELS),
    };
    for rec in data.chunks_exact(RECORD_100) {
        out.coarse.push(rec[0]);
        out.labels.push(rec[1]);
        out.pixels.extend_from_slice(&rec[2..]);
    }
    Ok(out)
}

/// Encodes CIFAR-10 records (for tests); `pixels` holds 3072 bytes per label.
pub fn encode_cifar10(labels: &[u8], pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.len() * RECORD_10);
    for (l, img) in labels.iter().zip(pixels.chunks_exact(PIXELS)) {
        out.push(*l);
        out.extend_from_slice(img);
    }
    out
}

/// Encodes CIFAR-100 records (for tests); `pixels` holds 3072 bytes per record.
pub fn encode_cifar100(coarse: &[u8], fine: &[u8], pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fine.len() * RECORD_100);
    for ((c, f), img) in coarse.iter().zip(fine).zip(pixels.chunks_exact(PIXELS)) {
        out.push(*c);
        out.push(*f);
        out.extend_from_slice(img);
    }
    out
}
