//! `cnode run`: the node in the foreground.

use std::{fs::File, time::Instant};

use anyhow::{Context, Result, bail};
use cnode_node::{ApiInfo, DataDir, NodeBuilder, NodeConfig, Overrides, RelayServerSetting};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::{RelayServerArg, RunArgs};

/// Holds an exclusive lock on the data directory for the node's lifetime, so
/// two nodes never share one identity and database.
pub(crate) fn lock_data_dir(dir: &DataDir) -> Result<File> {
    let path = dir.path("lock");
    let file = File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = dir
                .read_api_info()
                .map(|i| format!(" (pid {}, API {})", i.pid, i.addr))
                .unwrap_or_default();
            bail!(
                "another node is already running with data directory {}{pid}; stop it first or use --data",
                dir.root().display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

pub(crate) async fn run(dir: DataDir, args: RunArgs) -> Result<()> {
    let t0 = Instant::now();
    if !dir.is_initialized() {
        bail!(
            "no node key in {}; run `cnode init` first (or just `cnode`, which does both)",
            dir.root().display()
        );
    }
    let _lock = lock_data_dir(&dir)?;
    let file = dir.load_config()?;
    let overrides = Overrides {
        listen: args.listen,
        api: args.api,
        bootstrap: args.bootstrap,
        no_mdns: args.no_mdns,
        relays: args.relay,
        external: args.external,
        relay_server: args.relay_server.map(|r| match r {
            RelayServerArg::Auto => RelayServerSetting::Auto,
            RelayServerArg::On => RelayServerSetting::On,
            RelayServerArg::Off => RelayServerSetting::Off,
        }),
    };
    let mut config = NodeConfig::resolve(dir.root().to_owned(), file, overrides);
    // Plugins are compiled by this binary in a child process, so the
    // compiler's memory is not the node's (see cnode_plugins::compiler).
    config.plugin_compiler =
        std::env::current_exe()
            .ok()
            .map(|program| cnode_node::CompilerCommand {
                program,
                args: vec![crate::cli::COMPILE_PLUGIN.into()],
            });
    // Bind the API first: a port in use should fail before any network work.
    let listener = cnode_api::bind(config.api_listen).await?;
    let node = NodeBuilder::new(config).spawn().await?;
    let cancel = CancellationToken::new();
    let api = cnode_api::serve_listener(node.clone(), listener, cancel.child_token())?;
    dir.write_api_info(&ApiInfo {
        addr: api.addr(),
        pid: std::process::id(),
    })
    .with_context(|| {
        format!(
            "cannot write {}",
            dir.path(cnode_node::API_INFO_FILE).display()
        )
    })?;

    tracing::info!(
        peer_id = %node.peer_id(),
        api = %api.addr(),
        startup_ms = t0.elapsed().as_millis() as u64,
        "cnode is running; Ctrl-C to stop"
    );
    for addr in node.listen_addrs() {
        tracing::info!("listening on {addr}");
    }

    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("interrupted: shutting down"),
    }
    // Shutdown order: stop taking API requests, then the node (event task,
    // swarm), then tell clients we are gone.
    api.shutdown().await;
    node.shutdown().await;
    dir.remove_api_info();
    tracing::info!("stopped cleanly");
    Ok(())
}
