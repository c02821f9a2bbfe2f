//! H.264 access units from GStreamer: a live test pattern or a file played in a loop. This is
//! what the GB28181 device simulator streams, so it produces what a camera does: Annex-B access
//! units at the real frame rate, SPS/PPS in front of every IDR (a receiver may join at any
//! keyframe), no B-frames from the test pattern.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;
use thiserror::Error;

use self::packages::{CORE, PLUGINS_BAD, PLUGINS_BASE, PLUGINS_UGLY};

/// Where the video comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `videotestsrc` encoded live by x264 (ultrafast, zero latency: no B-frames, no lookahead).
    TestPattern {
        width: u32,
        height: u32,
        fps: u32,
        /// Frames from one IDR to the next.
        keyframe_interval: u32,
    },
    /// Any container GStreamer can demux with H.264 inside (MP4, Matroska, MPEG-TS, …), played
    /// at its own frame rate and started again at its end, forever. Files with B-frames give
    /// access units in decode order with presentation timestamps.
    File(PathBuf),
}

/// One encoded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Annex-B, with SPS and PPS before each IDR.
    pub data: Vec<u8>,
    /// Presentation time at 90 kHz, from 0 at the first access unit and still increasing after
    /// a file starts over.
    pub pts_90k: u64,
    /// Contains an IDR picture.
    pub keyframe: bool,
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),
    #[error("GStreamer element {element} missing: install {package}")]
    MissingElement {
        element: &'static str,
        package: &'static str,
    },
    #[error("video file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid test pattern: {0}")]
    InvalidSpec(&'static str),
    #[error("GStreamer error from {element}: {message}{}", debug.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Pipeline {
        element: String,
        message: String,
        debug: Option<String>,
    },
    #[error("the test pattern ended")]
    Ended,
}

/// The Debian packages that provide the GStreamer elements this crate uses, named in
/// [`SourceError::MissingElement`]; every element list of the crate takes them from here.
pub(crate) mod packages {
    pub(crate) const CORE: &str = "libgstreamer1.0-0";
    pub(crate) const PLUGINS_BASE: &str = "gstreamer1.0-plugins-base";
    pub(crate) const PLUGINS_GOOD: &str = "gstreamer1.0-plugins-good";
    pub(crate) const PLUGINS_BAD: &str = "gstreamer1.0-plugins-bad";
    pub(crate) const PLUGINS_UGLY: &str = "gstreamer1.0-plugins-ugly";
    pub(crate) const LIBAV: &str = "gstreamer1.0-libav";
    pub(crate) const JETSON: &str = "nvidia-l4t-gstreamer";
    pub(crate) const ROCKCHIP: &str = "gstreamer-rockchip";
}

/// Each pipeline's elements, with the Debian package that provides them, checked before the
/// pipeline is built: gst_parse_launch would only say "no element x264enc".
const TEST_PATTERN_ELEMENTS: &[(&str, &str)] = &[
    ("videotestsrc", PLUGINS_BASE),
    ("x264enc", PLUGINS_UGLY),
    ("h264parse", PLUGINS_BAD),
    ("appsink", PLUGINS_BASE),
];
const FILE_ELEMENTS: &[(&str, &str)] = &[
    ("filesrc", CORE),
    ("parsebin", PLUGINS_BASE),
    ("h264parse", PLUGINS_BAD),
    ("appsink", PLUGINS_BASE),
];

/// The caps every access unit leaves with: h264parse turns whatever came in into Annex-B
/// access units, and `config-interval=-1` puts SPS/PPS before every IDR.
const OUTPUT: &str = "h264parse config-interval=-1 ! \
    video/x-h264,stream-format=byte-stream,alignment=au ! \
    appsink name=sink sync=true max-buffers=8";

/// How long `start` waits for a file to preroll, so that an unreadable file fails there.
const PREROLL_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(5);
/// How often `next_access_unit` looks at the bus while it waits for a sample.
const BUS_POLL: Duration = Duration::from_millis(20);

/// A running GStreamer pipeline ending in H.264 access units. Dropping it stops the pipeline.
#[derive(Debug)]
pub struct H264Source {
    pipeline: gst::Pipeline,
    sink: AppSink,
    bus: gst::Bus,
    looping: bool,
    /// 90 kHz timestamps: what is added to this loop's input times, the input time of this
    /// loop's first access unit, the last output time and the last frame duration.
    offset: u64,
    loop_start: Option<u64>,
    last_pts: Option<u64>,
    frame_duration: u64,
}

impl H264Source {
    /// Builds and starts the pipeline. For a file, waits until it has prerolled so that a
    /// missing, unreadable or non-video file is reported here.
    pub fn start(spec: SourceSpec) -> Result<Self, SourceError> {
        gst::init().map_err(|e| SourceError::Init(e.to_string()))?;
        let (description, elements) = match &spec {
            SourceSpec::TestPattern {
                width,
                height,
                fps,
                keyframe_interval,
            } => {
                if [width, height, fps, keyframe_interval].contains(&&0) {
                    return Err(SourceError::InvalidSpec(
                        "width, height, fps and keyframe_interval must be positive",
                    ));
                }
                let description = format!(
                    "videotestsrc is-live=true ! \
                     video/x-raw,width={width},height={height},framerate={fps}/1 ! \
                     x264enc tune=zerolatency speed-preset=ultrafast bframes=0 \
                     key-int-max={keyframe_interval} ! {OUTPUT}"
                );
                (description, TEST_PATTERN_ELEMENTS)
            }
            SourceSpec::File(path) => {
                check_regular_file(path)?;
                // The path is set as a property below, not spliced into the description,
                // where spaces and quotes would need escaping.
                let description = format!("filesrc name=src ! parsebin ! {OUTPUT}");
                (description, FILE_ELEMENTS)
            }
        };
        require(elements)?;
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| pipeline_error("pipeline", e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| pipeline_error("pipeline", "not a pipeline".into()))?;
        if let SourceSpec::File(path) = &spec {
            let src = pipeline
                .by_name("src")
                .ok_or_else(|| pipeline_error("pipeline", "no filesrc".into()))?;
            src.set_property("location", path.to_string_lossy().as_ref());
        }
        let sink = pipeline
            .by_name("sink")
            .and_downcast::<AppSink>()
            .ok_or_else(|| pipeline_error("pipeline", "no appsink".into()))?;
        let bus = pipeline
            .bus()
            .ok_or_else(|| pipeline_error("pipeline", "no bus".into()))?;
        // From here on, Drop stops the pipeline on every error path.
        let source = Self {
            pipeline,
            sink,
            bus,
            looping: matches!(spec, SourceSpec::File(_)),
            offset: 0,
            loop_start: None,
            last_pts: None,
            frame_duration: 3000,
        };
        let started = source.pipeline.set_state(gst::State::Playing);
        let prerolled = started.and_then(|_| source.pipeline.state(PREROLL_TIMEOUT).0);
        if prerolled.is_err() {
            let message = source.bus.pop_filtered(&[gst::MessageType::Error]);
            return Err(message
                .as_ref()
                .and_then(pipeline_error_from)
                .unwrap_or_else(|| pipeline_error("pipeline", "failed to start".into())));
        }
        Ok(source)
    }

    /// The next access unit, waiting up to `timeout`; `Ok(None)` if none came in time. A file
    /// that ends is started over; a pipeline error is returned (and the source is then done).
    pub fn next_access_unit(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<AccessUnit>, SourceError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.handle_bus()?;
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(BUS_POLL);
            let wait = gst::ClockTime::from_nseconds(wait.as_nanos() as u64);
            if let Some(unit) = self
                .sink
                .try_pull_sample(wait)
                .and_then(|sample| self.access_unit(&sample))
            {
                return Ok(Some(unit));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Errors end the source; the end of a file starts it over.
    fn handle_bus(&mut self) -> Result<(), SourceError> {
        // One filter for both: pop_filtered discards the messages it does not match.
        while let Some(message) = self
            .bus
            .pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos])
        {
            if let Some(error) = pipeline_error_from(&message) {
                return Err(error);
            }
            if !self.looping {
                return Err(SourceError::Ended);
            }
            // A flushing seek to 0 restarts at the first keyframe; the next loop's timestamps
            // continue one frame after the last one of this loop.
            self.pipeline
                .seek_simple(
                    gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                    gst::ClockTime::ZERO,
                )
                .map_err(|e| pipeline_error("pipeline", format!("seek to the start: {e}")))?;
            if let Some(last) = self.last_pts {
                self.offset = last + self.frame_duration;
            }
            self.loop_start = None;
        }
        Ok(())
    }

    /// `None` for a sample without a buffer or one that cannot be read.
    fn access_unit(&mut self, sample: &gst::Sample) -> Option<AccessUnit> {
        let buffer = sample.buffer()?;
        let data = buffer.map_readable().ok()?.as_slice().to_vec();
        if let Some(duration) = buffer.duration().map(to_90k).filter(|&d| d > 0) {
            self.frame_duration = duration;
        }
        let pts_90k = match buffer.pts().or(buffer.dts()).map(to_90k) {
            Some(input) => {
                let start = *self.loop_start.get_or_insert(input);
                self.offset + input.saturating_sub(start)
            }
            None => self.last_pts.map_or(0, |last| last + self.frame_duration),
        };
        self.last_pts = Some(pts_90k);
        Some(AccessUnit {
            data,
            pts_90k,
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        })
    }
}

impl Drop for H264Source {
    fn drop(&mut self) {
        // Nothing to do about a failure here: the pipeline is going away either way.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Rounded, not truncated: 1/30 s is 33333333 ns, which must come out as 3000 ticks.
fn to_90k(time: gst::ClockTime) -> u64 {
    ((u128::from(time.nseconds()) * 90_000 + 500_000_000) / 1_000_000_000) as u64
}

/// A video file must exist and be a regular file: GStreamer's filesrc says less about why not.
pub(crate) fn check_regular_file(path: &std::path::Path) -> Result<(), SourceError> {
    let file_error = |source| SourceError::File {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(file_error)?;
    if !metadata.is_file() {
        return Err(file_error(std::io::Error::other("not a regular file")));
    }
    Ok(())
}

/// The error an error message from the bus reports.
pub(crate) fn pipeline_error_from(message: &gst::Message) -> Option<SourceError> {
    let gst::MessageView::Error(error) = message.view() else {
        return None;
    };
    Some(SourceError::Pipeline {
        element: message
            .src()
            .map_or_else(|| "pipeline".into(), |src| src.name().to_string()),
        message: error.error().to_string(),
        debug: error.debug().map(|d| d.to_string()),
    })
}

/// A failure GStreamer did not report as an error message: an element that cannot be made or
/// linked, a missing pad or property.
pub(crate) fn pipeline_error(element: &str, message: String) -> SourceError {
    SourceError::Pipeline {
        element: element.into(),
        message,
        debug: None,
    }
}

/// The first element of `elements` that is not registered, named with the Debian package that
/// provides it: checked before a pipeline is built, where GStreamer would only say "no element
/// x264enc".
pub(crate) fn require(elements: &[(&'static str, &'static str)]) -> Result<(), SourceError> {
    match elements
        .iter()
        .find(|(element, _)| gst::ElementFactory::find(element).is_none())
    {
        Some(&(element, package)) => Err(SourceError::MissingElement { element, package }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_elements_name_their_package() {
        gst::init().unwrap();
        assert!(require(TEST_PATTERN_ELEMENTS).is_ok());
        assert!(require(FILE_ELEMENTS).is_ok());
        let error = require(&[
            ("appsink", PLUGINS_BASE),
            ("x265enc-nonesuch", "gst-nonesuch"),
        ])
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "GStreamer element x265enc-nonesuch missing: install gst-nonesuch"
        );
    }

    #[test]
    fn bad_specs_and_files_fail_at_start() {
        let zero_fps = SourceSpec::TestPattern {
            width: 64,
            height: 64,
            fps: 0,
            keyframe_interval: 10,
        };
        assert!(matches!(
            H264Source::start(zero_fps),
            Err(SourceError::InvalidSpec(_))
        ));
        let missing = H264Source::start(SourceSpec::File("/nonexistent/video.mp4".into()));
        assert!(
            matches!(&missing, Err(SourceError::File { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound),
            "{missing:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("not video.mp4");
        std::fs::write(&text, "this is not a video file\n".repeat(100)).unwrap();
        match H264Source::start(SourceSpec::File(text)) {
            Err(SourceError::Pipeline { message, .. }) => {
                assert!(!message.is_empty());
            }
            other => panic!("a text file started as video: {other:?}"),
        }
    }
}
