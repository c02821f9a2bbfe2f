//! The whole media path on real components: H.264 from GStreamer's x264 encoder, muxed to
//! MPEG-PS, packetized to RTP, received and counted; and the same PS handed to GStreamer's own
//! program stream demuxer and an H.264 decoder, which is what shows that the PS is what real
//! receivers accept (mpegpsdemux, like ZLMediaKit, learns that stream 0xE0 is H.264 only from
//! the program stream map).

use std::time::{Duration, Instant};

use appliance_media::rfc4571::{self, Deframer};
use appliance_media::{
    AccessUnit, H264Source, PsDemuxer, PsMuxer, RtpPacketizer, RtpReceiver, SourceSpec, VideoCodec,
};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSrc};

/// `y=0100000001`.
const SSRC: u32 = 100_000_001;

/// NAL unit types of an Annex-B access unit.
fn nal_types(unit: &AccessUnit) -> Vec<u8> {
    unit.data
        .windows(4)
        .filter(|w| w[..3] == [0, 0, 1])
        .map(|w| w[3] & 0x1F)
        .collect()
}

/// The picture's slice: the access unit from its last start code on.
fn last_nal(unit: &AccessUnit) -> &[u8] {
    let start = unit.data.windows(3).rposition(|w| w == [0, 0, 1]).unwrap();
    &unit.data[start..]
}

/// Every IDR is preceded by its SPS (7) and PPS (8) in the same access unit, and flagged.
fn assert_keyframes_carry_parameter_sets(units: &[AccessUnit]) {
    for (index, unit) in units.iter().enumerate() {
        let types = nal_types(unit);
        assert_eq!(types.contains(&5), unit.keyframe, "unit {index}: {types:?}");
        if unit.keyframe {
            let idr = types.iter().position(|&t| t == 5).unwrap();
            assert!(
                types[..idr].contains(&7) && types[..idr].contains(&8),
                "unit {index}: IDR without SPS/PPS before it: {types:?}"
            );
        }
    }
}

/// Access units from `source` until `enough` says so.
fn pull(source: &mut H264Source, enough: impl Fn(&[AccessUnit]) -> bool) -> Vec<AccessUnit> {
    let mut units = Vec::new();
    while !enough(&units) {
        let unit = source
            .next_access_unit(Duration::from_secs(5))
            .expect("source failed")
            .unwrap_or_else(|| panic!("no access unit within 5 s after {}", units.len()));
        units.push(unit);
    }
    units
}

/// Runs a GStreamer pipeline with an appsrc named `src` fed `input` in network-sized pieces
/// and an appsink named `sink`; returns the samples it produced, failing on any error.
fn run_pipeline(description: &str, input: &[u8]) -> Vec<gst::Sample> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline.by_name("src").and_downcast::<AppSrc>().unwrap();
    let sink = pipeline.by_name("sink").and_downcast::<AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for chunk in input.chunks(1400) {
        src.push_buffer(gst::Buffer::from_slice(chunk.to_vec()))
            .unwrap();
    }
    src.end_of_stream().unwrap();
    let mut samples = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        samples.push(sample);
    }
    let bus = pipeline.bus().unwrap();
    let outcome = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(5),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    match outcome.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => samples,
        Some(gst::MessageView::Error(error)) => {
            panic!("{description}: {} ({:?})", error.error(), error.debug())
        }
        _ => panic!("{description}: no EOS"),
    }
}

#[test]
fn test_pattern_streams_as_ps_over_rtp_that_gstreamer_decodes() {
    let mut source = H264Source::start(SourceSpec::TestPattern {
        width: 320,
        height: 240,
        fps: 30,
        keyframe_interval: 15,
    })
    .unwrap();
    // Two seconds of video, which a live source delivers in real time (the simulator relies
    // on that pacing); only a lower bound on the time, so a loaded machine cannot fail it.
    let started = Instant::now();
    let units = pull(&mut source, |units| units.len() == 60);
    let elapsed = started.elapsed();
    drop(source);
    assert!(
        elapsed >= Duration::from_millis(1500),
        "60 frames in {elapsed:?}"
    );

    // 3000 ticks of 90 kHz apart, an IDR every 15 frames.
    assert!(units[0].keyframe, "the stream starts with an IDR");
    for pair in units.windows(2) {
        let step = pair[1].pts_90k - pair[0].pts_90k;
        assert!((2900..=3100).contains(&step), "PTS step {step}");
    }
    let keyframes = units.iter().filter(|u| u.keyframe).count();
    assert!(keyframes >= units.len() / 15, "{keyframes} keyframes");
    assert_keyframes_carry_parameter_sets(&units);

    // Mux and packetize as the device simulator does, crossing the sequence wrap. The receiver
    // gets the packets as UDP datagrams, interleaved with a stream under another SSRC (a device
    // that ignored the SDP's y=); a second receiver gets them over TCP, framed per RFC 4571
    // and read in pieces that cut through frames.
    let mut muxer = PsMuxer::new(VideoCodec::H264);
    let mut packetizer = RtpPacketizer::new(SSRC, 96, 1400).with_sequence(65_500);
    let mut intruder = RtpPacketizer::new(SSRC + 1, 96, 1400);
    let mut udp = RtpReceiver::new(SSRC);
    let mut ps = Vec::new();
    let mut tcp_stream = Vec::new();
    let mut packets = 0;
    for (index, unit) in units.iter().enumerate() {
        let now_ms = index as i64 * 33;
        let pack = muxer.mux(&unit.data, unit.pts_90k, unit.keyframe);
        for packet in packetizer.packetize(&pack, unit.pts_90k as u32) {
            udp.on_packet(&packet, now_ms);
            tcp_stream.extend(rfc4571::frame(&packet));
            packets += 1;
        }
        for packet in intruder.packetize(b"not our stream", 0) {
            udp.on_packet(&packet, now_ms);
        }
        ps.extend(pack);
    }
    assert!(packetizer.next_sequence() < 65_500, "the sequence wrapped");

    let mut tcp = RtpReceiver::new(SSRC);
    let mut deframer = Deframer::new();
    for chunk in tcp_stream.chunks(1000) {
        deframer.push(chunk);
        while let Some(packet) = deframer.next_packet() {
            tcp.on_packet(&packet, 0);
        }
    }
    assert_eq!(deframer.buffered(), 0);

    for (transport, stats) in [("udp", udp.snapshot()), ("tcp", tcp.snapshot())] {
        assert_eq!(stats.packets, packets, "{transport}");
        assert_eq!(stats.frames, units.len() as u64, "{transport}");
        assert_eq!(stats.keyframes, keyframes as u64, "{transport}");
        assert_eq!(stats.codec, Some(VideoCodec::H264), "{transport}");
        let errors = (
            stats.lost,
            stats.out_of_order,
            stats.malformed,
            stats.ps_malformed,
        );
        assert_eq!(errors, (0, 0, 0, 0), "{transport}");
    }
    let udp = udp.snapshot();
    assert_eq!(udp.wrong_ssrc, units.len() as u64);
    assert_eq!(udp.last_wrong_ssrc, Some(SSRC + 1));
    assert_eq!(udp.first_packet_ms, Some(0));

    // Our demuxer gives back exactly the access units.
    let mut demuxer = PsDemuxer::new();
    let mut frames = demuxer.push(&ps);
    frames.extend(demuxer.flush());
    assert_eq!(frames.len(), units.len());
    for (frame, unit) in frames.iter().zip(&units) {
        assert_eq!(frame.data, unit.data);
        assert_eq!(frame.pts_90k, Some(unit.pts_90k));
        assert_eq!(frame.keyframe, unit.keyframe);
    }

    // GStreamer's demuxer and decoder take every frame.
    let decoded = run_pipeline(
        "appsrc name=src caps=video/mpeg,systemstream=true,mpegversion=2 ! mpegpsdemux ! \
         h264parse ! avdec_h264 ! appsink name=sink sync=false",
        &ps,
    );
    assert_eq!(decoded.len(), units.len(), "frames decoded by avdec_h264");
    let caps = decoded[0].caps().unwrap().structure(0).unwrap().to_owned();
    assert_eq!(
        (
            caps.get::<i32>("width").unwrap(),
            caps.get::<i32>("height").unwrap()
        ),
        (320, 240)
    );
}

#[test]
fn file_source_loops_past_the_end() {
    // Ten frames, an IDR every five, written to MP4 by GStreamer.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ten frames.mp4");
    gst::init().unwrap();
    let writer = gst::parse::launch(
        "videotestsrc num-buffers=10 pattern=ball ! \
         video/x-raw,width=160,height=120,framerate=30/1 ! \
         x264enc speed-preset=ultrafast bframes=0 key-int-max=5 ! h264parse ! mp4mux ! \
         filesink name=out",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    writer
        .by_name("out")
        .unwrap()
        .set_property("location", path.to_str().unwrap());
    writer.set_state(gst::State::Playing).unwrap();
    let done = writer.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    writer.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(
            done.as_ref().map(|m| m.view()),
            Some(gst::MessageView::Eos(_))
        ),
        "writing the MP4: {done:?}"
    );

    let mut source = H264Source::start(SourceSpec::File(path)).unwrap();
    let units = pull(&mut source, |units| units.len() == 25);
    drop(source);

    // Two and a half passes: the same pictures again, timestamps going on at 30 fps. (The
    // very first access unit differs in its parameter sets: h264parse puts the ones from the
    // MP4's codec data in front of those x264 wrote in-band.)
    for (index, unit) in units.iter().enumerate() {
        assert_eq!(unit.pts_90k, index as u64 * 3000, "unit {index}");
        assert_eq!(unit.keyframe, index % 5 == 0, "unit {index}");
        assert!(
            last_nal(unit) == last_nal(&units[index % 10]),
            "unit {index} is not a replay of unit {}",
            index % 10
        );
        if index >= 20 {
            assert!(unit.data == units[index - 10].data, "unit {index}");
        }
    }
    assert_keyframes_carry_parameter_sets(&units);
}
