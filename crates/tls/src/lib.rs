//! mailfleet TLS: the node's certificates as one rustls server configuration, shared by the
//! SMTP, submission, IMAP and POP3 listeners.
//!
//! - Certificates come from PEM files (chain with the leaf first, and a PKCS#8, PKCS#1 or SEC1
//!   key without passphrase), as the node config's `[[tls.certificates]]` lists them.
//! - Several certificates are chosen by SNI (seed 002): a name the client asks for is matched
//!   against each certificate's DNS names, exact names first, then wildcards (`*.example.com`
//!   matches one label); a client that sends no name, or a name nothing matches, gets the first
//!   certificate.
//! - With none configured, [`load`] makes a self-signed certificate for the node's hostname on
//!   first start and keeps it in `DATA_DIR/tls/` so it (and its fingerprint) stays the same
//!   across restarts.
//! - [`fingerprint`] is the SHA-256 of a certificate's DER bytes, as colon-separated hex.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// Each message carries its whole cause and no variant has a `source()`, so a printer that
/// walks the error chain (anyhow's `{:#}`) shows every cause once.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {problem}")]
    Pem { path: String, problem: String },
    #[error("certificate {cert} and key {key} do not fit together: {problem}")]
    Mismatch {
        cert: String,
        key: String,
        problem: String,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("{path}: cannot write: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// One loaded certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The PEM file it came from.
    pub path: PathBuf,
    /// DNS names (subject alternative names, or the common name when there are none), lower-case.
    pub names: Vec<String>,
    /// SHA-256 of the leaf's DER bytes.
    pub fingerprint: String,
    /// True for the generated self-signed certificate.
    pub self_signed: bool,
}

/// The result of [`load`]: a server configuration and what went into it.
#[derive(Clone)]
pub struct TlsSetup {
    pub config: Arc<rustls::ServerConfig>,
    pub certificates: Vec<CertInfo>,
}

/// `AB:CD:...`: SHA-256 of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(95);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02X}");
    }
    out
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.display().to_string(),
        error,
    })
}

/// Loads one PEM certificate chain and key into a signing key, checking that they belong together.
pub fn load_pair(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, CertInfo), TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let pem_err = |path: &Path, problem: String| TlsError::Pem {
        path: path.display().to_string(),
        problem,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "no CERTIFICATE block".into()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_err(key, format!("no usable private key: {e}")))?;
    let signing = provider::sign::any_supported_type(&key_der)
        .map_err(|e| pem_err(key, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        problem: e.to_string(),
    })?;
    let leaf = &certified.cert[0];
    let info = CertInfo {
        path: cert.to_path_buf(),
        names: dns_names(leaf).map_err(|p| pem_err(cert, p))?,
        fingerprint: fingerprint(leaf),
        self_signed: false,
    };
    Ok((Arc::new(certified), info))
}

/// DNS names of a certificate: its SANs, else its subject common name.
fn dns_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("cannot parse certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// Makes (first time) or reuses a self-signed certificate for `hostname` in `DATA_DIR/tls/`.
/// Returns the certificate and key paths.
pub fn self_signed(data_dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = data_dir.join("tls");
    let cert = dir.join("self-signed.pem");
    let key = dir.join("self-signed.key");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let write_err = |p: &Path| {
        let path = p.display().to_string();
        move |error| TlsError::Write { path, error }
    };
    std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let generated = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(&key, generated.key_pair.serialize_pem().as_bytes()).map_err(write_err(&key))?;
    std::fs::write(&cert, generated.cert.pem()).map_err(write_err(&cert))?;
    tracing::info!(path = %cert.display(), "made a self-signed certificate for {hostname}");
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Loads the configured certificates (or the self-signed fallback when `pairs` is empty) into a
/// rustls server configuration with SNI selection.
pub fn load(
    pairs: &[(PathBuf, PathBuf)],
    data_dir: &Path,
    hostname: &str,
) -> Result<TlsSetup, TlsError> {
    let mut keys = Vec::new();
    let mut infos = Vec::new();
    if pairs.is_empty() {
        let (cert, key) = self_signed(data_dir, hostname)?;
        let (k, mut info) = load_pair(&cert, &key)?;
        info.self_signed = true;
        keys.push(k);
        infos.push(info);
    } else {
        for (cert, key) in pairs {
            let (k, info) = load_pair(cert, key)?;
            keys.push(k);
            infos.push(info);
        }
    }
    from_loaded(keys.into_iter().zip(infos).collect())
}

/// A rustls server configuration with SNI selection over certificates already loaded with
/// [`load_pair`] (the first is the default). The balancer uses it: it loads each pair itself to
/// name the configuration key of a bad one, and has no self-signed fallback.
pub fn from_loaded(loaded: Vec<(Arc<CertifiedKey>, CertInfo)>) -> Result<TlsSetup, TlsError> {
    if loaded.is_empty() {
        return Err(TlsError::Config("no certificate".into()));
    }
    let mut entries = Vec::with_capacity(loaded.len());
    let mut infos = Vec::with_capacity(loaded.len());
    for (key, info) in loaded {
        entries.push((key, info.names.clone()));
        infos.push(info);
    }
    let resolver = SniResolver { entries };
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
    Ok(TlsSetup {
        config: Arc::new(config),
        certificates: infos,
    })
}

/// Picks a certificate by the name the client asked for.
#[derive(Debug)]
pub struct SniResolver {
    /// Certificates with their DNS names, in configuration order (the first is the default).
    entries: Vec<(Arc<CertifiedKey>, Vec<String>)>,
}

impl SniResolver {
    /// Index of the certificate for `name`: exact match, then wildcard, then the first.
    pub fn choose(&self, name: Option<&str>) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let Some(name) = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return Some(0);
        };
        if let Some(i) = self
            .entries
            .iter()
            .position(|(_, names)| names.contains(&name))
        {
            return Some(i);
        }
        let parent = name.split_once('.').map(|(_, rest)| rest);
        if let Some(parent) = parent {
            let wildcard = format!("*.{parent}");
            if let Some(i) = self.entries.iter().position(|(_, n)| n.contains(&wildcard)) {
                return Some(i);
            }
        }
        Some(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name())
            .and_then(|i| self.entries.get(i))
            .map(|(k, _)| k.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let g = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert = dir.join(format!("{file}.pem"));
        let key = dir.join(format!("{file}.key"));
        std::fs::write(&cert, g.cert.pem()).unwrap();
        std::fs::write(&key, g.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn self_signed_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load(&[], dir.path(), "mx.example.test").unwrap();
        let b = load(&[], dir.path(), "mx.example.test").unwrap();
        assert!(a.certificates[0].self_signed);
        assert_eq!(a.certificates[0].names, vec!["mx.example.test"]);
        assert_eq!(a.certificates[0].fingerprint, b.certificates[0].fingerprint);
        assert_eq!(a.certificates[0].fingerprint.len(), 95);
    }

    #[test]
    fn sni_exact_wildcard_default() {
        let dir = tempfile::tempdir().unwrap();
        let pairs = vec![
            make(dir.path(), "default", &["mail.one.test"]),
            make(dir.path(), "wild", &["*.two.test"]),
            make(dir.path(), "exact", &["mx.two.test"]),
        ];
        let mut entries = Vec::new();
        for (c, k) in &pairs {
            let (key, info) = load_pair(c, k).unwrap();
            entries.push((key, info.names));
        }
        let r = SniResolver { entries };
        assert_eq!(r.choose(None), Some(0));
        assert_eq!(r.choose(Some("mx.two.test")), Some(2));
        assert_eq!(r.choose(Some("imap.two.test")), Some(1));
        assert_eq!(r.choose(Some("a.b.two.test")), Some(0));
        assert_eq!(r.choose(Some("MAIL.ONE.TEST.")), Some(0));
        assert!(load(&pairs, dir.path(), "x").is_ok());
        assert!(from_loaded(Vec::new()).is_err());
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, _) = make(dir.path(), "a", &["a.test"]);
        let (_, k2) = make(dir.path(), "b", &["b.test"]);
        let e = load_pair(&c1, &k2).unwrap_err().to_string();
        assert!(e.contains("do not fit"), "{e}");
        let missing = dir.path().join("nope.pem");
        let e = load_pair(&missing, &k2).unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
        std::fs::write(&missing, "garbage").unwrap();
        let e = load_pair(&missing, &k2).unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }
}
