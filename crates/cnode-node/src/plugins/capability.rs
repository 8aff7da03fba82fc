//! The capability syntax of `cnode plugin grant|revoke` and the install
//! API: `resource:access[:collections=a,b][:regions=…][:hosts=…]`, and
//! choosing grants from what a manifest requests.

use cnode_plugins::{Capability, Grants, Manifest, Resource, Scope};

use super::PluginError;

/// Writes a capability as `resource:access[:collections=a,b][:regions=…][:hosts=…]`.
pub fn format_capability(c: &Capability) -> String {
    let mut s = format!("{}:{}", c.resource, c.access);
    for (key, list) in [
        ("collections", &c.scope.collections),
        ("regions", &c.scope.regions),
        ("hosts", &c.scope.hosts),
    ] {
        if !list.is_empty() {
            s.push_str(&format!(":{key}={}", list.join(",")));
        }
    }
    s
}

/// Parses `resource:access[:key=v1,v2…]…` with keys `collections`,
/// `regions` and `hosts` (a host may carry `:port`). Examples:
/// `records:read`, `records:write:collections=org.cnode.notices`,
/// `http:read:hosts=api.example.com:8443`.
pub fn parse_capability(s: &str) -> Result<Capability, String> {
    let s = s.trim();
    let mut parts = s.splitn(3, ':');
    let resource = parts.next().unwrap_or_default();
    let access = parts
        .next()
        .ok_or_else(|| format!("{s:?}: expected resource:access, like records:read"))?;
    let resource: Resource = serde_json::from_value(serde_json::Value::String(resource.into()))
        .map_err(|_| {
            format!(
                "{s:?}: unknown resource {resource:?} (one of {})",
                Resource::ALL.map(|r| r.as_str()).join(", ")
            )
        })?;
    let access = serde_json::from_value(serde_json::Value::String(access.into()))
        .map_err(|_| format!("{s:?}: unknown access {access:?} (one of read, write, admin)"))?;
    let mut scope = Scope::default();
    if let Some(rest) = parts.next() {
        // Segments split on ':'; one without '=' continues the previous
        // value (a host's port).
        let mut pairs: Vec<(String, String)> = Vec::new();
        for seg in rest.split(':') {
            match seg.split_once('=') {
                Some((k, v)) => pairs.push((k.to_owned(), v.to_owned())),
                None => match pairs.last_mut() {
                    Some((_, v)) => {
                        v.push(':');
                        v.push_str(seg);
                    }
                    None => return Err(format!("{s:?}: expected key=value after resource:access")),
                },
            }
        }
        for (k, v) in pairs {
            let values: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect();
            let list = match k.as_str() {
                "collections" => &mut scope.collections,
                "regions" => &mut scope.regions,
                "hosts" => &mut scope.hosts,
                _ => {
                    return Err(format!(
                        "{s:?}: unknown scope {k:?} (collections, regions or hosts)"
                    ));
                }
            };
            list.extend(values);
        }
    }
    Ok(Capability {
        resource,
        access,
        scope,
    })
}

/// Whether `spec` names `requested`: same resource and access, and the
/// same scope when `spec` gives one.
pub fn capability_matches(spec: &Capability, requested: &Capability) -> bool {
    spec.resource == requested.resource
        && spec.access == requested.access
        && (spec.scope == Scope::default() || spec.scope == requested.scope)
}

/// The manifest's requested capabilities that `specs` name (each spec must
/// name at least one).
pub fn select(manifest: &Manifest, specs: &[Capability]) -> Result<Grants, PluginError> {
    let mut out: Vec<Capability> = Vec::new();
    for spec in specs {
        let matched: Vec<&Capability> = manifest
            .capabilities
            .iter()
            .filter(|r| capability_matches(spec, r))
            .collect();
        if matched.is_empty() {
            return Err(PluginError::Invalid(format!(
                "{} is not a capability plugin {} requests (it requests: {})",
                format_capability(spec),
                manifest.id,
                manifest
                    .capabilities
                    .iter()
                    .map(format_capability)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for c in matched {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
    }
    Ok(Grants::new(out))
}

// ---------------------------------------------------------------- adapters

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_syntax_round_trips() {
        for s in [
            "records:read",
            "records:write:collections=org.cnode.notices",
            "records:read:collections=org.cnode.events,org.x.*:regions=w5q6",
            "http:read:hosts=api.example.com:8443,*.example.org",
            "kv:write",
        ] {
            let c = parse_capability(s).expect(s);
            assert_eq!(format_capability(&c), s);
        }
        assert_eq!(
            parse_capability("http:read:hosts=a.org:8443").map(|c| c.scope.hosts),
            Ok(vec!["a.org:8443".to_string()])
        );
        assert!(parse_capability("records").is_err());
        assert!(parse_capability("disk:read").is_err());
        assert!(parse_capability("records:own").is_err());
        assert!(parse_capability("records:read:colors=x").is_err());
    }
}
