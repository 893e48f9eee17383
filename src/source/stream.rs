//! Stream sources: stdin, or the stdout of a command.
//!
//! [`HashingReader`] records the exact length and SHA-256 of what was read,
//! for the snapshot's `stream` record. [`CommandSource`] runs a command,
//! passes its stderr through while keeping the tail, and reports a failed
//! exit status *before* any snapshot is written.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// Counts and hashes what passes through.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Bytes read and their SHA-256 (hex).
    pub fn finish(self) -> (u64, String) {
        (self.len, hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Reads and hashes on a thread of its own, handing blocks to the consumer:
/// the stream's SHA-256 and the read syscalls then overlap with chunking
/// and chunk hashing instead of running on the same core.
pub struct ThreadedHashingReader {
    rx: crossbeam_channel::Receiver<std::io::Result<Vec<u8>>>,
    block: Vec<u8>,
    pos: usize,
    thread: Option<std::thread::JoinHandle<(u64, String)>>,
}

/// Size of a block handed over, and blocks in flight.
const BLOCK: usize = 1 << 20;
const BLOCKS_IN_FLIGHT: usize = 4;

impl ThreadedHashingReader {
    pub fn new<R: Read + Send + 'static>(inner: R) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(BLOCKS_IN_FLIGHT);
        let thread = std::thread::spawn(move || {
            let mut r = HashingReader::new(inner);
            loop {
                let mut buf = vec![0u8; BLOCK];
                let mut n = 0;
                // Fill the block (pipes return little at a time).
                let res = loop {
                    match r.read(&mut buf[n..]) {
                        Ok(0) => break Ok(()),
                        Ok(k) => {
                            n += k;
                            if n == BLOCK {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                buf.truncate(n);
                let done = n == 0;
                let msg = match res {
                    Ok(()) if done => break,
                    Ok(()) => Ok(buf),
                    Err(e) => Err(e),
                };
                let failed = msg.is_err();
                if tx.send(msg).is_err() || failed {
                    break;
                }
            }
            r.finish()
        });
        Self { rx, block: Vec::new(), pos: 0, thread: Some(thread) }
    }

    /// Bytes read and their SHA-256 (hex); call after reading to the end.
    pub fn finish(mut self) -> (u64, String) {
        drop(std::mem::replace(&mut self.rx, crossbeam_channel::never()));
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Read for ThreadedHashingReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.block.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.block = b;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the reader thread ended: end of stream
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Lines of stderr kept for the error message.
const TAIL_LINES: usize = 5;

/// A running `--stdin-from-command` child.
pub struct CommandSource {
    child: Child,
    argv: Vec<String>,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    /// Stops the child if cairn is interrupted ([`crate::interrupt`]).
    _on_interrupt: crate::interrupt::Registration,
}

impl CommandSource {
    /// Starts `argv`. Its stderr is copied to ours as it comes.
    pub fn spawn(argv: &[String]) -> Result<(Self, ChildStdout)> {
        Self::spawn_with_env(argv, &[])
    }

    /// Starts `argv` with `env` added to (or replacing in) the inherited
    /// environment.
    pub fn spawn_with_env(argv: &[String], env: &[(String, String)]) -> Result<(Self, ChildStdout)> {
        let (prog, args) =
            argv.split_first().ok_or_else(|| Error::invalid("--stdin-from-command needs a command after --"))?;
        let mut child = Command::new(prog)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(ErrorKind::Command, format!("cannot run {prog:?}: {e}")))?;
        let stdout = child.stdout.take().ok_or_else(|| Error::new(ErrorKind::Command, "no stdout pipe"))?;
        let stderr = child.stderr.take().ok_or_else(|| Error::new(ErrorKind::Command, "no stderr pipe"))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let t = tail.clone();
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n').map_while(|l| l.ok()) {
                let _ = io::stderr().write_all(&line);
                let _ = io::stderr().write_all(b"\n");
                let s = String::from_utf8_lossy(&line).trim().to_string();
                if !s.is_empty() {
                    let mut q = t.lock().unwrap_or_else(|p| p.into_inner());
                    if q.len() == TAIL_LINES {
                        q.pop_front();
                    }
                    q.push_back(s);
                }
            }
        });
        let pid = child.id() as libc::pid_t;
        let on_interrupt = crate::interrupt::on_interrupt(move || stop_child(pid));
        let me =
            Self { child, argv: argv.to_vec(), tail, stderr_thread: Some(stderr_thread), _on_interrupt: on_interrupt };
        Ok((me, stdout))
    }

    /// Waits for the command; a non-zero exit is an error quoting the end of
    /// its stderr.
    pub fn wait(mut self) -> Result<()> {
        let status =
            self.child.wait().map_err(|e| Error::new(ErrorKind::Command, format!("waiting for command: {e}")))?;
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        if status.success() {
            return Ok(());
        }
        let tail: Vec<String> = self.tail.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        let mut msg = format!("command {:?} {how}; no snapshot was written", self.argv.join(" "));
        if !tail.is_empty() {
            let mut t = tail.join(" | ");
            if t.len() > 400 {
                let mut cut = t.len() - 400;
                while !t.is_char_boundary(cut) {
                    cut += 1;
                }
                t = format!("...{}", &t[cut..]);
            }
            msg.push_str(&format!(": {t}"));
        }
        Err(Error::new(ErrorKind::Command, msg))
    }

    /// Kills the command (when cairn itself fails first).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM to an interrupted backup's command (`pg_dump` gets to end its
/// session), SIGKILL if it has not ended within 5 seconds; reaped either
/// way, so no orphan is left to init.
fn stop_child(pid: libc::pid_t) {
    let reaped = || {
        let mut status = 0;
        // SAFETY: waitpid on our own child's pid with a valid pointer to a
        // local; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        r == pid || r == -1
    };
    // SAFETY: kill with our own child's pid (not yet reaped, so not reused)
    // and valid signal numbers; no memory is involved.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(5) {
        if reaped() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let t1 = std::time::Instant::now();
    while !reaped() && t1.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_reader_counts_and_hashes() {
        let mut r = HashingReader::new(&b"abc"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let (n, h) = r.finish();
        assert_eq!(n, 3);
        assert_eq!(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn threaded_reader_matches_the_plain_one() {
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i.wrapping_mul(2654435761) >> 9) as u8).collect();
        let mut r = ThreadedHashingReader::new(std::io::Cursor::new(data.clone()));
        let mut out = Vec::new();
        let mut buf = [0u8; 7777];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
        let mut plain = HashingReader::new(&data[..]);
        std::io::copy(&mut plain, &mut std::io::sink()).unwrap();
        assert_eq!(r.finish(), plain.finish());
    }

    #[test]
    fn failing_command_quotes_stderr() {
        let argv: Vec<String> = ["sh", "-c", "echo partial; echo 'pg_dump: error: connection failed' >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (src, mut out) = CommandSource::spawn(&argv).unwrap();
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        assert_eq!(s, "partial\n");
        let e = src.wait().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Command);
        assert!(e.to_string().contains("status 3"), "{e}");
        assert!(e.to_string().contains("connection failed"), "{e}");
    }

    #[test]
    fn the_command_gets_its_extra_environment() {
        let argv: Vec<String> = ["sh", "-c", "printf %s \"$CAIRN_T_X\""].iter().map(|s| s.to_string()).collect();
        let (src, mut out) = CommandSource::spawn_with_env(&argv, &[("CAIRN_T_X".into(), "hello".into())]).unwrap();
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        src.wait().unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn missing_program_is_a_command_error() {
        let e = CommandSource::spawn(&["/nonexistent/prog".to_string()]).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Command);
    }
}
