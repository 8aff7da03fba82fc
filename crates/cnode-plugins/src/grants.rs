//! What the user allowed a plugin to do, and the checks host calls make.

use serde::{Deserialize, Serialize};

use crate::manifest::{Access, Capability, Manifest, Resource};

/// The capabilities the user approved: a subset of what the manifest
/// requested. The host stores them per plugin and can replace them at any
/// time ([`crate::PluginHost::set_grants`]); a call sees the grants as they
/// were when it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Grants(Vec<Capability>);

/// Why a grant list does not fit a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "grants[{index}] ({resource}:{access}) is not one of the capabilities the manifest requests"
)]
pub struct NotRequested {
    /// Which grant.
    pub index: usize,
    /// Its resource.
    pub resource: Resource,
    /// Its access.
    pub access: Access,
}

impl Grants {
    /// These capabilities.
    pub fn new(capabilities: impl IntoIterator<Item = Capability>) -> Self {
        Self(capabilities.into_iter().collect())
    }

    /// Nothing granted.
    pub fn none() -> Self {
        Self::default()
    }

    /// Everything the manifest requests.
    pub fn all_requested(manifest: &Manifest) -> Self {
        Self(manifest.capabilities.clone())
    }

    /// The granted capabilities.
    pub fn capabilities(&self) -> &[Capability] {
        &self.0
    }

    /// Checks that every grant is one the manifest requested (the user
    /// approves or refuses requested capabilities; nothing else can be
    /// granted).
    pub fn check_against(&self, manifest: &Manifest) -> Result<(), NotRequested> {
        match self
            .0
            .iter()
            .enumerate()
            .find(|(_, g)| !manifest.capabilities.contains(g))
        {
            Some((index, g)) => Err(NotRequested {
                index,
                resource: g.resource,
                access: g.access,
            }),
            None => Ok(()),
        }
    }

    fn with(&self, resource: Resource, access: Access) -> impl Iterator<Item = &Capability> {
        self.0
            .iter()
            .filter(move |c| c.resource == resource && c.access >= access)
    }

    /// Whether any grant gives `access` to `resource` (scope aside).
    pub fn has(&self, resource: Resource, access: Access) -> bool {
        self.with(resource, access).next().is_some()
    }

    /// Checks a records query: some `records:read` grant must cover the
    /// query's collection and region (a grant limited to some collections
    /// or regions needs the query to name one of them).
    pub fn check_query(
        &self,
        collection: Option<&str>,
        region: Option<&str>,
    ) -> Result<(), String> {
        if !self.has(Resource::Records, Access::Read) {
            return Err("records:read is not granted".into());
        }
        let ok = self.with(Resource::Records, Access::Read).any(|c| {
            (c.scope.collections.is_empty()
                || collection.is_some_and(|col| c.scope.covers_collection(col)))
                && (c.scope.regions.is_empty() || region.is_some_and(|r| c.scope.covers_region(r)))
        });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "records:read is not granted for collection {} in region {}",
                collection.map_or("(any)".into(), |c| format!("{c:?}")),
                region.map_or("(any)".into(), |r| format!("{r:?}")),
            ))
        }
    }

    /// Whether a stored record may be shown to the plugin (query results and
    /// `on-record`).
    pub fn may_read(&self, collection: &str, geohash: &str) -> bool {
        self.with(Resource::Records, Access::Read)
            .any(|c| c.scope.covers_collection(collection) && c.scope.covers_region(geohash))
    }

    /// Checks `records.publish`: some `records:write` grant must cover the
    /// collection and the region.
    pub fn check_publish(&self, collection: &str, geohash: &str) -> Result<(), String> {
        if !self.has(Resource::Records, Access::Write) {
            return Err("records:write is not granted".into());
        }
        if self
            .with(Resource::Records, Access::Write)
            .any(|c| c.scope.covers_collection(collection) && c.scope.covers_region(geohash))
        {
            Ok(())
        } else {
            Err(format!(
                "records:write is not granted for collection {collection:?} in region {geohash:?}"
            ))
        }
    }

    /// Checks an outgoing HTTP request: `http:read` allows `GET` and
    /// `HEAD`, `http:write` any method; the host must be listed.
    pub fn check_http(&self, method: &str, host: &str, port: u16) -> Result<(), String> {
        let need = if matches!(method, "GET" | "HEAD") {
            Access::Read
        } else {
            Access::Write
        };
        if !self.has(Resource::Http, need) {
            return Err(format!("http:{need} is not granted (needed for {method})"));
        }
        if self
            .with(Resource::Http, need)
            .any(|c| c.scope.covers_host(host, port))
        {
            Ok(())
        } else {
            Err(format!("http to {host}:{port} is not granted"))
        }
    }

    /// Checks a resource without scope (blobs, kv).
    pub fn check(&self, resource: Resource, access: Access) -> Result<(), String> {
        if self.has(resource, access) {
            Ok(())
        } else {
            Err(format!("{resource}:{access} is not granted"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants::new([
            Capability::new(Resource::Records, Access::Read)
                .collections(["org.cnode.events"])
                .regions(["u33d"]),
            Capability::new(Resource::Records, Access::Write).collections(["org.cnode.notices"]),
            Capability::new(Resource::Http, Access::Read).hosts(["api.example.com"]),
            Capability::new(Resource::Kv, Access::Read),
        ])
    }

    #[test]
    fn records_read_needs_the_scope_named() {
        let g = grants();
        assert!(
            g.check_query(Some("org.cnode.events"), Some("u33d"))
                .is_ok()
        );
        // Write includes read, and that grant has no region limit.
        assert!(g.check_query(Some("org.cnode.notices"), None).is_ok());
        assert!(
            g.check_query(Some("org.cnode.events"), None).is_err(),
            "region-limited grant, no region"
        );
        assert!(
            g.check_query(None, Some("u33d")).is_err(),
            "collection-limited grants, no collection"
        );
        assert!(
            g.check_query(Some("org.cnode.events"), Some("u3")).is_err(),
            "a wider region than granted"
        );
        assert!(g.may_read("org.cnode.events", "u33dc0"));
        assert!(!g.may_read("org.cnode.events", "gcpv"));
        assert!(g.may_read("org.cnode.notices", "gcpv"));
        assert!(Grants::none().check_query(None, None).is_err());
    }

    #[test]
    fn publish_http_and_plain_resources() {
        let g = grants();
        assert!(g.check_publish("org.cnode.notices", "u33dc0").is_ok());
        let e = g.check_publish("org.cnode.events", "u33dc0").unwrap_err();
        assert_eq!(
            e,
            "records:write is not granted for collection \"org.cnode.events\" in region \"u33dc0\""
        );
        assert!(g.check_http("GET", "api.example.com", 443).is_ok());
        assert_eq!(
            g.check_http("POST", "api.example.com", 443).unwrap_err(),
            "http:write is not granted (needed for POST)"
        );
        assert_eq!(
            g.check_http("GET", "evil.example.net", 443).unwrap_err(),
            "http to evil.example.net:443 is not granted"
        );
        assert!(g.check(Resource::Kv, Access::Read).is_ok());
        assert_eq!(
            g.check(Resource::Kv, Access::Write).unwrap_err(),
            "kv:write is not granted"
        );
        assert!(g.check(Resource::Blobs, Access::Read).is_err());
    }
}
