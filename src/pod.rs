//! The few fields of a Pod (or pod template) the decision reads.
//!
//! Deserializing only these, instead of a full `k8s_openapi` Pod, keeps the admission hot path
//! cheap: serde skips everything else (managedFields, volumes, ...) without building it.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    #[serde(default)]
    pub metadata: PodMeta,
    #[serde(default)]
    pub spec: Option<PodSpecView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub generate_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// `None` when the field is absent or null: the patch must then create the map.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    #[serde(default)]
    pub init_containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    pub containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    pub ephemeral_containers: Option<Vec<ContainerView>>,
    /// `None` when absent or null: the patch must then add the whole list.
    #[serde(default)]
    pub image_pull_secrets: Option<Vec<SecretReference>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerView {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecretReference {
    #[serde(default)]
    pub name: Option<String>,
}

impl PodView {
    /// Every container in the order the kubelet starts them: init, regular, ephemeral.
    pub fn containers(&self) -> impl Iterator<Item = &ContainerView> {
        let spec = self.spec.as_ref();
        let list = move |pick: fn(&PodSpecView) -> &Option<Vec<ContainerView>>| {
            spec.and_then(|spec| pick(spec).as_deref())
                .unwrap_or_default()
                .iter()
        };
        list(|s| &s.init_containers)
            .chain(list(|s| &s.containers))
            .chain(list(|s| &s.ephemeral_containers))
    }

    /// Names already in `spec.imagePullSecrets`, in order.
    pub fn pull_secret_names(&self) -> impl Iterator<Item = &str> {
        self.spec
            .as_ref()
            .and_then(|spec| spec.image_pull_secrets.as_deref())
            .unwrap_or_default()
            .iter()
            .filter_map(|reference| reference.name.as_deref())
    }

    pub fn has_pull_secret_list(&self) -> bool {
        self.spec
            .as_ref()
            .is_some_and(|spec| spec.image_pull_secrets.is_some())
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// The name for logs: `name`, else `generateName` followed by `*`.
    pub fn display_name(&self) -> String {
        match (&self.metadata.name, &self.metadata.generate_name) {
            (Some(name), _) if !name.is_empty() => name.clone(),
            (_, Some(prefix)) => format!("{prefix}*"),
            _ => String::new(),
        }
    }
}
