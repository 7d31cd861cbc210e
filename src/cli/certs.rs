//! `certs`: a development CA and a serving certificate (ECDSA P-256) for the webhook.
//!
//! ECDSA keeps TLS handshakes cheap, which matters when the apiserver opens fresh connections
//! under bursts. An existing CA in the output directory is reused, so a new serving certificate
//! can be issued (rotation) without changing the caBundle; half a CA (a key without its
//! certificate, or the reverse) is refused rather than replaced, so a CA key is never lost.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Directory for ca.crt, ca.key, tls.crt and tls.key (created if missing).
    #[arg(long, value_name = "DIR", env = "PULLSECRET_INJECTOR_CERTS_DIR")]
    pub out_dir: PathBuf,
    /// DNS names for the serving certificate, e.g. pullsecret-injector.pullsecret-injector.svc
    /// (letters, digits and `-` in dot-separated labels; `*.` first for a wildcard).
    #[arg(long = "dns", value_name = "NAME", value_parser = dns_name)]
    pub dns_names: Vec<String>,
    /// IP addresses for the serving certificate, e.g. 127.0.0.1.
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<IpAddr>,
    /// Validity of the serving certificate, in days (at least 1).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("give at least one --dns name or --ip address")]
    NoNames,
    #[error(
        "{present} exists without {missing}: refusing to replace half a CA (move {present} away for a new CA, or put {missing} back)"
    )]
    HalfCa { present: PathBuf, missing: PathBuf },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl CertsError {
    /// [`NoNames`](CertsError::NoNames) and half a CA are usage or input errors; the others
    /// stop a valid request.
    pub fn exit_code(&self) -> u8 {
        match self {
            CertsError::NoNames | CertsError::HalfCa { .. } => 2,
            CertsError::Io { .. } | CertsError::Generate(_) => 1,
        }
    }
}

/// Paths of the files written.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn in_dir(dir: &Path) -> CertFiles {
        CertFiles {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }
}

pub fn generate(args: &CertsArgs) -> Result<CertFiles, CertsError> {
    if args.dns_names.is_empty() && args.ips.is_empty() {
        return Err(CertsError::NoNames);
    }
    std::fs::create_dir_all(&args.out_dir).map_err(|e| io_error(&args.out_dir, e))?;
    let files = CertFiles::in_dir(&args.out_dir);
    let (ca_pem, ca_key) = match (
        read_optional(&files.ca_cert)?,
        read_optional(&files.ca_key)?,
    ) {
        (Some(cert), Some(key)) => (cert, KeyPair::from_pem(&key)?),
        (Some(_), None) => {
            return Err(CertsError::HalfCa {
                present: files.ca_cert,
                missing: files.ca_key,
            });
        }
        (None, Some(_)) => {
            return Err(CertsError::HalfCa {
                present: files.ca_key,
                missing: files.ca_cert,
            });
        }
        (None, None) => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let cert = ca_params(10 * 365)?.self_signed(&key)?;
            write(&files.ca_cert, &cert.pem(), false)?;
            write(&files.ca_key, &key.serialize_pem(), true)?;
            (cert.pem(), key)
        }
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = serving_params(args)?.signed_by(&key, &issuer)?;
    // Key first, then certificate: a reader never sees a new certificate with an old key
    // for long, and a mismatched pair is refused (the previous one keeps serving).
    write(&files.key, &key.serialize_pem(), true)?;
    write(&files.cert, &cert.pem(), false)?;
    Ok(files)
}

fn ca_params(days: u32) -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("pullsecret-injector development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, days);
    Ok(params)
}

fn serving_params(args: &CertsArgs) -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(args.dns_names.clone())?;
    params
        .subject_alt_names
        .extend(args.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let common_name = args
        .dns_names
        .first()
        .cloned()
        .unwrap_or_else(|| "pullsecret-injector".to_owned());
    params.distinguished_name = name(&common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, args.days);
    Ok(params)
}

/// A DNS name a certificate can carry: dot-separated labels of 1 to 63 letters, digits and
/// inner `-`, 253 characters at most, optionally `*.` first.
fn dns_name(text: &str) -> Result<String, String> {
    let name = text.strip_prefix("*.").unwrap_or(text);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if text.len() <= 253 && name.split('.').all(label_ok) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a DNS name (dot-separated labels of letters, digits and inner '-', optionally '*.' first)"
        ))
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = std::time::SystemTime::now();
    // Back-date a little so clocks that disagree slightly still accept it.
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(u64::from(days) * 86_400)).into();
}

fn read_optional(path: &Path) -> Result<Option<String>, CertsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path, error)),
    }
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mode = if private { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .map_err(|e| io_error(&temporary, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| io_error(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, error: std::io::Error) -> CertsError {
    CertsError::Io {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::dns_name;

    #[test]
    fn only_dns_names_are_taken() {
        for good in [
            "localhost",
            "pullsecret-injector.pullsecret-injector.svc",
            "*.example.com",
            "a-1.B2",
        ] {
            assert_eq!(dns_name(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "",
            "has space",
            "under_score.example",
            "-lead.example",
            "trail-.example",
            "double..dot",
            "https://example.com",
            "example.com.",
            "*",
            "a.*.example",
            &"a".repeat(64),
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?} was taken");
        }
    }
}
