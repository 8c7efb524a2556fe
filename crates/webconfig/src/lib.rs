//! TLS, mutual TLS and HTTP basic auth for every promdrop listener, configured by the
//! [exporter-toolkit] web configuration file that Prometheus exporters take through
//! `--web.config.file`.
//!
//! The module knows nothing of metrics or of the exporter: it turns a YAML file into a
//! [`WebConfig`] (a rustls [`ServerConfig`] plus bcrypt hashes), keeps the current one in a
//! shared [`WebConfigHandle`] that reloads the file when it (or a certificate it names)
//! changes, accepts connections ([`WebConfigHandle::accept`]) and checks basic auth
//! credentials ([`WebConfigHandle::authorize`]). An HTTP layer on top of it:
//!
//! 1. accepts a TCP (or Unix) stream and hands it to [`WebConfigHandle::accept`], which does
//!    the TLS handshake when the file configures TLS and passes the stream through otherwise;
//! 2. for each request, calls [`WebConfigHandle::authorize`] and answers a failure with
//!    `401 Unauthorized` and the header `WWW-Authenticate: `[`WWW_AUTHENTICATE`];
//! 3. adds [`WebConfig::response_headers`] to its responses;
//! 4. runs [`spawn_reloader`] and calls [`WebConfigHandle::reload`] on `SIGHUP`, counting
//!    failures (a failed reload keeps the previous configuration).
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use promdrop_webconfig::{self as webconfig, WebConfigHandle};
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let handle = WebConfigHandle::builder()
//!     .path("/etc/promdrop/web.yml")
//!     .build()?; // a bad file stops the start
//! let _reloader = webconfig::spawn_reloader(Arc::clone(&handle), Duration::from_secs(5), |r| {
//!     // Log it; count promdrop_web_config_reloads_total{result="success" or "failure"}.
//!     let _ = r;
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9466").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let handle = Arc::clone(&handle);
//!     tokio::spawn(async move {
//!         let Ok(stream) = handle.accept(tcp).await else {
//!             return; // failed handshake, timeout, plain HTTP on a TLS port
//!         };
//!         // Serve HTTP on `stream` (hyper_util::rt::TokioIo::new(stream)); per request:
//!         // if handle.authorize(request.headers()).await.is_err() { 401 + WWW-Authenticate }
//!         drop(stream);
//!     });
//! }
//! # }
//! ```
//!
//! # The file
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths are relative to this file's folder
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12             # TLS12 (default) or TLS13
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG
//! ```
//!
//! # Where promdrop differs from the Go exporter-toolkit
//!
//! Parsing is strict like the toolkit's (an unknown key is an error). Beyond that, promdrop
//! refuses what it cannot honour rather than ignoring it, so that a file never looks more
//! secure than the server it configures:
//!
//! - TLS is rustls (with the *ring* provider), which implements TLS 1.2 and 1.3 only:
//!   `min_version`/`max_version` `TLS10` or `TLS11` are errors.
//! - `cipher_suites` is honoured for TLS 1.2 (in the listed order when
//!   `prefer_server_cipher_suites` is true, the default). Names of suites that rustls does not
//!   implement (CBC, RSA key exchange) are errors; TLS 1.3 suite names are accepted and
//!   ignored with a warning, as Go ignores them.
//! - `curve_preferences`: `X25519`, `CurveP256` and `CurveP384`; `CurveP521` is an error.
//! - `client_allowed_sans` is not implemented yet and is an error (use a dedicated client CA).
//! - `rate_limit` is not implemented and is an error.
//! - TLS settings without a certificate (say only `min_version`) are an error, where Go would
//!   silently serve plain HTTP; so is a certificate with a `client_ca_file` but no
//!   `client_auth_type`, as in Go.
//! - A `basic_auth_users` user name containing `:` is an error (basic auth could never
//!   match it).
//!
//! [exporter-toolkit]: https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
use ring::{digest, hmac, rand::SystemRandom};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The value of the `WWW-Authenticate` header to send with a `401 Unauthorized` answer to a
/// request that [`WebConfigHandle::authorize`] refused.
pub const WWW_AUTHENTICATE: &str = "Basic realm=\"promdrop\"";

/// How long [`WebConfigHandle::accept`] waits for a client to complete the TLS handshake,
/// unless [`WebConfigHandleBuilder::handshake_timeout`] says otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many successful basic auth verifications are remembered so that bcrypt does not run
/// on every scrape. Past that the memory is emptied and refilled.
const AUTH_CACHE_CAPACITY: usize = 256;

/// Most bcrypt verifications queued or running for one client address: more are refused at
/// once with [`AuthError::TooManyAttempts`], so that a flood of wrong passwords from a few
/// addresses cannot make the queue long enough to starve a right one from another address.
pub const MAX_PENDING_CHECKS_PER_CLIENT: usize = 2;

/// Most bcrypt verifications queued or running in all: a bound on the queue (and on the tasks
/// that hold it) however many addresses a flood comes from.
pub const MAX_PENDING_CHECKS: usize = 64;

/// What the server answers, in clear text, to a client that speaks plain HTTP to a TLS
/// listener (the same words as Go's `net/http`).
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 48\r\n\
Connection: close\r\n\
\r\n\
Client sent an HTTP request to an HTTPS server.\n";

/// Everything that can go wrong in this module, except a refused request (see [`AuthError`]).
///
/// Configuration errors name the file and the setting, and print as one line that says what to
/// change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebConfigError {
    /// The web configuration file itself could not be read.
    #[error("web config {path}: cannot read the file: {source}")]
    ReadConfig {
        /// The configuration file.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// The file is not valid YAML, or does not have the expected shape (an unknown key, a
    /// value of the wrong type).
    #[error("web config {origin}: {source}")]
    Yaml {
        /// The configuration file, or `<inline>`.
        origin: String,
        /// The YAML parser's message, with the line and column.
        source: serde_norway::Error,
    },
    /// A file that the configuration names (certificate, key, CA) could not be read.
    #[error("web config {origin}: {setting}: cannot read {path}: {source}")]
    ReadReferenced {
        /// The configuration file, or `<inline>`.
        origin: String,
        /// The setting that names the file, such as `tls_server_config.cert_file`.
        setting: &'static str,
        /// The file that could not be read, as resolved against the configuration's folder.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// A setting has a value that promdrop refuses; the message says why and what is accepted.
    #[error("web config {origin}: {setting}: {message}")]
    Invalid {
        /// The configuration file, or `<inline>`.
        origin: String,
        /// The setting at fault, such as `tls_server_config.min_version`.
        setting: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// The client did not complete the TLS handshake in time.
    #[error("TLS handshake with the client timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The TLS handshake failed (bad or missing client certificate, unsupported protocol
    /// version, connection closed).
    #[error("TLS handshake with the client failed: {0}")]
    Handshake(#[source] io::Error),
    /// The client spoke plain HTTP to a TLS listener; it was answered `400 Bad Request` in
    /// clear text and the connection was closed.
    #[error("client sent plain HTTP to a TLS listener (answered 400 and closed)")]
    PlainHttpOnTlsListener,
    /// The background reload task failed (it panicked or was cancelled).
    #[error("web config reload task failed: {0}")]
    ReloadTask(String),
    /// A reload would turn TLS or basic auth off on a listener that has it: refused, the
    /// previous configuration stays in use. Restart the process to drop a protection on purpose.
    #[error(
        "web config {path}: the new configuration turns {what} off; refused, the previous \
         configuration stays in use (restart to remove it on purpose)"
    )]
    Downgrade {
        /// The configuration file.
        path: PathBuf,
        /// `TLS`, `basic auth` or `client certificate verification`.
        what: &'static str,
    },
}

/// Why [`WebConfigHandle::authorize`] refused a request. Every variant but
/// [`AuthError::TooManyAttempts`] is answered with `401 Unauthorized` and
/// `WWW-Authenticate: `[`WWW_AUTHENTICATE`]; they only serve logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request has no `Authorization: Basic ...` header.
    #[error("basic auth required: no Authorization: Basic header")]
    MissingCredentials,
    /// The `Authorization` header is not valid basic auth (not base64, no `:`, not UTF-8).
    #[error("malformed Authorization header")]
    MalformedCredentials,
    /// Unknown user or wrong password (deliberately not told apart).
    #[error("wrong user name or password")]
    InvalidCredentials,
    /// The client already has [`MAX_PENDING_CHECKS_PER_CLIENT`] password checks queued or
    /// running (or all clients [`MAX_PENDING_CHECKS`]): refused without a check. Answered
    /// `429 Too Many Requests` by promdrop.
    #[error("too many password checks in progress for this client")]
    TooManyAttempts,
}

/// `tls_server_config.client_auth_type`: whether and how clients must present a certificate.
///
/// Only [`RequireAndVerifyClientCert`](Self::RequireAndVerifyClientCert) authenticates clients;
/// the others exist for compatibility with the Go exporter-toolkit and are reported by
/// [`WebConfig::warnings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthType {
    /// No client certificate is asked for (the default).
    #[default]
    NoClientCert,
    /// A client certificate is asked for but not required, and not verified (only the
    /// client's possession of its key is checked).
    RequestClientCert,
    /// A client certificate is required but not verified against a CA (only the client's
    /// possession of its key is checked). `RequireClientCert` is accepted as an old name.
    RequireAnyClientCert,
    /// A client certificate is optional; when one is given, it must chain to `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A client certificate is required and must chain to `client_ca_file`: mutual TLS.
    RequireAndVerifyClientCert,
}

impl ClientAuthType {
    const ALL: [ClientAuthType; 5] = [
        ClientAuthType::NoClientCert,
        ClientAuthType::RequestClientCert,
        ClientAuthType::RequireAnyClientCert,
        ClientAuthType::VerifyClientCertIfGiven,
        ClientAuthType::RequireAndVerifyClientCert,
    ];

    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthType::NoClientCert => "NoClientCert",
            ClientAuthType::RequestClientCert => "RequestClientCert",
            ClientAuthType::RequireAnyClientCert => "RequireAnyClientCert",
            ClientAuthType::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            ClientAuthType::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }

    fn needs_ca(self) -> bool {
        matches!(
            self,
            ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert
        )
    }
}

impl fmt::Display for ClientAuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ClientAuthType {
    type Err = String;

    /// Parses a configuration name; the error lists the accepted names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(ClientAuthType::NoClientCert);
        }
        if s == "RequireClientCert" {
            return Ok(ClientAuthType::RequireAnyClientCert);
        }
        ClientAuthType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ClientAuthType::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "unknown client auth type {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

// ---------------------------------------------------------------------------------------------
// The file's shape. `deny_unknown_fields` everywhere: the toolkit parses strictly too.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with tls_server_config, http_server_config and basic_auth_users"
)]
struct RawConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<UniqueMap>,
    #[serde(default)]
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<UniqueMap>,
}

/// A mapping of names to strings where a repeated name is an error (serde's maps keep the last
/// silently; Go's strict YAML refuses it, and a repeated user is likely a mistake).
#[derive(Debug, Default)]
struct UniqueMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueMap;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to strings")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("{key:?} is given twice")));
                    }
                    out.insert(key, value);
                }
                Ok(UniqueMap(out))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// The headers that `http_server_config.headers` may set, with their allowed values (none
/// listed: any value). The same list as the Go toolkit's.
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// A loaded and validated web configuration: what to do with connections and requests.
///
/// Immutable; a change of the file gives a new one (see [`WebConfigHandle`]).
pub struct WebConfig {
    tls: Option<TlsSettings>,
    users: BTreeMap<String, String>,
    /// A syntactically valid bcrypt hash that matches no password, with the highest cost among
    /// the users', checked for unknown users so that they take as long as known ones.
    dummy_hash: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    http2: bool,
    warnings: Vec<String>,
}

struct TlsSettings {
    /// ALPN `http/1.1` only.
    http1: Arc<ServerConfig>,
    /// ALPN `h2` then `http/1.1`; the same as `http1` when `http_server_config.http2` is false.
    http2: Arc<ServerConfig>,
    client_auth: ClientAuthType,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No hashes in logs.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls_enabled())
            .field("client_auth", &self.client_auth())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("http2", &self.http2)
            .field("headers", &self.headers)
            .finish()
    }
}

impl WebConfig {
    /// Reads and validates a web configuration file: the YAML, the certificates and keys it
    /// names (relative paths are relative to the file's folder) and the bcrypt hashes.
    pub fn load(path: impl AsRef<Path>) -> Result<WebConfig, WebConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
        Self::parse(&text, base_dir, &path.display().to_string())
    }

    /// Validates a web configuration given as YAML text; relative file names in it are
    /// resolved against `base_dir`. Errors name the origin `<inline>`.
    pub fn from_yaml(yaml: &str, base_dir: impl AsRef<Path>) -> Result<WebConfig, WebConfigError> {
        Self::parse(yaml, base_dir.as_ref(), "<inline>")
    }

    /// A configuration that enables nothing: plain HTTP, no authentication. What a listener
    /// uses without `--web.config.file`.
    pub fn disabled() -> WebConfig {
        WebConfig {
            tls: None,
            users: BTreeMap::new(),
            dummy_hash: dummy_hash(10),
            headers: Vec::new(),
            http2: true,
            warnings: Vec::new(),
        }
    }

    fn parse(text: &str, base_dir: &Path, origin: &str) -> Result<WebConfig, WebConfigError> {
        let invalid = |setting: &str, message: String| WebConfigError::Invalid {
            origin: origin.to_string(),
            setting: setting.to_string(),
            message,
        };
        // An empty file (or one of comments only) is an error, not an empty configuration: a
        // file emptied by accident (a failed template, a truncated ConfigMap) must not turn TLS
        // and authentication off. `{}` says "nothing" on purpose.
        let raw: Option<RawConfig> =
            serde_norway::from_str(text).map_err(|source| WebConfigError::Yaml {
                origin: origin.to_string(),
                source,
            })?;
        let Some(raw) = raw else {
            return Err(invalid(
                "(file)",
                "the file is empty (or only comments); write `{}` for a configuration that \
                 enables nothing"
                    .to_string(),
            ));
        };

        if raw.rate_limit.is_some() {
            return Err(invalid(
                "rate_limit",
                "not supported by promdrop; remove it (rate-limit in a reverse proxy instead)"
                    .to_string(),
            ));
        }

        let mut warnings = Vec::new();

        let (http2, headers) = match raw.http_server_config {
            None => (true, Vec::new()),
            Some(http) => (
                http.http2.unwrap_or(true),
                validate_headers(http.headers.unwrap_or_default().0, &invalid)?,
            ),
        };

        let tls = match raw.tls_server_config {
            None => None,
            Some(tls) => build_tls(tls, base_dir, origin, http2, &mut warnings)?,
        };

        let users = raw.basic_auth_users.unwrap_or_default().0;
        let mut max_cost = 10;
        for (user, hash) in &users {
            let setting = format!("basic_auth_users.{user}");
            if user.contains(':') {
                return Err(invalid(
                    &setting,
                    "a user name cannot contain ':' (basic auth splits on the first ':')"
                        .to_string(),
                ));
            }
            let parts = bcrypt::HashParts::from_str(hash).map_err(|e| {
                invalid(
                    &setting,
                    format!(
                        "not a bcrypt hash ({e}); expected $2y$, $2b$ or $2a$, the cost and 53 \
                         characters, as printed by `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                    ),
                )
            })?;
            let cost = parts.get_cost();
            if !(4..=31).contains(&cost) {
                return Err(invalid(
                    &setting,
                    format!("bcrypt cost {cost} is outside 4..=31"),
                ));
            }
            max_cost = max_cost.max(cost);
        }
        if !users.is_empty() && tls.is_none() {
            warnings.push(
                "basic_auth_users is set without tls_server_config: passwords cross the network \
                 in clear text"
                    .to_string(),
            );
        }
        if users.is_empty() && tls.is_none() {
            warnings.push("the web config enables neither TLS nor basic auth".to_string());
        }

        Ok(WebConfig {
            tls,
            users,
            dummy_hash: dummy_hash(max_cost),
            headers,
            http2,
            warnings,
        })
    }

    /// Whether connections are TLS (`tls_server_config` configures a certificate).
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// The client certificate policy, or `None` without TLS.
    pub fn client_auth(&self) -> Option<ClientAuthType> {
        self.tls.as_ref().map(|t| t.client_auth)
    }

    /// Whether requests need basic auth (`basic_auth_users` is not empty).
    pub fn basic_auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// The configured basic auth user names.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// `http_server_config.http2` (default true): whether HTTP/2 may be offered over TLS.
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// The headers (`http_server_config.headers`) to add to every response.
    pub fn response_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Settings that are accepted but weaken security or are ignored, one sentence each, for
    /// the caller to log at warning level after a load or reload.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The rustls configuration for TLS connections, `None` without TLS. With
    /// `server_speaks_http2` and `http_server_config.http2`, ALPN offers `h2` before
    /// `http/1.1`; otherwise only `http/1.1`.
    pub fn tls_server_config(&self, server_speaks_http2: bool) -> Option<Arc<ServerConfig>> {
        self.tls.as_ref().map(|t| {
            if server_speaks_http2 {
                Arc::clone(&t.http2)
            } else {
                Arc::clone(&t.http1)
            }
        })
    }
}

/// A bcrypt hash with the given cost, a zero salt and a zero digest: well formed, matched by no
/// password (bcrypt would have to output 23 zero bytes).
fn dummy_hash(cost: u32) -> String {
    format!("$2b${cost:02}${}", ".".repeat(53))
}

fn validate_headers(
    headers: BTreeMap<String, String>,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let setting = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(invalid(
                &setting,
                format!(
                    "this header cannot be configured; expected one of {}",
                    names.join(", ")
                ),
            ));
        };
        if value.is_empty() {
            continue; // "Unset if blank."
        }
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(invalid(
                &setting,
                format!(
                    "invalid value {value:?}; expected one of {}",
                    allowed.join(", ")
                ),
            ));
        }
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| invalid(&setting, e.to_string()))?;
        let header_value =
            HeaderValue::from_str(&value).map_err(|e| invalid(&setting, e.to_string()))?;
        out.push((header_name, header_value));
    }
    Ok(out)
}

/// Empty strings count as unset, as in Go.
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Reads a PEM setting given either inline (`inline_name`) or as a file (`file_name`).
struct PemSource<'a> {
    origin: &'a str,
    base_dir: &'a Path,
}

impl PemSource<'_> {
    fn read(
        &self,
        inline: Option<String>,
        inline_setting: &'static str,
        file: Option<String>,
        file_setting: &'static str,
    ) -> Result<Option<(Vec<u8>, String)>, WebConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(WebConfigError::Invalid {
                origin: self.origin.to_string(),
                setting: file_setting.to_string(),
                message: format!("set either {inline_setting} or {file_setting}, not both"),
            }),
            (Some(text), None) => Ok(Some((text.into_bytes(), inline_setting.to_string()))),
            (None, Some(file)) => {
                let path = self.base_dir.join(file);
                let bytes =
                    std::fs::read(&path).map_err(|source| WebConfigError::ReadReferenced {
                        origin: self.origin.to_string(),
                        setting: file_setting,
                        path: path.clone(),
                        source,
                    })?;
                Ok(Some((
                    bytes,
                    format!("{file_setting} ({})", path.display()),
                )))
            }
            (None, None) => Ok(None),
        }
    }
}

fn build_tls(
    raw: RawTls,
    base_dir: &Path,
    origin: &str,
    http2: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<TlsSettings>, WebConfigError> {
    let invalid = |setting: &str, message: String| WebConfigError::Invalid {
        origin: origin.to_string(),
        setting: setting.to_string(),
        message,
    };
    let cert = non_empty(raw.cert);
    let key = non_empty(raw.key);
    let client_ca = non_empty(raw.client_ca);
    let cert_file = non_empty(raw.cert_file);
    let key_file = non_empty(raw.key_file);
    let client_ca_file = non_empty(raw.client_ca_file);
    let client_auth_name = non_empty(raw.client_auth_type);

    let enabled = cert.is_some()
        || key.is_some()
        || client_ca.is_some()
        || cert_file.is_some()
        || key_file.is_some()
        || client_ca_file.is_some()
        || client_auth_name.is_some();
    if !enabled {
        let other_settings = raw.client_allowed_sans.is_some()
            || non_empty(raw.min_version.clone()).is_some()
            || non_empty(raw.max_version.clone()).is_some()
            || raw.cipher_suites.as_ref().is_some_and(|c| !c.is_empty())
            || raw
                .curve_preferences
                .as_ref()
                .is_some_and(|c| !c.is_empty())
            || raw.prefer_server_cipher_suites.is_some();
        if other_settings {
            return Err(invalid(
                "tls_server_config",
                "TLS settings are given without a certificate: set cert_file and key_file (or \
                 remove tls_server_config to serve plain HTTP)"
                    .to_string(),
            ));
        }
        return Ok(None);
    }

    // Versions.
    let min = parse_version(raw.min_version, "min_version", TlsVersion::Tls12, &invalid)?;
    let max = parse_version(raw.max_version, "max_version", TlsVersion::Tls13, &invalid)?;
    if min > max {
        return Err(invalid(
            "tls_server_config.min_version",
            format!("{} is above max_version {}", min.name(), max.name()),
        ));
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if min <= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }

    // Client authentication.
    let client_auth = match client_auth_name {
        None => ClientAuthType::NoClientCert,
        Some(name) => ClientAuthType::from_str(&name)
            .map_err(|m| invalid("tls_server_config.client_auth_type", m))?,
    };
    if raw.client_allowed_sans.is_some() {
        return Err(invalid(
            "tls_server_config.client_allowed_sans",
            "not supported by promdrop yet; restrict clients with a dedicated client CA instead"
                .to_string(),
        ));
    }

    // The crypto provider: ring, narrowed to the configured suites and curves.
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = raw.cipher_suites.filter(|c| !c.is_empty()) {
        provider.cipher_suites = select_cipher_suites(&names, min, warnings, &invalid)?;
    }
    if let Some(names) = raw.curve_preferences.filter(|c| !c.is_empty()) {
        provider.kx_groups = select_curves(&names, &invalid)?;
    }
    let provider = Arc::new(provider);

    let pem = PemSource { origin, base_dir };
    let Some((cert_pem, cert_from)) = pem.read(
        cert,
        "tls_server_config.cert",
        cert_file,
        "tls_server_config.cert_file",
    )?
    else {
        return Err(invalid(
            "tls_server_config",
            "missing cert_file (or an inline cert)".to_string(),
        ));
    };
    let Some((key_pem, key_from)) = pem.read(
        key,
        "tls_server_config.key",
        key_file,
        "tls_server_config.key_file",
    )?
    else {
        return Err(invalid(
            "tls_server_config",
            "missing key_file (or an inline key)".to_string(),
        ));
    };
    let ca = pem.read(
        client_ca,
        "tls_server_config.client_ca",
        client_ca_file,
        "tls_server_config.client_ca_file",
    )?;

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&cert_from, format!("cannot parse PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(
            &cert_from,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found".to_string(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid(&key_from, format!("no usable PEM private key: {e}")))?;

    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| invalid(&key_from, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(invalid(
                &key_from,
                format!("the key does not belong to {cert_from}: {e}"),
            ));
        }
    }

    let roots = match ca {
        None => None,
        Some((ca_pem, ca_from)) => {
            let mut roots = RootCertStore::empty();
            for der in CertificateDer::pem_slice_iter(&ca_pem) {
                let der = der.map_err(|e| {
                    invalid(&ca_from, format!("cannot parse PEM certificates: {e}"))
                })?;
                roots
                    .add(der)
                    .map_err(|e| invalid(&ca_from, format!("not a usable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(invalid(
                    &ca_from,
                    "no PEM certificate (-----BEGIN CERTIFICATE-----) found".to_string(),
                ));
            }
            Some(Arc::new(roots))
        }
    };
    if roots.is_some() && client_auth == ClientAuthType::NoClientCert {
        return Err(invalid(
            "tls_server_config.client_auth_type",
            "a client CA is configured without a client auth policy: set client_auth_type \
             (RequireAndVerifyClientCert for mutual TLS) or remove client_ca_file"
                .to_string(),
        ));
    }
    let verifier: Arc<dyn ClientCertVerifier> = match (client_auth, roots) {
        (ClientAuthType::NoClientCert, _) => WebPkiClientVerifier::no_client_auth(),
        (t, None) if t.needs_ca() => {
            return Err(invalid(
                "tls_server_config.client_ca_file",
                format!("client_auth_type {t} needs the CA that signs client certificates"),
            ));
        }
        (t @ (ClientAuthType::RequestClientCert | ClientAuthType::RequireAnyClientCert), roots) => {
            warnings.push(format!(
                "client_auth_type {t} does not verify client certificates: use \
                 RequireAndVerifyClientCert to authenticate clients"
            ));
            Arc::new(AnyClientCert {
                mandatory: t == ClientAuthType::RequireAnyClientCert,
                hints: roots.map(|r| r.subjects()).unwrap_or_default(),
                algorithms: provider.signature_verification_algorithms,
            })
        }
        (t, Some(roots)) => {
            let builder = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider));
            let builder = if t == ClientAuthType::VerifyClientCertIfGiven {
                warnings.push(
                    "client_auth_type VerifyClientCertIfGiven lets clients without a certificate \
                     in: use RequireAndVerifyClientCert to require one"
                        .to_string(),
                );
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder.build().map_err(|e| {
                invalid(
                    "tls_server_config.client_ca_file",
                    format!("cannot build the client certificate verifier: {e}"),
                )
            })?
        }
        // `needs_ca` covers the remaining combinations above; keep the compiler satisfied
        // without a panic.
        (t, None) => {
            return Err(invalid(
                "tls_server_config.client_ca_file",
                format!("client_auth_type {t} needs the CA that signs client certificates"),
            ));
        }
    };

    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| {
            invalid(
                "tls_server_config",
                format!("the protocol versions and cipher suites leave nothing usable: {e}"),
            )
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http1_config = Arc::new(config.clone());
    let http2_config = if http2 {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    } else {
        Arc::clone(&http1_config)
    };
    Ok(Some(TlsSettings {
        http1: http1_config,
        http2: http2_config,
        client_auth,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        }
    }
}

fn parse_version(
    value: Option<String>,
    field: &str,
    default: TlsVersion,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<TlsVersion, WebConfigError> {
    let setting = format!("tls_server_config.{field}");
    match non_empty(value).as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(v @ ("TLS10" | "TLS11")) => Err(invalid(
            &setting,
            format!(
                "{v} is not supported: rustls implements TLS 1.2 and 1.3 only; use TLS12 or TLS13"
            ),
        )),
        Some(v) => Err(invalid(
            &setting,
            format!("unknown TLS version {v:?}; expected TLS12 or TLS13"),
        )),
    }
}

/// Go's names of the TLS 1.2 suites that rustls implements, with the rustls suite.
fn tls12_suite(name: &str) -> Option<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

const TLS13_SUITE_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

fn select_cipher_suites(
    names: &[String],
    min: TlsVersion,
    warnings: &mut Vec<String>,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Vec<rustls::SupportedCipherSuite>, WebConfigError> {
    // TLS 1.3 suites are not configurable (as in Go): all of them, rustls's order.
    let mut suites: Vec<rustls::SupportedCipherSuite> = rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .copied()
        .filter(|s| s.tls13().is_some())
        .collect();
    let mut tls12_count = 0;
    for name in names {
        if let Some(suite) = tls12_suite(name) {
            if !suites.contains(&suite) {
                suites.push(suite);
                tls12_count += 1;
            }
        } else if TLS13_SUITE_NAMES.contains(&name.as_str()) {
            warnings.push(format!(
                "tls_server_config.cipher_suites: {name} is a TLS 1.3 suite; TLS 1.3 suites are \
                 not configurable and it is ignored"
            ));
        } else {
            return Err(invalid(
                "tls_server_config.cipher_suites",
                format!(
                    "{name:?} is not a cipher suite that rustls implements; the TLS 1.2 suites \
                     are TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
                     TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, \
                     TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, \
                     TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, \
                     TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 and \
                     TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
                ),
            ));
        }
    }
    if tls12_count == 0 && min == TlsVersion::Tls12 {
        return Err(invalid(
            "tls_server_config.cipher_suites",
            "lists no TLS 1.2 suite, so TLS 1.2 could never be negotiated: add one, or set \
             min_version: TLS13"
                .to_string(),
        ));
    }
    Ok(suites)
}

fn select_curves(
    names: &[String],
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Vec<&'static dyn SupportedKxGroup>, WebConfigError> {
    use rustls::crypto::ring::kx_group;
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        let group = match name.as_str() {
            "X25519" => kx_group::X25519,
            "CurveP256" => kx_group::SECP256R1,
            "CurveP384" => kx_group::SECP384R1,
            other => {
                return Err(invalid(
                    "tls_server_config.curve_preferences",
                    format!(
                        "{other:?} is not supported; expected X25519, CurveP256 or CurveP384 \
                         (rustls with ring implements no other)"
                    ),
                ));
            }
        };
        if !groups.iter().any(|g| g.name() == group.name()) {
            groups.push(group);
        }
    }
    Ok(groups)
}

/// The verifier for `RequestClientCert` and `RequireAnyClientCert`: like Go's, it accepts any
/// client certificate without checking who issued it, but (as TLS itself requires) checks the
/// client's signature, so the client does hold the certificate's private key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// The shared handle: current config, reloads, accept, authorize.
// ---------------------------------------------------------------------------------------------

/// What [`WebConfigHandle::reload_if_changed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Nothing changed since the last load or the last failed attempt; nothing was done.
    Unchanged,
    /// The file or a file it names changed, and the new configuration is now in use.
    Reloaded,
}

/// Builds a [`WebConfigHandle`].
#[derive(Debug, Clone)]
pub struct WebConfigHandleBuilder {
    path: Option<PathBuf>,
    server_speaks_http2: bool,
    handshake_timeout: Duration,
}

impl WebConfigHandleBuilder {
    /// The web configuration file (`--web.config.file`). Without one, the handle serves plain
    /// HTTP without authentication.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Whether the HTTP server behind the handle speaks HTTP/2 (for example hyper-util's
    /// `auto::Builder`). Only then does TLS offer `h2` through ALPN, and only if the file's
    /// `http_server_config.http2` is true (its default). Default: false, HTTP/1.1 only.
    pub fn server_speaks_http2(mut self, yes: bool) -> Self {
        self.server_speaks_http2 = yes;
        self
    }

    /// How long a client may take to complete the TLS handshake. Default:
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Loads the file (if any) and returns the shared handle. Fails if the file is invalid:
    /// promdrop refuses to start on a bad web configuration rather than serve without it.
    pub fn build(self) -> Result<Arc<WebConfigHandle>, WebConfigError> {
        let (config, fingerprint) = match &self.path {
            None => (WebConfig::disabled(), None),
            Some(path) => {
                // Fingerprint first: a change during the load is then seen by the next check.
                let fingerprint = fingerprint(path);
                (WebConfig::load(path)?, Some(fingerprint))
            }
        };
        let rng = SystemRandom::new();
        let cache_key =
            hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| WebConfigError::Invalid {
                origin: "<startup>".to_string(),
                setting: "basic_auth_users".to_string(),
                message: "the system random number generator failed".to_string(),
            })?;
        Ok(Arc::new(WebConfigHandle {
            path: self.path,
            server_speaks_http2: self.server_speaks_http2,
            handshake_timeout: self.handshake_timeout,
            current: ArcSwap::from_pointee(config),
            reload_state: Mutex::new(ReloadState {
                loaded: fingerprint,
                failed: None,
            }),
            auth_cache: Arc::new(AuthCache {
                key: cache_key,
                verified: Mutex::new(HashSet::new()),
            }),
            bcrypt_gate: Arc::new(tokio::sync::Semaphore::new(1)),
            pending: Arc::new(Mutex::new(HashMap::new())),
        }))
    }
}

/// The current web configuration of a process, shared by all its listeners (`Arc`): accepts
/// connections, authorizes requests, and reloads the file when it changes.
pub struct WebConfigHandle {
    path: Option<PathBuf>,
    server_speaks_http2: bool,
    handshake_timeout: Duration,
    current: ArcSwap<WebConfig>,
    reload_state: Mutex<ReloadState>,
    auth_cache: Arc<AuthCache>,
    /// bcrypt is slow on purpose: one verification at a time (as the Go toolkit does), so that
    /// a flood of bad passwords takes one core, not all.
    bcrypt_gate: Arc<tokio::sync::Semaphore>,
    /// Verifications queued or running, per client address (see
    /// [`WebConfigHandle::authorize_from`]).
    pending: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl fmt::Debug for WebConfigHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfigHandle")
            .field("path", &self.path)
            .field("current", &*self.current.load())
            .finish()
    }
}

struct ReloadState {
    /// Fingerprint of what the current configuration was loaded from.
    loaded: Option<digest::Digest>,
    /// Fingerprint of the last content that failed to load, not to be retried until it changes.
    failed: Option<digest::Digest>,
}

/// Remembers successful verifications: an HMAC (with a key made at startup) of the user, the
/// password and the stored hash, so that neither passwords nor fast hashes of them are kept,
/// and a changed hash no longer matches.
struct AuthCache {
    key: hmac::Key,
    verified: Mutex<HashSet<Vec<u8>>>,
}

impl AuthCache {
    fn tag(&self, user: &str, password: &[u8], stored_hash: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [user.as_bytes(), password, stored_hash.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.sign().as_ref().to_vec()
    }

    fn contains(&self, tag: &[u8]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(tag)
    }

    fn insert(&self, tag: Vec<u8>) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= AUTH_CACHE_CAPACITY {
            verified.clear();
        }
        verified.insert(tag);
    }

    fn clear(&self) {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// A digest of the configuration file and of the certificate, key and CA files it names, to
/// notice any change: content, not mtime, so a rewrite within the same second is still seen,
/// and a file that a broken configuration names is watched too (it may appear later).
/// Unreadable files count as such.
fn fingerprint(path: &Path) -> digest::Digest {
    fn add(ctx: &mut digest::Context, file: &Path, content: &io::Result<Vec<u8>>) {
        let name = file.as_os_str().as_encoded_bytes();
        ctx.update(&(name.len() as u64).to_be_bytes());
        ctx.update(name);
        match content {
            Ok(bytes) => {
                ctx.update(&[1]);
                ctx.update(&(bytes.len() as u64).to_be_bytes());
                ctx.update(bytes);
            }
            Err(e) => {
                ctx.update(&[0]);
                ctx.update(format!("{:?}", e.kind()).as_bytes());
            }
        }
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    let config = std::fs::read(path);
    add(&mut ctx, path, &config);
    if let Ok(yaml) = &config {
        let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
        for name in named_files(yaml) {
            let file = base_dir.join(name);
            add(&mut ctx, &file, &std::fs::read(&file));
        }
    }
    ctx.finish()
}

/// The file names in `tls_server_config` of a configuration, read leniently (it may be invalid).
fn named_files(yaml: &[u8]) -> Vec<String> {
    let Ok(value) = serde_norway::from_slice::<serde_norway::Value>(yaml) else {
        return Vec::new();
    };
    let Some(tls) = value.get("tls_server_config") else {
        return Vec::new();
    };
    ["cert_file", "key_file", "client_ca_file"]
        .iter()
        .filter_map(|key| tls.get(key)?.as_str())
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

impl WebConfigHandle {
    /// Starts a [`WebConfigHandleBuilder`].
    pub fn builder() -> WebConfigHandleBuilder {
        WebConfigHandleBuilder {
            path: None,
            server_speaks_http2: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Loads `path` with the default settings; see [`WebConfigHandleBuilder::build`].
    pub fn load(path: impl Into<PathBuf>) -> Result<Arc<WebConfigHandle>, WebConfigError> {
        Self::builder().path(path).build()
    }

    /// A handle without a configuration file: plain HTTP, no authentication, nothing to reload.
    pub fn disabled() -> Result<Arc<WebConfigHandle>, WebConfigError> {
        Self::builder().build()
    }

    /// The configuration file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The configuration in use now.
    pub fn current(&self) -> Arc<WebConfig> {
        self.current.load_full()
    }

    /// Reloads the configuration if the file, or a certificate, key or CA file it names, has
    /// changed since the last load. A new configuration that fails to load leaves the current
    /// one in use and is returned as the error, once: the same content is not retried (and
    /// gives [`ReloadOutcome::Unchanged`]) until it changes again.
    ///
    /// Reads files: call it from a blocking-friendly context ([`spawn_reloader`] does).
    pub fn reload_if_changed(&self) -> Result<ReloadOutcome, WebConfigError> {
        let Some((path, mut state, now)) = self.reload_start() else {
            return Ok(ReloadOutcome::Unchanged);
        };
        let same =
            |d: &Option<digest::Digest>| d.as_ref().is_some_and(|d| d.as_ref() == now.as_ref());
        if same(&state.loaded) || same(&state.failed) {
            return Ok(ReloadOutcome::Unchanged);
        }
        self.load_into(path, now, &mut state)
    }

    /// Reloads the configuration now, changed or not (for `SIGHUP`). A failure leaves the
    /// current configuration in use. Reads files, like [`Self::reload_if_changed`].
    pub fn reload(&self) -> Result<ReloadOutcome, WebConfigError> {
        let Some((path, mut state, now)) = self.reload_start() else {
            return Ok(ReloadOutcome::Unchanged);
        };
        self.load_into(path, now, &mut state)
    }

    /// The file, the reload state (locked) and the file's fingerprint now; `None` without a
    /// file.
    fn reload_start(&self) -> Option<(&Path, MutexGuard<'_, ReloadState>, digest::Digest)> {
        let path = self.path.as_deref()?;
        let state = self
            .reload_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some((path, state, fingerprint(path)))
    }

    fn load_into(
        &self,
        path: &Path,
        fingerprint: digest::Digest,
        state: &mut ReloadState,
    ) -> Result<ReloadOutcome, WebConfigError> {
        match WebConfig::load(path).and_then(|config| match downgrade(&self.current(), &config) {
            Some(what) => Err(WebConfigError::Downgrade {
                path: path.to_path_buf(),
                what,
            }),
            None => Ok(config),
        }) {
            Ok(config) => {
                state.loaded = Some(fingerprint);
                state.failed = None;
                self.current.store(Arc::new(config));
                self.auth_cache.clear();
                Ok(ReloadOutcome::Reloaded)
            }
            Err(e) => {
                state.failed = Some(fingerprint);
                Err(e)
            }
        }
    }

    /// Accepts a connection: with TLS configured, performs the handshake (bounded by the
    /// handshake timeout) with the configuration in use now; without, returns the stream as is.
    ///
    /// A client that speaks plain HTTP to a TLS listener is answered `400 Bad Request` in clear
    /// text ("Client sent an HTTP request to an HTTPS server.") and gets
    /// [`WebConfigError::PlainHttpOnTlsListener`].
    pub async fn accept<IO>(&self, mut io: IO) -> Result<WebStream<IO>, WebConfigError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(tls) = self.current().tls_server_config(self.server_speaks_http2) else {
            return Ok(WebStream(StreamInner::Plain(io)));
        };
        let timeout = self.handshake_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let first = tokio::time::timeout_at(deadline, read_first_byte(&mut io))
            .await
            .map_err(|_| WebConfigError::HandshakeTimeout(timeout))?
            .map_err(WebConfigError::Handshake)?;
        // A TLS connection opens with a handshake record (content type 22). An upper-case
        // ASCII letter is an HTTP method.
        if first.is_ascii_uppercase() {
            let _ = tokio::time::timeout_at(deadline, answer_plain_http(&mut io)).await;
            return Err(WebConfigError::PlainHttpOnTlsListener);
        }
        let io = Prefixed {
            first: Some(first),
            io,
        };
        let stream = tokio::time::timeout_at(deadline, TlsAcceptor::from(tls).accept(io))
            .await
            .map_err(|_| WebConfigError::HandshakeTimeout(timeout))?
            .map_err(WebConfigError::Handshake)?;
        Ok(WebStream(StreamInner::Tls(Box::new(stream))))
    }

    /// Checks a request's basic auth credentials against `basic_auth_users`. Succeeds at once
    /// when no users are configured. Like [`Self::authorize_from`] without a per-client bound.
    pub async fn authorize(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        self.check(headers, None).await
    }

    /// Checks a request's basic auth credentials, from the client at `client`.
    ///
    /// Credentials verified before are found in a cache (an HMAC of user, password and stored
    /// hash, until the next reload) without bcrypt. Otherwise bcrypt runs on the blocking
    /// thread pool, one verification at a time, in a task of its own: a client that gives up
    /// does not waste the work, a right password verified for it is remembered for its next
    /// request. Each client address has at most [`MAX_PENDING_CHECKS_PER_CLIENT`]
    /// verifications queued or running (and all clients [`MAX_PENDING_CHECKS`]); more are
    /// refused at once with [`AuthError::TooManyAttempts`], so a flood of wrong passwords delays
    /// a right one from another address by a few verifications at most. Unknown users are
    /// checked against a dummy hash of the same cost, so that response times do not tell which
    /// users exist.
    pub async fn authorize_from(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<(), AuthError> {
        self.check(headers, Some(client)).await
    }

    async fn check(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<(), AuthError> {
        let config = self.current();
        if config.users.is_empty() {
            return Ok(());
        }
        let (user, password) = basic_credentials(headers)?;
        let known = config.users.contains_key(&user);
        let stored = config
            .users
            .get(&user)
            .unwrap_or(&config.dummy_hash)
            .clone();
        let tag = self.auth_cache.tag(&user, &password, &stored);
        if known && self.auth_cache.contains(&tag) {
            return Ok(());
        }
        let slot = match client {
            Some(client) => {
                Some(PendingSlot::take(&self.pending, client).ok_or(AuthError::TooManyAttempts)?)
            }
            None => None,
        };
        let gate = Arc::clone(&self.bcrypt_gate);
        let cache = Arc::clone(&self.auth_cache);
        let verification = tokio::spawn(async move {
            let _slot = slot;
            let Ok(_permit) = gate.acquire_owned().await else {
                return false;
            };
            // Another request may have verified the same credentials meanwhile.
            if known && cache.contains(&tag) {
                return true;
            }
            let matches = tokio::task::spawn_blocking(move || {
                bcrypt::verify(&password, &stored).unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if matches && known {
                cache.insert(tag);
            }
            matches && known
        });
        if verification.await.unwrap_or(false) {
            Ok(())
        } else {
            Err(AuthError::InvalidCredentials)
        }
    }
}

/// What `new` turns off that `old` had: TLS, basic auth, or the verification of client
/// certificates (mutual TLS is authentication too), if anything.
fn downgrade(old: &WebConfig, new: &WebConfig) -> Option<&'static str> {
    let verified =
        |c: &WebConfig| c.client_auth() == Some(ClientAuthType::RequireAndVerifyClientCert);
    if old.tls_enabled() && !new.tls_enabled() {
        Some("TLS")
    } else if old.basic_auth_enabled() && !new.basic_auth_enabled() {
        Some("basic auth")
    } else if verified(old) && !verified(new) {
        Some("client certificate verification")
    } else {
        None
    }
}

/// One queued or running verification of a client address, given back when dropped.
struct PendingSlot {
    pending: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl PendingSlot {
    /// A slot for `client`, or `None` when it (or everyone) has too many already.
    fn take(pending: &Arc<Mutex<HashMap<IpAddr, usize>>>, client: IpAddr) -> Option<PendingSlot> {
        let mut map = pending.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = map.values().sum();
        let mine = map.entry(client).or_insert(0);
        if *mine >= MAX_PENDING_CHECKS_PER_CLIENT || total >= MAX_PENDING_CHECKS {
            if *mine == 0 {
                map.remove(&client);
            }
            return None;
        }
        *mine += 1;
        Some(PendingSlot {
            pending: Arc::clone(pending),
            client,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut map = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

/// Decodes `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Result<(String, Vec<u8>), AuthError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::MissingCredentials)?;
    let value = value
        .to_str()
        .map_err(|_| AuthError::MalformedCredentials)?
        .trim();
    let (scheme, encoded) = value
        .split_once(' ')
        .ok_or(AuthError::MalformedCredentials)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::MissingCredentials);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| AuthError::MalformedCredentials)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthError::MalformedCredentials)?;
    let user = std::str::from_utf8(&decoded[..colon])
        .map_err(|_| AuthError::MalformedCredentials)?
        .to_string();
    Ok((user, decoded[colon + 1..].to_vec()))
}

/// Checks the web configuration every `interval` (at least 100 ms) with
/// [`WebConfigHandle::reload_if_changed`] on the blocking pool, and calls `on_result` with
/// every reload and every failure (not with [`ReloadOutcome::Unchanged`]), for the caller to
/// log them, count them and print [`WebConfig::warnings`]. Stops when the returned task is
/// aborted. Needs a tokio runtime.
pub fn spawn_reloader<F>(
    handle: Arc<WebConfigHandle>,
    interval: Duration,
    mut on_result: F,
) -> JoinHandle<()>
where
    F: FnMut(Result<ReloadOutcome, WebConfigError>) + Send + 'static,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // The first tick is immediate; the file was just loaded.
        loop {
            ticker.tick().await;
            let h = Arc::clone(&handle);
            let result = tokio::task::spawn_blocking(move || h.reload_if_changed())
                .await
                .unwrap_or_else(|e| Err(WebConfigError::ReloadTask(e.to_string())));
            if !matches!(result, Ok(ReloadOutcome::Unchanged)) {
                on_result(result);
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Streams.
// ---------------------------------------------------------------------------------------------

/// An accepted connection: TLS or plain, as the web configuration says. Reads and writes
/// application data (HTTP) either way.
pub struct WebStream<IO>(StreamInner<IO>);

enum StreamInner<IO> {
    Plain(IO),
    Tls(Box<TlsStream<Prefixed<IO>>>),
}

impl<IO> fmt::Debug for WebStream<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebStream")
            .field("tls", &self.is_tls())
            .field("h2", &self.is_h2())
            .finish()
    }
}

impl<IO> WebStream<IO> {
    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.0, StreamInner::Tls(_))
    }

    /// Whether ALPN chose HTTP/2 (only possible with
    /// [`WebConfigHandleBuilder::server_speaks_http2`]).
    pub fn is_h2(&self) -> bool {
        match &self.0 {
            StreamInner::Plain(_) => false,
            StreamInner::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }

    /// The certificate chain the client presented, end entity first (TLS with client
    /// certificates only).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match &self.0 {
            StreamInner::Plain(_) => None,
            StreamInner::Tls(tls) => tls.get_ref().1.peer_certificates(),
        }
    }

    /// The underlying transport (for its addresses).
    pub fn get_ref(&self) -> &IO {
        match &self.0 {
            StreamInner::Plain(io) => io,
            StreamInner::Tls(tls) => &tls.get_ref().0.io,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            StreamInner::Plain(io) => Pin::new(io).poll_read(cx, buf),
            StreamInner::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            StreamInner::Plain(io) => Pin::new(io).poll_write(cx, buf),
            StreamInner::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            StreamInner::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            StreamInner::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            StreamInner::Plain(io) => io.is_write_vectored(),
            StreamInner::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            StreamInner::Plain(io) => Pin::new(io).poll_flush(cx),
            StreamInner::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            StreamInner::Plain(io) => Pin::new(io).poll_shutdown(cx),
            StreamInner::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The transport under TLS, giving back the first byte that [`WebConfigHandle::accept`] read to
/// tell TLS from plain HTTP.
struct Prefixed<IO> {
    first: Option<u8>,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() > 0
            && let Some(byte) = this.first.take()
        {
            buf.put_slice(&[byte]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

async fn read_first_byte<IO: AsyncRead + Unpin>(io: &mut IO) -> io::Result<u8> {
    let mut byte = [0u8; 1];
    let n = read_some(io, &mut byte).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the client closed the connection before the TLS handshake",
        ));
    }
    Ok(byte[0])
}

async fn read_some<IO: AsyncRead + Unpin>(io: &mut IO, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut read_buf = ReadBuf::new(buf);
        match Pin::new(&mut *io).poll_read(cx, &mut read_buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read_buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Answers plain HTTP on a TLS listener with a clear-text 400, then closes gracefully: shuts
/// the write side and reads what the client still sends (a little), so that closing with
/// unread data does not reset the connection before the client reads the answer.
async fn answer_plain_http<IO: AsyncRead + AsyncWrite + Unpin>(io: &mut IO) -> io::Result<()> {
    let mut rest = PLAIN_HTTP_ANSWER;
    while !rest.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, rest)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = &rest[n..];
    }
    poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await?;
    poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx)).await?;
    let mut sink = [0u8; 1024];
    let mut drained = 0;
    while drained < 64 * 1024 {
        match tokio::time::timeout(Duration::from_millis(500), read_some(io, &mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The file cases (good and bad) are testdata/*.good.yml and *.bad.yml, walked by
    // tests/testdata.rs.

    #[test]
    fn client_auth_type_names() {
        for t in ClientAuthType::ALL {
            assert_eq!(t.as_str().parse::<ClientAuthType>(), Ok(t));
        }
        assert_eq!(
            "RequireClientCert".parse::<ClientAuthType>(),
            Ok(ClientAuthType::RequireAnyClientCert)
        );
        let e = "Mandatory".parse::<ClientAuthType>().unwrap_err();
        assert!(e.contains("RequireAndVerifyClientCert"), "{e}");
    }

    #[test]
    fn dummy_hash_is_well_formed_and_matches_nothing() {
        let hash = dummy_hash(4);
        assert_eq!(hash.len(), 60);
        assert!(!bcrypt::verify("", &hash).unwrap());
        assert!(!bcrypt::verify("password", &hash).unwrap());
        assert_eq!(
            dummy_hash(12)
                .parse::<bcrypt::HashParts>()
                .unwrap()
                .get_cost(),
            12
        );
    }

    #[test]
    fn basic_credentials_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), Err(AuthError::MissingCredentials));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(basic_credentials(&h), Err(AuthError::MissingCredentials));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&h), Err(AuthError::MalformedCredentials));
        // "alice" without a colon.
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic YWxpY2U="));
        assert_eq!(basic_credentials(&h), Err(AuthError::MalformedCredentials));
        // "alice:pa:ss"
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("basic YWxpY2U6cGE6c3M="),
        );
        assert_eq!(
            basic_credentials(&h),
            Ok(("alice".to_string(), b"pa:ss".to_vec()))
        );
    }

    #[tokio::test]
    async fn authorize_checks_bcrypt_and_caches() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let dir =
            std::env::temp_dir().join(format!("promdrop-webconfig-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.yml");
        std::fs::write(&path, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
        let handle = WebConfigHandle::load(&path).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(
            handle.authorize(&h).await,
            Err(AuthError::MissingCredentials)
        );
        // alice:s3cret
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6czNjcmV0"),
        );
        assert_eq!(handle.authorize(&h).await, Ok(()));
        assert_eq!(handle.auth_cache.verified.lock().unwrap().len(), 1);
        assert_eq!(handle.authorize(&h).await, Ok(()));
        // alice:wrong
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6d3Jvbmc="),
        );
        assert_eq!(
            handle.authorize(&h).await,
            Err(AuthError::InvalidCredentials)
        );
        // bob:s3cret (unknown user)
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic Ym9iOnMzY3JldA=="),
        );
        assert_eq!(
            handle.authorize(&h).await,
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(handle.auth_cache.verified.lock().unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
