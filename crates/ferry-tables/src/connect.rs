//! `postgres://` URLs, resolved the way libpq resolves a connection.
//!
//! A setting comes from the first of: the URL (its host, port, user, database and query
//! parameters `sslmode`, `sslrootcert`, `application_name`, `connect_timeout`, `service`), the
//! service's section of a `pg_service.conf` (named by `service=` or PGSERVICE; the file is
//! PGSERVICEFILE or `~/.pg_service.conf`, then `PGSYSCONFDIR/pg_service.conf`), the environment
//! (PGHOST, PGPORT, PGDATABASE, PGUSER, PGSSLMODE, PGSSLROOTCERT, PGAPPNAME, PGCONNECT_TIMEOUT),
//! then libpq's defaults (the socket in `/var/run/postgresql`, port 5432, the OS user, a
//! database named as the user). The password: the service's, else PGPASSWORD, else the first
//! matching line of the password file (PGPASSFILE or `~/.pgpass`), which like libpq is ignored
//! when others than its owner may read it. A password in the URL is refused: it would be kept in
//! the job and shown wherever the source is.

use crate::{Result, TablesError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A table source as the user wrote it: `postgres://[user@]host[:port]/database[?params]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    dbname: Option<String>,
    params: BTreeMap<String, String>,
}

/// The query parameters a URL may carry (others are refused, named).
const PARAMS: [&str; 6] = ["sslmode", "sslrootcert", "application_name", "connect_timeout", "service", "host"];

impl PgUrl {
    pub fn parse(text: &str) -> Result<PgUrl> {
        let bad = |reason: &str| TablesError::Url { url: shown(text), reason: reason.to_string() };
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(bad("it must start with postgres:// or postgresql://"));
        }
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if url.password().is_some() {
            return Err(TablesError::PasswordInUrl { url: shown(text) });
        }
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| bad("not UTF-8"));
        let host = url.host_str().filter(|h| !h.is_empty()).map(decode).transpose()?;
        let user = Some(url.username()).filter(|u| !u.is_empty()).map(decode).transpose()?;
        let path = url.path().trim_start_matches('/');
        if path.contains('/') {
            return Err(bad("the path is one database name"));
        }
        let dbname = Some(path).filter(|p| !p.is_empty()).map(decode).transpose()?;
        let mut params = BTreeMap::new();
        for (k, v) in url.query_pairs() {
            if k == "password" {
                return Err(TablesError::PasswordInUrl { url: shown(text) });
            }
            if !PARAMS.contains(&k.as_ref()) {
                return Err(bad(&format!("unknown parameter {k:?} (ferry takes {})", PARAMS.join(", "))));
            }
            params.insert(k.into_owned(), v.into_owned());
        }
        Ok(PgUrl { host, port: url.port(), user, dbname, params })
    }

    /// The database's name as given (`None`: resolved like libpq).
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }
}

impl std::fmt::Display for PgUrl {
    /// The URL as ferry keeps and shows it: never a password (none is accepted).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        write!(f, "postgres://")?;
        if let Some(u) = &self.user {
            write!(f, "{}@", enc(u))?;
        }
        if let Some(h) = &self.host {
            // A socket directory is a path: written encoded, as libpq reads it.
            if h.starts_with('/') { write!(f, "{}", enc(h))? } else { write!(f, "{h}")? }
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "/{}", self.dbname.as_deref().map(enc).unwrap_or_default())?;
        let mut sep = '?';
        for (k, v) in &self.params {
            write!(f, "{sep}{k}={}", enc(v))?;
            sep = '&';
        }
        Ok(())
    }
}

/// A URL as an error shows it: what precedes an `@` (a user and maybe a password) and the
/// query (which may hold one) are cut.
fn shown(text: &str) -> String {
    let (text, query) = match text.split_once('?') {
        Some((before, _)) => (before, "?…"),
        None => (text, ""),
    };
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}{query}", &text[..s + 3], &text[at..]),
        _ => format!("{text}{query}"),
    }
}

/// What libpq reads besides the URL: the environment and the user's home (a test gives its own).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub vars: BTreeMap<String, String>,
    pub home: Option<PathBuf>,
    /// The operating system's user name (libpq's default user).
    pub os_user: Option<String>,
}

impl Environment {
    /// This process's environment.
    pub fn current() -> Environment {
        let vars = std::env::vars().filter(|(k, _)| k.starts_with("PG")).collect();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Environment { vars, home, os_user: std::env::var("USER").ok().or_else(os_user) }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

fn os_user() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; read at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name).to_str().ok().map(str::to_string)
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [SslMode::Disable, SslMode::Allow, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull];

    /// The mode as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Tcp(String),
    /// A directory holding the server's Unix socket.
    Socket(PathBuf),
}

/// Where the password came from (for a report; never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordFrom {
    None,
    Service,
    Environment,
    PassFile(PathBuf),
}

/// A connection, resolved. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub host: Host,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    /// How the connection uses TLS, from `sslmode` and the root certificates (see [`crate::tls`]).
    pub tls: TlsPlan,
    pub application_name: String,
    pub connect_timeout: Option<Duration>,
    password: Option<String>,
    pub password_from: PasswordFrom,
    /// What libpq would warn about (a password file others may read, so ignored).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("password_from", &self.password_from)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Resolves `url` against `env` the way libpq does (see the module docs).
    pub fn resolve(url: &PgUrl, env: &Environment) -> Result<Settings> {
        let service_name = url.params.get("service").map(String::as_str).or(env.var("PGSERVICE"));
        let service = match service_name {
            Some(name) => find_service(name, env)?,
            None => BTreeMap::new(),
        };
        let pick = |from_url: Option<&str>, key: &str, var: &str| -> Option<String> {
            from_url
                .map(str::to_string)
                .or_else(|| url.params.get(key).cloned())
                .or_else(|| service.get(key).cloned())
                .or_else(|| env.var(var).map(str::to_string))
        };
        // libpq: a `host` parameter overrides the URL's host.
        let host = url.params.get("host").cloned().or_else(|| pick(url.host.as_deref(), "host", "PGHOST"));
        if host.as_deref().is_some_and(|h| h.contains(',')) {
            return Err(TablesError::Setting { setting: "host", reason: "several hosts are not supported: give one".into() });
        }
        let host = match host {
            Some(h) if h.starts_with('/') => Host::Socket(PathBuf::from(h)),
            Some(h) => Host::Tcp(h),
            None => Host::Socket(PathBuf::from("/var/run/postgresql")),
        };
        let port_text = url.port.map(|p| p.to_string());
        let port = match pick(port_text.as_deref(), "port", "PGPORT") {
            Some(p) => p.parse().map_err(|_| TablesError::Url { url: url.to_string(), reason: format!("port {p:?} is not a port") })?,
            None => 5432,
        };
        let user = pick(url.user.as_deref(), "user", "PGUSER")
            .or_else(|| env.os_user.clone())
            .ok_or_else(|| TablesError::Url { url: url.to_string(), reason: "no user: give one in the URL or as PGUSER".into() })?;
        let dbname = pick(url.dbname.as_deref(), "dbname", "PGDATABASE").unwrap_or_else(|| user.clone());
        let sslrootcert = pick(None, "sslrootcert", "PGSSLROOTCERT").map(PathBuf::from);
        // libpq 16: with sslrootcert=system, sslmode defaults to verify-full.
        let system = sslrootcert.as_deref() == Some(Path::new("system"));
        let mode = pick(None, "sslmode", "PGSSLMODE").unwrap_or_else(|| (if system { "verify-full" } else { "prefer" }).into());
        let sslmode = SslMode::parse(&mode).ok_or_else(|| {
            let from = if url.params.contains_key("sslmode") { "the URL's sslmode" } else { "PGSSLMODE" };
            TablesError::Setting {
                setting: from,
                reason: format!("{mode:?} is not one of libpq's sslmodes (disable, allow, prefer, require, verify-ca, verify-full)"),
            }
        })?;
        for (var, why) in [
            ("PGSSLCRL", "certificate revocation lists are not supported; unset it or check revocation elsewhere"),
            ("PGSSLCRLDIR", "certificate revocation lists are not supported; unset it or check revocation elsewhere"),
            ("PGSSLCERT", "client certificates are not supported"),
            ("PGSSLKEY", "client certificates are not supported"),
        ] {
            if env.var(var).is_some() {
                return Err(crate::tls::TlsError::Unsupported { setting: var, why }.into());
            }
        }
        match env.var("PGCHANNELBINDING") {
            None | Some("disable" | "prefer") => {}
            Some("require") => {
                let why = "SCRAM channel binding is not supported";
                return Err(crate::tls::TlsError::Unsupported { setting: "PGCHANNELBINDING=require", why }.into());
            }
            Some(other) => {
                return Err(TablesError::Setting {
                    setting: "PGCHANNELBINDING",
                    reason: format!("{other:?} is not one of disable, prefer, require"),
                });
            }
        }
        // Requirements libpq would enforce and ferry cannot: refused, not silently dropped.
        let unsupported = |setting, why: &str| Err(TablesError::Setting { setting, reason: format!("not supported: {why}") });
        if env.var("PGGSSENCMODE") == Some("require") {
            return unsupported("PGGSSENCMODE=require", "GSSAPI encryption is not supported (TLS is: PGSSLMODE)");
        }
        if env.var("PGREQUIREAUTH").is_some() {
            return unsupported(
                "PGREQUIREAUTH",
                "restricting the authentication methods is not supported; the server's pg_hba.conf decides",
            );
        }
        if env.var("PGTARGETSESSIONATTRS").is_some_and(|v| v != "any") {
            return unsupported("PGTARGETSESSIONATTRS", "only one host, of any kind, is supported");
        }
        let tls = match &host {
            // No TLS on a Unix socket: nothing to verify, no root certificate needed.
            Host::Socket(_) => TlsPlan { mode: sslmode, verify: crate::tls::Verify::Nothing, roots: None },
            Host::Tcp(_) => TlsPlan::of(sslmode, sslrootcert.as_deref(), env.home.as_deref())?,
        };
        let application_name = pick(None, "application_name", "PGAPPNAME").unwrap_or_else(|| "ferry".into());
        let connect_timeout = match pick(None, "connect_timeout", "PGCONNECT_TIMEOUT") {
            Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| TablesError::Url {
                url: url.to_string(),
                reason: format!("connect_timeout {t:?} is not a number of seconds"),
            })?))
            .filter(|d| !d.is_zero()),
            None => None,
        };
        let mut settings = Settings {
            host,
            port,
            user,
            dbname,
            sslmode,
            sslrootcert,
            tls,
            application_name,
            connect_timeout,
            password: None,
            password_from: PasswordFrom::None,
            warnings: Vec::new(),
        };
        if let Some(p) = service.get("password") {
            (settings.password, settings.password_from) = (Some(p.clone()), PasswordFrom::Service);
        } else if let Some(p) = env.var("PGPASSWORD") {
            (settings.password, settings.password_from) = (Some(p.to_string()), PasswordFrom::Environment);
        } else {
            let file = env.var("PGPASSFILE").map(PathBuf::from).or_else(|| env.home.as_ref().map(|h| h.join(".pgpass")));
            if let Some(file) = file {
                settings.password_from_file(&file)?;
            }
        }
        Ok(settings)
    }

    /// The first line of password file `file` that matches these settings (libpq's rules:
    /// `host:port:database:user:password`, `*` matches anything, `\` escapes `:` and `\`; a
    /// socket connection's host is `localhost`). A file others may read is ignored, as libpq does.
    fn password_from_file(&mut self, file: &Path) -> Result<()> {
        let Ok(meta) = std::fs::metadata(file) else { return Ok(()) };
        if !meta.is_file() {
            return Ok(());
        }
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
            self.warnings
                .push(format!("password file {} has group or world access; it is ignored (chmod 0600 it), as libpq does", file.display()));
            return Ok(());
        }
        let text = std::fs::read_to_string(file).map_err(|source| TablesError::Io { path: file.to_path_buf(), source })?;
        let host = match &self.host {
            Host::Tcp(h) => h.clone(),
            Host::Socket(_) => "localhost".to_string(),
        };
        let wanted = [host, self.port.to_string(), self.dbname.clone(), self.user.clone()];
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()) {
            let fields = split_pgpass(line);
            if fields.len() < 5 {
                continue;
            }
            if fields[..4].iter().zip(&wanted).all(|(f, w)| f == "*" || f == w) {
                self.password = Some(fields[4..].join(":"));
                self.password_from = PasswordFrom::PassFile(file.to_path_buf());
                return Ok(());
            }
        }
        Ok(())
    }

    /// Whether a password was found (for tests and reports; never the password).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// What the settings name, for messages: `host:port/database as user`.
    pub fn target(&self) -> String {
        let host = match &self.host {
            Host::Tcp(h) => h.clone(),
            Host::Socket(d) => d.display().to_string(),
        };
        format!("{host}:{}/{} as {}", self.port, self.dbname, self.user)
    }

    /// Connects (with TLS as [`TlsPlan`] says), drives the connection on a task of its own, and
    /// pins the session settings ferry's SQL depends on ([`SESSION`]).
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let client = self.open().await?;
        client
            .batch_execute(SESSION)
            .await
            .map_err(|source| TablesError::Query { what: format!("set up the session on {}", self.target()), source })?;
        Ok(client)
    }

    async fn open(&self) -> Result<tokio_postgres::Client> {
        use tokio_postgres::config::SslMode as Wire;
        let config = self.config();
        match (&self.host, &self.tls) {
            // libpq never uses TLS on a Unix socket.
            (Host::Socket(_), _) | (_, TlsPlan { mode: SslMode::Disable, .. }) => self.spawn(config.connect(tokio_postgres::NoTls).await),
            (_, TlsPlan { mode: SslMode::Allow, .. }) => match config.connect(tokio_postgres::NoTls).await {
                Ok(done) => self.spawn(Ok(done)),
                // The server's pg_hba.conf has no entry for a connection without TLS (SQLSTATE
                // 28000): libpq then tries with TLS. Any other failure (a wrong password) is the answer.
                Err(e) if e.code() != Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => {
                    self.spawn::<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>(Err(e))
                }
                Err(_) => {
                    let mut config = config;
                    config.ssl_mode(Wire::Require);
                    self.spawn(config.connect(self.tls.connector()?).await)
                }
            },
            (_, plan) => {
                let mut config = config;
                config.ssl_mode(if plan.mode == SslMode::Prefer { Wire::Prefer } else { Wire::Require });
                self.spawn(config.connect(plan.connector()?).await)
            }
        }
    }

    fn spawn<S, T>(
        &self,
        connected: std::result::Result<(tokio_postgres::Client, tokio_postgres::Connection<S, T>), tokio_postgres::Error>,
    ) -> Result<tokio_postgres::Client>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (client, connection) = connected.map_err(|source| TablesError::Connect { target: self.target(), source })?;
        tokio::spawn(async move {
            // The client's calls fail once the connection ends; its own error has no caller.
            let _ = connection.await;
        });
        Ok(client)
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        match &self.host {
            Host::Tcp(h) => config.host(h),
            Host::Socket(d) => config.host_path(d),
        };
        config.port(self.port).user(&self.user).dbname(&self.dbname).application_name(&self.application_name);
        if let Some(p) = &self.password {
            config.password(p);
        }
        if let Some(t) = self.connect_timeout {
            config.connect_timeout(t);
        }
        config
    }
}

/// The session settings every connection of ferry's pins, whatever the server's, the role's or
/// the database's defaults: types and functions named by the catalog are found in
/// `pg_catalog` only (`format_type` then names every other type with its schema, the same at
/// `verify` as at the export), text renderings of dates, intervals and floats are one, and
/// row-level security is off: a table whose policies would hide rows from the role is an error
/// (as pg_dump does), not a partial export.
pub const SESSION: &str = "SET search_path = pg_catalog; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET row_security = off";

/// How a connection uses TLS: libpq's `sslmode`, and how the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPlan {
    pub mode: SslMode,
    pub verify: crate::tls::Verify,
    pub roots: Option<crate::tls::Roots>,
}

impl TlsPlan {
    /// libpq's rules: `require` verifies the chain when a root certificate file exists;
    /// `verify-ca` and `verify-full` need one (`sslrootcert`, else `~/.postgresql/root.crt`), or
    /// `sslrootcert=system` with `verify-full` only.
    pub fn of(mode: SslMode, sslrootcert: Option<&Path>, home: Option<&Path>) -> Result<TlsPlan> {
        use crate::tls::{Roots, Verify};
        let system = sslrootcert.is_some_and(|p| p == Path::new("system"));
        let file = match sslrootcert {
            Some(p) if !system => Some(p.to_path_buf()),
            Some(_) => None,
            None => home.map(|h| h.join(".postgresql").join("root.crt")),
        };
        use crate::tls::TlsError;
        if system && matches!(mode, SslMode::Allow | SslMode::Prefer | SslMode::Require | SslMode::VerifyCa) {
            return Err(TlsError::SystemRootsNeedVerifyFull { mode: mode.as_str() }.into());
        }
        let existing = file.clone().filter(|f| crate::tls::exists(f));
        let (verify, roots) = match mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => (Verify::Nothing, None),
            SslMode::Require => match existing {
                Some(f) => (Verify::Chain, Some(Roots::File(f))),
                None => (Verify::Nothing, None),
            },
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let verify = if mode == SslMode::VerifyCa { Verify::Chain } else { Verify::Full };
                match (system, existing) {
                    (true, _) => (verify, Some(Roots::System)),
                    (false, Some(f)) => (verify, Some(Roots::File(f))),
                    (false, None) => {
                        let state = if file.as_deref().is_some_and(Path::exists) { "is not a file" } else { "does not exist" };
                        let path = file.map(|f| f.display().to_string()).unwrap_or_else(|| "~/.postgresql/root.crt".into());
                        return Err(TlsError::NoRootFile { mode: mode.as_str(), path, state }.into());
                    }
                }
            }
        };
        Ok(TlsPlan { mode, verify, roots })
    }

    fn connector(&self) -> Result<crate::tls::MakeRustls> {
        Ok(crate::tls::MakeRustls::new(crate::tls::client_config(self.verify, self.roots.as_ref())?))
    }
}

/// A password file line's fields, unescaped.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("a field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("a field").push(c),
        }
    }
    fields
}

/// The settings of service `name`: from the user's service file, else the system's.
fn find_service(name: &str, env: &Environment) -> Result<BTreeMap<String, String>> {
    let user_file = env.var("PGSERVICEFILE").map(PathBuf::from).or_else(|| env.home.as_ref().map(|h| h.join(".pg_service.conf")));
    let system_file = Path::new(env.var("PGSYSCONFDIR").unwrap_or("/etc/postgresql-common")).join("pg_service.conf");
    let mut searched = Vec::new();
    for file in user_file.into_iter().chain([system_file]) {
        searched.push(file.display().to_string());
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        if let Some(found) = service_in(&text, name, &file)? {
            return Ok(found);
        }
    }
    Err(TablesError::ServiceNotFound { name: name.to_string(), searched: searched.join(" or ") })
}

/// Service `name`'s section of a service file's `text`, if it has one.
fn service_in(text: &str, name: &str, file: &Path) -> Result<Option<BTreeMap<String, String>>> {
    let mut current: Option<&str> = None;
    let mut found: Option<BTreeMap<String, String>> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            let section = section.strip_suffix(']').ok_or_else(|| TablesError::ServiceFile {
                path: file.to_path_buf(),
                line: n + 1,
                reason: "a section name without its ]".into(),
            })?;
            if found.is_some() {
                break;
            }
            current = Some(section);
            if section == name {
                found = Some(BTreeMap::new());
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(TablesError::ServiceFile { path: file.to_path_buf(), line: n + 1, reason: "not key=value".into() });
        };
        if let (Some(map), Some(_)) = (found.as_mut(), current) {
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment { vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), home: None, os_user: Some("osuser".into()) }
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_never_shown() {
        for url in ["postgres://admin:hunter2@db.internal:5432/shop", "postgres://db/shop?password=hunter2"] {
            let err = PgUrl::parse(url).unwrap_err();
            assert!(matches!(err, TablesError::PasswordInUrl { .. }), "{url}: {err}");
            let text = err.to_string();
            assert!(!text.contains("hunter2") && text.contains("PGPASSWORD") && text.contains(".pgpass"), "{text}");
        }
        let err = PgUrl::parse("postgres://db/shop?sslcert=x").unwrap_err().to_string();
        assert!(err.contains("unknown parameter \"sslcert\""), "{err}");
        assert!(PgUrl::parse("mysql://db/shop").is_err());
        assert!(PgUrl::parse("postgres://db/shop/extra").is_err());
    }

    #[test]
    fn tls_settings_follow_libpq_and_what_ferry_cannot_honour_is_refused_by_name() {
        let resolve = |url: &str, vars: &[(&str, &str)]| Settings::resolve(&PgUrl::parse(url).unwrap(), &env(vars));
        // A host parameter overrides the URL's host, as in libpq.
        let s = resolve("postgres://db.internal/shop?host=127.0.0.1", &[]).unwrap();
        assert_eq!(s.host, Host::Tcp("127.0.0.1".into()));
        // sslrootcert=system alone means verify-full.
        let s = resolve("postgres://127.0.0.1/shop?sslrootcert=system", &[]).unwrap();
        assert_eq!((s.tls.mode, s.tls.verify), (SslMode::VerifyFull, crate::tls::Verify::Full));
        // A Unix socket never uses TLS, so a verifying mode needs no root certificate there.
        let s = resolve("postgres:///shop?host=/tmp&sslmode=verify-full", &[]).unwrap();
        assert_eq!(s.tls.verify, crate::tls::Verify::Nothing);
        let err = resolve("postgres://127.0.0.1/shop?sslmode=verify-full", &[]).unwrap_err();
        assert!(matches!(err, TablesError::Tls(crate::tls::TlsError::NoRootFile { .. })), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = resolve("postgres://127.0.0.1/shop?sslmode=verify-ca", &[("PGSSLROOTCERT", dir.path().to_str().unwrap())]).unwrap_err();
        assert!(err.to_string().contains("is not a file"), "{err}");
        for (var, value) in [("PGSSLCRL", "/etc/crl.pem"), ("PGSSLCERT", "/c.crt"), ("PGCHANNELBINDING", "require")] {
            let err = resolve("postgres://127.0.0.1/shop", &[(var, value)]).unwrap_err();
            assert!(
                matches!(err, TablesError::Tls(crate::tls::TlsError::Unsupported { .. }))
                    && err.to_string().starts_with(&format!("TLS: {var}")),
                "{err}"
            );
        }
        assert!(resolve("postgres://127.0.0.1/shop", &[("PGCHANNELBINDING", "prefer")]).is_ok());
        for (var, value) in [("PGGSSENCMODE", "require"), ("PGREQUIREAUTH", "scram-sha-256"), ("PGTARGETSESSIONATTRS", "read-write")] {
            let err = resolve("postgres://127.0.0.1/shop", &[(var, value)]).unwrap_err();
            assert!(matches!(err, TablesError::Setting { .. }) && err.to_string().contains("not supported"), "{var}: {err}");
        }
        assert!(resolve("postgres://127.0.0.1/shop", &[("PGGSSENCMODE", "prefer"), ("PGTARGETSESSIONATTRS", "any")]).is_ok());
        let err = resolve("postgres://127.0.0.1/shop", &[("PGCHANNELBINDING", "bogus")]).unwrap_err().to_string();
        assert!(err.starts_with("PGCHANNELBINDING: \"bogus\""), "{err}");
        let err = resolve("postgres://x/shop?host=127.0.0.1,127.0.0.2", &[]).unwrap_err().to_string();
        assert!(err.contains("several hosts are not supported"), "{err}");
        let err = resolve("postgres://127.0.0.1/shop", &[("PGSSLMODE", "strict")]).unwrap_err().to_string();
        assert!(err.starts_with("PGSSLMODE: \"strict\" is not one of libpq's sslmodes"), "{err}");
    }

    #[test]
    fn the_url_wins_then_the_service_then_the_environment_then_libpq_s_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let services = dir.path().join("services.conf");
        std::fs::write(&services, "# ours\n[other]\nhost=nowhere\n[warehouse]\nhost=10.0.0.9\nport=6543\ndbname=wh\n").unwrap();
        let services = services.to_str().unwrap();
        let e = env(&[("PGSERVICEFILE", services), ("PGHOST", "envhost"), ("PGPORT", "7000"), ("PGUSER", "envuser")]);
        let s = Settings::resolve(&PgUrl::parse("postgres:///?service=warehouse").unwrap(), &e).unwrap();
        assert_eq!((s.host, s.port, s.dbname.as_str(), s.user.as_str()), (Host::Tcp("10.0.0.9".into()), 6543, "wh", "envuser"));
        let s = Settings::resolve(&PgUrl::parse("postgres://u@127.0.0.1:5999/shop?service=warehouse").unwrap(), &e).unwrap();
        assert_eq!((s.host, s.port, s.dbname.as_str(), s.user.as_str()), (Host::Tcp("127.0.0.1".into()), 5999, "shop", "u"));
        let s = Settings::resolve(&PgUrl::parse("postgres:///").unwrap(), &env(&[])).unwrap();
        assert_eq!(
            (s.host, s.port, s.dbname.as_str(), s.user.as_str()),
            (Host::Socket("/var/run/postgresql".into()), 5432, "osuser", "osuser")
        );
        assert_eq!(s.sslmode, SslMode::Prefer);
        let err = Settings::resolve(&PgUrl::parse("postgres:///?service=missing").unwrap(), &e).unwrap_err();
        assert!(matches!(err, TablesError::ServiceNotFound { .. }), "{err}");
    }

    #[test]
    fn the_password_file_matches_like_libpq_and_is_ignored_when_others_may_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "# comment\nother:*:*:*:nope\n127.0.0.1:5433:shop:*:s\\:ecret\\\\x\n*:*:*:*:fallback\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = env(&[("PGPASSFILE", file.to_str().unwrap())]);
        let s = Settings::resolve(&PgUrl::parse("postgres://a@127.0.0.1:5433/shop").unwrap(), &e).unwrap();
        assert_eq!((s.password.as_deref(), &s.password_from), (Some("s:ecret\\x"), &PasswordFrom::PassFile(file.clone())));
        let s = Settings::resolve(&PgUrl::parse("postgres://a@127.0.0.1:5433/other").unwrap(), &e).unwrap();
        assert_eq!(s.password.as_deref(), Some("fallback"));
        // PGPASSWORD comes before the file.
        let e2 = env(&[("PGPASSFILE", file.to_str().unwrap()), ("PGPASSWORD", "fromenv")]);
        let s = Settings::resolve(&PgUrl::parse("postgres://a@127.0.0.1:5433/shop").unwrap(), &e2).unwrap();
        assert_eq!((s.password.as_deref(), s.password_from), (Some("fromenv"), PasswordFrom::Environment));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = Settings::resolve(&PgUrl::parse("postgres://a@127.0.0.1:5433/shop").unwrap(), &e).unwrap();
        assert!(!s.has_password() && s.warnings[0].contains("ignored"), "{:?}", s.warnings);
        assert!(!format!("{s:?}").contains("fallback"));
    }

    #[test]
    fn a_url_is_kept_without_credentials_and_reads_back_the_same() {
        for text in
            ["postgres://127.0.0.1:5432/shop", "postgres://reader@db.internal/wh%20one?sslmode=disable", "postgres://%2Ftmp%2Fsock/shop"]
        {
            let url = PgUrl::parse(text).unwrap();
            assert_eq!(PgUrl::parse(&url.to_string()).unwrap(), url, "{text} → {url}");
        }
        assert_eq!(PgUrl::parse("postgres://%2Ftmp%2Fsock/shop").unwrap().host.as_deref(), Some("/tmp/sock"));
    }
}
