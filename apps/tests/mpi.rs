//! Data-parallel training under `mpirun` (built with `--features mpi`; scripts/test.sh runs
//! these when Open MPI's `mpirun` is installed). Every run is 2 ranks of 1 thread on this
//! 2-core machine; as root, Open MPI needs `--allow-run-as-root`, and `--oversubscribe` lets
//! it start more ranks than it counts slots.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{data_dir, sph_in, text};

fn mnist() -> PathBuf {
    data_dir(&[("mnist", "mnist")])
}

/// `mpirun -np ranks sph args` with `SPH_DATA` set to `data`.
fn mpirun(ranks: usize, data: &Path) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", &ranks.to_string(), env!("CARGO_BIN_EXE_sph")])
        .env("SPH_DATA", data);
    c
}

fn mpi_sph(ranks: usize, data: &Path, args: &[&str]) -> Output {
    mpirun(ranks, data).args(args).output().expect("mpirun runs")
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("sph-mpi", name)
}

/// The largest difference between the learned parameters (and optimizer state) of two
/// checkpoints.
fn max_difference(a: &Path, b: &Path) -> f32 {
    let (a, b) = (engine::checkpoint::load(a).unwrap(), engine::checkpoint::load(b).unwrap());
    assert_eq!(a.tensors.len(), b.tensors.len());
    let mut worst = 0.0f32;
    for (name, t) in &a.tensors {
        let u = &b.tensors[name];
        assert_eq!(t.shape(), u.shape(), "{name}");
        for (x, y) in t.data().iter().zip(u.data()) {
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

/// `epochs` epochs of 20 steps of SimpleFNN (spherized; no dropout, no batch-norm, so every
/// rank computes what one process would) with a global batch of 128, one thread per process.
fn fnn(epochs: &str, out: &Path) -> Vec<String> {
    let args = ["train", "--model", "sph_fnn", "--dataset", "mnist", "--epochs", epochs, "--train-limit", "2560"];
    let more = ["--test-limit", "1000", "--batch-size", "128", "--check-sync", "--threads", "1", "--out"];
    args.iter().chain(&more).map(|a| a.to_string()).chain([out.display().to_string()]).collect()
}

/// `sph train` of the spherized LeNet-5 on all of MNIST for `epochs`, into `out`.
fn lenet(epochs: &str, threads: &str, out: &Path) -> Vec<String> {
    let args =
        ["train", "--model", "sph_lenet", "--dataset", "mnist", "--epochs", epochs, "--threads", threads, "--out"];
    args.iter().map(|a| a.to_string()).chain([out.display().to_string()]).collect()
}

fn run(ranks: Option<usize>, data: &Path, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match ranks {
        None => sph_in(data, &args),
        Some(n) => mpi_sph(n, data, &args),
    }
}

/// Tolerance of the equivalence: the ranks sum the same per-image gradients in another order
/// (two halves, then across ranks) than one process does, which changes the last bits of each
/// step's gradient; Adam divides by the root of the second moment, so for weights whose
/// gradients are near zero those bits move the update by more than their size. 20 steps
/// measured 8.5e-7 at most; 1e-4 is a tenth of one step of the learning rate (1e-3).
const EQUIVALENCE_TOLERANCE: f32 = 1e-4;

#[test]
fn two_ranks_train_the_same_parameters_as_one_process() {
    let data = mnist();
    let (one, two) = (scratch("one"), scratch("two"));
    let o = run(None, &data, &fnn("1", &one));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(Some(2), &data, &fnn("1", &two));
    assert!(o.status.success(), "{}", text(&o));
    let worst = max_difference(&one.join("last.safetensors"), &two.join("last.safetensors"));
    assert!(worst <= EQUIVALENCE_TOLERANCE, "parameters differ by {worst}");
    // Counts summed across ranks: the same accuracy line as one process.
    let line = |dir: &Path| std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let acc = |l: String| serde_json::from_str::<serde_json::Value>(&l).unwrap()["test_acc"].as_f64().unwrap();
    assert_eq!(acc(line(&one)), acc(line(&two)));
}

#[test]
fn lenet_on_two_ranks_reaches_the_accuracy_of_one_and_writes_one_set_of_outputs() {
    let data = mnist();
    let out = scratch("lenet");
    let o = run(Some(2), &data, &lenet("1", "1", &out));
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.matches("done: test accuracy").count(), 1, "rank 0 alone prints: {stdout}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1);
    let acc = serde_json::from_str::<serde_json::Value>(metrics.trim()).unwrap()["test_acc"].as_f64().unwrap();
    assert!(acc >= 0.96, "test accuracy {acc}");
    let mut files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["best.safetensors", "config.json", "curves.png", "last.safetensors", "metrics.jsonl"]);
}

/// Epoch 1 on one rank count, epoch 2 resumed on the other: the same parameters as two
/// epochs on one process (up to the equivalence tolerance, which two epochs stay within).
#[test]
fn a_checkpoint_resumes_on_any_number_of_ranks() {
    let data = mnist();
    let reference = scratch("reference");
    let o = run(None, &data, &fnn("2", &reference));
    assert!(o.status.success(), "{}", text(&o));
    for (first, second) in [(2, 1), (1, 2)] {
        let dir = scratch(&format!("resume-{first}-{second}"));
        let o = run(Some(first), &data, &fnn("1", &dir));
        assert!(o.status.success(), "{}", text(&o));
        let ckpt = dir.join("last.safetensors");
        let resume: Vec<String> =
            fnn("2", &dir).into_iter().chain(["--resume".into(), ckpt.display().to_string()]).collect();
        let o = run(Some(second), &data, &resume);
        assert!(o.status.success(), "{first} then {second} ranks: {}", text(&o));
        let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), 2, "{metrics}");
        let worst = max_difference(&reference.join("last.safetensors"), &ckpt);
        assert!(worst <= EQUIVALENCE_TOLERANCE, "{first} then {second} ranks: parameters differ by {worst}");
    }
}

/// The ranks mpirun started (its children), once they exist.
fn ranks_of(mpirun: u32) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let children = std::fs::read_to_string(format!("/proc/{mpirun}/task/{mpirun}/children")).unwrap_or_default();
        let pids: Vec<u32> = children.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if pids.len() == 2 || started.elapsed() > Duration::from_secs(30) {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a long 2-rank LeNet run, waits until it trains, then sends `signal` to rank 1 alone;
/// returns mpirun's exit status, how long it took to end, and what it printed.
fn signal_one_rank(data: &Path, out: &Path, signal: &str) -> (std::process::ExitStatus, Duration, String) {
    let child = mpirun(2, data)
        .args(lenet("20", "1", out))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mpirun starts");
    let ranks = ranks_of(child.id());
    assert_eq!(ranks.len(), 2, "mpirun started {ranks:?}");
    // Well into the first epoch: the signal handlers are installed and steps are running.
    std::thread::sleep(Duration::from_secs(3));
    let sent = Command::new("kill").args([signal, &ranks[1].to_string()]).status().expect("kill runs");
    assert!(sent.success());
    let signalled = Instant::now();
    let o = child.wait_with_output().expect("mpirun ends");
    (o.status, signalled.elapsed(), text(&o))
}

#[test]
fn sigterm_on_one_rank_stops_every_rank_after_a_save() {
    let data = mnist();
    let out = scratch("sigterm");
    let (status, _, printed) = signal_one_rank(&data, &out, "-TERM");
    assert_eq!(status.code(), Some(130), "{printed}");
    assert!(printed.contains("interrupted at epoch"), "{printed}");
    let ckpt = out.join("last.safetensors");
    // The saved state resumes (here on one rank, for one more epoch).
    let resume: Vec<String> =
        lenet("1", "2", &out).into_iter().chain(["--resume".into(), ckpt.display().to_string()]).collect();
    let o = run(Some(1), &data, &resume);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_killed_rank_ends_the_others_with_an_error_in_bounded_time() {
    let data = mnist();
    let out = scratch("killed");
    let (status, took, printed) = signal_one_rank(&data, &out, "-KILL");
    assert!(!status.success(), "{printed}");
    assert!(took < Duration::from_secs(60), "the run took {took:?} to end after a rank was killed");
    assert!(printed.contains("signal 9"), "mpirun names the killed rank: {printed}");
}
