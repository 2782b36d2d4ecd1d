//! A source that makes its frames: what tests, examples and benchmarks use where a camera would
//! be and none is attached (a live flood of one photo, a camera that goes away after N frames, a
//! soak over re-decoded JPEGs).

use image::RgbImage;

use super::{now_ms, FailedFrame, Frame, FrameSource};

/// Frames made by a function of their index, `total` of them, then the source ends (as a camera
/// that is unplugged does). Not live unless [`Synthetic::live`] says so.
pub struct Synthetic {
    make: Box<dyn FnMut(u64) -> RgbImage>,
    next: u64,
    total: u64,
    live: bool,
    name: String,
}

impl Synthetic {
    /// `total` frames, frame `i` being `make(i)`.
    pub fn new(total: u64, make: impl FnMut(u64) -> RgbImage + 'static) -> Self {
        Synthetic {
            make: Box::new(make),
            next: 0,
            total,
            live: false,
            name: "synthetic".into(),
        }
    }

    /// `total` copies of `image`.
    pub fn repeating(image: RgbImage, total: u64) -> Self {
        Self::new(total, move |_| image.clone())
    }

    /// Flags the frames as arriving in real time, like a camera's: the pipeline may then drop
    /// stale ones.
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    /// The frames' `source` (default `synthetic`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

impl FrameSource for Synthetic {
    fn next_frame(&mut self) -> Option<Result<Frame, FailedFrame>> {
        if self.next >= self.total {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let timestamp_ms = now_ms();
        Some(Ok(Frame {
            rgb: (self.make)(index),
            index,
            timestamp_ms,
            time_s: timestamp_ms as f64 / 1000.0,
            source: self.name.clone(),
        }))
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn len_hint(&self) -> Option<u64> {
        (!self.live).then_some(self.total)
    }

    fn describe(&self) -> String {
        format!(
            "{} {} frames{}",
            self.total,
            self.name,
            if self.live { " (live)" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_each_frame_from_its_index_then_ends() {
        let mut s = Synthetic::new(3, |i| RgbImage::from_pixel(2, 1, image::Rgb([i as u8; 3])));
        assert!(!s.is_live());
        assert_eq!(s.len_hint(), Some(3));
        let firsts: Vec<(u64, u8)> = std::iter::from_fn(|| s.next_frame())
            .map(|f| f.unwrap())
            .map(|f| (f.index, f.rgb.get_pixel(1, 0)[0]))
            .collect();
        assert_eq!(firsts, [(0, 0), (1, 1), (2, 2)]);
        assert!(s.next_frame().is_none());
        let live = Synthetic::repeating(RgbImage::new(1, 1), 1)
            .live()
            .named("camera:test");
        assert!(live.is_live() && live.len_hint().is_none());
        assert_eq!(live.describe(), "1 camera:test frames (live)");
    }
}
