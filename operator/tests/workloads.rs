//! Workloads against the real control plane with fake nodes: rendered into a Deployment,
//! a Service and a PodDisruptionBudget that reach Available with Running pods, scaled
//! within quota, refused with the exact remainder beyond it, hardened for a restricted
//! level, given their data-service bindings, deleted with everything they made, and
//! refused at admission when their image or resources are wrong; a rotated password
//! replaces the pods that inject it; transitions are recorded as Events.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail, ensure};
use govbroker_crds::{
    ClaimBinding, ClaimPhase, CpuMemory, DataServiceClaim, InjectAs, ROTATE_PASSWORD_ANNOTATION,
    Workload, WorkloadPhase, WorkloadPort, WorkloadSpec,
};
use govbroker_domain::data_services::instance_names;
use govbroker_domain::workload::BINDINGS_DIGEST_ANNOTATION;
use govbroker_e2e::data_services::{agency_for_claims, delete_local_class, local_class};
use govbroker_e2e::{
    DEFAULT_TIMEOUT, TestEnv, create_agency, eventually, operator, scenario, unique_name,
    wait_agency_ready, wait_event, wait_for,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use kube::{Api, ResourceExt as _};

fn start() {
    operator(env!("CARGO_BIN_EXE_govbroker-operator"));
}

fn q(v: &str) -> Option<Quantity> {
    Some(Quantity(v.to_owned()))
}

/// A Central agency of `security` level with one `prod` environment of the given quota;
/// returns its prod namespace once the agency is Ready.
async fn agency(t: &TestEnv, security: u8, cpu: &str, memory: &str, pods: &str) -> Result<String> {
    let name = unique_name("bo-wl");
    let quota = serde_json::json!({"cpu": cpu, "memory": memory, "pods": pods, "services": "3"});
    create_agency(
        t,
        &name,
        serde_json::json!({
            "displayName": format!("Bộ thử nghiệm {name}"),
            "level": "Central",
            "securityLevel": security,
            "environments": [{"name": "prod", "quota": quota}],
            "quota": quota,
        }),
    )
    .await?;
    wait_agency_ready(t, &name).await?;
    Ok(format!("{name}-prod"))
}

fn workload(name: &str, image: &str, replicas: i32, cpu: &str) -> Workload {
    Workload::new(
        name,
        WorkloadSpec {
            image: image.to_owned(),
            replicas,
            command: Vec::new(),
            args: Vec::new(),
            resources: govbroker_crds::WorkloadResources {
                requests: CpuMemory {
                    cpu: q(cpu),
                    memory: q("256Mi"),
                },
                limits: CpuMemory::default(),
            },
            ports: vec![WorkloadPort {
                name: "http".into(),
                port: 8080,
                protocol: Default::default(),
            }],
            env: vec![govbroker_crds::WorkloadEnvVar {
                name: "LOG_LEVEL".into(),
                value: "info".into(),
            }],
            claims: Vec::new(),
            health_path: None,
            paused: false,
        },
    )
}

async fn phase(
    api: &Api<Workload>,
    name: &str,
    want: WorkloadPhase,
    replicas: i32,
) -> Result<Workload> {
    wait_for(
        api,
        name,
        &format!("phase {want:?} with {replicas} replica(s)"),
        DEFAULT_TIMEOUT,
        move |w: Option<&Workload>| {
            w.is_some_and(|w| {
                let s = w.status.clone().unwrap_or_default();
                s.phase == Some(want)
                    && s.observed_generation == w.metadata.generation
                    && (want != WorkloadPhase::Available || s.available_replicas == replicas)
            })
        },
    )
    .await?
    .context("the workload vanished")
}

async fn running_pods(t: &TestEnv, namespace: &str, name: &str) -> Result<Vec<Pod>> {
    let pods = Api::<Pod>::namespaced(t.client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("govbroker.io/workload={name}")))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect())
}

/// Waits until an Event with `reason` is recorded on the workload `name`; returns its note.
async fn event(t: &TestEnv, namespace: &str, name: &str, reason: &str) -> Result<String> {
    wait_event(t, namespace, "Workload", name, reason).await
}

async fn scale(api: &Api<Workload>, name: &str, replicas: i32) -> Result<()> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
    )
    .await
    .with_context(|| format!("scaling to {replicas}"))?;
    Ok(())
}

#[tokio::test]
async fn a_workload_runs_scales_within_quota_reports_the_remainder_and_is_deleted() {
    start();
    scenario("workload-life", |t: TestEnv| async move {
        let ns = agency(&t, 2, "1", "4Gi", "10").await?;
        let api = Api::<Workload>::namespaced(t.client.clone(), &ns);
        api.create(
            &PostParams::default(),
            &workload(
                "cong-dich-vu",
                "registry.gov.vn/so-tttt/cong-dich-vu:1.0",
                2,
                "200m",
            ),
        )
        .await?;
        phase(&api, "cong-dich-vu", WorkloadPhase::Available, 2).await?;
        ensure!(
            running_pods(&t, &ns, "cong-dich-vu").await?.len() == 2,
            "two Running pods"
        );
        let note = event(&t, &ns, "cong-dich-vu", "Available").await?;
        ensure!(note == "2/2 replicas available", "Available note: {note}");
        let deployment = Api::<Deployment>::namespaced(t.client.clone(), &ns)
            .get("cong-dich-vu")
            .await?;
        ensure!(
            deployment
                .owner_references()
                .iter()
                .any(|o| o.kind == "Workload" && o.controller == Some(true)),
            "the Deployment is owned by the Workload"
        );
        Api::<Service>::namespaced(t.client.clone(), &ns)
            .get("cong-dich-vu")
            .await
            .context("the Service")?;
        Api::<PodDisruptionBudget>::namespaced(t.client.clone(), &ns)
            .get("cong-dich-vu")
            .await
            .context("the PodDisruptionBudget")?;

        // Within quota: 4 x 200m = 800m of 1.
        scale(&api, "cong-dich-vu", 4).await?;
        phase(&api, "cong-dich-vu", WorkloadPhase::Available, 4).await?;
        ensure!(
            running_pods(&t, &ns, "cong-dich-vu").await?.len() == 4,
            "four Running pods"
        );
        let note = event(&t, &ns, "cong-dich-vu", "Scaled").await?;
        ensure!(
            note == "scaled from 2 to 4 replica(s)",
            "Scaled note: {note}"
        );

        // Beyond: 6 x 200m = 1200m, and exactly 1 (the whole quota) is left for it.
        scale(&api, "cong-dich-vu", 6).await?;
        let refused = phase(&api, "cong-dich-vu", WorkloadPhase::QuotaExceeded, 6).await?;
        let status = refused.status.clone().unwrap_or_default();
        let message = status.message.clone().unwrap_or_default();
        ensure!(
            message.contains("cpu 1200m needed, 1 left")
                && message.contains("At most 5 replica(s) fit"),
            "message: {message}"
        );
        ensure!(
            status.quota_remaining.get("cpu") == Some(&Quantity("1".into())),
            "remaining {:?}",
            status.quota_remaining
        );
        ensure!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "QuotaExceeded" && c.status == "True"),
            "conditions {:?}",
            status.conditions
        );
        let note = event(&t, &ns, "cong-dich-vu", "QuotaExceeded").await?;
        ensure!(
            note.contains("cpu 1200m needed, 1 left"),
            "QuotaExceeded note: {note}"
        );
        let deployment = Api::<Deployment>::namespaced(t.client.clone(), &ns)
            .get("cong-dich-vu")
            .await?;
        ensure!(
            deployment.spec.and_then(|s| s.replicas) == Some(4),
            "the Deployment was left at 4 replicas"
        );

        // Exactly the remainder fits.
        scale(&api, "cong-dich-vu", 5).await?;
        phase(&api, "cong-dich-vu", WorkloadPhase::Available, 5).await?;

        // Pause stops every pod; resume brings them back.
        api.patch(
            "cong-dich-vu",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"paused": true}})),
        )
        .await?;
        phase(&api, "cong-dich-vu", WorkloadPhase::Paused, 0).await?;

        // Deleting the workload deletes everything it made.
        let uid = api.get("cong-dich-vu").await?.uid().context("uid")?;
        api.delete("cong-dich-vu", &DeleteParams::foreground())
            .await?;
        wait_for(
            &api,
            "cong-dich-vu",
            "the workload to go",
            DEFAULT_TIMEOUT,
            conditions::is_deleted(&uid),
        )
        .await?;
        govbroker_e2e::eventually(
            "the Deployment, Service, PDB and pods to go",
            DEFAULT_TIMEOUT,
            || async {
                let d = Api::<Deployment>::namespaced(t.client.clone(), &ns)
                    .get_opt("cong-dich-vu")
                    .await?;
                let s = Api::<Service>::namespaced(t.client.clone(), &ns)
                    .get_opt("cong-dich-vu")
                    .await?;
                let b = Api::<PodDisruptionBudget>::namespaced(t.client.clone(), &ns)
                    .get_opt("cong-dich-vu")
                    .await?;
                let pods = Api::<Pod>::namespaced(t.client.clone(), &ns)
                    .list(&ListParams::default().labels("govbroker.io/workload=cong-dich-vu"))
                    .await?;
                Ok(
                    (d.is_none() && s.is_none() && b.is_none() && pods.items.is_empty())
                        .then_some(()),
                )
            },
        )
        .await
    })
    .await;
}

/// A binding Secret as the broker writes it (its keys, and the label naming its claim,
/// by which the workload controller finds it).
fn binding_secret(name: &str) -> Secret {
    let data = [
        ("host", "127.0.0.1"),
        ("port", "15432"),
        ("username", "u"),
        ("password", "p"),
        ("database", "d"),
        ("uri", "postgresql://u:p@127.0.0.1:15432/d"),
    ];
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "govbroker.io/data-service-claim".to_owned(),
                name.trim_end_matches("-binding").to_owned(),
            )])),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_restricted_level_workload_passes_pod_security_and_gets_its_bindings() {
    start();
    scenario("workload-restricted", |t: TestEnv| async move {
        let ns = agency(&t, 4, "2", "4Gi", "10").await?;
        let api = Api::<Workload>::namespaced(t.client.clone(), &ns);
        let mut w = workload("ho-so", "registry.gov.vn/so-tttt/ho-so:2", 1, "100m");
        w.spec.claims = vec![
            ClaimBinding {
                name: "ho-so-db".into(),
                inject_as: InjectAs::Env,
                prefix: None,
            },
            ClaimBinding {
                name: "cache".into(),
                inject_as: InjectAs::File,
                prefix: Some("CACHE_".into()),
            },
        ];
        api.create(&PostParams::default(), &w).await?;
        // Without the binding Secrets nothing is applied yet.
        let pending = phase(&api, "ho-so", WorkloadPhase::Pending, 1).await?;
        let message = pending.status.and_then(|s| s.message).unwrap_or_default();
        ensure!(message.contains("ho-so-db-binding"), "message: {message}");
        ensure!(
            Api::<Deployment>::namespaced(t.client.clone(), &ns)
                .get_opt("ho-so")
                .await?
                .is_none(),
            "no Deployment before the bindings exist"
        );

        // The broker writes the bindings (here by hand, with the broker's keys).
        let secrets = Api::<Secret>::namespaced(t.client.clone(), &ns);
        secrets
            .create(&PostParams::default(), &binding_secret("ho-so-db-binding"))
            .await?;
        secrets
            .create(&PostParams::default(), &binding_secret("cache-binding"))
            .await?;
        phase(&api, "ho-so", WorkloadPhase::Available, 1).await?;

        // The pod was admitted under "restricted" with no security setting in the spec.
        let pods = running_pods(&t, &ns, "ho-so").await?;
        let pod = pods.first().context("a Running pod")?;
        let container = &pod.spec.as_ref().context("pod spec")?.containers[0];
        let sc = container.security_context.clone().unwrap_or_default();
        ensure!(
            sc.run_as_non_root == Some(true) && sc.allow_privilege_escalation == Some(false),
            "security context {sc:?}"
        );
        ensure!(
            sc.seccomp_profile.map(|p| p.type_).as_deref() == Some("RuntimeDefault"),
            "seccomp"
        );
        let env_from = container.env_from.clone().unwrap_or_default();
        ensure!(
            env_from
                .iter()
                .any(|e| e.prefix.as_deref() == Some("HO_SO_DB_")
                    && e.secret_ref
                        .as_ref()
                        .is_some_and(|s| s.name == "ho-so-db-binding")),
            "envFrom {env_from:?}"
        );
        let mounts = container.volume_mounts.clone().unwrap_or_default();
        ensure!(
            mounts
                .iter()
                .any(|m| m.mount_path == "/var/run/govbroker/data-services/cache"
                    && m.read_only == Some(true)),
            "mounts {mounts:?}"
        );
        Ok(())
    })
    .await;
}

/// The bindings digest in a Deployment's pod template.
fn template_digest(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(BINDINGS_DIGEST_ANNOTATION)
        .cloned()
}

#[tokio::test]
async fn a_rotated_password_replaces_the_pods_that_inject_it() {
    start();
    scenario("workload-rotation", |t: TestEnv| async move {
        let class = local_class(&t, "redis").await?;
        let (_, ns) = agency_for_claims(&t, "wl-rot", 2, "chu@test.gov.vn", &[(&class, 1)]).await?;
        let claims = Api::<DataServiceClaim>::namespaced(t.client.clone(), &ns);
        let outcome = async {
            let claim: DataServiceClaim = serde_json::from_value(serde_json::json!({
                "apiVersion": "govbroker.io/v1alpha1",
                "kind": "DataServiceClaim",
                "metadata": {"name": "phien"},
                "spec": {"className": class, "plan": "nho", "deletionPolicy": "Delete"},
            }))?;
            claims.create(&PostParams::default(), &claim).await?;
            wait_for(
                &claims,
                "phien",
                "the claim to be Ready",
                DEFAULT_TIMEOUT,
                |c: Option<&DataServiceClaim>| {
                    c.and_then(|c| c.status.as_ref())
                        .is_some_and(|s| s.phase == Some(ClaimPhase::Ready))
                },
            )
            .await?;

            let api = Api::<Workload>::namespaced(t.client.clone(), &ns);
            let mut w = workload("cong", "registry.gov.vn/so-tttt/cong:1", 2, "100m");
            // The agency has no quota for Services.
            w.spec.ports = Vec::new();
            w.spec.claims = vec![ClaimBinding {
                name: "phien".into(),
                inject_as: InjectAs::Env,
                prefix: None,
            }];
            api.create(&PostParams::default(), &w).await?;
            phase(&api, "cong", WorkloadPhase::Available, 2).await?;
            let deployments = Api::<Deployment>::namespaced(t.client.clone(), &ns);
            let before = template_digest(&deployments.get("cong").await?)
                .context("no bindings digest in the pod template")?;
            let old_pods: Vec<String> = running_pods(&t, &ns, "cong")
                .await?
                .iter()
                .map(|p| p.name_any())
                .collect();
            ensure!(old_pods.len() == 2, "pods before: {old_pods:?}");

            // The owner rotates the password: the broker writes a new binding Secret.
            claims
                .patch(
                    "phien",
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                        ROTATE_PASSWORD_ANNOTATION: "2026-11-25T08:00:00Z"
                    }}})),
                )
                .await?;
            let rolled = wait_for(
                &deployments,
                "cong",
                "the pod template's bindings digest to change",
                DEFAULT_TIMEOUT,
                move |d: Option<&Deployment>| {
                    d.and_then(template_digest)
                        .is_some_and(|digest| digest != before)
                },
            )
            .await?
            .context("the Deployment vanished")?;
            ensure!(
                !template_digest(&rolled).unwrap_or_default().is_empty(),
                "digest"
            );
            // Every pod is replaced by one that read the new password, and the workload
            // is Available again.
            let old = old_pods.clone();
            let new_pods = eventually("two new Running pods", DEFAULT_TIMEOUT, || {
                let (t, ns, old) = (&t, ns.clone(), old.clone());
                async move {
                    let pods = Api::<Pod>::namespaced(t.client.clone(), &ns)
                        .list(&ListParams::default().labels("govbroker.io/workload=cong"))
                        .await?
                        .items;
                    let running: Vec<String> = pods
                        .iter()
                        .filter(|p| {
                            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                        })
                        .map(|p| p.name_any())
                        .collect();
                    Ok((pods.len() == 2
                        && running.len() == 2
                        && running.iter().all(|p| !old.contains(p)))
                    .then_some(running))
                }
            })
            .await?;
            ensure!(new_pods.len() == 2, "new pods {new_pods:?}");
            phase(&api, "cong", WorkloadPhase::Available, 2).await?;
            let note = event(&t, &ns, "cong", "BindingsChanged").await?;
            ensure!(note.contains("binding Secret changed"), "note: {note}");

            // The claim goes first, so that the broker drops its Redis user while the
            // class still exists.
            let uid = claims.get("phien").await?.uid().context("uid")?;
            claims.delete("phien", &DeleteParams::background()).await?;
            wait_for(
                &claims,
                "phien",
                "the claim to be deleted",
                DEFAULT_TIMEOUT,
                conditions::is_deleted(&uid),
            )
            .await?;
            Ok(())
        }
        .await;
        if outcome.is_err() && !govbroker_e2e::keep_state() {
            // Whatever the broker left behind on the shared Redis.
            let admin = t.cluster.redis_admin()?;
            if let Ok(mut con) = redis::Client::open(admin.redis_connection_info()?)?
                .get_multiplexed_async_connection()
                .await
            {
                let _ = redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(instance_names(&ns, "phien").redis_user)
                    .query_async::<()>(&mut con)
                    .await;
            }
        }
        delete_local_class(&t, &class).await;
        outcome
    })
    .await;
}

fn refused(result: Result<Workload, kube::Error>, fragment: &str) -> Result<()> {
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

#[tokio::test]
async fn bad_images_absurd_requests_and_foreign_registries_are_refused_with_nothing_created() {
    start();
    scenario("workload-refused", |t: TestEnv| async move {
        let ns = agency(&t, 3, "2", "4Gi", "10").await?;
        let api = Api::<Workload>::namespaced(t.client.clone(), &ns);
        let pp = PostParams::default();
        refused(
            api.create(
                &pp,
                &workload("bad-ref", "Registry.gov.vn/App::1", 1, "100m"),
            )
            .await,
            "is not a valid image reference",
        )?;
        refused(
            api.create(&pp, &workload("absurd", "registry.gov.vn/app:1", 1, "1000"))
                .await,
            "more than any node offers",
        )?;
        refused(
            api.create(&pp, &workload("hub", "nginx:1.27", 1, "100m"))
                .await,
            "at security level 3 images must come from registry.gov.vn",
        )?;
        // The CRD's own rules: replicas are bounded.
        refused(
            api.create(
                &pp,
                &workload("many", "registry.gov.vn/app:1", 1000, "100m"),
            )
            .await,
            "spec.replicas",
        )?;
        // Only agencies' namespaces run workloads.
        let foreign = Api::<Workload>::namespaced(t.client.clone(), &t.namespace);
        refused(
            foreign
                .create(&pp, &workload("lost", "registry.gov.vn/app:1", 1, "100m"))
                .await,
            "belongs to no agency",
        )?;
        // An update to a bad image is refused too.
        api.create(&pp, &workload("ok", "registry.gov.vn/app:1", 1, "100m"))
            .await?;
        let patch = serde_json::json!({"spec": {"image": "docker.io/library/nginx:1"}});
        refused(
            api.patch("ok", &PatchParams::default(), &Patch::Merge(patch))
                .await,
            "images must come from",
        )?;
        api.delete("ok", &DeleteParams::default()).await?;

        let left: Vec<String> = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|w| w.name_any())
            .collect();
        ensure!(left.iter().all(|n| n == "ok"), "workloads left: {left:?}");
        let deployments = Api::<Deployment>::namespaced(t.client.clone(), &ns)
            .list(&ListParams::default())
            .await?;
        ensure!(
            deployments.items.iter().all(|d| d.name_any() == "ok"),
            "deployments: {:?}",
            deployments
                .items
                .iter()
                .map(|d| d.name_any())
                .collect::<Vec<_>>()
        );
        Ok(())
    })
    .await;
}
