//! MPEG-TS packetisation of an H.264 elementary stream.

use super::{PAT_PID, SYNC, TS_PACKET, crc32_mpeg2};

const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x0100;
const PROGRAM: u16 = 1;
const STREAM_TYPE_H264: u8 = 0x1B;
const STREAM_ID_VIDEO: u8 = 0xE0;
/// Access unit delimiter NAL, which some players expect at the start of each H.264 PES.
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];

/// Writes PAT/PMT and H.264 PES packets. Continuity counters run across segments.
#[derive(Debug, Default)]
pub(crate) struct Muxer {
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
}

impl Muxer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// PAT + PMT: written at the start of every segment so each stands alone.
    pub(crate) fn write_tables(&mut self, out: &mut Vec<u8>) {
        let mut pat = vec![0x00, 0xB0, 0x00, 0x00, 0x01, 0xC1, 0x00, 0x00];
        pat.extend_from_slice(&PROGRAM.to_be_bytes());
        pat.extend_from_slice(&(0xE000 | PMT_PID).to_be_bytes());
        write_section(out, PAT_PID, &mut self.cc_pat, pat);

        let mut pmt = vec![0x02, 0xB0, 0x00];
        pmt.extend_from_slice(&PROGRAM.to_be_bytes());
        pmt.extend_from_slice(&[0xC1, 0x00, 0x00]);
        pmt.extend_from_slice(&(0xE000 | VIDEO_PID).to_be_bytes()); // PCR PID
        pmt.extend_from_slice(&[0xF0, 0x00]); // no program descriptors
        pmt.push(STREAM_TYPE_H264);
        pmt.extend_from_slice(&(0xE000 | VIDEO_PID).to_be_bytes());
        pmt.extend_from_slice(&[0xF0, 0x00]);
        write_section(out, PMT_PID, &mut self.cc_pmt, pmt);
    }

    /// Packetises one access unit (Annex B) with its 90 kHz timestamps.
    pub(crate) fn write_video(
        &mut self,
        out: &mut Vec<u8>,
        au: &[u8],
        pts: i64,
        dts: i64,
        is_key: bool,
    ) {
        let pts = (pts as u64) & 0x1_FFFF_FFFF;
        let dts = (dts as u64) & 0x1_FFFF_FFFF;
        let with_dts = pts != dts;
        let mut pes = Vec::with_capacity(au.len() + 32);
        pes.extend_from_slice(&[0, 0, 1, STREAM_ID_VIDEO, 0, 0]); // length patched below
        pes.push(0x80);
        if with_dts {
            pes.extend_from_slice(&[0xC0, 10]);
            push_timestamp(&mut pes, 0x3, pts);
            push_timestamp(&mut pes, 0x1, dts);
        } else {
            pes.extend_from_slice(&[0x80, 5]);
            push_timestamp(&mut pes, 0x2, pts);
        }
        if !au.starts_with(&AUD) {
            pes.extend_from_slice(&AUD);
        }
        pes.extend_from_slice(au);
        // A bounded PES length lets a demuxer hand the access unit on as soon as its last
        // byte arrives instead of waiting for the next one; 0 (unbounded) when too large.
        if let Ok(len) = u16::try_from(pes.len() - 6) {
            pes[4..6].copy_from_slice(&len.to_be_bytes());
        }

        let mut rest = &pes[..];
        let mut first = true;
        while !rest.is_empty() {
            // Adaptation field bytes after its length byte; `None` means no field at all.
            let mut af: Option<Vec<u8>> = None;
            if first {
                // Random-access flag on keyframes, PCR on every PES start.
                let flags = 0x10 | if is_key { 0x40 } else { 0 };
                af = Some(vec![
                    flags,
                    (dts >> 25) as u8,
                    (dts >> 17) as u8,
                    (dts >> 9) as u8,
                    (dts >> 1) as u8,
                    ((dts & 1) << 7) as u8 | 0x7E,
                    0x00,
                ]);
            }
            let overhead = af.as_ref().map_or(0, |a| 1 + a.len());
            let room = TS_PACKET - 4 - overhead;
            let take = rest.len().min(room);
            let pad = room - take;
            if pad > 0 {
                match af.as_mut() {
                    Some(a) => a.extend(std::iter::repeat_n(0xFF, pad)),
                    // One byte of padding is an adaptation field of length zero.
                    None if pad == 1 => af = Some(Vec::new()),
                    None => {
                        let mut a = vec![0x00];
                        a.extend(std::iter::repeat_n(0xFF, pad - 2));
                        af = Some(a);
                    }
                }
            }
            let start = out.len();
            out.push(SYNC);
            out.push(if first { 0x40 } else { 0x00 } | ((VIDEO_PID >> 8) as u8 & 0x1F));
            out.push(VIDEO_PID as u8);
            out.push(if af.is_some() { 0x30 } else { 0x10 } | self.cc_video);
            if let Some(a) = af {
                out.push(a.len() as u8);
                out.extend_from_slice(&a);
            }
            out.extend_from_slice(&rest[..take]);
            debug_assert_eq!(out.len() - start, TS_PACKET);
            self.cc_video = (self.cc_video + 1) & 0x0F;
            rest = &rest[take..];
            first = false;
        }
    }
}

fn push_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    out.push((prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1);
    out.push((ts >> 22) as u8);
    out.push((((ts >> 15) as u8) << 1) | 1);
    out.push((ts >> 7) as u8);
    out.push(((ts as u8) << 1) | 1);
}

/// Writes one PSI section (table id .. last byte before CRC, length patched here) into a
/// single TS packet padded with 0xFF.
fn write_section(out: &mut Vec<u8>, pid: u16, cc: &mut u8, mut section: Vec<u8>) {
    let len = section.len() - 3 + 4; // bytes after the length field, CRC included
    section[1] = 0xB0 | ((len >> 8) as u8 & 0x0F);
    section[2] = len as u8;
    let crc = crc32_mpeg2(&section);
    section.extend_from_slice(&crc.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(&[
        SYNC,
        0x40 | ((pid >> 8) as u8 & 0x1F),
        pid as u8,
        0x10 | *cc,
    ]);
    out.push(0); // pointer field
    out.extend_from_slice(&section);
    out.resize(start + TS_PACKET, 0xFF);
    *cc = (*cc + 1) & 0x0F;
}
