//! Agencies against the real control plane: isolated namespaces, quota, RBAC, the tree's
//! rules at admission, quota requests, cascade deletion and environment removal.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail, ensure};
use govbroker_crds::{
    Agency, AgencyLevel, AgencySpec, DecisionOutcome, Environment, Owners, QuotaDecision,
    QuotaRequest, QuotaRequestPhase, QuotaRequestSpec, ResourceAmounts,
};
use govbroker_e2e::{
    DEFAULT_TIMEOUT, TestEnv, operator, scenario, unique_name, wait_event, wait_for,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, LimitRange, Namespace, Pod, PodSpec, PodTemplateSpec, ResourceQuota,
    ResourceRequirements, SecurityContext,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use kube::{Api, ResourceExt as _};

fn start() {
    operator(env!("CARGO_BIN_EXE_govbroker-operator"));
}

fn q(v: &str) -> Option<Quantity> {
    Some(Quantity(v.to_owned()))
}

fn amounts(cpu: &str, memory: &str, pods: &str) -> ResourceAmounts {
    ResourceAmounts {
        cpu: q(cpu),
        memory: q(memory),
        pods: q(pods),
        ..Default::default()
    }
}

fn agency(
    name: &str,
    level: AgencyLevel,
    parent: Option<&str>,
    security: u8,
    quota: ResourceAmounts,
) -> Agency {
    Agency::new(
        name,
        AgencySpec {
            budget: None,
            price_list: None,
            display_name: format!("Cơ quan {name}"),
            level,
            parent: parent.map(str::to_owned),
            security_level: security,
            owners: Owners::default(),
            viewers: Default::default(),
            environments: Vec::new(),
            quota,
        },
    )
}

fn env(name: &str, quota: ResourceAmounts) -> Environment {
    Environment {
        name: name.to_owned(),
        quota,
    }
}

fn owned_by(mut a: Agency, user: &str) -> Agency {
    a.spec.owners.users = vec![user.to_owned()];
    a
}

/// Creates the agencies in order (parents first) and deletes the root's subtree at the
/// end of the test through the cascade annotation.
struct Tree {
    api: Api<Agency>,
    root: String,
}

impl Tree {
    async fn create(t: &TestEnv, agencies: Vec<Agency>) -> Result<Tree> {
        let api = Api::<Agency>::all(t.client.clone());
        let root = agencies.first().context("no agency")?.name_any();
        for mut a in agencies {
            govbroker_e2e::label_for_test(&mut a, &t.namespace);
            api.create(&PostParams::default(), &a)
                .await
                .with_context(|| format!("creating agency {}", a.name_any()))?;
        }
        Ok(Tree { api, root })
    }

    async fn ready(&self, name: &str) -> Result<Agency> {
        wait_for(
            &self.api,
            name,
            "the agency to be Ready",
            DEFAULT_TIMEOUT,
            |a: Option<&Agency>| {
                a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                        && s.observed_generation == a.and_then(|a| a.metadata.generation)
                })
            },
        )
        .await?
        .context("agency vanished")
    }

    async fn cleanup(self) -> Result<()> {
        if govbroker_e2e::keep_state() {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {"annotations": {"govbroker.io/cascade-delete": "true"}}});
        self.api
            .patch(&self.root, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.api
            .delete(&self.root, &DeleteParams::foreground())
            .await?;
        Ok(())
    }
}

fn denied(result: Result<impl std::fmt::Debug, kube::Error>, fragment: &str) -> Result<()> {
    match result {
        Err(kube::Error::Api(s)) => {
            ensure!(
                s.message.contains(fragment),
                "refused, but the message lacks {fragment:?}:\n{}",
                s.message
            );
            Ok(())
        }
        other => bail!("expected a refusal containing {fragment:?}, got {other:?}"),
    }
}

fn pod(name: &str, cpu: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.gov.example/app:1".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "cpu".to_owned(),
                        Quantity(cpu.to_owned()),
                    )])),
                    ..Default::default()
                }),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    run_as_non_root: Some(true),
                    run_as_user: Some(10001),
                    capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Default::default()
                    }),
                    seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn agency_becomes_isolated_namespaces_with_quota_and_vietnamese_names() {
    start();
    scenario("agency-ns", |t: TestEnv| async move {
        let root = unique_name("bo");
        let child = unique_name("so");
        let display = "Sở Thông tin và Truyền thông Đà Nẵng — Phường Hải Châu 1";
        let mut province = owned_by(agency(&child, AgencyLevel::Province, Some(&root), 3, amounts("4", "8Gi", "20")), "alice@danang.gov.vn");
        province.spec.display_name = display.to_owned();
        province.spec.environments = vec![env("prod", amounts("1.5", "2Gi", "5")), env("staging", amounts("500m", "1Gi", "5"))];
        let tree = Tree::create(&t, vec![agency(&root, AgencyLevel::Central, None, 4, amounts("10", "32Gi", "100")), province]).await?;
        let ready = tree.ready(&child).await?;
        ensure!(ready.spec.display_name == display, "display name did not round-trip: {}", ready.spec.display_name);
        let status = ready.status.clone().context("no status")?;
        let prod = format!("{child}-prod");
        ensure!(status.namespaces == vec![prod.clone(), format!("{child}-staging")], "namespaces {:?}", status.namespaces);
        ensure!(status.cpu.as_deref() == Some("0/4"), "cpu column {:?}", status.cpu);

        let ns = Api::<Namespace>::all(t.client.clone()).get(&prod).await?;
        let labels = ns.labels();
        ensure!(labels.get("pod-security.kubernetes.io/enforce").map(String::as_str) == Some("restricted"), "labels {labels:?}");
        ensure!(labels.get("govbroker.io/agency") == Some(&child) && labels.get("govbroker.io/parent") == Some(&root), "labels {labels:?}");
        ensure!(labels.get(&format!("ancestor.govbroker.io/{root}")).map(String::as_str) == Some("true"), "labels {labels:?}");
        ensure!(ns.annotations().get("govbroker.io/display-name").map(String::as_str) == Some(display), "annotations {:?}", ns.annotations());

        let quota = Api::<ResourceQuota>::namespaced(t.client.clone(), &prod).get("govbroker-quota").await?;
        let hard = quota.spec.and_then(|s| s.hard).unwrap_or_default();
        ensure!(hard.get("requests.cpu") == Some(&Quantity("1500m".into())) && hard.get("pods") == Some(&Quantity("5".into())), "hard {hard:?}");
        ensure!(Api::<LimitRange>::namespaced(t.client.clone(), &prod).get_opt("govbroker-defaults").await?.is_some(), "no LimitRange");
        let policies = Api::<NetworkPolicy>::namespaced(t.client.clone(), &prod).list(&ListParams::default()).await?;
        ensure!(policies.items.len() == 3, "level 3 gets deny, same-agency and egress policies; found {}", policies.items.len());
        let bindings = Api::<RoleBinding>::namespaced(t.client.clone(), &prod).list(&ListParams::default()).await?;
        ensure!(bindings.items.iter().any(|b| b.name_any() == "govbroker-owners"), "no owners binding");

        // Pod Security at level 3: a privileged pod is refused.
        let mut privileged = pod("privileged", "100m");
        if let Some(c) = privileged.spec.as_mut().map(|s| &mut s.containers[0]) {
            c.security_context = Some(SecurityContext { privileged: Some(true), ..Default::default() });
        }
        let pods = Api::<Pod>::namespaced(t.client.clone(), &prod);
        denied(pods.create(&PostParams::default(), &privileged).await, "violates PodSecurity \"restricted:latest\"")?;
        // Quota: a pod over the environment's cpu is refused by the real ResourceQuota admission.
        denied(pods.create(&PostParams::default(), &pod("too-big", "2")).await, "exceeded quota: govbroker-quota")?;
        pods.create(&PostParams::default(), &pod("fits", "1")).await?;
        wait_for(&tree.api, &child, "the agency status to count the pod's cpu", DEFAULT_TIMEOUT, |a: Option<&Agency>| {
            a.and_then(|a| a.status.as_ref()).and_then(|s| s.cpu.as_deref()) == Some("1/4")
        })
        .await?;

        // Removing an environment removes its namespace.
        let staging = format!("{child}-staging");
        let uid = Api::<Namespace>::all(t.client.clone()).get(&staging).await?.uid().context("uid")?;
        let patch = serde_json::json!({"spec": {"environments": [{"name": "prod", "quota": {"cpu": "1.5", "memory": "2Gi", "pods": "5"}}]}});
        tree.api.patch(&child, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        wait_for(&Api::<Namespace>::all(t.client.clone()), &staging, "the staging namespace to go", DEFAULT_TIMEOUT, conditions::is_deleted(&uid)).await?;
        tree.cleanup().await
    })
    .await;
}

/// New objects are created with a plain POST (cheaper for the API server than an apply);
/// a later change must still remove what the spec no longer asks for, as an apply does.
#[tokio::test]
async fn a_changed_spec_removes_from_created_objects_what_it_no_longer_asks_for() {
    start();
    scenario("agency-change", |t: TestEnv| async move {
        let root = unique_name("bo");
        let mut quota = amounts("1", "1Gi", "5");
        quota.ephemeral_storage = q("2Gi");
        let mut ministry = agency(&root, AgencyLevel::Central, None, 2, amounts("4", "8Gi", "20"));
        ministry.spec.quota.ephemeral_storage = q("4Gi");
        ministry.spec.environments = vec![env("prod", quota)];
        let tree = Tree::create(&t, vec![ministry]).await?;
        tree.ready(&root).await?;
        let quotas = Api::<ResourceQuota>::namespaced(t.client.clone(), &format!("{root}-prod"));
        let hard = |q: &ResourceQuota| q.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
        let created = quotas.get("govbroker-quota").await?;
        ensure!(hard(&created).contains_key("requests.ephemeral-storage"), "hard {:?}", hard(&created));

        let patch = serde_json::json!({"spec": {"environments": [{"name": "prod", "quota": {"cpu": "1", "memory": "1Gi", "pods": "5"}}]}});
        tree.api.patch(&root, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let changed = wait_for(&quotas, "govbroker-quota", "the quota to drop ephemeral storage", DEFAULT_TIMEOUT, |q: Option<&ResourceQuota>| {
            q.is_some_and(|q| !hard(q).contains_key("requests.ephemeral-storage"))
        })
        .await?
        .context("the quota vanished")?;
        ensure!(hard(&changed).get("requests.cpu") == Some(&Quantity("1".into())), "hard {:?}", hard(&changed));
        // The controller's fields are all under its one Apply entry now.
        let ours: Vec<_> = changed
            .managed_fields()
            .iter()
            .filter(|e| e.manager.as_deref() == Some("govbroker-agency"))
            .map(|e| e.operation.clone().unwrap_or_default())
            .collect();
        ensure!(ours == ["Apply"], "the controller's managed-field entries: {ours:?}");
        tree.cleanup().await
    })
    .await;
}

#[tokio::test]
async fn owners_administer_their_agency_and_see_nothing_of_others() {
    start();
    scenario("agency-rbac", |t: TestEnv| async move {
        let root = unique_name("bo");
        let a = unique_name("tinh-a");
        let b = unique_name("tinh-b");
        let mut root_agency = owned_by(
            agency(
                &root,
                AgencyLevel::Central,
                None,
                2,
                amounts("10", "32Gi", "100"),
            ),
            "minister@gov.vn",
        );
        root_agency.spec.owners.groups = vec!["ministry-it".to_owned()];
        let mut agency_a = owned_by(
            agency(
                &a,
                AgencyLevel::Province,
                Some(&root),
                2,
                amounts("2", "4Gi", "10"),
            ),
            "alice@a.gov.vn",
        );
        agency_a.spec.environments = vec![env("prod", amounts("2", "4Gi", "10"))];
        let mut agency_b = owned_by(
            agency(
                &b,
                AgencyLevel::Province,
                Some(&root),
                2,
                amounts("2", "4Gi", "10"),
            ),
            "bob@b.gov.vn",
        );
        agency_b.spec.environments = vec![env("prod", amounts("2", "4Gi", "10"))];
        let tree = Tree::create(&t, vec![root_agency, agency_a, agency_b]).await?;
        tree.ready(&a).await?;
        tree.ready(&b).await?;
        let (ns_a, ns_b) = (format!("{a}-prod"), format!("{b}-prod"));

        let alice = t.cluster.client_as("alice@a.gov.vn", &[]).await?;
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some("portal".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "portal".into())])),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "portal".into())])),
                        ..Default::default()
                    }),
                    spec: pod("x", "100m").spec,
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        // RBAC bindings reach the authorizer through its informer: retry until they do.
        govbroker_e2e::eventually(
            "alice's admin binding to take effect",
            DEFAULT_TIMEOUT,
            || async {
                match Api::<Deployment>::namespaced(alice.clone(), &ns_a)
                    .create(&PostParams::default(), &deployment)
                    .await
                {
                    Ok(_) => Ok(Some(())),
                    Err(kube::Error::Api(s)) if s.code == 403 => Ok(None),
                    Err(e) => Err(e.into()),
                }
            },
        )
        .await?;
        denied(
            Api::<Pod>::namespaced(alice.clone(), &ns_b)
                .list(&ListParams::default())
                .await,
            "forbidden",
        )?;
        denied(Api::<Agency>::all(alice.clone()).get(&b).await, "forbidden")?;
        let own = Api::<Agency>::all(alice.clone()).get(&a).await?;
        ensure!(own.name_any() == a, "alice reads her agency");

        // The parent's owners (here through a group) read, but do not change, a child's namespace.
        let minister = t
            .cluster
            .client_as("someone@gov.vn", &["ministry-it"])
            .await?;
        govbroker_e2e::eventually(
            "the ancestor view binding to take effect",
            DEFAULT_TIMEOUT,
            || async {
                Ok(Api::<Pod>::namespaced(minister.clone(), &ns_a)
                    .list(&ListParams::default())
                    .await
                    .ok()
                    .map(|_| ()))
            },
        )
        .await?;
        denied(
            Api::<Pod>::namespaced(minister.clone(), &ns_a)
                .create(&PostParams::default(), &pod("p", "100m"))
                .await,
            "forbidden",
        )?;
        Api::<Agency>::all(minister.clone())
            .get(&b)
            .await
            .context("an ancestor owner reads the child agency")?;
        tree.cleanup().await
    })
    .await;
}

#[tokio::test]
async fn the_webhook_refuses_bad_trees_with_clear_messages() {
    start();
    scenario("agency-webhook", |t: TestEnv| async move {
        let root = unique_name("bo");
        let province = unique_name("tinh");
        let mut p = agency(&province, AgencyLevel::Province, Some(&root), 3, amounts("2", "4Gi", "20"));
        p.spec.environments = vec![env("prod", amounts("1.5", "2Gi", "10"))];
        let tree = Tree::create(&t, vec![agency(&root, AgencyLevel::Central, None, 3, amounts("4", "8Gi", "40")), p]).await?;
        tree.ready(&province).await?;
        let api = tree.api.clone();
        let create = |a: Agency| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &a).await }
        };

        denied(create(agency(&unique_name("xa"), AgencyLevel::Commune, Some("no-such-agency"), 1, ResourceAmounts::default())).await, "does not exist")?;
        denied(create(agency(&unique_name("xa"), AgencyLevel::Commune, Some(&root), 1, ResourceAmounts::default())).await, "Commune")?;
        denied(create(agency(&unique_name("xa"), AgencyLevel::Commune, Some(&province), 4, ResourceAmounts::default())).await, "security level")?;
        // The province holds 2 cpu, 1.5 of it in its environment: 500m is left.
        denied(create(agency(&unique_name("xa"), AgencyLevel::Commune, Some(&province), 1, amounts("600m", "1Gi", "1"))).await, "500m")?;
        let commune = unique_name("xa");
        create(agency(&commune, AgencyLevel::Commune, Some(&province), 1, amounts("500m", "1Gi", "1"))).await?;
        // Siblings applied back to back (as from one file) are counted against each other
        // before any cache has seen the first: the second no longer fits.
        let district = unique_name("huyen");
        let mut d = agency(&district, AgencyLevel::Province, Some(&root), 2, amounts("1", "2Gi", "4"));
        govbroker_e2e::label_for_test(&mut d, &t.namespace);
        create(d).await?;
        create(agency(&unique_name("xa"), AgencyLevel::Commune, Some(&district), 1, amounts("600m", "1Gi", "1"))).await?;
        denied(create(agency(&unique_name("xa"), AgencyLevel::Commune, Some(&district), 1, amounts("600m", "1Gi", "1"))).await, "400m")?;
        // A CEL rule: a Central agency names no parent.
        denied(create(agency(&unique_name("bo"), AgencyLevel::Central, Some(&root), 1, ResourceAmounts::default())).await, "a Central agency has no parent")?;
        // Shrinking the province below what it granted is refused.
        let shrink = serde_json::json!({"spec": {"quota": {"cpu": "1"}}});
        denied(api.patch(&province, &PatchParams::default(), &Patch::Merge(&shrink)).await, "cpu")?;
        // A cycle: the root cannot move under its own descendant (and Central has no parent).
        let cycle = serde_json::json!({"spec": {"level": "Province", "parent": commune}});
        denied(api.patch(&root, &PatchParams::default(), &Patch::Merge(&cycle)).await, "")?;
        // Deleting an agency with children needs the cascade annotation.
        denied(api.delete(&province, &DeleteParams::default()).await, "govbroker.io/cascade-delete")?;
        ensure!(api.get_opt(&province).await?.is_some(), "the refused delete removed the agency");

        // With the annotation the whole subtree goes, namespaces included.
        let prod = format!("{province}-prod");
        let ns_uid = Api::<Namespace>::all(t.client.clone()).get(&prod).await?.uid().context("uid")?;
        let annotate = serde_json::json!({"metadata": {"annotations": {"govbroker.io/cascade-delete": "true"}}});
        api.patch(&province, &PatchParams::default(), &Patch::Merge(&annotate)).await?;
        api.delete(&province, &DeleteParams::foreground()).await?;
        let commune_uid = api.get(&commune).await?.uid().context("uid")?;
        wait_for(&api, &commune, "the commune to go with its province", DEFAULT_TIMEOUT, conditions::is_deleted(&commune_uid)).await?;
        wait_for(&Api::<Namespace>::all(t.client.clone()), &prod, "the province's namespace to go", DEFAULT_TIMEOUT, conditions::is_deleted(&ns_uid)).await?;
        let roles = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(t.client.clone());
        let role = format!("govbroker:agency:{province}:reader");
        if let Some(r) = roles.get_opt(&role).await? {
            let uid = r.uid().context("uid")?;
            wait_for(&roles, &role, "the province's ClusterRole to go", DEFAULT_TIMEOUT, conditions::is_deleted(&uid)).await?;
        }
        tree.cleanup().await
    })
    .await;
}

fn quota_request(name: &str, agency: &str, cpu: &str) -> QuotaRequest {
    QuotaRequest::new(
        name,
        QuotaRequestSpec {
            agency: agency.to_owned(),
            quota: ResourceAmounts {
                cpu: q(cpu),
                ..Default::default()
            },
            justification: "Cổng dịch vụ công cần thêm CPU cho mùa nộp thuế".to_owned(),
            decision: None,
        },
    )
}

fn decide(outcome: DecisionOutcome, reason: &str) -> serde_json::Value {
    serde_json::json!({"spec": {"decision": QuotaDecision { outcome, reason: reason.to_owned(), decided_by: Some("forged".into()), decided_at: None }}})
}

#[tokio::test]
async fn quota_requests_are_decided_by_the_parents_owners_only() {
    start();
    scenario("quota-request", |t: TestEnv| async move {
        let root = unique_name("bo");
        let province = unique_name("tinh");
        let tree = Tree::create(
            &t,
            vec![
                owned_by(
                    agency(
                        &root,
                        AgencyLevel::Central,
                        None,
                        2,
                        amounts("8", "16Gi", "50"),
                    ),
                    "minister@gov.vn",
                ),
                owned_by(
                    agency(
                        &province,
                        AgencyLevel::Province,
                        Some(&root),
                        2,
                        amounts("2", "4Gi", "10"),
                    ),
                    "alice@tinh.gov.vn",
                ),
            ],
        )
        .await?;
        tree.ready(&province).await?;
        let alice = t.cluster.client_as("alice@tinh.gov.vn", &[]).await?;
        let minister = t.cluster.client_as("minister@gov.vn", &[]).await?;
        let stranger = t.cluster.client_as("mallory@elsewhere.gov.vn", &[]).await?;

        // The province's owner asks (her RBAC comes from the operator: wait for it).
        let ask = unique_name("qr");
        govbroker_e2e::eventually(
            "alice may create quota requests",
            DEFAULT_TIMEOUT,
            || async {
                match Api::<QuotaRequest>::all(alice.clone())
                    .create(&PostParams::default(), &quota_request(&ask, &province, "4"))
                    .await
                {
                    Ok(_) => Ok(Some(())),
                    Err(kube::Error::Api(s))
                        if s.code == 403
                            && s.message.contains("forbidden")
                            && !s.message.contains("admission") =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            },
        )
        .await?;
        // Someone who owns nothing cannot ask for the province.
        denied(
            Api::<QuotaRequest>::all(t.client.clone())
                .create(
                    &PostParams::default(),
                    &quota_request(&unique_name("qr"), "no-such-agency", "1"),
                )
                .await,
            "does not exist",
        )?;

        let as_alice = Api::<QuotaRequest>::all(alice.clone());
        denied(
            as_alice
                .patch(
                    &ask,
                    &PatchParams::default(),
                    &Patch::Merge(decide(DecisionOutcome::Approved, "tự duyệt")),
                )
                .await,
            "only owners of",
        )?;
        let as_stranger = Api::<QuotaRequest>::all(stranger.clone());
        denied(
            as_stranger
                .patch(
                    &ask,
                    &PatchParams::default(),
                    &Patch::Merge(decide(DecisionOutcome::Approved, "")),
                )
                .await,
            "",
        )?;

        let as_minister = Api::<QuotaRequest>::all(minister.clone());
        govbroker_e2e::eventually("the minister may decide", DEFAULT_TIMEOUT, || async {
            match as_minister
                .patch(
                    &ask,
                    &PatchParams::default(),
                    &Patch::Merge(decide(DecisionOutcome::Approved, "đồng ý")),
                )
                .await
            {
                Ok(_) => Ok(Some(())),
                Err(kube::Error::Api(s)) if s.code == 403 && !s.message.contains("admission") => {
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        let admin_qrs = Api::<QuotaRequest>::all(t.client.clone());
        let approved = wait_for(
            &admin_qrs,
            &ask,
            "the approval to be applied",
            DEFAULT_TIMEOUT,
            |r: Option<&QuotaRequest>| {
                r.and_then(|r| r.status.as_ref()).and_then(|s| s.phase)
                    == Some(QuotaRequestPhase::Approved)
            },
        )
        .await?
        .context("request vanished")?;
        let status = approved.status.context("no status")?;
        ensure!(
            status.decided_by.as_deref() == Some("minister@gov.vn"),
            "decidedBy {:?} (a forged value must be replaced)",
            status.decided_by
        );
        ensure!(status.decided_at.is_some(), "no decision time");
        // The decision is an Event on the request and on the agency (both cluster-scoped,
        // so their Events are in `default`).
        wait_event(&t, "default", "QuotaRequest", &ask, "QuotaApproved").await?;
        wait_event(&t, "default", "Agency", &province, "QuotaApproved").await?;
        let updated = tree.api.get(&province).await?;
        ensure!(
            updated.spec.quota.cpu == q("4"),
            "the province's cpu quota is {:?}",
            updated.spec.quota.cpu
        );

        // No room left in the ministry: approval refused at admission, nothing changes.
        let greedy = unique_name("qr");
        as_alice
            .create(
                &PostParams::default(),
                &quota_request(&greedy, &province, "100"),
            )
            .await?;
        denied(
            as_minister
                .patch(
                    &greedy,
                    &PatchParams::default(),
                    &Patch::Merge(decide(DecisionOutcome::Approved, "")),
                )
                .await,
            "cannot approve",
        )?;
        // Rejection with a reason.
        as_minister
            .patch(
                &greedy,
                &PatchParams::default(),
                &Patch::Merge(decide(DecisionOutcome::Rejected, "vượt ngân sách")),
            )
            .await?;
        wait_for(
            &admin_qrs,
            &greedy,
            "the rejection to be recorded",
            DEFAULT_TIMEOUT,
            |r: Option<&QuotaRequest>| {
                r.and_then(|r| r.status.as_ref()).and_then(|s| s.phase)
                    == Some(QuotaRequestPhase::Rejected)
            },
        )
        .await?;
        ensure!(
            tree.api.get(&province).await?.spec.quota.cpu == q("4"),
            "a rejected request changed the quota"
        );
        for name in [&ask, &greedy] {
            let _ = admin_qrs.delete(name, &DeleteParams::default()).await;
        }
        tree.cleanup().await
    })
    .await;
}
