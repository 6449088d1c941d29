//! Scope's pipelines as plain data: the built-in catalogue (`GET /api/v1/pipelines/schemas`)
//! and the pipeline manager's state (pipeline_manager.py): loads as a desired full set that
//! finish in the background, and the aggregated `GET /api/v1/pipeline/status`. Time is
//! passed in; the caller turns the returned [`LogRecord`]s into `logs` events.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::protocol::LogRecord;

/// The logger of pipeline loads.
const LOGGER: &str = "scope.server.pipeline_manager";

/// The only loading stage the devnet reports (set at the start of every load).
pub(crate) const LOADING_STAGE: &str = "Initializing pipeline...";

/// How the devnet emulates a pipeline's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Frames copied unchanged (`passthrough`).
    Copy,
    /// BT.601 luma kept, chroma neutral (`gray`).
    Gray,
    /// A diffusion model, emulated by the prompt-driven effect.
    Diffusion,
}

/// One built-in pipeline (its `schema.py`).
#[derive(Debug)]
pub(crate) struct Info {
    pub(crate) id: &'static str,
    name: &'static str,
    description: &'static str,
    /// Supported input modes; the default one is [`Info::default_mode`].
    pub(crate) modes: &'static [&'static str],
    pub(crate) default_mode: &'static str,
    pub(crate) kind: Kind,
    usage: &'static [&'static str],
    /// Declared input ports (graph port validation).
    pub(crate) inputs: &'static [&'static str],
    vram_gb: Option<f64>,
}

impl Info {
    /// Whether the pipeline generates frames without input (text mode).
    pub(crate) fn supports_text(&self) -> bool {
        self.modes.contains(&"text")
    }
}

const DIFFUSION_INPUTS: &[&str] = &["video", "vace_input_frames", "vace_input_masks"];

/// The built-in pipelines a CUDA box registers (registry.py), by id.
pub(crate) const CATALOGUE: &[Info] = &[
    Info {
        id: "passthrough",
        name: "Passthrough",
        description: "A pipeline that returns the input video without any processing that is useful for testing and debugging.",
        modes: &["video"],
        default_mode: "video",
        kind: Kind::Copy,
        usage: &[],
        inputs: &["video"],
        vram_gb: None,
    },
    Info {
        id: "gray",
        name: "Grayscale",
        description: "Converts video frames to grayscale. Lightweight preprocessor with no model required, optimized for realtime use.",
        modes: &["video"],
        default_mode: "video",
        kind: Kind::Gray,
        usage: &["preprocessor"],
        inputs: &["video"],
        vram_gb: None,
    },
    Info {
        id: "longlive",
        name: "LongLive",
        description: "A streaming pipeline and autoregressive video diffusion model from Nvidia, MIT, HKUST, HKU and THU.",
        modes: &["text", "video"],
        default_mode: "text",
        kind: Kind::Diffusion,
        usage: &[],
        inputs: DIFFUSION_INPUTS,
        vram_gb: Some(20.0),
    },
    Info {
        id: "streamdiffusionv2",
        name: "StreamDiffusionV2",
        description: "A streaming pipeline and video diffusion model for realtime video-to-video generation.",
        modes: &["text", "video"],
        default_mode: "video",
        kind: Kind::Diffusion,
        usage: &[],
        inputs: DIFFUSION_INPUTS,
        vram_gb: Some(20.0),
    },
    Info {
        id: "krea-realtime-video",
        name: "Krea Realtime Video",
        description: "A streaming pipeline and autoregressive video diffusion model from Krea for realtime generation.",
        modes: &["text", "video"],
        default_mode: "text",
        kind: Kind::Diffusion,
        usage: &[],
        inputs: DIFFUSION_INPUTS,
        vram_gb: Some(32.0),
    },
    Info {
        id: "reward-forcing",
        name: "Reward Forcing",
        description: "A streaming pipeline and autoregressive video diffusion model trained with reward forcing.",
        modes: &["text", "video"],
        default_mode: "text",
        kind: Kind::Diffusion,
        usage: &[],
        inputs: DIFFUSION_INPUTS,
        vram_gb: Some(20.0),
    },
    Info {
        id: "memflow",
        name: "MemFlow",
        description: "A streaming pipeline and autoregressive video diffusion model with long-term memory.",
        modes: &["text", "video"],
        default_mode: "text",
        kind: Kind::Diffusion,
        usage: &[],
        inputs: DIFFUSION_INPUTS,
        vram_gb: Some(20.0),
    },
];

/// A built-in pipeline by id.
pub(crate) fn find(id: &str) -> Option<&'static Info> {
    CATALOGUE.iter().find(|i| i.id == id)
}

/// One pipeline's `get_schema_with_metadata()` plus `plugin_name` (base_schema.py:374-426).
fn schema(i: &Info) -> Value {
    let gpu = i.kind == Kind::Diffusion;
    let krea = i.id == "krea-realtime-video";
    let mut v = json!({
        "id": i.id,
        "name": i.name,
        "description": i.description,
        "version": "1.0.0",
        "supported_modes": i.modes,
        "default_mode": i.default_mode,
        "supports_prompts": gpu,
        "default_temporal_interpolation_method": if krea { "linear" } else { "slerp" },
        "default_temporal_interpolation_steps": if krea { 4 } else { 0 },
        "default_spatial_interpolation_method": "linear",
        "docs_url": if i.id == "longlive" {
            json!("https://github.com/daydreamlive/scope/blob/main/src/scope/core/pipelines/longlive/docs/usage.md")
        } else {
            Value::Null
        },
        "estimated_vram_gb": i.vram_gb,
        "requires_models": gpu,
        "supports_lora": gpu,
        "supports_vace": gpu,
        "supports_cache_management": gpu,
        "supports_kv_cache_bias": krea,
        "supports_quantization": gpu,
        "min_dimension": if gpu { 16 } else { 1 },
        "recommended_quantization_vram_threshold": if krea { json!(40.0) } else { Value::Null },
        "modified": i.kind != Kind::Copy,
        "produces_video": true,
        "produces_audio": false,
        "usage": i.usage,
        "inputs": i.inputs,
        "outputs": ["video"],
        "config_schema": config_schema(i),
        "plugin_name": null,
    });
    if gpu {
        // Overrides of the mode that is not the default one.
        let defaults = if i.default_mode == "video" {
            json!({"text": {"height": 512, "width": 512, "denoising_steps": [1000, 750]}})
        } else {
            let size = if krea { 256 } else { 512 };
            let mut d = json!({"height": size, "width": size, "denoising_steps": [1000, 750],
                "noise_scale": 0.7, "noise_controller": true});
            if krea {
                d["default_temporal_interpolation_steps"] = json!(0);
            }
            json!({ "video": d })
        };
        v["mode_defaults"] = defaults;
    }
    v
}

/// A trimmed `config_schema` (the pydantic model's JSON schema).
fn config_schema(i: &Info) -> Value {
    let title: String = i
        .name
        .split([' ', '-'])
        .filter(|w| !w.is_empty())
        .collect::<String>()
        .replace("Grayscale", "Gray");
    let dim = |what: &str| {
        json!({"default": 512, "description": format!("Output {what} in pixels"),
            "minimum": 1, "title": capitalize(what), "type": "integer"})
    };
    json!({
        "additionalProperties": false,
        "properties": {"height": dim("height"), "width": dim("width")},
        "title": format!("{title}Config"),
        "type": "object",
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `GET /api/v1/pipelines/schemas`: `{"pipelines": {id: meta}}`.
pub(crate) fn schemas() -> Value {
    let map: serde_json::Map<String, Value> = CATALOGUE
        .iter()
        .map(|i| (i.id.to_string(), schema(i)))
        .collect();
    json!({ "pipelines": map })
}

/// One entry of a load request: the instance key, the pipeline, its load parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadEntry {
    pub(crate) node_id: String,
    pub(crate) pipeline_id: String,
    pub(crate) load_params: Value,
}

/// Where a tracked instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Loading until `ready_at`; fails then unless `ok`.
    Loading {
        ready_at: Instant,
        ok: bool,
    },
    Loaded,
    /// Failed; reported once by the next status read.
    Error,
    /// Failed and already reported.
    NotLoaded,
}

#[derive(Debug, Clone)]
struct Instance {
    key: String,
    pipeline_id: String,
    /// Normalized: `null` becomes `{}`.
    params: Value,
    state: State,
}

/// Why a load fails (the exception text after `Failed to load pipeline <key>: `).
fn failure(pipeline_id: &str, forced: bool) -> String {
    if forced {
        format!("CUDA out of memory while loading {pipeline_id} (devnet fault)")
    } else {
        format!("Invalid pipeline ID: {pipeline_id}")
    }
}

/// A load's knobs: how long it takes and whether it is made to fail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadKnobs {
    pub(crate) delay: Duration,
    pub(crate) fail: bool,
}

/// The pipeline manager of one runner process.
#[derive(Debug, Default)]
pub(crate) struct Pipelines {
    instances: Vec<Instance>,
    /// The first entry's `load_params` of the last load request (`None` before any).
    last_params: Option<Value>,
    /// Whether forced failures were asked for, per key now loading.
    forced: Vec<String>,
}

/// Pipelines shared by the sessions of one runner.
pub(crate) type SharedPipelines = Arc<Mutex<Pipelines>>;

/// Locks shared pipelines (plain data: a poisoned lock is still consistent).
pub(crate) fn lock(p: &SharedPipelines) -> MutexGuard<'_, Pipelines> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

fn normalized(v: &Value) -> Value {
    if v.is_null() { json!({}) } else { v.clone() }
}

impl Pipelines {
    /// Applies a load request as the desired full set (pipeline_manager.py:575-700).
    pub(crate) fn load(
        &mut self,
        entries: &[LoadEntry],
        now: Instant,
        knobs: LoadKnobs,
    ) -> Vec<LogRecord> {
        let mut logs = Vec::new();
        self.last_params = Some(
            entries
                .first()
                .map_or(Value::Null, |e| e.load_params.clone()),
        );
        let wanted: Vec<&str> = entries.iter().map(|e| e.node_id.as_str()).collect();
        let mut next: Vec<Instance> = Vec::new();
        for e in entries {
            let params = normalized(&e.load_params);
            let same = |i: &Instance| i.pipeline_id == e.pipeline_id && i.params == params;
            let usable = |i: &Instance| matches!(i.state, State::Loaded | State::Loading { .. });
            if let Some(pos) = self
                .instances
                .iter()
                .position(|i| i.key == e.node_id && same(i) && usable(i))
            {
                let i = self.instances.remove(pos);
                if i.state == State::Loaded {
                    logs.push(LogRecord::info(
                        LOGGER,
                        format!("Pipeline {} already loaded with matching parameters", i.key),
                    ));
                }
                next.push(i);
                continue;
            }
            if let Some(pos) = self.instances.iter().position(|i| {
                !wanted.contains(&i.key.as_str()) && same(i) && i.state == State::Loaded
            }) {
                let mut i = self.instances.remove(pos);
                logs.push(LogRecord::info(
                    LOGGER,
                    format!(
                        "Re-keying pipeline {} from '{}' to '{}'",
                        i.pipeline_id, i.key, e.node_id
                    ),
                ));
                i.key = e.node_id.clone();
                next.push(i);
                continue;
            }
            logs.push(LogRecord::info(
                LOGGER,
                format!("Loading pipeline {} ({})", e.node_id, e.pipeline_id),
            ));
            let ok = find(&e.pipeline_id).is_some() && !knobs.fail;
            if knobs.fail {
                self.forced.push(e.node_id.clone());
            }
            next.push(Instance {
                key: e.node_id.clone(),
                pipeline_id: e.pipeline_id.clone(),
                params,
                state: State::Loading {
                    ready_at: now + knobs.delay,
                    ok,
                },
            });
        }
        for old in self.instances.drain(..) {
            if matches!(old.state, State::Loaded | State::Loading { .. }) {
                logs.push(LogRecord::info(
                    LOGGER,
                    format!("Unloading pipeline: {}", old.key),
                ));
            }
        }
        self.instances = next;
        logs
    }

    /// Finishes the loads due by `now`.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<LogRecord> {
        let mut logs = Vec::new();
        let mut failed = false;
        for i in &mut self.instances {
            let State::Loading { ready_at, ok } = i.state else {
                continue;
            };
            if ready_at > now {
                continue;
            }
            if ok {
                i.state = State::Loaded;
                logs.push(LogRecord::info(
                    LOGGER,
                    format!("Pipeline {} loaded successfully", i.key),
                ));
            } else {
                i.state = State::Error;
                failed = true;
                let forced = self.forced.contains(&i.key);
                logs.push(LogRecord::error(
                    LOGGER,
                    format!(
                        "Failed to load pipeline {}: {}. If this error persists, consider removing the models directory '/root/.daydream-scope/models' and re-downloading models.",
                        i.key,
                        failure(&i.pipeline_id, forced)
                    ),
                ));
                logs.push(LogRecord::error(
                    LOGGER,
                    format!("Failed to load pipeline: {}", i.key),
                ));
            }
        }
        if failed {
            logs.push(LogRecord::error(LOGGER, "Some pipelines failed to load"));
        }
        let loading: Vec<String> = self
            .instances
            .iter()
            .filter(|i| matches!(i.state, State::Loading { .. }))
            .map(|i| i.key.clone())
            .collect();
        self.forced.retain(|k| loading.contains(k));
        logs
    }

    /// When the next load finishes, if one is under way.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.instances
            .iter()
            .filter_map(|i| match i.state {
                State::Loading { ready_at, .. } => Some(ready_at),
                _ => None,
            })
            .min()
    }

    /// The pipeline loaded under `key`, if it is loaded (not loading).
    pub(crate) fn loaded(&self, key: &str) -> Option<&str> {
        self.instances
            .iter()
            .find(|i| i.key == key && i.state == State::Loaded)
            .map(|i| i.pipeline_id.as_str())
    }

    /// The load parameters of the instance under `key`.
    pub(crate) fn params_of(&self, key: &str) -> Option<&Value> {
        self.instances
            .iter()
            .find(|i| i.key == key)
            .map(|i| &i.params)
    }

    /// `GET /api/v1/pipeline/status` (pipeline_manager.py:383-484). An error is reported
    /// once: the read resets errored instances to not loaded.
    pub(crate) fn status(&mut self) -> Value {
        let any = |f: fn(&State) -> bool| self.instances.iter().any(|i| f(&i.state));
        let status = if any(|s| matches!(s, State::Loading { .. })) {
            "loading"
        } else if any(|s| *s == State::Error) {
            "error"
        } else if !self.instances.is_empty()
            && self.instances.iter().all(|i| i.state == State::Loaded)
        {
            "loaded"
        } else {
            "not_loaded"
        };
        let loading = status == "loading";
        let pipeline_id = self
            .instances
            .iter()
            .find(|i| i.state == State::Loaded)
            .map(|i| i.key.clone());
        let truthy = |v: &Value| match v {
            Value::Null => false,
            Value::Object(o) => !o.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Number(_) => true,
        };
        let load_params = match &self.last_params {
            Some(p) if truthy(p) => p.clone(),
            _ => self
                .instances
                .first()
                .map_or(Value::Null, |i| i.params.clone()),
        };
        for i in &mut self.instances {
            if i.state == State::Error {
                i.state = State::NotLoaded;
            }
        }
        json!({
            "status": status,
            "pipeline_id": pipeline_id,
            "load_params": load_params,
            "loaded_lora_adapters": null,
            "error": null,
            "loading_stage": if loading { json!(LOADING_STAGE) } else { Value::Null },
            "produces_video": true,
            "produces_audio": false,
        })
    }
}

#[cfg(test)]
mod tests;
