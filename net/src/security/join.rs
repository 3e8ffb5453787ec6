//! Joining a cluster with a one-time token, as k3s does: the operator asks
//! the master for a token (`wimpy token create`), and a new node given it
//! (`wimpy-worker --join TOKEN`) makes its key locally, checks that the
//! master's CA is the one the token names, and has the master sign a worker
//! certificate for it. The key never leaves the node; the token's secret
//! travels only inside TLS to a master whose CA was checked first, and is
//! spent by the first join.
//!
//! A token reads `wimpy-join-1:<CA fingerprint>:<secret>`, both in hex: the
//! SHA-256 of the CA's certificate (DER) and 32 random bytes.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use wimpy_schema::Role;
use wimpy_schema::wimpy_capnp::master;

use super::ca::{CaError, signing_request};
use super::credentials::{CredentialError, CredentialFiles, Credentials};
use super::identity::{Identity, fingerprint};
use super::{hex, tls, unhex};

const PREFIX: &str = "wimpy-join-1";

/// A join token: whose CA to trust, and the secret the master spends.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_fingerprint: [u8; 32],
    pub secret: [u8; 32],
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: tokens end up in logs otherwise.
        f.debug_struct("JoinToken").field("ca_fingerprint", &hex(&self.ca_fingerprint)).finish_non_exhaustive()
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}:{}:{}", hex(&self.ca_fingerprint), hex(&self.secret))
    }
}

/// A string that is no join token.
#[derive(Debug, thiserror::Error)]
#[error("not a join token (expected {PREFIX}:<64 hex digits>:<64 hex digits>, as `wimpy token create` prints)")]
pub struct BadToken;

impl std::str::FromStr for JoinToken {
    type Err = BadToken;

    fn from_str(s: &str) -> Result<JoinToken, BadToken> {
        let mut parts = s.trim().split(':');
        let (Some(PREFIX), Some(fp), Some(secret), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BadToken);
        };
        Ok(JoinToken { ca_fingerprint: unhex(fp).ok_or(BadToken)?, secret: unhex(secret).ok_or(BadToken)? })
    }
}

impl JoinToken {
    /// A new token for the CA of `ca_fingerprint`, with a fresh secret.
    pub fn new(ca_fingerprint: [u8; 32]) -> JoinToken {
        let mut secret = [0u8; 32];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut secret)
            .expect("the system's random number generator");
        JoinToken { ca_fingerprint, secret }
    }
}

/// What the master keeps of a token: the SHA-256 of its secret.
pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    fingerprint(secret)
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("reaching the master at {addr}: {why}")]
    Unreachable { addr: String, why: String },
    #[error("the master refused the join: {0}")]
    Refused(String),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
}

/// Joins the cluster of the master at `addr` with `token` as worker
/// `name`: writes `DIR/ca.pem`, `DIR/NAME.pem` and `DIR/NAME.key` (mode
/// 0600) and returns where they are. The TLS handshake fails, and nothing
/// is sent, unless the master's certificate chains to the CA the token
/// names. Must run inside a `LocalSet`.
pub async fn join(addr: &str, token: &JoinToken, name: &str, dir: &Path) -> Result<CredentialFiles, JoinError> {
    let unreachable = |why: String| JoinError::Unreachable { addr: addr.to_owned(), why };
    let (csr, key_pem) = signing_request(name)?;
    let provider = Arc::new(tls::provider(tls::has_aes_instructions()));
    // Only the CA with the token's fingerprint is trusted: the joining node
    // has no CA certificate yet.
    let verifier = tls::ClusterServerVerifier {
        trust: tls::Trust::Fingerprint(token.ca_fingerprint),
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| unreachable(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let opened = async {
        let stream = crate::connection::open_tcp(addr).await?;
        stream.set_nodelay(true)?;
        let name = ServerName::IpAddress(stream.peer_addr()?.ip().into());
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|leaf| Identity::of_certificate(leaf))
            .transpose()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if peer.as_ref().is_none_or(|p| p.role != Role::Master) {
            return Err(std::io::Error::other("the node there is not the cluster's master"));
        }
        Ok(stream)
    };
    let stream = match tokio::time::timeout(crate::deadline::CONNECT, opened).await {
        Ok(stream) => stream.map_err(|e| unreachable(e.to_string()))?,
        Err(_) => return Err(unreachable(format!("no answer within {:?}", crate::deadline::CONNECT))),
    };
    let mut rpc = crate::connection::start(stream, None);
    let master: master::Client = rpc.bootstrap(capnp_rpc::rpc_twoparty_capnp::Side::Server);
    tokio::task::spawn_local(rpc);

    let mut request = master.join_request();
    request.get().set_secret(&token.secret);
    request.get().set_request(&csr);
    request.get().set_name(name);
    let answer = crate::deadline::within(crate::deadline::CALL, "join", request.send().promise)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let answer = answer.get().map_err(|e| unreachable(e.to_string()))?;
    if answer.has_refused() {
        let refused = wimpy_schema::Failure::read(answer.get_refused().map_err(|e| unreachable(e.to_string()))?)
            .map_err(|e| unreachable(e.to_string()))?;
        return Err(JoinError::Refused(format!("{refused:?}")));
    }
    let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> Result<String, JoinError> {
        t.and_then(|t| t.to_string().map_err(Into::into)).map_err(|e| unreachable(e.to_string()))
    };
    let (cert_pem, ca_pem) = (text(answer.get_certificate())?, text(answer.get_ca())?);
    let credentials = Credentials::from_pem(&ca_pem, &cert_pem, &key_pem)?;
    if credentials.ca_fingerprint() != token.ca_fingerprint {
        return Err(JoinError::Refused("the master answered with another CA than the token names".into()));
    }
    let credentials = credentials.for_role(Role::Worker)?;
    super::ca::create_private_dir(dir)?;
    let files = CredentialFiles::in_dir(dir, name);
    super::ca::write_new(&files.ca, ca_pem.as_bytes(), 0o644)?;
    let issued = super::IssuedCert { cert_pem, key_pem, identity: credentials.identity().clone() };
    issued.write(dir)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::JoinToken;

    #[test]
    fn a_token_reads_back_from_its_text_and_nothing_else_reads_as_one() {
        let token = JoinToken::new([7; 32]);
        assert_eq!(token.to_string().parse::<JoinToken>().unwrap(), token);
        assert!(!format!("{token:?}").contains(&super::hex(&token.secret)));
        for bad in ["", "wimpy-join-1", "wimpy-join-1:00:11", "wimpy-join-2:", &token.to_string().replace(':', ";")] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad}");
        }
    }
}
