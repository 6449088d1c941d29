//! A small MPEG-TS muxer and demuxer for one video elementary stream.
//!
//! Kept in pure Rust (no FFmpeg format layer) so that segment bytes stream out packet by
//! packet as the encoder produces them, and stream in chunk by chunk as the network delivers
//! them, without custom-IO callbacks into C. Only what live segments need is implemented:
//! PAT, PMT, PES with PTS/DTS, PCR, continuity counters.

mod demux;
mod mux;

pub(crate) use demux::{Demuxer, EsPacket, StreamCodec};
pub(crate) use mux::Muxer;

/// Size of one transport stream packet.
pub(crate) const TS_PACKET: usize = 188;
/// Every TS packet starts with this byte.
pub(crate) const SYNC: u8 = 0x47;
/// PID of the Program Association Table.
pub(crate) const PAT_PID: u16 = 0;

/// CRC-32/MPEG-2 as used by PSI sections.
pub(crate) fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xFFFF_FFFF;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Whether an H.264 or HEVC Annex B access unit holds an IDR/IRAP picture.
pub(crate) fn annexb_has_keyframe(codec: StreamCodec, data: &[u8]) -> bool {
    let mut i = 0;
    while i + 3 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let nal = data[i + 3];
            match codec {
                StreamCodec::H264 if nal & 0x1F == 5 => return true,
                StreamCodec::Hevc if (16..=21).contains(&((nal >> 1) & 0x3F)) => return true,
                _ => {}
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_known_pat() {
        // The PAT FFmpeg writes for program 1 / PMT PID 0x1000 ends in CRC 2AB104B2.
        let section = [
            0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00,
        ];
        assert_eq!(crc32_mpeg2(&section), 0x2AB1_04B2);
    }

    #[test]
    fn keyframe_detection() {
        let idr = [0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x65, 0x88];
        let p = [0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x41, 0x9A];
        assert!(annexb_has_keyframe(StreamCodec::H264, &idr));
        assert!(!annexb_has_keyframe(StreamCodec::H264, &p));
        let hevc_idr = [0, 0, 1, 19 << 1, 1];
        assert!(annexb_has_keyframe(StreamCodec::Hevc, &hevc_idr));
        assert!(!annexb_has_keyframe(StreamCodec::H264, &[0, 0]));
    }
}
