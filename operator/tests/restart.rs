//! A restarted operator over a settled tree makes zero writes: every object keeps its
//! resourceVersion and the write counter stays at 0 while every agency is reconciled.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use govbroker_crds::{Agency, AgencyLevel, AgencySpec, Environment, Owners, ResourceAmounts};
use govbroker_e2e::{
    DEFAULT_TIMEOUT, OPERATOR_HTTP_ADDR, TestEnv, eventually, http_get, label_for_test, metric_sum,
    operator, scenario, unique_name, wait_for,
};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::de::DeserializeOwned;

const OPERATOR: &str = env!("CARGO_BIN_EXE_govbroker-operator");

fn amounts(cpu: &str, memory: &str, pods: &str) -> ResourceAmounts {
    ResourceAmounts {
        cpu: Some(Quantity(cpu.to_owned())),
        memory: Some(Quantity(memory.to_owned())),
        pods: Some(Quantity(pods.to_owned())),
        ..Default::default()
    }
}

fn agency(
    name: &str,
    level: AgencyLevel,
    parent: Option<&str>,
    quota: ResourceAmounts,
    env_cpu: Option<&str>,
) -> Agency {
    Agency::new(
        name,
        AgencySpec {
            budget: None,
            price_list: None,
            display_name: format!("Ủy ban nhân dân {name}"),
            level,
            parent: parent.map(str::to_owned),
            security_level: 2,
            owners: Owners {
                users: vec![format!("owner@{name}.gov.vn")],
                ..Default::default()
            },
            viewers: Default::default(),
            environments: env_cpu
                .map(|cpu| {
                    vec![Environment {
                        name: "prod".into(),
                        quota: ResourceAmounts {
                            cpu: Some(Quantity(cpu.into())),
                            ..Default::default()
                        },
                    }]
                })
                .unwrap_or_default(),
            quota,
        },
    )
}

/// resourceVersions of every object of kind `K` labelled with the given agencies.
async fn versions<K>(client: &Client, agencies: &[String]) -> Result<BTreeMap<String, String>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let selector = format!("govbroker.io/agency in ({})", agencies.join(","));
    let list = Api::<K>::all(client.clone())
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(list
        .items
        .iter()
        .map(|o| {
            (
                format!(
                    "{}/{}/{}",
                    K::kind(&()),
                    o.namespace().unwrap_or_default(),
                    o.name_any()
                ),
                o.resource_version().unwrap_or_default(),
            )
        })
        .collect())
}

async fn snapshot(client: &Client, agencies: &[String]) -> Result<BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    all.extend(versions::<Namespace>(client, agencies).await?);
    all.extend(versions::<ResourceQuota>(client, agencies).await?);
    all.extend(versions::<LimitRange>(client, agencies).await?);
    all.extend(versions::<NetworkPolicy>(client, agencies).await?);
    all.extend(versions::<RoleBinding>(client, agencies).await?);
    all.extend(versions::<ClusterRole>(client, agencies).await?);
    all.extend(versions::<ClusterRoleBinding>(client, agencies).await?);
    for name in agencies {
        let a = Api::<Agency>::all(client.clone()).get(name).await?;
        all.insert(
            format!("Agency/{name}"),
            a.resource_version().unwrap_or_default(),
        );
    }
    Ok(all)
}

fn writes() -> Result<f64> {
    let (_, body) = http_get(OPERATOR_HTTP_ADDR, "/metrics")?;
    Ok(metric_sum(&body, "govbroker_kube_writes_total"))
}

#[tokio::test]
async fn restarted_operator_over_a_settled_tree_writes_nothing() {
    operator(OPERATOR);
    scenario("restart", |t: TestEnv| async move {
        let root = unique_name("bo");
        let provinces = [unique_name("tinh"), unique_name("tinh")];
        let mut tree = vec![agency(
            &root,
            AgencyLevel::Central,
            None,
            amounts("20", "64Gi", "200"),
            Some("1"),
        )];
        let mut names = vec![root.clone()];
        for p in &provinces {
            tree.push(agency(
                p,
                AgencyLevel::Province,
                Some(&root),
                amounts("5", "16Gi", "50"),
                Some("1"),
            ));
            names.push(p.clone());
            let commune = unique_name("xa");
            tree.push(agency(
                &commune,
                AgencyLevel::Commune,
                Some(p),
                amounts("2", "4Gi", "10"),
                Some("1"),
            ));
            names.push(commune);
        }
        let api = Api::<Agency>::all(t.client.clone());
        for mut a in tree {
            label_for_test(&mut a, &t.namespace);
            api.create(&PostParams::default(), &a).await?;
        }
        for name in &names {
            wait_for(
                &api,
                name,
                "Ready with the latest generation and all children counted",
                DEFAULT_TIMEOUT,
                |a: Option<&Agency>| {
                    a.is_some_and(|a| {
                        let s = a.status.clone().unwrap_or_default();
                        s.observed_generation == a.metadata.generation
                            && s.conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                            && a.metadata
                                .owner_references
                                .as_ref()
                                .is_some_and(|o| !o.is_empty())
                                == a.spec.parent.is_some()
                    })
                },
            )
            .await?;
        }
        // Settled: two snapshots a moment apart agree (nothing is still being written).
        let before = eventually("the tree to settle", DEFAULT_TIMEOUT, || async {
            let first = snapshot(&t.client, &names).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let second = snapshot(&t.client, &names).await?;
            Ok((first == second).then_some(second))
        })
        .await?;
        ensure!(
            before.len() > names.len() * 8,
            "expected the agencies' objects in the snapshot, found {}",
            before.len()
        );

        t.cluster.restart_operator(OPERATOR)?;
        let total = api.list(&ListParams::default()).await?.items.len() as f64;
        eventually(
            "the restarted operator to reconcile every agency",
            Duration::from_secs(120),
            || async {
                let (_, body) = http_get(OPERATOR_HTTP_ADDR, "/metrics")?;
                let reconciled: f64 = body
                    .lines()
                    .filter(|l| l.starts_with("govbroker_reconcile_total{controller=\"agency\"}"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum();
                Ok((reconciled >= total).then_some(()))
            },
        )
        .await?;
        let written = writes()?;
        ensure!(
            written == 0.0,
            "the restarted operator made {written} writes over a settled tree"
        );
        let after = snapshot(&t.client, &names).await?;
        let changed: Vec<&String> = before
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        ensure!(
            changed.is_empty(),
            "objects rewritten after the restart: {changed:?}"
        );
        ensure!(
            after.len() == before.len(),
            "objects appeared or vanished: {} before, {} after",
            before.len(),
            after.len()
        );
        Ok(())
    })
    .await;
}
