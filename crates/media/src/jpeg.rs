//! JPEG in and out, straight between JPEG's own YCbCr and the planes the video codecs use:
//! no RGB anywhere.
//!
//! libjpeg-turbo (built from source with its SIMD code) does the work: it decodes 4:2:0
//! JPEGs to planar YCbCr and encodes planar YCbCr, at about half the cost of FFmpeg's mjpeg
//! codec. JPEG's YCbCr is full range, which is FFmpeg's `yuvj420p`, so pictures pass between
//! the two libraries without conversion. JPEGs libjpeg-turbo will not take on this path
//! (other subsamplings, greyscale, CMYK, odd sizes, or damaged data it rejects) go to
//! FFmpeg's mjpeg decoder, which also salvages what it can from truncated files.

use bytes::Bytes;
use ffmpeg_next::codec::{self, Id};
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{Packet, decoder, frame};
use turbojpeg::{Colorspace, Compressor, Decompressor, Subsamp, YuvImage, YuvPlanesImage};

use crate::codec::{Converter, init};
use crate::error::MediaError;
use crate::frame::Yuv420Frame;

/// Decodes single JPEG images to full-range YUV pictures.
pub(crate) struct JpegDecoder {
    turbo: Option<Decompressor>,
    /// Opened on first use: most streams never need it.
    ffmpeg: Option<decoder::Video>,
    /// libjpeg-turbo's packed output, reused across pictures.
    packed: Vec<u8>,
}

impl JpegDecoder {
    pub(crate) fn new() -> Result<Self, MediaError> {
        init();
        Ok(Self {
            turbo: Decompressor::new().ok(),
            ffmpeg: None,
            packed: Vec::new(),
        })
    }

    /// Decodes one JPEG. 4:2:0 JPEGs come back as `yuvj420p`; others keep the pixel format
    /// FFmpeg's decoder gives them (often another yuvj4xxp).
    pub(crate) fn decode(&mut self, jpeg: &[u8]) -> Result<frame::Video, MediaError> {
        if let Some(pic) = self.decode_turbo(jpeg) {
            return Ok(pic);
        }
        self.decode_ffmpeg(jpeg)
    }

    /// The libjpeg-turbo path; `None` when this JPEG is not for it.
    fn decode_turbo(&mut self, jpeg: &[u8]) -> Option<frame::Video> {
        let turbo = self.turbo.as_mut()?;
        let h = turbo.read_header(jpeg).ok()?;
        let (w, ht) = (h.width, h.height);
        if h.subsamp != Subsamp::Sub2x2
            || h.colorspace != Colorspace::YCbCr
            || h.is_lossless
            || w == 0
            || ht == 0
            || w % 2 != 0
            || ht % 2 != 0
            || w > 16_384
            || ht > 16_384
        {
            return None;
        }
        let len = turbojpeg::yuv_pixels_len(w, 1, ht, Subsamp::Sub2x2).ok()?;
        self.packed.resize(len, 0);
        let out = YuvImage {
            pixels: &mut self.packed[..],
            width: w,
            align: 1,
            height: ht,
            subsamp: Subsamp::Sub2x2,
        };
        turbo.decompress_to_yuv(jpeg, out).ok()?;
        let (cw, ch) = (w / 2, ht / 2);
        let (y, rest) = self.packed.split_at(w * ht);
        let (u, v) = rest.split_at(cw * ch);
        let mut pic = frame::Video::new(Pixel::YUVJ420P, w as u32, ht as u32);
        copy_plane(&mut pic, 0, y, w, ht);
        copy_plane(&mut pic, 1, u, cw, ch);
        copy_plane(&mut pic, 2, &v[..cw * ch], cw, ch);
        Some(pic)
    }

    fn decode_ffmpeg(&mut self, jpeg: &[u8]) -> Result<frame::Video, MediaError> {
        let dec = match self.ffmpeg.as_mut() {
            Some(d) => d,
            None => self.ffmpeg.insert(open_mjpeg_decoder()?),
        };
        let pkt = Packet::copy(jpeg);
        dec.send_packet(&pkt)
            .map_err(MediaError::ff("decode jpeg"))?;
        let mut f = frame::Video::empty();
        match dec.receive_frame(&mut f) {
            Ok(()) => Ok(f),
            Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
                Err(MediaError::NoPicture)
            }
            Err(e) => Err(MediaError::ff("decode jpeg")(e)),
        }
    }
}

fn open_mjpeg_decoder() -> Result<decoder::Video, MediaError> {
    let codec = decoder::find(Id::MJPEG).ok_or(MediaError::CodecUnavailable("mjpeg"))?;
    codec::Context::new_with_codec(codec)
        .decoder()
        .open_as(codec)
        .and_then(|d| d.video())
        .map_err(MediaError::ff("open mjpeg decoder"))
}

/// Copies `rows` rows of `width` bytes from a packed plane into plane `i` of `pic`.
fn copy_plane(pic: &mut frame::Video, i: usize, src: &[u8], width: usize, rows: usize) {
    let stride = pic.stride(i);
    let dst = pic.data_mut(i);
    if stride == width {
        dst[..width * rows].copy_from_slice(&src[..width * rows]);
        return;
    }
    for (d, s) in dst.chunks_mut(stride).zip(src.chunks(width)).take(rows) {
        d[..width].copy_from_slice(s);
    }
}

/// Encodes YUV pictures to baseline 4:2:0 JPEG with libjpeg-turbo.
///
/// Quality runs 1 (smallest) to 100 (best) on libjpeg's scale, the one image libraries and
/// browsers use (so quality 80 here is quality 80 there).
pub struct JpegEncoder {
    quality: u8,
    turbo: Option<Compressor>,
    conv: Converter,
    /// Full-range planes of the last limited-range picture, reused.
    full: [Vec<u8>; 3],
}

impl std::fmt::Debug for JpegEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JpegEncoder")
            .field("quality", &self.quality)
            .finish_non_exhaustive()
    }
}

impl JpegEncoder {
    /// An encoder at `quality` (clamped to 1..=100).
    pub fn new(quality: u8) -> Self {
        init();
        Self {
            quality: quality.clamp(1, 100),
            turbo: None,
            conv: Converter::default(),
            full: Default::default(),
        }
    }

    /// Encodes one packed yuv420p frame.
    pub fn encode(&mut self, frame: &Yuv420Frame) -> Result<Bytes, MediaError> {
        frame.validate()?;
        self.encode_ffmpeg(&frame.to_ffmpeg())
    }

    /// Encodes any FFmpeg picture. Full-range yuvj420p (what JPEG sources and full-range
    /// H.264 decode to) goes to the encoder as is; limited-range yuv420p (what most H.264
    /// streams decode to) has its range expanded here, in one pass over the planes; anything
    /// else goes through swscale first.
    pub(crate) fn encode_ffmpeg(&mut self, input: &frame::Video) -> Result<Bytes, MediaError> {
        let (w, h) = (input.width() as usize, input.height() as usize);
        if w == 0 || h == 0 {
            return Err(MediaError::InvalidFrame("empty picture".into()));
        }
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        if input.format() == Pixel::YUV420P {
            let planes = [
                plane(input, 0, w, h)?,
                plane(input, 1, cw, ch)?,
                plane(input, 2, cw, ch)?,
            ];
            for (i, (src, dst)) in planes.iter().zip(self.full.iter_mut()).enumerate() {
                let (pw, ph) = if i == 0 { (w, h) } else { (cw, ch) };
                dst.resize(pw * ph, 0);
                let stride = input.stride(i);
                for (row, out) in dst.chunks_exact_mut(pw).enumerate() {
                    let line = &src[row * stride..row * stride + pw];
                    if i == 0 {
                        expand_luma(line, out);
                    } else {
                        expand_chroma(line, out);
                    }
                }
            }
            let [y, u, v] = &self.full;
            let img = YuvPlanesImage {
                y_plane: &y[..],
                u_plane: &u[..],
                v_plane: &v[..],
                width: w,
                height: h,
                y_stride: w,
                u_stride: cw,
                v_stride: cw,
                subsamp: Subsamp::Sub2x2,
            };
            let turbo = compressor(&mut self.turbo, self.quality)?;
            return compress(turbo, &img);
        }
        let converted;
        let pic = if input.format() == Pixel::YUVJ420P {
            input
        } else {
            converted = self.conv.convert(input, Pixel::YUVJ420P)?;
            &converted
        };
        let planes = YuvPlanesImage {
            y_plane: plane(pic, 0, w, h)?,
            u_plane: plane(pic, 1, cw, ch)?,
            v_plane: plane(pic, 2, cw, ch)?,
            width: w,
            height: h,
            y_stride: pic.stride(0),
            u_stride: pic.stride(1),
            v_stride: pic.stride(2),
            subsamp: Subsamp::Sub2x2,
        };
        let turbo = compressor(&mut self.turbo, self.quality)?;
        compress(turbo, &planes)
    }
}

/// The encoder's libjpeg-turbo handle, created at first use.
fn compressor(slot: &mut Option<Compressor>, quality: u8) -> Result<&mut Compressor, MediaError> {
    if slot.is_none() {
        let mut t = Compressor::new().map_err(jpeg_err)?;
        t.set_quality(i32::from(quality)).map_err(jpeg_err)?;
        t.set_subsamp(Subsamp::Sub2x2).map_err(jpeg_err)?;
        *slot = Some(t);
    }
    slot.as_mut().ok_or(MediaError::Closed)
}

fn compress(turbo: &mut Compressor, img: &YuvPlanesImage<&[u8]>) -> Result<Bytes, MediaError> {
    let out = turbo.compress_yuv_planes_to_vec(img).map_err(jpeg_err)?;
    Ok(Bytes::from(out))
}

/// Limited-range luma (16..=235) to full range (0..=255), in 14-bit fixed point
/// (255 / 219 ≈ 19077 / 16384); written so the compiler vectorises it.
fn expand_luma(src: &[u8], dst: &mut [u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        let v = ((i32::from(*s) - 16) * 19_077 + 8_192) >> 14;
        *d = v.clamp(0, 255) as u8;
    }
}

/// Limited-range chroma (16..=240 around 128) to full range (255 / 224 ≈ 18651 / 16384).
fn expand_chroma(src: &[u8], dst: &mut [u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        let v = (((i32::from(*s) - 128) * 18_651 + 8_192) >> 14) + 128;
        *d = v.clamp(0, 255) as u8;
    }
}

/// Plane `i` of `pic`, checked to hold `rows` rows of `width` bytes at its stride, so the
/// library's own size assertions can never fire.
fn plane(pic: &frame::Video, i: usize, width: usize, rows: usize) -> Result<&[u8], MediaError> {
    let data = pic.data(i);
    let stride = pic.stride(i);
    if stride < width || data.len() < stride * (rows - 1) + width {
        return Err(MediaError::InvalidFrame(format!(
            "plane {i}: {} bytes at stride {stride} for {width}x{rows}",
            data.len()
        )));
    }
    Ok(data)
}

fn jpeg_err(e: turbojpeg::Error) -> MediaError {
    MediaError::Jpeg(e.to_string())
}

/// Decodes a JPEG file into a packed yuv420p frame.
pub fn decode_jpeg(jpeg: &[u8]) -> Result<Yuv420Frame, MediaError> {
    let mut dec = JpegDecoder::new()?;
    let pic = dec.decode(jpeg)?;
    let yuv = Converter::default().convert(&pic, Pixel::YUV420P)?;
    Ok(Yuv420Frame::from_ffmpeg(&yuv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Yuv420Frame;
    use crate::source::test_pattern;

    /// Mean absolute difference of two equally sized planes.
    fn mad(a: &[u8], b: &[u8]) -> f64 {
        let sum: u64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        sum as f64 / a.len().max(1) as f64
    }

    #[test]
    fn turbo_round_trip_keeps_the_picture_and_full_range() {
        let src = test_pattern(96, 64, 5);
        let mut enc = JpegEncoder::new(90);
        let jpeg = enc.encode(&src).expect("encode");
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG SOI marker");
        let mut dec = JpegDecoder::new().expect("decoder");
        assert!(
            dec.decode_turbo(&jpeg).is_some(),
            "4:2:0 JPEGs take the turbo path"
        );
        let pic = dec.decode(&jpeg).expect("decode");
        assert_eq!(
            pic.format(),
            Pixel::YUVJ420P,
            "4:2:0 JPEGs take the turbo path"
        );
        assert_eq!((pic.width(), pic.height()), (96, 64));
        // `decode` itself takes that path: its pixels are libjpeg-turbo's, which differ from
        // FFmpeg's decoder (another IDCT) on this picture.
        let turbo = dec.decode_turbo(&jpeg).expect("turbo");
        let ffmpeg = dec.decode_ffmpeg(&jpeg).expect("ffmpeg");
        let luma = |f: &frame::Video| -> Vec<u8> {
            let (w, stride) = (f.width() as usize, f.stride(0));
            f.data(0)
                .chunks(stride)
                .take(f.height() as usize)
                .flat_map(|r| r[..w].to_vec())
                .collect()
        };
        assert_eq!(luma(&pic), luma(&turbo));
        assert_ne!(luma(&pic), luma(&ffmpeg));
        let back = decode_jpeg(&jpeg).expect("decode_jpeg");
        assert!(mad(&back.y, &src.y) < 3.0, "luma drifted");
        assert!(mad(&back.u, &src.u) < 3.0, "chroma drifted");
    }

    #[test]
    fn quality_changes_the_size() {
        let src = test_pattern(128, 128, 9);
        let small = JpegEncoder::new(10).encode(&src).expect("q10").len();
        let large = JpegEncoder::new(95).encode(&src).expect("q95").len();
        assert!(small < large, "q10 {small} bytes, q95 {large} bytes");
    }

    #[test]
    fn other_subsamplings_and_damage_fall_back_to_ffmpeg() {
        // Re-encode a 4:2:0 JPEG as 4:4:4, which the turbo path leaves to FFmpeg.
        let jpeg420 = JpegEncoder::new(90)
            .encode(&test_pattern(64, 64, 1))
            .expect("encode");
        let rgb = turbojpeg::decompress(&jpeg420, turbojpeg::PixelFormat::RGB).expect("rgb");
        let jpeg444 = turbojpeg::compress(rgb.as_deref(), 90, Subsamp::None).expect("444");
        let mut dec = JpegDecoder::new().expect("decoder");
        assert!(
            dec.decode_turbo(&jpeg444).is_none(),
            "4:4:4 is left to FFmpeg"
        );
        let pic = dec.decode(&jpeg444).expect("4:4:4 decodes through FFmpeg");
        assert_ne!(pic.format(), Pixel::YUVJ420P);
        assert_eq!((pic.width(), pic.height()), (64, 64));
        // Garbage is an error, not a panic; the decoder keeps working afterwards.
        assert!(dec.decode(b"\xFF\xD8 not really a jpeg").is_err());
        assert!(dec.decode(&[]).is_err());
        assert_eq!(
            dec.decode(&jpeg420).expect("still decodes").format(),
            Pixel::YUVJ420P
        );
    }

    #[test]
    fn limited_range_pictures_are_expanded_like_swscale_does() {
        let mut src = Yuv420Frame::filled(64, 48, 0, 0, 0);
        for (i, p) in src.y.iter_mut().enumerate() {
            *p = (i % 256) as u8; // includes values outside 16..=235
        }
        for (i, p) in src.u.iter_mut().enumerate() {
            *p = (i * 7 % 256) as u8;
        }
        for (i, p) in src.v.iter_mut().enumerate() {
            *p = (255 - i * 3 % 256) as u8;
        }
        let limited = src.to_ffmpeg();
        assert_eq!(limited.format(), Pixel::YUV420P);
        let ours = JpegEncoder::new(95)
            .encode_ffmpeg(&limited)
            .expect("expanded here");
        let full = Converter::default()
            .convert(&limited, Pixel::YUVJ420P)
            .expect("swscale");
        let theirs = JpegEncoder::new(95)
            .encode_ffmpeg(&full)
            .expect("full range");
        let a = turbojpeg::decompress_to_yuv(&ours).expect("ours");
        let b = turbojpeg::decompress_to_yuv(&theirs).expect("theirs");
        assert_eq!(a.pixels.len(), b.pixels.len());
        assert!(
            mad(&a.pixels, &b.pixels) < 1.5,
            "range expansion differs from swscale"
        );
        // Black and white land on the ends of the full range.
        let mut y = [0u8; 2];
        expand_luma(&[16, 235], &mut y);
        assert_eq!(y, [0, 255]);
        let mut c = [0u8; 3];
        expand_chroma(&[16, 128, 240], &mut c);
        // 16 maps to 0.5 exactly: either neighbour is right.
        assert!(c[0] <= 1 && c[1] == 128 && c[2] == 255, "{c:?}");
    }
}
