//! The audit trail through the API: calls are recorded with who, what and how they
//! ended, the chain verifies, and a record altered in the ledger etcd is detected.

mod support;

use anyhow::{Context as _, Result, bail};
use govbroker_api::proto;
use govbroker_e2e::api::{LEDGER_ENDPOINT, PLATFORM_ADMINS};
use govbroker_e2e::{cluster, scenario, unique_name};
use govbroker_ledger::{Actor, AuditRecord, Outcome, Target, verify_chain};
use tonic::Code;

/// Every record of the chain, page by page, as the ledger's type.
async fn whole_chain(admin: &mut support::Grpc) -> Result<Vec<AuditRecord>> {
    let mut records = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .audit
            .list_audit_records(proto::ListAuditRecordsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for r in page.records {
            records.push(AuditRecord {
                seq: r.seq,
                time: r.time.parse().context("record time")?,
                actor: Actor {
                    user: r.user,
                    groups: r.groups,
                },
                method: r.method,
                target: Target {
                    kind: r.target_kind,
                    name: r.target_name,
                    agency: (!r.agency.is_empty()).then_some(r.agency),
                },
                request_digest: r.request_digest,
                outcome: Outcome {
                    code: r.outcome,
                    message: r.message,
                },
                prev_hash: r.prev_hash,
                hash: r.hash,
            });
        }
        if page.next_page_token.is_empty() {
            return Ok(records);
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_chained_in_the_trail_and_tampering_is_detected() {
    let server = support::server();
    scenario("api-audit", |_t| async move {
        let admin_user = unique_name("admin");
        let mut admin =
            support::grpc(Some(&cluster().token(&admin_user, &[PLATFORM_ADMINS])?)).await?;
        let stranger = unique_name("stranger");
        let mut outsider = support::grpc(Some(&cluster().token(&stranger, &[])?)).await?;

        // A refused read and a refused write by a stranger, and a write that fails
        // validation by an admin: all three are recorded.
        let denied = outsider
            .agencies
            .get_agency(proto::GetAgencyRequest {
                name: "bo-tttt".into(),
            })
            .await;
        if denied.as_ref().map_err(|s| s.code()).err() != Some(Code::PermissionDenied) {
            bail!("stranger's read: {denied:?}");
        }
        let _ = outsider
            .agencies
            .delete_agency(proto::DeleteAgencyRequest {
                name: "bo-tttt".into(),
                cascade: true,
            })
            .await;
        let _ = admin
            .agencies
            .create_agency(proto::CreateAgencyRequest { agency: None })
            .await;

        let chain = whole_chain(&mut admin).await?;
        let first = admin
            .audit
            .list_audit_records(proto::ListAuditRecordsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        let last = chain.last().context("an empty chain")?;
        if first.head_seq < last.seq || (first.head_seq == last.seq && first.head_hash != last.hash)
        {
            bail!(
                "the reported head ({}, {}) is not the chain's end ({}, {})",
                first.head_seq,
                first.head_hash,
                last.seq,
                last.hash
            );
        }
        let summary = verify_chain(&chain, None)
            .map_err(|b| anyhow::anyhow!("the untouched chain does not verify: {b}"))?;
        let find = |user: &str, method: &str| {
            chain
                .iter()
                .find(|r| r.actor.user == user && r.method.ends_with(method))
                .cloned()
        };
        let read = find(&stranger, "/GetAgency").context("the refused read is not recorded")?;
        let delete =
            find(&stranger, "/DeleteAgency").context("the refused delete is not recorded")?;
        let create =
            find(&admin_user, "/CreateAgency").context("the invalid create is not recorded")?;
        if read.outcome.code != "permission_denied"
            || delete.outcome.code != "permission_denied"
            || create.outcome.code != "invalid_argument"
        {
            bail!("outcomes: {read:?}\n{delete:?}\n{create:?}");
        }
        if read.target.agency.as_deref() != Some("bo-tttt") || read.request_digest.len() != 64 {
            bail!("the record lacks its target or digest: {read:?}");
        }

        // Alter the refused delete's outcome directly in the ledger etcd.
        let key = format!("{}/audit/records/{:020}", server.ledger_prefix, delete.seq);
        let mut etcd = etcd_client::Client::connect([LEDGER_ENDPOINT], None).await?;
        let stored = etcd.get(key.as_str(), None).await?;
        let value = stored
            .kvs()
            .first()
            .context("the record's key is not where the docs say")?
            .value()
            .to_vec();
        let mut json: serde_json::Value = serde_json::from_slice(&value)?;
        json["outcome"]["code"] = "ok".into();
        etcd.put(key.as_str(), serde_json::to_vec(&json)?, None)
            .await?;

        let tampered = whole_chain(&mut admin).await?;
        match verify_chain(&tampered, None) {
            Err(broken) if broken.seq() == delete.seq => {}
            other => bail!(
                "tampering with record {} went unnoticed: {other:?} (chain of {} verified before)",
                delete.seq,
                summary.verified
            ),
        }
        Ok(())
    })
    .await;
}
