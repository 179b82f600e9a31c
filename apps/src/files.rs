//! Files the commands write: never over something the user owns unasked, and always
//! through a temporary file renamed into place, so a reader never sees half a file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Fails, naming the first file, when any of `paths` exists and `force` was not given:
/// a command never replaces a user's file unasked.
pub fn refuse_to_overwrite(paths: &[PathBuf], force: bool) -> Result<()> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) if !force => bail!("{} exists; pass --force to replace it, or choose another --out", p.display()),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames it.
/// In an MPI run only rank 0 writes (the others hold the same results).
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    if !crate::dist::is_root() {
        return Ok(());
    }
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Copies `from` to `to` atomically (as [`write_atomic`]; rank 0 only).
pub fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    if !crate::dist::is_root() {
        return Ok(());
    }
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_atomic(to, bytes)
}
