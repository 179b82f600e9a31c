//! The one error type of the crate.
//!
//! Every variant that comes from a file names the file, the field that was wrong, what was
//! expected and what was found, so a user can tell a truncated download from a wrong file
//! without opening a hex editor.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Shows a path the way a user typed it (no quotes, platform separators).
struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// Everything that can go wrong while reading, verifying or fetching a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused a read (permissions, a directory instead of a file, ...).
    #[error("{}: {error}", Shown(path))]
    Io {
        /// File that could not be read.
        path: PathBuf,
        /// The underlying error (part of the message, so that an error chain names it once).
        error: io::Error,
    },

    /// The data set's folder or one of its files is not there.
    #[error("{}: not found; {hint}", Shown(path))]
    Missing {
        /// Folder or file that was looked for.
        path: PathBuf,
        /// How to get the data (names the fetch command).
        hint: String,
    },

    /// The file has zero bytes (an interrupted copy, usually).
    #[error("{}: file length: expected a data file, found an empty file", Shown(path))]
    Empty {
        /// The empty file.
        path: PathBuf,
    },

    /// The file ends inside its header.
    #[error("{}: {field}: expected {expected} bytes, found only {found}", Shown(path))]
    HeaderTooShort {
        /// The short file.
        path: PathBuf,
        /// Which part of the header was cut off.
        field: &'static str,
        /// Bytes needed up to the end of that field.
        expected: usize,
        /// Bytes the file has.
        found: usize,
    },

    /// The magic number says this is not the expected kind of IDX file.
    #[error("{}: magic number: expected 0x{expected:08x} ({what}), found 0x{found:08x}", Shown(path))]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number this file must start with.
        expected: u32,
        /// What the expected magic number means.
        what: &'static str,
        /// The first four bytes, big-endian.
        found: u32,
    },

    /// A header dimension is zero.
    #[error("{}: header {field}: expected at least 1, found 0", Shown(path))]
    ZeroDimension {
        /// The file.
        path: PathBuf,
        /// Which dimension (count, rows, columns).
        field: &'static str,
    },

    /// The header's dimensions multiply to more bytes than any file can hold.
    #[error("{}: header dimensions: expected a size that fits in memory, found {dims}", Shown(path))]
    Overflow {
        /// The file.
        path: PathBuf,
        /// The dimensions as written in the header, e.g. "4294967295 x 65536 x 65536".
        dims: String,
    },

    /// The file (or its decompressed content) is shorter than its header promises.
    #[error("{}: {field}: expected {expected} bytes as the header promises, found only {found}", Shown(path))]
    Truncated {
        /// The file.
        path: PathBuf,
        /// "file length" or "decompressed length".
        field: &'static str,
        /// Bytes the header promises.
        expected: u64,
        /// Bytes that are there.
        found: u64,
    },

    /// The file (or its decompressed content) is longer than its header promises.
    #[error("{}: {field}: expected {expected} bytes as the header promises, found {found}", Shown(path))]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// "file length" or "decompressed length".
        field: &'static str,
        /// Bytes the header promises.
        expected: u64,
        /// What is there ("47040017" or "more than 47040016" for gzip).
        found: String,
    },

    /// A gzip file is too small to decompress into what its header promises (checked before
    /// decompressing, so a "zip bomb" cannot exhaust memory).
    #[error("{}: header size: expected at most {max} bytes from a {compressed}-byte gzip file, found a header promising {promised}", Shown(path))]
    ImplausibleSize {
        /// The gzip file.
        path: PathBuf,
        /// Bytes the header promises.
        promised: u64,
        /// Size of the compressed file.
        compressed: u64,
        /// Most bytes deflate can produce from that many.
        max: u64,
    },

    /// The images file and the labels file disagree on the number of samples.
    #[error("{}: header count: expected {expected} images to match labels, found {found}", Shown(path))]
    CountMismatch {
        /// The images file.
        path: PathBuf,
        /// Number of labels.
        expected: usize,
        /// Number of images.
        found: usize,
    },

    /// A CIFAR-100 record whose coarse label is not the superclass of its fine label.
    #[error(
        "{}: coarse label of record {record}: expected {expected} (the superclass of fine label {fine}), found {found}",
        Shown(path)
    )]
    CoarseMismatch {
        /// The file.
        path: PathBuf,
        /// 0-based record number.
        record: usize,
        /// The record's fine label.
        fine: u8,
        /// The superclass of that fine label.
        expected: u8,
        /// The coarse label in the record.
        found: u8,
    },

    /// A label is not a valid class index.
    #[error("{}: {field} of record {record}: expected below {limit}, found {found}", Shown(path))]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// "label", "fine label" or "coarse label".
        field: &'static str,
        /// Index of the record (0-based).
        record: usize,
        /// Number of classes.
        limit: usize,
        /// The label byte.
        found: u8,
    },

    /// A CIFAR file's length is not a whole number of records.
    #[error("{}: file length: expected a multiple of the {record}-byte record, found {found} bytes", Shown(path))]
    RecordSize {
        /// The file.
        path: PathBuf,
        /// Bytes per record (3073 for CIFAR-10, 3074 for CIFAR-100).
        record: usize,
        /// Length of the file.
        found: u64,
    },

    /// The gzip stream cannot be decompressed.
    #[error("{}: gzip stream: expected valid gzip data, found {message}", Shown(path))]
    Gzip {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },

    /// A class-names file has the wrong number of names.
    #[error("{}: class names: expected {expected} names, found {found}", Shown(path))]
    ClassNames {
        /// The names file.
        path: PathBuf,
        /// Number of classes.
        expected: usize,
        /// Non-empty lines in the file.
        found: usize,
    },

    /// A file's md5 is not the published one.
    #[error("{}: md5: expected {expected}, found {found}", Shown(path))]
    Checksum {
        /// The file (for .gz files, the md5 is of the decompressed content).
        path: PathBuf,
        /// The published md5.
        expected: String,
        /// The md5 of the file.
        found: String,
    },

    /// A data set's web site could not be reached (no internet on this machine).
    #[error("could not reach {url} ({reason}); {hint}")]
    Unreachable {
        /// The URL that was tried.
        url: String,
        /// What curl said.
        reason: String,
        /// What to do instead (names scripts/fetch-data.sh).
        hint: String,
    },

    /// A copy already in place failed its check, and fetching a fresh one failed too.
    #[error("{existing}; fetching a fresh copy failed too: {fetch}")]
    BadCopy {
        /// What is wrong with the copy in place (a checksum error naming the file).
        existing: Box<DataError>,
        /// Why the download did not replace it.
        fetch: Box<DataError>,
    },

    /// The site answered but the download failed (HTTP error, curl missing, ...).
    #[error("download of {url} failed: {message}")]
    Download {
        /// The URL that was tried.
        url: String,
        /// What went wrong.
        message: String,
    },

    /// A name that is not one of the data sets.
    #[error("data set name: expected one of {}, found '{found}'", crate::NAMES.join(", "))]
    UnknownName {
        /// What was given.
        found: String,
    },

    /// An argument to the loader or a split is out of its range.
    #[error("{field}: expected {expected}, found {found}")]
    InvalidArgument {
        /// The argument.
        field: &'static str,
        /// The allowed range.
        expected: String,
        /// What was given.
        found: String,
    },
}

impl DataError {
    /// Wraps an io::Error with the path it happened on.
    pub(crate) fn io(path: &Path, error: io::Error) -> DataError {
        DataError::Io { path: path.to_path_buf(), error }
    }
}
