//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test file uses a different part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::write::GzEncoder;
use flate2::Compression;

/// A folder under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty folder whose name includes the test's tag and the process id, so
    /// parallel tests and parallel runs do not collide.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("datasets-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// `self/rel`, with parent folders created.
    pub fn file(&self, rel: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    /// Writes `bytes` at `self/rel` and returns the path.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.file(rel);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// gzip-compresses `bytes`.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Deterministic pseudo-random bytes (a linear congruential generator is enough here).
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// The real data directory: `$SPH_DATA` (relative paths from the workspace root, as in
/// scripts/fetch-data.sh) or `<workspace>/data`.
pub fn data_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("SPH_DATA") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root.join(d)
            }
        }
        _ => root.join("data"),
    }
}

/// [`data_root`] after checking that `sub` is in it. Panics with the fetch command if it is absent, because these tests
/// must fail, not pass silently, on a machine without the data.
pub fn real_data_dir(sub: &str) -> PathBuf {
    let dir = data_root();
    let fetch_name = match sub {
        "mnist" => "mnist",
        "fashion-mnist" => "fashion-mnist",
        _ => "cifar10",
    };
    assert!(
        dir.join(sub).is_dir(),
        "real data missing: {} does not exist; run `scripts/fetch-data.sh {fetch_name}` first",
        dir.join(sub).display()
    );
    dir
}
