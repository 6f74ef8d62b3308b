//! The balancer terminating TLS in front of a node (seed 002's SSL tunnel): IMAPS and SMTPS on
//! the balancer, plain IMAP and submission on the node behind it, PROXY v2 in between. The v2
//! header's SSL TLV tells the node the client spoke TLS, so it takes passwords on those
//! sessions; through a plain front (a header without the TLV) the same node still refuses them.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailfleet_store::{NewAccount, password};
use mailfleet_test_support::{ChildGuard, free_port, free_port_offset, sqlite_url};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");

fn wait_connect(addr: (&str, u16)) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn logins_through_the_balancers_tls_front_count_as_tls_on_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = mailfleet_store::open(&url).await.unwrap();
        store.add_domain("front.test").await.unwrap();
        store
            .create_account(&NewAccount {
                address: "carol@front.test".into(),
                password_hash: password::hash_password("front-secret").unwrap(),
                quota_bytes: 0,
                shard: "default".into(),
            })
            .await
            .unwrap();
    });

    // The node on 127.0.0.2, trusting the balancer's address for PROXY headers.
    let offset = free_port_offset(&[587, 143]);
    let node_conf = dir.path().join("node.toml");
    std::fs::write(
        &node_conf,
        format!(
            "server_id = \"front1\"\nhostname = \"front1.test\"\nstore = \"{url}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.2\"\nport_offset = {offset}\n\
             trusted_proxies = [\"127.0.0.1\"]\n",
            dir.path().join("node").display()
        ),
    )
    .unwrap();
    let _node = ChildGuard::spawn(
        Command::new(BIN)
            .args(["node", "--config"])
            .arg(&node_conf)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    wait_connect(("127.0.0.2", 143 + offset));
    wait_connect(("127.0.0.2", 587 + offset));

    let (cert, key) = mailfleet_tls::self_signed(dir.path(), "localhost").unwrap();
    let tls = format!(
        "tls = {{ certificates = [{{ cert = {:?}, key = {:?} }}] }}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let (imaps, smtps, plain) = (free_port(), free_port(), free_port());
    let mut conf = String::new();
    for (name, port, backend, front_tls) in [
        ("imaps", imaps, 143 + offset, true),
        ("smtps", smtps, 587 + offset, true),
        ("imap-plain", plain, 143 + offset, false),
    ] {
        conf.push_str(&format!(
            "[[service]]\nname = \"{name}\"\nlisten = [\"127.0.0.1:{port}\"]\n\
             proxy_protocol = \"v2\"\nhealth = \"none\"\n{}\
             [[service.server]]\nname = \"front1\"\naddress = \"127.0.0.2:{backend}\"\n\n",
            if front_tls { tls.as_str() } else { "" }
        ));
    }
    let balancer_conf = dir.path().join("balancer.toml");
    std::fs::write(&balancer_conf, conf).unwrap();
    let _balancer = ChildGuard::spawn(
        Command::new(BIN)
            .args(["balancer", "--config"])
            .arg(&balancer_conf)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    for port in [imaps, smtps, plain] {
        wait_connect(("127.0.0.1", port));
    }

    let script = format!(
        r#"
import imaplib, smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx, timeout=20)
caps = m.capabilities
assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps, caps
m.login("carol@front.test", "front-secret")
m.logout()
s = smtplib.SMTP_SSL("127.0.0.1", {smtps}, context=ctx, timeout=20)
s.ehlo("client.test")
assert s.has_extn("auth") and not s.has_extn("starttls"), s.esmtp_features
s.login("carol@front.test", "front-secret")
s.sendmail("carol@front.test", ["carol@front.test"], "Subject: via the front\r\n\r\nhello\r\n")
s.quit()
m = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx, timeout=20)
m.login("carol@front.test", "front-secret")
m.select("INBOX")
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (RECEIVED)])")
received = data[0][1].decode()
assert "via 127.0.0.1" in received and "TLS" in received, received
m.logout()
# Through the plain front the header has no SSL TLV: the node wants TLS first.
p = imaplib.IMAP4("127.0.0.1", {plain}, timeout=20)
assert "STARTTLS" in p.capabilities, p.capabilities
try:
    p.login("carol@front.test", "front-secret")
    raise SystemExit("a cleartext login through the plain front was accepted")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e) or "TLS" in str(e), e
print("ok")
"#
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
