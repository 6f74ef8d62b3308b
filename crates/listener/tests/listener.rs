//! The shared listener over real sockets on loopback, with a toy protocol that greets each
//! client with the address it sees: PROXY headers only from trusted peers, access rules,
//! per-address limits with the protocol's own refusal and their exceptions, a slot freed before
//! a session's last words, and `[::]` taking IPv4 and IPv6 clients.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mailfleet_ip_rules::{AccessList, IpRules};
use mailfleet_listener::{
    Admission, Conn, ConnectionSlot, Connections, Listener, Protocol, Refusal,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

struct Greeter {
    deny: IpRules,
    per_ip: usize,
    exceptions: IpRules,
    served: AtomicUsize,
}

impl Protocol for Greeter {
    fn name(&self) -> &'static str {
        "greeter"
    }

    fn admission(&self) -> Admission {
        Admission {
            access: AccessList {
                allow: IpRules::default(),
                deny: self.deny.clone(),
            },
            max_connections: 100,
            max_connections_per_ip: self.per_ip,
            per_ip_exceptions: self.exceptions.clone(),
        }
    }

    fn refusal(&self, why: Refusal) -> Option<Vec<u8>> {
        Some(format!("NO {why:?}\r\n").into_bytes())
    }

    async fn serve(self: Arc<Self>, mut conn: Conn, client_ip: IpAddr, slot: ConnectionSlot) {
        self.served.fetch_add(1, Ordering::SeqCst);
        let _ = conn
            .write_all(format!("HELLO {client_ip}\r\n").as_bytes())
            .await;
        // Hold the session until the client says anything or goes; then the slot goes back
        // before the last words.
        let mut byte = [0u8; 1];
        let _ = conn.read(&mut byte).await;
        drop(slot);
        let _ = conn.write_all(b"BYE\r\n").await;
        // The task lives on until the client closes: only the slot decides what counts.
        let _ = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut byte)).await;
    }
}

async fn start(
    trusted: &str,
    deny: &str,
    per_ip: usize,
) -> (SocketAddr, Arc<Greeter>, CancellationToken) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, greeter, _, shutdown) = start_on(socket, trusted, deny, per_ip, "");
    (addr, greeter, shutdown)
}

fn start_on(
    socket: TcpListener,
    trusted: &str,
    deny: &str,
    per_ip: usize,
    exceptions: &str,
) -> (
    SocketAddr,
    Arc<Greeter>,
    Arc<Connections>,
    CancellationToken,
) {
    let addr = socket.local_addr().unwrap();
    let greeter = Arc::new(Greeter {
        deny: IpRules::parse_list(deny).unwrap(),
        per_ip,
        exceptions: IpRules::parse_list(exceptions).unwrap(),
        served: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let connections = Arc::new(Connections::default());
    let listener = Listener {
        protocol: greeter.clone(),
        connections: connections.clone(),
        trusted_proxies: IpRules::parse_list(trusted).unwrap(),
        implicit_tls: None,
        sessions: tokio_util::task::TaskTracker::new(),
    };
    tokio::spawn(listener.run(socket, shutdown.clone()));
    (addr, greeter, connections, shutdown)
}

async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((source, 0))).unwrap();
    s.connect(to).await.unwrap()
}

async fn first_line(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while s.read(&mut byte).await.unwrap_or(0) == 1 {
            buf.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("a line in time");
    String::from_utf8_lossy(&buf).trim_end().to_string()
}

#[tokio::test]
async fn proxy_headers_are_read_from_trusted_peers_only() {
    let (addr, _, _stop) = start("127.0.0.2", "", 10).await;
    let header = mailfleet_proxy_protocol::encode_v2(
        "198.51.100.7:4000".parse().unwrap(),
        "192.0.2.1:25".parse().unwrap(),
    );
    let mut trusted = connect_from([127, 0, 0, 2], addr).await;
    trusted.write_all(&header).await.unwrap();
    assert_eq!(first_line(&mut trusted).await, "HELLO 198.51.100.7");
    // From an untrusted peer the header is not read: the client is who it is.
    let mut untrusted = connect_from([127, 0, 0, 3], addr).await;
    untrusted.write_all(&header).await.unwrap();
    assert_eq!(first_line(&mut untrusted).await, "HELLO 127.0.0.3");
}

#[tokio::test]
async fn access_rules_and_limits_refuse_in_the_protocols_words() {
    let (addr, greeter, _stop) = start("127.0.0.2", "127.0.0.9", 2).await;
    let mut denied = connect_from([127, 0, 0, 9], addr).await;
    assert_eq!(first_line(&mut denied).await, "NO Access");
    // The deny rule applies to the address a trusted proxy names.
    let mut via_proxy = connect_from([127, 0, 0, 2], addr).await;
    via_proxy
        .write_all(&mailfleet_proxy_protocol::encode_v2(
            "127.0.0.9:4000".parse().unwrap(),
            "192.0.2.1:25".parse().unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(first_line(&mut via_proxy).await, "NO Access");

    let mut a = connect_from([127, 0, 0, 4], addr).await;
    assert_eq!(first_line(&mut a).await, "HELLO 127.0.0.4");
    let mut b = connect_from([127, 0, 0, 4], addr).await;
    assert_eq!(first_line(&mut b).await, "HELLO 127.0.0.4");
    let mut c = connect_from([127, 0, 0, 4], addr).await;
    assert_eq!(first_line(&mut c).await, "NO Limit(PerIp)");
    // Another address has its own allowance.
    let mut d = connect_from([127, 0, 0, 5], addr).await;
    assert_eq!(first_line(&mut d).await, "HELLO 127.0.0.5");
    // A session that ends gives its slot back.
    a.write_all(b"bye").await.unwrap();
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut e = connect_from([127, 0, 0, 4], addr).await;
        if first_line(&mut e).await == "HELLO 127.0.0.4" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(greeter.served.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_is_free_before_the_client_reads_the_last_words() {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, _, connections, _stop) = start_on(socket, "", "", 2, "");
    let mut other = connect_from([127, 0, 0, 1], addr).await;
    assert_eq!(first_line(&mut other).await, "HELLO 127.0.0.1");
    for round in 0..50 {
        let mut s = connect_from([127, 0, 0, 1], addr).await;
        assert_eq!(first_line(&mut s).await, "HELLO 127.0.0.1", "round {round}");
        assert_eq!(connections.total(), 2);
        s.write_all(b"q").await.unwrap();
        assert_eq!(first_line(&mut s).await, "BYE");
        // The session's task may not have run past its last write yet, but the slot is back.
        assert_eq!(connections.total(), 1, "round {round}");
    }
}

#[tokio::test]
async fn exceptions_have_no_per_address_limit() {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, _, _, _stop) = start_on(socket, "", "", 1, "127.0.0.6/31");
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = connect_from([127, 0, 0, 6], addr).await;
        assert_eq!(first_line(&mut s).await, "HELLO 127.0.0.6");
        held.push(s);
    }
    let mut s = connect_from([127, 0, 0, 8], addr).await;
    assert_eq!(first_line(&mut s).await, "HELLO 127.0.0.8");
    let mut refused = connect_from([127, 0, 0, 8], addr).await;
    let started = tokio::time::Instant::now();
    assert_eq!(first_line(&mut refused).await, "NO Limit(PerIp)");
    // Refused only after the grace for a slot to come back.
    assert!(started.elapsed() >= mailfleet_listener::PER_IP_GRACE);
}

#[tokio::test]
async fn a_wildcard_socket_takes_ipv4_and_ipv6_clients() {
    let port = mailfleet_test_support::free_port();
    let socket = match mailfleet_listener::bind_tcp(SocketAddr::from(([0u16; 8], port))) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let (addr, _, _, _stop) = start_on(socket, "", "", 10, "");
    assert_eq!(addr.port(), port);
    let mut v4 = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(first_line(&mut v4).await, "HELLO 127.0.0.1");
    let mut v6 = TcpStream::connect(("::1", port)).await.unwrap();
    assert_eq!(first_line(&mut v6).await, "HELLO ::1");
}
