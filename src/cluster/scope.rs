//! Which namespaces the injector serves: the whole cluster (the default), or a listed few
//! (namespaced mode), where every read and write of Secrets and Pods is made per namespace so
//! that a Role in each of them is all the RBAC it needs.

use std::collections::BTreeSet;

use k8s_openapi::NamespaceResourceScope;
use kube::{Api, Client, Resource};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace, through cluster-wide calls.
    #[default]
    Cluster,
    /// Only these namespaces (never empty), each through calls of its own.
    Namespaces(BTreeSet<String>),
}

impl Scope {
    /// The scope for `--namespaces`: cluster-wide when none are given (empty names are
    /// ignored).
    pub fn new<I, S>(namespaces: I) -> Scope
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let namespaces: BTreeSet<String> = namespaces
            .into_iter()
            .map(|namespace| namespace.as_ref().trim().to_owned())
            .filter(|namespace| !namespace.is_empty())
            .collect();
        if namespaces.is_empty() {
            Scope::Cluster
        } else {
            Scope::Namespaces(namespaces)
        }
    }

    /// Whether the injector serves `namespace`.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Namespaces(namespaces) => namespaces.contains(namespace),
        }
    }

    pub fn is_namespaced(&self) -> bool {
        matches!(self, Scope::Namespaces(_))
    }

    /// The listed namespaces, in order; `None` when cluster-wide.
    pub fn namespaces(&self) -> Option<&BTreeSet<String>> {
        match self {
            Scope::Cluster => None,
            Scope::Namespaces(namespaces) => Some(namespaces),
        }
    }

    /// One API handle per part of the scope, with the namespace it covers: a single
    /// cluster-wide one (`None`), or one per listed namespace.
    pub fn apis<K>(&self, client: &Client) -> Vec<(Option<String>, Api<K>)>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Scope::Cluster => vec![(None, Api::all(client.clone()))],
            Scope::Namespaces(namespaces) => namespaces
                .iter()
                .map(|namespace| {
                    (
                        Some(namespace.clone()),
                        Api::namespaced(client.clone(), namespace),
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_namespaces_means_the_whole_cluster() {
        assert_eq!(Scope::new(Vec::<String>::new()), Scope::Cluster);
        assert_eq!(Scope::new(["", " "]), Scope::Cluster);
        assert!(Scope::Cluster.contains("anything"));
        assert!(Scope::Cluster.namespaces().is_none());
    }

    #[test]
    fn listed_namespaces_are_the_only_ones_served() {
        let scope = Scope::new(["shop", "billing", "shop"]);
        assert!(scope.is_namespaced());
        assert!(scope.contains("shop") && scope.contains("billing"));
        assert!(!scope.contains("other"));
        let listed: Vec<&str> = scope
            .namespaces()
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(listed, ["billing", "shop"]);
    }
}
