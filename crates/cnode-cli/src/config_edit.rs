//! Edits to a node's `config.toml` that keep everything else as it was,
//! byte for byte (comments included): the `[chain]` table `cnode devnet`
//! writes, and the few values it may have to change (listen ports, the API
//! port, the served regions).

use anyhow::{Context, Result, bail};
use toml_edit::{Array, DocumentMut, Item, Table, Value};

/// What to change; `None` leaves a value alone.
#[derive(Debug, Default, Clone)]
pub(crate) struct Edits {
    /// `[chain]`: replaced as a whole (or added at the end).
    pub(crate) chain: Option<ChainTable>,
    /// `[network] listen`.
    pub(crate) listen: Option<Vec<String>>,
    /// `[api] listen`.
    pub(crate) api: Option<String>,
    /// `[records] regions`.
    pub(crate) regions: Option<Vec<String>>,
}

/// The keys `cnode devnet` writes into `[chain]`.
#[derive(Debug, Clone)]
pub(crate) struct ChainTable {
    pub(crate) rpc_url: String,
    pub(crate) registry_address: String,
    pub(crate) chain_id: u64,
    pub(crate) confirmations: u64,
}

/// Applies `edits` to the TOML `text`.
pub(crate) fn apply(text: &str, edits: &Edits) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .context("config.toml is not valid TOML; not editing it")?;
    if let Some(list) = &edits.listen {
        set_array(&mut doc, "network", "listen", list)?;
    }
    if let Some(api) = &edits.api {
        set_value(&mut doc, "api", "listen", Value::from(api.as_str()))?;
    }
    if let Some(regions) = &edits.regions {
        set_array(&mut doc, "records", "regions", regions)?;
    }
    if let Some(chain) = &edits.chain {
        let mut t = Table::new();
        t.insert("rpc_url", toml_edit::value(chain.rpc_url.as_str()));
        t.insert(
            "registry_address",
            toml_edit::value(chain.registry_address.as_str()),
        );
        t.insert("chain_id", toml_edit::value(chain.chain_id as i64));
        t.insert(
            "confirmations",
            toml_edit::value(chain.confirmations as i64),
        );
        match doc.get_mut("chain") {
            Some(Item::Table(old)) => {
                // In place: same position, same comment above the header.
                t.set_position(old.position());
                *t.decor_mut() = old.decor().clone();
                *old = t;
            }
            _ => {
                t.decor_mut()
                    .set_prefix("\n# The local development chain, written by `cnode devnet`.\n");
                doc.insert("chain", Item::Table(t));
            }
        }
    }
    Ok(doc.to_string())
}

/// The table `name`, created (at the end) if missing.
fn table<'a>(doc: &'a mut DocumentMut, name: &str) -> Result<&'a mut Table> {
    if !doc.contains_key(name) {
        let mut t = Table::new();
        t.decor_mut().set_prefix("\n");
        doc.insert(name, Item::Table(t));
    }
    match doc.get_mut(name) {
        Some(Item::Table(t)) => Ok(t),
        _ => bail!("config.toml's {name} is not a table; not editing it"),
    }
}

/// Sets `[section] key` to `v`, keeping the old value's surrounding spaces and comment.
fn set_value(doc: &mut DocumentMut, section: &str, key: &str, mut v: Value) -> Result<()> {
    let t = table(doc, section)?;
    match t.get_mut(key) {
        Some(Item::Value(old)) => {
            *v.decor_mut() = old.decor().clone();
            *old = v;
        }
        _ => {
            t.insert(key, Item::Value(v));
        }
    }
    Ok(())
}

/// Sets `[section] key` to an array of strings; items that stay the same
/// keep their formatting.
fn set_array(doc: &mut DocumentMut, section: &str, key: &str, items: &[String]) -> Result<()> {
    let t = table(doc, section)?;
    if let Some(Item::Value(Value::Array(old))) = t.get_mut(key)
        && old.len() == items.len()
    {
        for (i, new) in items.iter().enumerate() {
            if old.get(i).and_then(Value::as_str) != Some(new.as_str())
                && let Some(slot) = old.get_mut(i)
            {
                let mut v = Value::from(new.as_str());
                *v.decor_mut() = slot.decor().clone();
                *slot = v;
            }
        }
        return Ok(());
    }
    let array: Array = items.iter().map(String::as_str).collect();
    set_value(doc, section, key, Value::Array(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> ChainTable {
        ChainTable {
            rpc_url: "http://127.0.0.1:8545".into(),
            registry_address: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            chain_id: 31337,
            confirmations: 1,
        }
    }

    #[test]
    fn chain_is_added_at_the_end_and_the_rest_kept() {
        let text = cnode_node::ConfigFile::default_text();
        let out = apply(
            &text,
            &Edits {
                chain: Some(chain()),
                ..Edits::default()
            },
        )
        .unwrap();
        assert!(out.starts_with(&text), "{out}");
        let tail = &out[text.len()..];
        assert!(
            tail.contains("[chain]\nrpc_url = \"http://127.0.0.1:8545\""),
            "{tail}"
        );
        let parsed = cnode_node::ConfigFile::parse(&out).unwrap();
        let c = parsed.chain.unwrap();
        assert_eq!(c.chain_id, 31337);
        assert_eq!(c.confirmations, 1);
        assert_eq!(
            c.registry_address.to_string(),
            "0x5FbDB2315678afecb367f032d93F642f64180aa3"
        );

        // Again, with another contract: replaced in place, nothing else moves.
        let mut other = chain();
        other.registry_address = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".into();
        let again = apply(
            &out,
            &Edits {
                chain: Some(other),
                ..Edits::default()
            },
        )
        .unwrap();
        assert_eq!(again.matches("[chain]").count(), 2, "{again}"); // one is the commented example
        assert_eq!(again.len(), out.len());
        assert!(again.contains("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"));
        assert!(!again.contains("0x5FbDB2315678afecb367f032d93F642f64180aa3"));
    }

    #[test]
    fn a_chain_table_in_the_middle_stays_in_the_middle() {
        let text = "# mine\n[network]\nmdns = false # no mDNS here\n\n# my chain\n[chain]\nrpc_url = \"http://10.0.0.1:8545\"\nregistry_address = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\nchain_id = 1\npoll_interval_ms = 500\n\n[api]\nlisten = \"127.0.0.1:7701\"  # keep\n";
        let out = apply(
            text,
            &Edits {
                chain: Some(chain()),
                ..Edits::default()
            },
        )
        .unwrap();
        assert_eq!(
            out,
            "# mine\n[network]\nmdns = false # no mDNS here\n\n# my chain\n[chain]\nrpc_url = \"http://127.0.0.1:8545\"\nregistry_address = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\nchain_id = 31337\nconfirmations = 1\n\n[api]\nlisten = \"127.0.0.1:7701\"  # keep\n"
        );
    }

    #[test]
    fn ports_api_and_regions() {
        let default_listen =
            "listen = [\"/ip4/0.0.0.0/udp/4040/quic-v1\", \"/ip4/0.0.0.0/tcp/4040\"]";
        let text = cnode_node::ConfigFile::default_text().replace(
            default_listen,
            "listen = [\"/ip4/0.0.0.0/udp/0/quic-v1\", \"/ip4/0.0.0.0/tcp/0\"]",
        );
        assert_ne!(text, cnode_node::ConfigFile::default_text());
        let out = apply(
            &text,
            &Edits {
                listen: Some(vec![
                    "/ip4/0.0.0.0/udp/4100/quic-v1".into(),
                    "/ip4/0.0.0.0/tcp/4100".into(),
                ]),
                api: Some("127.0.0.1:7800".into()),
                regions: Some(vec!["w5q6".into()]),
                ..Edits::default()
            },
        )
        .unwrap();
        let expected = text
            .replace(
                "listen = [\"/ip4/0.0.0.0/udp/0/quic-v1\", \"/ip4/0.0.0.0/tcp/0\"]",
                "listen = [\"/ip4/0.0.0.0/udp/4100/quic-v1\", \"/ip4/0.0.0.0/tcp/4100\"]",
            )
            .replace("listen = \"127.0.0.1:7700\"", "listen = \"127.0.0.1:7800\"")
            .replace("regions = []", "regions = [\"w5q6\"]");
        assert_eq!(out, expected);

        // Missing tables and keys are added.
        let out = apply(
            "",
            &Edits {
                listen: Some(vec!["/ip4/0.0.0.0/tcp/4100".into()]),
                api: Some("127.0.0.1:7800".into()),
                ..Edits::default()
            },
        )
        .unwrap();
        let parsed = cnode_node::ConfigFile::parse(&out).unwrap();
        assert_eq!(parsed.network.listen.len(), 1);
        assert_eq!(parsed.api.listen.port(), 7800);
        assert!(apply("[network\n", &Edits::default()).is_err());
    }
}
