//! huaweicloud-swr-credential-provider: a kubelet credential provider for Huawei Cloud's
//! container registry (SWR). It calls SWR's `CreateSecret` (`POST /v2/manage/utils/secret`,
//! as `huaweicloudsdkswr/v2/swr_client.py` of PyPI's `huaweicloudsdkswr` defines it), signed as
//! the SDK's `huaweicloudsdkcore/signer/signer.py` signs (`SDK-HMAC-SHA256`), and answers the
//! temporary logins of its `auths` (registry host → base64 `user:password`,
//! `model/create_secret_response.py`) until the `X-Swr-Expireat` response header's time less a
//! margin.
//!
//! Keys: `HUAWEICLOUD_SDK_AK`, `HUAWEICLOUD_SDK_SK` and, as the SDK takes it,
//! `HUAWEICLOUD_SDK_PROJECT_ID` (optional) in the environment. Arguments (the provider's
//! `args`): `--region` (e.g. `cn-north-4`; the endpoint is `https://swr-api.REGION.myhuaweicloud.com`),
//! `--endpoint` instead, `--projectname` (SWR's default: the region), `--refresh-margin`.

// Each plugin uses part of what the plugins share.
#[allow(dead_code)]
#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::SystemTime;

use common::{Answer, Endpoint, Failure};
use serde::Deserialize;

const NAME: &str = "huaweicloud-swr-credential-provider";
const PATH: &str = "/v2/manage/utils/secret";
const FLAGS: &[&str] = &[
    "--region",
    "--endpoint",
    "--projectname",
    "--refresh-margin",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keys = Keys {
        access_key: std::env::var("HUAWEICLOUD_SDK_AK").unwrap_or_default(),
        secret_key: std::env::var("HUAWEICLOUD_SDK_SK").unwrap_or_default(),
        project_id: std::env::var("HUAWEICLOUD_SDK_PROJECT_ID")
            .ok()
            .filter(|p| !p.trim().is_empty()),
    };
    common::run(
        &[keys.secret_key.clone(), keys.access_key.clone()],
        |_image| mint(&args, &keys, SystemTime::now()),
    )
}

struct Keys {
    access_key: String,
    secret_key: String,
    project_id: Option<String>,
}

/// SWR's answer body (`{"auths": {host: {"auth": base64}}}`).
#[derive(Deserialize)]
struct Secret {
    auths: Option<BTreeMap<String, AuthInfo>>,
}

#[derive(Deserialize)]
struct AuthInfo {
    auth: Option<String>,
}

/// Huawei Cloud's error body (`error_code`, `error_msg`; the API gateway's too).
#[derive(Deserialize)]
struct VendorError {
    error_code: Option<String>,
    error_msg: Option<String>,
    request_id: Option<String>,
}

fn mint(args: &[String], keys: &Keys, now: SystemTime) -> Result<Answer, Failure> {
    common::check_flags(args, FLAGS)?;
    let margin = common::margin(args)?;
    let endpoint = match (
        common::flag(args, "--endpoint"),
        common::flag(args, "--region"),
    ) {
        (Some(endpoint), _) => Endpoint::parse(&endpoint)?,
        (None, Some(region))
            if !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Endpoint::parse(&format!("https://swr-api.{region}.myhuaweicloud.com"))?
        }
        (None, Some(region)) => {
            return Err(Failure::Config(format!(
                "--region {region:?} is not a region id"
            )));
        }
        (None, None) => {
            return Err(Failure::Config(
                "give --region (e.g. cn-north-4) or --endpoint".to_owned(),
            ));
        }
    };
    if keys.access_key.is_empty() {
        common::required_env("HUAWEICLOUD_SDK_AK")?;
    }
    if keys.secret_key.is_empty() {
        common::required_env("HUAWEICLOUD_SDK_SK")?;
    }
    let query = common::flag(args, "--projectname")
        .map(|name| format!("projectname={}", common::percent_encode(&name, b"")))
        .unwrap_or_default();
    let headers = sign(&endpoint, &query, keys, &common::basic_timestamp(now));
    let path_and_query = if query.is_empty() {
        PATH.to_owned()
    } else {
        format!("{PATH}?{query}")
    };
    let reply = common::post(
        &endpoint,
        &path_and_query,
        &headers,
        Vec::new(),
        "Huawei Cloud",
    )?;
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    if !(200..300).contains(&reply.status) {
        let error: Option<VendorError> = serde_json::from_slice(&reply.body).ok();
        let request_id = error
            .as_ref()
            .and_then(|e| e.request_id.clone())
            .or_else(|| header("x-request-id"))
            .unwrap_or_else(|| "none".to_owned());
        return Err(Failure::Refused(match error {
            Some(VendorError {
                error_code: Some(code),
                error_msg,
                ..
            }) => format!(
                "Huawei Cloud refused CreateSecret: HTTP {} {code}: {} (request id {request_id})",
                reply.status,
                common::excerpt(error_msg.as_deref().unwrap_or("no message"))
            ),
            _ => format!(
                "Huawei Cloud refused CreateSecret: HTTP {}: {} (request id {request_id})",
                reply.status,
                common::excerpt(&String::from_utf8_lossy(&reply.body))
            ),
        }));
    }
    let secret: Secret = serde_json::from_slice(&reply.body).map_err(|e| {
        Failure::BadAnswer(format!("SWR's answer is not a CreateSecret answer: {e}"))
    })?;
    let mut auth = BTreeMap::new();
    for (host, info) in secret.auths.unwrap_or_default() {
        let encoded = info
            .auth
            .ok_or_else(|| Failure::BadAnswer(format!("SWR's login for {host} has no auth")))?;
        auth.insert(
            host.clone(),
            common::decode_login(&encoded, &format!("the auth of {host}"))?,
        );
    }
    if auth.is_empty() {
        return Err(Failure::BadAnswer(
            "SWR answered no login (empty auths)".to_owned(),
        ));
    }
    let cache_duration = match header("x-swr-expireat") {
        Some(text) => {
            let at = common::parse_rfc3339_utc(&text).ok_or_else(|| {
                Failure::BadAnswer(format!(
                    "X-Swr-Expireat {:?} is not an RFC 3339 UTC time",
                    common::excerpt(&text)
                ))
            })?;
            Some(common::cache_duration(at, now, margin)?)
        }
        // Without an expiry the provider's defaultCacheDuration applies.
        None => None,
    };
    Ok(Answer {
        auth,
        cache_duration,
    })
}

/// The request's headers, signed as Huawei Cloud's SDK signs (`Signer.sign` of
/// `huaweicloudsdkcore/signer/signer.py`): every header is signed, the path gets a trailing
/// slash, an empty body hashes as the empty string.
fn sign(endpoint: &Endpoint, query: &str, keys: &Keys, date: &str) -> Vec<(String, String)> {
    const ALGORITHM: &str = "SDK-HMAC-SHA256";
    let mut signed: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("host", &endpoint.authority),
        ("x-sdk-date", date),
    ];
    if let Some(project) = &keys.project_id {
        signed.push(("x-project-id", project));
    }
    signed.sort();
    let canonical_headers: String = signed
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers = signed.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    let canonical_request = format!(
        "POST\n{}/\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        common::percent_encode(PATH, b"/"),
        common::sha256_hex(b"")
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{}",
        common::sha256_hex(canonical_request.as_bytes())
    );
    let signature = common::hex(&common::hmac_sha256(
        keys.secret_key.as_bytes(),
        string_to_sign.as_bytes(),
    ));
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-Sdk-Date".to_owned(), date.to_owned()),
        // Not signed (the SDK signs its own): SignedHeaders names what is.
        (
            "User-Agent".to_owned(),
            format!("{NAME}/{}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "Authorization".to_owned(),
            format!(
                "{ALGORITHM} Access={}, SignedHeaders={signed_headers}, Signature={signature}",
                keys.access_key
            ),
        ),
    ];
    if let Some(project) = &keys.project_id {
        headers.push(("X-Project-Id".to_owned(), project.clone()));
    }
    headers
}
