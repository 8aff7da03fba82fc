//! User identities on the command line: `cnode id user …`, the first user at
//! `cnode init`, and unlocking the default user for commands that sign.
//!
//! Keys live in the keystore at `<data dir>/users` (see
//! `cnode_identity::keystore`). Passphrases come from `CNODE_PASSPHRASE`,
//! else from a prompt when stdin is a terminal; otherwise commands fail with
//! an error saying what to do.

use std::{
    fs,
    io::{IsTerminal, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use anyhow::{Context, Result, anyhow, bail};
use cnode_identity::{
    Did, UserKey,
    keystore::{self, Keystore, KeystoreError, MAX_FILE_LEN, Protection},
};
use cnode_node::DataDir;
use zeroize::Zeroizing;

use crate::{cli::UserCommand, output};

/// The keystore directory inside the data directory.
const USERS_DIR: &str = "users";
/// Read for every passphrase before prompting.
pub(crate) const PASSPHRASE_ENV: &str = "CNODE_PASSPHRASE";
const NO_USER: &str = "no user identity: create one with `cnode id user new`";

/// What a passphrase is asked for; decides the prompt and the error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Protecting a new key (asked twice at a prompt).
    New,
    /// Unlocking a key in the keystore.
    Unlock,
    /// Unlocking a key file being imported.
    Import,
}

/// The data directory's keystore.
pub(crate) fn keystore(dir: &DataDir) -> Result<Keystore> {
    Ok(Keystore::open(dir.path(USERS_DIR))?)
}

/// `CNODE_PASSPHRASE`, if set and not empty.
pub(crate) fn passphrase_from_env() -> Result<Option<Zeroizing<String>>> {
    match std::env::var_os(PASSPHRASE_ENV).filter(|v| !v.is_empty()) {
        Some(v) => {
            Ok(Some(Zeroizing::new(v.into_string().map_err(|_| {
                anyhow!("{PASSPHRASE_ENV} is not valid UTF-8")
            })?)))
        }
        None => Ok(None),
    }
}

/// The passphrase for `did` (none yet for [`Purpose::New`]): `CNODE_PASSPHRASE`
/// if set and not empty, else a prompt if stdin is a terminal, else an error
/// saying how to give one.
pub(crate) fn passphrase_for(did: Option<&Did>, purpose: Purpose) -> Result<Zeroizing<String>> {
    if let Some(v) = passphrase_from_env()? {
        return Ok(v);
    }
    let whose = match (did, purpose) {
        (Some(d), _) => d.to_string(),
        (None, Purpose::New) => "the new user key".to_owned(),
        (None, _) => "the key".to_owned(),
    };
    passphrase(&whose, purpose)
}

/// Asks for the passphrase of `what` ("the new user key", "the operator
/// key") at the terminal; an error saying how to give one when stdin is not
/// a terminal. For [`Purpose::New`] it asks twice and refuses an empty one.
pub(crate) fn passphrase(what: &str, purpose: Purpose) -> Result<Zeroizing<String>> {
    if !std::io::stdin().is_terminal() {
        match purpose {
            Purpose::New => bail!(
                "no passphrase for {what}: set {PASSPHRASE_ENV}, run in a terminal to be asked, or pass --insecure-no-passphrase to store the key unencrypted"
            ),
            Purpose::Unlock | Purpose::Import => bail!(
                "{what} is protected by a passphrase: set {PASSPHRASE_ENV}, or run in a terminal to be asked"
            ),
        }
    }
    let ask = |prompt: &str| -> Result<Zeroizing<String>> {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .context("cannot read the passphrase from the terminal")
    };
    match purpose {
        Purpose::New => {
            let first = ask(&format!("Passphrase for {what}: "))?;
            if first.is_empty() {
                bail!(
                    "empty passphrase; nothing was created (pass --insecure-no-passphrase to store the key unencrypted)"
                );
            }
            let again = ask("Repeat the passphrase: ")?;
            if *first != *again {
                bail!("the passphrases differ; nothing was created");
            }
            Ok(first)
        }
        Purpose::Unlock => ask(&format!("Passphrase for {what}: ")),
        Purpose::Import => ask(&format!("Passphrase of the imported key {what}: ")),
    }
}

/// The default user's signing key, asking for its passphrase if it has one.
/// For commands that sign records (`cnode post`).
#[allow(dead_code, reason = "called by `cnode post`, which is being written")]
pub(crate) fn unlock_default_user(dir: &DataDir) -> Result<UserKey> {
    let ks = keystore(dir)?;
    let did = default_did(&ks)?;
    match ks.unlock(&did, None) {
        Err(KeystoreError::PassphraseRequired { .. }) => {
            let pass = passphrase_for(Some(&did), Purpose::Unlock)?;
            Ok(ks.unlock(&did, Some(&pass))?)
        }
        other => Ok(other?),
    }
}

/// The default user, or an error saying how to get one.
fn default_did(ks: &Keystore) -> Result<Did> {
    if let Some(did) = ks.default_user()? {
        return Ok(did);
    }
    if ks.list()?.is_empty() {
        bail!("{NO_USER}");
    }
    bail!(
        "no default user identity: choose one with `cnode id user default DID` (see `cnode id user ls`)"
    )
}

fn parse_did(text: &str) -> Result<Did> {
    text.parse().map_err(|e| anyhow!("{text:?}: {e}"))
}

/// `cnode init`: the node's files, then a first user when
/// `--insecure-no-passphrase` is given or `CNODE_PASSPHRASE` is set.
pub(crate) fn init(dir: &DataDir, force: bool, insecure: bool, json: bool) -> Result<()> {
    let report = dir.init(force)?;
    let ks = keystore(dir)?;
    let users = ks.list()?;
    let env_set = std::env::var_os(PASSPHRASE_ENV).is_some_and(|v| !v.is_empty());
    let (user, created) = if !users.is_empty() {
        (users.iter().find(|u| u.default).map(|u| u.did), false)
    } else if insecure {
        (Some(ks.create(Protection::None)?), true)
    } else if env_set {
        let pass = passphrase_for(None, Purpose::New)?;
        (Some(ks.create(Protection::Passphrase(pass))?), true)
    } else {
        (None, false)
    };
    if json {
        output::json(&serde_json::json!({
            "data_dir": report.dir,
            "peer_id": report.peer_id,
            "created_key": report.created_key,
            "created_config": report.created_config,
            "user": user,
            "created_user": created,
        }));
        return Ok(());
    }
    output::print_init(&report, false);
    match user {
        Some(did) if created => println!("user        {did} (new, default)"),
        Some(did) => println!("user        {did}"),
        None if users.is_empty() => {
            println!("user        none yet; create one with `cnode id user new`")
        }
        None => println!("user        no default; choose one with `cnode id user default DID`"),
    }
    Ok(())
}

/// `cnode id user …`.
pub(crate) fn user(dir: &DataDir, command: UserCommand) -> Result<()> {
    let ks = keystore(dir)?;
    match command {
        UserCommand::New {
            insecure_no_passphrase,
            json,
        } => {
            let protection = if insecure_no_passphrase {
                Protection::None
            } else {
                Protection::Passphrase(passphrase_for(None, Purpose::New)?)
            };
            let protected = matches!(protection, Protection::Passphrase(_));
            let did = ks.create(protection)?;
            let default = ks.default_user()? == Some(did);
            if json {
                output::json(&serde_json::json!({
                    "did": did,
                    "protected": protected,
                    "default": default,
                }));
            } else {
                println!(
                    "created {did} ({}{})",
                    if protected {
                        "passphrase-protected"
                    } else {
                        "NOT passphrase-protected"
                    },
                    if default { ", default" } else { "" }
                );
            }
        }
        UserCommand::Ls { json } => {
            let users = ks.list()?;
            if json {
                output::json(&users);
            } else if users.is_empty() {
                println!("no user identities; create one with `cnode id user new`");
            } else {
                for u in users {
                    println!(
                        "{} {}  {}",
                        if u.default { "*" } else { " " },
                        u.did,
                        if u.protected {
                            "passphrase"
                        } else {
                            "no passphrase"
                        }
                    );
                }
            }
        }
        UserCommand::Export { did, output, json } => {
            let did = match did {
                Some(text) => parse_did(&text)?,
                None => default_did(&ks)?,
            };
            let bytes = Zeroizing::new(ks.export(&did)?);
            let protected = keystore::inspect(&bytes)?.protected;
            match output {
                Some(path) => {
                    write_new_secret(&path, &bytes)?;
                    if json {
                        output::json(&serde_json::json!({
                            "did": did,
                            "path": path,
                            "protected": protected,
                        }));
                    } else {
                        println!("exported {did} to {}", path.display());
                    }
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes)
                        .and_then(|()| out.flush())
                        .context("cannot write to stdout")?;
                }
            }
        }
        UserCommand::Import { file, json } => {
            let bytes = read_key_file(&file)?;
            let info = keystore::inspect(&bytes).with_context(|| file.display().to_string())?;
            let pass = if info.protected {
                Some(passphrase_for(Some(&info.did), Purpose::Import)?)
            } else {
                None
            };
            let imported = ks.import(&bytes, pass.as_ref().map(|p| p.as_str()))?;
            let default = ks.default_user()? == Some(imported.did);
            if json {
                output::json(&serde_json::json!({
                    "did": imported.did,
                    "already_present": imported.already_present,
                    "protected": info.protected,
                    "default": default,
                }));
            } else if imported.already_present {
                println!(
                    "{} is already in the keystore; left as it was",
                    imported.did
                );
            } else {
                println!(
                    "imported {}{}",
                    imported.did,
                    if default { " (default)" } else { "" }
                );
            }
        }
        UserCommand::Default { did, json } => {
            let did = parse_did(&did)?;
            ks.set_default(&did)?;
            if json {
                output::json(&serde_json::json!({ "default": did }));
            } else {
                println!("default user {did}");
            }
        }
    }
    Ok(())
}

/// Reads an exported key file, refusing anything larger than a key file.
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let f = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Zeroizing::new(Vec::new());
    f.take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > MAX_FILE_LEN {
        bail!(
            "{} is not a cnode key file (larger than {MAX_FILE_LEN} bytes)",
            path.display()
        );
    }
    Ok(bytes)
}

/// Writes a new file with mode 0600; an existing file is never overwritten.
pub(crate) fn write_new_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow!("{} already exists; not overwriting it", path.display())
            }
            _ => anyhow!("cannot write {}: {e}", path.display()),
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_default_user_says_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        let err = unlock_default_user(&dir).unwrap_err().to_string();
        assert_eq!(err, NO_USER);

        // Unprotected keys need no passphrase, so this runs without a terminal.
        let ks = keystore(&dir).unwrap();
        let first = ks.create(Protection::None).unwrap();
        assert_eq!(unlock_default_user(&dir).unwrap().did(), first);
        let second = ks.create(Protection::None).unwrap();
        ks.set_default(&second).unwrap();
        assert_eq!(unlock_default_user(&dir).unwrap().did(), second);

        // Two users and the default file gone: no guessing.
        std::fs::remove_file(dir.path(USERS_DIR).join("default")).unwrap();
        let err = unlock_default_user(&dir).unwrap_err().to_string();
        assert!(err.contains("cnode id user default"), "{err}");
    }
}
