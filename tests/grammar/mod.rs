//! Grammar-aware generators shared by the fuzzing run (tests/fuzz.rs) and the parity run
//! against the kubelet's Go code (tests/parity): image-grammar pieces, JSON-ish text with near
//! misses, hostile registry keys, `auths` entries of every wrong type, and whole
//! `dockerconfigjson` documents.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;
use serde_json::{Value, json};

/// A strategy for strings matching `pattern`. A `&str` is a strategy too, but one that parses
/// its regular expression again for every case.
pub fn regex(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).expect("a valid regular expression")
}

/// A password that must never appear in any message derived from a document holding it.
pub const MARKER: &str = "Fz-S3cr3t-marker";

/// Text biased towards the characters the image grammar cares about, with long runs.
pub fn image_ish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        regex("[a-z0-9]{1,12}"),
        regex("[A-Z]{1,3}"),
        Just(".".to_owned()),
        Just("/".to_owned()),
        Just(":".to_owned()),
        Just("@".to_owned()),
        Just("-".to_owned()),
        Just("__".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("sha256:".to_owned()),
        regex("[0-9a-f]{64}"),
        Just("localhost".to_owned()),
        Just("docker.io".to_owned()),
        Just("index.docker.io".to_owned()),
        Just("[::1]".to_owned()),
        regex("[\\x00-\\x1f\\x7f]"),
        regex("\\PC{1,3}"),
        regex("[a-z]{200,300}"),
    ];
    prop::collection::vec(atom, 0..24).prop_map(|atoms| atoms.concat())
}

/// JSON-like text: valid documents, near-misses and deep nesting.
pub fn json_ish(depth: u32) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("1e999".to_owned()),
        Just("-0.0".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        regex("\"[^\"\\\\]{0,20}\""),
        regex("[\\[\\]{}:,\"\\\\]"),
        Just(format!("\"{MARKER}\"")),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (regex("[a-zA-Z*?\\[\\]\\\\.:/]{0,12}"), inner.clone()),
                0..5
            )
            .prop_map(|members| {
                let body: Vec<String> = members
                    .into_iter()
                    .map(|(key, value)| format!("{}:{value}", Value::from(key)))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
            // Unbalanced, truncated or doubled pieces.
            prop::collection::vec(inner, 0..4).prop_map(|v| v.concat()),
        ]
    })
}

/// A registry key, hostile ones included.
pub fn registry_key() -> impl Strategy<Value = String> {
    prop_oneof![
        regex("[a-z0-9.-]{1,20}(:[0-9]{1,5})?(/[a-z0-9/]{0,10})?"),
        regex("https?://[a-zA-Z0-9.*?-]{1,20}/v[12]/"),
        regex("\\*{1,64}(\\.[a-z*]{1,5}){0,3}"),
        regex("\\[{1,4}[a-z\\]-]{0,6}"),
        regex("[\\x00-\\x1f \"\\\\]{1,4}"),
        regex("\\PC{0,12}"),
    ]
}

/// An `auths` entry: well-formed, wrongly typed, or with a broken `auth`.
pub fn entry() -> impl Strategy<Value = Value> {
    let password = Just(Value::from(MARKER));
    let wrong = prop_oneof![
        Just(Value::Null),
        Just(json!(1)),
        Just(json!([MARKER])),
        Just(json!({ "x": MARKER })),
        Just(json!(true)),
    ];
    prop_oneof![
        password
            .clone()
            .prop_map(|p| json!({ "username": "u", "password": p })),
        wrong
            .clone()
            .prop_map(|w| json!({ "username": "u", "password": w })),
        wrong
            .clone()
            .prop_map(|w| json!({ "username": w, "password": MARKER })),
        wrong.clone().prop_map(|w| json!({ "auth": w })),
        wrong.prop_map(|w| w),
        Just(json!({ "auth": BASE64.encode(format!("u:{MARKER}")) })),
        Just(json!({ "auth": BASE64.encode(MARKER) })),
        Just(json!({ "auth": format!("%%{MARKER}%%") })),
        Just(json!({ "auth": format!("{} x", BASE64.encode(format!("u:{MARKER}"))) })),
        Just(json!({ "Auth": BASE64.encode(format!("u:{MARKER}")), "PASSWORD": MARKER })),
        Just(json!({})),
    ]
}

pub fn dockerconfig_document() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec((registry_key(), entry()), 0..8).prop_map(|entries| {
            let auths: serde_json::Map<String, Value> = entries.into_iter().collect();
            json!({ "auths": auths }).to_string().into_bytes()
        }),
        // Duplicate members (serde_json's map would merge them): written out by hand.
        (registry_key(), entry(), entry()).prop_map(|(key, a, b)| {
            let key = Value::from(key);
            format!(r#"{{"auths":{{{key}:{a},{key}:{b}}},"auths":{{{key}:{b}}}}}"#).into_bytes()
        }),
        json_ish(8).prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}
