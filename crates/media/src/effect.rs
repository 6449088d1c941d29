//! A cheap, visible, deterministic picture effect for test runners: it stands in for an AI
//! model so end-to-end tests can see that frames went through the runner and which prompt
//! they were processed with.

use crate::frame::Yuv420Frame;

/// FNV-1a: stable across runs and platforms, unlike `std`'s randomly seeded hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Tints the picture towards a colour and overlays a stripe pattern, both derived from a
/// hash of `prompt`, blended by `strength` (clamped to 0..=1). Strength 0 leaves the frame
/// unchanged; different prompts give different colours and stripe geometry.
pub fn apply_prompt_effect(frame: &mut Yuv420Frame, prompt: &str, strength: f32) {
    let s = if strength.is_nan() {
        0.0
    } else {
        strength.clamp(0.0, 1.0)
    };
    if s == 0.0 || frame.validate().is_err() {
        return;
    }
    let h = fnv1a(prompt);
    let tint_u = f32::from((h & 0xFF) as u8);
    let tint_v = f32::from(((h >> 8) & 0xFF) as u8);
    let period = 6 + ((h >> 16) % 26) as u32; // 6..=31 pixels
    let diagonal = (h >> 24) & 1 == 1;
    let vertical = (h >> 25) & 1 == 1;
    let amp = 48.0 * s;

    let w = frame.width;
    for (i, px) in frame.y.iter_mut().enumerate() {
        let (x, y) = (i as u32 % w, i as u32 / w);
        let coord = if diagonal {
            x + y
        } else if vertical {
            x
        } else {
            y
        };
        let delta = if (coord / period).is_multiple_of(2) {
            amp
        } else {
            -amp
        };
        *px = (f32::from(*px) + delta).round().clamp(0.0, 255.0) as u8;
    }
    let blend = 0.7 * s;
    for (plane, target) in [(&mut frame.u, tint_u), (&mut frame.v, tint_v)] {
        for px in plane.iter_mut() {
            let v = f32::from(*px);
            *px = (v + (target - v) * blend).round().clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Yuv420Frame {
        let mut f = Yuv420Frame::filled(w, h, 0, 128, 128);
        for (i, p) in f.y.iter_mut().enumerate() {
            *p = (i % 251) as u8;
        }
        f
    }

    #[test]
    fn zero_strength_is_identity() {
        let orig = gradient(33, 17);
        let mut f = orig.clone();
        apply_prompt_effect(&mut f, "a cat", 0.0);
        assert_eq!(f, orig);
        apply_prompt_effect(&mut f, "a cat", f32::NAN);
        assert_eq!(f, orig);
    }

    #[test]
    fn different_prompts_give_different_pixels() {
        let base = gradient(64, 64);
        let mut a = base.clone();
        let mut b = base.clone();
        apply_prompt_effect(&mut a, "a cat", 1.0);
        apply_prompt_effect(&mut b, "a dog", 1.0);
        assert_ne!(a, base);
        assert_ne!(a.y, b.y);
        assert!(a.u != b.u || a.v != b.v);
    }

    #[test]
    fn same_prompt_is_deterministic_and_strength_scales() {
        let base = gradient(32, 32);
        let mut a = base.clone();
        let mut b = base.clone();
        apply_prompt_effect(&mut a, "x", 0.8);
        apply_prompt_effect(&mut b, "x", 0.8);
        assert_eq!(a, b);
        let diff = |f: &Yuv420Frame| -> u64 {
            f.y.iter()
                .zip(&base.y)
                .map(|(p, q)| u64::from(p.abs_diff(*q)))
                .sum()
        };
        let mut weak = base.clone();
        apply_prompt_effect(&mut weak, "x", 0.2);
        assert!(diff(&weak) > 0);
        assert!(diff(&weak) < diff(&a));
    }

    #[test]
    fn invalid_frame_is_left_alone() {
        let mut f = Yuv420Frame::filled(4, 4, 1, 2, 3);
        f.u.pop();
        let before = f.clone();
        apply_prompt_effect(&mut f, "p", 1.0);
        assert_eq!(f, before);
    }
}
