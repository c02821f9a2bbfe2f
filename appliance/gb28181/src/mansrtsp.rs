//! MANSRTSP, the RTSP-like text GB28181 carries in INFO requests (`Content-Type:
//! Application/MANSRTSP`) to control a playback: pause, resume, seek and speed. The platform
//! builds it; [`parse`] reads it back, as a device (or the device simulator) does.

/// The Content-Type of an INFO that carries a MANSRTSP body.
pub const CONTENT_TYPE: &str = "Application/MANSRTSP";

/// Playback speeds GB/T 28181 allows (0.25 to 4), and 8, which some devices accept too.
pub const SPEEDS: [f64; 6] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];

/// What to do with a running playback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlaybackControl {
    Pause,
    Resume,
    /// Jump to `position_s` seconds from the start of the playback range.
    Seek {
        position_s: u64,
    },
    /// Play at this multiple of normal speed; one of [`SPEEDS`].
    Speed(f64),
}

/// Why a MANSRTSP body cannot be built or read. Quoted input is cut to a few dozen characters,
/// so a hostile body cannot fill the logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MansrtspError {
    #[error("empty body: no request line")]
    Empty,
    #[error("request line {0:?} is not `<method> MANSRTSP/1.0`")]
    RequestLine(String),
    #[error("method {0:?} is neither PLAY nor PAUSE")]
    Method(String),
    #[error("header line {0:?} has no colon")]
    HeaderLine(String),
    #[error("no CSeq header")]
    MissingCSeq,
    #[error("CSeq {0:?} is not a number")]
    CSeq(String),
    #[error("speed {0:?} is not one of 0.25, 0.5, 1, 2, 4, 8")]
    Speed(String),
    #[error("Range {0:?} is not npt=now- or npt=<whole seconds>-")]
    Range(String),
    #[error("PLAY has neither a Range nor a Scale")]
    NothingToPlay,
    #[error("PLAY has both a Range and a Scale")]
    RangeAndScale,
}

/// At most 40 characters of `text`, for an error message.
fn excerpt(text: &str) -> String {
    text.chars().take(40).collect()
}

impl PlaybackControl {
    /// The MANSRTSP body with sequence number `cseq`. Fails only on a speed not in [`SPEEDS`].
    pub fn to_body(&self, cseq: u32) -> Result<String, MansrtspError> {
        let (method, header) = match *self {
            PlaybackControl::Pause => ("PAUSE", "PauseTime: now".to_string()),
            PlaybackControl::Resume => ("PLAY", "Range: npt=now-".to_string()),
            PlaybackControl::Seek { position_s } => ("PLAY", format!("Range: npt={position_s}-")),
            PlaybackControl::Speed(speed) if SPEEDS.contains(&speed) => {
                // `2.0`, not `2`: the form devices are known to parse.
                let mut scale = speed.to_string();
                if speed.fract() == 0.0 {
                    scale.push_str(".0");
                }
                ("PLAY", format!("Scale: {scale}"))
            }
            PlaybackControl::Speed(speed) => {
                return Err(MansrtspError::Speed(excerpt(&speed.to_string())));
            }
        };
        Ok(format!(
            "{method} MANSRTSP/1.0\r\nCSeq: {cseq}\r\n{header}\r\n\r\n"
        ))
    }
}

/// Reads a MANSRTSP body: its CSeq and the control it asks for. Lines may end in CRLF or LF;
/// header names are case-insensitive; `RTSP/1.0` is accepted for `MANSRTSP/1.0`, as some
/// platforms send it. Never panics, whatever the input.
pub fn parse(body: &str) -> Result<(u32, PlaybackControl), MansrtspError> {
    let mut lines = body.lines();
    let request_line = lines.next().ok_or(MansrtspError::Empty)?;
    let (method, version) = request_line
        .split_once(' ')
        .ok_or_else(|| MansrtspError::RequestLine(excerpt(request_line)))?;
    if !matches!(version.trim(), "MANSRTSP/1.0" | "RTSP/1.0") {
        return Err(MansrtspError::RequestLine(excerpt(request_line)));
    }
    let (mut cseq, mut scale, mut range) = (None, None, None);
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| MansrtspError::HeaderLine(excerpt(line)))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "cseq" => cseq = Some(value),
            "scale" => scale = Some(value),
            "range" => range = Some(value),
            // PauseTime is always `now` in GB28181; other headers carry nothing we act on.
            _ => {}
        }
    }
    let cseq = cseq.ok_or(MansrtspError::MissingCSeq)?;
    let cseq = cseq
        .parse()
        .map_err(|_| MansrtspError::CSeq(excerpt(cseq)))?;
    let control = match (method, scale, range) {
        ("PAUSE", _, _) => PlaybackControl::Pause,
        ("PLAY", Some(scale), None) => match scale.parse::<f64>() {
            Ok(speed) if SPEEDS.contains(&speed) => PlaybackControl::Speed(speed),
            _ => return Err(MansrtspError::Speed(excerpt(scale))),
        },
        ("PLAY", None, Some(range)) => parse_range(range)?,
        ("PLAY", Some(_), Some(_)) => return Err(MansrtspError::RangeAndScale),
        ("PLAY", None, None) => return Err(MansrtspError::NothingToPlay),
        (other, _, _) => return Err(MansrtspError::Method(excerpt(other))),
    };
    Ok((cseq, control))
}

/// `npt=now-` (resume) or `npt=<seconds>-` (seek); an end after the dash is ignored, since a
/// GB playback always runs to the end of its range.
fn parse_range(range: &str) -> Result<PlaybackControl, MansrtspError> {
    let bad = || MansrtspError::Range(excerpt(range));
    let npt = range
        .get(..4)
        .filter(|unit| unit.eq_ignore_ascii_case("npt="))
        .and_then(|_| range.get(4..))
        .ok_or_else(bad)?;
    let (start, _end) = npt.split_once('-').ok_or_else(bad)?;
    match start.trim() {
        "now" => Ok(PlaybackControl::Resume),
        // Digits only: `parse` would take a sign too.
        seconds if !seconds.is_empty() && seconds.bytes().all(|b| b.is_ascii_digit()) => {
            let position_s = seconds.parse().map_err(|_| bad())?;
            Ok(PlaybackControl::Seek { position_s })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn bodies_are_the_ones_gb28181_devices_expect() {
        let body = |control: PlaybackControl| control.to_body(7).unwrap();
        assert_eq!(
            body(PlaybackControl::Pause),
            "PAUSE MANSRTSP/1.0\r\nCSeq: 7\r\nPauseTime: now\r\n\r\n"
        );
        assert_eq!(
            body(PlaybackControl::Resume),
            "PLAY MANSRTSP/1.0\r\nCSeq: 7\r\nRange: npt=now-\r\n\r\n"
        );
        assert_eq!(
            body(PlaybackControl::Seek { position_s: 120 }),
            "PLAY MANSRTSP/1.0\r\nCSeq: 7\r\nRange: npt=120-\r\n\r\n"
        );
        assert_eq!(
            body(PlaybackControl::Speed(2.0)),
            "PLAY MANSRTSP/1.0\r\nCSeq: 7\r\nScale: 2.0\r\n\r\n"
        );
        assert_eq!(
            body(PlaybackControl::Speed(0.25)),
            "PLAY MANSRTSP/1.0\r\nCSeq: 7\r\nScale: 0.25\r\n\r\n"
        );
    }

    #[test]
    fn speeds_outside_the_gb_list_are_refused_both_ways() {
        for speed in [3.0, 0.0, -1.0, 16.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                PlaybackControl::Speed(speed).to_body(1),
                Err(MansrtspError::Speed(_))
            ));
        }
        assert_eq!(
            parse("PLAY MANSRTSP/1.0\r\nCSeq: 1\r\nScale: 3\r\n\r\n"),
            Err(MansrtspError::Speed("3".into()))
        );
        assert_eq!(
            parse("PLAY MANSRTSP/1.0\r\nCSeq: 1\r\nScale: 8\r\n\r\n"),
            Ok((1, PlaybackControl::Speed(8.0))),
            "some devices play at 8x"
        );
    }

    #[test]
    fn what_other_platforms_send_is_read_too() {
        assert_eq!(
            parse("PLAY RTSP/1.0\ncseq: 3\nrange: npt=now-\n"),
            Ok((3, PlaybackControl::Resume))
        );
        assert_eq!(
            parse("PLAY MANSRTSP/1.0\r\nCSeq: 4\r\nRange: npt=60-7200\r\n\r\n"),
            Ok((4, PlaybackControl::Seek { position_s: 60 }))
        );
        assert_eq!(
            parse("PAUSE MANSRTSP/1.0\r\nCSeq: 5\r\n\r\n"),
            Ok((5, PlaybackControl::Pause))
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("", MansrtspError::Empty),
            (
                "PLAY\r\nCSeq: 1\r\n",
                MansrtspError::RequestLine("PLAY".into()),
            ),
            (
                "PLAY HTTP/1.1\r\nCSeq: 1\r\n",
                MansrtspError::RequestLine("PLAY HTTP/1.1".into()),
            ),
            (
                "TEARDOWN MANSRTSP/1.0\r\nCSeq: 1\r\n",
                MansrtspError::Method("TEARDOWN".into()),
            ),
            (
                "PLAY MANSRTSP/1.0\r\nScale 2.0\r\n",
                MansrtspError::HeaderLine("Scale 2.0".into()),
            ),
            ("PAUSE MANSRTSP/1.0\r\n\r\n", MansrtspError::MissingCSeq),
            (
                "PAUSE MANSRTSP/1.0\r\nCSeq: -1\r\n",
                MansrtspError::CSeq("-1".into()),
            ),
            (
                "PLAY MANSRTSP/1.0\r\nCSeq: 1\r\n",
                MansrtspError::NothingToPlay,
            ),
            (
                "PLAY MANSRTSP/1.0\r\nCSeq: 1\r\nScale: 2.0\r\nRange: npt=now-\r\n",
                MansrtspError::RangeAndScale,
            ),
            (
                "PLAY MANSRTSP/1.0\r\nCSeq: 1\r\nRange: clock=20240101T000000Z-\r\n",
                MansrtspError::Range("clock=20240101T000000Z-".into()),
            ),
            (
                "PLAY MANSRTSP/1.0\r\nCSeq: 1\r\nRange: npt=+5-\r\n",
                MansrtspError::Range("npt=+5-".into()),
            ),
            (
                "PLAY MANSRTSP/1.0\r\nCSeq: 1\r\nRange: npt=99999999999999999999999-\r\n",
                MansrtspError::Range("npt=99999999999999999999999-".into()),
            ),
        ];
        for (body, error) in cases {
            assert_eq!(parse(body), Err(error), "{body:?}");
        }
        // Quoted input is cut short.
        let long = format!("PLAY MANSRTSP/1.0\r\nCSeq: {}\r\n", "9".repeat(1000));
        assert_eq!(parse(&long), Err(MansrtspError::CSeq("9".repeat(40))));
    }

    fn control() -> impl Strategy<Value = PlaybackControl> {
        prop_oneof![
            Just(PlaybackControl::Pause),
            Just(PlaybackControl::Resume),
            any::<u64>().prop_map(|position_s| PlaybackControl::Seek { position_s }),
            proptest::sample::select(SPEEDS.to_vec()).prop_map(PlaybackControl::Speed),
        ]
    }

    proptest! {
        #[test]
        fn every_control_reads_back_as_built(cseq in any::<u32>(), control in control()) {
            let body = control.to_body(cseq).unwrap();
            prop_assert_eq!(parse(&body), Ok((cseq, control)));
        }

        #[test]
        fn garbage_never_panics(body in any::<String>()) {
            let _ = parse(&body);
        }

        #[test]
        fn near_misses_never_panic(
            method in "(PLAY|PAUSE|play|P)?",
            header in "(CSeq|Scale|Range|PauseTime|npt|:| |-|now|[0-9.]{0,6}|\r|\n|é){0,12}",
        ) {
            let _ = parse(&format!("{method} MANSRTSP/1.0\r\nCSeq: 1\r\n{header}\r\n"));
            let _ = parse(&format!("{method} MANSRTSP/1.0\r\n{header}"));
        }
    }
}
