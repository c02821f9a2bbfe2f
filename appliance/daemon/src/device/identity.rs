//! The box's TLS identity: a key pair and a self-signed certificate, made on the first start of
//! a data directory (so per device, never in the image) and kept beside the store. The API
//! serves HTTPS with it when `http.tls` is on; its SHA-256 fingerprint is public (`GET
//! /api/v1/claim`) so an installer can check it before sending the admin password.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

/// Where the key and certificate live, under the data directory.
const DIR: &str = "identity";

/// Paths of the key and certificate (PEM) and the certificate's fingerprint.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub key_path: PathBuf,
    pub cert_path: PathBuf,
    /// SHA-256 of the certificate (DER), hex.
    pub fingerprint: String,
}

/// Loads the identity, or makes it when the data directory has none.
pub fn ensure(data_dir: &Path, device_id: &str) -> anyhow::Result<TlsIdentity> {
    let dir = data_dir.join(DIR);
    let key_path = dir.join("device.key");
    let cert_path = dir.join("device.crt");
    if !(key_path.exists() && cert_path.exists()) {
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // The names a browser may reach the box by; IP addresses change with DHCP, so none.
        let names = vec![
            device_id.to_owned(),
            format!("{device_id}.local"),
            "localhost".to_owned(),
        ];
        let certified = rcgen::generate_simple_self_signed(names)
            .context("cannot generate the device certificate")?;
        // Key first, certificate last: a certificate on disk means its key is there too.
        write_durably(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
        write_durably(&cert_path, certified.cert.pem().as_bytes())?;
        tracing::info!(path = %cert_path.display(), "generated this box's key pair and certificate");
    }
    let pem =
        fs::read(&cert_path).with_context(|| format!("cannot read {}", cert_path.display()))?;
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem)
        .map(|der: rustls::pki_types::CertificateDer| der.to_vec())
        .with_context(|| format!("{} is not a PEM certificate", cert_path.display()))?;
    Ok(TlsIdentity {
        key_path,
        cert_path,
        fingerprint: hex::encode(Sha256::digest(&der)),
    })
}

/// Writes `bytes` to `path` readable by the owner only, via a temporary file, fsync and rename.
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn made_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), "box-0001").unwrap();
        let mode = fs::metadata(&first.key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(first.fingerprint.len(), 64);
        let again = ensure(dir.path(), "box-0001").unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        let other = ensure(tempfile::tempdir().unwrap().path(), "box-0001").unwrap();
        assert_ne!(
            first.fingerprint, other.fingerprint,
            "per device, never shared"
        );
    }
}
