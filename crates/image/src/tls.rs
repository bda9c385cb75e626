//! TLS for registries: rustls with the ring provider, the system's roots,
//! plus a registry's own CAs from `<certs.d>/<host:port>/*.crt` (the layout
//! of /etc/containers/certs.d and /etc/docker/certs.d), and a client
//! certificate from `client.cert` + `client.key` there.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::{Error, Result};

pub const DEFAULT_CERTS_DIR: &str = "/etc/containers/certs.d";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn system_roots() -> &'static [CertificateDer<'static>] {
    static R: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    R.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The client configuration for `host`; `verify = false` accepts any
/// server certificate (insecure registries, `--tls-verify=false`).
pub fn client_config(host: &str, certs_dir: &Path, verify: bool) -> Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    let dir = certs_dir.join(host);
    let mut client_cert = None;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let bad = |e: &dyn std::fmt::Display| Error::invalid(p.display().to_string(), e);
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => {
                    for c in CertificateDer::pem_file_iter(&p).map_err(|e| bad(&e))? {
                        roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                    }
                }
                Some("cert") => {
                    let key = p.with_extension("key");
                    let certs = CertificateDer::pem_file_iter(&p)
                        .map_err(|e| bad(&e))?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| bad(&e))?;
                    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad(&e))?;
                    client_cert = Some((certs, key));
                }
                _ => {}
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("TLS", e))?;
    let builder = if verify {
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
    };
    let mut config = match client_cert {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| Error::invalid(format!("client certificate in {}", dir.display()), e))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// For registries the user declared insecure: any certificate is accepted,
/// signatures are still checked so the handshake is well-formed.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
