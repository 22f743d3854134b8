//! The record-and-judge engine: every exchange, whatever way it arrived (the gateway's proxy,
//! an OTLP span sent to `/v1/traces`, the bus), is recorded and judged the same way.
//!
//! ```text
//!             ┌─► store (group commit; each exchange once, by id)
//! exchange ─► tap
//!             └─► detector (the same Observer and Detector `scan` uses) ─► verdict changes
//!                                                  ├─► stored verdict, audit trail, score history
//!                                                  └─► policy table (what the request path enforces)
//! ```
//!
//! - [`follow`]: a log file followed as it grows (`collect --tail`): another gateway's
//!   traffic, read as it is written, through the tap.
//! - [`tap`]: where a finished exchange goes: this process's log writer and detector threads
//!   ([`Tap::Local`]), or the bus to the workers ([`Tap::Bus`]).
//! - [`record`]: the core both run: append until the store takes it, observe, record what
//!   changed, replay the log.
//! - [`snapshot`]: the detector's state saved now and then, restored at start-up, the rest of
//!   the log replayed while serving.
//! - [`worker`]: `distillguard worker`, the same engine fed from NATS JetStream.
//! - [`judge`]: who judges, asked one way ([`Verdicts`]): this process's detector ([`Here`]) or
//!   the workers ([`Workers`]).
//!
//! The engine has no HTTP in it: the gateway is one of its sources, not its owner.

pub mod follow;
pub mod judge;
pub mod record;
pub mod snapshot;
pub mod tap;
pub mod worker;

pub use follow::Follow;
pub use judge::{Here, Judged, Verdicts, Workers};
pub use record::{now_ms, Shared};
pub use tap::{Durability, Finished, Tap};
pub use worker::WorkerConfig;
