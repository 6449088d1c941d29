//! Content-type rules for media segments.

/// The MIME type of MPEG-TS segments, as go-livepeer and the runners label them.
pub const MPEG_TS: &str = "video/MP2T";

/// Whether a segment's `Content-Type` may carry MPEG-TS.
///
/// Accepts `video/MP2T` in any letter case and with parameters, and a missing header (some
/// servers omit it; the demuxer then decides). Anything else (JSON, text, HTML error pages)
/// is refused, so a wrong channel is reported instead of being fed to the decoder.
pub fn check_content_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence.is_empty()
        || essence.eq_ignore_ascii_case(MPEG_TS)
        || essence.eq_ignore_ascii_case("video/mpegts")
        || essence.eq_ignore_ascii_case("application/octet-stream")
}

#[cfg(test)]
mod tests {
    use super::check_content_type;

    #[test]
    fn accepts_mpeg_ts_in_any_case_and_with_parameters() {
        for ct in [
            "video/MP2T",
            "video/mp2t",
            "VIDEO/MP2T; charset=binary",
            " video/mpegts ",
            "application/octet-stream",
        ] {
            assert!(check_content_type(Some(ct)), "{ct}");
        }
        assert!(check_content_type(None));
    }

    #[test]
    fn refuses_other_types() {
        for ct in [
            "application/json",
            "text/plain; charset=utf-8",
            "video/mp4",
            "text/html",
        ] {
            assert!(!check_content_type(Some(ct)), "{ct}");
        }
    }
}
