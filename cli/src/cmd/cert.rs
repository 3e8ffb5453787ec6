//! `wimpy cert issue --role ROLE NAME`: a certificate signed by the cluster CA.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::json;
use wimpy_net::Role;
use wimpy_net::security::{CertRequest, ClusterCa};

use crate::failure::Failure;
use crate::{Format, Global};

/// Certificates signed by the cluster's CA.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  wimpy cert issue --role worker pi-3                # wimpy-data/tls/pi-3.pem and pi-3.key\n  wimpy cert issue --role client alice --out ~/.wimpy\n  wimpy cert issue --role worker pi-4 --san 192.168.1.14,pi-4.local"
)]
pub(crate) struct Cert {
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(clap::Subcommand, Debug)]
enum CertCommand {
    Issue(Issue),
}

/// Sign a new key for NAME as ROLE with the CA in --credentials: writes
/// OUT/NAME.pem and OUT/NAME.key (mode 0600). Roles: master and worker run
/// nodes; admin reads, writes and changes membership (`wimpy leave`);
/// client reads and writes only.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  wimpy cert issue --role admin operator --days 30")]
struct Issue {
    /// What the certificate lets its holder do.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// The holder's name: the certificate's CN and the files' name.
    name: String,
    /// Where to write the certificate and key (default: the CA's directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// How many days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// More DNS names or IP addresses to put in the certificate, for
    /// clients that check a node's name (wimpy checks its role).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    san: Vec<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

impl Cert {
    pub(crate) fn run(&self, global: &Global) -> Result<(), Failure> {
        let CertCommand::Issue(issue) = &self.command;
        if issue.days == 0 {
            return Err(Failure::usage("--days must be at least 1"));
        }
        let ca_dir = &global.credentials;
        let ca = ClusterCa::load(ca_dir).map_err(|e| {
            Failure::trouble(format!(
                "{e} (make a CA with `wimpy ca init {}`, or point --credentials at one)",
                ca_dir.display()
            ))
        })?;
        let mut request = CertRequest::new(issue.role, issue.name.clone());
        request.not_after = SystemTime::now() + Duration::from_secs(issue.days * 86_400);
        request.alt_names = issue.san.clone();
        let issued = ca.issue(&request).map_err(Failure::refused)?;
        let out = issue.out.clone().unwrap_or_else(|| ca_dir.clone());
        std::fs::create_dir_all(&out).map_err(|e| Failure::trouble(format!("{}: {e}", out.display())))?;
        let (cert, key) = issued.write(&out).map_err(|e| Failure::trouble(e.to_string()))?;
        match global.format {
            Format::Text => println!(
                "{} certificate for {}: {}\nkey: {} (keep it private)\nvalid for {} day(s)",
                issue.role,
                issue.name,
                cert.display(),
                key.display(),
                issue.days
            ),
            Format::Json => println!(
                "{}",
                json!({"ok": true, "name": issue.name, "role": issue.role.as_str(), "cert": cert, "key": key, "days": issue.days})
            ),
        }
        Ok(())
    }
}
