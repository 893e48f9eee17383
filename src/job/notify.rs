//! `[notify]`: the run's outcome, sent over HTTP.
//!
//! - `healthchecks = URL`: healthchecks.io's protocol (also served by
//!   self-hosted healthchecks and compatible monitors): `URL/start` when the
//!   run starts, `URL` on success with the summary as the body, `URL/fail` on
//!   failure with the log's tail as the body.
//! - `webhook = URL`: the run's JSON summary, POSTed.
//!
//! A notification that cannot be delivered (after three tries) is a
//! warning the caller prints; it does not change the run's outcome (the
//! backups are what they are), and a missed ping is what the monitor on
//! the other side alarms on.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// Bytes of log sent with a failure (healthchecks.io keeps 100 kB).
pub const LOG_TAIL_BYTES: usize = 10_000;

pub struct Notifier {
    healthchecks: Option<String>,
    webhook: Option<String>,
    timeout: Duration,
}

impl Notifier {
    pub fn new(cfg: &super::config::Notify) -> Self {
        Notifier {
            healthchecks: cfg.healthchecks.as_ref().map(|u| u.trim_end_matches('/').to_string()),
            webhook: cfg.webhook.clone(),
            timeout: Duration::from_secs(cfg.timeout.unwrap_or(10).max(1)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.healthchecks.is_none() && self.webhook.is_none()
    }

    /// The run started. Returns warnings.
    pub fn start(&self) -> Vec<String> {
        let Some(hc) = &self.healthchecks else { return Vec::new() };
        self.send(&format!("{hc}/start"), "text/plain", Vec::new()).err().map(|e| e.to_string()).into_iter().collect()
    }

    /// The run ended: `ok`, its JSON summary and the tail of its log.
    /// Returns warnings.
    pub fn finish(&self, ok: bool, summary: &serde_json::Value, log: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(hc) = &self.healthchecks {
            let (url, body) = if ok { (hc.clone(), log_tail(log)) } else { (format!("{hc}/fail"), log_tail(log)) };
            if let Err(e) = self.send(&url, "text/plain; charset=utf-8", body.into_bytes()) {
                warnings.push(e.to_string());
            }
        }
        if let Some(w) = &self.webhook {
            if let Err(e) = self.send(w, "application/json", summary.to_string().into_bytes()) {
                warnings.push(e.to_string());
            }
        }
        warnings
    }

    /// POSTs `body` to `url`, three tries.
    fn send(&self, url: &str, content_type: &str, body: Vec<u8>) -> Result<()> {
        let shown = redact(url);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the HTTP client", e))?;
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::new(ErrorKind::Io, format!("notification to {shown}: {e}")))?;
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500 << attempt));
            }
            let req = client.post(url).header("content-type", content_type).body(body.clone());
            match rt.block_on(async { req.send().await }) {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = describe(&e),
            }
        }
        Err(Error::new(ErrorKind::Transient, format!("notification to {shown} failed after 3 tries: {last}")))
    }
}

/// The end of `log`, at most [`LOG_TAIL_BYTES`], cut at a line start.
pub fn log_tail(log: &str) -> String {
    if log.len() <= LOG_TAIL_BYTES {
        return log.to_string();
    }
    let mut start = log.len() - LOG_TAIL_BYTES;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    let s = &log[start..];
    match s.find('\n') {
        Some(i) => s[i + 1..].to_string(),
        None => s.to_string(),
    }
}

/// A URL for messages: without user info or query (tokens live there).
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(an invalid URL)".to_string(),
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_builder() {
        "invalid URL".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server on loopback: answers each request with
    /// `status` and records (request line, body).
    fn server(status: u16, n: usize) -> (String, std::thread::JoinHandle<Vec<(String, String)>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..n {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let mut s = s;
                write!(s, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
                got.push((line.trim().to_string(), String::from_utf8(body).unwrap()));
            }
            got
        });
        (url, h)
    }

    #[test]
    fn healthchecks_protocol_and_webhook() {
        let (url, h) = server(200, 5);
        let n = Notifier::new(&super::super::config::Notify {
            healthchecks: Some(format!("{url}/ping/abc/")),
            webhook: Some(format!("{url}/hook")),
            timeout: Some(5),
        });
        assert!(n.start().is_empty());
        assert!(n.finish(false, &serde_json::json!({"ok": false}), "line 1\nboom\n").is_empty());
        assert!(n.finish(true, &serde_json::json!({"ok": true}), "fine\n").is_empty());
        let got = h.join().unwrap();
        assert_eq!(got[0].0, "POST /ping/abc/start HTTP/1.1");
        assert_eq!(got[1], ("POST /ping/abc/fail HTTP/1.1".to_string(), "line 1\nboom\n".to_string()));
        assert_eq!(got[2].0, "POST /hook HTTP/1.1");
        assert_eq!(got[2].1, r#"{"ok":false}"#);
        assert_eq!(got[3], ("POST /ping/abc HTTP/1.1".to_string(), "fine\n".to_string()));
        assert_eq!(got[4].1, r#"{"ok":true}"#);
    }

    #[test]
    fn undeliverable_is_a_warning_naming_the_url_without_secrets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let n = Notifier::new(&super::super::config::Notify {
            healthchecks: None,
            webhook: Some(format!("http://user:secret@127.0.0.1:{port}/hook?token=t0k")),
            timeout: Some(1),
        });
        let w = n.finish(true, &serde_json::json!({}), "");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains(&format!("127.0.0.1:{port}/hook")) && w[0].contains("failed after 3 tries"), "{}", w[0]);
        assert!(!w[0].contains("secret") && !w[0].contains("t0k"), "{}", w[0]);
    }

    #[test]
    fn a_server_error_is_retried_then_reported() {
        let (url, h) = server(500, 3);
        let n =
            Notifier::new(&super::super::config::Notify { healthchecks: Some(url), webhook: None, timeout: Some(5) });
        let w = n.start();
        assert!(w.len() == 1 && w[0].contains("HTTP 500"), "{w:?}");
        assert_eq!(h.join().unwrap().len(), 3);
    }

    #[test]
    fn log_tail_cuts_at_a_line() {
        let log: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        let t = log_tail(&log);
        assert!(t.len() <= LOG_TAIL_BYTES && t.starts_with("line ") && t.ends_with("line 4999\n"));
    }
}
