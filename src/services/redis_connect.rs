//! Opening the bridge's connections to Redis: the URL, TLS (`rediss://`, `--redis-ca`,
//! `--redis-cert`/`--redis-key`), the version check, and why a start failed, told apart for the
//! operator ([`BridgeError`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redis::{Client, ClientTlsConfig, Connection, TlsCertificates};
use rustls::AlertDescription;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{hide_password, TlsFiles};

/// How long a connection attempt, or one answer, may take before Redis counts as lost.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The oldest Redis that has every command the scripts use.
pub(super) const MIN_VERSION: (u32, u32) = (6, 2);

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The URL is not one the redis crate reads.
    #[error("--redis {url:?} cannot be used: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        source: redis::RedisError,
    },
    /// `--redis-ca`, `--redis-cert` or `--redis-key` cannot be read.
    #[error("cannot read --{flag} {}: {source}", path.display())]
    TlsFile {
        /// The flag's name.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// One of those files holds no certificate (or key), or one that cannot be read.
    #[error("--{flag} {}: {reason}", path.display())]
    TlsContents {
        /// The flag's name.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis did not answer at start-up.
    #[error("cannot reach Redis at {url}: {source}")]
    Unreachable {
        /// The URL (without its password).
        url: String,
        /// Why.
        source: redis::RedisError,
    },
    /// Redis's TLS certificate did not verify (`rediss://`).
    #[error("Redis at {url} presented a TLS certificate that does not verify: {source} (--redis-ca names the CA that signed it; without it the system's roots are used)")]
    Certificate {
        /// The URL (without its password).
        url: String,
        /// What rustls found wrong.
        source: rustls::Error,
    },
    /// The TLS settings were refused when connecting (`rediss://`): a client key that does
    /// not belong to its certificate, say.
    #[error("the TLS settings for Redis at {url} cannot be used: {source}")]
    TlsSettings {
        /// The URL (without its password).
        url: String,
        /// Why.
        source: redis::RedisError,
    },
    /// Redis asks for a client certificate and was given none it accepts (`rediss://`).
    #[error("Redis at {url} refused this node's TLS client certificate ({source}): --redis-cert and --redis-key give one its --tls-ca-cert-file trusts")]
    ClientCertificate {
        /// The URL (without its password).
        url: String,
        /// The alert Redis sent.
        source: rustls::Error,
    },
    /// The TLS handshake with Redis failed otherwise (`rediss://`): most often, the port does
    /// not speak TLS.
    #[error("no TLS with Redis at {url}: {reason} (is the port Redis's --tls-port?)")]
    Handshake {
        /// The URL (without its password).
        url: String,
        /// What failed.
        reason: String,
    },
    /// Redis answered, but is too old.
    #[error("Redis at {url} is version {version}; roomcast needs {}.{} or later", MIN_VERSION.0, MIN_VERSION.1)]
    TooOld {
        /// The URL.
        url: String,
        /// What it said.
        version: String,
    },
    /// A thread could not be started.
    #[error("cannot start the Redis threads: {0}")]
    Thread(std::io::Error),
}

pub(super) fn open_client(
    url: &str,
    ca: Option<&Path>,
    client: Option<&TlsFiles>,
) -> Result<Client, BridgeError> {
    // The redis crate builds its rustls config with the process's default provider: make it
    // ring (ours) before the crate asks, rather than let rustls guess (it panics when
    // unsure). An `Err` means one is installed already, which is as good.
    if url.starts_with("rediss://") {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    if ca.is_none() && client.is_none() {
        return Client::open(url).map_err(|source| BridgeError::Url {
            url: hide_password(url),
            source,
        });
    }
    let root_cert = match ca {
        Some(path) => Some(read_certificates("redis-ca", path)?),
        None => None,
    };
    let client_tls = match client {
        Some(files) => Some(ClientTlsConfig {
            client_cert: read_certificates("redis-cert", &files.cert)?,
            client_key: read_key(&files.key)?,
        }),
        None => None,
    };
    let certificates = TlsCertificates {
        client_tls,
        root_cert,
    };
    Client::build_with_tls(url, certificates).map_err(|source| BridgeError::Url {
        url: hide_password(url),
        source,
    })
}

pub(super) fn read_tls_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, BridgeError> {
    std::fs::read(path).map_err(|source| BridgeError::TlsFile {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// A PEM file of one or more certificates, checked here so that a file without any is its own
/// error (for `--redis-ca`, an empty trust store would refuse every certificate).
pub(super) fn read_certificates(flag: &'static str, path: &Path) -> Result<Vec<u8>, BridgeError> {
    let pem = read_tls_file(flag, path)?;
    let contents = |reason: String| BridgeError::TlsContents {
        flag,
        path: path.to_owned(),
        reason,
    };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|err| contents(format!("not a PEM certificate file ({err})")))?;
        count += 1;
    }
    if count == 0 {
        return Err(contents(
            "holds no PEM certificate (BEGIN CERTIFICATE)".into(),
        ));
    }
    Ok(pem)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub(super) fn read_key(path: &Path) -> Result<Vec<u8>, BridgeError> {
    let pem = read_tls_file("redis-key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| BridgeError::TlsContents {
        flag: "redis-key",
        path: path.to_owned(),
        reason: format!("holds no PEM private key ({err})"),
    })?;
    Ok(pem)
}

/// What a failed first connection means: with TLS, a certificate that does not verify or a
/// handshake that failed; else Redis is unreachable.
pub(super) fn start_error(url: &str, tls: bool, err: redis::RedisError) -> BridgeError {
    let url = url.to_owned();
    // Refused settings, and the crate's other set-up errors: the system's roots it could not
    // read (it reads them even with --redis-ca), a host that cannot be a TLS server name.
    let set_up = err.kind() == redis::ErrorKind::InvalidClientConfig
        || (err.kind() == redis::ErrorKind::Io && io_cause(&err).is_none());
    if tls && set_up {
        return BridgeError::TlsSettings { url, source: err };
    }
    if let Some(source) = rustls_cause(&err) {
        return match source {
            rustls::Error::InvalidCertificate(_) => BridgeError::Certificate { url, source },
            // Alerts about a certificate that only the client sent (or did not send).
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown,
            ) => BridgeError::ClientCertificate { url, source },
            other => BridgeError::Handshake {
                url,
                reason: other.to_string(),
            },
        };
    }
    // A plain Redis reads a ClientHello as the start of a command and waits for the rest:
    // the handshake's read times out (EAGAIN; a connect that times out is `TimedOut`).
    if tls && io_cause(&err).map(std::io::Error::kind) == Some(std::io::ErrorKind::WouldBlock) {
        return BridgeError::Handshake {
            url,
            reason: format!("no answer to the TLS handshake within {IO_TIMEOUT:?}"),
        };
    }
    BridgeError::Unreachable { url, source: err }
}

/// The I/O error inside a redis crate error (which keeps it behind an `Arc`).
pub(super) fn io_cause(err: &redis::RedisError) -> Option<&std::io::Error> {
    let source = std::error::Error::source(err)?;
    source
        .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()
        .and_then(|inner| inner.downcast_ref::<std::io::Error>())
        .or_else(|| source.downcast_ref::<std::io::Error>())
}

/// The TLS error inside a redis crate error: rustls reports through `std::io::Error`.
pub(super) fn rustls_cause(err: &redis::RedisError) -> Option<rustls::Error> {
    io_cause(err)?
        .get_ref()?
        .downcast_ref::<rustls::Error>()
        .cloned()
}

pub(super) fn connect(client: &Client) -> redis::RedisResult<Connection> {
    let con = client.get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

pub(super) fn server_version(con: &mut Connection) -> redis::RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("server").query(con)?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned())
}

/// `major.minor` of a version string; (0, 0) when unreadable.
pub(super) fn version_of(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

pub(super) fn is_connection_error(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs_and_versions_are_read() {
        assert_eq!(hide_password("redis://:hunter2@h:1/0"), "redis://***@h:1/0");
        assert_eq!(hide_password("redis://h:1"), "redis://h:1");
        assert_eq!(hide_password("rediss://:pw@h:1"), "rediss://***@h:1");
        assert_eq!(version_of("7.0.15"), (7, 0));
        assert!(version_of("6.0.9") < MIN_VERSION);
        assert_eq!(version_of("x"), (0, 0));
    }

    #[test]
    fn tls_failures_at_start_are_told_apart() {
        use std::io::{Error, ErrorKind};
        let tls_error =
            |e: rustls::Error| redis::RedisError::from(Error::new(ErrorKind::InvalidData, e));
        let url = "rediss://***@h:1";
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let err = start_error(url, true, tls_error(unknown.clone()));
        assert!(
            matches!(&err, BridgeError::Certificate { source, .. } if *source == unknown),
            "{err}"
        );
        assert!(err.to_string().starts_with(
            "Redis at rediss://***@h:1 presented a TLS certificate that does not verify: "
        ));
        let required = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        assert!(matches!(
            start_error(url, true, tls_error(required)),
            BridgeError::ClientCertificate { .. }
        ));
        let corrupt = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(matches!(
            start_error(url, true, tls_error(corrupt)),
            BridgeError::Handshake { .. }
        ));
        let silent = redis::RedisError::from(Error::from(ErrorKind::WouldBlock));
        let err = start_error(url, true, silent.clone());
        assert!(
            err.to_string()
                .contains("no answer to the TLS handshake within 2s"),
            "{err}"
        );
        assert!(matches!(
            start_error("redis://h:1", false, silent),
            BridgeError::Unreachable { .. }
        ));
        let refused = redis::RedisError::from(Error::from(ErrorKind::ConnectionRefused));
        assert!(matches!(
            start_error(url, true, refused),
            BridgeError::Unreachable { .. }
        ));
    }
}
