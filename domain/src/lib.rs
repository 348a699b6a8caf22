//! Pure domain logic of govbroker: exact quota arithmetic and the rules of the agency tree.
//!
//! Nothing here talks to a cluster, waits, or reads the clock, so that the admission
//! webhook, the controllers and the API can share one definition of "valid" and one way
//! of adding up quotas, and so that every rule can be unit-tested in isolation.
//!
//! - [`quantity`]: Kubernetes quantities as exact integers of milli-units, and sets of
//!   amounts per quota resource.
//! - [`isolation`]: what an agency environment's namespace gets, per security level.
//! - [`tree`]: what makes an Agency a valid node of the government tree, and when an
//!   agency may be deleted.
//! - [`data_services`]: what a data-service claim is called on its shared server, and
//!   the quoted SQL and Redis ACL rules the broker sends.
//! - [`workload`]: what a Workload is rendered into (hardened for its security level),
//!   its image policy, validation and quota check.
//! - [`data_shares`]: when a DataShare grants access, sharing down the security
//!   levels, and data-service quota per class.
//! - [`metering`]: exact usage integrated from watch events (integer units, billing days
//!   in Asia/Ho_Chi_Minh).
//! - [`billing`]: price schedules, rating usage into monthly bills (one rounding per
//!   line), subtree roll-up, budgets and VND formatting.
#![forbid(unsafe_code)]

pub mod billing;
pub mod data_services;
pub mod data_shares;
pub mod isolation;
pub mod metering;
pub mod quantity;
pub mod tree;
pub mod workload;

pub use quantity::{Amount, Amounts, QuantityError, QuotaError, Shortfall, usage_summary};
pub use tree::{
    AgencyChange, CASCADE_DELETE_ANNOTATION, MAX_ENVIRONMENTS, Violation, allowed_parent_levels,
    deletion_allowed, room_left, validate_agency,
};
