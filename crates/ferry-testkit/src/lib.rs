//! What ferry's tests stand on: the real local services, started on free loopback ports, the
//! provider conformance suite every adapter must pass, and providers for fast engine tests (in
//! memory, and with faults injected).
//!
//! Services: S3 is s3s-fs served in-process (a directory per bucket); Azure is Azurite, GCS is
//! fake-gcs-server and a second S3 is moto, all installed by `scripts/install-services.sh` into
//! `.services/` and run as child processes killed when their handle drops. A missing service is a loud panic naming
//! the install script, never a skipped test.
//!
//! # Layout
//! - [`services`]: [`S3Server`], [`Azurite`], [`FakeGcs`], [`Moto`] and [`free_port`].
//! - [`proxy`]: [`CountingProxy`], which counts the bytes a client uploads and injects faults.
//! - [`conformance`]: [`conformance::run`], the suite for any [`ferry_providers::Provider`]: one
//!   check per behaviour, each adapter's test (`tests/conformance_*.rs`) passing its service and
//!   its declared limits and capabilities ([`conformance::Options`]).
//! - [`memory`]: [`MemoryStore`] and [`MemoryProvider`], a provider in memory (multipart with
//!   resume, server-side copy between providers on one store) for engine tests without services.
//! - [`faulty`]: [`FaultyProvider`], any provider with faults injected per method (drop, delay,
//!   corrupt, throttle, fail the Nth call).
//! - [`tree`]: the awkward test tree (sizes at part boundaries, weird keys) and tree comparison.
//! - [`synthetic`]: [`SyntheticBucket`], a listing of millions of generated objects for the
//!   planner's scale benchmark.

pub mod conformance;
pub mod faulty;
pub mod memory;
pub mod postgres;
pub mod proxy;
pub mod services;
pub mod synthetic;
pub mod tree;

pub use faulty::FaultyProvider;
pub use memory::{MemoryProvider, MemoryStore};
pub use proxy::{CountingProxy, Faults};
pub use services::{Azurite, FakeGcs, Moto, S3Server, free_port};
pub use synthetic::SyntheticBucket;
