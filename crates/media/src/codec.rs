//! Thin synchronous wrappers over the FFmpeg codecs and scaler this crate uses.
//!
//! Everything here blocks and holds FFmpeg state that is not `Sync`; it runs on the
//! pipeline's own threads (or in tests), never on an async runtime worker.

use std::sync::Once;
use std::time::Duration;

use ffmpeg_next::codec::{self, Id};
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::{Dictionary, Packet, Rational, decoder, encoder, frame, picture, threading};

use crate::error::MediaError;
use crate::frame::CLOCK_HZ;

/// 90 kHz, the time base of every packet and frame timestamp here.
pub(crate) fn time_base() -> Rational {
    Rational::new(1, CLOCK_HZ as i32)
}

/// Initialises FFmpeg once per process and silences its stderr logging (a process-wide
/// setting): every failure also comes back as an error code, which this crate counts and
/// reports through `tracing`, so FFmpeg's own lines would only be noise around bad input.
pub(crate) fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Initialisation cannot fail on FFmpeg >= 4; the Result is kept by the binding only.
        let _ = ffmpeg_next::init();
        ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Quiet);
    });
}

/// Converts any decoded picture to a target pixel format at the same size, re-creating the
/// swscale context when the input format or size changes.
#[derive(Default)]
pub(crate) struct Converter {
    ctx: Option<scaling::Context>,
}

impl Converter {
    pub(crate) fn convert(
        &mut self,
        input: &frame::Video,
        target: Pixel,
    ) -> Result<frame::Video, MediaError> {
        let (fmt, w, h) = (input.format(), input.width(), input.height());
        let stale = self.ctx.as_ref().is_none_or(|c| {
            let i = c.input();
            let o = c.output();
            i.format != fmt || i.width != w || i.height != h || o.format != target
        });
        if stale {
            self.ctx = Some(
                scaling::Context::get(fmt, w, h, target, w, h, scaling::Flags::BILINEAR)
                    .map_err(MediaError::ff("create scaler"))?,
            );
        }
        let mut out = frame::Video::empty();
        // `stale` above guarantees the context exists.
        let ctx = self.ctx.as_mut().ok_or(MediaError::NoPicture)?;
        ctx.run(input, &mut out).map_err(MediaError::ff("scale"))?;
        out.set_pts(input.pts());
        Ok(out)
    }
}

/// How libx264 controls bitrate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateControl {
    /// Constant rate factor (0 best .. 51 worst).
    Crf(f32),
    /// Average bitrate in bits per second.
    Bitrate(u64),
}

/// libx264 settings for the publisher.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    /// x264 preset. Default `superfast`.
    pub preset: String,
    /// Rate control. Default `Crf(23.0)`.
    pub rate: RateControl,
    /// Nominal frame rate given to the encoder's rate control. Default 30.
    pub fps: u32,
    /// Media time between forced IDR frames. Default 2 s.
    pub keyframe_interval: Duration,
    /// Slice threads per encoder, 0 = libx264 chooses (1.5 x cores). Default 1: a gateway
    /// runs many streams at once, each with its own pipeline threads, and on a small machine
    /// one thread per encoder costs less CPU per frame than auto (`lpgw bench media
    /// --x264-threads`, docs/benchmarks.md); raise it for a single high-resolution stream.
    pub threads: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            preset: "superfast".into(),
            rate: RateControl::Crf(23.0),
            fps: 30,
            keyframe_interval: Duration::from_secs(2),
            threads: 1,
        }
    }
}

/// One encoded H.264 access unit.
pub(crate) struct EncodedPacket {
    pub(crate) data: Vec<u8>,
    pub(crate) pts: i64,
    pub(crate) dts: i64,
    pub(crate) is_key: bool,
}

/// libx264 with `tune=zerolatency`, no B-frames, repeated SPS/PPS on every IDR (no global
/// header) so every segment can be decoded on its own.
///
/// The encoder codes either limited-range yuv420p or full-range yuvj420p (JPEG sources), so
/// JPEG input needs no range conversion; the stream's VUI then says "full range" and
/// decoders hand back yuvj420p.
pub(crate) struct H264Encoder {
    enc: encoder::Video,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// `YUV420P` or `YUVJ420P`: pictures must arrive in this format.
    pub(crate) format: Pixel,
}

impl H264Encoder {
    /// Opens libx264 for `width` x `height` pictures in `format` (yuvj420p means full range;
    /// anything else is coded as limited-range yuv420p).
    pub(crate) fn new(
        cfg: &EncoderConfig,
        width: u32,
        height: u32,
        format: Pixel,
    ) -> Result<Self, MediaError> {
        init();
        let codec =
            encoder::find_by_name("libx264").ok_or(MediaError::CodecUnavailable("libx264"))?;
        let mut ctx = codec::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(MediaError::ff("libx264 context"))?;
        ctx.set_width(width);
        ctx.set_height(height);
        let format = if format == Pixel::YUVJ420P {
            ctx.set_color_range(ffmpeg_next::color::Range::JPEG);
            Pixel::YUVJ420P
        } else {
            ctx.set_color_range(ffmpeg_next::color::Range::MPEG);
            Pixel::YUV420P
        };
        ctx.set_format(format);
        ctx.set_time_base(time_base());
        ctx.set_frame_rate(Some(Rational::new(cfg.fps.max(1) as i32, 1)));
        ctx.set_max_b_frames(0);
        // Forced IDRs (by media time) do the real work; this cap only bounds the gap if the
        // source timestamps stall. It is generous because real rates often exceed the nominal
        // `fps` (a client sending 60 fps to a 24 fps stream, an unpaced benchmark): a tight cap
        // would add IDRs, which cost several P-frames' worth of encode, decode and bytes.
        let interval_frames = cfg.keyframe_interval.as_secs_f64() * f64::from(cfg.fps.max(1));
        ctx.set_gop((interval_frames.ceil() as u32).saturating_mul(8).max(1));
        ctx.set_threading(threading::Config {
            kind: threading::Type::Slice,
            count: cfg.threads,
            ..Default::default()
        });
        let mut opts = Dictionary::new();
        opts.set("preset", &cfg.preset);
        opts.set("tune", "zerolatency");
        opts.set("forced-idr", "1");
        match cfg.rate {
            RateControl::Crf(crf) => opts.set("crf", &crf.to_string()),
            RateControl::Bitrate(bps) => {
                ctx.set_bit_rate(bps as usize);
                ctx.set_max_bit_rate(bps as usize);
            }
        }
        let enc = ctx
            .open_as_with(codec, opts)
            .map_err(MediaError::ff("open libx264"))?;
        Ok(Self {
            enc,
            width,
            height,
            format,
        })
    }

    /// Sends one picture in [`Self::format`] at `pts` (90 kHz); `force_key` makes it an IDR.
    pub(crate) fn send(
        &mut self,
        pic: &mut frame::Video,
        pts: i64,
        force_key: bool,
    ) -> Result<(), MediaError> {
        pic.set_pts(Some(pts));
        pic.set_kind(if force_key {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.enc
            .send_frame(pic)
            .map_err(MediaError::ff("encode h264"))
    }

    /// Signals the end of input so the remaining packets can be drained.
    pub(crate) fn send_eof(&mut self) -> Result<(), MediaError> {
        self.enc.send_eof().map_err(MediaError::ff("flush h264"))
    }

    /// The next finished packet, if any.
    pub(crate) fn receive(&mut self) -> Option<EncodedPacket> {
        let mut pkt = Packet::empty();
        self.enc.receive_packet(&mut pkt).ok()?;
        let pts = pkt.pts().unwrap_or(0);
        Some(EncodedPacket {
            data: pkt.data().unwrap_or_default().to_vec(),
            pts,
            dts: pkt.dts().unwrap_or(pts),
            is_key: pkt.is_key(),
        })
    }
}

/// Decodes one video elementary stream with whichever FFmpeg decoder matches its codec.
pub(crate) struct VideoDecoder {
    dec: decoder::Video,
    pub(crate) id: Id,
}

impl VideoDecoder {
    pub(crate) fn new(id: Id) -> Result<Self, MediaError> {
        init();
        let codec = decoder::find(id).ok_or(MediaError::CodecUnavailable("video decoder"))?;
        let mut ctx = codec::Context::new_with_codec(codec);
        // Slice threads add no delay; frame threads would hold back one frame per thread.
        // No LOW_DELAY flag: it would break B-frame reordering, and zerolatency x264 streams
        // already signal "no reordering" in their VUI, so the decoder outputs at once.
        ctx.set_threading(threading::Config {
            kind: threading::Type::Slice,
            count: 0,
            ..Default::default()
        });
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(time_base());
        let dec = dec
            .open_as(codec)
            .and_then(|d| d.video())
            .map_err(MediaError::ff("open video decoder"))?;
        Ok(Self { dec, id })
    }

    /// A decoder set up from a demuxed stream's codec parameters (extradata, size), for
    /// containers that carry them out of band.
    pub(crate) fn with_parameters(
        id: Id,
        params: ffmpeg_next::codec::Parameters,
    ) -> Result<Self, MediaError> {
        init();
        let mut ctx = codec::Context::from_parameters(params)
            .map_err(MediaError::ff("video decoder parameters"))?;
        ctx.set_threading(threading::Config {
            kind: threading::Type::Slice,
            count: 0,
            ..Default::default()
        });
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(time_base());
        let dec = dec.video().map_err(MediaError::ff("open video decoder"))?;
        Ok(Self { dec, id })
    }

    /// Sends one demuxed packet whose timestamps are already in 90 kHz ticks.
    pub(crate) fn send_packet(&mut self, pkt: &Packet) -> Result<(), MediaError> {
        self.dec
            .send_packet(pkt)
            .map_err(MediaError::ff("decode video"))
    }

    /// Sends one access unit; errors mean the data was rejected (corrupt or unsupported).
    pub(crate) fn send(&mut self, data: &[u8], pts: Option<i64>) -> Result<(), MediaError> {
        let mut pkt = Packet::copy(data);
        pkt.set_pts(pts);
        pkt.set_dts(None);
        self.dec
            .send_packet(&pkt)
            .map_err(MediaError::ff("decode video"))
    }

    /// Signals end of stream so buffered pictures come out.
    pub(crate) fn send_eof(&mut self) {
        let _ = self.dec.send_eof();
    }

    /// The next decoded picture, if any.
    pub(crate) fn receive(&mut self) -> Option<frame::Video> {
        let mut f = frame::Video::empty();
        self.dec.receive_frame(&mut f).ok()?;
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Yuv420Frame;
    use crate::jpeg::{JpegDecoder, JpegEncoder, decode_jpeg};

    /// JPEG input stays full range through x264 (VUI says so) and back to JPEG without a
    /// range conversion, and the picture survives the trip.
    #[test]
    fn jpeg_round_trip_keeps_full_range() {
        let src = Yuv420Frame::filled(64, 64, 200, 90, 160);
        let jpeg = JpegEncoder::new(95).encode(&src).expect("encode jpeg");
        let pic = JpegDecoder::new()
            .expect("jpeg dec")
            .decode(&jpeg)
            .expect("decode");
        assert_eq!(pic.format(), Pixel::YUVJ420P);
        let cfg = EncoderConfig::default();
        let mut enc = H264Encoder::new(&cfg, 64, 64, pic.format()).expect("x264");
        assert_eq!(enc.format, Pixel::YUVJ420P);
        let mut dec = VideoDecoder::new(Id::H264).expect("h264 dec");
        let mut out = None;
        for i in 0..4 {
            if i < 3 {
                let mut p = pic.clone();
                enc.send(&mut p, i * 3000, i == 0).expect("send");
            } else {
                enc.send_eof().expect("eof");
            }
            while let Some(pkt) = enc.receive() {
                dec.send(&pkt.data, Some(pkt.pts)).expect("decode h264");
                while let Some(f) = dec.receive() {
                    out = Some(f);
                }
            }
        }
        let out = out.expect("a decoded picture");
        assert_eq!(
            out.format(),
            Pixel::YUVJ420P,
            "stream must signal full range"
        );
        let back = JpegEncoder::new(95).encode_ffmpeg(&out).expect("jpeg out");
        let y = decode_jpeg(&back).expect("decode output jpeg");
        // decode_jpeg returns limited range; compare with the source's luma (also limited).
        let mid = y.y[32 * 64 + 32];
        assert!(mid.abs_diff(200) <= 3, "luma {mid} != 200");
        assert!(y.u[16 * 32 + 16].abs_diff(90) <= 3);
        assert!(y.v[16 * 32 + 16].abs_diff(160) <= 3);
    }

    /// Frames arriving far faster than the nominal rate get no extra IDRs: keyframes follow
    /// media time (one per `keyframe_interval`), not the GOP cap.
    #[test]
    fn fast_input_gets_idrs_by_media_time_only() {
        let cfg = EncoderConfig {
            preset: "ultrafast".into(),
            fps: 24,
            threads: 1,
            ..EncoderConfig::default()
        };
        let mut enc = H264Encoder::new(&cfg, 64, 64, Pixel::YUV420P).expect("encoder");
        let mut keys = crate::segmenter::KeyframeClock::new(cfg.keyframe_interval);
        let mut key_frames = 0;
        // 300 pictures 1/400 s apart: 0.75 s of media, so one IDR (the first).
        for i in 0..300i64 {
            let mut pic = Yuv420Frame::filled(64, 64, (i % 200) as u8 + 16, 128, 128).to_ffmpeg();
            let pts = i * (CLOCK_HZ / 400);
            let force = keys.should_force(pts);
            enc.send(&mut pic, pts, force).expect("send");
            while let Some(p) = enc.receive() {
                key_frames += usize::from(p.is_key);
            }
        }
        assert_eq!(key_frames, 1);
    }

    #[test]
    fn limited_range_encoder_for_other_formats() {
        let enc = H264Encoder::new(&EncoderConfig::default(), 64, 64, Pixel::RGB24);
        assert_eq!(enc.expect("x264").format, Pixel::YUV420P);
    }
}
