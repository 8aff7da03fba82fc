//! TLS 1.3 for TCP connections: the libp2p TLS handshake
//! (`/tls/1.0.0`, <https://github.com/libp2p/specs/blob/master/tls/tls.md>)
//! with a cipher suite chosen for the hardware.
//!
//! `libp2p-tls` implements the same handshake but always offers
//! ChaCha20-Poly1305 first. On a CPU with AES instructions AES-128-GCM
//! costs a fraction of that (here 12.3 GB/s against 2.7 GB/s per core, both
//! from aws-lc), and on a bulk transfer the cipher is paid twice per byte, by
//! the sender and by the receiver. So this module builds the rustls
//! configurations itself, offering AES-GCM first where the CPU has AES and
//! ChaCha20 first where it has not, and reuses `libp2p-tls`'s certificate
//! code (the self-signed certificate that carries the host key's signature)
//! for everything that concerns identity. Since a TLS 1.3 server takes the
//! client's order, the dialer's hardware decides; a peer running stock
//! `libp2p-tls` interoperates either way.

use std::{
    io::{self, IoSlice, IoSliceMut},
    net::{IpAddr, Ipv4Addr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use futures::{AsyncRead, AsyncWrite, FutureExt, future::BoxFuture};
use futures_rustls::TlsStream;
use libp2p::{
    PeerId,
    core::{
        UpgradeInfo,
        upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade},
    },
    identity::Keypair,
    tls::certificate,
};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme,
    SupportedCipherSuite,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::aws_lc_rs::{self, cipher_suite},
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    sign::{CertifiedKey, SingleCertAndKey},
};

/// The multistream-select name of the handshake (the libp2p TLS spec's).
const PROTOCOL: &str = "/tls/1.0.0";
/// The ALPN value the spec requires.
const ALPN: &[u8] = b"libp2p";

/// The security upgrade for TCP connections (see the module docs).
#[derive(Clone)]
pub(crate) struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// A failed TLS upgrade.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// The host key could not be put into a certificate.
    #[error("cannot make the TLS certificate: {0}")]
    Certificate(#[from] certificate::GenError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The handshake failed (I/O, or the peer's certificate was refused).
    #[error("TLS handshake: {0}")]
    Handshake(#[from] std::io::Error),
    /// The handshake completed but the certificate is not a libp2p one
    /// (unreachable in practice: the verifier checked it).
    #[error("peer certificate: {0}")]
    PeerCertificate(#[from] certificate::ParseError),
}

impl Tls {
    /// Builds both configurations for `keypair`'s identity.
    pub(crate) fn new(keypair: &Keypair) -> Result<Self, TlsError> {
        Self::with_suites(keypair, hardware_aes())
    }

    /// [`Self::new`] preferring the AES-GCM suites (`aes`) or ChaCha20-Poly1305.
    pub(crate) fn with_suites(keypair: &Keypair, aes: bool) -> Result<Self, TlsError> {
        let (cert, key) = certificate::generate(keypair)?;
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: cipher_suites(aes),
            ..aws_lc_rs::default_provider()
        });
        seed_random_early();
        // Handed over as is: rustls' own certificate parsing (webpki) would
        // refuse the critical libp2p extension that makes it ours.
        let signing_key = provider.key_provider.load_private_key(key)?;
        let ours = Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            vec![cert],
            signing_key,
        )));
        let verifier = Arc::new(Libp2pVerifier);
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(ours.clone());
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(ours);
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// Seeds aws-lc's random generator now, on a thread of its own (once per
/// process; later calls do nothing). aws-lc seeds its generator on first
/// use; with CPU jitter entropy that cost ~30 ms, paid by the first TLS
/// handshake on both sides. The workspace now builds aws-lc without jitter
/// entropy (`.cargo/config.toml`: the OS generator, well under a
/// millisecond), and this keeps whatever first-use cost remains (a build
/// with jitter entropy, e.g. by a packager) off the first handshake. Called
/// when the transport is built and first thing by CLI commands that start a
/// node.
pub fn seed_random_early() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("cnode-rng-seed".into())
            .spawn(|| {
                let mut bytes = [0u8; 16];
                let _ = aws_lc_rs::default_provider().secure_random.fill(&mut bytes);
            });
    });
}

/// TLS 1.3 suites, fastest first for this CPU.
fn cipher_suites(aes: bool) -> Vec<SupportedCipherSuite> {
    let aes_suites = [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
    ];
    let chacha = cipher_suite::TLS13_CHACHA20_POLY1305_SHA256;
    if aes {
        aes_suites.into_iter().chain([chacha]).collect()
    } else {
        [chacha].into_iter().chain(aes_suites).collect()
    }
}

/// Whether the CPU has AES and carry-less multiply instructions (what fast
/// AES-GCM needs).
fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// A finished handshake: the peer's identity from its (single, already
/// verified) certificate, and the stream ready for the muxer.
fn established<C>(
    stream: TlsStream<C>,
    direction: &str,
) -> Result<(PeerId, Coalesced<TlsStream<C>>), TlsError> {
    let state = stream.get_ref().1;
    let peer = match state.peer_certificates() {
        Some([cert]) => certificate::parse(cert)?.peer_id(),
        // The verifiers refuse anything else during the handshake.
        _ => {
            return Err(TlsError::Handshake(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the peer did not present exactly one certificate",
            )));
        }
    };
    tracing::trace!(
        %peer,
        suite = ?state.negotiated_cipher_suite().map(|s| s.suite()),
        "{direction} TLS"
    );
    Ok((peer, Coalesced::new(stream)))
}

impl UpgradeInfo for Tls {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL)
    }
}

impl<C> InboundConnectionUpgrade<C> for Tls
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Coalesced<TlsStream<C>>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let stream = futures_rustls::TlsAcceptor::from(self.server)
                .accept(socket)
                .await?;
            established(stream.into(), "inbound")
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for Tls
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Coalesced<TlsStream<C>>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // The spec: a client MUST NOT send a server name; an unspecified
            // IP address turns SNI off in rustls.
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let stream = futures_rustls::TlsConnector::from(self.client)
                .connect(name, socket)
                .await?;
            established(stream.into(), "outbound")
        }
        .boxed()
    }
}

/// Writes of at most this many bytes are held back (a Yamux frame header is
/// 12 bytes)...
const SMALL_WRITE: usize = 64;
/// ...until this many are pending, the next larger write or a flush.
const SMALL_PENDING: usize = 1024;

/// A TLS stream that holds back small writes and sends them with the next
/// write or on flush. Yamux writes each frame as a 12-byte header and then a
/// body of up to 16 KiB; over TLS each became its own record and its own
/// `writev`, so a sender made two system calls and two TCP segments per
/// 16 KiB (140,000 `writev`s per GiB). With this, the header and body go to
/// rustls in one vectored write: one `writev` per frame.
pub(crate) struct Coalesced<S> {
    inner: S,
    pending: Vec<u8>,
}

impl<S> Coalesced<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }

    /// The stream inside; anything held back and not flushed is dropped.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    /// Writes out everything held back.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read_vectored(cx, bufs)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.len() <= SMALL_WRITE && this.pending.len() + buf.len() <= SMALL_PENDING {
            this.pending.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        while !this.pending.is_empty() {
            let held = this.pending.len();
            let n = ready!(
                Pin::new(&mut this.inner)
                    .poll_write_vectored(cx, &[IoSlice::new(&this.pending), IoSlice::new(buf)],)
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n > held {
                this.pending.clear();
                return Poll::Ready(Ok(n - held));
            }
            this.pending.drain(..n);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

/// Accepts exactly what the libp2p TLS spec accepts: one self-signed
/// certificate carrying a valid libp2p extension (the host key's signature
/// over the certificate key), and handshake signatures made with that
/// certificate's key. Which peer it is gets checked by the swarm afterwards
/// against the address dialled, as for Noise.
#[derive(Debug)]
struct Libp2pVerifier;

impl Libp2pVerifier {
    fn check(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(TooManyCertificates)),
            )));
        }
        certificate::parse(end_entity)?;
        Ok(())
    }

    fn signature(
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        certificate::parse(cert)?.verify_signature(dss.scheme, message, dss.signature())?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn schemes() -> Vec<SignatureScheme> {
        // What `P2pCertificate::verify_signature` can check.
        vec![
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ED25519,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PKCS1_SHA512,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA256,
        ]
    }
}

#[derive(Debug, thiserror::Error)]
#[error("libp2p TLS takes exactly one certificate")]
struct TooManyCertificates;

/// Only TLS 1.3 is configured, so rustls never asks for a 1.2 signature.
fn no_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::General("only TLS 1.3 is offered".into()))
}

impl ServerCertVerifier for Libp2pVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Self::check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Self::schemes()
    }
}

impl ClientCertVerifier for Libp2pVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Self::check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Self::schemes()
    }
}

#[cfg(test)]
mod tests {
    use futures::{AsyncReadExt, AsyncWriteExt};
    use libp2p::tcp::tokio::TcpStream;

    use super::*;

    /// A connected pair of real sockets on 127.0.0.1.
    async fn sockets() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        (TcpStream(a.unwrap().0), TcpStream(b.unwrap()))
    }

    #[tokio::test]
    async fn both_sides_learn_the_peer_and_agree_on_the_fastest_suite() {
        let (server_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (s, c) = sockets().await;
        let server = Tls::new(&server_key).unwrap().upgrade_inbound(s, PROTOCOL);
        let client = Tls::new(&client_key).unwrap().upgrade_outbound(c, PROTOCOL);
        let (server, client) = tokio::join!(server, client);
        let ((seen_client, mut s), (seen_server, mut c)) = (server.unwrap(), client.unwrap());
        assert_eq!(seen_client, client_key.public().to_peer_id());
        assert_eq!(seen_server, server_key.public().to_peer_id());
        let suite = c
            .inner
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .unwrap()
            .suite();
        assert_eq!(suite, cipher_suites(hardware_aes())[0].suite());
        if hardware_aes() {
            assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        }
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let send = async {
            c.write_all(&data).await.unwrap();
            c.close().await.unwrap();
        };
        let mut got = Vec::new();
        let recv = s.read_to_end(&mut got);
        let ((), n) = tokio::join!(send, recv);
        assert_eq!(n.unwrap(), data.len());
        assert_eq!(got, data);
    }

    /// Records what reaches it, one entry per write call.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<Vec<u8>>,
        flushes: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().calls.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = all.len();
            self.get_mut().calls.push(all);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_small_write_leaves_with_the_next_write_or_on_flush() {
        let mut w = Coalesced::new(Recorder::default());
        let header = [7u8; 12];
        let body = vec![9u8; 16 * 1024];
        w.write_all(&header).await.unwrap();
        assert!(w.inner.calls.is_empty(), "held back");
        w.write_all(&body).await.unwrap();
        assert_eq!(w.inner.calls.len(), 1, "header and body in one call");
        assert_eq!(w.inner.calls[0], [&header[..], &body[..]].concat());
        // A lone small write (a window update) goes out on flush, in order.
        w.write_all(&[1, 2, 3]).await.unwrap();
        w.write_all(&[4]).await.unwrap();
        assert_eq!(w.inner.calls.len(), 1);
        w.flush().await.unwrap();
        assert_eq!(w.inner.calls[1], [1, 2, 3, 4]);
        assert_eq!(w.inner.flushes, 1);
        // Many small writes are not held without bound.
        for _ in 0..100 {
            w.write_all(&[5u8; 60]).await.unwrap();
        }
        let sent: usize = w.inner.calls[2..].iter().map(Vec::len).sum();
        assert!(sent >= 6000 - SMALL_PENDING, "{sent}");
        w.close().await.unwrap();
        let sent: usize = w.inner.calls[2..].iter().map(Vec::len).sum();
        assert_eq!(sent, 6000);
    }

    #[tokio::test]
    async fn interoperates_with_stock_libp2p_tls_both_ways() {
        let (ours, theirs) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        // Stock listener, our dialer.
        let (s, c) = sockets().await;
        let (server, client) = tokio::join!(
            libp2p::tls::Config::new(&theirs)
                .unwrap()
                .upgrade_inbound(s, PROTOCOL),
            Tls::new(&ours).unwrap().upgrade_outbound(c, PROTOCOL),
        );
        assert_eq!(server.unwrap().0, ours.public().to_peer_id());
        let (peer, stream) = client.unwrap();
        assert_eq!(peer, theirs.public().to_peer_id());
        // A TLS 1.3 server takes the client's order: our preference holds.
        assert_eq!(
            stream
                .inner
                .get_ref()
                .1
                .negotiated_cipher_suite()
                .unwrap()
                .suite(),
            cipher_suites(hardware_aes())[0].suite()
        );
        // Our listener, stock dialer.
        let (s, c) = sockets().await;
        let (server, client) = tokio::join!(
            Tls::new(&ours).unwrap().upgrade_inbound(s, PROTOCOL),
            libp2p::tls::Config::new(&theirs)
                .unwrap()
                .upgrade_outbound(c, PROTOCOL),
        );
        assert_eq!(server.unwrap().0, theirs.public().to_peer_id());
        assert_eq!(client.unwrap().0, ours.public().to_peer_id());
    }

    #[tokio::test]
    async fn a_certificate_without_the_libp2p_extension_is_refused() {
        // A plain self-signed certificate: valid TLS, but no host key
        // signature in it, so no libp2p identity.
        let plain = rcgen::generate_simple_self_signed(vec!["peer".into()]).unwrap();
        let cert = CertificateDer::from(plain.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(plain.key_pair.serialize_der().into());
        let provider = Arc::new(aws_lc_rs::default_provider());
        let mut impostor = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Libp2pVerifier))
            .with_client_auth_cert(vec![cert], key)
            .unwrap();
        impostor.alpn_protocols = vec![ALPN.to_vec()];
        let (s, c) = sockets().await;
        let server = Tls::new(&Keypair::generate_ed25519())
            .unwrap()
            .upgrade_inbound(s, PROTOCOL);
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
        let client = futures_rustls::TlsConnector::from(Arc::new(impostor)).connect(name, c);
        let (server, _client) = tokio::join!(server, client);
        let Err(err) = server.map(|(peer, _)| peer) else {
            panic!("the handshake must fail");
        };
        let err = err.to_string();
        assert!(err.contains("TLS handshake"), "{err}");
    }
}
