//! S3-compatible storage through object_store's `AmazonS3`.
//!
//! Repository URLs, as restic takes them:
//! - `s3:http[s]://host[:port]/bucket[/prefix]`: an explicit endpoint
//!   (MinIO, Ceph RGW, Garage, R2, B2…), path-style addressing;
//! - `s3://bucket[/prefix]` (or `s3:bucket/prefix`): the endpoint, if any,
//!   from `AWS_ENDPOINT_URL`/`AWS_ENDPOINT` or the profile's `endpoint_url`,
//!   else AWS itself.
//!
//! Credentials and region come from the usual `AWS_*` variables, then from
//! the shared profile files (`AWS_PROFILE`, default `default`, in
//! `~/.aws/credentials` and `~/.aws/config`), then from the instance or
//! container metadata service (object_store's default chain).
//!
//! Retries: object_store retries server errors (5xx), throttling (429,
//! `SlowDown` 503) and connection failures with exponential backoff and
//! decorrelated jitter, and never retries other 4xx answers. Options
//! (`-o key=value`) tune them: see [`S3Options`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};

/// Backoff between retries (format-spec/11-backends.md): the first wait is
/// `INIT_BACKOFF`; each next one is drawn between `INIT_BACKOFF` and
/// `BACKOFF_BASE` times the previous one (object_store's decorrelated
/// jitter), at most `MAX_BACKOFF`. Together with the default 10 retries this
/// rides out a server restart of a minute or so.
const INIT_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(20);
const BACKOFF_BASE: f64 = 3.0;

/// Where an S3 repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// `http[s]://host[:port]`, or `None` for the default endpoint.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Folder inside the bucket, without slashes at either end ("" = root).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3:http://host:port/bucket/prefix`, `s3://bucket/prefix` or
    /// `s3:bucket/prefix`. Returns `None` when `url` is not an S3 URL.
    pub fn parse(url: &str) -> Option<Result<Self>> {
        let rest = url.strip_prefix("s3:")?;
        let (endpoint, path) = if let Some(r) = rest.strip_prefix("http://").or_else(|| rest.strip_prefix("https://")) {
            let scheme = &rest[..rest.len() - r.len()];
            match r.split_once('/') {
                Some((host, path)) => (Some(format!("{scheme}{host}")), path),
                None => (Some(format!("{scheme}{r}")), ""),
            }
        } else {
            (None, rest.trim_start_matches("//"))
        };
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Some(Err(Error::invalid(format!("{url:?}: no bucket; use s3:http://host:port/bucket[/prefix]"))));
        }
        if endpoint.as_deref().is_some_and(|e| e.ends_with("//")) {
            return Some(Err(Error::invalid(format!("{url:?}: no host in the endpoint"))));
        }
        Some(Ok(Self { endpoint, bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() }))
    }

    /// The URL again, for messages.
    pub fn display(&self) -> String {
        let mut s = match &self.endpoint {
            Some(e) => format!("s3:{e}/{}", self.bucket),
            None => format!("s3://{}", self.bucket),
        };
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        s
    }
}

/// Tunables, from `-o s3.KEY=VALUE`.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// Packs uploaded at once (`s3.connections`, default 4).
    pub connections: usize,
    /// Retries of one request (`s3.max-retries`, default 10).
    pub max_retries: usize,
    /// Give up retrying a request after this long (`s3.retry-timeout`,
    /// seconds, default 180).
    pub retry_timeout: Duration,
    /// Timeout of one request (`s3.timeout`, seconds, default 300).
    pub timeout: Duration,
    /// Region when neither the environment nor the profile gives one
    /// (`s3.region`, default `us-east-1`).
    pub region: Option<String>,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            connections: 4,
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            timeout: Duration::from_secs(300),
            region: None,
        }
    }
}

impl S3Options {
    /// Applies one `s3.KEY=VALUE` option; `Ok(false)` if the key is not an
    /// S3 option.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        let num = |v: &str| -> Result<u64> {
            v.parse().map_err(|_| Error::invalid(format!("option {key}: {v:?} is not a whole number")))
        };
        match key {
            "s3.connections" => self.connections = num(value)?.clamp(1, 64) as usize,
            "s3.max-retries" => self.max_retries = num(value)? as usize,
            "s3.retry-timeout" => self.retry_timeout = Duration::from_secs(num(value)?),
            "s3.timeout" => self.timeout = Duration::from_secs(num(value)?.max(1)),
            "s3.region" => self.region = Some(value.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Builds the store for `loc`.
pub fn build(loc: &S3Location, opts: &S3Options) -> Result<Arc<dyn ObjectStore>> {
    let profile = Profile::load();
    // Client options first: `with_allow_http` below writes into them.
    let client = ClientOptions::new()
        .with_timeout(opts.timeout)
        .with_connect_timeout(Duration::from_secs(10))
        .with_pool_max_idle_per_host(opts.connections.max(8));
    let mut b = AmazonS3Builder::from_env().with_client_options(client).with_bucket_name(&loc.bucket);
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        if let (Some(k), Some(s)) = (&profile.access_key, &profile.secret_key) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
            if let Some(t) = &profile.session_token {
                b = b.with_token(t);
            }
        }
    }
    let env_region = std::env::var("AWS_REGION").or_else(|_| std::env::var("AWS_DEFAULT_REGION")).ok();
    let region = env_region.or(profile.region).or_else(|| opts.region.clone()).unwrap_or_else(|| "us-east-1".into());
    b = b.with_region(region);
    let env_endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).ok();
    if let Some(e) = loc.endpoint.clone().or(env_endpoint).or(profile.endpoint) {
        b = b
            .with_endpoint(e.trim_end_matches('/'))
            .with_allow_http(e.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    let retry = RetryConfig {
        backoff: BackoffConfig { init_backoff: INIT_BACKOFF, max_backoff: MAX_BACKOFF, base: BACKOFF_BASE },
        max_retries: opts.max_retries,
        retry_timeout: opts.retry_timeout,
    };
    let store = b.with_retry(retry).build().map_err(|e| Error::invalid(format!("{}: {e}", loc.display())))?;
    Ok(if loc.prefix.is_empty() { Arc::new(store) } else { Arc::new(PrefixStore::new(store, loc.prefix.as_str())) })
}

/// Settings from the shared AWS profile files.
#[derive(Default)]
struct Profile {
    access_key: Option<String>,
    secret_key: Option<String>,
    session_token: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
}

impl Profile {
    fn load() -> Self {
        let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let file = |var: &str, default: &str| {
            std::env::var_os(var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let mut p = Profile::default();
        // ~/.aws/credentials: sections are bare profile names.
        if let Some(ini) =
            file("AWS_SHARED_CREDENTIALS_FILE", "credentials").and_then(|f| ini::Ini::load_from_file(f).ok())
        {
            if let Some(s) = ini.section(Some(name.as_str())) {
                p.access_key = s.get("aws_access_key_id").map(str::to_string);
                p.secret_key = s.get("aws_secret_access_key").map(str::to_string);
                p.session_token = s.get("aws_session_token").map(str::to_string);
            }
        }
        // ~/.aws/config: `[default]` or `[profile NAME]`.
        if let Some(ini) = file("AWS_CONFIG_FILE", "config").and_then(|f| ini::Ini::load_from_file(f).ok()) {
            let section = if name == "default" { "default".to_string() } else { format!("profile {name}") };
            if let Some(s) = ini.section(Some(section.as_str())) {
                p.region = s.get("region").map(str::to_string);
                p.endpoint = s.get("endpoint_url").map(str::to_string);
                if p.access_key.is_none() {
                    p.access_key = s.get("aws_access_key_id").map(str::to_string);
                    p.secret_key = s.get("aws_secret_access_key").map(str::to_string);
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(e: Option<&str>, b: &str, p: &str) -> S3Location {
        S3Location { endpoint: e.map(str::to_string), bucket: b.into(), prefix: p.into() }
    }

    #[test]
    fn urls_parse_as_restic_writes_them() {
        let ok = |u: &str| S3Location::parse(u).unwrap().unwrap();
        assert_eq!(ok("s3:http://127.0.0.1:7480/bkt"), loc(Some("http://127.0.0.1:7480"), "bkt", ""));
        assert_eq!(ok("s3:https://s3.example.org/bkt/a/b/"), loc(Some("https://s3.example.org"), "bkt", "a/b"));
        assert_eq!(ok("s3://bkt/host1"), loc(None, "bkt", "host1"));
        assert_eq!(ok("s3:bkt"), loc(None, "bkt", ""));
        assert!(S3Location::parse("/srv/repo").is_none());
        assert!(S3Location::parse("s3:http://host:1/").unwrap().is_err());
        assert!(S3Location::parse("s3://").unwrap().is_err());
        assert!(S3Location::parse("s3:http:///bkt").unwrap().is_err());
        assert_eq!(ok("s3:http://h:1/b/p").display(), "s3:http://h:1/b/p");
        assert_eq!(ok("s3://b").display(), "s3://b");
    }

    #[test]
    fn options_parse_and_reject_garbage() {
        let mut o = S3Options::default();
        assert!(o.set("s3.connections", "8").unwrap());
        assert_eq!(o.connections, 8);
        assert!(o.set("s3.retry-timeout", "5").unwrap());
        assert_eq!(o.retry_timeout, Duration::from_secs(5));
        assert!(!o.set("local.thing", "1").unwrap());
        assert!(o.set("s3.max-retries", "many").is_err());
    }

    /// The retry constants are the ones format-spec/11-backends.md states
    /// (they once drifted apart: the spec said 250 ms / 3× / 20 s while
    /// the code used 100 ms / 2× / 15 s).
    #[test]
    fn retry_constants_match_the_spec() {
        let spec = include_str!("../../format-spec/11-backends.md").split_whitespace().collect::<Vec<_>>().join(" ");
        let d = S3Options::default();
        let ms = INIT_BACKOFF.as_millis();
        let want = [
            format!("first wait {ms} ms, each next wait drawn between {ms} ms and {BACKOFF_BASE}× the previous, at most {} s", MAX_BACKOFF.as_secs()),
            format!("at most {} times and for at most {} seconds per request", d.max_retries, d.retry_timeout.as_secs()),
            format!("A request times out after {} s", d.timeout.as_secs()),
        ];
        for w in want {
            assert!(spec.contains(&w), "format-spec/11-backends.md does not say {w:?}");
        }
    }
}
