//! MQTT through the binary and a real Mosquitto (installed by `./test`), started here on free
//! loopback ports with a password file and persistence, and stopped and started again mid-run.
//!
//! Sessions: edge-fer always connects with a clean session, so every reconnection is one where
//! the broker has lost edge-fer's session (and rumqttc has dropped its unacknowledged packets);
//! what arrives afterwards came from edge-fer's own outbox. The subscriber here keeps a persistent
//! session (clean session off, QoS 1), which Mosquitto's `persistence true` writes to disk (when
//! stopped, and every second) and reads back when started, so records published while the
//! subscriber is still reconnecting wait for it in the broker.
//!
//! Two outages: a clean stop (SIGTERM), during which records wait in the outbox unsent; and a
//! crash, the broker frozen (SIGSTOP) while edge-fer sends, so records are in flight without
//! acknowledgement, then killed (SIGKILL), which throws away what it had not read: only resending
//! what was in flight delivers those.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use crate::util::serving::{get, terminate};
use crate::util::{assert_refused, edge_fer, face_frames, fixture, json_lines, stderr};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const USER: &str = "kiosk";
const PASSWORD: &str = "s3cret:with colon";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `done`, polling, for at most `limit`; returns whether it happened.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// A Mosquitto on a loopback port, its files (configuration, password file, persistence) in a
/// folder that outlives restarts.
struct Broker {
    child: Option<Child>,
    port: u16,
    conf: PathBuf,
}

impl Broker {
    /// A broker running with `extra` configuration (more listeners, TLS).
    fn new(dir: &Path, extra: &str) -> Broker {
        let mut broker = Broker::configured(dir, extra);
        broker.start();
        broker
    }

    /// Its files written, not started.
    fn configured(dir: &Path, extra: &str) -> Broker {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: ./test installs Debian's mosquitto for this test"
        );
        let passwd = dir.join("passwd");
        let made = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([USER, PASSWORD])
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = free_port();
        let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "# Run as whoever runs the test (as root, mosquitto would switch to its own user).\n\
                 user {}\n\
                 listener {port} 127.0.0.1\n\
                 allow_anonymous false\n\
                 password_file {}\n\
                 persistence true\n\
                 persistence_location {}/\n\
                 autosave_interval 1\n\
                 log_dest file {}\n\
                 {extra}\n",
                me.trim(),
                passwd.display(),
                dir.display(),
                dir.join("mosquitto.log").display(),
            ),
        )
        .unwrap();
        Broker {
            child: None,
            port,
            conf,
        }
    }

    fn start(&mut self) {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_for(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "mosquitto did not listen on {port}"
        );
    }

    /// SIGTERM (Mosquitto saves its sessions), and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            child.wait().unwrap();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing is read or acknowledged.
    fn freeze(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    }

    /// SIGKILL: what it had not read or saved is lost.
    fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self, prefix: &str) -> String {
        format!("mqtt://127.0.0.1:{}/{prefix}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A message as the subscriber got it.
#[derive(Debug, Clone)]
struct Message {
    topic: String,
    payload: Value,
    retained: bool,
}

/// A test client subscribed to `topic` at QoS 1, collecting messages on a thread of its own;
/// `persistent` keeps its session in the broker across disconnections.
struct Subscriber {
    messages: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    fn new(port: u16, id: &str, topic: &str, persistent: bool) -> Subscriber {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(!persistent)
            .set_credentials(USER, PASSWORD)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(options, 16);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicBool::new(false));
        let thread = {
            let (messages, stop, subscribed) = (
                Arc::clone(&messages),
                Arc::clone(&stop),
                Arc::clone(&subscribed),
            );
            let topic = topic.to_string();
            std::thread::spawn(move || {
                // Bounded: a minute at most, even if the test never stops it.
                let until = Instant::now() + Duration::from_secs(60);
                for event in connection.iter() {
                    if stop.load(Ordering::Relaxed) || Instant::now() > until {
                        break;
                    }
                    match event {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                            let _ = client.try_subscribe(&topic, QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            subscribed.store(true, Ordering::Relaxed)
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let payload = serde_json::from_slice(&p.payload).unwrap_or_else(|e| {
                                panic!("{}: not JSON ({e}): {:?}", p.topic, p.payload)
                            });
                            messages.lock().unwrap().push(Message {
                                topic: p.topic.clone(),
                                payload,
                                retained: p.retain,
                            });
                        }
                        Ok(_) => {}
                        // The broker is being restarted: rumqttc reconnects on the next poll.
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })
        };
        assert!(
            wait_for(Duration::from_secs(10), || subscribed
                .load(Ordering::Relaxed)),
            "the subscriber could not subscribe"
        );
        Subscriber {
            messages,
            stop,
            thread: Some(thread),
        }
    }

    fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// The visit records received, duplicates (same run and seq) dropped, in arrival order.
    fn visits(&self) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        self.messages()
            .into_iter()
            .filter(|m| m.topic.ends_with("/visit"))
            .map(|m| m.payload)
            .filter(|p| seen.insert((p["run"].as_u64(), p["seq"].as_u64())))
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread notices at its next event (a keep-alive ping at the latest).
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A frames folder: a face for 3 frames, away for 6, which `--loop` turns into a visit about
/// every 9 frames (at 30 frames/s and a 0.1 s visit timeout).
fn visiting_frames() -> tempfile::TempDir {
    face_frames(&[true, true, true, false, false, false, false, false, false])
}

/// The visit records in a `--visits` file.
fn read_visits(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn credentials(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join("credentials");
    std::fs::write(&path, format!("{USER}:{password}\n")).unwrap();
    path
}

/// edge-fer looping over the visiting frames, publishing to `url`, with `--metrics` on a free
/// port; its stderr is collected.
struct Kiosk {
    child: Child,
    visits: PathBuf,
    metrics: SocketAddr,
    stderr: Arc<Mutex<String>>,
    _frames: tempfile::TempDir,
}

impl Kiosk {
    fn start(url: &str, extra: &[&str], work: &Path) -> Kiosk {
        let frames = visiting_frames();
        let visits = work.join("visits.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-fer"))
            .arg("--frames")
            .arg(frames.path())
            .args(["--loop", "--frame-rate", "30", "--visit-timeout", "0.1"])
            .arg("--visits")
            .arg(&visits)
            .args(["--mqtt", url, "--device-id", "kiosk-7"])
            .arg("--mqtt-credentials")
            .arg(credentials(work, PASSWORD))
            .args(["--metrics", "127.0.0.1:0"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        // Warnings (an unreachable broker with --mqtt-wait) may come before the address.
        let mut before = String::new();
        let metrics: SocketAddr = loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "no metrics address: {before}"
            );
            match line
                .trim()
                .strip_prefix("edge-fer: metrics on http://")
                .and_then(|r| r.strip_suffix("/metrics"))
            {
                Some(addr) => break addr.parse().unwrap(),
                None => before.push_str(&line),
            }
        };
        let stderr = Arc::new(Mutex::new(before));
        {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = reader.read_to_string(&mut text);
                stderr.lock().unwrap().push_str(&text);
            });
        }
        Kiosk {
            child,
            visits,
            metrics,
            stderr,
            _frames: frames,
        }
    }

    /// The visit records written to `--visits` so far.
    fn written(&self) -> Vec<Value> {
        read_visits(&self.visits)
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, body) = get(self.metrics, "/metrics");
        String::from_utf8(body)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    /// SIGTERM; the exit status and everything it wrote to stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        terminate(&self.child);
        let status = self.child.wait().unwrap();
        // The reader thread ends with the pipe.
        std::thread::sleep(Duration::from_millis(100));
        let text = self.stderr.lock().unwrap().clone();
        (status, text)
    }
}

impl Drop for Kiosk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The record without the fields MQTT adds.
fn without_envelope(record: &Value) -> Value {
    let mut record = record.clone();
    for key in ["device", "run", "seq"] {
        record.as_object_mut().unwrap().remove(key);
    }
    record
}

/// Stops the broker until `kiosk` has written `more` visit records, then starts it again.
/// Returns how many visit records there were when it stopped.
fn outage(broker: &mut Broker, kiosk: &Kiosk, more: usize) -> usize {
    broker.stop();
    let before = kiosk.written().len();
    restart_after(broker, kiosk, before, more);
    before
}

/// Freezes the broker until `more` visit records are in flight unacknowledged, then kills and
/// restarts it.
fn crash(broker: &mut Broker, kiosk: &Kiosk, more: usize) -> usize {
    broker.freeze();
    let before = kiosk.written().len();
    assert!(
        wait_for(Duration::from_secs(30), || kiosk.written().len()
            >= before + more),
        "too few visits while the broker was frozen"
    );
    // Nothing written since the freeze can have been acknowledged.
    assert!(kiosk.metric("edge_fer_mqtt_outbox_records") >= more as f64);
    assert_eq!(
        kiosk.metric("edge_fer_mqtt_connected"),
        1.0,
        "still connected, to a frozen broker"
    );
    broker.crash();
    restart_after(broker, kiosk, before, 0);
    before
}

fn restart_after(broker: &mut Broker, kiosk: &Kiosk, before: usize, more: usize) {
    assert!(
        wait_for(Duration::from_secs(30), || kiosk.written().len()
            >= before + more),
        "only {} visits written while the broker was away",
        kiosk.written().len() - before
    );
    assert!(
        wait_for(Duration::from_secs(5), || kiosk
            .metric("edge_fer_mqtt_connected")
            == 0.0),
        "edge-fer did not notice the broker was gone"
    );
    broker.start();
}

#[test]
fn status_frames_and_visits_arrive_documented_and_a_broker_restart_loses_no_visit() {
    let work = tempfile::tempdir().unwrap();
    let mut broker = Broker::new(work.path(), "");
    let subscriber = Subscriber::new(broker.port, "test-persistent", "fleet/#", true);
    let kiosk = Kiosk::start(
        &broker.url("fleet"),
        &["--mqtt-frame-rate", "2"],
        work.path(),
    );
    assert!(
        wait_for(Duration::from_secs(30), || subscriber.visits().len() >= 3),
        "no visits arrived: {:?}",
        subscriber.messages()
    );

    // A clean stop: records wait in the outbox, unsent.
    let before = outage(&mut broker, &kiosk, 3);
    assert!(
        wait_for(Duration::from_secs(30), || subscriber.visits().len()
            >= before + 3),
        "{} visits after the first outage",
        subscriber.visits().len()
    );
    // A crash: records in flight, unacknowledged, lost by the broker.
    let before = crash(&mut broker, &kiosk, 3);
    let written = kiosk.written().len();
    assert!(written >= before + 3);
    assert!(
        wait_for(Duration::from_secs(30), || subscriber.visits().len()
            >= written),
        "{} of {written} visits arrived after the broker came back",
        subscriber.visits().len()
    );
    assert_eq!(kiosk.metric("edge_fer_mqtt_connected"), 1.0);
    assert!(kiosk.metric("edge_fer_mqtt_connections_total") >= 2.0);
    let (status, err) = kiosk.stop();
    assert_eq!(status.code(), Some(0), "{err}");
    let written = read_visits(&work.path().join("visits.jsonl"));
    let offline =
        |m: &Message| m.topic == "fleet/kiosk-7/status" && m.payload["status"] == "offline";
    assert!(
        wait_for(Duration::from_secs(10), || subscriber.visits().len()
            >= written.len()
            && subscriber.messages().iter().any(offline)),
        "{} of {} visits, then offline: {:?}",
        subscriber.visits().len(),
        written.len(),
        subscriber.messages().last()
    );
    assert!(err.contains("0 dropped"), "{err}");

    // Every visit written to --visits arrived once duplicates are dropped, whole, in sequence.
    let received = subscriber.visits();
    assert_eq!(received.len(), written.len());
    let seqs: Vec<u64> = received
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for (got, wrote) in received.iter().zip(&written) {
        assert_eq!(without_envelope(got), *wrote);
        assert_eq!(got["device"], "kiosk-7");
        assert_eq!(got["run"], received[0]["run"]);
    }

    let messages = subscriber.messages();
    // Status: online first, offline last (explicitly, at exit), with the documented fields.
    let statuses: Vec<&Message> = messages
        .iter()
        .filter(|m| m.topic.ends_with("/status"))
        .collect();
    assert_eq!(statuses[0].payload["status"], "online", "{statuses:?}");
    let last = statuses.last().unwrap();
    assert_eq!(last.payload["status"], "offline");
    for key in ["device", "run", "version"] {
        assert!(last.payload.get(key).is_some(), "{key}: {:?}", last.payload);
    }
    // Frames: edge-fer's JSON lines with the envelope, at most 2 a second of the frames' clock
    // (30 frames/s: 15 frames apart).
    let frames: Vec<&Value> = messages
        .iter()
        .filter(|m| m.topic == "fleet/kiosk-7/frame")
        .map(|m| &m.payload)
        .collect();
    assert!(frames.len() >= 2, "{frames:?}");
    for f in &frames {
        assert!(
            f["seq"].is_u64() && f["faces"].is_array() && f["source"].is_string(),
            "{f}"
        );
        assert_eq!(f["device"], "kiosk-7");
    }
    let numbers: Vec<u64> = frames
        .iter()
        .map(|f| f["frame"].as_u64().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] >= w[0] + 15), "{numbers:?}");

    // A newcomer gets the retained status: offline.
    let newcomer = Subscriber::new(broker.port, "test-newcomer", "fleet/kiosk-7/status", false);
    assert!(wait_for(Duration::from_secs(5), || !newcomer
        .messages()
        .is_empty()));
    let retained = &newcomer.messages()[0];
    assert!(retained.retained);
    assert_eq!(retained.payload["status"], "offline");
    broker.stop();
}

#[test]
fn with_mqtt_wait_it_starts_before_the_broker_and_delivers_once_it_is_up() {
    let work = tempfile::tempdir().unwrap();
    // The subscriber's persistent session is made first; the broker keeps it while it is down.
    let mut broker = Broker::new(work.path(), "");
    let subscriber = Subscriber::new(broker.port, "test-late", "late/#", true);
    broker.stop();
    let kiosk = Kiosk::start(&broker.url("late"), &["--mqtt-wait"], work.path());
    assert!(
        wait_for(Duration::from_secs(30), || kiosk.written().len() >= 2),
        "no visits without a broker"
    );
    assert_eq!(kiosk.metric("edge_fer_mqtt_connected"), 0.0);
    broker.start();
    assert!(
        wait_for(Duration::from_secs(40), || kiosk
            .metric("edge_fer_mqtt_connected")
            == 1.0),
        "edge-fer never connected"
    );
    let (status, err) = kiosk.stop();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("starting anyway"), "{err}");
    let written = read_visits(&work.path().join("visits.jsonl"));
    assert!(wait_for(Duration::from_secs(10), || subscriber
        .visits()
        .len()
        >= written.len()));
    assert_eq!(subscriber.visits().len(), written.len());
    broker.stop();
}

#[test]
fn a_killed_kiosk_reads_offline_through_its_last_will() {
    let work = tempfile::tempdir().unwrap();
    let broker = Broker::new(work.path(), "");
    let subscriber = Subscriber::new(broker.port, "test-will", "will/kiosk-7/status", false);
    let mut kiosk = Kiosk::start(&broker.url("will"), &[], work.path());
    let status = |s: &str| {
        let s = s.to_string();
        move |m: &Message| m.payload["status"] == s.as_str()
    };
    assert!(wait_for(Duration::from_secs(10), || subscriber
        .messages()
        .iter()
        .any(status("online"))));
    // No DISCONNECT: the broker sees the connection drop and publishes the will.
    kiosk.child.kill().unwrap();
    kiosk.child.wait().unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || subscriber
            .messages()
            .iter()
            .any(status("offline"))),
        "{:?}",
        subscriber.messages()
    );
    let will = subscriber
        .messages()
        .into_iter()
        .find(status("offline"))
        .unwrap();
    assert_eq!(will.payload["device"], "kiosk-7");
    // Retained: a newcomer reads it too.
    let newcomer = Subscriber::new(broker.port, "test-will-2", "will/kiosk-7/status", false);
    assert!(wait_for(Duration::from_secs(5), || {
        newcomer
            .messages()
            .first()
            .is_some_and(|m| m.retained && m.payload["status"] == "offline")
    }));
}

#[test]
fn a_tiny_outbox_overflows_during_an_outage_and_reports_what_it_dropped() {
    let work = tempfile::tempdir().unwrap();
    let mut broker = Broker::new(work.path(), "");
    let subscriber = Subscriber::new(broker.port, "test-tiny", "tiny/#", true);
    let kiosk = Kiosk::start(
        &broker.url("tiny"),
        &["--mqtt-outbox", "2", "--mqtt-frame-rate", "0"],
        work.path(),
    );
    assert!(wait_for(Duration::from_secs(30), || !subscriber
        .visits()
        .is_empty()));
    outage(&mut broker, &kiosk, 6);
    assert!(kiosk.metric("edge_fer_mqtt_dropped_records_total") >= 1.0);
    let (status, err) = kiosk.stop();
    assert_eq!(status.code(), Some(0), "{err}");
    let written = read_visits(&work.path().join("visits.jsonl"));
    let dropped: u64 = err
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("records delivered, ")?;
            rest.split_once(" dropped (outbox full)")?.0.parse().ok()
        })
        .unwrap_or_else(|| panic!("no MQTT summary: {err}"));
    assert!(dropped >= 4, "{dropped} dropped: {err}");
    // What was not dropped arrived: together, every visit written.
    assert!(wait_for(Duration::from_secs(10), || {
        subscriber.visits().len() as u64 + dropped >= written.len() as u64
    }));
    assert_eq!(
        subscriber.visits().len() as u64 + dropped,
        written.len() as u64,
        "{err}"
    );
    assert!(
        subscriber
            .messages()
            .iter()
            .all(|m| !m.topic.ends_with("/frame")),
        "--mqtt-frame-rate 0 sends no frames"
    );
    broker.stop();
}

#[test]
fn wrong_credentials_an_unreachable_broker_and_a_bad_url_are_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let broker = Broker::new(work.path(), "");
    let image = fixture("grace_hopper_512x512.jpg");
    let image = image.to_str().unwrap();
    let wrong = credentials(work.path(), "not-the-password");
    let url = broker.url("x");
    let out = edge_fer(&[
        "--image",
        image,
        "--mqtt",
        &url,
        "--mqtt-credentials",
        wrong.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused the connection") && err.contains(wrong.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "printed once: {err}");
    assert!(out.stdout.is_empty(), "no frame is processed");
    // The URL's credentials work as the file's do (percent-encoded: the password has a colon and
    // a space).
    let with_password = url.replacen(
        "mqtt://",
        &format!(
            "mqtt://{USER}:{}@",
            PASSWORD.replace(':', "%3A").replace(' ', "%20")
        ),
        1,
    );
    let out = edge_fer(&["--image", image, "--mqtt", &with_password]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 records delivered"),
        "{}",
        stderr(&out)
    );

    // Nothing listens on this port.
    let nobody = format!("mqtt://127.0.0.1:{}/x", free_port());
    let out = edge_fer(&["--image", image, "--mqtt", &nobody]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the MQTT broker mqtt://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("--mqtt-wait"), "{err}");
    // With --mqtt-wait it runs anyway and says what it could not deliver.
    let out = edge_fer(&[
        "--image",
        image,
        "--mqtt",
        &nobody,
        "--mqtt-wait",
        "--mqtt-drain",
        "0",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(json_lines(&out).len(), 1);
    assert!(err.contains("1 not delivered"), "{err}");

    let args = ["--image", image];
    assert_refused(&args, "--mqtt", "broker:1883", "mqtt://");
    assert_refused(&args, "--mqtt", "mqtt://host/a/+", "wildcard");
    assert_refused(&args, "--mqtt", "mqtt://host/a/#", "fragment");
    assert_refused(&args, "--mqtt-outbox", "0", "0");
    assert_refused(&args, "--mqtt-frame-rate", "-1", "out of range");
    let out = edge_fer(&[
        "--image",
        image,
        "--mqtt",
        &url,
        "--mqtt-ca",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/ca.pem"),
        "{}",
        stderr(&out)
    );
    let out = edge_fer(&["--image", image, "--mqtt", &url, "--device-id", "a/b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("\"a/b\""), "{}", stderr(&out));
}

/// openssl: a CA, and a certificate for 127.0.0.1 and localhost that it signed.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=edge-fer test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn mqtts_with_the_ca_file_is_trusted_and_without_it_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(work.path());
    let tls_port = free_port();
    let broker = Broker::new(
        work.path(),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    // Plain TCP for the subscriber; TLS for edge-fer.
    let subscriber = Subscriber::new(broker.port, "test-tls", "tls/#", false);
    let creds = credentials(work.path(), PASSWORD);
    let url = format!("mqtts://localhost:{tls_port}/tls");
    let image = fixture("grace_hopper_512x512.jpg");
    let out = edge_fer(&[
        "--image",
        image.to_str().unwrap(),
        "--mqtt",
        &url,
        "--mqtt-ca",
        ca.to_str().unwrap(),
        "--mqtt-credentials",
        creds.to_str().unwrap(),
        "--device-id",
        "tls-kiosk",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        wait_for(Duration::from_secs(10), || {
            subscriber.visits().len() == 1
                && subscriber
                    .messages()
                    .iter()
                    .any(|m| m.payload["status"] == "offline")
        }),
        "{:?}",
        subscriber.messages()
    );
    assert_eq!(subscriber.visits()[0]["device"], "tls-kiosk");

    // The system's roots do not include the test CA.
    let out = edge_fer(&[
        "--image",
        image.to_str().unwrap(),
        "--mqtt",
        &url,
        "--mqtt-credentials",
        creds.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("TLS with the MQTT broker mqtts://localhost:")
            && err.to_lowercase().contains("certificate")
            && err.contains("--mqtt-ca"),
        "{err}"
    );
    // Waiting would not make it trusted: --mqtt-wait refuses it too.
    let out = edge_fer(&[
        "--image",
        image.to_str().unwrap(),
        "--mqtt",
        &url,
        "--mqtt-credentials",
        creds.to_str().unwrap(),
        "--mqtt-wait",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}
