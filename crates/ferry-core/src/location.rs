//! Where objects live: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
//! `file:///abs/path` or a plain path.
//!
//! A location's prefix is a "directory": `s3://b/photos` copies the keys under `photos/`,
//! and keys are recorded relative to it. Credentials never appear in a location: URLs with
//! user info or a query string (a SAS token, say) are refused, so a location can be written to
//! a job file, a manifest or a log line as it is.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    S3,
    Gcs,
    Azure,
    Local,
}

impl Scheme {
    pub fn as_url_scheme(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
            Scheme::Local => "file",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("unknown URL scheme {scheme:?} in {url:?}: expected s3://, gs://, az://, file:// or a local path")]
    UnknownScheme { scheme: String, url: String },
    #[error("{url:?} names no bucket or container (expected {scheme}://NAME/prefix)")]
    MissingBucket { url: String, scheme: &'static str },
    #[error("{what} in {url}: ferry takes credentials only from the provider's standard chain")]
    CredentialsInUrl { url: String, what: &'static str },
    #[error("invalid bucket or container name {name:?} in {url:?}: 3 to 63 letters, digits, '-', '.' or '_'")]
    BadBucket { name: String, url: String },
    #[error("{url:?} is not an absolute local path")]
    RelativePath { url: String },
}

/// A parsed source or destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    pub scheme: Scheme,
    /// Bucket or container; empty for local paths.
    pub bucket: String,
    /// For object stores: the key prefix, empty or ending in `/`. For local: the absolute root
    /// directory, without a trailing `/` (except `/` itself).
    pub prefix: String,
}

impl Location {
    /// Parses a URL or an absolute local path. Relative local paths must be made absolute by the
    /// caller first (this crate does no I/O, so it cannot know the working directory).
    pub fn parse(url: &str) -> Result<Location, LocationError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            if url.starts_with('/') {
                return Ok(Self::local(url));
            }
            return Err(LocationError::RelativePath { url: url.to_string() });
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "s3" => Scheme::S3,
            "gs" | "gcs" => Scheme::Gcs,
            "az" | "azure" => Scheme::Azure,
            "file" => {
                // A file URL's query is not part of its path (RFC 8089): `file:///x?sig=…` is a
                // URL pasted with its token, refused like any other (`%3F` names a `?`).
                if rest.contains('?') {
                    return Err(LocationError::CredentialsInUrl { url: redact(url), what: "a query string" });
                }
                if !rest.starts_with('/') {
                    return Err(LocationError::RelativePath { url: url.to_string() });
                }
                return Ok(Self::local(&percent_encoding::percent_decode_str(rest).decode_utf8_lossy()));
            }
            other => return Err(LocationError::UnknownScheme { scheme: other.to_string(), url: url.to_string() }),
        };
        if rest.contains('?') {
            return Err(LocationError::CredentialsInUrl { url: redact(url), what: "a query string" });
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') {
            return Err(LocationError::CredentialsInUrl { url: redact(url), what: "user info" });
        }
        if bucket.is_empty() {
            return Err(LocationError::MissingBucket { url: url.to_string(), scheme: scheme.as_url_scheme() });
        }
        let max_len = if scheme == Scheme::Gcs { 222 } else { 63 };
        if bucket.len() < 3 || bucket.len() > max_len || !bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(LocationError::BadBucket { name: bucket.to_string(), url: url.to_string() });
        }
        let prefix = prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
        Ok(Location { scheme, bucket: bucket.to_string(), prefix })
    }

    fn local(path: &str) -> Location {
        let trimmed = path.trim_end_matches('/');
        let root = if trimmed.is_empty() { "/" } else { trimmed };
        Location { scheme: Scheme::Local, bucket: String::new(), prefix: root.to_string() }
    }

    /// The location of the folder `name` under this one.
    pub fn child(&self, name: &str) -> Location {
        let prefix = match self.scheme {
            Scheme::Local if self.prefix == "/" => format!("/{name}"),
            Scheme::Local => format!("{}/{name}", self.prefix),
            _ => format!("{}{name}/", self.prefix),
        };
        Location { prefix, ..self.clone() }
    }

    /// Whether one of the two locations holds the other (or they are the same): a write under
    /// one could land among the other's objects.
    pub fn overlaps(&self, other: &Location) -> bool {
        if self.scheme != other.scheme || self.bucket != other.bucket {
            return false;
        }
        let folder = |l: &Location| match l.scheme {
            Scheme::Local if l.prefix == "/" => "/".to_string(),
            Scheme::Local => format!("{}/", l.prefix),
            _ => l.prefix.clone(),
        };
        let (a, b) = (folder(self), folder(other));
        a.starts_with(&b) || b.starts_with(&a)
    }

    /// The full provider key of a manifest key (relative to this location).
    pub fn key_for(&self, relative: &str) -> String {
        match self.scheme {
            Scheme::Local => relative.to_string(),
            _ => format!("{}{}", self.prefix, relative),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            // `parse` decodes `%` escapes in a file URL and refuses a `?` (a query): a path's
            // own `%` and `?` are written escaped, so the URL parses back to the same path.
            Scheme::Local => write!(f, "file://{}", self.prefix.replace('%', "%25").replace('?', "%3F")),
            s => write!(f, "{}://{}/{}", s.as_url_scheme(), self.bucket, self.prefix),
        }
    }
}

#[cfg(test)]
mod child_tests {
    use super::*;

    #[test]
    fn a_child_is_inside_and_overlaps_its_parent_only() {
        let s3 = Location::parse("s3://bucket/data").unwrap();
        assert_eq!(s3.child("run-3").to_string(), "s3://bucket/data/run-3/");
        assert!(s3.child("run-3").overlaps(&s3) && s3.overlaps(&s3.child("x")));
        assert!(!Location::parse("s3://bucket/database").unwrap().overlaps(&s3));
        assert!(!Location::parse("s3://other/data").unwrap().overlaps(&s3));
        let local = Location::parse("/srv/dst").unwrap();
        assert_eq!(local.child("run-1").prefix, "/srv/dst/run-1");
        assert!(Location::parse("/srv/dst/backup").unwrap().overlaps(&local));
        assert!(!Location::parse("/srv/dst-backup").unwrap().overlaps(&local));
        assert!(Location::parse("/").unwrap().overlaps(&local));
    }
}

/// Removes user info and the query string from a URL, for messages and logs.
pub fn redact(url: &str) -> String {
    let (head, _query) = url.split_once('?').map(|(h, q)| (h, Some(q))).unwrap_or((url, None));
    let redacted = match head.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_user, host)) if !rest[..rest.find('/').unwrap_or(rest.len())].is_empty() => {
                format!("{scheme}://***@{host}")
            }
            _ => head.to_string(),
        },
        None => head.to_string(),
    };
    if url.contains('?') { format!("{redacted}?***") } else { redacted }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme() {
        let l = Location::parse("s3://bucket/a/b").unwrap();
        assert_eq!((l.scheme, l.bucket.as_str(), l.prefix.as_str()), (Scheme::S3, "bucket", "a/b/"));
        assert_eq!(Location::parse("gs://bkt").unwrap().prefix, "");
        assert_eq!(Location::parse("az://cnt/x/").unwrap().prefix, "x/");
        let f = Location::parse("file:///tmp/x%20y/").unwrap();
        assert_eq!((f.scheme, f.prefix.as_str()), (Scheme::Local, "/tmp/x y"));
        assert_eq!(Location::parse("/").unwrap().prefix, "/");
        assert_eq!(Location::parse("s3://bkt/p").unwrap().key_for("k 1"), "p/k 1");
    }

    #[test]
    fn refuses_bad_urls_with_reasons() {
        assert!(matches!(Location::parse("ftp://x/y"), Err(LocationError::UnknownScheme { .. })));
        assert!(matches!(Location::parse("s3:///y"), Err(LocationError::MissingBucket { .. })));
        assert!(matches!(Location::parse("s3://b1/y"), Err(LocationError::BadBucket { .. })));
        assert!(matches!(Location::parse("relative/dir"), Err(LocationError::RelativePath { .. })));
        let e = Location::parse("az://cnt/p?sig=SECRET").unwrap_err().to_string();
        assert!(!e.contains("SECRET"), "{e}");
        // Issue 15 hostile pass: a file URL took its query as part of the path, token and all.
        let e = Location::parse("file:///backups/run?sig=SECRET").unwrap_err();
        assert!(matches!(e, LocationError::CredentialsInUrl { .. }) && !e.to_string().contains("SECRET"), "{e}");
        assert_eq!(Location::parse("file:///a%3Fb").unwrap().prefix, "/a?b");
        // A path's own `?` and `%` survive the round trip through its URL (job.toml keeps it).
        for path in ["/data/a?b", "/data/100%/x?y=%3F", "/\u{f}?"] {
            let url = Location::parse(path).unwrap().to_string();
            assert_eq!(Location::parse(&url).unwrap().prefix, path, "{url}");
        }
        let e = Location::parse("s3://AK:SK@bkt/p").unwrap_err().to_string();
        assert!(!e.contains("SK"), "{e}");
    }

    #[test]
    fn redacts() {
        assert_eq!(redact("http://u:p@127.0.0.1:9000/x?sig=1"), "http://***@127.0.0.1:9000/x?***");
        assert_eq!(redact("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
    }
}
