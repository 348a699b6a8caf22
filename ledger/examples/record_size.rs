//! Measures how big audit records are, for the sizing figures in `docs/audit.md`.
//!
//! ```sh
//! cargo run -p govbroker-ledger --example record_size            # JSON sizes only
//! cargo run -p govbroker-ledger --example record_size -- --etcd 5000
//! ```
//!
//! With `--etcd N` it also appends N records under a scratch prefix of the ledger etcd
//! (`GOVBROKER_LEDGER_ENDPOINTS`, default `http://127.0.0.1:12381`), reports how much the
//! database in use grew, and deletes the prefix again (`--keep` leaves it, to measure again
//! after etcd's periodic compaction has dropped the head's superseded versions; delete it
//! afterwards with `etcdctl del --prefix <prefix>/`).

use std::hash::{BuildHasher, Hasher};

use anyhow::{Context, Result};
use etcd_client::{Client, DeleteOptions};
use govbroker_ledger::{
    Actor, AuditEntry, AuditLog, AuditRecord, GENESIS_PREV_HASH, Outcome, Target, digest,
};
use jiff::{SignedDuration, Timestamp};

/// Agencies with names of the length the demo tree uses.
const AGENCIES: [&str; 6] = [
    "bo-tai-chinh",
    "so-tai-chinh-ha-noi",
    "ubnd-tinh-quang-nam",
    "ubnd-huyen-dien-ban",
    "ubnd-xa-dien-phuong",
    "so-thong-tin-va-truyen-thong-da-nang",
];

const METHODS: [&str; 5] = [
    "govbroker.v1.Agencies/UpdateAgency",
    "govbroker.v1.Quota/CreateQuotaRequest",
    "govbroker.v1.Quota/ApproveQuotaRequest",
    "govbroker.v1.Databases/CreateDatabase",
    "govbroker.v1.Workloads/DeployWorkload",
];

/// A realistic mix: one call in ten denied with a message, one in twenty without agency.
fn entry(i: u64) -> AuditEntry {
    let agency = AGENCIES[i as usize % AGENCIES.len()];
    let user = format!("nguyen.van.{}@{agency}.gov.vn", i % 97);
    AuditEntry {
        time: Timestamp::now() + SignedDuration::from_millis(i as i64),
        actor: Actor {
            user: user.clone(),
            groups: vec![
                format!("govbroker:{agency}:admins"),
                "system:authenticated".into(),
            ],
        },
        method: METHODS[i as usize % METHODS.len()].into(),
        target: Target {
            kind: "QuotaRequest".into(),
            name: format!("{agency}-quota-{i}"),
            agency: (!i.is_multiple_of(20)).then(|| agency.into()),
        },
        request_digest: digest(format!("request {i}").as_bytes()),
        outcome: if i.is_multiple_of(10) {
            Outcome {
                code: "permission_denied".into(),
                message: format!(
                    "{user} cannot approve quota requests in namespace {agency}-prod: \
                     the agency-admin role does not grant it"
                ),
            }
        } else {
            Outcome::ok()
        },
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    const SAMPLE: u64 = 10_000;
    let mut prev = GENESIS_PREV_HASH.to_owned();
    let mut json_bytes = 0usize;
    let mut key_bytes = 0usize;
    for i in 0..SAMPLE {
        let record = AuditRecord::seal(entry(i), 1_000_000 + i, &prev);
        prev = record.hash.clone();
        json_bytes += serde_json::to_vec(&record)?.len();
        key_bytes += "/govbroker/audit/records/".len() + 20;
        if let Some(agency) = &record.target.agency {
            key_bytes += "/govbroker/audit/by-agency/".len() + agency.len() + 1 + 20;
        }
    }
    let per_record = json_bytes as f64 / SAMPLE as f64;
    let per_keys = key_bytes as f64 / SAMPLE as f64;
    println!(
        "average record JSON: {per_record:.0} bytes; record + index keys: {per_keys:.0} bytes"
    );
    let year = 50_000.0 * 365.0;
    println!(
        "a year at 50,000 calls/day: {:.0} records, {:.2} GiB of record JSON, {:.2} GiB with keys",
        year,
        per_record * year / f64::from(1 << 30),
        (per_record + per_keys) * year / f64::from(1 << 30)
    );

    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("--etcd") {
        return Ok(());
    }
    let n: u64 = args.next().unwrap_or_else(|| "5000".into()).parse()?;
    let keep = args.next().as_deref() == Some("--keep");
    let endpoints: Vec<String> = std::env::var("GOVBROKER_LEDGER_ENDPOINTS")
        .unwrap_or_else(|_| "http://127.0.0.1:12381".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let nonce = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let prefix = format!("/govbroker-sizing-{nonce:016x}");
    let mut raw = Client::connect(&endpoints, None).await?;
    let before = raw.status().await?.raft_used_db_size();
    let log = AuditLog::connect(&endpoints, &prefix).await?;
    let started = std::time::Instant::now();
    for i in 0..n {
        log.append(entry(i)).await.context("append")?;
    }
    let elapsed = started.elapsed();
    let after = raw.status().await?.raft_used_db_size();
    if keep {
        println!("kept the records under {prefix}/");
    } else {
        raw.delete(
            format!("{prefix}/"),
            Some(DeleteOptions::new().with_prefix()),
        )
        .await?;
    }
    println!(
        "etcd: {n} appends in {elapsed:.1?} ({:.1} ms each); database in use grew {} bytes \
         ({:.0} bytes per record, before compaction)",
        elapsed.as_secs_f64() * 1000.0 / n as f64,
        after - before,
        (after - before) as f64 / n as f64
    );
    Ok(())
}
