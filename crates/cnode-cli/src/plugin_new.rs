//! `cnode plugin new --lang rust|js NAME`: writes a working plugin project
//! (manifest, code, the WIT world, a build script, a README) from the
//! templates in `crates/cnode-cli/templates/`, embedded in the binary.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use cnode_node::plugins::cnode_plugins::{Manifest, PluginId};
use serde::Serialize;

use crate::output;

/// The plugin languages `cnode plugin new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Lang {
    /// Rust, built with `cargo build --target wasm32-wasip2` and `wit-bindgen`.
    Rust,
    /// JavaScript, built with componentize-js.
    Js,
}

/// The WIT world plugins are built against, copied into every project.
const WIT: &str = include_str!("../../../wit/cnode-plugin.wit");

/// (path in the project, template text); `{{…}}` placeholders filled in.
const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/plugin-rust/Cargo.toml"),
    ),
    (
        "plugin.toml",
        include_str!("../templates/plugin-rust/plugin.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/plugin-rust/src/lib.rs"),
    ),
    (
        "build.sh",
        include_str!("../templates/plugin-rust/build.sh"),
    ),
    (
        "README.md",
        include_str!("../templates/plugin-rust/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../templates/plugin-rust/gitignore"),
    ),
];

const JS: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../templates/plugin-js/package.json"),
    ),
    (
        "plugin.toml",
        include_str!("../templates/plugin-js/plugin.toml"),
    ),
    (
        "src/component.js",
        include_str!("../templates/plugin-js/src/component.js"),
    ),
    (
        "build.mjs",
        include_str!("../templates/plugin-js/build.mjs"),
    ),
    (
        "README.md",
        include_str!("../templates/plugin-js/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../templates/plugin-js/gitignore"),
    ),
    // The shared JavaScript engine's source and build functions, as in
    // plugins/js-engine (no placeholders in them).
    (
        "engine/loader.js",
        include_str!("../../../plugins/js-engine/loader.js"),
    ),
    (
        "engine/jsplugin.mjs",
        include_str!("../../../plugins/js-engine/jsplugin.mjs"),
    ),
];

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Created {
    id: String,
    name: String,
    lang: Lang,
    dir: PathBuf,
    files: Vec<String>,
    build: &'static str,
    install: String,
}

/// The project's names, derived from NAME and `--id`.
#[derive(Debug, PartialEq, Eq)]
struct Names {
    /// The plugin id (reverse-domain).
    id: String,
    /// The short name: the directory, the component file, the package.
    short: String,
}

/// NAME is either a short name (`bus-times`, the id then defaults to
/// `org.example.bus-times`) or a whole id (`org.mytown.bus-times`, the
/// short name is its last label). `--id` overrides the id.
fn names(name: &str, id: Option<&str>) -> Result<Names> {
    let (short, default_id) = match name.rsplit_once('.') {
        Some((_, last)) => (last.to_owned(), name.to_owned()),
        None => (name.to_owned(), format!("org.example.{name}")),
    };
    let short_ok = (1..=64).contains(&short.len())
        && short.starts_with(|c: char| c.is_ascii_lowercase())
        && short
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !short.ends_with('-');
    if !short_ok {
        bail!(
            "{name:?}: a plugin name is 1 to 64 characters of a-z, 0-9 and -, starting with a \
             letter (like bus-times), or a whole reverse-domain id (like org.mytown.bus-times)"
        );
    }
    let id = id.map_or(default_id, str::to_owned);
    id.parse::<PluginId>()
        .map_err(|e| anyhow::anyhow!("plugin id {id:?}: {e}"))?;
    Ok(Names { id, short })
}

fn fill(template: &str, n: &Names, title: &str) -> String {
    template
        .replace("{{ID}}", &n.id)
        .replace("{{NAME}}", title)
        .replace("{{DIR}}", &n.short)
        .replace("{{CRATE}}", &format!("cnode-plugin-{}", n.short))
        .replace(
            "{{CRATE_LIB}}",
            &format!("cnode_plugin_{}", n.short.replace('-', "_")),
        )
        .replace("{{PKG}}", &format!("cnode-plugin-{}", n.short))
}

/// `bus-times` → `Bus times`: the manifest's display name.
fn title(short: &str) -> String {
    let words = short.replace('-', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => words,
    }
}

/// Refuses a path that exists and is not an empty directory.
fn check_target(dir: &Path) -> Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty; choose another --dir (nothing was written)",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if dir.exists() && !dir.is_dir() => {
            bail!("{} exists and is not a directory ({e})", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// Runs `cnode plugin new`.
pub(crate) fn new_plugin(
    lang: Lang,
    name: &str,
    dir: Option<PathBuf>,
    id: Option<&str>,
    json: bool,
) -> Result<()> {
    let n = names(name, id)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(&n.short));
    check_target(&dir)?;
    let title = title(&n.short);
    let templates = match lang {
        Lang::Rust => RUST,
        Lang::Js => JS,
    };
    let mut files: Vec<(String, String)> = templates
        .iter()
        .map(|(path, text)| ((*path).to_owned(), fill(text, &n, &title)))
        .collect();
    files.push(("wit/cnode-plugin.wit".into(), WIT.to_owned()));

    // The manifest must be one the node accepts: check it before writing.
    let manifest = files
        .iter()
        .find(|(p, _)| p == "plugin.toml")
        .map(|(_, t)| t.as_str())
        .unwrap_or_default();
    Manifest::from_toml(manifest).context("the generated plugin.toml is not valid (a bug)")?;

    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    #[cfg(unix)]
    if lang == Lang::Rust {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("build.sh");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", script.display()))?;
    }

    let build = match lang {
        Lang::Rust => "./build.sh",
        Lang::Js => "npm install && npm run build",
    };
    let created = Created {
        id: n.id.clone(),
        name: title,
        lang,
        dir: dir.clone(),
        files: files.into_iter().map(|(p, _)| p).collect(),
        build,
        install: format!("cnode plugin install {}", dir.join("dist").display()),
    };
    if json {
        output::json(&created);
    } else {
        println!(
            "created {} ({}) in {}",
            created.id,
            lang_name(lang),
            dir.display()
        );
        for f in &created.files {
            println!("  {f}");
        }
        println!("next:");
        println!("  cd {} && {build}", dir.display());
        println!("  cnode plugin install dist --yes");
        println!("  cnode plugin call {} /", created.id);
    }
    Ok(())
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_a_short_name_or_an_id() {
        assert_eq!(
            names("bus-times", None).unwrap(),
            Names {
                id: "org.example.bus-times".into(),
                short: "bus-times".into()
            }
        );
        assert_eq!(
            names("org.mytown.bus-times", None).unwrap(),
            Names {
                id: "org.mytown.bus-times".into(),
                short: "bus-times".into()
            }
        );
        assert_eq!(
            names("bus", Some("net.town.bus")).unwrap().id,
            "net.town.bus"
        );
        for bad in ["Bus", "bus_times", "-bus", "", "1bus", "bus-", "org.x.Bus"] {
            assert!(names(bad, None).is_err(), "{bad:?} accepted");
        }
        let e = names("bus", Some("bus")).unwrap_err().to_string();
        assert!(e.contains("reverse-domain"), "{e}");
        assert_eq!(title("bus-times"), "Bus times");
    }

    #[test]
    fn every_template_fills_into_a_valid_manifest() {
        let n = names("org.mytown.bus-times", None).unwrap();
        for templates in [RUST, JS] {
            for (path, text) in templates {
                let filled = fill(text, &n, "Bus times");
                assert!(!filled.contains("{{"), "{path}: {filled}");
                if *path == "plugin.toml" {
                    let m = Manifest::from_toml(&filled).unwrap();
                    assert_eq!(m.id.as_str(), "org.mytown.bus-times");
                }
            }
        }
    }
}
