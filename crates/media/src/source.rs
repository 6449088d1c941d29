//! Picture sources for tools and tests: a generated test pattern that carries its own frame
//! index, and a video file decoded with FFmpeg.

use std::path::Path;

use ffmpeg_next::format::Pixel;
use ffmpeg_next::{Rational, format, media};

use crate::codec::{Converter, VideoDecoder, init};
use crate::error::MediaError;
use crate::frame::{CLOCK_HZ, Yuv420Frame};

/// Bits of frame index a test pattern carries.
const INDEX_BITS: u32 = 16;

/// Side of one index block: 16 blocks span at most the frame width, at most 32 pixels.
fn block_size(width: u32, height: u32) -> u32 {
    (width / INDEX_BITS).min(height / 4).min(32)
}

/// A test picture for frame `index`: a moving luma gradient, a bouncing bright square and
/// coloured chroma ramps, with `index` written in the top rows as 16 blocks (bright = 1,
/// dark = 0, most significant bit first) over a second row holding the complement, so the
/// index survives lossy coding and any effect that moves luma by less than ±100 and can be
/// read back with [`read_test_pattern_index`]. Frames narrower than 64 pixels carry no index.
pub fn test_pattern(width: u32, height: u32, index: u32) -> Yuv420Frame {
    let mut f = Yuv420Frame::filled(width, height, 0, 128, 128);
    let t = index;
    let side = (width.min(height) / 5).max(1);
    let (bx, by) = (
        (t * 7) % width.saturating_sub(side).max(1),
        (t * 5) % height.saturating_sub(side).max(1),
    );
    for y in 0..height {
        for x in 0..width {
            let mut v = 40 + (x + y * 2 + t * 3) % 150;
            if (bx..bx + side).contains(&x) && (by..by + side).contains(&y) {
                v = 220;
            }
            f.y[(y * width + x) as usize] = v as u8;
        }
    }
    let (cw, ch) = f.chroma_size();
    for y in 0..ch {
        for x in 0..cw {
            f.u[(y * cw + x) as usize] = (64 + (x * 128) / cw.max(1)) as u8;
            f.v[(y * cw + x) as usize] = (64 + (y * 128) / ch.max(1)) as u8;
        }
    }
    let b = block_size(width, height);
    if b >= 4 {
        for bit in 0..INDEX_BITS {
            let on = (index >> (INDEX_BITS - 1 - bit)) & 1 == 1;
            for (row, value) in [(0, on), (1, !on)] {
                for y in row * b..(row + 1) * b {
                    for x in bit * b..(bit + 1) * b {
                        f.y[(y * width + x) as usize] = if value { 235 } else { 16 };
                    }
                }
            }
        }
    }
    f
}

/// Reads the frame index written by [`test_pattern`]; `None` if the picture does not carry
/// one (too small, or the complement row disagrees).
pub fn read_test_pattern_index(f: &Yuv420Frame) -> Option<u32> {
    if f.validate().is_err() {
        return None;
    }
    let b = block_size(f.width, f.height);
    if b < 4 {
        return None;
    }
    // The mean of a block's interior, away from edge ringing.
    let mean = |bit: u32, row: u32| -> u32 {
        let m = b / 4;
        let (mut sum, mut n) = (0u32, 0u32);
        for y in row * b + m..(row + 1) * b - m {
            for x in bit * b + m..(bit + 1) * b - m {
                sum += u32::from(f.y[(y * f.width + x) as usize]);
                n += 1;
            }
        }
        sum / n.max(1)
    };
    let mut index = 0;
    for bit in 0..INDEX_BITS {
        let on = mean(bit, 0) > 128;
        if on == (mean(bit, 1) > 128) {
            return None;
        }
        index = (index << 1) | u32::from(on);
    }
    Some(index)
}

/// Decodes the first video stream of a media file (any container and codec the linked
/// FFmpeg reads) into yuv420p frames with 90 kHz timestamps. Blocking: use it on a thread
/// of its own, never on an async runtime worker.
pub struct FileSource {
    input: format::context::Input,
    stream: usize,
    time_base: Rational,
    dec: VideoDecoder,
    conv: Converter,
    eof: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl FileSource {
    /// Opens `path` and finds its best video stream.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        init();
        let input = format::input(path).map_err(MediaError::ff("open input file"))?;
        let stream = input
            .streams()
            .best(media::Type::Video)
            .ok_or(MediaError::NoPicture)?;
        let id = stream.parameters().id();
        let index = stream.index();
        let time_base = stream.time_base();
        let dec = VideoDecoder::with_parameters(id, stream.parameters())?;
        Ok(Self {
            input,
            stream: index,
            time_base,
            dec,
            conv: Converter::default(),
            eof: false,
        })
    }

    /// The next decoded frame and its timestamp in 90 kHz ticks, `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<(Yuv420Frame, Option<i64>)>, MediaError> {
        loop {
            if let Some(pic) = self.dec.receive() {
                let pic = if pic.format() == Pixel::YUV420P {
                    pic
                } else {
                    self.conv.convert(&pic, Pixel::YUV420P)?
                };
                let pts = pic.timestamp().or(pic.pts());
                return Ok(Some((Yuv420Frame::from_ffmpeg(&pic), pts)));
            }
            if self.eof {
                return Ok(None);
            }
            let mut next = None;
            for (s, mut pkt) in self.input.packets() {
                if s.index() == self.stream {
                    pkt.rescale_ts(self.time_base, Rational::new(1, CLOCK_HZ as i32));
                    next = Some(pkt);
                    break;
                }
            }
            match next {
                Some(pkt) => {
                    // A packet the decoder rejects costs its frame, not the file.
                    let _ = self.dec.send_packet(&pkt);
                }
                None => {
                    self.dec.send_eof();
                    self.eof = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_and_is_checked() {
        for (w, h) in [(512, 512), (128, 72), (64, 64)] {
            for i in [0, 1, 0xABCD, 0xFFFF] {
                let f = test_pattern(w, h, i);
                assert_eq!(read_test_pattern_index(&f), Some(i), "{w}x{h} {i}");
            }
        }
        assert_eq!(read_test_pattern_index(&test_pattern(32, 32, 5)), None);
        let flat = Yuv420Frame::filled(256, 256, 128, 128, 128);
        assert_eq!(read_test_pattern_index(&flat), None);
    }

    #[test]
    fn consecutive_patterns_differ() {
        assert_ne!(test_pattern(64, 64, 1).y, test_pattern(64, 64, 2).y);
    }
}
