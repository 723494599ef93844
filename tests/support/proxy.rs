//! A TCP proxy between a client and the test server that fails like a network: it cuts every
//! connection it carries (resets both ways, optionally after passing only half of a frame to
//! the client), and refuses new connections until restored.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A TCP proxy from a script to the server that can fail like a network: cut every
/// connection it carries (resets both ways, optionally after passing only half of a frame to
/// the client), and refuse new connections (reset at once) until restored.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

struct ProxyShared {
    upstream: SocketAddr,
    stop: AtomicBool,
    state: Mutex<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// New connections are reset at once.
    down: bool,
    /// Server-to-client frames still passed whole before a cut; `None`: no cut armed.
    cut_after: Option<usize>,
    /// Both ends (client side, server side) of every connection carried.
    links: Vec<(TcpStream, TcpStream)>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let shared = Arc::new(ProxyShared {
            upstream,
            stop: AtomicBool::new(false),
            state: Mutex::new(ProxyState::default()),
        });
        let addr = listener.local_addr().expect("proxy address");
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || shared.accept_loop(&listener))
        };
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port_args(&self) -> Vec<String> {
        vec![
            "--host".into(),
            self.addr.ip().to_string(),
            "--port".into(),
            self.addr.port().to_string(),
        ]
    }

    /// Passes the next `frames` server frames whole, cuts the one after in half, then cuts
    /// every connection and goes down.
    pub fn cut_after(&self, frames: usize) {
        self.shared.state().cut_after = Some(frames);
    }

    /// Cuts every connection now and goes down.
    pub fn cut_now(&self) {
        let mut state = self.shared.state();
        state.down = true;
        for (client, server) in state.links.drain(..) {
            reset(&client);
            reset(&server);
        }
    }

    /// Accepts and carries connections again.
    pub fn restore(&self) {
        self.shared.state().down = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.cut_now();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl ProxyShared {
    fn state(&self) -> MutexGuard<'_, ProxyState> {
        // A pump that panicked cannot leave the state half-changed: plain assignments only.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn accept_loop(self: Arc<Self>, listener: &TcpListener) {
        while !self.stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((client, _)) => self.carry(client),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(err) => panic!("proxy accept: {err}"),
            }
        }
    }

    fn carry(self: &Arc<Self>, client: TcpStream) {
        if self.state().down {
            reset(&client);
            return;
        }
        let Ok(server) = TcpStream::connect(self.upstream) else {
            reset(&client);
            return;
        };
        client.set_nonblocking(false).expect("blocking client side");
        for stream in [&client, &server] {
            stream.set_nodelay(true).expect("nodelay");
        }
        let clone = |s: &TcpStream| s.try_clone().expect("clone a proxied stream");
        self.state().links.push((clone(&client), clone(&server)));
        let (mut up_from, mut up_to) = (clone(&client), clone(&server));
        thread::spawn(move || {
            let _ = std::io::copy(&mut up_from, &mut up_to);
            let _ = up_to.shutdown(std::net::Shutdown::Write);
        });
        let shared = Arc::clone(self);
        thread::spawn(move || shared.pump_down(server, client));
    }

    /// Server to client, frame by frame, so a cut can fall in the middle of one.
    fn pump_down(&self, mut server: TcpStream, mut client: TcpStream) {
        loop {
            let mut header = [0u8; 4];
            if server.read_exact(&mut header).is_err() {
                break;
            }
            let mut frame = header.to_vec();
            frame.resize(4 + u32::from_be_bytes(header) as usize, 0);
            if server.read_exact(&mut frame[4..]).is_err() {
                break;
            }
            let cut = {
                let mut state = self.state();
                match state.cut_after {
                    Some(0) => {
                        state.cut_after = None;
                        true
                    }
                    Some(n) => {
                        state.cut_after = Some(n - 1);
                        false
                    }
                    None => false,
                }
            };
            if cut {
                let _ = client.write_all(&frame[..frame.len() / 2]);
                let mut state = self.state();
                state.down = true;
                for (c, s) in state.links.drain(..) {
                    reset(&c);
                    reset(&s);
                }
                break;
            }
            if client.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Write);
    }
}

/// Ends a connection as a failing network does: a reset (SO_LINGER 0) rather than a FIN once
/// the last handle closes, and both directions shut now, so blocked pumps wake up.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
