//! `wimpy ca init [DIR]`: a new cluster CA.

use std::path::PathBuf;

use serde_json::json;
use wimpy_net::security::ClusterCa;

use super::hex;

use crate::failure::Failure;
use crate::{Format, Global};

/// The cluster's certificate authority, which signs every node's and
/// client's certificate.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  wimpy ca init tls                     # tls/ca.pem and tls/ca.key (keep ca.key safe)\n  wimpy cert issue --credentials tls --role master master\n  wimpy cert issue --credentials tls --role worker pi-1"
)]
pub(crate) struct Ca {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(clap::Subcommand, Debug)]
enum CaCommand {
    Init(Init),
}

/// Make a new CA: DIR/ca.pem (its certificate, for every node and client)
/// and DIR/ca.key (its private key, mode 0600: only who issues
/// certificates needs it). Refuses to overwrite a CA.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  wimpy ca init /etc/wimpy/tls --cluster home-lab")]
struct Init {
    /// Where to write the CA (default: --credentials).
    dir: Option<PathBuf>,
    /// The cluster's name, written into the CA's certificate.
    #[arg(long, default_value = "wimpy")]
    cluster: String,
}

impl Ca {
    pub(crate) fn run(&self, global: &Global) -> Result<(), Failure> {
        let CaCommand::Init(init) = &self.command;
        let dir = init.dir.clone().unwrap_or_else(|| global.credentials.clone());
        let ca = ClusterCa::init(&dir, &init.cluster).map_err(|e| Failure::trouble(e.to_string()))?;
        let fingerprint = hex(&ca.fingerprint());
        let cert = dir.join(wimpy_net::security::ca::CA_CERT_FILE);
        let key = dir.join(wimpy_net::security::ca::CA_KEY_FILE);
        match global.format {
            Format::Text => println!(
                "CA certificate {}\nCA key         {} (keep it private)\nfingerprint    sha256:{fingerprint}",
                cert.display(),
                key.display()
            ),
            Format::Json => println!(
                "{}",
                json!({"ok": true, "cert": cert, "key": key, "fingerprint": format!("sha256:{fingerprint}")})
            ),
        }
        Ok(())
    }
}
