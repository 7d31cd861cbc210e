// TEMPORARY STUB (replaced by the real module)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatch {
    Matched,
    Unparseable,
    PortDiffers {
        key_port: String,
        image_port: String,
    },
    LabelCount {
        key: usize,
        image: usize,
    },
    LabelMismatch {
        label: usize,
    },
    BadGlob {
        label: usize,
    },
    PathPrefix {
        key_path: String,
    },
}
pub fn index_key(raw_key: &str) -> Option<String> {
    let k = raw_key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.strip_suffix('/').unwrap_or(k);
    Some(k.replace("/v1", "").replace("/v2", ""))
}
pub fn match_key(index_key: &str, lookup: &str) -> KeyMatch {
    if lookup.starts_with(index_key) {
        KeyMatch::Matched
    } else {
        KeyMatch::Unparseable
    }
}
pub fn is_default_registry_match(lookup: &str) -> bool {
    lookup.starts_with("docker.io/")
}
#[derive(Debug, Clone)]
pub struct Keyring<T> {
    entries: Vec<(String, T)>,
}
impl<T: Clone + PartialEq> Keyring<T> {
    pub fn new<I, K>(owners: I) -> Self
    where
        I: IntoIterator<Item = (T, K)>,
        K: IntoIterator<Item = String>,
    {
        let mut entries = Vec::new();
        for (o, keys) in owners {
            for k in keys {
                if let Some(k) = index_key(&k) {
                    entries.push((k, o.clone()));
                }
            }
        }
        entries.sort_by(|a, b| b.0.cmp(&a.0));
        Keyring { entries }
    }
    pub fn lookup(&self, lookup: &str) -> Vec<&T> {
        let mut out: Vec<&T> = Vec::new();
        for (k, o) in &self.entries {
            if match_key(k, lookup) == KeyMatch::Matched && !out.contains(&o) {
                out.push(o);
            }
        }
        if out.is_empty() && is_default_registry_match(lookup) {
            for (k, o) in &self.entries {
                if k == "index.docker.io" && !out.contains(&o) {
                    out.push(o);
                }
            }
        }
        out
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
