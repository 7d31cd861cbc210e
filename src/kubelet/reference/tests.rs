//! Tests for the image reference parser. Cases are taken from
//! distribution/reference v0.6.0 (`reference_test.go`, `normalize_test.go`,
//! `regexp_test.go`) and go-digest v1.0.0, plus the quirks documented on the
//! module.

use super::*;
use proptest::prelude::*;

const SHA256_F: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const SHA512_F: &str = "sha512:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const BE178: &str = "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";
const DBCC: &str = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
const E6693: &str = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
const HEX64: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

/// Expected result of a successful `ImageRef::parse`.
struct Want<'a> {
    input: &'a str,
    domain: &'a str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

const fn w<'a>(
    input: &'a str,
    domain: &'a str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
) -> Want<'a> {
    Want {
        input,
        domain,
        path,
        tag,
        digest,
    }
}

fn expected_name(domain: &str, path: &str) -> String {
    if domain.is_empty() {
        path.to_owned()
    } else {
        format!("{domain}/{path}")
    }
}

fn expected_string(domain: &str, path: &str, tag: Option<&str>, digest: Option<&str>) -> String {
    let mut s = expected_name(domain, path);
    if let Some(tag) = tag {
        s.push(':');
        s.push_str(tag);
    }
    if let Some(digest) = digest {
        s.push('@');
        s.push_str(digest);
    }
    s
}

fn check_valid(want: &Want<'_>) {
    let r = match ImageRef::parse(want.input) {
        Ok(r) => r,
        Err(e) => panic!("{:?} should parse, got error: {e}", want.input),
    };
    assert_eq!(r.domain(), want.domain, "domain of {:?}", want.input);
    assert_eq!(r.path(), want.path, "path of {:?}", want.input);
    assert_eq!(r.tag(), want.tag, "tag of {:?}", want.input);
    assert_eq!(r.digest(), want.digest, "digest of {:?}", want.input);
    assert_eq!(
        r.lookup_key(),
        expected_name(want.domain, want.path),
        "lookup key of {:?}",
        want.input
    );
    assert_eq!(
        r.to_string(),
        expected_string(want.domain, want.path, want.tag, want.digest),
        "string of {:?}",
        want.input
    );
    let again = ImageRef::parse(&r.to_string()).expect("normalized string parses");
    assert_eq!(again, r, "round trip of {:?}", want.input);
}

fn check_invalid(input: &str) {
    if let Ok(r) = ImageRef::parse(input) {
        panic!("{input:?} should be rejected, parsed as {r:?}");
    }
}

fn valid_all(cases: &[Want<'_>]) {
    for case in cases {
        check_valid(case);
    }
}

fn invalid_all(cases: &[&str]) {
    for case in cases {
        check_invalid(case);
    }
}

fn with_digest(prefix: &str, digest: &str) -> String {
    format!("{prefix}@{digest}")
}

// ---------------------------------------------------------------------------
// reference_test.go: TestReferenceParse, through ParseNormalizedNamed.
// ---------------------------------------------------------------------------

#[test]
fn reference_parse_table_normalized() {
    let a127 = format!("{}a", "a/".repeat(127));
    let a127_in = format!("{a127}:tag-puts-this-over-max");
    let a255 = "a".repeat(255);
    let ex255 = format!("example.com/{a255}:tag");
    let t1 = with_digest("test:5000/repo", SHA256_F);
    let t2 = with_digest("test:5000/repo:tag", SHA256_F);
    let x7 = with_digest("xn--7o8h.com/myimage:xn--7o8h.com", SHA512_F);
    let v6a = with_digest("[2001:db8::1]:5000/repo", SHA256_F);
    let v6b = with_digest("[2001:db8::1]:5000/repo:tag", SHA256_F);
    valid_all(&[
        w("test_com", "docker.io", "library/test_com", None, None),
        w(
            "test.com:tag",
            "docker.io",
            "library/test.com",
            Some("tag"),
            None,
        ),
        w(
            "test.com:5000",
            "docker.io",
            "library/test.com",
            Some("5000"),
            None,
        ),
        w("test.com/repo:tag", "test.com", "repo", Some("tag"), None),
        w("test:5000/repo", "test:5000", "repo", None, None),
        w("test:5000/repo:tag", "test:5000", "repo", Some("tag"), None),
        w(&t1, "test:5000", "repo", None, Some(SHA256_F)),
        w(&t2, "test:5000", "repo", Some("tag"), Some(SHA256_F)),
        w(
            "lowercase:Uppercase",
            "docker.io",
            "library/lowercase",
            Some("Uppercase"),
            None,
        ),
        w(
            &a127_in,
            "docker.io",
            &a127,
            Some("tag-puts-this-over-max"),
            None,
        ),
        w(&ex255, "example.com", &a255, Some("tag"), None),
        w(
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            None,
            None,
        ),
        w(
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("some-long-tag"),
            None,
        ),
        w(
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            Some("test.example.com"),
            None,
        ),
        w(
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com",
            "myimage",
            Some("xn--n3h.com"),
            None,
        ),
        w(
            &x7,
            "xn--7o8h.com",
            "myimage",
            Some("xn--7o8h.com"),
            Some(SHA512_F),
        ),
        w(
            "foo_bar.com:8080",
            "docker.io",
            "library/foo_bar.com",
            Some("8080"),
            None,
        ),
        w(
            "foo/foo_bar.com:8080",
            "docker.io",
            "foo/foo_bar.com",
            Some("8080"),
            None,
        ),
        w(
            "192.168.1.1",
            "docker.io",
            "library/192.168.1.1",
            None,
            None,
        ),
        w(
            "192.168.1.1:tag",
            "docker.io",
            "library/192.168.1.1",
            Some("tag"),
            None,
        ),
        w(
            "192.168.1.1:5000",
            "docker.io",
            "library/192.168.1.1",
            Some("5000"),
            None,
        ),
        w("192.168.1.1/repo", "192.168.1.1", "repo", None, None),
        w(
            "192.168.1.1:5000/repo",
            "192.168.1.1:5000",
            "repo",
            None,
            None,
        ),
        w(
            "192.168.1.1:5000/repo:5050",
            "192.168.1.1:5000",
            "repo",
            Some("5050"),
            None,
        ),
        w("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None),
        w(
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            "[2001:db8:1:2:3:4:5:6]",
            "repo",
            Some("tag"),
            None,
        ),
        w(
            "[2001:db8::1]:5000/repo",
            "[2001:db8::1]:5000",
            "repo",
            None,
            None,
        ),
        w(
            "[2001:db8::1]:5000/repo:tag",
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            None,
        ),
        w(&v6a, "[2001:db8::1]:5000", "repo", None, Some(SHA256_F)),
        w(
            &v6b,
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            Some(SHA256_F),
        ),
        w(
            "[2001:db8::]:5000/repo",
            "[2001:db8::]:5000",
            "repo",
            None,
            None,
        ),
        w("[::1]:5000/repo", "[::1]:5000", "repo", None, None),
        // The FIXME case of reference_test.go: "Uppercase" is taken as a domain.
        w(
            "Uppercase/lowercase:tag",
            "Uppercase",
            "lowercase",
            Some("tag"),
            None,
        ),
    ]);
    let too_long_a = format!("{}a:tag", "a/".repeat(128));
    let too_long_domain = format!("domain/{}:tag", "a".repeat(256));
    let short_digest = "repo@sha256:ffffffffffffffffffffffffffffffffff";
    let bad_alg = format!("validname@invaliddigest:{}", "f".repeat(64));
    let at_only = format!("@{SHA256_F}");
    invalid_all(&[
        "",
        ":justtag",
        &at_only,
        short_digest,
        &bad_alg,
        "Uppercase:tag",
        "test:5000/Uppercase/lowercase:tag",
        &too_long_a,
        &too_long_domain,
        "aa/asdf$$^/aa",
        "[2001:db8::1]",
        "[2001:db8::1]:5000",
        "[2001:db8::1]:tag",
        "[fe80::1%eth0]:5000/repo",
        "[fe80::1%@invalidzone]:5000/repo",
    ]);
}

// ---------------------------------------------------------------------------
// reference_test.go: TestReferenceParse against the private port of `Parse`.
// ---------------------------------------------------------------------------

/// (input, domain, name, tag, digest) for `Parse` successes.
type GoOk<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

fn check_go_parse_ok(case: GoOk<'_>) {
    let (input, domain, name, tag, digest) = case;
    let p = go_parse(input).unwrap_or_else(|e| panic!("Parse({input:?}) failed: {e:?}"));
    assert_eq!(p.domain, domain, "domain of Parse({input:?})");
    assert_eq!(
        expected_name(p.domain, p.path),
        name,
        "name of Parse({input:?})"
    );
    assert_eq!(p.tag, tag, "tag of Parse({input:?})");
    assert_eq!(p.digest, digest, "digest of Parse({input:?})");
    // String() == input for every valid case of the Go table.
    assert_eq!(expected_string(p.domain, p.path, p.tag, p.digest), input);
}

#[test]
fn go_parse_table() {
    let a127 = format!("{}a", "a/".repeat(127));
    let a127_in = format!("{a127}:tag-puts-this-over-max");
    let a126 = format!("{}a", "a/".repeat(126));
    let ex = format!("example.com/{}", "a".repeat(255));
    let ex_in = format!("{ex}:tag");
    let a126_a = format!("{a126}/a");
    let t1 = with_digest("test:5000/repo", SHA256_F);
    let t2 = with_digest("test:5000/repo:tag", SHA256_F);
    let x7 = with_digest("xn--7o8h.com/myimage:xn--7o8h.com", SHA512_F);
    let v6a = with_digest("[2001:db8::1]:5000/repo", SHA256_F);
    let v6b = with_digest("[2001:db8::1]:5000/repo:tag", SHA256_F);
    let oks: Vec<GoOk<'_>> = vec![
        ("test_com", "", "test_com", None, None),
        ("test.com:tag", "", "test.com", Some("tag"), None),
        ("test.com:5000", "", "test.com", Some("5000"), None),
        (
            "test.com/repo:tag",
            "test.com",
            "test.com/repo",
            Some("tag"),
            None,
        ),
        ("test:5000/repo", "test:5000", "test:5000/repo", None, None),
        (
            "test:5000/repo:tag",
            "test:5000",
            "test:5000/repo",
            Some("tag"),
            None,
        ),
        (&t1, "test:5000", "test:5000/repo", None, Some(SHA256_F)),
        (
            &t2,
            "test:5000",
            "test:5000/repo",
            Some("tag"),
            Some(SHA256_F),
        ),
        (
            "lowercase:Uppercase",
            "",
            "lowercase",
            Some("Uppercase"),
            None,
        ),
        (&a127_in, "a", &a127, Some("tag-puts-this-over-max"), None),
        (&ex_in, "example.com", &ex, Some("tag"), None),
        (
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "sub-dom1.foo.com/bar/baz/quux",
            None,
            None,
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "b.gcr.io/test.example.com/my-app",
            Some("test.example.com"),
            None,
        ),
        (
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com",
            "xn--n3h.com/myimage",
            Some("xn--n3h.com"),
            None,
        ),
        (
            &x7,
            "xn--7o8h.com",
            "xn--7o8h.com/myimage",
            Some("xn--7o8h.com"),
            Some(SHA512_F),
        ),
        ("foo_bar.com:8080", "", "foo_bar.com", Some("8080"), None),
        (
            "foo/foo_bar.com:8080",
            "foo",
            "foo/foo_bar.com",
            Some("8080"),
            None,
        ),
        ("192.168.1.1", "", "192.168.1.1", None, None),
        ("192.168.1.1:tag", "", "192.168.1.1", Some("tag"), None),
        ("192.168.1.1:5000", "", "192.168.1.1", Some("5000"), None),
        (
            "192.168.1.1/repo",
            "192.168.1.1",
            "192.168.1.1/repo",
            None,
            None,
        ),
        (
            "192.168.1.1:5000/repo",
            "192.168.1.1:5000",
            "192.168.1.1:5000/repo",
            None,
            None,
        ),
        (
            "192.168.1.1:5000/repo:5050",
            "192.168.1.1:5000",
            "192.168.1.1:5000/repo",
            Some("5050"),
            None,
        ),
        (
            "[2001:db8::1]/repo",
            "[2001:db8::1]",
            "[2001:db8::1]/repo",
            None,
            None,
        ),
        (
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            "[2001:db8:1:2:3:4:5:6]",
            "[2001:db8:1:2:3:4:5:6]/repo",
            Some("tag"),
            None,
        ),
        (
            "[2001:db8::1]:5000/repo",
            "[2001:db8::1]:5000",
            "[2001:db8::1]:5000/repo",
            None,
            None,
        ),
        (
            &v6a,
            "[2001:db8::1]:5000",
            "[2001:db8::1]:5000/repo",
            None,
            Some(SHA256_F),
        ),
        (
            &v6b,
            "[2001:db8::1]:5000",
            "[2001:db8::1]:5000/repo",
            Some("tag"),
            Some(SHA256_F),
        ),
        (
            "[2001:db8::]:5000/repo",
            "[2001:db8::]:5000",
            "[2001:db8::]:5000/repo",
            None,
            None,
        ),
        (
            "[::1]:5000/repo",
            "[::1]:5000",
            "[::1]:5000/repo",
            None,
            None,
        ),
        // TestSerialization
        (
            "example.com:8000/named",
            "example.com:8000",
            "example.com:8000/named",
            None,
            None,
        ),
        (
            "example.com:8000/named:tagged",
            "example.com:8000",
            "example.com:8000/named",
            Some("tagged"),
            None,
        ),
        (
            "other.com/named@sha256:1234567890098765432112345667890098765432112345667890098765432112",
            "other.com",
            "other.com/named",
            None,
            Some("sha256:1234567890098765432112345667890098765432112345667890098765432112"),
        ),
        // The "a" segment matches the domain regexp.
        (&a126_a, "a", &a126_a, None, None),
    ];
    for case in oks {
        check_go_parse_ok(case);
    }

    let bad_alg = format!("validname@invaliddigest:{}", "f".repeat(64));
    let at_only = format!("@{SHA256_F}");
    let dom256 = format!("domain/{}:tag", "a".repeat(256));
    let errs: Vec<(&str, ParseFailure)> = vec![
        ("", ParseFailure::Empty),
        (":justtag", ParseFailure::InvalidFormat),
        (&at_only, ParseFailure::InvalidFormat),
        (
            "repo@sha256:ffffffffffffffffffffffffffffffffff",
            ParseFailure::InvalidDigest,
        ),
        (&bad_alg, ParseFailure::UnsupportedDigest),
        ("Uppercase:tag", ParseFailure::Uppercase),
        ("test:5000/Uppercase/lowercase:tag", ParseFailure::Uppercase),
        (&dom256, ParseFailure::TooLong(256)),
        ("aa/asdf$$^/aa", ParseFailure::InvalidFormat),
        ("[2001:db8::1]", ParseFailure::InvalidFormat),
        ("[2001:db8::1]:5000", ParseFailure::InvalidFormat),
        ("[2001:db8::1]:tag", ParseFailure::InvalidFormat),
        ("[fe80::1%eth0]:5000/repo", ParseFailure::InvalidFormat),
        (
            "[fe80::1%@invalidzone]:5000/repo",
            ParseFailure::InvalidFormat,
        ),
    ];
    for (input, want) in errs {
        assert_eq!(go_parse(input), Err(want), "Parse({input:?})");
    }
}

// ---------------------------------------------------------------------------
// regexp_test.go
// ---------------------------------------------------------------------------

#[test]
fn domain_regexp_table() {
    let cases: &[(&str, bool)] = &[
        ("test.com", true),
        ("test.com:10304", true),
        ("test.com:http", false),
        ("localhost", true),
        ("localhost:8080", true),
        ("a", true),
        ("a.b", true),
        ("ab.cd.com", true),
        ("a-b.com", true),
        ("-ab.com", false),
        ("ab-.com", false),
        ("ab.c-om", true),
        ("ab.-com", false),
        ("ab.com-", false),
        ("0101.com", true),
        ("001a.com", true),
        ("b.gbc.io:443", true),
        ("b.gbc.io", true),
        ("xn--n3h.com", true),
        ("Asdf.com", true),
        ("192.168.1.1:75050", true),
        ("192.168.1.1:750050", true),
        ("[fd00:1:2::3]:75050", true),
        ("[fd00:1:2::3]75050", false),
        ("[fd00:1:2::3]::75050", false),
        ("[fd00:1:2::3%eth0]:75050", false),
        ("[fd00123123123]:75050", true),
        ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", true),
        ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505", true),
        ("fd00:1:2::3:75050", false),
        // Extra edge cases.
        ("", false),
        ("[]", false),
        ("[::1]:", false),
        ("[::1]", true),
        ("[::1", false),
        ("::1]", false),
        ("[::1]]", false),
        ("[[::1]", false),
        ("[::g]", false),
        ("a..b", false),
        (".a", false),
        ("a.", false),
        ("a:", false),
        (":80", false),
        ("a:1:2", false),
        ("a_b.com", false),
        ("a--b.com", true),
        ("a.b:0", true),
        ("a b", false),
    ];
    for &(input, want) in cases {
        assert_eq!(
            is_domain_and_port(input),
            want,
            "domain regexp on {input:?}"
        );
    }
}

#[test]
fn full_name_regexp_table() {
    let a128 = format!("{}a", "a/".repeat(128));
    let a127 = format!("{}a", "a/".repeat(127));
    // (input, Some((domain, path)) or None)
    let cases: Vec<(&str, Option<(&str, &str)>)> = vec![
        ("", None),
        ("short", Some(("", "short"))),
        ("simple/name", Some(("simple", "name"))),
        ("library/ubuntu", Some(("library", "ubuntu"))),
        ("docker/stevvooe/app", Some(("docker", "stevvooe/app"))),
        (
            "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb",
            Some(("aa", "aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb")),
        ),
        ("aa/aa/bb/bb/bb", Some(("aa", "aa/bb/bb/bb"))),
        ("a/a/a/a", Some(("a", "a/a/a"))),
        ("a/a/a/a/", None),
        ("a//a/a", None),
        ("a", Some(("", "a"))),
        ("a/aa", Some(("a", "aa"))),
        ("a/aa/a", Some(("a", "aa/a"))),
        ("foo.com", Some(("", "foo.com"))),
        ("foo.com/", None),
        ("foo.com:8080/bar", Some(("foo.com:8080", "bar"))),
        ("foo.com:http/bar", None),
        ("foo.com/bar", Some(("foo.com", "bar"))),
        ("foo.com/bar/baz", Some(("foo.com", "bar/baz"))),
        ("localhost:8080/bar", Some(("localhost:8080", "bar"))),
        (
            "sub-dom1.foo.com/bar/baz/quux",
            Some(("sub-dom1.foo.com", "bar/baz/quux")),
        ),
        ("blog.foo.com/bar/baz", Some(("blog.foo.com", "bar/baz"))),
        ("a^a", None),
        ("aa/asdf$$^/aa", None),
        ("asdf$$^/aa", None),
        ("aa-a/a", Some(("aa-a", "a"))),
        (&a128, Some(("a", &a127))),
        ("a-/a/a/a", None),
        ("foo.com/a-/a/a", None),
        ("-foo/bar", None),
        ("foo/bar-", None),
        ("foo-/bar", None),
        ("foo/-bar", None),
        ("_foo/bar", None),
        ("foo_bar", Some(("", "foo_bar"))),
        ("foo_bar.com", Some(("", "foo_bar.com"))),
        ("foo_bar.com:8080", None),
        ("foo_bar.com:8080/app", None),
        ("foo.com/foo_bar", Some(("foo.com", "foo_bar"))),
        ("____/____", None),
        ("_docker/_docker", None),
        ("docker_/docker_", None),
        (
            "b.gcr.io/test.example.com/my-app",
            Some(("b.gcr.io", "test.example.com/my-app")),
        ),
        ("xn--n3h.com/myimage", Some(("xn--n3h.com", "myimage"))),
        ("xn--7o8h.com/myimage", Some(("xn--7o8h.com", "myimage"))),
        (
            "example.com/xn--7o8h.com/myimage",
            Some(("example.com", "xn--7o8h.com/myimage")),
        ),
        (
            "example.com/some_separator__underscore/myimage",
            Some(("example.com", "some_separator__underscore/myimage")),
        ),
        ("example.com/__underscore/myimage", None),
        ("example.com/..dots/myimage", None),
        ("example.com/.dots/myimage", None),
        ("example.com/nodouble..dots/myimage", None),
        ("docker./docker", None),
        (".docker/docker", None),
        ("docker-/docker", None),
        ("-docker/docker", None),
        ("do..cker/docker", None),
        ("do__cker:8080/docker", None),
        ("do__cker/docker", Some(("", "do__cker/docker"))),
        (
            "registry.io/foo/project--id.module--name.ver---sion--name",
            Some((
                "registry.io",
                "foo/project--id.module--name.ver---sion--name",
            )),
        ),
        ("Asdf.com/foo/bar", Some(("Asdf.com", "foo/bar"))),
        ("Foo/FarB", None),
        // The quirk: a first segment that is a path component but not a domain.
        ("a_b.c/d", Some(("", "a_b.c/d"))),
        ("foo.bar_baz/x", Some(("", "foo.bar_baz/x"))),
    ];
    for (input, want) in cases {
        assert_eq!(split_name(input), want, "name regexp on {input:?}");
    }
}

/// (name, tag, digest) captured by the reference regexp.
type RefMatch<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

#[test]
fn reference_regexp_table() {
    let be = &BE178["sha256:".len()..];
    let inputs = [
        "registry.com:8080/myapp:tag".to_owned(),
        format!("registry.com:8080/myapp@sha256:{be}"),
        format!("registry.com:8080/myapp:tag2@sha256:{be}"),
        "registry.com:8080/myapp@sha256:badbadbadbad".to_owned(),
        "registry.com:8080/myapp:invalid~tag".to_owned(),
        "bad_hostname.com:8080/myapp:tag".to_owned(),
        format!("localhost:8080@sha256:{be}"),
        format!("localhost:8080/name@sha256:{be}"),
        format!("localhost:http/name@sha256:{be}"),
        format!("localhost@sha256:{be}"),
        "registry.com:8080/myapp@bad".to_owned(),
        "registry.com:8080/myapp@2bad".to_owned(),
    ];
    // (name, tag, digest) or None
    let wants: [Option<RefMatch<'_>>; 12] = [
        Some(("registry.com:8080/myapp", Some("tag"), None)),
        Some(("registry.com:8080/myapp", None, Some(BE178))),
        Some(("registry.com:8080/myapp", Some("tag2"), Some(BE178))),
        None,
        None,
        None,
        Some(("localhost", Some("8080"), Some(BE178))),
        Some(("localhost:8080/name", None, Some(BE178))),
        None,
        Some(("localhost", None, Some(BE178))),
        None,
        None,
    ];
    for (input, want) in inputs.iter().zip(wants) {
        let got =
            match_reference(input).map(|p| (expected_name(p.domain, p.path), p.tag, p.digest));
        let want = want.map(|(n, t, d)| (n.to_owned(), t, d));
        assert_eq!(got, want, "reference regexp on {input:?}");
    }
}

#[test]
fn identifier_regexp_table() {
    let cases: &[(&str, bool)] = &[
        (
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821",
            true,
        ),
        (
            "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C",
            false,
        ),
        (
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf",
            false,
        ),
        (
            "sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821",
            false,
        ),
        (
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482",
            false,
        ),
        (
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821\n",
            false,
        ),
    ];
    for &(input, want) in cases {
        assert_eq!(is_identifier(input), want, "identifier regexp on {input:?}");
    }
}

#[test]
fn regexp_tables_through_public_parse() {
    let be = &BE178["sha256:".len()..];
    let i1 = format!("registry.com:8080/myapp@sha256:{be}");
    let i2 = format!("registry.com:8080/myapp:tag2@sha256:{be}");
    let i3 = format!("localhost:8080@sha256:{be}");
    let i4 = format!("localhost:8080/name@sha256:{be}");
    let i5 = format!("localhost@sha256:{be}");
    let sha_tag = "sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821";
    valid_all(&[
        w(
            "registry.com:8080/myapp:tag",
            "registry.com:8080",
            "myapp",
            Some("tag"),
            None,
        ),
        w(&i1, "registry.com:8080", "myapp", None, Some(BE178)),
        w(&i2, "registry.com:8080", "myapp", Some("tag2"), Some(BE178)),
        w(
            &i3,
            "docker.io",
            "library/localhost",
            Some("8080"),
            Some(BE178),
        ),
        w(&i4, "localhost:8080", "name", None, Some(BE178)),
        w(&i5, "docker.io", "library/localhost", None, Some(BE178)),
        w(
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf",
            "docker.io",
            "library/da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf",
            None,
            None,
        ),
        w(
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482",
            "docker.io",
            "library/da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482",
            None,
            None,
        ),
        // Not an identifier (it has a prefix): a Docker Hub image "sha256"
        // tagged with the hex string.
        w(
            sha_tag,
            "docker.io",
            "library/sha256",
            Some("da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821"),
            None,
        ),
        w("Asdf.com/foo/bar", "Asdf.com", "foo/bar", None, None),
        w(
            "do__cker/docker",
            "docker.io",
            "do__cker/docker",
            None,
            None,
        ),
        w(
            "registry.io/foo/project--id.module--name.ver---sion--name",
            "registry.io",
            "foo/project--id.module--name.ver---sion--name",
            None,
            None,
        ),
        w("test.com:10304/foo", "test.com:10304", "foo", None, None),
        w(
            "192.168.1.1:750050/foo",
            "192.168.1.1:750050",
            "foo",
            None,
            None,
        ),
        w(
            "[fd00123123123]:75050/foo",
            "[fd00123123123]:75050",
            "foo",
            None,
            None,
        ),
        w(
            "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505/foo",
            "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505",
            "foo",
            None,
            None,
        ),
    ]);
    let bad1 = format!("localhost:http/name@sha256:{be}");
    invalid_all(&[
        "registry.com:8080/myapp@sha256:badbadbadbad",
        "registry.com:8080/myapp:invalid~tag",
        "bad_hostname.com:8080/myapp:tag",
        &bad1,
        "registry.com:8080/myapp@bad",
        "registry.com:8080/myapp@2bad",
        "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821",
        "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C",
        "test.com:http/foo",
        "[fd00:1:2::3]75050/foo",
        "[fd00:1:2::3]::75050/foo",
        "[fd00:1:2::3%eth0]:75050/foo",
        "fd00:1:2::3:75050/foo",
        "-ab.com/foo",
        "ab-.com/foo",
        "ab.-com/foo",
        "ab.com-/foo",
        "Foo/FarB",
        "foo_bar.com:8080/app",
        "do__cker:8080/docker",
        "docker./docker",
        ".docker/docker",
        "example.com/__underscore/myimage",
        "example.com/..dots/myimage",
        "example.com/.dots/myimage",
        "example.com/nodouble..dots/myimage",
        "a/a/a/a/",
        "a//a/a",
        "foo.com/",
        "a^a",
        "foo/bar-",
        "foo/-bar",
        "_foo/bar",
        "docker_/docker_",
    ]);
}

// ---------------------------------------------------------------------------
// normalize_test.go
// ---------------------------------------------------------------------------

#[test]
fn validate_reference_name() {
    let valid = [
        "docker/docker",
        "library/debian",
        "debian",
        "docker.io/docker/docker",
        "docker.io/library/debian",
        "docker.io/debian",
        "index.docker.io/docker/docker",
        "index.docker.io/library/debian",
        "index.docker.io/debian",
        "127.0.0.1:5000/docker/docker",
        "127.0.0.1:5000/library/debian",
        "127.0.0.1:5000/debian",
        "192.168.0.1",
        "192.168.0.1:80",
        "192.168.0.1:8/debian",
        "192.168.0.2:25000/debian",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "[fc00::1]:5000/docker",
        "[fc00::1]:5000/docker/docker",
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "Docker/docker",
        "DOCKER/docker",
    ];
    for input in valid {
        assert!(ImageRef::parse(input).is_ok(), "{input:?} should be valid");
    }
    invalid_all(&[
        "https://github.com/docker/docker",
        "docker/Docker",
        "-docker",
        "-docker/docker",
        "-docker.io/docker/docker",
        "docker///docker",
        "docker.io/docker/Docker",
        "docker.io/docker///docker",
        "[fc00::1]",
        "[fc00::1]:5000",
        "fc00::1:5000/debian",
        "[fe80::1%eth0]:5000/debian",
        "[2001:db8:3:4::192.0.2.33]:5000/debian",
        HEX64,
    ]);
}

#[test]
fn validate_remote_name() {
    valid_all(&[
        w("docker/docker", "docker.io", "docker/docker", None, None),
        w(
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "docker.io",
            "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            None,
            None,
        ),
        w(
            "docker-rules/docker",
            "docker.io",
            "docker-rules/docker",
            None,
            None,
        ),
        w(
            "docker---rules/docker",
            "docker.io",
            "docker---rules/docker",
            None,
            None,
        ),
        w("doc/docker", "docker.io", "doc/docker", None, None),
        w("d/docker", "docker.io", "d/docker", None, None),
        w("jess/t", "docker.io", "jess/t", None, None),
        w(
            "dock__er/docker",
            "docker.io",
            "dock__er/docker",
            None,
            None,
        ),
    ]);
    invalid_all(&[
        "docker/Docker",
        "docker///docker",
        HEX64,
        "-docker/docker",
        "docker-/docker",
        "-docker-/docker",
        "____/____",
        "_docker/_docker",
        "dock..er/docker",
        "dock_.er/docker",
        "dock-.er/docker",
        "docker/",
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
    ]);
}

#[test]
fn parse_repository_info() {
    // (remote name, familiar, full, ambiguous, domain)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "fooo/bar",
            "fooo/bar",
            "docker.io/fooo/bar",
            "index.docker.io/fooo/bar",
            "docker.io",
        ),
        (
            "library/ubuntu",
            "ubuntu",
            "docker.io/library/ubuntu",
            "library/ubuntu",
            "docker.io",
        ),
        (
            "nonlibrary/ubuntu",
            "nonlibrary/ubuntu",
            "docker.io/nonlibrary/ubuntu",
            "",
            "docker.io",
        ),
        (
            "other/library",
            "other/library",
            "docker.io/other/library",
            "",
            "docker.io",
        ),
        (
            "private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000/privatebase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "private/moonbase",
            "example.com/private/moonbase",
            "example.com/private/moonbase",
            "",
            "example.com",
        ),
        (
            "privatebase",
            "example.com/privatebase",
            "example.com/privatebase",
            "",
            "example.com",
        ),
        (
            "private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000/private/moonbase",
            "",
            "example.com:8000",
        ),
        (
            "privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000/privatebasee",
            "",
            "example.com:8000",
        ),
        (
            "library/ubuntu-12.04-base",
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            "index.docker.io/library/ubuntu-12.04-base",
            "docker.io",
        ),
        (
            "library/foo",
            "foo",
            "docker.io/library/foo",
            "docker.io/foo",
            "docker.io",
        ),
        (
            "library/foo/bar",
            "library/foo/bar",
            "docker.io/library/foo/bar",
            "",
            "docker.io",
        ),
        (
            "store/foo/bar",
            "store/foo/bar",
            "docker.io/store/foo/bar",
            "",
            "docker.io",
        ),
        ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
        ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
    ];
    for &(remote, familiar, full, ambiguous, domain) in cases {
        let mut inputs = vec![familiar, full];
        if !ambiguous.is_empty() {
            inputs.push(ambiguous);
        }
        for input in inputs {
            check_valid(&w(input, domain, remote, None, None));
            let r = ImageRef::parse(input).expect("valid");
            assert_eq!(r.to_string(), full, "full name of {input:?}");
        }
    }
}

#[test]
fn parse_reference_with_tag_and_digest() {
    let input =
        "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    let r = ImageRef::parse(input).expect("valid");
    assert_eq!(r.to_string(), format!("docker.io/library/{input}"));
    assert_eq!(r.tag(), Some("latest"));
    assert_eq!(
        r.digest(),
        Some("sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa")
    );
    assert_eq!(r.lookup_key(), "docker.io/library/busybox");
}

#[test]
fn invalid_reference_components() {
    invalid_all(&["-foo"]);
}

#[test]
fn parse_any_reference_named_cases() {
    let cases: Vec<(String, String)> = vec![
        ("redis".into(), "docker.io/library/redis".into()),
        (
            "redis:latest".into(),
            "docker.io/library/redis:latest".into(),
        ),
        (
            "docker.io/library/redis:latest".into(),
            "docker.io/library/redis:latest".into(),
        ),
        (
            format!("redis@{DBCC}"),
            format!("docker.io/library/redis@{DBCC}"),
        ),
        (
            format!("docker.io/library/redis@{DBCC}"),
            format!("docker.io/library/redis@{DBCC}"),
        ),
        ("dmcgowan/myapp".into(), "docker.io/dmcgowan/myapp".into()),
        (
            "dmcgowan/myapp:latest".into(),
            "docker.io/dmcgowan/myapp:latest".into(),
        ),
        (
            "docker.io/mcgowan/myapp:latest".into(),
            "docker.io/mcgowan/myapp:latest".into(),
        ),
        (
            format!("dmcgowan/myapp@{DBCC}"),
            format!("docker.io/dmcgowan/myapp@{DBCC}"),
        ),
        (
            format!("docker.io/dmcgowan/myapp@{DBCC}"),
            format!("docker.io/dmcgowan/myapp@{DBCC}"),
        ),
        (
            "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9".into(),
            "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9"
                .into(),
        ),
        ("dbcc1".into(), "docker.io/library/dbcc1".into()),
    ];
    for (input, want) in cases {
        let r = ImageRef::parse(&input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(r.to_string(), want, "normalized {input:?}");
        assert_eq!(ImageRef::parse(&want).expect("equivalent parses"), r);
    }
    // A bare identifier is an image ID, not a name.
    let id = &DBCC["sha256:".len()..];
    assert!(matches!(
        ImageRef::parse(id),
        Err(ReferenceError::HexIdentifier { .. })
    ));
}

#[test]
fn normalized_split_hostname() {
    valid_all(&[
        w("test.com/foo", "test.com", "foo", None, None),
        w("test_com/foo", "docker.io", "test_com/foo", None, None),
        w(
            "docker/migrator",
            "docker.io",
            "docker/migrator",
            None,
            None,
        ),
        w("test.com:8080/foo", "test.com:8080", "foo", None, None),
        w("test-com:8080/foo", "test-com:8080", "foo", None, None),
        w("foo", "docker.io", "library/foo", None, None),
        w("xn--n3h.com/foo", "xn--n3h.com", "foo", None, None),
        w(
            "xn--n3h.com:18080/foo",
            "xn--n3h.com:18080",
            "foo",
            None,
            None,
        ),
        w("docker.io/foo", "docker.io", "library/foo", None, None),
        w(
            "docker.io/library/foo",
            "docker.io",
            "library/foo",
            None,
            None,
        ),
        w(
            "docker.io/library/foo/bar",
            "docker.io",
            "library/foo/bar",
            None,
            None,
        ),
    ]);
}

#[test]
fn parse_docker_ref_inputs() {
    let d1 = format!("busybox@{E6693}");
    let d2 = format!("gcr.io/library/busybox:latest@{E6693}");
    valid_all(&[
        w("busybox", "docker.io", "library/busybox", None, None),
        w(
            "busybox:latest",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        w(&d1, "docker.io", "library/busybox", None, Some(E6693)),
        w(
            "library/busybox",
            "docker.io",
            "library/busybox",
            None,
            None,
        ),
        w(
            "docker.io/busybox",
            "docker.io",
            "library/busybox",
            None,
            None,
        ),
        w(
            "docker.io/library/busybox",
            "docker.io",
            "library/busybox",
            None,
            None,
        ),
        w(
            "docker.io/busybox:latest",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        w(
            "library/busybox:latest",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        w(
            "docker.io/library/busybox:latest",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        w(
            "gcr.io/library/busybox",
            "gcr.io",
            "library/busybox",
            None,
            None,
        ),
        w(
            &d2,
            "gcr.io",
            "library/busybox",
            Some("latest"),
            Some(E6693),
        ),
    ]);
}

#[test]
fn parse_named_inputs() {
    valid_all(&[
        w("test.com/foo", "test.com", "foo", None, None),
        w("test:8080/foo", "test:8080", "foo", None, None),
        w("test_com/foo", "docker.io", "test_com/foo", None, None),
        w("test.com", "docker.io", "library/test.com", None, None),
        w("library/foo", "docker.io", "library/foo", None, None),
    ]);
}

// ---------------------------------------------------------------------------
// Quirks and edge cases.
// ---------------------------------------------------------------------------

#[test]
fn invalid_domain_that_is_a_path_component_has_no_domain() {
    let d = format!("a_b.c/d:tag@{SHA256_F}");
    valid_all(&[
        w("a_b.c/d", "", "a_b.c/d", None, None),
        w("foo.bar_baz/x", "", "foo.bar_baz/x", None, None),
        w("a__b.c/d/e", "", "a__b.c/d/e", None, None),
        w("ex_ample.com/foo", "", "ex_ample.com/foo", None, None),
        w(
            "my_registry.example.com/team/app:v1",
            "",
            "my_registry.example.com/team/app",
            Some("v1"),
            None,
        ),
        w(&d, "", "a_b.c/d", Some("tag"), Some(SHA256_F)),
    ]);
    let r = ImageRef::parse("a_b.c/d").expect("valid");
    assert_eq!(r.lookup_key(), "a_b.c/d");
    assert_eq!(r.domain(), "");
    // Not a valid domain and not a valid path component either.
    invalid_all(&[
        "a_b.c:5000/d",
        "A_b.c/d",
        "_a.c/d",
        "a_.c/d",
        "a_b.c-/d",
        "a___b.c/d",
        "a_b.c/D",
        "a_b.c/",
    ]);
    assert!(matches!(
        ImageRef::parse("A_b.c/d"),
        Err(ReferenceError::NameContainsUppercase { .. })
    ));
}

#[test]
fn docker_hub_normalization() {
    valid_all(&[
        w("nginx", "docker.io", "library/nginx", None, None),
        w(
            "nginx:1.25",
            "docker.io",
            "library/nginx",
            Some("1.25"),
            None,
        ),
        w(
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
            None,
        ),
        w("localhost", "docker.io", "library/localhost", None, None),
        w("localhost/foo", "localhost", "foo", None, None),
        w(
            "localhost/foo/bar:1",
            "localhost",
            "foo/bar",
            Some("1"),
            None,
        ),
        w("localhost:5000/foo", "localhost:5000", "foo", None, None),
        w("LOCALHOST/foo", "LOCALHOST", "foo", None, None),
        w("index.docker.io/x", "docker.io", "library/x", None, None),
        w(
            "index.docker.io/library/x",
            "docker.io",
            "library/x",
            None,
            None,
        ),
        w(
            "index.docker.io/org/x:1",
            "docker.io",
            "org/x",
            Some("1"),
            None,
        ),
        w("docker.io/x", "docker.io", "library/x", None, None),
        w(
            "docker.io/library",
            "docker.io",
            "library/library",
            None,
            None,
        ),
        w("docker.io", "docker.io", "library/docker.io", None, None),
        w("library", "docker.io", "library/library", None, None),
        w("DOCKER.IO/x", "DOCKER.IO", "x", None, None),
        w("Docker.io/x", "Docker.io", "x", None, None),
        w("INDEX.DOCKER.IO/x", "INDEX.DOCKER.IO", "x", None, None),
        w(
            "registry-1.docker.io/x",
            "registry-1.docker.io",
            "x",
            None,
            None,
        ),
        w("docker.io:443/x", "docker.io:443", "x", None, None),
        w(
            "index.docker.io:443/x",
            "index.docker.io:443",
            "x",
            None,
            None,
        ),
        w("quay.io:443/org/app", "quay.io:443", "org/app", None, None),
        w("org/app", "docker.io", "org/app", None, None),
        w("a/b/c/d", "docker.io", "a/b/c/d", None, None),
        w(
            &HEX64[..63],
            "docker.io",
            &format!("library/{}", &HEX64[..63]),
            None,
            None,
        ),
    ]);
}

#[test]
fn uppercase_handling() {
    valid_all(&[
        w("Example.COM/foo", "Example.COM", "foo", None, None),
        w(
            "Example.COM:5000/foo/bar:TAG",
            "Example.COM:5000",
            "foo/bar",
            Some("TAG"),
            None,
        ),
        w("Docker/docker", "Docker", "docker", None, None),
        w("DOCKER/docker", "DOCKER", "docker", None, None),
        w(
            "nginx:LATEST",
            "docker.io",
            "library/nginx",
            Some("LATEST"),
            None,
        ),
    ]);
    for input in [
        "example.com/Foo",
        "Nginx",
        "Nginx:latest",
        "docker.io/Nginx",
        "foo/Bar",
        "Foo/Bar",
    ] {
        assert!(
            matches!(
                ImageRef::parse(input),
                Err(ReferenceError::NameContainsUppercase { .. })
            ),
            "{input:?} should fail with an uppercase error, got {:?}",
            ImageRef::parse(input)
        );
    }
    invalid_all(&["Foo_Bar/x", "FOO:5000:6000/x"]);
}

#[test]
fn ipv6_literals() {
    let d = format!("[::1]:5000/foo:bar@{SHA256_F}");
    valid_all(&[
        w("[::1]:5000/foo", "[::1]:5000", "foo", None, None),
        w("[2001:db8::1]/foo", "[2001:db8::1]", "foo", None, None),
        w("[::1]/foo", "[::1]", "foo", None, None),
        w("[FC00::1]:5000/foo", "[FC00::1]:5000", "foo", None, None),
        w("[::]/foo", "[::]", "foo", None, None),
        w(&d, "[::1]:5000", "foo", Some("bar"), Some(SHA256_F)),
    ]);
    invalid_all(&[
        "[::1]",
        "[::1]:5000",
        "[::1]:5000:tag",
        "[]/foo",
        "[::1]:/foo",
        "[::g]/foo",
        "[::1]x/foo",
        "[::1/foo",
        "::1/foo",
        "::1:5000/foo",
        "[::1]]/foo",
        "[[::1]]/foo",
        "[::1%lo]/foo",
        "[::ffff:1.2.3.4]/foo",
        "[::1]:5000/Foo",
        // Neither '.', ':' nor uppercase: not taken as a domain at all.
        "[abc]/foo",
        "[0]/foo",
    ]);
    // Uppercase makes splitDockerDomain take it, and it is a valid literal.
    check_valid(&w("[ABC]/foo", "[ABC]", "foo", None, None));
    check_valid(&w("[abc]:1/foo", "[abc]:1", "foo", None, None));
}

#[test]
fn ports_and_domain_names() {
    valid_all(&[
        w("example.com:0/foo", "example.com:0", "foo", None, None),
        w(
            "example.com:99999999/foo",
            "example.com:99999999",
            "foo",
            None,
            None,
        ),
        w("a-b.c/d", "a-b.c", "d", None, None),
        w("a--b.c/d", "a--b.c", "d", None, None),
        w("1.2.3.4/d", "1.2.3.4", "d", None, None),
        w("host:1/d", "host:1", "d", None, None),
        // A bare "host:port" is a Docker Hub image with a tag.
        w(
            "example.com:5000",
            "docker.io",
            "library/example.com",
            Some("5000"),
            None,
        ),
        w("my-registry:5000/d", "my-registry:5000", "d", None, None),
    ]);
    invalid_all(&[
        "example.com:-1/foo",
        "example.com:/foo",
        "example.com:5000:6000/foo",
        "example.com:50a/foo",
        "-example.com/foo",
        "example-.com/foo",
        "example..com/foo",
        ".example.com/foo",
        "example.com./foo",
        ":5000/foo",
        "example.com :5000/foo",
        "exa mple.com/foo",
    ]);
}

#[test]
fn path_components() {
    valid_all(&[
        w("foo/bar__baz", "docker.io", "foo/bar__baz", None, None),
        w("foo/bar--baz", "docker.io", "foo/bar--baz", None, None),
        w(
            "foo/bar.baz_qux-quux",
            "docker.io",
            "foo/bar.baz_qux-quux",
            None,
            None,
        ),
        w("a.b.c", "docker.io", "library/a.b.c", None, None),
        w("0/1", "docker.io", "0/1", None, None),
    ]);
    invalid_all(&[
        "foo/bar___baz",
        "foo/bar.-baz",
        "foo/bar-.baz",
        "foo/bar..baz",
        "foo/bar._baz",
        "foo/_bar",
        "foo/bar_",
        "foo/Bar",
        "foo//bar",
        "/foo",
        "foo/",
        "/",
        "//",
        "docker.io//foo",
        "example.com/",
        "example.com//foo",
        "foo/bar/",
        "foo/b@r",
        "foo/b+r",
        "foo/b~r",
    ]);
}

#[test]
fn whitespace_schemes_and_empty_parts() {
    invalid_all(&[
        "",
        " ",
        " nginx",
        "nginx ",
        "ng inx",
        "nginx\n",
        "\tnginx",
        "nginx:latest ",
        "nginx: latest",
        "nginx:\tlatest",
        "https://nginx",
        "http://registry.example.com/foo",
        "docker://nginx",
        "oci://example.com/foo",
        "nginx:",
        "nginx@",
        "nginx:@",
        "nginx::tag",
        "nginx:tag:",
        "nginx:tag@",
        "nginx@@sha256:ffff",
        ":",
        "@",
        ":tag",
        "nginx:tag/x",
        "example.com/nginx:",
        "example.com/nginx@",
    ]);
    assert_eq!(ImageRef::parse(""), Err(ReferenceError::Empty));
}

#[test]
fn non_ascii_is_rejected() {
    invalid_all(&[
        "ngïnx",
        "例え/foo",
        "foo/例え",
        "nginx:täg",
        "é.com/foo",
        "🐳",
        "🐳.com/foo",
        "nginx@sha256:ffé",
        "İ/foo",
        "\u{212A}.com/foo",
        "nginx\u{0}",
        "nginx\u{200b}",
    ]);
}

#[test]
fn path_length_limit() {
    // Docker Hub: "library/" counts, so a familiar name may have 247 chars.
    let n247 = "a".repeat(247);
    let n248 = "a".repeat(248);
    check_valid(&w(
        &n247,
        "docker.io",
        &format!("library/{n247}"),
        None,
        None,
    ));
    check_invalid(&n248);
    assert_eq!(
        ImageRef::parse(&n248),
        Err(ReferenceError::NameTooLong { len: 256 })
    );

    // The domain does not count (v0.6.0).
    let p255 = "a".repeat(255);
    let p256 = "a".repeat(256);
    check_valid(&w(
        &format!("example.com/{p255}"),
        "example.com",
        &p255,
        None,
        None,
    ));
    check_invalid(&format!("example.com/{p256}"));
    let multi = format!("foo/{}", "b".repeat(251));
    check_valid(&w(&multi, "docker.io", &multi, None, None));
    check_invalid(&format!("foo/{}", "b".repeat(252)));
    let long_domain = format!("{}.com", "d".repeat(10_000));
    check_valid(&w(
        &format!("{long_domain}/{p255}:t"),
        &long_domain,
        &p255,
        Some("t"),
        None,
    ));

    // When the first segment is not a domain it is part of the path.
    let q = format!("a_b.c/{}", "a".repeat(249));
    check_valid(&w(&q, "", &q, None, None));
    check_invalid(&format!("a_b.c/{}", "a".repeat(250)));

    // Tag and digest never count.
    let t = format!("example.com/{p255}:{}@{SHA512_F}", "t".repeat(128));
    assert!(ImageRef::parse(&t).is_ok());
}

#[test]
fn tag_rules() {
    let t128 = "t".repeat(128);
    let t129 = "t".repeat(129);
    check_valid(&w(
        &format!("nginx:{t128}"),
        "docker.io",
        "library/nginx",
        Some(&t128),
        None,
    ));
    check_invalid(&format!("nginx:{t129}"));
    valid_all(&[
        w(
            "nginx:v1.0-rc_1",
            "docker.io",
            "library/nginx",
            Some("v1.0-rc_1"),
            None,
        ),
        w("nginx:_v1", "docker.io", "library/nginx", Some("_v1"), None),
        w("nginx:V1", "docker.io", "library/nginx", Some("V1"), None),
        w("nginx:1", "docker.io", "library/nginx", Some("1"), None),
        w(
            "nginx:a..b--c__",
            "docker.io",
            "library/nginx",
            Some("a..b--c__"),
            None,
        ),
    ]);
    invalid_all(&[
        "nginx:.v1",
        "nginx:-v1",
        "nginx:v1+2",
        "nginx:v1~",
        "nginx:v/1",
        "nginx:v1:2",
    ]);
}

#[test]
fn digest_algorithms_and_lengths() {
    let hex = |n: usize| "0123456789abcdef".repeat(8)[..n].to_owned();
    for (alg, len) in [("sha256", 64), ("sha384", 96), ("sha512", 128)] {
        let good = format!("{alg}:{}", hex(len));
        check_valid(&w(
            &format!("nginx@{good}"),
            "docker.io",
            "library/nginx",
            None,
            Some(&good),
        ));
        check_valid(&w(
            &format!("example.com/app:v1@{good}"),
            "example.com",
            "app",
            Some("v1"),
            Some(&good),
        ));
        for bad_len in [len - 1, len + 1, 32] {
            let bad = format!("nginx@{alg}:{}", "a".repeat(bad_len));
            assert!(
                matches!(
                    ImageRef::parse(&bad),
                    Err(ReferenceError::InvalidDigest { .. })
                ),
                "{alg} with {bad_len} hex digits"
            );
        }
        // Uppercase hex passes the reference grammar but not go-digest.
        let upper = format!("nginx@{alg}:{}", hex(len).to_uppercase());
        assert!(
            matches!(
                ImageRef::parse(&upper),
                Err(ReferenceError::InvalidDigest { .. })
            ),
            "{alg} with uppercase hex"
        );
        let mut mixed = hex(len);
        mixed.replace_range(0..1, "A");
        check_invalid(&format!("nginx@{alg}:{mixed}"));
    }
    let h64 = hex(64);
    let unsupported = [
        format!("nginx@sha1:{}", hex(40)),
        format!("nginx@md5:{}", hex(32)),
        format!("nginx@blake3:{h64}"),
        format!("nginx@sha256+b64:{h64}"),
        format!("nginx@sha512.v2:{}", hex(128)),
    ];
    for input in &unsupported {
        assert!(
            matches!(
                ImageRef::parse(input),
                Err(ReferenceError::UnsupportedDigest { .. })
            ),
            "{input:?}"
        );
    }
    let h128 = "f".repeat(128);
    invalid_all(&[
        &format!("nginx@SHA256:{h64}"),
        &format!("nginx@Sha256:{h64}"),
        &format!("nginx@sha256:{}", hex(31)),
        &format!("nginx@sha256:{}g", hex(63)),
        &format!("nginx@sha256:{h64}:"),
        &format!("nginx@sha256:{h64}@sha256:{h64}"),
        &format!("nginx@256:{h64}"),
        &format!("nginx@sha-:{h64}"),
        &format!("nginx@-sha256:{h64}"),
        &format!("nginx@:{h64}"),
        &format!("nginx@sha256{h64}"),
        &format!("nginx@sha512:{}", h128.to_uppercase()),
        &format!("nginx@sha256:{h64}/x"),
        &format!("nginx@sha256:{h64}:tag"),
        "nginx@sha256:",
    ]);
}

#[test]
fn hex_identifier_rules() {
    assert!(matches!(
        ImageRef::parse(HEX64),
        Err(ReferenceError::HexIdentifier { .. })
    ));
    valid_all(&[
        w(
            &format!("{HEX64}:tag"),
            "docker.io",
            &format!("library/{HEX64}"),
            Some("tag"),
            None,
        ),
        w(
            &format!("library/{HEX64}"),
            "docker.io",
            &format!("library/{HEX64}"),
            None,
            None,
        ),
        w(
            &format!("docker.io/{HEX64}"),
            "docker.io",
            &format!("library/{HEX64}"),
            None,
            None,
        ),
        w(
            &format!("{HEX64}a"),
            "docker.io",
            &format!("library/{HEX64}a"),
            None,
            None,
        ),
    ]);
    assert!(matches!(
        ImageRef::parse(&HEX64.to_uppercase()),
        Err(ReferenceError::NameContainsUppercase { .. })
    ));
}

#[test]
fn accessors_and_display() {
    let r = ImageRef::parse(&format!("quay.io:443/org/app:v1@{SHA256_F}")).expect("valid");
    assert_eq!(r.domain(), "quay.io:443");
    assert_eq!(r.path(), "org/app");
    assert_eq!(r.tag(), Some("v1"));
    assert_eq!(r.digest(), Some(SHA256_F));
    assert_eq!(r.lookup_key(), "quay.io:443/org/app");
    assert_eq!(r.to_string(), format!("quay.io:443/org/app:v1@{SHA256_F}"));

    let plain = ImageRef::parse("nginx").expect("valid");
    assert_eq!(plain.tag(), None);
    assert_eq!(plain.digest(), None);
    assert_eq!(plain.to_string(), "docker.io/library/nginx");

    // Equal inputs after normalization give equal values (and hashes).
    use std::collections::HashSet;
    let set: HashSet<ImageRef> = ["nginx", "docker.io/nginx", "index.docker.io/library/nginx"]
        .into_iter()
        .map(|s| ImageRef::parse(s).expect("valid"))
        .collect();
    assert_eq!(set.len(), 1);
    assert_ne!(
        ImageRef::parse("nginx:1").expect("valid"),
        ImageRef::parse("nginx").expect("valid")
    );
}

#[test]
fn error_messages_are_short_and_truncated() {
    let hostile = [
        format!("{}!", "a".repeat(100_000)),
        "é".repeat(50_000),
        format!("Nginx{}", "x".repeat(100_000)),
        format!("nginx@sha256:{}", "f".repeat(100_000)),
        format!("nginx@sha1:{}", "f".repeat(100_000)),
        format!("{}/x", "A_".repeat(50_000)),
        format!("{}a", "a/".repeat(50_000)),
        "🐳".repeat(30_000),
        "\n".repeat(100_000),
    ];
    for input in &hostile {
        let err = ImageRef::parse(input).expect_err("hostile input is invalid");
        let msg = err.to_string();
        assert!(
            msg.chars().count() < 220,
            "message too long ({} chars): {msg}",
            msg.len()
        );
        assert!(!msg.is_empty());
    }
    let msg = ImageRef::parse(&format!("{}!", "b".repeat(1000)))
        .expect_err("invalid")
        .to_string();
    assert!(msg.contains('…'), "{msg}");
    assert!(!msg.contains(&"b".repeat(65)), "{msg}");
    assert!(msg.contains(&"b".repeat(64)), "{msg}");

    // Truncation never cuts a character in half.
    assert_eq!(snippet(&"é".repeat(100)), format!("{}…", "é".repeat(64)));
    assert_eq!(snippet("short"), "short");
    assert_eq!(snippet(&"x".repeat(64)), "x".repeat(64));
}

#[test]
fn error_kinds() {
    assert!(matches!(
        ImageRef::parse("foo bar"),
        Err(ReferenceError::InvalidFormat { .. })
    ));
    assert!(matches!(
        ImageRef::parse(&format!("example.com/{}", "a".repeat(300))),
        Err(ReferenceError::NameTooLong { len: 300 })
    ));
    assert!(matches!(
        ImageRef::parse(&format!("nginx@foo:{}", "a".repeat(64))),
        Err(ReferenceError::UnsupportedDigest { algorithm }) if algorithm == "foo"
    ));
    assert!(matches!(
        ImageRef::parse("Uppercase:tag"),
        Err(ReferenceError::NameContainsUppercase { name }) if name == "library/Uppercase"
    ));
}

/// Hostile sizes get the Go parser's answer, with errors that quote a bounded piece of the
/// input. That parsing stays linear in the input is measured by the `reference/long-input`
/// benchmarks (benches/decision.rs, `make bench`), not asserted with a clock here.
#[test]
fn large_inputs_get_the_answer_of_the_go_parser() {
    let long_path_error = |len: usize| {
        format!(
            "invalid reference format: repository name must not be more than 255 characters (got {len})"
        )
    };
    let format_error = |input: &str| {
        let quoted: String = input.chars().take(64).collect();
        format!("invalid reference format: \"{quoted}…\"")
    };
    let long_domain = format!("{}.com/{}", "d".repeat(200_000), "a/".repeat(100) + "a");
    let long_ipv6 = format!("[{}]:5000/x", ":".repeat(200_000));
    // The domain does not count towards the 255-character limit (distribution v0.6.0).
    for valid in [&long_domain, &long_ipv6] {
        let reference = ImageRef::parse(valid).expect("valid");
        assert_eq!(reference.lookup_key(), *valid);
    }
    let cases = [
        (
            format!("{}a", "a/".repeat(200_000)),
            long_path_error(400_001),
        ),
        ("a-".repeat(200_000) + "a", long_path_error(400_009)),
        (format!("a{}", ":".repeat(200_000)), String::new()),
        (format!("a{}", "@".repeat(200_000)), String::new()),
        (format!("a{}", "/:".repeat(200_000)), String::new()),
        ("_.".repeat(200_000), String::new()),
    ];
    for (input, expected) in &cases {
        let expected = if expected.is_empty() {
            format_error(input)
        } else {
            expected.clone()
        };
        let error = ImageRef::parse(input).expect_err("invalid").to_string();
        assert_eq!(error, expected);
        assert!(error.len() < 200, "bounded message");
    }
}

// ---------------------------------------------------------------------------
// Differences the parity run against Go found (tests/parity, `make parity`).
// ---------------------------------------------------------------------------

/// What Go's `ParseNormalizedNamed` makes of an image: (domain, path, tag, digest), or the kind
/// of error, named as our `ReferenceError` variants (`Empty` counts as `InvalidFormat`).
enum GoRef {
    Named(
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    ),
    Invalid(&'static str),
}

/// Rows printed by the parity run: cases where we differed from Go until fixed, and quirks
/// confirmed against it.
const GO_PARITY: &[(&str, GoRef)] = &[
    ("a_b.c/d:v1", GoRef::Named("", "a_b.c/d", Some("v1"), None)),
    ("Foo/bar", GoRef::Named("Foo", "bar", None, None)),
    // Unicode 16 gave U+A7DA a lowercase form; Go's tables (Unicode 15.0) have none, so Go
    // sees no uppercase and rejects the name as plain invalid.
    ("Ꟛ", GoRef::Invalid("InvalidFormat")),
    ("Ꟛ/x", GoRef::Invalid("InvalidFormat")),
    ("\u{1C89}", GoRef::Invalid("InvalidFormat")),
    ("\u{10D50}", GoRef::Invalid("InvalidFormat")),
    ("\u{16EA0}", GoRef::Invalid("InvalidFormat")),
    // Letters Go lowercases all the same.
    ("\u{212A}", GoRef::Invalid("NameContainsUppercase")),
    ("x/\u{C0}", GoRef::Invalid("NameContainsUppercase")),
];

/// The variant's name, as the rows name Go's errors (Go calls an empty image plainly invalid).
fn error_kind(error: &ReferenceError) -> String {
    let debug = format!("{error:?}");
    match debug.split(|c: char| !c.is_ascii_alphanumeric()).next() {
        Some("Empty") => "InvalidFormat".to_owned(),
        kind => kind.unwrap_or_default().to_owned(),
    }
}

#[test]
fn go_parity_table() {
    for (input, want) in GO_PARITY {
        match (ImageRef::parse(input), want) {
            (Ok(r), GoRef::Named(domain, path, tag, digest)) => {
                let got = (r.domain(), r.path(), r.tag(), r.digest());
                assert_eq!(got, (*domain, *path, *tag, *digest), "{input:?}");
            }
            (Err(e), GoRef::Invalid(kind)) => assert_eq!(error_kind(&e), *kind, "{input:?}"),
            (Ok(r), GoRef::Invalid(kind)) => panic!("{input:?}: parsed as {r:?}, Go says {kind}"),
            (Err(e), GoRef::Named(..)) => panic!("{input:?}: {e}, Go parses it"),
        }
    }
}

// ---------------------------------------------------------------------------
// Property tests.
// ---------------------------------------------------------------------------

fn check_invariants(input: &str) {
    if let Ok(r) = ImageRef::parse(input) {
        let name = expected_name(r.domain(), r.path());
        assert_eq!(r.lookup_key(), name);
        assert_eq!(
            r.to_string(),
            expected_string(r.domain(), r.path(), r.tag(), r.digest())
        );
        assert!(!r.path().is_empty());
        assert!(r.path().len() <= 255);
        assert!(r.tag().is_none_or(|t| !t.is_empty() && t.len() <= 128));
        assert!(r.to_string().is_ascii());
        let again = ImageRef::parse(&r.to_string()).expect("normalized form parses");
        assert_eq!(again, r, "round trip of {input:?}");
    }
}

fn path_component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}(([._]|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

fn domain() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("docker.io".to_owned())),
        Just(Some("index.docker.io".to_owned())),
        Just(Some("localhost".to_owned())),
        Just(Some("LOCALHOST".to_owned())),
        Just(Some("a_b.c".to_owned())),
        "[a-z0-9]{1,5}(-[a-z0-9]{1,5})?(\\.[a-zA-Z0-9]{1,5}){1,3}(:[0-9]{1,5})?".prop_map(Some),
        "[A-Z][a-zA-Z0-9]{0,5}".prop_map(Some),
        "[a-z]{1,6}:[0-9]{1,5}".prop_map(Some),
        // splitDockerDomain needs a ':' (or '.', or uppercase) to see a domain.
        "\\[[0-9a-fA-F]{0,4}:[0-9a-fA-F:]{0,10}\\](:[0-9]{1,5})?".prop_map(Some),
    ]
}

fn digest() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "[0-9a-f]{64}".prop_map(|h| Some(format!("sha256:{h}"))),
        "[0-9a-f]{96}".prop_map(|h| Some(format!("sha384:{h}"))),
        "[0-9a-f]{128}".prop_map(|h| Some(format!("sha512:{h}"))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_panic_on_arbitrary_strings(s in any::<String>()) {
        check_invariants(&s);
    }

    #[test]
    fn no_panic_on_grammar_strings(s in "[a-zA-Z0-9._:/@+\\[\\]-]{0,48}") {
        check_invariants(&s);
    }

    #[test]
    fn no_panic_on_mixed_strings(s in "([a-z0-9]{1,4}|[._:/@\\[\\]-]|é|🐳|\\s){0,24}") {
        check_invariants(&s);
    }

    #[test]
    fn generated_references_parse_and_round_trip(
        domain in domain(),
        components in prop::collection::vec(path_component(), 1..4),
        tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        digest in digest(),
    ) {
        let mut input = String::new();
        if let Some(domain) = &domain {
            input.push_str(domain);
            input.push('/');
        }
        input.push_str(&components.join("/"));
        if let Some(tag) = &tag {
            input.push(':');
            input.push_str(tag);
        }
        if let Some(digest) = &digest {
            input.push('@');
            input.push_str(digest);
        }
        let r = ImageRef::parse(&input);
        prop_assert!(r.is_ok(), "{:?} failed: {:?}", input, r);
        let r = r.expect("checked");
        prop_assert_eq!(r.tag(), tag.as_deref());
        prop_assert_eq!(r.digest(), digest.as_deref());
        prop_assert!(r.path().ends_with(components.last().expect("non-empty").as_str()));
        check_invariants(&input);
    }
}
