//! `cnode plugin …`: install and manage service plugins on the running node,
//! and call them.
//!
//! Capabilities are written `resource:access[:key=v1,v2…]` (see
//! [`LONG_ABOUT`]).

use std::{
    io::{BufRead, IsTerminal, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use cnode_node::{
    DataDir, PluginView,
    plugins::{capability_matches, format_capability, parse_capability, read_package_manifest},
};
use reqwest::{Method, StatusCode};

use crate::{client::ApiClient, output, registry::TxArgs};

mod package;

/// The long help of `cnode plugin`.
pub(crate) const LONG_ABOUT: &str = "\
Service plugins: WebAssembly components the node runs sandboxed, each \
limited to the capabilities you granted. A plugin with id ID answers HTTP \
at /v1/services/ID/… on the node's API.

  cnode plugin install PATH|CID|SERVICE_ID [--version V] [--yes]   PATH: a \
directory with plugin.toml and a .wasm component, or a .wasm file with \
plugin.toml beside it (the path is read by the node, so it must be on the \
node's machine). CID: a package (a folder blob with plugin.toml, \
component.wasm and optionally publisher.sig), fetched over the swarm; shows \
who signed it, or \"unsigned\". SERVICE_ID: the newest approved version (or \
--version) of that service in the registry's API list; the node fetches its \
package by hash and refuses it unless the manifest hash, id and version match \
the entry and the signature is the on-chain publisher's. Shows the requested \
capabilities and asks for approval (--yes approves without asking; required \
when stdin is not a terminal).
  cnode plugin pack DIR [-o OUT_DIR] [--unsigned]   a package folder signed \
with the operator key (<data>/operator/key.json, as `cnode registry` uses).
  cnode plugin publish DIR   pack, add to the node's blobs (pinned, announced) \
and propose it for the API list (proposeService); a steward approves it.
  cnode plugin new --lang rust|js NAME [--dir PATH] [--id ID]   a plugin \
project that builds and installs as it is (manifest, code, the WIT world, a \
build script, a README); NAME is a short name (bus-times, id \
org.example.bus-times) or a whole id.
  cnode plugin ls | info ID | audit
  cnode plugin grant ID CAPABILITY… | revoke ID CAPABILITY…
  cnode plugin disable ID | enable ID | rm ID
  cnode plugin call ID PATH [--method M] [--body JSON | --body-file F]

CAPABILITY is resource:access[:key=v1,v2…], with resource one of records, \
blobs, kv, http, log, clock, random; access read, write or admin; keys \
collections, regions (geohash prefixes) and hosts (host[:port], *.domain). \
Examples: records:read, records:write:collections=org.cnode.notices, \
records:read:collections=org.cnode.events:regions=w5q6, \
http:read:hosts=api.example.com:8443. Only capabilities the plugin's manifest \
requests can be granted; a capability without a scope names every requested \
one with that resource and access; `all` grants (or revokes) everything.";

/// `cnode plugin …`.
#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Install a plugin: from a local directory or .wasm file, a package CID, or a service id of the registry's API list.
    // `--version` here is the service's version; the program's own
    // (propagated by `propagate_version`) would clash with it.
    #[command(disable_version_flag = true)]
    Install {
        /// A directory with plugin.toml and a .wasm component (or a .wasm with plugin.toml beside it); a package CID (bafkr4…); or a service id (org.cnode.events).
        target: String,
        /// With a service id: this version instead of the newest approved one.
        #[arg(long)]
        version: Option<String>,
        /// Approve the requested capabilities without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Build a package folder (plugin.toml, component.wasm, publisher.sig) signed with the operator key.
    Pack {
        /// The plugin's directory (plugin.toml and its built .wasm, e.g. plugins/events/dist).
        dir: PathBuf,
        /// Where to write the package [default: <data>/plugins/packages/ID-VERSION].
        #[arg(long, short = 'o', value_name = "OUT_DIR")]
        out: Option<PathBuf>,
        /// Do not sign (installable by CID only; a registry install needs the signature).
        #[arg(long)]
        unsigned: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Pack, add the package to the node's blobs (pinned, announced) and propose it for the API list.
    Publish {
        /// The plugin's directory (plugin.toml and its built .wasm).
        dir: PathBuf,
        /// Where to write the package [default: <data>/plugins/packages/ID-VERSION].
        #[arg(long, short = 'o', value_name = "OUT_DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Scaffold a new plugin project (Rust or JavaScript) that builds and installs as it is.
    New {
        /// The language.
        #[arg(long, value_enum)]
        lang: crate::plugin_new::Lang,
        /// A short name (bus-times: id org.example.bus-times) or a whole reverse-domain id (org.mytown.bus-times).
        name: String,
        /// The directory to create [default: ./NAME]; must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plugin id, if not derived from NAME.
        #[arg(long)]
        id: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List installed plugins.
    Ls {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show one plugin: manifest, grants, state, counters.
    Info {
        /// The plugin id.
        id: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Grant requested capabilities (resource:access[:key=v…], or `all`).
    Grant {
        /// The plugin id.
        id: String,
        /// Capabilities.
        #[arg(required = true)]
        capabilities: Vec<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Revoke granted capabilities (resource:access[:key=v…], or `all`).
    Revoke {
        /// The plugin id.
        id: String,
        /// Capabilities.
        #[arg(required = true)]
        capabilities: Vec<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Stop serving a plugin (it stays installed).
    Disable {
        /// The plugin id.
        id: String,
    },
    /// Serve a disabled plugin again.
    Enable {
        /// The plugin id.
        id: String,
    },
    /// Uninstall a plugin (its files and private data are deleted).
    Rm {
        /// The plugin id.
        id: String,
    },
    /// Call a plugin: prints its answer's body (status and headers on stderr).
    Call {
        /// The plugin id.
        id: String,
        /// The path below the service, with an optional ?query (e.g. "/?region=w5q6").
        path: String,
        /// The HTTP method [default: GET, or POST with a body].
        #[arg(long, short = 'X')]
        method: Option<String>,
        /// The request body (JSON text).
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        /// Read the request body from a file (`-` for stdin).
        #[arg(long)]
        body_file: Option<PathBuf>,
    },
    /// Denied host calls (newest last).
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

fn print_view(v: &PluginView) {
    let state = match (v.enabled, v.loaded) {
        (true, true) => "enabled",
        (true, false) => "enabled, NOT LOADED",
        (false, _) => "disabled",
    };
    println!("{} {} ({}) — {state}", v.id, v.version, v.name);
    if !v.description.is_empty() {
        println!("  {}", v.description);
    }
    println!(
        "  routes:    /v1/services/{}{{{}}}",
        v.id,
        v.routes.join(", ")
    );
    println!("  requested: {}", list_or_none(&v.requested));
    println!("  granted:   {}", list_or_none(&v.granted));
    if let Some(e) = &v.error {
        println!("  error:     {e}");
    }
    match (&v.package_cid, &v.publisher) {
        (Some(package), Some(publisher)) => {
            println!("  package:   {package}");
            println!("  publisher: {publisher} (signature verified at install)");
        }
        (Some(package), None) => {
            println!("  package:   {package}");
            println!("  publisher: unsigned");
        }
        _ => println!("  source:    a local install (no package)"),
    }
    if let Some(code) = &v.code {
        let kind = if v.script {
            " (a script on the shared JavaScript engine)"
        } else {
            ""
        };
        println!("  code:      blake3 {}…{kind}", &code[..code.len().min(16)]);
    }
    if let Some(s) = &v.stats {
        println!(
            "  calls:     {} (ok {}, traps {}, timeouts {}, memory limits {})",
            s["calls"], s["ok"], s["traps"], s["timeouts"], s["memory_limits"]
        );
    }
}

fn list_or_none(l: &[String]) -> String {
    if l.is_empty() {
        "(none)".into()
    } else {
        l.join(", ")
    }
}

/// Asks on the terminal; refuses when stdin is not one.
fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("stdin is not a terminal: pass --yes to approve the requested capabilities");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Runs `cnode plugin …`.
pub(crate) async fn plugin(dir: &DataDir, command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::Install {
            target,
            version,
            yes,
            json,
        } => install(dir, &target, version, yes, json).await,
        PluginCommand::Pack {
            dir: src,
            out,
            unsigned,
            json,
        } => package::pack_command(dir, &src, out, unsigned, json),
        PluginCommand::Publish { dir: src, out, tx } => package::publish(dir, &src, out, tx).await,
        PluginCommand::New {
            lang,
            name,
            dir: target,
            id,
            json,
        } => crate::plugin_new::new_plugin(lang, &name, target, id.as_deref(), json),
        PluginCommand::Ls { json } => {
            let list: Vec<PluginView> = ApiClient::from_data_dir(dir)?
                .send_json(Method::GET, &["v1", "plugins"], None)
                .await?;
            if json {
                output::json(&list);
            } else if list.is_empty() {
                println!("no plugins installed (cnode plugin install PATH)");
            } else {
                for v in &list {
                    let state = if !v.enabled {
                        "disabled"
                    } else if v.loaded {
                        "enabled"
                    } else {
                        "not loaded"
                    };
                    println!("{:<32} {:<10} {:<10} {}", v.id, v.version, state, v.name);
                }
            }
            Ok(())
        }
        PluginCommand::Info { id, json } => {
            let v: PluginView = ApiClient::from_data_dir(dir)?
                .send_json(Method::GET, &["v1", "plugins", &id], None)
                .await?;
            if json {
                output::json(&v);
            } else {
                print_view(&v);
            }
            Ok(())
        }
        PluginCommand::Grant {
            id,
            capabilities,
            json,
        } => change_grants(dir, &id, &capabilities, true, json).await,
        PluginCommand::Revoke {
            id,
            capabilities,
            json,
        } => change_grants(dir, &id, &capabilities, false, json).await,
        PluginCommand::Disable { id } => {
            let _: PluginView = ApiClient::from_data_dir(dir)?
                .send_json(Method::POST, &["v1", "plugins", &id, "disable"], None)
                .await?;
            println!("disabled {id}");
            Ok(())
        }
        PluginCommand::Enable { id } => {
            let _: PluginView = ApiClient::from_data_dir(dir)?
                .send_json(Method::POST, &["v1", "plugins", &id, "enable"], None)
                .await?;
            println!("enabled {id}");
            Ok(())
        }
        PluginCommand::Rm { id } => {
            ApiClient::from_data_dir(dir)?
                .send_empty(Method::DELETE, &["v1", "plugins", &id])
                .await?;
            println!("removed {id}");
            Ok(())
        }
        PluginCommand::Call {
            id,
            path,
            method,
            body,
            body_file,
        } => call(dir, &id, &path, method, body, body_file).await,
        PluginCommand::Audit { limit, json } => {
            let entries: Vec<serde_json::Value> = ApiClient::from_data_dir(dir)?
                .get_json_query(&["v1", "plugins", "audit"], &[("limit", limit.to_string())])
                .await?;
            if json {
                output::json(&entries);
            } else if entries.is_empty() {
                println!("no denied host calls");
            } else {
                for e in &entries {
                    println!(
                        "{}  {}  {}  {}",
                        e["at_ms"],
                        e["plugin"].as_str().unwrap_or_default(),
                        e["call"].as_str().unwrap_or_default(),
                        e["reason"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
    }
}

async fn install(
    dir: &DataDir,
    target: &str,
    version: Option<String>,
    yes: bool,
    json: bool,
) -> Result<()> {
    let path = Path::new(target);
    if path.exists() {
        if version.is_some() {
            bail!("--version goes with a service id, not a path");
        }
        return install_path(dir, path, yes, json).await;
    }
    let source = if target.parse::<cnode_types::BlobHash>().is_ok() {
        if version.is_some() {
            bail!("--version goes with a service id, not a CID");
        }
        serde_json::json!({ "cid": target })
    } else if target
        .parse::<cnode_node::plugins::cnode_plugins::PluginId>()
        .is_ok()
    {
        serde_json::json!({ "service": target, "version": version })
    } else {
        bail!(
            "{target} is not a path that exists, a package CID (bafkr4…) or a service id (org.example.name)"
        );
    };
    package::install_package(dir, source, yes, json).await
}

async fn install_path(dir: &DataDir, path: &Path, yes: bool, json: bool) -> Result<()> {
    let path =
        std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))?;
    let manifest = read_package_manifest(&path)?;
    let api = ApiClient::from_data_dir(dir)?;
    if !yes {
        eprintln!(
            "{} {} ({}) asks for:",
            manifest.id, manifest.version, manifest.name
        );
        if manifest.capabilities.is_empty() {
            eprintln!("  nothing");
        }
        for c in &manifest.capabilities {
            eprintln!("  {}", format_capability(c));
        }
        if !confirm("Install and grant all of these?")? {
            bail!("not installed");
        }
    }
    let body = serde_json::json!({
        "path": path.display().to_string(),
        "grants": "all",
        "approve": true,
    });
    let v: PluginView = api
        .send_json(Method::POST, &["v1", "plugins"], Some(&body))
        .await?;
    if json {
        output::json(&v);
    } else {
        println!("installed {} {}: /v1/services/{}/", v.id, v.version, v.id);
    }
    Ok(())
}

async fn change_grants(
    dir: &DataDir,
    id: &str,
    specs: &[String],
    add: bool,
    json: bool,
) -> Result<()> {
    let api = ApiClient::from_data_dir(dir)?;
    let v: PluginView = api
        .send_json(Method::GET, &["v1", "plugins", id], None)
        .await?;
    let parse = |s: &String| parse_capability(s).map_err(|e| anyhow!(e));
    let requested = v.requested.iter().map(parse).collect::<Result<Vec<_>>>()?;
    let mut granted = v.granted.iter().map(parse).collect::<Result<Vec<_>>>()?;
    let all = specs.iter().any(|s| s == "all");
    let specs = specs
        .iter()
        .filter(|s| *s != "all")
        .map(parse)
        .collect::<Result<Vec<_>>>()?;
    if add {
        let wanted: Vec<_> = if all {
            requested.clone()
        } else {
            let mut w = Vec::new();
            for spec in &specs {
                let m: Vec<_> = requested
                    .iter()
                    .filter(|r| capability_matches(spec, r))
                    .cloned()
                    .collect();
                if m.is_empty() {
                    bail!(
                        "{} is not a capability {id} requests (it requests: {})",
                        format_capability(spec),
                        list_or_none(&v.requested)
                    );
                }
                w.extend(m);
            }
            w
        };
        for c in wanted {
            if !granted.contains(&c) {
                granted.push(c);
            }
        }
    } else if all {
        granted.clear();
    } else {
        for spec in &specs {
            let before = granted.len();
            granted.retain(|g| !capability_matches(spec, g));
            if granted.len() == before {
                bail!(
                    "{} is not granted to {id} (granted: {})",
                    format_capability(spec),
                    list_or_none(&v.granted)
                );
            }
        }
    }
    let list: Vec<String> = granted.iter().map(format_capability).collect();
    let body = serde_json::json!({ "grants": list });
    let v: PluginView = api
        .send_json(Method::PUT, &["v1", "plugins", id, "grants"], Some(&body))
        .await?;
    if json {
        output::json(&v);
    } else {
        println!("{id} granted: {}", list_or_none(&v.granted));
    }
    Ok(())
}

async fn call(
    dir: &DataDir,
    id: &str,
    path: &str,
    method: Option<String>,
    body: Option<String>,
    body_file: Option<PathBuf>,
) -> Result<()> {
    let api = ApiClient::from_data_dir(dir)?;
    let body: Option<Vec<u8>> = match (body, body_file) {
        (Some(b), _) => Some(b.into_bytes()),
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                .context("cannot read the body from stdin")?;
            Some(b)
        }
        (None, Some(f)) => {
            Some(std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?)
        }
        (None, None) => None,
    };
    let method = match method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| anyhow!("bad method {m:?}"))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let url = api.join(&format!("v1/services/{id}{path}"))?;
    let resp = api
        .send_with(method, url, |req| {
            let req = req.timeout(std::time::Duration::from_secs(60));
            match body {
                Some(b) => req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b),
                None => req,
            }
        })
        .await?;
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = resp.bytes().await?;
    if ctype.starts_with("application/json")
        && !status.is_success()
        && let Some(msg) = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
    {
        bail!("{msg} (HTTP {})", status.as_u16());
    }
    eprintln!("HTTP {} {ctype}", status.as_u16());
    std::io::stdout().write_all(&bytes)?;
    if !bytes.ends_with(b"\n") && std::io::stdout().is_terminal() {
        println!();
    }
    if status == StatusCode::OK || status.is_success() {
        Ok(())
    } else {
        bail!("the service answered HTTP {}", status.as_u16())
    }
}
