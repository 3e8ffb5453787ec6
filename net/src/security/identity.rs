//! Who is at the other end of a connection: the name and role the cluster's
//! CA wrote into the peer's certificate, and when that certificate expires.
//!
//! A wimpy certificate names its holder in the subject's common name (CN)
//! and its role in the organisational unit (OU); `wimpy cert issue` writes
//! both, and nothing else in the subject is read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Digest;
use wimpy_schema::{Role, UnknownRole};

/// The holder of a certificate signed by the cluster's CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The certificate's common name: a node's or a person's name.
    pub name: String,
    pub role: Role,
    /// The end of the certificate's validity.
    pub not_after: SystemTime,
    /// SHA-256 of the certificate (DER).
    pub fingerprint: [u8; 32],
}

/// A certificate that does not say who holds it in wimpy's terms.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("not an X.509 certificate: {0}")]
    Unreadable(String),
    #[error("the certificate names no holder (its subject has no CN)")]
    NoName,
    #[error("the certificate has no wimpy role (its subject has no OU)")]
    NoRole,
    #[error("the certificate's role: {0}")]
    Role(#[from] UnknownRole),
}

impl Identity {
    /// Reads the holder out of a certificate (DER).
    pub fn of_certificate(der: &[u8]) -> Result<Identity, IdentityError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| IdentityError::Unreadable(e.to_string()))?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next().and_then(|a| a.as_str().ok()).ok_or(IdentityError::NoName)?;
        let role =
            subject.iter_organizational_unit().next().and_then(|a| a.as_str().ok()).ok_or(IdentityError::NoRole)?;
        let not_after = cert.validity().not_after.timestamp();
        Ok(Identity {
            name: name.to_owned(),
            role: role.parse()?,
            not_after: UNIX_EPOCH + Duration::from_secs(not_after.max(0) as u64),
            fingerprint: fingerprint(der),
        })
    }

    /// How long the certificate is still valid at `now` (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}

/// SHA-256 of a certificate's DER, the fingerprint a join token carries.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(der).into()
}

/// What a node knows of the peer of a connection it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The peer showed a certificate chained to the cluster's CA.
    Verified(Identity),
    /// The node runs with `--insecure`: nobody is verified, so no role can
    /// be told from another and every call is let through.
    Insecure,
    /// The peer showed no certificate, where a node lets such peers in
    /// (the master, for joining nodes): it holds no role.
    Anonymous,
}

impl Peer {
    /// Whether the peer may act as `role`. A verified peer holds exactly the
    /// role its certificate names; an insecure connection could be anyone.
    pub fn holds(&self, role: Role) -> bool {
        match self {
            Peer::Verified(identity) => identity.role == role,
            Peer::Insecure => true,
            Peer::Anonymous => false,
        }
    }

    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Peer::Verified(identity) => Some(identity),
            Peer::Insecure | Peer::Anonymous => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Verified(identity) => identity.fmt(f),
            Peer::Insecure => f.write_str("an unverified peer (--insecure)"),
            Peer::Anonymous => f.write_str("a peer without a certificate"),
        }
    }
}
