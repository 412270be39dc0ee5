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

    /// Takes a request slot before a request a provider sends: the one the call's
    /// [`crate::Throttled`] took, if no request of the call has used it yet, else a new one. A
    /// call of several requests (a GCS compose in rounds, an Azure read in ranges, an S3 server
    /// copy in parts, a retry) so takes one slot per request, and never two for one.
    pub(crate) async fn take_slot(&self) {
        let was = SLOT.try_with(|s| s.replace(Slot::Paid)).ok();
        if was != Some(Slot::Prepaid) {
            self.throttle.request().await;
        }
    }

    /// Marks the call's slot as spent without taking one: for a result whose request took its
    /// slot on another task (an S3 lister spawned ahead of the reader), or that needed none.
    pub(crate) fn paid_elsewhere(&self) {
        let _ = SLOT.try_with(|s| s.set(Slot::Paid));
    }

    /// [`RunContext::take_slot`], then the adaptive pace: before each data request.
    pub(crate) async fn before_request(&self) {
        self.take_slot().await;
        self.retries.pace().await;
    }
}

/// The request slot of the call being polled, as [`crate::Throttled`] and the providers'
/// HTTP code share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The wrapper took a slot before the call; its first request uses it.
    Prepaid,
    /// The wrapper took none (a listing's page): whoever sends a request takes one.
    Unpaid,
    /// A request of the call took or used a slot.
    Paid,
}

tokio::task_local! {
    // Per call, not per process: a value exists only while `Throttled` polls a call inside
    // `in_call`, and only that call's requests (on that task) see it.
    static SLOT: std::cell::Cell<Slot>;
}

/// Runs `call` with its slot in `state`; returns the call's output and whether any of its
/// requests took or used a slot.
pub(crate) async fn in_call<F: std::future::Future>(state: Slot, call: F) -> (F::Output, bool) {
    SLOT.scope(std::cell::Cell::new(state), async move {
        let out = call.await;
        (out, SLOT.with(|s| s.get()) == Slot::Paid)
    })
    .await
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
