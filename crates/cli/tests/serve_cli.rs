//! `lpgw demo` and `lpgw serve` as a user runs them: they print where to go, serve the
//! browser app and the API, and exit 0 on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

const STEP: Duration = Duration::from_secs(20);

fn lpgw(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lpgw"))
        .args(args)
        .env("LPGW_LOG", "warn")
        .env_remove("LIVEPEER_TOKEN")
        .env_remove("API_KEYS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("lpgw runs")
}

/// A bare HTTP/1.1 request; returns the status line and body.
async fn http(addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.lines().next().unwrap_or_default().to_string();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

async fn sigterm_exits_zero(mut child: Child) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -TERM {pid} failed");
    let status = tokio::time::timeout(STEP, child.wait())
        .await
        .expect("exits in time after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_the_url_serves_the_app_and_exits_cleanly() {
    let mut child = lpgw(&["demo", "--listen", "127.0.0.1:0"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(STEP, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(rest) = l.strip_prefix("open http://") {
                return rest.split('/').next().unwrap().to_string();
            }
        }
        panic!("demo never printed its URL");
    })
    .await
    .expect("the URL in time");

    let (status, page) = http(&addr, "GET", "/", "").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        page.contains("<canvas id=\"output\""),
        "the browser app is served"
    );
    let (status, body) = http(&addr, "POST", "/start-job", r#"{"model_id":"noop"}"#).await;
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("\"flow\":\"lv2v\""), "{body}");
    // A live job must not hold shutdown up.
    sigterm_exits_zero(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_requests_without_a_configured_key() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = lpgw(&[
        "serve",
        "--listen",
        &addr,
        "--orch",
        "http://127.0.0.1:1",
        "--api-keys",
        "secret",
    ]);
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = http(&addr, "GET", "/health", "").await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (status, _) = http(&addr, "GET", "/jobs", "").await;
    assert!(status.contains("401"), "{status}");
    sigterm_exits_zero(child).await;
}
