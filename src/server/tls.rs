//! HTTPS for `serve`: the certificate chain and key from PEM files, checked at start and
//! swapped in on SIGHUP without touching established connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, version};

/// The server's TLS set-up: the acceptor every new connection goes through, and the files
/// it reloads from.
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<Current>,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
}

/// The certificate new handshakes get; replaced whole on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Tls {
    /// Reads `cert` (a PEM chain, server certificate first) and `key` (PEM: PKCS#8, PKCS#1
    /// or SEC1) and checks that they belong together. TLS 1.2 and 1.3 only.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let certified = read_pair(cert, key, &provider)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(certified))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(|e| anyhow::anyhow!("setting up TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again; on success new connections get the new certificate, on
    /// failure the old one stays (and the error says why).
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = read_pair(&self.cert, &self.key, &self.provider)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }
}

fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let shown = |p: &Path| p.display().to_string();
    let cert_pem = std::fs::read(cert).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the TLS certificate {}: {}",
            shown(cert),
            e.kind()
        )
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "the TLS certificate {} is not valid PEM ({e}); give the certificate chain in PEM, server certificate first",
                shown(cert)
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!(
            "the TLS certificate {} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the certificate chain in PEM, server certificate first",
            shown(cert)
        );
    }
    // Never the key's contents in a message: it is a secret.
    let key_pem = std::fs::read(key)
        .map_err(|e| anyhow::anyhow!("cannot read the TLS key {}: {}", shown(key), e.kind()))?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        anyhow::anyhow!(
            "the TLS key {} holds no PEM private key; give a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key in PEM",
            shown(key)
        )
    })?;
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        anyhow::anyhow!(
            "the TLS certificate {} and key {} do not go together ({e}); give the key the certificate was made for",
            shown(cert),
            shown(key)
        )
    })?;
    // from_der lets an unknown consistency pass: insist on an answer.
    certified.keys_match().map_err(|e| {
        anyhow::anyhow!(
            "the TLS certificate {} and key {} do not go together ({e}); give the key the certificate was made for",
            shown(cert),
            shown(key)
        )
    })?;
    Ok(certified)
}
