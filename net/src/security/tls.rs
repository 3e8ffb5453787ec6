//! TLS 1.3 under every Cap'n Proto connection, both ends verified (mTLS)
//! against the cluster's CA.
//!
//! A peer is known by the role and name in its certificate, not by a host
//! name: nodes on a home network move between addresses (DHCP), and a ring
//! names its members by address. So the client side checks that the server's
//! certificate chains to the CA and then that its role is the one it meant to
//! reach; the server side has rustls require and verify a client
//! certificate, and hands the peer's identity to whoever serves the
//! connection.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CipherSuite, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::credentials::{CredentialError, Credentials};
use super::identity::{Identity, Peer};

/// How a node or client secures its connections.
#[derive(Clone, Debug)]
pub enum Security {
    /// mTLS with the cluster's CA.
    Tls(Arc<Tls>),
    /// Plain TCP: anyone who reaches a port can do anything there.
    Insecure,
}

impl Security {
    /// mTLS with `credentials`.
    pub fn tls(credentials: &Credentials) -> Result<Security, CredentialError> {
        Ok(Security::Tls(Arc::new(Tls::new(credentials, false)?)))
    }

    /// As [`Security::tls`], and served connections may also come without
    /// a certificate ([`Peer::Anonymous`]): how a master that signs join
    /// requests lets joining nodes reach its `join` call (and no other).
    pub fn tls_accepting_joins(credentials: &Credentials) -> Result<Security, CredentialError> {
        Ok(Security::Tls(Arc::new(Tls::new(credentials, true)?)))
    }

    /// mTLS with the credentials in `files`, loaded and checked.
    pub fn from_files(files: &super::CredentialFiles) -> Result<Security, CredentialError> {
        Security::tls(&Credentials::load(files)?)
    }

    /// Who this end is: `None` when insecure.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Security::Tls(tls) => Some(&tls.identity),
            Security::Insecure => None,
        }
    }
}

/// TLS settings for both sides of a connection.
pub struct Tls {
    identity: Identity,
    connector: TlsConnector,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl Tls {
    fn new(credentials: &Credentials, accept_anonymous: bool) -> Result<Tls, CredentialError> {
        let provider = Arc::new(provider(has_aes_instructions()));
        let mut roots = RootCertStore::empty();
        roots.add(credentials.ca.clone())?;
        let roots = Arc::new(roots);

        let mut client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
        if accept_anonymous {
            client_verifier = client_verifier.allow_unauthenticated();
        }
        let client_verifier = client_verifier
            .build()
            .map_err(|e| CredentialError::Unreadable { what: "the CA certificate".into(), why: e.to_string() })?;
        // The CA's certificate goes with the node's own, so that a joining
        // node, which knows only its fingerprint, can check it.
        let mut served_chain = credentials.chain.clone();
        if !served_chain.contains(&credentials.ca) {
            served_chain.push(credentials.ca.clone());
        }
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(served_chain, credentials.key.clone_key())?;
        // The node serving is the one whose CPU the cipher costs most (a Pi
        // behind a laptop's client): its order wins.
        server.ignore_client_order = true;

        let server_verifier = ClusterServerVerifier {
            trust: Trust::Roots(roots),
            algorithms: provider.signature_verification_algorithms,
        };
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(server_verifier))
            .with_client_auth_cert(credentials.chain.clone(), credentials.key.clone_key())?;

        Ok(Tls {
            identity: credentials.identity().clone(),
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    pub(crate) async fn connect(
        &self,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<(tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Identity)> {
        // The name only keys the session cache (for resumption): the
        // verifier checks the peer's role, not its name.
        let name = ServerName::IpAddress(stream.peer_addr()?.ip().into());
        let stream = self.connector.connect(name, stream).await?;
        let identity = peer_identity(stream.get_ref().1.peer_certificates())?;
        Ok((stream, identity))
    }

    pub(crate) async fn accept(
        &self,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Peer)> {
        let stream = self.acceptor.accept(stream).await?;
        // Only a verifier that allows it lets a peer through without one.
        let peer = match stream.get_ref().1.peer_certificates() {
            None | Some([]) => Peer::Anonymous,
            certificates => Peer::Verified(peer_identity(certificates)?),
        };
        Ok((stream, peer))
    }
}

fn peer_identity(certificates: Option<&[CertificateDer<'_>]>) -> std::io::Result<Identity> {
    let leaf = certificates
        .and_then(|c| c.first())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::PermissionDenied, "the peer showed no certificate"))?;
    Identity::of_certificate(leaf).map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()))
}

/// ring's TLS 1.3 suites, ChaCha20-Poly1305 first on a CPU without AES
/// instructions: there AES-GCM runs in constant-time software, several
/// times slower than ChaCha20 (the Pi 4's Cortex-A72 has no crypto
/// extensions).
pub(crate) fn provider(aes_in_hardware: bool) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if !aes_in_hardware {
        // A stable sort: the AES suites keep their order behind it.
        provider.cipher_suites.sort_by_key(|s| s.suite() != CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    }
    provider
}

/// Whether this CPU has AES and carry-less multiply instructions (what
/// AES-GCM needs to be fast).
pub fn has_aes_instructions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Accepts a server whose certificate chains to the cluster's CA, whatever
/// name it was reached by (see the module's doc); its role is checked once
/// the handshake is done.
#[derive(Debug)]
pub(crate) struct ClusterServerVerifier {
    pub(crate) trust: Trust,
    pub(crate) algorithms: WebPkiSupportedAlgorithms,
}

/// Which CA a client trusts.
#[derive(Debug)]
pub(crate) enum Trust {
    /// The cluster CA's certificate, held.
    Roots(Arc<RootCertStore>),
    /// Only the CA's fingerprint (a node joining with a token): the CA
    /// certificate must come in the server's chain, with that SHA-256.
    Fingerprint([u8; 32]),
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned;
        let roots = match &self.trust {
            Trust::Roots(roots) => roots,
            Trust::Fingerprint(wanted) => {
                let ca =
                    intermediates.iter().find(|c| super::identity::fingerprint(c) == *wanted).ok_or_else(|| {
                        rustls::Error::General(
                            "the master's CA is not the one the join token names (fingerprint mismatch)".into(),
                        )
                    })?;
                let mut store = RootCertStore::empty();
                store.add(ca.clone().into_owned())?;
                pinned = Arc::new(store);
                &pinned
            }
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered.
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls::CipherSuite;

    #[test]
    fn chacha20_comes_first_without_aes_instructions() {
        let first = |aes| super::provider(aes).cipher_suites[0].suite();
        assert_eq!(first(false), CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
        assert_ne!(first(true), CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    }
}
