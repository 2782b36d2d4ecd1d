//! The binary serving on free loopback ports, and minimal HTTP/1.1 clients for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::fixture;

/// edge-fer looping over a fixture photo with `--serve` (and whatever else it was given) on free
/// loopback ports; killed on drop.
pub struct Serving {
    pub child: Child,
    /// The kiosk view's address, when `--serve` was given.
    pub addr: SocketAddr,
    /// `--metrics`' address, when it was given.
    pub metrics: Option<SocketAddr>,
}

impl Serving {
    /// Serves the kiosk view with `extra` flags, once the first result is out.
    pub fn start(extra: &[&str]) -> Serving {
        let mut args = extra.to_vec();
        args.extend(["--serve", "127.0.0.1:0"]);
        Serving::spawn(&args, 1)
    }

    /// Runs with `args` (which must open `servers` servers: --serve, --metrics) on the looping
    /// fixture photo; returns once each server has said where it is.
    pub fn spawn(args: &[&str], servers: usize) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-fer"))
            .args(args)
            .args(["--image"])
            .arg(fixture("grace_hopper_512x512.jpg"))
            .arg("--loop")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let (mut addr, mut metrics) = (None, None);
        for _ in 0..servers {
            let mut line = String::new();
            stderr.read_line(&mut line).unwrap();
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("edge-fer: kiosk view on http://") {
                addr = rest.strip_suffix('/').and_then(|a| a.parse().ok());
            } else if let Some(rest) = line.strip_prefix("edge-fer: metrics on http://") {
                metrics = rest.strip_suffix("/metrics").and_then(|a| a.parse().ok());
            } else {
                panic!("unexpected line: {line:?}");
            }
        }
        // Keep draining stderr so the child never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let serving = Serving {
            child,
            addr: addr.or(metrics).expect("no server address"),
            metrics,
        };
        if addr.is_some() {
            // Wait for the first result.
            for _ in 0..100 {
                if get(serving.addr, "/latest").0 == 200 {
                    return serving;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("no result published within 10 s");
        }
        serving
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn terminate(child: &Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

/// A minimal HTTP/1.1 request; returns the status code and the body.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => response[at + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    request(addr, "GET", path)
}
