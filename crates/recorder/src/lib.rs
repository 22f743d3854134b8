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
//! - [`spawn_follow`]: a log file followed as it grows (`collect --tail`): another gateway's
//!   traffic, read as it is written, through the tap.
//! - [`start_tap`]: where a finished exchange goes: this process's log writer and detector
//!   threads ([`Tap::Local`]), or the bus to the workers ([`Tap::Bus`]).
//! - the core both run (`record.rs`): append until the store takes it, observe, record what
//!   changed, replay the log.
//! - snapshots (`snapshot.rs`, [`CatchUp`]): the detector's state saved now and then,
//!   restored at start-up, the rest of the log replayed while serving.
//! - [`run_worker`]: `distillguard worker`, the same engine fed from NATS JetStream.
//! - who judges, asked one way ([`Verdicts`]): this process's detector ([`Here`]) or the
//!   workers ([`Workers`]).
//!
//! The engine has no HTTP in it: the gateway is one of its sources, not its owner.

mod follow;
mod judge;
mod record;
mod snapshot;
mod tap;
mod worker;

pub use follow::{spawn as spawn_follow, Follow};
pub use judge::{Here, Judged, Verdicts, Workers};
pub use record::{now_ms, Shared};
pub use snapshot::{prepare as prepare_catch_up, unpack as unpack_snapshot, CatchUp};
pub use tap::{start as start_tap, Durability, Finished, Tap};
pub use worker::{run as run_worker, WorkerConfig};
