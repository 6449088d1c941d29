//! Capability IDs and the capability bitstring (go-livepeer `core/capabilities.go`).

/// Capability ID of live video-to-video (`core/capabilities.go`: `Capability_LiveVideoToVideo`).
pub const LIVE_VIDEO_TO_VIDEO: u32 = 35;

/// Discovery name of [`LIVE_VIDEO_TO_VIDEO`]: `live-video-to-video/<model>` names a model.
pub const LIVE_VIDEO_TO_VIDEO_NAME: &str = "live-video-to-video";

/// Capabilities every go-livepeer node advertises besides its AI pipelines (0-12, 14, 26).
pub const DEFAULT_CAPABILITIES: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 26];

/// Builds a bitstring: capability `c` is bit `c % 64` of word `c / 64`.
pub fn bitstring(caps: impl IntoIterator<Item = u32>) -> Vec<u64> {
    let mut words: Vec<u64> = Vec::new();
    for c in caps {
        let word = (c / 64) as usize;
        if words.len() <= word {
            words.resize(word + 1, 0);
        }
        words[word] |= 1 << (c % 64);
    }
    words
}

/// Whether capability `cap` is set in `bitstring`.
pub fn has(bitstring: &[u64], cap: u32) -> bool {
    bitstring
        .get((cap / 64) as usize)
        .is_some_and(|w| w & (1 << (cap % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_video_to_video_alone_is_bit_35_of_word_0() {
        assert_eq!(bitstring([LIVE_VIDEO_TO_VIDEO]), vec![34_359_738_368]);
        assert!(has(&[34_359_738_368], 35));
        assert!(!has(&[34_359_738_368], 34));
        assert!(!has(&[], 35));
    }

    #[test]
    fn high_capabilities_use_later_words() {
        let b = bitstring([1, 64, 65]);
        assert_eq!(b, vec![2, 3]);
        assert!(has(&b, 64) && has(&b, 65) && has(&b, 1) && !has(&b, 0));
    }
}
