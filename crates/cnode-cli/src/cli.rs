//! Command-line arguments.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use libp2p::Multiaddr;

/// Community Node: a peer-to-peer node that serves its region's information.
///
/// With no command, `cnode` initialises the data directory if needed and runs
/// the node with the defaults (p2p on port 4040, API on 127.0.0.1:7700).
#[derive(Debug, Parser)]
#[command(name = "cnode", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The data directory [default: $XDG_DATA_HOME/cnode or ~/.local/share/cnode]
    #[arg(long, global = true, env = "CNODE_DATA", value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// The hidden subcommand a node runs to compile a plugin in a child process.
pub(crate) const COMPILE_PLUGIN: &str = "__compile-plugin";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the data directory, node key, API token and default config.
    Init {
        /// Replace an existing node key (the node gets a new identity).
        #[arg(long)]
        force: bool,
        /// Also create a first user identity stored without a passphrase
        /// (with CNODE_PASSPHRASE set, one is created protected by it).
        #[arg(long)]
        insecure_no_passphrase: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the node in the foreground until Ctrl-C / SIGTERM.
    Run(RunArgs),
    /// Internal: compile a plugin component for a running node, which runs
    /// this in a child process (SETTINGS INPUT OUTPUT).
    #[command(name = COMPILE_PLUGIN, hide = true)]
    CompilePlugin {
        /// The host's engine settings.
        settings: String,
        /// The component.
        input: std::path::PathBuf,
        /// Where to write the compiled code.
        output: std::path::PathBuf,
    },
    /// Show the running node's identity, addresses and connections.
    Status {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List connected peers with addresses, transport and latency.
    Peers {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print this node's peer id (no running node needed); `id user` manages
    /// user identities.
    #[command(args_conflicts_with_subcommands = true)]
    Id {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: Option<IdCommand>,
    },
    /// Add a file or folder to the node's blobs and print its CID.
    Add {
        /// The file or folder.
        path: std::path::PathBuf,
        /// Do not pin (a later `cnode blobs gc` may remove it).
        #[arg(long)]
        no_pin: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a blob (or folder) by CID from the swarm, with a progress bar.
    ///
    /// Uses the running node if there is one; otherwise runs a node just for
    /// this download (resumable: run it again after an interruption).
    Get {
        /// The CID (bafkr4…).
        cid: String,
        /// Write the file (or folder) here. The node's store hands its copy
        /// over to PATH (no second copy on disk) and seeds from it until you
        /// change, move or delete the file; then the store forgets the blob.
        #[arg(short, long, value_name = "PATH")]
        output: Option<std::path::PathBuf>,
        /// With -o: write a separate copy and keep the store's own.
        #[arg(long, requires = "output")]
        copy: bool,
        /// Also ask this peer (repeatable), e.g. /ip4/…/udp/4040/quic-v1/p2p/12D3Koo…
        #[arg(long, value_name = "MULTIADDR")]
        peer: Vec<Multiaddr>,
        /// Do not pin.
        #[arg(long)]
        no_pin: bool,
        /// Print JSON for scripts (no progress bar).
        #[arg(long)]
        json: bool,
    },
    /// List, pin, unpin, remove and garbage-collect blobs.
    Blobs {
        #[command(subcommand)]
        command: BlobsCommand,
    },
    /// Post a record (event, listing, notice…) signed by your user identity.
    ///
    /// Example: cnode post -c org.cnode.notices --at 18.7883,98.9853 --title "Road closed" --body '{"body": "Huay Kaew road closed until 6 pm"}' --expires 1d
    Post(crate::records::PostArgs),
    /// Find records held by this node (near a point or in a region, by text, …).
    ///
    /// Example: cnode query --near 18.79,98.98 --radius 2km --text กาแฟ
    Query(crate::records::QueryArgs),
    /// Manage your records.
    Records {
        #[command(subcommand)]
        command: crate::records::RecordsCommand,
    },
    /// Join, leave and list the regions this node serves.
    Region {
        #[command(subcommand)]
        command: crate::records::RegionCommand,
    },
    /// The chain registry: read the routing table and API list (through the
    /// running node), manage the operator key, and send registry transactions.
    #[command(long_about = crate::registry::LONG_ABOUT)]
    Registry {
        #[command(subcommand)]
        command: crate::registry::RegistryCommand,
    },
    /// Service plugins: install, grant and revoke capabilities, call.
    #[command(long_about = crate::plugin::LONG_ABOUT)]
    Plugin {
        #[command(subcommand)]
        command: crate::plugin::PluginCommand,
    },
    /// Run a local development chain (anvil) with the registry, and register
    /// the given nodes on it.
    #[command(long_about = crate::devnet::LONG_ABOUT)]
    Devnet(crate::devnet::DevnetArgs),
    /// Debug access to the DHT.
    Dht {
        #[command(subcommand)]
        command: DhtCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum IdCommand {
    /// User identities (did:key) kept in the data directory's keystore.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

/// `cnode id user …`. Passphrases come from CNODE_PASSPHRASE, else a prompt.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user identity, protected by a passphrase.
    New {
        /// Store the key unencrypted (anyone who can read the file can sign as you).
        #[arg(long)]
        insecure_no_passphrase: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List user identities.
    Ls {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Write a user's key file (encrypted if it has a passphrase) for `cnode id user import`.
    Export {
        /// The user [default: the default user].
        did: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// With -o, print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Add a key file written by `cnode id user export`.
    Import {
        /// The exported file.
        file: PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Make a user the default one.
    Default {
        /// The user's DID.
        did: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DhtCommand {
    /// Store VALUE under KEY (on this node and the closest peers).
    Put {
        /// The key (1–256 bytes).
        key: String,
        /// The value (at most 64 KiB).
        value: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Look KEY up.
    Get {
        /// The key.
        key: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// `cnode` with no command: the `run` settings from CNODE_* variables only.
#[derive(Debug, Parser)]
pub(crate) struct EnvOnly {
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BlobsCommand {
    /// Every blob: CID, size, complete or partial, pinned.
    Ls {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Keep a blob through `gc`.
    Pin {
        /// The CID.
        cid: String,
    },
    /// Let `gc` remove a blob.
    Unpin {
        /// The CID.
        cid: String,
    },
    /// Remove every unpinned blob.
    Gc {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Remove a blob now.
    Rm {
        /// The CID.
        cid: String,
    },
}

/// Flags of `cnode run` (each also settable by a CNODE_* variable).
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Listen on this address (repeatable; replaces config.toml's list). Port 0 = ephemeral.
    /// Example: /ip4/0.0.0.0/udp/4040/quic-v1
    #[arg(
        long,
        env = "CNODE_LISTEN",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub(crate) listen: Vec<Multiaddr>,
    /// The HTTP API address [default: 127.0.0.1:7700]
    #[arg(long, env = "CNODE_API", value_name = "HOST:PORT")]
    pub(crate) api: Option<SocketAddr>,
    /// Connect to this peer at start (repeatable; added to config.toml's list).
    #[arg(
        long,
        env = "CNODE_BOOTSTRAP",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub(crate) bootstrap: Vec<Multiaddr>,
    /// Do not discover peers on the local network.
    #[arg(long, env = "CNODE_NO_MDNS")]
    pub(crate) no_mdns: bool,
    /// Reserve a slot on this relay so NATed peers can reach us through it (repeatable).
    #[arg(
        long,
        env = "CNODE_RELAY",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub(crate) relay: Vec<Multiaddr>,
    /// Announce this address as reachable, e.g. a VPS's public address (repeatable).
    #[arg(
        long,
        env = "CNODE_EXTERNAL",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub(crate) external: Vec<Multiaddr>,
    /// Serve as a circuit relay: auto (when publicly reachable), on, off.
    #[arg(long, env = "CNODE_RELAY_SERVER", value_name = "MODE")]
    pub(crate) relay_server: Option<RelayServerArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RelayServerArg {
    Auto,
    On,
    Off,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
