//! Redis as a stream source: the server's RDB snapshot, read over the
//! network with a small RESP2 client of its own (no Redis crate), for
//! `cairn run`'s `redis = ...` sources.
//!
//! # API
//!
//! [`open_rdb`] takes a [`RedisSpec`] (URL, optional password, [`RedisMethod`],
//! timeout) and returns a reader of exactly the RDB bytes. The reader ends
//! with `Ok(0)` only after the whole RDB has arrived and checked out; a
//! transfer cut short, a missing or wrong end mark, a wrong length, a failed
//! save or a damaged RDB (bad magic, no end-of-file opcode, a checksum
//! mismatch) is an `io::Error` instead (see [`rdb`]), so a truncated RDB
//! never becomes a snapshot. Errors before the first byte (connecting,
//! authentication, a failed save) are [`Error`]s from `open_rdb` itself:
//! one sentence naming the server, never the password. A server that cannot
//! be reached (connection refused, timed out, host unreachable) is
//! [`ErrorKind::Transient`] (exit code 75), as is a server that closes the
//! connection or stops answering; a bad URL, a refused password, a missing
//! password or permission (`NOAUTH`, `NOPERM`) or a bgsave on a remote
//! server is [`ErrorKind::InvalidInput`]; a failed or stale save, another
//! refused command or a damaged RDB is [`ErrorKind::Io`].
//!
//! # URLs
//!
//! `redis://[[user]:password@]host[:port][/db]` (port 6379; IPv6 hosts in
//! brackets; user and password percent-decoded; the db number is accepted
//! and ignored, as an RDB holds every database), or `unix:///path/to.sock`
//! (also `redis+unix://`). `rediss://` (TLS) is not supported and says so.
//! [`RedisSpec::password`] (from a password file) is for URLs without one:
//! giving both is an error. With a user and no password, no AUTH is sent.
//! A unix URL has no user info: its password is [`RedisSpec::password`] (for
//! the default user).
//!
//! # Methods
//!
//! [`RedisMethod::Replica`] (the default) does what `redis-cli --rdb` does:
//! AUTH, `REPLCONF capa eof` (the client understands the diskless `$EOF:`
//! form), `REPLCONF rdb-only 1` (Redis 7: no replication stream after the
//! RDB; errors from older servers are ignored), then `SYNC`. The server
//! answers with `\n` keepalives while it prepares the snapshot, then either
//! `$<len>\r\n` and that many bytes (disk-based replication: the server
//! saves to its disk first), or `$EOF:<40 random chars>\r\n`, the RDB, and
//! the same 40 chars (diskless replication, Redis 7's default; the server
//! first waits `repl-diskless-sync-delay`, 5 s by default, for more
//! replicas). Works on any server the client can reach, including remote
//! ones; the user needs the `SYNC` and `REPLCONF` commands.
//!
//! [`RedisMethod::Bgsave`] makes the server save to its own disk and reads
//! that file, so the server must run on this machine (loopback or unix
//! socket) and its dump file must be readable here: `LASTSAVE`, `TIME`
//! (when the last save is from the current second, it waits for the next, so
//! that a new save is told from it), `BGSAVE` (when a save or an AOF
//! rewrite runs already, it waits for it to end and asks again), polls
//! `INFO persistence` until `rdb_bgsave_in_progress:0`, then requires
//! `rdb_last_bgsave_status:ok` ("BGSAVE failed" otherwise) and a `LASTSAVE`
//! and file modification time from after the request ("stale" otherwise),
//! and opens `CONFIG GET dir`/`dbfilename`. The open file stays valid even
//! when a later save replaces it.
//!
//! # Timeout
//!
//! [`RedisSpec::timeout`] bounds connecting, every reply, the wait for the
//! snapshot to begin (the whole save, for the bgsave method and disk-based
//! replication) and every stall of the transfer; not the transfer's total
//! time.

mod rdb;
mod resp;

use std::fmt;
use std::io::{self, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{io_is_transient, io_reason, Error, ErrorKind, Result};
use rdb::{Framing, RdbReader, MARK_LEN};
use resp::{Conn, Reply, Stream};

pub use rdb::crc64;

/// How the snapshot is taken; see the module doc.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisMethod {
    /// A replica's full sync (`SYNC`), like `redis-cli --rdb`.
    #[default]
    Replica,
    /// `BGSAVE` on the server, then its dump file (local servers only).
    Bgsave,
}

impl std::str::FromStr for RedisMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "replica" => Ok(RedisMethod::Replica),
            "bgsave" => Ok(RedisMethod::Bgsave),
            _ => Err(Error::invalid(format!("unknown Redis method {s:?}: expected \"replica\" or \"bgsave\""))),
        }
    }
}

/// A Redis source: where, how, and for how long to wait.
#[derive(Clone)]
pub struct RedisSpec {
    /// `redis://[[user]:password@]host[:port][/db]` or `unix:///path`.
    pub url: String,
    /// The password when the URL has none (a `password-file`'s content,
    /// used as given: strip its line end first).
    pub password: Option<String>,
    pub method: RedisMethod,
    pub timeout: Duration,
}

impl RedisSpec {
    /// The default [`RedisSpec::timeout`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// A spec with the default method and timeout and no separate password.
    pub fn new(url: impl Into<String>) -> Self {
        RedisSpec { url: url.into(), password: None, method: RedisMethod::Replica, timeout: Self::DEFAULT_TIMEOUT }
    }

    /// "Redis at 127.0.0.1:6379", "Redis at /run/redis.sock": the server
    /// as error messages name it (never with a password).
    pub fn describe(&self) -> Result<String> {
        Ok(parse_url(&self.url)?.endpoint.to_string())
    }
}

impl fmt::Debug for RedisSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = parse_url(&self.url).map(|t| t.endpoint.to_string()).unwrap_or_else(|_| "(a bad URL)".into());
        f.debug_struct("RedisSpec")
            .field("server", &url)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Opens the RDB stream (see the module doc). The returned reader yields
/// exactly the RDB bytes; it returns an `io::Error` (never a clean EOF) if
/// the transfer is cut short, the EOF mark or the length does not match, or
/// the RDB does not check out, so a truncated RDB never becomes a snapshot.
pub fn open_rdb(spec: &RedisSpec) -> Result<Box<dyn Read + Send>> {
    let mut target = parse_url(&spec.url)?;
    if let Some(p) = &spec.password {
        if target.password.is_some() {
            return Err(Error::invalid(format!(
                "the URL of {} has a password and a password file is given too: give only one",
                target.endpoint
            )));
        }
        target.password = Some(p.clone());
    }
    let timeout = spec.timeout.max(Duration::from_secs(1));
    let (mut conn, local) = connect(&target.endpoint, timeout)?;
    let name = target.endpoint.to_string();
    if spec.method == RedisMethod::Bgsave && !local {
        return Err(Error::invalid(format!(
            "the bgsave method reads the dump file from the server's disk, but {name} is not on this machine \
             (not loopback or a unix socket): use the replica method"
        )));
    }
    authenticate(&mut conn, &target, &name)?;
    match spec.method {
        RedisMethod::Replica => open_replica(conn, &name, timeout),
        RedisMethod::Bgsave => open_bgsave(conn, &name, timeout),
    }
}

// ----- URLs

#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "Redis at [{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "Redis at {host}:{port}"),
            Endpoint::Unix(p) => write!(f, "Redis at {}", p.display()),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Target {
    endpoint: Endpoint,
    user: Option<String>,
    password: Option<String>,
}

fn percent_decode(s: &str, what: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            let byte = byte.ok_or_else(|| Error::invalid(format!("the Redis URL's {what} has a bad %-escape")))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid(format!("the Redis URL's {what} is not UTF-8 once decoded")))
}

fn parse_url(url: &str) -> Result<Target> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        Error::invalid("not a Redis URL: expected redis://[user:password@]host[:port][/db] or unix:///path")
    })?;
    match scheme.to_ascii_lowercase().as_str() {
        "redis" => {}
        "unix" | "redis+unix" => {
            if !rest.starts_with('/') || rest.contains('?') {
                return Err(Error::invalid(format!(
                    "the Redis URL {scheme}://{rest} does not name a socket: expected unix:///absolute/path"
                )));
            }
            return Ok(Target { endpoint: Endpoint::Unix(PathBuf::from(rest)), user: None, password: None });
        }
        "rediss" => {
            return Err(Error::invalid(
                "rediss:// (Redis over TLS) is not supported: use redis:// over a trusted network or a unix socket",
            ))
        }
        other => {
            return Err(Error::invalid(format!("not a Redis URL: the scheme {other:?} is not redis:// or unix://")))
        }
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) =
            v6.split_once(']').ok_or_else(|| Error::invalid("the Redis URL's IPv6 host has no closing bracket"))?;
        (host, after.strip_prefix(':').or(if after.is_empty() { None } else { Some(after) }))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(Error::invalid("the Redis URL has no host: expected redis://host[:port]"));
    }
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| Error::invalid(format!("the Redis URL's port {p:?} is not a port number")))?,
    };
    let db = path.strip_prefix('/').unwrap_or(path);
    if !(db.is_empty() || db.parse::<u32>().is_ok()) {
        return Err(Error::invalid(format!(
            "the Redis URL's path {path:?} is not a database number (and queries are not supported)"
        )));
    }
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (Some(user), Some(pass)),
            None => (Some(u), None),
        },
    };
    let user = user.filter(|u| !u.is_empty()).map(|u| percent_decode(u, "user")).transpose()?;
    let password = password.filter(|p| !p.is_empty()).map(|p| percent_decode(p, "password")).transpose()?;
    Ok(Target { endpoint: Endpoint::Tcp { host: host.to_string(), port }, user, password })
}

// ----- connecting and commands

/// Connects; returns the connection and whether the server is on this
/// machine (a loopback address or a unix socket).
fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<(Conn, bool)> {
    let name = endpoint.to_string();
    let fail = |e: io::Error| Error::io_sentence(format!("cannot connect to {name}"), e);
    let (stream, local) = match endpoint {
        Endpoint::Unix(path) => (Stream::Unix(UnixStream::connect(path).map_err(fail)?), true),
        Endpoint::Tcp { host, port } => {
            let addrs = (host.as_str(), *port).to_socket_addrs().map_err(|e| {
                Error::with_source(ErrorKind::InvalidInput, format!("cannot resolve the host of {name}: {e}"), e)
            })?;
            let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
            let mut found = None;
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(s) => {
                        found = Some((s, addr.ip().is_loopback()));
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let (s, local) = found.ok_or_else(|| fail(last))?;
            let _ = s.set_nodelay(true);
            (Stream::Tcp(s), local)
        }
    };
    stream.set_timeouts(timeout).map_err(fail)?;
    Ok((Conn::new(stream).map_err(fail)?, local))
}

/// An I/O error talking to the server, during `during`.
fn lost(name: &str, during: &str, e: io::Error) -> Error {
    let kind = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::UnexpectedEof => ErrorKind::Transient,
        io::ErrorKind::InvalidData => ErrorKind::Io,
        _ if io_is_transient(&e) => ErrorKind::Transient,
        _ => ErrorKind::Io,
    };
    let reason = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "no answer in time".to_string(),
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => io_reason(&e),
    };
    Error::with_source(kind, format!("{during} on {name} failed: {reason}"), e)
}

/// An error of the [`RdbReader`] (whose message names the source) as an
/// [`Error`].
fn reader_error(e: io::Error) -> Error {
    let kind = match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::TimedOut => ErrorKind::Transient,
        _ if io_is_transient(&e) => ErrorKind::Transient,
        _ => ErrorKind::Io,
    };
    Error::with_source(kind, e.to_string(), e)
}

/// An error reply as an [`Error`]: a missing password and missing
/// permissions said plainly.
fn refused(name: &str, command: &str, msg: &str) -> Error {
    if msg.starts_with("NOAUTH") {
        return Error::invalid(format!(
            "{name} requires a password ({msg}): put it in the URL or give a password file"
        ));
    }
    if msg.starts_with("NOPERM") {
        return Error::invalid(format!("{name} does not let this user run {command} ({msg})"));
    }
    Error::new(ErrorKind::Io, format!("{name} refused {command}: {msg}"))
}

/// Runs a command; an error reply is an [`Error`].
fn call(conn: &mut Conn, name: &str, args: &[&str]) -> Result<Reply> {
    let shown = args.first().copied().unwrap_or_default();
    match conn.call(args).map_err(|e| lost(name, shown, e))? {
        Reply::Error(msg) => Err(refused(name, &args.join(" "), &msg)),
        r => Ok(r),
    }
}

fn authenticate(conn: &mut Conn, target: &Target, name: &str) -> Result<()> {
    let Some(password) = &target.password else { return Ok(()) };
    let mut args = vec!["AUTH"];
    args.extend(target.user.as_deref());
    args.push(password);
    match conn.call(&args).map_err(|e| lost(name, "AUTH", e))? {
        Reply::Simple(ok) if ok == "OK" => Ok(()),
        Reply::Error(msg) => Err(Error::invalid(format!("{name} refused the credentials: {msg}"))),
        other => Err(Error::new(ErrorKind::Io, format!("{name} answered AUTH with {other:?}"))),
    }
}

// ----- the replica method

fn open_replica(mut conn: Conn, name: &str, timeout: Duration) -> Result<Box<dyn Read + Send>> {
    for (key, value) in [("capa", "eof"), ("rdb-only", "1")] {
        match conn.call(&["REPLCONF", key, value]).map_err(|e| lost(name, "REPLCONF", e))? {
            // older servers do not know rdb-only: they then follow the RDB
            // with the replication stream, which is not read
            Reply::Error(msg) if msg.starts_with("NOAUTH") || msg.starts_with("NOPERM") => {
                return Err(refused(name, "REPLCONF", &msg))
            }
            _ => {}
        }
    }
    conn.send(&[b"SYNC"]).map_err(|e| lost(name, "SYNC", e))?;
    let deadline = Instant::now() + timeout;
    let header = loop {
        let line = resp::read_line(&mut conn.reader).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::with_source(
                ErrorKind::Transient,
                format!(
                    "{name} closed the connection before sending its snapshot (a failed save? see the server's log)"
                ),
                e,
            ),
            _ => lost(name, "SYNC", e),
        })?;
        if !line.is_empty() {
            break String::from_utf8_lossy(&line).into_owned();
        }
        // a keepalive while the server prepares the snapshot
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorKind::Transient,
                format!("{name} did not start sending its snapshot within {} s of SYNC", timeout.as_secs()),
            ));
        }
    };
    let framing = if let Some(msg) = header.strip_prefix('-') {
        return Err(refused(name, "SYNC", msg));
    } else if let Some(mark) = header.strip_prefix("$EOF:") {
        let mark: [u8; MARK_LEN] = mark.as_bytes().try_into().map_err(|_| {
            Error::new(ErrorKind::Io, format!("{name} announced an end mark that is not {MARK_LEN} bytes long"))
        })?;
        Framing::Mark(mark)
    } else if let Some(len) = header.strip_prefix('$').and_then(|l| l.parse::<u64>().ok()) {
        Framing::Length(len)
    } else {
        let shown: String = header.chars().take(60).collect();
        return Err(Error::new(ErrorKind::Io, format!("{name} answered SYNC with {shown:?}, not an RDB payload")));
    };
    let what = format!("the RDB transfer from {name}");
    let mut reader = RdbReader::new(conn.reader, what, framing, timeout);
    reader.prefetch(9).map_err(reader_error)?;
    Ok(Box::new(reader))
}

// ----- the bgsave method

/// An integer reply (LASTSAVE).
fn int(conn: &mut Conn, name: &str, command: &str) -> Result<i64> {
    match call(conn, name, &[command])? {
        Reply::Int(i) => Ok(i),
        other => Err(Error::new(ErrorKind::Io, format!("{name} answered {command} with {other:?}"))),
    }
}

/// The server's clock (TIME): seconds and microseconds.
fn server_time(conn: &mut Conn, name: &str) -> Result<(i64, i64)> {
    if let Reply::Array(Some(items)) = call(conn, name, &["TIME"])? {
        let nums: Vec<i64> = items.iter().filter_map(|i| i.text()?.parse().ok()).collect();
        if let [s, us] = nums[..] {
            return Ok((s, us));
        }
    }
    Err(Error::new(ErrorKind::Io, format!("{name} answered TIME with something other than two numbers")))
}

/// `INFO persistence` as `key:value` pairs.
fn persistence(conn: &mut Conn, name: &str) -> Result<Vec<(String, String)>> {
    let text = call(conn, name, &["INFO", "persistence"])?.text().unwrap_or_default();
    Ok(text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect())
}

fn field<'a>(info: &'a [(String, String)], key: &str) -> &'a str {
    info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// Polls `INFO persistence` until `done` holds, or fails after `deadline`.
fn wait_for(
    conn: &mut Conn,
    name: &str,
    deadline: Instant,
    timeout: Duration,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Result<Vec<(String, String)>> {
    let mut pause = Duration::from_millis(20);
    loop {
        let info = persistence(conn, name)?;
        if done(&info) {
            return Ok(info);
        }
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorKind::Transient,
                format!("BGSAVE on {name} did not finish within {} s", timeout.as_secs()),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The value of `CONFIG GET key`.
fn config_get(conn: &mut Conn, name: &str, key: &str) -> Result<String> {
    let reply = call(conn, name, &["CONFIG", "GET", key]).map_err(|e| {
        e.context("the bgsave method asks where the dump file is (use the replica method where CONFIG is not allowed)")
    })?;
    if let Reply::Array(Some(items)) = reply {
        if let Some(v) = items.get(1).and_then(Reply::text) {
            return Ok(v);
        }
    }
    Err(Error::new(ErrorKind::Io, format!("{name} answered CONFIG GET {key} without a value")))
}

/// How far behind the request (the server's TIME, in whole seconds) a
/// fresh dump's mtime may read: the kernel stamps files from a clock that
/// lags by up to one tick (10 ms at the lowest HZ).
const MTIME_SLACK_MS: i64 = 50;

/// Whether a dump whose mtime is `mtime_ms` (ms since the epoch) was
/// written before a request sent in second `requested` of the server.
fn written_before(mtime_ms: i64, requested: i64) -> bool {
    mtime_ms + MTIME_SLACK_MS < requested.saturating_mul(1000)
}

fn open_bgsave(mut conn: Conn, name: &str, timeout: Duration) -> Result<Box<dyn Read + Send>> {
    let deadline = Instant::now() + timeout;
    let idle = |i: &[(String, String)]| {
        field(i, "rdb_bgsave_in_progress") == "0"
            && field(i, "aof_rewrite_in_progress") != "1"
            && field(i, "module_fork_in_progress") != "1"
    };
    // BGSAVE until our request starts a save of its own
    let requested = loop {
        let last = int(&mut conn, name, "LASTSAVE")?;
        let (now, micros) = server_time(&mut conn, name)?;
        if last > now {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "LASTSAVE of {name} ({last}) is ahead of its clock ({now}): a new save cannot be told from \
                     the last one (was the clock set back?); use the replica method"
                ),
            ));
        }
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorKind::Transient,
                format!("{name} did not start a BGSAVE for this backup within {} s", timeout.as_secs()),
            ));
        }
        if last == now {
            // a save finished this second: ours must be told from it
            std::thread::sleep(Duration::from_micros(1_000_000 - micros.clamp(0, 999_999) as u64));
            continue;
        }
        let reply = conn.call(&["BGSAVE"]).map_err(|e| lost(name, "BGSAVE", e))?;
        match reply {
            Reply::Simple(s) if s.starts_with("Background saving started") => break now,
            Reply::Error(msg) if msg.contains("in progress") || msg.contains("can't BGSAVE right now") => {
                // someone else's save (or an AOF rewrite, or a module's
                // child): too early for us
                wait_for(&mut conn, name, deadline, timeout, idle)?;
                std::thread::sleep(Duration::from_millis(50));
            }
            Reply::Error(msg) => return Err(refused(name, "BGSAVE", &msg)),
            other => return Err(Error::new(ErrorKind::Io, format!("{name} answered BGSAVE with {other:?}"))),
        }
    };
    let info = wait_for(&mut conn, name, deadline, timeout, |i| field(i, "rdb_bgsave_in_progress") == "0")?;
    let status = field(&info, "rdb_last_bgsave_status");
    if status != "ok" {
        return Err(Error::new(
            ErrorKind::Io,
            format!("BGSAVE on {name} failed (rdb_last_bgsave_status:{status}): see the server's log"),
        ));
    }
    let last = int(&mut conn, name, "LASTSAVE")?;
    let stale = |what: String| {
        Error::new(
            ErrorKind::Io,
            format!("BGSAVE on {name} left a stale dump: {what} is older than the request (server time {requested})"),
        )
    };
    if last < requested {
        return Err(stale(format!("LASTSAVE {last}")));
    }
    let dir = config_get(&mut conn, name, "dir")?;
    let file = config_get(&mut conn, name, "dbfilename")?;
    let path = Path::new(&dir).join(&file);
    let f = std::fs::File::open(&path)
        .map_err(|e| Error::io(format!("cannot open the dump file {} of {name}", path.display()), e))?;
    let meta = f.metadata().map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
    // Compared to the millisecond: the request is sent just after a second
    // begins (the loop above waits for one when a save ended in the
    // current one), and a file's mtime comes from the kernel's coarse
    // clock, up to a tick behind the server's TIME, so whole seconds would
    // call a dump written a few ms after the request older than it.
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_millis() as i64);
    if mtime.is_some_and(|m| written_before(m, requested)) {
        let age = SystemTime::now().duration_since(meta.modified().unwrap_or(UNIX_EPOCH)).unwrap_or_default();
        return Err(stale(format!("{} (modified {} s ago)", path.display(), age.as_secs())));
    }
    drop(conn);
    let what = format!("the dump file {} of {name}", path.display());
    let mut reader = RdbReader::new(f, what, Framing::Length(meta.len()), timeout);
    reader.prefetch(9).map_err(reader_error)?;
    Ok(Box::new(reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp { host: host.into(), port }
    }

    /// A dump stamped by the kernel's coarse clock a few ms before the
    /// second of the request is the fresh one; one from the second before
    /// is stale.
    #[test]
    fn a_dump_stamped_a_tick_early_is_not_stale() {
        let requested = 1_796_674_856;
        assert!(!written_before(requested * 1000 - 4, requested));
        assert!(!written_before(requested * 1000 + 20, requested));
        assert!(written_before(requested * 1000 - 900, requested));
        assert!(written_before((requested - 5) * 1000, requested));
    }

    #[test]
    fn parses_urls() {
        let t = parse_url("redis://127.0.0.1:6380").unwrap();
        assert_eq!(t, Target { endpoint: tcp("127.0.0.1", 6380), user: None, password: None });
        let t = parse_url("redis://localhost").unwrap();
        assert_eq!(t.endpoint, tcp("localhost", 6379));
        let t = parse_url("redis://:s%40cret%3A@db.example:7000/3").unwrap();
        assert_eq!((t.user, t.password.as_deref()), (None, Some("s@cret:")));
        assert_eq!(t.endpoint, tcp("db.example", 7000));
        let t = parse_url("redis://backup:pw@[::1]:6390/").unwrap();
        assert_eq!((t.user.as_deref(), t.password.as_deref()), (Some("backup"), Some("pw")));
        assert_eq!(t.endpoint, tcp("::1", 6390));
        assert_eq!(t.endpoint.to_string(), "Redis at [::1]:6390");
        assert_eq!(parse_url("redis://[::1]").unwrap().endpoint, tcp("::1", 6379));
        let t = parse_url("redis://only-user@h").unwrap();
        assert_eq!((t.user.as_deref(), t.password), (Some("only-user"), None));
        // the last @ ends the user info: an @ in the password works unescaped
        assert_eq!(parse_url("redis://:a@b@h").unwrap().password.as_deref(), Some("a@b"));
        let t = parse_url("unix:///run/redis/redis.sock").unwrap();
        assert_eq!(t.endpoint, Endpoint::Unix("/run/redis/redis.sock".into()));
        assert_eq!(t.endpoint.to_string(), "Redis at /run/redis/redis.sock");
        assert!(matches!(parse_url("redis+unix:///x.sock").unwrap().endpoint, Endpoint::Unix(_)));
        assert_eq!(parse_url("REDIS://h:1").unwrap().endpoint, tcp("h", 1));
    }

    #[test]
    fn rejects_bad_urls_clearly() {
        for (url, says) in [
            ("rediss://h:6379", "TLS"),
            ("127.0.0.1:6379", "not a Redis URL"),
            ("http://h", "scheme \"http\""),
            ("redis://", "no host"),
            ("redis://:pw@:6379", "no host"),
            ("redis://h:port", "port \"port\""),
            ("redis://h:0", "not a port number"),
            ("redis://h:70000", "not a port number"),
            ("redis://h/db1", "not a database number"),
            ("redis://h/0?timeout=1", "not a database number"),
            ("redis://[::1:6379", "closing bracket"),
            ("redis://:%zz@h", "bad %-escape"),
            ("unix://relative.sock", "does not name a socket"),
        ] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}");
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
        // a password never shows in an error
        let e = parse_url("redis://:hunter2@h:nope").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn spec_basics() {
        let mut spec = RedisSpec::new("redis://:hunter2@127.0.0.1:1");
        spec.password = Some("other".into());
        assert!(!format!("{spec:?}").contains("hunter2"));
        assert!(!format!("{spec:?}").contains("other"));
        assert_eq!(spec.describe().unwrap(), "Redis at 127.0.0.1:1");
        let e = open_rdb(&spec).err().expect("two passwords");
        assert!(e.to_string().contains("give only one"), "{e}");
        assert_eq!("bgsave".parse::<RedisMethod>().unwrap(), RedisMethod::Bgsave);
        assert_eq!("replica".parse::<RedisMethod>().unwrap(), RedisMethod::default());
        assert!("BGSAVE".parse::<RedisMethod>().is_err());
    }

    #[test]
    fn an_unreachable_server_is_transient() {
        // a port nothing listens on: bind one, note it, close it
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = open_rdb(&RedisSpec::new(format!("redis://127.0.0.1:{port}"))).err().expect("refused");
        assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
        assert_eq!(e.to_string(), format!("cannot connect to Redis at 127.0.0.1:{port}: connection refused"));
    }
}
