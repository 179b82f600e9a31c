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

/// Exit code 2 and exactly one line on stderr holding every needle.
#[allow(dead_code)] // not every test file checks errors
pub fn assert_one_line_error(o: &Output, needles: &[&str]) {
    assert_eq!(o.status.code(), Some(2), "{}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "'{n}' missing from: {err}");
    }
}

/// Starts `sph args` with `SPH_DATA` set to `data`, waits until the run has printed its
/// output folder and trained a little, then sends `signal` (e.g. "-INT"); returns the exit
/// status and the lines printed after the signal.
#[allow(dead_code)] // not every test file interrupts runs
pub fn interrupt(data: &Path, args: &[&str], signal: &str) -> (std::process::ExitStatus, Vec<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sph"))
        .args(args)
        .env("SPH_DATA", data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sph starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    // The signal handler is installed before the run prints its output folder.
    for line in lines.by_ref() {
        if line.expect("utf-8 output").starts_with("output:") {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    let sent = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill runs");
    assert!(sent.success());
    let rest: Vec<String> = lines.map(|l| l.expect("utf-8 output")).collect();
    (child.wait().expect("sph ends"), rest)
}
