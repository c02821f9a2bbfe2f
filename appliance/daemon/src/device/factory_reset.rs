//! Factory reset: everything in the data directory goes (store, media, models, keys, the admin
//! password), the firmware stays. The daemon never wipes the store it has open: a reset is a
//! marker file, written durably, and the wipe happens at the next start before the store opens
//! (the image's `appliance-factory-reset.service` also clears the media server's state then).
//! Deleting the marker is the wipe's last step, so a power cut in the middle wipes again at the
//! next start instead of starting on half a data directory.

use std::fs;
use std::io;
use std::path::Path;

/// Name of the marker in the data directory.
pub const MARKER: &str = ".factory-reset";

/// Asks for a factory reset at the next start. Durable when it returns.
pub fn request(data_dir: &Path) -> io::Result<()> {
    fs::create_dir_all(data_dir)?;
    let marker = data_dir.join(MARKER);
    let file = fs::File::create(&marker)?;
    file.sync_all()?;
    fs::File::open(data_dir)?.sync_all()
}

/// Wipes the data directory if a reset was asked for; `Ok(true)` when it did. The directory
/// itself stays (systemd's StateDirectory owns it).
pub fn wipe_if_requested(data_dir: &Path) -> io::Result<bool> {
    let marker = data_dir.join(MARKER);
    if !marker.exists() {
        return Ok(false);
    }
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if entry.file_name() == MARKER {
            continue;
        }
        // `file_type` does not follow symlinks, and `remove_dir_all` does not follow them
        // either: a link in the data directory is removed, never what it points at.
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    fs::File::open(data_dir)?.sync_all()?;
    fs::remove_file(&marker)?;
    fs::File::open(data_dir)?.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_happens_without_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("keep"), b"x").unwrap();
        assert!(!wipe_if_requested(dir.path()).unwrap());
        assert!(dir.path().join("keep").exists());
    }

    #[test]
    fn a_requested_reset_empties_the_directory_but_not_link_targets() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), b"x").unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("media/2026")).unwrap();
        fs::write(data.join("media/2026/a.jpg"), b"jpeg").unwrap();
        fs::write(data.join("db"), b"sled").unwrap();
        std::os::unix::fs::symlink(outside.path(), data.join("link")).unwrap();
        request(&data).unwrap();
        assert!(wipe_if_requested(&data).unwrap());
        assert_eq!(fs::read_dir(&data).unwrap().count(), 0);
        assert!(outside.path().join("precious").exists());
        // Done once: the next start finds nothing to do.
        assert!(!wipe_if_requested(&data).unwrap());
    }
}
