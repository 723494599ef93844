//! `roomcast-bench logins`: registered users logging in (each login an argon2id check off the
//! event loop) at a steady rate or as fast as the server answers, while one more connection
//! pings the server every 10 ms: its round trips show whether the loop is ever blocked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use roomcast::client::{Client, ClientError};
use serde_json::json;

use crate::scenarios::Outcome;
use crate::stats::Samples;
use crate::target::Target;

/// The load's shape.
pub struct LoginLoad {
    /// Logins per second; `None`: as fast as `concurrency` connections get answers.
    pub rate: Option<f64>,
    /// Accounts registered first and logged into in turn.
    pub accounts: usize,
    /// Logins in flight at most.
    pub concurrency: usize,
    pub seconds: f64,
}

const PASSWORD: &str = "correct horse battery";
/// A login that takes longer than this counts as failed.
const PATIENCE: Duration = Duration::from_secs(10);

pub fn logins(target: &Target, load: &LoginLoad) -> std::io::Result<Outcome> {
    run(target, load).map_err(std::io::Error::other)
}

fn run(target: &Target, load: &LoginLoad) -> Result<Outcome, String> {
    let addr = target.addr();
    let accounts = load.accounts.max(1);
    let tag = std::process::id();
    let names: Vec<String> = (0..accounts).map(|i| format!("bench{tag}x{i}")).collect();
    register_all(addr, &names)?;

    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || ping_every_10_ms(addr, &stop))
    };
    let cpu_before = target.cpu_seconds();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(load.seconds);

    // Workers take login numbers from the pacer and report each login's time and outcome.
    let (jobs, queue) = mpsc::sync_channel::<usize>(load.concurrency.max(1));
    let queue = Arc::new(Mutex::new(queue));
    let latency = Arc::new(Mutex::new(Samples::default()));
    let (succeeded, busy, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let workers: Vec<_> = (0..load.concurrency.max(1))
        .map(|_| {
            let queue = Arc::clone(&queue);
            let names = names.clone();
            let latency = Arc::clone(&latency);
            let (succeeded, busy, failed) = (
                Arc::clone(&succeeded),
                Arc::clone(&busy),
                Arc::clone(&failed),
            );
            thread::spawn(move || loop {
                let next = queue
                    .lock()
                    .map_err(|_| ())
                    .and_then(|q| q.recv().map_err(|_| ()));
                let Ok(n) = next else { return };
                let sent = Instant::now();
                match log_in_and_out(addr, &names[n % names.len()]) {
                    Ok(()) => {
                        succeeded.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut samples) = latency.lock() {
                            samples.push(sent.elapsed().as_micros() as u64);
                        }
                    }
                    Err(ClientError::Refused { code: 503, .. }) => {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut offered = 0usize;
    while Instant::now() < until {
        if let Some(rate) = load.rate {
            let due = started + Duration::from_secs_f64(offered as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait.min(until.saturating_duration_since(Instant::now())));
                continue;
            }
            // At a steady rate a worker must be free; one that is not is a late login.
            if jobs.try_send(offered).is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        } else if jobs.send(offered).is_err() {
            break;
        }
        offered += 1;
    }
    drop(jobs);
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = target
        .cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    stop.store(true, Ordering::Relaxed);
    let mut pings = pinger
        .join()
        .map_err(|_| "the pinger panicked".to_owned())??;
    let mut latency = latency.lock().map_err(|_| "a worker panicked".to_owned())?;
    let done = succeeded.load(Ordering::Relaxed);
    let mut figures = vec![
        ("logins_offered", json!(offered)),
        ("logins", json!(done)),
        ("logins_per_s", json!(done as f64 / elapsed)),
        ("busy_503", json!(busy.load(Ordering::Relaxed))),
        ("failed", json!(failed.load(Ordering::Relaxed))),
        ("login_latency_ms", json!(latency.summary())),
        ("ping_rtt_ms", json!(pings.summary())),
    ];
    if let Some(cpu) = cpu {
        figures.push(("server_cpu_s", json!(cpu)));
    }
    Ok(Outcome { figures })
}

/// Registers every name (once; a name left from an earlier run against the same server
/// answers 409, which will do).
fn register_all(addr: SocketAddr, names: &[String]) -> Result<(), String> {
    let mut client = Client::connect(addr).map_err(|err| format!("connect: {err}"))?;
    client
        .set_read_timeout(Some(PATIENCE))
        .map_err(|err| err.to_string())?;
    for name in names {
        match client.register(name, PASSWORD) {
            Ok(_) | Err(ClientError::Refused { code: 409, .. }) => {}
            Err(err) => return Err(format!("register {name}: {err}")),
        }
    }
    Ok(())
}

/// One connection's life: connect, log in with the password, log out.
fn log_in_and_out(addr: SocketAddr, name: &str) -> Result<(), ClientError> {
    let mut client = Client::connect(addr)?;
    client.set_read_timeout(Some(PATIENCE))?;
    client.login(name, PASSWORD)?;
    client.logout()?;
    Ok(())
}

/// Pings every 10 ms until `stop`, and returns the round trips.
fn ping_every_10_ms(addr: SocketAddr, stop: &AtomicBool) -> Result<Samples, String> {
    let mut client = Client::connect(addr).map_err(|err| format!("pinger: {err}"))?;
    client
        .set_read_timeout(Some(PATIENCE))
        .map_err(|err| err.to_string())?;
    // Logged in, so the login timeout does not close it.
    client
        .login(&format!("pinger{}", std::process::id()), "")
        .map_err(|err| format!("pinger: {err}"))?;
    let mut samples = Samples::default();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        client.ping().map_err(|err| format!("pinger: {err}"))?;
        samples.push(sent.elapsed().as_micros() as u64);
        next += Duration::from_millis(10);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    Ok(samples)
}
