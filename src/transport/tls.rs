//! TLS on the shared port, sans-IO: rustls's `ServerConnection` (ring provider, TLS 1.2 and
//! 1.3) wrapped so the event loop feeds it the ciphertext it read and gets plaintext into the
//! connection's read buffer, then hands it plaintext chunks and takes ciphertext to send.
//! The transport inside (framed, line, HTTP, WebSocket) is sniffed from the plaintext as on a
//! plain connection.
//!
//! Memory stays bounded: plaintext waiting to go out stays in the connection's out queue
//! (shared `Bytes`, counted against `--max-outbuf`) until rustls takes it; rustls holds at
//! most its buffer limit (64 KiB by default) of records not yet written to the socket, and
//! [`TlsSession::plaintext`] says `WouldBlock` once that is full. Received plaintext goes
//! straight into the caller's buffer, whose decoders bound it.
//!
//! The write pass of a TLS connection, in order, until the socket blocks:
//! 1. while [`TlsSession::wants_write`], [`TlsSession::write_ciphertext`] to the socket;
//! 2. encrypt more of the out queue through [`TlsSession::plaintext`] (the queue's
//!    `write_to` takes any `io::Write`), then back to 1.
//!
//! A port without a certificate answers a ClientHello with [`HANDSHAKE_FAILURE_ALERT`] and
//! closes.

use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// The first byte of a TLS handshake record: what a ClientHello starts with. A
/// length-prefixed frame starts with `0x00`, a line with `{`, an HTTP request with a
/// letter, so one byte tells TLS apart.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// A fatal `handshake_failure` alert record (TLS 1.2 record version, which every TLS client
/// reads before version negotiation), for a ClientHello on a port with no certificate: the
/// client reports a TLS error instead of waiting for a timeout.
pub const HANDSHAKE_FAILURE_ALERT: [u8; 7] = [
    0x15, // content type: alert
    0x03, 0x03, // record version: TLS 1.2
    0x00, 0x02, // length
    0x02, // level: fatal
    0x28, // description: handshake_failure (40)
];

/// Whether a connection's first byte starts a TLS record.
pub fn looks_like_tls(first: u8) -> bool {
    first == HANDSHAKE_RECORD
}

/// [`HANDSHAKE_FAILURE_ALERT`] as a chunk to queue.
pub fn handshake_failure_alert() -> Bytes {
    Bytes::from_static(&HANDSHAKE_FAILURE_ALERT)
}

/// Loading the certificate and key, and a session's failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file or buffer could not be read or parsed.
    #[error("reading the {what} from {origin}: {source}")]
    Pem {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The file's path, or `memory`.
        origin: String,
        /// What the PEM parser said (file not found included).
        source: pem::Error,
    },
    /// The certificate PEM holds no `CERTIFICATE` section.
    #[error("no certificate in {0}")]
    NoCertificate(String),
    /// rustls refused the certificate and key together (e.g. they do not match).
    #[error("certificate and key rejected: {0}")]
    Config(rustls::Error),
    /// The handshake failed: the peer is not a TLS client we can talk to, or it refused our
    /// certificate. An alert may be waiting in [`TlsSession::take_ciphertext`].
    #[error("TLS handshake failed: {0}")]
    Handshake(rustls::Error),
    /// A record after the handshake was bad (decryption failed, unexpected message).
    #[error("TLS session failed: {0}")]
    Session(rustls::Error),
    /// rustls would not buffer more of the peer's records (a handshake message over 64 KiB).
    #[error("TLS records refused: {0}")]
    Overflow(io::Error),
}

/// Builds the server configuration that every TLS connection shares.
#[derive(Debug)]
pub struct TlsConfig;

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1) from files, for `--tls-cert` and `--tls-key`.
    pub fn from_pem(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
        let cert_origin = cert_path.display().to_string();
        let certs = CertificateDer::pem_file_iter(cert_path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|source| TlsError::Pem {
                what: "certificate chain",
                origin: cert_origin.clone(),
                source,
            })?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsError::Pem {
            what: "private key",
            origin: key_path.display().to_string(),
            source,
        })?;
        build(certs, key, cert_origin)
    }

    /// The same from PEM text in memory (embedding, tests).
    pub fn from_pem_bytes(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
        let memory = || "memory".to_owned();
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                what: "certificate chain",
                origin: memory(),
                source,
            })?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Pem {
            what: "private key",
            origin: memory(),
            source,
        })?;
        build(certs, key, memory())
    }
}

fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_origin: String,
) -> Result<Arc<ServerConfig>, TlsError> {
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_origin));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}

/// One connection's TLS state. Feed it what the socket read, write what it gives back.
#[derive(Debug)]
pub struct TlsSession {
    conn: ServerConnection,
    peer_closed: bool,
}

impl TlsSession {
    /// A session waiting for the client's hello.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(config).map_err(TlsError::Config)?;
        Ok(TlsSession {
            conn,
            peer_closed: false,
        })
    }

    /// Takes all of `ciphertext` (bytes read from the socket, split anywhere), appends the
    /// plaintext it decrypts to `plain`, and queues any handshake reply (see
    /// [`TlsSession::wants_write`]).
    ///
    /// After the peer's `close_notify` the rest is ignored ([`TlsSession::peer_closed`]).
    /// After an error the session is dead: send what [`TlsSession::take_ciphertext`] holds
    /// (the alert) and close.
    pub fn feed(&mut self, mut ciphertext: &[u8], plain: &mut BytesMut) -> Result<(), TlsError> {
        while !ciphertext.is_empty() && !self.peer_closed {
            let handshaking = self.conn.is_handshaking();
            let read = self
                .conn
                .read_tls(&mut ciphertext)
                .map_err(TlsError::Overflow)?;
            let state = self.conn.process_new_packets().map_err(|err| {
                if handshaking {
                    TlsError::Handshake(err)
                } else {
                    TlsError::Session(err)
                }
            })?;
            self.drain(state.plaintext_bytes_to_read(), plain)?;
            // `read` is 0 only once a close_notify was received.
            self.peer_closed = state.peer_has_closed() || read == 0;
        }
        Ok(())
    }

    fn drain(&mut self, mut pending: usize, plain: &mut BytesMut) -> Result<(), TlsError> {
        while pending > 0 {
            let start = plain.len();
            plain.resize(start + pending, 0);
            let read = self.conn.reader().read(&mut plain[start..]);
            let read = match read {
                Ok(read) => read,
                Err(err) => {
                    plain.truncate(start);
                    return Err(TlsError::Overflow(err));
                }
            };
            plain.truncate(start + read);
            if read == 0 {
                break;
            }
            pending -= read;
        }
        Ok(())
    }

    /// Still in the handshake: plaintext written now is held until it completes.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer sent `close_notify`: it sends nothing more. Reply with
    /// [`TlsSession::close_notify`] once the last replies are queued.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The server name the client asked for (SNI), for logs.
    pub fn server_name(&self) -> Option<&str> {
        self.conn.server_name()
    }

    /// Encrypts as much of `chunks` as rustls's buffer limit allows, as few records as
    /// possible; returns how many bytes it took (0 when the buffer is full: write the
    /// ciphertext out first).
    pub fn write_plain(&mut self, chunks: &[IoSlice<'_>]) -> Result<usize, TlsError> {
        self.conn
            .writer()
            .write_vectored(chunks)
            .map_err(|err| TlsError::Session(rustls::Error::General(err.to_string())))
    }

    /// An `io::Write` that encrypts into this session, for the out queue's vectored write:
    /// it says `WouldBlock` when rustls's buffer is full, so the queue keeps the rest.
    pub fn plaintext(&mut self) -> Plaintext<'_> {
        Plaintext { session: self }
    }

    /// Ciphertext is waiting to be written to the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes pending ciphertext to `out` (the socket): one call, which may be partial; the
    /// rest stays here. `WouldBlock` passes through.
    pub fn write_ciphertext(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        self.conn.write_tls(out)
    }

    /// All pending ciphertext as one chunk (empty if none).
    pub fn take_ciphertext(&mut self) -> Bytes {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail; a zero means nothing was left.
            match self.conn.write_tls(&mut out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        Bytes::from(out)
    }

    /// Queues a `close_notify` alert: the TLS way to say "nothing more" before closing TCP,
    /// so the peer can tell the end from a truncation.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

/// Plaintext into a [`TlsSession`], as an `io::Write` (see [`TlsSession::plaintext`]).
#[derive(Debug)]
pub struct Plaintext<'a> {
    session: &'a mut TlsSession,
}

impl Write for Plaintext<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let taken = self.session.conn.writer().write_vectored(bufs)?;
        if taken == 0 && bufs.iter().any(|buf| !buf.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{AlertDescription, ClientConfig, ClientConnection, RootCertStore};

    struct Identity {
        cert_pem: String,
        key_pem: String,
        cert_der: CertificateDer<'static>,
    }

    fn identity() -> Identity {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        Identity {
            cert_pem: generated.cert.pem(),
            key_pem: generated.signing_key.serialize_pem(),
            cert_der: generated.cert.der().clone(),
        }
    }

    fn client_config(trusted: &CertificateDer<'static>, tls12_only: bool) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(trusted.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider);
        let builder = if tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        };
        Arc::new(
            builder
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    fn client(config: Arc<ClientConfig>) -> ClientConnection {
        ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap()
    }

    /// Chunk sizes for cutting a byte stream at odd places.
    const CUTS: [usize; 6] = [1, 5, 2, 97, 13, 4096];

    /// Client to server, in pieces of odd sizes so records are split anywhere.
    fn client_to_server(
        client: &mut ClientConnection,
        server: &mut TlsSession,
        plain: &mut BytesMut,
    ) -> Result<(), TlsError> {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut rest = &wire[..];
        for size in CUTS.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            server.feed(piece, plain)?;
            rest = tail;
        }
        Ok(())
    }

    /// Server to client; returns the plaintext the client read.
    fn server_to_client(
        server: &mut TlsSession,
        client: &mut ClientConnection,
    ) -> Result<Vec<u8>, rustls::Error> {
        let wire = server.take_ciphertext();
        let mut received = Vec::new();
        let mut rest = &wire[..];
        for size in CUTS.iter().rev().cycle() {
            if rest.is_empty() {
                break;
            }
            let (mut piece, tail) = rest.split_at((*size).min(rest.len()));
            while !piece.is_empty() {
                client.read_tls(&mut piece).unwrap();
                client.process_new_packets()?;
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = client.reader().read(&mut buf) {
                    received.extend_from_slice(&buf[..n]);
                }
            }
            rest = tail;
        }
        Ok(received)
    }

    fn handshake(client: &mut ClientConnection, server: &mut TlsSession) {
        let mut plain = BytesMut::new();
        for _ in 0..4 {
            client_to_server(client, server, &mut plain).unwrap();
            server_to_client(server, client).unwrap();
        }
        assert!(!server.is_handshaking() && !client.is_handshaking());
        assert!(plain.is_empty());
    }

    fn session(identity: &Identity) -> TlsSession {
        let config =
            TlsConfig::from_pem_bytes(identity.cert_pem.as_bytes(), identity.key_pem.as_bytes())
                .unwrap();
        TlsSession::new(config).unwrap()
    }

    #[test]
    fn handshake_and_data_both_ways_through_split_records() {
        let identity = identity();
        for tls12_only in [false, true] {
            let mut server = session(&identity);
            let mut client = client(client_config(&identity.cert_der, tls12_only));
            handshake(&mut client, &mut server);
            assert_eq!(server.server_name(), Some("localhost"));

            client
                .writer()
                .write_all(b"{\"system\":\"ping\"}\n")
                .unwrap();
            client.writer().write_all(b"{\"a\":1}\n").unwrap();
            let mut plain = BytesMut::new();
            client_to_server(&mut client, &mut server, &mut plain).unwrap();
            assert_eq!(&plain[..], b"{\"system\":\"ping\"}\n{\"a\":1}\n");

            let body = Bytes::from_static(b"{\"info\":\"system\"}");
            let taken = server
                .write_plain(&[IoSlice::new(&[0x81, 17]), IoSlice::new(&body)])
                .unwrap();
            assert_eq!(taken, 19);
            let received = server_to_client(&mut server, &mut client).unwrap();
            assert_eq!(&received[..2], &[0x81, 17]);
            assert_eq!(&received[2..], &body[..]);
        }
    }

    #[test]
    fn the_plaintext_writer_blocks_when_the_buffer_is_full_and_loses_nothing() {
        let identity = identity();
        let mut server = session(&identity);
        let mut client = client(client_config(&identity.cert_der, false));
        handshake(&mut client, &mut server);

        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut rest = &data[..];
        let mut received = Vec::new();
        let mut blocked = 0;
        while !rest.is_empty() {
            match server.plaintext().write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    blocked += 1;
                    received.extend(server_to_client(&mut server, &mut client).unwrap());
                }
                Err(err) => panic!("{err}"),
            }
        }
        received.extend(server_to_client(&mut server, &mut client).unwrap());
        assert!(blocked > 0, "300 KB is over the 64 KiB buffer limit");
        assert_eq!(received, data);
    }

    #[test]
    fn plaintext_written_during_the_handshake_goes_out_after_it() {
        let identity = identity();
        let mut server = session(&identity);
        let mut client = client(client_config(&identity.cert_der, false));
        assert!(server.is_handshaking());
        assert_eq!(server.plaintext().write(b"early").unwrap(), 5);
        let mut plain = BytesMut::new();
        let mut received = Vec::new();
        for _ in 0..4 {
            client_to_server(&mut client, &mut server, &mut plain).unwrap();
            received.extend(server_to_client(&mut server, &mut client).unwrap());
        }
        assert_eq!(received, b"early");
    }

    #[test]
    fn close_notify_both_ways() {
        let identity = identity();
        let mut server = session(&identity);
        let mut client = client(client_config(&identity.cert_der, false));
        handshake(&mut client, &mut server);

        client.writer().write_all(b"bye").unwrap();
        client.send_close_notify();
        let mut plain = BytesMut::new();
        client_to_server(&mut client, &mut server, &mut plain).unwrap();
        assert_eq!(&plain[..], b"bye", "data before the close_notify arrives");
        assert!(server.peer_closed());
        server
            .feed(b"ignored after close_notify", &mut plain)
            .unwrap();
        assert_eq!(&plain[..], b"bye");

        server.close_notify();
        assert!(server.wants_write());
        server_to_client(&mut server, &mut client).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(client.reader().read(&mut buf).unwrap(), 0, "clean end");
    }

    #[test]
    fn garbage_fails_the_handshake_with_an_alert_to_send() {
        let identity = identity();
        let mut server = session(&identity);
        let mut plain = BytesMut::new();
        // A handshake record holding a ClientHello of one byte.
        let err = server
            .feed(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff", &mut plain)
            .unwrap_err();
        assert!(matches!(err, TlsError::Handshake(_)), "{err}");
        let alert = server.take_ciphertext();
        assert_eq!(alert.first(), Some(&0x15), "an alert record");
    }

    #[test]
    fn a_client_that_does_not_trust_the_certificate_fails_the_handshake() {
        let identity = identity();
        let other = self::identity();
        let mut server = session(&identity);
        let mut client = client(client_config(&other.cert_der, false));
        let mut plain = BytesMut::new();
        client_to_server(&mut client, &mut server, &mut plain).unwrap();
        let client_err = server_to_client(&mut server, &mut client).unwrap_err();
        assert!(
            matches!(client_err, rustls::Error::InvalidCertificate(_)),
            "{client_err}"
        );
        let err = client_to_server(&mut client, &mut server, &mut plain).unwrap_err();
        // Both identities are "CN=rcgen self signed cert", so the client finds a root by
        // name whose signature does not verify: a decrypt_error alert.
        assert!(
            matches!(
                err,
                TlsError::Handshake(rustls::Error::AlertReceived(
                    AlertDescription::DecryptError
                        | AlertDescription::BadCertificate
                        | AlertDescription::UnknownCA
                ))
            ),
            "{err}"
        );
    }

    #[test]
    fn the_static_alert_fails_a_client_handshake() {
        let identity = identity();
        let mut client = client(client_config(&identity.cert_der, false));
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        assert!(looks_like_tls(hello[0]));
        let mut alert = &HANDSHAKE_FAILURE_ALERT[..];
        client.read_tls(&mut alert).unwrap();
        assert_eq!(
            client.process_new_packets().unwrap_err(),
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
        );
        assert_eq!(&handshake_failure_alert()[..], &HANDSHAKE_FAILURE_ALERT);
        assert!(!looks_like_tls(0) && !looks_like_tls(b'{') && !looks_like_tls(b'G'));
    }

    #[test]
    fn config_from_files_and_its_errors() {
        let identity = identity();
        let dir = std::env::temp_dir().join(format!("roomcast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, &identity.cert_pem).unwrap();
        std::fs::write(&key, &identity.key_pem).unwrap();

        let config = TlsConfig::from_pem(&cert, &key).unwrap();
        let mut server = TlsSession::new(config).unwrap();
        let mut client = client(client_config(&identity.cert_der, false));
        handshake(&mut client, &mut server);

        let missing = dir.join("missing.pem");
        let err = TlsConfig::from_pem(&missing, &key).unwrap_err();
        assert!(
            matches!(
                &err,
                TlsError::Pem {
                    what: "certificate chain",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = TlsConfig::from_pem(&key, &key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
        let err = TlsConfig::from_pem(&cert, &cert).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: "private key",
                    ..
                }
            ),
            "{err}"
        );
        let other = self::identity();
        std::fs::write(&key, &other.key_pem).unwrap();
        let err = TlsConfig::from_pem(&cert, &key).unwrap_err();
        assert!(matches!(err, TlsError::Config(_)), "mismatched key: {err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
