//! Media to an S3-compatible object store: one signed `PUT` per file.
//!
//! Why presigned URLs (AWS Signature Version 4 in the query string, by `rusty-s3`) rather than a
//! signed `Authorization` header: the signature covers the method, the object, the bucket's host
//! and the `Content-Type`, not the payload (`UNSIGNED-PAYLOAD`), so a file is signed without
//! hashing it again (its SHA-256 is in its object key and was checked when it was stored) and the
//! request is a plain HTTP `PUT` any client makes. The same URL shape is what a cloud that hands
//! out presigned URLs itself would give the box.
//!
//! Why `ureq` on the blocking pool: one request per file, a few a minute at most, needs no async
//! HTTP stack; the uploader waits for it as it waits for an MQTT PUBACK.
//!
//! Objects are `<prefix>/<device id>/<event id>/<n>-<sha256>.<ext>`: per box and event, so a
//! bucket's listing reads like the event log, and named by content, so a repeated upload (after
//! a lost response or a crash) writes the same object again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use appliance_model::{EventId, MediaRef};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use rusty_s3::actions::{GetObject, PutObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use url::Url;

use crate::PublishError;

/// `[uplink.s3] region` when the configuration names none: what MinIO and most S3-compatible
/// servers sign with unless told otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";
/// How long a TCP (and TLS) connection to the endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a presigned URL stays valid. S3 checks it when the request starts, so it only needs
/// to cover the moment between signing and sending; generous, for a box whose clock drifts.
const PRESIGNED_FOR: Duration = Duration::from_secs(3600);
/// The most of an error response read, for its S3 error code.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;
/// How long the request that asks why an upload was cut off may take.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom media are uploaded: `[uplink.s3]` and the box's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `http(s)://host:port`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// The first part of every object key.
    pub prefix: String,
    /// `endpoint/bucket/key` (MinIO and most self-hosted servers) rather than
    /// `bucket.endpoint/key`.
    pub path_style: bool,
    /// PEM CA bundle that signs the endpoint's certificate; `None`: the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// The second part of every object key.
    pub device_id: String,
}

impl S3Config {
    /// Path style, region [`DEFAULT_REGION`], prefix `appliance`, no CA file.
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
        device_id: impl Into<String>,
    ) -> S3Config {
        S3Config {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: DEFAULT_REGION.to_owned(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            prefix: crate::mqtt::DEFAULT_TOPIC_PREFIX.to_owned(),
            path_style: true,
            ca_file: None,
            device_id: device_id.into(),
        }
    }
}

/// A configuration the client cannot use, in words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct S3ConfigError(String);

/// Uploads media files to one bucket; its HTTP agent keeps the connection between files.
pub struct S3Client {
    /// `scheme://host:port` of the server, for messages.
    endpoint: String,
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    device_id: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for S3Client {
    /// Without the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl S3Client {
    /// Checks the endpoint and reads the CA file; connects to nothing.
    pub fn new(config: S3Config) -> Result<S3Client, S3ConfigError> {
        let endpoint = Url::parse(&config.endpoint)
            .map_err(|e| S3ConfigError(format!("endpoint `{}`: {e}", config.endpoint)))?;
        let server = match (endpoint.host_str(), endpoint.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", endpoint.scheme()),
            _ => config.endpoint.clone(),
        };
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, config.bucket.clone(), config.region)
            .map_err(|e| S3ConfigError(format!("endpoint `{}`: {e}", config.endpoint)))?;
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            // Redirects would re-send a signed request elsewhere; S3 answers a wrong region or
            // host with an error, which is what the status should show.
            .redirects(0);
        if let Some(ca_file) = &config.ca_file {
            agent = agent.tls_config(Arc::new(tls_config(ca_file)?));
        }
        Ok(S3Client {
            endpoint: server,
            bucket,
            credentials: Credentials::new(config.access_key, config.secret_key),
            prefix: config.prefix,
            device_id: config.device_id,
            agent: agent.build(),
        })
    }

    /// `<prefix>/<device id>/<event id>/<n>-<sha256>.<ext>`, `n` the file's index in the event's
    /// `media`.
    pub fn object_key(&self, event_id: EventId, n: usize, media: &MediaRef) -> String {
        format!(
            "{}/{}/{event_id}/{n}-{}.{}",
            self.prefix,
            self.device_id,
            media.sha256,
            extension(&media.content_type)
        )
    }

    /// The object's URL, unsigned: what the cloud fetches it by, with its own credentials.
    pub fn object_url(&self, key: &str) -> String {
        self.bucket
            .object_url(key)
            .map(String::from)
            .unwrap_or_else(|_| format!("{}/{}/{key}", self.endpoint, self.bucket.name()))
    }

    /// Stores `data` as `key` with its `Content-Type`; returns once the server answered 2xx.
    /// `timeout` bounds the whole request, upload included.
    pub async fn put(
        &self,
        key: &str,
        content_type: &str,
        data: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        let mut action = PutObject::new(&self.bucket, Some(&self.credentials), key);
        action.headers_mut().insert("content-type", content_type);
        let url = action.sign(PRESIGNED_FOR);
        let request = self
            .agent
            .request_url("PUT", &url)
            .timeout(timeout)
            .set("Content-Type", content_type);
        // Boxed: ureq's error is large, and it is the rare case.
        let sent = tokio::task::spawn_blocking(move || request.send_bytes(&data).map_err(Box::new))
            .await
            .map_err(|e| PublishError::Connection(format!("the upload task failed: {e}")))?;
        match sent.map_err(|e| *e) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(status, response)) => Err(PublishError::Rejected(format!(
                "{} refused {key}: {}",
                self.endpoint,
                refusal(status, &error_body(response), self.bucket.name())
            ))),
            Err(ureq::Error::Transport(transport)) => {
                let io = io_kind(&transport);
                if matches!(
                    io,
                    Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
                ) {
                    return Err(PublishError::Timeout(timeout));
                }
                // A server that refuses a request may answer and close before it has read the
                // body, so the client sees the connection cut, not the answer: ask again
                // without a body to learn why.
                if matches!(
                    io,
                    Some(std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)
                ) && let Some(why) = self.refused(key).await
                {
                    return Err(PublishError::Rejected(format!(
                        "{} refused {key}: {why}",
                        self.endpoint
                    )));
                }
                Err(PublishError::Connection(format!(
                    "{}: {}",
                    self.endpoint,
                    connection_failure(&transport)
                )))
            }
        }
    }

    /// Why the server refuses requests for `key`, in words, by a signed `GET` of it; `None` if
    /// it does not (the object is there, or it is only missing).
    async fn refused(&self, key: &str) -> Option<String> {
        let url = GetObject::new(&self.bucket, Some(&self.credentials), key).sign(PRESIGNED_FOR);
        let request = self
            .agent
            .request_url("GET", &url)
            .timeout(DIAGNOSIS_TIMEOUT);
        let answer = tokio::task::spawn_blocking(move || match request.call() {
            Err(ureq::Error::Status(status, response)) => Some((status, error_body(response))),
            _ => None,
        })
        .await
        .ok()
        .flatten()?;
        match answer {
            (_, body) if xml_element(&body, "Code").as_deref() == Some("NoSuchKey") => None,
            (status, body) => Some(refusal(status, &body, self.bucket.name())),
        }
    }
}

/// The start of an error response's body: an S3 error document, or nothing if it is unreadable
/// (the error then only lacks its details).
fn error_body(response: ureq::Response) -> String {
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(
        &mut std::io::Read::take(response.into_reader(), ERROR_BODY_LIMIT),
        &mut body,
    );
    body
}

/// The I/O error under a transport error, if that is what it is.
fn io_kind(error: &ureq::Transport) -> Option<std::io::ErrorKind> {
    std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
}

/// An S3 error response in words: the status, the S3 error code and what it means for the
/// configuration.
fn refusal(status: u16, body: &str, bucket: &str) -> String {
    let code = xml_element(body, "Code");
    let hint = match code.as_deref() {
        Some("InvalidAccessKeyId" | "NotSignedUp") => {
            "authentication refused: the server knows no such access key (check [uplink.s3] access_key)".to_owned()
        }
        Some("SignatureDoesNotMatch") => {
            "authentication refused: the signature does not match (check [uplink.s3] secret_key and region)".to_owned()
        }
        Some("AccessDenied") => {
            "access denied: the key may not write to this bucket".to_owned()
        }
        Some("NoSuchBucket") => format!("no such bucket `{bucket}` (create it first)"),
        Some("RequestTimeTooSkewed" | "RequestExpired") => {
            "the box's clock is too far off the server's".to_owned()
        }
        Some("AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError") => {
            "the request was signed for another region (check [uplink.s3] region)".to_owned()
        }
        Some("EntityTooLarge") => "the file is larger than the server takes".to_owned(),
        _ => xml_element(body, "Message").unwrap_or_default(),
    };
    let code = code.map(|c| format!(" {c}")).unwrap_or_default();
    if hint.is_empty() {
        format!("HTTP {status}{code}")
    } else {
        format!("HTTP {status}{code}: {hint}")
    }
}

/// The text of the first `<name>` element: enough of an S3 error document, without an XML
/// parser.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + body[start..].find(&format!("</{name}>"))?;
    Some(body[start..end].trim().to_owned()).filter(|text| !text.is_empty())
}

/// A transport error in words: refused, unreachable, a name that does not resolve, TLS.
fn connection_failure(error: &ureq::Transport) -> String {
    match (error.kind(), io_kind(error)) {
        (_, Some(std::io::ErrorKind::ConnectionRefused)) => {
            "connection refused (is the server up?)".to_owned()
        }
        (ureq::ErrorKind::Dns, _) => format!("cannot resolve the host: {error}"),
        (ureq::ErrorKind::ConnectionFailed, _) => format!("cannot connect: {error}"),
        _ => error.to_string(),
    }
}

/// The object's extension by its content type (`bin` for one the box does not write).
fn extension(content_type: &str) -> &'static str {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    match essence {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "video/mp4" => "mp4",
        "video/mp2t" => "ts",
        "video/MP2P" | "video/mp2p" => "ps",
        _ => "bin",
    }
}

/// TLS that trusts only the configured CA: a box pointed at a private object store should not
/// also accept any public certificate for its name.
fn tls_config(ca_file: &std::path::Path) -> Result<ClientConfig, S3ConfigError> {
    let read = |what: String| S3ConfigError(format!("ca_file {}: {what}", ca_file.display()));
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| read(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(read("no certificate in it".into()));
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| read(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    use appliance_model::MediaKind;

    use super::*;

    fn client(path_style: bool) -> S3Client {
        let mut config = S3Config::new("http://s3.example.com:9000", "media", "k", "s", "box-1");
        config.path_style = path_style;
        config.prefix = "acme/site".into();
        S3Client::new(config).unwrap()
    }

    #[test]
    fn objects_are_named_by_box_event_index_and_content() {
        let media = MediaRef {
            kind: MediaKind::Snapshot,
            content_type: "image/jpeg".into(),
            sha256: "ab".repeat(32),
            size: 3,
        };
        let event = EventId::from_parts(1_700_000_000_000, 3);
        let path_style = client(true);
        let key = path_style.object_key(event, 1, &media);
        assert_eq!(
            key,
            format!("acme/site/box-1/{event}/1-{}.jpg", "ab".repeat(32))
        );
        assert_eq!(
            path_style.object_url(&key),
            format!("http://s3.example.com:9000/media/{key}")
        );
        assert_eq!(
            client(false).object_url("a/b.mp4"),
            "http://media.s3.example.com:9000/a/b.mp4"
        );
        assert_eq!(extension("video/mp4"), "mp4");
        assert_eq!(extension("application/octet-stream"), "bin");
    }

    #[test]
    fn error_responses_are_put_in_words() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\
                    <Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(
            refusal(404, body, "media"),
            "HTTP 404 NoSuchBucket: no such bucket `media` (create it first)"
        );
        let body = "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>";
        assert_eq!(
            refusal(503, body, "media"),
            "HTTP 503 SlowDown: Reduce your rate"
        );
        assert_eq!(refusal(502, "bad gateway", "media"), "HTTP 502");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let mut config = S3Config::new("https://127.0.0.1:9000", "media", "k", "s", "box-1");
        config.ca_file = Some(path);
        let error = S3Client::new(config).unwrap_err().to_string();
        assert!(error.contains("no certificate"), "{error}");
    }
}
