//! Real downloads over HTTP from a server this test starts on 127.0.0.1, serving small
//! synthetic archives with the real layout: good downloads, wrong md5s, truncated bodies,
//! 404s and stalled transfers, and a bad copy already in place.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bytes, gz, TempDir};
use datasets::checksums::{Download, KnownFile};
use datasets::cifar::{encode_cifar10, encode_cifar100, FINE_TO_COARSE, PIXELS};
use datasets::idx::{encode_images, encode_labels};
use datasets::{fetch_with, load, DataError, DatasetName, FetchOptions, Split};

/// What the server does for one path.
#[derive(Clone)]
enum Reply {
    /// 200 with the whole body.
    Body(Vec<u8>),
    /// 200 announcing the whole length, then only half the body and a closed connection.
    Truncated(Vec<u8>),
    /// 200 announcing the whole length, 100 bytes, then nothing for 20 s.
    Stall(Vec<u8>),
}

/// Serves `routes` on 127.0.0.1 (any other path: 404) until the test process ends; returns
/// the base URL.
fn serve(routes: HashMap<String, Reply>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let routes = routes.clone();
            std::thread::spawn(move || answer(stream, &routes));
        }
    });
    base
}

fn answer(mut stream: TcpStream, routes: &HashMap<String, Reply>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request).lines().next().unwrap_or("").to_string();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let head = |len: usize| format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    match routes.get(&path) {
        None => {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        Some(Reply::Body(b)) => {
            let _ = stream.write_all(head(b.len()).as_bytes());
            let _ = stream.write_all(b);
        }
        Some(Reply::Truncated(b)) => {
            let _ = stream.write_all(head(b.len()).as_bytes());
            let _ = stream.write_all(&b[..b.len() / 2]);
        }
        Some(Reply::Stall(b)) => {
            let _ = stream.write_all(head(b.len()).as_bytes());
            let _ = stream.write_all(&b[..100.min(b.len())]);
            let _ = stream.flush();
            std::thread::sleep(Duration::from_secs(20));
        }
    }
}

fn md5_of(data: &[u8]) -> &'static str {
    let dir = TempDir::new("md5");
    let p = dir.write("x", data);
    Box::leak(datasets::md5_hex(&p).unwrap().into_boxed_str())
}

/// Files in `dir` and below, as relative paths (empty when `dir` does not exist).
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push(format!("{}/", p.strip_prefix(dir).unwrap().display()));
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

/// A synthetic MNIST: four gzip IDX files, and options whose md5s are theirs.
fn synthetic_mnist(base: &str) -> (HashMap<String, Reply>, FetchOptions) {
    let mut routes = HashMap::new();
    let (mut known, mut downloads) = (Vec::new(), Vec::new());
    for (prefix, n) in [("train", 6u32), ("t10k", 3)] {
        let labels: Vec<u8> = (0..n as u8).collect();
        for (kind, raw) in [
            ("images-idx3-ubyte", encode_images(n, 28, 28, &bytes(n as usize * 784, n as u64))),
            ("labels-idx1-ubyte", encode_labels(&labels)),
        ] {
            let file: &'static str = Box::leak(format!("{prefix}-{kind}").into_boxed_str());
            let gz_name: &'static str = Box::leak(format!("{file}.gz").into_boxed_str());
            let packed = gz(&raw);
            known.push(KnownFile { file, md5: md5_of(&raw) });
            downloads.push(Download { file: gz_name, md5: md5_of(&packed) });
            routes.insert(format!("/mnist/{gz_name}"), Reply::Body(packed));
        }
    }
    let options = FetchOptions {
        base_url: format!("{base}/mnist/"),
        stall_seconds: 2,
        connect_seconds: 5,
        files: known,
        downloads,
    };
    (routes, options)
}

/// A tar.gz of `folder/` holding `contents`, made with the system tar (as the real ones).
fn tar_gz(folder: &str, contents: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let dir = TempDir::new("tar");
    for (name, data) in contents {
        dir.write(&format!("{folder}/{name}"), data);
    }
    let archive = dir.0.join("a.tar.gz");
    let ok = Command::new("tar").arg("czf").arg(&archive).arg("-C").arg(&dir.0).arg(folder).status().unwrap();
    assert!(ok.success());
    std::fs::read(archive).unwrap()
}

/// A synthetic CIFAR-10 archive (two images per file) and options whose md5s are its own.
fn synthetic_cifar10(base: &str) -> (Vec<u8>, FetchOptions) {
    let names = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
    let mut contents: Vec<(&str, Vec<u8>)> = Vec::new();
    for (i, n) in names.iter().chain(&["test_batch.bin"]).enumerate() {
        contents.push((n, encode_cifar10(&[i as u8, 9], &bytes(2 * PIXELS, i as u64))));
    }
    let files = contents.iter().map(|(n, d)| KnownFile { file: n, md5: md5_of(d) }).collect();
    contents.push(("batches.meta.txt", (0..10).map(|i| format!("class{i}\n")).collect::<String>().into_bytes()));
    let archive = tar_gz("cifar-10-batches-bin", &contents);
    let options = FetchOptions {
        base_url: format!("{base}/cifar10"),
        stall_seconds: 2,
        connect_seconds: 5,
        files,
        downloads: vec![Download { file: "cifar-10-binary.tar.gz", md5: md5_of(&archive) }],
    };
    (archive, options)
}

#[test]
fn good_downloads_unpack_verify_and_load() {
    let (mut routes, _) = synthetic_mnist("");
    // One archive for the server and the options: tar stamps the files' times, so a second
    // archive made a second later would have another md5.
    let (archive, mut cifar) = synthetic_cifar10("");
    routes.insert("/cifar10/cifar-10-binary.tar.gz".into(), Reply::Body(archive));
    let base = serve(routes);
    cifar.base_url = format!("{base}/cifar10");
    let dir = TempDir::new("download-good");

    let (_, mnist) = synthetic_mnist(&base);
    fetch_with(DatasetName::Mnist, &dir.0, &mnist).unwrap();
    let train = load(DatasetName::Mnist, &dir.0, Split::Train).unwrap();
    assert_eq!((train.len, train.labels.as_slice()), (6, &[0u8, 1, 2, 3, 4, 5][..]));

    fetch_with(DatasetName::Cifar10, &dir.0, &cifar).unwrap();
    let test = load(DatasetName::Cifar10, &dir.0, Split::Test).unwrap();
    assert_eq!((test.len, test.class_names[3].as_str()), (2, "class3"));
    // Nothing but the data set's files: no .part, no temporary folder.
    let mut left = files(&dir.0);
    left.sort();
    assert!(left.iter().all(|f| f.starts_with("mnist/") || f.starts_with("cifar-10-batches-bin/")), "{left:?}");
    assert!(!left.iter().any(|f| f.contains(".part") || f.contains("fetch-tmp")), "{left:?}");
}

#[test]
fn bad_downloads_fail_clearly_in_bounded_time_and_leave_nothing() {
    let (archive, mut good) = synthetic_cifar10("");
    let mut routes = HashMap::new();
    routes.insert("/truncated/cifar-10-binary.tar.gz".to_string(), Reply::Truncated(archive.clone()));
    routes.insert("/stall/cifar-10-binary.tar.gz".to_string(), Reply::Stall(archive.clone()));
    routes.insert("/wrong/cifar-10-binary.tar.gz".to_string(), Reply::Body(archive[..archive.len() - 1].to_vec()));
    let base = serve(routes);
    good.base_url = format!("{base}/cifar10");

    for (case, wanted) in [
        ("wrong", "md5: expected"),
        ("truncated", "download of"),
        ("missing", "404"),
        ("stall", "stalled: no data for 2 s"),
    ] {
        // The data directory itself does not exist yet: the fetch must not leave it behind.
        let root = TempDir::new(&format!("download-{case}"));
        let dir = root.0.join("data");
        let options = FetchOptions { base_url: format!("{base}/{case}/"), ..good.clone() };
        let started = Instant::now();
        let err = fetch_with(DatasetName::Cifar10, &dir, &options).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(wanted), "{case}: {msg}");
        assert!(!msg.contains('\n'), "{case}: {msg}");
        assert!(started.elapsed() < Duration::from_secs(30), "{case}: took {:?}", started.elapsed());
        assert!(!dir.exists(), "{case}: left behind {:?}", files(&root.0));
    }
}

#[test]
fn a_bad_copy_in_place_is_named_and_moved_aside_not_overwritten() {
    // CIFAR-100 with its records in another order than the original: labels still valid.
    let fine = [3u8, 4];
    let coarse = fine.map(|f| FINE_TO_COARSE[f as usize]);
    let original = encode_cifar100(&coarse, &fine, &bytes(2 * PIXELS, 5));
    let reordered = encode_cifar100(&[coarse[1], coarse[0]], &[fine[1], fine[0]], &bytes(2 * PIXELS, 5));
    let archive = tar_gz("cifar-100-binary", &[("train.bin", original.clone()), ("test.bin", original.clone())]);
    let mut routes = HashMap::new();
    routes.insert("/good/cifar-100-binary.tar.gz".to_string(), Reply::Body(archive.clone()));
    let base = serve(routes);
    let options = FetchOptions {
        base_url: format!("{base}/gone/"),
        stall_seconds: 2,
        connect_seconds: 5,
        files: vec![
            KnownFile { file: "train.bin", md5: md5_of(&original) },
            KnownFile { file: "test.bin", md5: md5_of(&original) },
        ],
        downloads: vec![Download { file: "cifar-100-binary.tar.gz", md5: md5_of(&archive) }],
    };
    let dir = TempDir::new("download-bad-copy");
    dir.write("cifar-100-binary/train.bin", &reordered);
    dir.write("cifar-100-binary/test.bin", &reordered);

    // The download fails (404): the error names the bad file and its md5s, then the download.
    let err = fetch_with(DatasetName::Cifar100Fine, &dir.0, &options).unwrap_err();
    assert!(matches!(err, DataError::BadCopy { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("train.bin: md5: expected") && msg.contains("fetching a fresh copy failed too"), "{msg}");
    assert!(msg.contains("404"), "{msg}");
    assert_eq!(std::fs::read(dir.file("cifar-100-binary/train.bin")).unwrap(), reordered, "the user's file stays");

    // The download works: the new files are in place and the old ones kept as .bad.
    let options = FetchOptions { base_url: format!("{base}/good/"), ..options };
    fetch_with(DatasetName::Cifar100Fine, &dir.0, &options).unwrap();
    assert_eq!(std::fs::read(dir.file("cifar-100-binary/train.bin")).unwrap(), original);
    assert_eq!(std::fs::read(dir.file("cifar-100-binary/train.bin.bad")).unwrap(), reordered);
    assert_eq!(std::fs::read(dir.file("cifar-100-binary/test.bin.bad")).unwrap(), reordered);
}

#[test]
fn sph_mirror_sets_the_base_url_per_data_set() {
    // The only test that reads SPH_MIRROR; the others pass their options explicitly.
    std::env::set_var(datasets::MIRROR_VAR, "http://127.0.0.1:1/mirror/");
    let options = FetchOptions::new(DatasetName::FashionMnist);
    std::env::remove_var(datasets::MIRROR_VAR);
    assert_eq!(options.base_url, "http://127.0.0.1:1/mirror/fashion-mnist/");
    assert_eq!(FetchOptions::new(DatasetName::Cifar10).base_url, "https://www.cs.toronto.edu/~kriz/");
}
