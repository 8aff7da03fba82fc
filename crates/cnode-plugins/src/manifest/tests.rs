use super::*;

const GOOD: &str = r#"
id = "org.cnode.events"
name = "Events"
version = "0.1.0"
api-version = "0.1"
description = "Upcoming events of a region."
routes = ["/", "/events/*"]

[[capabilities]]
resource = "records"
access = "read"
scope = { collections = ["org.cnode.events"], regions = ["u33d"] }

[[capabilities]]
resource = "records"
access = "write"
scope = { collections = ["org.cnode.*"] }

[[capabilities]]
resource = "http"
access = "read"
scope = { hosts = ["api.example.com", "*.example.org:8443"] }

[[capabilities]]
resource = "kv"
access = "write"
"#;

fn err(text: &str) -> String {
    Manifest::from_toml(text).unwrap_err().to_string()
}

fn with(replace: &str, by: &str) -> String {
    assert!(GOOD.contains(replace), "{replace}");
    GOOD.replacen(replace, by, 1)
}

#[test]
fn parses_a_good_manifest() {
    let m = Manifest::from_toml(GOOD).unwrap();
    assert_eq!(m.id.as_str(), "org.cnode.events");
    assert_eq!(m.version, semver::Version::new(0, 1, 0));
    assert_eq!(m.capabilities.len(), 4);
    assert_eq!(m.capabilities[0].resource, Resource::Records);
    assert_eq!(m.capabilities[1].access, Access::Write);
    assert!(m.has_route("/"));
    assert!(m.has_route("/events"));
    assert!(m.has_route("/events/2026/05"));
    assert!(!m.has_route("/eventsx"));
    assert!(!m.has_route("/other"));
}

#[test]
fn errors_name_the_field() {
    assert_eq!(
        err(&with(
            "access = \"write\"\nscope = { collections",
            "access = \"own\"\nscope = { collections"
        )),
        "plugin.toml: capabilities[1].access: expected read, write or admin"
    );
    let e = err(&with("resource = \"kv\"", "resource = \"disk\""));
    assert!(
        e.starts_with("plugin.toml: capabilities[3].resource: \"disk\" is not a resource"),
        "{e}"
    );
    let e = err(&with("api-version = \"0.1\"", "api-version = \"0.2\""));
    assert!(
        e.contains(
            "api-version: \"0.2\" is not supported; this node implements plugin API \"0.1\""
        ),
        "{e}"
    );
    let e = err(&with("version = \"0.1.0\"", "version = \"1\""));
    assert!(
        e.contains("version: \"1\" is not a semantic version"),
        "{e}"
    );
    let e = err(&with("\"/events/*\"", "\"events\""));
    assert!(
        e.contains("routes[1]: \"events\" does not start with '/'"),
        "{e}"
    );
    let e = err(&with("\"/events/*\"", "\"/ev*nts\""));
    assert!(e.contains("routes[1]"), "{e}");
    let e = err(&with("regions = [\"u33d\"]", "regions = [\"u33da\"]"));
    assert!(
        e.contains("capabilities[0].scope.regions[0]: \"u33da\" is not a region"),
        "{e}"
    );
    let e = err(&with(
        "hosts = [\"api.example.com\",",
        "hosts = [\"https://api.example.com\",",
    ));
    assert!(e.contains("capabilities[2].scope.hosts[0]"), "{e}");
    let e = err(&with("name = \"Events\"", "name = \"  \""));
    assert!(e.contains("name: must not be empty"), "{e}");
}

#[test]
fn unknown_fields_are_refused() {
    let e = err(&with(
        "name = \"Events\"",
        "name = \"Events\"\nhomepage = \"x\"",
    ));
    assert!(e.contains("unknown field `homepage`"), "{e}");
    let e = err(&with(
        "access = \"read\"\nscope",
        "access = \"read\"\nexpires = 3\nscope",
    ));
    assert!(e.contains("unknown field `expires`"), "{e}");
    let e = err(&with(
        "regions = [\"u33d\"]",
        "regions = [\"u33d\"], paths = []",
    ));
    assert!(e.contains("unknown field `paths`"), "{e}");
    let e = err("id = \"org.a.b\"\nname = \"x\"\nversion = \"1.0.0\"");
    assert!(e.contains("missing field `api-version`"), "{e}");
}

#[test]
fn ids_follow_the_registry_rule() {
    for good in ["org.cnode", "org.cnode.events", "a.b.c.d.e.f.g.h", "x-1.y2"] {
        assert!(good.parse::<PluginId>().is_ok(), "{good}");
    }
    let long = format!("org.{}", "a".repeat(125));
    for bad in [
        "events",
        "Org.cnode",
        "org..cnode",
        "org.cnode.",
        ".org",
        "org.cnode_x",
        "a.b.c.d.e.f.g.h.i",
        &long,
    ] {
        assert!(bad.parse::<PluginId>().is_err(), "{bad}");
    }
    let e = err(&with("id = \"org.cnode.events\"", "id = \"Events\""));
    assert!(
        e.starts_with("plugin.toml: id: \"Events\" has 1 labels"),
        "{e}"
    );
    let e = err(&with(
        "id = \"org.cnode.events\"",
        "id = \"org.cnode.Events\"",
    ));
    assert!(e.contains("id: \"org.cnode.Events\" contains 'E'"), "{e}");
}

#[test]
fn scopes_must_fit_the_resource() {
    let e = err(&with(
        "resource = \"kv\"\naccess = \"write\"",
        "resource = \"kv\"\naccess = \"write\"\nscope = { hosts = [\"a.b\"] }",
    ));
    assert_eq!(
        e,
        "plugin.toml: capabilities[3].scope.hosts: kv takes no hosts"
    );
    let e = err(&with(
        "access = \"write\"\nscope = { collections = [\"org.cnode.*\"] }",
        "access = \"write\"",
    ));
    assert!(
        e.contains("capabilities[1].scope.collections: records write needs the collections"),
        "{e}"
    );
    let e = err(&with(
        "scope = { hosts = [\"api.example.com\", \"*.example.org:8443\"] }",
        "",
    ));
    assert!(
        e.contains("capabilities[2].scope.hosts: http needs the hosts"),
        "{e}"
    );
}

#[test]
fn scope_matching() {
    let s = Scope {
        collections: vec!["org.cnode.events".into(), "org.shop.*".into()],
        regions: vec!["u33".into()],
        hosts: vec![
            "api.example.com".into(),
            "*.example.org".into(),
            "local.test:8080".into(),
        ],
    };
    assert!(s.covers_collection("org.cnode.events"));
    assert!(s.covers_collection("org.shop.items"));
    assert!(!s.covers_collection("org.shop"));
    assert!(!s.covers_collection("org.cnode.eventsx"));
    assert!(s.covers_region("u33d"));
    assert!(s.covers_region("u33dc0"));
    assert!(!s.covers_region("u34d"));
    assert!(s.covers_host("api.example.com", 443));
    assert!(s.covers_host("API.example.com.", 80));
    assert!(!s.covers_host("evil.api.example.com", 443));
    assert!(s.covers_host("a.example.org", 443));
    assert!(!s.covers_host("example.org", 443));
    assert!(!s.covers_host("badexample.org", 443));
    assert!(s.covers_host("local.test", 8080));
    assert!(!s.covers_host("local.test", 8081));
    assert!(!Scope::default().covers_host("api.example.com", 443));
    assert!(Scope::default().covers_collection("any.thing.here"));
}

#[test]
fn capabilities_round_trip_as_toml() {
    let m = Manifest::from_toml(GOOD).unwrap();
    #[derive(Serialize, Deserialize)]
    struct Stored {
        grants: Vec<Capability>,
    }
    let text = toml::to_string(&Stored {
        grants: m.capabilities.clone(),
    })
    .unwrap();
    let back: Stored = toml::from_str(&text).unwrap();
    assert_eq!(back.grants, m.capabilities);
}

#[test]
fn tick_is_opt_in_and_bounded() {
    assert_eq!(Manifest::from_toml(GOOD).unwrap().tick_every, None);
    let m = Manifest::from_toml(&with(
        "name = \"Events\"",
        "name = \"Events\"\ntick-every-secs = 300",
    ))
    .unwrap();
    assert_eq!(m.tick_every, Some(std::time::Duration::from_secs(300)));
    for bad in ["5", "86401"] {
        let e = err(&with(
            "name = \"Events\"",
            &format!("name = \"Events\"\ntick-every-secs = {bad}"),
        ));
        assert!(e.starts_with("plugin.toml: tick-every-secs: "), "{e}");
    }
}
