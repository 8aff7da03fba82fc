//! `https://` RPC URLs: rustls with the *ring* provider (no C toolchain,
//! unlike reqwest's default aws-lc) and the platform's certificate roots.
//!
//! The feature turns on reqwest's `rustls-no-provider` for the whole build
//! (Cargo unifies features), and such a reqwest *panics* when a client is
//! built before a rustls provider is installed — also a client of another
//! crate in the same binary. A binary built with `https` should therefore
//! call [`crate::install_tls_provider`] first thing in `main`.

/// Installs *ring* as the process's rustls provider unless one is already
/// installed (the first install wins; an application's own choice stays).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
