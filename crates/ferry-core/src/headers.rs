//! What travels with an object besides its bytes: the system headers beside Content-Type, user
//! metadata names as each kind of store can hold them, object tags — and, as a value, what a
//! destination could not carry ([`NotCarried`]).
//!
//! Content-Type and user metadata live on [`ObjectEntry`](crate::ObjectEntry) itself (they came
//! first); this module adds the rest and the rules that fit them to a destination
//! ([`Carries`], [`fit`]). Azure metadata names must be C# identifiers: [`azure_name`] and
//! [`from_azure_name`] are the documented, reversible mapping (docs/fidelity.md); only names
//! under its prefix ([`AZURE_ESCAPE_PREFIX`]) are ever decoded.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Object tags (S3 object tagging, Azure blob index tags): key → value.
pub type Tags = BTreeMap<String, String>;

/// A system header other than Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Header {
    ContentEncoding,
    ContentDisposition,
    ContentLanguage,
    CacheControl,
    Expires,
}

impl Header {
    pub const ALL: [Header; 5] =
        [Header::ContentEncoding, Header::ContentDisposition, Header::ContentLanguage, Header::CacheControl, Header::Expires];

    /// The HTTP header's name, as reports print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Header::ContentEncoding => "Content-Encoding",
            Header::ContentDisposition => "Content-Disposition",
            Header::ContentLanguage => "Content-Language",
            Header::CacheControl => "Cache-Control",
            Header::Expires => "Expires",
        }
    }
}

/// The system headers an object carries besides Content-Type, as the source returned them
/// (`Expires` as its HTTP-date text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl Headers {
    pub fn is_empty(&self) -> bool {
        Header::ALL.iter().all(|h| self.get(*h).is_none())
    }

    pub fn get(&self, header: Header) -> Option<&str> {
        match header {
            Header::ContentEncoding => self.content_encoding.as_deref(),
            Header::ContentDisposition => self.content_disposition.as_deref(),
            Header::ContentLanguage => self.content_language.as_deref(),
            Header::CacheControl => self.cache_control.as_deref(),
            Header::Expires => self.expires.as_deref(),
        }
    }

    pub fn slot(&mut self, header: Header) -> &mut Option<String> {
        match header {
            Header::ContentEncoding => &mut self.content_encoding,
            Header::ContentDisposition => &mut self.content_disposition,
            Header::ContentLanguage => &mut self.content_language,
            Header::CacheControl => &mut self.cache_control,
            Header::Expires => &mut self.expires,
        }
    }

    /// Each header set here, with its value.
    pub fn iter(&self) -> impl Iterator<Item = (Header, &str)> {
        Header::ALL.into_iter().filter_map(|h| self.get(h).map(|v| (h, v)))
    }
}

/// What an object carries besides its bytes and tags, as the source gave it to a copy:
/// Content-Type, the other system headers and user metadata. The journal keeps it per object
/// copied, so `verify` can compare the destination with it ([`fit`] to what the destination
/// carries) whatever the source's listing carried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// How a kind of store names user metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Any non-empty string, case kept (GCS, a local sidecar or xattrs).
    Any,
    /// An HTTP header token, stored in lower case (S3 `x-amz-meta-*`).
    LowerCaseToken,
    /// A C# identifier, compared without case (Azure): every name goes through [`azure_name`].
    Identifier,
}

/// What a kind of store keeps of an object besides its bytes: data, like [`Limits`](crate::Limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carries {
    /// Whether it keeps Content-Type and user metadata at all.
    pub metadata: bool,
    pub headers: &'static [Header],
    pub tags: bool,
    /// Which tags it can hold, where it keeps tags.
    pub tag_limits: TagLimits,
    pub names: NameRule,
    /// Metadata values must be printable ASCII (they travel as HTTP header values).
    pub ascii_values: bool,
}

impl Carries {
    /// Everything, as given (a memory store, a local directory with metadata).
    pub const ALL: Carries = Carries {
        metadata: true,
        headers: &Header::ALL,
        tags: true,
        tag_limits: TagLimits::ANY,
        names: NameRule::Any,
        ascii_values: false,
    };
    /// Bytes only (a local directory without `--local-metadata`).
    pub const NOTHING: Carries =
        Carries { metadata: false, headers: &[], tags: false, tag_limits: TagLimits::ANY, names: NameRule::Any, ascii_values: false };
}

/// Which object tags a kind of store can hold (S3 tagging, Azure blob index tags): data, like
/// [`Limits`](crate::Limits). Lengths count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagLimits {
    pub max_tags: usize,
    pub max_key_chars: usize,
    pub max_value_chars: usize,
    /// The characters a key or value may have besides letters, digits and space; `None`: any.
    pub symbols: Option<&'static str>,
    /// Whether letters and digits beyond ASCII count as letters and digits (S3: yes; Azure: no).
    pub unicode_letters: bool,
}

impl TagLimits {
    /// Any tags at all (a memory store, a local directory with metadata).
    pub const ANY: TagLimits =
        TagLimits { max_tags: usize::MAX, max_key_chars: usize::MAX, max_value_chars: usize::MAX, symbols: None, unicode_letters: true };

    /// Whether one tag `key` = `value` can be held (its count aside).
    pub fn holds(&self, key: &str, value: &str) -> bool {
        let char_ok = |c: char| match self.symbols {
            None => true,
            Some(symbols) => c == ' ' || c.is_ascii_alphanumeric() || (self.unicode_letters && c.is_alphanumeric()) || symbols.contains(c),
        };
        let fits = |text: &str, max: usize| text.chars().count() <= max && text.chars().all(char_ok);
        !key.is_empty() && fits(key, self.max_key_chars) && fits(value, self.max_value_chars)
    }
}

/// Why a metadata name was not carried as it was.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "why")]
pub enum NameIssue {
    /// The destination cannot hold this name, even escaped (an empty name, a space or a
    /// non-ASCII character in an S3 name). Not written.
    Invalid,
    /// The destination stores names in lower case: written as `stored_as`.
    CaseFolded { stored_as: String },
    /// Another name of the object maps to the same destination name (`with`, which was written).
    /// Not written.
    Collides { with: String },
}

/// Something of an object's attributes the destination did not keep as the source had it.
/// Recorded per object, counted and named in the report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "what")]
pub enum NotCarried {
    /// The destination has no such header (GCS and Azure have no Expires).
    Header { header: Header },
    /// The destination keeps no object tags (GCS; a local directory without metadata).
    Tags,
    /// The destination keeps no user metadata or Content-Type (a local directory without
    /// `--local-metadata`).
    Metadata,
    /// A user metadata name, and why.
    Name { key: String, issue: NameIssue },
    /// A user metadata value the destination cannot hold (non-ASCII to S3 or Azure).
    Value { key: String },
    /// An object tag the destination cannot hold, and why. Not written.
    Tag { key: String, issue: TagIssue },
}

/// Why an object tag was not carried.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "why")]
pub enum TagIssue {
    /// A key or value the destination does not allow (a character such as `@` on Azure, an
    /// empty key, too long).
    Invalid,
    /// The object has more tags than the destination holds (`max`, 10 on S3 and Azure): the
    /// first `max` allowed ones in key order are written.
    TooMany { max: usize },
}

impl NotCarried {
    /// Whether this loses user data the destination could have been asked to keep: a metadata
    /// name or value. Such objects make the run exit 1. The others are what a pair of providers
    /// cannot carry at all (docs/fidelity.md): named in the report, not a failure.
    pub fn loses_user_data(&self) -> bool {
        match self {
            NotCarried::Name { issue: NameIssue::CaseFolded { .. }, .. } => false,
            NotCarried::Name { .. } | NotCarried::Value { .. } | NotCarried::Tag { .. } => true,
            NotCarried::Header { .. } | NotCarried::Tags | NotCarried::Metadata => false,
        }
    }
}

impl std::fmt::Display for NotCarried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotCarried::Header { header } => write!(f, "{}: the destination has no such header", header.as_str()),
            NotCarried::Tags => write!(f, "tags: the destination keeps no object tags"),
            NotCarried::Metadata => write!(f, "metadata: the destination keeps none (see --local-metadata)"),
            NotCarried::Name { key, issue: NameIssue::Invalid } => write!(f, "metadata {key:?}: a name the destination cannot hold"),
            NotCarried::Name { key, issue: NameIssue::CaseFolded { stored_as } } => {
                write!(f, "metadata {key:?}: stored in lower case as {stored_as:?}")
            }
            NotCarried::Name { key, issue: NameIssue::Collides { with } } => {
                write!(f, "metadata {key:?}: same destination name as {with:?}")
            }
            NotCarried::Value { key } => write!(f, "metadata {key:?}: a value the destination cannot hold"),
            NotCarried::Tag { key, issue: TagIssue::Invalid } => write!(f, "tag {key:?}: a tag the destination cannot hold"),
            NotCarried::Tag { key, issue: TagIssue::TooMany { max } } => {
                write!(f, "tag {key:?}: over the {max} tags the destination holds")
            }
        }
    }
}

/// The attributes to write at a destination, fitted to what it [`Carries`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fitted {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub headers: Headers,
    pub tags: Option<Tags>,
    /// What was left out or changed, in a stable order.
    pub not_carried: Vec<NotCarried>,
}

/// Fits an object's attributes to a destination: what it cannot hold is left out and named.
/// Metadata names keep the source's spelling here (S3's lower case is the wire's doing, Azure's
/// escape is the adapter's); `fit` only finds the names that would be lost or merged.
pub fn fit(
    content_type: Option<&str>,
    metadata: &BTreeMap<String, String>,
    headers: &Headers,
    tags: Option<&Tags>,
    to: &Carries,
) -> Fitted {
    let mut out = Fitted::default();
    if !to.metadata {
        if content_type.is_some() || !metadata.is_empty() || !headers.is_empty() {
            out.not_carried.push(NotCarried::Metadata);
        }
        if tags.is_some_and(|t| !t.is_empty()) {
            out.not_carried.push(NotCarried::Tags);
        }
        return out;
    }
    out.content_type = content_type.map(str::to_string);
    for (h, v) in headers.iter() {
        match to.headers.contains(&h) {
            true => *out.headers.slot(h) = Some(v.to_string()),
            false => out.not_carried.push(NotCarried::Header { header: h }),
        }
    }
    // Destination names already taken, compared as the destination compares them.
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in metadata {
        let (stored, compared) = match to.names {
            NameRule::Any => (Some(k.clone()), k.clone()),
            NameRule::LowerCaseToken => {
                let lower = k.to_ascii_lowercase();
                (is_token(k).then(|| lower.clone()), lower)
            }
            // Plain names are lower-case identifiers outside the escape's prefix, escaped names
            // are unique under it: none collide, even compared without case.
            NameRule::Identifier => (azure_name(k), azure_name(k).unwrap_or_default()),
        };
        let Some(stored) = stored else {
            out.not_carried.push(NotCarried::Name { key: k.clone(), issue: NameIssue::Invalid });
            continue;
        };
        if let Some(with) = taken.get(&compared) {
            out.not_carried.push(NotCarried::Name { key: k.clone(), issue: NameIssue::Collides { with: with.clone() } });
            continue;
        }
        if to.ascii_values && !v.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
            out.not_carried.push(NotCarried::Value { key: k.clone() });
            continue;
        }
        if to.names == NameRule::LowerCaseToken && stored != *k {
            out.not_carried.push(NotCarried::Name { key: k.clone(), issue: NameIssue::CaseFolded { stored_as: stored } });
        }
        taken.insert(compared, k.clone());
        out.metadata.insert(k.clone(), v.clone());
    }
    match (tags, to.tags) {
        (Some(t), true) => {
            let limits = &to.tag_limits;
            let mut kept = Tags::new();
            // Invalid tags first, so the count limit keeps as many of the rest as it can.
            for (k, v) in t {
                if !limits.holds(k, v) {
                    out.not_carried.push(NotCarried::Tag { key: k.clone(), issue: TagIssue::Invalid });
                } else if kept.len() >= limits.max_tags {
                    out.not_carried.push(NotCarried::Tag { key: k.clone(), issue: TagIssue::TooMany { max: limits.max_tags } });
                } else {
                    kept.insert(k.clone(), v.clone());
                }
            }
            out.tags = Some(kept);
        }
        (Some(t), false) if !t.is_empty() => out.not_carried.push(NotCarried::Tags),
        _ => {}
    }
    out.not_carried.sort();
    out
}

/// An HTTP header token (RFC 9110): what an S3 metadata name must be.
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The prefix that marks an Azure metadata name as ferry's escape of another name. Only names
/// under it are ever decoded, so a name another tool wrote (`size_20`, `n_00`) is read as it is.
pub const AZURE_ESCAPE_PREFIX: &str = "ferry_x_";

/// Whether `key` is stored on Azure under its own spelling: a C# identifier with no upper-case
/// letter (HTTP folds header names to lower case) that is not under [`AZURE_ESCAPE_PREFIX`].
fn azure_plain(key: &str) -> bool {
    let mut bytes = key.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    first_ok && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') && !key.starts_with(AZURE_ESCAPE_PREFIX)
}

/// The Azure metadata name for `key`. A key that is already a lower-case C# identifier (`owner`,
/// `my_key`) is stored as it is. Any other is escaped: [`AZURE_ESCAPE_PREFIX`], then the key
/// with lower-case ASCII letters and digits kept and every other byte of its UTF-8 (upper-case
/// letters, `_`, `-`, `.`, non-ASCII) as `_` and two lower-case hex digits. The result is a C#
/// identifier with no upper-case letter — so it survives HTTP, which folds header names — and
/// [`from_azure_name`] gives `key` back. `None` (not carried) for an empty key or one holding a
/// control character, which no header name may hold. Examples: `owner` → `owner`, `build-id` →
/// `ferry_x_build_2did`, `Owner` → `ferry_x__4fwner`, `1st` → `ferry_x_1st`.
pub fn azure_name(key: &str) -> Option<String> {
    if key.is_empty() || key.chars().any(char::is_control) {
        return None;
    }
    if azure_plain(key) {
        return Some(key.to_string());
    }
    let mut out = String::from(AZURE_ESCAPE_PREFIX);
    for b in key.bytes() {
        match b.is_ascii_lowercase() || b.is_ascii_digit() {
            true => out.push(b as char),
            false => out.push_str(&format!("_{b:02x}")),
        }
    }
    Some(out)
}

/// The metadata key an Azure name stands for: [`azure_name`] undone. Only a name under
/// [`AZURE_ESCAPE_PREFIX`] that is exactly what `azure_name` makes of some key is decoded; any
/// other (one written by another tool, such as `size_20`) is kept as it arrived (in lower case,
/// as HTTP gives header names). Never yields a control character.
pub fn from_azure_name(name: &str) -> String {
    let decoded = (|| {
        let body = name.strip_prefix(AZURE_ESCAPE_PREFIX)?;
        let mut bytes = Vec::with_capacity(body.len());
        let mut rest = body.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'_' {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).ok()
    })();
    match decoded {
        // `azure_name` refuses control characters, so a decoding into one is not its escape.
        Some(key) if azure_name(&key).as_deref() == Some(name) => key,
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3_TAGS: TagLimits =
        TagLimits { max_tags: 10, max_key_chars: 128, max_value_chars: 256, symbols: Some("+-=._:/@"), unicode_letters: true };
    const AZURE_TAGS: TagLimits =
        TagLimits { max_tags: 10, max_key_chars: 128, max_value_chars: 256, symbols: Some("+-=._:/"), unicode_letters: false };
    const S3: Carries = Carries {
        metadata: true,
        headers: &Header::ALL,
        tags: true,
        tag_limits: S3_TAGS,
        names: NameRule::LowerCaseToken,
        ascii_values: true,
    };
    const GCS: Carries = Carries {
        metadata: true,
        headers: &Header::ALL,
        tags: false,
        tag_limits: TagLimits::ANY,
        names: NameRule::Any,
        ascii_values: false,
    };
    const AZURE: Carries =
        Carries { metadata: true, headers: &[], tags: true, tag_limits: AZURE_TAGS, names: NameRule::Identifier, ascii_values: true };

    #[test]
    fn azure_names_round_trip_and_are_identifiers() {
        for key in ["owner", "Build-Id", "a_b", "1st", "x-amz-thing", "é", "Mixed_Case-Key.v2", "_", "9", "ferry_x_a", "size "] {
            let name = azure_name(key).unwrap();
            let mut chars = name.chars();
            let first = chars.next().unwrap();
            assert!(first.is_ascii_alphabetic() || first == '_', "{name}");
            assert!(chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{name}");
            assert_eq!(from_azure_name(&name), key);
        }
        assert_eq!(azure_name("Build-Id").unwrap(), "ferry_x__42uild_2d_49d");
        assert_eq!(azure_name("build-id").unwrap(), "ferry_x_build_2did");
        assert_eq!(azure_name("a_b").unwrap(), "a_b", "a lower-case identifier is stored as it is");
        assert_eq!(azure_name("ferry_x_a").unwrap(), "ferry_x_ferry_5fx_5fa", "the prefix itself is escaped");
        assert_eq!(azure_name(""), None);
        assert_eq!(azure_name("n\0"), None, "no control character in a header name");
        assert_eq!(azure_name("tab\there"), None);
    }

    /// Names another tool wrote are never taken for ferry's escape (hostile-user finding 5).
    #[test]
    fn azure_names_other_tools_wrote_stay_as_they_are() {
        for name in ["size_20", "n_00", "content_2dtype", "my_key", "my_2D", "mykey", "_31st"] {
            assert_eq!(from_azure_name(name), name);
        }
        // Under the prefix, only ferry's exact escapes decode: never to a control character,
        // never a plain name written the long way.
        assert_eq!(from_azure_name("ferry_x_n_00"), "ferry_x_n_00");
        assert_eq!(from_azure_name("ferry_x_abc"), "ferry_x_abc");
        assert_eq!(from_azure_name("ferry_x_a_2"), "ferry_x_a_2");
        assert_eq!(from_azure_name("ferry_x_size_20"), "size ");
    }

    #[test]
    fn fit_names_what_each_destination_cannot_keep() {
        let meta: BTreeMap<String, String> = [("Owner-Team", "data"), ("owner-team", "x"), ("bad name", "v"), ("note", "naïve")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let headers = Headers { expires: Some("Wed, 21 Oct 2026 07:28:00 GMT".into()), ..Headers::default() };
        let tags = Tags::from([("a".to_string(), "1".to_string())]);

        let s3 = fit(None, &meta, &headers, Some(&tags), &S3);
        assert_eq!(s3.metadata.keys().collect::<Vec<_>>(), ["Owner-Team"]);
        assert!(s3.not_carried.contains(&NotCarried::Name { key: "bad name".into(), issue: NameIssue::Invalid }));
        assert!(
            s3.not_carried
                .contains(&NotCarried::Name { key: "owner-team".into(), issue: NameIssue::Collides { with: "Owner-Team".into() } })
        );
        assert!(s3.not_carried.contains(&NotCarried::Value { key: "note".into() }));
        assert!(
            s3.not_carried
                .contains(&NotCarried::Name { key: "Owner-Team".into(), issue: NameIssue::CaseFolded { stored_as: "owner-team".into() } })
        );
        assert_eq!(s3.tags, Some(tags.clone()));
        assert!(s3.not_carried.iter().any(NotCarried::loses_user_data));

        let gcs = fit(None, &meta, &headers, Some(&tags), &GCS);
        assert_eq!(gcs.metadata, meta);
        assert_eq!(gcs.not_carried, [NotCarried::Tags]);
        assert!(!gcs.not_carried.iter().any(NotCarried::loses_user_data));

        let azure = fit(None, &meta, &headers, Some(&tags), &AZURE);
        assert!(azure.not_carried.contains(&NotCarried::Header { header: Header::Expires }));
        assert!(azure.metadata.contains_key("bad name"), "escaped, so carried");
        let control: BTreeMap<String, String> = [("n\0".to_string(), "v".to_string())].into();
        let azure_control = fit(None, &control, &Headers::default(), None, &AZURE);
        assert!(azure_control.metadata.is_empty());
        assert_eq!(azure_control.not_carried, [NotCarried::Name { key: "n\0".into(), issue: NameIssue::Invalid }]);
        assert!(azure.metadata.contains_key("Owner-Team") && azure.metadata.contains_key("owner-team"), "case kept by the escape");

        // Tags: what the destination cannot hold is named, the rest written.
        let mut many: Tags = (0..11).map(|i| (format!("k{i:02}"), format!("v{i}"))).collect();
        many.insert("k00".into(), "ann@example.com".into());
        let s3 = fit(None, &BTreeMap::new(), &Headers::default(), Some(&many), &S3);
        assert_eq!(s3.not_carried, [NotCarried::Tag { key: "k10".into(), issue: TagIssue::TooMany { max: 10 } }]);
        assert_eq!(s3.tags.as_ref().map(Tags::len), Some(10));
        assert!(s3.not_carried.iter().all(NotCarried::loses_user_data));
        let azure = fit(None, &BTreeMap::new(), &Headers::default(), Some(&many), &AZURE);
        assert_eq!(azure.not_carried, [NotCarried::Tag { key: "k00".into(), issue: TagIssue::Invalid }]);
        assert_eq!(azure.tags.as_ref().map(Tags::len), Some(10));
        assert!(!AZURE_TAGS.holds("", "v") && !AZURE_TAGS.holds("k", &"v".repeat(257)) && !AZURE_TAGS.holds("é", "v"));
        assert!(S3_TAGS.holds("é", "a b+c=d.e_f:g/h@i") && TagLimits::ANY.holds("k", "any\u{0}thing"));

        let local = fit(Some("text/plain"), &meta, &headers, Some(&tags), &Carries::NOTHING);
        assert_eq!(local.not_carried, [NotCarried::Metadata, NotCarried::Tags]);
    }
}
