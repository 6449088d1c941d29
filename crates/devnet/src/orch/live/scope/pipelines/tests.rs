use super::*;

fn entry(key: &str, pid: &str) -> LoadEntry {
    LoadEntry {
        node_id: key.into(),
        pipeline_id: pid.into(),
        load_params: Value::Null,
    }
}

const FAST: LoadKnobs = LoadKnobs {
    delay: Duration::from_millis(300),
    fail: false,
};

#[test]
fn fresh_status_is_not_loaded() {
    let mut p = Pipelines::default();
    assert_eq!(
        p.status(),
        json!({"status":"not_loaded","pipeline_id":null,"load_params":null,
            "loaded_lora_adapters":null,"error":null,"loading_stage":null,
            "produces_video":true,"produces_audio":false})
    );
}

#[test]
fn load_then_loaded_after_the_delay() {
    let t0 = Instant::now();
    let mut p = Pipelines::default();
    p.load(&[entry("gray", "gray")], t0, FAST);
    let s = p.status();
    assert_eq!(
        (&s["status"], &s["pipeline_id"], &s["loading_stage"]),
        (&json!("loading"), &Value::Null, &json!(LOADING_STAGE))
    );
    assert_eq!(s["load_params"], json!({}));
    assert_eq!(p.loaded("gray"), None, "still loading");
    assert_eq!(p.next_deadline(), Some(t0 + FAST.delay));
    let logs = p.tick(t0 + FAST.delay);
    assert!(logs[0].message.contains("loaded successfully"));
    let s = p.status();
    assert_eq!(
        (&s["status"], &s["pipeline_id"]),
        (&json!("loaded"), &json!("gray"))
    );
    assert_eq!(p.loaded("gray"), Some("gray"));
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn unknown_id_errors_once_then_not_loaded() {
    let t0 = Instant::now();
    let mut p = Pipelines::default();
    p.load(&[entry("nope", "nope")], t0, FAST);
    let logs = p.tick(t0 + FAST.delay);
    assert!(logs[0].message.starts_with(
        "Failed to load pipeline nope: Invalid pipeline ID: nope. If this error persists"
    ));
    assert_eq!(logs[1].message, "Failed to load pipeline: nope");
    assert_eq!(logs[2].message, "Some pipelines failed to load");
    let s = p.status();
    assert_eq!((&s["status"], &s["error"]), (&json!("error"), &Value::Null));
    assert_eq!(p.status()["status"], "not_loaded");
}

#[test]
fn forced_failure_of_a_valid_id() {
    let t0 = Instant::now();
    let mut p = Pipelines::default();
    let knobs = LoadKnobs { fail: true, ..FAST };
    p.load(&[entry("gray", "gray")], t0, knobs);
    let logs = p.tick(t0 + FAST.delay);
    assert!(
        logs[0]
            .message
            .starts_with("Failed to load pipeline gray: ")
    );
    assert_eq!(p.status()["status"], "error");
    assert_eq!(p.status()["status"], "not_loaded");
}

#[test]
fn desired_set_reuses_rekeys_and_unloads() {
    let t0 = Instant::now();
    let mut p = Pipelines::default();
    p.load(
        &[entry("gray", "gray"), entry("pt", "passthrough")],
        t0,
        FAST,
    );
    p.tick(t0 + FAST.delay);
    // Same gray reused at once; passthrough moves to a new key; nothing reloads.
    let t1 = t0 + Duration::from_secs(1);
    let logs = p.load(
        &[entry("gray", "gray"), entry("copy", "passthrough")],
        t1,
        FAST,
    );
    let text: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        text,
        [
            "Pipeline gray already loaded with matching parameters",
            "Re-keying pipeline passthrough from 'pt' to 'copy'"
        ]
    );
    assert_eq!(p.status()["status"], "loaded");
    assert_eq!(p.loaded("copy"), Some("passthrough"));
    // Other params reload; keys left out are unloaded.
    let mut e = entry("gray", "gray");
    e.load_params = json!({"height": 256});
    let logs = p.load(&[e], t1, FAST);
    let text: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        text,
        [
            "Loading pipeline gray (gray)",
            "Unloading pipeline: gray",
            "Unloading pipeline: copy"
        ]
    );
    let s = p.status();
    assert_eq!(
        (&s["status"], &s["load_params"]),
        (&json!("loading"), &json!({"height":256}))
    );
}

#[test]
fn schemas_list_the_catalogue_with_modes() {
    let s = schemas();
    let p = &s["pipelines"];
    assert_eq!(p.as_object().map(|o| o.len()), Some(CATALOGUE.len()));
    assert_eq!(p["gray"]["supported_modes"], json!(["video"]));
    assert_eq!(p["gray"]["default_mode"], "video");
    assert_eq!(p["gray"]["usage"], json!(["preprocessor"]));
    assert_eq!(p["gray"]["config_schema"]["title"], "GrayConfig");
    assert!(p["gray"].get("mode_defaults").is_none());
    assert_eq!(p["streamdiffusionv2"]["default_mode"], "video");
    for id in [
        "longlive",
        "krea-realtime-video",
        "reward-forcing",
        "memflow",
    ] {
        assert_eq!(p[id]["default_mode"], "text", "{id}");
        assert_eq!(p[id]["supported_modes"], json!(["text", "video"]));
        assert_eq!(p[id]["plugin_name"], Value::Null);
    }
    assert_eq!(
        p["krea-realtime-video"]["mode_defaults"]["video"]["height"],
        256
    );
    assert_eq!(p["passthrough"]["modified"], false);
}
