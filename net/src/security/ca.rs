//! The cluster's certificate authority: its key signs every node's and
//! client's certificate, and every connection checks the peer's certificate
//! against its certificate. `wimpy ca init` makes one; `wimpy cert issue`
//! and `wimpy local` sign with it.
//!
//! Keys are ECDSA P-256: read by rustls, OpenSSL (Python's `ssl`, C++
//! clients) and BoringSSL alike. Ed25519 would be quicker to sign with on a
//! Pi, but OpenSSL 3.0 (Debian 12's) cannot read the PKCS#8 v2 Ed25519 keys
//! ring writes, and keys must open in every client; signatures are made
//! once per handshake only.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use wimpy_schema::Role;

use super::credentials::{CredentialError, Credentials, check_key_mode};
use super::identity::{Identity, fingerprint};

/// The CA's certificate in a credentials directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key in a credentials directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a CA certificate is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node's or client's certificate is valid unless asked otherwise.
pub const CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far back a new certificate's validity starts, so that a peer whose
/// clock is a little behind does not refuse it.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// Why a CA could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists: not overwriting it")]
    Exists(PathBuf),
    #[error("{path} is not the CA's: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error("{0:?} cannot name a certificate: use 1 to 64 letters, digits, '.', '-' or '_'")]
    BadName(String),
    #[error("signing: {0}")]
    Signing(#[from] rcgen::Error),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
}

/// A certificate to sign.
#[derive(Clone, Debug)]
pub struct CertRequest {
    pub role: Role,
    /// The holder's name (the certificate's CN and file name).
    pub name: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Extra DNS names and IP addresses the certificate is valid for, for
    /// clients that check a node's name (wimpy's own check its role).
    pub alt_names: Vec<String>,
}

impl CertRequest {
    /// A certificate for `name` as `role`, valid for [`CERT_VALIDITY`] from now.
    pub fn new(role: Role, name: impl Into<String>) -> CertRequest {
        let now = SystemTime::now();
        CertRequest {
            role,
            name: name.into(),
            not_before: now - CLOCK_SKEW,
            not_after: now + CERT_VALIDITY,
            alt_names: Vec::new(),
        }
    }
}

/// A signed certificate and its new private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub identity: Identity,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes `DIR/NAME.pem` and `DIR/NAME.key` (mode 0600), refusing to
    /// overwrite either. Returns their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), CaError> {
        let cert = dir.join(format!("{}.pem", self.identity.name));
        let key = dir.join(format!("{}.key", self.identity.name));
        for path in [&cert, &key] {
            if path.exists() {
                return Err(CaError::Exists(path.clone()));
            }
        }
        write_new(&key, self.key_pem.as_bytes(), 0o600)?;
        write_new(&cert, self.cert_pem.as_bytes(), 0o644)?;
        Ok((cert, key))
    }
}

/// A cluster's CA, able to sign.
pub struct ClusterCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").field("fingerprint", &super::hex(&self.fingerprint())).finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new CA, in memory, named after `cluster`.
    pub fn generate(cluster: &str) -> Result<ClusterCa, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("wimpy cluster CA {cluster}"));
        dn.push(DnType::OrganizationName, "wimpy");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = SystemTime::now();
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + CA_VALIDITY).into();
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Makes a new CA and writes it to `DIR/ca.pem` and `DIR/ca.key`
    /// (mode 0600), creating `DIR` (mode 0700) if need be; refuses to
    /// overwrite a CA already there.
    pub fn init(dir: &Path, cluster: &str) -> Result<ClusterCa, CaError> {
        let (cert, key) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        for path in [&cert, &key] {
            if path.exists() {
                return Err(CaError::Exists(path.clone()));
            }
        }
        create_private_dir(dir)?;
        let ca = ClusterCa::generate(cluster)?;
        write_new(&key, ca.key_pem.as_bytes(), 0o600)?;
        write_new(&cert, ca.cert_pem.as_bytes(), 0o644)?;
        Ok(ca)
    }

    /// Reads the CA in `DIR` (as [`ClusterCa::init`] wrote it). Its key
    /// must be readable by its owner only.
    pub fn load(dir: &Path) -> Result<ClusterCa, CaError> {
        ClusterCa::load_files(&dir.join(CA_CERT_FILE), &dir.join(CA_KEY_FILE))
    }

    /// Reads a CA from its certificate and key files (the key mode 0600).
    pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<ClusterCa, CaError> {
        check_key_mode(key_path)?;
        let read =
            |path: &Path| std::fs::read_to_string(path).map_err(|source| CaError::Io { path: path.into(), source });
        let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
        let unreadable = |path: &Path, why: String| CaError::Unreadable { path: path.into(), why };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| unreadable(key_path, e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| unreadable(cert_path, e.to_string()))?;
        let cert_der = super::credentials::read_certificates(&cert_pem)
            .ok()
            .and_then(|certs| certs.into_iter().next())
            .ok_or_else(|| unreadable(cert_path, "no certificate in it".into()))?;
        Ok(ClusterCa { cert_pem, cert_der, key_pem, issuer })
    }

    /// The CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA's certificate: what a joining node checks.
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.cert_der)
    }

    /// Signs a certificate for `request` with a new key.
    pub fn issue(&self, request: &CertRequest) -> Result<IssuedCert, CaError> {
        check_name(&request.name)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = leaf_params(request)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let identity = Identity::of_certificate(cert.der()).map_err(CredentialError::from)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), identity })
    }

    /// Signs a certificate for `name` as `role` and hands it back ready to
    /// connect with: how `wimpy local` and tests equip their nodes.
    pub fn credentials(&self, role: Role, name: &str) -> Result<Credentials, CaError> {
        self.credentials_for(&CertRequest::new(role, name))
    }

    /// TLS as `name` in `role`, with a new certificate: a node's or
    /// client's whole security in one call (for `wimpy local` and tests).
    pub fn security(&self, role: Role, name: &str) -> Result<super::Security, CaError> {
        Ok(super::Security::tls(&self.credentials(role, name)?)?)
    }

    /// As [`ClusterCa::credentials`], for any request (an expired one, say).
    pub fn credentials_for(&self, request: &CertRequest) -> Result<Credentials, CaError> {
        let issued = self.issue(request)?;
        Ok(Credentials::from_pem_unchecked(&self.cert_pem, &issued.cert_pem, &issued.key_pem)?)
    }
}

impl ClusterCa {
    /// Signs a certificate signing request (PKCS#10, DER) for `request`: the
    /// key is the requester's (it never leaves the joining node); the
    /// subject, role, validity and names are `request`'s, whatever the CSR
    /// asked for. Returns the certificate, PEM.
    pub fn sign_request(&self, csr_der: &[u8], request: &CertRequest) -> Result<String, CaError> {
        check_name(&request.name)?;
        let csr = rustls::pki_types::CertificateSigningRequestDer::from(csr_der.to_vec());
        let mut csr = rcgen::CertificateSigningRequestParams::from_der(&csr)?;
        csr.params = leaf_params(request)?;
        Ok(csr.signed_by(&self.issuer)?.pem())
    }
}

/// A certificate signing request for `name` with a new key: what a joining
/// node sends (the DER) and keeps (the key, PEM).
pub fn signing_request(name: &str) -> Result<(Vec<u8>, String), CaError> {
    check_name(name)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

fn leaf_params(request: &CertRequest) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, request.name.as_str());
    dn.push(DnType::OrganizationalUnitName, request.role.as_str());
    dn.push(DnType::OrganizationName, "wimpy");
    params.distinguished_name = dn;
    params.not_before = request.not_before.into();
    params.not_after = request.not_after.into();
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Nodes both serve and call other nodes; clients only call.
    params.extended_key_usages = if request.role.is_node() {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    let mut names = vec![request.name.clone()];
    names.extend(request.alt_names.iter().cloned());
    for name in names {
        let san = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.as_str().try_into().map_err(|_| CaError::BadName(name.clone()))?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    Ok(params)
}

/// Certificate names become file names and DNS names: keep them plain.
pub(crate) fn check_name(name: &str) -> Result<(), CaError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) || name.starts_with('.') {
        return Err(CaError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Creates `dir` (and its parents) readable by its owner only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CaError::Io { path: dir.into(), source })
}

/// Writes a new file with `mode`, durably; fails if it exists.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io { path: path.into(), source };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}
