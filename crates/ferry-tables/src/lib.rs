//! PostgreSQL tables as a source: how ferry reaches a database, what its tables' columns are, and
//! how each maps onto Parquet exactly (or is refused at plan time).
//!
//! This crate owns everything that speaks PostgreSQL: libpq's connection conventions, catalog
//! introspection, and (as the table-export capability grows) the snapshot, binary COPY, Parquet
//! files and the aggregates `verify` proves them with. It must never know a provider, the
//! journal or the engine: it hands the engine files and facts, and the engine moves them.
//!
//! # Layout
//! - [`connect`]: `postgres://` URLs and libpq's conventions (PGHOST…, PGPASSWORD, `~/.pgpass`,
//!   PGSERVICE and `pg_service.conf`, PGSSLMODE, PGSSLROOTCERT), resolved into one
//!   [`connect::Settings`]; a password in the URL is refused. [`tls`]: TLS as `sslmode` asks.
//! - [`schema`]: the tables named (`--table`, `--schema`), their columns and primary keys from
//!   the catalog, and each column's [`schema::ColumnType`] or why it is refused
//!   ([`schema::Refusal`]), with the casts a user chose ([`schema::Cast`]).
//! - [`snapshot`]: one consistent view for the whole export: the leader's exported snapshot,
//!   adopted by every worker connection; refused on a standby.
//! - [`fingerprint`]: the order-independent row fingerprint, in SQL and in Rust over the
//!   values as the wire's binary form gives them ([`fingerprint::decode`]).
//!
//! - [`figures`]: each file's row count, fingerprint and column aggregates, in SQL and in Rust.
//! - [`ranges`], [`export`], [`files`]: a table cut into key or page ranges, each exported by
//!   binary COPY into a Parquet file (and read back for `verify`).
//! - [`incremental`]: `--incremental-by`: the rows of a table written since an earlier export.
//! - [`sample`]: `verify --sample`: rows of the files fetched by primary key and compared field
//!   by field, and foreign keys checked among the exported rows.

pub mod connect;
pub mod export;
pub mod figures;
pub mod files;
pub mod fingerprint;
pub mod incremental;
pub mod ranges;
pub mod sample;
pub mod schema;
pub mod snapshot;
pub mod tls;

/// A connection to the database, as [`connect::Settings::connect`] opens it.
pub use tokio_postgres::Client;

/// What went wrong reaching or reading a database. Never carries a password: the settings'
/// password is not in any message, and URLs are shown without one.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error("{url}: not a PostgreSQL URL: {reason}")]
    Url { url: String, reason: String },
    #[error(
        "{url}: a password in the URL is refused (it would be kept in the job and shown in its reports); give it as PGPASSWORD, in ~/.pgpass (PGPASSFILE) or in a pg_service.conf service (PGSERVICE)"
    )]
    PasswordInUrl { url: String },
    #[error("{path}:{line}: {reason}")]
    ServiceFile { path: std::path::PathBuf, line: usize, reason: String },
    #[error("service {name:?} is not in {searched}")]
    ServiceNotFound { name: String, searched: String },
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// A connection setting (from the environment or the URL's parameters) that is not valid.
    #[error("{setting}: {reason}")]
    Setting { setting: &'static str, reason: String },
    #[error("connecting to {target}: {}", reason(source))]
    Connect { target: String, source: tokio_postgres::Error },
    #[error("{what}: {}", reason(source))]
    Query { what: String, source: tokio_postgres::Error },
    #[error("{0}")]
    Catalog(String),
    #[error(
        "the server is a standby: it cannot export a snapshot, so the export's connections would not see one moment of the database; export from the primary (or a promoted copy)"
    )]
    Standby,
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("the server is PostgreSQL {version_num}: table exports need PostgreSQL 14 or later")]
    Version { version_num: i32 },
    #[error("the database stores text as {encoding}: table exports need a UTF8 database (its figures are computed on the server's bytes)")]
    Encoding { encoding: String },
}

pub type Result<T, E = TablesError> = std::result::Result<T, E>;

/// What the server (or the connection) said: the server's message and its SQLSTATE, else each
/// cause in turn ("db error" alone names nothing). A server's message never holds a password.
fn reason(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
