//! The `sph` command end to end, on the real MNIST files that the test command fetches
//! (scripts/fetch-data.sh mnist). Small budgets, except the one-epoch accuracy check.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_one_line_error, text};

fn data_dir() -> PathBuf {
    common::data_dir(&[("mnist", "mnist")])
}

fn sph(args: &[&str]) -> Output {
    common::sph_in(&data_dir(), args)
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("sph-cli", name)
}

/// Reads metrics.jsonl without the timing fields, which differ between runs.
fn metrics_without_timing(dir: &Path) -> Vec<serde_json::Value> {
    let body = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    body.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let obj = v.as_object_mut().unwrap();
            obj.remove("seconds");
            obj.remove("images_per_sec");
            v
        })
        .collect()
}

#[test]
fn sph_lenet_reaches_96_percent_after_one_full_epoch() {
    let out = scratch("one-epoch");
    let o = sph(&[
        "train",
        "--model",
        "sph_lenet",
        "--dataset",
        "mnist",
        "--epochs",
        "1",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--batch-size",
        "128",
        "--seed",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let m = metrics_without_timing(&out);
    let acc = m[0]["test_acc"].as_f64().unwrap();
    assert!(acc >= 0.96, "test accuracy after one epoch {acc}");
    // Everything a run promises is on disk.
    for f in ["config.json", "metrics.jsonl", "last.safetensors", "best.safetensors", "curves.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let curves = image::open(out.join("curves.png")).unwrap();
    assert_eq!((curves.width(), curves.height()), (1200, 480));
    // The spherization layer's values are logged: scaling learned from 5, radius fixed at 5.
    let sphere = &m[0]["sphere"][0];
    assert_eq!(sphere[2].as_f64().unwrap(), 5.0);
    assert_ne!(sphere[1].as_f64().unwrap(), 5.0);
    // eval on the checkpoint gives the same accuracy.
    let e = sph(&["eval", "--checkpoint", out.join("best.safetensors").to_str().unwrap()]);
    assert!(e.status.success(), "{}", text(&e));
    assert!(text(&e).contains(&format!("accuracy {:.2}%", 100.0 * acc)), "{}", text(&e));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn resume_after_two_epochs_equals_an_uninterrupted_run() {
    let base = [
        "train",
        "--model",
        "sph_lenet",
        "--dataset",
        "mnist",
        "--train-limit",
        "1500",
        "--test-limit",
        "300",
        "--seed",
        "7",
        "--threads",
        "2",
    ];
    let whole = scratch("whole");
    let o = sph(&[&base[..], &["--epochs", "4", "--out", whole.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let part = scratch("part");
    let o = sph(&[&base[..], &["--epochs", "2", "--out", part.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let ckpt = part.join("last.safetensors");
    let o = sph(&[&base[..], &["--epochs", "4", "--resume", ckpt.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (metrics_without_timing(&whole), metrics_without_timing(&part));
    assert_eq!(a.len(), 4);
    assert_eq!(a, b, "resumed run differs from the uninterrupted one");
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&part);
}

#[test]
fn bad_input_gives_one_line_and_exit_code_2() {
    assert_one_line_error(
        &sph(&["train", "--model", "resnet", "--dataset", "mnist"]),
        &["unknown model 'resnet'", "sph_lenet", "vgg11_bn"],
    );
    assert_one_line_error(
        &sph(&["train", "--model", "lenet", "--dataset", "imagenet"]),
        &["unknown data set 'imagenet'", "cifar10"],
    );
    assert_one_line_error(
        &sph(&["train", "--model", "vgg11_bn", "--dataset", "mnist", "--epochs", "1"]),
        &["vgg11_bn", "3x32x32", "1x28x28"],
    );
    let out = scratch("bad");
    std::fs::create_dir_all(&out).unwrap();
    let junk = out.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint at all").unwrap();
    assert_one_line_error(&sph(&["eval", "--checkpoint", junk.to_str().unwrap()]), &["junk.safetensors"]);
    assert_one_line_error(
        &sph(&["train", "--model", "lenet", "--dataset", "mnist", "--resume", junk.to_str().unwrap()]),
        &["junk.safetensors"],
    );
    // Missing data names the fetch command.
    let o = Command::new(env!("CARGO_BIN_EXE_sph"))
        .args(["train", "--model", "lenet", "--dataset", "mnist"])
        .env("SPH_DATA", out.join("nowhere"))
        .output()
        .unwrap();
    assert_one_line_error(&o, &["fetch-data.sh mnist"]);
    // An output folder that holds a run is never overwritten.
    std::fs::write(out.join("metrics.jsonl"), "{}\n").unwrap();
    assert_one_line_error(
        &sph(&["train", "--model", "lenet", "--dataset", "mnist", "--out", out.to_str().unwrap()]),
        &["already holds a run"],
    );
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(), "{}\n");
    assert_one_line_error(
        &sph(&["train", "--model", "lenet", "--dataset", "mnist", "--schedule", "cosine"]),
        &["cosine"],
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_diverging_run_stops_naming_epoch_and_step() {
    let out = scratch("nan");
    let o = sph(&[
        "train",
        "--model",
        "lenet",
        "--dataset",
        "mnist",
        "--train-limit",
        "2000",
        "--test-limit",
        "100",
        "--optimizer",
        "sgd",
        "--lr",
        "1e30",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, &["epoch 1, step"]);
    assert!(!out.join("last.safetensors").exists(), "a diverged state must not be saved");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn models_lists_the_registry_with_parameter_counts() {
    let o = sph(&["models"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.lines().any(|l| l.starts_with("sph_lenet ") && l.contains("61707") && l.contains("1x28x28")), "{t}");
    assert!(t.lines().any(|l| l.starts_with("vgg11_bn ") && l.contains("28149514")), "{t}");
}

#[test]
fn data_show_writes_a_grid_and_lists_classes() {
    let out = scratch("grid");
    std::fs::create_dir_all(&out).unwrap();
    let png = out.join("grid.png");
    let o = sph(&["data", "show", "mnist", "--count", "16", "--out", png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let img = image::open(&png).unwrap();
    assert!(img.width() > 28 * 4 && img.height() > 28 * 4);
    // A class-stratified sample: 16 images hold every one of the ten digits.
    let t = text(&o);
    let listed: std::collections::BTreeSet<&str> =
        t.lines().skip(1).flat_map(|l| l.split(',')).map(str::trim).filter(|d| !d.is_empty()).collect();
    assert_eq!(listed.len(), 10, "{t}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn ctrl_c_saves_mid_epoch_and_the_resumed_run_equals_an_uninterrupted_one() {
    let base = [
        "train",
        "--model",
        "sph_lenet",
        "--dataset",
        "mnist",
        "--train-limit",
        "40000",
        "--test-limit",
        "500",
        "--epochs",
        "1",
        "--seed",
        "3",
        "--threads",
        "2",
    ];
    let whole = scratch("ctrlc-whole");
    let o = sph(&[&base[..], &["--out", whole.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));

    let cut = scratch("ctrlc-cut");
    let (status, rest) =
        common::interrupt(&data_dir(), &[&base[..], &["--out", cut.to_str().unwrap()]].concat(), "-INT");
    // 130: the shell's code for a run ended by SIGINT, so scripts can tell it from a finished one.
    assert_eq!(status.code(), Some(130));
    assert!(rest.iter().any(|l| l.starts_with("interrupted at epoch 1, step")), "{rest:?}");
    let ckpt = cut.join("last.safetensors");
    let o = sph(&[&base[..], &["--resume", ckpt.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(metrics_without_timing(&whole), metrics_without_timing(&cut), "the interrupted and resumed run differs");
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&cut);
}

#[test]
fn bench_prints_the_training_step_rate_as_json() {
    let o = sph(&["bench", "--model", "sph_lenet", "--batch-size", "32", "--warmup", "1", "--steps", "3", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(
        (v["model"].as_str(), v["batch_size"].as_u64(), v["precision"].as_str()),
        (Some("sph_lenet"), Some(32), Some("f32"))
    );
    let (lo, mid, hi) = (
        v["min_images_per_sec"].as_f64().unwrap(),
        v["median_images_per_sec"].as_f64().unwrap(),
        v["max_images_per_sec"].as_f64().unwrap(),
    );
    assert!(0.0 < lo && lo <= mid && mid <= hi, "{v}");
    assert!(v["threads"].as_u64().unwrap() >= 1);
    assert_one_line_error(&sph(&["bench", "--model", "resnet"]), &["unknown model 'resnet'"]);
}

/// `sph reproduce`: every table plans with --dry-run; table1 at the smoke budget trains its ten
/// runs and writes the table with the paper's numbers beside ours, then reuses the finished runs.
#[test]
fn reproduce_plans_every_table_and_runs_table1_at_the_smoke_budget() {
    let data = common::data_dir(&[
        ("mnist", "mnist"),
        ("fashion-mnist", "fashion-mnist"),
        ("cifar-10-batches-bin", "cifar10"),
    ]);
    let out = scratch("reproduce");
    // (Plans time a few training steps of each model: the full-size ones only for table1.)
    let plans = ["table1", "table2", "dispersion", "fig4", "fig5"]
        .map(|t| (t, "smoke"))
        .into_iter()
        .chain([("table1", "paper")]);
    for (table, budget) in plans {
        let o = common::sph_in(
            &data,
            &["reproduce", table, "--budget", budget, "--dry-run", "--out", out.to_str().unwrap()],
        );
        assert!(o.status.success(), "{table} {budget}: {}", text(&o));
        assert!(text(&o).contains(&format!("{table}, budget {budget}")), "{}", text(&o));
    }
    assert!(!out.exists(), "a dry run writes nothing");
    let run = || common::sph_in(&data, &["reproduce", "table1", "--budget", "smoke", "--out", out.to_str().unwrap()]);
    let o = run();
    assert!(o.status.success(), "{}", text(&o));
    let dir = out.join("table1").join("smoke");
    let md = std::fs::read_to_string(dir.join("table1.md")).unwrap();
    assert!(md.contains("| SimpleFNN | mnist |") && md.contains("98.58 ± 0.03"), "{md}");
    assert_eq!(
        md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| network") && !l.starts_with("| ---")).count(),
        5
    );
    let csv = std::fs::read_to_string(dir.join("table1.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 10, "a header and one line per run: {csv}");
    let again = run();
    assert!(again.status.success() && text(&again).contains("loading the finished run"), "{}", text(&again));
    let _ = std::fs::remove_dir_all(&out);
}
