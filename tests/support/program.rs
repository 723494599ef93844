//! A program another language's client runs in (a Python script, a C# program under Mono),
//! driven as a person at a terminal would: lines typed on stdin, stdout read line by line on a
//! thread, and every wait bounded, with the program's whole transcript in the failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long one expected line may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running program: stdin piped (or empty), stdout read line by line on a thread.
pub struct Program {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    started: Instant,
    /// How long the program may run in all.
    lifetime: Duration,
    /// A stdout line starting with this is a failure the program reports (a test runner's
    /// "FAIL ..."): waiting for anything else stops there.
    failure_prefix: Option<&'static str>,
}

impl Program {
    /// Starts `command`; without `piped_stdin`, its stdin is empty. `name` names it in
    /// failures; `lifetime` bounds its whole run.
    pub fn spawn(
        mut command: Command,
        name: impl Into<String>,
        piped_stdin: bool,
        lifetime: Duration,
    ) -> Program {
        let name = name.into();
        let mut child = command
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Program {
            name,
            child,
            stdin,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
            started: Instant::now(),
            lifetime,
            failure_prefix: None,
        }
    }

    /// Lines starting with `prefix` fail any wait for a line.
    pub fn failing_on(mut self, prefix: &'static str) -> Program {
        self.failure_prefix = Some(prefix);
        self
    }

    /// The process id, for signals.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Types a line.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped and open");
        if let Err(err) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            let transcript = self.transcript();
            panic!("{}: cannot write {line:?}: {err}\n{transcript}", self.name);
        }
    }

    /// Ends the input, as Ctrl-D would.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads stdout until a line contains `needle`, and returns that line.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if self.failure_prefix.is_some_and(|p| line.starts_with(p)) {
                        let transcript = self.transcript();
                        panic!("{}: {line}\n{transcript}", self.name);
                    }
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let transcript = self.transcript();
                    panic!(
                        "{}: no line with {needle:?} within {STEP_TIMEOUT:?}\n{transcript}",
                        self.name
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let transcript = self.transcript();
                    panic!(
                        "{}: exited before printing {needle:?}\n{transcript}",
                        self.name
                    );
                }
            }
        }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would.
    pub fn interrupt(&mut self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {}", self.child.id());
    }

    /// Closes stdin, waits for the exit, successful or not, and returns the status, every
    /// stdout line and stderr.
    pub fn finish_any(&mut self) -> (ExitStatus, Vec<String>, String) {
        self.close_stdin();
        let status = self.wait_for_exit();
        self.drain_stdout();
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        (status, self.stdout.clone(), stderr)
    }

    /// Closes stdin, waits for a successful exit and returns every stdout line.
    pub fn finish(&mut self) -> Vec<String> {
        self.close_stdin();
        self.finish_without_closing_stdin()
    }

    /// Waits for a successful exit (killing the program past its lifetime) and returns every
    /// stdout line.
    pub fn finish_without_closing_stdin(&mut self) -> Vec<String> {
        let status = self.wait_for_exit();
        self.drain_stdout();
        if !status.success() {
            let transcript = self.transcript();
            panic!("{}: exited with {status}\n{transcript}", self.name);
        }
        self.stdout.clone()
    }

    /// The exit status, or a failure with the transcript once the lifetime is over.
    fn wait_for_exit(&mut self) -> ExitStatus {
        match self.wait_until(self.started + self.lifetime) {
            Some(status) => status,
            None => {
                let transcript = self.transcript();
                panic!(
                    "{}: still running after {:?}; killed\n{transcript}",
                    self.name, self.lifetime
                );
            }
        }
    }

    /// The exit status if the program ends by `deadline`.
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(err) => panic!("{}: cannot wait: {err}", self.name),
            }
        }
    }

    /// Collects the rest of stdout; the reader thread ends when the program's stdout closes.
    pub fn drain_stdout(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(STEP_TIMEOUT) {
            self.stdout.push(line);
        }
    }

    /// Kills the program if it still runs and returns its stdout and stderr, for a failure.
    pub fn transcript(&mut self) -> String {
        self.kill();
        self.drain_stdout();
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        format!(
            "--- stdout of {} ---\n{}\n--- stderr ---\n{stderr}",
            self.name,
            self.stdout.join("\n")
        )
    }

    /// Kills the program if it still runs.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}
