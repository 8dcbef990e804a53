//! TLS settings shared by the WebSocket (`wss://`) and the HTTP endpoints
//! (`https://`): rustls with the aws-lc-rs provider, and either Mozilla's roots
//! (webpki-roots) or the roots the application gives.

use std::sync::Arc;

use super::error::{Error, ErrorCode};

/// What [`ClientConfig`](super::ClientConfig) says about TLS.
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    /// DER roots that replace the built-in ones (for both transports).
    pub(crate) roots: Vec<Vec<u8>>,
    /// A whole rustls config for the WebSocket.
    pub(crate) rustls: Option<Arc<rustls::ClientConfig>>,
}

/// The provider, aws-lc-rs, named explicitly: rustls's process default
/// would panic if another crate in the build enabled a second provider.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The rustls config for `wss://`: the given one, else one trusting the
/// given roots, else Mozilla's.
pub(crate) fn ws_config(opts: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, Error> {
    if let Some(c) = &opts.rustls {
        return Ok(Arc::clone(c));
    }
    let mut roots = rustls::RootCertStore::empty();
    if opts.roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for (i, der) in opts.roots.iter().enumerate() {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| {
                Error::new(
                    ErrorCode::InvalidInput,
                    "a root certificate is not valid DER",
                )
                .with("index", i.to_string())
                .with("reason", e.to_string())
            })?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorCode::Tls, e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// ureq's TLS settings for `https://`: the same roots and provider.
pub(crate) fn http_config(opts: &TlsOptions) -> ureq::tls::TlsConfig {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let roots = if opts.roots.is_empty() {
        RootCerts::WebPki
    } else {
        let certs: Vec<Certificate<'static>> = opts
            .roots
            .iter()
            .map(|d| Certificate::from_der(d).to_owned())
            .collect();
        RootCerts::new_with_certs(&certs)
    };
    TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider())
        .root_certs(roots)
        .build()
}

/// The TLS failure inside an I/O error, if that is what it is (rustls
/// reports handshake failures as `InvalidData` errors wrapping its own).
pub(crate) fn tls_failure(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .map(ToString::to_string)
}
