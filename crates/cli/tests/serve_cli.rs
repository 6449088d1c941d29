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

/// Reads `lpgw demo`'s stdout until it prints the URL to open; returns `host:port`.
async fn demo_addr(child: &mut tokio::process::Child) -> String {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(STEP, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(rest) = l.strip_prefix("open http://") {
                return rest.split('/').next().unwrap().to_string();
            }
        }
        panic!("demo never printed its URL");
    })
    .await
    .expect("the URL in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_the_url_serves_the_app_and_exits_cleanly() {
    let mut child = lpgw(&["demo", "--listen", "127.0.0.1:0"]);
    let addr = demo_addr(&mut child).await;

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

/// Runs `lpgw` with info logs in `format` (`None`: the default) and stderr captured.
fn lpgw_logging(args: &[&str], format: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lpgw"));
    cmd.args(args)
        .env("LPGW_LOG", "info")
        .env_remove("LPGW_LOG_FORMAT")
        .env_remove("LIVEPEER_TOKEN")
        .env_remove("API_KEYS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(f) = format {
        cmd.env("LPGW_LOG_FORMAT", f);
    }
    cmd.spawn().expect("lpgw runs")
}

/// Reads all of the child's stderr in the background (so it never blocks on a full pipe).
fn capture_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let mut err = child.stderr.take().expect("stderr piped");
    tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_job_id() {
    let mut child = lpgw_logging(&["demo", "--listen", "127.0.0.1:0"], Some("json"));
    let stderr = capture_stderr(&mut child);
    let addr = demo_addr(&mut child).await;
    let (status, body) = http(&addr, "POST", "/start-job", r#"{"model_id":"noop"}"#).await;
    assert!(status.contains("200"), "{status} {body}");
    let job: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    let job_id = job["job_id"].as_str().expect("a job id").to_string();
    sigterm_exits_zero(child).await;
    let text = tokio::time::timeout(STEP, stderr)
        .await
        .expect("stderr closes")
        .unwrap();

    let mut objects = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}"));
        assert!(v.is_object(), "{line}");
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        objects.push(v);
    }
    assert!(
        objects
            .iter()
            .any(|v| v["message"] == "gateway service listening"),
        "{text}"
    );
    // Lines logged inside a job carry its id through the span list.
    let started = objects
        .iter()
        .find(|v| v["message"] == "job started")
        .unwrap_or_else(|| panic!("no job start logged: {text}"));
    let spans = started["spans"].as_array().expect("a span list");
    assert!(
        spans.iter().any(|s| s["job_id"] == job_id.as_str()),
        "{started}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_have_no_colour_codes_off_a_terminal() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let args = ["serve", "--listen", &addr, "--orch", "http://127.0.0.1:1"];
    let mut child = lpgw_logging(&args, None);
    let stderr = capture_stderr(&mut child);
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm_exits_zero(child).await;
    let text = tokio::time::timeout(STEP, stderr)
        .await
        .expect("stderr closes")
        .unwrap();
    assert!(text.contains("gateway service listening"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in piped logs: {text:?}"
    );
}
