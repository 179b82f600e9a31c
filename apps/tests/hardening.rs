//! What a hostile or careless user tried: absurd thread counts, settings that cannot be
//! right, runs that diverge at once, outputs that already exist, resumes at another batch
//! size, signals, and checkpoints compared byte for byte. Small budgets on real MNIST.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_one_line_error, text};

fn data_dir() -> PathBuf {
    common::data_dir(&[("mnist", "mnist")])
}

fn sph(args: &[&str]) -> Output {
    common::sph_in(&data_dir(), args)
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("sph-hardening", name)
}

const TINY: [&str; 10] =
    ["train", "--model", "lenet", "--dataset", "mnist", "--train-limit", "600", "--test-limit", "100", "--threads"];

#[test]
fn argument_errors_are_one_line_with_exit_code_2() {
    let base = ["train", "--model", "lenet", "--dataset", "mnist"];
    for (extra, needle) in [
        (&["--bogus"][..], "unexpected argument '--bogus'"),
        (&["--epochs", "-1"], "invalid value '-1' for '--epochs"),
        (&["--lr", "abc"], "invalid value 'abc' for '--lr"),
        (&["--epochs"], "--epochs"),
    ] {
        assert_one_line_error(&sph(&[&base[..], extra].concat()), &[needle]);
    }
    assert_one_line_error(&sph(&["trian"]), &["unrecognized subcommand 'trian'"]);
}

#[test]
fn thread_counts_are_bounded() {
    for n in ["100000", "4096", "0"] {
        assert_one_line_error(&sph(&[&TINY[..], &[n]].concat()), &["--threads: expected 1 to", n]);
    }
}

#[test]
fn settings_that_cannot_be_right_are_refused_before_the_run() {
    for (flag, value) in [
        ("--lr", "-0.1"),
        ("--lr", "NaN"),
        ("--lr", "inf"),
        ("--lr", "0"),
        ("--weight-decay", "inf"),
        ("--weight-decay", "-1"),
        ("--momentum", "NaN"),
        ("--momentum", "1.5"),
        ("--scaling", "0"),
        ("--radius", "-5"),
        ("--delta", "1"),
        ("--width-multiplier", "NaN"),
        ("--train-limit", "0"),
        ("--test-limit", "0"),
        ("--batch-size", "0"),
        ("--epochs", "0"),
    ] {
        let out = scratch(&format!("refused{flag}{value}"));
        let o = sph(&["train", "--model", "lenet", "--dataset", "mnist", "--out", out.to_str().unwrap(), flag, value]);
        assert_one_line_error(&o, &[&format!("{flag}: expected")]);
        assert!(!out.exists(), "{flag} {value}: the run started and wrote {}", out.display());
    }
}

#[test]
fn divergence_before_the_first_checkpoint_says_none_was_written() {
    let out = scratch("diverge");
    let o = sph(&[
        &TINY[..],
        &["2", "--optimizer", "sgd", "--lr", "1e6", "--epochs", "1", "--out"],
        &[out.to_str().unwrap()],
    ]
    .concat());
    assert_one_line_error(&o, &["loss became", "no checkpoint was written"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("last.safetensors"), "{}", text(&o));
    assert!(!out.join("last.safetensors").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn outputs_that_exist_are_not_overwritten_without_force() {
    let dir = scratch("overwrite");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("mine.png");
    std::fs::write(&png, b"the user's picture").unwrap();
    let show = ["data", "show", "mnist", "--count", "4", "--out", png.to_str().unwrap()];
    assert_one_line_error(&sph(&show), &["mine.png exists", "--force"]);
    assert_eq!(std::fs::read(&png).unwrap(), b"the user's picture");
    let o = sph(&[&show[..], &["--force"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(image::open(&png).is_ok());

    std::fs::write(dir.join("toy.json"), b"{}").unwrap();
    let toy = ["figure", "toy", "--epochs", "1", "--out", dir.to_str().unwrap()];
    assert_one_line_error(&sph(&toy), &["toy.json exists", "--force"]);
    assert_eq!(std::fs::read(dir.join("toy.json")).unwrap(), b"{}");
    assert!(!dir.join("toy.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_saves_like_ctrl_c_exits_130_and_resume_refuses_another_batch_size() {
    let out = scratch("sigterm");
    let args = [
        "train",
        "--model",
        "lenet",
        "--dataset",
        "mnist",
        "--train-limit",
        "50000",
        "--test-limit",
        "100",
        "--epochs",
        "1",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let (status, rest) = common::interrupt(&data_dir(), &args, "-TERM");
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("interrupted at epoch 1, step")), "{rest:?}");
    let ckpt = out.join("last.safetensors");
    assert!(ckpt.is_file());
    // The interrupted epoch was counted in steps of 128: another size is refused.
    let resume = ["train", "--model", "lenet", "--dataset", "mnist", "--resume", ckpt.to_str().unwrap()];
    assert_one_line_error(&sph(&[&resume[..], &["--batch-size", "64"]].concat()), &["--batch-size", "128"]);
    let _ = std::fs::remove_dir_all(&out);
}

fn train_twice_and_read(dir: &Path) -> Vec<u8> {
    let o = sph(&[&TINY[..], &["2", "--epochs", "2", "--seed", "5", "--out", dir.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    std::fs::read(dir.join("last.safetensors")).unwrap()
}

#[test]
fn equal_runs_write_byte_identical_checkpoints_with_0d_scalars() {
    let (a, b) = (scratch("bytes-a"), scratch("bytes-b"));
    let first = train_twice_and_read(&a);
    let second = train_twice_and_read(&b);
    assert!(first == second, "two runs with seed 5 and 2 threads wrote different checkpoints");
    // Timings live in metrics.jsonl only.
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"seconds\""), "{metrics}");

    // The spherization scalars are 0-d, as in the official PyTorch layer.
    let s = scratch("scalar");
    let o = sph(&[
        "train",
        "--model",
        "sph_lenet",
        "--dataset",
        "mnist",
        "--train-limit",
        "300",
        "--test-limit",
        "100",
        "--epochs",
        "1",
        "--out",
        s.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(s.join("last.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let scalars: Vec<(&String, &serde_json::Value)> =
        header.as_object().unwrap().iter().filter(|(k, _)| k.ends_with(".scaling")).collect();
    assert!(!scalars.is_empty(), "no scaling tensor in {header}");
    for (name, info) in scalars {
        assert_eq!(info["shape"], serde_json::json!([]), "{name}");
    }
    for d in [a, b, s] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A build without the `mpi` feature, started by a launcher as one of several ranks, says so
/// and stops at once instead of training the same run twice side by side.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_be_one_of_several_ranks() {
    for var in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_sph"))
            .args(["models"])
            .env(var, "2")
            .output()
            .expect("sph runs");
        assert_one_line_error(&o, &["no MPI support", "one of 2 ranks", "--features mpi"]);
    }
    // One rank is one process: fine.
    let o =
        std::process::Command::new(env!("CARGO_BIN_EXE_sph")).args(["models"]).env("PMI_SIZE", "1").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
