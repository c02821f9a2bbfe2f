//! The model registry: a model is a directory `<name>/` holding `manifest.toml` (what the model
//! does, its input layout, labels, thresholds and the sha256 of its file), the model file and an
//! optional labels file. Models are looked up first among those installed on the box (under the
//! data dir, written by `install`), then among the bundled ones (the firmware's read-only
//! `/usr/share/appliance/models`, or the copies `just setup` puts into a development checkout).
//!
//! Integrity: `install` refuses a file whose sha256 is not the manifest's, and `get` checks it
//! again before a model is used (a model file is a few MB; hashing it takes milliseconds, and a
//! corrupted file on flash would otherwise give wrong detections rather than an error).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::preprocess::{ChannelOrder, Layout, Normalisation};

pub const MANIFEST_FILE: &str = "manifest.toml";

/// What a model does; decides which pre- and post-processing runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Detector,
    FaceDetector,
    FaceEmbedding,
    TextDetector,
    TextRecognizer,
    TextDirection,
}

/// The model's input as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub channels: ChannelOrder,
    #[serde(default)]
    pub layout: Layout,
    #[serde(default)]
    pub mean: [f32; 3],
    #[serde(default = "unit_std")]
    pub std: [f32; 3],
    /// Colour of the letterbox padding.
    #[serde(default)]
    pub pad: [u8; 3],
}

fn unit_std() -> [f32; 3] {
    [1.0; 3]
}

impl InputSpec {
    pub fn normalisation(&self) -> Normalisation {
        Normalisation {
            channels: self.channels,
            layout: self.layout,
            mean: self.mean,
            std: self.std,
        }
    }
}

/// Thresholds the model is run with unless a skill asks for more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Minimum score of a detection (or of a text region, or a direction).
    pub score: Option<f32>,
    /// IoU above which NMS suppresses the lower-scored box.
    pub nms_iou: Option<f32>,
    /// Text detectors: per-pixel probability that counts as text.
    pub pixel: Option<f32>,
}

/// `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub task: Task,
    /// The output layout family: yolox, yolov5, yolov8 (also v11), blazeface, centerface,
    /// mobilefacenet, ppocr_det, ppocr_rec, ppocr_cls.
    pub family: String,
    /// File name of the model, in the model's directory.
    pub file: String,
    pub sha256: String,
    #[serde(default)]
    pub licence: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// A file with one label per line (a recogniser's alphabet), in the model's directory.
    #[serde(default)]
    pub labels_file: Option<String>,
    #[serde(default)]
    pub labels_sha256: Option<String>,
    pub input: InputSpec,
    #[serde(default)]
    pub thresholds: Thresholds,
}

const FAMILIES: &[(&str, Task)] = &[
    ("yolox", Task::Detector),
    ("yolov5", Task::Detector),
    ("yolov8", Task::Detector),
    ("blazeface", Task::FaceDetector),
    ("centerface", Task::FaceDetector),
    ("mobilefacenet", Task::FaceEmbedding),
    ("ppocr_det", Task::TextDetector),
    ("ppocr_rec", Task::TextRecognizer),
    ("ppocr_cls", Task::TextDirection),
];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model {0} not found")]
    NotFound(String),
    #[error("manifest of {model}: {message}")]
    Manifest { model: String, message: String },
    #[error("{file} of model {model}: sha256 is {actual}, the manifest says {expected}")]
    Checksum {
        model: String,
        file: String,
        expected: String,
        actual: String,
    },
    #[error("model {model} is bundled with the firmware and cannot be removed")]
    Bundled { model: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file name inside a model's directory: no separators, no dot-files, no `..`.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

impl Manifest {
    /// Parses and checks a manifest; errors name the field.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| RegistryError::Manifest {
            model: "(unparsed)".into(),
            message: e.message().to_string(),
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), RegistryError> {
        let fail = |message: String| {
            Err(RegistryError::Manifest {
                model: self.name.clone(),
                message,
            })
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
        if !name_ok {
            return fail("name: 1-64 characters of a-z, 0-9, _ and -".into());
        }
        match FAMILIES.iter().find(|(family, _)| *family == self.family) {
            None => {
                let known: Vec<_> = FAMILIES.iter().map(|(f, _)| *f).collect();
                return fail(format!(
                    "family: {:?} is not one of {}",
                    self.family,
                    known.join(", ")
                ));
            }
            Some((_, task)) if *task != self.task => {
                return fail(format!(
                    "task: family {} is a {:?} model, not {:?}",
                    self.family, task, self.task
                ));
            }
            Some(_) => {}
        }
        if !plain_file_name(&self.file) || self.file == MANIFEST_FILE {
            return fail(format!("file: {:?} is not a plain file name", self.file));
        }
        if !is_sha256(&self.sha256) {
            return fail("sha256: 64 hexadecimal digits".into());
        }
        match (&self.labels_file, &self.labels_sha256) {
            (Some(file), Some(sha)) => {
                if !plain_file_name(file) || file == &self.file || file == MANIFEST_FILE {
                    return fail(format!("labels_file: {file:?} is not a plain file name"));
                }
                if !is_sha256(sha) {
                    return fail("labels_sha256: 64 hexadecimal digits".into());
                }
            }
            (None, None) => {}
            _ => return fail("labels_file and labels_sha256 go together".into()),
        }
        let input = &self.input;
        if !(1..=8192).contains(&input.width) || !(1..=8192).contains(&input.height) {
            return fail("input.width, input.height: 1 to 8192".into());
        }
        if input.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || input.mean.iter().any(|m| !m.is_finite())
        {
            return fail("input.std must be non-zero and input.mean finite".into());
        }
        for (field, value) in [
            ("thresholds.score", self.thresholds.score),
            ("thresholds.nms_iou", self.thresholds.nms_iou),
            ("thresholds.pixel", self.thresholds.pixel),
        ] {
            if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                return fail(format!("{field}: within 0 and 1"));
            }
        }
        if self.task == Task::Detector && self.labels.is_empty() {
            return fail("labels: a detector needs its class names".into());
        }
        Ok(())
    }
}

/// Where a model was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Installed on this box (API or cloud), under the data dir.
    Installed,
    /// Shipped with the firmware or put there by `just setup`.
    Bundled,
}

/// A model ready to load: its manifest, the path of its file, and its labels.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    pub manifest: Manifest,
    pub origin: Origin,
    pub dir: PathBuf,
}

impl ModelEntry {
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.file)
    }

    /// The labels: the manifest's list, or the labels file's lines.
    pub fn labels(&self) -> Result<Vec<String>, RegistryError> {
        match &self.manifest.labels_file {
            None => Ok(self.manifest.labels.clone()),
            Some(file) => {
                let path = self.dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
                Ok(text.lines().map(str::to_string).collect())
            }
        }
    }

    /// Checks the sha256 of the model file and the labels file against the manifest.
    pub fn verify(&self) -> Result<(), RegistryError> {
        check_file(
            &self.manifest.name,
            &self.dir,
            &self.manifest.file,
            &self.manifest.sha256,
        )?;
        if let (Some(file), Some(sha)) = (&self.manifest.labels_file, &self.manifest.labels_sha256)
        {
            check_file(&self.manifest.name, &self.dir, file, sha)?;
        }
        Ok(())
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn check_file(model: &str, dir: &Path, file: &str, expected: &str) -> Result<(), RegistryError> {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    let actual = sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(RegistryError::Checksum {
            model: model.to_string(),
            file: file.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// The places models are found.
#[derive(Debug, Clone)]
pub struct Registry {
    installed: PathBuf,
    bundled: Vec<PathBuf>,
}

/// Bundled model directories: the firmware's, then this checkout's `.local/models` (what
/// `just setup` installs; found from the crate's path at build time so a development build
/// needs no flag).
pub fn default_bundled_dirs() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/usr/share/appliance/models"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.local/models"),
    ]
}

impl Registry {
    /// `installed`: the writable directory (`<data dir>/models`); `bundled`: read-only ones,
    /// searched in order after it.
    pub fn new(installed: PathBuf, bundled: Vec<PathBuf>) -> Self {
        Self { installed, bundled }
    }

    fn read_entry(dir: &Path, origin: Origin) -> Result<ModelEntry, RegistryError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        let manifest = Manifest::parse(&text)?;
        Ok(ModelEntry {
            manifest,
            origin,
            dir: dir.to_path_buf(),
        })
    }

    fn roots(&self) -> impl Iterator<Item = (&Path, Origin)> {
        std::iter::once((self.installed.as_path(), Origin::Installed))
            .chain(self.bundled.iter().map(|d| (d.as_path(), Origin::Bundled)))
    }

    /// The model called `name`, its files checked against the manifest.
    pub fn get(&self, name: &str) -> Result<ModelEntry, RegistryError> {
        if !plain_file_name(name) {
            return Err(RegistryError::NotFound(name.to_string()));
        }
        for (root, origin) in self.roots() {
            let dir = root.join(name);
            if dir.join(MANIFEST_FILE).is_file() {
                let entry = Self::read_entry(&dir, origin)?;
                if entry.manifest.name != name {
                    return Err(RegistryError::Manifest {
                        model: name.to_string(),
                        message: format!(
                            "name: the directory is {name} but the manifest says {}",
                            entry.manifest.name
                        ),
                    });
                }
                entry.verify()?;
                return Ok(entry);
            }
        }
        Err(RegistryError::NotFound(name.to_string()))
    }

    /// Every model, by name; an installed model hides a bundled one of the same name. Models
    /// whose manifest cannot be read are listed with the error.
    pub fn list(&self) -> BTreeMap<String, Result<ModelEntry, String>> {
        let mut models = BTreeMap::new();
        for (root, origin) in self.roots() {
            let Ok(dirs) = std::fs::read_dir(root) else {
                continue;
            };
            for dir in dirs.flatten() {
                let name = dir.file_name().to_string_lossy().into_owned();
                if models.contains_key(&name) || !dir.path().join(MANIFEST_FILE).is_file() {
                    continue;
                }
                let entry = Self::read_entry(&dir.path(), origin).map_err(|e| e.to_string());
                models.insert(name, entry);
            }
        }
        models
    }

    /// Installs a model on the box: the manifest is checked, the model (and labels) file must
    /// have the manifest's sha256. Written into a temporary directory, fsynced, then renamed
    /// over any previous version, so a power cut leaves either the old or the new model.
    pub fn install(
        &self,
        manifest_text: &str,
        model: &[u8],
        labels: Option<&[u8]>,
    ) -> Result<ModelEntry, RegistryError> {
        let manifest = Manifest::parse(manifest_text)?;
        let checksum = |file: &str, expected: &str, bytes: &[u8]| {
            let actual = sha256_hex(bytes);
            if actual.eq_ignore_ascii_case(expected) {
                Ok(())
            } else {
                Err(RegistryError::Checksum {
                    model: manifest.name.clone(),
                    file: file.to_string(),
                    expected: expected.to_string(),
                    actual,
                })
            }
        };
        checksum(&manifest.file, &manifest.sha256, model)?;
        let labels_file = match (&manifest.labels_file, &manifest.labels_sha256, labels) {
            (Some(file), Some(sha), Some(bytes)) => {
                checksum(file, sha, bytes)?;
                Some((file.as_str(), bytes))
            }
            (Some(file), _, None) => {
                return Err(RegistryError::Manifest {
                    model: manifest.name.clone(),
                    message: format!("labels_file: {file} was not given"),
                });
            }
            _ => None,
        };
        std::fs::create_dir_all(&self.installed).map_err(io_error(&self.installed))?;
        let staging = self
            .installed
            .join(format!(".{}.installing", manifest.name));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging).map_err(io_error(&staging))?;
        let mut files = vec![
            (manifest.file.as_str(), model),
            (MANIFEST_FILE, manifest_text.as_bytes()),
        ];
        files.extend(labels_file);
        for (file, bytes) in files {
            let path = staging.join(file);
            let mut out = std::fs::File::create(&path).map_err(io_error(&path))?;
            out.write_all(bytes).map_err(io_error(&path))?;
            out.sync_all().map_err(io_error(&path))?;
        }
        let target = self.installed.join(&manifest.name);
        let old = self.installed.join(format!(".{}.old", manifest.name));
        let _ = std::fs::remove_dir_all(&old);
        if target.exists() {
            std::fs::rename(&target, &old).map_err(io_error(&target))?;
        }
        std::fs::rename(&staging, &target).map_err(io_error(&target))?;
        let _ = std::fs::remove_dir_all(&old);
        sync_dir(&self.installed)?;
        Self::read_entry(&target, Origin::Installed)
    }

    /// Removes an installed model (a bundled one of the same name shows again).
    pub fn remove(&self, name: &str) -> Result<(), RegistryError> {
        let dir = self.installed.join(name);
        if !plain_file_name(name) || !dir.join(MANIFEST_FILE).is_file() {
            return match self.get(name) {
                Ok(_) => Err(RegistryError::Bundled {
                    model: name.to_string(),
                }),
                Err(_) => Err(RegistryError::NotFound(name.to_string())),
            };
        }
        std::fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        sync_dir(&self.installed)
    }
}

fn sync_dir(dir: &Path) -> Result<(), RegistryError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_for(bytes: &[u8]) -> String {
        format!(
            "name = \"tiny\"\ntask = \"detector\"\nfamily = \"yolov8\"\nfile = \"tiny.onnx\"\n\
             sha256 = \"{}\"\nlabels = [\"person\"]\n[input]\nwidth = 32\nheight = 32\n",
            sha256_hex(bytes)
        )
    }

    #[test]
    fn installs_checks_hashes_and_hides_bundled_models() {
        let root = tempfile::tempdir().unwrap();
        let bundled = root.path().join("bundled");
        let registry = Registry::new(root.path().join("installed"), vec![bundled.clone()]);

        let model = b"not really onnx";
        std::fs::create_dir_all(bundled.join("tiny")).unwrap();
        std::fs::write(bundled.join("tiny/tiny.onnx"), model).unwrap();
        std::fs::write(bundled.join("tiny/manifest.toml"), manifest_for(model)).unwrap();
        assert_eq!(registry.get("tiny").unwrap().origin, Origin::Bundled);
        assert!(matches!(
            registry.remove("tiny"),
            Err(RegistryError::Bundled { .. })
        ));

        let newer = b"a newer model";
        let wrong = registry.install(&manifest_for(newer), model, None);
        assert!(
            matches!(wrong, Err(RegistryError::Checksum { .. })),
            "{wrong:?}"
        );
        let entry = registry.install(&manifest_for(newer), newer, None).unwrap();
        assert_eq!(entry.origin, Origin::Installed);
        assert_eq!(
            std::fs::read(registry.get("tiny").unwrap().model_path()).unwrap(),
            newer
        );
        assert_eq!(registry.list().len(), 1);

        // A file changed on disk after installation is refused, not used.
        std::fs::write(entry.model_path(), b"bit rot").unwrap();
        assert!(matches!(
            registry.get("tiny"),
            Err(RegistryError::Checksum { .. })
        ));

        registry.remove("tiny").unwrap();
        assert_eq!(registry.get("tiny").unwrap().origin, Origin::Bundled);
        assert!(matches!(
            registry.get("../etc"),
            Err(RegistryError::NotFound(_))
        ));
    }

    #[test]
    fn manifest_errors_name_the_field() {
        let good = manifest_for(b"x");
        let cases = [
            (good.replace("yolov8", "yolov9"), "family"),
            (
                good.replace("task = \"detector\"", "task = \"face_detector\""),
                "task",
            ),
            (good.replace("tiny.onnx", "../tiny.onnx"), "file"),
            (good.replace("labels = [\"person\"]\n", ""), "labels"),
            (good.replace("width = 32", "width = 0"), "input.width"),
            (
                good.replace("name = \"tiny\"", "name = \"Tiny Model\""),
                "name",
            ),
        ];
        for (text, field) in cases {
            let error = Manifest::parse(&text).unwrap_err().to_string();
            assert!(error.contains(field), "{field}: {error}");
        }
        let unknown = Manifest::parse(&format!("{good}colour = 1\n")).unwrap_err();
        assert!(unknown.to_string().contains("colour"), "{unknown}");
    }

    #[test]
    fn the_manifests_in_the_repository_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let mut count = 0;
        for file in std::fs::read_dir(dir).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            Manifest::parse(&text).unwrap();
            count += 1;
        }
        assert_eq!(count, 7);
    }
}
