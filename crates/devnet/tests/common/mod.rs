//! Helpers shared by the devnet integration tests: clients that speak to a devnet the way a
//! gateway does, written independently of the devnet's own code.

#![allow(dead_code, unreachable_pub)]

pub mod scope;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle, LiveConfig, PriceConfig};
use lpgw_proto::net::orchestrator_client::OrchestratorClient;
use lpgw_proto::{OrchestratorInfo, OrchestratorRequest};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint};

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);

/// Runs `f` with a timeout so a bug fails instead of hanging.
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

/// Polls `cond` every 20 ms until it holds, bounded by [`STEP`].
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    bounded(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Starts a devnet; plain HTTP unless `tls`.
pub async fn devnet(cfg: DevnetConfig) -> DevnetHandle {
    bounded(Devnet::start(cfg)).await.expect("devnet starts")
}

/// Plain HTTP devnet config with a fast LV2V status interval.
pub fn plain() -> DevnetConfig {
    DevnetConfig {
        tls: false,
        status_interval: Duration::from_millis(200),
        ..DevnetConfig::default()
    }
}

/// [`plain`] priced at 1 wei per pixel, with the remote-signer emulator.
pub fn priced_with_signer() -> DevnetConfig {
    DevnetConfig {
        price: Some(PriceConfig {
            per_unit: 1,
            pixels_per_unit: 1,
        }),
        signer: true,
        ..plain()
    }
}

/// [`plain`] without the built-in Scope runner, so only registered runners are listed.
pub fn no_scope() -> DevnetConfig {
    DevnetConfig {
        live: LiveConfig {
            scope: None,
            ..LiveConfig::default()
        },
        ..plain()
    }
}

/// Accepts exactly one certificate (trust on first use, pinned).
#[derive(Debug)]
struct Pinned {
    der: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "certificate is not the pinned one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn authority(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string()
}

/// A tonic client over TLS (ALPN h2) that accepts only the devnet's self-signed certificate.
pub async fn grpc_tls(h: &DevnetHandle) -> OrchestratorClient<Channel> {
    let der = h.certificate_der().expect("tls devnet").to_vec();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { der, provider }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let addr = authority(h.orchestrator_url());
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let tls = tls.clone();
        let addr = addr.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            let name = ServerName::try_from("127.0.0.1").expect("ip server name");
            let stream = tls.connect(name, tcp).await?;
            let (_, session) = stream.get_ref();
            assert_eq!(
                session.alpn_protocol(),
                Some(&b"h2"[..]),
                "server negotiates h2"
            );
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    // The connector does TLS, so tonic sees a plain URI.
    let ep = Endpoint::from_shared(format!("http://{}", authority(h.orchestrator_url())))
        .unwrap()
        .timeout(STEP);
    let ch = bounded(ep.connect_with_connector(connector))
        .await
        .expect("tls grpc connect");
    OrchestratorClient::new(ch)
}

/// A tonic client over h2c (plain HTTP/2 by prior knowledge).
pub async fn grpc_h2c(h: &DevnetHandle) -> OrchestratorClient<Channel> {
    assert!(h.orchestrator_url().starts_with("http://"));
    let ep = Endpoint::from_shared(h.orchestrator_url().to_string())
        .unwrap()
        .timeout(STEP);
    let ch = bounded(ep.connect()).await.expect("h2c grpc connect");
    OrchestratorClient::new(ch)
}

/// GetOrchestrator over whichever transport the devnet serves.
pub async fn orch_info(
    h: &DevnetHandle,
    req: OrchestratorRequest,
) -> Result<OrchestratorInfo, tonic::Status> {
    let mut c = if h.certificate_der().is_some() {
        grpc_tls(h).await
    } else {
        grpc_h2c(h).await
    };
    bounded(c.get_orchestrator(req))
        .await
        .map(|r| r.into_inner())
}

/// An HTTP client that skips certificate checks (as go-livepeer gateways do for O HTTP).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(STEP)
        .build()
        .unwrap()
}

/// `POST /live-video-to-video` with the two payment headers.
pub async fn start_lv2v(
    h: &DevnetHandle,
    body: &str,
    payment: &str,
    segment: &str,
) -> (u16, String) {
    let r = bounded(
        http()
            .post(format!("{}/live-video-to-video", h.orchestrator_url()))
            .header("Content-Type", "application/json")
            .header("Livepeer-Payment", payment)
            .header("Livepeer-Segment", segment)
            .body(body.to_string())
            .send(),
    )
    .await
    .expect("lv2v request");
    let status = r.status().as_u16();
    (status, bounded(r.text()).await.unwrap())
}

/// Offchain segment credentials: only the orchestrator's auth token.
pub fn offchain_seg(info: &OrchestratorInfo) -> String {
    lpgw_proto::encode_seg_data(&lpgw_proto::SegData {
        auth_token: info.auth_token.clone(),
        ..Default::default()
    })
}

/// Capabilities asking for LV2V `model`.
pub fn lv2v_caps(model: &str) -> lpgw_proto::Capabilities {
    use lpgw_proto::net::capabilities::capability_constraints::ModelConstraint;
    use lpgw_proto::net::capabilities::{CapabilityConstraints, Constraints};
    lpgw_proto::Capabilities {
        bitstring: lpgw_proto::caps::bitstring([35]),
        constraints: Some(Constraints {
            min_version: String::new(),
            per_capability: [(
                35,
                CapabilityConstraints {
                    models: [(model.to_string(), ModelConstraint::default())].into(),
                },
            )]
            .into(),
        }),
        ..Default::default()
    }
}

/// Hex (with or without `0x`) to bytes.
pub fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim_start_matches("0x");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `POST /sign-orchestrator-info` to the devnet's signer, unchecked.
pub async fn sign_info_response(h: &DevnetHandle) -> reqwest::Response {
    send(http().post(format!(
        "{}/sign-orchestrator-info",
        h.signer_url().unwrap()
    )))
    .await
}

/// `POST /sign-orchestrator-info` → (address bytes, signature bytes).
pub async fn sign_info(h: &DevnetHandle) -> (Vec<u8>, Vec<u8>) {
    let r = sign_info_response(h).await;
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    (
        unhex(v["address"].as_str().unwrap()),
        unhex(v["signature"].as_str().unwrap()),
    )
}

/// GetOrchestrator as the signer's payer, asking for `model`.
pub async fn paid_info(h: &DevnetHandle, model: &str) -> OrchestratorInfo {
    let (address, sig) = sign_info(h).await;
    orch_info(
        h,
        OrchestratorRequest {
            address,
            sig,
            capabilities: Some(lv2v_caps(model)),
            ignore_capacity_check: false,
        },
    )
    .await
    .expect("paid orchestrator info")
}

/// A signer answer.
#[derive(Debug)]
pub struct SignerReply {
    pub status: u16,
    pub refresh_url: Option<String>,
    pub body: serde_json::Value,
}

/// `POST /generate-live-payment` with `body`.
pub async fn generate(h: &DevnetHandle, body: serde_json::Value) -> SignerReply {
    let r = bounded(
        http()
            .post(format!("{}/generate-live-payment", h.signer_url().unwrap()))
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    let status = r.status().as_u16();
    let refresh_url = r
        .headers()
        .get("Livepeer-Orchestrator-URL")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    assert!(
        text.ends_with('\n'),
        "signer answers end with a newline: {text:?}"
    );
    SignerReply {
        status,
        refresh_url,
        body: serde_json::from_str(&text).unwrap(),
    }
}

/// Base64 of a protobuf message, as the signer API carries it in JSON.
pub fn b64<M: prost::Message>(m: &M) -> String {
    lpgw_proto::headers::encode_b64(m)
}

/// `GET url`, bounded in time, decoded as JSON (panics on any failure: test helper).
pub async fn get_json(url: impl reqwest::IntoUrl) -> serde_json::Value {
    bounded(http().get(url).send())
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `POST url` with no body, bounded in time, decoded as JSON.
pub async fn post_json(url: impl reqwest::IntoUrl) -> serde_json::Value {
    bounded(http().post(url).send())
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sends `req`, bounded in time (panics on a transport failure: test helper).
pub async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    bounded(req.send()).await.unwrap()
}

/// Sends `req` and returns the status and the body text.
pub async fn status_text(req: reqwest::RequestBuilder) -> (u16, String) {
    let r = send(req).await;
    (r.status().as_u16(), bounded(r.text()).await.unwrap())
}

/// Sends `req` and decodes the answer as JSON, whatever its status.
pub async fn send_json(req: reqwest::RequestBuilder) -> serde_json::Value {
    bounded(send(req).await.json()).await.unwrap()
}

/// The devnet's `GET /discovery` answer.
pub async fn discovery_json(h: &DevnetHandle) -> serde_json::Value {
    get_json(format!("{}/discovery", h.orchestrator_url())).await
}

/// The first orchestrator's runner in a discovery answer whose `key` equals `value`.
pub fn runner_where(d: &serde_json::Value, key: &str, value: &str) -> serde_json::Value {
    d[0]["runners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap()
        .clone()
}

/// `POST /runners/heartbeat` with `body`, authorized by the orchestrator secret.
pub async fn heartbeat(h: &DevnetHandle, body: &serde_json::Value) -> (u16, String) {
    status_text(
        http()
            .post(format!("{}/runners/heartbeat", h.runner_url()))
            .header("Authorization", h.orch_secret().unwrap())
            .json(body),
    )
    .await
}

/// Adds the two payment headers from a signer answer (`payment`, `segCreds`) to `req`.
pub fn with_payment(
    req: reqwest::RequestBuilder,
    p: &serde_json::Value,
) -> reqwest::RequestBuilder {
    req.header("Livepeer-Payment", p["payment"].as_str().unwrap())
        .header("Livepeer-Segment", p["segCreds"].as_str().unwrap())
}

/// Decodes base64 `OrchestratorInfo`, as carried in a 402 challenge's `payment_params`.
pub fn decode_info(params: &str) -> OrchestratorInfo {
    use prost::Message as _;
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, params).unwrap();
    OrchestratorInfo::decode(raw.as_slice()).unwrap()
}

/// A JSON channel reader on `url` that starts at the first segment.
pub fn json_reader_from_start(url: &str) -> lpgw_trickle::json::JsonReader {
    use lpgw_trickle::client::SubscriberConfig;
    use lpgw_trickle::json::{JsonReader, JsonReaderConfig};
    JsonReader::new(
        url,
        JsonReaderConfig {
            subscriber: SubscriberConfig {
                start: lpgw_trickle::wire::SeqRequest::At(0),
                ..SubscriberConfig::default()
            },
            ..JsonReaderConfig::default()
        },
    )
    .unwrap()
}

/// Runs a Python interop script (90 s bound) and parses the JSON on its last stdout line.
pub async fn run_python_json(mut cmd: tokio::process::Command) -> serde_json::Value {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("python sdk finished in time")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "sdk printed no json ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
