//! `[tls]`: the node's certificates (seed 002 "Certificates"), shared by SMTP, IMAP and POP3.
//!
//! ```toml
//! [[tls.certificates]]
//! cert = "/etc/mailfleet/mx.example.com.pem"   # chain, leaf first
//! key = "/etc/mailfleet/mx.example.com.key"    # PKCS#8, PKCS#1 or SEC1, no passphrase
//! ```
//!
//! Several entries are chosen by SNI (exact name first, then wildcard); the first is the default
//! for clients that send no name. With none, a self-signed certificate is made on first start and
//! kept in `data_dir`.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    #[serde(default)]
    pub certificates: Vec<CertificateEntry>,
}

impl TlsSection {
    /// Each certificate's (chain, key) files, in order.
    pub fn pairs(&self) -> Vec<(PathBuf, PathBuf)> {
        self.certificates
            .iter()
            .map(|c| (c.cert.clone(), c.key.clone()))
            .collect()
    }
}

/// One certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    pub cert: PathBuf,
    pub key: PathBuf,
}
