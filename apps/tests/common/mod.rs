//! Helpers shared by the tests that run the `sph` binary on the real data sets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The data directory ($SPH_DATA or the workspace's data/); fails, naming the fetch
/// command, when one of the `(folder, fetch name)` data sets is missing.
pub fn data_dir(needs: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::var_os("SPH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
    for (folder, name) in needs {
        assert!(
            dir.join(folder).is_dir(),
            "{folder} missing under {}: run scripts/fetch-data.sh {name} first",
            dir.display()
        );
    }
    dir
}

/// Runs `sph` with `SPH_DATA` set to `data`.
pub fn sph_in(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sph")).args(args).env("SPH_DATA", data).output().expect("sph runs")
}

/// A scratch folder for one test, removed first if it exists.
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Standard output and standard error together.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
