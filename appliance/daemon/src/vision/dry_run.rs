//! `applianced skill test`: runs one skill on a recorded clip, offline, with the same analysis
//! the daemon runs on a camera, and prints the events it would raise. Installers tune zones and
//! thresholds with it; the end-to-end tests use it. Every sampled frame is analysed (a file
//! waits for the analysis instead of dropping frames), so a run is repeatable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use appliance_config::Config;
use appliance_media::frames::{FrameSource, FrameSourceSpec, KeyframeMode, Next};
use appliance_skills::config::{SkillConfig, SkillKind};
use appliance_skills::library::face::{FaceIndex, Library, Person};
use appliance_skills::library::plate::{PlateLibrary, PlateList};
use image::RgbImage;

use super::pipeline::{CameraAnalysis, FACE_DIMENSION, Libraries, Raised};

#[derive(clap::Args, Debug)]
pub struct SkillTestOptions {
    /// The skill's JSON config, as the API takes it.
    #[arg(long, value_name = "FILE")]
    pub skill: PathBuf,
    /// A video file (MP4, Matroska, MPEG-TS… with H.264 or H.265).
    #[arg(long, value_name = "VIDEO")]
    pub input: PathBuf,
    /// One JSON object per event and line, instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Enrol a person in the skill's face library from a photo: `NAME=PHOTO` (repeatable).
    #[arg(long = "face", value_name = "NAME=PHOTO")]
    pub faces: Vec<String>,
    /// Plate lists for a plate skill: a JSON array of lists as the API takes them.
    #[arg(long, value_name = "FILE")]
    pub plates: Option<PathBuf>,
    /// Decode only keyframes (what a box does when the skill samples no faster than them).
    #[arg(long)]
    pub keyframes_only: bool,
    /// Configuration file for `[vision]` (ONNX Runtime, providers) and the data dir's models.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Exit status for a skill config that is not valid.
pub const EXIT_BAD_SKILL: u8 = 2;

/// A dry run that could not start because of its input, told apart from a failure midway.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

pub fn run(options: SkillTestOptions, config: Config) -> anyhow::Result<()> {
    let text = std::fs::read(&options.skill)
        .with_context(|| format!("cannot read {}", options.skill.display()))?;
    let skill = SkillConfig::from_json(&text)
        .map_err(|e| BadInput(format!("{}: {e}", options.skill.display())))?;
    let models =
        super::models(&config.vision, &config.store.data_dir).map_err(|e| anyhow::anyhow!(e))?;
    let libraries = Arc::new(Libraries::default());
    if let SkillKind::FaceRecognition(face) = &skill.kind {
        let analyzer = models.get(&skill.common.model)?;
        let mut library = Library::new(face.library.clone());
        let mut index = FaceIndex::new(FACE_DIMENSION)?;
        for entry in &options.faces {
            let (name, photo) = entry
                .split_once('=')
                .ok_or_else(|| BadInput(format!("--face {entry}: expected NAME=PHOTO")))?;
            let image = image::open(photo)
                .with_context(|| format!("cannot read the photo {photo}"))?
                .to_rgb8();
            let faces = analyzer.embed_faces(&image)?;
            let Some((_, embedding)) = faces.first() else {
                bail!(BadInput(format!(
                    "--face {entry}: no face found in {photo}"
                )));
            };
            index.insert(name, format!("{name}-{}", library.people.len()), embedding)?;
            library.people.push(Person {
                id: name.to_string(),
                name: name.to_string(),
                note: None,
            });
        }
        libraries
            .faces
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(face.library.clone(), (library, index));
    } else if !options.faces.is_empty() {
        bail!(BadInput("--face is for face_recognition skills".into()));
    }
    if let Some(path) = &options.plates {
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let lists: Vec<PlateList> = serde_json::from_slice(&text)
            .map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
        *libraries.plates.write().unwrap_or_else(|e| e.into_inner()) =
            PlateLibrary::new(lists).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
    }

    let (mut analysis, problems) =
        CameraAnalysis::new(vec![("dry-run".into(), skill)], &models, libraries);
    if let Some(problem) = problems.first() {
        bail!(BadInput(problem.error.clone()));
    }
    let analyzers = analysis.analyzers();
    let mut spec = FrameSourceSpec::new(options.input.display().to_string());
    spec.decoder = super::decoder_choice(&config.vision);
    spec.keyframe_mode = if options.keyframes_only {
        KeyframeMode::Keyframes
    } else {
        KeyframeMode::All
    };
    spec.sample_interval = analysis.sample_interval();
    let mut source = FrameSource::start(spec)
        .map_err(|e| BadInput(format!("{}: {e}", options.input.display())))?;

    let started = Instant::now();
    let mut frames = 0u64;
    let mut events = 0u64;
    loop {
        let frame = match source.next_frame(Duration::from_secs(30))? {
            Next::Frame(frame) => frame,
            Next::Ended => break,
            Next::Timeout => bail!("no frame from {} for 30 s", options.input.display()),
        };
        frames += 1;
        let pts = frame.pts.as_secs_f64();
        let Some(image) = RgbImage::from_raw(frame.width, frame.height, frame.data) else {
            continue;
        };
        for (group, (_, analyzer)) in analyzers.iter().enumerate() {
            let (mut findings, _) = analyzer.analyse(&[&image])?;
            let findings = findings.pop().unwrap_or_default();
            // No wall clock for a recording: the schedule is not applied.
            for raised in analysis.on_findings(group, pts, image.dimensions(), findings, None) {
                events += 1;
                print_event(&raised, options.json)?;
            }
        }
    }
    let stats = source.stats();
    eprintln!(
        "skill test: {frames} frames analysed ({} decoded, {} skipped before decoding) in {:.1} s, {events} events",
        stats.decoded,
        stats.skipped_before_decode,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_event(raised: &Raised, json: bool) -> anyhow::Result<()> {
    let event = &raised.event;
    if json {
        let mut value = serde_json::to_value(event)?;
        if let Some(object) = value.as_object_mut() {
            // Always present, null when they do not apply (a crowd has no track, a line
            // crossing no zone), so a consumer can rely on the keys.
            object.entry("track_id").or_insert(serde_json::Value::Null);
            object.entry("zone").or_insert(serde_json::Value::Null);
        }
        println!("{value}");
    } else {
        let mut line = format!(
            "{:>8.2}s  {:<16} {:<12} score {:.2}",
            event.pts_s,
            serde_json::to_value(event.event_type)?
                .as_str()
                .unwrap_or_default(),
            event.class,
            event.score
        );
        if let Some(track) = event.track_id {
            line.push_str(&format!("  track {track}"));
        }
        for (what, value) in [
            ("zone", &event.zone),
            ("line", &event.line),
            ("person", &event.person_name),
            ("plate", &event.plate),
            ("list", &event.list),
        ] {
            if let Some(value) = value {
                line.push_str(&format!("  {what} {value}"));
            }
        }
        if let Some(dwell) = event.dwell_s {
            line.push_str(&format!("  dwell {dwell:.1}s"));
        }
        println!("{line}");
    }
    Ok(())
}
