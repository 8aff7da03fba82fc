//! The operator key: the Ethereum key an operator signs registry
//! transactions with, kept at `<data dir>/operator/key.json`.
//!
//! The file is a standard Web3 Secret Storage (v3) keystore, written and
//! read by alloy's local-signer keystore support (scrypt + AES-128-CTR), so
//! geth, foundry (`cast wallet`) and other wallets read it too. Like geth,
//! cnode adds the address in clear (`"address"`), so `key show` needs no
//! passphrase; signing always uses the decrypted key's own address.
//!
//! Also the `cnode registry key …` commands.
//!
//! An unprotected key is the same format encrypted with the empty
//! passphrase; it is only written when asked for (`--insecure-no-passphrase`,
//! and `cnode devnet` for the public development keys). The directory is
//! 0700 and the file 0600; an existing key is replaced only with `--force`.

use std::{
    fs,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use anyhow::{Context, Result, anyhow, bail};
use cnode_node::DataDir;
use zeroize::Zeroizing;

use super::KeyCommand;
use crate::{
    output,
    user::{self, Purpose},
};

/// The directory inside the data directory.
pub(crate) const OPERATOR_DIR: &str = "operator";
/// The keystore file inside [`OPERATOR_DIR`].
pub(crate) const KEY_FILE: &str = "key.json";
/// Larger files are not keystores.
const MAX_KEYSTORE_LEN: u64 = 64 * 1024;
/// Key derivation work accepted in an imported keystore (geth's "standard"
/// scrypt is n = 2^18, its pbkdf2 262,144 rounds): bounded so a crafted file
/// cannot make the CLI allocate gigabytes or spin for hours.
const MAX_SCRYPT_N: u64 = 1 << 20;
const MAX_SCRYPT_R: u64 = 16;
const MAX_SCRYPT_P: u64 = 4;
const MAX_PBKDF2_ROUNDS: u64 = 10_000_000;

/// Where the data directory's operator key lives.
pub(crate) fn key_path(dir: &DataDir) -> PathBuf {
    dir.path(OPERATOR_DIR).join(KEY_FILE)
}

/// Why a keystore could not be opened with a passphrase.
#[derive(Debug)]
enum OpenError {
    /// The passphrase does not match (the keystore's MAC check failed).
    WrongPassphrase,
    /// Anything else: unreadable file, not a keystore.
    Other(anyhow::Error),
}

/// Checks that `bytes` is a v3 keystore within bounds, before alloy's
/// keystore code sees it (it indexes the IV and derived key without
/// checking their lengths).
fn check_keystore(path: &Path, bytes: &[u8]) -> Result<()> {
    let bad = |why: &str| anyhow!("{} is not a v3 keystore: {why}", path.display());
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(&format!("not JSON ({e})")))?;
    if v["version"].as_u64() != Some(3) {
        return Err(bad("\"version\" is not 3"));
    }
    let c = &v["crypto"];
    if !c.is_object() {
        return Err(bad("no \"crypto\" object"));
    }
    if c["cipher"].as_str() != Some("aes-128-ctr") {
        return Err(bad("the cipher is not aes-128-ctr"));
    }
    let hex_len = |field: &serde_json::Value| {
        field
            .as_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()) && s.len() % 2 == 0)
            .map(|s| s.len() / 2)
    };
    if hex_len(&c["cipherparams"]["iv"]) != Some(16) {
        return Err(bad("the IV is not 16 hex bytes"));
    }
    if hex_len(&c["ciphertext"]) != Some(32) {
        return Err(bad("the ciphertext is not 32 hex bytes"));
    }
    if hex_len(&c["mac"]) != Some(32) {
        return Err(bad("the MAC is not 32 hex bytes"));
    }
    if !v["id"].is_string() {
        return Err(bad("no \"id\""));
    }
    let k = &c["kdfparams"];
    if k["dklen"].as_u64() != Some(32) {
        return Err(bad("the derived key length is not 32"));
    }
    if hex_len(&k["salt"]).is_none() {
        return Err(bad("the salt is not hex"));
    }
    let in_range =
        |field: &serde_json::Value, max: u64| field.as_u64().filter(|n| (1..=max).contains(n));
    if k.get("n").is_some() {
        let n = in_range(&k["n"], MAX_SCRYPT_N).filter(|n| n.is_power_of_two() && *n > 1);
        if n.is_none()
            || in_range(&k["r"], MAX_SCRYPT_R).is_none()
            || in_range(&k["p"], MAX_SCRYPT_P).is_none()
        {
            return Err(bad(&format!(
                "scrypt parameters out of range (n a power of two up to {MAX_SCRYPT_N}, r up to {MAX_SCRYPT_R}, p up to {MAX_SCRYPT_P})"
            )));
        }
    } else if k.get("c").is_some() {
        if in_range(&k["c"], MAX_PBKDF2_ROUNDS).is_none()
            || k["prf"].as_str() != Some("hmac-sha256")
        {
            return Err(bad("pbkdf2 parameters out of range"));
        }
    } else {
        return Err(bad("the key derivation is neither scrypt nor pbkdf2"));
    }
    Ok(())
}

/// Reads a keystore file (bounded) and checks its shape.
fn read_keystore(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let f = fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{} does not exist", path.display()),
        _ => anyhow!("cannot read {}: {e}", path.display()),
    })?;
    let mut bytes = Zeroizing::new(Vec::new());
    f.take(MAX_KEYSTORE_LEN + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_KEYSTORE_LEN {
        bail!("{} is not a keystore (larger than 64 KiB)", path.display());
    }
    check_keystore(path, &bytes)?;
    Ok(bytes)
}

/// Decrypts the keystore at `path` (already checked) with `passphrase`.
fn open(path: &Path, passphrase: &str) -> Result<PrivateKeySigner, OpenError> {
    PrivateKeySigner::decrypt_keystore(path, passphrase).map_err(|e| {
        // alloy does not re-export eth-keystore's error type; its MAC
        // failure prints as "Mac Mismatch".
        if e.to_string() == "Mac Mismatch" {
            OpenError::WrongPassphrase
        } else {
            OpenError::Other(anyhow!("cannot open the keystore {}: {e}", path.display()))
        }
    })
}

/// The address a keystore file states in clear (geth's `"address"`), if any.
pub(crate) fn stated_address(path: &Path) -> Result<Option<Address>> {
    let bytes = read_keystore(path)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    Ok(v["address"].as_str().and_then(|a| {
        let hex = a.strip_prefix("0x").unwrap_or(a);
        hex.parse::<Address>().ok()
    }))
}

/// Whether the keystore opens with the empty passphrase.
pub(crate) fn is_unprotected(path: &Path) -> Result<bool> {
    read_keystore(path)?;
    match open(path, "") {
        Ok(_) => Ok(true),
        Err(OpenError::WrongPassphrase) => Ok(false),
        Err(OpenError::Other(e)) => Err(e),
    }
}

/// Opens a keystore file: with `CNODE_PASSPHRASE` when set, else the empty
/// passphrase (an unprotected key), else a prompt. `what` names the file in
/// prompts and errors.
pub(crate) fn unlock_file(
    path: &Path,
    what: &str,
) -> Result<(PrivateKeySigner, Zeroizing<String>)> {
    read_keystore(path)?;
    let env = user::passphrase_from_env()?;
    if let Some(pass) = env {
        match open(path, &pass) {
            Ok(signer) => return Ok((signer, pass)),
            Err(OpenError::Other(e)) => return Err(e),
            Err(OpenError::WrongPassphrase) => {}
        }
        // CNODE_PASSPHRASE may be set for other keys; an unprotected key still opens.
        return match open(path, "") {
            Ok(signer) => Ok((signer, Zeroizing::new(String::new()))),
            Err(OpenError::Other(e)) => Err(e),
            Err(OpenError::WrongPassphrase) => Err(anyhow!(
                "wrong passphrase for {what} {} (from {})",
                path.display(),
                user::PASSPHRASE_ENV
            )),
        };
    }
    match open(path, "") {
        Ok(signer) => return Ok((signer, Zeroizing::new(String::new()))),
        Err(OpenError::Other(e)) => return Err(e),
        Err(OpenError::WrongPassphrase) => {}
    }
    let pass = user::passphrase(what, Purpose::Unlock)?;
    match open(path, &pass) {
        Ok(signer) => Ok((signer, pass)),
        Err(OpenError::WrongPassphrase) => {
            Err(anyhow!("wrong passphrase for {what} {}", path.display()))
        }
        Err(OpenError::Other(e)) => Err(e),
    }
}

/// The data directory's operator key, unlocked for signing.
pub(crate) fn unlock(dir: &DataDir) -> Result<PrivateKeySigner> {
    let path = key_path(dir);
    if !path.exists() {
        bail!(
            "no operator key at {}: create one with `cnode registry key new`, or bring one with `cnode registry key import`",
            path.display()
        );
    }
    Ok(unlock_file(&path, "the operator key")?.0)
}

/// Fails (before any prompt) if the data directory has an operator key and
/// `force` is not given.
pub(crate) fn refuse_overwrite(dir: &DataDir, force: bool) -> Result<()> {
    let path = key_path(dir);
    if path.exists() && !force {
        let who = stated_address(&path)
            .ok()
            .flatten()
            .map(|a| format!(" (operator {a})"))
            .unwrap_or_default();
        bail!(
            "{} already holds an operator key{who}; not replacing it (pass --force to replace it: the old key is lost unless you have a copy)",
            path.display()
        );
    }
    Ok(())
}

/// Writes `signer` as the data directory's operator key, encrypted with
/// `passphrase` (empty: unprotected). An existing key is replaced only
/// with `force`.
pub(crate) fn store(
    dir: &DataDir,
    signer: &PrivateKeySigner,
    passphrase: &str,
    force: bool,
) -> Result<PathBuf> {
    if !dir.root().exists() {
        // A data directory holds secrets: private, as `cnode init` makes it.
        fs::create_dir_all(dir.root())
            .with_context(|| format!("cannot create {}", dir.root().display()))?;
        fs::set_permissions(dir.root(), fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.root().display()))?;
    }
    let op_dir = dir.path(OPERATOR_DIR);
    fs::create_dir_all(&op_dir).with_context(|| format!("cannot create {}", op_dir.display()))?;
    fs::set_permissions(&op_dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", op_dir.display()))?;
    refuse_overwrite(dir, force)?;
    let path = op_dir.join(KEY_FILE);
    // alloy writes the keystore under a name of our choosing with default
    // permissions, inside the private directory; it is then rewritten with
    // the address added, as 0600, and renamed over the key.
    let raw = op_dir.join(".key.json.new");
    let _ = fs::remove_file(&raw);
    PrivateKeySigner::encrypt_keystore(
        &op_dir,
        &mut rand::thread_rng(),
        signer.to_bytes(),
        passphrase,
        Some(".key.json.new"),
    )
    .map_err(|e| anyhow!("cannot encrypt the operator key: {e}"))?;
    let text = fs::read(&raw).with_context(|| format!("cannot read {}", raw.display()));
    let _ = fs::remove_file(&raw);
    let mut v: serde_json::Value =
        serde_json::from_slice(&text?).context("alloy wrote an unreadable keystore")?;
    v["address"] = alloy::hex::encode(signer.address()).into();
    let tmp = op_dir.join(".key.json.tmp");
    let _ = fs::remove_file(&tmp);
    crate::user::write_new_secret(&tmp, v.to_string().as_bytes())?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Reads a private key written as hex (64 digits, `0x` optional, spaces
/// and a trailing newline ignored).
pub(crate) fn read_private_key_file(path: &Path) -> Result<PrivateKeySigner> {
    let f = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut text = Zeroizing::new(String::new());
    f.take(1024)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} as text", path.display()))?;
    let t = text.trim();
    let hex = t.strip_prefix("0x").unwrap_or(t);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "{} does not hold a private key (64 hex digits, 0x optional)",
            path.display()
        );
    }
    let bytes = Zeroizing::new(alloy::hex::decode(hex).context("not hex")?);
    PrivateKeySigner::from_slice(&bytes).map_err(|e| {
        anyhow!(
            "{} is not a valid secp256k1 private key: {e}",
            path.display()
        )
    })
}

/// `cnode registry key …`.
pub(crate) fn command(dir: &DataDir, command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::New {
            insecure_no_passphrase,
            force,
            json,
        } => {
            refuse_overwrite(dir, force)?;
            let pass = new_passphrase(insecure_no_passphrase)?;
            let signer = PrivateKeySigner::random();
            let path = store(dir, &signer, &pass, force)?;
            print_stored(json, "created", &signer, &path, !pass.is_empty());
        }
        KeyCommand::Import {
            private_key_file,
            from_keystore,
            insecure_no_passphrase,
            force,
            json,
        } => {
            refuse_overwrite(dir, force)?;
            let (signer, pass) = match (private_key_file, from_keystore) {
                (Some(file), _) => (
                    read_private_key_file(&file)?,
                    new_passphrase(insecure_no_passphrase)?,
                ),
                (None, Some(file)) => {
                    let (signer, pass) =
                        unlock_file(&file, &format!("the keystore {}", file.display()))?;
                    // The key keeps its passphrase, unless asked to drop it; a
                    // keystore without one gets one like a new key.
                    let pass = if insecure_no_passphrase {
                        zeroize::Zeroizing::new(String::new())
                    } else if pass.is_empty() {
                        new_passphrase(false)?
                    } else {
                        pass
                    };
                    (signer, pass)
                }
                (None, None) => bail!("give --private-key-file FILE or --from-keystore FILE"),
            };
            let path = store(dir, &signer, &pass, force)?;
            print_stored(json, "imported", &signer, &path, !pass.is_empty());
        }
        KeyCommand::Show { json } => {
            let path = key_path(dir);
            if !path.exists() {
                bail!(
                    "no operator key at {}: create one with `cnode registry key new`, or bring one with `cnode registry key import`",
                    path.display()
                );
            }
            let address = match stated_address(&path)? {
                Some(a) => a,
                None => unlock_file(&path, "the operator key")?.0.address(),
            };
            let protected = !is_unprotected(&path)?;
            if json {
                output::json(&serde_json::json!({
                    "address": address.to_string(),
                    "path": path,
                    "protected": protected,
                }));
            } else {
                println!("{address}");
                if !protected {
                    eprintln!("note: {} is NOT passphrase-protected", path.display());
                }
            }
        }
    }
    Ok(())
}

/// The passphrase for a key being stored: empty with `--insecure-no-passphrase`,
/// else CNODE_PASSPHRASE or a prompt (twice).
fn new_passphrase(insecure: bool) -> Result<zeroize::Zeroizing<String>> {
    if insecure {
        return Ok(zeroize::Zeroizing::new(String::new()));
    }
    match user::passphrase_from_env()? {
        Some(p) => Ok(p),
        None => user::passphrase("the new operator key", Purpose::New),
    }
}

fn print_stored(
    json: bool,
    verb: &str,
    signer: &PrivateKeySigner,
    path: &std::path::Path,
    protected: bool,
) {
    if json {
        output::json(&serde_json::json!({
            "address": signer.address().to_string(),
            "path": path,
            "protected": protected,
        }));
        return;
    }
    println!("{verb} operator key {}", signer.address());
    if protected {
        println!("stored in {} (passphrase-protected)", path.display());
    } else {
        println!(
            "stored in {} — NOT passphrase-protected: anyone who can read the file can use the key",
            path.display()
        );
    }
    println!(
        "fund this address with ETH for gas and stake, then: cnode registry register --stake 1eth --region w5q6"
    );
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn store_unlock_and_refuse_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        let signer = PrivateKeySigner::random();
        let path = store(&dir, &signer, "", false).unwrap();
        assert_eq!(path, key_path(&dir));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(stated_address(&path).unwrap(), Some(signer.address()));
        assert!(is_unprotected(&path).unwrap());
        // No CNODE_PASSPHRASE in unit tests: the empty passphrase opens it.
        assert_eq!(unlock(&dir).unwrap().address(), signer.address());

        let other = PrivateKeySigner::random();
        let err = store(&dir, &other, "", false).unwrap_err().to_string();
        assert!(
            err.contains("--force") && err.contains(&signer.address().to_string()),
            "{err}"
        );
        store(&dir, &other, "correct horse", true).unwrap();
        assert_eq!(stated_address(&path).unwrap(), Some(other.address()));
        assert!(!is_unprotected(&path).unwrap());
        assert!(matches!(
            open(&path, "wrong"),
            Err(OpenError::WrongPassphrase)
        ));
        assert_eq!(
            open(&path, "correct horse").unwrap().address(),
            other.address()
        );
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [KEY_FILE]);
    }

    #[test]
    fn malformed_keystores_are_refused_before_decryption() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        let path = store(&dir, &PrivateKeySigner::random(), "", false).unwrap();
        let good: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        type Spoil = fn(&mut serde_json::Value);
        let cases: [(&str, Spoil); 6] = [
            ("IV", |v| v["crypto"]["cipherparams"]["iv"] = "00".into()),
            ("derived key", |v| {
                v["crypto"]["kdfparams"]["dklen"] = 16.into()
            }),
            ("scrypt", |v| {
                v["crypto"]["kdfparams"]["n"] = (1u64 << 30).into()
            }),
            ("version", |v| v["version"] = 1.into()),
            ("cipher", |v| v["crypto"]["cipher"] = "aes-256-gcm".into()),
            ("ciphertext", |v| v["crypto"]["ciphertext"] = "zz".into()),
        ];
        for (what, spoil) in cases {
            let mut v = good.clone();
            spoil(&mut v);
            let bad = tmp.path().join("bad.json");
            fs::write(&bad, v.to_string()).unwrap();
            let err = unlock_file(&bad, "the key").unwrap_err().to_string();
            assert!(err.contains("not a v3 keystore"), "{what}: {err}");
        }
        let junk = tmp.path().join("junk.json");
        fs::write(&junk, "hello").unwrap();
        assert!(stated_address(&junk).is_err());
    }

    #[test]
    fn private_key_files() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pk");
        let key = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let expected: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
            .parse()
            .unwrap();
        for text in [key.to_owned(), format!("0x{key}\n"), format!("  {key}  \n")] {
            fs::write(&f, text).unwrap();
            assert_eq!(read_private_key_file(&f).unwrap().address(), expected);
        }
        fs::write(&f, "0x1234").unwrap();
        let err = read_private_key_file(&f).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
        fs::write(&f, "0".repeat(64)).unwrap();
        assert!(read_private_key_file(&f).is_err(), "zero is not a key");
    }
}
