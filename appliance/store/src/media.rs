//! Content-addressed media files: `media/<first two hex digits>/<sha-256 hex>`.
//!
//! A file is written to `media/tmp/`, fsynced, renamed into place and its directory fsynced before
//! its reference is returned, so an event that commits never points at a file that a power cut can
//! take away. Files that no event references (a crash between the write and the commit, or a
//! retention pass that died before deleting) are swept when the store opens.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a freshly written file is protected from deletion while its event has not committed
/// yet. Retention may otherwise remove a file whose old referrers it just deleted while a new event
/// that shares the same content is still on its way to the writer.
const FRESH_GRACE: Duration = Duration::from_secs(600);

pub(crate) struct MediaFiles {
    root: PathBuf,
    bytes: AtomicU64,
    tmp_counter: AtomicU64,
    /// When each file was last handed out by `put`; guarded together with deletions.
    fresh: Mutex<HashMap<[u8; 32], Instant>>,
}

pub(crate) struct Stored {
    pub sha256: [u8; 32],
    pub size: u64,
}

impl MediaFiles {
    pub fn open(root: &Path) -> io::Result<MediaFiles> {
        fs::create_dir_all(root.join("tmp"))?;
        Ok(MediaFiles {
            root: root.to_path_buf(),
            bytes: AtomicU64::new(0),
            tmp_counter: AtomicU64::new(0),
            fresh: Mutex::new(HashMap::new()),
        })
    }

    pub fn path_of(&self, sha: &[u8; 32]) -> PathBuf {
        let name = hex::encode(sha);
        self.root.join(&name[..2]).join(name)
    }

    pub fn exists(&self, sha: &[u8; 32]) -> bool {
        self.path_of(sha).is_file()
    }

    /// Total size of the files on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Writes `data` durably unless a file with the same content exists.
    pub fn put(&self, data: &[u8]) -> io::Result<Stored> {
        let sha: [u8; 32] = Sha256::digest(data).into();
        let stored = Stored {
            sha256: sha,
            size: data.len() as u64,
        };
        // Mark it fresh before looking: a deletion either happened before (we rewrite the file)
        // or sees the mark and keeps it.
        self.lock_fresh().insert(sha, Instant::now());
        let path = self.path_of(&sha);
        if path.is_file() {
            return Ok(stored);
        }
        let tmp = self.root.join("tmp").join(format!(
            "{}.{}.{}",
            hex::encode(&sha[..8]),
            std::process::id(),
            self.tmp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        let dir = path.parent().expect("media paths have a parent");
        let dir_is_new = !dir.exists();
        fs::create_dir_all(dir)?;
        fs::rename(&tmp, &path)?;
        sync_dir(dir)?;
        if dir_is_new {
            sync_dir(&self.root)?;
        }
        self.bytes.fetch_add(stored.size, Ordering::Relaxed);
        Ok(stored)
    }

    /// Deletes the file unless it was handed out recently. `still_referenced` is asked under the
    /// same lock that `put` takes, so a concurrent `put` of the same content cannot lose its file.
    pub fn delete_if_unreferenced(
        &self,
        sha: &[u8; 32],
        still_referenced: impl FnOnce() -> bool,
    ) -> io::Result<bool> {
        let mut fresh = self.lock_fresh();
        fresh.retain(|_, at| at.elapsed() < FRESH_GRACE);
        if fresh.contains_key(sha) || still_referenced() {
            return Ok(false);
        }
        self.remove(sha)
    }

    fn remove(&self, sha: &[u8; 32]) -> io::Result<bool> {
        let path = self.path_of(sha);
        let size = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        fs::remove_file(&path)?;
        self.bytes
            .fetch_sub(size.min(self.bytes()), Ordering::Relaxed);
        Ok(true)
    }

    /// Start-up pass: removes temporary files and every file `is_referenced` rejects, and counts
    /// the bytes of the rest. Returns how many files were removed.
    pub fn sweep(&self, is_referenced: impl Fn(&[u8; 32]) -> bool) -> io::Result<u64> {
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            fs::remove_file(entry?.path())?;
            removed += 1;
        }
        let mut kept_bytes = 0;
        self.each_file(|path, sha| {
            match sha {
                Some(sha) if is_referenced(&sha) => kept_bytes += fs::metadata(&path)?.len(),
                Some(_) => {
                    fs::remove_file(&path)?;
                    removed += 1;
                }
                None => {
                    tracing::warn!(path = %path.display(), "unexpected file in the media directory left alone")
                }
            }
            Ok(())
        })?;
        self.bytes.store(kept_bytes, Ordering::Relaxed);
        Ok(removed)
    }

    /// Every content hash on disk (for consistency checks).
    pub fn list(&self) -> io::Result<Vec<[u8; 32]>> {
        let mut out = Vec::new();
        self.each_file(|_, sha| {
            out.extend(sha);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `visit` with each file under the two-digit directories and its hash, if its name is one.
    fn each_file(
        &self,
        mut visit: impl FnMut(PathBuf, Option<[u8; 32]>) -> io::Result<()>,
    ) -> io::Result<()> {
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            if dir.file_name() == "tmp" || !dir.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(dir.path())? {
                let file = file?;
                let sha = file
                    .file_name()
                    .to_str()
                    .and_then(crate::record::sha_from_hex);
                visit(file.path(), sha)?;
            }
        }
        Ok(())
    }

    /// Ends the grace period of every file now (tests of retention).
    #[cfg(test)]
    pub fn forget_fresh(&self) {
        self.lock_fresh().clear();
    }

    fn lock_fresh(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        // The map holds no invariant a panicking holder could break.
        self.fresh
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
