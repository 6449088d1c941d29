//! One input source per job: while a WebSocket feeds a stream, HTTP publish gets 409; while
//! HTTP publish feeds it, a WebSocket that sends a frame is closed with 4409; a closed
//! source frees the input.

mod common;

use std::time::Duration;

use common::{Harness, STEP, jpeg};
use futures::{SinkExt as _, StreamExt as _};
use lpgw_server::ServerConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn publish(h: &Harness, id: &str) -> (u16, Value) {
    h.publish_jpeg(id, "", jpeg(64, 90)).await
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket on the stream, split into its sending and receiving halves.
async fn connect(
    h: &Harness,
    id: &str,
) -> (
    futures::stream::SplitSink<Ws, Message>,
    futures::stream::SplitStream<Ws>,
) {
    let (ws, _) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async(h.ws_url(&format!("job_id={id}"))),
    )
    .await
    .unwrap()
    .expect("websocket connects");
    ws.split()
}

async fn st_source(h: &Harness, id: &str) -> Value {
    let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
    st["input_source"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_input_source_is_refused_while_the_first_is_active() {
    let h = Harness::start(ServerConfig::default()).await;
    let (status, s) = h.post_json("/stream/start", None, json!({})).await;
    assert_eq!(status, 200, "{s}");
    let id = s["stream_id"].as_str().unwrap().to_string();

    // A WebSocket takes the input with its first frame.
    let (mut tx, rx) = connect(&h, &id).await;
    tx.send(Message::Binary(jpeg(64, 40))).await.unwrap();
    // HTTP publish is refused while it holds the input (once its frame has arrived).
    let t0 = std::time::Instant::now();
    loop {
        let (_, st) = h.get(&format!("/stream/{id}/status"), None).await;
        if st["frames_in"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            t0.elapsed() < STEP,
            "the WebSocket frame never arrived: {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, body) = publish(&h, &id).await;
    assert_eq!(
        code, 409,
        "HTTP publish accepted while a WebSocket fed the stream: {body}"
    );
    assert!(
        body["error"].as_str().unwrap_or("").contains("WebSocket"),
        "{body}"
    );

    // Closing the WebSocket frees the input: HTTP publish is accepted again.
    let _ = tx.send(Message::Close(None)).await;
    drop((tx, rx));
    let t0 = std::time::Instant::now();
    loop {
        let (code, body) = publish(&h, &id).await;
        if code == 200 {
            break;
        }
        assert_eq!(code, 409, "{body}");
        assert!(t0.elapsed() < STEP, "the input was never freed: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Now HTTP holds it: a WebSocket that sends a frame is closed with 4409.
    let (mut tx, mut rx) = connect(&h, &id).await;
    let (code, body) = publish(&h, &id).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(st_source(&h, &id).await, "http");
    tx.send(Message::Binary(jpeg(64, 40))).await.unwrap();
    let close = tokio::time::timeout(STEP, async {
        while let Some(m) = rx.next().await {
            if let Ok(Message::Close(c)) = m {
                return c;
            }
        }
        None
    })
    .await
    .expect("the busy WebSocket was not closed")
    .expect("closed without a close frame");
    assert_eq!(close.code, CloseCode::from(4409), "{close:?}");
    assert!(close.reason.contains("HTTP publish"), "{close:?}");
    h.finish().await;
}
