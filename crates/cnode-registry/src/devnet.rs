//! A local chain for development and tests: an `anvil` process on
//! 127.0.0.1 with anvil's well-known development accounts, and the registry
//! deployed on it.
//!
//! Used by `cnode devnet` and by the integration tests. anvil comes from the
//! npm package `@foundry-rs/anvil`, installed by `scripts/setup-chain-tools`
//! into `~/.cache/cnode/chain-tools` (or `$CNODE_CHAIN_TOOLS`); an `anvil` on
//! the `PATH` is used otherwise.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy::{primitives::U256, signers::local::PrivateKeySigner};

use crate::{Params, TxError, TxOutcome, Writer, artifact::RegistryInit};

/// anvil's default chain id.
pub const DEVNET_CHAIN_ID: u64 = 31337;

/// The private keys of anvil's development accounts (mnemonic
/// "test test test test test test test test test test test junk"), each
/// funded with 10,000 ETH on a fresh anvil. Public knowledge: never use them
/// on a real chain.
pub const DEV_KEYS: [&str; 10] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// How long anvil may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Starting or stopping anvil failed.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// No anvil binary was found.
    #[error(
        "anvil not found (looked in {looked}, then PATH): run scripts/setup-chain-tools, \
         which installs forge, anvil and solc from npm"
    )]
    NoAnvil {
        /// Where it looked first.
        looked: String,
    },
    /// The process could not be started or stopped.
    #[error("anvil: {0}")]
    Process(#[from] std::io::Error),
    /// A JSON-RPC call to anvil failed.
    #[error("anvil RPC: {0}")]
    Rpc(String),
    /// It did not open its port in time.
    #[error("anvil did not listen on 127.0.0.1:{port} within {secs} s")]
    NotListening {
        /// The port.
        port: u16,
        /// The wait, seconds.
        secs: u64,
    },
}

/// The `i`-th development key (`i` < 10).
pub fn dev_key(i: usize) -> PrivateKeySigner {
    #[allow(clippy::expect_used)] // constant, valid keys
    DEV_KEYS[i % DEV_KEYS.len()]
        .parse()
        .expect("anvil development key")
}

/// The anvil binary: `$CNODE_CHAIN_TOOLS/bin/anvil`, else
/// `~/.cache/cnode/chain-tools/bin/anvil`, else `anvil` on the `PATH`.
pub fn anvil_bin() -> Result<PathBuf, DevnetError> {
    let tools = std::env::var_os("CNODE_CHAIN_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cnode/chain-tools"))
        });
    if let Some(bin) = tools.as_ref().map(|t| t.join("bin/anvil"))
        && bin.exists()
    {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("anvil"))
            .find(|p| p.is_file())
    });
    on_path.ok_or_else(|| DevnetError::NoAnvil {
        looked: tools
            .map(|t| t.join("bin/anvil").display().to_string())
            .unwrap_or_else(|| "$CNODE_CHAIN_TOOLS/bin/anvil".into()),
    })
}

/// How to start anvil.
#[derive(Debug, Clone, Default)]
pub struct AnvilOptions {
    /// Port on 127.0.0.1; a free one when `None`.
    pub port: Option<u16>,
    /// Load the chain from this file at start and write it back on SIGTERM
    /// (`anvil --state`), so a restart continues the same chain.
    pub state: Option<PathBuf>,
    /// Mine a block every this often (default: a block per transaction).
    pub block_time: Option<Duration>,
    /// Linux: anvil gets SIGTERM (and saves `--state`) when the *thread*
    /// that started it ends, even if this process is killed with SIGKILL
    /// (`PR_SET_PDEATHSIG`). Only for a thread that lives as long as the
    /// chain should, e.g. the main thread; never a blocking-pool thread,
    /// which ends when idle.
    pub die_with_parent: bool,
}

/// A running anvil on 127.0.0.1. Killed when dropped.
#[derive(Debug)]
pub struct Anvil {
    child: Option<Child>,
    port: u16,
    options: AnvilOptions,
}

impl Anvil {
    /// Starts anvil and waits until it accepts connections.
    pub fn start(options: AnvilOptions) -> Result<Self, DevnetError> {
        let port = match options.port {
            Some(p) => p,
            None => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        };
        let mut anvil = Self {
            child: None,
            port,
            options,
        };
        anvil.restart()?;
        Ok(anvil)
    }

    /// Starts the process again on the same port (and state file) after
    /// [`stop`](Self::stop).
    pub fn restart(&mut self) -> Result<(), DevnetError> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut cmd = Command::new(anvil_bin()?);
        cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--chain-id", &DEVNET_CHAIN_ID.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(state) = &self.options.state {
            cmd.arg("--state").arg(state);
        }
        if let Some(t) = self.options.block_time {
            cmd.args(["--block-time", &t.as_secs().max(1).to_string()]);
        }
        #[cfg(target_os = "linux")]
        if self.options.die_with_parent {
            use std::os::unix::process::CommandExt;
            // SAFETY: runs in the child between fork and exec and calls only
            // async-signal-safe functions (prctl, getppid), allocating nothing.
            #[allow(unsafe_code)]
            unsafe {
                let parent = libc::getpid();
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent may have died before the prctl.
                    if libc::getppid() != parent {
                        return Err(std::io::Error::other("parent gone"));
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn()?;
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait()? {
                return Err(DevnetError::Process(std::io::Error::other(format!(
                    "anvil exited at start ({status}); is port {} taken?",
                    self.port
                ))));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DevnetError::NotListening {
                    port: self.port,
                    secs: START_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops anvil with SIGTERM (so it writes its state file) and waits.
    pub fn stop(&mut self) -> Result<(), DevnetError> {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            if !status.success() {
                let _ = child.kill();
            }
            child.wait()?;
        }
        Ok(())
    }

    /// Kills anvil at once (SIGKILL: no state written), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state file, if any.
    pub fn state_file(&self) -> Option<&Path> {
        self.options.state.as_deref()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Mines `blocks` empty blocks (`anvil_mine`), e.g. to bury the last
/// transaction under the follower's confirmations.
pub async fn mine(rpc_url: &str, blocks: u64) -> Result<(), DevnetError> {
    use alloy::providers::{Provider, ProviderBuilder};
    let url = rpc_url
        .parse()
        .map_err(|e| DevnetError::Rpc(format!("bad RPC URL {rpc_url:?}: {e}")))?;
    let provider = ProviderBuilder::new().connect_http(url);
    provider
        .raw_request::<_, serde_json::Value>("anvil_mine".into(), (blocks,))
        .await
        .map(|_| ())
        .map_err(|e| DevnetError::Rpc(e.to_string()))
}

/// Parameters for a development registry: 1 ETH minimum stake, 60 s
/// unbonding, proposals live a day.
pub fn dev_params() -> Params {
    Params {
        min_stake: U256::from(10).pow(U256::from(18)),
        unbonding_delay: 60,
        proposal_ttl: 86_400,
    }
}

/// Deploys the registry at `rpc_url` from development key 0, which becomes
/// the only steward (threshold 1), with [`dev_params`].
pub async fn deploy_dev_registry(rpc_url: &str) -> Result<(Writer, TxOutcome), TxError> {
    let init = RegistryInit {
        stewards: vec![dev_key(0).address()],
        threshold: U256::from(1),
        params: dev_params(),
    };
    Writer::deploy_registry(rpc_url, dev_key(0), &init).await
}
