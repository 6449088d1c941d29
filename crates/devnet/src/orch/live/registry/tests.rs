//! Unit tests of the registry state machine.
use super::*;

fn advert(capacity: u32) -> Advert {
    Advert {
        label: String::new(),
        proxy: false,
        runner_url: "http://r".into(),
        version: String::new(),
        metadata: String::new(),
        status: String::new(),
        mode: Mode::Persistent,
        gpu: None,
        app: "a".into(),
        capacity,
        price: None,
    }
}

fn o2r(id: &str, _seed: &[u8; 32]) -> ChannelDesc {
    ChannelDesc {
        name: "o2r".into(),
        channel_name: format!("{id}-o2r"),
        url: String::new(),
        internal_url: None,
        mime_type: "application/json".into(),
    }
}

fn reg() -> Registry {
    Registry::new(Some("boot".into()), Duration::from_secs(20))
}

#[test]
fn bootstrap_then_heartbeat_secret() {
    let mut r = reg();
    let t = Instant::now();
    let e = r
        .heartbeat("x".into(), advert(1), "nope", t, [1; 32], o2r)
        .unwrap_err();
    assert_eq!(
        (e.status, e.msg.as_str()),
        (401, "invalid registration authorization")
    );
    let b = r
        .heartbeat("x".into(), advert(1), "boot", t, [1; 32], o2r)
        .unwrap();
    let (secret, ch) = b.first.unwrap();
    assert_eq!(secret.len(), 52);
    assert_eq!(ch.channel_name, "x-o2r");
    // The bootstrap secret no longer works while the runner lives.
    let e = r
        .heartbeat("x".into(), advert(2), "boot", t, [2; 32], o2r)
        .unwrap_err();
    assert_eq!(
        (e.status, e.msg.as_str()),
        (401, "invalid heartbeat authorization")
    );
    let b = r
        .heartbeat("x".into(), advert(2), &secret, t, [2; 32], o2r)
        .unwrap();
    assert!(b.first.is_none());
    assert_eq!(r.get("x", t).unwrap().advert.capacity, 2);
    // Expired: invisible, heartbeats refused until swept.
    let late = t + Duration::from_secs(21);
    assert_eq!(r.get("x", late).unwrap_err(), not_found());
    assert_eq!(
        r.heartbeat("x".into(), advert(2), &secret, late, [2; 32], o2r)
            .unwrap_err(),
        not_found()
    );
    let gone = r.sweep(late);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].o2r.as_deref(), Some("x-o2r"));
    assert!(
        r.heartbeat("x".into(), advert(2), "boot", late, [3; 32], o2r)
            .is_ok()
    );
}

#[test]
fn registration_disabled_without_bootstrap() {
    let mut r = Registry::new(None, Duration::from_secs(20));
    let e = r
        .heartbeat("x".into(), advert(1), "", Instant::now(), [1; 32], o2r)
        .unwrap_err();
    assert_eq!(
        (e.status, e.msg.as_str()),
        (404, "dynamic live runner registration is disabled")
    );
}

#[test]
fn sessions_capacity_duplicates_order_release() {
    let mut r = reg();
    let t = Instant::now();
    let b = r
        .heartbeat("x".into(), advert(2), "boot", t, [1; 32], o2r)
        .unwrap();
    let a = r.reserve("x", Some("m1".into()), t).unwrap();
    assert_eq!(a, "m1");
    assert_eq!(
        r.reserve("x", Some("m1".into()), t).unwrap_err().status,
        409
    );
    let g = r.reserve("x", None, t).unwrap();
    assert!(g.starts_with("session_"));
    let e = r.reserve("x", None, t).unwrap_err();
    assert_eq!(
        (e.status, e.msg.as_str()),
        (503, "no capacity available for runner")
    );
    assert_eq!(
        r.get("x", t).unwrap().session_ids(),
        vec!["m1".to_string(), g.clone()]
    );
    let rel = r.release("x", "m1").unwrap();
    assert_eq!(rel.o2r.as_deref(), Some("x-o2r"));
    assert!(r.release("x", "m1").is_none());
    assert!(r.reserve("x", None, t).is_ok());
    let (secret, _) = b.first.unwrap();
    let removed = r.unregister("x", &secret, t).unwrap();
    assert_eq!(removed.sessions.len(), 2);
    assert!(removed.sessions.iter().all(|s| s.o2r.is_none()));
    assert_eq!(r.reserve("x", None, t).unwrap_err(), not_found());
}

#[test]
fn channels_tokens_and_names() {
    let mut r = reg();
    let t = Instant::now();
    r.heartbeat("x".into(), advert(1), "boot", t, [1; 32], o2r)
        .unwrap();
    let sid = r.reserve("x", None, t).unwrap();
    let token = r.get("x", t).unwrap().session_token(&sid);
    assert!(r.authorize("x", &sid, &token, t).is_ok());
    assert_eq!(r.authorize("x", &sid, "bad", t).unwrap_err().status, 401);
    let make = |n: &str, m: &str| ChannelDesc {
        name: n.into(),
        channel_name: format!("{sid}-{n}"),
        url: String::new(),
        internal_url: None,
        mime_type: m.into(),
    };
    let want = vec![("foo/bar".to_string(), String::new())];
    let (out, created) = r.create_channels("x", &sid, &want, t, make).unwrap();
    assert_eq!(out[0].name, "foo-bar");
    assert_eq!(out[0].mime_type, "application/octet-stream");
    assert_eq!(created.len(), 1);
    let again = vec![("foo-bar".to_string(), "video/MP2T".to_string())];
    let (out, created) = r.create_channels("x", &sid, &again, t, make).unwrap();
    assert_eq!(
        out[0].mime_type, "application/octet-stream",
        "original kept"
    );
    assert!(created.is_empty());
    assert_eq!(
        r.create_channels("x", &sid, &[("a b".into(), String::new())], t, make)
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(
        r.create_channels("x", &sid, &[], t, make)
            .unwrap_err()
            .status,
        400
    );
    let many: Vec<(String, String)> = (0..26).map(|i| (format!("c{i}"), String::new())).collect();
    assert_eq!(
        r.create_channels("x", &sid, &many, t, make)
            .unwrap_err()
            .status,
        400
    );
    let e = r
        .delete_channels("x", &sid, &["nope".into()], t)
        .unwrap_err();
    assert_eq!(
        (e.status, e.msg.as_str()),
        (404, "trickle channel not found")
    );
    let (deleted, trickle) = r
        .delete_channels("x", &sid, &["foo-bar".into()], t)
        .unwrap();
    assert_eq!(deleted, vec!["foo-bar".to_string()]);
    assert_eq!(trickle, vec![format!("{sid}-foo-bar")]);
}
