//! The credential flags `wimpy-master` and `wimpy-worker` share.

use std::path::PathBuf;

use wimpy_schema::Role;

use super::{CredentialError, CredentialFiles, Credentials, Security};

/// Where a node's credentials are, or `--insecure`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NodeCredentialFlags {
    /// The cluster CA's certificate (PEM), which every peer's certificate
    /// must chain to.
    #[arg(long, env = "WIMPY_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// This node's certificate (PEM), signed by the cluster's CA.
    #[arg(long, env = "WIMPY_CERT_FILE", value_name = "PATH")]
    pub cert_file: Option<PathBuf>,
    /// This node's private key (PEM); refused unless only its owner can
    /// read it (mode 0600).
    #[arg(long, env = "WIMPY_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Serve and connect without TLS. Anyone who can reach the port can
    /// then read and write every key and rewrite the ring: for a machine of
    /// your own only.
    #[arg(long, conflicts_with_all = ["ca_file", "cert_file", "key_file"])]
    pub insecure: bool,
}

impl CredentialFiles {
    /// The flags that have `wimpy-master` or `wimpy-worker` present these
    /// files (as [`NodeCredentialFlags`] reads them).
    pub fn node_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--ca-file".into(),
            self.ca.clone().into(),
            "--cert-file".into(),
            self.cert.clone().into(),
            "--key-file".into(),
            self.key.clone().into(),
        ]
    }
}

impl NodeCredentialFlags {
    /// The security these flags ask for, for a node of `role`: the
    /// credentials loaded and checked (their certificate must be for
    /// `role`), or insecure with a warning logged.
    pub fn security(&self, role: Role) -> Result<Security, CredentialError> {
        match self.credentials(role)? {
            Some(credentials) => Security::tls(&credentials),
            None => Ok(Security::Insecure),
        }
    }

    /// The credentials these flags name, loaded and checked (their
    /// certificate must be for `role`); `None` with `--insecure`, warned.
    pub fn credentials(&self, role: Role) -> Result<Option<Credentials>, CredentialError> {
        if self.insecure {
            tracing::warn!(
                "--insecure: serving without TLS; anyone who can reach this node can read, write and rewrite the ring"
            );
            return Ok(None);
        }
        let (Some(ca), Some(cert), Some(key)) = (&self.ca_file, &self.cert_file, &self.key_file) else {
            return Err(CredentialError::NoneGiven);
        };
        let files = CredentialFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() };
        let credentials = Credentials::load(&files)?.for_role(role)?;
        tracing::info!(
            "TLS as {}, certificate valid for {} more day(s)",
            credentials.identity(),
            credentials.identity().remaining(std::time::SystemTime::now()).as_secs() / 86_400
        );
        Ok(Some(credentials))
    }
}
