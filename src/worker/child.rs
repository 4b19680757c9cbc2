//! Running one command: its own process group, the task on standard input, both output
//! streams captured into bounded buffers, and a stop that escalates from SIGTERM to SIGKILL.

use std::future::Future;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::tail::{TailBuffer, TAIL_BYTES};

/// How long the output pipes may stay open after the command exited (a background process
/// it left behind may hold them); what was read by then is what is reported.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// What to run for a task.
pub struct Invocation<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub env: Vec<(&'static str, String)>,
    /// Written to the command's standard input, which is then closed.
    pub stdin: Vec<u8>,
}

/// Why a command was stopped before it finished on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The heartbeat's answer asked for it.
    Cancelled,
    /// The server said the lease is no longer ours (409 on a heartbeat, or the task is gone).
    LeaseLost(String),
    /// A second SIGTERM or SIGINT to the worker.
    Shutdown,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Cancelled => f.write_str("cancelled"),
            StopReason::LeaseLost(why) => write!(f, "lease lost ({why})"),
            StopReason::Shutdown => f.write_str("stopped by the worker's shutdown"),
        }
    }
}

/// A command that has exited.
pub struct Finished {
    pub status: ExitStatus,
    /// The last `TAIL_BYTES` of standard output.
    pub stdout: Vec<u8>,
    /// The last `TAIL_BYTES` of standard error.
    pub stderr: Vec<u8>,
    /// Set when the worker stopped it.
    pub stopped: Option<StopReason>,
}

/// "exit status 3" or "killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("{status}"),
    }
}

/// Runs the command to its end, or until `stop` resolves: then SIGTERM to its process
/// group, and SIGKILL to the group if it is still running after `kill_grace`.
pub async fn run(
    invocation: Invocation<'_>,
    stop: impl Future<Output = StopReason>,
    kill_grace: Duration,
) -> io::Result<Finished> {
    let mut command = std::process::Command::new(invocation.program);
    command
        .args(invocation.args)
        .envs(invocation.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a signal meant for the worker (Ctrl-C in a terminal) does not reach
        // it, and a stop reaches everything it started.
        .process_group(0);
    let mut child = tokio::process::Command::from(command).spawn()?;
    let group = child.id().map(|pid| pid as libc::pid_t);
    let stdout = Arc::new(Mutex::new(TailBuffer::new(TAIL_BYTES)));
    let stderr = Arc::new(Mutex::new(TailBuffer::new(TAIL_BYTES)));
    let readers = [
        capture(child.stdout.take().expect("piped stdout"), stdout.clone()),
        capture(child.stderr.take().expect("piped stderr"), stderr.clone()),
    ];
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = invocation.stdin;
    // A command that does not read its input must not block on it, nor make us fail.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });

    tokio::pin!(stop);
    let (status, stopped) = tokio::select! {
        status = child.wait() => (status?, None),
        reason = &mut stop => {
            signal_group(group, libc::SIGTERM);
            let status = match tokio::time::timeout(kill_grace, child.wait()).await {
                Ok(status) => status?,
                Err(_) => {
                    signal_group(group, libc::SIGKILL);
                    child.wait().await?
                }
            };
            (status, Some(reason))
        }
    };
    writer.abort();
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(PIPE_DRAIN, reader).await.is_err() {
            abort.abort();
        }
    }
    let stdout = stdout.lock().expect("stdout buffer").to_vec();
    let stderr = stderr.lock().expect("stderr buffer").to_vec();
    Ok(Finished { status, stdout, stderr, stopped })
}

/// Reads `stream` to its end into `tail`.
fn capture(mut stream: impl AsyncRead + Unpin + Send + 'static, tail: Arc<Mutex<TailBuffer>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut chunk = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            tail.lock().expect("output buffer").push(&chunk[..n]);
        }
    })
}

/// Sends `signal` to the process group led by the child. Called only before the child is
/// reaped, so the group id cannot have been reused.
fn signal_group(group: Option<libc::pid_t>, signal: libc::c_int) {
    if let Some(group) = group {
        // SAFETY: kill(2) has no memory effects; a group that is already gone is ESRCH.
        unsafe {
            libc::kill(-group, signal);
        }
    }
}
