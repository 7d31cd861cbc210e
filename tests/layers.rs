//! The source tree's layering (issue #11): each folder under `src/` is one layer, and a module
//! may only use layers below its own. This test reads every file under `src/`, finds its
//! `crate::…` (and `super::…` paths that leave its layer), and fails naming file, line and
//! import for every reference that points up or sideways.
//!
//! Inside one layer, its modules (`controller::minting`, `controller::cluster_pull_secret`, …)
//! may use each other, but never in a cycle: a cycle is reported with the imports that make it.
//!
//! Test code is exempt: the `*/tests.rs` files and `#[cfg(test)]` items (`mod tests { … }`)
//! may use whatever their fixtures need (e.g. the state files of `cluster::statefile`).

use std::fmt;
use std::path::{Path, PathBuf};

/// The layers, bottom to top. A module may use its own layer and layers of lower rank; `text`
/// (a leaf utility) is usable by every layer, and `server` (the top) may use everything.
const LAYERS: &[(&str, u8)] = &[
    ("text", 0),
    ("kubelet", 1),
    ("state", 2),
    ("admission", 3),
    ("telemetry", 4),
    ("cluster", 5),
    ("controller", 6),
    ("cli", 6),
    ("server", 7),
];

/// The crate roots: `lib.rs` declares the layers, `main.rs` is the binary (its own crate).
const ROOTS: &[&str] = &["lib.rs", "main.rs"];

#[derive(Debug)]
struct Violation {
    file: String,
    line: usize,
    /// The source line holding the reference, trimmed.
    code: String,
    reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: {}",
            self.file, self.line, self.code, self.reason
        )
    }
}

fn rank(layer: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == layer)
        .map(|(_, rank)| *rank)
}

/// Why `from` may not use `to`, or `None` when it may.
fn forbidden(from: &str, to: &str) -> Option<String> {
    if from == to || from == "server" || to == "text" {
        return None;
    }
    let (Some(from_rank), Some(to_rank)) = (rank(from), rank(to)) else {
        return Some(format!(
            "`{to}` is not a layer; put the module in a layer folder (tests/layers.rs lists them)"
        ));
    };
    if to_rank < from_rank {
        None
    } else if to_rank == from_rank {
        Some(format!(
            "{from} (rank {from_rank}) may not use {to} (rank {to_rank}): layers of one rank \
             stay independent; move what both need below them"
        ))
    } else {
        Some(format!(
            "{from} (rank {from_rank}) may not use {to} (rank {to_rank}): imports point down \
             only; move the item down or invert the dependency"
        ))
    }
}

/// The module path of a file relative to `src/`: `a/b.rs` → [a, b], `a/mod.rs` → [a].
fn module_path(relative: &str) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// `source` with comments, string and char literals blanked out (newlines kept, so byte
/// offsets and line numbers stay those of the original).
fn strip_comments_and_literals(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = bytes.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for byte in &mut out[from..to] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < bytes.len() && depth > 0 {
                if bytes[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if bytes[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(end) = raw_string_end(bytes, i) {
            blank(&mut out, i, end);
            i = end;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(bytes.len());
            blank(&mut out, i, end);
            i = end;
        } else if bytes[i] == b'\'' {
            // A char literal ('x', '\'', '\u{1F600}', 'é'), or else a lifetime ('a).
            let end = if rest.get(1) == Some(&b'\\') {
                rest.iter()
                    .skip(3)
                    .position(|&b| b == b'\'')
                    .map(|n| i + 3 + n + 1)
            } else {
                let width = source[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + width) == Some(&b'\'')).then_some(i + 2 + width)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    // A blanked multi-byte character becomes one space per byte: still UTF-8, same offsets.
    String::from_utf8(out).expect("blanking keeps UTF-8 valid")
}

/// Where a raw string (`r"…"`, `r#"…"#`, `br"…"`) starting at `i` ends, if one starts there.
fn raw_string_end(bytes: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_ident(bytes[i - 1]) {
        return None;
    }
    let mut j = i;
    if bytes.get(j) == Some(&b'b') {
        j += 1;
    }
    if bytes.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = bytes[j..].iter().take_while(|&&b| b == b'#').count();
    j += hashes;
    if bytes.get(j) != Some(&b'"') {
        return None;
    }
    let mut closing = vec![b'"'];
    closing.extend(std::iter::repeat_n(b'#', hashes));
    let body = j + 1;
    let end = bytes[body..]
        .windows(closing.len())
        .position(|window| window == closing.as_slice())
        .map_or(bytes.len(), |n| body + n + closing.len());
    Some(end)
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Blanks every item marked `#[cfg(test)]` (the attribute through the item's `;` or its
/// closing brace): test modules may use any layer.
fn strip_test_items(code: &str) -> String {
    let bytes = code.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    while let Some(found) = code[i..].find("#[") {
        let start = i + found;
        let Some(close) = matching(bytes, start + 1, b'[', b']') else {
            break;
        };
        let attribute: String = code[start + 2..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if attribute != "cfg(test)" {
            i = close + 1;
            continue;
        }
        // The item runs to its first `;` or, if a `{` comes first, to the matching `}`.
        let mut j = close + 1;
        let end = loop {
            match bytes.get(j) {
                None => break bytes.len(),
                Some(b';') => break j + 1,
                Some(b'{') => break matching(bytes, j, b'{', b'}').map_or(bytes.len(), |n| n + 1),
                Some(_) => j += 1,
            }
        };
        for byte in &mut out[start..end] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
        i = end;
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 valid")
}

/// The index of the bracket closing the one at `open`.
fn matching(bytes: &[u8], open: usize, left: u8, right: u8) -> Option<usize> {
    let mut depth = 0usize;
    for (n, &byte) in bytes.iter().enumerate().skip(open) {
        if byte == left {
            depth += 1;
        } else if byte == right {
            depth -= 1;
            if depth == 0 {
                return Some(n);
            }
        }
    }
    None
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn ident_at(code: &str, i: usize) -> Option<&str> {
    let len = code.as_bytes()[i..]
        .iter()
        .take_while(|&&b| is_ident(b))
        .count();
    (len > 0).then(|| &code[i..i + len])
}

/// The top-level modules a path continuing at `i` (just after `crate::`, or `super::` that
/// reached the crate root) names: one, or several for a `{a::X, b::Y}` group.
fn tops_at(code: &str, i: usize) -> Vec<(usize, String)> {
    let bytes = code.as_bytes();
    let i = skip_whitespace(bytes, i);
    if bytes.get(i) == Some(&b'{') {
        let close = matching(bytes, i, b'{', b'}').unwrap_or(bytes.len());
        let mut tops = Vec::new();
        let (mut depth, mut entry_start) = (0, i + 1);
        for (n, byte) in bytes.iter().enumerate().take(close).skip(i) {
            match byte {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                b',' if depth == 1 => {
                    tops.extend(first_ident(code, entry_start, n));
                    entry_start = n + 1;
                }
                _ => {}
            }
        }
        tops.extend(first_ident(code, entry_start, close));
        return tops;
    }
    ident_at(code, i)
        .filter(|ident| *ident != "self")
        .map(|ident| vec![(i, ident.to_owned())])
        .unwrap_or_default()
}

fn first_ident(code: &str, from: usize, to: usize) -> Option<(usize, String)> {
    let i = skip_whitespace(code.as_bytes(), from);
    if i >= to {
        return None;
    }
    ident_at(code, i)
        .filter(|ident| *ident != "self")
        .map(|ident| (i, ident.to_owned()))
}

/// Every `super::super::…` path of `code`: (byte offset, how many `super`s, where the rest of
/// the path starts).
fn super_paths(code: &str) -> Vec<(usize, usize, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("super::") {
        if at > 0 && (is_ident(bytes[at - 1]) || code[..at].ends_with("super::")) {
            continue;
        }
        let (mut depth, mut i) = (0, at);
        while code[i..].starts_with("super::") {
            depth += 1;
            i = skip_whitespace(bytes, i + "super::".len());
        }
        found.push((at, depth, i));
    }
    found
}

/// Every top-level module a file's non-test code refers to: (byte offset, module).
fn references(relative: &str, code: &str) -> Vec<(usize, String)> {
    let bytes = code.as_bytes();
    let module = module_path(relative);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if at == 0 || !is_ident(bytes[at - 1]) {
            found.extend(tops_at(code, at + "crate::".len()));
        }
    }
    // `super::super::x` leaving the file's layer (or `super::x` from a layer's mod.rs).
    for (at, depth, i) in super_paths(code) {
        if depth > module.len() {
            continue;
        }
        let base = &module[..module.len() - depth];
        match base.first() {
            Some(top) => found.push((at, top.clone())),
            None => found.extend(tops_at(code, i)),
        }
    }
    found
}

/// The layer violations of one file (`relative` to `src/`, with `/` separators).
fn check_file(relative: &str, source: &str) -> Vec<Violation> {
    let file = format!("src/{relative}");
    if ROOTS.contains(&relative) || relative.ends_with("/tests.rs") {
        return Vec::new();
    }
    let layer = module_path(relative).first().cloned().unwrap_or_default();
    if rank(&layer).is_none() {
        return vec![Violation {
            file,
            line: 1,
            code: String::new(),
            reason: format!(
                "`{layer}` is in no layer; move it into a layer folder or add the layer to \
                 LAYERS in tests/layers.rs"
            ),
        }];
    }
    let code = strip_test_items(&strip_comments_and_literals(source));
    let lines: Vec<&str> = source.lines().collect();
    let mut violations = Vec::new();
    for (at, top) in references(relative, &code) {
        if let Some(reason) = forbidden(&layer, &top) {
            let line = code[..at].matches('\n').count() + 1;
            violations.push(Violation {
                file: file.clone(),
                line,
                code: lines.get(line - 1).map_or("", |l| l.trim()).to_owned(),
                reason,
            });
        }
    }
    violations
}

/// The module of its layer a file belongs to: `controller/cluster_pull_secret/copies.rs` →
/// (controller, cluster_pull_secret); a layer's own `mod.rs` or a one-file layer → none.
fn unit_of(relative: &str) -> Option<(String, String)> {
    let path = module_path(relative);
    (path.len() >= 2).then(|| (path[0].clone(), path[1].clone()))
}

/// The modules of its own layer a file's non-test code uses, other than its own:
/// (byte offset, module), read from `crate::layer::module` and `super::` paths.
fn sibling_references(relative: &str, code: &str) -> Vec<(usize, String)> {
    let Some((layer, own)) = unit_of(relative) else {
        return Vec::new();
    };
    let bytes = code.as_bytes();
    let module = module_path(relative);
    let mut found = Vec::new();
    let prefix = format!("crate::{layer}::");
    for (at, _) in code.match_indices(prefix.as_str()) {
        if at == 0 || !is_ident(bytes[at - 1]) {
            found.extend(tops_at(code, at + prefix.len()));
        }
    }
    for (_, depth, i) in super_paths(code) {
        // Landing on the layer's own module (`super::x` from controller/minting.rs, or
        // `super::super::x` from controller/cluster_pull_secret/copies.rs) names a sibling.
        if depth + 1 == module.len() {
            found.extend(tops_at(code, i));
        }
    }
    found.retain(|(_, name)| *name != own && name != "*");
    found
}

/// Every cycle among the modules of one layer, each as `a -> b -> a` with the import that
/// makes each step (file:line).
fn layer_cycles(files: &[(String, String)]) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    // (layer, from) → to → the first import making the edge.
    let mut edges: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for (relative, source) in files {
        if ROOTS.contains(&relative.as_str()) || relative.ends_with("/tests.rs") {
            continue;
        }
        let Some((layer, from)) = unit_of(relative) else {
            continue;
        };
        let code = strip_test_items(&strip_comments_and_literals(source));
        for (at, to) in sibling_references(relative, &code) {
            let line = code[..at].matches('\n').count() + 1;
            edges
                .entry((layer.clone(), from.clone()))
                .or_default()
                .entry(to)
                .or_insert_with(|| format!("src/{relative}:{line}"));
        }
    }
    let mut cycles = BTreeSet::new();
    // A path search from each module back to itself: the layers hold a handful of modules.
    for (layer, start) in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            let Some(next) = edges.get(&(layer.clone(), at.clone())) else {
                continue;
            };
            for to in next.keys() {
                if to == start {
                    // One report per cycle, however it is entered: rotate to its least module.
                    let mut cycle = path.clone();
                    let least = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
                    cycle.rotate_left(least);
                    let steps: Vec<String> = (0..cycle.len())
                        .map(|i| {
                            let (from, to) = (&cycle[i], &cycle[(i + 1) % cycle.len()]);
                            let site = &edges[&(layer.clone(), from.clone())][to];
                            format!("{layer}::{from} -> {layer}::{to} ({site})")
                        })
                        .collect();
                    cycles.insert(steps.join(", "));
                } else if !path.contains(to) {
                    let mut longer = path.clone();
                    longer.push(to.clone());
                    stack.push((to.clone(), longer));
                }
            }
        }
    }
    cycles.into_iter().collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_layers_below_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);

    let mut layers_seen = Vec::new();
    let mut violations = Vec::new();
    for path in &files {
        let relative = path
            .strip_prefix(&src)
            .expect("under src/")
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        layers_seen.extend(module_path(&relative).first().cloned());
        violations.extend(check_file(&relative, &source));
    }

    for (layer, _) in LAYERS {
        assert!(
            layers_seen.iter().any(|seen| seen == layer),
            "layer `{layer}` has no file under src/ (did the tree move? update LAYERS)"
        );
    }
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(&src).expect("under src/");
            let relative = relative.to_string_lossy().replace('\\', "/");
            (relative, std::fs::read_to_string(path).expect("readable"))
        })
        .collect();
    let cycles = layer_cycles(&sources);
    assert!(
        cycles.is_empty(),
        "modules of one layer use each other in a cycle; move what both need into a module of \
         its own:\n  {}",
        cycles.join("\n  ")
    );
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "{} import(s) break the layering (bottom to top: text, kubelet, state, admission, \
         telemetry, cluster, controller | cli, server):\n  {}",
        violations.len(),
        report.join("\n  ")
    );
}

// The checker itself: each case is a file the real tree must never contain.

fn reasons(relative: &str, source: &str) -> Vec<String> {
    check_file(relative, source)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn an_upward_use_is_reported_with_file_line_and_import() {
    let found = reasons(
        "state/snapshot.rs",
        "//! Snapshot.\n\nuse crate::kubelet::keyring::Keyring;\nuse crate::admission::review::Outcome;\n",
    );
    assert_eq!(
        found,
        [
            "src/state/snapshot.rs:4: `use crate::admission::review::Outcome;`: state (rank 2) \
          may not use admission (rank 3): imports point down only; move the item down or \
          invert the dependency"
        ]
    );
}

#[test]
fn grouped_uses_and_inline_paths_are_read() {
    let grouped = reasons(
        "cluster/watch.rs",
        "use crate::{\n    kubelet::keyring::Keyring,\n    server::Health,\n};\n",
    );
    assert_eq!(grouped.len(), 1, "{grouped:?}");
    assert!(grouped[0].starts_with("src/cluster/watch.rs:3: `server::Health,`"));

    let inline = reasons(
        "controller/leader.rs",
        "fn run() {\n    let _ = crate::cli::commands::review;\n}\n",
    );
    assert_eq!(inline.len(), 1, "{inline:?}");
    assert!(inline[0].contains("controller (rank 6) may not use cli (rank 6)"));
}

#[test]
fn super_paths_that_leave_the_layer_are_read() {
    let found = reasons("state/mod.rs", "use super::admission::review::Outcome;\n");
    assert_eq!(found.len(), 1, "{found:?}");
    let found = reasons(
        "kubelet/keyring.rs",
        "use super::super::state::crd::Rule;\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(reasons("server/webhook.rs", "use super::Health;\n").is_empty());
    assert!(reasons("admission/decision.rs", "use super::pod::PodView;\n").is_empty());
}

#[test]
fn comments_strings_and_test_code_are_not_imports() {
    let source = r###"//! See [`crate::server`].
/// Like `crate::server::run` /* crate::server */ but offline.
fn describe<'a>(name: &'a str) -> (char, char, &'a str) {
    let _ = "crate::server::x";
    let _ = r#"crate::server::y "quoted""#;
    ('"', '\'', name)
}

#[cfg(test)]
use crate::cluster::statefile::state_from_str;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::statefile::state_from_str;
}
"###;
    assert_eq!(
        reasons("admission/decision.rs", source),
        Vec::<String>::new()
    );
    // After all of that, a real import is still seen.
    let with_import = format!("{source}use crate::server::Health;\n");
    assert_eq!(reasons("admission/decision.rs", &with_import).len(), 1);
    // Test files of a module may use any layer.
    let test_file = "use super::*;\nuse crate::cluster::statefile::state_from_str;\n";
    assert!(reasons("admission/decision/tests.rs", test_file).is_empty());
}

#[test]
fn text_is_a_leaf_and_server_may_use_everything() {
    assert!(reasons("kubelet/reference.rs", "use crate::text::clip;\n").is_empty());
    assert_eq!(
        reasons("text.rs", "use crate::kubelet::reference;\n").len(),
        1
    );
    let server = "use crate::cli::certs;\nuse crate::controller::leader;\nuse crate::text::clip;\n";
    assert!(reasons("server/mod.rs", server).is_empty());
    assert_eq!(
        reasons("cli/explain.rs", "use crate::server::answer;\n").len(),
        1
    );
}

#[test]
fn files_outside_the_layers_are_reported() {
    let found = reasons("util/misc.rs", "pub fn f() {}\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("`util` is in no layer"));
    let found = reasons("state/crd.rs", "use crate::helpers::x;\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("`helpers` is not a layer"));
}

#[test]
fn a_cycle_inside_a_layer_is_reported_with_its_imports() {
    let files = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(path, code)| ((*path).to_owned(), (*code).to_owned()))
            .collect()
    };
    // The cycle the controller had: the reconciler used minting, minting used its backoff.
    let cycle = layer_cycles(&files(&[
        (
            "controller/cluster_pull_secret/mod.rs",
            "use crate::controller::minting::{self, MintState};\n",
        ),
        (
            "controller/minting.rs",
            "//! Minting.\n\nuse crate::controller::cluster_pull_secret::retry_delay;\n",
        ),
        ("controller/backoff.rs", "use std::time::Duration;\n"),
    ]));
    assert_eq!(
        cycle,
        ["controller::cluster_pull_secret -> controller::minting \
             (src/controller/cluster_pull_secret/mod.rs:1), controller::minting -> \
             controller::cluster_pull_secret (src/controller/minting.rs:3)"]
    );
    // Through super:: paths and three modules; a submodule's `super::*` is its own module.
    let three = layer_cycles(&files(&[
        ("cluster/a.rs", "use super::b::X;\n"),
        ("cluster/b/mod.rs", "use super::{c, d};\n"),
        (
            "cluster/b/inner.rs",
            "use super::*;\nuse super::super::c::Z;\n",
        ),
        ("cluster/c.rs", "fn f() { crate::cluster::a::g(); }\n"),
    ]));
    assert_eq!(three.len(), 1, "{three:?}");
    assert!(
        three[0].starts_with("cluster::a -> cluster::b"),
        "{three:?}"
    );
    // Without the step back there is no cycle; test code does not count.
    assert!(
        layer_cycles(&files(&[
            (
                "controller/cluster_pull_secret/mod.rs",
                "use crate::controller::backoff::retry_delay;\n"
            ),
            (
                "controller/minting.rs",
                "use crate::controller::backoff::retry_delay;\n"
            ),
            (
                "controller/backoff.rs",
                "#[cfg(test)]\nmod tests {\n    use crate::controller::minting::x;\n}\n",
            ),
        ]))
        .is_empty()
    );
}
