//! The files in `deploy/` used as far as this machine allows: the systemd unit checked by
//! `systemd-analyze verify` against the built binary, and the Dockerfile's health check run
//! against the real server (no container engine is needed for either).

mod support;

use std::path::Path;
use std::process::Command;

use support::Binary;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[test]
fn the_systemd_unit_verifies() {
    if !on_path("systemd-analyze") {
        println!("skipped: no systemd-analyze on PATH (Debian's systemd package has it)");
        return;
    }
    let unit = deploy("roomcast.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/roomcast --ip 0.0.0.0"));
    // The unit names the installed path; verify it against the binary just built.
    let unit = unit.replace("/usr/local/bin/roomcast", env!("CARGO_BIN_EXE_roomcast"));
    let dir = std::env::temp_dir().join(format!("roomcast-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("roomcast.service");
    std::fs::write(&path, unit).expect("unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {stderr}");
    assert!(!stderr.contains("roomcast.service:"), "warnings: {stderr}");
}

#[test]
fn the_dockerfile_health_check_reads_healthz() {
    let dockerfile = deploy("Dockerfile");
    let line = dockerfile
        .lines()
        .find(|line| line.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK line");
    let json = &line[line.find('[').expect("exec form")..];
    let argv: Vec<String> = serde_json::from_str(json).expect("a JSON array");
    assert_eq!(argv[..2], ["bash", "-c"]);
    assert!(dockerfile.contains(r#"CMD ["--ip", "0.0.0.0", "--port", "42069"]"#));
    if !on_path("bash") {
        println!("skipped: no bash on PATH");
        return;
    }
    let server = Binary::start("", "");
    let script = argv[2].replace("42069", &server.addr.port().to_string());
    let status = Command::new("bash")
        .args(["-c", &script])
        .status()
        .expect("bash");
    assert!(
        status.success(),
        "the health check failed against a live server"
    );
    // And it fails where nothing listens.
    let closed = argv[2].replace("42069", "1");
    let status = Command::new("bash")
        .args(["-c", &closed])
        .status()
        .expect("bash");
    assert!(!status.success());
}
