//! Tables checked against Go 1.26 (`url.Parse`, `net.SplitHostPort`, `filepath.Match` and the
//! kubelet's keyring functions), the kubelet's own keyring_test.go cases, and properties.

use super::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Normalization: auths key → index key

/// (raw auths key, index key or None when the kubelet skips the key)
const NORMALIZE: &[(&str, Option<&str>)] = &[
    // schemes
    ("quay.io", Some("quay.io")),
    ("https://quay.io", Some("quay.io")),
    ("http://quay.io", Some("quay.io")),
    ("HTTPS://quay.io", Some("HTTPS://quay.io")),
    ("ftp://quay.io", Some("ftp://quay.io")),
    ("https://https://quay.io", Some("https://quay.io")),
    ("", Some("")),
    ("https://", Some("")),
    ("/foo", Some("/foo")),
    // /v1/, /v2/ and trailing slashes
    ("https://index.docker.io/v1/", Some("index.docker.io")),
    ("index.docker.io/v1/", Some("index.docker.io")),
    ("https://quay.io/v2/", Some("quay.io")),
    ("quay.io/v1", Some("quay.io/v1")),
    ("quay.io/v1/foo", Some("quay.io/foo")),
    ("quay.io/v2/foo/bar", Some("quay.io/foo/bar")),
    ("quay.io/v1//", Some("quay.io//")),
    ("quay.io/v3/", Some("quay.io/v3/")),
    ("quay.io/V1/", Some("quay.io/V1/")),
    ("quay.io/", Some("quay.io")),
    ("quay.io//", Some("quay.io//")),
    ("quay.io/foo/", Some("quay.io/foo/")),
    // query and fragment
    ("reg?.example.com", Some("reg")),
    ("reg.io/foo?bar", Some("reg.io/foo")),
    ("reg.io?/foo", Some("reg.io")),
    ("reg.io?%zz", Some("reg.io")),
    ("reg.io?", Some("reg.io")),
    ("reg.io#frag", Some("reg.io")),
    ("reg.io/foo#/bar", Some("reg.io/foo")),
    ("reg.io#%zz", None),
    ("reg.io#\t", Some("reg.io")),
    ("reg.io?a#b?c", Some("reg.io")),
    // user info
    ("user:pass@reg.io/foo", Some("reg.io/foo")),
    ("user@reg.io", Some("reg.io")),
    ("a@b@reg.io", Some("reg.io")),
    ("us%41:p%3Ass@reg.io", Some("reg.io")),
    ("us er@reg.io", None),
    ("us%zz@reg.io", None),
    ("é@reg.io", None),
    ("user/x@reg.io", Some("user/x@reg.io")),
    ("@reg.io", Some("reg.io")),
    // ports
    ("reg.io:5000", Some("reg.io:5000")),
    ("reg.io:5000/foo", Some("reg.io:5000/foo")),
    ("reg.io:443/v2/", Some("reg.io:443")),
    ("reg.io:", Some("reg.io:")),
    ("reg.io:abc", None),
    ("reg.io:-1", None),
    ("reg.io:50:00", None),
    ("http://reg.io:1:2", None),
    ("::1", None),
    (":5000", Some(":5000")),
    // IPv6 literals
    ("[::1]", Some("[::1]")),
    ("[::1]:5000/foo", Some("[::1]:5000/foo")),
    ("[::1]5000", None),
    ("[::1]:x", None),
    ("[::1", None),
    ("[1.2.3.4]", None),
    ("[reg.io]", None),
    ("[::ffff:1.2.3.4]", Some("[::ffff:1.2.3.4]")),
    ("[::ffff:1.2.3.04]", None),
    ("[1:2:3:4:5:6:7:8]", Some("[1:2:3:4:5:6:7:8]")),
    ("[1:2:3:4:5:6:7:8:9]", None),
    ("[1::2::3]", None),
    ("[12345::1]", None),
    ("[fe80::1%25en0]:80", Some("[fe80::1%en0]:80")),
    ("[fe80::1%25]", None),
    ("[fe80::1%en0]", None),
    ("a[b].io", None),
    ("[::1][::2]", None),
    // host characters and escapes
    ("reg io", None),
    ("reg\t.io", None),
    ("reg.io{x}", None),
    ("reg.io\\x", None),
    ("reg]io", Some("reg]io")),
    ("reg;io", Some("reg;io")),
    ("REG.io", Some("REG.io")),
    ("a%25b.io", Some("a%b.io")),
    ("a%41.io", None),
    ("%C3%A9.io", Some("é.io")),
    ("é.io", Some("é.io")),
    ("*.example.com", Some("*.example.com")),
    ("*.example.com:443/v2/", Some("*.example.com:443")),
    // path escapes
    ("reg.io/a b", Some("reg.io/a b")),
    ("reg.io/%41", Some("reg.io/A")),
    ("reg.io/%2F", Some("reg.io//")),
    ("reg.io/a%252Fb", Some("reg.io/a%2Fb")),
    ("reg.io/%zz", None),
    ("reg.io/%", None),
    ("reg.io/%FF", Some("reg.io/\u{FFFD}")),
    ("reg.io/\u{7f}", None),
    ("reg.io/\\x", Some("reg.io/\\x")),
];

#[test]
fn normalize_table() {
    for &(raw, want) in NORMALIZE {
        assert_eq!(index_key(raw).as_deref(), want, "index_key({raw:?})");
    }
}

#[test]
fn keyring_drops_skipped_keys() {
    let keyring = Keyring::new([("a", ["reg io", "reg.io:abc"])]);
    assert!(keyring.is_empty());
    assert!(keyring.lookup("reg.io/x").is_empty());
    let keyring = Keyring::new([("a", ["reg io", "quay.io/v1/"])]);
    assert_eq!(keyring.index_keys().collect::<Vec<_>>(), ["quay.io"]);
}

#[test]
fn keyring_keeps_bytes_that_are_not_utf8() {
    // %FF decodes to a byte that is not UTF-8; the keyring compares that byte, not U+FFFD.
    let keyring = Keyring::new([("a", ["reg.io/%FF"])]);
    assert_eq!(
        keyring.index_keys().collect::<Vec<_>>(),
        ["reg.io/\u{FFFD}"]
    );
    assert_eq!(keyring.lookup("reg.io/%FFx"), [&"a"]);
    assert!(keyring.lookup("reg.io/\u{FFFD}").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Matching an index key against a lookup string

fn matched() -> KeyMatch {
    KeyMatch::Matched
}
fn unparseable() -> KeyMatch {
    KeyMatch::Unparseable
}
fn port(key: &str, image: &str) -> KeyMatch {
    KeyMatch::PortDiffers {
        key_port: key.into(),
        image_port: image.into(),
    }
}
fn count(key: usize, image: usize) -> KeyMatch {
    KeyMatch::LabelCount { key, image }
}
fn label(label: usize) -> KeyMatch {
    KeyMatch::LabelMismatch { label }
}
fn bad_glob(label: usize) -> KeyMatch {
    KeyMatch::BadGlob { label }
}
fn path(key_path: &str) -> KeyMatch {
    KeyMatch::PathPrefix {
        key_path: key_path.into(),
    }
}

/// (index key, lookup string, verdict)
fn match_table() -> Vec<(&'static str, &'static str, KeyMatch)> {
    vec![
        // ports: compared as strings, no default
        ("reg.io", "reg.io/x", matched()),
        ("reg.io:443", "reg.io/x", port("443", "")),
        ("reg.io", "reg.io:443/x", port("", "443")),
        ("reg.io:443", "reg.io:443/x", matched()),
        ("reg.io:0443", "reg.io:443/x", port("0443", "443")),
        ("reg.io:", "reg.io/x", matched()),
        ("reg.io:5000", "reg.io:5000", matched()),
        ("reg.io", "reg.io:1:2/x", unparseable()),
        // label counts
        ("*.example.com", "a.example.com/x", matched()),
        ("*.example.com", "example.com/x", count(3, 2)),
        ("*.example.com", "a.b.example.com/x", count(3, 4)),
        ("*kubernetes.io", "kubernetes.io", matched()),
        ("*kubernetes.io", "a.kubernetes.io", count(2, 3)),
        ("*", "localhost/x", matched()),
        ("*", "a.b/x", count(1, 2)),
        ("*.*", "a.b", matched()),
        ("reg", "reg.io", count(1, 2)),
        ("a.", "a./x", matched()),
        ("a.", "a/x", count(2, 1)),
        // globs in labels
        ("prefix.*.io", "prefix.kubernetes.io", matched()),
        ("k*.io", "quay.io", label(0)),
        ("a*b.io", "ab.io", matched()),
        ("a*b.io", "axxb.io", matched()),
        ("a*b.io", "axxc.io", label(0)),
        ("a.b.c", "a.x.c", label(1)),
        ("a.b.*", "a.b.", matched()),
        ("*.io", "docker.io/library/nginx", matched()),
        ("*.docker.io", "docker.io/library/nginx", count(3, 2)),
        (
            "registry-1.docker.io",
            "docker.io/library/nginx",
            count(3, 2),
        ),
        ("docker.io", "docker.io/library/nginx", matched()),
        ("docker.io", "nginx", count(2, 1)),
        ("é.io", "%C3%A9.io", matched()),
        ("*.io", "%C3%A9.io", matched()),
        ("%C3%A9.io", "é.io", matched()),
        // glob syntax Go's url.Parse lets through a key: '?' starts a query, '\\' and '^'
        // are not host characters, '[' only opens an IPv6 literal
        ("reg?.io", "reg/x", matched()),
        ("reg?.io", "regx.io/x", count(1, 2)),
        ("\\reg.io", "reg.io", unparseable()),
        ("[a-z].io", "a.io", unparseable()),
        ("[^a].io", "b.io", unparseable()),
        // paths: plain byte prefix, no segment boundary
        ("quay.io/foo", "quay.io/foobar/x", matched()),
        ("quay.io/foo", "quay.io/foo", matched()),
        ("quay.io/foo", "quay.io/fo", path("/foo")),
        ("quay.io/foo/", "quay.io/foo", path("/foo/")),
        ("quay.io//", "quay.io/x", path("//")),
        ("quay.io/a%2Fb", "quay.io/a/b", matched()),
        ("quay.io/a%b", "quay.io/a%25b", unparseable()),
        ("quay.io/foo", "quay.io/foo?x", matched()),
        ("quay.io/foo", "quay.io?/foo", path("/foo")),
        ("quay.io/foo", "quay.io/%66oo", matched()),
        // case sensitivity
        ("Quay.io", "quay.io", label(0)),
        ("quay.io/Foo", "quay.io/foo", path("/Foo")),
        ("quay.io", "QUAY.IO", label(0)),
        // the check order: port, label count, path, labels
        ("a.b:1", "a:2", port("1", "2")),
        ("a.b/x", "a/y", count(2, 1)),
        ("a.b/x", "c.d/y", path("/x")),
        // lookup strings that do not parse, or parse oddly
        ("reg.io", "reg io/x", unparseable()),
        ("reg io", "reg.io", unparseable()),
        ("a%b.io", "a%25b.io", unparseable()),
        ("reg.io", "user@reg.io/x", matched()),
        ("reg.io/x", "reg.io/x#y", matched()),
        ("reg.io", "reg.io#%zz", unparseable()),
        ("", "", matched()),
        ("", "/x", matched()),
        ("*", "", matched()),
        // IPv6: with a port SplitHostPort strips the brackets; without one the bracketed
        // host stays a single label, and as a glob `[::1]` is the class {':', '1'}
        ("[::1]:5000", "[::1]:5000/x", matched()),
        ("[::1]:5000", "[::1]/x", port("5000", "")),
        ("[::1]", "[::1]/x", label(0)),
        ("[::1]", "1/x", matched()),
        ("[::1]", ":/x", label(0)),
        ("[::1]", "[::2]:1/x", port("", "1")),
        ("[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]/x", bad_glob(0)),
        ("[::ffff:1.2.3.4]", "a.2.3.4]/x", bad_glob(0)),
        ("[::ffff:1.2.3.4]:1", "[::ffff:1.2.3.4]:1/x", matched()),
        ("[fe80::1%en0]", "[fe80::1%25en0]", unparseable()),
        ("*.io", "[::1]/x", count(2, 1)),
    ]
}

#[test]
fn match_key_table() {
    for (key, lookup, want) in match_table() {
        assert_eq!(
            match_key(key, lookup),
            want,
            "match_key({key:?}, {lookup:?})"
        );
    }
}

#[test]
fn preparsed_keys_agree_with_match_key_table() {
    for (key, lookup, want) in match_table() {
        let keyring = Keyring {
            owners: Box::new(["owner"]),
            keys: Box::new([IndexedKey::new(key.as_bytes().to_vec(), vec![0])]),
            docker_hub: None,
        };
        let explanation = keyring.explain(lookup);
        assert_eq!(explanation.keys.len(), 1);
        assert_eq!(explanation.keys[0].verdict, want, "{key:?} vs {lookup:?}");
        let expected: Vec<&&str> = if want == KeyMatch::Matched {
            vec![&"owner"]
        } else {
            vec![]
        };
        assert_eq!(keyring.lookup(lookup), expected, "{key:?} vs {lookup:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// filepath.Match

/// (pattern, name, Some(matched) or None for ErrBadPattern)
const GLOBS: &[(&str, &str, Option<bool>)] = &[
    ("", "", Some(true)),
    ("", "a", Some(false)),
    ("a", "a", Some(true)),
    ("a", "A", Some(false)),
    ("a", "", Some(false)),
    ("*", "", Some(true)),
    ("*", "abc", Some(true)),
    ("*", "a/b", Some(false)),
    ("**", "ab", Some(true)),
    ("a*", "abc", Some(true)),
    ("a*", "bac", Some(false)),
    ("a*", "a/b", Some(false)),
    ("*c", "abc", Some(true)),
    ("a*c", "ac", Some(true)),
    ("a*c", "abdc", Some(true)),
    ("a*c", "abdcx", Some(false)),
    ("a*b*c", "axbyc", Some(true)),
    ("a*b*c", "axbycb", Some(false)),
    ("*a*", "bab", Some(true)),
    ("*a*", "bbb", Some(false)),
    ("*/b", "a/b", Some(true)),
    ("*b", "a/b", Some(false)),
    ("?", "a", Some(true)),
    ("?", "", Some(false)),
    ("?", "/", Some(false)),
    ("?", "é", Some(true)),
    ("??", "é", Some(false)),
    ("*?", "", Some(false)),
    ("*?", "a", Some(true)),
    ("[a-c]", "b", Some(true)),
    ("[a-c]", "d", Some(false)),
    ("[^a-c]", "d", Some(true)),
    ("[^a-c]", "b", Some(false)),
    ("[^a]", "é", Some(true)),
    ("[!a]", "!", Some(true)),
    ("[!a]", "b", Some(false)),
    ("[é]", "é", Some(true)),
    ("[^é]", "é", Some(false)),
    ("[a-cx-z]", "y", Some(true)),
    ("[c-a]", "b", Some(false)),
    ("[*]", "*", Some(true)),
    ("[a-c]*", "bzz", Some(true)),
    ("*[ab]", "xxb", Some(true)),
    ("[\\]]", "]", Some(true)),
    ("[\\-]", "-", Some(true)),
    ("\\*", "*", Some(true)),
    ("\\*", "a", Some(false)),
    ("\\a", "a", Some(true)),
    ("]", "]", Some(true)),
    ("-^", "-^", Some(true)),
    // malformed patterns
    ("[]a]", "]", None),
    ("[]a]", "a", None),
    ("[a-]", "a", None),
    ("[-a]", "a", None),
    ("[", "a", None),
    ("[", "", None),
    ("[a", "a", None),
    ("[^", "a", None),
    ("[a-", "a", None),
    ("\\", "a", None),
    ("a\\", "a", None),
    ("*[", "a", None),
    ("a*[", "abc", None),
    // a malformed chunk is found even after its own mismatch...
    ("a[", "b", None),
    ("[x]b[", "a", None),
    // ...but a chunk after a failed one is never read (unlike path.Match)
    ("a*[", "b", Some(false)),
    ("x*[a-", "y", Some(false)),
];

#[test]
fn glob_table() {
    for &(pattern, name, want) in GLOBS {
        let want = want.ok_or(BadPattern);
        assert_eq!(
            glob_match(pattern, name),
            want,
            "Match({pattern:?}, {name:?})"
        );
        let compiled = Glob::compile(pattern.as_bytes()).matches(name.as_bytes());
        assert_eq!(compiled, want, "compiled {pattern:?} on {name:?}");
    }
}

#[test]
fn bad_pattern_displays_like_go() {
    assert_eq!(BadPattern.to_string(), "syntax error in pattern");
}

#[test]
fn glob_bombs_stay_polynomial() {
    // No timing assertions: an exponential or recursive matcher would hang or overflow here.
    let a = "a".repeat(10_000);
    let b = "b".repeat(10_000);
    let stars = "*".repeat(10_000);
    let star_a = "*a".repeat(5_000);
    let late_mismatch = format!("*{}b*", "a".repeat(4_999));
    let long_tail = format!("*{}", "a".repeat(5_000));
    let keys = [
        &stars,
        &star_a,
        &late_mismatch,
        &long_tail,
        &format!("{}.io", "*".repeat(10_000)),
    ];
    let keyring = Keyring::new(keys.iter().enumerate().map(|(i, k)| (i, [k.as_str()])));
    assert_eq!(keyring.lookup(&a), [&3, &1, &0]);
    assert_eq!(keyring.lookup(&b), [&0]);
    assert_eq!(keyring.lookup(&format!("{a}.io")), [&4]);
    assert_eq!(keyring.lookup(&format!("{}é", a)), [&0]);

    assert_eq!(glob_match(&stars, &a), Ok(true));
    assert_eq!(glob_match(&star_a, &a), Ok(true));
    assert_eq!(glob_match(&star_a, &b), Ok(false));
    let naive_bomb = format!("*{}b*", "a".repeat(999));
    assert_eq!(glob_match(&naive_bomb, &"a".repeat(2_000)), Ok(false));
    let many_labels = "a.".repeat(10_000);
    assert_eq!(match_key(&many_labels, &many_labels), KeyMatch::Matched);
}

// ---------------------------------------------------------------------------------------------
// isDefaultRegistryMatch

#[test]
fn default_registry_table() {
    let cases = [
        // keyring_test.go TestIsDefaultRegistryMatch
        ("foo/bar", true),
        ("docker.io/foo/bar", true),
        ("index.docker.io/foo/bar", true),
        ("foo", true),
        ("", false),
        ("registry.tld/foo/bar", false),
        ("registry:5000/foo/bar", false),
        ("myhostdocker.io/foo/bar", false),
        // more
        ("/foo", false),
        ("localhost/foo", true),
        ("localhost:5000/foo", false),
        ("DOCKER.IO/x", false),
        ("registry-1.docker.io/x", false),
        ("docker.io", true),
        ("reg.io", true),
        ("foo:bar", true),
        ("a/b/c", true),
        ("foo bar", true),
    ];
    for (lookup, want) in cases {
        assert_eq!(is_default_registry_match(lookup), want, "{lookup:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// keyring_test.go

#[test]
fn kubelet_urls_match() {
    // TestURLsMatch
    let cases = [
        ("*.kubernetes.io", "prefix.kubernetes.io", true),
        ("prefix.*.io", "prefix.kubernetes.io", true),
        ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
        ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
        ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true),
        ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true),
        (
            "*.kubernetes.io:1111/blah",
            "prefix.kubernetes.io:1111/blah",
            true,
        ),
        (
            "prefix.*.io:1111/foo",
            "prefix.kubernetes.io:1111/foo/bar",
            true,
        ),
        ("*.kubernetes.io", "kubernetes.io", false),
        ("*.*.kubernetes.io", "prefix.kubernetes.io", false),
        ("*.*.kubernetes.io", "kubernetes.io", false),
        ("*kubernetes.io", "a.kubernetes.io", false),
        ("*kubernetes.io", "kubernetes.io", true),
        ("*.*.*.kubernetes.io", "a.b.c.kubernetes.io", true),
        ("kubernetes.io", "kubernetes.com", false),
        ("k*.io", "quay.io", false),
        (
            "*.kubernetes.io:1234/blah",
            "prefix.kubernetes.io:1111/blah",
            false,
        ),
        (
            "prefix.*.io/foo",
            "prefix.kubernetes.io:1111/foo/bar",
            false,
        ),
    ];
    for (glob, target, want) in cases {
        assert_eq!(
            match_key(glob, target) == KeyMatch::Matched,
            want,
            "{glob} vs {target}"
        );
    }
}

#[test]
fn kubelet_keyring_for_glob() {
    // TestDockerKeyringForGlob: the auths key matches target + "/foo/bar".
    let cases = [
        ("https://hello.kubernetes.io", "hello.kubernetes.io"),
        ("https://*.docker.io", "prefix.docker.io"),
        ("https://prefix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.*", "prefix.docker.io"),
        ("https://*.docker.io/path", "prefix.docker.io/path"),
        ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
        ("https://prefix.docker.*/path", "prefix.docker.io/path"),
        ("https://*.docker.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
        (
            "https://*.docker.io/path:1111",
            "prefix.docker.io/path:1111",
        ),
        ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
        ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
        (
            "https://prefix.docker.*/path:1111",
            "prefix.docker.io/path:1111",
        ),
        ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
        ("*.docker.io:1111", "prefix.docker.io:1111/path"),
    ];
    for (key, target) in cases {
        let keyring = Keyring::new([("creds", [key])]);
        assert_eq!(
            keyring.lookup(&format!("{target}/foo/bar")),
            [&"creds"],
            "{key}"
        );
    }
}

#[test]
fn kubelet_keyring_miss() {
    // TestKeyringMiss: the auths key does not match lookup + "/foo/bar".
    let cases = [
        ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
        ("https://*.docker.com", "prefix.docker.io"),
        ("https://suffix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.c*", "prefix.docker.io"),
        (
            "https://prefix.*.io/path:1111",
            "prefix.docker.io/path/subpath:1111",
        ),
        ("suffix.*.io", "prefix.docker.io"),
    ];
    for (key, lookup) in cases {
        let keyring = Keyring::new([("creds", [key])]);
        assert!(
            keyring.lookup(&format!("{lookup}/foo/bar")).is_empty(),
            "{key}"
        );
    }
}

#[test]
fn kubelet_docker_hub_credentials() {
    // TestKeyringMissWithDockerHubCredentials and the TestKeyringHitWith*DockerHub tests,
    // with the key https://index.docker.io/v1/.
    let keyring = Keyring::new([("hub", ["https://index.docker.io/v1/"])]);
    assert!(keyring.lookup("world.mesos.org/foo/bar").is_empty());
    assert_eq!(keyring.lookup("google/docker-registry"), [&"hub"]);
    assert_eq!(keyring.lookup("jenkins"), [&"hub"]);
    assert_eq!(
        keyring.lookup("index.docker.io/v1//google/docker-registry"),
        [&"hub"]
    );
}

#[test]
fn kubelet_docker_keyring_lookup() {
    // TestDockerKeyringLookup
    let keyring = Keyring::new([
        ("grace", ["bar.example.com/pong"]),
        ("ada", ["bar.example.com"]),
    ]);
    let cases: [(&str, &[&str]); 7] = [
        ("bar.example.com", &["ada"]),
        ("bar.example.com/pong", &["grace", "ada"]),
        ("bar.example.com/ping", &["ada"]),
        ("bar.example.com/pongz", &["grace", "ada"]),
        ("bar.example.com/pong/pang", &["grace", "ada"]),
        ("example.com", &[]),
        ("foo.example.com", &[]),
    ];
    for (image, want) in cases {
        let got: Vec<&str> = keyring.lookup(image).into_iter().copied().collect();
        assert_eq!(got, want, "{image}");
    }
}

#[test]
fn kubelet_issue_3797() {
    // TestIssue3797: a key with scheme and /v1/ matches images on its host.
    let keyring = Keyring::new([("rex", ["https://quay.io/v1/"])]);
    for image in ["quay.io", "quay.io/foo", "quay.io/foo/bar"] {
        assert_eq!(keyring.lookup(image), [&"rex"], "{image}");
    }
}

// ---------------------------------------------------------------------------------------------
// Keyring order and owners

#[test]
fn keys_in_reverse_byte_order() {
    let keyring = Keyring::new([
        ("a", vec!["quay.io", "quay.io/coreos", "b.io", "Z.io"]),
        (
            "b",
            vec!["quay.io/coreos/etcd", "quay.io:5000", "*.io", "a.io"],
        ),
    ]);
    let keys: Vec<&str> = keyring.index_keys().collect();
    assert_eq!(
        keys,
        [
            "quay.io:5000",
            "quay.io/coreos/etcd",
            "quay.io/coreos",
            "quay.io",
            "b.io",
            "a.io",
            "Z.io",
            "*.io",
        ]
    );
}

#[test]
fn nested_paths_most_specific_first() {
    let keyring = Keyring::new([
        ("host", ["quay.io"]),
        ("org", ["quay.io/coreos"]),
        ("repo", ["quay.io/coreos/etcd"]),
    ]);
    assert_eq!(
        keyring.lookup("quay.io/coreos/etcd"),
        [&"repo", &"org", &"host"]
    );
    assert_eq!(keyring.lookup("quay.io/coreos/flannel"), [&"org", &"host"]);
    assert_eq!(keyring.lookup("quay.io/other"), [&"host"]);
}

#[test]
fn owners_of_one_key_in_insertion_order() {
    let keyring = Keyring::new([("first", ["quay.io"]), ("second", ["quay.io/"])]);
    assert_eq!(keyring.lookup("quay.io/x"), [&"first", &"second"]);
    let keyring = Keyring::new([("second", ["quay.io"]), ("first", ["quay.io"])]);
    assert_eq!(keyring.lookup("quay.io/x"), [&"second", &"first"]);
}

#[test]
fn owners_deduplicated_first_occurrence_kept() {
    let keyring = Keyring::new([
        ("a", vec!["quay.io/foo", "quay.io"]),
        ("b", vec!["quay.io", "https://quay.io", "quay.io/v2/"]),
    ]);
    assert_eq!(keyring.lookup("quay.io/foo/x"), [&"a", &"b"]);
    let keyring = Keyring::new([
        ("b", vec!["quay.io"]),
        ("a", vec!["quay.io/foo", "quay.io"]),
    ]);
    assert_eq!(keyring.lookup("quay.io/foo/x"), [&"a", &"b"]);
}

#[test]
fn repeated_owner_counts_once_at_first_position() {
    let keyring = Keyring::new([
        ("a", vec!["x.io"]),
        ("b", vec!["*.io"]),
        ("a", vec!["y.io"]),
    ]);
    assert_eq!(keyring.lookup("y.io/x"), [&"a", &"b"]);
    assert_eq!(keyring.explain("y.io/x").keys[0].owners, [&"a"]);
}

#[test]
fn many_owners_of_one_key_each_once_in_order() {
    // Thousands of secrets for one registry, one namespace: every owner once, in order, also
    // when an owner lists the key twice or comes back later with it.
    let mut owners: Vec<(usize, Vec<&str>)> = (0..3_000)
        .map(|i| match i % 3 {
            0 => (i, vec!["reg.io"]),
            1 => (i, vec!["reg.io", "https://reg.io/v2/"]),
            _ => (i, vec!["other.io", "reg.io"]),
        })
        .collect();
    owners.push((1_500, vec!["reg.io", "new.io"]));
    owners.push((7, vec!["new.io"]));
    let keyring = Keyring::new(owners);
    let found: Vec<usize> = keyring.lookup("reg.io/app").into_iter().copied().collect();
    assert_eq!(found, (0..3_000).collect::<Vec<_>>());
    // A key's owners in the order the key was given: the returning owner first.
    assert_eq!(keyring.lookup("new.io/app"), [&1_500, &7]);
    let other: Vec<usize> = keyring
        .lookup("other.io/app")
        .into_iter()
        .copied()
        .collect();
    assert_eq!(other, (0..3_000).filter(|i| i % 3 == 2).collect::<Vec<_>>());
}

#[test]
fn keys_stored_apart_from_their_parse() {
    // `%FF` leaves a key that is not UTF-8; `%3F` leaves a `?` that cuts the key's path when
    // the key is parsed again; `*` is a glob label.
    let keyring = Keyring::new([
        ("a", ["reg.io/%FF"]),
        ("b", ["reg.io/x%3Fy"]),
        ("c", ["*.reg.io:5000/p"]),
    ]);
    assert_eq!(
        keyring.index_keys().collect::<Vec<_>>(),
        ["reg.io/\u{FFFD}", "reg.io/x?y", "*.reg.io:5000/p"]
    );
    assert_eq!(keyring.lookup("reg.io/x/z"), [&"b"]);
    assert_eq!(keyring.lookup("a.reg.io:5000/p/q"), [&"c"]);
    let explanation = keyring.explain("reg.io/y");
    assert_eq!(
        explanation.keys[0].verdict,
        KeyMatch::PathPrefix {
            key_path: "/\u{FFFD}".to_owned()
        }
    );
    assert_eq!(
        explanation.keys[1].verdict,
        KeyMatch::PathPrefix {
            key_path: "/x".to_owned()
        }
    );
}

#[test]
fn many_owners() {
    let owners: Vec<(usize, [String; 1])> = (0..300)
        .map(|i| {
            (
                i,
                [if i % 2 == 0 {
                    "quay.io".into()
                } else {
                    format!("r{i}.io")
                }],
            )
        })
        .collect();
    let keyring = Keyring::new(owners);
    let found = keyring.lookup("quay.io/x");
    assert_eq!(found.len(), 150);
    assert!(
        found
            .iter()
            .zip((0..).step_by(2))
            .all(|(&&got, want)| got == want)
    );
    assert_eq!(keyring.lookup("r299.io"), [&299]);
}

#[test]
fn empty_keyring() {
    let keyring: Keyring<&str> = Keyring::new(Vec::<(&str, Vec<&str>)>::new());
    assert!(keyring.is_empty());
    assert!(keyring.lookup("nginx").is_empty());
    let explanation = keyring.explain("nginx");
    assert!(explanation.keys.is_empty());
    assert_eq!(explanation.docker_hub, DockerHubFallback::NoDockerHubKey);
}

// ---------------------------------------------------------------------------------------------
// Docker Hub fallback

#[test]
fn docker_hub_fallback() {
    let hub = ("hub", vec!["https://index.docker.io/v1/"]);
    let keyring = Keyring::new([hub.clone()]);
    for lookup in [
        "docker.io/library/nginx",
        "nginx",
        "library/nginx",
        "index.docker.io/x",
    ] {
        assert_eq!(keyring.lookup(lookup), [&"hub"], "{lookup}");
    }
    assert!(keyring.lookup("quay.io/x").is_empty());
    assert!(keyring.lookup("").is_empty());
    // Unparseable but Docker Hub-like lookups still get the fallback, as in the kubelet.
    assert_eq!(keyring.lookup("foo bar"), [&"hub"]);

    // A matching key of any owner suppresses the fallback.
    let keyring = Keyring::new([("io", vec!["docker.io"]), hub.clone()]);
    assert_eq!(keyring.lookup("docker.io/library/nginx"), [&"io"]);
    let keyring = Keyring::new([hub.clone(), ("wild", vec!["*.io"])]);
    assert_eq!(keyring.lookup("docker.io/library/nginx"), [&"wild"]);

    // Keys that never match Docker Hub images.
    let keyring = Keyring::new([
        ("r1", vec!["registry-1.docker.io"]),
        ("sub", vec!["*.docker.io"]),
        hub.clone(),
    ]);
    assert_eq!(keyring.lookup("docker.io/library/nginx"), [&"hub"]);
    let keyring = Keyring::new([("r1", ["registry-1.docker.io"]), ("sub", ["*.docker.io"])]);
    assert!(keyring.lookup("docker.io/library/nginx").is_empty());

    // Only the exact index key index.docker.io serves as fallback.
    let keyring = Keyring::new([
        ("port", ["index.docker.io:443"]),
        ("path", ["index.docker.io/x"]),
    ]);
    assert!(keyring.lookup("nginx").is_empty());

    // A path key on index.docker.io matches before the host key.
    let keyring = Keyring::new([("lib", vec!["index.docker.io/library"]), hub]);
    assert_eq!(
        keyring.lookup("index.docker.io/library/nginx"),
        [&"lib", &"hub"]
    );
}

#[test]
fn explain_reports_every_key_and_the_fallback() {
    let keyring = Keyring::new([
        ("hub", vec!["https://index.docker.io/v1/"]),
        ("quay", vec!["quay.io:443", "*.quay.io"]),
    ]);
    let explanation = keyring.explain("docker.io/library/nginx");
    assert_eq!(
        explanation,
        Explanation {
            keys: vec![
                KeyVerdict {
                    index_key: "quay.io:443",
                    owners: vec![&"quay"],
                    verdict: port("443", ""),
                },
                KeyVerdict {
                    index_key: "index.docker.io",
                    owners: vec![&"hub"],
                    verdict: count(3, 2),
                },
                KeyVerdict {
                    index_key: "*.quay.io",
                    owners: vec![&"quay"],
                    verdict: count(3, 2),
                },
            ],
            docker_hub: DockerHubFallback::Applied,
            owners: vec![&"hub"],
        }
    );
    assert!(explanation.fallback_applied());

    let explanation = keyring.explain("a.quay.io/x");
    assert_eq!(explanation.docker_hub, DockerHubFallback::NotNeeded);
    assert_eq!(explanation.keys[2].verdict, matched());
    assert_eq!(explanation.owners, [&"quay"]);
    assert!(!explanation.fallback_applied());

    assert_eq!(
        keyring.explain("reg.io/x").docker_hub,
        DockerHubFallback::NotDockerHub
    );
    let explanation = keyring.explain("reg io/x");
    assert!(explanation.keys.iter().all(|k| k.verdict == unparseable()));
    let no_hub = Keyring::new([("quay", ["quay.io"])]);
    assert_eq!(
        no_hub.explain("nginx").docker_hub,
        DockerHubFallback::NoDockerHubKey
    );
}

// ---------------------------------------------------------------------------------------------
// Rows printed by the parity run against the kubelet's Go code (tests/parity, `make parity`):
// cases where we differed from Go until fixed, and quirks confirmed against it. Index keys go
// into NORMALIZE above.

/// (key, lookup string, what `URLsMatchStr` says: Some(matched), or None for an error)
const URLS_MATCH_GO: &[(&str, &str, Option<bool>)] = &[
    ("reg?.io", "reg/x", Some(true)),
    ("[a-z].io", "a.io", None),
    ("[::1]", "1/x", Some(true)),
    ("quay.io/foo", "quay.io/foobar/x", Some(true)),
    ("*.io", "[::1]/x", Some(false)),
];

#[test]
fn urls_match_go_table() {
    for &(key, lookup, want) in URLS_MATCH_GO {
        let got = match match_key(key, lookup) {
            KeyMatch::Matched => Some(true),
            KeyMatch::Unparseable | KeyMatch::BadGlob { .. } => None,
            _ => Some(false),
        };
        assert_eq!(got, want, "match_key({key:?}, {lookup:?})");
    }
}

/// (owners with their auths keys, in order; lookup string; the owners `Lookup` returns, each
/// once)
type LookupRow = (
    &'static [(&'static str, &'static [&'static str])],
    &'static str,
    &'static [&'static str],
);

const LOOKUP_GO: &[LookupRow] = &[
    // Found by breaking the port comparison on purpose: a key without a port never matches
    // an image with one.
    (&[("a", &["*.io"])], "quay.io:5000/library", &[]),
    (
        &[
            ("a", &["https://index.docker.io/v1/"]),
            ("b", &["docker.io"]),
        ],
        "docker.io/library/nginx",
        &["b"],
    ),
    (
        &[
            ("a", &["https://index.docker.io/v1/"]),
            ("b", &["docker.io"]),
        ],
        "nginx",
        &["a"],
    ),
    (
        &[
            ("b", &["quay.io"]),
            ("a", &["quay.io/foo", "quay.io"]),
            ("b", &["*.io"]),
        ],
        "quay.io/foo/x",
        &["a", "b"],
    ),
];

#[test]
fn lookup_go_table() {
    for &(owners, lookup, want) in LOOKUP_GO {
        let keyring = Keyring::new(owners.iter().copied());
        let got: Vec<&str> = keyring.lookup(lookup).into_iter().copied().collect();
        assert_eq!(got, want, "{owners:?} looking up {lookup:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Pieces that exercise every branch of the URL parser and of the glob matcher.
const PIECES: &[&str] = &[
    "a",
    "b",
    "ab",
    "A",
    "0",
    "1",
    "443",
    ".",
    ".",
    ":",
    ":",
    "/",
    "/",
    "-",
    "_",
    "~",
    "*",
    "*",
    "?",
    "[",
    "]",
    "^",
    "\\",
    "!",
    "%",
    "%25",
    "%2F",
    "%41",
    "%ff",
    "%e9",
    "%zz",
    "%3",
    "@",
    "#",
    " ",
    "\t",
    "\u{7f}",
    "é",
    "☃",
    "+",
    ";",
    "{",
    "[::1]",
    "[fe80::1%25en0]",
    "[::ffff:1.2.3.4]",
    "[1.2.3.4]",
    "docker.io",
    "index.docker.io",
    "https://",
    "http://",
    "/v1/",
    "/v2/",
    ":5000",
    "[a-c]",
    "[^a]",
    "[]a]",
];
const KEY_LABELS: &[&str] = &[
    "a", "b", "ab", "*", "a*", "*b", "**", "", "é", "x", "docker", "io", "index", "A", "-", "]",
];
const IMAGE_LABELS: &[&str] = &[
    "a", "b", "ab", "abb", "c", "", "x", "é", "A", "]", "-", "aa", "ba", "docker", "io", "%e9",
];
const PORTS: &[&str] = &["", "", "", ":", ":1", ":01", ":443", ":x", ":1:2"];
const PATHS: &[&str] = &[
    "", "", "/", "/x", "/x/", "/xy", "/x/y", "/v1/", "/v2/x", "/%2F", "/%zz", "?q", "#f", "/a%20b",
];

fn pieces(from: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(from), 0..=max).prop_map(|p| p.concat())
}

/// host[:port][path], built from pieces that often match each other.
fn structured(labels: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(labels), 1..4),
        prop::sample::select(PORTS),
        prop::sample::select(PATHS),
        prop::sample::select(PATHS),
    )
        .prop_map(|(labels, port, p1, p2)| format!("{}{port}{p1}{p2}", labels.join(".")))
}

fn key_string() -> impl Strategy<Value = String> {
    prop_oneof![
        pieces(PIECES, 8),
        structured(KEY_LABELS),
        structured(KEY_LABELS).prop_map(|k| format!("https://{k}")),
        Just("https://index.docker.io/v1/".to_string()),
    ]
}

fn lookup_string() -> impl Strategy<Value = String> {
    prop_oneof![
        pieces(PIECES, 8),
        structured(IMAGE_LABELS),
        structured(IMAGE_LABELS),
        prop::sample::select(&["nginx", "docker.io/library/nginx", "library/x", "a/b"][..])
            .prop_map(String::from),
    ]
}

/// The kubelet's Add and Lookup, written out with the straightforward `urls_match`.
fn naive_lookup(secrets: &[Vec<String>], lookup: &str) -> Vec<usize> {
    let mut creds: std::collections::BTreeMap<Vec<u8>, Vec<usize>> = Default::default();
    for (owner, keys) in secrets.iter().enumerate() {
        for raw in keys {
            if let Some(key) = normalize(raw.as_bytes()) {
                creds.entry(key).or_default().push(owner);
            }
        }
    }
    let mut found: Vec<usize> = creds
        .iter()
        .rev()
        .filter(|(key, _)| urls_match(key, lookup.as_bytes()) == KeyMatch::Matched)
        .flat_map(|(_, owners)| owners.iter().copied())
        .collect();
    if found.is_empty() && is_default_registry_match(lookup) {
        found = creds.get(DOCKER_HUB_KEY).cloned().unwrap_or_default();
    }
    let mut seen = Vec::new();
    found.retain(|o| {
        let new = !seen.contains(o);
        seen.push(*o);
        new
    });
    found
}

const GLOB_PIECES: &[&str] = &[
    "a", "b", "?", "*", "[ab]", "[^a]", "\\b", "[a-b]", "é", "[^é]", "/", "[", "]", "\\", "-",
    "[a-", "[]", "[é-ë]",
];
const NAME_PIECES: &[&str] = &[
    "a", "b", "a", "b", "ab", "é", "ë", "/", "\u{FFFD}", "-", "]",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn never_panics(raw in ".*", other in ".*", key in key_string(), lookup in lookup_string()) {
        let _ = index_key(&raw);
        let _ = match_key(&raw, &other);
        let _ = match_key(&key, &lookup);
        let _ = glob_match(&raw, &other);
        let _ = is_default_registry_match(&raw);
        let keyring = Keyring::new([(0, [raw.as_str(), key.as_str()]), (1, [other.as_str(), ""])]);
        let _ = keyring.lookup(&other);
        let _ = keyring.lookup(&lookup);
        let _ = keyring.explain(&raw);
    }

    #[test]
    fn preparsed_equals_naive(keys in prop::collection::vec(key_string(), 1..6), lookup in lookup_string()) {
        let keyring = Keyring::new(keys.iter().enumerate().map(|(i, k)| (i, [k.as_str()])));
        let explanation = keyring.explain(&lookup);
        prop_assert_eq!(explanation.keys.len(), keyring.keys.len());
        for (key, verdict) in keyring.keys.iter().zip(&explanation.keys) {
            prop_assert_eq!(&verdict.verdict, &urls_match(&key.key, lookup.as_bytes()));
        }
    }

    #[test]
    fn lookup_equals_naive_keyring(
        secrets in prop::collection::vec(prop::collection::vec(key_string(), 0..4), 0..4),
        lookup in lookup_string(),
    ) {
        let keyring = Keyring::new(secrets.iter().cloned().enumerate());
        let got: Vec<usize> = keyring.lookup(&lookup).into_iter().copied().collect();
        prop_assert_eq!(&got, &naive_lookup(&secrets, &lookup));
        let explained: Vec<usize> = keyring.explain(&lookup).owners.into_iter().copied().collect();
        prop_assert_eq!(got, explained);
    }

    #[test]
    fn compiled_glob_equals_go_match(
        pattern in pieces(GLOB_PIECES, 40),
        name in pieces(NAME_PIECES, 60),
        ascii_name in "[ab]{0,80}",
    ) {
        let glob = Glob::compile(pattern.as_bytes());
        prop_assert_eq!(glob.matches(name.as_bytes()), go_match(pattern.as_bytes(), name.as_bytes()));
        prop_assert_eq!(
            glob.matches(ascii_name.as_bytes()),
            go_match(pattern.as_bytes(), ascii_name.as_bytes())
        );
    }

    #[test]
    fn long_chunks_equal_go_match(
        chunks in prop::collection::vec(pieces(&["a", "b", "?", "[ab]", "[^b]", "\\a"], 40), 1..4),
        lead in any::<bool>(),
        trail in any::<bool>(),
        filler in prop::collection::vec("[ab]{0,3}", 0..4),
        noise in "[ab]{0,30}",
    ) {
        // Long chunks between stars take the Shift-And path; names are built to match often.
        let pattern = format!("{}{}{}", if lead { "*" } else { "" }, chunks.join("*"), if trail { "*" } else { "" });
        let mut name = String::new();
        for (i, chunk) in chunks.iter().enumerate() {
            name.push_str(filler.get(i).map_or("", String::as_str));
            name.push_str(&chunk.replace(['?', '\\'], "").replace("[ab]", "b").replace("[^b]", "a"));
        }
        name.push_str(&noise);
        let glob = Glob::compile(pattern.as_bytes());
        prop_assert_eq!(glob.matches(name.as_bytes()), go_match(pattern.as_bytes(), name.as_bytes()));
    }
}

#[test]
fn fold_host_case_lowercases_the_host_only() {
    for (text, folded) in [
        ("registry.example.com", "registry.example.com"),
        (
            "Registry.Example.COM:5000/Team/app",
            "registry.example.com:5000/Team/app",
        ),
        ("https://Quay.IO/v1/", "https://quay.io/v1/"),
        ("http://Quay.io", "http://quay.io"),
        ("docker.io/library/nginx", "docker.io/library/nginx"),
        ("", ""),
        ("Ünïcode.example/x", "Ünïcode.example/x"),
    ] {
        assert_eq!(fold_host_case(text), folded, "{text}");
    }
    assert!(matches!(fold_host_case("quay.io/A"), Cow::Borrowed(_)));
    // What the kubelet does with case: no match either way.
    assert_eq!(
        match_key("Registry.example.com", "registry.example.com/app"),
        KeyMatch::LabelMismatch { label: 0 }
    );
    assert_eq!(
        match_key("registry.example.com", "Registry.example.com/app"),
        KeyMatch::LabelMismatch { label: 0 }
    );
    assert_eq!(
        match_key(
            &fold_host_case("Registry.example.com"),
            &fold_host_case("registry.Example.com/app")
        ),
        KeyMatch::Matched
    );
}
