//! TLS under real connections on 127.0.0.1: who gets through, who is turned
//! away, and what the serving side learns of its peer.

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use wimpy_net::security::{
    CertRequest, ClusterCa, CredentialError, CredentialFiles, Credentials, Peer, Role, Security,
};
use wimpy_schema::wimpy_capnp::record_sink;

/// A sink whose `done` answers with how many bytes reached it, and which
/// remembers the peer its connection was served to.
struct Counting {
    bytes: std::cell::Cell<u64>,
}

impl record_sink::Server for Counting {
    async fn write(self: Rc<Self>, params: record_sink::WriteParams) -> Result<(), capnp::Error> {
        self.bytes.set(self.bytes.get() + params.get()?.get_frames()?.len() as u64);
        Ok(())
    }

    async fn done(
        self: Rc<Self>,
        _: record_sink::DoneParams,
        mut results: record_sink::DoneResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_records(self.bytes.get());
        Ok(())
    }
}

/// Serves [`Counting`] on 127.0.0.1:0 with `security`; returns its address
/// and the peers it served, in order.
async fn serve(security: Security) -> (String, Rc<std::cell::RefCell<Vec<Peer>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peers = Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = peers.clone();
    tokio::task::spawn_local(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (security, seen) = (security.clone(), seen.clone());
            tokio::task::spawn_local(async move {
                let _ = wimpy_net::serve(stream, &security, |peer| {
                    seen.borrow_mut().push(peer.clone());
                    let sink: record_sink::Client = capnp_rpc::new_client(Counting { bytes: 0.into() });
                    sink.client
                })
                .await;
            });
        }
    });
    (addr, peers)
}

/// Connects with `security` expecting a worker, writes 5 bytes and asks
/// for the count: the whole path a call takes.
async fn call(addr: &str, security: &Security) -> Result<u64, String> {
    let sink: record_sink::Client =
        wimpy_net::connect(addr, security, &[Role::Worker]).await.map_err(|e| e.to_string())?;
    let mut write = sink.write_request();
    write.get().set_frames(b"hello");
    write.send().await.map_err(|e| e.to_string())?;
    let done = sink.done_request().send().promise.await.map_err(|e| e.to_string())?;
    Ok(done.get().map_err(|e| e.to_string())?.get_records())
}

fn tls(ca: &ClusterCa, role: Role, name: &str) -> Security {
    Security::tls(&ca.credentials(role, name).unwrap()).unwrap()
}

fn local<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

#[test]
fn a_peer_with_a_certificate_from_the_cluster_ca_gets_through_and_is_known_by_it() {
    local(async {
        let ca = ClusterCa::generate("test").unwrap();
        let (addr, peers) = serve(tls(&ca, Role::Worker, "worker-1")).await;
        assert_eq!(call(&addr, &tls(&ca, Role::Master, "master")).await, Ok(5));
        let peers = peers.borrow();
        let identity = peers[0].identity().expect("a verified peer");
        assert_eq!((identity.name.as_str(), identity.role), ("master", Role::Master));
        assert!(identity.remaining(SystemTime::now()) > Duration::from_secs(300 * 86_400));
    });
}

#[test]
fn peers_without_a_valid_certificate_from_the_cluster_ca_are_turned_away() {
    local(async {
        let ca = ClusterCa::generate("test").unwrap();
        let (addr, peers) = serve(tls(&ca, Role::Worker, "worker-1")).await;

        // No TLS at all.
        assert!(call(&addr, &Security::Insecure).await.is_err());
        // A certificate from another CA.
        let other = ClusterCa::generate("other").unwrap();
        assert!(call(&addr, &tls(&other, Role::Master, "master")).await.is_err());
        // An expired one from the right CA.
        let mut expired = CertRequest::new(Role::Master, "master");
        expired.not_before = SystemTime::now() - Duration::from_secs(3 * 86_400);
        expired.not_after = SystemTime::now() - Duration::from_secs(86_400);
        let expired = ca.credentials_for(&expired).unwrap();
        assert!(call(&addr, &Security::tls(&expired).unwrap()).await.is_err());
        // None of them was served.
        assert!(peers.borrow().is_empty(), "served {:?}", peers.borrow());

        // The right CA still gets through afterwards.
        assert_eq!(call(&addr, &tls(&ca, Role::Client, "someone")).await, Ok(5));
    });
}

#[test]
fn a_client_refuses_a_server_of_another_cluster_or_of_the_wrong_role() {
    local(async {
        let ca = ClusterCa::generate("test").unwrap();
        let other = ClusterCa::generate("other").unwrap();
        let (foreign, _) = serve(tls(&other, Role::Worker, "worker-1")).await;
        assert!(call(&foreign, &tls(&ca, Role::Master, "master")).await.is_err());

        // A master where a worker was expected: the call never goes out.
        let (master, peers) = serve(tls(&ca, Role::Master, "master")).await;
        let refused = call(&master, &tls(&ca, Role::Client, "someone")).await.unwrap_err();
        assert!(refused.contains("not a worker"), "{refused}");
        assert!(peers.borrow().len() <= 1);
    });
}

#[test]
fn insecure_ends_talk_plain_tcp_and_know_nobody() {
    local(async {
        let (addr, peers) = serve(Security::Insecure).await;
        assert_eq!(call(&addr, &Security::Insecure).await, Ok(5));
        assert_eq!(peers.borrow()[0], Peer::Insecure);
    });
}

#[test]
fn credentials_on_disk_are_checked_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::init(dir.path(), "test").unwrap();
    assert!(matches!(ClusterCa::init(dir.path(), "test"), Err(wimpy_net::security::CaError::Exists(_))));
    ca.issue(&CertRequest::new(Role::Worker, "worker-1")).unwrap().write(dir.path()).unwrap();
    let files = CredentialFiles::in_dir(dir.path(), "worker-1");
    let loaded = Credentials::load(&files).unwrap();
    assert_eq!(loaded.identity().role, Role::Worker);
    assert_eq!(loaded.ca_fingerprint(), ca.fingerprint());
    assert!(matches!(loaded.clone().for_role(Role::Master), Err(CredentialError::WrongRole { .. })));

    // A key others can read is refused, saying why.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = Credentials::load(&files).unwrap_err();
    assert!(matches!(refused, CredentialError::KeyNotPrivate { mode: 0o644, .. }), "{refused}");
    assert!(refused.to_string().contains("chmod 600"));
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A certificate from another CA beside this CA's certificate.
    let other = ClusterCa::generate("other").unwrap();
    let stranger = other.issue(&CertRequest::new(Role::Worker, "stranger")).unwrap();
    let mixed = Credentials::from_pem(ca.cert_pem(), &stranger.cert_pem, &stranger.key_pem).unwrap_err();
    assert!(matches!(mixed, CredentialError::NotSignedByCa { .. }), "{mixed}");

    // The CA reads back and signs what the first one would.
    let reloaded = ClusterCa::load(dir.path()).unwrap();
    assert_eq!(reloaded.fingerprint(), ca.fingerprint());
    let issued = reloaded.issue(&CertRequest::new(Role::Client, "later")).unwrap();
    Credentials::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap();
}
