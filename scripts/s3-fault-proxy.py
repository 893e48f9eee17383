#!/usr/bin/env python3
"""s3-fault-proxy.py — an HTTP/1.1 reverse proxy in front of an S3 server
that counts requests and injects faults. Python 3 standard library only.

    s3-fault-proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:7480 \
        [--fail-every N] [--fail-first N] [--status 503] [--only PUT,GET] \
        [--counts FILE] [-v]

First line on stdout: `port=NNNN` (the port it listens on, also when one was
given), then it serves until killed (SIGTERM/SIGINT).

Forwarding is byte-for-byte: the request line, every header (Host and all
signed headers included, original case and order) and the body go upstream
unchanged, so SigV4 signatures stay valid; the upstream's status line,
headers and body come back unchanged. Bodies are streamed, framed by
Content-Length or Transfer-Encoding: chunked (relayed with its chunk framing).

Connections: each client connection gets its own upstream connection, opened
on its first request and kept alive across its requests (so client keep-alive
maps 1:1 onto upstream keep-alive; Connection headers pass through as is).
If either side says `Connection: close` (or the client speaks HTTP/1.0
without keep-alive, or a response is delimited by EOF), both are closed after
that response. An idle upstream connection that the server closed is noticed
before reuse and reopened. If the upstream cannot be reached, or drops the
connection mid-request, the client connection is closed without a response,
so the client sees the same transport error as without the proxy.
`Expect: 100-continue` is answered by the proxy itself (100 Continue to the
client, the header still goes upstream, whose own 100 is swallowed).

Faults (the request is answered by the proxy and not forwarded):
  --fail-first N   requests 1..N fail
  --fail-every N   requests N, 2N, 3N, ... fail
  --only KINDS     only requests of these kinds (see below) are numbered and
                   may fail, e.g. --only PUT or --only GET,LIST
  --status S       503 (default: S3 `SlowDown`), 500 (`InternalError`), also
                   400 403 404 429 501 502 504 with matching S3 codes; 0 = no
                   response: the request (and its body) is read, then the
                   connection is closed (a reset mid-request, for retry tests)
A failed request gets an S3 XML <Error> body with Content-Length; a request
body that was sent is read and discarded first so the connection stays usable,
except with Expect: 100-continue, where the error is sent at once and the
connection closed (the client has not sent the body).

Control endpoint (for tests; never forwarded, never counted; S3 bucket names
cannot start with `_`):
  GET /__proxy/counts                 the counts as JSON
  PUT /__proxy/fail-next?n=N&status=S the next N requests fail (S default --status)
  PUT /__proxy/reset                  counts to zero, no pending fail-next

--counts FILE: the counts as JSON, rewritten atomically after each request
(also as soon as a request's head arrives, so a client that has its response
already sees it counted):
  {"GET":..,"HEAD":..,"PUT":..,"POST":..,"DELETE":..,"LIST":..,"OTHER":..,
   "injected":..,"total":..,"bytes_up":..,"bytes_down":..}
Every request counts once under its kind (LIST = a GET on a bucket path —
`/bucket` or `/bucket/` — with no query or with `list-type`, `prefix`,
`delimiter`, `marker` or `continuation-token` in it; a GET of an object or of
`/` is GET), injected requests also count under their kind; total = sum of
kinds; `injected` = how many were answered with a fault; bytes_up/bytes_down =
request/response body bytes (headers not included).
"""

import argparse
import json
import os
import select
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

KINDS = ["GET", "HEAD", "PUT", "POST", "DELETE", "LIST", "OTHER"]
MAX_LINE = 65536
MAX_HEADERS = 200
BUF = 256 * 1024

ERROR_CODES = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    501: ("NotImplemented", "A header you provided implies functionality that is not implemented."),
    502: ("BadGateway", "Injected bad gateway."),
    503: ("SlowDown", "Please reduce your request rate."),
    504: ("GatewayTimeout", "Injected gateway timeout."),
    429: ("TooManyRequests", "Please reduce your request rate."),
    400: ("BadRequest", "Injected bad request."),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
}
REASONS = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


class Closed(Exception):
    """A peer closed or broke its connection: drop the client connection."""


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.counts = {}
        self.seq = 0          # requests numbered for fault injection
        self.fail_next = 0
        self.fail_next_status = args.status
        self.only = set(k.strip().upper() for k in args.only.split(",")) if args.only else None
        self.reset()

    def reset(self):
        self.counts = {k: 0 for k in KINDS}
        self.counts.update(injected=0, total=0, bytes_up=0, bytes_down=0)
        self.seq = 0
        self.fail_next = 0

    def start_request(self, kind):
        """Count a request; return the status to inject, or None."""
        with self.lock:
            self.counts[kind] += 1
            self.counts["total"] += 1
            fault = None
            if self.fail_next > 0:
                self.fail_next -= 1
                fault = self.fail_next_status
            elif self.only is None or kind in self.only:
                self.seq += 1
                a = self.args
                if (a.fail_first and self.seq <= a.fail_first) or \
                   (a.fail_every and self.seq % a.fail_every == 0):
                    fault = a.status
            if fault is not None:
                self.counts["injected"] += 1
            self._write()
            return fault

    def add_bytes(self, up, down):
        with self.lock:
            self.counts["bytes_up"] += up
            self.counts["bytes_down"] += down
            self._write()

    def snapshot(self):
        with self.lock:
            return dict(self.counts)

    def _write(self):
        path = self.args.counts
        if not path:
            return
        tmp = "%s.tmp.%d" % (path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(self.counts, f, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)


def request_kind(method, target):
    if method == "GET":
        path, _, query = target.partition("?")
        if path.startswith("http://") or path.startswith("https://"):
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        segs = [s for s in path.split("/") if s]
        if len(segs) == 1 and (path.endswith("/") or path.count("/") == 1):
            keys = {k for k, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
            if not query or keys & {"list-type", "prefix", "delimiter", "marker",
                                    "continuation-token", "start-after"}:
                return "LIST"
        return "GET"
    return method if method in KINDS else "OTHER"


def read_head(rfile):
    """Read a request/response head; return (first_line, [(name, value)], raw
    bytes) or None on a clean EOF before any byte."""
    lines = []
    first = rfile.readline(MAX_LINE + 1)
    # tolerate empty lines before a request (RFC 7230 3.5)
    while first in (b"\r\n", b"\n"):
        first = rfile.readline(MAX_LINE + 1)
    if not first:
        return None
    if len(first) > MAX_LINE or not first.endswith(b"\n"):
        raise Closed("bad or truncated start line")
    raw = [first]
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line or not line.endswith(b"\n"):
            raise Closed("truncated head")
        raw.append(line)
        if line in (b"\r\n", b"\n"):
            break
        if len(raw) > MAX_HEADERS:
            raise Closed("too many headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise Closed("bad header line")
        lines.append((name.strip().lower(), value.strip()))
    return first.decode("latin-1").rstrip("\r\n"), lines, b"".join(raw)


def header(headers, name):
    for k, v in headers:
        if k == name:
            return v
    return None


def tokens(headers, name):
    out = set()
    for k, v in headers:
        if k == name:
            out.update(t.strip().lower() for t in v.split(","))
    return out


def copy_exact(src, dst_sock, n):
    left = n
    while left > 0:
        data = src.read(min(left, BUF))
        if not data:
            raise Closed("EOF inside a body")
        if dst_sock is not None:
            dst_sock.sendall(data)
        left -= len(data)
    return n


def copy_chunked(src, dst_sock):
    """Relay a chunked body with its framing; return the payload size."""
    total = 0
    out = dst_sock.sendall if dst_sock is not None else (lambda b: None)
    while True:
        line = src.readline(MAX_LINE + 1)
        if not line or not line.endswith(b"\n"):
            raise Closed("EOF inside chunked body")
        out(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise Closed("bad chunk size")
        if size == 0:
            while True:
                t = src.readline(MAX_LINE + 1)
                if not t or not t.endswith(b"\n"):
                    raise Closed("EOF in trailers")
                out(t)
                if t in (b"\r\n", b"\n"):
                    return total
        copy_exact(src, dst_sock, size + 2)
        total += size


def copy_until_eof(src, dst_sock):
    total = 0
    while True:
        data = src.read1(BUF)
        if not data:
            return total
        dst_sock.sendall(data)
        total += len(data)


def relay_body(headers, src, dst_sock):
    """Relay (or, with dst_sock None, drain) a request body."""
    if "chunked" in tokens(headers, "transfer-encoding"):
        return copy_chunked(src, dst_sock)
    cl = header(headers, "content-length")
    if cl:
        try:
            n = int(cl)
        except ValueError:
            raise Closed("bad Content-Length")
        return copy_exact(src, dst_sock, n)
    return 0


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.state = self.server.state
        self.args = self.server.state.args
        self.csock = self.request
        self.csock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.csock.settimeout(self.args.idle_timeout)
        self.crfile = self.csock.makefile("rb", buffering=BUF)
        self.usock = None
        self.urfile = None

    def finish(self):
        self.close_upstream()
        for f in (self.crfile,):
            try:
                f.close()
            except OSError:
                pass

    def log(self, msg):
        if self.args.verbose:
            sys.stderr.write("[proxy %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
            sys.stderr.flush()

    def close_upstream(self):
        if self.usock is not None:
            try:
                self.urfile.close()
                self.usock.close()
            except OSError:
                pass
        self.usock = self.urfile = None

    def upstream(self):
        if self.usock is not None:
            # an idle keep-alive connection the server has closed is readable (EOF)
            r, _, _ = select.select([self.usock], [], [], 0)
            if r:
                self.close_upstream()
        if self.usock is None:
            try:
                self.usock = socket.create_connection(self.server.upstream, timeout=self.args.upstream_timeout)
            except OSError as e:
                raise Closed("upstream unreachable: %s" % e)
            self.usock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.urfile = self.usock.makefile("rb", buffering=BUF)
        return self.usock

    def handle(self):
        try:
            while self.one_request():
                pass
        except (Closed, OSError, socket.timeout) as e:
            self.log("connection closed: %s" % e)

    def send_simple(self, status, body, ctype, close, head_only=False, extra=()):
        reason = REASONS.get(status, "Error") if status >= 400 else "OK"
        hdrs = ["HTTP/1.1 %d %s" % (status, reason),
                "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
                "Content-Type: %s" % ctype,
                "Content-Length: %d" % len(body)]
        hdrs.extend(extra)
        hdrs.append("Connection: %s" % ("close" if close else "keep-alive"))
        data = ("\r\n".join(hdrs) + "\r\n\r\n").encode("latin-1")
        if not head_only:
            data += body
        self.csock.sendall(data)

    def one_request(self):
        """Serve one request; return True to keep the client connection."""
        head = read_head(self.crfile)
        if head is None:
            return False
        first, headers, raw = head
        parts = first.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise Closed("bad request line %r" % first)
        method, target, version = parts
        conn_tokens = tokens(headers, "connection")
        client_close = "close" in conn_tokens or (version == "HTTP/1.0" and "keep-alive" not in conn_tokens)
        expect = "100-continue" in tokens(headers, "expect")
        has_body = "chunked" in tokens(headers, "transfer-encoding") or \
            (header(headers, "content-length") or "0").strip() not in ("", "0")

        if target.startswith("/__proxy/"):
            return self.control(method, target, headers, client_close, expect and has_body)

        kind = request_kind(method, target)
        fault = self.state.start_request(kind)
        if fault is not None:
            return self.inject(fault, method, target, headers, client_close, expect and has_body)

        # ---- forward
        usock = self.upstream()
        try:
            usock.sendall(raw)
        except OSError as e:
            raise Closed("upstream send: %s" % e)
        up = 0
        if has_body:
            if expect:
                self.csock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                up = relay_body(headers, self.crfile, usock)
            except BrokenPipeError:
                # the server answered early and closed; its response may be readable
                up = 0
                client_close = True
        # ---- response (skip the upstream's 100s; relay other 1xx)
        while True:
            rhead = read_head(self.urfile)
            if rhead is None:
                raise Closed("upstream closed before responding")
            rfirst, rheaders, rraw = rhead
            try:
                status = int(rfirst.split(" ", 2)[1])
            except (IndexError, ValueError):
                raise Closed("bad status line %r" % rfirst)
            if 100 <= status < 200:
                if status != 100:
                    self.csock.sendall(rraw)
                continue
            break
        self.csock.sendall(rraw)
        server_close = "close" in tokens(rheaders, "connection") or rfirst.startswith("HTTP/1.0")
        down = 0
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in tokens(rheaders, "transfer-encoding"):
            down = copy_chunked(self.urfile, self.csock)
        elif header(rheaders, "content-length") is not None:
            try:
                n = int(header(rheaders, "content-length"))
            except ValueError:
                raise Closed("bad upstream Content-Length")
            down = copy_exact(self.urfile, self.csock, n)
        else:
            down = copy_until_eof(self.urfile, self.csock)
            server_close = True
        self.state.add_bytes(up, down)
        self.log("%s %s -> %d (%s, up %d, down %d)" % (method, target, status, kind, up, down))
        if server_close:
            self.close_upstream()
        return not (client_close or server_close)

    def inject(self, status, method, target, headers, client_close, expect_body):
        code, msg = ERROR_CODES.get(status, ("ServiceUnavailable" if status >= 500 else "InjectedFault",
                                             "Injected fault."))
        rid = "injected-%d-%d" % (os.getpid(), int(time.time() * 1e6))
        resource = target.partition("?")[0]
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
                '<Resource>%s</Resource><RequestId>%s</RequestId></Error>'
                % (code, msg, xml_escape(resource), rid)).encode()
        close = client_close or expect_body
        if not expect_body:
            relay_body(headers, self.crfile, None)   # drain what the client sent
        if status == 0:
            self.log("%s %s -> injected connection drop" % (method, target))
            raise Closed("injected connection drop")
        extra = ["x-amz-request-id: %s" % rid]
        if status in (503, 429):
            extra.append("Retry-After: 0")
        self.send_simple(status, body, "application/xml", close, head_only=(method == "HEAD"), extra=extra)
        self.log("%s %s -> injected %d" % (method, target, status))
        return not close

    def control(self, method, target, headers, client_close, expect_body):
        if expect_body:
            self.csock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        relay_body(headers, self.crfile, None)
        path, _, query = target.partition("?")
        q = dict(urllib.parse.parse_qsl(query))
        st = self.state
        if path == "/__proxy/counts":
            body = json.dumps(st.snapshot()).encode()
        elif path == "/__proxy/fail-next" and method in ("PUT", "POST"):
            with st.lock:
                st.fail_next = int(q.get("n", "1"))
                st.fail_next_status = int(q.get("status", st.args.status))
            body = b'{"ok":true}'
        elif path == "/__proxy/reset" and method in ("PUT", "POST"):
            with st.lock:
                st.reset()
                st._write()
            body = b'{"ok":true}'
        else:
            self.send_simple(404, b'{"error":"unknown control path"}', "application/json", client_close)
            return not client_close
        self.send_simple(200, body, "application/json", client_close)
        return not client_close


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    address_family = socket.AF_INET
    allow_reuse_address = True
    request_queue_size = 128


def hostport(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % s)
    return host.strip("[]"), int(port)


def main():
    ap = argparse.ArgumentParser(description="HTTP/1.1 reverse proxy for S3 with request counts and injected faults")
    ap.add_argument("--listen", type=hostport, required=True, help="HOST:PORT (port 0 = any free port)")
    ap.add_argument("--upstream", type=hostport, required=True, help="HOST:PORT of the S3 server")
    ap.add_argument("--fail-every", type=int, default=0, metavar="N")
    ap.add_argument("--fail-first", type=int, default=0, metavar="N")
    ap.add_argument("--status", type=int, default=503)
    ap.add_argument("--only", default="", metavar="KINDS", help="comma list of kinds that faults apply to")
    ap.add_argument("--counts", metavar="FILE")
    ap.add_argument("--idle-timeout", type=float, default=300.0, help="client socket timeout, s")
    ap.add_argument("--upstream-timeout", type=float, default=300.0, help="upstream socket timeout, s")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per request on stderr")
    args = ap.parse_args()

    state = State(args)
    if args.counts:
        with state.lock:
            state._write()
    if ":" in args.listen[0]:
        Server.address_family = socket.AF_INET6
    srv = Server(args.listen, Handler)
    srv.state = state
    srv.upstream = args.upstream
    print("port=%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
