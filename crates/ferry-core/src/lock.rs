//! S3 object lock: what keeps an object version from being deleted or overwritten (a legal
//! hold, a retention until a date). ferry reports it on the source and never carries it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How strictly a retention holds (S3's `x-amz-object-lock-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete the version.
    Governance,
    /// No one may delete the version until the date, not even the account's root user.
    Compliance,
}

/// The lock on one object version, as the source reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    /// A legal hold is on (no end date: it holds until removed).
    pub legal_hold: bool,
    /// A retention whose date is ahead.
    pub retention: Option<Retention>,
}

/// A retention: its mode and the date it holds the version until.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub mode: RetentionMode,
    pub until: DateTime<Utc>,
}

impl ObjectLock {
    /// The lock in effect at `now`, if any: a legal hold, or a retention whose date is ahead (a
    /// retention whose date passed no longer holds anything).
    pub fn in_effect(legal_hold: bool, retention: Option<(RetentionMode, DateTime<Utc>)>, now: DateTime<Utc>) -> Option<ObjectLock> {
        let retention = retention.filter(|(_, until)| *until > now).map(|(mode, until)| Retention { mode, until });
        (legal_hold || retention.is_some()).then_some(ObjectLock { legal_hold, retention })
    }
}

impl std::fmt::Display for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::with_capacity(2);
        if self.legal_hold {
            parts.push("legal hold".to_string());
        }
        if let Some(Retention { mode, until }) = self.retention {
            let mode = match mode {
                RetentionMode::Governance => "governance",
                RetentionMode::Compliance => "compliance",
            };
            parts.push(format!("{mode} retention until {}", until.format("%Y-%m-%d")));
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hold_or_a_retention_ahead_is_a_lock() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let ahead = DateTime::parse_from_rfc3339("2099-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let past = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(ObjectLock::in_effect(false, None, now), None);
        assert_eq!(ObjectLock::in_effect(false, Some((RetentionMode::Compliance, past)), now), None);
        let held = ObjectLock::in_effect(true, Some((RetentionMode::Governance, past)), now).unwrap();
        assert_eq!(held.to_string(), "legal hold");
        let kept = ObjectLock::in_effect(false, Some((RetentionMode::Compliance, ahead)), now).unwrap();
        assert_eq!(kept.to_string(), "compliance retention until 2099-01-01");
    }
}
