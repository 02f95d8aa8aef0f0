//! A child process with its output in a log file, stopped when dropped, and the readiness
//! wait shared by every part of the stack.

use crate::error::{Error, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Bytes of a log that an error message shows.
const LOG_TAIL_BYTES: u64 = 4_000;

/// Returns a loopback port that was free a moment ago. Another process may take it before the
/// caller binds it, a race that tests accept.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|error| Error::io("binding 127.0.0.1:0 to find a free port", error))?;
    let address = listener
        .local_addr()
        .map_err(|error| Error::io("reading the address of a free port", error))?;
    Ok(address.port())
}

/// A running child process whose stdout and stderr go to a log file.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with its output appended to `log`. `name` is what errors call it.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Process> {
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|error| Error::io(format!("opening log {}", log.display()), error))
        };
        let stdout: File = open_log()?;
        let stderr: File = open_log()?;
        command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = command
            .spawn()
            .map_err(|error| Error::io(format!("starting {name} ({command:?})"), error))?;
        Ok(Process {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// Name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Returns the exit status when the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Returns the last lines of the log.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log, LOG_TAIL_BYTES)
    }

    /// Returns an error saying that the process did not start, with the tail of its log.
    pub fn not_started(&self, detail: String) -> Error {
        Error::NotStarted {
            process: self.name.clone(),
            detail,
            log: self.log.clone(),
            log_tail: self.log_tail(),
        }
    }

    /// Waits until `probe` returns true, the process exits, or `timeout` passes.
    pub async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(self.not_started(format!("it exited with {status}")));
            }
            if probe().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_started(format!("not ready within {timeout:?}")));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Sends SIGTERM, waits up to five seconds for the exit, then kills the process.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_tail(path: &Path, bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(bytes)));
    let mut tail = Vec::new();
    let _ = file.read_to_end(&mut tail);
    String::from_utf8_lossy(&tail).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exited_process_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("echo.log");
        let mut command = Command::new("sh");
        command.args(["-c", "echo starting; echo broken config >&2; exit 3"]);
        let mut process = Process::spawn("echo server", command, &log).unwrap();
        let error = process
            .wait_ready(Duration::from_secs(5), || async { false })
            .await;
        let message = error.unwrap_err().to_string();
        assert!(message.contains("echo server did not start"), "{message}");
        assert!(message.contains("broken config"), "{message}");
    }

    #[tokio::test]
    async fn probe_success_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut process = Process::spawn("sleeper", command, &dir.path().join("s.log")).unwrap();
        let ready = process
            .wait_ready(Duration::from_secs(5), || async { true })
            .await;
        assert!(ready.is_ok());
    }

    #[tokio::test]
    async fn timeout_names_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut process = Process::spawn("sleeper", command, &dir.path().join("s.log")).unwrap();
        let error = process
            .wait_ready(Duration::from_millis(200), || async { false })
            .await;
        assert!(error
            .unwrap_err()
            .to_string()
            .contains("sleeper did not start"));
    }

    #[test]
    fn stop_ends_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut process = Process::spawn("sleeper", command, &dir.path().join("s.log")).unwrap();
        let pid = process.child.as_ref().unwrap().id();
        process.stop();
        let alive = kill(Pid::from_raw(pid as i32), None).is_ok();
        assert!(!alive, "process {pid} still runs");
    }
}
