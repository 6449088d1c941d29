//! What a Scope start asks the runner for, as plain data: which pipelines to load and with
//! which parameters, which input mode, and the `start_stream` parameters with the graph.
//!
//! The rules are the real runner's (`shared/spec/scope-protocol.md`, daydreamlive/scope):
//! a pipeline node's `id` must equal the key its pipeline was loaded under; without a
//! `source` node the runner creates no input channel and runs in text mode.

use serde_json::{Map, Value, json};

/// The most pipelines one start may name.
const MAX_PIPELINES: usize = 16;
/// The longest pipeline or node id accepted.
const MAX_ID: usize = 128;

/// Whether the stream takes video in or generates from text alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// Frames are published to an `in` channel and processed.
    Video,
    /// No input channel: output from the prompt alone.
    Text,
}

impl InputMode {
    /// The wire name (`params.input_mode`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Text => "text",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "video" => Some(Self::Video),
            "text" => Some(Self::Text),
            _ => None,
        }
    }
}

/// One pipeline to load: the graph node that runs it, the pipeline, its load parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    /// The key the runner loads it under; the graph's pipeline node has this `id`.
    pub node_id: String,
    /// The pipeline (`gray`, `streamdiffusionv2`, ...).
    pub pipeline_id: String,
    /// Load parameters, passed through.
    pub load_params: Option<Value>,
}

/// The start, planned from the caller's parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StartPlan {
    pub(crate) pipelines: Vec<PipelineSpec>,
    /// The caller's graph, if it gave one.
    pub(crate) graph: Option<Value>,
    /// The input mode the caller chose (explicitly, through its graph, or by asking for
    /// video ingress); `None` leaves it to the pipeline's default.
    pub(crate) mode: Option<InputMode>,
    /// Every other parameter, passed to `start_stream` as it is (prompts, noise, ...).
    params: Map<String, Value>,
}

/// Keys this module reads and rewrites; everything else rides along.
const PLAN_KEYS: [&str; 7] = [
    "pipelines",
    "pipeline_ids",
    "pipeline_id",
    "pipeline",
    "load_params",
    "graph",
    "input_mode",
];

fn id(v: &Value, what: &str) -> Result<String, String> {
    let s = v
        .as_str()
        .map(str::trim)
        .ok_or_else(|| format!("{what} must be a string"))?;
    if s.is_empty() || s.len() > MAX_ID || s.chars().any(char::is_control) {
        return Err(format!("{what} {s:?} is not a valid id"));
    }
    Ok(s.to_owned())
}

/// Whether a graph has a `source` node.
fn has_source(graph: &Value) -> bool {
    graph
        .get("nodes")
        .and_then(Value::as_array)
        .is_some_and(|n| n.iter().any(|n| n["type"] == "source"))
}

impl StartPlan {
    /// Reads `params`: pipelines from `pipelines: [{pipeline_id, node_id?, load_params?}]`,
    /// `pipeline_ids`, `pipeline_id`, `pipeline` or the graph's pipeline nodes, else
    /// `defaults`; `load_params` applies to every pipeline that has none of its own.
    pub(crate) fn from_params(params: Option<&Value>, defaults: &[String]) -> Result<Self, String> {
        let p = match params {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err("params must be an object".into()),
        };
        let shared_lp = p.get("load_params").filter(|v| !v.is_null()).cloned();
        if shared_lp.as_ref().is_some_and(|v| !v.is_object()) {
            return Err("load_params must be an object".into());
        }
        let graph = match p.get("graph") {
            None | Some(Value::Null) => None,
            Some(g @ Value::Object(_)) => Some(g.clone()),
            Some(_) => return Err("graph must be an object".into()),
        };
        let mut pipelines = Vec::new();
        let plain = |pid: String| PipelineSpec {
            node_id: pid.clone(),
            pipeline_id: pid,
            load_params: None,
        };
        if let Some(list) = p.get("pipelines").filter(|v| !v.is_null()) {
            let list = list.as_array().ok_or("pipelines must be a list")?;
            for e in list {
                let pid = id(&e["pipeline_id"], "pipelines[].pipeline_id")?;
                let node_id = match e.get("node_id").filter(|v| !v.is_null()) {
                    Some(n) => id(n, "pipelines[].node_id")?,
                    None => pid.clone(),
                };
                let load_params = e.get("load_params").filter(|v| !v.is_null()).cloned();
                pipelines.push(PipelineSpec {
                    node_id,
                    pipeline_id: pid,
                    load_params,
                });
            }
        } else if let Some(ids) = p.get("pipeline_ids").filter(|v| !v.is_null()) {
            let ids = ids.as_array().ok_or("pipeline_ids must be a list")?;
            for v in ids {
                pipelines.push(plain(id(v, "pipeline_ids[]")?));
            }
        } else if let Some(v) = ["pipeline_id", "pipeline"]
            .iter()
            .find_map(|k| p.get(*k).filter(|v| !v.is_null()))
        {
            pipelines.push(plain(id(v, "pipeline_id")?));
        } else if let Some(nodes) = graph
            .as_ref()
            .and_then(|g| g.get("nodes"))
            .and_then(Value::as_array)
        {
            for n in nodes.iter().filter(|n| n["type"] == "pipeline") {
                pipelines.push(PipelineSpec {
                    node_id: id(&n["id"], "graph node id")?,
                    pipeline_id: id(&n["pipeline_id"], "graph node pipeline_id")?,
                    load_params: None,
                });
            }
        }
        if pipelines.is_empty() {
            for d in defaults {
                pipelines.push(plain(id(&Value::String(d.clone()), "default pipeline")?));
            }
        }
        if pipelines.is_empty() {
            return Err("no pipeline named and no default pipeline configured".into());
        }
        if pipelines.len() > MAX_PIPELINES {
            return Err(format!("at most {MAX_PIPELINES} pipelines"));
        }
        for s in &mut pipelines {
            if s.load_params.is_none() {
                s.load_params.clone_from(&shared_lp);
            }
        }
        let mode = match p.get("input_mode").filter(|v| !v.is_null()) {
            Some(v) => Some(
                v.as_str()
                    .and_then(InputMode::parse)
                    .ok_or("input_mode must be \"video\" or \"text\"")?,
            ),
            None => match &graph {
                Some(g) if has_source(g) => Some(InputMode::Video),
                Some(_) => Some(InputMode::Text),
                None if p.get("enable_video_ingress") == Some(&Value::Bool(true)) => {
                    Some(InputMode::Video)
                }
                None => None,
            },
        };
        let mut params = p;
        for k in PLAN_KEYS {
            params.remove(k);
        }
        Ok(Self {
            pipelines,
            graph,
            mode,
            params,
        })
    }

    /// The pipeline ids, in order.
    pub(crate) fn pipeline_ids(&self) -> Vec<String> {
        self.pipelines
            .iter()
            .map(|p| p.pipeline_id.clone())
            .collect()
    }

    /// The `POST /api/v1/pipeline/load` body: the short form (`pipeline_ids` and one
    /// `load_params`) when every pipeline runs under its own id with the same parameters,
    /// else the per-pipeline form, whose entries need `node_id`.
    pub(crate) fn load_body(&self) -> Value {
        let first_lp = self.pipelines.first().and_then(|p| p.load_params.clone());
        let simple = self
            .pipelines
            .iter()
            .all(|p| p.node_id == p.pipeline_id && p.load_params == first_lp);
        if simple {
            json!({"pipeline_ids": self.pipeline_ids(), "load_params": first_lp})
        } else {
            let list: Vec<Value> = self
                .pipelines
                .iter()
                .map(|p| {
                    json!({"node_id": p.node_id, "pipeline_id": p.pipeline_id,
                        "load_params": p.load_params})
                })
                .collect();
            json!({ "pipelines": list })
        }
    }

    /// Whether a runner's status (`GET /api/v1/pipeline/status` data) shows these
    /// pipelines loaded already with these parameters, so no load is needed. The status
    /// names one pipeline, so only a single-pipeline plan can be matched.
    pub(crate) fn is_loaded(&self, status: &Value) -> bool {
        let [only] = self.pipelines.as_slice() else {
            return false;
        };
        let empty = json!({});
        status["status"] == "loaded"
            && status["pipeline_id"].as_str() == Some(only.node_id.as_str())
            && only.node_id == only.pipeline_id
            && status
                .get("load_params")
                .filter(|v| !v.is_null())
                .unwrap_or(&empty)
                == only.load_params.as_ref().unwrap_or(&empty)
    }

    /// The `start_stream` parameters: the caller's own, `pipeline_ids`, `input_mode` and
    /// the caller's graph or the linear one (with a `source` node in video mode).
    pub(crate) fn start_params(&self, mode: InputMode) -> Value {
        let mut p = self.params.clone();
        let nodes: Vec<String> = self.pipelines.iter().map(|s| s.node_id.clone()).collect();
        p.insert("pipeline_ids".into(), json!(self.pipeline_ids()));
        p.insert("input_mode".into(), json!(mode.as_str()));
        let graph = self
            .graph
            .clone()
            .unwrap_or_else(|| linear_graph(&nodes, mode == InputMode::Video));
        p.insert("graph".into(), graph);
        Value::Object(p)
    }
}

/// The graph Scope builds itself for a pipeline chain (`build_linear_graph`): `input`
/// (source, in video mode) → each node → `output` (sink), over `video` ports.
pub(crate) fn linear_graph(node_ids: &[String], with_source: bool) -> Value {
    let mut nodes = Vec::new();
    if with_source {
        nodes.push(json!({"id": "input", "type": "source"}));
    }
    for n in node_ids {
        nodes.push(json!({"id": n, "type": "pipeline", "pipeline_id": n}));
    }
    nodes.push(json!({"id": "output", "type": "sink"}));
    let mut chain: Vec<&str> = Vec::new();
    if with_source {
        chain.push("input");
    }
    chain.extend(node_ids.iter().map(String::as_str));
    chain.push("output");
    let edges: Vec<Value> = chain
        .windows(2)
        .map(|w| {
            json!({"from": w[0], "from_port": "video", "to_node": w[1], "to_port": "video",
                "kind": "stream"})
        })
        .collect();
    json!({ "nodes": nodes, "edges": edges })
}

/// The default input mode of `pipeline_id` in a `GET /api/v1/pipelines/schemas` answer.
pub(crate) fn default_mode(schemas: &Value, pipeline_id: &str) -> Option<InputMode> {
    schemas
        .get("pipelines")?
        .get(pipeline_id)?
        .get("default_mode")?
        .as_str()
        .and_then(InputMode::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(v: Value) -> Result<StartPlan, String> {
        StartPlan::from_params(Some(&v), &["streamdiffusionv2".into()])
    }

    #[test]
    fn pipelines_come_from_any_of_the_request_spellings() {
        let ids = |v: Value| plan(v).unwrap().pipeline_ids();
        assert_eq!(ids(json!({})), ["streamdiffusionv2"]);
        assert_eq!(
            ids(json!({"pipeline_ids": ["gray", "passthrough"]})),
            ["gray", "passthrough"]
        );
        assert_eq!(ids(json!({"pipeline_id": "gray"})), ["gray"]);
        assert_eq!(ids(json!({"pipeline": "longlive"})), ["longlive"]);
        assert_eq!(
            ids(json!({"pipelines": [{"pipeline_id": "gray", "load_params": {"a": 1}}]})),
            ["gray"]
        );
        let g = json!({"graph": {"nodes": [
            {"id": "input", "type": "source"},
            {"id": "g1", "type": "pipeline", "pipeline_id": "gray"},
            {"id": "output", "type": "sink"}], "edges": []}});
        let p = plan(g).unwrap();
        assert_eq!(p.pipelines[0].node_id, "g1");
        assert_eq!(p.mode, Some(InputMode::Video));
        assert!(StartPlan::from_params(None, &[]).is_err());
        for bad in [
            json!({"pipeline_ids": "gray"}),
            json!({"pipeline_ids": [1]}),
            json!({"pipeline_ids": [""]}),
            json!({"pipelines": [{"node_id": "x"}]}),
            json!({"graph": "x"}),
            json!({"load_params": 3}),
            json!({"input_mode": "audio"}),
            json!({"pipeline_ids": vec!["gray"; 17]}),
        ] {
            assert!(plan(bad.clone()).is_err(), "{bad}");
        }
        assert!(StartPlan::from_params(Some(&json!([1])), &[]).is_err());
    }

    #[test]
    fn load_bodies_use_the_short_form_when_they_can() {
        let p = plan(json!({"pipeline_ids": ["gray"], "load_params": {"height": 256}})).unwrap();
        assert_eq!(
            p.load_body(),
            json!({"pipeline_ids": ["gray"], "load_params": {"height": 256}})
        );
        let p = plan(json!({"pipelines": [
            {"pipeline_id": "gray", "load_params": {"a": 1}},
            {"pipeline_id": "passthrough", "node_id": "p2"}]}))
        .unwrap();
        assert_eq!(
            p.load_body(),
            json!({"pipelines": [
                {"node_id": "gray", "pipeline_id": "gray", "load_params": {"a": 1}},
                {"node_id": "p2", "pipeline_id": "passthrough", "load_params": null}]})
        );
    }

    #[test]
    fn a_loaded_pipeline_with_the_same_parameters_is_not_reloaded() {
        let p = plan(json!({"pipeline_ids": ["gray"]})).unwrap();
        let st = |status: &str, id: &str, lp: Value| json!({"status": status, "pipeline_id": id, "load_params": lp});
        assert!(p.is_loaded(&st("loaded", "gray", json!({}))));
        assert!(p.is_loaded(&st("loaded", "gray", Value::Null)));
        assert!(!p.is_loaded(&st("loading", "gray", json!({}))));
        assert!(!p.is_loaded(&st("loaded", "passthrough", json!({}))));
        assert!(!p.is_loaded(&st("loaded", "gray", json!({"height": 1}))));
        let two = plan(json!({"pipeline_ids": ["gray", "passthrough"]})).unwrap();
        assert!(!two.is_loaded(&st("loaded", "gray", json!({}))));
    }

    #[test]
    fn start_params_carry_ids_mode_and_the_linear_graph() {
        let p = plan(json!({"pipeline_ids": ["gray"], "prompts": [{"text": "a"}],
            "load_params": {}}))
        .unwrap();
        let v = p.start_params(InputMode::Video);
        assert_eq!(v["pipeline_ids"], json!(["gray"]));
        assert_eq!(v["input_mode"], "video");
        assert_eq!(v["prompts"], json!([{"text": "a"}]));
        assert!(v.get("load_params").is_none());
        assert_eq!(
            v["graph"],
            json!({"nodes": [
                {"id": "input", "type": "source"},
                {"id": "gray", "type": "pipeline", "pipeline_id": "gray"},
                {"id": "output", "type": "sink"}],
              "edges": [
                {"from": "input", "from_port": "video", "to_node": "gray", "to_port": "video", "kind": "stream"},
                {"from": "gray", "from_port": "video", "to_node": "output", "to_port": "video", "kind": "stream"}]})
        );
        let t = p.start_params(InputMode::Text);
        assert_eq!(t["input_mode"], "text");
        let nodes = t["graph"]["nodes"].as_array().unwrap();
        assert!(nodes.iter().all(|n| n["type"] != "source"));
        assert_eq!(t["graph"]["edges"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn the_mode_comes_from_the_caller_its_graph_or_nobody() {
        let m = |v: Value| plan(v).unwrap().mode;
        assert_eq!(m(json!({})), None);
        assert_eq!(m(json!({"input_mode": "text"})), Some(InputMode::Text));
        assert_eq!(
            m(json!({"enable_video_ingress": true})),
            Some(InputMode::Video)
        );
        assert_eq!(
            m(json!({"graph": {"nodes": [{"id": "output", "type": "sink"}]}})),
            Some(InputMode::Text)
        );
        let schemas = json!({"pipelines": {"longlive": {"default_mode": "text"},
            "gray": {"default_mode": "video"}}});
        assert_eq!(default_mode(&schemas, "longlive"), Some(InputMode::Text));
        assert_eq!(default_mode(&schemas, "gray"), Some(InputMode::Video));
        assert_eq!(default_mode(&schemas, "nope"), None);
        assert_eq!(default_mode(&json!("x"), "gray"), None);
    }
}
