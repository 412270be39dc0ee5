//! How a failure should be treated by the engine.

/// The classification the engine acts on (rclone's `fserrors` idea, as a plain enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A transient failure (timeout, connection reset, 5xx, throttling): try again after a backoff.
    Retryable,
    /// This object cannot be transferred (missing, bad key, too large): record it and go on.
    PerObject,
    /// Nothing else will work either (bad credentials, missing bucket, full disk): stop the run.
    Fatal,
}
