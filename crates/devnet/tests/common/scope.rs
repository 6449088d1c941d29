//! A Scope client for the devnet tests, driving the control protocol as a gateway does:
//! JSON lines on the control channel, events read from the start of the events channel.

use std::time::Duration;

use lpgw_devnet::DevnetHandle;
use lpgw_trickle::client::{Subscriber, SubscriberConfig};
use lpgw_trickle::json::{JsonReader, JsonWriter, JsonWriterConfig};
use lpgw_trickle::wire::SeqRequest;
use serde_json::{Value, json};

use super::{bounded, http, json_reader_from_start, post_json, send};

/// One Scope job seen from the client side.
pub struct ScopeClient {
    pub job: Value,
    control: JsonWriter,
    events: JsonReader,
    /// Every `logs` line seen so far.
    pub logs: Vec<String>,
    /// Every event seen so far, in order (logs included).
    pub seen: Vec<Value>,
    next_rid: u64,
}

impl ScopeClient {
    /// A client of the job answer `job` (`control_url`, `events_url`). No keepalives.
    pub fn new(job: Value) -> Self {
        let control = JsonWriter::new(
            job["control_url"].as_str().unwrap(),
            JsonWriterConfig {
                keepalive: None,
                ..JsonWriterConfig::default()
            },
        )
        .unwrap();
        let events = json_reader_from_start(job["events_url"].as_str().unwrap());
        Self {
            job,
            control,
            events,
            logs: Vec::new(),
            seen: Vec::new(),
            next_rid: 0,
        }
    }

    /// Sends one control message.
    pub async fn send(&self, msg: Value) {
        self.control.send(&msg).await.unwrap();
    }

    /// The next event (logs are recorded and returned too).
    pub async fn next(&mut self) -> Value {
        let m = bounded(self.events.next())
            .await
            .unwrap()
            .expect("events open");
        if m["type"] == "logs" {
            for l in m["lines"].as_array().unwrap() {
                self.logs.push(l.as_str().unwrap().to_string());
            }
        }
        self.seen.push(m.clone());
        m
    }

    /// The next event that is not `logs`.
    pub async fn next_event(&mut self) -> Value {
        loop {
            let m = self.next().await;
            if m["type"] != "logs" {
                return m;
            }
        }
    }

    /// The next event of type `kind`, skipping others (but not errors).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let m = self.next().await;
            if m["type"] == kind {
                return m;
            }
            assert_ne!(m["type"], "error", "{m}");
        }
    }

    /// Waits until a `logs` line contains `text`; returns it.
    pub async fn log_containing(&mut self, text: &str) -> String {
        loop {
            if let Some(l) = self.logs.iter().find(|l| l.contains(text)) {
                return l.clone();
            }
            self.next().await;
        }
    }

    /// An `api` call; returns the `api_response`.
    pub async fn api(&mut self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.next_rid += 1;
        let rid = format!("api-{}", self.next_rid);
        let mut msg = json!({"type": "api", "request_id": rid, "method": method, "path": path});
        if let Some(b) = body {
            msg["body"] = b;
        }
        self.send(msg).await;
        let r = self.next_of("api_response").await;
        assert_eq!(r["request_id"], rid.as_str());
        r
    }

    /// `GET /api/v1/pipeline/status` data.
    pub async fn status(&mut self) -> Value {
        self.api("GET", "/api/v1/pipeline/status", None).await["data"].clone()
    }

    /// Loads `ids` (`pipeline_ids` form) and polls the status until `loaded`.
    pub async fn load(&mut self, ids: &[&str]) {
        let r = self
            .api(
                "POST",
                "/api/v1/pipeline/load",
                Some(json!({"pipeline_ids": ids})),
            )
            .await;
        assert_eq!(
            (r["status"].as_u64(), &r["data"]),
            (
                Some(200),
                &json!({"message": "Pipeline loading initiated successfully"})
            )
        );
        self.wait_status("loaded").await;
    }

    /// Polls the status every 50 ms until it is `want`; returns the last status.
    pub async fn wait_status(&mut self, want: &str) -> Value {
        for _ in 0..200 {
            let s = self.status().await;
            if s["status"] == want {
                return s;
            }
            assert_ne!(s["status"], "error", "{s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("status never became {want}");
    }

    /// `start_stream` with the linear graph over `ids`; returns the answer.
    pub async fn start_linear(&mut self, ids: &[&str], input_mode: &str) -> Value {
        let params = json!({"pipeline_ids": ids, "input_mode": input_mode,
            "graph": linear_graph(ids), "prompts": [{"text": "neon city", "weight": 100}]});
        self.send(json!({"type": "start_stream", "request_id": "start", "params": params}))
            .await;
        self.next_of("stream_started").await
    }
}

/// The linear graph a gateway sends: `input` → each pipeline → `output`.
pub fn linear_graph(ids: &[&str]) -> Value {
    let mut nodes = vec![json!({"id": "input", "type": "source"})];
    let mut edges = Vec::new();
    let mut prev = "input";
    for id in ids {
        nodes.push(json!({"id": id, "type": "pipeline", "pipeline_id": id}));
        edges.push(json!({"from": prev, "from_port": "video", "to_node": id, "to_port": "video", "kind": "stream"}));
        prev = id;
    }
    nodes.push(json!({"id": "output", "type": "sink"}));
    edges.push(json!({"from": prev, "from_port": "video", "to_node": "output", "to_port": "video", "kind": "stream"}));
    json!({"nodes": nodes, "edges": edges})
}

/// The URL of the channel of `started` in `direction`.
pub fn channel_url(started: &Value, direction: &str) -> String {
    started["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["direction"] == direction)
        .unwrap_or_else(|| panic!("no {direction} channel: {started}"))["url"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Reserves a session on the persistent runner `route` and starts its job (`POST /scope`).
pub async fn persistent_job(h: &DevnetHandle, route: &str) -> (Value, reqwest::Response) {
    let a = post_json(format!("{}/apps/{route}/session", h.orchestrator_url())).await;
    assert!(a["session_id"].is_string(), "{a}");
    let r = scope_call(&a).await;
    (a, r)
}

/// `POST {app_url}/scope` of a reservation.
pub async fn scope_call(reservation: &Value) -> reqwest::Response {
    send(
        http()
            .post(format!(
                "{}/scope",
                reservation["app_url"].as_str().unwrap()
            ))
            .json(&json!({"model_id": "scope", "params": {}})),
    )
    .await
}

/// A client of a new job on the persistent runner `route`, after its `runner_ready`.
pub async fn persistent_client(h: &DevnetHandle, route: &str) -> (Value, ScopeClient) {
    let (a, r) = persistent_job(h, route).await;
    assert_eq!(r.status().as_u16(), 200);
    let mut c = ScopeClient::new(r.json().await.unwrap());
    assert_eq!(
        c.next_event().await,
        json!({"type": "runner_ready", "runner_job_id": null})
    );
    (a, c)
}

/// Publishes `frames` solid-colour 64x64 RGB frames (~30 fps) to `url`.
pub async fn publish_rgb(url: &str, rgb: [u8; 3], frames: u32) {
    use lpgw_media::{EncoderConfig, InputFrame, InputImage, Publisher, PublisherConfig};
    let (media, events) = Publisher::spawn(PublisherConfig {
        encoder: EncoderConfig {
            preset: "ultrafast".into(),
            keyframe_interval: Duration::from_millis(500),
            threads: 1,
            ..EncoderConfig::default()
        },
        min_segment: Duration::from_millis(100),
        ..PublisherConfig::default()
    })
    .unwrap();
    let mut trickle = lpgw_trickle::client::Publisher::new(
        url,
        "video/MP2T",
        lpgw_trickle::client::PublisherConfig::default(),
    )
    .unwrap();
    let cancel = lpgw_bridge::CancellationToken::new();
    let pump = tokio::spawn(async move {
        lpgw_bridge::publish_segments(
            events,
            &mut trickle,
            lpgw_bridge::PublishOptions {
                close_at_end: false,
                ..lpgw_bridge::PublishOptions::default()
            },
            lpgw_bridge::StatsHandle::new(),
            cancel,
        )
        .await
    });
    let data: Vec<u8> = (0..64 * 64).flat_map(|_| rgb).collect();
    for i in 0..frames {
        media
            .push(InputFrame {
                image: InputImage::Rgb24 {
                    width: 64,
                    height: 64,
                    data: data.clone().into(),
                },
                pts: Some(i64::from(i) * 3000),
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    media.close();
    bounded(pump).await.unwrap().unwrap();
}

/// Subscribes to `url` from its first segment and decodes the first picture.
pub async fn first_frame(url: &str) -> lpgw_media::Yuv420Frame {
    use lpgw_media::{LagPolicy, Output, OutputConfig, OutputFormat};
    let mut sub = Subscriber::new(
        url,
        SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
    )
    .unwrap();
    let (input, _output, mut frames) = Output::spawn(OutputConfig {
        lag: LagPolicy::SkipToNewest,
        max_pending_segments: 4,
        max_buffered_bytes: 16 << 20,
        frame_capacity: 8,
        format: OutputFormat::Yuv420,
    })
    .unwrap();
    let cancel = lpgw_bridge::CancellationToken::new();
    let c = cancel.clone();
    let feed = tokio::spawn(async move {
        let _ = lpgw_bridge::feed_output(
            &mut sub,
            &input,
            lpgw_bridge::FeedOptions::default(),
            lpgw_bridge::StatsHandle::new(),
            c,
        )
        .await;
    });
    let frame = loop {
        let f = bounded(frames.recv())
            .await
            .expect("a decoded frame")
            .expect("decodes");
        if let Some(y) = f.yuv {
            break y;
        }
    };
    cancel.cancel();
    feed.abort();
    frame
}

/// Whether any output segment arrives on `url` within `wait`.
pub async fn any_segment_within(url: &str, wait: Duration) -> bool {
    let mut sub = Subscriber::new(
        url,
        SubscriberConfig {
            start: SeqRequest::At(0),
            ..SubscriberConfig::default()
        },
    )
    .unwrap();
    matches!(
        tokio::time::timeout(wait, sub.next_segment()).await,
        Ok(Ok(Some(_)))
    )
}

/// Mean of a plane.
pub fn mean(plane: &[u8]) -> f64 {
    plane.iter().map(|&v| f64::from(v)).sum::<f64>() / plane.len().max(1) as f64
}
