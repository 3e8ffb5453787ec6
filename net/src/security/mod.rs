//! Who may talk to whom: the cluster's CA ([`ca`]), the credentials a node
//! or client holds ([`credentials`]), the identity a certificate gives its
//! holder ([`identity`]), and TLS under every connection ([`tls`]).
//!
//! Every certificate is signed by the cluster's CA and names its holder and
//! role (master, worker, admin or client). Connections are TLS 1.3 with
//! both ends verified; a node learns the peer's role from its certificate
//! and serves it accordingly.

pub mod ca;
pub mod credentials;
pub mod flags;
pub mod identity;
pub mod join;
pub mod tls;

pub use ca::{CaError, CertRequest, ClusterCa, IssuedCert};
pub use credentials::{CredentialError, CredentialFiles, Credentials};
pub use identity::{Identity, Peer};
pub use join::{JoinError, JoinToken};
pub use tls::Security;
pub use wimpy_schema::Role;

/// Bytes as lowercase hex, as fingerprints are shown.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes back from the 64 hex digits [`hex`] writes.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
