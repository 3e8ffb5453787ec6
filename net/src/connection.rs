//! Opening and serving Cap'n Proto connections the one way every wimpy node
//! and client does: two-party over TCP, no Nagle delay, the shared reader
//! limits ([`wimpy_schema::reader_options`]).

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures::AsyncReadExt;

/// Connects to `addr` and returns the peer's bootstrap capability. The
/// connection runs as a task of the current `LocalSet` until the peer or the
/// capability goes away. The TCP connect gives up after
/// [`deadline::CONNECT`](crate::deadline::CONNECT).
pub async fn connect<C: capnp::capability::FromClientHook>(addr: &str) -> std::io::Result<C> {
    let stream = match tokio::time::timeout(crate::deadline::CONNECT, tokio::net::TcpStream::connect(addr)).await {
        Ok(stream) => stream?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", crate::deadline::CONNECT),
            ));
        }
    };
    stream.set_nodelay(true)?;
    let mut rpc = RpcSystem::new(Box::new(network(stream, rpc_twoparty_capnp::Side::Client)), None);
    let client: C = rpc.bootstrap(rpc_twoparty_capnp::Side::Server);
    tokio::task::spawn_local(rpc);
    Ok(client)
}

/// Serves `bootstrap` on an accepted connection until the peer hangs up.
pub async fn serve(stream: tokio::net::TcpStream, bootstrap: capnp::capability::Client) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let rpc = RpcSystem::new(Box::new(network(stream, rpc_twoparty_capnp::Side::Server)), Some(bootstrap));
    rpc.await.map_err(std::io::Error::other)
}

fn network(
    stream: tokio::net::TcpStream,
    side: rpc_twoparty_capnp::Side,
) -> twoparty::VatNetwork<
    futures::io::BufReader<futures::io::ReadHalf<tokio_util::compat::Compat<tokio::net::TcpStream>>>,
> {
    let (reader, writer) = tokio_util::compat::TokioAsyncReadCompatExt::compat(stream).split();
    twoparty::VatNetwork::new(
        futures::io::BufReader::new(reader),
        futures::io::BufWriter::new(writer),
        side,
        wimpy_schema::reader_options(),
    )
}
