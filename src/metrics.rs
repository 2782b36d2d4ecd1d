//! Health metrics for Prometheus: what the pipeline counts, and the registry `/metrics` encodes in
//! the OpenMetrics text format (`prometheus-client`).
//!
//! The counters are cheap shared handles (an atomic each): the pipeline's threads, the camera's
//! reconnection and the MQTT publisher bump their own copies, and a scrape reads them all.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::stats::PipelineTimes;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the pipeline counts over a run.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Frames read from the source (failed ones included, dropped ones not).
    pub frames: Counter,
    /// Live frames dropped because the pipeline was busy.
    pub dropped: Counter,
    /// Frames that could not be processed.
    pub failed: Counter,
    /// Faces classified.
    pub faces: Counter,
    /// Faces in the latest frame.
    pub faces_present: Gauge,
    /// Visits ended.
    pub visits: Counter,
    /// Times the camera was reopened after a loss.
    pub camera_reconnects: Counter,
}

/// What the MQTT publisher counts (see [`crate::mqtt`]).
#[derive(Debug, Clone, Default)]
pub struct MqttCounters {
    /// 1 while connected to the broker, else 0.
    pub connected: Gauge,
    /// QoS-1 records waiting in the outbox for the broker's acknowledgement.
    pub outbox: Gauge,
    /// QoS-1 records the broker acknowledged.
    pub delivered: Counter,
    /// QoS-1 records dropped because the outbox was full (the oldest go first).
    pub dropped: Counter,
    /// Per-frame results not sent: the broker was away or the client's queue was full (QoS 0
    /// results are never queued).
    pub frames_skipped: Counter,
    /// Connections made to the broker (the first included).
    pub connections: Counter,
}

/// The build and model a process runs, as `edge_fer_build_info`'s labels.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// edge-fer's version.
    pub version: String,
    /// The model card's name.
    pub model: String,
    /// The ONNX file's sha256, from the model card.
    pub model_sha256: String,
}

/// Every metric of a process, ready to encode.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// A registry of the pipeline's counters and stage latencies, and the build's information.
    pub fn new(build: &BuildInfo, counters: &Counters, times: &PipelineTimes) -> Self {
        let mut registry = Registry::with_prefix("edge_fer");
        let c = counters.clone();
        registry.register("frames", "Frames read from the source", c.frames);
        registry.register(
            "frames_dropped",
            "Live frames dropped because the pipeline was busy",
            c.dropped,
        );
        registry.register(
            "frames_failed",
            "Frames that could not be processed",
            c.failed,
        );
        registry.register("faces", "Faces classified", c.faces);
        registry.register(
            "faces_present",
            "Faces in the latest frame",
            c.faces_present,
        );
        registry.register("visits", "Visits ended", c.visits);
        registry.register(
            "camera_reconnects",
            "Times the camera was reopened after a loss",
            c.camera_reconnects,
        );
        registry.register_with_unit(
            "stage_duration",
            "Time each pipeline stage took per frame",
            Unit::Seconds,
            times.histograms(),
        );
        registry.register(
            "build",
            "edge-fer's version and the model it runs",
            Info::new(vec![
                ("version", build.version.clone()),
                ("model", build.model.clone()),
                ("model_sha256", build.model_sha256.clone()),
            ]),
        );
        Metrics { registry }
    }

    /// Adds the MQTT publisher's figures.
    pub fn with_mqtt(mut self, mqtt: &MqttCounters) -> Self {
        let r = self.registry.sub_registry_with_prefix("mqtt");
        let m = mqtt.clone();
        r.register("connected", "1 while connected to the broker", m.connected);
        r.register(
            "outbox_records",
            "QoS-1 records waiting for the broker's acknowledgement",
            m.outbox,
        );
        r.register(
            "delivered_records",
            "QoS-1 records the broker acknowledged",
            m.delivered,
        );
        r.register(
            "dropped_records",
            "QoS-1 records dropped because the outbox was full",
            m.dropped,
        );
        r.register(
            "frames_skipped",
            "Per-frame results not sent (broker away or queue full)",
            m.frames_skipped,
        );
        r.register(
            "connections",
            "Connections made to the broker",
            m.connections,
        );
        self
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(e) = encode(&mut text, &self.registry) {
            tracing::error!("cannot encode metrics: {e}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counters_stage_latencies_and_build_info_are_encoded() {
        let counters = Counters::default();
        let times = PipelineTimes::default();
        let mqtt = MqttCounters::default();
        let metrics = Metrics::new(
            &BuildInfo {
                version: "1.2.3".into(),
                model: "fer".into(),
                model_sha256: "ab12".into(),
            },
            &counters,
            &times,
        )
        .with_mqtt(&mqtt);
        counters.frames.inc_by(3);
        counters.faces_present.set(2);
        mqtt.outbox.set(5);
        times.detect.record(Duration::from_millis(3));
        let text = metrics.encode();
        assert!(text.contains("edge_fer_frames_total 3\n"), "{text}");
        assert!(text.contains("edge_fer_faces_present 2\n"), "{text}");
        assert!(text.contains("edge_fer_mqtt_outbox_records 5\n"), "{text}");
        assert!(
            text.contains(
                r#"edge_fer_build_info{version="1.2.3",model="fer",model_sha256="ab12"} 1"#
            ),
            "{text}"
        );
        // 3 ms falls in the 3.2 ms bucket and every one above it, not in the 1.6 ms one.
        for (le, n) in [("0.0016", 0), ("0.0032", 1), ("+Inf", 1)] {
            let line = format!(
                r#"edge_fer_stage_duration_seconds_bucket{{le="{le}",stage="detect"}} {n}"#
            );
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        assert!(
            text.contains(r#"edge_fer_stage_duration_seconds_count{stage="detect"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"edge_fer_stage_duration_seconds_count{stage="classify"} 0"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
