//! Helpers for the TLS termination tests: certificates made on the spot, a TLS client that
//! records the certificate the balancer presented, and HTTP/1.1 exchanges over any stream.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A certificate for `names` written as PEM files in `dir`: (cert path, key path, leaf DER).
pub fn cert(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
    let g =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = dir.join(format!("{}.pem", names[0]));
    let key = dir.join(format!("{}.key", names[0]));
    std::fs::write(&cert, g.cert.pem()).unwrap();
    std::fs::write(&key, g.key_pair.serialize_pem()).unwrap();
    (cert, key, g.cert.der().to_vec())
}

/// Accepts any certificate and keeps the one presented (the test compares it).
#[derive(Debug)]
struct Record {
    seen: Arc<Mutex<Option<Vec<u8>>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Record {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection from `from` to `to`, asking for `sni` (None: no name is sent); returns the
/// stream and the leaf certificate the balancer presented.
pub async fn connect(
    from: &str,
    to: SocketAddr,
    sni: Option<&str>,
) -> (TlsStream<TcpStream>, Vec<u8>) {
    let provider = Arc::new(ring::default_provider());
    let seen = Arc::new(Mutex::new(None));
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Record {
            seen: seen.clone(),
            provider,
        }))
        .with_no_client_auth();
    let tcp = {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(from.parse().unwrap(), 0))
            .unwrap();
        sock.connect(to).await.unwrap()
    };
    // An IP address as the server name: rustls sends no SNI.
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        None => ServerName::IpAddress(to.ip().into()),
    };
    let s = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake within 5 s")
    .expect("handshake");
    let der = seen.lock().unwrap().take().expect("a certificate");
    (s, der)
}

/// An HTTP/1.1 response: status code, headers (names lower-case), body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and headers, without the blank line) and reads one response
/// with a Content-Length body.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, head: &str) -> Resp {
    s.get_mut()
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s.get_mut().flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), read_response(s))
        .await
        .expect("a response within 5 s")
}

async fn read_response<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Resp {
    let mut line = String::new();
    s.read_line(&mut line).await.unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        s.read_line(&mut h).await.unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}
