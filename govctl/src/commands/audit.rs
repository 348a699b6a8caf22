//! `govctl audit list|verify`: the audit trail, and its hash chain checked locally.

use govbroker_api::proto;
use govbroker_ledger::{Actor, AuditRecord, ChainBreak, ChainVerifier, Outcome, Target};
use serde::Serialize;

use super::{Listed, MAX_PAGE, gather, print_list};
use crate::cli::{AuditCommand, AuditListArgs, AuditVerifyArgs, Checkpoint};
use crate::connect::Connection;
use crate::error::{Failure, exit};
use crate::output::{Format, Table, emit, or_dash, print};

/// Runs an audit command.
pub async fn run(conn: &Connection, command: AuditCommand, format: Format) -> Result<(), Failure> {
    match command {
        AuditCommand::List(args) => list(conn, args, format).await,
        AuditCommand::Verify(args) => verify(conn, args, format).await,
    }
}

/// A record as the API sends it, as the ledger hashes it. Fails (naming the seq) when
/// the time is not RFC 3339.
pub fn to_ledger(record: &proto::AuditRecord) -> Result<AuditRecord, String> {
    let time = record.time.parse::<jiff::Timestamp>().map_err(|e| {
        format!(
            "audit record {} has a time that is not RFC 3339 ({:?}: {e})",
            record.seq, record.time
        )
    })?;
    Ok(AuditRecord {
        seq: record.seq,
        time,
        actor: Actor {
            user: record.user.clone(),
            groups: record.groups.clone(),
        },
        method: record.method.clone(),
        target: Target {
            kind: record.target_kind.clone(),
            name: record.target_name.clone(),
            agency: (!record.agency.is_empty()).then(|| record.agency.clone()),
        },
        request_digest: record.request_digest.clone(),
        outcome: Outcome {
            code: record.outcome.clone(),
            message: record.message.clone(),
        },
        prev_hash: record.prev_hash.clone(),
        hash: record.hash.clone(),
    })
}

async fn list(conn: &Connection, args: AuditListArgs, format: Format) -> Result<(), Failure> {
    let client = conn.audit();
    let template = proto::ListAuditRecordsRequest {
        agency: args.agency.unwrap_or_default(),
        since: args.since.unwrap_or_default(),
        until: args.until.unwrap_or_default(),
        ..Default::default()
    };
    let gathered = gather(args.paging, |page_size, page_token| {
        let mut client = client.clone();
        let request = proto::ListAuditRecordsRequest {
            page_size,
            page_token,
            ..template.clone()
        };
        async move {
            let page = conn.answer(client.list_audit_records(request)).await?;
            Ok((page.records, page.next_page_token))
        }
    })
    .await?;
    let response = proto::ListAuditRecordsResponse {
        records: gathered.items,
        next_page_token: gathered.next_page_token,
        ..Default::default()
    };
    print_list(
        format,
        &response,
        || table(&response.records),
        Listed {
            count: response.records.len(),
            next_page_token: &response.next_page_token,
            none: "no audit records match",
            what: "audit records",
        },
    )
}

/// The table of `audit list`.
pub fn table(records: &[proto::AuditRecord]) -> String {
    let mut table = Table::new(&[
        "seq", "time", "user", "method", "target", "agency", "outcome",
    ]);
    for r in records {
        let time = r
            .time
            .parse::<jiff::Timestamp>()
            .map(|t| format!("{t:.0}"))
            .unwrap_or_else(|_| r.time.clone());
        let target = match (r.target_kind.as_str(), r.target_name.as_str()) {
            ("", "") => "-".to_owned(),
            (kind, "") => kind.to_owned(),
            (kind, name) => format!("{kind}/{name}"),
        };
        table.row(vec![
            r.seq.to_string(),
            time,
            or_dash(&r.user),
            r.method
                .strip_prefix("govbroker.v1.")
                .unwrap_or(&r.method)
                .to_owned(),
            target,
            or_dash(&r.agency),
            r.outcome.clone(),
        ]);
    }
    if table.is_empty() {
        return String::new();
    }
    table.render()
}

/// What `audit verify` found, as `-o json|yaml` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Whether every record checked out.
    pub verified: bool,
    /// Records verified (before the break, if any).
    pub records: u64,
    /// Seq of the last verified record (0 for none).
    pub head_seq: u64,
    /// Its hash (64 zeros for none).
    pub head_hash: String,
    /// Where the chain breaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    /// Why, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Feeds records to a verifier; the first problem stops it.
#[derive(Debug)]
pub struct Verify {
    verifier: ChainVerifier,
    checkpoint: Option<Checkpoint>,
    broken: Option<(u64, String)>,
}

impl Default for Verify {
    fn default() -> Self {
        Verify::new(None)
    }
}

impl Verify {
    /// From record 1; with a checkpoint, record `checkpoint.seq` must exist and hash to
    /// `checkpoint.hash`.
    pub fn new(checkpoint: Option<Checkpoint>) -> Verify {
        Verify {
            verifier: ChainVerifier::from_genesis(),
            checkpoint,
            broken: None,
        }
    }

    /// Checks the next records; false once the chain is found broken.
    pub fn push(&mut self, records: &[proto::AuditRecord]) -> bool {
        for record in records {
            if self.broken.is_some() {
                return false;
            }
            let checked = to_ledger(record)
                .map_err(|reason| (record.seq, reason))
                .and_then(|r| {
                    self.verifier
                        .push(&r)
                        .map_err(|e: ChainBreak| (e.seq(), e.to_string()))
                });
            if let Err(broken) = checked {
                self.broken = Some(broken);
            } else if let Some(cp) = &self.checkpoint
                && cp.seq == record.seq
                && cp.hash != record.hash
            {
                self.broken = Some((
                    record.seq,
                    format!(
                        "audit record {} hashes to {} but the checkpoint says {}: the trail was \
                         rewritten and re-hashed from this record or an earlier one; compare \
                         it with an export or backup",
                        record.seq, record.hash, cp.hash
                    ),
                ));
            }
        }
        self.broken.is_none()
    }

    /// The outcome.
    pub fn finish(mut self) -> Verification {
        let last = self.verifier.last().seq;
        if self.broken.is_none()
            && let Some(cp) = &self.checkpoint
            && cp.seq > last
        {
            self.broken = Some((
                last + 1,
                format!(
                    "the audit trail ends at record {last} but the checkpoint names record {}: \
                     records {}..={} were removed from the end; restore them from an export or \
                     backup",
                    cp.seq,
                    last + 1,
                    cp.seq
                ),
            ));
        }
        let summary = self.verifier.finish();
        let (broken_at, reason) = match self.broken {
            Some((seq, reason)) => (Some(seq), Some(reason)),
            None => (None, None),
        };
        Verification {
            verified: broken_at.is_none(),
            records: summary.verified,
            head_seq: summary.last.seq,
            head_hash: summary.last.hash,
            broken_at,
            reason,
        }
    }
}

async fn verify(conn: &Connection, args: AuditVerifyArgs, format: Format) -> Result<(), Failure> {
    let mut check = Verify::new(args.checkpoint);
    let mut client = conn.audit();
    let mut token = String::new();
    // Paging by hand: a break stops fetching, and nothing is kept in memory.
    loop {
        let page = conn
            .answer(client.list_audit_records(proto::ListAuditRecordsRequest {
                page_size: MAX_PAGE,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await?;
        if !check.push(&page.records) || page.next_page_token.is_empty() {
            break;
        }
        if page.next_page_token == token {
            return Err(Failure::other(
                "the server returned the same page token twice; stopping instead of looping",
            ));
        }
        token = page.next_page_token;
    }
    let outcome = check.finish();
    if format != Format::Table {
        print(format, &outcome, String::new)?;
    }
    match (&outcome.broken_at, &outcome.reason) {
        (Some(seq), Some(reason)) => Err(Failure::new(
            exit::CHAIN_BROKEN,
            format!(
                "audit chain broken at record {seq} (after {} good records): {reason}",
                outcome.records
            ),
        )),
        _ => {
            if format == Format::Table {
                emit(&format!(
                    "audit chain verified: {} records, head {}\n",
                    outcome.records, outcome.head_hash
                ))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govbroker_ledger::{AuditEntry, GENESIS_PREV_HASH, digest};

    /// What the API does to a ledger record (api/src/service/audit.rs).
    fn to_proto(r: &AuditRecord) -> proto::AuditRecord {
        proto::AuditRecord {
            seq: r.seq,
            time: govbroker_ledger::audit::chain::rfc3339_nanos::format(&r.time),
            user: r.actor.user.clone(),
            groups: r.actor.groups.clone(),
            method: r.method.clone(),
            target_kind: r.target.kind.clone(),
            target_name: r.target.name.clone(),
            agency: r.target.agency.clone().unwrap_or_default(),
            request_digest: r.request_digest.clone(),
            outcome: r.outcome.code.clone(),
            message: r.outcome.message.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_PREV_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let record = AuditRecord::seal(
                    AuditEntry {
                        time: jiff::Timestamp::new(1_760_000_000 + seq as i64, 123_456_789)
                            .unwrap(),
                        actor: Actor {
                            user: "nguyễn.văn.an@hanoi.gov.vn".into(),
                            groups: vec!["syt-it".into(), "system:authenticated".into()],
                        },
                        method: "govbroker.v1.QuotaRequests/CreateQuotaRequest".into(),
                        target: Target {
                            kind: "QuotaRequest".into(),
                            name: String::new(),
                            agency: (seq % 2 == 0).then(|| "so-y-te".into()),
                        },
                        request_digest: digest(format!("{seq}").as_bytes()),
                        outcome: if seq == 3 {
                            Outcome {
                                code: "permission_denied".into(),
                                message: "không được phép".into(),
                            }
                        } else {
                            Outcome::ok()
                        },
                    },
                    seq,
                    &prev,
                );
                prev = record.hash.clone();
                record
            })
            .collect()
    }

    #[test]
    fn conversion_round_trips_every_field() {
        for record in chain(4) {
            let back = to_ledger(&to_proto(&record)).unwrap();
            assert_eq!(back, record);
            assert_eq!(back.compute_hash(), record.hash);
        }
    }

    #[test]
    fn empty_agency_is_none_and_bad_time_is_reported() {
        let mut p = to_proto(&chain(1)[0]);
        assert_eq!(to_ledger(&p).unwrap().target.agency, None);
        p.time = "yesterday".into();
        let err = to_ledger(&p).unwrap_err();
        assert!(err.contains("audit record 1"), "{err}");
    }

    #[test]
    fn verify_accepts_a_good_chain_page_by_page() {
        let records: Vec<_> = chain(7).iter().map(to_proto).collect();
        let mut check = Verify::default();
        assert!(check.push(&records[..3]));
        assert!(check.push(&records[3..]));
        let outcome = check.finish();
        assert!(outcome.verified);
        assert_eq!(outcome.records, 7);
        assert_eq!(outcome.head_seq, 7);
        assert_eq!(outcome.head_hash, records[6].hash);
    }

    #[test]
    fn verify_reports_an_altered_record_at_its_seq() {
        let mut records: Vec<_> = chain(5).iter().map(to_proto).collect();
        records[2].outcome = "ok".into();
        let mut check = Verify::default();
        assert!(!check.push(&records));
        let outcome = check.finish();
        assert!(!outcome.verified);
        assert_eq!(outcome.broken_at, Some(3));
        assert_eq!(outcome.records, 2);
        assert!(outcome.reason.unwrap().contains("altered"));
    }

    #[test]
    fn verify_reports_a_deleted_record() {
        let mut records: Vec<_> = chain(5).iter().map(to_proto).collect();
        records.remove(1);
        let mut check = Verify::default();
        assert!(!check.push(&records));
        assert_eq!(check.finish().broken_at, Some(2));
    }

    #[test]
    fn a_checkpoint_catches_removal_from_the_end_and_rewrites() {
        let records: Vec<_> = chain(6).iter().map(to_proto).collect();
        let at = |seq: u64, hash: &str| {
            Some(Checkpoint {
                seq,
                hash: hash.to_owned(),
            })
        };
        // The checkpoint is still there: fine.
        let mut check = Verify::new(at(4, &records[3].hash));
        assert!(check.push(&records));
        assert!(check.finish().verified);
        // Records 5 and 6 removed, and a checkpoint at 6: the chain alone would pass.
        let mut check = Verify::new(at(6, &records[5].hash));
        assert!(check.push(&records[..4]));
        let outcome = check.finish();
        assert_eq!(outcome.broken_at, Some(5));
        assert!(outcome.reason.unwrap().contains("5..=6"));
        // A trail re-hashed consistently after the checkpoint was taken.
        let mut check = Verify::new(at(4, &digest(b"the old record 4")));
        assert!(!check.push(&records));
        assert_eq!(check.finish().broken_at, Some(4));
    }

    #[test]
    fn an_empty_trail_verifies() {
        let outcome = Verify::default().finish();
        assert!(outcome.verified);
        assert_eq!(outcome.records, 0);
        assert_eq!(outcome.head_hash, GENESIS_PREV_HASH);
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["headSeq"], 0);
        assert!(json.get("brokenAt").is_none());
    }
}
