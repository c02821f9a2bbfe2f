//! ONNX Runtime, loaded from a shared library at run time, and one session per model.
//!
//! Why a wrapper around `ort`: the library must be found without flags on a developer machine
//! (setup puts it in the checkout), on the firmware (a system path) and wherever the config
//! says; execution providers are tried in the configured order and each one that cannot be used
//! is skipped with its reason logged, not left to fail the whole session; and the callers (the
//! model families, the daemon's batcher) want plain `f32` slices in and out, not ort's value
//! types, so they stay testable without a runtime.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

/// File name of the library as the PyPI wheel and distributions ship it.
const LIBRARY_NAME: &str = "libonnxruntime.so";

/// Where the library is looked for when neither the config nor `ORT_DYLIB_PATH` names it: the
/// firmware's system paths, then the copy `just setup` puts into this checkout (`.local/`, found
/// from the crate's own path at build time, so a development build needs no environment).
fn default_library_candidates() -> Vec<PathBuf> {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.local/onnxruntime");
    vec![
        PathBuf::from("/usr/lib").join(LIBRARY_NAME),
        PathBuf::from("/usr/local/lib").join(LIBRARY_NAME),
        checkout.join(LIBRARY_NAME),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked at {looked_at}); run `just setup`, set \
         vision.onnxruntime in the config or ORT_DYLIB_PATH"
    )]
    LibraryNotFound { looked_at: String },
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("ONNX Runtime is already loaded from {loaded}; cannot switch to {requested}")]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error("model {path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("inference on {model}: {message}")]
    Run { model: String, message: String },
}

/// An execution provider, in the order the config lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// TensorRT (Jetson), with its engine cache so only the first start builds engines.
    Tensorrt,
    Cuda,
    /// XNNPACK: ARM NEON kernels for CPUs without an accelerator ONNX Runtime can drive.
    Xnnpack,
    /// Arm Compute Library.
    Acl,
    Cpu,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Tensorrt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Xnnpack => "xnnpack",
            Provider::Acl => "acl",
            Provider::Cpu => "cpu",
        }
    }
}

/// How sessions are made.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The library; `None`: `ORT_DYLIB_PATH`, then the default places.
    pub library: Option<PathBuf>,
    pub providers: Vec<Provider>,
    /// Threads of one session's intra-op pool.
    pub intra_threads: usize,
    /// Where TensorRT keeps its engines (under the data dir on the box).
    pub engine_cache: Option<PathBuf>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            library: None,
            providers: vec![Provider::Cpu],
            intra_threads: 2,
            engine_cache: None,
        }
    }
}

/// Finds the library: the configured path (which must exist), else `ORT_DYLIB_PATH`, else the
/// default places.
pub fn find_library(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = configured {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(RuntimeError::LibraryNotFound {
                looked_at: path.display().to_string(),
            })
        };
    }
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(PathBuf::from(path));
    }
    candidates.extend(default_library_candidates());
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| RuntimeError::LibraryNotFound {
            looked_at: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

static LOADED: OnceLock<(PathBuf, ort::environment::Environment)> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// The loaded runtime: the process loads one ONNX Runtime library, once.
#[derive(Debug, Clone)]
pub struct Runtime {
    options: RuntimeOptions,
    library: PathBuf,
}

impl Runtime {
    pub fn load(options: RuntimeOptions) -> Result<Self, RuntimeError> {
        let library = find_library(options.library.as_deref())?;
        let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((loaded, _)) = LOADED.get() {
            if !same_file(loaded, &library) {
                return Err(RuntimeError::AlreadyLoaded {
                    loaded: loaded.clone(),
                    requested: library,
                });
            }
        } else {
            let load_error = |message: String| RuntimeError::Load {
                path: library.clone(),
                message,
            };
            let environment = ort::init_from(&library)
                .map_err(|e| load_error(e.to_string()))?
                .with_name("applianced")
                .with_telemetry(false)
                .build()
                .map_err(|e| load_error(e.to_string()))?;
            tracing::info!(library = %library.display(), "ONNX Runtime loaded");
            let _ = LOADED.set((library.clone(), environment));
        }
        Ok(Self { options, library })
    }

    pub fn library(&self) -> &Path {
        &self.library
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    fn environment(&self) -> &ort::environment::Environment {
        &LOADED.get().expect("set in Runtime::load").1
    }

    /// Loads a model with the first usable providers. A provider missing from this ONNX Runtime
    /// build, or failing to register, is skipped with the reason logged; if the session cannot
    /// be made with the providers that registered, it is made on the CPU alone, logged too.
    pub fn session(&self, path: &Path) -> Result<Model, RuntimeError> {
        let model_error = |message: String| RuntimeError::Model {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| model_error(e.to_string()))?;
        let (session, providers) = match self.build(&bytes, &self.options.providers) {
            Ok(built) => built,
            Err(reason) if self.options.providers.iter().any(|p| *p != Provider::Cpu) => {
                tracing::warn!(model = %path.display(), %reason, "falling back to the CPU");
                self.build(&bytes, &[Provider::Cpu]).map_err(model_error)?
            }
            Err(reason) => return Err(model_error(reason)),
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Model::new(name, session, providers)
    }

    fn build(
        &self,
        model: &[u8],
        providers: &[Provider],
    ) -> Result<(Session, Vec<Provider>), String> {
        let mut builder = Session::builder(self.environment())
            .and_then(|b| {
                b.with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(Into::into)
            })
            .and_then(|b| {
                b.with_intra_threads(self.options.intra_threads.max(1))
                    .map_err(Into::into)
            })
            .map_err(|e: ort::Error| e.to_string())?;
        let mut registered = Vec::new();
        for &provider in providers {
            match self.register(provider, &mut builder) {
                Ok(()) => registered.push(provider),
                Err(reason) => {
                    tracing::warn!(provider = provider.name(), %reason, "execution provider skipped")
                }
            }
        }
        if !registered.contains(&Provider::Cpu) {
            // ONNX Runtime runs what no other provider takes on the CPU anyway; say so.
            registered.push(Provider::Cpu);
        }
        let session = builder
            .commit_from_memory(model)
            .map_err(|e| e.to_string())?;
        Ok((session, registered))
    }

    fn register(
        &self,
        provider: Provider,
        builder: &mut ort::session::builder::SessionBuilder,
    ) -> Result<(), String> {
        fn try_register<E: ort::ep::ExecutionProvider>(
            ep: E,
            builder: &mut ort::session::builder::SessionBuilder,
        ) -> Result<(), String> {
            match E::is_available() {
                Ok(true) => ep.register(builder).map_err(|e| e.to_string()),
                Ok(false) => Err("not in this ONNX Runtime build".into()),
                Err(e) => Err(e.to_string()),
            }
        }
        match provider {
            Provider::Cpu => Ok(()),
            Provider::Tensorrt => {
                let mut trt = ort::ep::TensorRT::default().with_fp16(true);
                if let Some(cache) = &self.options.engine_cache {
                    std::fs::create_dir_all(cache).map_err(|e| e.to_string())?;
                    trt = trt
                        .with_engine_cache(true)
                        .with_engine_cache_path(cache.display())
                        .with_timing_cache(true)
                        .with_timing_cache_path(cache.display());
                }
                try_register(trt, builder)
            }
            Provider::Cuda => try_register(ort::ep::CUDA::default(), builder),
            Provider::Xnnpack => try_register(ort::ep::XNNPACK::default(), builder),
            Provider::Acl => try_register(ort::ep::ACL::default(), builder),
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// One input or output of a model: its name and declared shape (`-1` for a free dimension).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i64>,
}

/// A tensor handed to a model.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub shape: &'a [i64],
    pub data: &'a [f32],
}

/// A tensor a model returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

/// One session; `run` may be called from any thread (one run at a time per session: ONNX
/// Runtime parallelises inside a run with the intra-op threads).
pub struct Model {
    name: String,
    session: Mutex<Session>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    providers: Vec<Provider>,
    metadata: Vec<(String, String)>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("providers", &self.providers)
            .finish()
    }
}

impl Model {
    fn new(name: String, session: Session, providers: Vec<Provider>) -> Result<Self, RuntimeError> {
        let info = |outlet: &ort::value::Outlet| TensorInfo {
            name: outlet.name().to_string(),
            shape: outlet
                .dtype()
                .tensor_shape()
                .map(|shape| shape.iter().copied().collect())
                .unwrap_or_default(),
        };
        let inputs = session.inputs().iter().map(info).collect();
        let outputs = session.outputs().iter().map(info).collect();
        let metadata = session
            .metadata()
            .ok()
            .and_then(|m| {
                let keys = m.custom_keys().ok()?;
                Some(
                    keys.into_iter()
                        .filter_map(|k| m.custom(&k).map(|v| (k, v)))
                        .collect(),
                )
            })
            .unwrap_or_default();
        Ok(Self {
            name,
            session: Mutex::new(session),
            inputs,
            outputs,
            providers,
            metadata,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// The providers the session was made with, in priority order (CPU last).
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// A custom metadata entry of the model file (PP-OCR's recogniser carries its alphabet so).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Runs the model on its inputs, in the order the model declares them, and returns every
    /// output in the order the model declares them.
    pub fn run(&self, inputs: &[Input<'_>]) -> Result<Vec<Output>, RuntimeError> {
        let run_error = |message: String| RuntimeError::Run {
            model: self.name.clone(),
            message,
        };
        if inputs.len() != self.inputs.len() {
            return Err(run_error(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                self.inputs.len()
            )));
        }
        let mut values = Vec::with_capacity(inputs.len());
        for (input, info) in inputs.iter().zip(&self.inputs) {
            let expected: i64 = input.shape.iter().product();
            if expected < 0 || expected as usize != input.data.len() {
                return Err(run_error(format!(
                    "input {}: shape {:?} does not hold {} values",
                    info.name,
                    input.shape,
                    input.data.len()
                )));
            }
            let tensor = TensorRef::from_array_view((input.shape.to_vec(), input.data))
                .map_err(|e| run_error(e.to_string()))?;
            values.push((info.name.clone(), tensor));
        }
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(
                values
                    .iter()
                    .map(|(name, tensor)| (name.as_str(), tensor.view()))
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| run_error(e.to_string()))?;
        self.outputs
            .iter()
            .map(|info| {
                let (shape, data) = outputs[info.name.as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| run_error(format!("output {}: {e}", info.name)))?;
                Ok(Output {
                    name: info.name.clone(),
                    shape: shape.iter().copied().collect(),
                    data: data.to_vec(),
                })
            })
            .collect()
    }
}
