//! How a failure should be treated by the engine, and what kind of failure it is.

use serde::Serialize;

/// The classification the engine acts on (rclone's `fserrors` idea, as a plain enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A transient failure of one request (timeout, connection reset, 5xx, throttling): the
    /// providers' one request-retry layer sends that request again after a backoff. One that
    /// reaches the engine has used up those retries and fails its object.
    Retryable,
    /// The object's transfer must start over: bytes that failed a checksum on the way, a body
    /// cut mid-stream or short, a copy that came out different. Sending one request again
    /// cannot fix it (the bytes already taken are suspect); the mover restarts the object.
    Restart,
    /// This object cannot be transferred (missing, bad key, too large): record it and go on.
    PerObject,
    /// Nothing else will work either (bad credentials, missing bucket, full disk): stop the run.
    Fatal,
}

/// What went wrong, as a value: set where the failure is found (a provider, the mover), it
/// travels unchanged to the run's report, its retry counts and ingest's sorting — nothing
/// downstream reads a message to learn it. [`ErrorClass`] says what to do about a failure;
/// this says what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The source object is not the one the manifest recorded (size, version or entity tag).
    SourceChanged,
    /// The source object is gone: deleted since the manifest, or a shipped file not on its device.
    SourceGone,
    /// ferry will not read the source object as it is (a symlink, a FIFO, a path leaving the root).
    SourceRefused,
    /// The headers, metadata and tags a local source keeps beside the file (`--local-metadata`:
    /// its sidecar or xattr) cannot be read: not the document, over its size bound, or a sidecar
    /// that is not a regular file. The object is not copied without them (fix or remove the
    /// sidecar and resume; `--local-metadata none` copies bytes only).
    MetadataUnreadable,
    /// A file on a shipped disk holds other bytes than its shipment manifest declares: reading
    /// it again will not change that.
    AlteredInShipment,
    /// Bytes changed on the way: a checksum the service or ferry computed does not match.
    CorruptedInTransit,
    /// Fewer bytes arrived than the object (or range) has.
    ShortRead,
    /// The source object is archived (S3 GLACIER / DEEP_ARCHIVE, Azure's Archive tier) and
    /// cannot be read until a restore completes: S3's `InvalidObjectState`, Azure's
    /// `BlobArchived`, or an object `--archived skip` leaves alone.
    Archived,
    /// The destination will not take the object as named or as it is (a bad key, a path
    /// component that is not a directory).
    DestinationRefused,
    /// The service refused the request (a 4xx answer trying again won't change).
    Rejected,
    /// A read asked for bytes past the object's end (416): an empty object has no byte 0.
    RangeNotSatisfiable,
    /// The service does not implement the request (501, S3's `NotImplemented`).
    Unsupported,
    /// The destination's file system is full, or the user's quota on it is used up.
    DeviceFull,
    /// The service asked ferry to slow down (429, S3's SlowDown).
    Throttled,
    /// The service is unavailable for now (503).
    Unavailable,
    /// Another server error (5xx).
    ServerError,
    /// A request or a connection timed out (408, 504, a transport timeout).
    Timeout,
    /// The connection failed, dropped, or the service could not be reached.
    Connection,
    /// The credentials do not allow it (401, 403), or the file system refused this user.
    Denied,
    /// The bucket, container or a needed object does not exist.
    NotFound,
    /// No part plan fits the object within the destination's limits and the memory budget.
    NoPartPlan,
    /// The configuration cannot work (an option the service refuses, a budget too small).
    Config,
    /// The journal could not record the outcome.
    Journal,
    /// Anything not named above.
    Other,
}

impl FailureKind {
    /// The stable name written to reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::SourceChanged => "source-changed",
            FailureKind::SourceGone => "source-gone",
            FailureKind::SourceRefused => "source-refused",
            FailureKind::MetadataUnreadable => "metadata-unreadable",
            FailureKind::Archived => "archived",
            FailureKind::AlteredInShipment => "altered-in-shipment",
            FailureKind::CorruptedInTransit => "corrupted-in-transit",
            FailureKind::ShortRead => "short-read",
            FailureKind::DestinationRefused => "destination-refused",
            FailureKind::Rejected => "rejected",
            FailureKind::RangeNotSatisfiable => "range-not-satisfiable",
            FailureKind::Unsupported => "unsupported",
            FailureKind::DeviceFull => "device-full",
            FailureKind::Throttled => "throttled",
            FailureKind::Unavailable => "unavailable",
            FailureKind::ServerError => "server-error",
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::Denied => "denied",
            FailureKind::NotFound => "not-found",
            FailureKind::NoPartPlan => "no-part-plan",
            FailureKind::Config => "config",
            FailureKind::Journal => "journal",
            FailureKind::Other => "other",
        }
    }

    /// The kind of a failed HTTP answer's status (2xx is no failure: `Other`).
    pub fn of_status(status: u16) -> FailureKind {
        match status {
            429 => FailureKind::Throttled,
            503 => FailureKind::Unavailable,
            408 | 504 => FailureKind::Timeout,
            501 => FailureKind::Unsupported,
            500..=599 => FailureKind::ServerError,
            401 | 403 => FailureKind::Denied,
            404 => FailureKind::NotFound,
            412 => FailureKind::SourceChanged,
            416 => FailureKind::RangeNotSatisfiable,
            400..=499 => FailureKind::Rejected,
            _ => FailureKind::Other,
        }
    }
}

/// Written by its stable name ([`FailureKind::as_str`]).
impl Serialize for FailureKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::FailureKind;

    #[test]
    fn kinds_serialize_by_their_stable_names() {
        for kind in [FailureKind::CorruptedInTransit, FailureKind::SourceGone, FailureKind::AlteredInShipment, FailureKind::Other] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(FailureKind::of_status(429), FailureKind::Throttled);
        assert_eq!(FailureKind::of_status(504), FailureKind::Timeout);
        assert_eq!(FailureKind::of_status(409), FailureKind::Rejected);
        assert_eq!(FailureKind::of_status(416), FailureKind::RangeNotSatisfiable);
        assert_eq!(FailureKind::of_status(501), FailureKind::Unsupported);
        assert_eq!(FailureKind::of_status(500), FailureKind::ServerError);
    }
}
