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
        Some(json!({"url": h.url("/?fps=24&api_key=leaked")})),
    )
    .await;
    let title = d.call(reqwest::Method::GET, "/title", None).await;
    assert!(
        title.as_str().unwrap_or_default().contains("lpgw"),
        "{title}"
    );
    // A key in the page URL is neither used nor left in the address bar.
    let page = d
        .wait_js(
            "the page to load",
            "return {ok: !!window.lpgwStats, href: location.href, \
             key: document.getElementById('apikey').value};",
        )
        .await;
    assert_eq!(page["key"], "", "{page}");
    assert!(
        !page["href"]
            .as_str()
            .unwrap_or_default()
            .contains("api_key"),
        "{page}"
    );
    d.js("performance.setResourceTimingBufferSize(100000); return true;")
        .await;

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
    let timers = d.js("return window.lpgwStats.timers;").await;
    assert_eq!(timers, 0, "Stop clears every timer");

    second_start_keeps_one_poll_timer(&d, &job).await;
    d.call(reqwest::Method::DELETE, "", None).await;
    d.session = None;
    drop(d);
    let devnet = h.devnet();
    common::eventually("the session to end", || devnet.scope_sessions().is_empty()).await;
    h.finish().await;
}

/// Starts again after a Stop and counts the page's status polls, as the browser's own
/// resource timing records them: one 2 s poll timer makes about three in 6.5 s, a timer left
/// over from the first run would double that. Then stops.
async fn second_start_keeps_one_poll_timer(d: &Driver, first: &str) {
    d.js("document.getElementById('start').click(); return true;")
        .await;
    let stats = d
        .wait_js(
            "processed frames after the second Start",
            &format!(
                "const s = window.lpgwStats; return {{ok: s.state === 'running' && \
                 !!s.jobId && s.jobId !== '{first}', state: s.state, job: s.jobId, \
                 timers: s.timers}};"
            ),
        )
        .await;
    assert_eq!(stats["timers"], 3, "frames, figures and one poll: {stats}");
    let polls = "return performance.getEntriesByType('resource').filter((e) => \
                 e.name.includes('/stream/') && e.name.endsWith('/status')).length;";
    let before = d.js(polls).await.as_u64().expect("a count");
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let after = d.js(polls).await.as_u64().expect("a count");
    let made = after - before;
    assert!(
        (2..=4).contains(&made),
        "{made} status polls in 6.5 s: expected one 2 s poll timer"
    );
    d.js("document.getElementById('stop').click(); return true;")
        .await;
    d.wait_js(
        "the page to stop again",
        "return window.lpgwStats.state === 'idle' && window.lpgwStats.jobId === null \
         && window.lpgwStats.timers === 0;",
    )
    .await;
}

/// The app's files: each module with a JavaScript type and revalidation headers, a 304 for a
/// matching `ETag`, and 404 for a file that is not part of the app.
#[tokio::test]
async fn app_modules_are_served_as_javascript() {
    let h = Harness::start(ServerConfig::default()).await;
    let index = h
        .http
        .get(h.url("/"))
        .send()
        .await
        .expect("index")
        .text()
        .await
        .expect("index body");
    assert!(
        index.contains(r#"<script type="module" src="/app.js">"#),
        "{index}"
    );
    for path in ["/app.js", "/ui.js", "/api.js", "/media.js", "/stats.js"] {
        let r = h.http.get(h.url(path)).send().await.expect("module");
        assert_eq!(r.status(), 200, "{path}");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            header("content-type").starts_with("text/javascript"),
            "{path}: {}",
            header("content-type")
        );
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let tag = header("etag");
        assert!(tag.starts_with('"'), "{path}: etag {tag}");
        let body = r.text().await.expect("module body");
        assert!(body.contains("export") || body.contains("import"), "{path}");
        assert!(!body.contains("params.get('api_key')"), "{path}");
        let again = h
            .http
            .get(h.url(path))
            .header("if-none-match", &tag)
            .send()
            .await
            .expect("revalidation");
        assert_eq!(again.status(), 304, "{path}");
    }
    let css = h.http.get(h.url("/style.css")).send().await.expect("css");
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    for path in ["/nope.js", "/web.rs", "/app.js/x", "/../web/app.js"] {
        let r = h.http.get(h.url(path)).send().await.expect("unknown");
        assert_eq!(r.status(), 404, "{path}");
    }
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
