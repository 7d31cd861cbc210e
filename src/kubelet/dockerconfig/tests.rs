//! Expected results were checked against Go: the kubelet's own types and functions
//! (`pkg/credentialprovider/config.go`, `secrets/secrets.go`) run with Go's `encoding/json`.

use super::*;
use proptest::prelude::*;

/// What the kubelet makes of a secret, as the tables state it.
#[derive(Debug)]
enum Want {
    /// Not a pull secret the kubelet reads.
    Ignored,
    /// Decoded; the registry keys in first-seen order.
    Keys(&'static [&'static str]),
    /// `json.SyntaxError` with this offset.
    Syntax(usize),
    /// `json.UnmarshalTypeError`.
    Type,
    /// `base64.CorruptInputError` at this offset of the `auth` field.
    Base64(usize),
    /// `auth` decodes to text without `:`.
    Format,
}
use Want::*;

type Outcome = Result<Option<Vec<String>>, DecodeError>;
type Decode = fn(&[u8]) -> Outcome;

fn secret(secret_type: &str, key: &str, payload: &[u8]) -> Outcome {
    let data = BTreeMap::from([(key.to_owned(), payload.to_vec())]);
    registry_keys(secret_type, &data)
}

fn config_json(payload: &[u8]) -> Outcome {
    secret(DOCKER_CONFIG_JSON_TYPE, DOCKER_CONFIG_JSON_KEY, payload)
}

fn dockercfg(payload: &[u8]) -> Outcome {
    secret(DOCKERCFG_TYPE, DOCKERCFG_KEY, payload)
}

fn check(case: &str, got: &Outcome, want: &Want) {
    let ok = match (got, want) {
        (Ok(None), Ignored) => true,
        (Ok(Some(keys)), Keys(expected)) => keys == expected,
        (Err(DecodeError::Syntax { offset, .. }), Syntax(expected)) => offset == expected,
        (Err(DecodeError::WrongType { .. }), Type) => true,
        (Err(DecodeError::AuthBase64 { offset, .. }), Base64(expected)) => offset == expected,
        (Err(DecodeError::AuthFormat { .. }), Format) => true,
        _ => false,
    };
    assert!(ok, "{case:?}: got {got:?}, want {want:?}");
}

fn run_config_json(table: &[(&str, Want)]) {
    for (payload, want) in table {
        check(payload, &config_json(payload.as_bytes()), want);
    }
}

fn run_dockercfg(table: &[(&str, Want)]) {
    for (payload, want) in table {
        check(payload, &dockercfg(payload.as_bytes()), want);
    }
}

// ---------------------------------------------------------------------------------------------
// Which secrets the kubelet reads.

const VALID_CONFIG_JSON: &str = r#"{"auths":{"test.registry.io":{"auth":"dXNlcjpwYXNzd29yZA=="}}}"#;
const VALID_DOCKERCFG: &str = r#"{"test.registry.io":{"auth":"dXNlcjpwYXNzd29yZA=="}}"#;

#[test]
fn type_and_key_must_agree() {
    let keys: &[&str] = &["test.registry.io"];
    let table: &[(&str, &str, &str, Want)] = &[
        (
            DOCKER_CONFIG_JSON_TYPE,
            DOCKER_CONFIG_JSON_KEY,
            VALID_CONFIG_JSON,
            Keys(keys),
        ),
        (DOCKERCFG_TYPE, DOCKERCFG_KEY, VALID_DOCKERCFG, Keys(keys)),
        // secrets_test.go: "with .dockerconfigjson but with wrong Secret Type"
        (
            DOCKERCFG_TYPE,
            DOCKER_CONFIG_JSON_KEY,
            VALID_CONFIG_JSON,
            Ignored,
        ),
        // secrets_test.go: "with .dockerconfig but with wrong Secret Type"
        (
            DOCKER_CONFIG_JSON_TYPE,
            DOCKERCFG_KEY,
            VALID_DOCKERCFG,
            Ignored,
        ),
        ("Opaque", DOCKER_CONFIG_JSON_KEY, VALID_CONFIG_JSON, Ignored),
        ("Opaque", DOCKERCFG_KEY, VALID_DOCKERCFG, Ignored),
        ("", DOCKER_CONFIG_JSON_KEY, VALID_CONFIG_JSON, Ignored),
        (
            "kubernetes.io/DockerConfigJson",
            DOCKER_CONFIG_JSON_KEY,
            VALID_CONFIG_JSON,
            Ignored,
        ),
        (
            "kubernetes.io/dockerconfigjson ",
            DOCKER_CONFIG_JSON_KEY,
            VALID_CONFIG_JSON,
            Ignored,
        ),
        (
            DOCKER_CONFIG_JSON_TYPE,
            ".DockerConfigJson",
            VALID_CONFIG_JSON,
            Ignored,
        ),
        (
            DOCKER_CONFIG_JSON_TYPE,
            "dockerconfigjson",
            VALID_CONFIG_JSON,
            Ignored,
        ),
        (
            DOCKER_CONFIG_JSON_TYPE,
            "config.json",
            VALID_CONFIG_JSON,
            Ignored,
        ),
        (DOCKERCFG_TYPE, "dockercfg", VALID_DOCKERCFG, Ignored),
        // Empty data is ignored, even when it would be invalid JSON.
        (DOCKER_CONFIG_JSON_TYPE, DOCKER_CONFIG_JSON_KEY, "", Ignored),
        (DOCKERCFG_TYPE, DOCKERCFG_KEY, "", Ignored),
        // A mismatched type is ignored even when its data would not decode.
        (DOCKERCFG_TYPE, DOCKER_CONFIG_JSON_KEY, "{", Ignored),
        ("Opaque", DOCKERCFG_KEY, "not json", Ignored),
        // Whitespace is not empty: it is invalid JSON.
        (
            DOCKER_CONFIG_JSON_TYPE,
            DOCKER_CONFIG_JSON_KEY,
            " ",
            Syntax(1),
        ),
        (DOCKERCFG_TYPE, DOCKERCFG_KEY, "\n\t\r ", Syntax(4)),
    ];
    for (secret_type, key, payload, want) in table {
        let case = format!("{secret_type:?} {key:?} {payload:?}");
        check(&case, &secret(secret_type, key, payload.as_bytes()), want);
    }
}

#[test]
fn missing_data_is_ignored() {
    for secret_type in [DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE, "Opaque"] {
        check(
            secret_type,
            &registry_keys(secret_type, &BTreeMap::new()),
            &Ignored,
        );
    }
    // Only the key matching the type is read; the other one is not a fallback.
    let data = BTreeMap::from([
        (DOCKER_CONFIG_JSON_KEY.to_owned(), b"{".to_vec()),
        (
            DOCKERCFG_KEY.to_owned(),
            VALID_DOCKERCFG.as_bytes().to_vec(),
        ),
    ]);
    check(
        "both keys",
        &registry_keys(DOCKER_CONFIG_JSON_TYPE, &data),
        &Syntax(1),
    );
    check(
        "both keys",
        &registry_keys(DOCKERCFG_TYPE, &data),
        &Keys(&["test.registry.io"]),
    );
}

// ---------------------------------------------------------------------------------------------
// The kubelet's own test cases (config_test.go, secrets_test.go).

#[test]
fn kubelet_make_docker_keyring_cases() {
    // secrets_test.go Test_MakeDockerKeyring, the secrets of each case.
    run_config_json(&[
        (
            r#"{"auths": {"test.registry.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}}"#,
            Keys(&["test.registry.io"]),
        ),
        (
            r#"{"auths": {"test.registry.io": {"username": "user", "password": "password"}}}"#,
            Keys(&["test.registry.io"]),
        ),
        (
            r#"{"auths": {"foobar.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}}"#,
            Keys(&["foobar.io"]),
        ),
    ]);
    run_dockercfg(&[
        (
            r#"{"test.registry.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}"#,
            Keys(&["test.registry.io"]),
        ),
        (
            r#"{"test.registry.io": {"username": "user", "password": "password"}}"#,
            Keys(&["test.registry.io"]),
        ),
        (
            r#"{"foobar.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}"#,
            Keys(&["foobar.io"]),
        ),
    ]);
}

#[test]
fn kubelet_config_decode_cases() {
    // TestReadDockerConfigFile
    run_config_json(&[(
        r#"{ "auths": { "http://foo.example.com":{"auth":"Zm9vOmJhcgo=","email":"foo@example.com"}}}"#,
        Keys(&["http://foo.example.com"]),
    )]);
    // TestDockerConfigJsonJSONDecode, TestReadDockerConfigJSONFileFromBytes
    run_config_json(&[
        (
            r#"{"auths": {"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com"}, "http://bar.example.com":{"username": "bar", "password": "baz", "email": "bar@example.com"}}}"#,
            Keys(&["http://foo.example.com", "http://bar.example.com"]),
        ),
        (
            r#"{"auths": {"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com"}, "http://bar.example.com":{"username": "bar", "password": "baz", "email": "bar@example.com""#,
            Syntax(194),
        ),
    ]);
    // TestDockerConfigJSONDecode, TestReadDockerConfigFileFromBytes
    run_dockercfg(&[
        (
            r#"{"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com"}, "http://bar.example.com":{"username": "bar", "password": "baz", "email": "bar@example.com"}}"#,
            Keys(&["http://foo.example.com", "http://bar.example.com"]),
        ),
        (
            r#"{"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com""#,
            Syntax(91),
        ),
    ]);
}

#[test]
fn kubelet_entry_decode_cases() {
    // TestDockerConfigEntryJSONDecode: each entry under one registry key, in both formats.
    let table: &[(&str, Want)] = &[
        (
            r#"{"username": "foo", "password": "bar", "email": "foo@example.com"}"#,
            Keys(&["r"]),
        ),
        (
            r#"{"auth": "Zm9vOmJhcg==", "email": "foo@example.com"}"#,
            Keys(&["r"]),
        ),
        (
            r#"{"username": "foo", "password": "bar", "auth": "cGluZzpwb25n", "email": "foo@example.com"}"#,
            Keys(&["r"]),
        ),
        (
            r#"{"auth": "pants", "email": "foo@example.com"}"#,
            Base64(4),
        ),
        (r#"{"email": false}"#, Type),
    ];
    for (entry, want) in table {
        let payload = format!(r#"{{"auths":{{"r":{entry}}}}}"#);
        check(&payload, &config_json(payload.as_bytes()), want);
        let payload = format!(r#"{{"r":{entry}}}"#);
        check(&payload, &dockercfg(payload.as_bytes()), want);
    }
}

// ---------------------------------------------------------------------------------------------
// The `auth` field (decodeDockerConfigFieldAuth).

/// `auth` values as they appear between the JSON quotes.
const AUTH_CASES: &[(&str, Want)] = &[
    // TestDecodeDockerConfigFieldAuth
    ("Zm9vOmJhcg==", Keys(&["r"])),
    ("Zm9vOmJhcg", Keys(&["r"])),
    (r"Zm9vOm\nJhcg==\n", Keys(&["r"])),
    ("cGFudHM=", Format),
    ("Zm9vOmJhcg== ", Base64(12)),
    ("pants", Base64(4)),
    // Empty: no credentials, not an error.
    ("", Keys(&["r"])),
    // Padded or not.
    ("cGluZzpwb25n", Keys(&["r"])),
    ("dXNlcjpwYXNzd29yZA==", Keys(&["r"])),
    ("dXNlcjo=", Keys(&["r"])),
    ("dXNlcjo", Keys(&["r"])),
    (r"Zm9vOmJhcg\u003d\u003d", Keys(&["r"])),
    // `\r` and `\n` are ignored anywhere, even between the two `=`.
    (r"\r\nZm9v\r\nOmJh\rcg==\n", Keys(&["r"])),
    (r"Zm9vOmJhcg=\n=", Keys(&["r"])),
    (r"Zm9vOmJhcg=\r\n=\r\n", Keys(&["r"])),
    (r"Og\n==", Keys(&["r"])),
    (r"Og==\n\n", Keys(&["r"])),
    // Any other whitespace is an error, though `TrimSpace` chooses the padded decoder.
    ("Zm9v OmJhcg==", Base64(4)),
    (r"Zm9v\tOmJhcg==", Base64(4)),
    (r"\tZm9vOmJhcg==", Base64(0)),
    (r"Zm9vOmJhcg==\t", Base64(12)),
    (r"Zm9vOmJhcg==\u00a0", Base64(12)),
    (r"Zm9vOmJhcg\u00a0", Base64(10)),
    (r"Og==\u000b", Base64(4)),
    (r"Og==\u3000", Base64(4)),
    (" ", Base64(0)),
    // The URL-safe alphabet is an error.
    ("Zm9vOmJhcg-=", Base64(10)),
    ("Zm9vOmJhcg_", Base64(10)),
    ("Pz8_", Base64(3)),
    ("Pz8-Og==", Base64(3)),
    // Non-zero trailing bits are accepted.
    ("Zm9vOmJhch==", Keys(&["r"])),
    ("Zm9vOmJhcm", Keys(&["r"])),
    // Wrong padding.
    ("Zm9vOmJhcg=", Base64(11)),
    ("Zm9vOmJhcg===", Base64(12)),
    ("Zm9vOmJhc===", Base64(9)),
    ("Og=", Base64(3)),
    ("=", Base64(0)),
    ("Zm9vOmJhcg==Zm9v", Base64(10)),
    ("Q", Base64(0)),
    // Non-ASCII and NUL are outside the alphabet.
    (r"Og\u0000", Base64(2)),
    (r"Zm9v\u00e9", Base64(4)),
    // The decoded text must contain `:`; it may be anywhere, even alone.
    ("cGFudHM", Format),
    ("Zm9vYmFy", Format),
    ("QQ", Format),
    (r"\n", Format),
    (r"\r\n", Format),
    ("Og==", Keys(&["r"])),
    ("OjpAOg", Keys(&["r"])),
];

#[test]
fn auth_field_decoding() {
    for (auth, want) in AUTH_CASES {
        let payload = format!(r#"{{"auths":{{"r":{{"auth":"{auth}"}}}}}}"#);
        check(&payload, &config_json(payload.as_bytes()), want);
        let payload = format!(r#"{{"r":{{"username":"u","auth":"{auth}","email":"e"}}}}"#);
        check(&payload, &dockercfg(payload.as_bytes()), want);
    }
}

#[test]
fn auth_invalid_utf8_is_an_error_at_its_byte() {
    let table: &[(&[u8], Want)] = &[
        (b"{\"r\":{\"auth\":\"Og\xff\"}}", Base64(2)),
        // U+FFFD replaces the byte, so `TrimSpace` sees no trailing `=`: unpadded decoding.
        (b"{\"r\":{\"auth\":\"Og==\xc3\"}}", Base64(2)),
        (b"{\"r\":{\"auth\":\"\xed\xa0\x80\"}}", Base64(0)),
    ];
    for (payload, want) in table {
        check(&String::from_utf8_lossy(payload), &dockercfg(payload), want);
    }
}

#[test]
fn go_base64_matches_go_decoding() {
    fn decode(src: &str, padded: bool) -> Result<Vec<u8>, usize> {
        let mut out = Vec::new();
        go_base64_decode(src.as_bytes(), padded, |b| out.push(b)).map(|()| out)
    }
    type Decoded = Result<&'static [u8], usize>;
    let table: &[(&str, bool, Decoded)] = &[
        ("", true, Ok(b"")),
        ("", false, Ok(b"")),
        ("Zm9vOmJhcg==", true, Ok(b"foo:bar")),
        ("Zm9vOmJhcg", false, Ok(b"foo:bar")),
        ("Zm9vOmJhcg==", false, Err(10)),
        ("Zm9vOmJhcg", true, Err(8)),
        ("Zm9v\r\nOmJh\ncg=\r=\n", true, Ok(b"foo:bar")),
        ("Zm9vOmJhch==", true, Ok(b"foo:bar")),
        ("QUJD", true, Ok(b"ABC")),
        ("QUI=", true, Ok(b"AB")),
        ("QUI", false, Ok(b"AB")),
        ("QUI=QUJD", true, Err(4)),
        ("QQ=", true, Err(3)),
        ("QQ=x", true, Err(2)),
        ("Q", false, Err(0)),
        ("QUJDQ", false, Err(4)),
        ("\n\n", false, Ok(b"")),
        ("=", false, Err(0)),
        ("QUJD=", true, Err(4)),
        ("+/+/", true, Ok(&[0xfb, 0xff, 0xbf])),
    ];
    for (src, padded, want) in table {
        assert_eq!(
            decode(src, *padded),
            want.map(<[u8]>::to_vec),
            "{src:?} padded={padded}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Go's encoding/json, as it applies to DockerConfigJSON.

#[test]
fn null_and_empty_documents() {
    run_config_json(&[
        ("null", Keys(&[])),
        (" null\n", Keys(&[])),
        ("{}", Keys(&[])),
        (r#"{"auths":null}"#, Keys(&[])),
        (r#"{"auths":{}}"#, Keys(&[])),
        (r#"{"other":1}"#, Keys(&[])),
        (r#"{"auths":{"a":null}}"#, Keys(&["a"])),
        (r#"{"auths":{"a":{}}}"#, Keys(&["a"])),
        (
            r#"{"auths":{"a":{"username":null,"password":null,"email":null,"auth":null}}}"#,
            Keys(&["a"]),
        ),
    ]);
    run_dockercfg(&[
        ("null", Keys(&[])),
        ("{}", Keys(&[])),
        (r#"{"a":null}"#, Keys(&["a"])),
        (r#"{"auths":{"a":{}}}"#, Keys(&["auths"])),
    ]);
}

#[test]
fn member_names_match_case_insensitively() {
    run_config_json(&[
        (r#"{"Auths":{"a":{}}}"#, Keys(&["a"])),
        (r#"{"AUTHS":{"a":{}}}"#, Keys(&["a"])),
        (r#"{"aUtHs":{"a":{}}}"#, Keys(&["a"])),
        (r#"{"a\u0075ths":{"a":{}}}"#, Keys(&["a"])),
        // U+017F LATIN SMALL LETTER LONG S folds to S.
        ("{\"auth\u{17F}\":{\"a\":{}}}", Keys(&["a"])),
        (r#"{"AUTH\u017f":{"a":{}}}"#, Keys(&["a"])),
        // Look-alikes and near misses are unknown members.
        ("{\"auth\u{455}\":{\"a\":{}}}", Keys(&[])),
        (r#"{"auths ":{"a":{}}}"#, Keys(&[])),
        (r#"{"auth":{"a":{}}}"#, Keys(&[])),
        (r#"{"authss":{"a":{}}}"#, Keys(&[])),
        (r#"{"auths\u0000":{"a":{}}}"#, Keys(&[])),
        // HttpHeaders and entry members fold too.
        (r#"{"httpheaders":5}"#, Type),
        (r#"{"HTTPHEADERS":{"a":"b"}}"#, Keys(&[])),
        ("{\"HttpHeader\u{17F}\":[]}", Type),
        (r#"{"auths":{"a":{"USERNAME":5}}}"#, Type),
        (r#"{"auths":{"a":{"Password":5}}}"#, Type),
        (r#"{"auths":{"a":{"EMAIL":5}}}"#, Type),
        ("{\"auths\":{\"a\":{\"u\u{17F}ername\":5}}}", Type),
        ("{\"auths\":{\"a\":{\"pa\u{17F}\u{17F}word\":false}}}", Type),
        (r#"{"auths":{"a":{"AUTH":"pants"}}}"#, Base64(4)),
        (r#"{"auths":{"a":{"Auth":"Og=="}}}"#, Keys(&["a"])),
        // The Go field names of DockerConfigEntry are not JSON names of the decoded struct.
        (
            r#"{"auths":{"a":{"Provider":5,"identitytoken":5}}}"#,
            Keys(&["a"]),
        ),
    ]);
    assert!(fold_eq("\u{212A}", "K"), "KELVIN SIGN folds to K");
    assert!(fold_eq("k", "K"));
    assert!(!fold_eq("\u{130}", "I"));
    assert!(!fold_eq("", "AUTH"));
    assert!(!fold_eq("AUTHS", "AUTH"));
}

#[test]
fn registry_keys_are_case_sensitive_and_unescaped() {
    run_config_json(&[
        (
            r#"{"auths":{"Quay.IO":{},"quay.io":{}}}"#,
            Keys(&["Quay.IO", "quay.io"]),
        ),
        (
            r#"{"auths":{"quay\u002eio":{},"quay.io":{}}}"#,
            Keys(&["quay.io"]),
        ),
        (r#"{"auths":{"":{}}}"#, Keys(&[""])),
        (r#"{"auths":{"\ud83d\ude00":{}}}"#, Keys(&["\u{1F600}"])),
        (r#"{"auths":{"\ud800":{}}}"#, Keys(&["\u{FFFD}"])),
        (
            r#"{"auths":{"\udc00\ud800":{}}}"#,
            Keys(&["\u{FFFD}\u{FFFD}"]),
        ),
        (r#"{"auths":{"\ud800\u0041":{}}}"#, Keys(&["\u{FFFD}A"])),
        (
            r#"{"auths":{"\ud800\ud800\udc00":{}}}"#,
            Keys(&["\u{FFFD}\u{10000}"]),
        ),
        (r#"{"auths":{"\ud800x":{}}}"#, Keys(&["\u{FFFD}x"])),
        (r#"{"auths":{"\uDBFF\uDFFF":{}}}"#, Keys(&["\u{10FFFF}"])),
        (r#"{"auths":{"\uFFFE":{}}}"#, Keys(&["\u{FFFE}"])),
        (
            r#"{"auths":{"\/\b\f\n\r\t\"\\\u0000":{}}}"#,
            Keys(&["/\u{8}\u{c}\n\r\t\"\\\0"]),
        ),
    ]);
}

#[test]
fn invalid_utf8_is_replaced_byte_by_byte() {
    let table: &[(&[u8], Want)] = &[
        (b"{\"auths\":{\"k\xff\":{}}}", Keys(&["k\u{FFFD}"])),
        (
            b"{\"auths\":{\"\xe2\x82\":{}}}",
            Keys(&["\u{FFFD}\u{FFFD}"]),
        ),
        (
            b"{\"auths\":{\"\xed\xa0\x80\":{}}}",
            Keys(&["\u{FFFD}\u{FFFD}\u{FFFD}"]),
        ),
        (
            b"{\"auths\":{\"\xf0\x9f\x98\":{}}}",
            Keys(&["\u{FFFD}\u{FFFD}\u{FFFD}"]),
        ),
        (
            b"{\"auths\":{\"\xc0\x80\":{}}}",
            Keys(&["\u{FFFD}\u{FFFD}"]),
        ),
        (
            b"{\"auths\":{\"\xf4\x90\x80\x80\":{}}}",
            Keys(&["\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}"]),
        ),
        (b"{\"auths\":{\"\xe2\x82\xac\":{}}}", Keys(&["\u{20AC}"])),
        (b"{\"auths\":{\"\xef\xbf\xbd\":{}}}", Keys(&["\u{FFFD}"])),
        (
            b"{\"auths\":{\"a\xc3b\":{},\"a\xffb\":{}}}",
            Keys(&["a\u{FFFD}b"]),
        ),
        (b"{\"auth\xc5\xbf\":{\"a\":{}}}", Keys(&["a"])),
        (b"{\"auths\xff\":{\"a\":{}}}", Keys(&[])),
        (b"{\"x\":\"\xff\xfe\",\"auths\":{\"a\":{}}}", Keys(&["a"])),
        // Outside strings, any non-ASCII byte is a syntax error.
        (b"{\"a\":\xff}", Syntax(6)),
        (b"\xff", Syntax(1)),
        (b"\xef\xbb\xbf{}", Syntax(1)),
    ];
    for (payload, want) in table {
        check(
            &String::from_utf8_lossy(payload),
            &config_json(payload),
            want,
        );
    }
}

#[test]
fn duplicate_members_merge_or_reset() {
    run_config_json(&[
        (r#"{"auths":{"a":{}},"auths":{"b":{}}}"#, Keys(&["a", "b"])),
        (
            r#"{"auths":{"a":{},"b":{}},"Auths":{"b":{},"c":{}}}"#,
            Keys(&["a", "b", "c"]),
        ),
        (r#"{"auths":{"a":{}},"auths":null}"#, Keys(&[])),
        (
            r#"{"auths":{"a":{}},"auths":null,"auths":{"b":{}}}"#,
            Keys(&["b"]),
        ),
        (r#"{"auths":{"a":{}},"x":1,"auths":{}}"#, Keys(&["a"])),
        // A reset still decodes (and fails on) what it throws away.
        (
            r#"{"auths":{"a":{"auth":"pants"}},"auths":null}"#,
            Base64(4),
        ),
        (r#"{"auths":{"a":{}},"auths":5}"#, Type),
        (r#"{"auths":5,"auths":{"a":{}}}"#, Type),
        // Duplicate registry keys: one key, last entry wins, but every entry is decoded.
        (r#"{"auths":{"b":{},"a":{},"b":{}}}"#, Keys(&["b", "a"])),
        (
            r#"{"auths":{"a":{"auth":"Og=="},"a":{"auth":"pants"}}}"#,
            Base64(4),
        ),
        (
            r#"{"auths":{"a":{"auth":"pants"},"a":{"auth":"Og=="}}}"#,
            Base64(4),
        ),
        // Duplicate entry members: the last string wins; null leaves the earlier one.
        (r#"{"auths":{"a":{"auth":"pants","auth":null}}}"#, Base64(4)),
        (
            r#"{"auths":{"a":{"auth":"pants","auth":""}}}"#,
            Keys(&["a"]),
        ),
        (r#"{"auths":{"a":{"auth":"","auth":"pants"}}}"#, Base64(4)),
        (
            r#"{"auths":{"a":{"auth":"Og==","AUTH":"cGFudHM="}}}"#,
            Format,
        ),
        (
            r#"{"auths":{"a":{"auth":"pants","Auth":"Og=="}}}"#,
            Keys(&["a"]),
        ),
    ]);
    run_dockercfg(&[
        (r#"{"b":{},"a":{},"b":null}"#, Keys(&["b", "a"])),
        (r#"{"a":{"auth":"pants"},"a":{}}"#, Base64(4)),
    ]);
}

#[test]
fn known_member_of_wrong_type_is_an_error() {
    run_config_json(&[
        ("[]", Type),
        (r#""x""#, Type),
        ("5", Type),
        ("true", Type),
        (r#"{"auths":[]}"#, Type),
        (r#"{"auths":"x"}"#, Type),
        (r#"{"auths":1}"#, Type),
        (r#"{"auths":true}"#, Type),
        (r#"{"auths":{"a":"x"}}"#, Type),
        (r#"{"auths":{"a":5}}"#, Type),
        (r#"{"auths":{"a":[]}}"#, Type),
        (r#"{"auths":{"a":true}}"#, Type),
        (r#"{"auths":{"a":{"email":false}}}"#, Type),
        (r#"{"auths":{"a":{"username":1}}}"#, Type),
        (r#"{"auths":{"a":{"password":{}}}}"#, Type),
        (r#"{"auths":{"a":{"auth":["x"]}}}"#, Type),
        (r#"{"auths":{"a":{"auth":5}}}"#, Type),
        // Inside an entry the type error comes first: `auth` is never decoded.
        (r#"{"auths":{"a":{"username":5,"auth":"pants"}}}"#, Type),
        (r#"{"auths":{"a":{"auth":"pants","username":5}}}"#, Type),
        // Go saves a type error and goes on; an entry error then takes precedence.
        (
            r#"{"HttpHeaders":5,"auths":{"a":{"auth":"pants"}}}"#,
            Base64(4),
        ),
        (r#"{"auths":[],"auths":{"a":{"auth":"cGFudHM="}}}"#, Format),
        (r#"{"HttpHeaders":5,"auths":{"a":{}}}"#, Type),
        (r#"{"auths":{"a":{}},"HttpHeaders":[1]}"#, Type),
    ]);
    run_dockercfg(&[
        ("[]", Type),
        (r#""x""#, Type),
        ("5", Type),
        ("false", Type),
        (r#"{"a":"x"}"#, Type),
        (r#"{"a":[{}]}"#, Type),
        (r#"{"a":{"email":[]}}"#, Type),
    ]);
}

#[test]
fn wrong_type_errors_say_where() {
    let cases: &[(&str, Location, &str, JsonKind)] = &[
        ("[]", Location::Document, "object", JsonKind::Array),
        (
            r#"{"auths":"x"}"#,
            Location::Field("auths"),
            "object",
            JsonKind::String,
        ),
        (
            r#"{"HttpHeaders":1}"#,
            Location::Field("HttpHeaders"),
            "object",
            JsonKind::Number,
        ),
        (
            r#"{"HttpHeaders":{"h":true}}"#,
            Location::HeaderValue,
            "string",
            JsonKind::Bool,
        ),
        (
            r#"{"auths":{"q":[]}}"#,
            Location::Entry {
                registry: "q".into(),
            },
            "object",
            JsonKind::Array,
        ),
        (
            r#"{"auths":{"q":{"PASSWORD":{}}}}"#,
            Location::EntryField {
                registry: "q".into(),
                field: "password",
            },
            "string",
            JsonKind::Object,
        ),
    ];
    for (payload, location, expected, found) in cases {
        let want = DecodeError::WrongType {
            location: location.clone(),
            expected,
            found: *found,
        };
        assert_eq!(config_json(payload.as_bytes()), Err(want), "{payload}");
    }
}

#[test]
fn unknown_members_are_ignored_whatever_their_type() {
    run_config_json(&[
        (
            r#"{"credsStore":"x","credHelpers":{"a":"b"},"x":[1,{"y":null}],"n":-1.5e3,"t":true,"f":false,"z":null,"auths":{"a":{}}}"#,
            Keys(&["a"]),
        ),
        (
            r#"{"auths":{"a":{"x":[1,{"y":[]}],"identitytoken":"t","registrytoken":{},"auth":"Og=="}}}"#,
            Keys(&["a"]),
        ),
        (r#"{"x":{"auths":5},"auths":{"a":{}}}"#, Keys(&["a"])),
        (
            r#"{"x":[{"auths":{"b":{}}}],"auths":{"a":{}}}"#,
            Keys(&["a"]),
        ),
        (r#"{"x":"{\"auths\":5}","auths":{"a":{}}}"#, Keys(&["a"])),
        (
            r#"{"x":0,"y":-0,"z":1E+2,"w":0.5e-7,"auths":{"a":{}}}"#,
            Keys(&["a"]),
        ),
    ]);
}

#[test]
fn http_headers_must_map_strings_to_strings() {
    run_config_json(&[
        (
            r#"{"HttpHeaders":{"a":"b","c":null},"auths":{"a":{}}}"#,
            Keys(&["a"]),
        ),
        (r#"{"HttpHeaders":null}"#, Keys(&[])),
        (r#"{"HttpHeaders":{}}"#, Keys(&[])),
        (r#"{"HttpHeaders":{"a":"b"},"HttpHeaders":null}"#, Keys(&[])),
        (r#"{"HttpHeaders":{"a":1}}"#, Type),
        (r#"{"HttpHeaders":{"a":{}}}"#, Type),
        (r#"{"HttpHeaders":{"a":[]}}"#, Type),
        (r#"{"HttpHeaders":{"a":true}}"#, Type),
        (r#"{"HttpHeaders":{"a":"b","c":false}}"#, Type),
        (r#"{"HttpHeaders":[]}"#, Type),
        (r#"{"HttpHeaders":"x"}"#, Type),
        (r#"{"HttpHeaders":true}"#, Type),
        (r#"{"HttpHeaders":0}"#, Type),
    ]);
    // The legacy format has no HttpHeaders: it is just a registry key there.
    run_dockercfg(&[(r#"{"HttpHeaders":{}}"#, Keys(&["HttpHeaders"]))]);
}

#[test]
fn syntax_errors_anywhere_fail_the_whole_secret() {
    let table: &[(&str, Want)] = &[
        (r#"{"auths":{"a":{}}}"#, Keys(&["a"])),
        ("{\"auths\":{\"a\":{}}}\n\r\t ", Keys(&["a"])),
        (r#"{"auths":{"a":{}}} x"#, Syntax(20)),
        (r#"{"auths":{"a":{}}} {"auths":{"b":{}}}"#, Syntax(20)),
        ("{}}", Syntax(3)),
        ("{}\0", Syntax(3)),
        ("{}\u{b}", Syntax(3)),
        ("{\u{A0}}", Syntax(2)),
        (r#"{"a":1,}"#, Syntax(8)),
        (r#"{,}"#, Syntax(2)),
        (r#"{"a" 1}"#, Syntax(6)),
        (r#"{"a":1 "b":2}"#, Syntax(8)),
        (r#"{"a":[1 2]}"#, Syntax(9)),
        (r#"{"a":[1,]}"#, Syntax(9)),
        (r#"{"a":]}"#, Syntax(6)),
        (r#"{"a":{]}"#, Syntax(7)),
        (r#"{"a":01}"#, Syntax(7)),
        (r#"{"a":-}"#, Syntax(7)),
        (r#"{"a":1.}"#, Syntax(8)),
        (r#"{"a":1e}"#, Syntax(8)),
        (r#"{"a":1e+}"#, Syntax(9)),
        (r#"{"a":.5}"#, Syntax(6)),
        (r#"{"a":+1}"#, Syntax(6)),
        (r#"{"a":tru}"#, Syntax(9)),
        (r#"{"a":nul}"#, Syntax(9)),
        (r#"{"a":True}"#, Syntax(6)),
        (r#"{"a":NaN}"#, Syntax(6)),
        (r#"{'a':1}"#, Syntax(2)),
        ("{\"a\":\"\u{1}\"}", Syntax(7)),
        ("{\"a\":\"\t\"}", Syntax(7)),
        (r#"{"a":"\x"}"#, Syntax(8)),
        (r#"{"a":"\'"}"#, Syntax(8)),
        (r#"{"a":"\u12G4"}"#, Syntax(11)),
        (r#"{"auths":{"a":{}}"#, Syntax(17)),
        (r#"{"a":"\"#, Syntax(7)),
        (r#"{"a":""#, Syntax(6)),
        ("{", Syntax(1)),
        ("[", Syntax(1)),
        ("nul", Syntax(3)),
        ("nulll", Syntax(5)),
        // Validation comes first: a syntax error beats any decoding error before it.
        (r#"{"auths":5,}"#, Syntax(12)),
        (r#"{"auths":{"a":{"auth":"pants"}},]"#, Syntax(33)),
        (r#"{"auths":{"a":{"auth":"pants"}}"#, Syntax(31)),
    ];
    for (payload, want) in table {
        check(payload, &config_json(payload.as_bytes()), want);
        let dockercfg_want = match want {
            Keys(_) => &Keys(&["auths"]),
            other => other,
        };
        check(payload, &dockercfg(payload.as_bytes()), dockercfg_want);
    }
}

#[test]
fn nesting_is_limited_to_go_max_depth_without_recursion() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // Depth counts every array and object, the top-level object included.
    let deep_member = |depth: usize| format!(r#"{{"auths":{{}},"x":{}}}"#, nested(depth - 1));
    check(
        "depth 10000",
        &config_json(deep_member(10_000).as_bytes()),
        &Keys(&[]),
    );
    check(
        "depth 10001",
        &config_json(deep_member(10_001).as_bytes()),
        &Syntax(10_016),
    );
    check(
        "array 10000",
        &config_json(nested(10_000).as_bytes()),
        &Type,
    );
    check(
        "array 10001",
        &config_json(nested(10_001).as_bytes()),
        &Syntax(10_001),
    );
    check(
        "array 10001",
        &dockercfg(nested(10_001).as_bytes()),
        &Syntax(10_001),
    );
    // Inside an entry: `{"auths":{"a":{"z":` opens three levels before the arrays.
    let in_entry = |arrays: usize| format!(r#"{{"auths":{{"a":{{"z":{}}}}}}}"#, nested(arrays));
    check(
        "entry ok",
        &config_json(in_entry(9_997).as_bytes()),
        &Keys(&["a"]),
    );
    check(
        "entry deep",
        &config_json(in_entry(9_998).as_bytes()),
        &Syntax(10_017),
    );
    let objects = |depth: usize| format!("{}1{}", r#"{"y":"#.repeat(depth), "}".repeat(depth));
    check(
        "objects",
        &dockercfg(objects(10_000).as_bytes()),
        &Keys(&["y"]),
    );
    check(
        "objects deep",
        &dockercfg(objects(10_001).as_bytes()),
        &Syntax(50_001),
    );
    // Far deeper than any stack: the scanner stops at the limit, still no recursion.
    let unclosed = "[".repeat(1 << 20);
    check(
        "unclosed",
        &config_json(unclosed.as_bytes()),
        &Syntax(10_001),
    );
}

/// Hostile sizes get the kubelet's answer. That decoding stays linear in the payload is
/// measured by the `long-input/dockerconfig-keys` benchmarks (benches/decision.rs), not
/// asserted with a clock here.
#[test]
fn hostile_sizes_get_the_kubelets_answer() {
    let many: String = (0..20_000)
        .map(|i| format!(r#""r{i}.io":{{"auth":"Og=="}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let got = config_json(format!(r#"{{"auths":{{{many}}}}}"#).as_bytes());
    let Ok(Some(keys)) = got else {
        panic!("{got:?}")
    };
    assert_eq!(keys.len(), 20_000);
    assert_eq!(
        (keys[0].as_str(), keys[19_999].as_str()),
        ("r0.io", "r19999.io")
    );

    let repeated: String = (0..20_000)
        .map(|i| format!(r#""r{}.io":null"#, i % 3))
        .collect::<Vec<_>>()
        .join(",");
    check(
        "repeated keys",
        &dockercfg(format!("{{{repeated}}}").as_bytes()),
        &Keys(&["r0.io", "r1.io", "r2.io"]),
    );

    let password = "p".repeat(1 << 20);
    let auth = base64_std(format!("u:{password}").as_bytes());
    let payload = format!(r#"{{"auths":{{"a":{{"auth":"{auth}"}}}}}}"#);
    check(
        "1 MiB auth",
        &config_json(payload.as_bytes()),
        &Keys(&["a"]),
    );
    let payload = format!(
        r#"{{"auths":{{"a":{{"auth":"{}!"}}}}}}"#,
        &auth[..auth.len() - 4]
    );
    check(
        "1 MiB auth, bad end",
        &config_json(payload.as_bytes()),
        &Base64(auth.len() - 4),
    );

    let mut invalid = b"{\"auths\":{\"a\":{\"auth\":\"".to_vec();
    invalid.extend(std::iter::repeat_n(0xffu8, 1 << 20));
    invalid.extend_from_slice(b"\"}}}");
    check("1 MiB invalid UTF-8", &config_json(&invalid), &Base64(0));

    let newlines = format!(
        r#"{{"auths":{{"a":{{"auth":"{}Og=="}}}}}}"#,
        r"\n".repeat(1 << 19)
    );
    check("newlines", &config_json(newlines.as_bytes()), &Keys(&["a"]));

    let surrogates = format!(r#"{{"x":"{}","auths":null}}"#, r"\ud800".repeat(100_000));
    check(
        "lone surrogates",
        &config_json(surrogates.as_bytes()),
        &Keys(&[]),
    );

    let long_key = "k".repeat(1 << 20);
    let payload = format!(r#"{{"auths":{{"{long_key}":{{"auth":"!"}}}}}}"#);
    let Err(err) = config_json(payload.as_bytes()) else {
        panic!("long key must fail");
    };
    assert!(err.to_string().len() < 400, "message stays short");
    assert!(format!("{err:?}").len() < 400, "Debug stays short");
}

/// Standard base64 with padding, for building test payloads.
fn base64_std(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn unquote_follows_go() {
    let table: &[(&[u8], &str)] = &[
        (b"", ""),
        (b"plain", "plain"),
        (br"\u00e9\u4E2D", "\u{e9}\u{4e2d}"),
        (br"\ud83d\ude00", "\u{1F600}"),
        (br"\ude00\ud83d", "\u{FFFD}\u{FFFD}"),
        (br"\ud83d", "\u{FFFD}"),
        (br"\ud83d\n", "\u{FFFD}\n"),
        (b"a\xffb", "a\u{FFFD}b"),
        (b"\xe2\x82", "\u{FFFD}\u{FFFD}"),
        (b"\xe2\x82\xac\xe2", "\u{20AC}\u{FFFD}"),
    ];
    for (raw, want) in table {
        assert_eq!(unquote(raw), *want, "{raw:?}");
    }
}

#[test]
fn error_messages_are_short_and_clear() {
    let table: &[(&str, &str)] = &[
        (
            r#"{"auths":{"a":{}}"#,
            "invalid JSON at byte 17: unexpected end of input",
        ),
        (
            r#"{"a":1,}"#,
            "invalid JSON at byte 8: invalid character looking for beginning of object key string",
        ),
        (
            r#"{"auths":{"quay.io":{"auth":"Zm9v!"}}}"#,
            r#"entry "quay.io": field "auth": illegal base64 data at input byte 4"#,
        ),
        (
            r#"{"auths":{"quay.io":{"auth":"cGFudHM="}}}"#,
            r#"entry "quay.io": field "auth": must be formatted as base64(username:password)"#,
        ),
        (
            r#"{"auths":{"quay.io":{"username":5}}}"#,
            r#"entry "quay.io": field "username": expected string, found number"#,
        ),
        (
            r#"{"auths":{"quay.io":"x"}}"#,
            r#"entry "quay.io": expected object, found string"#,
        ),
        (
            r#"{"auths":[]}"#,
            r#"field "auths": expected object, found array"#,
        ),
        (
            r#"{"HttpHeaders":{"X-Meta":1}}"#,
            r#"field "HttpHeaders": header value: expected string, found number"#,
        ),
        ("true", "top-level value: expected object, found bool"),
        (
            r#"{"auths":{"a\"\n":{"auth":"!"}}}"#,
            r#"entry "a\"\n": field "auth": illegal base64 data at input byte 0"#,
        ),
    ];
    for (payload, want) in table {
        let err = config_json(payload.as_bytes()).expect_err(payload);
        assert_eq!(err.to_string(), *want);
    }
    let long = "\u{e9}".repeat(200);
    assert_eq!(label(&long), format!("{}…", "\u{e9}".repeat(128)));
    assert_eq!(label("quay.io"), "quay.io");
}

#[test]
fn credentials_never_appear_in_errors() {
    const USER: &str = "zebra-user-7Q";
    const PASSWORD: &str = "S3cr3t-Walrus-Pa55";
    let b64 = |text: &str| base64_std(text.as_bytes());
    let user_password = b64(&format!("{USER}:{PASSWORD}"));
    let no_colon = b64(&format!("{USER}{PASSWORD}"));
    let credential_strings = [
        USER.to_owned(),
        PASSWORD.to_owned(),
        user_password.clone(),
        no_colon.clone(),
        "Walrus".to_owned(),
    ];
    // Failing entries, placed under a registry key in both formats.
    let entries = [
        format!(r#"{{"auth":"{no_colon}"}}"#),
        format!(r#"{{"auth":"{user_password} "}}"#),
        format!(r#"{{"auth":"{}-"}}"#, &user_password[..8]),
        format!(r#"{{"username":"{USER}","password":"{PASSWORD}","email":5}}"#),
        format!(r#"{{"auth":"{user_password}","username":["{USER}"]}}"#),
        format!(r#"{{"username":"{USER}","password":{PASSWORD}}}"#),
        format!(r#"{{"username":"{USER}","password":"{PASSWORD}"#),
        format!(r#"{{"password":"{PASSWORD}\x"}}"#),
        format!("{{\"password\":\"{PASSWORD}\n\"}}"),
        format!(r#""{PASSWORD}""#),
        format!(r#"["{USER}","{PASSWORD}"]"#),
    ];
    let mut payloads: Vec<(Vec<u8>, Decode)> = Vec::new();
    for entry in &entries {
        let wrapped = format!(r#"{{"auths":{{"r":{entry}}}}}"#);
        payloads.push((wrapped.into_bytes(), config_json));
        payloads.push((format!(r#"{{"r":{entry}}}"#).into_bytes(), dockercfg));
    }
    for document in [
        format!(r#"{{"auths":{{"r":{{"username":"{USER}","password":"{PASSWORD}"}},"s":5}}}}"#),
        format!(r#"{{"auths":{{"r":{{"auth":"{user_password}"}}}}}} {PASSWORD}"#),
        format!(r#"{{"HttpHeaders":{{"Authorization":"{PASSWORD}","x":1}}}}"#),
        format!(r#"{{"auths":{{"r":{{"auth":"{user_password}"}}}},"auths":"{PASSWORD}"}}"#),
        format!(r#"{{"auths":{{"r":{{"auth":"{user_password}"}}}},"x":{PASSWORD}}}"#),
    ] {
        payloads.push((document.into_bytes(), config_json));
    }
    let mut invalid_utf8 = format!(r#"{{"r":{{"auth":"{user_password}"#).into_bytes();
    invalid_utf8.extend_from_slice(b"\xff\"}}");
    payloads.push((invalid_utf8, dockercfg));
    for (payload, decode) in &payloads {
        let context = String::from_utf8_lossy(payload);
        let Err(err) = decode(payload) else {
            panic!("{context}: expected an error");
        };
        for text in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            for secret in &credential_strings {
                assert!(!text.contains(secret.as_str()), "{text:?} leaks {secret:?}");
            }
        }
    }
    // Decoding succeeds without handing any credential back.
    let payload = format!(r#"{{"auths":{{"r":{{"auth":"{user_password}","email":"{USER}"}}}}}}"#);
    assert_eq!(
        config_json(payload.as_bytes()),
        Ok(Some(vec!["r".to_owned()]))
    );
}

// ---------------------------------------------------------------------------------------------
// Rows printed by the parity run against the kubelet's Go code (tests/parity, `make parity`).

/// (secret type, data key, payload, what `MakeDockerKeyring` makes of it): cases where we
/// differed from Go until fixed, and quirks confirmed against it. Keys compare as sets, in
/// byte order: Go decodes them into a map.
const GO_PARITY: &[(&str, &str, &[u8], Want)] = &[
    (
        DOCKER_CONFIG_JSON_TYPE,
        DOCKER_CONFIG_JSON_KEY,
        b"{\"auth\xc5\xbf\":{\"b\":{},\"a\":{\"u\xc5\xbfername\":1}}}",
        Type,
    ),
    (
        DOCKER_CONFIG_JSON_TYPE,
        DOCKER_CONFIG_JSON_KEY,
        b"{\"auths\":{\"b\":{}},\"Auths\":{\"a\":{}}}",
        Keys(&["a", "b"]),
    ),
    (
        DOCKERCFG_TYPE,
        DOCKERCFG_KEY,
        b"{\"r\":{\"auth\":\"dTp\\nw\"}}",
        Keys(&["r"]),
    ),
    (
        DOCKER_CONFIG_JSON_TYPE,
        DOCKER_CONFIG_JSON_KEY,
        b"{\"auths\":{\"r\":{\"auth\":\"dTpx=\"}}}",
        Base64(4),
    ),
];

#[test]
fn go_parity_table() {
    for (secret_type, key, payload, want) in GO_PARITY {
        let mut got = secret(secret_type, key, payload);
        if let Ok(Some(keys)) = &mut got {
            keys.sort();
        }
        check(&String::from_utf8_lossy(payload), &got, want);
    }
}

// ---------------------------------------------------------------------------------------------
// Never panics.

fn json_fragment() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\n",
        "null",
        "true",
        "false",
        "0",
        "-1.5e3",
        "\"",
        "\\",
        "\\u",
        "\\ud800",
        "\\n",
        "\"auths\"",
        "\"Auths\"",
        "\"auth\u{17F}\"",
        "\"HttpHeaders\"",
        "\"auth\"",
        "\"username\"",
        "\"password\"",
        "\"email\"",
        "\"r\"",
        "\"Og==\"",
        "\"pants\"",
        "\"Zm9vOmJhcg==\"",
        "\"Zm9v\\nOmJhcg\"",
        "\"cGFudHM=\"",
        "=",
        "\u{e9}",
        "\u{A0}",
    ])
    .prop_map(str::to_owned)
}

/// Documents built from the pieces the decoder cares about, mostly well-formed.
fn json_ish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        json_fragment(),
        "[a-zA-Z0-9+/=: \\\\\"\n\r\t-]{0,12}".prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((json_fragment(), inner.clone()), 0..6).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
            prop::collection::vec(inner, 0..6).prop_map(|v| v.concat()),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = config_json(&bytes);
        let _ = dockercfg(&bytes);
    }

    #[test]
    fn json_ish_input_never_panics(doc in json_ish()) {
        let _ = config_json(doc.as_bytes());
        let _ = dockercfg(doc.as_bytes());
        let wrapped = format!("{{\"auths\":{{\"r\":{doc}}}}}");
        let _ = config_json(wrapped.as_bytes());
    }

    #[test]
    fn arbitrary_auth_never_panics(auth in "[ -~\u{80}-\u{10FFFF}\r\n\t]{0,40}") {
        let escaped: String = auth.chars().map(|c| match c {
            '"' => "\\\"".to_owned(),
            '\\' => "\\\\".to_owned(),
            c if c < ' ' => format!("\\u{:04x}", u32::from(c)),
            c => c.to_string(),
        }).collect();
        let payload = format!("{{\"auths\":{{\"r\":{{\"auth\":\"{escaped}\"}}}}}}");
        let got = config_json(payload.as_bytes());
        prop_assert!(!matches!(got, Err(DecodeError::Syntax { .. })), "{got:?}");
    }

    #[test]
    fn encoded_credentials_always_decode(user in "[^:]{0,16}", password in ".{0,16}") {
        let auth = base64_std(format!("{user}:{password}").as_bytes());
        let unpadded = auth.trim_end_matches('=');
        for auth in [auth.as_str(), unpadded] {
            let payload = format!("{{\"auths\":{{\"r\":{{\"auth\":\"{auth}\"}}}}}}");
            prop_assert_eq!(config_json(payload.as_bytes()), Ok(Some(vec!["r".to_owned()])));
        }
    }
}
