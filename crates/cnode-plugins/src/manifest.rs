//! `plugin.toml`: what a plugin is and which capabilities it asks for.
//!
//! ```toml
//! id = "org.cnode.events"
//! name = "Events"
//! version = "0.1.0"
//! api-version = "0.1"
//! description = "Upcoming events of a region."
//! routes = ["/", "/events/*"]
//!
//! [[capabilities]]
//! resource = "records"
//! access = "read"
//! scope = { collections = ["org.cnode.events"], regions = ["u33d"] }
//! ```
//!
//! Parsing is strict (unknown fields are refused) and every problem names the
//! field it is about: `capabilities[1].access: expected read, write or admin`.
//!
//! What a capability allows:
//!
//! - `records`: `read` → `records.query` (and `on-record` delivery), `write` →
//!   also `records.publish`. Scope `collections` (exact names, or a prefix
//!   ending in `.*`) and `regions` (geohash prefixes of at most 4
//!   characters); an empty list means any, except that `write` must name its
//!   collections.
//! - `blobs`: `read` → `get`, `write` → also `put`. No scope.
//! - `kv`: `read` → `get` / `list-keys`, `write` → also `set` / `delete`. No
//!   scope (the store is private to the plugin anyway).
//! - `http`: `read` → `GET` / `HEAD`, `write` → any method. Scope `hosts`
//!   (required): `example.com`, `*.example.com` (subdomains only), optionally
//!   with `:port`.
//! - `log`, `clock`, `random`: always available; listing them is allowed and
//!   changes nothing.
//!
//! `admin` includes `write`, which includes `read`; no host function needs
//! `admin` yet.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The plugin API version this host implements (`cnode:plugin@0.1.x`).
pub const API_VERSION: &str = "0.1";

/// The longest plugin id, bytes (the registry's limit).
pub const MAX_ID_LEN: usize = 128;
/// The longest version string, bytes (the registry's limit).
pub const MAX_VERSION_LEN: usize = 32;
/// The longest name, bytes.
pub const MAX_NAME_LEN: usize = 128;
/// The longest description, bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// The most capabilities a manifest may ask for.
pub const MAX_CAPABILITIES: usize = 64;
/// The most routes.
pub const MAX_ROUTES: usize = 64;
/// The most entries in one scope list.
pub const MAX_SCOPE_ENTRIES: usize = 64;

/// A plugin id: reverse-domain, 2..=8 labels of `[a-z0-9-]`, at most 128
/// bytes — the same rule as the registry's API list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PluginId(String);

impl PluginId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PluginId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_id(s).map(|()| Self(s.to_owned()))
    }
}

impl TryFrom<String> for PluginId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_id(&s).map(|()| Self(s))
    }
}

impl From<PluginId> for String {
    fn from(id: PluginId) -> Self {
        id.0
    }
}

fn check_id(s: &str) -> Result<(), String> {
    if s.len() > MAX_ID_LEN {
        return Err(format!("{} bytes, the limit is {MAX_ID_LEN}", s.len()));
    }
    let labels: Vec<&str> = s.split('.').collect();
    if !(2..=8).contains(&labels.len()) {
        return Err(format!(
            "{s:?} has {} labels; a reverse-domain id has 2 to 8 (like org.example.events)",
            labels.len()
        ));
    }
    if labels.iter().any(|l| l.is_empty()) {
        return Err(format!("{s:?} has an empty label"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "{s:?} contains {c:?}; only lowercase a-z, 0-9, '-' and '.' are allowed"
        ));
    }
    Ok(())
}

/// A host resource a capability is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    /// Regional records.
    Records,
    /// Content-addressed blobs.
    Blobs,
    /// The plugin's private key-value store.
    Kv,
    /// Outgoing HTTP.
    Http,
    /// The node's log.
    Log,
    /// Wall-clock time.
    Clock,
    /// Random bytes.
    Random,
}

impl Resource {
    /// All resources, in manifest order.
    pub const ALL: [Resource; 7] = [
        Resource::Records,
        Resource::Blobs,
        Resource::Kv,
        Resource::Http,
        Resource::Log,
        Resource::Clock,
        Resource::Random,
    ];

    /// The manifest name.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Records => "records",
            Resource::Blobs => "blobs",
            Resource::Kv => "kv",
            Resource::Http => "http",
            Resource::Log => "log",
            Resource::Clock => "clock",
            Resource::Random => "random",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a resource: each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read.
    Read,
    /// Read and write.
    Write,
    /// Everything (reserved: no host function needs more than write yet).
    Admin,
}

impl Access {
    /// The manifest name.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a capability applies; an empty list means "any" (see the module
/// docs for which resources take which lists).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scope {
    /// Record collections: exact names or prefixes ending in `.*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
    /// Regions: geohash prefixes of 1 to 4 characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// HTTP hosts: `example.com`, `*.example.com`, optionally `:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

impl Scope {
    fn is_empty(&self) -> bool {
        self.collections.is_empty() && self.regions.is_empty() && self.hosts.is_empty()
    }

    /// Whether `collection` is covered (any when the list is empty).
    pub fn covers_collection(&self, collection: &str) -> bool {
        self.collections.is_empty()
            || self.collections.iter().any(|c| match c.strip_suffix('*') {
                Some(prefix) => collection.starts_with(prefix) && collection.len() > prefix.len(),
                None => c == collection,
            })
    }

    /// Whether `geohash` (a region or a finer cell) is covered (any when the
    /// list is empty).
    pub fn covers_region(&self, geohash: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| geohash.starts_with(r.as_str()))
    }

    /// Whether `host` on `port` is covered. Unlike the other lists, an empty
    /// host list covers nothing.
    pub fn covers_host(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|pattern| {
            let (name, want_port) = split_port(pattern);
            if want_port.is_some_and(|p| p != port) {
                return false;
            }
            match name.strip_prefix("*.") {
                Some(domain) => {
                    host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}"))
                }
                None => host == name,
            }
        })
    }
}

/// Splits `host[:port]`; an IPv6 literal must be bracketed.
fn split_port(pattern: &str) -> (&str, Option<u16>) {
    match pattern.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || name.starts_with('[') => match port.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (pattern, None),
        },
        _ => (pattern, None),
    }
}

/// One capability: a resource, an access level and a scope. Used both for
/// what a manifest requests and for what the user granted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Capability {
    /// The resource.
    pub resource: Resource,
    /// The access level.
    pub access: Access,
    /// Where it applies.
    #[serde(default, skip_serializing_if = "Scope::is_empty")]
    pub scope: Scope,
}

impl Capability {
    /// A capability without scope.
    pub fn new(resource: Resource, access: Access) -> Self {
        Self {
            resource,
            access,
            scope: Scope::default(),
        }
    }

    /// The same capability with `collections`.
    pub fn collections<S: Into<String>>(
        mut self,
        collections: impl IntoIterator<Item = S>,
    ) -> Self {
        self.scope.collections = collections.into_iter().map(Into::into).collect();
        self
    }

    /// The same capability with `regions`.
    pub fn regions<S: Into<String>>(mut self, regions: impl IntoIterator<Item = S>) -> Self {
        self.scope.regions = regions.into_iter().map(Into::into).collect();
        self
    }

    /// The same capability with `hosts`.
    pub fn hosts<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        self.scope.hosts = hosts.into_iter().map(Into::into).collect();
        self
    }
}

/// A route a plugin answers: an exact path (`/feed.ics`) or a prefix ending
/// in `/*` (`/events/*` matches `/events` and everything below it; `/*`
/// matches every path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Route(String);

impl Route {
    /// Whether `path` (starting with `/`, no query) is this route.
    pub fn matches(&self, path: &str) -> bool {
        match self.0.strip_suffix("/*") {
            Some(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            None => path == self.0,
        }
    }

    /// The route as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Route {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if !s.starts_with('/') {
            return Err(format!("{s:?} does not start with '/'"));
        }
        if s.len() > 256 {
            return Err(format!("{} bytes, the limit is 256", s.len()));
        }
        let body = s.strip_suffix("/*").unwrap_or(&s);
        if body.contains('*') {
            return Err(format!("{s:?}: '*' is only allowed as a final \"/*\""));
        }
        if body.contains("//") || body.chars().any(|c| c.is_control() || c == '?' || c == '#') {
            return Err(format!("{s:?} is not a plain path"));
        }
        Ok(Self(s))
    }
}

impl From<Route> for String {
    fn from(r: Route) -> Self {
        r.0
    }
}

/// A validated `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The plugin id (the service id in the registry's API list).
    pub id: PluginId,
    /// A short human name.
    pub name: String,
    /// The plugin's version.
    pub version: semver::Version,
    /// The plugin API version it was built against (`"0.1"`).
    pub api_version: String,
    /// What it does, for the user approving it.
    pub description: String,
    /// The capabilities it asks for.
    pub capabilities: Vec<Capability>,
    /// The paths it answers.
    pub routes: Vec<Route>,
    /// How often the node calls the plugin's `tick` export
    /// (`tick-every-secs`, 10 s to 1 day). `None`: never — a plugin with no
    /// periodic work costs nothing between calls.
    pub tick_every: Option<std::time::Duration>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML of the manifest's shape (includes unknown fields).
    #[error("plugin.toml: {0}")]
    Syntax(String),
    /// A field has a value the host does not accept.
    #[error("plugin.toml: {field}: {reason}")]
    Invalid {
        /// The field, as a path: `capabilities[1].access`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The manifest as written: enums as strings so that a bad value is reported
/// with its field path rather than as a serde message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManifest {
    id: String,
    name: String,
    version: String,
    api_version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    capabilities: Vec<RawCapability>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    tick_every_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapability {
    resource: String,
    access: String,
    #[serde(default)]
    scope: Scope,
}

/// The shortest `tick-every-secs`.
pub const MIN_TICK_SECS: u64 = 10;
/// The longest `tick-every-secs` (a day).
pub const MAX_TICK_SECS: u64 = 86_400;

const GEOHASH_ALPHABET: &str = "0123456789bcdefghjkmnpqrstuvwxyz";

impl Manifest {
    /// Parses and validates `plugin.toml` text.
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| ManifestError::Syntax(e.to_string().trim_end().to_owned()))?;

        let id: PluginId = raw.id.parse().map_err(|reason| invalid("id", reason))?;
        if raw.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if raw.name.len() > MAX_NAME_LEN {
            return Err(invalid(
                "name",
                format!("{} bytes, the limit is {MAX_NAME_LEN}", raw.name.len()),
            ));
        }
        if raw.version.len() > MAX_VERSION_LEN {
            return Err(invalid(
                "version",
                format!(
                    "{} bytes, the limit is {MAX_VERSION_LEN}",
                    raw.version.len()
                ),
            ));
        }
        let version = semver::Version::parse(&raw.version).map_err(|e| {
            invalid(
                "version",
                format!("{:?} is not a semantic version: {e}", raw.version),
            )
        })?;
        if raw.api_version != API_VERSION {
            return Err(invalid(
                "api-version",
                format!(
                    "{:?} is not supported; this node implements plugin API {API_VERSION:?}",
                    raw.api_version
                ),
            ));
        }
        if raw.description.len() > MAX_DESCRIPTION_LEN {
            return Err(invalid(
                "description",
                format!(
                    "{} bytes, the limit is {MAX_DESCRIPTION_LEN}",
                    raw.description.len()
                ),
            ));
        }
        if raw.capabilities.len() > MAX_CAPABILITIES {
            return Err(invalid(
                "capabilities",
                format!(
                    "{} entries, the limit is {MAX_CAPABILITIES}",
                    raw.capabilities.len()
                ),
            ));
        }
        let capabilities = raw
            .capabilities
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.validate(&format!("capabilities[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if raw.routes.len() > MAX_ROUTES {
            return Err(invalid(
                "routes",
                format!("{} entries, the limit is {MAX_ROUTES}", raw.routes.len()),
            ));
        }
        let routes = raw
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Route::try_from(r).map_err(|reason| invalid(format!("routes[{i}]"), reason))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let tick_every = match raw.tick_every_secs {
            None => None,
            Some(secs @ MIN_TICK_SECS..=MAX_TICK_SECS) => {
                Some(std::time::Duration::from_secs(secs))
            }
            Some(secs) => {
                return Err(invalid(
                    "tick-every-secs",
                    format!("{secs} is outside {MIN_TICK_SECS}..={MAX_TICK_SECS} seconds"),
                ));
            }
        };

        Ok(Self {
            id,
            name: raw.name,
            version,
            api_version: raw.api_version,
            description: raw.description,
            capabilities,
            routes,
            tick_every,
        })
    }

    /// Whether one of the routes matches `path`.
    pub fn has_route(&self, path: &str) -> bool {
        self.routes.iter().any(|r| r.matches(path))
    }
}

impl RawCapability {
    fn validate(self, at: &str) -> Result<Capability, ManifestError> {
        let resource = Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == self.resource)
            .ok_or_else(|| {
                invalid(
                    format!("{at}.resource"),
                    format!(
                        "{:?} is not a resource; expected records, blobs, kv, http, log, clock or random",
                        self.resource
                    ),
                )
            })?;
        let access = [Access::Read, Access::Write, Access::Admin]
            .into_iter()
            .find(|a| a.as_str() == self.access)
            .ok_or_else(|| invalid(format!("{at}.access"), "expected read, write or admin"))?;
        let capability = Capability {
            resource,
            access,
            scope: self.scope,
        };
        check_scope(&capability, at)?;
        Ok(capability)
    }
}

/// Checks that the scope's lists fit the resource and hold well-formed
/// entries.
pub(crate) fn check_scope(c: &Capability, at: &str) -> Result<(), ManifestError> {
    let s = &c.scope;
    for (name, list) in [
        ("collections", &s.collections),
        ("regions", &s.regions),
        ("hosts", &s.hosts),
    ] {
        if list.len() > MAX_SCOPE_ENTRIES {
            return Err(invalid(
                format!("{at}.scope.{name}"),
                format!("{} entries, the limit is {MAX_SCOPE_ENTRIES}", list.len()),
            ));
        }
    }
    let takes_records_scope = c.resource == Resource::Records;
    let takes_hosts = c.resource == Resource::Http;
    if !takes_records_scope && !s.collections.is_empty() {
        return Err(invalid(
            format!("{at}.scope.collections"),
            format!("{} takes no collections", c.resource),
        ));
    }
    if !takes_records_scope && !s.regions.is_empty() {
        return Err(invalid(
            format!("{at}.scope.regions"),
            format!("{} takes no regions", c.resource),
        ));
    }
    if !takes_hosts && !s.hosts.is_empty() {
        return Err(invalid(
            format!("{at}.scope.hosts"),
            format!("{} takes no hosts", c.resource),
        ));
    }
    for (i, col) in s.collections.iter().enumerate() {
        let name = col.strip_suffix(".*").unwrap_or(col);
        let labels: Vec<&str> = name.split('.').collect();
        let ok = col.len() <= 128
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
            && (labels.len() >= 3 || col.ends_with(".*"));
        if !ok {
            return Err(invalid(
                format!("{at}.scope.collections[{i}]"),
                format!(
                    "{col:?} is not a collection name (like org.cnode.events) or prefix (like org.cnode.*)"
                ),
            ));
        }
    }
    for (i, region) in s.regions.iter().enumerate() {
        if region.is_empty()
            || region.len() > 4
            || !region.chars().all(|c| GEOHASH_ALPHABET.contains(c))
        {
            return Err(invalid(
                format!("{at}.scope.regions[{i}]"),
                format!("{region:?} is not a region (a geohash of 1 to 4 characters, like u33d)"),
            ));
        }
    }
    for (i, host) in s.hosts.iter().enumerate() {
        let (name, _) = split_port(host);
        let name = name.strip_prefix("*.").unwrap_or(name);
        let ok = !name.is_empty()
            && name.len() <= 253
            && (name.starts_with('[') && name.ends_with(']')
                || name.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                }));
        if !ok {
            return Err(invalid(
                format!("{at}.scope.hosts[{i}]"),
                format!(
                    "{host:?} is not a host name (like api.example.com, *.example.com or example.com:8443)"
                ),
            ));
        }
    }
    if c.resource == Resource::Records && c.access >= Access::Write && s.collections.is_empty() {
        return Err(invalid(
            format!("{at}.scope.collections"),
            "records write needs the collections it may publish to",
        ));
    }
    if c.resource == Resource::Http && s.hosts.is_empty() {
        return Err(invalid(
            format!("{at}.scope.hosts"),
            "http needs the hosts it may reach",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
