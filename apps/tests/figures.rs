//! `sph figure toy|sphere|gradflow` end to end on tiny budgets, on the real MNIST and
//! CIFAR-10 files (scripts/fetch-data.sh mnist cifar10): each writes a PNG of the expected
//! size with something drawn on it, plus its numbers.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::text;

fn data_dir() -> PathBuf {
    common::data_dir(&[("mnist", "mnist"), ("cifar-10-batches-bin", "cifar10")])
}

fn sph(args: &[&str]) -> Output {
    common::sph_in(&data_dir(), args)
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("sph-figures", name)
}

/// The PNG has the given size and is not a blank canvas: at least `min_share` of its
/// pixels are not white.
fn assert_drawn(path: &Path, width: u32, height: u32, min_share: f64) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    assert_eq!((img.width(), img.height()), (width, height), "{}", path.display());
    let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let share = inked as f64 / (width * height) as f64;
    assert!(share >= min_share, "{}: only {:.2}% of the pixels are drawn", path.display(), 100.0 * share);
}

#[test]
fn toy_figure_trains_both_networks_and_the_spherized_one_separates_the_clusters() {
    let out = scratch("toy");
    let o = sph(&["figure", "toy", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("toy: final training accuracy"), "{stdout}");
    assert!(stdout.contains("sph_toy: final training accuracy 100.00%"), "{stdout}");
    // The class regions shade most of the canvas.
    assert_drawn(&out.join("toy.png"), 1200, 1060, 0.3);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("toy.json")).unwrap()).unwrap();
    let models: Vec<&str> = summary.as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["toy", "sph_toy"]);
    // The spherized net's last layer has no bias and its representations lie on the circle r = 1.
    assert!(summary[1]["last_layer_bias"].is_null());
    assert_eq!(summary[1]["radius"].as_f64(), Some(1.0));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn sphere_figure_trains_three_networks_and_reuses_finished_runs() {
    let out = scratch("sphere");
    let args = [
        "figure",
        "sphere",
        "--train-limit",
        "512",
        "--test-limit",
        "256",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = sph(&args);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for (model, dims) in [("simple_cnn_2d", 2), ("simple_cnn_3d", 3), ("sph_cnn_3d", 3)] {
        assert!(stdout.contains(&format!("{model}: test accuracy")), "{stdout}");
        assert!(stdout.contains(&format!("representations of {dims} dimensions")), "{stdout}");
        assert!(
            out.join("runs").join(format!("{model}-e1-n512-s0")).join("last.safetensors").is_file(),
            "{model}'s run missing"
        );
    }
    assert_drawn(&out.join("sphere.png"), 1500, 1500, 0.01);
    // Drawing again loads the finished runs instead of training them again.
    std::fs::remove_file(out.join("sphere.png")).unwrap();
    let o = sph(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).matches("loading the finished run").count(), 3, "{}", text(&o));
    assert_drawn(&out.join("sphere.png"), 1500, 1500, 0.01);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn gradflow_figure_records_every_layer_of_both_networks() {
    let out = scratch("gradflow");
    let o = sph(&[
        "figure",
        "gradflow",
        "--steps",
        "2",
        "--batch-size",
        "32",
        "--train-limit",
        "256",
        "--width-multiplier",
        "0.125",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_drawn(&out.join("gradflow.png"), 1400, 1000, 0.02);
    // 8 convolutions and 3 linear maps per network, one CSV line each.
    let csv = std::fs::read_to_string(out.join("gradflow.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 11, "{csv}");
    assert!(lines.iter().any(|l| l.starts_with("sph_vgg11_bn,fc3,classifier.4.layer.weight,")), "{csv}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("gradflow.json")).unwrap()).unwrap();
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for m in models {
        assert_eq!(m["steps"].as_u64(), Some(2));
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 11);
        for l in layers {
            let g = l["mean_abs_grad"].as_f64().unwrap();
            assert!(g.is_finite() && g > 0.0, "{l}");
            assert_eq!(l["per_step"].as_array().unwrap().len(), 2);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_figure_flags_give_one_line_and_exit_code_2() {
    let out = scratch("bad");
    for (args, needle) in [
        (vec!["figure", "toy", "--epochs", "0"], "--epochs"),
        (vec!["figure", "sphere", "--epochs", "0"], "--epochs"),
        (vec!["figure", "gradflow", "--width-multiplier", "0"], "--width-multiplier"),
    ] {
        let o = sph(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        assert!(err.contains(needle), "'{needle}' missing from: {err}");
    }
    // Missing MNIST names the fetch command.
    let o = Command::new(env!("CARGO_BIN_EXE_sph"))
        .args(["figure", "sphere", "--epochs", "1", "--out", out.to_str().unwrap()])
        .env("SPH_DATA", out.join("nowhere"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("fetch-data.sh mnist"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&out);
}
