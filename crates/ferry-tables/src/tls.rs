//! TLS to the server, as libpq's `sslmode` and `sslrootcert` ask (rustls with aws-lc-rs; the
//! server's certificate checked by webpki).
//!
//! | `sslmode` | ferry |
//! |---|---|
//! | `disable` | no TLS |
//! | `allow` | without TLS first; with TLS (not verified) if the server refuses that |
//! | `prefer` (libpq's default) | TLS if the server offers it (not verified), else without |
//! | `require` | TLS, not verified; verified as `verify-ca` when a root certificate file exists, as libpq does |
//! | `verify-ca` | TLS, the chain verified against the root certificates |
//! | `verify-full` | and the server's name (or IP address) in its certificate |
//!
//! The root certificates are `sslrootcert` / PGSSLROOTCERT, else `~/.postgresql/root.crt`;
//! `sslrootcert=system` takes the system's, and (as libpq 16) only with `verify-full`. A Unix
//! socket never uses TLS (as libpq). Client certificates (`sslcert`, `sslkey`) are not
//! supported, and SCRAM's channel binding is not offered (`channel_binding=prefer` goes on
//! without it).

use crate::{Result, TablesError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Not at all (`prefer`, `require` without a root certificate file).
    Nothing,
    /// The chain, against the root certificates (`verify-ca`).
    Chain,
    /// The chain and the server's name (`verify-full`).
    Full,
}

/// Where the root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    File(PathBuf),
    System,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Why TLS could not be set up as the settings ask (before any connection is tried).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode {mode} may not be used with sslrootcert=system (use verify-full)")]
    SystemRootsNeedVerifyFull { mode: &'static str },
    #[error(
        "sslmode {mode}: the root certificate file {path} {state}; give one as PGSSLROOTCERT (or sslrootcert=), use sslrootcert=system with verify-full, or a mode that does not verify the server"
    )]
    NoRootFile { mode: &'static str, path: String, state: &'static str },
    #[error("sslrootcert {}: {reason}", path.display())]
    RootFile { path: PathBuf, reason: String },
    #[error("sslrootcert=system: the system has no root certificates")]
    NoSystemRoots,
    /// A setting ferry does not support, refused rather than ignored.
    #[error("{setting}: {why}")]
    Unsupported { setting: &'static str, why: &'static str },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

fn tls_error(e: impl Into<TlsError>) -> TablesError {
    TablesError::Tls(e.into())
}

/// What is wrong with a root certificate file, without quoting its bytes.
fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(e) => e.to_string(),
        E::NoItemsFound => "no certificate in it".into(),
        _ => "not a PEM file of certificates".into(),
    }
}

/// The rustls configuration for `verify` with `roots` (needed unless `Verify::Nothing`).
pub fn client_config(verify: Verify, roots: Option<&Roots>) -> Result<rustls::ClientConfig> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)
        .map_err(tls_error)?;
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(AnyCertificate { algorithms }),
        Verify::Chain | Verify::Full => {
            let roots = roots.ok_or_else(|| {
                tls_error(TlsError::NoRootFile { mode: "verify-ca", path: "(sslrootcert)".into(), state: "is not given" })
            })?;
            let store = Arc::new(root_store(roots)?);
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(store, provider)
                .build()
                .map_err(|e| tls_error(TlsError::RootFile { path: PathBuf::from("(the root certificates)"), reason: e.to_string() }))?;
            match verify {
                Verify::Full => webpki,
                _ => Arc::new(ChainOnly { webpki }),
            }
        }
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

fn root_store(roots: &Roots) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            use rustls::pki_types::pem::PemObject;
            let file = |reason: String| tls_error(TlsError::RootFile { path: path.clone(), reason });
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| file(pem_reason(e)))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| file(pem_reason(e)))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(file("no certificate in it".into()));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(tls_error(TlsError::NoSystemRoots));
            }
        }
    }
    Ok(store)
}

/// Whether `path` names a root certificate file that exists (`require` then verifies the chain).
pub fn exists(path: &Path) -> bool {
    path.is_file()
}

/// Accepts any certificate, but checks the handshake's signatures with it (the connection is
/// encrypted to whoever holds its key; `require` and `prefer` ask no more).
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root, whatever name the certificate is for.
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS connector over rustls.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl MakeRustls {
    pub fn new(config: rustls::ClientConfig) -> MakeRustls {
        MakeRustls { config: Arc::new(config) }
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect { config: self.config.clone(), name })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

/// A connection over TLS.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
