//! Fetching without internet: clear errors and no complete-looking bad files. (Real
//! downloads are not tested: CI reaches only package registries.)

mod common;

use common::{bytes, gz, TempDir};
use datasets::idx::{encode_images, encode_labels};
use datasets::{fetch_from, verify, DataError, DatasetName};

/// Files in `dir` and below, as relative paths.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

#[test]
fn unreachable_site_says_so_in_one_line_and_names_the_script() {
    let dir = TempDir::new("fetch-unreachable");
    // Port 9 (discard) on localhost refuses connections: the same curl error as no network.
    let err = fetch_from(DatasetName::Mnist, &dir.0, "http://127.0.0.1:9/mnist/").unwrap_err();
    assert!(matches!(err, DataError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.contains("could not reach http://127.0.0.1:9/mnist/") && msg.contains("scripts/fetch-data.sh mnist"),
        "{msg}"
    );
    assert!(files(&dir.0).is_empty(), "nothing left behind: {:?}", files(&dir.0));

    let err = fetch_from(DatasetName::Cifar10, &dir.0, "http://127.0.0.1:9").unwrap_err();
    assert!(err.to_string().contains("scripts/fetch-data.sh cifar10"), "{err}");
    assert!(files(&dir.0).is_empty(), "{:?}", files(&dir.0));
}

#[test]
fn a_download_with_the_wrong_md5_is_not_kept() {
    // A "mirror" on disk whose files are valid IDX but not the real MNIST.
    let mirror = TempDir::new("fetch-mirror");
    mirror.write("t10k-labels-idx1-ubyte.gz", &gz(&encode_labels(&[1, 2])));
    mirror.write("train-images-idx3-ubyte.gz", &gz(&encode_images(1, 2, 2, &bytes(4, 1))));
    let dir = TempDir::new("fetch-bad-md5");
    let err = fetch_from(DatasetName::Mnist, &dir.0, &format!("file://{}", mirror.0.display())).unwrap_err();
    assert!(
        matches!(&err, DataError::Checksum { expected, .. } if expected == "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "{err:?}"
    );
    assert!(files(&dir.0).is_empty(), "no .part and no final file: {:?}", files(&dir.0));
}

#[test]
fn a_missing_file_on_the_mirror_is_a_download_error() {
    let mirror = TempDir::new("fetch-empty-mirror");
    let dir = TempDir::new("fetch-404");
    let err = fetch_from(DatasetName::FashionMnist, &dir.0, &format!("file://{}/", mirror.0.display())).unwrap_err();
    assert!(matches!(err, DataError::Download { .. }), "{err:?}");
    assert!(files(&dir.0).is_empty(), "{:?}", files(&dir.0));
}

#[test]
fn verify_reports_the_file_and_both_md5s() {
    let dir = TempDir::new("verify");
    let err = verify(DatasetName::Mnist, &dir.0).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }));
    for f in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    {
        dir.write(&format!("mnist/{f}.gz"), &gz(b"not mnist"));
    }
    let err = verify(DatasetName::Mnist, &dir.0).unwrap_err();
    let msg = err.to_string();
    // md5 of the decompressed content "not mnist", not of the .gz bytes.
    assert!(msg.contains("train-images-idx3-ubyte.gz: md5: expected 6bbc9ace898e44ae57da46a324031adb"), "{msg}");
    assert!(msg.contains(&format!("found {}", md5_of(b"not mnist"))), "{msg}");
}

fn md5_of(data: &[u8]) -> String {
    let dir = TempDir::new("md5");
    let p = dir.write("x", data);
    datasets::md5_hex(&p).unwrap()
}

#[test]
fn md5_hex_matches_a_known_value() {
    // md5("abc") from RFC 1321's test suite.
    assert_eq!(md5_of(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
}
