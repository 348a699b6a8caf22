//! The PriceList's rules, enforced by the real API server: revisions are append-only,
//! unique, say from which day they are in force, and their rates are well-formed.
//!
//! Run under the shared lock: `flock /tmp/govbroker-cluster.lock cargo test -p
//! govbroker-metering --test price_list`.

use anyhow::{Result, ensure};
use govbroker_crds::PriceList;
use govbroker_e2e::{cluster, unique_name};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

fn refused(result: Result<PriceList, kube::Error>, words: &str) -> Result<()> {
    match result {
        Err(kube::Error::Api(status)) => {
            ensure!(status.code == 422, "{status:?}");
            ensure!(status.message.contains(words), "{}", status.message);
            Ok(())
        }
        other => anyhow::bail!("expected a refusal mentioning {words:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn price_list_revisions_are_append_only() -> Result<()> {
    let cluster = cluster();
    cluster.install_crds()?;
    let client = cluster.admin().await?;
    let lists = Api::<PriceList>::all(client);
    let name = unique_name("gia-thu");
    let rates = |from: &str, cpu: &str| {
        serde_json::json!({"effectiveFrom": from,
        "cpuPerVcpuHour": cpu, "memoryPerGibHour": "96", "storagePerGibMonth": "2976"})
    };
    let pl: PriceList = serde_json::from_value(serde_json::json!({
        "apiVersion": "govbroker.io/v1alpha1", "kind": "PriceList",
        "metadata": {"name": name},
        "spec": {"revisions": [{"revision": 1, "reason": "Quyết định 1",
            "rates": [rates("2026-01-01", "720")]}]}
    }))?;
    lists.create(&PostParams::default(), &pl).await?;
    let result = async {
        let json = |patch: serde_json::Value| Patch::<PriceList>::Json(serde_json::from_value(patch).unwrap());
        let params = PatchParams::default();
        // Changing a revision in place is refused.
        refused(
            lists
                .patch(&name, &params, &json(serde_json::json!([{"op": "replace",
                    "path": "/spec/revisions/0/rates/0/cpuPerVcpuHour", "value": "1"}])))
                .await,
            "cannot be changed once created",
        )?;
        // Removing one too.
        refused(
            lists
                .patch(&name, &params, &json(serde_json::json!([{"op": "add",
                    "path": "/spec/revisions/-", "value": {"revision": 2, "reason": "x", "adoptedOn": "2026-11-10",
                    "rates": [rates("2026-01-01", "720")]}}, {"op": "remove", "path": "/spec/revisions/0"}])))
                .await,
            "cannot be removed",
        )?;
        // A new revision must say from which day it is in force (so the bills of
        // months that ended before it keep theirs).
        refused(
            lists
                .patch(&name, &params, &json(serde_json::json!([{"op": "add",
                    "path": "/spec/revisions/-", "value": {"revision": 2, "reason": "Giá mới từ 16/11",
                    "rates": [rates("2026-01-01", "720"), rates("2026-11-16", "800")]}}])))
                .await,
            "needs adoptedOn",
        )?;
        // A price change is a new revision: accepted.
        lists
            .patch(&name, &params, &json(serde_json::json!([{"op": "add",
                "path": "/spec/revisions/-", "value": {"revision": 2, "reason": "Giá mới từ 16/11",
                "adoptedOn": "2026-11-10",
                "rates": [rates("2026-01-01", "720"), rates("2026-11-16", "800")]}}])))
            .await?;
        // The same revision number twice, a date twice, a malformed price: refused.
        let dup = lists
            .patch(&name, &params, &json(serde_json::json!([{"op": "add",
                "path": "/spec/revisions/-", "value": {"revision": 2, "reason": "x",
                "rates": [rates("2026-01-01", "1")]}}])))
            .await;
        ensure!(dup.is_err(), "a duplicate revision number was accepted");
        let dup_date = lists
            .patch(&name, &params, &json(serde_json::json!([{"op": "add",
                "path": "/spec/revisions/-", "value": {"revision": 3, "reason": "x",
                "rates": [rates("2026-01-01", "1"), rates("2026-01-01", "2")]}}])))
            .await;
        ensure!(dup_date.is_err(), "a duplicate effectiveFrom was accepted");
        let bad = lists
            .patch(&name, &params, &json(serde_json::json!([{"op": "add",
                "path": "/spec/revisions/-", "value": {"revision": 3, "reason": "x",
                "rates": [rates("2026-01-01", "1,5")]}}])))
            .await;
        ensure!(bad.is_err(), "a price with a comma was accepted");
        let stored = lists.get(&name).await?;
        ensure!(stored.spec.revisions.len() == 2);
        ensure!(stored.spec.latest().map(|r| r.revision) == Some(2));
        ensure!(stored.spec.revisions[1].adopted_on.as_deref() == Some("2026-11-10"));
        anyhow::Ok(())
    }
    .await;
    let _ = lists.delete(&name, &DeleteParams::default()).await;
    result
}
