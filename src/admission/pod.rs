//! The few fields of a Pod (or pod template) the decision reads.
//!
//! Deserializing only these, instead of a full `k8s_openapi` Pod, keeps the admission hot path
//! cheap: serde skips everything else (managedFields, other volumes, ...) without building it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::state::snapshot::INJECT_LABEL;
use crate::text::quote;

/// Pod annotation that lists what was injected, so `kubectl get pod -o yaml` explains itself.
pub const INJECTED_ANNOTATION: &str = "pullsecret-injector.io/injected";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    #[serde(default, deserialize_with = "read_metadata")]
    pub metadata: PodMeta,
    #[serde(default)]
    pub spec: Option<PodSpecView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMeta {
    /// Whether the object has a `metadata` map at all (a pod template often has none): the
    /// patch must then create it.
    #[serde(skip)]
    pub present: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub generate_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only the labels the decision reads (the opt-out label).
    #[serde(default, deserialize_with = "read_labels")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Only the annotations the decision reads; `None` when the field is absent or null: the
    /// patch must then create the map.
    #[serde(default, deserialize_with = "read_annotations")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `metadata`, remembering that it was there; absent and `null` read as not present.
fn read_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PodMeta, D::Error> {
    let metadata = Option::<PodMeta>::deserialize(deserializer)?;
    Ok(metadata
        .map(|metadata| PodMeta {
            present: true,
            ..metadata
        })
        .unwrap_or_default())
}

fn read_labels<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    deserializer.deserialize_option(Kept(&[INJECT_LABEL]))
}

fn read_annotations<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    deserializer.deserialize_option(Kept(&[INJECTED_ANNOTATION]))
}

/// Reads a string map keeping only the listed keys. A `kubectl apply`-made pod carries its
/// whole manifest in the `last-applied-configuration` annotation; skipping such values instead
/// of copying them is a large share of the parse.
struct Kept(&'static [&'static str]);

impl<'de> Visitor<'de> for Kept {
    type Value = Option<BTreeMap<String, String>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a map of strings")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut kept = BTreeMap::new();
        while let Some(Key(key)) = map.next_key()? {
            if self.0.contains(&key.as_ref()) {
                kept.insert(key.into_owned(), map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Some(kept))
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
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
    /// Only the image volumes (`volumes[].image`): the kubelet pulls their references with the
    /// pod's pull secrets, as it pulls container images.
    #[serde(default, deserialize_with = "read_image_volumes")]
    pub volumes: Option<Vec<VolumeView>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerView {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VolumeView {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<ImageVolumeView>,
}

/// `volumes[].image`; its `pullPolicy` is not read: whatever the policy, a pull needs the
/// same credentials.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageVolumeView {
    #[serde(default)]
    pub reference: Option<String>,
}

fn read_image_volumes<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<VolumeView>>, D::Error> {
    let volumes = Option::<Vec<VolumeView>>::deserialize(deserializer)?;
    Ok(volumes.map(|list| {
        list.into_iter()
            .filter(|volume| volume.image.is_some())
            .collect()
    }))
}

/// What the kubelet pulls an image for. Serialized as `{"container": NAME}` or
/// `{"imageVolume": NAME}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ImageUser<'a> {
    /// A container (init, regular or ephemeral), by name.
    #[serde(rename = "container")]
    Container(Cow<'a, str>),
    /// An image volume, by name: `volumes[].image.reference`.
    #[serde(rename = "imageVolume")]
    Volume(Cow<'a, str>),
}

impl ImageUser<'_> {
    pub fn into_owned(self) -> ImageUser<'static> {
        match self {
            ImageUser::Container(name) => ImageUser::Container(Cow::Owned(name.into_owned())),
            ImageUser::Volume(name) => ImageUser::Volume(Cow::Owned(name.into_owned())),
        }
    }
}

/// `container "web"` or `image volume "models"`, as warnings name them.
impl fmt::Display for ImageUser<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageUser::Container(name) => write!(f, "container {}", quote(name)),
            ImageUser::Volume(name) => write!(f, "image volume {}", quote(name)),
        }
    }
}

/// One image of a pod and what it is pulled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodImage<'a> {
    pub user: ImageUser<'a>,
    pub image: &'a str,
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

    /// Every image the kubelet pulls for the pod, with the same pull secrets and the same
    /// lookup: the containers' (in [`PodView::containers`] order), then the image volumes'.
    /// An absent or empty image (a template's, left for a controller to fill in) is skipped.
    pub fn images(&self) -> impl Iterator<Item = PodImage<'_>> {
        let containers = self.containers().map(|container| {
            (
                ImageUser::Container(Cow::Borrowed(container.name.as_deref().unwrap_or(""))),
                container.image.as_deref(),
            )
        });
        let volumes = self
            .spec
            .as_ref()
            .and_then(|spec| spec.volumes.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|volume| {
                (
                    ImageUser::Volume(Cow::Borrowed(volume.name.as_deref().unwrap_or(""))),
                    volume
                        .image
                        .as_ref()
                        .and_then(|image| image.reference.as_deref()),
                )
            });
        containers.chain(volumes).filter_map(|(user, image)| {
            let image = image.filter(|image| !image.is_empty())?;
            Some(PodImage { user, image })
        })
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(value: serde_json::Value) -> PodMeta {
        let text = value.to_string();
        serde_json::from_str::<PodView>(&text)
            .expect("from bytes")
            .metadata
    }

    #[test]
    fn only_the_entries_the_decision_reads_are_kept() {
        let metadata = meta(json!({"metadata": {
            "labels": {"app": "web", INJECT_LABEL: "false", "odd": 42},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Pod\"}",
                INJECTED_ANNOTATION: "earlier",
                "nested": {"not": "a string"},
            },
        }}));
        assert_eq!(
            metadata.labels,
            Some(BTreeMap::from([(
                INJECT_LABEL.to_owned(),
                "false".to_owned()
            )]))
        );
        assert_eq!(
            metadata.annotations,
            Some(BTreeMap::from([(
                INJECTED_ANNOTATION.to_owned(),
                "earlier".to_owned()
            )]))
        );
    }

    #[test]
    fn an_absent_or_null_map_differs_from_an_empty_one() {
        assert_eq!(meta(json!({"metadata": {}})).annotations, None);
        assert_eq!(
            meta(json!({"metadata": {"annotations": null}})).annotations,
            None
        );
        assert_eq!(
            meta(json!({"metadata": {"annotations": {"other": "x"}}})).annotations,
            Some(BTreeMap::new())
        );
    }

    #[test]
    fn escaped_keys_and_values_are_read_and_kept_values_must_be_strings() {
        let escaped = r#"{"metadata":{"labels":{"pullsecret-injector.io\/inject":"f\u0061lse"}}}"#;
        let pod: PodView = serde_json::from_str(escaped).expect("parses");
        assert_eq!(pod.label(INJECT_LABEL), Some("false"));
        let wrong = r#"{"metadata":{"labels":{"pullsecret-injector.io/inject":false}}}"#;
        assert!(serde_json::from_str::<PodView>(wrong).is_err());
        // From a manifest already parsed (the `apply` command).
        let value = json!({"metadata": {"annotations": {INJECTED_ANNOTATION: "x", "y": 1}}});
        let pod = PodView::deserialize(&value).expect("from a value");
        assert_eq!(pod.annotation(INJECTED_ANNOTATION), Some("x"));
    }

    #[test]
    fn images_are_the_containers_then_the_image_volumes() {
        let value = json!({"spec": {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "app", "image": "c"}, {"name": "noimage"}, {"image": ""}],
            "ephemeralContainers": [{"name": "debug", "image": "e"}],
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "models", "image": {"reference": "v", "pullPolicy": "Never"}},
                {"name": "unset", "image": {}},
                {"image": {"reference": "nameless"}},
            ],
        }});
        let pod = PodView::deserialize(&value).expect("reads");
        let images: Vec<(String, &str)> = pod
            .images()
            .map(|image| (image.user.to_string(), image.image))
            .collect();
        assert_eq!(
            images,
            [
                ("container \"init\"".to_owned(), "i"),
                ("container \"app\"".to_owned(), "c"),
                ("container \"debug\"".to_owned(), "e"),
                ("image volume \"models\"".to_owned(), "v"),
                ("image volume \"\"".to_owned(), "nameless"),
            ]
        );
        // Only image volumes are kept.
        let volumes = pod.spec.and_then(|spec| spec.volumes).unwrap_or_default();
        assert_eq!(volumes.len(), 3);
        let user = serde_json::to_value(ImageUser::Volume(Cow::Borrowed("models"))).expect("json");
        assert_eq!(user, json!({"imageVolume": "models"}));
    }
}
