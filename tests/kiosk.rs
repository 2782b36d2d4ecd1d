//! The kiosk view end to end: the real binary serves a looping file source, headless Chromium
//! (Debian's `chromium`) loads the page, and the screenshot must show a face box and the DOM a
//! label. The screenshot is kept as an artefact: target/tmp/kiosk.png.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::serving::{get, request, Serving};

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium(args: &[&str], url: &str) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: ./test installs Debian's chromium for this test"
    );
    let profile = tempfile::tempdir().unwrap();
    Command::new("timeout")
        .arg("60")
        .arg(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,700",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

#[test]
fn the_page_shows_a_face_box_and_a_label_in_headless_chromium() {
    page_shows_a_box_and_a_label(&[], "kiosk.png");
}

#[test]
fn in_privacy_mode_no_frame_is_served_and_the_page_still_shows_the_box_and_label() {
    let serving = Serving::start(&["--privacy"]);
    let addr = serving.addr;
    for path in ["/frame.jpg", "/stream.mjpg"] {
        let (status, body) = get(addr, path);
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("privacy mode"));
    }
    let (status, body) = get(addr, "/latest");
    assert_eq!(status, 200);
    let latest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let face = &latest["faces"][0];
    assert!(
        face["box"].is_object() && face["label"].is_string(),
        "{latest}"
    );
    assert!(
        face.get("landmarks").is_none(),
        "landmarks in privacy mode: {latest}"
    );
    assert_eq!(serving.stop().code(), Some(0));
    page_shows_a_box_and_a_label(&["--privacy"], "kiosk-privacy.png");
}

/// Serves with `args`, and checks in headless Chromium that the page draws a face box (green
/// pixels in a screenshot, kept as `artefact` under target/tmp) and lists a label.
fn page_shows_a_box_and_a_label(args: &[&str], artefact: &str) {
    let serving = Serving::start(args);

    let artefact = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(artefact);
    let _ = std::fs::remove_file(&artefact);
    let shot = chromium(
        &[&format!("--screenshot={}", artefact.display())],
        &serving.url("/"),
    );
    assert!(
        artefact.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    eprintln!("kiosk screenshot: {}", artefact.display());
    // The box and its label background are drawn in #33ff33; the fixture photo has no such
    // green, so a good number of those pixels means a box was drawn.
    let png = image::open(&artefact).unwrap().to_rgb8();
    let green = png
        .pixels()
        .filter(|p| p[1] > 220 && p[0] < 110 && p[2] < 110)
        .count();
    assert!(
        green > 500,
        "only {green} box-coloured pixels in the screenshot"
    );

    let dom = chromium(&["--dump-dom"], &serving.url("/"));
    let dom = String::from_utf8_lossy(&dom.stdout);
    let labels = [
        "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
    ];
    assert!(
        labels
            .iter()
            .any(|l| dom.contains(&format!("<span class=\"label\">{l}</span>"))),
        "no label in the page: {dom}"
    );
    assert!(dom.contains("track 1"), "{dom}");
    // The audience line and the face's probabilities as one bar per label.
    assert!(dom.contains("visits in the last hour"), "{dom}");
    assert_eq!(dom.matches("class=\"bar\"").count(), labels.len(), "{dom}");
    let (status, body) = get(serving.addr, "/audience");
    assert_eq!(status, 200);
    let audience: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(audience["present"], 1, "{audience}");
    assert_eq!(
        audience["labels"].as_array().unwrap().len(),
        labels.len(),
        "{audience}"
    );
    let timeline = audience["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty(), "{audience}");
    let sum: f64 = timeline[0]["probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-3, "{audience}");

    let status = serving.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_server_answers_its_own_routes_only() {
    let serving = Serving::start(&[]);
    let addr = serving.addr;
    assert!(addr.ip().is_loopback());

    let (status, body) = get(addr, "/latest");
    assert_eq!(status, 200);
    let latest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(latest["faces"].as_array().unwrap().len(), 1);

    let (status, body) = get(addr, "/frame.jpg");
    assert_eq!(status, 200);
    assert_eq!(image::load_from_memory(&body).unwrap().width(), 512);

    // Server-Sent Events: a data line that is one of edge-fer's JSON results.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let data = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended");
        if let Some(json) = line.strip_prefix("data: ") {
            break json.to_string();
        }
    };
    let event: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert!(event["frame"].is_u64());

    assert_eq!(get(addr, "/nothing-here").0, 404);
    assert_eq!(get(addr, "/../../etc/passwd").0, 404);
    assert_eq!(request(addr, "POST", "/latest").0, 405);
    assert_eq!(request(addr, "DELETE", "/").0, 405);
    assert_eq!(serving.stop().code(), Some(0));
}

#[test]
fn stalled_clients_neither_stall_the_pipeline_nor_pass_the_limits() {
    let serving = Serving::start(&[]);
    let addr = serving.addr;
    let frame = || -> u64 {
        let (_, body) = get(addr, "/latest");
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["frame"]
            .as_u64()
            .unwrap()
    };
    // As many frame streams as allowed, from clients that never read a byte.
    let stalled: Vec<TcpStream> = (0..edge_fer::serve::MAX_STREAMS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET /stream.mjpg HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // One stream more is refused; plain requests are still answered.
    let (status, body) = get(addr, "/stream.mjpg");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    // The pipeline goes on while they stall: the latest frame keeps advancing.
    let before = frame();
    std::thread::sleep(Duration::from_millis(1500));
    let after = frame();
    assert!(
        after > before,
        "frame {before} then {after}: the pipeline stalled"
    );
    drop(stalled);
    assert_eq!(serving.stop().code(), Some(0));
}
