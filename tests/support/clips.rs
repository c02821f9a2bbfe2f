//! Test clips made from the real photos in `../shared/images`: a photo (a person, a face) moved
//! across a plain background along a path, or a still scene, encoded as H.264 MP4 by GStreamer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use appliance_media::clip::{Background, ClipSpec, ClipWriter, Scene, render_moving_sprite};
use image::RgbImage;
use image::imageops::FilterType;

/// `../shared/images/<name>` from the workspace.
pub fn shared_image(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/images")
        .join(name);
    assert!(
        path.is_file(),
        "{} missing (shared/ beside the checkout)",
        path.display()
    );
    path
}

/// A photo as RGB, resized to `size` when given.
pub fn photo(name: &str, size: Option<(u32, u32)>) -> RgbImage {
    let image = image::open(shared_image(name))
        .expect("the shared photos decode")
        .to_rgb8();
    match size {
        Some((w, h)) => image::imageops::resize(&image, w, h, FilterType::Triangle),
        None => image,
    }
}

/// What to put in a clip.
pub struct ClipPlan<'a> {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: f64,
    pub background: Background<'a>,
    pub sprite: &'a RgbImage,
    /// `(t, x, y)` of the sprite's top-left corner, in pixels.
    pub path: &'a [(f64, f64, f64)],
}

/// Renders and encodes the clip into `dir/name.mp4` (a keyframe every second).
pub fn make_clip(dir: &Path, name: &str, plan: &ClipPlan) -> PathBuf {
    let path = dir.join(format!("{name}.mp4"));
    let scene = Scene {
        width: plan.width,
        height: plan.height,
        background: plan.background,
        sprite: plan.sprite.as_raw(),
        sprite_width: plan.sprite.width(),
        sprite_height: plan.sprite.height(),
        path: plan.path,
    };
    let mut writer = ClipWriter::create(
        &path,
        ClipSpec {
            width: plan.width,
            height: plan.height,
            fps: plan.fps,
            keyframe_interval: plan.fps,
        },
    )
    .expect("the clip writer starts (GStreamer with x264enc)");
    let frames = render_moving_sprite(&scene, plan.fps, Duration::from_secs_f64(plan.seconds))
        .expect("the scene is consistent");
    for frame in frames {
        writer.push(&frame).expect("the encoder takes the frame");
    }
    writer.finish().expect("the clip is complete");
    path
}
