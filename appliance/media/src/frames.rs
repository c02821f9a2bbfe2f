//! Decoded RGB frames from a camera (RTSP) or a file, for the skills: the part of the appliance
//! that pays for decoding, so it decodes as little as the skills need.
//!
//! Two things keep that cost down, both decided per camera in [`FrameSourceSpec`]:
//! - `keyframe_mode` drops non-key access units *before* the decoder, so a skill that looks
//!   once a second at a camera with a one-second GOP decodes 1 picture in 25 instead of all.
//!   [`KeyframeMode::Auto`] measures the GOP and does so only while the keyframes alone come
//!   at least once per sample interval, since a camera's GOP is not known in advance and may
//!   change;
//! - `sample_interval` drops decoded pictures *before* colour conversion and scaling, which are
//!   the next most expensive steps, and `width`/`height` scale to the model's size right after
//!   the decoder, before the conversion to RGB.
//!
//! The decoder is the platform's (Jetson, RK3588, VA-API, V4L2 stateless) when its GStreamer
//! element is installed, else libav's software decoder; see [`pick_decoder`].
//!
//! A live source delivers the newest frame: when the consumer is slower than the camera, older
//! frames are overwritten (and counted), so a skill never works on a backlog. A file delivers
//! every frame it decodes (after sampling) and goes as fast as the consumer takes them, so a dry
//! run gives the same frames on any machine.
//!
//! [`LiveFrames`] keeps a live source running across camera restarts and network failures.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSinkCallbacks};
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ps::VideoCodec;
use crate::source::SourceError;
use crate::source::packages::{
    CORE, JETSON, LIBAV, PLUGINS_BAD, PLUGINS_BASE, PLUGINS_GOOD, ROCKCHIP,
};
use crate::source::{check_regular_file, pipeline_error, pipeline_error_from, require};

/// Which decoder element to use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DecoderChoice {
    /// The platform's hardware decoder if its element is installed, else libav: see
    /// [`pick_decoder`].
    #[default]
    Auto,
    /// This GStreamer element, for a platform the automatic order gets wrong.
    Named(String),
}

/// Which access units reach the decoder. Decoding is the expensive step, and a keyframe is the
/// only picture that decodes without the ones before it, so skipping the others saves most of
/// the CPU when the skills look less often than keyframes come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyframeMode {
    /// Every access unit.
    #[default]
    All,
    /// Keyframes only, whatever the sampling: one picture per GOP.
    Keyframes,
    /// Every access unit until two keyframe intervals have been measured; from then on
    /// keyframes only while the measured interval is at most `sample_interval` (5 % over
    /// still counts: timestamps jitter), so the sampler still gets a frame per interval, and
    /// every access unit again while it is longer. Each change takes effect at a keyframe.
    Auto,
}

/// What to decode for one camera, and how much of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSourceSpec {
    /// `rtsp://` (also `rtsps://`, `rtspt://`), a `file://` URI or a plain file path.
    pub url: String,
    pub decoder: DecoderChoice,
    /// Whether non-key access units are dropped before the decoder.
    pub keyframe_mode: KeyframeMode,
    /// Scale to this size right after the decoder (the other dimension keeps the aspect ratio
    /// when only one is given).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// At most one frame per this much presentation time; zero delivers every decoded frame.
    pub sample_interval: Duration,
}

impl FrameSourceSpec {
    /// Every frame, full size, automatic decoder.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            decoder: DecoderChoice::Auto,
            keyframe_mode: KeyframeMode::All,
            width: None,
            height: None,
            sample_interval: Duration::ZERO,
        }
    }
}

/// One decoded picture.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Presentation time as the stream gives it (from 0 for a file).
    pub pts: Duration,
    pub width: u32,
    pub height: u32,
    /// Packed RGB, `width * 3` bytes per row, no padding.
    pub data: Vec<u8>,
    /// Decoded from a keyframe.
    pub keyframe: bool,
}

/// The pixels would flood a log; their length is what matters there.
impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("pts", &self.pts)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("data", &format_args!("[{} bytes]", self.data.len()))
            .field("keyframe", &self.keyframe)
            .finish()
    }
}

/// Where a source's frames went, counted since it started, and how it decodes now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct FrameStats {
    /// Access units that reached the decoder's input.
    pub frames_in: u64,
    /// Part of `frames_in`: keyframes.
    pub keyframes_in: u64,
    /// Non-key access units dropped before the decoder (see [`KeyframeMode`]).
    pub skipped_before_decode: u64,
    /// Pictures out of the decoder.
    pub decoded: u64,
    /// Frames handed to the consumer.
    pub delivered: u64,
    /// Decoded pictures not delivered: sampled out, or `overwritten`.
    pub dropped: u64,
    /// Part of `dropped`: frames of a live source replaced by a newer one before the consumer
    /// took them, i.e. the consumer is slower than the camera.
    pub overwritten: u64,
    /// Sum over decoded pictures of the wall time from the access unit entering the decoder to
    /// the picture leaving it. That is latency, not CPU time: a decoder that works on several
    /// frames at once (libav's frame threads on a file) counts its overlap more than once.
    pub decode_ms_total: f64,
    /// The longest of the last few intervals between keyframes, in presentation time: what
    /// [`KeyframeMode::Auto`] compares with the sample interval. The longest rather than a
    /// typical one because a single long GOP already leaves sample intervals without a
    /// keyframe. `None` until two keyframes have arrived.
    pub keyframe_interval_ms: Option<f64>,
    /// Non-key access units are being dropped before the decoder now.
    pub keyframes_only_now: bool,
}

impl FrameStats {
    /// Average time in the decoder per decoded picture.
    pub fn decode_ms_avg(&self) -> f64 {
        if self.decoded == 0 {
            0.0
        } else {
            self.decode_ms_total / self.decoded as f64
        }
    }

    /// Adds the counters of a later source; its state replaces this one's, except for an
    /// interval it has not measured yet: the camera's GOP is unlikely to change with a restart.
    fn add(&mut self, other: &FrameStats) {
        self.frames_in += other.frames_in;
        self.keyframes_in += other.keyframes_in;
        self.skipped_before_decode += other.skipped_before_decode;
        self.decoded += other.decoded;
        self.delivered += other.delivered;
        self.dropped += other.dropped;
        self.overwritten += other.overwritten;
        self.decode_ms_total += other.decode_ms_total;
        self.keyframe_interval_ms = other.keyframe_interval_ms.or(self.keyframe_interval_ms);
        self.keyframes_only_now = other.keyframes_only_now;
    }
}

/// What [`FrameSource::next_frame`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Frame(Frame),
    /// Nothing within the timeout; a live source may still deliver.
    Timeout,
    /// The file is finished (or the camera ended the stream): no frame will come.
    Ended,
}

/// Decoders in the order [`pick_decoder`] tries them: the first whose element is registered
/// wins. The hardware ones register only on their platform (VA-API and V4L2 stateless only
/// when a device exists), so on a PC without them this ends at libav. `nvv4l2decoder` and
/// `mppvideodec` take both codecs.
const H264_DECODERS: &[(&str, &str)] = &[
    ("nvv4l2decoder", JETSON),
    ("mppvideodec", ROCKCHIP),
    ("vah264dec", PLUGINS_BAD),
    ("v4l2slh264dec", PLUGINS_BAD),
    ("avdec_h264", LIBAV),
];
const H265_DECODERS: &[(&str, &str)] = &[
    ("nvv4l2decoder", JETSON),
    ("mppvideodec", ROCKCHIP),
    ("vah265dec", PLUGINS_BAD),
    ("v4l2slh265dec", PLUGINS_BAD),
    ("avdec_h265", LIBAV),
];
/// Jetson's decoder outputs NVMM (GPU) memory; this converts (and scales) into system memory.
const NVIDIA_CONVERTER: (&str, &str) = ("nvvidconv", JETSON);

/// Elements every pipeline needs, checked at start so a missing one is named with its package
/// (the parsers of both codecs, since the codec is only known once the stream is).
const COMMON_ELEMENTS: &[(&str, &str)] = &[
    ("h264parse", PLUGINS_BAD),
    ("h265parse", PLUGINS_BAD),
    ("videoscale", PLUGINS_BASE),
    ("videoconvert", PLUGINS_BASE),
    ("capsfilter", CORE),
    ("fakesink", CORE),
    ("appsink", PLUGINS_BASE),
];
const FILE_ELEMENTS: &[(&str, &str)] = &[("filesrc", CORE), ("parsebin", PLUGINS_BASE)];
const RTSP_ELEMENTS: &[(&str, &str)] = &[
    ("rtspsrc", PLUGINS_GOOD),
    ("rtph264depay", PLUGINS_GOOD),
    ("rtph265depay", PLUGINS_GOOD),
];

/// rtspsrc's jitter buffer: enough for a LAN camera over TCP, well under its 2 s default, which
/// would delay every frame a skill sees by that much.
const RTSP_LATENCY_MS: u32 = 200;
/// How long `start` waits for a file's first frame, so that an unreadable file fails there.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// What a probe returns to drop a buffer. gstreamer-rs has already taken the buffer out of the
/// probe info and frees it, which is "handled"; `Drop` would make GStreamer 1.22's chain
/// function unref the emptied pointer again (a CRITICAL per dropped buffer).
const DROP: gst::PadProbeReturn = gst::PadProbeReturn::Handled;
/// Access units remembered at the decoder's input to time them at its output: frames the
/// decoder drops without output must not pile up.
const IN_FLIGHT_MAX: usize = 256;
/// Keyframe intervals [`KeyframeMode::Auto`] decides on: after one long GOP it takes this many
/// keyframes to go back to keyframes only, so a camera whose GOP varies (the "smart" codecs
/// stretch it in a still scene) is not switched at every keyframe.
const KEYFRAME_INTERVALS: usize = 4;
/// How far, in percent, the keyframe interval may exceed the sample interval for
/// [`KeyframeMode::Auto`] still to decode keyframes only: a 1 s GOP measures 1000.3 ms.
const KEYFRAME_INTERVAL_TOLERANCE_PERCENT: u64 = 5;

/// The decoder element for `codec`. `Auto` takes the first registered one of the platform
/// order (Jetson, RK3588, VA-API, V4L2 stateless, libav); `Named` must be a registered decoder.
/// Needs GStreamer initialised (initialises it otherwise).
pub fn pick_decoder(codec: VideoCodec, choice: &DecoderChoice) -> Result<String, SourceError> {
    gst::init().map_err(|e| SourceError::Init(e.to_string()))?;
    let candidates = match codec {
        VideoCodec::H264 => H264_DECODERS,
        VideoCodec::H265 => H265_DECODERS,
    };
    match choice {
        DecoderChoice::Auto => {
            let (element, package) = candidates[candidates.len() - 1];
            candidates
                .iter()
                .find(|(element, _)| gst::ElementFactory::find(element).is_some())
                .map(|(element, _)| element.to_string())
                .ok_or(SourceError::MissingElement { element, package })
        }
        DecoderChoice::Named(name) => match gst::ElementFactory::find(name) {
            Some(factory) if factory.has_type(gst::ElementFactoryType::DECODER) => Ok(name.clone()),
            Some(_) => Err(pipeline_error(name, "not a decoder element".into())),
            None => {
                // A decoder we know comes with its package; any other name is a typo or a
                // plugin this machine lacks.
                let known = H264_DECODERS
                    .iter()
                    .chain(H265_DECODERS)
                    .find(|(element, _)| element == name);
                Err(match known {
                    Some(&(element, package)) => SourceError::MissingElement { element, package },
                    None => pipeline_error(name, "no such GStreamer element installed".into()),
                })
            }
        },
    }
}

/// A running decode pipeline ending in RGB frames. Dropping it stops the pipeline.
#[derive(Debug)]
pub struct FrameSource {
    pipeline: gst::Pipeline,
    shared: Arc<Shared>,
}

impl FrameSource {
    /// Builds and starts the pipeline. A file is checked here (missing, unreadable, no H.264 or
    /// H.265 video: an error) by waiting for its first frame; a live source only fails later,
    /// in [`next_frame`](Self::next_frame), since its camera may take a while to answer.
    pub fn start(spec: FrameSourceSpec) -> Result<Self, SourceError> {
        gst::init().map_err(|e| SourceError::Init(e.to_string()))?;
        if spec.width == Some(0) || spec.height == Some(0) {
            return Err(SourceError::InvalidSpec(
                "width and height must be positive",
            ));
        }
        let input = Input::parse(&spec.url)?;
        if let Input::File(path) = &input {
            check_regular_file(path)?;
        }
        require(COMMON_ELEMENTS)?;
        require(match input {
            Input::File(_) => FILE_ELEMENTS,
            Input::Rtsp(_) => RTSP_ELEMENTS,
        })?;
        // A named decoder is known now, so a wrong name fails here rather than at the first
        // access unit; the automatic choice waits for the codec.
        if let DecoderChoice::Named(_) = spec.decoder {
            pick_decoder(VideoCodec::H264, &spec.decoder)?;
        }

        let live = matches!(input, Input::Rtsp(_));
        let shared = Arc::new(Shared {
            live,
            frames_in: AtomicU64::new(0),
            keyframes_in: AtomicU64::new(0),
            skipped_before_decode: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            sampled_out: AtomicU64::new(0),
            overwritten: AtomicU64::new(0),
            decoding: Mutex::new(Decoding {
                in_flight: VecDeque::new(),
                total: Duration::ZERO,
                sampler: Sampler::new(spec.sample_interval),
            }),
            gate: Mutex::new(KeyframeGate::new(spec.keyframe_mode, spec.sample_interval)),
            output: Mutex::new(Output::default()),
            changed: Condvar::new(),
        });
        let pipeline = gst::Pipeline::new();
        let bus = pipeline
            .bus()
            .ok_or_else(|| pipeline_error("pipeline", "no bus".into()))?;
        // Errors and the end of stream go straight to the consumer's wait; every message is
        // dropped here, so none pile up on a bus nobody reads.
        let on_message = Arc::clone(&shared);
        bus.set_sync_handler(move |_, message| {
            match message.view() {
                gst::MessageView::Error(_) => {
                    if let Some(error) = pipeline_error_from(message) {
                        on_message.fail(error);
                    }
                }
                gst::MessageView::Eos(_) => {
                    lock(&on_message.output).ended = true;
                    on_message.changed.notify_all();
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
        // From here on, Drop stops the pipeline on every error path.
        let source = Self { pipeline, shared };
        let tail = source.build_tail(&spec)?;
        let demux = match &input {
            Input::File(path) => {
                let filesrc = make("filesrc")?;
                filesrc.set_property("location", path);
                let parsebin = make("parsebin")?;
                add_and_link(&source.pipeline, &[&filesrc, &parsebin])?;
                parsebin
            }
            Input::Rtsp(url) => {
                let rtspsrc = make("rtspsrc")?;
                rtspsrc.set_property("location", url.as_str());
                rtspsrc.set_property("latency", RTSP_LATENCY_MS);
                // Cameras' UDP is lost behind NAT and firewalls, and loses packets on busy
                // links; interleaved TCP just works.
                rtspsrc.set_property_from_str("protocols", "tcp");
                source
                    .pipeline
                    .add(&rtspsrc)
                    .map_err(|e| pipeline_error("pipeline", e.to_string()))?;
                rtspsrc
            }
        };
        let linker = Linker {
            pipeline: source.pipeline.downgrade(),
            shared: Arc::clone(&source.shared),
            tail,
            decoder: spec.decoder.clone(),
            width: spec.width,
            height: spec.height,
            linked: Mutex::new(false),
        };
        let linker = Arc::new(linker);
        let on_pad = Arc::clone(&linker);
        demux.connect_pad_added(move |_, pad| on_pad.pad_added(pad));
        demux.connect_no_more_pads(move |_| linker.no_more_pads());

        if source.pipeline.set_state(gst::State::Playing).is_err() {
            let error = lock(&source.shared.output).error.take();
            return Err(
                error.unwrap_or_else(|| pipeline_error("pipeline", "failed to start".into()))
            );
        }
        if !live {
            source.wait_for_first_frame()?;
        }
        Ok(source)
    }

    /// The next frame, waiting up to `timeout`. A pipeline error is returned once; the source
    /// is then [`Next::Ended`].
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Next, SourceError> {
        let deadline = Instant::now() + timeout;
        let mut output = lock(&self.shared.output);
        loop {
            if let Some(frame) = output.frame.take() {
                self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                // A file's streaming thread waits for the slot to empty.
                self.shared.changed.notify_all();
                return Ok(Next::Frame(frame));
            }
            if let Some(error) = output.error.take() {
                output.ended = true;
                return Err(error);
            }
            if output.ended {
                return Ok(Next::Ended);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Next::Timeout);
            }
            output = self
                .shared
                .changed
                .wait_timeout(output, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The counters so far; cheap enough to call per frame.
    pub fn stats(&self) -> FrameStats {
        let shared = &self.shared;
        let sampled_out = shared.sampled_out.load(Ordering::Relaxed);
        let overwritten = shared.overwritten.load(Ordering::Relaxed);
        let (keyframe_interval, keyframes_only_now) = {
            let gate = lock(&shared.gate);
            (gate.interval(), gate.keyframes_only)
        };
        FrameStats {
            frames_in: shared.frames_in.load(Ordering::Relaxed),
            keyframes_in: shared.keyframes_in.load(Ordering::Relaxed),
            skipped_before_decode: shared.skipped_before_decode.load(Ordering::Relaxed),
            decoded: shared.decoded.load(Ordering::Relaxed),
            delivered: shared.delivered.load(Ordering::Relaxed),
            dropped: sampled_out + overwritten,
            overwritten,
            decode_ms_total: lock(&shared.decoding).total.as_secs_f64() * 1000.0,
            keyframe_interval_ms: keyframe_interval.map(|ns| ns as f64 / 1e6),
            keyframes_only_now,
        }
    }

    /// `videoscale ! videoconvert ! RGB caps ! appsink`, in the pipeline from the start; the
    /// codec-dependent head is linked to it once the stream's caps are known. Scaling comes
    /// first: it is cheaper on the decoder's 4:2:0 than on RGB.
    fn build_tail(&self, spec: &FrameSourceSpec) -> Result<gst::Element, SourceError> {
        let scale = make("videoscale")?;
        let convert = make("videoconvert")?;
        let filter = make("capsfilter")?;
        filter.set_property(
            "caps",
            raw_caps(gst_video::VideoFormat::Rgb, spec.width, spec.height),
        );
        let sink = AppSink::builder()
            // Live: process now, not at the presentation time plus latency. A file: as fast
            // as the consumer takes frames.
            .sync(false)
            // The last sample would keep a decoded buffer out of its pool for nothing.
            .enable_last_sample(false)
            .build();
        // The callback takes every sample at once: the one-frame queue (newest wins when live,
        // wait when a file) is `Output::frame`, where overwritten frames can be counted.
        let shared = Arc::clone(&self.shared);
        sink.set_callbacks(
            AppSinkCallbacks::builder()
                .new_sample(move |sink| shared.on_sample(sink))
                .build(),
        );
        add_and_link(
            &self.pipeline,
            &[&scale, &convert, &filter, sink.upcast_ref()],
        )?;
        Ok(scale)
    }

    fn wait_for_first_frame(&self) -> Result<(), SourceError> {
        let deadline = Instant::now() + FIRST_FRAME_TIMEOUT;
        let mut output = lock(&self.shared.output);
        loop {
            if let Some(error) = output.error.take() {
                return Err(error);
            }
            if output.frame.is_some() || output.ended {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(pipeline_error(
                    "pipeline",
                    format!("no frame within {FIRST_FRAME_TIMEOUT:?}"),
                ));
            }
            output = self
                .shared
                .changed
                .wait_timeout(output, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for FrameSource {
    fn drop(&mut self) {
        // A file's streaming thread may be waiting for the consumer: release it first, or
        // stopping the pipeline would wait for it forever.
        lock(&self.shared.output).closing = true;
        self.shared.changed.notify_all();
        // Nothing to do about a failure here: the pipeline is going away either way.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Where the video comes from.
enum Input {
    Rtsp(String),
    File(PathBuf),
}

impl Input {
    fn parse(url: &str) -> Result<Self, SourceError> {
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            None => Ok(Self::File(PathBuf::from(url))),
            Some("rtsp" | "rtsps" | "rtspt") => Ok(Self::Rtsp(url.to_owned())),
            Some("file") => match gst::glib::filename_from_uri(url) {
                Ok((path, None)) => Ok(Self::File(path)),
                Ok((path, Some(host))) if host == "localhost" => Ok(Self::File(path)),
                _ => Err(SourceError::InvalidSpec(
                    "a file:// URI that names no local file",
                )),
            },
            Some(_) => Err(SourceError::InvalidSpec(
                "only rtsp:// URLs, file:// URIs and file paths are supported",
            )),
        }
    }
}

/// State shared with the streaming threads: the probes, the appsink callback and the bus.
#[derive(Debug)]
struct Shared {
    live: bool,
    frames_in: AtomicU64,
    keyframes_in: AtomicU64,
    skipped_before_decode: AtomicU64,
    decoded: AtomicU64,
    delivered: AtomicU64,
    sampled_out: AtomicU64,
    overwritten: AtomicU64,
    decoding: Mutex<Decoding>,
    /// Only the decoder's input probe changes it: one streaming thread, so the lock is free
    /// but for `stats`.
    gate: Mutex<KeyframeGate>,
    output: Mutex<Output>,
    /// Signalled on every change of `output`.
    changed: Condvar,
}

#[derive(Debug)]
struct Decoding {
    /// Presentation time (ns), arrival and keyframe flag of the access units in the decoder:
    /// the decoders do not carry the flag over to the picture.
    in_flight: VecDeque<(u64, Instant, bool)>,
    total: Duration,
    sampler: Sampler,
}

#[derive(Debug, Default)]
struct Output {
    /// The frame waiting for the consumer: at most one.
    frame: Option<Frame>,
    /// The first error; later ones are consequences of it.
    error: Option<SourceError>,
    ended: bool,
    closing: bool,
}

impl Shared {
    fn fail(&self, error: SourceError) {
        let mut output = lock(&self.output);
        if output.error.is_none() && !output.ended {
            output.error = Some(error);
        }
        drop(output);
        self.changed.notify_all();
    }

    /// Before the decoder, after the parser (which flags keyframes whatever the container
    /// said): counts access units and drops the non-key ones the [`KeyframeGate`] rejects.
    fn decoder_input(&self, info: &gst::PadProbeInfo) -> gst::PadProbeReturn {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        if keyframe {
            self.keyframes_in.fetch_add(1, Ordering::Relaxed);
        }
        let admitted = lock(&self.gate).admit(keyframe, buffer.pts().map(gst::ClockTime::nseconds));
        if !admitted {
            self.skipped_before_decode.fetch_add(1, Ordering::Relaxed);
            return DROP;
        }
        if let Some(pts) = buffer.pts() {
            let mut decoding = lock(&self.decoding);
            if decoding.in_flight.len() == IN_FLIGHT_MAX {
                decoding.in_flight.pop_front();
            }
            decoding
                .in_flight
                .push_back((pts.nseconds(), Instant::now(), keyframe));
        }
        gst::PadProbeReturn::Ok
    }

    /// After the decoder: times the picture, samples before any conversion is spent on a
    /// picture nobody will see, and flags the picture as its access unit was (the converters
    /// copy the flag to their output).
    fn decoder_output(&self, info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        self.decoded.fetch_add(1, Ordering::Relaxed);
        let pts = buffer.pts().map(gst::ClockTime::nseconds);
        let mut decoding = lock(&self.decoding);
        let mut keyframe = None;
        if let Some(pts) = pts
            && let Some(index) = decoding.in_flight.iter().position(|&(p, ..)| p == pts)
            && let Some((_, arrived, key)) = decoding.in_flight.remove(index)
        {
            decoding.total += arrived.elapsed();
            keyframe = Some(key);
        }
        if !decoding.sampler.admit(pts) {
            self.sampled_out.fetch_add(1, Ordering::Relaxed);
            return DROP;
        }
        drop(decoding);
        if let Some(keyframe) = keyframe
            && let Some(buffer) = info.buffer_mut()
        {
            // Writable metadata; the pixels stay shared.
            let buffer = buffer.make_mut();
            if keyframe {
                buffer.unset_flags(gst::BufferFlags::DELTA_UNIT);
            } else {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        gst::PadProbeReturn::Ok
    }

    /// The appsink's streaming thread: a live source replaces the waiting frame, a file waits
    /// until the consumer has taken it.
    fn on_sample(&self, sink: &AppSink) -> Result<gst::FlowSuccess, gst::FlowError> {
        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
        let frame = match to_frame(&sample) {
            Ok(frame) => frame,
            Err(message) => {
                self.fail(pipeline_error(&sink.name(), message));
                return Err(gst::FlowError::Error);
            }
        };
        let mut output = lock(&self.output);
        if self.live {
            if output.frame.replace(frame).is_some() {
                self.overwritten.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            while output.frame.is_some() && !output.closing {
                output = self
                    .changed
                    .wait(output)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if output.closing {
                return Err(gst::FlowError::Flushing);
            }
            output.frame = Some(frame);
        }
        drop(output);
        self.changed.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }
}

/// Packed RGB out of a sample, whatever the row stride the converter used.
fn to_frame(sample: &gst::Sample) -> Result<Frame, String> {
    let buffer = sample.buffer().ok_or("a sample without a buffer")?;
    let caps = sample.caps().ok_or("a sample without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
    let video = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|e| e.to_string())?;
    let (width, height) = (video.width(), video.height());
    let row = width as usize * 3;
    let stride = usize::try_from(video.plane_stride()[0]).map_err(|e| e.to_string())?;
    let plane = video.plane_data(0).map_err(|e| e.to_string())?;
    let mut data = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        let start = y * stride;
        let line = plane
            .get(start..start + row)
            .ok_or("a frame smaller than its caps")?;
        data.extend_from_slice(line);
    }
    Ok(Frame {
        pts: Duration::from_nanos(buffer.pts().map_or(0, gst::ClockTime::nseconds)),
        width,
        height,
        data,
        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
    })
}

/// At most one frame per `interval` of presentation time: frame times are cut into
/// interval-long slots counted from the first frame, and the first frame of each slot passes.
/// Slots rather than "interval since the last one", so that the rate is exactly one per
/// interval even when the interval is not a multiple of the frame duration (25 fps sampled
/// every 300 ms would otherwise give one frame per 320 ms).
#[derive(Debug, Clone)]
struct Sampler {
    interval: u64,
    /// Nanoseconds: the first frame's time and the last slot that passed a frame.
    origin: Option<u64>,
    last_slot: u64,
}

impl Sampler {
    fn new(interval: Duration) -> Self {
        Self {
            interval: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            origin: None,
            last_slot: 0,
        }
    }

    /// Whether the frame at `pts` (nanoseconds) is delivered. Frames without a time pass; a
    /// time before the origin or the last slot (a new stream) starts counting again.
    fn admit(&mut self, pts: Option<u64>) -> bool {
        let Some(pts) = pts else { return true };
        if self.interval == 0 {
            return true;
        }
        match self.origin {
            Some(origin) if pts >= origin => {
                let slot = (pts - origin) / self.interval;
                if slot > self.last_slot {
                    self.last_slot = slot;
                    true
                } else if slot < self.last_slot {
                    self.origin = Some(pts);
                    self.last_slot = 0;
                    true
                } else {
                    false
                }
            }
            _ => {
                self.origin = Some(pts);
                self.last_slot = 0;
                true
            }
        }
    }
}

/// Whether an access unit goes to the decoder, per [`KeyframeMode`]. Keyframes always do; a
/// non-key one only while not `keyframes_only`. Every keyframe is measured, including those
/// that arrive while the others are dropped, so `Auto` keeps following the stream.
///
/// `keyframes_only` changes only when a keyframe arrives (where a new interval is measured)
/// and applies from the access unit after it, so each GOP is decoded either whole or as its
/// keyframe alone. Resuming mid-GOP would feed the decoder deltas whose references were
/// dropped, and it would output garbage until the next keyframe. (The parser flags every
/// intra picture as a keyframe; after a non-IDR one, which cameras rarely send, a delta may
/// still refer to pictures before it.)
#[derive(Debug)]
struct KeyframeGate {
    mode: KeyframeMode,
    /// Nanoseconds.
    sample_interval: u64,
    /// Presentation time of the last keyframe (ns).
    last_keyframe: Option<u64>,
    /// The last [`KEYFRAME_INTERVALS`] intervals between keyframes (ns), oldest first.
    intervals: VecDeque<u64>,
    keyframes_only: bool,
}

impl KeyframeGate {
    fn new(mode: KeyframeMode, sample_interval: Duration) -> Self {
        Self {
            mode,
            sample_interval: u64::try_from(sample_interval.as_nanos()).unwrap_or(u64::MAX),
            last_keyframe: None,
            intervals: VecDeque::with_capacity(KEYFRAME_INTERVALS),
            keyframes_only: mode == KeyframeMode::Keyframes,
        }
    }

    /// Whether the access unit at `pts` (nanoseconds) goes to the decoder.
    fn admit(&mut self, keyframe: bool, pts: Option<u64>) -> bool {
        if !keyframe {
            return !self.keyframes_only;
        }
        if let Some(pts) = pts {
            // A time that goes back is a new segment (a seek, a restarted stream), not an
            // interval.
            if let Some(last) = self.last_keyframe
                && pts > last
            {
                if self.intervals.len() == KEYFRAME_INTERVALS {
                    self.intervals.pop_front();
                }
                self.intervals.push_back(pts - last);
            }
            self.last_keyframe = Some(pts);
        }
        if self.mode == KeyframeMode::Auto {
            // Two intervals: the first is often short, as cameras send an extra keyframe to
            // a client that connects.
            self.keyframes_only = self.intervals.len() >= 2
                && self.interval().is_some_and(|interval| {
                    interval.saturating_mul(100)
                        <= self
                            .sample_interval
                            .saturating_mul(100 + KEYFRAME_INTERVAL_TOLERANCE_PERCENT)
                });
        }
        true
    }

    /// The longest recent keyframe interval (ns), as [`FrameStats::keyframe_interval_ms`].
    fn interval(&self) -> Option<u64> {
        self.intervals.iter().max().copied()
    }
}

/// What a stream pad carries.
enum Stream {
    Video { codec: VideoCodec, rtp: bool },
    UnsupportedVideo(String),
    Other,
}

impl Stream {
    fn of(caps: &gst::CapsRef) -> Self {
        let Some(structure) = caps.structure(0) else {
            return Self::Other;
        };
        let name = structure.name().as_str();
        if name == "application/x-rtp" {
            if structure.get::<&str>("media").ok() != Some("video") {
                return Self::Other;
            }
            let encoding = structure.get::<&str>("encoding-name").unwrap_or("unknown");
            return match encoding.to_ascii_uppercase().as_str() {
                "H264" => Self::Video {
                    codec: VideoCodec::H264,
                    rtp: true,
                },
                "H265" => Self::Video {
                    codec: VideoCodec::H265,
                    rtp: true,
                },
                _ => Self::UnsupportedVideo(format!("RTP {encoding}")),
            };
        }
        match name {
            "video/x-h264" => Self::Video {
                codec: VideoCodec::H264,
                rtp: false,
            },
            "video/x-h265" => Self::Video {
                codec: VideoCodec::H265,
                rtp: false,
            },
            _ if name.starts_with("video/") => Self::UnsupportedVideo(name.to_owned()),
            _ => Self::Other,
        }
    }
}

/// Links the demuxer's (or rtspsrc's) video pad, once its caps tell the codec, through
/// `[depayloader !] parser ! decoder [! nvvidconv]` to the tail; other pads go to a fakesink.
/// Runs on a streaming thread: failures are reported through `shared`.
struct Linker {
    /// Weak: the pipeline owns the element whose signal holds this.
    pipeline: gst::glib::WeakRef<gst::Pipeline>,
    shared: Arc<Shared>,
    tail: gst::Element,
    decoder: DecoderChoice,
    width: Option<u32>,
    height: Option<u32>,
    /// The first video stream is decoded; a second one is not.
    linked: Mutex<bool>,
}

impl Linker {
    fn pad_added(&self, pad: &gst::Pad) {
        let Some(pipeline) = self.pipeline.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let mut linked = lock(&self.linked);
        let result = match Stream::of(&caps) {
            Stream::Video { codec, rtp } if !*linked => {
                let result = self.link_video(&pipeline, pad, codec, rtp);
                *linked = result.is_ok();
                result
            }
            Stream::UnsupportedVideo(codec) if !*linked => Err(pipeline_error(
                &pad.name(),
                format!("unsupported video codec {codec}: only H.264 and H.265 are decoded"),
            )),
            _ => discard(&pipeline, pad),
        };
        if let Err(error) = result {
            self.shared.fail(error);
        }
    }

    fn no_more_pads(&self) {
        if !*lock(&self.linked) {
            self.shared.fail(pipeline_error(
                "pipeline",
                "no H.264 or H.265 video stream".into(),
            ));
        }
    }

    fn link_video(
        &self,
        pipeline: &gst::Pipeline,
        pad: &gst::Pad,
        codec: VideoCodec,
        rtp: bool,
    ) -> Result<(), SourceError> {
        let decoder_name = pick_decoder(codec, &self.decoder)?;
        let (depay, parse) = match codec {
            VideoCodec::H264 => ("rtph264depay", "h264parse"),
            VideoCodec::H265 => ("rtph265depay", "h265parse"),
        };
        let mut head = Vec::new();
        if rtp {
            head.push(make(depay)?);
        }
        head.push(make(parse)?);
        let decoder = gst::ElementFactory::make(&decoder_name)
            .build()
            .map_err(|e| pipeline_error(&decoder_name, e.to_string()))?;
        head.push(decoder.clone());
        if decoder_name == "nvv4l2decoder" {
            require(&[NVIDIA_CONVERTER])?;
            head.push(make(NVIDIA_CONVERTER.0)?);
            let filter = make("capsfilter")?;
            // nvvidconv has no packed RGB; it scales in hardware and videoconvert drops alpha.
            let caps = raw_caps(gst_video::VideoFormat::Rgba, self.width, self.height);
            filter.set_property("caps", caps);
            head.push(filter);
        }
        head.push(self.tail.clone());

        let shared = Arc::clone(&self.shared);
        probe_buffers(&decoder, "sink", move |info| shared.decoder_input(info))?;
        let shared = Arc::clone(&self.shared);
        probe_buffers(&decoder, "src", move |info| shared.decoder_output(info))?;

        let new = &head[..head.len() - 1];
        pipeline
            .add_many(new)
            .map_err(|e| pipeline_error("pipeline", e.to_string()))?;
        gst::Element::link_many(&head)
            .map_err(|e| pipeline_error(&decoder_name, format!("cannot link: {e}")))?;
        for element in new {
            element
                .sync_state_with_parent()
                .map_err(|e| pipeline_error(&element.name(), e.to_string()))?;
        }
        let first = head[0]
            .static_pad("sink")
            .ok_or_else(|| pipeline_error(&head[0].name(), "no sink pad".into()))?;
        pad.link(&first)
            .map_err(|e| pipeline_error(&pad.name(), format!("cannot link: {e:?}")))?;
        Ok(())
    }
}

/// A pad nobody decodes (audio, a second video) goes to a fakesink: an unlinked pad would
/// stop a demuxer with "not linked".
fn discard(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<(), SourceError> {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .map_err(|e| pipeline_error("fakesink", e.to_string()))?;
    pipeline
        .add(&sink)
        .map_err(|e| pipeline_error("pipeline", e.to_string()))?;
    sink.sync_state_with_parent()
        .map_err(|e| pipeline_error("fakesink", e.to_string()))?;
    let sink_pad = sink
        .static_pad("sink")
        .ok_or_else(|| pipeline_error("fakesink", "no sink pad".into()))?;
    pad.link(&sink_pad)
        .map_err(|e| pipeline_error(&pad.name(), format!("cannot link: {e:?}")))?;
    Ok(())
}

/// Raw video caps in `format`, at the spec's size if it has one, with square pixels then (a
/// model wants the picture stretched to its input, not letterboxed).
fn raw_caps(format: gst_video::VideoFormat, width: Option<u32>, height: Option<u32>) -> gst::Caps {
    let scaled = width.is_some() || height.is_some();
    let dimension = |d: Option<u32>| d.map(|d| i32::try_from(d).unwrap_or(i32::MAX));
    gst_video::VideoCapsBuilder::new()
        .format(format)
        .width_if_some(dimension(width))
        .height_if_some(dimension(height))
        .pixel_aspect_ratio_if(gst::Fraction::new(1, 1), scaled)
        .build()
}

fn probe_buffers(
    element: &gst::Element,
    pad: &str,
    on_buffer: impl Fn(&mut gst::PadProbeInfo) -> gst::PadProbeReturn + Send + Sync + 'static,
) -> Result<(), SourceError> {
    let pad = element
        .static_pad(pad)
        .ok_or_else(|| pipeline_error(&element.name(), format!("no {pad} pad")))?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| on_buffer(info));
    Ok(())
}

/// Restart delays for a live source: `initial` after a failure, doubling after each further
/// one up to `max`, and back to `initial` once a frame arrives. A camera that reboots is back
/// within seconds; one that is gone for good costs a connection attempt every `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial.min(max),
        }
    }

    /// A start failed or the stream ended: how long to wait before the next start.
    pub fn failed(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// A frame arrived: the source works again.
    pub fn succeeded(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

/// 1 s, doubling, at most 30 s.
impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

/// A live source that never gives up: a failed start, an error, the end of the stream or a
/// stall (no access unit for `stall_timeout`) stops the pipeline, and it is started again
/// after the [`Backoff`] delay. Errors are kept for display, not returned.
#[derive(Debug)]
pub struct LiveFrames {
    spec: FrameSourceSpec,
    source: Option<FrameSource>,
    backoff: Backoff,
    retry_at: Instant,
    stall_timeout: Duration,
    /// `frames_in` of the current source when it last changed, and when that was.
    last_input: (u64, Instant),
    /// Counters of the sources already stopped.
    earlier: FrameStats,
    starts: u64,
    last_error: Option<SourceError>,
}

/// rtspsrc notices a dead TCP connection only after its 20 s timeout, and a camera can keep
/// the connection open without sending.
const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

impl LiveFrames {
    /// Starts nothing yet: the first [`next_frame`](Self::next_frame) does.
    pub fn new(spec: FrameSourceSpec) -> Self {
        Self {
            spec,
            source: None,
            backoff: Backoff::default(),
            retry_at: Instant::now(),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            last_input: (0, Instant::now()),
            earlier: FrameStats::default(),
            starts: 0,
            last_error: None,
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn with_stall_timeout(mut self, stall_timeout: Duration) -> Self {
        self.stall_timeout = stall_timeout;
        self
    }

    /// The next frame within `timeout`, starting and restarting the source as needed; `None`
    /// if none came in time.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let Some(source) = self.source.as_mut() else {
                if now >= self.retry_at {
                    self.starts += 1;
                    match FrameSource::start(self.spec.clone()) {
                        Ok(source) => {
                            self.source = Some(source);
                            self.last_input = (0, now);
                        }
                        Err(error) => self.failed(error, now),
                    }
                    continue;
                }
                if now >= deadline {
                    return None;
                }
                std::thread::sleep(self.retry_at.min(deadline) - now);
                continue;
            };
            // Wake at least every second to look for a stall.
            let wait = deadline
                .saturating_duration_since(now)
                .min(Duration::from_secs(1));
            match source.next_frame(wait) {
                Ok(Next::Frame(frame)) => {
                    self.backoff.succeeded();
                    return Some(frame);
                }
                Ok(Next::Timeout) => {
                    let now = Instant::now();
                    let frames_in = source.stats().frames_in;
                    if frames_in != self.last_input.0 {
                        self.last_input = (frames_in, now);
                    } else if now - self.last_input.1 >= self.stall_timeout {
                        let message = format!("no video for {:?}", self.stall_timeout);
                        self.failed(pipeline_error("pipeline", message), now);
                    }
                    if now >= deadline {
                        return None;
                    }
                }
                Ok(Next::Ended) => {
                    let error = pipeline_error("pipeline", "the stream ended".into());
                    self.failed(error, Instant::now());
                }
                Err(error) => self.failed(error, Instant::now()),
            }
        }
    }

    /// Counters over all the sources started so far.
    pub fn stats(&self) -> FrameStats {
        let mut stats = self.earlier;
        if let Some(source) = &self.source {
            stats.add(&source.stats());
        }
        stats
    }

    /// How many times a pipeline was started (or its start tried).
    pub fn starts(&self) -> u64 {
        self.starts
    }

    /// Why the source last stopped or failed to start.
    pub fn last_error(&self) -> Option<&SourceError> {
        self.last_error.as_ref()
    }

    fn failed(&mut self, error: SourceError, now: Instant) {
        if let Some(source) = self.source.take() {
            self.earlier.add(&source.stats());
        }
        self.last_error = Some(error);
        self.retry_at = now + self.backoff.failed();
    }
}

fn make(element: &str) -> Result<gst::Element, SourceError> {
    gst::ElementFactory::make(element)
        .build()
        .map_err(|e| pipeline_error(element, e.to_string()))
}

fn add_and_link(pipeline: &gst::Pipeline, elements: &[&gst::Element]) -> Result<(), SourceError> {
    pipeline
        .add_many(elements.iter().copied())
        .map_err(|e| pipeline_error("pipeline", e.to_string()))?;
    gst::Element::link_many(elements.iter().copied())
        .map_err(|e| pipeline_error("pipeline", format!("cannot link: {e}")))
}

/// A poisoned lock only means a streaming thread panicked inside GStreamer; the counters and
/// the frame slot are still consistent, so go on rather than panic here too.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn path_of(url: &str) -> Option<PathBuf> {
        match Input::parse(url).ok()? {
            Input::File(path) => Some(path),
            Input::Rtsp(_) => None,
        }
    }

    fn admitted(interval_ms: u64, times_ms: &[u64]) -> Vec<u64> {
        let mut sampler = Sampler::new(Duration::from_millis(interval_ms));
        times_ms
            .iter()
            .copied()
            .filter(|&t| sampler.admit(Some(t * MS)))
            .collect()
    }

    #[test]
    fn sampling_keeps_one_frame_per_interval_slot() {
        let frames_25fps: Vec<u64> = (0..100).map(|i| i * 40).collect();
        assert_eq!(admitted(0, &frames_25fps).len(), 100);
        assert_eq!(
            admitted(500, &frames_25fps),
            [0, 520, 1000, 1520, 2000, 2520, 3000, 3520]
        );
        // 300 ms is not a multiple of 40 ms: still 10 frames in 3 s, not 3000 / 320.
        assert_eq!(admitted(300, &frames_25fps[..75]).len(), 10);
        // The stream starting over (a new segment) starts the slots over.
        assert_eq!(
            admitted(500, &[1000, 1100, 1600, 200, 300, 800]),
            [1000, 1600, 200, 800]
        );
        // Frames without a time cannot be sampled: they pass.
        let mut sampler = Sampler::new(Duration::from_secs(1));
        assert!(sampler.admit(Some(0)));
        assert!(sampler.admit(None));
        assert!(!sampler.admit(Some(10 * MS)));
    }

    /// The times (ms) of the access units the gate passes, of a 25 fps stream from `from_ms`
    /// to `to_ms` with keyframes at `keyframes_ms`.
    fn gated(gate: &mut KeyframeGate, keyframes_ms: &[u64], from_ms: u64, to_ms: u64) -> Vec<u64> {
        (from_ms..to_ms)
            .step_by(40)
            .filter(|t| gate.admit(keyframes_ms.contains(t), Some(t * MS)))
            .collect()
    }

    fn every_frame(from_ms: u64, to_ms: u64) -> Vec<u64> {
        (from_ms..to_ms).step_by(40).collect()
    }

    #[test]
    fn auto_keyframes_follow_the_gop_and_switch_only_at_keyframes() {
        let mut gate = KeyframeGate::new(KeyframeMode::Auto, Duration::from_secs(1));
        // One 2 s GOP among 1 s ones.
        let keyframes = [0, 1000, 2000, 3000, 5000, 6000, 7000, 8000, 9000];
        let passed = gated(&mut gate, &keyframes, 0, 10_000);
        let expected = [
            // Everything until the keyframe at 2 s completes two 1 s intervals; the GOP it
            // starts is its keyframe alone.
            every_frame(0, 2040),
            vec![3000],
            // The 2 s interval is known at the keyframe that ends it: the next GOP is decoded
            // whole, as are those until the long interval is among the last four no more.
            every_frame(5000, 9040),
        ]
        .concat();
        assert_eq!(passed, expected);
        assert!(gate.keyframes_only);
        assert_eq!(gate.interval(), Some(1000 * MS));

        // 5 % over the sample interval still counts as within it; 8 % does not.
        for (gop_ms, keyframes_only) in [(1040, true), (1080, false)] {
            let mut gate = KeyframeGate::new(KeyframeMode::Auto, Duration::from_secs(1));
            for keyframe in 0..3 {
                assert!(gate.admit(true, Some(keyframe * gop_ms * MS)));
            }
            assert_eq!(gate.keyframes_only, keyframes_only, "GOP {gop_ms} ms");
        }

        // A time that goes back starts a new segment rather than measuring an interval.
        let mut gate = KeyframeGate::new(KeyframeMode::Auto, Duration::from_secs(1));
        for pts_ms in [5000, 0, 1000] {
            gate.admit(true, Some(pts_ms * MS));
        }
        assert_eq!(gate.interval(), Some(1000 * MS));
        assert!(!gate.keyframes_only);
    }

    #[test]
    fn fixed_keyframe_modes_ignore_the_gop() {
        let keyframes = [0, 1000, 2000, 3000];
        let mut all = KeyframeGate::new(KeyframeMode::All, Duration::from_secs(1));
        assert_eq!(gated(&mut all, &keyframes, 0, 4000), every_frame(0, 4000));
        let mut only = KeyframeGate::new(KeyframeMode::Keyframes, Duration::ZERO);
        assert_eq!(gated(&mut only, &keyframes, 0, 4000), keyframes);
        // Auto without sampling: every frame is wanted, so every frame is decoded.
        let mut unsampled = KeyframeGate::new(KeyframeMode::Auto, Duration::ZERO);
        assert_eq!(
            gated(&mut unsampled, &keyframes, 0, 4000),
            every_frame(0, 4000)
        );
        assert_eq!(unsampled.interval(), Some(1000 * MS));
    }

    /// Each camera's source lives on its own worker thread.
    #[test]
    fn sources_move_between_threads() {
        fn send<T: Send>() {}
        send::<FrameSource>();
        send::<LiveFrames>();
        send::<Frame>();
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_frame() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| backoff.failed().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), Duration::from_secs(1));
        assert_eq!(backoff.failed(), Duration::from_secs(2));
        let mut tiny = Backoff::new(Duration::from_secs(5), Duration::from_secs(2));
        assert_eq!(tiny.failed(), Duration::from_secs(2));
    }

    #[test]
    fn urls_are_rtsp_or_files() {
        assert_eq!(
            path_of("/data/a b.mp4"),
            Some(PathBuf::from("/data/a b.mp4"))
        );
        assert_eq!(
            path_of("file:///data/a%20b.mp4"),
            Some(PathBuf::from("/data/a b.mp4"))
        );
        assert!(matches!(Input::parse("RTSP://cam/1"), Ok(Input::Rtsp(_))));
        assert!(matches!(
            Input::parse("http://cam/1"),
            Err(SourceError::InvalidSpec(_))
        ));
        assert_eq!(path_of("file://localhost/x"), Some(PathBuf::from("/x")));
        assert!(matches!(
            Input::parse("file://host/x"),
            Err(SourceError::InvalidSpec(_))
        ));
    }

    #[test]
    fn stream_caps_tell_the_codec() {
        gst::init().unwrap();
        let of = |caps: &str| Stream::of(&caps.parse::<gst::Caps>().unwrap());
        assert!(matches!(
            of("application/x-rtp,media=video,encoding-name=H265"),
            Stream::Video {
                codec: VideoCodec::H265,
                rtp: true
            }
        ));
        assert!(matches!(
            of("application/x-rtp,media=audio,encoding-name=PCMA"),
            Stream::Other
        ));
        assert!(matches!(
            of("video/x-h264,stream-format=avc"),
            Stream::Video {
                codec: VideoCodec::H264,
                rtp: false
            }
        ));
        assert!(matches!(
            of("video/mpeg,mpegversion=4"),
            Stream::UnsupportedVideo(_)
        ));
        assert!(matches!(of("audio/mpeg"), Stream::Other));
    }

    #[test]
    fn known_decoders_name_their_package() {
        let error = pick_decoder(
            VideoCodec::H264,
            &DecoderChoice::Named("mppvideodec".into()),
        );
        if gst::ElementFactory::find("mppvideodec").is_none() {
            assert_eq!(
                error.unwrap_err().to_string(),
                "GStreamer element mppvideodec missing: install gstreamer-rockchip"
            );
        }
        let not_decoder = pick_decoder(VideoCodec::H264, &DecoderChoice::Named("fakesink".into()));
        assert!(not_decoder.unwrap_err().to_string().contains("fakesink"));
    }
}
