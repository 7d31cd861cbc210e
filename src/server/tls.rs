//! The serving certificate: loaded from PEM files, re-read so rotation needs no restart.
//!
//! The files' identity (device, inode, size, modification time, following symlinks) is checked
//! every second, so the kubelet's `..data` symlink swap of a mounted Secret is picked up at once:
//! after a certificate repair the apiserver's caBundle and the served certificate must agree
//! again as soon as the kubelet has written the new files. Besides, the files are re-read by path
//! on an interval and compared by content. A broken new pair is refused and the last good one
//! keeps serving.
//!
//! Both files are read, checked to belong together, and only then swapped in as one pair. A
//! certificate that does not match its key is what a writer replacing the two files one
//! after the other leaves between its two writes, so the first sight of such a pair is not a
//! failure: the current pair keeps serving and the files are read again on the next tick; the
//! same mismatched pair seen twice is refused and reported.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no usable PEM private key found ({reason})")]
    NoKey { path: PathBuf, reason: String },
    #[error("private key does not match the certificate or is unsupported: {0}")]
    KeyMismatch(String),
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// The certificate and key file paths plus the last pair loaded from them.
#[derive(Debug)]
pub struct CertificateStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwapOption<LoadedPair>,
    /// A fingerprint of the mismatched pair last read, if the last read was one.
    mismatch_seen: Mutex<Option<u64>>,
}

#[derive(Debug)]
struct LoadedPair {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    certified: Arc<CertifiedKey>,
}

impl CertificateStore {
    pub fn new(cert_path: PathBuf, key_path: PathBuf) -> CertificateStore {
        CertificateStore {
            cert_path,
            key_path,
            current: ArcSwapOption::empty(),
            mismatch_seen: Mutex::new(None),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Re-reads both files; returns `Ok(true)` when a new pair was installed, `Ok(false)` when
    /// nothing changed (or the files are between the writes of a rotation, see the module
    /// docs), and an error (keeping the previous pair) when the new files are unusable.
    pub fn reload(&self, provider: &CryptoProvider) -> Result<bool, TlsError> {
        let cert_pem = read(&self.cert_path)?;
        let key_pem = read(&self.key_path)?;
        if let Some(current) = self.current.load().as_ref()
            && current.cert_pem == cert_pem
            && current.key_pem == key_pem
        {
            return Ok(false);
        }
        let certified = match certified_key(
            &self.cert_path,
            &cert_pem,
            &self.key_path,
            &key_pem,
            provider,
        ) {
            Ok(certified) => certified,
            Err(TlsError::KeyMismatch(_)) if self.first_sight_of_mismatch(&cert_pem, &key_pem) => {
                return Ok(false);
            }
            Err(error) => return Err(error),
        };
        self.mismatch_seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        self.current.store(Some(Arc::new(LoadedPair {
            cert_pem,
            key_pem,
            certified: Arc::new(certified),
        })));
        Ok(true)
    }

    /// Whether a mismatched pair may still be a rotation in progress: something is serving,
    /// and these files were not already mismatched like this the last time.
    fn first_sight_of_mismatch(&self, cert_pem: &[u8], key_pem: &[u8]) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (cert_pem, key_pem).hash(&mut hasher);
        let fingerprint = hasher.finish();
        let mut seen = self
            .mismatch_seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.is_loaded() && seen.replace(fingerprint) != Some(fingerprint)
    }

    /// What identifies the files' current contents without reading them: a changed stamp means
    /// the files (or the `..data` symlink they resolve through) were replaced.
    fn stamp(&self) -> Option<[FileStamp; 2]> {
        Some([
            FileStamp::of(&self.cert_path)?,
            FileStamp::of(&self.key_path)?,
        ])
    }

    /// Whether the served certificate chains to one of the CAs in `bundle` (PEM), as the
    /// apiserver checks it: `None` when the bundle holds no certificate or nothing is served.
    /// The host name is not checked here: the bundle says nothing about it.
    pub fn signed_by(&self, bundle: &[u8], provider: &Arc<CryptoProvider>) -> Option<bool> {
        let current = self.current.load();
        let chain = &current.as_ref()?.certified.cert;
        let (leaf, intermediates) = chain.split_first()?;
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(
            CertificateDer::pem_slice_iter(bundle).filter_map(Result::ok),
        );
        if added == 0 {
            return None;
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(provider),
        )
        .build()
        .ok()?;
        let name = rustls_pki_types::ServerName::try_from("pullsecret-injector.invalid").ok()?;
        use rustls::client::danger::ServerCertVerifier;
        let verdict = verifier.verify_server_cert(
            leaf,
            intermediates,
            &name,
            &[],
            rustls_pki_types::UnixTime::now(),
        );
        Some(match verdict {
            Ok(_) => true,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => true,
            Err(_) => false,
        })
    }

    /// The leaf certificate's notAfter as a Unix timestamp.
    pub fn expiry(&self) -> Option<i64> {
        let current = self.current.load();
        let leaf = current.as_ref()?.certified.cert.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        Some(parsed.validity().not_after.timestamp())
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .load()
            .as_ref()
            .map(|pair| Arc::clone(&pair.certified))
    }
}

/// A file's identity and version, following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

/// Why a TLS handshake failed, as a metric label (one of
/// [`crate::telemetry::HANDSHAKE_FAILURE_REASONS`]): the alert a client sent (the apiserver sends
/// `bad_certificate` when it does not trust the served certificate), or what
/// went wrong on this side.
pub fn handshake_failure_reason(error: &std::io::Error) -> &'static str {
    use rustls::AlertDescription as Alert;
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    match tls {
        rustls::Error::AlertReceived(Alert::BadCertificate) => "bad_certificate",
        rustls::Error::AlertReceived(Alert::UnknownCA) => "unknown_ca",
        rustls::Error::AlertReceived(Alert::CertificateExpired) => "certificate_expired",
        // The signature does not verify with the client's CA of the issuer's name.
        rustls::Error::AlertReceived(Alert::DecryptError) => "decrypt_error",
        rustls::Error::AlertReceived(_) => "other_alert",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateHandshakeMessage { .. } => {
            "invalid_message"
        }
        _ => "other",
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    // The key's own parse error is safe to report: it names a PEM problem, never key bytes.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| TlsError::NoKey {
        path: key_path.to_owned(),
        reason: error.to_string(),
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| TlsError::KeyMismatch(e.to_string()))?;
    Ok(certified)
}

/// rustls settings for the webhook port: TLS 1.2 and 1.3 only, HTTP/1.1 by ALPN.
pub fn server_config(
    store: Arc<CertificateStore>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How often the files' stamps are compared: the kubelet's swap is picked up within this.
pub const CHANGE_POLL: Duration = Duration::from_secs(1);

/// Re-reads the certificate when its files change (checked every [`CHANGE_POLL`]) and every
/// `interval` until the process ends; `reloaded` is told of each new pair.
pub async fn watch_certificate(
    store: Arc<CertificateStore>,
    provider: Arc<CryptoProvider>,
    interval: Duration,
    metrics: Metrics,
    reloaded: tokio::sync::watch::Sender<u64>,
) {
    let mut ticker = tokio::time::interval(CHANGE_POLL.min(interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // Unknown at first: the files are compared with what was loaded on the first tick.
    let mut stamp = None;
    let mut last_read = tokio::time::Instant::now();
    // A broken pair stays broken until someone fixes it: report it once, not every interval.
    let mut reported: Option<String> = None;
    loop {
        ticker.tick().await;
        let now_stamp = store.stamp();
        // A mismatched pair seen once (a writer between its two writes) is read again on the
        // next tick, whatever the stamps say.
        let pending = store
            .mismatch_seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some();
        if now_stamp == stamp && !pending && last_read.elapsed() < interval {
            continue;
        }
        stamp = now_stamp;
        last_read = tokio::time::Instant::now();
        match store.reload(&provider) {
            Ok(false) => {}
            Ok(true) => {
                reloaded.send_modify(|count| *count += 1);
                reported = None;
                metrics.observe_certificate_reload(true);
                record_expiry(&store, &metrics);
                tracing::info!(cert = %store.cert_path.display(), "serving certificate reloaded");
            }
            Err(error) => {
                let message = error.to_string();
                if reported.as_deref() != Some(message.as_str()) {
                    metrics.observe_certificate_reload(false);
                    tracing::warn!(%error, "serving certificate not reloaded; keeping the previous one");
                    reported = Some(message);
                }
            }
        }
    }
}

pub fn record_expiry(store: &CertificateStore, metrics: &Metrics) {
    if let Some(expiry) = store.expiry() {
        metrics.certificate_expiry.set(expiry as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::cli::certs::{CertsArgs, generate};

    /// A directory laid out like a mounted Secret: `tls.crt -> ..data/tls.crt`,
    /// `..data -> ..<timestamp>`; `publish` swaps `..data` atomically as the kubelet does.
    struct MountedSecret {
        dir: tempfile::TempDir,
        generation: usize,
    }

    impl MountedSecret {
        fn new() -> MountedSecret {
            let dir = tempfile::tempdir().expect("temp dir");
            symlink("..data/tls.crt", dir.path().join("tls.crt")).expect("link");
            symlink("..data/tls.key", dir.path().join("tls.key")).expect("link");
            MountedSecret { dir, generation: 0 }
        }

        fn publish(&mut self, cert: &[u8], key: &[u8]) {
            self.generation += 1;
            let version = format!("..2026_11_23_{}", self.generation);
            let target = self.dir.path().join(&version);
            std::fs::create_dir(&target).expect("version dir");
            std::fs::write(target.join("tls.crt"), cert).expect("cert");
            std::fs::write(target.join("tls.key"), key).expect("key");
            let staged = self.dir.path().join("..data_tmp");
            symlink(&version, &staged).expect("staged link");
            std::fs::rename(&staged, self.dir.path().join("..data")).expect("swap");
        }

        fn store(&self) -> CertificateStore {
            CertificateStore::new(
                self.dir.path().join("tls.crt"),
                self.dir.path().join("tls.key"),
            )
        }
    }

    fn issue(dir: &Path, days: u32) -> (Vec<u8>, Vec<u8>) {
        let args = CertsArgs {
            out_dir: dir.to_owned(),
            dns_names: vec!["localhost".to_owned()],
            ips: vec!["127.0.0.1".parse().expect("ip")],
            days,
        };
        let files = generate(&args).expect("certificate");
        (
            std::fs::read(files.cert).expect("cert"),
            std::fs::read(files.key).expect("key"),
        )
    }

    #[test]
    fn follows_the_data_symlink_swap_and_keeps_the_last_good_pair() {
        let provider = rustls::crypto::ring::default_provider();
        let issuer = tempfile::tempdir().expect("temp dir");
        let mut mount = MountedSecret::new();
        let (cert, key) = issue(issuer.path(), 30);
        mount.publish(&cert, &key);
        let store = mount.store();
        assert!(!store.is_loaded());
        assert!(store.reload(&provider).expect("first load"));
        assert!(store.is_loaded());
        let first_expiry = store.expiry().expect("expiry");
        assert!(
            !store.reload(&provider).expect("unchanged"),
            "same files are not reloaded"
        );

        let (cert, key) = issue(issuer.path(), 90);
        mount.publish(&cert, &key);
        assert!(store.reload(&provider).expect("rotated"));
        let second_expiry = store.expiry().expect("expiry");
        assert!(
            second_expiry > first_expiry + 50 * 86_400,
            "the new certificate is served"
        );

        let (_, other_key) = issue(tempfile::tempdir().expect("temp dir").path(), 90);
        for (broken_cert, broken_key) in [
            (b"not a certificate".to_vec(), key.clone()),
            (cert.clone(), b"not a key".to_vec()),
            (cert.clone(), other_key),
        ] {
            mount.publish(&broken_cert, &broken_key);
            // A mismatched pair may be a rotation between its two writes the first time.
            let _ = store.reload(&provider);
            assert!(store.reload(&provider).is_err(), "a broken pair is refused");
            assert!(store.is_loaded());
            assert_eq!(
                store.expiry(),
                Some(second_expiry),
                "the last good pair keeps serving"
            );
        }
    }

    /// A writer that replaces the certificate, then the key, in place: a reload between the
    /// two writes must neither serve the new certificate with the old key nor report a failure.
    #[test]
    fn a_rotation_between_its_two_writes_is_neither_served_nor_a_failure() {
        let provider = rustls::crypto::ring::default_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let issuer = tempfile::tempdir().expect("temp dir");
        let (old_cert, old_key) = issue(issuer.path(), 30);
        std::fs::write(&cert_path, &old_cert).expect("cert");
        std::fs::write(&key_path, &old_key).expect("key");
        let store = CertificateStore::new(cert_path.clone(), key_path.clone());
        assert!(store.reload(&provider).expect("first load"));
        let old_expiry = store.expiry();

        let (new_cert, new_key) = issue(tempfile::tempdir().expect("temp dir").path(), 90);
        std::fs::write(&cert_path, &new_cert).expect("new cert");
        assert!(
            !store
                .reload(&provider)
                .expect("between the writes: not a failure"),
            "nothing installed between the writes"
        );
        assert_eq!(store.expiry(), old_expiry, "the old pair keeps serving");

        std::fs::write(&key_path, &new_key).expect("new key");
        assert!(store.reload(&provider).expect("rotated"), "the new pair");
        assert_ne!(store.expiry(), old_expiry, "the new certificate is served");

        // A mismatched pair that stays is refused the second time it is read.
        std::fs::write(&key_path, &old_key).expect("wrong key");
        assert!(!store.reload(&provider).expect("first sight"));
        assert!(matches!(
            store.reload(&provider),
            Err(TlsError::KeyMismatch(_))
        ));
    }

    /// The kubelet's `..data` swap is served within about a second, although the full
    /// re-read interval is an hour: a certificate repair leaves no window in which the pods
    /// serve a certificate the caBundle no longer carries the CA of.
    #[tokio::test(start_paused = true)]
    async fn a_swapped_mount_is_served_within_the_change_poll() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let issuer = tempfile::tempdir().expect("temp dir");
        let mut mount = MountedSecret::new();
        let (cert, key) = issue(issuer.path(), 30);
        mount.publish(&cert, &key);
        let store = Arc::new(mount.store());
        assert!(store.reload(&provider).expect("first load"));
        let first_expiry = store.expiry();
        let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
        let (reloaded, mut reloads) = tokio::sync::watch::channel(0);
        tokio::spawn(watch_certificate(
            Arc::clone(&store),
            Arc::clone(&provider),
            Duration::from_secs(3600),
            metrics,
            reloaded,
        ));
        // Unchanged files are not reloaded.
        assert!(
            tokio::time::timeout(Duration::from_secs(5), reloads.changed())
                .await
                .is_err()
        );
        let (cert, key) = issue(tempfile::tempdir().expect("temp dir").path(), 90);
        mount.publish(&cert, &key);
        tokio::time::timeout(CHANGE_POLL * 3, reloads.changed())
            .await
            .expect("reloaded within the change poll")
            .expect("watcher alive");
        assert_ne!(
            store.expiry(),
            first_expiry,
            "the new certificate is served"
        );
    }

    /// The served certificate is checked against a caBundle as the apiserver checks it: its
    /// own CA (alone or next to another) trusts it, another CA does not, no certificate at all
    /// is "unknown".
    #[test]
    fn the_served_certificate_is_checked_against_a_ca_bundle() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let args = |dir: &Path| CertsArgs {
            out_dir: dir.to_owned(),
            dns_names: vec!["svc.ns.svc".to_owned()],
            ips: vec![],
            days: 30,
        };
        let (own, other) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let own_files = generate(&args(own.path())).expect("own");
        let other_files = generate(&args(other.path())).expect("other");
        let store = CertificateStore::new(own_files.cert.clone(), own_files.key.clone());
        assert_eq!(store.signed_by(b"", &provider), None, "nothing served yet");
        store.reload(&provider).expect("load");
        let own_ca = std::fs::read(&own_files.ca_cert).expect("ca");
        let other_ca = std::fs::read(&other_files.ca_cert).expect("ca");
        assert_eq!(store.signed_by(&own_ca, &provider), Some(true));
        let both = [other_ca.clone(), own_ca].concat();
        assert_eq!(store.signed_by(&both, &provider), Some(true));
        assert_eq!(store.signed_by(&other_ca, &provider), Some(false));
        assert_eq!(store.signed_by(b"not a bundle", &provider), None);
    }

    #[test]
    fn handshake_failures_are_named_by_the_alert_the_client_sent() {
        let tls =
            |error: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, error);
        assert_eq!(
            handshake_failure_reason(&tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::BadCertificate
            ))),
            "bad_certificate"
        );
        assert_eq!(
            handshake_failure_reason(&tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA
            ))),
            "unknown_ca"
        );
        assert_eq!(
            handshake_failure_reason(&std::io::ErrorKind::UnexpectedEof.into()),
            "eof"
        );
        for reason in ["bad_certificate", "unknown_ca", "eof", "io", "other"] {
            assert!(crate::telemetry::HANDSHAKE_FAILURE_REASONS.contains(&reason));
        }
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let store =
            CertificateStore::new("/nonexistent/tls.crt".into(), "/nonexistent/tls.key".into());
        let error = store
            .reload(&rustls::crypto::ring::default_provider())
            .expect_err("missing");
        assert!(
            error
                .to_string()
                .starts_with("cannot read /nonexistent/tls.crt")
        );
    }

    #[test]
    fn an_rsa_pair_is_served_as_well_as_an_ecdsa_one() {
        // `certs` makes ECDSA pairs; an RSA pair comes from openssl (needed, never skipped).
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is needed to make an RSA test certificate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let store = CertificateStore::new(cert, key);
        let provider = rustls::crypto::ring::default_provider();
        assert!(store.reload(&provider).expect("an RSA pair loads"));
        assert!(store.expiry().is_some());
    }
}
