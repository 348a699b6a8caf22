//! The rules of data sharing and of data-service quota: when a DataShare grants access,
//! whether data may flow to a lower security level, and whether an agency has room for
//! one more instance of a class.
//!
//! The admission webhook refuses what these rules forbid; the broker applies the same
//! rules again when it acts, because time (an expiry) and the tree (a security level)
//! change after admission.

use std::fmt;

/// What a DataShare should be now, from its spec and the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareState {
    /// Not approved yet: nothing is granted.
    AwaitingApproval,
    /// Approved, not revoked, not expired: the consumer may read.
    Active,
    /// Past its expiry: access is removed.
    Expired,
    /// Revoked: access is removed for good.
    Revoked,
}

impl ShareState {
    /// Whether the consumer should have access in this state.
    pub fn grants_access(self) -> bool {
        self == ShareState::Active
    }
}

/// The state of a share. Revocation wins over expiry, and both over approval, so a
/// share never grants access once either ended it. Times are seconds since the epoch.
pub fn share_state(approved: bool, revoked: bool, expires_at: i64, now: i64) -> ShareState {
    if revoked {
        ShareState::Revoked
    } else if now >= expires_at {
        ShareState::Expired
    } else if !approved {
        ShareState::AwaitingApproval
    } else {
        ShareState::Active
    }
}

/// Why data of an owner at `owner_level` may not be shared with a consumer at
/// `consumer_level` (security levels 1-5), or `None` when it may. Sharing down (to a
/// lower level) needs a class that allows it.
pub fn share_down_refusal(
    owner: &str,
    owner_level: u8,
    consumer: &str,
    consumer_level: u8,
    class: &str,
    class_allows_share_down: bool,
) -> Option<String> {
    (consumer_level < owner_level && !class_allows_share_down).then(|| {
        format!(
            "agency \"{owner}\" is at security level {owner_level} and \"{consumer}\" at level {consumer_level}: data is not shared to a lower security level unless its DataServiceClass allows it, and class \"{class}\" does not (spec.allowShareDown)"
        )
    })
}

/// An agency asking for one more instance of a class than its quota holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimQuotaExceeded {
    /// The agency.
    pub agency: String,
    /// The DataServiceClass.
    pub class: String,
    /// Instances its quota allows (0 when the class is not listed).
    pub allowed: u32,
    /// Instances it already holds.
    pub used: u32,
}

impl fmt::Display for ClaimQuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ClaimQuotaExceeded {
            agency,
            class,
            allowed,
            used,
        } = self;
        if *allowed == 0 {
            write!(
                f,
                "agency \"{agency}\" has no quota for DataServiceClass \"{class}\" (spec.quota.dataServices does not list it): 0 instances left. Ask for some with a QuotaRequest naming quota.dataServices.{class}"
            )
        } else {
            write!(
                f,
                "agency \"{agency}\" already holds {used} of the {allowed} instance(s) of DataServiceClass \"{class}\" its quota allows: 0 left. Delete a claim or ask for more with a QuotaRequest naming quota.dataServices.{class}"
            )
        }
    }
}

/// Whether an agency whose quota allows `allowed` instances of `class` (None: not
/// listed) and which holds `used` may claim one more.
pub fn claim_fits_quota(
    agency: &str,
    class: &str,
    allowed: Option<i32>,
    used: usize,
) -> Result<u32, ClaimQuotaExceeded> {
    let allowed = allowed.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    let used = u32::try_from(used).unwrap_or(u32::MAX);
    if used < allowed {
        Ok(allowed - used - 1)
    } else {
        Err(ClaimQuotaExceeded {
            agency: agency.to_owned(),
            class: class.to_owned(),
            allowed,
            used,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_and_expiry_end_a_share_whatever_the_approval() {
        assert_eq!(
            share_state(false, false, 100, 50),
            ShareState::AwaitingApproval
        );
        assert_eq!(share_state(true, false, 100, 50), ShareState::Active);
        assert_eq!(share_state(true, false, 100, 100), ShareState::Expired);
        assert_eq!(share_state(false, false, 100, 101), ShareState::Expired);
        assert_eq!(share_state(true, true, 100, 50), ShareState::Revoked);
        assert_eq!(share_state(true, true, 100, 500), ShareState::Revoked);
        assert!(ShareState::Active.grants_access());
        for state in [
            ShareState::AwaitingApproval,
            ShareState::Expired,
            ShareState::Revoked,
        ] {
            assert!(!state.grants_access(), "{state:?}");
        }
    }

    #[test]
    fn data_flows_down_only_where_the_class_allows() {
        assert_eq!(share_down_refusal("a", 3, "b", 3, "c", false), None);
        assert_eq!(share_down_refusal("a", 2, "b", 4, "c", false), None);
        assert_eq!(share_down_refusal("a", 4, "b", 2, "c", true), None);
        let refusal = share_down_refusal("so-y-te", 4, "xa-a", 2, "pg", false).unwrap();
        assert!(refusal.contains("security level 4"), "{refusal}");
        assert!(refusal.contains("level 2"), "{refusal}");
        assert!(refusal.contains("allowShareDown"), "{refusal}");
    }

    #[test]
    fn a_claim_fits_while_instances_are_left_and_says_how_many_when_not() {
        assert_eq!(claim_fits_quota("a", "pg", Some(3), 0), Ok(2));
        assert_eq!(claim_fits_quota("a", "pg", Some(3), 2), Ok(0));
        let full = claim_fits_quota("a", "pg", Some(3), 3).unwrap_err();
        assert_eq!(full.used, 3);
        let text = full.to_string();
        assert!(text.contains("already holds 3 of the 3"), "{text}");
        assert!(text.contains("0 left"), "{text}");
        let unlisted = claim_fits_quota("a", "pg", None, 0).unwrap_err();
        assert!(unlisted.to_string().contains("no quota"), "{unlisted}");
        assert!(claim_fits_quota("a", "pg", Some(-1), 0).is_err());
    }
}
