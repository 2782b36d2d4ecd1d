//! Load on the kiosk view: does the pipeline keep its frame rate while many clients watch, some
//! of them stalled? Runs the real pipeline (HOG, landmarks, tract) on the fixture photos at
//! 640x480, looping, with the web view on a loopback port, and measures frames/s in three phases:
//! no clients; `--clients` clients (a third read the MJPEG stream, a third read the SSE events, a
//! third open the MJPEG stream and never read); no clients again; `--slow` clients that send their
//! request headers a byte every 100 ms and connect again whenever the server cuts them (at its
//! header timeout, 2 s here). Prints the figures.
//!
//! ```sh
//! cargo run --release --example serve_load -- [--clients 60] [--slow 64] [--seconds 10]
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_fer::capture::ImageFiles;
use edge_fer::pipeline::{self, PipelineConfig};
use edge_fer::serve::{Hub, Server};
use edge_fer::track::TrackConfig;
use edge_fer::{Classifier, FaceFinder, FaceFinderConfig};

#[path = "../benches/common/mod.rs"]
mod common;

fn main() {
    let mut clients = 60usize;
    let mut seconds = 10u64;
    let mut slow = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse::<u64>().ok());
        match (a.as_str(), v) {
            ("--clients", Some(v)) => clients = v as usize,
            ("--seconds", Some(v)) => seconds = v,
            ("--slow", Some(v)) => slow = v as usize,
            _ => {
                eprintln!("usage: serve_load [--clients N] [--slow N] [--seconds S]");
                std::process::exit(2);
            }
        }
    }
    let phase = Duration::from_secs(seconds);

    let dir = tempfile::tempdir().expect("temporary folder");
    let frames = common::frames_640x480(dir.path());
    let hub = Hub::new(15);
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        hub.clone(),
        None,
        edge_fer::serve::ServeOptions {
            header_timeout: HEADER_TIMEOUT,
        },
    )
    .expect("server");
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let config = PipelineConfig {
        stop: Arc::clone(&stop),
        publish: Some(hub),
        track: TrackConfig {
            detect_every: 1,
            detect_width: 0,
            end_ghosts: true,
        },
        ..PipelineConfig::default()
    };
    let times = Arc::clone(&config.times);
    let pipeline = std::thread::spawn(move || {
        let finder = FaceFinder::load(&FaceFinderConfig::default()).expect("dlib models");
        let classifier = Classifier::builtin().expect("model");
        let mut source = ImageFiles::new(frames).repeating();
        pipeline::run(
            &mut source,
            Some(finder),
            classifier,
            Box::new(std::io::sink()),
            &config,
        )
        .expect("pipeline")
    });
    let processed = || times.output.summary().count;
    while processed() < 20 {
        std::thread::sleep(Duration::from_millis(100)); // models loaded, warm
    }

    let rate = |name: &str| {
        let (n0, t0) = (processed(), Instant::now());
        std::thread::sleep(phase);
        let r = (processed() - n0) as f64 / t0.elapsed().as_secs_f64();
        println!("  {name}: {r:.1} frames/s");
        r
    };
    println!(
        "kiosk view under load: pipeline on the 4 fixture frames at 640x480 (detect every frame), {seconds} s per phase"
    );
    let quiet = rate("no clients");

    let running = Arc::new(AtomicBool::new(true));
    let received = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for i in 0..clients {
        let (running, received, refused) = (
            Arc::clone(&running),
            Arc::clone(&received),
            Arc::clone(&refused),
        );
        handles.push(std::thread::spawn(move || {
            let path = if i % 3 == 1 {
                "/events"
            } else {
                "/stream.mjpg"
            };
            client(addr, path, i % 3 == 2, &running, &received, &refused)
        }));
    }
    let loaded = rate(&format!(
        "{clients} clients ({} MJPEG readers, {} SSE readers, {} stalled MJPEG)",
        clients.div_ceil(3),
        (clients + 1) / 3,
        clients / 3
    ));
    running.store(false, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    println!(
        "  clients received {:.1} MiB; {} streams refused (limit {} streams, {} connections)",
        received.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        refused.load(Ordering::Relaxed),
        edge_fer::serve::MAX_STREAMS,
        edge_fer::serve::MAX_CONNECTIONS
    );
    let after = rate("no clients again");

    let running = Arc::new(AtomicBool::new(true));
    let cut = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..slow)
        .map(|_| {
            let (running, cut) = (Arc::clone(&running), Arc::clone(&cut));
            std::thread::spawn(move || slow_client(addr, &running, &cut))
        })
        .collect();
    let slowed = rate(&format!(
        "{slow} slow-header clients (a byte every 100 ms, reconnecting when cut)"
    ));
    let answered = {
        let t = Instant::now();
        let ok = latest_ok(addr);
        (ok, t.elapsed())
    };
    running.store(false, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    println!(
        "  slow clients cut by the {:.0} s header timeout: {} times; a normal request meanwhile: {} in {:.1} ms; slow / without: {:.2}",
        HEADER_TIMEOUT.as_secs_f64(),
        cut.load(Ordering::Relaxed),
        if answered.0 { "answered" } else { "NOT answered" },
        answered.1.as_secs_f64() * 1e3,
        slowed / ((quiet + after) / 2.0)
    );

    stop.store(true, Ordering::Relaxed);
    let stats = pipeline.join().expect("pipeline thread");
    server.stop();
    println!(
        "  with clients / without: {:.2} (before {quiet:.1}, after {after:.1}); {} frames in all",
        loaded / ((quiet + after) / 2.0),
        stats.frames
    );
}

/// The server's header timeout in this load test.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `/latest` answers 200.
fn latest_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET /latest HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

/// A client sending its headers a byte every 100 ms, connecting again each time it is cut.
fn slow_client(addr: SocketAddr, running: &AtomicBool, cut: &AtomicU64) {
    while running.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr) else {
            return;
        };
        if s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").is_err() {
            continue;
        }
        while running.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if s.write_all(b"x").is_err() {
                cut.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// One client: sends the request, then reads until told to stop (or, stalled, never reads).
fn client(
    addr: SocketAddr,
    path: &str,
    stalled: bool,
    running: &AtomicBool,
    received: &AtomicU64,
    refused: &AtomicU64,
) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    while running.load(Ordering::Relaxed) {
        if stalled {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if first && buf[..n].starts_with(b"HTTP/1.1 503") {
                    refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                first = false;
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}
