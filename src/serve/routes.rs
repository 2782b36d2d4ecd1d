//! The kiosk view's routes: the page, the latest frame and result, and the MJPEG and SSE streams.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::hub::{Hub, Snapshot};

const PAGE: &str = include_str!("index.html");

/// The kiosk view's routes, serving `hub`.
pub(super) fn router(hub: Hub) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/frame.jpg", get(frame_jpeg))
        .route("/stream.mjpg", get(mjpeg))
        .route("/events", get(events))
        .route("/latest", get(latest))
        .route("/audience", get(audience))
        .layer(axum::extract::DefaultBodyLimit::max(1024))
        .with_state(hub)
}

/// `/metrics` alone, encoding `metrics` on each scrape.
pub(super) fn metrics_router(metrics: std::sync::Arc<crate::metrics::Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .layer(axum::extract::DefaultBodyLimit::max(1024))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<std::sync::Arc<crate::metrics::Metrics>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
        .into_response()
}

/// The page, with the latest result written in (so the first paint already shows it).
async fn page(State(hub): State<Hub>) -> Html<String> {
    hub.viewer_seen();
    let json = hub.subscribe().borrow().json.clone();
    // Inside <script>, "</" could end the element; JSON allows "<\/" for it.
    let initial = json.map_or("null".to_string(), |j| j.replace("</", "<\\/"));
    let page = PAGE.replacen("/*INITIAL*/null", &initial, 1);
    // The audience figures too, so the first paint shows them.
    let audience = serde_json::to_string(&hub.audience()).unwrap_or_else(|_| "null".into());
    let page = page.replacen(
        "/*AUDIENCE*/{\"present\":0,\"visits_last_hour\":0,\"median_dwell_s\":null,\"labels\":[],\"timeline\":[]}",
        &audience.replace("</", "<\\/"),
        1,
    );
    Html(page.replacen("/*PRIVATE*/false", &hub.is_private().to_string(), 1))
}

/// What the frame routes answer in privacy mode.
fn no_frames() -> Response {
    (
        StatusCode::NOT_FOUND,
        "no frames: edge-fer runs in privacy mode (--privacy)\n",
    )
        .into_response()
}

/// The latest frame as one JPEG, waiting briefly for one to be encoded if there is none yet.
async fn frame_jpeg(State(hub): State<Hub>) -> Response {
    if hub.is_private() {
        return no_frames();
    }
    hub.viewer_seen();
    let mut rx = hub.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(jpeg) = rx.borrow_and_update().jpeg.clone() {
            return (
                [
                    (header::CONTENT_TYPE, "image/jpeg"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                jpeg,
            )
                .into_response();
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => hub.viewer_seen(),
            _ => return (StatusCode::SERVICE_UNAVAILABLE, "no frame yet\n").into_response(),
        }
    }
}

async fn latest(State(hub): State<Hub>) -> Response {
    let json = hub.subscribe().borrow().json.clone();
    match json {
        Some(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        None => (StatusCode::NO_CONTENT, "").into_response(),
    }
}

async fn audience(State(hub): State<Hub>) -> Response {
    match serde_json::to_string(&hub.audience()) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        "too many viewers\n",
    )
        .into_response()
}

async fn events(State(hub): State<Hub>) -> Response {
    let Some((rx, permit)) = hub.open_stream() else {
        return busy();
    };
    // Every publication carries a result, so each change is one event; the stream ends with
    // the pipeline (the sender is dropped).
    let updates = stream::unfold((rx, hub, permit), |(mut rx, hub, permit)| async move {
        rx.changed().await.ok()?;
        hub.viewer_seen();
        let json = rx.borrow_and_update().json.clone()?;
        let event = Event::default().data(json.as_ref());
        Some((Ok::<_, Infallible>(event), (rx, hub, permit)))
    });
    Sse::new(updates)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn mjpeg(State(hub): State<Hub>) -> Response {
    if hub.is_private() {
        return no_frames();
    }
    let Some((rx, permit)) = hub.open_stream() else {
        return busy();
    };
    let parts = mjpeg_parts(rx, hub, permit);
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "multipart/x-mixed-replace; boundary=frame",
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(parts))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn mjpeg_parts(
    rx: watch::Receiver<Snapshot>,
    hub: Hub,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = std::result::Result<Bytes, Infallible>> {
    stream::unfold(
        (rx, hub, permit, None::<Bytes>),
        |(mut rx, hub, permit, sent)| async move {
            loop {
                // The current frame first (a new viewer sees something at once), then changes.
                let jpeg = rx.borrow_and_update().jpeg.clone();
                hub.viewer_seen();
                if let Some(jpeg) = jpeg.filter(|j| sent.as_ref() != Some(j)) {
                    let mut part = Vec::with_capacity(jpeg.len() + 100);
                    part.extend_from_slice(
                        format!(
                            "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                            jpeg.len()
                        )
                        .as_bytes(),
                    );
                    part.extend_from_slice(&jpeg);
                    part.extend_from_slice(b"\r\n");
                    return Some((Ok(Bytes::from(part)), (rx, hub, permit, Some(jpeg))));
                }
                // Wake now and then even without frames, so a viewer keeps frames being encoded.
                let waited = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
                if let Ok(Err(_)) = waited {
                    return None; // The pipeline has ended.
                }
            }
        },
    )
}
