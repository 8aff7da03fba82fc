//! Tests of the parent module.

use super::*;

/// Tiny Argon2 parameters so tests run in milliseconds.
fn tiny() -> KdfParams {
    KdfParams::new(8, 1, 1).unwrap()
}

fn store() -> (tempfile::TempDir, Keystore) {
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::open(tmp.path().join("users"))
        .unwrap()
        .with_kdf(tiny());
    (tmp, ks)
}

fn pass(s: &str) -> Protection {
    Protection::Passphrase(Zeroizing::new(s.to_owned()))
}

fn json_of(ks: &Keystore, did: &Did) -> serde_json::Value {
    serde_json::from_slice(&fs::read(ks.path_of(did)).unwrap()).unwrap()
}

#[test]
fn protected_key_round_trips() {
    let (_tmp, ks) = store();
    let did = ks.create(pass("correct horse")).unwrap();
    let key = ks.unlock(&did, Some("correct horse")).unwrap();
    assert_eq!(key.did(), did);
    let sig = key.sign(b"msg");
    assert_eq!(did.verify(b"msg", &sig), Ok(()));
    // The file holds no seed in clear and says how it was sealed.
    let v = json_of(&ks, &did);
    assert_eq!(v["version"], 1);
    assert_eq!(v["did"], did.to_string());
    assert_eq!(v["kdf"]["alg"], "argon2id");
    assert_eq!(v["kdf"]["m_kib"], 8);
    assert_eq!(v["cipher"], "xchacha20poly1305");
    assert!(v.get("insecure_seed").is_none());
    let text = fs::read_to_string(ks.path_of(&did)).unwrap();
    assert!(!text.contains(&hex::encode(*key.seed())));
    assert_eq!(
        ks.list().unwrap(),
        vec![UserEntry {
            did,
            protected: true,
            default: true
        }]
    );
}

#[test]
fn unprotected_key_round_trips() {
    let (_tmp, ks) = store();
    let did = ks.create(Protection::None).unwrap();
    // No passphrase needed, and one given is ignored.
    assert_eq!(ks.unlock(&did, None).unwrap().did(), did);
    assert_eq!(ks.unlock(&did, Some("anything")).unwrap().did(), did);
    let v = json_of(&ks, &did);
    assert_eq!(v["insecure_seed"].as_str().unwrap().len(), 64);
    assert!(v.get("kdf").is_none());
    assert!(!ks.list().unwrap()[0].protected);
}

#[test]
fn production_parameters_are_the_default() {
    let k = KdfParams::default();
    assert_eq!((k.m_kib(), k.t(), k.p()), (65536, 3, 1));
    let ks = Keystore::open("/nonexistent/users").unwrap();
    assert_eq!(ks.kdf, k);
}

#[test]
fn passphrase_errors_are_clear() {
    let (_tmp, ks) = store();
    let did = ks.create(pass("right")).unwrap();
    assert!(matches!(
        ks.unlock(&did, None),
        Err(KeystoreError::PassphraseRequired { did: d }) if *d == did
    ));
    let err = ks.unlock(&did, Some("wrong")).unwrap_err();
    assert!(matches!(&err, KeystoreError::WrongPassphrase { did: d } if **d == did));
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    let other = UserKey::generate().did();
    let err = ks.unlock(&other, Some("right")).unwrap_err();
    assert!(matches!(&err, KeystoreError::NoSuchUser { did: d, .. } if **d == other));
}

#[test]
fn tampered_ciphertext_is_refused() {
    let (_tmp, ks) = store();
    let did = ks.create(pass("pw")).unwrap();
    let mut v = json_of(&ks, &did);
    let mut ct = hex::decode(v["ciphertext"].as_str().unwrap()).unwrap();
    ct[3] ^= 1;
    v["ciphertext"] = hex::encode(ct).into();
    fs::write(ks.path_of(&did), serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(
        ks.unlock(&did, Some("pw")),
        Err(KeystoreError::WrongPassphrase { .. })
    ));
}

#[test]
fn a_swapped_did_does_not_unlock() {
    let (_tmp, ks) = store();
    let alice = ks.create(pass("pw")).unwrap();
    let mallory = UserKey::generate().did();
    // Alice's sealed seed relabelled as Mallory's, under Mallory's name:
    // the DID is the associated data, so decryption fails.
    let mut v = json_of(&ks, &alice);
    v["did"] = mallory.to_string().into();
    fs::write(ks.path_of(&mallory), serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(
        ks.unlock(&mallory, Some("pw")),
        Err(KeystoreError::WrongPassphrase { .. })
    ));
    // The same for an unprotected key: the seed does not match the DID.
    let bob = ks.create(Protection::None).unwrap();
    let mut v = json_of(&ks, &bob);
    v["did"] = mallory.to_string().into();
    fs::write(ks.path_of(&mallory), serde_json::to_vec(&v).unwrap()).unwrap();
    let err = ks.unlock(&mallory, None).unwrap_err();
    assert!(
        matches!(&err, KeystoreError::Corrupt { reason, .. } if reason.contains("not of")),
        "{err}"
    );
    // Alice's file copied under another name is refused as well.
    fs::copy(ks.path_of(&alice), ks.path_of(&mallory)).unwrap();
    let err = ks.unlock(&mallory, Some("pw")).unwrap_err();
    assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err}");
    assert!(matches!(ks.list(), Err(KeystoreError::Corrupt { .. })));
}

#[test]
fn truncated_and_garbage_files_give_clear_errors() {
    let (_tmp, ks) = store();
    let did = ks.create(pass("pw")).unwrap();
    let good = fs::read(ks.path_of(&did)).unwrap();
    // Every cut that loses more than the trailing newline.
    for n in 0..good.trim_ascii_end().len() {
        fs::write(ks.path_of(&did), &good[..n]).unwrap();
        let err = ks.unlock(&did, Some("pw")).unwrap_err();
        match err {
            KeystoreError::Corrupt { path, .. } => assert_eq!(path, ks.path_of(&did)),
            e => panic!("truncated to {n}: {e}"),
        }
    }
    for bad in [
        &b"\x00\xff garbage"[..],
        b"[]",
        b"{\"version\":2,\"did\":\"x\"}",
        b"{\"version\":1,\"did\":\"did:key:z6Mk\"}",
    ] {
        fs::write(ks.path_of(&did), bad).unwrap();
        let err = ks.unlock(&did, Some("pw")).unwrap_err();
        assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err}");
    }
    fs::write(ks.path_of(&did), vec![b' '; MAX_FILE_LEN + 1]).unwrap();
    let err = ks.unlock(&did, Some("pw")).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    let err = ks.list().unwrap_err();
    assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err}");
    // Other users can still be created and unlocked.
    let other = ks.create(Protection::None).unwrap();
    assert_eq!(ks.unlock(&other, None).unwrap().did(), other);
}

#[test]
fn a_newer_format_version_is_named() {
    let (_tmp, ks) = store();
    let did = ks.create(Protection::None).unwrap();
    let mut v = json_of(&ks, &did);
    v["version"] = 2.into();
    v["future_field"] = true.into();
    let err = ks
        .import(&serde_json::to_vec(&v).unwrap(), None)
        .unwrap_err();
    assert!(err.to_string().contains("version 2"), "{err}");
}

#[test]
fn hostile_kdf_parameters_are_refused_before_hashing() {
    let (_tmp, ks) = store();
    let did = ks.create(pass("pw")).unwrap();
    let good = json_of(&ks, &did);
    for (field, value) in [
        ("m_kib", u64::from(u32::MAX)),
        ("m_kib", 1024 * 1024 + 1),
        ("m_kib", 0),
        ("t", 0),
        ("t", 1000),
        ("p", 0),
        ("p", 255),
    ] {
        let mut v = good.clone();
        v["kdf"][field] = value.into();
        let bytes = serde_json::to_vec(&v).unwrap();
        let err = ks.import(&bytes, Some("pw")).unwrap_err();
        assert!(
            matches!(&err, KeystoreError::NotAKeyFile { reason } if reason.contains(field)),
            "{field}={value}: {err}"
        );
        fs::write(ks.path_of(&did), &bytes).unwrap();
        assert!(matches!(
            ks.unlock(&did, Some("pw")),
            Err(KeystoreError::Corrupt { .. })
        ));
    }
    assert!(KdfParams::new(MAX_M_KIB, 1, 1).is_ok());
}

#[test]
fn export_then_import_into_another_keystore() {
    let (_a, ks) = store();
    let (_b, other) = store();
    let did = ks.create(pass("pw")).unwrap();
    let bytes = ks.export(&did).unwrap();
    assert_eq!(bytes, fs::read(ks.path_of(&did)).unwrap());
    assert_eq!(
        inspect(&bytes).unwrap(),
        KeyFileInfo {
            did,
            protected: true
        }
    );

    // Without or with a wrong passphrase nothing is stored.
    assert!(matches!(
        other.import(&bytes, None),
        Err(KeystoreError::PassphraseRequired { .. })
    ));
    assert!(matches!(
        other.import(&bytes, Some("nope")),
        Err(KeystoreError::WrongPassphrase { .. })
    ));
    assert!(other.list().unwrap().is_empty());

    let imported = other.import(&bytes, Some("pw")).unwrap();
    assert_eq!(
        imported,
        Imported {
            did,
            already_present: false
        }
    );
    assert_eq!(other.unlock(&did, Some("pw")).unwrap().did(), did);
    assert_eq!(other.default_user().unwrap(), Some(did));
    // Again: reported, not an error, and the file is untouched.
    let before = fs::read(other.path_of(&did)).unwrap();
    assert!(other.import(&bytes, Some("pw")).unwrap().already_present);
    assert_eq!(fs::read(other.path_of(&did)).unwrap(), before);

    // An unprotected key imports without a passphrase.
    let plain = ks.create(Protection::None).unwrap();
    let imported = other.import(&ks.export(&plain).unwrap(), None).unwrap();
    assert_eq!(imported.did, plain);
    assert_eq!(other.unlock(&plain, None).unwrap().did(), plain);
    // The first import stays the default.
    assert_eq!(other.default_user().unwrap(), Some(did));

    // Garbage is not a key file.
    for bad in [&b""[..], b"{}", b"not json", &[b'{'; MAX_FILE_LEN + 1]] {
        assert!(matches!(
            other.import(bad, Some("pw")),
            Err(KeystoreError::NotAKeyFile { .. })
        ));
    }
    let missing = UserKey::generate().did();
    assert!(matches!(
        ks.export(&missing),
        Err(KeystoreError::NoSuchUser { .. })
    ));
}

#[test]
fn the_first_user_is_the_default_until_changed() {
    let (_tmp, ks) = store();
    assert_eq!(ks.default_user().unwrap(), None);
    assert!(ks.list().unwrap().is_empty());
    let first = ks.create(Protection::None).unwrap();
    let second = ks.create(pass("pw")).unwrap();
    assert_eq!(ks.default_user().unwrap(), Some(first));
    let list = ks.list().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|u| u.default == (u.did == first)));
    ks.set_default(&second).unwrap();
    assert_eq!(ks.default_user().unwrap(), Some(second));
    assert!(
        ks.list()
            .unwrap()
            .iter()
            .all(|u| u.default == (u.did == second))
    );

    let stranger = UserKey::generate().did();
    assert!(matches!(
        ks.set_default(&stranger),
        Err(KeystoreError::NoSuchUser { .. })
    ));
    // A default whose file was removed: no default with two users left…
    let third = ks.create(Protection::None).unwrap();
    fs::remove_file(ks.path_of(&second)).unwrap();
    assert_eq!(ks.default_user().unwrap(), None);
    // …and the only user once just one is left.
    fs::remove_file(ks.path_of(&third)).unwrap();
    assert_eq!(ks.default_user().unwrap(), Some(first));
    // A corrupted default file is named.
    fs::write(ks.dir().join(DEFAULT_FILE), "nonsense").unwrap();
    assert!(matches!(
        ks.default_user(),
        Err(KeystoreError::Corrupt { .. })
    ));
}

#[test]
fn files_are_0600_in_a_0700_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data/users");
    let ks = Keystore::open(&dir).unwrap().with_kdf(tiny());
    assert!(!dir.exists(), "open creates nothing");
    let did = ks.create(pass("pw")).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&ks.path_of(&did)), 0o600);
    assert_eq!(mode(&dir.join(DEFAULT_FILE)), 0o600);
    // No temporary files are left behind.
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with(".tmp")));
    // A directory made too open is narrowed on the next write.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    ks.create(Protection::None).unwrap();
    assert_eq!(mode(&dir), 0o700);
    // A file where the directory should be is refused.
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Keystore::open(&file),
        Err(KeystoreError::Io { .. })
    ));
}
