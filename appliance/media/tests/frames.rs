//! Decoded frames on real GStreamer: a clip whose every pixel is known (a white square moving
//! left to right on black) is written with x264 and read back through the decoder, so the
//! tests see whether the right frames come, in order, at their times, in RGB, at the asked size
//! — and how much less decoding keyframes-only costs, and when the automatic keyframe mode
//! takes it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use appliance_media::VideoCodec;
use appliance_media::clip::{Background, ClipSpec, ClipWriter, Scene, render_moving_sprite};
use appliance_media::frames::{
    Backoff, DecoderChoice, Frame, FrameSource, FrameSourceSpec, FrameStats, KeyframeMode,
    LiveFrames, Next, pick_decoder,
};
use appliance_media::source::SourceError;
use nix::sys::resource::{UsageWho, getrusage};

/// The tests in this file run one at a time: the CPU figures are the whole process's.
static SERIAL: Mutex<()> = Mutex::new(());

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
const FPS: u32 = 25;
const SQUARE: u32 = 40;
/// Top-left corner of the square: across the picture in 4 s, at mid height.
const PATH: &[(f64, f64, f64)] = &[(0.0, 0.0, 100.0), (4.0, 280.0, 100.0)];
/// Corner to corner in 6 s: the square moves in every frame of the 6 s clip.
const DIAGONAL: &[(f64, f64, f64)] = &[(0.0, 0.0, 0.0), (6.0, 280.0, 200.0)];

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn scene<'a>(square: &'a [u8], path: &'a [(f64, f64, f64)]) -> Scene<'a> {
    Scene {
        width: WIDTH,
        height: HEIGHT,
        background: Background::Fill([0, 0, 0]),
        sprite: square,
        sprite_width: SQUARE,
        sprite_height: SQUARE,
        path,
    }
}

/// The square along `square_path` for `duration`, an IDR every 25 frames.
fn write_clip(path: &Path, square_path: &[(f64, f64, f64)], duration: Duration) {
    let square = [255u8; 3].repeat((SQUARE * SQUARE) as usize);
    let scene = scene(&square, square_path);
    let mut writer = ClipWriter::create(
        path,
        ClipSpec {
            width: WIDTH,
            height: HEIGHT,
            fps: FPS,
            keyframe_interval: 25,
        },
    )
    .unwrap();
    for frame in render_moving_sprite(&scene, FPS, duration).unwrap() {
        writer.push(&frame).unwrap();
    }
    writer.finish().unwrap();
}

/// User plus system CPU time of this process, all threads.
fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let to_duration = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    to_duration(usage.user_time()) + to_duration(usage.system_time())
}

struct Run {
    frames: Vec<Frame>,
    stats: FrameStats,
    cpu: Duration,
}

/// Every frame of a file, to its end.
fn read_all(spec: FrameSourceSpec) -> Run {
    let cpu_before = cpu_time();
    let mut source = FrameSource::start(spec).unwrap();
    let mut frames = Vec::new();
    loop {
        match source.next_frame(Duration::from_secs(10)).unwrap() {
            Next::Frame(frame) => frames.push(frame),
            Next::Ended => break,
            Next::Timeout => panic!("no frame within 10 s after {}", frames.len()),
        }
    }
    let stats = source.stats();
    drop(source);
    Run {
        frames,
        stats,
        cpu: cpu_time() - cpu_before,
    }
}

/// The centroid of the white pixels.
fn white_centroid(frame: &Frame) -> (f64, f64) {
    assert_eq!(
        frame.data.len(),
        (frame.width * frame.height * 3) as usize,
        "packed RGB"
    );
    let (mut sum_x, mut sum_y, mut count) = (0.0, 0.0, 0.0);
    for (index, pixel) in frame.data.chunks_exact(3).enumerate() {
        if pixel.iter().all(|&c| c > 200) {
            sum_x += (index % frame.width as usize) as f64;
            sum_y += (index / frame.width as usize) as f64;
            count += 1.0;
        }
    }
    assert!(count > 0.0, "no white pixels at {:?}", frame.pts);
    (sum_x / count, sum_y / count)
}

/// The square is where the scene put it along `square_path` at the frame's time, `scale` times
/// the clip's size.
fn assert_square_follows_pts(frames: &[Frame], square_path: &[(f64, f64, f64)], scale: f64) {
    let square = [255u8; 3].repeat((SQUARE * SQUARE) as usize);
    let scene = scene(&square, square_path);
    let middle = (SQUARE as f64 - 1.0) / 2.0;
    for frame in frames {
        let (x, y) = scene.sprite_position(frame.pts.as_secs_f64());
        // Rounded as `Scene::render` placed it.
        let expected = ((x.round() + middle) * scale, (y.round() + middle) * scale);
        let found = white_centroid(frame);
        assert!(
            (found.0 - expected.0).abs() <= 1.5 && (found.1 - expected.1).abs() <= 1.5,
            "at {:?} the square's centre is {found:?}, expected {expected:?}",
            frame.pts
        );
    }
}

fn pts_ms(frames: &[Frame]) -> Vec<u128> {
    frames.iter().map(|f| f.pts.as_millis()).collect()
}

fn spec(path: &Path) -> FrameSourceSpec {
    FrameSourceSpec::new(path.to_str().unwrap())
}

#[test]
fn a_written_clip_reads_back_frame_by_frame_keyframes_sampled_and_scaled() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("moving square.mp4");
    write_clip(&path, PATH, Duration::from_secs(4));

    // Every frame, in order, 40 ms apart, an IDR every second.
    let full = read_all(spec(&path));
    assert_eq!(full.frames.len(), 100, "{:?}", full.stats);
    assert_eq!(
        pts_ms(&full.frames),
        (0..100).map(|i| i * 40).collect::<Vec<u128>>()
    );
    for (index, frame) in full.frames.iter().enumerate() {
        assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT));
        assert_eq!(frame.keyframe, index % 25 == 0, "frame {index}");
    }
    assert_square_follows_pts(&full.frames, PATH, 1.0);
    let stats = full.stats;
    assert_eq!(
        (stats.frames_in, stats.skipped_before_decode, stats.decoded),
        (100, 0, 100)
    );
    assert_eq!(
        (stats.delivered, stats.dropped, stats.overwritten),
        (100, 0, 0)
    );

    // Keyframes only: the decoder sees 4 access units of 100.
    let keyframes = read_all(FrameSourceSpec {
        keyframe_mode: KeyframeMode::Keyframes,
        ..spec(&path)
    });
    assert_eq!(pts_ms(&keyframes.frames), [0, 1000, 2000, 3000]);
    assert!(keyframes.frames.iter().all(|f| f.keyframe));
    assert_square_follows_pts(&keyframes.frames, PATH, 1.0);
    let stats = keyframes.stats;
    assert_eq!(
        (stats.frames_in, stats.skipped_before_decode, stats.decoded),
        (100, 96, 4)
    );
    assert!(stats.keyframes_only_now);
    assert_eq!((stats.delivered, stats.dropped), (4, 0));

    // Two frames a second: all decoded, 8 delivered.
    let sampled = read_all(FrameSourceSpec {
        sample_interval: Duration::from_millis(500),
        ..spec(&path)
    });
    assert_eq!(
        pts_ms(&sampled.frames),
        [0, 520, 1000, 1520, 2000, 2520, 3000, 3520]
    );
    assert_square_follows_pts(&sampled.frames, PATH, 1.0);
    let stats = sampled.stats;
    assert_eq!(
        (stats.decoded, stats.delivered, stats.dropped),
        (100, 8, 92)
    );

    // Half size, asked for by a named decoder through a file:// URI.
    let scaled = read_all(FrameSourceSpec {
        url: format!("file://{}", path.display()).replace(' ', "%20"),
        decoder: DecoderChoice::Named("avdec_h264".into()),
        width: Some(160),
        height: Some(120),
        sample_interval: Duration::from_millis(200),
        ..FrameSourceSpec::new("")
    });
    assert_eq!(scaled.frames.len(), 20);
    assert!(
        scaled
            .frames
            .iter()
            .all(|f| (f.width, f.height, f.data.len()) == (160, 120, 160 * 120 * 3))
    );
    assert_square_follows_pts(&scaled.frames, PATH, 0.5);

    // Stopped halfway, while the streaming thread waits for the consumer: no hang.
    let mut source = FrameSource::start(spec(&path)).unwrap();
    let first = source.next_frame(Duration::from_secs(5)).unwrap();
    assert!(matches!(first, Next::Frame(_)), "{first:?}");
    let stopping = Instant::now();
    drop(source);
    assert!(stopping.elapsed() < Duration::from_secs(2));

    println!(
        "decoding the 4 s 320x240 clip, process CPU: every frame {:?} ({} decoded, {:.2} ms \
         in the decoder per frame), keyframes only {:?} ({} decoded, {:.2} ms per frame)",
        full.cpu,
        full.stats.decoded,
        full.stats.decode_ms_avg(),
        keyframes.cpu,
        keyframes.stats.decoded,
        keyframes.stats.decode_ms_avg(),
    );
}

#[test]
fn auto_keyframes_decode_keyframes_only_once_they_come_as_often_as_the_samples() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("diagonal.mp4");
    write_clip(&path, DIAGONAL, Duration::from_secs(6));
    let auto = |sample_interval| FrameSourceSpec {
        keyframe_mode: KeyframeMode::Auto,
        sample_interval,
        ..spec(&path)
    };
    let assert_one_second_gop = |stats: &FrameStats| {
        let interval = stats.keyframe_interval_ms.expect("the GOP is measured");
        assert!((interval - 1000.0).abs() < 1.0, "{stats:?}");
    };

    // One frame a second, a keyframe a second: every access unit is decoded until the
    // keyframe at 2 s completes two intervals, then the keyframes alone. The frames still
    // come once a second, and the ones decoded without the deltas are the right pictures.
    let once_a_second = read_all(auto(Duration::from_secs(1)));
    assert_eq!(
        pts_ms(&once_a_second.frames),
        [0, 1000, 2000, 3000, 4000, 5000]
    );
    assert!(once_a_second.frames.iter().all(|f| f.keyframe));
    assert_square_follows_pts(&once_a_second.frames, DIAGONAL, 1.0);
    let stats = once_a_second.stats;
    assert_one_second_gop(&stats);
    assert!(stats.keyframes_only_now, "{stats:?}");
    // 51 access units up to and including the keyframe at 2 s, then 3 keyframes of 25.
    assert_eq!(
        (
            stats.frames_in,
            stats.keyframes_in,
            stats.skipped_before_decode,
            stats.decoded
        ),
        (150, 6, 96, 54)
    );
    assert_eq!((stats.delivered, stats.dropped), (6, 48));

    // Five frames a second: the keyframes are too few, everything is decoded.
    let five_a_second = read_all(auto(Duration::from_millis(200)));
    assert_eq!(
        pts_ms(&five_a_second.frames),
        (0..30).map(|i| i * 200).collect::<Vec<u128>>()
    );
    assert_square_follows_pts(&five_a_second.frames, DIAGONAL, 1.0);
    let stats = five_a_second.stats;
    assert_one_second_gop(&stats);
    assert!(!stats.keyframes_only_now, "{stats:?}");
    assert_eq!(
        (
            stats.frames_in,
            stats.keyframes_in,
            stats.skipped_before_decode,
            stats.decoded
        ),
        (150, 6, 0, 150)
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let _serial = serial();
    let missing = FrameSource::start(FrameSourceSpec::new("/nonexistent/camera 7.mp4"));
    match missing {
        Err(error @ SourceError::File { .. }) => {
            assert!(
                error.to_string().contains("/nonexistent/camera 7.mp4"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }

    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video\n".repeat(100)).unwrap();
    match FrameSource::start(spec(&text)) {
        Err(SourceError::Pipeline { message, .. }) => assert!(!message.is_empty()),
        other => panic!("a text file started as video: {other:?}"),
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_camera_that_does_not_answer_is_an_error_or_no_frame_never_a_hang() {
    let _serial = serial();
    let url = format!("rtsp://127.0.0.1:{}/stream", closed_port());
    let started = Instant::now();
    match FrameSource::start(FrameSourceSpec::new(&url)) {
        Err(error) => println!("start: {error}"),
        Ok(mut source) => match source.next_frame(Duration::from_secs(3)) {
            Ok(Next::Frame(frame)) => panic!("a frame from nowhere: {frame:?}"),
            Ok(other) => println!("next_frame: {other:?}"),
            Err(error) => println!("next_frame: {error}"),
        },
    }
    assert!(started.elapsed() < Duration::from_secs(6));

    // The live wrapper keeps trying, at the backoff's pace rather than in a busy loop.
    let mut live = LiveFrames::new(FrameSourceSpec::new(&url)).with_backoff(Backoff::new(
        Duration::from_millis(100),
        Duration::from_millis(400),
    ));
    let started = Instant::now();
    assert!(live.next_frame(Duration::from_millis(1500)).is_none());
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    // Starts at 0, 0.1, 0.3, 0.7, 1.1 and 1.5 s if each fails at once.
    assert!((2..=7).contains(&live.starts()), "{} starts", live.starts());
    let error = live.last_error().expect("the failure is kept");
    println!("LiveFrames after {} starts: {error}", live.starts());
    assert_eq!(live.stats().delivered, 0);
}

#[test]
fn the_decoder_is_libav_here_and_a_named_one_must_exist() {
    let _serial = serial();
    let hardware = ["nvv4l2decoder", "mppvideodec", "vah264dec", "v4l2slh264dec"];
    gstreamer::init().unwrap();
    if hardware
        .iter()
        .all(|name| gstreamer::ElementFactory::find(name).is_none())
    {
        assert_eq!(
            pick_decoder(VideoCodec::H264, &DecoderChoice::Auto).unwrap(),
            "avdec_h264"
        );
        assert_eq!(
            pick_decoder(VideoCodec::H265, &DecoderChoice::Auto).unwrap(),
            "avdec_h265"
        );
    }
    let named = DecoderChoice::Named("nonexistent".into());
    let error = pick_decoder(VideoCodec::H264, &named).unwrap_err();
    assert!(error.to_string().contains("nonexistent"), "{error}");
    // Also at start, before any file is opened.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, b"").unwrap();
    let error = FrameSource::start(FrameSourceSpec {
        decoder: named,
        ..spec(&path)
    })
    .unwrap_err();
    assert!(error.to_string().contains("nonexistent"), "{error}");
}
