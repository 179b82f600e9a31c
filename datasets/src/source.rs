//! Opening a data file that may be raw or gzip-compressed.
//!
//! The format is decided by the first two bytes (gzip starts with 1f 8b), not by the file
//! name, because renamed or re-compressed copies are common.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::DataError;

/// The two bytes every gzip stream starts with.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Deflate cannot expand data by more than about 1032 to 1; a gzip file that would have to
/// do better than this to hold what its header promises is rejected before decompressing.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// A readable data file: raw bytes or a decompressing gzip stream.
pub(crate) struct Source {
    path: PathBuf,
    reader: Box<dyn Read>,
    gzip: bool,
    /// Length of the file on disk (compressed length for gzip).
    file_len: u64,
}

impl Source {
    /// Opens `path`, detecting gzip by its magic bytes.
    pub(crate) fn open(path: &Path) -> Result<Source, DataError> {
        let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let mut magic = [0u8; 2];
        let n = read_up_to(&mut file, &mut magic).map_err(|e| DataError::io(path, e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| DataError::io(path, e))?;
        let gzip = n == 2 && magic == GZIP_MAGIC;
        let reader: Box<dyn Read> = if gzip {
            // Multi-member: some tools write a gzip file as several concatenated streams.
            Box::new(MultiGzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        Ok(Source { path: path.to_path_buf(), reader, gzip, file_len })
    }

    /// The path this source was opened from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads until `buf` is full or the data ends; returns how many bytes were read.
    pub(crate) fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let gzip = self.gzip;
        read_up_to(&mut self.reader, buf).map_err(|e| self.error(e, gzip))
    }

    /// Reads exactly `len` more bytes and checks that nothing follows them.
    ///
    /// `consumed` is how many bytes were already read (the header), so that the length
    /// messages can speak of whole files. For a raw file the length is checked against the
    /// file size before anything is allocated; for gzip the promise is first checked
    /// against what deflate can possibly produce, then decompression is capped at one byte
    /// more than promised.
    pub(crate) fn read_body(&mut self, consumed: u64, len: u64) -> Result<Vec<u8>, DataError> {
        let path = self.path.clone();
        let expected = consumed
            .checked_add(len)
            .ok_or_else(|| DataError::Overflow { path: path.clone(), dims: format!("{consumed} + {len} bytes") })?;
        if !self.gzip {
            if self.file_len < expected {
                return Err(DataError::Truncated { path, field: "file length", expected, found: self.file_len });
            }
            if self.file_len > expected {
                return Err(DataError::TrailingBytes {
                    path,
                    field: "file length",
                    expected,
                    found: self.file_len.to_string(),
                });
            }
            // The file is exactly as long as promised, so this allocation is backed by data.
            let size = usize::try_from(len)
                .map_err(|_| DataError::Overflow { path: path.clone(), dims: format!("{len} bytes") })?;
            let mut body = vec![0u8; size];
            let got = self.read_up_to(&mut body)?;
            if (got as u64) < len {
                // The file shrank while we read it.
                return Err(DataError::Truncated {
                    path,
                    field: "file length",
                    expected,
                    found: consumed + got as u64,
                });
            }
            return Ok(body);
        }

        self.check_plausible(expected)?;
        // No preallocation: the vector only grows as real data arrives, and the cap stops
        // a stream that goes on past its promise.
        let mut body = Vec::new();
        let cap = len.saturating_add(1);
        let gzip = self.gzip;
        (&mut self.reader).take(cap).read_to_end(&mut body).map_err(|e| self.error(e, gzip))?;
        let got = body.len() as u64;
        if got < len {
            return Err(DataError::Truncated { path, field: "decompressed length", expected, found: consumed + got });
        }
        if got > len {
            return Err(DataError::TrailingBytes {
                path,
                field: "decompressed length",
                expected,
                found: format!("more than {expected}"),
            });
        }
        Ok(body)
    }

    /// For gzip: fails when no deflate stream of this file's size could hold `expected`
    /// bytes in all (header included); raw files are checked by length when read.
    pub(crate) fn check_plausible(&self, expected: u64) -> Result<(), DataError> {
        let max = self.file_len.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024);
        if self.gzip && expected > max {
            return Err(DataError::ImplausibleSize {
                path: self.path.clone(),
                promised: expected,
                compressed: self.file_len,
                max,
            });
        }
        Ok(())
    }

    /// Turns a read error into the crate's error: for gzip it is almost always bad data.
    fn error(&self, e: io::Error, gzip: bool) -> DataError {
        if gzip {
            DataError::Gzip { path: self.path.clone(), message: e.to_string() }
        } else {
            DataError::io(&self.path, e)
        }
    }
}

/// Reads until `buf` is full or the reader ends; returns the count (unlike `read_exact`,
/// which cannot tell how much it got before failing).
pub(crate) fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Picks `dir/base` if it exists, else `dir/base.gz`; `None` if neither does.
pub(crate) fn raw_or_gz(dir: &Path, base: &str) -> Option<PathBuf> {
    let raw = dir.join(base);
    if raw.is_file() {
        return Some(raw);
    }
    let gz = dir.join(format!("{base}.gz"));
    gz.is_file().then_some(gz)
}
