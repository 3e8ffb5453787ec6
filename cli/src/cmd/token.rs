//! `wimpy token create`: a one-time join token from the master.

use std::time::Duration;

use serde_json::json;

use super::Session;
use crate::failure::Failure;

/// Join tokens: with one, a new worker joins in one command
/// (`wimpy-worker --join TOKEN`), its certificate signed by the master.
/// The master must hold the CA's key (`wimpy-master --ca-key-file`); making
/// a token needs an admin's certificate.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  wimpy token create --ttl 30m\n  # on the new Pi:\n  wimpy-worker --master 192.168.1.10:7070 --data /var/lib/wimpy --join wimpy-join-1:..."
)]
pub(crate) struct Token {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TokenCommand {
    Create(Create),
}

/// Make a token good for one join, until it expires.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  wimpy token create --ttl 2h")]
struct Create {
    /// How long the token is good for: a number with s, m, h or d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("{s:?}: expected a number and s, m, h or d"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    if secs == 0 || secs > u64::from(u32::MAX) {
        return Err(format!("{s:?}: between 1 s and 136 years"));
    }
    Ok(Duration::from_secs(secs))
}

impl Token {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let TokenCommand::Create(create) = &self.command;
        let token = s.client.join_token(create.ttl).await?;
        s.print(|| format!("{token}\n"), || json!({"ok": true, "token": token, "ttl_seconds": create.ttl.as_secs()}))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn ttls_read_in_their_units() {
        assert_eq!(super::parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(super::parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(super::parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        assert!(super::parse_ttl("0s").is_err());
        assert!(super::parse_ttl("1w").is_err());
        assert!(super::parse_ttl("h").is_err());
    }
}
