//! H.264 MP4 clips made from RGB frames: test inputs whose content is known to the pixel (a
//! sprite at a known place at a known time) and benchmark inputs with a known GOP, so tests of
//! decoding and of the skills need no video files in the repository.

use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSrc;
use gstreamer_video as gst_video;

use crate::source::SourceError;
use crate::source::packages::{CORE, PLUGINS_BAD, PLUGINS_BASE, PLUGINS_GOOD, PLUGINS_UGLY};
use crate::source::{pipeline_error, pipeline_error_from, require};

/// The clip's picture and GOP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames from one IDR to the next, exactly: scene-cut detection is off, so a benchmark
    /// knows how many keyframes a clip has.
    pub keyframe_interval: u32,
}

const CLIP_ELEMENTS: &[(&str, &str)] = &[
    ("appsrc", PLUGINS_BASE),
    ("videoconvert", PLUGINS_BASE),
    ("x264enc", PLUGINS_UGLY),
    ("h264parse", PLUGINS_BAD),
    ("mp4mux", PLUGINS_GOOD),
    ("filesink", CORE),
];

/// How long `finish` waits for the encoder and muxer to drain.
const FINISH_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(60);

/// Encodes RGB frames to an H.264 MP4. The file is complete only after [`finish`]
/// (dropping the writer stops it and leaves a file without its index).
///
/// [`finish`]: ClipWriter::finish
#[derive(Debug)]
pub struct ClipWriter {
    pipeline: gst::Pipeline,
    src: AppSrc,
    bus: gst::Bus,
    spec: ClipSpec,
    /// Bytes per row GStreamer expects: packed RGB rows are padded to 4 bytes.
    stride: usize,
    frames: u64,
}

impl ClipWriter {
    /// Starts the encoder writing to `path`. x264 ultrafast with zero latency and no B-frames:
    /// what cameras send, and fast enough to make test clips on the fly.
    pub fn create(path: impl AsRef<Path>, spec: ClipSpec) -> Result<Self, SourceError> {
        gst::init().map_err(|e| SourceError::Init(e.to_string()))?;
        if [spec.width, spec.height, spec.fps, spec.keyframe_interval].contains(&0) {
            return Err(SourceError::InvalidSpec(
                "width, height, fps and keyframe_interval must be positive",
            ));
        }
        require(CLIP_ELEMENTS)?;
        let info =
            gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, spec.width, spec.height)
                .fps(gst::Fraction::new(fps_i32(spec.fps), 1))
                .build()
                .map_err(|_| {
                    SourceError::InvalidSpec("width and height too large for raw video")
                })?;
        let caps = info
            .to_caps()
            .map_err(|e| pipeline_error("appsrc", e.to_string()))?;
        // I420 for the encoder: from RGB x264 would pick 4:4:4, which hardware decoders (the
        // point of benchmark clips) do not take.
        let description = format!(
            "appsrc name=src format=time block=true ! videoconvert ! video/x-raw,format=I420 ! \
             x264enc tune=zerolatency speed-preset=ultrafast bframes=0 \
             key-int-max={} option-string=scenecut=0 ! h264parse ! mp4mux ! filesink name=out",
            spec.keyframe_interval
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| pipeline_error("pipeline", e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| pipeline_error("pipeline", "not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_downcast::<AppSrc>()
            .ok_or_else(|| pipeline_error("pipeline", "no appsrc".into()))?;
        src.set_caps(Some(&caps));
        // A few frames queued at most: `push` waits for the encoder instead of buffering a
        // whole clip of raw video.
        src.set_max_bytes(4 * info.size() as u64);
        // The path is set as a property, not spliced into the description, where spaces and
        // quotes would need escaping.
        pipeline
            .by_name("out")
            .ok_or_else(|| pipeline_error("pipeline", "no filesink".into()))?
            .set_property("location", path.as_ref());
        let bus = pipeline
            .bus()
            .ok_or_else(|| pipeline_error("pipeline", "no bus".into()))?;
        // From here on, Drop stops the pipeline on every error path.
        let writer = Self {
            pipeline,
            src,
            bus,
            spec,
            stride: usize::try_from(info.stride()[0]).unwrap_or_default(),
            frames: 0,
        };
        if writer.pipeline.set_state(gst::State::Playing).is_err() {
            return Err(writer.error_or("failed to start"));
        }
        Ok(writer)
    }

    /// Appends one frame of packed RGB (`width * 3` bytes per row), timed at the clip's rate.
    pub fn push(&mut self, rgb: &[u8]) -> Result<(), SourceError> {
        let row = self.spec.width as usize * 3;
        if rgb.len() != row * self.spec.height as usize {
            return Err(SourceError::InvalidSpec(
                "an RGB frame must be width * height * 3 bytes",
            ));
        }
        let data = if self.stride == row {
            rgb.to_vec()
        } else {
            let mut padded = vec![0; self.stride * self.spec.height as usize];
            for (to, from) in padded
                .chunks_exact_mut(self.stride)
                .zip(rgb.chunks_exact(row))
            {
                to[..row].copy_from_slice(from);
            }
            padded
        };
        let mut buffer = gst::Buffer::from_mut_slice(data);
        let fps = u64::from(self.spec.fps);
        let at = |frame: u64| gst::ClockTime::SECOND.mul_div_floor(frame, fps);
        if let Some(buffer) = buffer.get_mut() {
            buffer.set_pts(at(self.frames));
            buffer.set_duration(
                at(self.frames + 1)
                    .zip(at(self.frames))
                    .map(|(end, start)| end - start),
            );
        }
        self.frames += 1;
        self.src
            .push_buffer(buffer)
            .map_err(|flow| self.error_or(&format!("push: {flow:?}")))?;
        Ok(())
    }

    /// Ends the stream and waits until the MP4 is complete on disk.
    pub fn finish(self) -> Result<(), SourceError> {
        self.src
            .end_of_stream()
            .map_err(|flow| self.error_or(&format!("end of stream: {flow:?}")))?;
        let message = self.bus.timed_pop_filtered(
            FINISH_TIMEOUT,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        match message.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => Ok(()),
            Some(_) => Err(message
                .as_ref()
                .and_then(pipeline_error_from)
                .unwrap_or_else(|| pipeline_error("pipeline", "failed".into()))),
            None => Err(pipeline_error(
                "pipeline",
                format!("not finished within {FINISH_TIMEOUT}"),
            )),
        }
    }

    /// The error on the bus that explains a failure, else `what`.
    fn error_or(&self, what: &str) -> SourceError {
        self.bus
            .pop_filtered(&[gst::MessageType::Error])
            .as_ref()
            .and_then(pipeline_error_from)
            .unwrap_or_else(|| pipeline_error("pipeline", what.into()))
    }
}

impl Drop for ClipWriter {
    fn drop(&mut self) {
        // Nothing to do about a failure here: the pipeline is going away either way.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn fps_i32(fps: u32) -> i32 {
    i32::try_from(fps).unwrap_or(i32::MAX)
}

/// What is under the sprite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background<'a> {
    Fill([u8; 3]),
    /// Packed RGB of the scene's size.
    Image(&'a [u8]),
}

/// A moving picture over a background: the sprite's top-left corner is at `path`'s positions
/// at their times, in between on the straight line, before the first and after the last at
/// those. Positions may be partly or wholly outside the picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene<'a> {
    pub width: u32,
    pub height: u32,
    pub background: Background<'a>,
    /// Packed RGB, `sprite_width * sprite_height * 3` bytes.
    pub sprite: &'a [u8],
    pub sprite_width: u32,
    pub sprite_height: u32,
    /// `(time in seconds, x, y)`, in increasing time.
    pub path: &'a [(f64, f64, f64)],
}

impl Scene<'_> {
    /// The sprite's top-left corner at `t` seconds.
    pub fn sprite_position(&self, t: f64) -> (f64, f64) {
        let Some(&(first_t, first_x, first_y)) = self.path.first() else {
            return (0.0, 0.0);
        };
        if t <= first_t {
            return (first_x, first_y);
        }
        for pair in self.path.windows(2) {
            let ((t0, x0, y0), (t1, x1, y1)) = (pair[0], pair[1]);
            if t <= t1 {
                let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 1.0 };
                return (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f);
            }
        }
        self.path.last().map_or((0.0, 0.0), |&(_, x, y)| (x, y))
    }

    /// The picture at `t` seconds, packed RGB.
    pub fn render(&self, t: f64) -> Vec<u8> {
        let (width, height) = (self.width as usize, self.height as usize);
        let mut frame = match self.background {
            Background::Image(rgb) => rgb.to_vec(),
            Background::Fill(colour) => colour.repeat(width * height),
        };
        let (x, y) = self.sprite_position(t);
        let (x, y) = (x.round() as i64, y.round() as i64);
        let sprite_width = self.sprite_width as usize;
        for row in 0..self.sprite_height as i64 {
            let frame_y = y + row;
            if !(0..height as i64).contains(&frame_y) {
                continue;
            }
            // The part of this sprite row inside the picture.
            let from = (-x).clamp(0, sprite_width as i64) as usize;
            let to = (width as i64 - x).clamp(0, sprite_width as i64) as usize;
            if from >= to {
                continue;
            }
            let source = (row as usize * sprite_width + from) * 3;
            let target = (frame_y as usize * width + (x + from as i64) as usize) * 3;
            let len = (to - from) * 3;
            frame[target..target + len].copy_from_slice(&self.sprite[source..source + len]);
        }
        frame
    }
}

/// The frames of `scene` at `fps` for `duration` (rounded to whole frames), frame `i` at
/// `i / fps` seconds, ready for [`ClipWriter::push`]. Checks the buffers' sizes first.
pub fn render_moving_sprite<'a>(
    scene: &'a Scene<'a>,
    fps: u32,
    duration: Duration,
) -> Result<impl Iterator<Item = Vec<u8>> + 'a, SourceError> {
    let pixels = |w: u32, h: u32| w as usize * h as usize * 3;
    if fps == 0 || scene.width == 0 || scene.height == 0 {
        return Err(SourceError::InvalidSpec(
            "fps, width and height must be positive",
        ));
    }
    if let Background::Image(rgb) = scene.background
        && rgb.len() != pixels(scene.width, scene.height)
    {
        return Err(SourceError::InvalidSpec(
            "the background must be width * height * 3 bytes",
        ));
    }
    if scene.sprite.len() != pixels(scene.sprite_width, scene.sprite_height) {
        return Err(SourceError::InvalidSpec(
            "the sprite must be sprite_width * sprite_height * 3 bytes",
        ));
    }
    let count = (duration.as_secs_f64() * f64::from(fps)).round() as u64;
    Ok((0..count).map(move |i| scene.render(i as f64 / f64::from(fps))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHITE: [u8; 3] = [255, 255, 255];

    #[test]
    fn the_sprite_moves_along_its_path_and_is_clipped_at_the_edges() {
        let sprite = WHITE.repeat(4);
        let scene = Scene {
            width: 4,
            height: 3,
            background: Background::Fill([0, 0, 255]),
            sprite: &sprite,
            sprite_width: 2,
            sprite_height: 2,
            path: &[(0.0, -1.0, -1.0), (1.0, 3.0, 1.0), (2.0, 3.0, 1.0)],
        };
        assert_eq!(scene.sprite_position(-5.0), (-1.0, -1.0));
        assert_eq!(scene.sprite_position(0.5), (1.0, 0.0));
        assert_eq!(scene.sprite_position(9.0), (3.0, 1.0));
        let white = |frame: &[u8]| -> Vec<usize> {
            frame
                .chunks(3)
                .enumerate()
                .filter(|(_, p)| *p == WHITE)
                .map(|(i, _)| i)
                .collect()
        };
        // Only the sprite's bottom-right pixel is inside at the start, and its left column
        // at the end.
        assert_eq!(white(&scene.render(0.0)), [0]);
        assert_eq!(white(&scene.render(0.5)), [1, 2, 5, 6]);
        assert_eq!(white(&scene.render(1.5)), [7, 11]);
        let frames: Vec<_> = render_moving_sprite(&scene, 10, Duration::from_millis(1000))
            .unwrap()
            .collect();
        assert_eq!(frames.len(), 10);
        assert_eq!(frames[5], scene.render(0.5));
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let scene = Scene {
            width: 4,
            height: 3,
            background: Background::Image(&[0; 5]),
            sprite: &[],
            sprite_width: 0,
            sprite_height: 0,
            path: &[],
        };
        assert!(render_moving_sprite(&scene, 10, Duration::from_secs(1)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let spec = ClipSpec {
            width: 4,
            height: 4,
            fps: 0,
            keyframe_interval: 1,
        };
        assert!(ClipWriter::create(dir.path().join("x.mp4"), spec).is_err());
    }
}
