//! `[chain]` configuration.

use std::time::Duration;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

/// Which chain and registry to follow, and how. Embedded by the node as the
/// `[chain]` table of `config.toml`:
///
/// ```toml
/// [chain]
/// rpc_url = "http://127.0.0.1:8545"
/// registry_address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
/// chain_id = 31337
/// confirmations = 2        # optional, default 2
/// poll_interval_ms = 2000  # optional
/// rpc_timeout_ms = 10000   # optional
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC endpoint (`http://`; `https://` needs the crate's `https` feature).
    pub rpc_url: String,
    /// The registry contract.
    pub registry_address: Address,
    /// The chain id the RPC must report.
    pub chain_id: u64,
    /// Blocks an event must be buried under before it is applied.
    #[serde(default = "defaults::confirmations")]
    pub confirmations: u64,
    /// Time between polls while caught up.
    #[serde(
        rename = "poll_interval_ms",
        with = "millis",
        default = "defaults::poll_interval"
    )]
    pub poll_interval: Duration,
    /// Deadline of each JSON-RPC call.
    #[serde(
        rename = "rpc_timeout_ms",
        with = "millis",
        default = "defaults::rpc_timeout"
    )]
    pub rpc_timeout: Duration,
    /// Longest wait between retries after failures (the wait doubles from
    /// `poll_interval` up to this).
    #[serde(
        rename = "max_backoff_ms",
        with = "millis",
        default = "defaults::max_backoff"
    )]
    pub max_backoff: Duration,
    /// Most blocks asked for in one `eth_getLogs` (halved when the RPC refuses).
    #[serde(default = "defaults::log_chunk_blocks")]
    pub log_chunk_blocks: u64,
}

impl ChainConfig {
    /// A config with the given endpoint, contract and chain id and defaults
    /// for the rest.
    pub fn new(rpc_url: impl Into<String>, registry_address: Address, chain_id: u64) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            registry_address,
            chain_id,
            confirmations: defaults::confirmations(),
            poll_interval: defaults::poll_interval(),
            rpc_timeout: defaults::rpc_timeout(),
            max_backoff: defaults::max_backoff(),
            log_chunk_blocks: defaults::log_chunk_blocks(),
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub(super) fn confirmations() -> u64 {
        2
    }
    pub(super) fn poll_interval() -> Duration {
        Duration::from_secs(2)
    }
    pub(super) fn rpc_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn max_backoff() -> Duration {
        Duration::from_secs(60)
    }
    pub(super) fn log_chunk_blocks() -> u64 {
        1000
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        chain: ChainConfig,
    }

    #[test]
    fn toml_with_defaults() {
        let f: File = toml::from_str(
            r#"
            [chain]
            rpc_url = "http://127.0.0.1:8545"
            registry_address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            chain_id = 31337
            "#,
        )
        .unwrap();
        let address: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            .parse()
            .unwrap();
        assert_eq!(
            f.chain,
            ChainConfig::new("http://127.0.0.1:8545", address, 31337)
        );
        assert_eq!(f.chain.confirmations, 2);
        assert_eq!(f.chain.poll_interval, Duration::from_secs(2));
        assert_eq!(f.chain.rpc_timeout, Duration::from_secs(10));
    }

    #[test]
    fn toml_with_everything_and_typos() {
        let f: File = toml::from_str(
            r#"
            [chain]
            rpc_url = "https://rpc.example/v2/KEY"
            registry_address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            chain_id = 8453
            confirmations = 5
            poll_interval_ms = 500
            rpc_timeout_ms = 3000
            max_backoff_ms = 10000
            log_chunk_blocks = 200
            "#,
        )
        .unwrap();
        assert_eq!(f.chain.confirmations, 5);
        assert_eq!(f.chain.poll_interval, Duration::from_millis(500));
        assert_eq!(f.chain.max_backoff, Duration::from_secs(10));
        assert_eq!(f.chain.log_chunk_blocks, 200);
        let back = toml::to_string(&f.chain).unwrap();
        assert!(back.contains("poll_interval_ms = 500"), "{back}");

        let err = toml::from_str::<File>(
            r#"
            [chain]
            rpc_url = "http://127.0.0.1:8545"
            registry_address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            chain_id = 1
            confirmation = 3
            "#,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("confirmation"), "{err}");
        let err = toml::from_str::<File>(
            r#"
            [chain]
            rpc_url = "http://127.0.0.1:8545"
            registry_address = "0x5FbDB"
            chain_id = 1
            "#,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("registry_address"), "{err}");
    }
}
