//! Ground truth on the real control plane: scripted pods and a volume on fake nodes,
//! a collector that crashes and is replaced mid-scenario, and a bill that equals the
//! hand-computed amount to the last đồng.
//!
//! Needs the local control plane and its ledger etcd (`cargo xtask cluster up`). Run
//! under the shared lock: `flock /tmp/govbroker-cluster.lock cargo test -p
//! govbroker-metering --test ground_truth`.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use govbroker_domain::billing::{PriceSchedule, RateSet, rate_month};
use govbroker_domain::isolation::{AGENCY_LABEL, ENVIRONMENT_LABEL};
use govbroker_domain::metering::{Day, DayUsage, Meter, Month};
use govbroker_e2e::{DEFAULT_TIMEOUT, TestEnv, eventually, scenario, unique_name};
use govbroker_ledger::LedgerOptions;
use govbroker_ledger::usage::UsageLedger;
use govbroker_metering::{CollectorConfig, Metrics};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

fn endpoints() -> Vec<String> {
    std::env::var("GOVBROKER_LEDGER_ENDPOINTS")
        .unwrap_or_else(|_| govbroker_e2e::api::LEDGER_ENDPOINT.to_owned())
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn config(prefix: &str, holder: &str) -> CollectorConfig {
    CollectorConfig {
        endpoints: endpoints(),
        prefix: prefix.to_owned(),
        holder: holder.to_owned(),
        flush_interval: Duration::from_secs(1),
        lease_ttl: 3,
        ledger: LedgerOptions::default(),
        cost_interval: None,
    }
}

fn seconds(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// When the pod's first container started running, once it runs.
async fn running_since(api: &Api<Pod>, name: &str) -> Result<i64> {
    eventually(&format!("pod {name} Running"), DEFAULT_TIMEOUT, || async {
        let pod = api.get(name).await?;
        let started = pod
            .status
            .as_ref()
            .filter(|s| s.phase.as_deref() == Some("Running"))
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .map(seconds)
            .min();
        Ok(started)
    })
    .await
}

/// Deletes a pod and returns when its deletion was requested (deletionTimestamp minus
/// the grace period), as the collector reads it.
async fn delete_pod(api: &Api<Pod>, name: &str) -> Result<i64> {
    let deleted = api
        .delete(name, &DeleteParams::default().grace_period(5))
        .await?;
    let pod = deleted
        .left()
        .context("a graceful deletion returns the pod")?;
    let ts = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .context("deletionTimestamp")?;
    Ok(seconds(ts) - pod.metadata.deletion_grace_period_seconds.unwrap_or(0))
}

/// Deletes the Deployment `cong-dich-vu` and returns when deletion of its pod `name` was
/// asked for (the garbage collector asks once the ReplicaSet is gone). Deleting the pod
/// itself would let the ReplicaSet start a replacement, whose seconds the Deployment
/// would rightly be billed for. The pod is watched from before the deletion, so its
/// deletion timestamp is seen however quickly the fake node finishes it.
async fn delete_with_deployment(
    pods: &Api<Pod>,
    deployments: &Api<Deployment>,
    name: &str,
) -> Result<i64> {
    use futures::StreamExt as _;
    use kube::runtime::watcher;
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(pods.clone(), config));
    let mut deleting = false;
    tokio::time::timeout(DEFAULT_TIMEOUT, async {
        while let Some(event) = events.next().await {
            let pod = match event? {
                watcher::Event::InitDone if !deleting => {
                    deployments
                        .delete("cong-dich-vu", &DeleteParams::background())
                        .await?;
                    deleting = true;
                    continue;
                }
                watcher::Event::Apply(pod) | watcher::Event::Delete(pod) => pod,
                _ => continue,
            };
            if let Some(ts) = &pod.metadata.deletion_timestamp {
                return Ok(seconds(ts) - pod.metadata.deletion_grace_period_seconds.unwrap_or(0));
            }
        }
        anyhow::bail!("the watch of pod {name} ended")
    })
    .await
    .context("waiting for the Deployment's pod to be deleted")?
}

fn pod(name: &str, cpu: &str, memory: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.gov.vn/portal:1",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    }))?)
}

/// `round_half_up(quantity × rate / unit)` written out, for the hand computation.
fn amount(quantity: u128, rate_vnd: u128, unit: u128) -> i64 {
    let n = quantity * rate_vnd;
    ((2 * n + unit) / (2 * unit)) as i64
}

fn quantity(days: &BTreeMap<Day, DayUsage>, workload: &str, meter: &Meter, bound: bool) -> u128 {
    days.values()
        .flat_map(|d| {
            if bound {
                d.unobserved_bound.iter()
            } else {
                d.usage.iter()
            }
        })
        .filter(|e| e.workload == workload && &e.meter == meter)
        .map(|e| e.quantity.0)
        .sum()
}

async fn scratch_cleanup(prefix: String) {
    if govbroker_e2e::keep_state() {
        eprintln!("keeping ledger keys under {prefix}/");
        return;
    }
    if let Ok(mut client) = etcd_client_connect().await {
        let _ = client
            .delete(
                format!("{prefix}/"),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await;
    }
}

async fn etcd_client_connect() -> Result<etcd_client::Client> {
    Ok(etcd_client::Client::connect(endpoints(), None).await?)
}

#[tokio::test]
async fn the_bill_equals_the_hand_computed_amount_across_a_collector_crash() {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let prefix = format!("/govbroker-test-metering-{random:016x}");
    let cleanup = prefix.clone();
    scenario("metering-ground-truth", |env| async move {
        let result = ground_truth(env, &prefix).await;
        scratch_cleanup(cleanup).await;
        result
    })
    .await;
}

async fn ground_truth(env: TestEnv, prefix: &str) -> Result<()> {
    let client = env.client.clone();
    let agency = unique_name("xa-thu");
    // The test namespace becomes the agency's prod namespace.
    Api::<Namespace>::all(client.clone())
        .patch(
            &env.namespace,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                AGENCY_LABEL: agency, ENVIRONMENT_LABEL: "prod"}}})),
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &env.namespace);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &env.namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &env.namespace);

    // Collector A starts.
    let a_stop = CancellationToken::new();
    let a = tokio::spawn(govbroker_metering::run(
        client.clone(),
        config(prefix, "collector-a"),
        Metrics::new(),
        a_stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A bare pod (500m, 256Mi), a Deployment's pod (250m, 128Mi) and a 1Gi volume.
    pods.create(&PostParams::default(), &pod("le-tan", "500m", "256Mi")?)
        .await?;
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cong-dich-vu"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "cong-dich-vu"}},
            "template": {"metadata": {"labels": {"app": "cong-dich-vu"}},
                "spec": {"containers": [{"name": "app", "image": "registry.gov.vn/portal:1",
                    "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}}}]}}}
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "du-lieu"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))?;
    let pvc = pvcs.create(&PostParams::default(), &pvc).await?;
    let pvc_created = seconds(
        pvc.metadata
            .creation_timestamp
            .as_ref()
            .context("created")?,
    );

    let bare_start = running_since(&pods, "le-tan").await?;
    let deployment_pod = eventually("the deployment's pod", DEFAULT_TIMEOUT, || async {
        Ok(pods
            .list(&kube::api::ListParams::default().labels("app=cong-dich-vu"))
            .await?
            .items
            .first()
            .map(|p| p.metadata.name.clone().unwrap_or_default()))
    })
    .await?;
    let deployment_start = running_since(&pods, &deployment_pod).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Collector A crashes: no last flush, its lease runs out.
    a.abort();
    let _ = a.await;
    let ledger = UsageLedger::connect(&endpoints(), prefix, LedgerOptions::default()).await?;
    let crash_watermark = ledger
        .watermark()
        .await?
        .context("collector A wrote a watermark")?
        .watermark;
    // While nobody watches, the bare pod is deleted.
    let bare_end = delete_pod(&pods, "le-tan").await?;
    eventually("the bare pod gone", DEFAULT_TIMEOUT, || async {
        Ok(pods.get_opt("le-tan").await?.is_none().then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Collector B takes over once A's lease has expired.
    let b_started_before = now();
    let b_stop = CancellationToken::new();
    let b = tokio::spawn(govbroker_metering::run(
        client.clone(),
        config(prefix, "collector-b"),
        Metrics::new(),
        b_stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b_started_after = now();
    // Then the deployment's pod and the volume go.
    let deployment_end = delete_with_deployment(&pods, &deployments, &deployment_pod).await?;
    let deleting = pvcs.delete("du-lieu", &DeleteParams::default()).await?;
    let pvc_end = seconds(
        deleting
            .left()
            .and_then(|p| p.metadata.deletion_timestamp)
            .as_ref()
            .context("the volume is kept by its protection finalizer")?,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    b_stop.cancel();
    b.await??;
    // Let the protection finalizer go, for the namespace's deletion.
    let _ = pvcs
        .patch(
            "du-lieu",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await;

    // What the ledger holds.
    let month: Month = Day::of(bare_start).month().to_string().parse()?;
    let days = ledger.agency_month(&agency, month).await?;
    ensure!(!days.is_empty(), "no usage recorded for {agency}");
    let gib = 1u128 << 30;
    let mib = 1u128 << 20;
    let bare = "Pod/le-tan";
    let dep = "Deployment/cong-dich-vu";
    let vol = "PersistentVolumeClaim/du-lieu";
    // The deployment's pod and the volume: exact to the second across the crash.
    let dep_seconds = (deployment_end - deployment_start) as u128;
    ensure!(
        quantity(&days, dep, &Meter::Cpu, false) == 250 * dep_seconds,
        "deployment cpu: {days:#?}"
    );
    ensure!(quantity(&days, dep, &Meter::Memory, false) == 128 * mib * dep_seconds);
    let vol_seconds = (pvc_end - pvc_created) as u128;
    ensure!(
        quantity(&days, vol, &Meter::Storage, false) == gib * vol_seconds,
        "volume: {days:#?}"
    );
    // The bare pod: exact until A's last checkpoint; the rest is a recorded bound that
    // covers its real end and is no wider than the downtime.
    let counted = (crash_watermark - bare_start) as u128;
    ensure!(
        quantity(&days, bare, &Meter::Cpu, false) == 500 * counted,
        "bare pod: {days:#?}"
    );
    let bound = quantity(&days, bare, &Meter::Cpu, true) / 500;
    ensure!(
        bound as i64 >= bare_end - crash_watermark
            && bound as i64 <= b_started_after - crash_watermark
            && bound as i64 >= b_started_before - crash_watermark - 1,
        "bound of {bound} s, end {bare_end}, watermark {crash_watermark}, restart in [{b_started_before}, {b_started_after}]"
    );

    // The bill, with prices where every second is worth something: 3,600,000 ₫ per
    // vCPU-hour (1 ₫ per milli-core-second), 7,200 ₫ per GiB-hour (2 ₫ per GiB-second)
    // and 2,592,000 ₫ per GiB-month (1 ₫ per GiB-second in a 30-day month).
    let rates = RateSet {
        effective_from: "2026-01-01".parse()?,
        cpu_per_vcpu_hour: "3600000".parse()?,
        memory_per_gib_hour: "7200".parse()?,
        storage_per_gib_month: "2592000".parse()?,
        data_service_per_plan_hour: BTreeMap::new(),
    };
    let prices = PriceSchedule::new("test", 1, vec![rates])?;
    let invoice = rate_month(&agency, month, days.iter().map(|(d, u)| (*d, u)), &prices)?;
    let month_seconds = month.seconds() as u128;
    let mut expected = 0i64;
    for (q, rate, unit) in [
        (500 * counted, 3_600_000, 3_600_000u128),
        (256 * mib * counted, 7_200, gib * 3600),
        (250 * dep_seconds, 3_600_000, 3_600_000),
        (128 * mib * dep_seconds, 7_200, gib * 3600),
        (gib * vol_seconds, 2_592_000, gib * month_seconds),
    ] {
        expected += amount(q, rate, unit);
    }
    ensure!(
        invoice.total.0 == expected,
        "bill {} ≠ hand-computed {expected}: {invoice:#?}",
        invoice.total
    );
    ensure!(
        invoice.unobserved_bound.0 > 0,
        "the gap is shown on the bill"
    );
    eprintln!(
        "bill of {agency} for {month}: {} (unobserved at most {}), {} lines",
        invoice.total,
        invoice.unobserved_bound,
        invoice.lines.len()
    );
    Ok(())
}
