//! What a connection costs to open: TCP connect, the TLS 1.3 handshake
//! (both ends verified) and one call answered, beside the same over plain
//! TCP (`--insecure`), in one run on 127.0.0.1. Each opening is timed
//! alone, one after another, with a fresh client config's worth of session
//! cache empty (no resumption), and the median reported.
//!
//!     cargo bench -p wimpy-net --bench handshake [-- --json FILE]

use std::rc::Rc;
use std::time::{Duration, Instant};

use wimpy_net::security::ClusterCa;
use wimpy_net::{Role, Security};
use wimpy_schema::wimpy_capnp::record_sink;

const OPENINGS: usize = 200;

struct Sink;

impl record_sink::Server for Sink {
    async fn done(
        self: Rc<Self>,
        _: record_sink::DoneParams,
        mut results: record_sink::DoneResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_records(1);
        Ok(())
    }
}

async fn serve(security: Security) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::task::spawn_local(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let security = security.clone();
            tokio::task::spawn_local(async move {
                let _ = wimpy_net::serve(stream, &security, |_| {
                    let sink: record_sink::Client = capnp_rpc::new_client(Sink);
                    sink.client
                })
                .await;
            });
        }
    });
    addr
}

/// Median time to open a connection and have one call answered, each
/// opening with new client credentials (so no session is resumed).
async fn median_opening(addr: &str, client: impl Fn() -> Security) -> Duration {
    let mut times = Vec::with_capacity(OPENINGS);
    for _ in 0..OPENINGS {
        let security = client();
        let t = Instant::now();
        let sink: record_sink::Client = wimpy_net::connect(addr, &security, &[Role::Worker]).await.unwrap();
        sink.done_request().send().promise.await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let json = std::env::args().skip_while(|a| a != "--json").nth(1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let ca = ClusterCa::generate("bench").unwrap();
        let tls_addr = serve(ca.security(Role::Worker, "worker").unwrap()).await;
        let plain_addr = serve(Security::Insecure).await;
        // The client's credentials are made once; each opening gets its own
        // TLS configuration (and so an empty session cache) from them.
        let credentials = ca.credentials(Role::Client, "client").unwrap();
        let tls = median_opening(&tls_addr, || Security::tls(&credentials).unwrap()).await;
        let plain = median_opening(&plain_addr, || Security::Insecure).await;
        println!(
            "opening a connection and one call, median of {OPENINGS}: TLS {:.3} ms, plain {:.3} ms ({:.2}x); aes in hardware: {}",
            tls.as_secs_f64() * 1e3,
            plain.as_secs_f64() * 1e3,
            tls.as_secs_f64() / plain.as_secs_f64(),
            wimpy_net::security::tls::has_aes_instructions()
        );
        if let Some(path) = json {
            let doc = format!(
                "{{\"openings\": {OPENINGS}, \"tls_ms\": {:.4}, \"plain_ms\": {:.4}}}\n",
                tls.as_secs_f64() * 1e3,
                plain.as_secs_f64() * 1e3
            );
            std::fs::write(path, doc).unwrap();
        }
    });
}
