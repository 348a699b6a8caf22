//! The audit trail's data model and its hash chain: pure, no I/O, no etcd types.
//!
//! `govctl audit verify` fetches records through the provisioning API and runs
//! [`verify_chain`] (or a [`ChainVerifier`] page by page) on them, so everything here
//! must work on plain deserialised records.
//!
//! # The hash rule (format version 1)
//!
//! `hash = lowercase_hex(sha256(canonical))`, where `canonical` is the UTF-8 JSON text
//! of this object, with no whitespace and the members in exactly this order:
//!
//! ```text
//! {"actor":{"groups":[..],"user":".."},"method":"..",
//!  "outcome":{"code":"..","message":".."},"prevHash":"..","requestDigest":"..",
//!  "seq":N,"target":{"agency":".."|null,"kind":"..","name":".."},
//!  "time":"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"}
//! ```
//!
//! - members are sorted by name at every level, which makes the text exactly the
//!   RFC 8785 JSON Canonicalization Scheme (JCS) of that object: any JCS library can
//!   re-create it;
//! - `groups` keeps the order the caller gave (it is an array, not a set);
//! - `agency` is `null` when the action concerns no agency;
//! - `seq` is a plain integer (it stays far below 2^53, so JCS number rules change nothing);
//! - `time` is UTC, always with exactly nine fractional digits and a `Z` suffix;
//! - strings are escaped as JCS says: `"` and `\` with a backslash, `\b \f \n \r \t`,
//!   other characters below U+0020 as `\u00xx` (lower-case hex), everything else
//!   (Vietnamese included) as raw UTF-8.
//!
//! `prevHash` of record 1 is [`GENESIS_PREV_HASH`] (64 zeros). The record's own `hash`
//! is not part of its canonical bytes.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first record (seq 1): 64 zeros.
pub const GENESIS_PREV_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Lower-case hex SHA-256 of `bytes`: what [`AuditEntry::request_digest`] holds for the
/// serialised request, and the hash function of the chain.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// True when `s` looks like a [`digest`]: 64 lower-case hex digits.
pub fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Who made the call, as the API authenticated them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Actor {
    /// The Kubernetes user name the API acted as.
    pub user: String,
    /// The user's groups, in the order the authenticator gave them.
    pub groups: Vec<String>,
}

/// What the call acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Kind of the object, e.g. `Agency` or `QuotaRequest`.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// The agency the action concerns, if any; per-agency queries use it.
    pub agency: Option<String>,
}

/// How the call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outcome {
    /// Short code: `ok`, `permission_denied`, `invalid_argument`, ...
    pub code: String,
    /// The message returned to the caller (empty on success).
    pub message: String,
}

impl Outcome {
    /// A successful call.
    pub fn ok() -> Self {
        Self {
            code: "ok".into(),
            message: String::new(),
        }
    }
}

/// One auditable event, as the API hands it to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditEntry {
    /// When the call was made (the API's clock).
    #[serde(with = "rfc3339_nanos")]
    pub time: Timestamp,
    /// Who made it.
    pub actor: Actor,
    /// Full gRPC method, e.g. `govbroker.v1.Agencies/UpdateAgency`.
    pub method: String,
    /// What it acted on.
    pub target: Target,
    /// [`digest`] of the request bytes: proves which request was made without storing it.
    pub request_digest: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// An entry as stored: numbered and chained. Its camelCase JSON is the etcd value.
///
/// Decoding refuses unknown members (here and in the nested objects): the hash covers
/// exactly these fields, so a member it does not cover is either tampering or a newer
/// format that this version cannot verify, and must not be shown as verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain, 1-based and gap-free.
    pub seq: u64,
    /// See [`AuditEntry::time`].
    #[serde(with = "rfc3339_nanos")]
    pub time: Timestamp,
    /// See [`AuditEntry::actor`].
    pub actor: Actor,
    /// See [`AuditEntry::method`].
    pub method: String,
    /// See [`AuditEntry::target`].
    pub target: Target,
    /// See [`AuditEntry::request_digest`].
    pub request_digest: String,
    /// See [`AuditEntry::outcome`].
    pub outcome: Outcome,
    /// `hash` of record `seq - 1`, or [`GENESIS_PREV_HASH`] for record 1.
    pub prev_hash: String,
    /// [`AuditRecord::compute_hash`] at the time of writing.
    pub hash: String,
}

impl AuditRecord {
    /// Numbers and chains `entry` after the record whose hash is `prev_hash`.
    pub fn seal(entry: AuditEntry, seq: u64, prev_hash: &str) -> Self {
        let mut record = Self {
            seq,
            time: entry.time,
            actor: entry.actor,
            method: entry.method,
            target: entry.target,
            request_digest: entry.request_digest,
            outcome: entry.outcome,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }

    /// The canonical bytes the hash covers (see the module documentation for the rule).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Field order is the JCS order (sorted member names); do not reorder.
        #[derive(Serialize)]
        struct Canonical<'a> {
            actor: CanonicalActor<'a>,
            method: &'a str,
            outcome: CanonicalOutcome<'a>,
            #[serde(rename = "prevHash")]
            prev_hash: &'a str,
            #[serde(rename = "requestDigest")]
            request_digest: &'a str,
            seq: u64,
            target: CanonicalTarget<'a>,
            time: String,
        }
        #[derive(Serialize)]
        struct CanonicalActor<'a> {
            groups: &'a [String],
            user: &'a str,
        }
        #[derive(Serialize)]
        struct CanonicalOutcome<'a> {
            code: &'a str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct CanonicalTarget<'a> {
            agency: Option<&'a str>,
            kind: &'a str,
            name: &'a str,
        }
        let canonical = Canonical {
            actor: CanonicalActor {
                groups: &self.actor.groups,
                user: &self.actor.user,
            },
            method: &self.method,
            outcome: CanonicalOutcome {
                code: &self.outcome.code,
                message: &self.outcome.message,
            },
            prev_hash: &self.prev_hash,
            request_digest: &self.request_digest,
            seq: self.seq,
            target: CanonicalTarget {
                agency: self.target.agency.as_deref(),
                kind: &self.target.kind,
                name: &self.target.name,
            },
            time: rfc3339_nanos::format(&self.time),
        };
        // Serialising plain strings, integers and arrays into a Vec cannot fail.
        serde_json::to_vec(&canonical).expect("canonical audit JSON")
    }

    /// The hash this record's contents call for: [`digest`] of [`Self::canonical_bytes`].
    pub fn compute_hash(&self) -> String {
        digest(&self.canonical_bytes())
    }

    /// The entry this record was made from.
    pub fn entry(&self) -> AuditEntry {
        AuditEntry {
            time: self.time,
            actor: self.actor.clone(),
            method: self.method.clone(),
            target: self.target.clone(),
            request_digest: self.request_digest.clone(),
            outcome: self.outcome.clone(),
        }
    }
}

/// The end of the chain: the last record's seq and hash. Stored as the head key in etcd;
/// a verified prefix's summary has the same shape and can start the next suffix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainHead {
    /// Seq of the last record (0 for an empty chain).
    pub seq: u64,
    /// Hash of the last record ([`GENESIS_PREV_HASH`] for an empty chain).
    pub hash: String,
}

impl ChainHead {
    /// The head of a chain with no records.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_PREV_HASH.to_owned(),
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Seq the verification started at.
    pub first_seq: u64,
    /// Number of records verified.
    pub verified: u64,
    /// The last verified record (or the starting point when nothing was verified).
    /// Pass `(last.seq + 1, &last.hash)` as `expected_first` to verify the next suffix.
    pub last: ChainHead,
}

/// Where and how a chain is broken. Every message names the seq to look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// A seq is missing: records were deleted, or the input skipped them.
    #[error(
        "audit record {expected} is missing: the next record present is {found}, so records \
         {expected}..={last_missing} were deleted (or the listing skipped them); restore them \
         from an export or backup"
    , last_missing = found - 1)]
    Missing {
        /// The seq that should have come next.
        expected: u64,
        /// The seq that came instead.
        found: u64,
    },
    /// A record came after one with the same or a higher seq.
    #[error(
        "audit record {found} comes after record {previous}: the records are reordered or \
         duplicated; list them again in seq order, and if the store itself holds them this way, \
         restore from an export or backup"
    )]
    OutOfOrder {
        /// Seq of the record before it.
        previous: u64,
        /// Seq of the offending record.
        found: u64,
    },
    /// A record's contents do not hash to its stored hash.
    #[error(
        "audit record {seq} was altered: its contents hash to {computed} but it says {stored}; \
         compare it with an export or backup and restore the original"
    )]
    Altered {
        /// Seq of the altered record.
        seq: u64,
        /// The hash stored in the record.
        stored: String,
        /// The hash its contents call for.
        computed: String,
    },
    /// A record does not point at its predecessor.
    #[error(
        "audit record {seq} does not follow record {previous}: its prevHash is {prev_hash} but \
         record {previous} hashes to {expected}; record {previous} (or one before it) was \
         replaced and re-hashed, or records were deleted and renumbered; compare both with an \
         export or backup"
    , previous = seq - 1)]
    BrokenLink {
        /// Seq of the record whose link is wrong.
        seq: u64,
        /// The prevHash it holds.
        prev_hash: String,
        /// The hash of its predecessor (or the expected starting hash).
        expected: String,
    },
    /// The records stop before the head says they should.
    #[error(
        "the audit log ends at record {last} but its head says {head_seq}: records \
         {first_missing}..={head_seq} were deleted from the end; restore them from an export \
         or backup", first_missing = last + 1
    )]
    Truncated {
        /// Seq of the last record present.
        last: u64,
        /// Seq the head names.
        head_seq: u64,
    },
    /// The head names the right seq but a different hash, or a seq beyond the records.
    #[error(
        "the audit log's head says record {head_seq} has hash {head_hash}, but the records end \
         at {last} with hash {last_hash}; the head or the last records were rewritten"
    )]
    HeadMismatch {
        /// Seq the head names.
        head_seq: u64,
        /// Hash the head names.
        head_hash: String,
        /// Seq of the last record.
        last: u64,
        /// Hash of the last record.
        last_hash: String,
    },
}

impl ChainBreak {
    /// The seq a person should look at first.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Missing { expected, .. } => *expected,
            Self::OutOfOrder { found, .. } => *found,
            Self::Altered { seq, .. } | Self::BrokenLink { seq, .. } => *seq,
            Self::Truncated { last, .. } => last + 1,
            Self::HeadMismatch { head_seq, .. } => *head_seq,
        }
    }
}

/// Verifies a chain one record at a time, so a large log can be checked page by page
/// without holding it in memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    first_seq: u64,
    verified: u64,
    last: ChainHead,
}

impl ChainVerifier {
    /// Starts at record 1 (whose prevHash must be [`GENESIS_PREV_HASH`]).
    pub fn from_genesis() -> Self {
        Self::resume(1, GENESIS_PREV_HASH)
    }

    /// Starts at `seq`, whose prevHash must be `prev_hash` (the hash of record `seq - 1`,
    /// known from an earlier verification or a trusted export). `seq` 0 is treated as 1.
    pub fn resume(seq: u64, prev_hash: &str) -> Self {
        let seq = seq.max(1);
        Self {
            first_seq: seq,
            verified: 0,
            last: ChainHead {
                seq: seq - 1,
                hash: prev_hash.to_owned(),
            },
        }
    }

    /// Checks the next record: its seq, its own hash, then its link to the one before.
    ///
    /// The order matters for the report: a record whose seq is right but whose contents
    /// changed is "altered", and only a record that is intact but points at the wrong
    /// predecessor is a "broken link".
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        let expected = self.last.seq + 1;
        if record.seq < expected {
            return Err(ChainBreak::OutOfOrder {
                previous: self.last.seq,
                found: record.seq,
            });
        }
        if record.seq > expected {
            return Err(ChainBreak::Missing {
                expected,
                found: record.seq,
            });
        }
        let computed = record.compute_hash();
        if computed != record.hash {
            return Err(ChainBreak::Altered {
                seq: record.seq,
                stored: record.hash.clone(),
                computed,
            });
        }
        if record.prev_hash != self.last.hash {
            return Err(ChainBreak::BrokenLink {
                seq: record.seq,
                prev_hash: record.prev_hash.clone(),
                expected: self.last.hash.clone(),
            });
        }
        self.verified += 1;
        self.last = ChainHead {
            seq: record.seq,
            hash: computed,
        };
        Ok(())
    }

    /// The last verified record so far.
    pub fn last(&self) -> &ChainHead {
        &self.last
    }

    /// Ends verification without a head to compare with.
    pub fn finish(self) -> ChainSummary {
        ChainSummary {
            first_seq: self.first_seq,
            verified: self.verified,
            last: self.last,
        }
    }

    /// Ends verification and checks that the records reached `head` (the chain's stored
    /// head). This is what catches records deleted from the end, which the links alone
    /// cannot see.
    pub fn finish_at(self, head: &ChainHead) -> Result<ChainSummary, ChainBreak> {
        if head.seq > self.last.seq {
            return Err(ChainBreak::Truncated {
                last: self.last.seq,
                head_seq: head.seq,
            });
        }
        if head.seq < self.last.seq || head.hash != self.last.hash {
            return Err(ChainBreak::HeadMismatch {
                head_seq: head.seq,
                head_hash: head.hash.clone(),
                last: self.last.seq,
                last_hash: self.last.hash.clone(),
            });
        }
        Ok(self.finish())
    }
}

/// Verifies `records` (in seq order) as a chain.
///
/// With `expected_first` `None` the chain must start at record 1 with
/// [`GENESIS_PREV_HASH`]; with `Some((seq, prev_hash))` it must start at `seq` and point at
/// `prev_hash` (verifying a suffix of a large log from a known checkpoint). An empty input
/// verifies trivially; compare [`ChainSummary::last`] with the stored head (or use
/// [`ChainVerifier::finish_at`]) to catch records deleted from the end.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    expected_first: Option<(u64, &str)>,
) -> Result<ChainSummary, ChainBreak> {
    let mut verifier = match expected_first {
        None => ChainVerifier::from_genesis(),
        Some((seq, prev_hash)) => ChainVerifier::resume(seq, prev_hash),
    };
    for record in records {
        verifier.push(record)?;
    }
    Ok(verifier.finish())
}

impl fmt::Display for ChainSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} audit records verified ({}..={}), last hash {}",
            self.verified, self.first_seq, self.last.seq, self.last.hash
        )
    }
}

/// Timestamps as RFC 3339 in UTC with exactly nine fractional digits, the form the hash
/// covers. Stored records use it too so that what a person reads is what was hashed;
/// any RFC 3339 form is accepted when reading.
pub mod rfc3339_nanos {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// `2025-03-01T08:30:00.000000000Z`.
    pub fn format(time: &Timestamp) -> String {
        format!("{time:.9}")
    }

    /// Serde serialiser for `#[serde(with = "rfc3339_nanos")]`.
    pub fn serialize<S: Serializer>(time: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(time))
    }

    /// Serde deserialiser for `#[serde(with = "rfc3339_nanos")]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> AuditEntry {
        AuditEntry {
            time: Timestamp::new(1_750_000_000 + i as i64, (i as i32) * 1_000).unwrap(),
            actor: Actor {
                user: format!("user-{i}@bo-tai-chinh.gov.vn"),
                groups: vec!["agency-admins".into(), "system:authenticated".into()],
            },
            method: "govbroker.v1.Agencies/UpdateAgency".into(),
            target: Target {
                kind: "Agency".into(),
                name: format!("agency-{i}"),
                agency: i.is_multiple_of(2).then(|| format!("agency-{i}")),
            },
            request_digest: digest(format!("request {i}").as_bytes()),
            outcome: if i.is_multiple_of(3) {
                Outcome {
                    code: "permission_denied".into(),
                    message: "not allowed".into(),
                }
            } else {
                Outcome::ok()
            },
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_PREV_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let record = AuditRecord::seal(entry(seq), seq, &prev);
                prev = record.hash.clone();
                record
            })
            .collect()
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_digest(&digest(b"abc")));
        assert!(!is_digest("E3B0"));
        assert!(!is_digest(&"G".repeat(64)));
    }

    #[test]
    fn good_chain_verifies() {
        let records = chain(10);
        let summary = verify_chain(&records, None).unwrap();
        assert_eq!(summary.first_seq, 1);
        assert_eq!(summary.verified, 10);
        assert_eq!(summary.last.seq, 10);
        assert_eq!(summary.last.hash, records[9].hash);
    }

    #[test]
    fn empty_chain_verifies_to_its_starting_point() {
        let summary = verify_chain(&[], None).unwrap();
        assert_eq!(summary.verified, 0);
        assert_eq!(summary.last, ChainHead::genesis());
    }

    /// The canonical form is frozen: a third party re-implements it from the docs, so any
    /// change here must be a new, documented format version.
    #[test]
    fn canonical_bytes_are_frozen() {
        let record = AuditRecord::seal(
            AuditEntry {
                time: "2025-03-01T08:30:00.5Z".parse().unwrap(),
                actor: Actor {
                    user: "Nguyễn \"Văn\" A\\".into(),
                    groups: vec!["b".into(), "a\n\u{1}".into()],
                },
                method: "govbroker.v1.Agencies/UpdateAgency".into(),
                target: Target {
                    kind: "Agency".into(),
                    name: "so-tai-chinh".into(),
                    agency: None,
                },
                request_digest: digest(b""),
                outcome: Outcome {
                    code: "ok".into(),
                    message: "DEL:\u{7f}".into(),
                },
            },
            1,
            GENESIS_PREV_HASH,
        );
        let expected = concat!(
            r#"{"actor":{"groups":["b","a\n\u0001"],"user":"Nguyễn \"Văn\" A\\"},"#,
            r#""method":"govbroker.v1.Agencies/UpdateAgency","#,
            "\"outcome\":{\"code\":\"ok\",\"message\":\"DEL:\u{7f}\"},",
            r#""prevHash":"0000000000000000000000000000000000000000000000000000000000000000","#,
            r#""requestDigest":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","#,
            r#""seq":1,"target":{"agency":null,"kind":"Agency","name":"so-tai-chinh"},"#,
            r#""time":"2025-03-01T08:30:00.500000000Z"}"#,
        );
        assert_eq!(
            String::from_utf8(record.canonical_bytes()).unwrap(),
            expected
        );
        assert_eq!(record.hash, digest(expected.as_bytes()));
        // The same figure is quoted in docs/audit.md for people re-implementing the rule.
        assert_eq!(
            record.hash,
            "daeb98725288ea41cb62e740c297a1b8148c1a0430a78c7955dc9c66588ddfc2"
        );
    }

    /// The example record of docs/audit.md, whose hash was computed there with jq.
    #[test]
    fn documented_example_record_hashes_as_documented() {
        let record: AuditRecord = serde_json::from_str(concat!(
            r#"{"seq":7,"time":"2025-03-01T08:06:00.123456789Z","#,
            r#""actor":{"user":"alice","groups":["govbroker:agency-admins","system:authenticated"]},"#,
            r#""method":"govbroker.v1.Agencies/UpdateAgency","#,
            r#""target":{"kind":"Agency","name":"so-tai-chinh","agency":"so-tai-chinh"},"#,
            r#""requestDigest":"4f577f312fb157f53b4d7c1bc23fb65ed99261b992b28bb43c497e4af1b74343","#,
            r#""outcome":{"code":"ok","message":""},"#,
            r#""prevHash":"ff265ddacaf872945c31beb9ab4820014bfe1f9990967ee612d9e9578d843126","#,
            r#""hash":"9e41d87fccb30a3fd6329cdcd96cc12d81a0c23426c403f976d4b0a17249753b"}"#,
        ))
        .unwrap();
        assert_eq!(record.compute_hash(), record.hash);
        assert_eq!(record.request_digest, digest(br#"{"name":"so-tai-chinh"}"#));
    }

    #[test]
    fn record_json_round_trips_in_camel_case() {
        let record = &chain(2)[1];
        let json = serde_json::to_string(record).unwrap();
        assert!(json.contains(r#""prevHash":"#), "{json}");
        assert!(json.contains(r#""requestDigest":"#), "{json}");
        assert!(
            json.contains(r#""time":"2025-06-15T15:06:42.000002000Z""#),
            "{json}"
        );
        let back: AuditRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, record);
        assert_eq!(back.compute_hash(), record.hash);
    }

    /// A named way of changing one field of a record.
    type Tampering = (&'static str, fn(&mut AuditRecord));

    #[test]
    fn members_the_hash_does_not_cover_are_refused() {
        let record = &chain(1)[0];
        let mut json = serde_json::to_value(record).unwrap();
        json["approvedBy"] = "mallory".into();
        assert!(serde_json::from_value::<AuditRecord>(json).is_err());
        let mut json = serde_json::to_value(record).unwrap();
        json["outcome"]["note"] = "hidden".into();
        assert!(serde_json::from_value::<AuditRecord>(json).is_err());
    }

    /// Every way of changing one field of one record.
    fn tamperings() -> Vec<Tampering> {
        vec![
            ("seq", |r| r.seq += 100),
            ("time", |r| r.time += jiff::SignedDuration::from_nanos(1)),
            ("actor.user", |r| r.actor.user.push('x')),
            ("actor.groups added", |r| {
                r.actor.groups.push("admins".into())
            }),
            ("actor.groups reordered", |r| r.actor.groups.reverse()),
            ("method", |r| {
                r.method = "govbroker.v1.Agencies/DeleteAgency".into()
            }),
            ("target.kind", |r| r.target.kind = "QuotaRequest".into()),
            ("target.name", |r| r.target.name.push('x')),
            ("target.agency", |r| {
                r.target.agency = match r.target.agency.take() {
                    Some(_) => None,
                    None => Some("other".into()),
                }
            }),
            ("request_digest", |r| r.request_digest = digest(b"other")),
            ("outcome.code", |r| r.outcome.code = "ok ".into()),
            ("outcome.message", |r| r.outcome.message.push('!')),
            ("prev_hash", |r| r.prev_hash = digest(b"forged")),
            ("hash", |r| r.hash = digest(b"forged")),
        ]
    }

    #[test]
    fn changing_any_field_of_any_record_is_reported_at_that_seq() {
        let good = chain(6);
        for index in 0..good.len() {
            for (field, tamper) in tamperings() {
                let mut records = good.clone();
                tamper(&mut records[index]);
                let seq = good[index].seq;
                let err = verify_chain(&records, None)
                    .expect_err(&format!("changing {field} of record {seq} went unnoticed"));
                assert_eq!(err.seq(), seq, "{field} of record {seq}: {err}");
            }
        }
    }

    #[test]
    fn altered_and_rehashed_record_breaks_the_next_link() {
        let mut records = chain(5);
        records[2].outcome.code = "ok".into();
        records[2].outcome.message.clear();
        records[2].hash = records[2].compute_hash();
        let err = verify_chain(&records, None).unwrap_err();
        assert!(
            matches!(err, ChainBreak::BrokenLink { seq: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("record 3"), "{err}");
    }

    #[test]
    fn deleted_record_is_reported_as_missing() {
        for index in 0..5 {
            let mut records = chain(5);
            records.remove(index);
            let missing = index as u64 + 1;
            match verify_chain(&records, None) {
                Err(ChainBreak::Missing { expected, found }) => {
                    assert_eq!((expected, found), (missing, missing + 1));
                }
                // Deleting the last record leaves a valid shorter chain: only the head
                // can tell.
                Ok(summary) if index == 4 => {
                    let head = ChainHead {
                        seq: 5,
                        hash: chain(5)[4].hash.clone(),
                    };
                    let mut verifier = ChainVerifier::from_genesis();
                    for r in &records {
                        verifier.push(r).unwrap();
                    }
                    assert_eq!(summary.last.seq, 4);
                    let err = verifier.finish_at(&head).unwrap_err();
                    assert_eq!(
                        err,
                        ChainBreak::Truncated {
                            last: 4,
                            head_seq: 5
                        }
                    );
                    assert_eq!(err.seq(), 5);
                }
                other => panic!("deleting record {missing}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_middle_is_reported_at_the_first_missing_seq() {
        let mut records = chain(20);
        records.drain(6..13); // seqs 7..=13
        let err = verify_chain(&records, None).unwrap_err();
        assert_eq!(
            err,
            ChainBreak::Missing {
                expected: 7,
                found: 14
            }
        );
        assert!(err.to_string().contains("7..=13"), "{err}");
    }

    #[test]
    fn swapped_records_are_reported_at_the_first_displaced_seq() {
        let good = chain(6);
        for (i, j) in [(0, 1), (2, 3), (1, 4), (4, 5)] {
            let mut records = good.clone();
            records.swap(i, j);
            let err = verify_chain(&records, None).unwrap_err();
            let (expected, found) = (i as u64 + 1, j as u64 + 1);
            assert_eq!(
                err,
                ChainBreak::Missing { expected, found },
                "swap {i} and {j}"
            );
            assert_eq!(err.seq(), expected);
        }
        // A record repeated after a later one (a duplicate or a step backwards).
        let repeated = [good[0].clone(), good[1].clone(), good[0].clone()];
        let err = verify_chain(&repeated, None).unwrap_err();
        assert_eq!(
            err,
            ChainBreak::OutOfOrder {
                previous: 2,
                found: 1
            }
        );
    }

    #[test]
    fn suffix_verifies_from_a_checkpoint() {
        let records = chain(10);
        let prefix = verify_chain(&records[..4], None).unwrap();
        let next = prefix.last.seq + 1;
        let suffix = verify_chain(&records[4..], Some((next, &prefix.last.hash))).unwrap();
        assert_eq!(suffix.first_seq, 5);
        assert_eq!(suffix.verified, 6);
        assert_eq!(suffix.last.hash, records[9].hash);

        // A wrong checkpoint hash is a broken link at the first record of the suffix.
        let err = verify_chain(&records[4..], Some((5, &records[2].hash))).unwrap_err();
        assert!(
            matches!(err, ChainBreak::BrokenLink { seq: 5, .. }),
            "{err}"
        );
        // A suffix that starts later than promised is missing records.
        let err = verify_chain(&records[5..], Some((5, &records[3].hash))).unwrap_err();
        assert_eq!(
            err,
            ChainBreak::Missing {
                expected: 5,
                found: 6
            }
        );
        // Without a checkpoint a suffix does not verify: it must start at 1.
        let err = verify_chain(&records[4..], None).unwrap_err();
        assert_eq!(
            err,
            ChainBreak::Missing {
                expected: 1,
                found: 5
            }
        );
    }

    #[test]
    fn head_must_match_the_last_record() {
        let records = chain(3);
        let mut verifier = ChainVerifier::from_genesis();
        for r in &records {
            verifier.push(r).unwrap();
        }
        let good = ChainHead {
            seq: 3,
            hash: records[2].hash.clone(),
        };
        assert!(verifier.clone().finish_at(&good).is_ok());
        let wrong_hash = ChainHead {
            seq: 3,
            hash: digest(b"x"),
        };
        assert!(matches!(
            verifier.clone().finish_at(&wrong_hash),
            Err(ChainBreak::HeadMismatch { head_seq: 3, .. })
        ));
        let behind = ChainHead {
            seq: 2,
            hash: records[1].hash.clone(),
        };
        assert!(matches!(
            verifier.finish_at(&behind),
            Err(ChainBreak::HeadMismatch {
                head_seq: 2,
                last: 3,
                ..
            })
        ));
    }
}
