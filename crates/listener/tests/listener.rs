//! The shared listener over real sockets on loopback, with a toy protocol that greets each
//! client with the address it sees: PROXY headers only from trusted peers, access rules,
//! per-address limits with the protocol's own refusal, and a slot freed when a session ends.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mailfleet_ip_rules::{AccessList, IpRules};
use mailfleet_listener::{Admission, Conn, Connections, Listener, Protocol, Refusal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

struct Greeter {
    deny: IpRules,
    per_ip: usize,
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
        }
    }

    fn refusal(&self, why: Refusal) -> Option<Vec<u8>> {
        Some(format!("NO {why:?}\r\n").into_bytes())
    }

    async fn serve(self: Arc<Self>, mut conn: Conn, client_ip: IpAddr) {
        self.served.fetch_add(1, Ordering::SeqCst);
        let _ = conn
            .write_all(format!("HELLO {client_ip}\r\n").as_bytes())
            .await;
        // Hold the session until the client says anything or goes.
        let mut byte = [0u8; 1];
        let _ = conn.read(&mut byte).await;
    }
}

async fn start(
    trusted: &str,
    deny: &str,
    per_ip: usize,
) -> (SocketAddr, Arc<Greeter>, CancellationToken) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let greeter = Arc::new(Greeter {
        deny: IpRules::parse_list(deny).unwrap(),
        per_ip,
        served: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let listener = Listener {
        protocol: greeter.clone(),
        connections: Arc::new(Connections::default()),
        trusted_proxies: IpRules::parse_list(trusted).unwrap(),
        implicit_tls: None,
        sessions: tokio_util::task::TaskTracker::new(),
    };
    tokio::spawn(listener.run(socket, shutdown.clone()));
    (addr, greeter, shutdown)
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
