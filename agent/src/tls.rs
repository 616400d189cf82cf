//! TLS for the command API (server) and for requests to Ironic and image servers (client).
//!
//! The auto-generated certificate follows upstream's profile (§4.9): EC P-384 key, self-signed,
//! `CN=<hostname>`, one *critical* IP subjectAltName for the advertise address, valid from one
//! hour ago (clock skew) for 30 days. Its PEM goes to the conductor as `agent_verify_ca`, which
//! pins connections to it. Upstream signs with SHA-512; ring signs P-384 keys with SHA-384,
//! which every verifier accepts.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair, SerialNumber};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::{ClientTls, TlsMinVersion};

/// A TLS setup problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating the certificate failed.
    #[error("generating the agent certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file is unreadable or empty.
    #[error("reading {path}: {reason}")]
    Pem { path: String, reason: String },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// A certificate and its key, PEM encoded.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// Certificate PEM (sent as `agent_verify_ca` when auto-generated).
    pub cert_pem: String,
    /// PKCS#8 key PEM.
    pub key_pem: String,
}

/// DER of `SubjectAltName ::= GeneralNames` holding one iPAddress.
fn ip_san_der(ip: IpAddr) -> Vec<u8> {
    let octets = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    // [7] IMPLICIT OCTET STRING inside a SEQUENCE; both lengths are < 128.
    let mut general_name = vec![0x87, octets.len() as u8];
    general_name.extend_from_slice(&octets);
    let mut der = vec![0x30, general_name.len() as u8];
    der.extend_from_slice(&general_name);
    der
}

/// Generate the self-signed agent certificate for `ip`.
pub fn generate_self_signed(ip: IpAddr, hostname: &str) -> Result<CertifiedKey, TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, hostname);
    params.distinguished_name = name;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(30);
    let serial: [u8; 16] = rand::random();
    // Positive and non-zero as X.509 wants.
    let mut serial = serial.to_vec();
    serial[0] = (serial[0] & 0x7f) | 0x01;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    // rcgen marks a SAN critical only when the subject is empty; build it ourselves.
    let mut san = CustomExtension::from_oid_content(&[2, 5, 29, 17], ip_san_der(ip));
    san.set_criticality(true);
    params.custom_extensions.push(san);
    let cert = params.self_signed(&key)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(min: TlsMinVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match min {
        TlsMinVersion::Tls12 => rustls::ALL_VERSIONS,
        TlsMinVersion::Tls13 => &TLS13_ONLY,
    }
}

fn read_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: what.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: what.into(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn read_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| TlsError::Pem {
            path: what.into(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Pem {
            path: what.into(),
            reason: "no private key found".into(),
        })
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Load a certificate chain and key from files.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let utf8 = |path: &Path, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| TlsError::Pem {
            path: path.display().to_string(),
            reason: "not PEM text".into(),
        })
    };
    Ok(CertifiedKey {
        cert_pem: utf8(cert, read_file(cert)?)?,
        key_pem: utf8(key, read_file(key)?)?,
    })
}

/// Server configuration for the command API. No client certificates are requested.
pub fn server_config(key: &CertifiedKey, min: TlsMinVersion) -> Result<ServerConfig, TlsError> {
    let certs = read_certs(key.cert_pem.as_bytes(), "agent certificate")?;
    let private = read_key(key.key_pem.as_bytes(), "agent key")?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min))?
        .with_no_client_auth()
        .with_single_cert(certs, private)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts every server certificate: only for `--insecure`.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Client configuration: a CA file, else the system store; or no verification when insecure.
pub fn client_config(tls: &ClientTls, min: TlsMinVersion) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_protocol_versions(versions(min))?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.cafile {
            Some(path) => {
                for cert in read_certs(&read_file(path)?, &path.display().to_string())? {
                    roots.add(cert)?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for error in &native.errors {
                    tracing::debug!(%error, "skipping an unreadable system CA certificate");
                }
                let (added, ignored) = roots.add_parsable_certificates(native.certs);
                tracing::debug!(added, ignored, "system CA certificates loaded");
            }
        }
        builder.with_root_certificates(roots)
    };
    Ok(match &tls.identity {
        Some((cert, key)) => {
            let certs = read_certs(&read_file(cert)?, &cert.display().to_string())?;
            let key = read_key(&read_file(key)?, &key.display().to_string())?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    })
}

/// An HTTP client for outgoing requests with the agent's TLS policy and a request timeout.
pub fn http_client(tls: &ClientTls, min: TlsMinVersion, timeout: Duration) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(tls, min)?)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("rivet-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TlsError::Client(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_der_encodes_ipv4_and_ipv6() {
        assert_eq!(
            ip_san_der("192.0.2.10".parse().expect("ip")),
            vec![0x30, 6, 0x87, 4, 192, 0, 2, 10]
        );
        let v6 = ip_san_der("2001:db8::1".parse().expect("ip"));
        assert_eq!(&v6[..4], &[0x30, 18, 0x87, 16]);
    }

    #[test]
    fn generated_certificate_serves_tls() {
        let key = generate_self_signed("127.0.0.1".parse().expect("ip"), "testhost").expect("generates");
        assert!(key.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&key, TlsMinVersion::Tls13).expect("usable by rustls");
    }
}
