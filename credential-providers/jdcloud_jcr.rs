//! jdcloud-jcr-credential-provider: a kubelet credential provider for JD Cloud's container
//! registry (JCR). It calls JCR's `GetAuthorizationToken`
//! (`POST /v1/regions/{regionId}/registries/{registryName}:getAuthorizationToken`, as
//! `jdcloud_sdk/services/containerregistry/apis/GetAuthorizationTokenRequest.py` of PyPI's
//! `jdcloud-sdk` defines it) signed as the SDK's `jdcloud_sdk/core/signer.py` signs
//! (`JDCLOUD3-HMAC-SHA256`), and answers the token's login until its `expiresAt`
//! (`models/AuthorizationData.py`: base64 `authorizationToken`, Unix `expiresAt`) less a margin.
//!
//! Keys: `JDCLOUD_ACCESS_KEY` and `JDCLOUD_SECRET_KEY` in the environment. Arguments (the
//! provider's `args`): `--registry-name` and `--region-id` (by default read from the image's
//! host, `NAME-REGION.jcr.service.jdcloud.com`), `--expired-after-hours` (1–24, JCR's default
//! 12), `--endpoint` (default `https://containerregistry.jdcloud-api.com`; a host with `--scheme`
//! as `jdc configure` takes it, or a URL), `--refresh-margin`.

// Each plugin uses part of what the plugins share.
#[allow(dead_code)]
#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Answer, Endpoint, Failure};
use serde::Deserialize;

const NAME: &str = "jdcloud-jcr-credential-provider";
const SERVICE: &str = "containerregistry";
const DEFAULT_ENDPOINT: &str = "https://containerregistry.jdcloud-api.com";
const JCR_DOMAIN: &str = ".jcr.service.jdcloud.com";
const FLAGS: &[&str] = &[
    "--registry-name",
    "--region-id",
    "--expired-after-hours",
    "--endpoint",
    "--scheme",
    "--refresh-margin",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let access_key = std::env::var("JDCLOUD_ACCESS_KEY").unwrap_or_default();
    let secret_key = std::env::var("JDCLOUD_SECRET_KEY").unwrap_or_default();
    common::run(&[secret_key.clone(), access_key.clone()], |image| {
        mint(&args, image, &access_key, &secret_key, SystemTime::now())
    })
}

/// The JCR answer: `{"requestId": ..., "result": {...}}` or `{"requestId": ..., "error":
/// {"code", "status", "message"}}` (`jdcloud_sdk/core/jdcloudresponse.py`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    request_id: Option<String>,
    result: Option<AuthorizationData>,
    error: Option<VendorError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: Option<String>,
    /// A number in the SDK's model, a string in the API reference: both are read.
    expires_at: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct VendorError {
    code: Option<serde_json::Value>,
    status: Option<String>,
    message: Option<String>,
}

fn mint(
    args: &[String],
    image: &str,
    access_key: &str,
    secret_key: &str,
    now: SystemTime,
) -> Result<Answer, Failure> {
    common::check_flags(args, FLAGS)?;
    let host = common::registry_host(image);
    let (registry, region) = registry_and_region(args, &host)?;
    let margin = common::margin(args)?;
    let hours = match common::flag(args, "--expired-after-hours") {
        Some(text) => Some(
            text.parse::<u8>()
                .ok()
                .filter(|h| (1..=24).contains(h))
                .ok_or_else(|| {
                    Failure::Config(format!("--expired-after-hours {text:?} is not 1 to 24"))
                })?,
        ),
        None => None,
    };
    // As `jdc configure` takes them: --endpoint HOST[:PORT] with --scheme, or a whole URL.
    let endpoint = common::flag(args, "--endpoint").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let endpoint = match common::flag(args, "--scheme") {
        Some(scheme) if endpoint.contains("://") => {
            return Err(Failure::Config(format!(
                "--scheme {scheme} with --endpoint {endpoint}, which has one"
            )));
        }
        Some(scheme) => Endpoint::parse(&format!("{scheme}://{endpoint}"))?,
        None => Endpoint::parse(&endpoint)?,
    };
    if access_key.is_empty() {
        common::required_env("JDCLOUD_ACCESS_KEY")?;
    }
    if secret_key.is_empty() {
        common::required_env("JDCLOUD_SECRET_KEY")?;
    }

    let path = format!("/v1/regions/{region}/registries/{registry}:getAuthorizationToken");
    let mut body = serde_json::json!({"regionId": region, "registryName": registry});
    if let Some(hours) = hours {
        body["expiredAfterHours"] = hours.into();
    }
    let body = body.to_string().into_bytes();
    let headers = sign(&Signing {
        endpoint: &endpoint,
        path: &path,
        region: &region,
        body: &body,
        access_key,
        secret_key,
        date: common::basic_timestamp(now),
        nonce: common::nonce()?,
    });
    let reply = common::post(&endpoint, &path, &headers, body, "JD Cloud")?;
    let envelope: Option<Envelope> = serde_json::from_slice(&reply.body).ok();
    let request_id = envelope
        .as_ref()
        .and_then(|e| e.request_id.clone())
        .or_else(|| header(&reply.headers, "x-jdcloud-request-id"))
        .unwrap_or_else(|| "none".to_owned());
    let envelope = match envelope {
        Some(Envelope {
            error: Some(error), ..
        }) => {
            return Err(refused(reply.status, &error, &request_id));
        }
        Some(envelope) if (200..300).contains(&reply.status) => envelope,
        _ => {
            return Err(if (200..300).contains(&reply.status) {
                Failure::BadAnswer(format!(
                    "JD Cloud's answer is not JSON (requestId {request_id})"
                ))
            } else {
                Failure::Refused(format!(
                    "JD Cloud refused GetAuthorizationToken: HTTP {}: {} (requestId {request_id})",
                    reply.status,
                    common::excerpt(&String::from_utf8_lossy(&reply.body))
                ))
            });
        }
    };
    let data = envelope.result.ok_or_else(|| {
        Failure::BadAnswer(format!(
            "JD Cloud's answer has no result (requestId {request_id})"
        ))
    })?;
    let token = data.authorization_token.ok_or_else(|| {
        Failure::BadAnswer(format!(
            "JD Cloud's answer has no authorizationToken (requestId {request_id})"
        ))
    })?;
    let login = common::decode_login(&token, "authorizationToken")?;
    let expires_at = data
        .expires_at
        .as_ref()
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .map(|seconds| UNIX_EPOCH + Duration::from_secs(seconds));
    let cache_duration = match expires_at {
        Some(at) => Some(common::cache_duration(at, now, margin)?),
        // Without an expiry the provider's defaultCacheDuration applies.
        None => None,
    };
    Ok(Answer {
        auth: BTreeMap::from([(host, login)]),
        cache_duration,
    })
}

/// The registry and region: the flags, else the JCR host `NAME-REGION.jcr.service.jdcloud.com`
/// (region ids have three parts, as `cn-north-1`).
fn registry_and_region(args: &[String], host: &str) -> Result<(String, String), Failure> {
    let from_host = host.strip_suffix(JCR_DOMAIN).and_then(|prefix| {
        let parts: Vec<&str> = prefix.rsplitn(4, '-').collect();
        (parts.len() == 4 && !parts[3].is_empty()).then(|| {
            (
                parts[3].to_owned(),
                format!("{}-{}-{}", parts[2], parts[1], parts[0]),
            )
        })
    });
    let registry = common::flag(args, "--registry-name")
        .or_else(|| from_host.as_ref().map(|(r, _)| r.clone()));
    let region =
        common::flag(args, "--region-id").or_else(|| from_host.as_ref().map(|(_, r)| r.clone()));
    match (registry, region) {
        (Some(registry), Some(region)) => {
            let valid = |s: &str| {
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if !valid(&registry) || !valid(&region) {
                return Err(Failure::Config(format!(
                    "registry {registry:?} or region {region:?} is not a JCR name"
                )));
            }
            Ok((registry, region))
        }
        _ => Err(Failure::Config(format!(
            "{host} is not NAME-REGION{JCR_DOMAIN}: give --registry-name and --region-id"
        ))),
    }
}

fn refused(status: u16, error: &VendorError, request_id: &str) -> Failure {
    let code = error
        .code
        .as_ref()
        .map(|c| c.to_string().trim_matches('"').to_owned())
        .unwrap_or_default();
    Failure::Refused(format!(
        "JD Cloud refused GetAuthorizationToken: HTTP {status} {} (code {code}): {} (requestId {request_id})",
        error.status.as_deref().unwrap_or("-"),
        common::excerpt(error.message.as_deref().unwrap_or("no message")),
    ))
}

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

struct Signing<'a> {
    endpoint: &'a Endpoint,
    path: &'a str,
    region: &'a str,
    body: &'a [u8],
    access_key: &'a str,
    secret_key: &'a str,
    date: String,
    nonce: String,
}

/// The request's headers, signed exactly as JD Cloud's SDK signs (`signV3` of
/// `jdcloud_sdk/core/signer.py`): the host and content type are the signed headers; the date
/// enters through the string to sign and the scope; date, nonce and payload hash are sent
/// beside them, as the SDK sends them.
fn sign(s: &Signing) -> Vec<(String, String)> {
    const ALGORITHM: &str = "JDCLOUD3-HMAC-SHA256";
    let payload_hash = common::sha256_hex(s.body);
    let signed = [
        ("content-type", "application/json"),
        ("host", s.endpoint.authority.as_str()),
    ];
    let canonical_headers: String = signed
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers = signed.map(|(k, _)| k).join(";");
    let canonical_request = format!(
        "POST\n{}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        common::percent_encode(s.path, b"/")
    );
    let day = &s.date[..8];
    let scope = format!("{day}/{}/{SERVICE}/jdcloud3_request", s.region);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        s.date,
        common::sha256_hex(canonical_request.as_bytes())
    );
    let mut key = common::hmac_sha256(
        format!("JDCLOUD3{}", s.secret_key).as_bytes(),
        day.as_bytes(),
    );
    for part in [s.region, SERVICE, "jdcloud3_request"] {
        key = common::hmac_sha256(&key, part.as_bytes());
    }
    let signature = common::hex(&common::hmac_sha256(&key, string_to_sign.as_bytes()));
    vec![
        ("Content-Type".into(), "application/json".into()),
        (
            "User-Agent".into(),
            format!("{NAME}/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("x-jdcloud-date".into(), s.date.clone()),
        ("x-jdcloud-nonce".into(), s.nonce.clone()),
        ("x-jdcloud-content-sha256".into(), payload_hash),
        (
            "Authorization".into(),
            format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                s.access_key
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_and_region_come_from_the_jcr_host() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            registry_and_region(&none, "myregistry-cn-north-1.jcr.service.jdcloud.com").unwrap(),
            ("myregistry".to_owned(), "cn-north-1".to_owned())
        );
        assert_eq!(
            registry_and_region(&none, "my-team-cn-east-2.jcr.service.jdcloud.com").unwrap(),
            ("my-team".to_owned(), "cn-east-2".to_owned())
        );
        assert!(registry_and_region(&none, "10.0.0.1:5000").is_err());
        let flags: Vec<String> = ["--registry-name", "r", "--region-id", "cn-south-1"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            registry_and_region(&flags, "10.0.0.1:5000").unwrap(),
            ("r".to_owned(), "cn-south-1".to_owned())
        );
        let hostile: Vec<String> = ["--registry-name", "r/../x", "--region-id", "cn-south-1"]
            .map(String::from)
            .to_vec();
        assert!(registry_and_region(&hostile, "10.0.0.1:5000").is_err());
    }
}
