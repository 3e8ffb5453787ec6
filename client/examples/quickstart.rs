//! Store and read back a few keys through the SDK.
//!
//! Start a cluster first (`wimpy local`), then, in the same directory:
//!     cargo run -p wimpy-client --example quickstart [MASTER_ADDR [CREDENTIALS_DIR]]
//!
//! It connects over TLS as the operator `wimpy local` made a certificate
//! for (CREDENTIALS_DIR defaults to where `wimpy local` writes them).

use wimpy_client::security::CredentialFiles;
use wimpy_client::{Client, Security};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let master = args.next().unwrap_or_else(|| "127.0.0.1:7070".into()).parse()?;
    let credentials = args.next().unwrap_or_else(|| "wimpy-data/tls".into());
    let security = Security::from_files(&CredentialFiles::in_dir(credentials.as_ref(), "operator"))?;
    // capnp-rpc is single-threaded: one current-thread runtime and a LocalSet.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tokio::task::LocalSet::new().block_on(&rt, async {
        let client = Client::connect(master, security).await?;
        let ring = client.ring();
        println!("ring epoch {} with {} worker(s)", ring.ring.epoch(), ring.members.len());
        for i in 0..5 {
            let key = format!("quickstart-{i}");
            client.put(key.as_bytes(), format!("value {i}").as_bytes()).await?;
            let owner = ring.ring.owner(key.as_bytes()).unwrap_or_default();
            let back = client.get(key.as_bytes()).await?.unwrap_or_default();
            println!("{key} -> worker {owner}: {}", String::from_utf8_lossy(&back));
        }
        client.delete(b"quickstart-0").await?;
        anyhow::Ok(())
    })
}
