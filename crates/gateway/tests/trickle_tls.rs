//! Trickle over TLS on a devnet orchestrator's port (self-signed certificate): a client with
//! an injected, pinned rustls configuration reads the job's channels; pinned to another
//! certificate, or verifying against public roots, it is refused. A gateway in trust-on-first-
//! use mode runs a whole job over pinned channels.

use std::sync::Arc;
use std::time::Duration;

use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle};
use lpgw_gateway::{Gateway, Settings, StartRequest, TlsMode};
use lpgw_trickle::client::{HttpClient, Subscriber, SubscriberConfig, TlsPolicy};
use lpgw_trickle::follow::FollowConfig;
use lpgw_trickle::json::{JsonReader, JsonReaderConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::json;

const STEP: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

/// Accepts exactly one certificate.
#[derive(Debug)]
struct Pin {
    der: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn pinned_to(der: &[u8]) -> HttpClient {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pin {
            der: der.to_vec(),
            provider,
        }))
        .with_no_client_auth();
    HttpClient::new(TlsPolicy::Custom(Arc::new(config))).unwrap()
}

async fn tls_devnet() -> DevnetHandle {
    bounded(
        "devnet",
        Devnet::start(DevnetConfig {
            status_interval: Duration::from_millis(100),
            ..DevnetConfig::default()
        }),
    )
    .await
    .expect("devnet starts")
}

fn config(http: HttpClient) -> SubscriberConfig {
    SubscriberConfig {
        http: Some(http),
        // Fail fast on refused handshakes.
        follow: FollowConfig {
            max_retries: 1,
            retry_delay: Duration::from_millis(10),
            max_retry_delay: Duration::from_millis(10),
            ..FollowConfig::default()
        },
        ..SubscriberConfig::default()
    }
}

#[tokio::test]
async fn pinned_client_reads_channels_and_other_certificates_are_refused() {
    let h = tls_devnet().await;
    let other = tls_devnet().await;
    assert_ne!(h.certificate_der(), other.certificate_der());
    let gw = Gateway::new(Settings {
        orchestrators: vec![h.orchestrator_url().to_owned()],
        tls: TlsMode::TrustOnFirstUse,
        keepalive_interval: Duration::from_millis(200),
        ..Settings::default()
    })
    .unwrap();
    let job = bounded("start", gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .unwrap();
    let events_url = job.urls().events_url.clone().unwrap();
    assert!(events_url.starts_with("https://"));

    // Pinned to the orchestrator's certificate: the runner's events come through.
    let pinned = pinned_to(&h.certificate_der().unwrap());
    let mut events = JsonReader::new(
        &events_url,
        JsonReaderConfig {
            subscriber: config(pinned.clone()),
            ..JsonReaderConfig::default()
        },
    )
    .unwrap();
    let ev = bounded("event", events.next()).await.unwrap().unwrap();
    assert_eq!(ev["type"], "status");

    // The same shared client reads another channel of the job: the control messages the
    // gateway writes over its own pinned client.
    let mut control = JsonReader::new(
        &job.urls().control_url,
        JsonReaderConfig {
            subscriber: config(pinned),
            ..JsonReaderConfig::default()
        },
    )
    .unwrap();
    let msg = json!({"prompt": "pinned"});
    let got = bounded("control", async {
        loop {
            job.send_control(&msg).await.unwrap();
            if let Ok(Ok(Some(v))) =
                tokio::time::timeout(Duration::from_millis(300), control.next()).await
                && v == msg
            {
                break v;
            }
        }
    })
    .await;
    assert_eq!(got, msg);

    // Pinned to another orchestrator's certificate: refused.
    let mut wrong = Subscriber::new(
        &events_url,
        config(pinned_to(&other.certificate_der().unwrap())),
    )
    .unwrap();
    let r = bounded("wrong pin", wrong.next_segment()).await;
    assert!(r.is_err(), "a wrong pin must fail: {r:?}");

    // Public roots do not know a self-signed certificate.
    let mut roots = Subscriber::new(
        &events_url,
        config(HttpClient::new(TlsPolicy::Verify).unwrap()),
    )
    .unwrap();
    assert!(bounded("roots", roots.next_segment()).await.is_err());

    // Accepting anything works (go-livepeer's own gateway does this).
    let mut any = Subscriber::new(
        &events_url,
        config(HttpClient::new(TlsPolicy::Insecure).unwrap()),
    )
    .unwrap();
    assert!(
        bounded("insecure", any.next_segment())
            .await
            .unwrap()
            .is_some()
    );

    bounded("close", job.close()).await;
    h.shutdown().await;
    other.shutdown().await;
}
