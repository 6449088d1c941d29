//! Scope graphs as plain data: the lenient routes `start_stream` makes channels from
//! (livepeer_app.py:193-217), the linear graph (graph_schema.py:189-236), and the checks a
//! frame processor runs before it processes anything (graph_schema.py:144-186,
//! graph_executor.py) — whose failure is silent on the wire.

use serde_json::{Value, json};

/// Node types of a graph node.
const NODE_TYPES: [&str; 5] = ["source", "pipeline", "sink", "record", "node"];

/// Sink modes that are hardware outputs, not trickle channels.
const HARDWARE_SINKS: [&str; 3] = ["spout", "ndi", "syphon"];

/// The node ids channels are made for, in graph order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Routes {
    pub(crate) sources: Vec<String>,
    pub(crate) sinks: Vec<String>,
    pub(crate) records: Vec<String>,
}

/// Source, sink and record node ids of `graph` (an object, else no routes); malformed nodes
/// are skipped.
pub(crate) fn routes(graph: Option<&Value>) -> Routes {
    let mut r = Routes::default();
    let nodes = graph
        .filter(|g| g.is_object())
        .and_then(|g| g.get("nodes"))
        .and_then(Value::as_array);
    for n in nodes.into_iter().flatten() {
        let (Some(id), Some(t)) = (
            n.get("id").and_then(Value::as_str),
            n.get("type").and_then(Value::as_str),
        ) else {
            continue;
        };
        let mode = n.get("sink_mode").and_then(Value::as_str).unwrap_or("");
        match t {
            "source" => r.sources.push(id.into()),
            "sink" if !HARDWARE_SINKS.contains(&mode) => r.sinks.push(id.into()),
            "record" => r.records.push(id.into()),
            _ => {}
        }
    }
    r
}

/// `build_linear_graph(ids)`: `input` → each pipeline → `output`.
pub(crate) fn linear(ids: &[String]) -> Value {
    let mut nodes = vec![json!({"id": "input", "type": "source"})];
    let mut edges = Vec::new();
    let mut prev = "input".to_string();
    for id in ids {
        nodes.push(json!({"id": id, "type": "pipeline", "pipeline_id": id}));
        edges.push(edge(&prev, id));
        prev.clone_from(id);
    }
    nodes.push(json!({"id": "output", "type": "sink"}));
    edges.push(edge(&prev, "output"));
    json!({"nodes": nodes, "edges": edges})
}

fn edge(from: &str, to: &str) -> Value {
    json!({"from": from, "from_port": "video", "to_node": to, "to_port": "video", "kind": "stream"})
}

#[derive(Debug, Clone)]
struct Node {
    id: String,
    kind: String,
    pipeline_id: Option<String>,
    node_type_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Edge {
    from: String,
    from_port: String,
    to: String,
    to_port: String,
    stream: bool,
}

/// A pydantic validation error: location and message.
type Invalid = (String, String);

/// Pydantic-style parse of `GraphConfig`.
fn parse(graph: &Value) -> Result<(Vec<Node>, Vec<Edge>), Vec<Invalid>> {
    let mut errors = Vec::new();
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match graph.get("nodes") {
        Some(Value::Array(list)) => {
            for (i, n) in list.iter().enumerate() {
                let id = text(n, "id");
                let kind = text(n, "type");
                if id.is_none() {
                    errors.push((format!("nodes.{i}.id"), "Field required".into()));
                }
                match kind.as_deref() {
                    Some(t) if NODE_TYPES.contains(&t) => {}
                    _ => errors.push((
                        format!("nodes.{i}.type"),
                        "Input should be 'source', 'pipeline', 'sink', 'record' or 'node'".into(),
                    )),
                }
                if let (Some(id), Some(kind)) = (id, kind) {
                    nodes.push(Node {
                        id,
                        kind,
                        pipeline_id: text(n, "pipeline_id"),
                        node_type_id: text(n, "node_type_id"),
                    });
                }
            }
        }
        Some(_) => errors.push(("nodes".into(), "Input should be a valid list".into())),
        None => errors.push(("nodes".into(), "Field required".into())),
    }
    match graph.get("edges") {
        Some(Value::Array(list)) => {
            for (i, e) in list.iter().enumerate() {
                let from = text(e, "from").or_else(|| text(e, "from_node"));
                let to = text(e, "to_node");
                if from.is_none() {
                    errors.push((format!("edges.{i}.from"), "Field required".into()));
                }
                if to.is_none() {
                    errors.push((format!("edges.{i}.to_node"), "Field required".into()));
                }
                let kind = e.get("kind").and_then(Value::as_str).unwrap_or("stream");
                if !matches!(kind, "stream" | "parameter") {
                    errors.push((
                        format!("edges.{i}.kind"),
                        "Input should be 'stream' or 'parameter'".into(),
                    ));
                }
                if let (Some(from), Some(to)) = (from, to) {
                    edges.push(Edge {
                        from,
                        from_port: text(e, "from_port").unwrap_or_else(|| "video".into()),
                        to,
                        to_port: text(e, "to_port").unwrap_or_else(|| "video".into()),
                        stream: kind == "stream",
                    });
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => errors.push(("edges".into(), "Input should be a valid list".into())),
    }
    if errors.is_empty() {
        Ok((nodes, edges))
    } else {
        Err(errors)
    }
}

/// `GraphConfig.validate_structure` (graph_schema.py:144-186).
fn structure(nodes: &[Node], edges: &[Edge]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for n in nodes {
        if seen.contains(&n.id.as_str()) {
            errors.push(format!("Duplicate node ID: '{}'", n.id));
        }
        seen.push(&n.id);
    }
    if !nodes.iter().any(|n| n.kind == "sink") {
        errors.push("Graph must have at least one sink node".into());
    }
    for n in nodes {
        if n.kind == "pipeline" && n.pipeline_id.is_none() {
            errors.push(format!("Pipeline node '{}' is missing pipeline_id", n.id));
        }
        if n.kind == "node" && n.node_type_id.is_none() {
            errors.push(format!("Node '{}' is missing node_type_id", n.id));
        }
    }
    for e in edges {
        if !seen.contains(&e.from.as_str()) {
            errors.push(format!(
                "Edge references non-existent source node: '{}'",
                e.from
            ));
        }
        if !seen.contains(&e.to.as_str()) {
            errors.push(format!(
                "Edge references non-existent target node: '{}'",
                e.to
            ));
        }
    }
    errors
}

/// Python's repr of a list of strings: `['video', 'x']`.
fn py_list(items: &[&str]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", inner.join(", "))
}

/// A pipeline stage of a graph that passed every check: its node id and the pipeline
/// loaded under that id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stage {
    pub(crate) node_id: String,
    pub(crate) pipeline_id: String,
}

/// Runs the frame processor's setup checks on `graph`; `loaded` gives the pipeline loaded
/// (and done loading) under a node id. Returns the pipeline stages in stream order, or the
/// text logged after `Pipeline setup failed: `.
pub(crate) fn setup(
    graph: &Value,
    loaded: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Stage>, String> {
    let (nodes, edges) = parse(graph).map_err(|errs| {
        let n = errs.len();
        let mut s = format!(
            "{n} validation error{} for GraphConfig",
            if n == 1 { "" } else { "s" }
        );
        for (loc, msg) in errs {
            s.push_str(&format!("\n{loc}\n  {msg}"));
        }
        s
    })?;
    let errs = structure(&nodes, &edges);
    if !errs.is_empty() {
        return Err(format!("Invalid graph: {}", errs.join("; ")));
    }
    let mut stages = Vec::new();
    for n in nodes.iter().filter(|n| n.kind == "pipeline") {
        let pid = loaded(&n.id).ok_or_else(|| format!("Pipeline {} not loaded", n.id))?;
        stages.push(Stage {
            node_id: n.id.clone(),
            pipeline_id: pid,
        });
    }
    let inputs_of = |id: &str| {
        stages
            .iter()
            .find(|s| s.node_id == id)
            .map(|s| super::pipelines::find(&s.pipeline_id).map_or(&["video"][..], |i| i.inputs))
    };
    let mut port_errors = Vec::new();
    for e in edges.iter().filter(|e| e.stream) {
        if let Some(decl) = inputs_of(&e.to)
            && !decl.contains(&e.to_port.as_str())
        {
            port_errors.push(format!(
                "Node '{}' has no input port '{}' (declared: {})",
                e.to,
                e.to_port,
                py_list(decl)
            ));
        }
        if inputs_of(&e.from).is_some() && e.from_port != "video" {
            port_errors.push(format!(
                "Node '{}' has no output port '{}' (declared: ['video'])",
                e.from, e.from_port
            ));
        }
    }
    if !port_errors.is_empty() {
        return Err(format!("Invalid graph ports: {}", port_errors.join("; ")));
    }
    let stream: Vec<&Edge> = edges.iter().filter(|e| e.stream).collect();
    for (i, e) in stream.iter().enumerate() {
        if stream[..i]
            .iter()
            .any(|o| o.to == e.to && o.to_port == e.to_port)
        {
            return Err(format!(
                "Duplicate stream edges to the same input port: node='{}', port='{}'. Fan-in to a single port is not supported.",
                e.to, e.to_port
            ));
        }
    }
    Ok(order(stages, &stream))
}

/// Pipeline stages in stream order (topological over stream edges, graph order on ties;
/// stages on a cycle keep graph order at the end).
fn order(mut stages: Vec<Stage>, edges: &[&Edge]) -> Vec<Stage> {
    let mut out = Vec::with_capacity(stages.len());
    while !stages.is_empty() {
        let ready = stages.iter().position(|s| {
            !edges
                .iter()
                .any(|e| e.to == s.node_id && stages.iter().any(|o| o.node_id == e.from))
        });
        out.push(stages.remove(ready.unwrap_or(0)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(keys: &'static [&'static str]) -> impl Fn(&str) -> Option<String> {
        move |k| keys.contains(&k).then(|| k.to_string())
    }

    #[test]
    fn linear_graph_routes_and_setup() {
        let g = linear(&["gray".into(), "longlive".into()]);
        assert_eq!(
            routes(Some(&g)),
            Routes {
                sources: vec!["input".into()],
                sinks: vec!["output".into()],
                records: vec![],
            }
        );
        let stages = setup(&g, loaded(&["gray", "longlive"])).unwrap();
        let ids: Vec<&str> = stages.iter().map(|s| s.node_id.as_str()).collect();
        assert_eq!(ids, ["gray", "longlive"]);
        assert_eq!(
            setup(&g, loaded(&["gray"])).unwrap_err(),
            "Pipeline longlive not loaded"
        );
    }

    #[test]
    fn lenient_routes() {
        assert_eq!(routes(None), Routes::default());
        assert_eq!(routes(Some(&json!([1]))), Routes::default());
        let g = json!({"nodes": [7, {"id": "a", "type": "source"}, {"id": "s", "type": "sink", "sink_mode": "ndi"},
            {"id": "t", "type": "sink"}, {"id": "r", "type": "record"}]});
        let r = routes(Some(&g));
        assert_eq!(
            (r.sources, r.sinks, r.records),
            (vec!["a".into()], vec!["t".into()], vec!["r".into()])
        );
    }

    #[test]
    fn structure_errors_are_joined() {
        let g = json!({"nodes": [{"id": "a", "type": "source"}, {"id": "a", "type": "pipeline"}],
            "edges": [{"from": "a", "to_node": "zz"}, {"from": "q", "to_node": "a"}]});
        assert_eq!(
            setup(&g, loaded(&[])).unwrap_err(),
            "Invalid graph: Duplicate node ID: 'a'; Graph must have at least one sink node; \
             Pipeline node 'a' is missing pipeline_id; Edge references non-existent target node: 'zz'; \
             Edge references non-existent source node: 'q'"
        );
    }

    #[test]
    fn pydantic_errors_ports_and_fan_in() {
        let g = json!({"nodes": [{"id": "a", "type": "bogus"}], "edges": [{"to_node": "a"}]});
        assert_eq!(
            setup(&g, loaded(&[])).unwrap_err(),
            "2 validation errors for GraphConfig\nnodes.0.type\n  Input should be 'source', \
             'pipeline', 'sink', 'record' or 'node'\nedges.0.from\n  Field required"
        );
        let mut g = linear(&["gray".into()]);
        g["edges"][0]["to_port"] = json!("x");
        assert_eq!(
            setup(&g, loaded(&["gray"])).unwrap_err(),
            "Invalid graph ports: Node 'gray' has no input port 'x' (declared: ['video'])"
        );
        let mut g = linear(&["gray".into()]);
        let dup = g["edges"][0].clone();
        g["edges"].as_array_mut().unwrap().push(dup);
        assert!(setup(&g, loaded(&["gray"])).unwrap_err().starts_with(
            "Duplicate stream edges to the same input port: node='gray', port='video'."
        ));
    }

    #[test]
    fn stages_follow_the_edges() {
        let g = json!({"nodes": [{"id": "out", "type": "sink"}, {"id": "b", "type": "pipeline", "pipeline_id": "gray"},
            {"id": "a", "type": "pipeline", "pipeline_id": "passthrough"}, {"id": "in", "type": "source"}],
            "edges": [{"from": "in", "to_node": "a"}, {"from": "a", "to_node": "b"}, {"from": "b", "to_node": "out"}]});
        let stages = setup(&g, loaded(&["a", "b"])).unwrap();
        let ids: Vec<&str> = stages.iter().map(|s| s.node_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
