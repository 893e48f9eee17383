//! The Redis source (`cairn::source::redis::open_rdb`) against a real Redis
//! 7 server, driven through the library (the `run` command that will use it
//! does not exist yet), and against fake servers in the test.
//!
//! The server: `eval "$(bash scripts/redis-server.sh start /var/tmp/cairn-redis 56379)"`
//! exports `CAIRN_TEST_REDIS` (`redis://127.0.0.1:PORT`),
//! `CAIRN_TEST_REDIS_SOCKET` and `CAIRN_TEST_REDIS_DIR`. Without
//! `CAIRN_TEST_REDIS` the tests that need it print a loud
//! "skipped: CAIRN_TEST_REDIS not set" and pass, except when `CI` is set:
//! there they fail. The tests on that server hold one lock (they change its
//! settings and flush it); snapshots are compared with the server's data by
//! loading them into a private `redis-server` (unix socket only, in a temp
//! directory) and comparing `DEBUG DIGEST`, the digest of the whole dataset.
//! The fake-server tests need nothing.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn::error::ErrorKind;
use cairn::source::redis::{crc64, open_rdb, RedisMethod, RedisSpec};

use crate::common::unique_name;

/// Keeps the tests on the shared server apart.
pub(crate) static SERVER: Mutex<()> = Mutex::new(());

const KEYS: usize = 3000;

/// `$CAIRN_TEST_REDIS`, or `None` after a loud skip message (a panic when
/// `CI` is set).
pub(crate) fn redis_url(test: &str) -> Option<String> {
    if let Some(url) = std::env::var("CAIRN_TEST_REDIS").ok().filter(|v| !v.trim().is_empty()) {
        return Some(url.trim().to_string());
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: CAIRN_TEST_REDIS is not set, and CI is: CI must run the Redis tests \
             (scripts/test.sh starts the server)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {test}: skipped: CAIRN_TEST_REDIS not set \
         (eval \"$(bash scripts/redis-server.sh start /var/tmp/cairn-redis 56379)\" first) ***"
    );
    None
}

fn spec(url: &str, method: RedisMethod) -> RedisSpec {
    RedisSpec { method, timeout: Duration::from_secs(60), ..RedisSpec::new(url) }
}

/// The whole stream, or the first error.
fn read_all(spec: &RedisSpec) -> std::io::Result<Vec<u8>> {
    let mut r = open_rdb(spec).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map(|_| out)
}

/// `redis-cli ARGS...` (with `-u URL` or `-s SOCKET` in `args`); its
/// trimmed stdout. Panics when it fails or answers an error.
fn cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(args).output().expect("run redis-cli (installed with redis-server)");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !text.starts_with("ERR") && !text.starts_with("WRONGPASS"),
        "redis-cli {args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn on(url: &str, args: &[&str]) -> String {
    let mut all = vec!["-u", url];
    all.extend_from_slice(args);
    cli(&all)
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Empties the server and writes `KEYS` strings and some hashes, lists,
/// sets and sorted sets (through `redis-cli --pipe`).
pub(crate) fn populate(url: &str) {
    on(url, &["FLUSHALL"]);
    let mut cmds = Vec::new();
    for i in 0..KEYS {
        let (k, v) = (format!("key:{i}"), format!("value {i} {}", "x".repeat(i % 200)));
        cmds.extend(resp(&["SET", &k, &v]));
        if i % 10 == 0 {
            cmds.extend(resp(&["HSET", &format!("hash:{i}"), "a", &i.to_string(), "b", "bee"]));
            cmds.extend(resp(&["RPUSH", &format!("list:{i}"), "one", "two", &k]));
            cmds.extend(resp(&["SADD", "set", &k]));
            cmds.extend(resp(&["ZADD", "zset", &i.to_string(), &k]));
        }
    }
    let mut child = Command::new("redis-cli")
        .args(["-u", url, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli --pipe");
    child.stdin.take().expect("stdin").write_all(&cmds).expect("feed redis-cli --pipe");
    let out = child.wait_with_output().expect("redis-cli --pipe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("errors: 0"), "redis-cli --pipe: {text}");
}

/// A private `redis-server` on a unix socket in a temporary directory,
/// loading `rdb` at start; killed when dropped.
struct Private {
    child: Child,
    sock: PathBuf,
    dir: tempfile::TempDir,
}

impl Private {
    fn start(rdb: Option<&[u8]>, extra: &[&str]) -> Private {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(rdb) = rdb {
            std::fs::write(dir.path().join("dump.rdb"), rdb).expect("write the rdb");
        }
        let sock = dir.path().join("redis.sock");
        let d = dir.path().to_str().expect("utf-8 path");
        let s = sock.to_str().expect("utf-8 path").to_string();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket", &s, "--dir", d, "--dbfilename", "dump.rdb", "--save", ""])
            .args(["--daemonize", "no", "--logfile", "log", "--enable-debug-command", "yes"])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(extra)
            .current_dir(dir.path())
            .spawn()
            .expect("start a private redis-server");
        let p = Private { child, sock, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        // PONG, or NOAUTH from a server with requirepass: either way it runs
        let up = || {
            let o = Command::new("redis-cli").args(["-s", &s, "PING"]).output();
            o.is_ok_and(|o| o.stdout.starts_with(b"PONG") || o.stdout.starts_with(b"NOAUTH"))
        };
        while !up() {
            assert!(Instant::now() < deadline, "the private redis-server did not start: {}", p.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-s", self.sock.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        cli(&all)
    }

    fn url(&self) -> String {
        format!("unix://{}", self.sock.display())
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Loads `rdb` into a private server and checks it holds what `url` holds.
fn assert_loads_as(rdb: &[u8], url: &str, what: &str) {
    assert!(rdb.starts_with(b"REDIS"), "{what}: no RDB magic");
    let p = Private::start(Some(rdb), &[]);
    assert_eq!(p.cli(&["DBSIZE"]), on(url, &["DBSIZE"]), "{what}: DBSIZE");
    assert_eq!(p.cli(&["GET", "key:2999"]), on(url, &["GET", "key:2999"]), "{what}: key:2999");
    assert_eq!(p.cli(&["HGET", "hash:10", "a"]), "10", "{what}: hash:10");
    assert_eq!(p.cli(&["DEBUG", "DIGEST"]), on(url, &["DEBUG", "DIGEST"]), "{what}: the datasets differ");
}

fn log_lines(needle: &str) -> usize {
    let Ok(dir) = std::env::var("CAIRN_TEST_REDIS_DIR") else { return 0 };
    let log = std::fs::read_to_string(Path::new(&dir).join("server.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn replica_snapshots_diskless_and_disk_based_load_like_redis_cli() {
    let Some(url) = redis_url("redis::replica_snapshots_diskless_and_disk_based_load_like_redis_cli") else { return };
    let _guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    populate(&url);
    for (diskless, target) in [("yes", "replicas sockets"), ("no", "disk")] {
        on(&url, &["CONFIG", "SET", "repl-diskless-sync", diskless]);
        let before = log_lines(&format!("with target: {target}"));
        let t = Instant::now();
        let ours = read_all(&spec(&url, RedisMethod::Replica)).expect("the replica snapshot");
        eprintln!("replica (diskless {diskless}): {} bytes in {:?}", ours.len(), t.elapsed());
        if std::env::var_os("CAIRN_TEST_REDIS_DIR").is_some() {
            assert_eq!(log_lines(&format!("with target: {target}")), before + 1, "not a sync to {target}");
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("cli.rdb");
        on(&url, &["--rdb", file.to_str().expect("utf-8 path")]);
        let theirs = std::fs::read(&file).expect("redis-cli's rdb");
        // not byte-equal (the aux fields hold times and memory use)
        assert!(ours.len().abs_diff(theirs.len()) < 64, "{} vs {} bytes", ours.len(), theirs.len());
        assert_loads_as(&ours, &url, &format!("ours, diskless {diskless}"));
        assert_loads_as(&theirs, &url, &format!("redis-cli's, diskless {diskless}"));
    }
    on(&url, &["CONFIG", "SET", "repl-diskless-sync", "yes"]);
}

#[test]
fn bgsave_reads_a_fresh_dump_even_behind_another_save() {
    let Some(url) = redis_url("redis::bgsave_reads_a_fresh_dump_even_behind_another_save") else { return };
    let _guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    populate(&url);
    let saves = || {
        on(&url, &["INFO", "persistence"])
            .lines()
            .find_map(|l| l.strip_prefix("rdb_saves:").map(|v| v.trim().parse::<u64>().expect("rdb_saves")))
            .expect("rdb_saves")
    };
    let s0 = saves();
    // twice in a row: the second starts within the second the first ended
    for round in 0..2 {
        let t = Instant::now();
        let rdb = read_all(&spec(&url, RedisMethod::Bgsave)).expect("the bgsave dump");
        eprintln!("bgsave round {round}: {} bytes in {:?}", rdb.len(), t.elapsed());
        assert_loads_as(&rdb, &url, "the bgsave dump");
    }
    assert_eq!(saves(), s0 + 2);
    // someone else's slow save runs when ours is asked for; a key written
    // after it started must be in our snapshot
    on(&url, &["CONFIG", "SET", "rdb-key-save-delay", "100"]);
    on(&url, &["BGSAVE"]);
    on(&url, &["SET", "written-after", "the other save began"]);
    let t = Instant::now();
    let got = read_all(&spec(&url, RedisMethod::Bgsave));
    on(&url, &["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    let rdb = got.expect("the bgsave dump behind another save");
    eprintln!("bgsave behind another save: {} bytes in {:?}", rdb.len(), t.elapsed());
    assert_eq!(saves(), s0 + 4, "the other save and ours");
    assert_loads_as(&rdb, &url, "the dump taken behind another save");
}

#[test]
fn a_failed_bgsave_is_an_error_naming_its_status() {
    let Some(url) = redis_url("redis::a_failed_bgsave_is_an_error_naming_its_status") else { return };
    if !crate::common::is_root() {
        eprintln!("\n*** redis::a_failed_bgsave_is_an_error_naming_its_status: skipped: not root ***");
        return;
    }
    let _guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    on(&url, &["SET", "k", "v"]);
    let dir = on(&url, &["CONFIG", "GET", "dir"]).lines().nth(1).expect("dir").to_string();
    // the dump file's name is taken by a directory: the rename that ends
    // the save fails
    let blocked = Path::new(&dir).join("cairn-blocked.rdb");
    std::fs::create_dir_all(blocked.join("sub")).expect("mkdir");
    struct Restore<'a>(&'a str, &'a Path);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = Command::new("redis-cli").args(["-u", self.0, "CONFIG", "SET", "dbfilename", "dump.rdb"]).output();
            let _ = std::fs::remove_dir_all(self.1);
        }
    }
    let _restore = Restore(&url, &blocked);
    on(&url, &["CONFIG", "SET", "dbfilename", "cairn-blocked.rdb"]);
    let e = open_rdb(&spec(&url, RedisMethod::Bgsave)).err().expect("a failed BGSAVE is an error");
    let host = url.trim_start_matches("redis://");
    assert_eq!(
        e.to_string(),
        format!("BGSAVE on Redis at {host} failed (rdb_last_bgsave_status:err): see the server's log")
    );
    assert_eq!(e.kind(), ErrorKind::Io);
}

#[test]
fn passwords_users_and_permissions() {
    let Some(url) = redis_url("redis::passwords_users_and_permissions") else { return };
    let _guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    populate(&url);
    let user = unique_name("cairn-test");
    let nosync = unique_name("cairn-nosync");
    on(&url, &["ACL", "SETUSER", &user, "on", ">right-pw", "~*", "&*", "+@all"]);
    on(&url, &["ACL", "SETUSER", &nosync, "on", ">pw", "~*", "&*", "+@all", "-sync", "-psync"]);
    let host = url.trim_start_matches("redis://");
    let with = |cred: &str| format!("redis://{cred}@{host}");

    let e = open_rdb(&spec(&with(&format!("{user}:hunter2-wrong")), RedisMethod::Replica)).err().expect("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("Redis at {host} refused the credentials: WRONGPASS")), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");

    // the password from a password file, the user from the URL
    let mut s = spec(&with(&user), RedisMethod::Replica);
    s.password = Some("right-pw".into());
    let rdb = read_all(&s).expect("snapshot as the ACL user");
    assert_loads_as(&rdb, &url, "the ACL user's snapshot");

    let e = open_rdb(&spec(&with(&format!("{nosync}:pw")), RedisMethod::Replica)).err().expect("NOPERM");
    assert!(e.to_string().starts_with(&format!("Redis at {host} does not let this user run SYNC (NOPERM")), "{e}");

    // a unix socket (no password needed for the default user)
    if let Ok(sock) = std::env::var("CAIRN_TEST_REDIS_SOCKET") {
        let rdb = read_all(&spec(&format!("unix://{sock}"), RedisMethod::Bgsave)).expect("bgsave over the socket");
        assert_loads_as(&rdb, &url, "the snapshot over the unix socket");
    }
    on(&url, &["ACL", "DELUSER", &user, &nosync]);

    // a server with requirepass: no password is a clear error; the
    // password file's over a unix socket works
    let p = Private::start(None, &["--requirepass", "sesame"]);
    let sock = p.sock.display().to_string();
    let e = open_rdb(&spec(&p.url(), RedisMethod::Replica)).err().expect("NOAUTH");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().starts_with(&format!("Redis at {sock} requires a password (NOAUTH")), "{e}");
    let mut s = spec(&p.url(), RedisMethod::Replica);
    s.password = Some("sesame".into());
    let rdb = read_all(&s).expect("snapshot with requirepass");
    assert!(rdb.starts_with(b"REDIS"));
}

#[test]
fn a_server_killed_mid_transfer_is_a_read_error() {
    if redis_url("redis::a_server_killed_mid_transfer_is_a_read_error").is_none() {
        return;
    }
    for diskless in ["yes", "no"] {
        let mut p = Private::start(None, &["--rdbcompression", "no", "--repl-diskless-sync", diskless]);
        p.cli(&["DEBUG", "POPULATE", "300000", "key", "100"]);
        let mut r = open_rdb(&spec(&p.url(), RedisMethod::Replica)).expect("open the private server's rdb");
        let mut first = vec![0; 1 << 20];
        r.read_exact(&mut first).expect("the first MiB");
        assert!(first.starts_with(b"REDIS"));
        p.child.kill().expect("kill the server");
        let _ = p.child.wait();
        let mut rest = Vec::new();
        let e = r.read_to_end(&mut rest).expect_err("a cut-short transfer must not end cleanly");
        eprintln!("killed at {} MiB + {} bytes (diskless {diskless}): {e}", 1, rest.len());
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        let sock = p.sock.display().to_string();
        assert!(e.to_string().starts_with(&format!("the RDB transfer from Redis at {sock} was cut short")), "{e}");
    }
}

// ----- fake servers

/// A valid RDB of about `len` bytes.
fn fake_rdb(len: usize) -> Vec<u8> {
    let mut v = b"REDIS0010".to_vec();
    v.extend((0..len).map(|i| (i * 7 % 251) as u8));
    v.push(0xff);
    let crc = crc64(0, &v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// Serves one connection: answers every command before SYNC with `+OK`,
/// then sends `reply` and closes. Returns the URL.
fn fake_server(reply: Vec<u8>) -> String {
    fake_server_on(std::net::Ipv4Addr::LOCALHOST.into(), reply)
}

fn fake_server_on(ip: std::net::IpAddr, reply: Vec<u8>) -> String {
    let l = TcpListener::bind((ip, 0)).expect("bind");
    let url = format!("redis://{}", l.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut w: TcpStream = s;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let n: usize = line.trim().trim_start_matches('*').parse().expect("an array");
            let mut args = Vec::new();
            for _ in 0..n {
                let mut len = String::new();
                r.read_line(&mut len).expect("a bulk length");
                let mut arg = vec![0; len.trim().trim_start_matches('$').parse::<usize>().expect("len") + 2];
                r.read_exact(&mut arg).expect("a bulk");
                args.push(String::from_utf8_lossy(&arg[..arg.len() - 2]).into_owned());
            }
            if args[0] == "SYNC" {
                let _ = w.write_all(&reply);
                return;
            }
            w.write_all(b"+OK\r\n").expect("reply");
        }
    });
    url
}

#[test]
fn fake_servers_cut_short_or_damaged_transfers_are_read_errors() {
    let rdb = fake_rdb(100_000);
    let mark = "0123456789abcdef0123456789abcdef01234567";
    let framed = |header: &str, body: &[u8], trailer: &[u8]| {
        let mut v = header.as_bytes().to_vec();
        v.extend_from_slice(body);
        v.extend_from_slice(trailer);
        v
    };
    let len_header = format!("\n\n${}\r\n", rdb.len());
    let eof_header = format!("\n$EOF:{mark}\r\n");

    // whole transfers, both forms, with keepalives first
    for (what, reply) in
        [("length", framed(&len_header, &rdb, b"")), ("mark", framed(&eof_header, &rdb, mark.as_bytes()))]
    {
        let got = read_all(&spec(&fake_server(reply), RedisMethod::Replica)).expect(what);
        assert!(got == rdb, "{what}: the bytes differ");
    }
    // cut short: the connection closes early
    for (what, reply, says) in [
        ("length", framed(&len_header, &rdb[..60_000], b""), "was cut short after 60000 bytes of the 100018 announced"),
        (
            "mark",
            framed(&eof_header, &rdb[..60_000], b""),
            "was cut short after 60000 bytes without the end-of-transfer mark",
        ),
        (
            "mark, short",
            framed(&eof_header, &rdb[..60_000], mark.as_bytes()),
            "does not end with the RDB end-of-file opcode",
        ),
    ] {
        let url = fake_server(reply);
        let e = read_all(&spec(&url, RedisMethod::Replica)).expect_err(what);
        let host = url.trim_start_matches("redis://");
        let want = format!("the RDB transfer from Redis at {host} {says}");
        assert!(e.to_string().starts_with(&want), "{what}: {e}");
    }
    // damaged in flight
    let mut bad = rdb.clone();
    bad[70_000] ^= 0x10;
    let e = read_all(&spec(&fake_server(framed(&len_header, &bad, b"")), RedisMethod::Replica)).expect_err("crc");
    assert!(e.to_string().contains("fails its checksum"), "{e}");
    // not an RDB at all: refused before the reader is handed out
    let url = fake_server(framed("$20\r\n", b"hello, not an RDB...", b""));
    let e = open_rdb(&spec(&url, RedisMethod::Replica)).err().expect("no magic");
    assert!(e.to_string().contains("does not start with the RDB magic REDIS"), "{e}");
    // SYNC refused
    let url = fake_server(b"-ERR Can't SYNC while not connected with my master\r\n".to_vec());
    let e = open_rdb(&spec(&url, RedisMethod::Replica)).err().expect("refused");
    let host = url.trim_start_matches("redis://");
    assert_eq!(
        e.to_string(),
        format!("Redis at {host} refused SYNC: ERR Can't SYNC while not connected with my master")
    );
    // the server closes before the payload (a failed save on its side)
    let e = open_rdb(&spec(&fake_server(b"\n\n".to_vec()), RedisMethod::Replica)).err().expect("closed");
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(
        e.to_string()
            .ends_with("closed the connection before sending its snapshot (a failed save? see the server's log)"),
        "{e}"
    );

    // the bgsave method on a server that is not on loopback: refused
    // (an address of this machine's own, where it has one besides loopback)
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|u| u.connect("192.0.2.1:9").map(|_| u));
    match probe.and_then(|u| u.local_addr()).map(|a| a.ip()) {
        Ok(ip) if !ip.is_loopback() && !ip.is_unspecified() => {
            let url = fake_server_on(ip, Vec::new());
            let e = open_rdb(&spec(&url, RedisMethod::Bgsave)).err().expect("not local");
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            let host = url.trim_start_matches("redis://");
            assert!(e.to_string().contains(&format!("but Redis at {host} is not on this machine")), "{e}");
        }
        other => eprintln!("no address besides loopback ({other:?}): the remote-bgsave check is skipped"),
    }
}

#[test]
fn run_backs_up_redis_by_both_methods_and_drill_verifies_it() {
    let Some(url) = redis_url("run_backs_up_redis_by_both_methods_and_drill_verifies_it") else { return };
    let _guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    populate(&url);
    let job = crate::job::Job::new(&format!(
        r#"
[backup]
host = "db1"

[[backup.snapshots]]
redis = "{url}"

[[backup.snapshots]]
name = "cache-bgsave"
redis = {{ url = "{url}", method = "bgsave", filename = "cache.rdb" }}
"#
    ));
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("redis: snapshot ") && out.contains("cache-bgsave: snapshot "), "{out}");
    for file in ["redis.rdb", "cache.rdb"] {
        let o = job.cmd(&["dump", "latest", file]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_loads_as(&o.stdout, &url, file);
    }
    let (code, out, err) = job.out(&["drill"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("/redis.rdb: ") && out.contains("/cache.rdb: ") && out.contains("drill passed: 2 of 2"),
        "{out}"
    );
    // A server that does not answer fails its source with 75 (try later).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        &job.config,
        std::fs::read_to_string(&job.config).unwrap().replace(&url, &format!("redis://127.0.0.1:{dead}")),
    )
    .unwrap();
    let (code, out, _) = job.out(&["run"]);
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("redis: FAILED: ") && out.contains(&format!("127.0.0.1:{dead}")), "{out}");
}
