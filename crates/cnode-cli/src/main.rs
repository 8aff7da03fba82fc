//! `cnode`: the Community Node command-line program.
//!
//! Usage: `cnode --help`. Client commands (`status`, `peers`, `dht`) talk to the
//! running node's HTTP API, found through `api.json` and `api.token` in the
//! data directory.

mod blobs;
mod cli;

mod client;
mod config_edit;
mod devnet;
mod output;
mod plugin;
mod plugin_new;
mod records;
mod registry;
mod run;
mod tune;
mod user;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use cnode_blobs::ExportMode;
use cnode_node::{DataDir, default_data_dir};
use cnode_types::{DhtValue, PeerInfo, StatusInfo};

use crate::{
    cli::{Cli, Command, DhtCommand, IdCommand},
    client::ApiClient,
};

/// Async worker threads: `CNODE_WORKER_THREADS`, else half the cores, at
/// least one. File, hash and compile work runs on tokio's blocking pool, so
/// the workers carry the network, the API and plugin calls; measured on 2
/// cores, a second worker cost more in wake-ups than it gave: 1 GiB 1 -> 1
/// went from 422-473 to 478-497 MB/s with one, and a 4-leecher swarm used
/// ~12 % less CPU.
fn worker_threads() -> usize {
    std::env::var("CNODE_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 2)
                .max(1)
        })
}

fn init_tracing(default: &str) {
    let filter = std::env::var("CNODE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    tune::memcpy_threshold();
    tune::allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line: clap's first line already says what is wrong.
            let text = e.to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("{first} (see `cnode --help`)");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CompilePlugin {
        settings,
        input,
        output,
    }) = &cli.command
    {
        // A child of a running node: no runtime, no logging set-up.
        return match cnode_node::compile_plugin_file(settings, input, output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runs_node = matches!(cli.command, None | Some(Command::Run(_)));
    if runs_node || matches!(cli.command, Some(Command::Get { .. })) {
        cnode_net::seed_random_early();
    }
    init_tracing(if runs_node {
        "info,libp2p_mdns=warn,libp2p_kad=error"
    } else {
        "warn"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    let dir = DataDir::new(cli.data.unwrap_or_else(default_data_dir));
    match cli.command {
        None => {
            if !dir.is_initialized() {
                let report = dir.init(false)?;
                output::print_init(&report, false);
            }
            // No flags were given, but CNODE_* variables still apply.
            let args = cli::EnvOnly::try_parse_from(["cnode"])?.run;
            run::run(dir, args).await
        }
        Some(Command::Init {
            force,
            insecure_no_passphrase,
            json,
        }) => user::init(&dir, force, insecure_no_passphrase, json),
        Some(Command::Run(args)) => run::run(dir, args).await,
        Some(Command::CompilePlugin { .. }) => {
            anyhow::bail!("{} runs only as a child of a node", cli::COMPILE_PLUGIN)
        }
        Some(Command::Id {
            command: Some(IdCommand::User { command }),
            ..
        }) => user::user(&dir, command),
        Some(Command::Id {
            json,
            command: None,
        }) => {
            let key = dir.load_key()?;
            let id = key.public().to_peer_id().to_string();
            if json {
                output::json(&serde_json::json!({ "peer_id": id }));
            } else {
                println!("{id}");
            }
            Ok(())
        }
        Some(Command::Status { json }) => {
            let client = ApiClient::from_data_dir(&dir)?;
            let status: StatusInfo = client.get_json(&["v1", "status"]).await?;
            if json {
                output::json(&status);
            } else {
                output::print_status(&status);
            }
            Ok(())
        }
        Some(Command::Peers { json }) => {
            let client = ApiClient::from_data_dir(&dir)?;
            let peers: Vec<PeerInfo> = client.get_json(&["v1", "peers"]).await?;
            if json {
                output::json(&peers);
            } else {
                output::print_peers(&peers);
            }
            Ok(())
        }
        Some(Command::Add { path, no_pin, json }) => blobs::add(&dir, &path, !no_pin, json).await,
        Some(Command::Get {
            cid,
            output,
            copy,
            peer,
            no_pin,
            json,
        }) => {
            let mode = if copy {
                ExportMode::Copy
            } else {
                ExportMode::Move
            };
            let out = output.as_deref().map(|o| (o, mode));
            blobs::get(&dir, &cid, out, peer, !no_pin, json).await
        }
        Some(Command::Blobs { command }) => blobs::blobs(&dir, command).await,
        Some(Command::Post(args)) => records::post(&dir, args).await,
        Some(Command::Query(args)) => records::query(&dir, args).await,
        Some(Command::Records { command }) => records::records(&dir, command).await,
        Some(Command::Region { command }) => records::region(&dir, command).await,
        Some(Command::Registry { command }) => registry::registry(&dir, command).await,
        Some(Command::Plugin { command }) => plugin::plugin(&dir, command).await,
        Some(Command::Devnet(args)) => devnet::devnet(dir, args).await,
        Some(Command::Dht { command }) => {
            let client = ApiClient::from_data_dir(&dir)?;
            match command {
                DhtCommand::Put { key, value, json } => {
                    client.put(&["v1", "dht", &key], value.into_bytes()).await?;
                    if json {
                        output::json(&serde_json::json!({ "key": key, "stored": true }));
                    } else {
                        println!("stored {key:?}");
                    }
                }
                DhtCommand::Get { key, json } => {
                    let found: Option<DhtValue> = client.get_json_opt(&["v1", "dht", &key]).await?;
                    match found {
                        Some(v) if json => output::json(&v),
                        Some(v) => println!("{}", v.value),
                        None => anyhow::bail!("no value for key {key:?} in the DHT"),
                    }
                }
            }
            Ok(())
        }
    }
}
