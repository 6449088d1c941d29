//! What a Scope start hands back: the job's control and events channels, and the media
//! channels by role once `stream_started` announces them.

use serde_json::Value;
use url::Url;

/// The channels a Scope start returned. These URLs are bearer capabilities: do not log them.
#[derive(Clone, PartialEq, Eq)]
pub struct ScopeUrls {
    /// The job's ID.
    pub manifest_id: String,
    /// Control channel (client → runner).
    pub control_url: String,
    /// Events channel (runner → client).
    pub events_url: String,
    /// Media input, when the start already returned one (LV2V-style apps).
    pub publish_url: Option<String>,
    /// Media output, when the start already returned one.
    pub subscribe_url: Option<String>,
}

impl std::fmt::Debug for ScopeUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeUrls")
            .field("manifest_id", &self.manifest_id)
            .finish_non_exhaustive()
    }
}

impl ScopeUrls {
    /// Reads a Scope job answer: `manifest_id`, `control_url`, `events_url` required;
    /// empty `publish_url`/`subscribe_url` mean "created later". Relative URLs resolve
    /// against `base`.
    pub(crate) fn from_json(v: &Value, base: &Url) -> Result<Self, String> {
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let url = |k: &str| -> Result<Option<String>, String> {
            let Some(s) = field(k) else { return Ok(None) };
            let u = base.join(&s).map_err(|e| format!("bad {k}: {e}"))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(format!("bad {k}: not http(s)"));
            }
            Ok(Some(u.into()))
        };
        let need = |k: &str| url(k)?.ok_or_else(|| format!("scope answer missing {k}"));
        Ok(Self {
            manifest_id: field("manifest_id").ok_or("scope answer missing manifest_id")?,
            control_url: need("control_url")?,
            events_url: need("events_url")?,
            publish_url: url("publish_url")?,
            subscribe_url: url("subscribe_url")?,
        })
    }
}

/// One media channel announced by `stream_started`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScopeChannel {
    /// Trickle URL.
    pub url: String,
    /// `in` (the client publishes) or `out` (the client subscribes).
    pub direction: String,
    /// MIME type, e.g. `video/MP2T`.
    pub mime_type: String,
    /// Optional role, e.g. `output_audio`.
    pub role: Option<String>,
    /// Optional media kind of an output (`video`, `audio`).
    pub output_media_kind: Option<String>,
    /// Track index of an input.
    pub input_track_index: Option<u64>,
    /// Track index of an output.
    pub output_track_index: Option<u64>,
}

impl std::fmt::Debug for ScopeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeChannel")
            .field("direction", &self.direction)
            .field("mime_type", &self.mime_type)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl ScopeChannel {
    fn is_audio(&self) -> bool {
        self.role.as_deref() == Some("output_audio")
            || self.output_media_kind.as_deref() == Some("audio")
    }
}

/// The media channels of a started stream, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaChannels {
    /// Where the client publishes video (input track 0); `None` in text mode, where the
    /// stream takes no input.
    pub input: Option<String>,
    /// Where the client reads processed video (output track 0, not audio).
    pub output: String,
    /// Where the runner's audio comes out (`output_audio`), when it makes any.
    pub output_audio: Option<String>,
    /// Every announced channel, other output tracks included.
    pub all: Vec<ScopeChannel>,
}

impl MediaChannels {
    /// The video output tracks, by track index.
    pub fn video_outputs(&self) -> Vec<&ScopeChannel> {
        let mut v: Vec<&ScopeChannel> = self
            .all
            .iter()
            .filter(|c| c.direction == "out" && !c.is_audio())
            .collect();
        v.sort_by_key(|c| c.output_track_index.unwrap_or(0));
        v
    }

    /// From the `channels` of a `stream_started` event: the `in` track 0 (when there is
    /// one), the video `out` track 0 (required) and the audio output.
    pub(crate) fn from_event(channels: &Value, base: &Url) -> Result<Self, String> {
        let list = channels
            .as_array()
            .ok_or("stream_started without channels")?;
        let mut all = Vec::new();
        for c in list.iter().take(64) {
            let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(url), Some(direction)) = (s("url"), s("direction")) else {
                continue;
            };
            let Ok(url) = base.join(&url) else { continue };
            all.push(ScopeChannel {
                url: url.into(),
                direction,
                mime_type: s("mime_type").unwrap_or_default(),
                role: s("role"),
                output_media_kind: s("output_media_kind"),
                input_track_index: c.get("input_track_index").and_then(Value::as_u64),
                output_track_index: c.get("output_track_index").and_then(Value::as_u64),
            });
        }
        let input = all
            .iter()
            .find(|c| c.direction == "in" && c.input_track_index.unwrap_or(0) == 0)
            .map(|c| c.url.clone());
        let output = all
            .iter()
            .find(|c| {
                c.direction == "out" && !c.is_audio() && c.output_track_index.unwrap_or(0) == 0
            })
            .ok_or("stream_started without a video output channel")?
            .url
            .clone();
        let output_audio = all
            .iter()
            .find(|c| c.direction == "out" && c.is_audio())
            .map(|c| c.url.clone());
        Ok(Self {
            input,
            output,
            output_audio,
            all,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Url {
        Url::parse("https://o:8935/apps/r/session/s/app").unwrap()
    }

    #[test]
    fn job_json_needs_control_and_events() {
        let v = json!({"manifest_id":"m1","control_url":"/ai/trickle/m1-control",
            "events_url":"https://o:8935/ai/trickle/m1-events","publish_url":"","subscribe_url":""});
        let u = ScopeUrls::from_json(&v, &base()).unwrap();
        assert_eq!(u.control_url, "https://o:8935/ai/trickle/m1-control");
        assert_eq!(u.publish_url, None);
        assert!(ScopeUrls::from_json(&json!({"manifest_id":"m"}), &base()).is_err());
        assert!(
            ScopeUrls::from_json(&json!({"control_url":"/c","events_url":"/e"}), &base()).is_err()
        );
    }

    #[test]
    fn stream_started_gives_in_and_video_out() {
        let ch = json!([
            {"url":"/ai/trickle/m-0-out-audio","direction":"out","mime_type":"audio/MP2T","role":"output_audio"},
            {"url":"/ai/trickle/m-0-out","direction":"out","mime_type":"video/MP2T"},
            {"url":"/ai/trickle/m-0-in","direction":"in","mime_type":"video/MP2T"},
            {"direction":"in"}
        ]);
        let m = MediaChannels::from_event(&ch, &base()).unwrap();
        assert_eq!(m.input.as_deref(), Some("https://o:8935/ai/trickle/m-0-in"));
        assert_eq!(
            m.output_audio.as_deref(),
            Some("https://o:8935/ai/trickle/m-0-out-audio")
        );
        assert_eq!(m.output, "https://o:8935/ai/trickle/m-0-out");
        assert_eq!(m.all.len(), 3);
        assert!(MediaChannels::from_event(&json!([]), &base()).is_err());
        // Text mode: an output and no input.
        let text = MediaChannels::from_event(
            &json!([{"url":"/o","direction":"out","role":"output","output_track_index":0}]),
            &base(),
        )
        .unwrap();
        assert_eq!(text.input, None);
        assert!(MediaChannels::from_event(&json!("x"), &base()).is_err());
    }
}
