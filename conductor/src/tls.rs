//! TLS for the conductor's clients (agents, BMCs, boot file downloads): which server
//! certificates they accept. Every configuration verifies the handshake signature, so a server
//! always proves it holds the key of the certificate it presents.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Where Debian and most distributions keep the host's CA bundle.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts a certificate that chains to the roots, or one of `pinned` byte for byte, or (with
/// no chain) any certificate.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(verified) => Ok(verified),
            Err(_) if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) => {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Lowest TLS version a connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMinimum {
    /// TLS 1.2 or 1.3.
    Tls12,
    /// TLS 1.3 only (Ironic's default towards agents since 2026).
    #[default]
    Tls13,
}

impl TlsMinimum {
    /// "1.2" or "1.3", as Ironic sends `tls_min_version` to agents.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMinimum::Tls12 => "1.2",
            TlsMinimum::Tls13 => "1.3",
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsMinimum::Tls12 => rustls::DEFAULT_VERSIONS,
            TlsMinimum::Tls13 => &TLS13_ONLY,
        }
    }
}

fn with_verifier(verifier: Verifier, minimum: TlsMinimum) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::clone(&verifier.provider);
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(minimum.versions())
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The certificates of a PEM text.
fn certificates(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{source}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{source} holds no certificate"));
    }
    Ok(certs)
}

/// Certificates that chain to the PEM roots; with `pin_roots`, also exactly those certificates
/// when they do not verify as a chain (an agent's self-signed certificate, see
/// [`crate::agent_client`]).
pub fn trusting(pem: &[u8], source: &str, pin_roots: bool) -> Result<rustls::ClientConfig, String> {
    trusting_at_least(pem, source, pin_roots, TlsMinimum::Tls12)
}

/// [`trusting`], speaking no TLS version below `minimum`.
pub fn trusting_at_least(
    pem: &[u8],
    source: &str,
    pin_roots: bool,
    minimum: TlsMinimum,
) -> Result<rustls::ClientConfig, String> {
    let certs = certificates(pem, source)?;
    let mut roots = rustls::RootCertStore::empty();
    // Bundles carry the odd certificate webpki refuses; the others still count.
    let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(format!("{source} holds no usable certificate"));
    }
    let provider = provider();
    let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .map_err(|e| e.to_string())?;
    with_verifier(
        Verifier {
            chain: Some(chain),
            pinned: if pin_roots { certs } else { Vec::new() },
            provider,
        },
        minimum,
    )
}

/// The host's CA bundle.
pub fn system_roots() -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(SYSTEM_CA_BUNDLE).map_err(|e| format!("reading the CA bundle {SYSTEM_CA_BUNDLE}: {e}"))?;
    trusting(&pem, SYSTEM_CA_BUNDLE, false)
}

/// Any certificate (an operator's explicit choice, e.g. `redfish_verify_ca = false`).
pub fn any_certificate() -> rustls::ClientConfig {
    with_verifier(
        Verifier {
            chain: None,
            pinned: Vec::new(),
            provider: provider(),
        },
        TlsMinimum::Tls12,
    )
    .expect("ring supports the default protocol versions")
}

/// For plain-HTTP clients: no certificate is trusted, so nothing can silently use TLS.
pub fn no_roots() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}
