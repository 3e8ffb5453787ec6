//! Opening and serving Cap'n Proto connections the one way every wimpy node
//! and client does: two-party over TCP, no Nagle delay, TLS 1.3 with both
//! ends verified unless running insecure ([`crate::security`]), the shared
//! reader limits ([`wimpy_schema::reader_options`]).

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures::AsyncReadExt;
use tokio::io::{AsyncRead, AsyncWrite};
use wimpy_schema::Role;

use crate::security::{Peer, Security};

/// The address this process's connections leave from, if it was given one.
static SOURCE: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();

/// Has every connection this process opens leave from `ip` (its port
/// picked by the system), as a machine with that address of its own would:
/// a node serving on its own loopback address (127.0.0.2, say, in an
/// emulated fleet) is then known by it at both ends of each connection, so
/// a packet filter can cut two nodes apart. Set once, at start; it is not
/// used for a peer of the other family, nor (a loopback address) for one
/// off the machine, or the other way round.
pub fn connect_from(ip: std::net::IpAddr) {
    let _ = SOURCE.set(ip);
}

/// A TCP connection to `addr`, from [`connect_from`]'s address if set.
pub(crate) async fn open_tcp(addr: &str) -> std::io::Result<tokio::net::TcpStream> {
    let Some(source) = SOURCE.get() else { return tokio::net::TcpStream::connect(addr).await };
    let mut last = None;
    for target in tokio::net::lookup_host(addr).await? {
        // A loopback source reaches only loopback peers, and the other way.
        if target.is_ipv4() != source.is_ipv4() || target.ip().is_loopback() != source.is_loopback() {
            continue;
        }
        let socket = if target.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.bind(std::net::SocketAddr::new(*source, 0))?;
        match socket.connect(target).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e),
        None => tokio::net::TcpStream::connect(addr).await,
    }
}

/// Connects to `addr` and returns the peer's bootstrap capability. Over
/// TLS the peer's certificate must be for one of the roles in `expect` (a
/// worker, say, when routing to a key's owner). The connection runs as a
/// task of the current `LocalSet` until the peer or the capability goes
/// away. The TCP connect and the TLS handshake together give up after
/// [`deadline::CONNECT`](crate::deadline::CONNECT).
pub async fn connect<C: capnp::capability::FromClientHook>(
    addr: &str,
    security: &Security,
    expect: &[Role],
) -> std::io::Result<C> {
    Ok(connect_to(addr, security, expect).await?.0)
}

/// [`connect`], and who answered: the peer its certificate names
/// ([`Peer::Insecure`] without TLS).
pub async fn connect_to<C: capnp::capability::FromClientHook>(
    addr: &str,
    security: &Security,
    expect: &[Role],
) -> std::io::Result<(C, Peer)> {
    let opened = async {
        let stream = open_tcp(addr).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(match security {
            Security::Insecure => (start(stream, None), Peer::Insecure),
            Security::Tls(tls) => {
                let (stream, peer) = tls.connect(stream).await?;
                if !expect.contains(&peer.role) {
                    let wanted: Vec<&str> = expect.iter().map(|r| r.as_str()).collect();
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!("{addr} is {peer}, not a {}", wanted.join(" or ")),
                    ));
                }
                (start(stream, None), Peer::Verified(peer))
            }
        })
    };
    let (mut rpc, peer) = match tokio::time::timeout(crate::deadline::CONNECT, opened).await {
        Ok(opened) => opened?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", crate::deadline::CONNECT),
            ));
        }
    };
    let client: C = rpc.bootstrap(rpc_twoparty_capnp::Side::Server);
    tokio::task::spawn_local(rpc);
    Ok((client, peer))
}

/// Serves an accepted connection until the peer hangs up: completes the
/// TLS handshake (within [`deadline::CONNECT`](crate::deadline::CONNECT);
/// a peer without a certificate from the cluster's CA is turned away
/// there), then serves the capability `bootstrap` makes for the peer it
/// found.
pub async fn serve(
    stream: tokio::net::TcpStream,
    security: &Security,
    bootstrap: impl FnOnce(&Peer) -> capnp::capability::Client,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let rpc = match security {
        Security::Insecure => start(stream, Some(bootstrap(&Peer::Insecure))),
        Security::Tls(tls) => {
            let accepted = match tokio::time::timeout(crate::deadline::CONNECT, tls.accept(stream)).await {
                Ok(accepted) => accepted?,
                Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake unfinished")),
            };
            let (stream, peer) = accepted;
            tracing::debug!("serving {peer}");
            start(stream, Some(bootstrap(&peer)))
        }
    };
    rpc.await.map_err(std::io::Error::other)
}

/// An RPC system over `stream`: the client side when `bootstrap` is
/// `None`, else the server side serving it. What it receives comes a delay
/// late if this process set one ([`crate::delay`]).
pub(crate) fn start<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    stream: S,
    bootstrap: Option<capnp::capability::Client>,
) -> RpcSystem<rpc_twoparty_capnp::Side> {
    let side = if bootstrap.is_some() { rpc_twoparty_capnp::Side::Server } else { rpc_twoparty_capnp::Side::Client };
    let (reader, writer) = tokio_util::compat::TokioAsyncReadCompatExt::compat(stream).split();
    let reader: Box<dyn futures::AsyncRead + Unpin> = match crate::delay::receive_delay() {
        Some(delay) => Box::new(crate::delay::delayed(reader, delay)),
        None => Box::new(reader),
    };
    let network = twoparty::VatNetwork::new(
        futures::io::BufReader::new(reader),
        futures::io::BufWriter::new(writer),
        side,
        wimpy_schema::reader_options(),
    );
    RpcSystem::new(Box::new(network), bootstrap)
}
