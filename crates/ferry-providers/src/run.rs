//! What one run shares across its providers: the user's ceilings ([`Throttle`]), the adaptive
//! pace and failed attempts by cause ([`Retries`]), requests and bytes by method
//! ([`Requests`]), and the part-buffer pool ([`BufferPool`]).
//!
//! Why a value and not process statics: a process that runs two jobs (a worker holding two
//! shards) must not have one job's `--bwlimit` slow the other, one job's 429s pace the other,
//! or one report count the other's retries. A run makes one [`RunContext`] and opens its
//! providers with it ([`crate::open`]); the [`crate::Throttled`] and [`crate::Counted`]
//! wrappers charge it on every call, and the providers read it where the work sits inside them
//! (a retry loop's pace and counts, a body read into a pooled buffer).

use crate::retries::Retries;
use crate::throttle::{Rates, Throttle};
use ferry_core::buffers::BufferPool;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One run's shared state (see the module docs).
#[derive(Debug)]
pub struct RunContext {
    throttle: Throttle,
    retries: Retries,
    requests: Requests,
    buffers: BufferPool,
}

impl RunContext {
    /// A run under `rates`, its buffer pool at the default bound until the run sets its budget.
    pub fn new(rates: Rates) -> Arc<RunContext> {
        Arc::new(RunContext {
            throttle: Throttle::new(rates),
            retries: Retries::default(),
            requests: Requests::default(),
            buffers: BufferPool::default(),
        })
    }

    /// A run without ceilings (tests, `clean`).
    pub fn unlimited() -> Arc<RunContext> {
        RunContext::new(Rates::default())
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    pub fn retries(&self) -> &Retries {
        &self.retries
    }

    pub fn requests(&self) -> &Requests {
        &self.requests
    }

    pub fn buffers(&self) -> &BufferPool {
        &self.buffers
    }

    /// Waits before a request a call sends beyond its first (a re-send, another page or part
    /// of one call): a request slot under `--tpslimit`, then the adaptive pace. The call's
    /// first request had its slot from [`crate::Throttled`].
    pub(crate) async fn resend(&self) {
        self.throttle.request().await;
        self.retries.pace().await;
    }
}

/// Calls and bytes of one method of one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCount {
    /// Calls made (each one or a few requests; re-sends inside a call are counted as retries).
    pub calls: u64,
    /// Of them, calls that failed.
    pub failed: u64,
    /// Bytes the calls that succeeded read or wrote (bodies only).
    pub bytes: u64,
}

/// Calls by provider and method, counted by [`crate::Counted`].
#[derive(Debug, Default)]
pub struct Requests(Mutex<BTreeMap<(&'static str, &'static str), RequestCount>>);

impl Requests {
    pub(crate) fn add(&self, provider: &'static str, method: &'static str, ok: bool, bytes: u64) {
        let mut counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let c = counts.entry((provider, method)).or_default();
        c.calls += 1;
        if ok {
            c.bytes += bytes;
        } else {
            c.failed += 1;
        }
    }

    /// The counts so far, keyed `"{provider} {method}"` (e.g. `s3 put part`).
    pub fn snapshot(&self) -> BTreeMap<String, RequestCount> {
        let counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.iter().map(|((p, m), c)| (format!("{p} {m}"), *c)).collect()
    }
}
