//! A node's or client's credentials: the cluster CA's certificate (to check
//! peers against), its own certificate and its private key. Read from PEM
//! files given as `--ca-file`, `--cert-file` and `--key-file` (or the
//! `WIMPY_CA_FILE`, `WIMPY_CERT_FILE` and `WIMPY_KEY_FILE` environment
//! variables); a key file anyone but its owner can read is refused.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wimpy_schema::Role;

use super::identity::{Identity, IdentityError};

/// Why credentials could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} can be read by others (mode {mode:04o}): a private key must be the owner's alone (chmod 600 it)")]
    KeyNotPrivate { path: PathBuf, mode: u32 },
    #[error("{what}: no {expected} in it")]
    Missing { what: String, expected: &'static str },
    #[error("{what}: {why}")]
    Unreadable { what: String, why: String },
    #[error("the certificate of {holder} is not signed by this cluster's CA")]
    NotSignedByCa { holder: Identity },
    #[error("the certificate of {holder} expired {ago} s ago")]
    Expired { holder: Identity, ago: u64 },
    #[error("the certificate of {holder} is not valid yet")]
    NotYetValid { holder: Identity },
    #[error("the certificate is {holder}'s, but this needs a {needed} certificate")]
    WrongRole { holder: Identity, needed: Role },
    #[error("the certificate: {0}")]
    Identity(#[from] IdentityError),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error(
        "no credentials: give --ca-file, --cert-file and --key-file (or WIMPY_CA_FILE, WIMPY_CERT_FILE and \
         WIMPY_KEY_FILE; make them with `wimpy ca init` and `wimpy cert issue`), or run with --insecure"
    )]
    NoneGiven,
}

/// Where a node's or client's credentials are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CredentialFiles {
    /// `DIR/ca.pem`, `DIR/NAME.pem` and `DIR/NAME.key`: the layout `wimpy
    /// ca init` and `wimpy cert issue` write.
    pub fn in_dir(dir: &Path, name: &str) -> CredentialFiles {
        CredentialFiles {
            ca: dir.join(super::ca::CA_CERT_FILE),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }
}

/// Credentials ready to connect with.
#[derive(Debug)]
pub struct Credentials {
    pub(crate) ca: CertificateDer<'static>,
    /// The holder's certificate, then any intermediates.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    identity: Identity,
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Credentials {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            identity: self.identity.clone(),
        }
    }
}

impl Credentials {
    /// Reads and checks credentials from files: the key must be mode 0600
    /// (or stricter), the certificate signed by the CA and valid now.
    pub fn load(files: &CredentialFiles) -> Result<Credentials, CredentialError> {
        check_key_mode(&files.key)?;
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CredentialError::Io { path: path.into(), source })
        };
        let (ca, cert, key) = (read(&files.ca)?, read(&files.cert)?, read(&files.key)?);
        let credentials = Credentials::parse(
            (&ca, &files.ca.display().to_string()),
            (&cert, &files.cert.display().to_string()),
            (&key, &files.key.display().to_string()),
        )?;
        credentials.check(SystemTime::now())?;
        Ok(credentials)
    }

    /// Credentials from PEM text, checked as [`Credentials::load`] checks them.
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<Credentials, CredentialError> {
        let credentials = Credentials::from_pem_unchecked(ca, cert, key)?;
        credentials.check(SystemTime::now())?;
        Ok(credentials)
    }

    /// Credentials from PEM text, not checked against the CA or the clock:
    /// for tests that show a node refuses what such credentials present.
    pub fn from_pem_unchecked(ca: &str, cert: &str, key: &str) -> Result<Credentials, CredentialError> {
        Credentials::parse((ca, "the CA certificate"), (cert, "the certificate"), (key, "the private key"))
    }

    fn parse(ca: (&str, &str), cert: (&str, &str), key: (&str, &str)) -> Result<Credentials, CredentialError> {
        let ca_der = read_certificates(ca.0)
            .map_err(|why| CredentialError::Unreadable { what: ca.1.into(), why })?
            .into_iter()
            .next()
            .ok_or(CredentialError::Missing { what: ca.1.into(), expected: "certificate" })?;
        let chain =
            read_certificates(cert.0).map_err(|why| CredentialError::Unreadable { what: cert.1.into(), why })?;
        let leaf = chain.first().ok_or(CredentialError::Missing { what: cert.1.into(), expected: "certificate" })?;
        let identity = Identity::of_certificate(leaf)?;
        let key_der = PrivateKeyDer::from_pem_slice(key.0.as_bytes()).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                CredentialError::Missing { what: key.1.into(), expected: "private key" }
            }
            e => CredentialError::Unreadable { what: key.1.into(), why: e.to_string() },
        })?;
        Ok(Credentials { ca: ca_der, chain, key: key_der, identity })
    }

    /// Whether the certificate is signed by the CA and valid at `now`.
    fn check(&self, now: SystemTime) -> Result<(), CredentialError> {
        let holder = || self.identity.clone();
        let unreadable = |why: String| CredentialError::Unreadable { what: "the CA certificate".into(), why };
        let (_, ca) = x509_parser::parse_x509_certificate(&self.ca).map_err(|e| unreadable(e.to_string()))?;
        let (_, leaf) = x509_parser::parse_x509_certificate(&self.chain[0]).map_err(|e| unreadable(e.to_string()))?;
        if leaf.issuer() != ca.subject() || leaf.verify_signature(Some(ca.public_key())).is_err() {
            return Err(CredentialError::NotSignedByCa { holder: holder() });
        }
        let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
        if leaf.validity().not_after.timestamp() < secs {
            let ago = (secs - leaf.validity().not_after.timestamp()) as u64;
            return Err(CredentialError::Expired { holder: holder(), ago });
        }
        if leaf.validity().not_before.timestamp() > secs {
            return Err(CredentialError::NotYetValid { holder: holder() });
        }
        Ok(())
    }

    /// Who these credentials say their holder is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// These credentials, if their certificate is for `role`.
    pub fn for_role(self, role: Role) -> Result<Credentials, CredentialError> {
        if self.identity.role != role {
            return Err(CredentialError::WrongRole { holder: self.identity, needed: role });
        }
        Ok(self)
    }

    /// SHA-256 of the CA's certificate.
    pub fn ca_fingerprint(&self) -> [u8; 32] {
        super::identity::fingerprint(&self.ca)
    }
}

/// Every certificate in PEM text, in order.
pub(crate) fn read_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

/// Refuses a private key file its owner does not hold alone.
pub(crate) fn check_key_mode(path: &Path) -> Result<(), CredentialError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| CredentialError::Io { path: path.into(), source })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CredentialError::KeyNotPrivate { path: path.into(), mode: mode & 0o7777 });
    }
    Ok(())
}
