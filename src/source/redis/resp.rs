//! RESP2, the Redis wire protocol, as much of it as [`super`] needs:
//! commands out as arrays of bulk strings, replies in as the five RESP2
//! types, and a connection (TCP or unix socket) with timeouts.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

/// The longest simple-string, error or integer line accepted, and the
/// largest bulk string or array: bounds on what a confused peer can make
/// this allocate. (The RDB payload of `SYNC` is not read as a reply.)
const MAX_LINE: u64 = 64 * 1024;
const MAX_BULK: usize = 512 * 1024 * 1024;
const MAX_ARRAY: usize = 1024 * 1024;
const MAX_DEPTH: usize = 8;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the whole line after the `-`.
    Error(String),
    /// `:42`
    Int(i64),
    /// `$3\r\nfoo\r\n`; `$-1` is `None`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`; `*-1` is `None`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: a simple or bulk string (lossy UTF-8), an integer
    /// in decimal; `None` for errors, nulls and arrays.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
}

/// A command as RESP: an array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed in the middle of a reply")
}

/// Reads one line ending in `\r\n` (at most [`MAX_LINE`] bytes), without
/// the line end.
pub fn read_line<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() as u64 >= MAX_LINE { bad("a reply line is too long") } else { eof() });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

fn parse_len(digits: &[u8], max: usize) -> io::Result<Option<usize>> {
    let text = std::str::from_utf8(digits).map_err(|_| bad("a length is not a number"))?;
    let n: i64 = text.parse().map_err(|_| bad(format!("a length is not a number: {text:?}")))?;
    match n {
        -1 => Ok(None),
        n if n < 0 => Err(bad(format!("a negative length: {n}"))),
        n if n as u64 > max as u64 => Err(bad(format!("a length of {n} is larger than this client accepts"))),
        n => Ok(Some(n as usize)),
    }
}

/// Reads one reply.
pub fn read_reply<R: BufRead>(r: &mut R) -> io::Result<Reply> {
    read_nested(r, 0)
}

fn read_nested<R: BufRead>(r: &mut R, depth: usize) -> io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(bad("replies nested too deeply"));
    }
    let line = read_line(r)?;
    let (&kind, rest) = line.split_first().ok_or_else(|| bad("an empty reply line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Simple(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => text().parse().map(Reply::Int).map_err(|_| bad(format!("not an integer: {:?}", text()))),
        b'$' => {
            let Some(len) = parse_len(rest, MAX_BULK)? else { return Ok(Reply::Bulk(None)) };
            let mut data = vec![0; len + 2];
            r.read_exact(&mut data).map_err(|e| if e.kind() == io::ErrorKind::UnexpectedEof { eof() } else { e })?;
            if !data.ends_with(b"\r\n") {
                return Err(bad("a bulk string does not end in CRLF"));
            }
            data.truncate(len);
            Ok(Reply::Bulk(Some(data)))
        }
        b'*' => {
            let Some(len) = parse_len(rest, MAX_ARRAY)? else { return Ok(Reply::Array(None)) };
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(read_nested(r, depth + 1)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        other => Err(bad(format!("an unknown reply type {:?}", other as char))),
    }
}

/// A byte stream to a server: TCP or a unix socket.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Sets the read and write timeouts (each call that blocks longer fails
    /// with `WouldBlock` or `TimedOut`).
    pub fn set_timeouts(&self, t: std::time::Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(t)).and_then(|_| s.set_write_timeout(Some(t))),
            Stream::Unix(s) => s.set_read_timeout(Some(t)).and_then(|_| s.set_write_timeout(Some(t))),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// A connection: buffered reads, unbuffered writes of whole commands.
pub struct Conn {
    pub reader: BufReader<Stream>,
    writer: Stream,
}

impl Conn {
    pub fn new(stream: Stream) -> io::Result<Conn> {
        let writer = stream.try_clone()?;
        Ok(Conn { reader: BufReader::with_capacity(256 * 1024, stream), writer })
    }

    /// Sends a command without reading its reply.
    pub fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.writer.write_all(&encode(args))
    }

    /// Sends a command and reads its reply.
    pub fn call(&mut self, args: &[&str]) -> io::Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&args)?;
        read_reply(&mut self.reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut io::Cursor::new(bytes))
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(encode(&[b"AUTH", b"p w\r\n"]), b"*2\r\n$4\r\nAUTH\r\n$5\r\np w\r\n\r\n");
        assert_eq!(encode(&[]), b"*0\r\n");
    }

    #[test]
    fn parses_every_reply_type() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Simple("OK".into()));
        assert_eq!(parse(b"-ERR no\r\n").unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(parse(b":-12\r\n").unwrap(), Reply::Int(-12));
        assert_eq!(parse(b"$5\r\na\r\nbc\r\n").unwrap(), Reply::Bulk(Some(b"a\r\nbc".to_vec())));
        assert_eq!(parse(b"$0\r\n\r\n").unwrap(), Reply::Bulk(Some(Vec::new())));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Array(None));
        assert_eq!(
            parse(b"*2\r\n$3\r\ndir\r\n*1\r\n:1\r\n").unwrap(),
            Reply::Array(Some(vec![Reply::Bulk(Some(b"dir".to_vec())), Reply::Array(Some(vec![Reply::Int(1)]))]))
        );
        // a bare \n line end is accepted
        assert_eq!(parse(b"+OK\n").unwrap(), Reply::Simple("OK".into()));
    }

    #[test]
    fn reads_consecutive_replies() {
        let mut c = io::Cursor::new(&b"+OK\r\n:1\r\n$1\r\nx\r\n"[..]);
        assert_eq!(read_reply(&mut c).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(read_reply(&mut c).unwrap().text().as_deref(), Some("1"));
        assert_eq!(read_reply(&mut c).unwrap().text().as_deref(), Some("x"));
        assert_eq!(read_reply(&mut c).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn rejects_truncated_and_malformed_replies() {
        for (input, kind) in [
            (&b"+OK"[..], io::ErrorKind::UnexpectedEof),
            (b"$5\r\nab", io::ErrorKind::UnexpectedEof),
            (b"*2\r\n:1\r\n", io::ErrorKind::UnexpectedEof),
            (b"", io::ErrorKind::UnexpectedEof),
            (b"$3\r\nabcd\r\n", io::ErrorKind::InvalidData),
            (b"$-2\r\n", io::ErrorKind::InvalidData),
            (b"$x\r\n", io::ErrorKind::InvalidData),
            (b"$99999999999\r\n", io::ErrorKind::InvalidData),
            (b":1.5\r\n", io::ErrorKind::InvalidData),
            (b"!3\r\n", io::ErrorKind::InvalidData),
            (b"\r\n", io::ErrorKind::InvalidData),
        ] {
            let e = parse(input).unwrap_err();
            assert_eq!(e.kind(), kind, "{:?}: {e}", String::from_utf8_lossy(input));
        }
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert_eq!(parse(deep.as_bytes()).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let long = vec![b'+'; MAX_LINE as usize + 10];
        assert_eq!(parse(&long).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
