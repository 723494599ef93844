//! A real `redis-server` for the cluster tests: started on a free loopback port in a
//! directory of its own, stopped (and its files removed) when dropped; plain, or TLS only
//! with certificates made here ([`TestCa`]).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A redis-server child process.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Arguments it was started with (kept for a restart on the same port).
    args: Vec<String>,
    /// TLS only (`--port 0 --tls-port`): the CA its certificate chains to.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A certificate authority made for one test, a server certificate it signed for 127.0.0.1
/// and localhost, and a client certificate it signed, as PEM files in a directory of their
/// own.
pub struct TestCa {
    dir: tempfile::TempDir,
    /// The CA's certificate (what `--redis-ca` and `--tls-ca-cert-file` read).
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client's certificate and key (what `--redis-cert` and `--redis-key` read).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    ca_der: rustls_pki_types::CertificateDer<'static>,
}

impl TestCa {
    /// A new CA named `name` and a server certificate it signed.
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("roomcast test CA {name}"));
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = params
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        let client_key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params
            .distinguished_name
            .push(DnType::CommonName, "roomcast node");
        let client_cert = params
            .signed_by(&client_key, &issuer)
            .expect("client certificate");
        let ca = TestCa {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("redis.pem"),
            key: dir.path().join("redis.key"),
            client_cert: dir.path().join("node.pem"),
            client_key: dir.path().join("node.key"),
            ca_der: ca_cert.der().clone(),
            dir,
        };
        let files = [
            (&ca.ca, ca_cert.pem()),
            (&ca.cert, server_cert.pem()),
            (&ca.key, server_key.serialize_pem()),
            (&ca.client_cert, client_cert.pem()),
            (&ca.client_key, client_key.serialize_pem()),
        ];
        for (path, pem) in files {
            std::fs::write(path, pem).expect("write a PEM file");
        }
        ca
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A rustls client that trusts this CA only, with the client certificate.
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("CA as a root");
        let chain = vec![CertificateDer::from_pem_file(&self.client_cert).expect("node.pem")];
        let key = PrivateKeyDer::from_pem_file(&self.client_key).expect("node.key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client certificate");
        Arc::new(config)
    }
}

/// Whether `redis-server` can be run here; the reason to skip when it cannot.
pub fn available() -> Result<(), String> {
    match Command::new("redis-server").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("redis-server --version failed: {:?}", out.status)),
        Err(err) => Err(format!(
            "redis-server not found ({err}); .ci/run installs Debian's redis-server"
        )),
    }
}

impl RedisServer {
    /// Starts redis-server with `args` (beyond port and directory) on a free port, retrying
    /// with another port if one was taken meanwhile; waits until it answers PING.
    pub fn start(args: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir: tempfile::tempdir().expect("temporary directory"),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            tls: None,
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// A Redis that speaks TLS only, with `ca`'s server certificate, and keeps nothing on
    /// disk; with `client_certs`, clients need a certificate `ca` signed. `Err` says why it
    /// could not start (a redis-server built without TLS, say): the caller skips.
    pub fn tls(ca: &TestCa, client_certs: bool) -> Result<RedisServer, String> {
        let path = |p: &Path| p.to_str().expect("UTF-8 temporary path").to_owned();
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir: tempfile::tempdir().expect("temporary directory"),
            args: [
                "--tls-cert-file",
                &path(&ca.cert),
                "--tls-key-file",
                &path(&ca.key),
                "--tls-ca-cert-file",
                &path(&ca.ca),
                "--tls-auth-clients",
                if client_certs { "yes" } else { "no" },
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            .map(str::to_owned)
            .to_vec(),
            tls: Some(ca.client_config()),
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return Ok(server);
            }
        }
        let log = std::fs::read_to_string(server.dir.path().join("redis.log")).unwrap_or_default();
        let last = log.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
        Err(format!(
            "redis-server did not start with TLS on any of 5 free ports (its log: {last})"
        ))
    }

    /// Persistence for the tests that restart it: an append-only file, fsynced on every write.
    pub fn persistent() -> RedisServer {
        RedisServer::start(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
    }

    /// Nothing on disk: the fastest.
    pub fn ephemeral() -> RedisServer {
        RedisServer::start(&["--save", "", "--appendonly", "no"])
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://...` for a TLS one.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts the process on `self.port`; true once it answers.
    fn spawn(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        match self.tls {
            None => command.arg("--port").arg(self.port.to_string()),
            Some(_) => command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--logfile")
                .arg(self.dir.path().join("redis.log")),
        };
        let child = command
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let answered = match &self.tls {
                None => ping(self.port),
                Some(config) => ping_tls(self.port, config),
            };
            if answered {
                return true;
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false; // it exited: the port was taken
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        false
    }

    /// Stops it with SIGTERM (an append-only file is flushed) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the same files.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server restarts on port {}", self.port);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nobody listens on right now (bound and released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Whether a Redis on `port` answers PING.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    answers_ping(&mut stream)
}

/// Whether a Redis on `port` answers PING over TLS, with a certificate `config` trusts.
fn ping_tls(port: u16, config: &Arc<rustls::ClientConfig>) -> bool {
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("an IP address");
    let Ok(conn) = rustls::ClientConnection::new(Arc::clone(config), name) else {
        return false;
    };
    answers_ping(&mut rustls::StreamOwned::new(conn, tcp))
}

fn answers_ping(stream: &mut (impl Read + Write)) -> bool {
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
