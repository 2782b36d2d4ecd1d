//! Results to an MQTT broker (`--mqtt`), through rumqttc.
//!
//! Topics, under the URL's prefix (default `edge-fer`) and the device id (default: the host name):
//! - `PREFIX/DEVICE/status`: `{"device", "run", "status": "online" | "offline", "version"}`,
//!   retained, QoS 1; `offline` is also the connection's last will, so a kiosk that loses power
//!   or its network reads `offline` too.
//! - `PREFIX/DEVICE/frame`: each frame's result (edge-fer's JSON line) with `device`, `run` and
//!   `seq` in front, QoS 0, at most `frame_rate` a second on the frames' clock. Sent only while
//!   connected, never queued: a result nobody received in time is of no use later.
//! - `PREFIX/DEVICE/visit`: each visit record (as `--visits` writes it) with `device`, `run` and
//!   `seq`, QoS 1, kept in an [`outbox`] until the broker acknowledges it and sent again after a
//!   reconnection; a full outbox drops the oldest record, counted.
//!
//! `seq` counts the device's frame and visit records from 1 within a `run` (the process's start,
//! milliseconds since the Unix epoch): QoS 1 may deliver a record twice, and (device, run, seq)
//! identifies it.
//!
//! The pipeline never waits for the broker: records are handed over with `try_publish` or into
//! the outbox; the network runs on a thread of its own (a single-threaded tokio runtime).

mod address;
pub mod outbox;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde::Serialize;
use tokio::sync::Notify;

pub use address::{BrokerUrl, DEFAULT_PREFIX};
use outbox::{Outbox, Overflow, Record};

use crate::capture::Backoff;
use crate::metrics::MqttCounters;
use crate::output::FrameResult;
use crate::visits::VisitRecord;

/// What can stop MQTT publishing from starting.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// `--mqtt`'s URL is not one.
    #[error("--mqtt {url}: {reason}")]
    Url {
        /// The URL, password hidden.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The credentials file cannot be read or has no `user:password` line.
    #[error("MQTT credentials file {}: {reason}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("MQTT CA file {}: {reason}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The device id cannot be part of a topic.
    #[error("MQTT device id {id:?}: {reason}")]
    DeviceId {
        /// The id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The broker could not be reached at start.
    #[error("cannot reach the MQTT broker {broker}: {reason} (--mqtt-wait starts anyway and keeps trying)")]
    Unreachable {
        /// `mqtt://host:port`.
        broker: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The broker refused the connection (credentials, authorisation).
    #[error("the MQTT broker {broker} refused the connection: {reason}")]
    Refused {
        /// `mqtt://host:port`.
        broker: String,
        /// The broker's return code, in words.
        reason: String,
    },
    /// The TLS handshake failed: the broker's certificate is not trusted, or names another host.
    #[error("TLS with the MQTT broker {broker} failed: {reason} (--mqtt-ca FILE trusts a CA of your own)")]
    Tls {
        /// `mqtts://host:port`.
        broker: String,
        /// What rustls said.
        reason: String,
    },
    /// The client's thread or TLS configuration could not be set up.
    #[error("cannot start the MQTT client: {0}")]
    Start(String),
}

/// How and where to publish.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The broker and the topic prefix.
    pub url: BrokerUrl,
    /// A file whose first line is `user:password` (instead of, not as well as, the URL's).
    pub credentials_file: Option<PathBuf>,
    /// `mqtts`: PEM certificates to trust (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// The device's id in topics and payloads.
    pub device: String,
    /// Per-frame results a second at most, on the frames' clock; 0 sends none.
    pub frame_rate: f64,
    /// QoS-1 records kept at most while waiting for the broker.
    pub outbox: usize,
    /// Start even when the broker cannot be reached (keep trying in the background).
    pub wait: bool,
    /// At exit, how long to wait for the outbox to be acknowledged.
    pub drain: Duration,
    /// Waits between connection attempts.
    pub backoff: Backoff,
    /// MQTT keep-alive: a silent broker is noticed within about 1.5 times this.
    pub keep_alive: Duration,
}

impl MqttConfig {
    /// `url` with the defaults: the host name as device id, one result a second, 1000 records
    /// in the outbox, 5 s to drain at exit, the camera's back-off.
    pub fn new(url: BrokerUrl) -> Self {
        MqttConfig {
            url,
            credentials_file: None,
            ca_file: None,
            device: default_device_id(),
            frame_rate: 1.0,
            outbox: DEFAULT_OUTBOX,
            wait: false,
            drain: Duration::from_secs(5),
            backoff: Backoff::default(),
            keep_alive: Duration::from_secs(10),
        }
    }
}

/// [`MqttConfig::outbox`]'s default: about a day of visits at a busy kiosk.
pub const DEFAULT_OUTBOX: usize = 1000;

/// QoS-1 records in flight at once (sent, not yet acknowledged).
const WINDOW: usize = 32;

/// The host name (`/proc/sys/kernel/hostname`), or `edge-fer` when there is none.
pub fn default_device_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "edge-fer".into())
}

fn check_device_id(id: &str) -> Result<(), MqttError> {
    let bad = |reason: &str| {
        Err(MqttError::DeviceId {
            id: id.to_string(),
            reason: reason.into(),
        })
    };
    if id.is_empty() || id.len() > 128 {
        return bad("give 1 to 128 characters");
    }
    if id
        .chars()
        .any(|c| matches!(c, '/' | '+' | '#') || c.is_control())
    {
        return bad("it is one topic level: no '/', '+', '#' or control characters");
    }
    Ok(())
}

fn read_credentials(path: &Path) -> Result<(String, String), MqttError> {
    let bad = |reason: String| MqttError::Credentials {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.into(), password.into())),
        _ => Err(bad("its first line must be USER:PASSWORD".into())),
    }
}

fn tls_config(ca_file: Option<&Path>) -> Result<TlsConfiguration, MqttError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |reason: String| MqttError::Ca {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Start(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// The topics of one device.
#[derive(Debug, Clone)]
struct Topics {
    status: String,
    frame: String,
    visit: String,
}

#[derive(Serialize)]
struct Status<'a> {
    device: &'a str,
    run: u64,
    status: &'a str,
    version: &'a str,
}

/// State shared by the pipeline's handles and the network thread.
#[derive(Debug)]
struct Shared {
    outbox: Mutex<Outbox>,
    connected: AtomicBool,
    /// Wakes the task that hands outbox records to the client.
    wake: Notify,
    /// Set by [`Publisher::finish`]: the network thread ends after the disconnection.
    finishing: AtomicBool,
    quit: Notify,
    counters: MqttCounters,
    seq: AtomicU64,
    device: String,
    run: u64,
    broker: String,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, record: Record) {
        let mut outbox = self.lock();
        let overflow = outbox.push(record);
        self.counters.outbox.set(outbox.len() as i64);
        drop(outbox);
        if !matches!(overflow, Overflow::None) {
            self.counters.dropped.inc();
            let dropped = self.counters.dropped.get();
            // Every drop is counted (`/metrics`, the exit summary); the log says so sparingly.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    "MQTT outbox full: {dropped} record(s) dropped so far (broker {} away; --mqtt-outbox)",
                    self.broker
                );
            }
        }
        self.wake.notify_one();
    }

    /// `record`'s JSON with the device, run and a new sequence number in front.
    fn payload(&self, record: &impl Serialize) -> Option<(u64, Vec<u8>)> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut map = serde_json::Map::new();
        map.insert("device".into(), self.device.clone().into());
        map.insert("run".into(), self.run.into());
        map.insert("seq".into(), seq.into());
        match serde_json::to_value(record) {
            Ok(serde_json::Value::Object(fields)) => map.extend(fields),
            _ => return None,
        }
        serde_json::to_vec(&map).ok().map(|p| (seq, p))
    }
}

/// The pipeline's side of the publisher: hands records over without waiting.
#[derive(Debug, Clone)]
pub struct MqttSink {
    shared: Arc<Shared>,
    client: AsyncClient,
    topics: Arc<Topics>,
    frame_every: Option<f64>,
    last_frame: Option<f64>,
}

impl MqttSink {
    /// Publishes `result` (a frame at `time_s` on its source's clock) if the rate limit allows
    /// and the broker is there; otherwise it is skipped and counted.
    pub fn frame(&mut self, time_s: f64, result: &FrameResult) {
        let Some(every) = self.frame_every else {
            return;
        };
        if self
            .last_frame
            .is_some_and(|last| time_s >= last && time_s - last < every)
        {
            return;
        }
        self.last_frame = Some(time_s);
        if !self.shared.connected.load(Ordering::Relaxed) {
            self.shared.counters.frames_skipped.inc();
            return;
        }
        let Some((_, payload)) = self.shared.payload(result) else {
            return;
        };
        if self
            .client
            .try_publish(&self.topics.frame, QoS::AtMostOnce, false, payload)
            .is_err()
        {
            self.shared.counters.frames_skipped.inc();
        }
    }

    /// Queues `record` at QoS 1 in the outbox.
    pub fn visit(&self, record: &VisitRecord) {
        if let Some((seq, payload)) = self.shared.payload(record) {
            self.shared.push(Record {
                seq: Some(seq),
                topic: self.topics.visit.clone(),
                payload,
                retain: false,
            });
        }
    }
}

impl crate::output::Sink for MqttSink {
    fn name(&self) -> &str {
        &self.shared.broker
    }

    /// Queues the visits that ended and publishes the frame (see [`MqttSink::visit`],
    /// [`MqttSink::frame`]); never waits and never fails: the broker's absence is counted.
    fn write(&mut self, finished: &crate::output::Finished<'_>) -> std::io::Result<()> {
        for record in finished.visits {
            self.visit(record);
        }
        if let Some(result) = finished.result {
            self.frame(finished.time_s, result);
        }
        Ok(())
    }
}

/// What happened to the QoS-1 records of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Acknowledged by the broker.
    pub delivered: u64,
    /// Dropped because the outbox was full.
    pub dropped: u64,
    /// Still in the outbox at exit (the broker was away for the whole drain time).
    pub undelivered: u64,
}

/// The MQTT connection of a run: start it, hand [`Publisher::sink`]s to the pipeline, and
/// [`Publisher::finish`] it at the end.
#[derive(Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
    client: AsyncClient,
    topics: Arc<Topics>,
    config: MqttConfig,
    /// The `offline` status: the connection's last will, and what [`Publisher::finish`] sends.
    offline: Record,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    /// Connects to the broker and publishes the `online` status. Waits for the first
    /// connection's outcome: an unreachable broker is an error unless [`MqttConfig::wait`];
    /// refused credentials always are.
    ///
    /// # Errors
    /// See [`MqttError`].
    pub fn start(config: MqttConfig, counters: MqttCounters) -> Result<Publisher, MqttError> {
        check_device_id(&config.device)?;
        let credentials = match &config.credentials_file {
            Some(path) => {
                if config.url.credentials.is_some() {
                    return Err(MqttError::Credentials {
                        path: path.clone(),
                        reason: "the --mqtt URL has credentials too: give them once".into(),
                    });
                }
                Some(read_credentials(path)?)
            }
            None => config.url.credentials.clone(),
        };
        let transport = if config.url.tls {
            Some(Transport::Tls(tls_config(config.ca_file.as_deref())?))
        } else {
            if let Some(path) = &config.ca_file {
                return Err(MqttError::Ca {
                    path: path.clone(),
                    reason: "a CA file needs an mqtts:// URL".into(),
                });
            }
            None
        };
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let base = format!("{}/{}", config.url.prefix, config.device);
        let topics = Arc::new(Topics {
            status: format!("{base}/status"),
            frame: format!("{base}/frame"),
            visit: format!("{base}/visit"),
        });
        let status = |status: &str| {
            serde_json::to_vec(&Status {
                device: &config.device,
                run,
                status,
                version: env!("CARGO_PKG_VERSION"),
            })
            .unwrap_or_default()
        };
        let offline = Record {
            seq: None,
            topic: topics.status.clone(),
            payload: status("offline"),
            retain: true,
        };

        let mut options = MqttOptions::new(
            format!("edge-fer-{}", config.device),
            config.url.host.clone(),
            config.url.port,
        );
        // The outbox is the publisher's memory; a session kept by the broker would only hold
        // the same records again (see outbox.rs).
        options
            .set_clean_session(true)
            .set_keep_alive(config.keep_alive)
            .set_inflight(u16::try_from(2 * WINDOW).unwrap_or(u16::MAX))
            // A frame with eight faces and their landmarks is ~20 kB; the default cap is 10 kB.
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_last_will(LastWill::new(
                &offline.topic,
                offline.payload.clone(),
                QoS::AtLeastOnce,
                offline.retain,
            ));
        if let Some((user, password)) = &credentials {
            options.set_credentials(user, password);
        }
        if let Some(transport) = transport {
            options.set_transport(transport);
        }
        let (client, eventloop) = AsyncClient::new(options, 64);
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::new(config.outbox)),
            connected: AtomicBool::new(false),
            wake: Notify::new(),
            finishing: AtomicBool::new(false),
            quit: Notify::new(),
            counters,
            seq: AtomicU64::new(0),
            device: config.device.clone(),
            run,
            broker: config.url.broker(),
        });

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| MqttError::Start(e.to_string()))?;
        let (first_tx, first_rx) = mpsc::channel();
        let online = Record {
            seq: None,
            topic: topics.status.clone(),
            payload: status("online"),
            retain: true,
        };
        let thread = {
            let (shared, client) = (Arc::clone(&shared), client.clone());
            let backoff = config.backoff;
            std::thread::Builder::new()
                .name("mqtt".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        let pump = tokio::spawn(hand_over(Arc::clone(&shared), client));
                        drive(eventloop, &shared, online, backoff, first_tx).await;
                        pump.abort();
                    });
                })
                .map_err(|e| MqttError::Start(e.to_string()))?
        };
        let publisher = Publisher {
            shared,
            client,
            topics,
            config,
            offline,
            thread: Some(thread),
        };
        let broker = publisher.shared.broker.clone();
        // rumqttc gives up on one attempt after its connection timeout (5 s).
        match first_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => Ok(publisher),
            Ok(Err(ConnectionError::ConnectionRefused(code))) => Err(MqttError::Refused {
                broker,
                reason: refusal(code, publisher.config.credentials_file.as_deref()),
            }),
            // A certificate that is not trusted will not become so by waiting.
            Ok(Err(ConnectionError::Tls(e))) => Err(MqttError::Tls {
                broker,
                reason: e.to_string(),
            }),
            Ok(Err(e)) if !publisher.config.wait => Err(MqttError::Unreachable {
                broker,
                reason: e.to_string(),
            }),
            Ok(Err(e)) => {
                tracing::warn!(
                    "MQTT broker {broker}: {e}; starting anyway, retrying (--mqtt-wait)"
                );
                Ok(publisher)
            }
            Err(_) if publisher.config.wait => Ok(publisher),
            Err(_) => Err(MqttError::Unreachable {
                broker,
                reason: "no answer".into(),
            }),
        }
    }

    /// A handle for the pipeline.
    pub fn sink(&self) -> MqttSink {
        MqttSink {
            shared: Arc::clone(&self.shared),
            client: self.client.clone(),
            topics: Arc::clone(&self.topics),
            frame_every: (self.config.frame_rate > 0.0).then(|| 1.0 / self.config.frame_rate),
            last_frame: None,
        }
    }

    /// The broker, as `mqtt://host:port`.
    pub fn broker(&self) -> &str {
        &self.shared.broker
    }

    /// Publishes `offline`, waits up to [`MqttConfig::drain`] for the outbox to be acknowledged,
    /// disconnects and says what became of the records.
    pub fn finish(mut self) -> Delivery {
        self.shared.push(self.offline.clone());
        let deadline = Instant::now() + self.config.drain;
        while !self.shared.lock().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let undelivered = self
            .shared
            .lock()
            .records()
            .filter(|r| r.seq.is_some())
            .count() as u64;
        self.shared.finishing.store(true, Ordering::Relaxed);
        let disconnecting =
            self.shared.connected.load(Ordering::Relaxed) && self.client.try_disconnect().is_ok();
        if disconnecting {
            // The DISCONNECT goes out (so the broker does not send the will), then the thread ends.
            let until = Instant::now() + Duration::from_secs(1);
            while self.thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.shared.quit.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let c = &self.shared.counters;
        Delivery {
            delivered: c.delivered.get(),
            dropped: c.dropped.get(),
            undelivered,
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shared.finishing.store(true, Ordering::Relaxed);
        self.shared.quit.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The broker's refusal in words, naming where the credentials came from.
fn refusal(code: ConnectReturnCode, credentials_file: Option<&Path>) -> String {
    let source = match credentials_file {
        Some(path) => format!("the credentials in {}", path.display()),
        None => "the --mqtt URL's credentials (or none)".into(),
    };
    match code {
        ConnectReturnCode::BadUserNamePassword => {
            format!("bad user name or password: check {source}")
        }
        ConnectReturnCode::NotAuthorized => format!("not authorised: check {source}"),
        other => format!("{other:?}"),
    }
}

/// Hands waiting outbox records to the client whenever woken, while connected. Runs on the
/// network thread's runtime, so it never interleaves with the event loop's handling of a lost
/// connection (see [`drive`]).
async fn hand_over(shared: Arc<Shared>, client: AsyncClient) {
    loop {
        shared.wake.notified().await;
        if !shared.connected.load(Ordering::Relaxed) {
            continue;
        }
        shared.lock().hand_over(WINDOW, |r| {
            client
                .try_publish(&r.topic, QoS::AtLeastOnce, r.retain, r.payload.clone())
                .is_ok()
        });
    }
}

/// The connection: polls rumqttc's event loop, matches packet ids and acknowledgements to the
/// outbox, reconnects with back-off. Reports the first attempt's outcome on `first`.
async fn drive(
    mut eventloop: EventLoop,
    shared: &Shared,
    online: Record,
    backoff: Backoff,
    first: mpsc::Sender<Result<(), ConnectionError>>,
) {
    let mut first = Some(first);
    let mut delay = backoff.initial;
    let mut lost_since: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            () = shared.quit.notified() => return,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                delay = backoff.initial;
                shared.connected.store(true, Ordering::Relaxed);
                shared.counters.connected.set(1);
                shared.counters.connections.inc();
                match lost_since.take() {
                    Some(since) => tracing::warn!(
                        "MQTT broker {} is back after {:.1} s",
                        shared.broker,
                        since.elapsed().as_secs_f64()
                    ),
                    None => tracing::info!("connected to the MQTT broker {}", shared.broker),
                }
                shared.push(online.clone());
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                shared.lock().sent_as(pkid);
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let mut outbox = shared.lock();
                if outbox.acked(ack.pkid).is_some_and(|r| r.seq.is_some()) {
                    shared.counters.delivered.inc();
                }
                shared.counters.outbox.set(outbox.len() as i64);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect))
                if shared.finishing.load(Ordering::Relaxed) =>
            {
                return;
            }
            Ok(_) => {}
            Err(e) => {
                // rumqttc has moved its unacknowledged packets aside, and drops them on the next
                // (clean) session: the outbox sends its records again instead. No other task
                // runs between that and here, so nothing is handed over to the dead connection.
                shared.connected.store(false, Ordering::Relaxed);
                shared.counters.connected.set(0);
                shared.lock().requeue();
                if shared.finishing.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(first) = first.take() {
                    let refused = matches!(
                        e,
                        ConnectionError::ConnectionRefused(_) | ConnectionError::Tls(_)
                    );
                    let _ = first.send(Err(e));
                    if refused {
                        return;
                    }
                } else if lost_since.is_none() {
                    tracing::warn!(
                        "MQTT broker {}: {e}; retrying with back-off, records kept in the outbox",
                        shared.broker
                    );
                }
                lost_since.get_or_insert_with(Instant::now);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.quit.notified() => return,
                }
                delay = (delay * 2).min(backoff.max);
                continue;
            }
        }
        // Any event may have made room (an ack, a request taken from the client's queue).
        shared.wake.notify_one();
    }
}
