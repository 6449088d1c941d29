//! Frame types that cross the crate boundary, free of FFmpeg types.

use bytes::Bytes;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame;

use crate::error::MediaError;

/// Clock rate of every timestamp in this crate: MPEG-TS's 90 kHz system clock.
pub const CLOCK_HZ: i64 = 90_000;

/// A planar YUV 4:2:0 picture (limited range, BT.601), tightly packed: no row padding.
///
/// Always limited range: full-range pictures inside the pipelines (JPEG input coded as
/// full-range H.264, decoded back as yuvj420p) are converted once, only when a
/// `Yuv420Frame` is asked for.
///
/// Chroma planes are `ceil(width/2) x ceil(height/2)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Yuv420Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma plane, `width * height` bytes.
    pub y: Vec<u8>,
    /// Cb plane, `chroma_width * chroma_height` bytes.
    pub u: Vec<u8>,
    /// Cr plane, same size as `u`.
    pub v: Vec<u8>,
}

impl Yuv420Frame {
    /// A frame filled with one colour.
    pub fn filled(width: u32, height: u32, y: u8, u: u8, v: u8) -> Self {
        let (cw, ch) = chroma_size(width, height);
        Self {
            width,
            height,
            y: vec![y; width as usize * height as usize],
            u: vec![u; cw as usize * ch as usize],
            v: vec![v; cw as usize * ch as usize],
        }
    }

    /// Width and height of the chroma planes.
    pub fn chroma_size(&self) -> (u32, u32) {
        chroma_size(self.width, self.height)
    }

    /// Checks that the plane lengths match the dimensions.
    pub fn validate(&self) -> Result<(), MediaError> {
        let (cw, ch) = self.chroma_size();
        let luma = self.width as usize * self.height as usize;
        let chroma = cw as usize * ch as usize;
        if self.width == 0 || self.height == 0 {
            return Err(MediaError::InvalidFrame("zero dimension".into()));
        }
        if self.y.len() != luma || self.u.len() != chroma || self.v.len() != chroma {
            return Err(MediaError::InvalidFrame(format!(
                "plane sizes {}/{}/{} do not match {}x{}",
                self.y.len(),
                self.u.len(),
                self.v.len(),
                self.width,
                self.height
            )));
        }
        Ok(())
    }

    /// Copies a yuv420p FFmpeg frame into packed planes.
    pub(crate) fn from_ffmpeg(f: &frame::Video) -> Self {
        let (w, h) = (f.width(), f.height());
        let (cw, ch) = chroma_size(w, h);
        Self {
            width: w,
            height: h,
            y: copy_plane(f, 0, w, h),
            u: copy_plane(f, 1, cw, ch),
            v: copy_plane(f, 2, cw, ch),
        }
    }

    /// Copies the planes into a new yuv420p FFmpeg frame.
    pub(crate) fn to_ffmpeg(&self) -> frame::Video {
        let mut f = frame::Video::new(Pixel::YUV420P, self.width, self.height);
        let (cw, ch) = self.chroma_size();
        fill_plane(&mut f, 0, &self.y, self.width, self.height);
        fill_plane(&mut f, 1, &self.u, cw, ch);
        fill_plane(&mut f, 2, &self.v, cw, ch);
        f
    }
}

/// Chroma plane size for 4:2:0 subsampling.
pub(crate) fn chroma_size(width: u32, height: u32) -> (u32, u32) {
    (width.div_ceil(2), height.div_ceil(2))
}

fn copy_plane(f: &frame::Video, plane: usize, w: u32, h: u32) -> Vec<u8> {
    let stride = f.stride(plane);
    let data = f.data(plane);
    let (w, h) = (w as usize, h as usize);
    if stride == w {
        // Unpadded rows (e.g. widths that are a multiple of FFmpeg's alignment): one copy.
        return data[..w * h].to_vec();
    }
    let mut out = Vec::with_capacity(w * h);
    for row in 0..h {
        out.extend_from_slice(&data[row * stride..row * stride + w]);
    }
    out
}

fn fill_plane(f: &mut frame::Video, plane: usize, src: &[u8], w: u32, h: u32) {
    let stride = f.stride(plane);
    let data = f.data_mut(plane);
    let (w, h) = (w as usize, h as usize);
    if stride == w {
        data[..w * h].copy_from_slice(&src[..w * h]);
        return;
    }
    for row in 0..h {
        data[row * stride..row * stride + w].copy_from_slice(&src[row * w..row * w + w]);
    }
}

/// One picture handed to the publisher, in any of the accepted encodings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum InputImage {
    /// A JPEG file's bytes (decoded with FFmpeg's mjpeg decoder).
    Jpeg(Bytes),
    /// Packed 8-bit RGB, `width * height * 3` bytes, no row padding.
    Rgb24 {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Pixel bytes.
        data: Bytes,
    },
    /// Already planar yuv420p.
    Yuv420(Yuv420Frame),
}

/// A picture plus its optional source timestamp.
#[derive(Clone, Debug)]
pub struct InputFrame {
    /// The picture.
    pub image: InputImage,
    /// Source presentation time in 90 kHz ticks; `None` means "use the wall clock".
    pub pts: Option<i64>,
}

impl InputFrame {
    /// A frame without a source timestamp.
    pub fn new(image: InputImage) -> Self {
        Self { image, pts: None }
    }

    /// A frame whose presentation time is given by the source (90 kHz ticks).
    pub fn with_pts(image: InputImage, pts: i64) -> Self {
        Self {
            image,
            pts: Some(pts),
        }
    }
}

/// A decoded picture from the output side.
#[derive(Clone, Debug)]
pub struct DecodedFrame {
    /// Presentation time in 90 kHz ticks, unwrapped (never jumps back by 2^33).
    pub pts: Option<i64>,
    /// Trickle sequence number of the segment this frame came from, if known.
    pub segment_seq: Option<u64>,
    /// The picture as yuv420p, present when the output format asks for it.
    pub yuv: Option<Yuv420Frame>,
    /// The picture as JPEG, present when the output format asks for it.
    pub jpeg: Option<Bytes>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}
