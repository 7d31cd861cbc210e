//! What both vendor plugins share: the kubelet's credential provider protocol
//! (`credentialprovider.kubelet.k8s.io/v1`), one signed HTTPS call, the vendor's expiry turned
//! into a `cacheDuration`, and failures that name the vendor's error but never a key.
//!
//! Exit codes (the controller reports them in the ClusterPullSecret's status):
//! 0 an answer on stdout; 2 this plugin's configuration (a missing key, a bad flag);
//! 3 the vendor's API could not be reached; 4 the vendor refused the call (its HTTP status,
//! error code and message, request id); 5 the vendor's answer was not what its SDK documents.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::{BodyExt, Full, Limited};
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// Larger answers are not a token: a vendor's real answer is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Within the kubelet's (and the controller's) 60 s plugin timeout, with room to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long before the vendor's expiry the credential is refreshed, at most.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(600);

/// Why a plugin run failed; each kind has its own exit code.
#[derive(Debug)]
pub enum Failure {
    Config(String),
    Unreachable(String),
    Refused(String),
    BadAnswer(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Config(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Refused(_) => 4,
            Failure::BadAnswer(_) => 5,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Config(m) | Failure::Unreachable(m) | Failure::Refused(m) => m,
            Failure::BadAnswer(m) => m,
        }
    }
}

/// The request the kubelet (or the controller) writes on stdin.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    api_version: String,
    kind: String,
    image: String,
}

/// One registry login of an answer.
#[derive(Serialize)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// What a plugin answers: logins by registry host, and how long they may be cached.
pub struct Answer {
    pub auth: BTreeMap<String, Login>,
    pub cache_duration: Option<Duration>,
}

/// Runs a plugin: reads the request, calls `mint` with the requested image, prints the answer.
/// Failures go to stderr as one line with every secret of `secrets` removed.
pub fn run(secrets: &[String], mint: impl FnOnce(&str) -> Result<Answer, Failure>) -> ! {
    let outcome = read_request().and_then(|image| mint(&image));
    match outcome {
        Ok(answer) => {
            let mut out = std::io::stdout().lock();
            let written = out
                .write_all(render(&answer).as_bytes())
                .and_then(|()| out.flush());
            std::process::exit(if written.is_ok() { 0 } else { 1 })
        }
        Err(failure) => {
            let mut line = failure.message().replace(['\n', '\r'], " ");
            for secret in secrets.iter().filter(|s| s.len() >= 4) {
                line = line.replace(secret.as_str(), "[redacted]");
            }
            // No program name first: the kubelet and the controller name the plugin already,
            // and the controller's redaction would take a long name for a token.
            eprintln!("{line}");
            std::process::exit(failure.exit_code())
        }
    }
}

fn read_request() -> Result<String, Failure> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_ANSWER_BYTES as u64)
        .read_to_end(&mut input)
        .map_err(|e| Failure::Config(format!("reading the request from stdin: {e}")))?;
    let request: Request = serde_json::from_slice(&input).map_err(|e| {
        Failure::Config(format!(
            "stdin is not a CredentialProviderRequest ({e}); this program is run by the kubelet or pullsecret-injector"
        ))
    })?;
    if request.kind != "CredentialProviderRequest" || request.api_version != API_VERSION {
        return Err(Failure::Config(format!(
            "unsupported request {} {}: configure the provider with apiVersion {API_VERSION}",
            request.api_version, request.kind
        )));
    }
    Ok(request.image)
}

fn render(answer: &Answer) -> String {
    let mut response = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "auth": answer.auth,
    });
    if let Some(duration) = answer.cache_duration {
        response["cacheDuration"] = format!("{}s", duration.as_secs()).into();
    }
    response.to_string()
}

/// The registry host of an image reference, as the kubelet's matching sees it (a first
/// component with a dot or a port, or `localhost`; anything else is Docker Hub).
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_owned(),
        _ => "docker.io".to_owned(),
    }
}

/// How long a credential that expires at `expires_at` may be cached: until the expiry less a
/// margin of at most `margin` and at most a fifth of what is left, so short-lived tokens are
/// refreshed in time too. An expired token is a bad answer.
pub fn cache_duration(
    expires_at: SystemTime,
    now: SystemTime,
    margin: Duration,
) -> Result<Duration, Failure> {
    let left = expires_at.duration_since(now).map_err(|_| {
        Failure::BadAnswer("the vendor answered a token that has already expired".to_owned())
    })?;
    let margin = margin.min(left / 5);
    Ok(Duration::from_secs((left - margin).as_secs().max(1)))
}

/// A `user:password` login as docker login's base64 `auth` holds it.
pub fn decode_login(encoded: &str, what: &str) -> Result<Login, Failure> {
    let decoded = BASE64
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| Failure::BadAnswer(format!("{what} is not base64 text")))?;
    let (username, password) = decoded
        .split_once(':')
        .filter(|(user, password)| !user.is_empty() && !password.is_empty())
        .ok_or_else(|| Failure::BadAnswer(format!("{what} is not a user:password login")))?;
    Ok(Login {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// A required variable of the plugin's environment (the provider's `env`, or passed through).
pub fn required_env(name: &str) -> Result<String, Failure> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        _ => Err(Failure::Config(format!(
            "{name} is not set: give the provider this variable (credentialProviders.env, from a Secret)"
        ))),
    }
}

/// The value after a `--flag` in `args`, or `--flag=value`.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == name {
            args.get(i + 1).cloned()
        } else {
            arg.strip_prefix(&prefix).map(str::to_owned)
        }
    })
}

/// Refuses arguments the plugin does not know, so a typo in the admin's `args` is reported
/// instead of silently ignored.
pub fn check_flags(args: &[String], known: &[&str]) -> Result<(), Failure> {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let name = arg.split('=').next().unwrap_or(arg);
        if !known.contains(&name) {
            return Err(Failure::Config(format!(
                "unknown argument {name:?}; this plugin takes {}",
                known.join(", ")
            )));
        }
        if !arg.contains('=') {
            rest.next();
        }
    }
    Ok(())
}

/// The margin before the vendor's expiry (`--refresh-margin`, Go-style seconds or minutes).
pub fn margin(args: &[String]) -> Result<Duration, Failure> {
    let Some(text) = flag(args, "--refresh-margin") else {
        return Ok(DEFAULT_MARGIN);
    };
    let parsed = if let Some(minutes) = text.strip_suffix('m') {
        minutes.parse::<u64>().ok().map(|m| m * 60)
    } else {
        text.strip_suffix('s').unwrap_or(&text).parse::<u64>().ok()
    };
    parsed.map(Duration::from_secs).ok_or_else(|| {
        Failure::Config(format!("--refresh-margin {text:?} is not like 600s or 10m"))
    })
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encoding of everything but RFC 3986's unreserved characters and `keep`, as both
/// vendors' signers encode paths and query strings.
pub fn percent_encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `20261206T061700Z`: the timestamp form both vendors sign.
pub fn basic_timestamp(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let rest = seconds % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// An RFC 3339 UTC time (`2026-07-23T08:46:07.811000Z`, fractions ignored; `+00:00` too).
pub fn parse_rfc3339_utc(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))
        .or_else(|| time.strip_suffix(" +0000 UTC"))?;
    let time = time.split('.').next()?;
    let mut clock = time.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second))
}

// Howard Hinnant's days <-> civil date algorithms (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A vendor endpoint: `https://host` by default, `http://127.0.0.1:port` for a local stand-in.
pub struct Endpoint {
    pub scheme: &'static str,
    /// host[:port] as signed: the port only when it is not the scheme's default.
    pub authority: String,
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Self, Failure> {
        let (scheme, rest) = match text.split_once("://") {
            Some(("https", rest)) => ("https", rest),
            Some(("http", rest)) => ("http", rest),
            Some((other, _)) => {
                return Err(Failure::Config(format!(
                    "--endpoint scheme {other:?} is not http or https"
                )));
            }
            None => ("https", text),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(Failure::Config(format!(
                "--endpoint {text:?} is not scheme://host[:port]"
            )));
        }
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        Ok(Endpoint {
            scheme,
            authority: authority
                .strip_suffix(default_port)
                .unwrap_or(authority)
                .to_owned(),
        })
    }
}

/// The vendor's answer to one call.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// One POST to the vendor, over HTTPS with the system's roots (or HTTP to a stand-in).
pub fn post(
    endpoint: &Endpoint,
    path_and_query: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    vendor: &str,
) -> Result<Reply, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Unreachable(format!("starting the HTTP client: {e}")))?;
    let url = format!(
        "{}://{}{}",
        endpoint.scheme, endpoint.authority, path_and_query
    );
    // Errors name the endpoint, not the path: a long path reads as a token to redaction.
    let api = format!("{}://{}", endpoint.scheme, endpoint.authority);
    runtime.block_on(async {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| {
                Failure::Unreachable(format!("reading the system's CA certificates: {e}"))
            })?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, Full<bytes::Bytes>>(connector);
        let mut request = http::Request::post(&url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| Failure::Config(format!("building the request to {url}: {e}")))?;
        let call = async {
            let response = client.request(request).await.map_err(|e| {
                Failure::Unreachable(format!(
                    "{vendor} API at {api} unreachable: {}",
                    error_chain(&e)
                ))
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| Failure::BadAnswer(format!("reading {vendor}'s answer: {e}")))?
                .to_bytes()
                .to_vec();
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| {
                Failure::Unreachable(format!(
                    "{vendor} API at {api} did not answer within {}s",
                    CALL_TIMEOUT.as_secs()
                ))
            })?
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A random nonce (UUID v4 form, as the vendor's SDK sends).
pub fn nonce() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Failure::Config("no randomness for the request nonce".to_owned()))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex(&bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Up to 300 characters of a vendor's text for an error line.
pub fn excerpt(text: &str) -> String {
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_the_calendar() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_537_827); // 2026-12-06T06:17:07Z
        assert_eq!(basic_timestamp(t), "20261206T061707Z");
        assert_eq!(parse_rfc3339_utc("2026-12-06T06:17:07.811000Z"), Some(t));
        assert_eq!(parse_rfc3339_utc("2026-12-06T06:17:07+00:00"), Some(t));
        assert_eq!(
            basic_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert_eq!(parse_rfc3339_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_utc("2026-12-06T06:17:07+08:00"), None);
        assert_eq!(parse_rfc3339_utc("yesterday"), None);
    }

    #[test]
    fn the_cache_duration_ends_before_the_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let twelve_hours = now + Duration::from_secs(12 * 3600);
        assert_eq!(
            cache_duration(twelve_hours, now, DEFAULT_MARGIN).unwrap(),
            Duration::from_secs(12 * 3600 - 600)
        );
        // A short-lived token keeps a fifth of its life as margin.
        assert_eq!(
            cache_duration(now + Duration::from_secs(60), now, DEFAULT_MARGIN).unwrap(),
            Duration::from_secs(48)
        );
        assert!(matches!(
            cache_duration(now, now + Duration::from_secs(1), DEFAULT_MARGIN),
            Err(Failure::BadAnswer(_))
        ));
    }

    #[test]
    fn logins_and_hosts() {
        let login = decode_login(&BASE64.encode("robot:pa:ss"), "token").unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("robot", "pa:ss")
        );
        assert!(decode_login("!!!", "token").is_err());
        assert!(decode_login(&BASE64.encode("nocolon"), "token").is_err());
        assert_eq!(
            registry_host("r-cn-north-1.jcr.service.jdcloud.com/team/app:1"),
            "r-cn-north-1.jcr.service.jdcloud.com"
        );
        assert_eq!(registry_host("10.0.0.1:5000/app"), "10.0.0.1:5000");
        assert_eq!(registry_host("team/app"), "docker.io");
    }

    #[test]
    fn flags_and_endpoints() {
        let args: Vec<String> = [
            "--region-id",
            "cn-north-1",
            "--endpoint=http://127.0.0.1:8080",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(flag(&args, "--region-id").as_deref(), Some("cn-north-1"));
        assert_eq!(
            flag(&args, "--endpoint").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert!(check_flags(&args, &["--region-id", "--endpoint"]).is_ok());
        assert!(check_flags(&args, &["--endpoint"]).is_err());
        assert_eq!(
            Endpoint::parse("https://api.example.com:443")
                .unwrap()
                .authority,
            "api.example.com"
        );
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8080/").unwrap().authority,
            "127.0.0.1:8080"
        );
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("https://user@host").is_err());
        assert_eq!(
            margin(&["--refresh-margin".into(), "5m".into()]).unwrap(),
            Duration::from_secs(300)
        );
        assert!(margin(&["--refresh-margin".into(), "soon".into()]).is_err());
    }

    #[test]
    fn percent_encoding_keeps_unreserved_characters() {
        assert_eq!(percent_encode("/v1/a:b c~", b"/"), "/v1/a%3Ab%20c~");
    }
}
