//! The `roomcast` binary's command line (README "Flags"): what it accepts and how it refuses.

mod support;

use std::process::Command;

use roomcast::client::Client;
use support::{Binary, TIMEOUT};

#[test]
fn ip_takes_a_host_name_and_listens_on_its_ipv4_address() {
    let server = Binary::start("", "--ip localhost");
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    let mut client = Client::connect(server.addr).expect("connect");
    client.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    assert_eq!(client.ping().expect("pong").code, 200);
}

#[test]
fn bad_flags_stop_the_server_with_a_message_naming_the_flag() {
    for (args, needle) in [
        (
            &["--ip", "no-such-host.invalid"][..],
            "neither an IP address nor a host name that resolves",
        ),
        (&["--fps", "0"][..], "--fps must be a number above 0"),
        (
            &["--redis", "redis://127.0.0.1:1", "--redis-ca", "ca.pem"][..],
            "--redis-ca needs a TLS URL (rediss://HOST:PORT)",
        ),
        (
            &[
                "--redis",
                "redis://127.0.0.1:1",
                "--redis-cert",
                "node.pem",
                "--redis-key",
                "node.key",
            ][..],
            "--redis-cert needs a TLS URL",
        ),
        (
            &["--redis", "rediss://127.0.0.1:1/#insecure"][..],
            "Redis's TLS certificate is always verified",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["--port", "0", "--ephemeral"])
            .args(args)
            .output()
            .expect("run roomcast");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
