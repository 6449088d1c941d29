//! The browser app in a real headless Chromium, driven through chromedriver's WebDriver
//! HTTP API: open `/`, start the page's default model (Scope, through devnet's live runner)
//! on the fake camera, see processed frames, send a prompt and see the processed picture
//! change, stop.
//! Screenshots are kept under `target/browser-artifacts/`.
//!
//! Skips with a message when `chromium` or `chromedriver` is missing, unless
//! `LPGW_REQUIRE_BROWSER=1`, in which case it fails.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{Harness, STEP};
use lpgw_server::ServerConfig;
use serde_json::{Value, json};

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

struct Driver {
    child: Child,
    base: String,
    session: Option<String>,
    http: reqwest::Client,
    profile: PathBuf,
}

impl Driver {
    async fn start(chromedriver: &PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = std::env::temp_dir().join(format!(
            "lpgw-chromium-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let d = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            http: reqwest::Client::new(),
            profile,
        };
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = match &self.session {
            Some(s) => format!("{}/session/{s}{path}", self.base),
            None => format!("{}{path}", self.base),
        };
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = tokio::time::timeout(Duration::from_secs(60), req.send())
            .await
            .expect("webdriver answers in time")
            .expect("webdriver reachable");
        let status = resp.status();
        let v: Value = resp.json().await.expect("webdriver JSON");
        assert!(status.is_success(), "webdriver {path}: {v}");
        v["value"].clone()
    }

    async fn open_session(&mut self, binary: &PathBuf) {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--use-fake-device-for-media-stream".into(),
            "--use-fake-ui-for-media-stream".into(),
            "--disable-background-networking".into(),
            "--no-first-run".into(),
            "--window-size=1280,1100".into(),
            format!("--user-data-dir={}", self.profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args}
        }}});
        let v = self
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        self.session = Some(v["sessionId"].as_str().expect("session id").to_string());
    }

    async fn js(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn wait_js(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.js(script).await;
            if v.as_bool() == Some(true) || (v.is_object() && v["ok"] == true) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = artifacts().join(name);
        std::fs::write(&path, png).expect("screenshot written");
        path
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_app_streams_prompts_and_stops() {
    let required = std::env::var("LPGW_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let (Some(chromium), Some(chromedriver)) = (
        find(&["chromium", "chromium-browser", "google-chrome"]),
        find(&["chromedriver"]),
    ) else {
        assert!(
            !required,
            "LPGW_REQUIRE_BROWSER=1 but chromium/chromedriver are missing"
        );
        eprintln!("skipping: chromium and chromedriver not found (scripts/setup.sh installs them)");
        return;
    };
    let h = Harness::start(ServerConfig::default()).await;
    let mut d = Driver::start(&chromedriver).await;
    d.open_session(&chromium).await;
    d.call(
        reqwest::Method::POST,
        "/url",
        Some(json!({"url": h.url("/?fps=24")})),
    )
    .await;
    let title = d.call(reqwest::Method::GET, "/title", None).await;
    assert!(
        title.as_str().unwrap_or_default().contains("lpgw"),
        "{title}"
    );

    d.js("document.getElementById('start').click(); return true;")
        .await;
    let stats = d
        .wait_js(
            "processed frames in the page",
            "const s = window.lpgwStats; return {ok: s.received >= 24 && s.latencies.length > 0, \
             received: s.received, sent: s.sent, state: s.state, job: s.jobId};",
        )
        .await;
    assert_eq!(stats["state"], "running", "{stats}");
    let job = stats["job"].as_str().expect("job id").to_string();
    let (_, detail) = h.get(&format!("/job/{job}"), None).await;
    assert_eq!(detail["model_id"], "scope", "{detail}");
    assert_eq!(detail["flow"], "live-runner", "{detail}");
    d.screenshot("browser-running.png").await;
    // Several samples of the processed picture: the camera image moves a little.
    let mut before = Vec::new();
    for _ in 0..5 {
        before.push(chroma(&h, &job).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    d.js(
        "document.getElementById('prompt').value = 'a watercolor fox'; \
          document.getElementById('send').click(); return true;",
    )
    .await;
    d.wait_js(
        "the prompt to be sent",
        "return (window.lpgwStats.promptsSent || 0) >= 1 && \
         document.getElementById('log').textContent.includes('prompt sent: a watercolor fox');",
    )
    .await;
    // The runner applies the prompt: the processed picture changes colour.
    let changed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let c = chroma(&h, &job).await;
            if before
                .iter()
                .all(|b| (c.0 - b.0).abs() + (c.1 - b.1).abs() > 4.0)
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        changed.is_ok(),
        "picture unchanged by the prompt: {before:?}"
    );
    let (_, detail) = h.get(&format!("/job/{job}"), None).await;
    assert_eq!(detail["phase"], "running", "{detail}");
    d.screenshot("browser-prompt.png").await;

    d.js("document.getElementById('stop').click(); return true;")
        .await;
    d.wait_js(
        "the page to stop",
        "return window.lpgwStats.state === 'idle' && window.lpgwStats.jobId === null;",
    )
    .await;
    let (status, _) = h.get(&format!("/job/{job}"), None).await;
    assert_eq!(status, 404, "the job is gone after Stop");
    d.screenshot("browser-stopped.png").await;
    d.call(reqwest::Method::DELETE, "", None).await;
    d.session = None;
    drop(d);
    let devnet = h.devnet();
    common::eventually("the session to end", || devnet.scope_sessions().is_empty()).await;
    h.finish().await;
}

/// Mean chroma (U, V) of the service's newest output frame of `job`.
async fn chroma(h: &Harness, job: &str) -> (f64, f64) {
    let url = h.url(&format!("/stream/{job}/frame"));
    let jpeg = tokio::time::timeout(STEP, async {
        loop {
            let r = h.http.get(&url).send().await.expect("frame endpoint");
            if r.status() == 200 {
                return r.bytes().await.expect("frame body");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("an output frame in time");
    let f = lpgw_media::decode_jpeg(&jpeg).expect("output frame decodes");
    let mean = |p: &[u8]| p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64;
    (mean(&f.u), mean(&f.v))
}
