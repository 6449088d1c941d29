//! Incremental MPEG-TS demuxer: feed arbitrary chunks, get complete video PES payloads.

use tracing::trace;

use super::{PAT_PID, SYNC, TS_PACKET, annexb_has_keyframe, crc32_mpeg2};

/// Upper bound on one PES payload; larger ones are treated as corrupt (bounded memory).
const MAX_PES: usize = 16 * 1024 * 1024;

/// Video codecs recognised from PMT stream types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamCodec {
    H264,
    Hevc,
    Mpeg2,
    Mpeg4,
    Av1,
}

impl StreamCodec {
    fn from_pmt(stream_type: u8, descriptors: &[u8]) -> Option<Self> {
        match stream_type {
            0x1B => Some(Self::H264),
            0x24 => Some(Self::Hevc),
            0x01 | 0x02 => Some(Self::Mpeg2),
            0x10 => Some(Self::Mpeg4),
            0x06 if has_registration(descriptors, b"AV01") => Some(Self::Av1),
            _ => None,
        }
    }

    pub(crate) fn ffmpeg_id(self) -> ffmpeg_next::codec::Id {
        use ffmpeg_next::codec::Id;
        match self {
            Self::H264 => Id::H264,
            Self::Hevc => Id::HEVC,
            Self::Mpeg2 => Id::MPEG2VIDEO,
            Self::Mpeg4 => Id::MPEG4,
            Self::Av1 => Id::AV1,
        }
    }
}

fn has_registration(mut d: &[u8], fourcc: &[u8; 4]) -> bool {
    while d.len() >= 2 {
        let (tag, len) = (d[0], usize::from(d[1]));
        let Some(body) = d.get(2..2 + len) else {
            return false;
        };
        if tag == 0x05 && body.starts_with(fourcc) {
            return true;
        }
        d = &d[2 + len..];
    }
    false
}

/// One video access unit as carried by a PES packet.
#[derive(Debug)]
pub(crate) struct EsPacket {
    pub(crate) codec: StreamCodec,
    /// 33-bit PTS as found in the PES header.
    pub(crate) pts: Option<u64>,
    pub(crate) data: Vec<u8>,
    /// Random-access indicator or a detected IDR/IRAP.
    pub(crate) is_key: bool,
    /// Packets were lost or damaged inside this PES.
    pub(crate) corrupt: bool,
    /// Data was lost between the previous unit and this one (references may be missing).
    pub(crate) gap_before: bool,
}

#[derive(Debug)]
struct PendingPes {
    buf: Vec<u8>,
    random_access: bool,
    corrupt: bool,
}

/// Demuxer state. One per stream; [`Demuxer::end_segment`] flushes at segment boundaries.
#[derive(Debug, Default)]
pub(crate) struct Demuxer {
    carry: Vec<u8>,
    pmt_pid: Option<u16>,
    video: Option<(u16, StreamCodec)>,
    last_cc: Option<u8>,
    pending: Option<PendingPes>,
    /// Data lost since the last emitted unit.
    gap: bool,
    /// A PAT arrived since the last video packet: a continuity break right after it, on a
    /// packet starting a new unit, is a muxer restart (FFmpeg's segment muxer concatenated),
    /// not loss.
    tables_since_video: bool,
    /// Bytes skipped while looking for packet sync.
    pub(crate) skipped_bytes: u64,
    /// Continuity-counter gaps seen on the video PID.
    pub(crate) cc_errors: u64,
}

impl Demuxer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; complete access units are pushed to `out`.
    pub(crate) fn push(&mut self, chunk: &[u8], out: &mut Vec<EsPacket>) {
        let owned;
        let data: &[u8] = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.extend_from_slice(chunk);
            owned = std::mem::take(&mut self.carry);
            &owned
        };
        let mut i = 0;
        while i < data.len() {
            if data[i] != SYNC {
                // Resync: skip to the next sync byte.
                let skip = data[i..]
                    .iter()
                    .position(|&b| b == SYNC)
                    .unwrap_or(data.len() - i);
                self.skipped_bytes += skip as u64;
                self.mark_corrupt();
                i += skip;
                continue;
            }
            if data.len() - i < TS_PACKET {
                break;
            }
            // Guard against a stray 0x47: the next packet must also start with sync if present.
            if data.len() - i > TS_PACKET && data[i + TS_PACKET] != SYNC {
                self.skipped_bytes += 1;
                self.mark_corrupt();
                i += 1;
                continue;
            }
            self.packet(&data[i..i + TS_PACKET], out);
            i += TS_PACKET;
        }
        self.carry = data[i..].to_vec();
    }

    /// The segment ended: emits a pending access unit and drops partial packet bytes.
    pub(crate) fn end_segment(&mut self, out: &mut Vec<EsPacket>) {
        if !self.carry.is_empty() {
            self.skipped_bytes += self.carry.len() as u64;
            self.carry.clear();
            self.mark_corrupt();
        }
        self.flush_pes(out);
        // The next segment restarts continuity counters in many muxers.
        self.last_cc = None;
    }

    /// Drops all partial state (used when skipping ahead to a newer segment).
    pub(crate) fn reset_partial(&mut self) {
        self.carry.clear();
        self.pending = None;
        self.gap = false;
        self.last_cc = None;
    }

    fn mark_corrupt(&mut self) {
        match self.pending.as_mut() {
            Some(p) => p.corrupt = true,
            None => self.gap = true,
        }
    }

    fn packet(&mut self, p: &[u8], out: &mut Vec<EsPacket>) {
        let tei = p[1] & 0x80 != 0;
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 0x3;
        let cc = p[3] & 0x0F;
        let mut off = 4;
        let mut random_access = false;
        if afc & 0x2 != 0 {
            let len = usize::from(p[4]);
            if len > 183 {
                self.mark_corrupt();
                return;
            }
            if len > 0 {
                random_access = p[5] & 0x40 != 0;
            }
            off += 1 + len;
        }
        let payload = if afc & 0x1 != 0 && off <= TS_PACKET {
            &p[off..]
        } else {
            &[][..]
        };

        if pid == PAT_PID {
            if pusi && !tei {
                self.parse_pat(payload);
                self.tables_since_video = true;
            }
            return;
        }
        if Some(pid) == self.pmt_pid {
            if pusi && !tei {
                self.parse_pmt(payload);
            }
            return;
        }
        let Some((vpid, _)) = self.video else {
            return;
        };
        if pid != vpid {
            return;
        }
        let restart = std::mem::take(&mut self.tables_since_video) && pusi;
        if afc & 0x1 != 0 {
            if let Some(last) = self.last_cc {
                if cc == last && !restart {
                    return; // duplicate packet, allowed once by the spec
                }
                if restart {
                    // New tables, then a unit start: the previous unit ended before them.
                    trace!(pid, last, cc, "continuity restart after new tables");
                } else if cc != (last + 1) & 0x0F {
                    self.cc_errors += 1;
                    trace!(pid, last, cc, "continuity counter gap");
                    self.mark_corrupt();
                }
            }
            self.last_cc = Some(cc);
        }
        if tei {
            self.mark_corrupt();
            return;
        }
        if pusi {
            self.flush_pes(out);
            self.pending = Some(PendingPes {
                buf: Vec::with_capacity(64 * 1024),
                random_access,
                corrupt: false,
            });
        }
        if self.pending.is_none() && !payload.is_empty() {
            // A continuation without its start: the start was lost.
            self.gap = true;
        }
        if let Some(pend) = self.pending.as_mut() {
            if pend.buf.len() + payload.len() > MAX_PES {
                pend.corrupt = true;
            } else {
                pend.buf.extend_from_slice(payload);
            }
            // With a declared length the unit is complete now; don't wait for the next one.
            if pend.buf.len() >= 6 {
                let declared = usize::from(u16::from_be_bytes([pend.buf[4], pend.buf[5]]));
                if declared != 0 && pend.buf.len() >= 6 + declared {
                    pend.buf.truncate(6 + declared);
                    self.flush_pes(out);
                }
            }
        }
    }

    fn flush_pes(&mut self, out: &mut Vec<EsPacket>) {
        let Some(pend) = self.pending.take() else {
            return;
        };
        let gap_before = std::mem::take(&mut self.gap);
        let Some((_, codec)) = self.video else {
            return;
        };
        let b = &pend.buf;
        if b.len() < 9 || b[0] != 0 || b[1] != 0 || b[2] != 1 {
            trace!(len = b.len(), "dropping PES without start code");
            self.gap = true;
            return;
        }
        let flags = b[7];
        let hlen = usize::from(b[8]);
        if b.len() < 9 + hlen {
            self.gap = true;
            return;
        }
        let pts = if flags & 0x80 != 0 && hlen >= 5 {
            Some(read_timestamp(&b[9..14]))
        } else {
            None
        };
        let data = b[9 + hlen..].to_vec();
        let is_key = pend.random_access || annexb_has_keyframe(codec, &data);
        out.push(EsPacket {
            codec,
            pts,
            data,
            is_key,
            corrupt: pend.corrupt,
            gap_before,
        });
    }

    fn parse_pat(&mut self, payload: &[u8]) {
        let Some(section) = psi_section(payload, 0x00) else {
            return;
        };
        // Program loop: 4 bytes per entry; program 0 is the network PID.
        for entry in section[8..section.len() - 4].chunks_exact(4) {
            let program = u16::from_be_bytes([entry[0], entry[1]]);
            let pid = (u16::from(entry[2] & 0x1F) << 8) | u16::from(entry[3]);
            if program != 0 {
                if self.pmt_pid != Some(pid) {
                    trace!(pid, "PMT PID from PAT");
                }
                self.pmt_pid = Some(pid);
                return;
            }
        }
    }

    fn parse_pmt(&mut self, payload: &[u8]) {
        let Some(s) = psi_section(payload, 0x02) else {
            return;
        };
        let end = s.len() - 4;
        if end < 12 {
            return;
        }
        let info_len = usize::from(u16::from_be_bytes([s[10] & 0x0F, s[11]]));
        let mut i = 12 + info_len;
        while i + 5 <= end {
            let stream_type = s[i];
            let pid = (u16::from(s[i + 1] & 0x1F) << 8) | u16::from(s[i + 2]);
            let es_len = usize::from(u16::from_be_bytes([s[i + 3] & 0x0F, s[i + 4]]));
            let desc = s.get(i + 5..(i + 5 + es_len).min(end)).unwrap_or(&[]);
            if let Some(codec) = StreamCodec::from_pmt(stream_type, desc) {
                if self.video != Some((pid, codec)) {
                    trace!(pid, ?codec, "video stream from PMT");
                    self.pending = None;
                    self.last_cc = None;
                }
                self.video = Some((pid, codec));
                return;
            }
            i += 5 + es_len;
        }
    }
}

/// Extracts a whole PSI section with CRC check from a PUSI payload (single packet only).
fn psi_section(payload: &[u8], table_id: u8) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let s = payload.get(1 + pointer..)?;
    if s.len() < 3 || s[0] != table_id {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([s[1] & 0x0F, s[2]]));
    let s = s.get(..3 + len)?;
    if len < 9 || crc32_mpeg2(&s[..s.len() - 4]).to_be_bytes() != s[s.len() - 4..] {
        return None;
    }
    Some(s)
}

fn read_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1 & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

#[cfg(test)]
mod tests {
    use super::super::Muxer;
    use super::*;

    fn au(key: bool, n: usize) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, if key { 0x65 } else { 0x41 }];
        v.extend((0..n).map(|i| (i % 251) as u8 | 1));
        v
    }

    fn mux_segment(m: &mut Muxer, frames: &[(bool, usize, i64)]) -> Vec<u8> {
        let mut out = Vec::new();
        m.write_tables(&mut out);
        for &(key, n, pts) in frames {
            m.write_video(&mut out, &au(key, n), pts, pts, key);
        }
        out
    }

    #[test]
    fn roundtrip_in_one_byte_chunks_and_whole() {
        let mut m = Muxer::new();
        // Sizes chosen to hit the 0/1/2-byte padding edge cases.
        let frames = [
            (true, 5000, 0),
            (false, 168, 3000),
            (false, 167, 6000),
            (false, 1, 9000),
        ];
        let seg = mux_segment(&mut m, &frames);
        assert_eq!(seg.len() % TS_PACKET, 0);
        for chunk in [1usize, 7, 188, seg.len()] {
            let mut d = Demuxer::new();
            let mut out = Vec::new();
            for c in seg.chunks(chunk) {
                d.push(c, &mut out);
            }
            d.end_segment(&mut out);
            assert_eq!(out.len(), frames.len(), "chunk {chunk}");
            for (got, &(key, n, pts)) in out.iter().zip(&frames) {
                assert_eq!(got.pts, Some(pts as u64));
                assert_eq!(got.is_key, key);
                assert!(!got.corrupt);
                // The muxer prepends an AUD.
                assert_eq!(&got.data[6..], &au(key, n)[..]);
            }
            assert_eq!(d.cc_errors, 0);
            assert_eq!(d.skipped_bytes, 0);
        }
    }

    #[test]
    fn lost_packet_marks_corrupt_and_garbage_resyncs() {
        let mut m = Muxer::new();
        let seg = mux_segment(&mut m, &[(true, 2000, 0), (false, 100, 3000)]);
        // Drop the 4th packet (inside the first PES), and prepend garbage.
        let mut damaged = vec![0x12, 0x47, 0x00, 0x99];
        damaged.extend_from_slice(&seg[..3 * TS_PACKET]);
        damaged.extend_from_slice(&seg[4 * TS_PACKET..]);
        let mut d = Demuxer::new();
        let mut out = Vec::new();
        d.push(&damaged, &mut out);
        d.end_segment(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].corrupt);
        assert!(!out[1].corrupt);
        assert!(d.cc_errors >= 1);
        assert!(d.skipped_bytes >= 4);
        assert!(out[0].gap_before, "garbage before the first unit");
        assert!(!out[1].gap_before);
    }

    #[test]
    fn concatenated_muxer_outputs_lose_no_unit() {
        // Two muxer runs back to back in one segment, as FFmpeg's segment muxer produces
        // them: each starts with tables and continuity counters from zero.
        let mut a = Muxer::new();
        let mut b = Muxer::new();
        let mut seg = mux_segment(
            &mut a,
            &[(true, 3000, 0), (false, 500, 3000), (false, 700, 6000)],
        );
        seg.extend(mux_segment(
            &mut b,
            &[(true, 2000, 9000), (false, 400, 12000)],
        ));
        let mut d = Demuxer::new();
        let mut out = Vec::new();
        d.push(&seg, &mut out);
        d.end_segment(&mut out);
        let pts: Vec<_> = out.iter().map(|p| p.pts).collect();
        assert_eq!(
            pts,
            [Some(0), Some(3000), Some(6000), Some(9000), Some(12000)]
        );
        assert!(out.iter().all(|p| !p.corrupt && !p.gap_before), "{out:?}");
        assert_eq!(d.cc_errors, 0);
    }

    #[test]
    fn pure_garbage_yields_nothing() {
        let mut d = Demuxer::new();
        let mut out = Vec::new();
        let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 256) as u8).collect();
        d.push(&garbage, &mut out);
        d.end_segment(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn random_mutations_never_panic() {
        let mut m = Muxer::new();
        let seg = mux_segment(
            &mut m,
            &[(true, 3000, 0), (false, 700, 3000), (false, 90, 6000)],
        );
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..300 {
            let mut bytes = seg.clone();
            for _ in 0..(next() % 40) {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            let cut = (next() as usize) % bytes.len();
            bytes.truncate(cut.max(1));
            let mut d = Demuxer::new();
            let mut out = Vec::new();
            for c in bytes.chunks(1 + (next() as usize) % 400) {
                d.push(c, &mut out);
            }
            d.end_segment(&mut out);
            assert!(out.len() <= 3 + bytes.len() / TS_PACKET);
        }
    }

    #[test]
    fn timestamps_wrap_33_bits() {
        let mut m = Muxer::new();
        let big = (1i64 << 33) + 5;
        let seg = mux_segment(&mut m, &[(true, 10, big)]);
        let mut d = Demuxer::new();
        let mut out = Vec::new();
        d.push(&seg, &mut out);
        d.end_segment(&mut out);
        assert_eq!(out[0].pts, Some(5));
    }
}
