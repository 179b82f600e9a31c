//! The IDX format of MNIST and Fashion-MNIST.
//!
//! A file is a 4-byte magic number (two zero bytes, a type byte 0x08 for u8, the number of
//! dimensions), one big-endian u32 per dimension, then the data. Images files have three
//! dimensions (count, rows, columns), labels files one (count).

use std::path::Path;

use byteorder::{BigEndian, ByteOrder};

use crate::source::Source;
use crate::DataError;

/// Magic number of an IDX file of u8 with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images read from an IDX file: `count` images of `rows` x `cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// `count * rows * cols` pixels.
    pub pixels: Vec<u8>,
}

/// An opened IDX file whose header has been read and checked, before any of its body.
struct Opened {
    src: Source,
    dims: Vec<u32>,
    header_len: u64,
}

/// Reads the magic number and dimensions; returns them and the header length in bytes.
fn read_header(
    src: &mut Source,
    magic: u32,
    what: &'static str,
    names: &[&'static str],
) -> Result<(Vec<u32>, u64), DataError> {
    let path = src.path().to_path_buf();
    let mut head = [0u8; 4];
    let n = src.read_up_to(&mut head)?;
    if n == 0 {
        return Err(DataError::Empty { path });
    }
    if n < 4 {
        return Err(DataError::HeaderTooShort { path, field: "magic number", expected: 4, found: n });
    }
    let found = BigEndian::read_u32(&head);
    if found != magic {
        return Err(DataError::BadMagic { path, expected: magic, what, found });
    }
    let mut dims_raw = vec![0u8; 4 * names.len()];
    let n = src.read_up_to(&mut dims_raw)?;
    if n < dims_raw.len() {
        return Err(DataError::HeaderTooShort {
            path,
            field: "header dimensions",
            expected: 4 + dims_raw.len(),
            found: 4 + n,
        });
    }
    let dims: Vec<u32> = dims_raw.chunks_exact(4).map(BigEndian::read_u32).collect();
    for (&d, &field) in dims.iter().zip(names) {
        if d == 0 {
            return Err(DataError::ZeroDimension { path, field });
        }
    }
    Ok((dims, 4 + dims_raw.len() as u64))
}

fn open_images(path: &Path) -> Result<Opened, DataError> {
    let mut src = Source::open(path)?;
    let (dims, header_len) =
        read_header(&mut src, IMAGES_MAGIC, "IDX images: u8, 3 dimensions", &["count", "rows", "columns"])?;
    Ok(Opened { src, dims, header_len })
}

fn open_labels(path: &Path) -> Result<Opened, DataError> {
    let mut src = Source::open(path)?;
    let (dims, header_len) = read_header(&mut src, LABELS_MAGIC, "IDX labels: u8, 1 dimension", &["count"])?;
    Ok(Opened { src, dims, header_len })
}

/// Reads an IDX images file (raw or gzip).
pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    images_body(path, open_images(path)?)
}

/// Bytes of pixels the images header promises, checked for overflow and (gzip) against
/// what the compressed file can hold.
fn images_len(path: &Path, opened: &Opened) -> Result<u64, DataError> {
    let (count, rows, cols) = (opened.dims[0] as u64, opened.dims[1] as u64, opened.dims[2] as u64);
    // Three u32 can overflow u64, so every product is checked.
    let overflow = || DataError::Overflow { path: path.to_path_buf(), dims: format!("{count} x {rows} x {cols}") };
    let len = count.checked_mul(rows).and_then(|x| x.checked_mul(cols)).ok_or_else(overflow)?;
    if usize::try_from(len).is_err() {
        return Err(overflow());
    }
    opened.src.check_plausible(opened.header_len.saturating_add(len))?;
    Ok(len)
}

fn images_body(path: &Path, opened: Opened) -> Result<IdxImages, DataError> {
    let len = images_len(path, &opened)?;
    let Opened { mut src, dims, header_len } = opened;
    let (count, rows, cols) = (dims[0] as u64, dims[1] as u64, dims[2] as u64);
    let pixels = src.read_body(header_len, len)?;
    Ok(IdxImages { count: count as usize, rows: rows as usize, cols: cols as usize, pixels })
}

/// Reads an IDX labels file (raw or gzip) and checks every label is below `num_classes`.
pub fn read_labels(path: &Path, num_classes: usize) -> Result<Vec<u8>, DataError> {
    labels_body(path, open_labels(path)?, num_classes)
}

fn labels_body(path: &Path, opened: Opened, num_classes: usize) -> Result<Vec<u8>, DataError> {
    let Opened { mut src, dims, header_len } = opened;
    let labels = src.read_body(header_len, dims[0] as u64)?;
    check_labels(path, "label", &labels, 1, 0, num_classes)?;
    Ok(labels)
}

/// Reads an images file and its labels file, comparing the two headers' counts before
/// reading (or decompressing) either body: a forged count fails in microseconds instead of
/// after decompressing what it promises.
pub fn read_pair(
    images_path: &Path,
    labels_path: &Path,
    num_classes: usize,
) -> Result<(IdxImages, Vec<u8>), DataError> {
    let labels = open_labels(labels_path)?;
    let images = open_images(images_path)?;
    images_len(images_path, &images)?;
    let (expected, found) = (labels.dims[0] as usize, images.dims[0] as usize);
    if expected != found {
        return Err(DataError::CountMismatch { path: images_path.to_path_buf(), expected, found });
    }
    // Labels first: they are small, and a bad labels file is reported without reading
    // 47 MB of images.
    let labels = labels_body(labels_path, labels, num_classes)?;
    let images = images_body(images_path, images)?;
    Ok((images, labels))
}

/// Checks `data[offset + k * stride] < limit` for every record k.
pub(crate) fn check_labels(
    path: &Path,
    field: &'static str,
    data: &[u8],
    stride: usize,
    offset: usize,
    limit: usize,
) -> Result<(), DataError> {
    let bad = data.iter().skip(offset).step_by(stride).enumerate().find(|(_, &l)| l as usize >= limit);
    match bad {
        Some((record, &found)) => {
            Err(DataError::LabelOutOfRange { path: path.to_path_buf(), field, record, limit, found })
        }
        None => Ok(()),
    }
}

/// Encodes images as an IDX file (for tests and for writing subsets).
pub fn encode_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pixels.len());
    for v in [IMAGES_MAGIC, count, rows, cols] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Encodes labels as an IDX file (for tests and for writing subsets).
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}
