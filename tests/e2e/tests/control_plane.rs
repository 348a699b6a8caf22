//! The local control plane is a real Kubernetes: admission, controllers, scheduler, RBAC,
//! service-account tokens and webhook bearer tokens all work, and scheduled pods reach
//! Running on fake nodes.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use govbroker_e2e::{DEFAULT_TIMEOUT, TestEnv, eventually, scenario, unique_name, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
    TokenReviewStatus,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Node, Pod, PodSpec, PodTemplateSpec, ResourceQuota,
    ResourceQuotaSpec, ResourceRequirements, SecurityContext, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, CustomResource, CustomResourceExt as _, ResourceExt as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

fn container(name: &str, cpu: &str, memory: &str) -> Container {
    Container {
        name: name.to_owned(),
        image: Some("registry.gov.example/demo/app:1.0".to_owned()),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
            limits: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(name: &str, container: Container) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    let labels: BTreeMap<String, String> = [("app".to_owned(), name.to_owned())].into();
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container("app", "100m", "64Mi")],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create_quota(t: &TestEnv, hard: &[(&str, &str)]) -> Result<()> {
    let quotas = t.api::<ResourceQuota>();
    let quota = ResourceQuota {
        metadata: ObjectMeta {
            name: Some("agency-quota".to_owned()),
            ..Default::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(quantities(hard)),
            ..Default::default()
        }),
        ..Default::default()
    };
    quotas.create(&PostParams::default(), &quota).await?;
    // Admission refuses everything in the namespace until the quota controller has
    // computed the quota's first status.
    wait_for(
        &quotas,
        "agency-quota",
        "quota status to be computed",
        DEFAULT_TIMEOUT,
        |q: Option<&ResourceQuota>| {
            q.and_then(|q| q.status.as_ref())
                .and_then(|s| s.hard.as_ref())
                .is_some()
        },
    )
    .await?;
    Ok(())
}

fn used(quota: &ResourceQuota, resource: &str) -> Option<String> {
    quota
        .status
        .as_ref()?
        .used
        .as_ref()?
        .get(resource)
        .map(|q| q.0.clone())
}

#[tokio::test]
async fn deployment_runs_on_fake_nodes_and_counts_against_its_quota() {
    scenario("quota-deploy", |t| async move {
        create_quota(
            &t,
            &[
                ("pods", "10"),
                ("requests.cpu", "2"),
                ("requests.memory", "2Gi"),
            ],
        )
        .await?;
        let deployments = t.api::<Deployment>();
        deployments
            .create(&PostParams::default(), &deployment("web", 3))
            .await?;

        wait_for(
            &deployments,
            "web",
            "3 ready replicas",
            DEFAULT_TIMEOUT,
            |d: Option<&Deployment>| {
                d.and_then(|d| d.status.as_ref())
                    .is_some_and(|s| s.ready_replicas == Some(3) && s.available_replicas == Some(3))
            },
        )
        .await?;

        let pods = t
            .api::<Pod>()
            .list(&ListParams::default().labels("app=web"))
            .await?;
        ensure!(
            pods.items.len() == 3,
            "expected 3 pods, found {}",
            pods.items.len()
        );
        for p in &pods.items {
            let status = p.status.as_ref().context("pod without status")?;
            ensure!(
                status.phase.as_deref() == Some("Running"),
                "{} is {:?}",
                p.name_any(),
                status.phase
            );
            ensure!(
                status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty()),
                "{} has no pod IP",
                p.name_any()
            );
            ensure!(
                status.start_time.is_some(),
                "{} has no start time",
                p.name_any()
            );
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ensure!(ready, "{} is not Ready", p.name_any());
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            ensure!(
                node.starts_with("fake-node-"),
                "{} was scheduled to {node:?}, not a fake node",
                p.name_any()
            );
        }

        wait_for(
            &t.api::<ResourceQuota>(),
            "agency-quota",
            "quota to count the 3 pods",
            DEFAULT_TIMEOUT,
            |q: Option<&ResourceQuota>| {
                q.is_some_and(|q| {
                    used(q, "pods").as_deref() == Some("3")
                        && used(q, "requests.cpu").as_deref() == Some("300m")
                })
            },
        )
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn pod_exceeding_quota_is_refused_by_admission() {
    scenario("quota-refuse", |t| async move {
        create_quota(
            &t,
            &[
                ("pods", "5"),
                ("requests.cpu", "500m"),
                ("requests.memory", "1Gi"),
            ],
        )
        .await?;
        let pods = t.api::<Pod>();
        pods.create(
            &PostParams::default(),
            &pod("fits", container("app", "200m", "128Mi")),
        )
        .await?;

        let err = pods
            .create(
                &PostParams::default(),
                &pod("too-big", container("app", "1", "128Mi")),
            )
            .await
            .expect_err("a pod over the cpu quota must be refused");
        let kube::Error::Api(status) = &err else {
            anyhow::bail!("unexpected error {err}")
        };
        ensure!(
            status.code == 403,
            "expected 403 Forbidden, got {}",
            status.code
        );
        ensure!(
            status.message.contains("exceeded quota: agency-quota")
                && status.message.contains("requests.cpu"),
            "unexpected message: {}",
            status.message
        );
        ensure!(
            pods.get_opt("too-big").await?.is_none(),
            "the refused pod exists"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn privileged_pod_is_refused_in_a_restricted_namespace() {
    scenario("psa", |t| async move {
        let namespaces = Api::<Namespace>::all(t.client.clone());
        let labels = serde_json::json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}});
        namespaces
            .patch(
                &t.namespace,
                &PatchParams::default(),
                &Patch::Merge(&labels),
            )
            .await?;

        let mut privileged = container("app", "100m", "64Mi");
        privileged.security_context = Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
        let pods = t.api::<Pod>();
        let err = pods
            .create(&PostParams::default(), &pod("privileged", privileged))
            .await
            .expect_err("a privileged pod must be refused at the restricted level");
        let kube::Error::Api(status) = &err else {
            anyhow::bail!("unexpected error {err}")
        };
        ensure!(
            status.code == 403,
            "expected 403, got {}: {}",
            status.code,
            status.message
        );
        ensure!(
            status
                .message
                .contains("violates PodSecurity \"restricted:latest\"")
                && status.message.contains("privileged"),
            "unexpected message: {}",
            status.message
        );

        // The same namespace admits a pod that follows the restricted rules, so the refusal
        // above is Pod Security at work and not a namespace that refuses everything.
        let mut compliant = container("app", "100m", "64Mi");
        compliant.security_context = Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            run_as_user: Some(10001),
            capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        });
        pods.create(&PostParams::default(), &pod("compliant", compliant))
            .await?;
        wait_for(
            &pods,
            "compliant",
            "the compliant pod to run",
            DEFAULT_TIMEOUT,
            conditions::is_pod_running(),
        )
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn garbage_collector_and_namespace_controller_remove_what_they_own() {
    scenario("gc", |t| async move {
        // Garbage collector: deleting a Deployment removes its ReplicaSet and pods.
        let deployments = t.api::<Deployment>();
        deployments
            .create(&PostParams::default(), &deployment("owned", 2))
            .await?;
        wait_for(
            &deployments,
            "owned",
            "2 ready replicas",
            DEFAULT_TIMEOUT,
            |d: Option<&Deployment>| {
                d.and_then(|d| d.status.as_ref())
                    .is_some_and(|s| s.ready_replicas == Some(2))
            },
        )
        .await?;
        ensure!(
            !t.api::<ReplicaSet>()
                .list(&ListParams::default())
                .await?
                .items
                .is_empty(),
            "no ReplicaSet was created"
        );
        deployments
            .delete("owned", &DeleteParams::background())
            .await?;
        eventually(
            "the ReplicaSet and pods of the deleted Deployment to go",
            DEFAULT_TIMEOUT,
            || async {
                let replica_sets = t
                    .api::<ReplicaSet>()
                    .list(&ListParams::default())
                    .await?
                    .items
                    .len();
                let pods = t
                    .api::<Pod>()
                    .list(&ListParams::default())
                    .await?
                    .items
                    .len();
                Ok((replica_sets == 0 && pods == 0).then_some(()))
            },
        )
        .await?;

        // Namespace controller: deleting a namespace removes it and everything in it.
        let doomed = t.extra_namespace("doomed").await?;
        let doomed_deployments: Api<Deployment> = Api::namespaced(t.client.clone(), &doomed);
        doomed_deployments
            .create(&PostParams::default(), &deployment("inside", 1))
            .await?;
        let config_maps: Api<ConfigMap> = Api::namespaced(t.client.clone(), &doomed);
        config_maps
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: ObjectMeta {
                        name: Some("settings".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await?;
        wait_for(
            &doomed_deployments,
            "inside",
            "1 ready replica",
            DEFAULT_TIMEOUT,
            |d: Option<&Deployment>| {
                d.and_then(|d| d.status.as_ref())
                    .is_some_and(|s| s.ready_replicas == Some(1))
            },
        )
        .await?;

        let namespaces = Api::<Namespace>::all(t.client.clone());
        let uid = namespaces
            .get(&doomed)
            .await?
            .uid()
            .context("namespace without uid")?;
        namespaces.delete(&doomed, &DeleteParams::default()).await?;
        wait_for(
            &namespaces,
            &doomed,
            "the namespace to be removed",
            DEFAULT_TIMEOUT,
            conditions::is_deleted(&uid),
        )
        .await?;
        let pods: Api<Pod> = Api::namespaced(t.client.clone(), &doomed);
        ensure!(
            pods.list(&ListParams::default()).await?.items.is_empty(),
            "pods survived their namespace"
        );
        ensure!(
            config_maps.get_opt("settings").await?.is_none(),
            "a ConfigMap survived its namespace"
        );
        Ok(())
    })
    .await;
}

/// A resource defined in Rust, to show CRDs generated from Rust types are served.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "e2e.govbroker.io",
    version = "v1",
    kind = "Widget",
    namespaced
)]
pub struct WidgetSpec {
    /// How big.
    pub size: i32,
}

#[tokio::test]
async fn crd_applied_from_rust_is_served_listed_and_watched() {
    scenario("crd", |t| async move {
        let crds = Api::<CustomResourceDefinition>::all(t.client.clone());
        let crd = Widget::crd();
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("govbroker-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        wait_for(
            &crds,
            &name,
            "the CRD to be established",
            DEFAULT_TIMEOUT,
            conditions::is_crd_established(),
        )
        .await?;

        let widgets = t.api::<Widget>();
        // Discovery may lag establishment by a moment: the first create is retried.
        eventually(
            "the Widget API to accept objects",
            DEFAULT_TIMEOUT,
            || async {
                match widgets
                    .create(
                        &PostParams::default(),
                        &Widget::new("first", WidgetSpec { size: 1 }),
                    )
                    .await
                {
                    Ok(_) => Ok(Some(())),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Some(())),
                    Err(e) => Err(e.into()),
                }
            },
        )
        .await?;

        let mut events = watcher(widgets.clone(), watcher::Config::default())
            .applied_objects()
            .boxed();
        let second = unique_name("second");
        widgets
            .create(
                &PostParams::default(),
                &Widget::new(&second, WidgetSpec { size: 2 }),
            )
            .await?;
        let seen = tokio::time::timeout(DEFAULT_TIMEOUT, async {
            while let Some(w) = events.try_next().await? {
                if w.name_any() == second {
                    return Ok::<_, anyhow::Error>(w);
                }
            }
            anyhow::bail!("watch ended")
        })
        .await
        .context("the watch never delivered the new Widget")??;
        ensure!(
            seen.spec.size == 2,
            "watched widget has size {}",
            seen.spec.size
        );

        let mut listed: Vec<String> = widgets
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|w| w.name_any())
            .collect();
        listed.sort();
        let mut expected = vec!["first".to_owned(), second];
        expected.sort();
        ensure!(listed == expected, "listed {listed:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn service_account_token_works_and_rbac_denies_what_its_role_does_not_allow() {
    scenario("rbac", |t| async move {
        let accounts = t.api::<ServiceAccount>();
        accounts
            .create(
                &PostParams::default(),
                &ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some("reader".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await?;
        t.api::<Role>()
            .create(
                &PostParams::default(),
                &Role {
                    metadata: ObjectMeta {
                        name: Some("pod-reader".into()),
                        ..Default::default()
                    },
                    rules: Some(vec![PolicyRule {
                        api_groups: Some(vec![String::new()]),
                        resources: Some(vec!["pods".into()]),
                        verbs: vec!["get".into(), "list".into()],
                        ..Default::default()
                    }]),
                },
            )
            .await?;
        t.api::<RoleBinding>()
            .create(
                &PostParams::default(),
                &RoleBinding {
                    metadata: ObjectMeta {
                        name: Some("reader-reads-pods".into()),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "Role".into(),
                        name: "pod-reader".into(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: "reader".into(),
                        namespace: Some(t.namespace.clone()),
                        ..Default::default()
                    }]),
                },
            )
            .await?;

        let token = accounts
            .create_token_request(
                "reader",
                &PostParams::default(),
                &TokenRequest {
                    spec: Some(TokenRequestSpec {
                        expiration_seconds: Some(600),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await?
            .status
            .and_then(|s| s.token)
            .context("token request without a token")?;
        let as_reader = t.cluster.client_with_token(&token).await?;

        let review = Api::<SelfSubjectReview>::all(as_reader.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await?;
        let user = review
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .unwrap_or_default();
        ensure!(
            user == format!("system:serviceaccount:{}:reader", t.namespace),
            "token authenticated as {user:?}"
        );

        let reader_pods: Api<Pod> = Api::namespaced(as_reader.clone(), &t.namespace);
        // The RBAC authorizer sees new bindings through its informer, a moment later.
        eventually(
            "the role binding to take effect",
            DEFAULT_TIMEOUT,
            || async {
                Ok(reader_pods
                    .list(&ListParams::default())
                    .await
                    .ok()
                    .map(|_| ()))
            },
        )
        .await?;

        let forbidden = |r: Result<_, kube::Error>, what: &str| -> Result<()> {
            match r {
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    ensure!(
                        s.message
                            .contains(&format!("system:serviceaccount:{}:reader", t.namespace)),
                        "denial does not name the caller: {}",
                        s.message
                    );
                    Ok(())
                }
                other => anyhow::bail!("{what} should be forbidden, got {:?}", other.map(|_| ())),
            }
        };
        let reader_secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(as_reader.clone(), &t.namespace);
        forbidden(
            reader_secrets
                .list(&ListParams::default())
                .await
                .map(|_| ()),
            "listing secrets",
        )?;
        forbidden(
            reader_pods
                .create(
                    &PostParams::default(),
                    &pod("sneaky", container("app", "10m", "16Mi")),
                )
                .await
                .map(|_| ()),
            "creating a pod",
        )?;
        let elsewhere: Api<Pod> = Api::namespaced(as_reader.clone(), "default");
        forbidden(
            elsewhere.list(&ListParams::default()).await.map(|_| ()),
            "listing pods in another namespace",
        )?;

        // A garbage token is rejected outright.
        let stranger = t.cluster.client_with_token("not-a-token").await?;
        match Api::<Pod>::namespaced(stranger, &t.namespace)
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 401 => {}
            other => anyhow::bail!(
                "a garbage token should get 401, got {:?}",
                other.map(|_| ())
            ),
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn api_server_reports_the_release_it_was_built_from() {
    scenario("version", |t| async move {
        let expected = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../cluster/K8S_VERSION"
        ))?;
        let version = t.client.apiserver_version().await?;
        ensure!(
            version.git_version == expected.trim(),
            "/version says {}, built {}",
            version.git_version,
            expected.trim()
        );
        Ok(())
    })
    .await;
}

/// `govcluster up` reports ready only once every fake node shows the size it was asked
/// for (recorded in `state/cluster.env`): after a restart with another `--node-pods`, the
/// nodes of the earlier run stay in etcd, Ready and with their old capacity, until the
/// new fakelet registers them again.
#[tokio::test]
async fn fake_nodes_show_the_pod_capacity_up_was_asked_for() {
    scenario("fake-node-size", |t| async move {
        let env_file = t.cluster.state_dir.join("cluster.env");
        let env = std::fs::read_to_string(&env_file)?;
        let recorded = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
                .with_context(|| {
                    format!(
                        "{} does not record {key}: the control plane was started by an older \
                         govcluster; restart it (govcluster down, then up)",
                        env_file.display()
                    )
                })
        };
        let count: usize = recorded("GOVBROKER_FAKE_NODES")?.parse()?;
        let pods = Quantity(recorded("GOVBROKER_FAKE_NODE_PODS")?);
        let nodes = Api::<Node>::all(t.client.clone())
            .list(&ListParams::default().labels("govbroker.io/fake-node=true"))
            .await?;
        for i in 0..count {
            let name = format!("fake-node-{i}");
            let node = nodes
                .items
                .iter()
                .find(|n| n.name_any() == name)
                .with_context(|| format!("{name} is not registered"))?;
            let status = node.status.clone().unwrap_or_default();
            for (what, list) in [
                ("capacity", status.capacity),
                ("allocatable", status.allocatable),
            ] {
                let got = list.unwrap_or_default().get("pods").cloned();
                ensure!(
                    got.as_ref() == Some(&pods),
                    "{name} {what} pods {got:?}, up was asked for {pods:?}"
                );
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn client_certificate_identities_carry_their_user_and_groups() {
    scenario("identity", |t| async move {
        let client = t
            .cluster
            .client_as("nguyen.van.a@mic.gov.vn", &["agency:bo-tttt:owners"])
            .await?;
        let review = Api::<SelfSubjectReview>::all(client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await?;
        let info = review
            .status
            .and_then(|s| s.user_info)
            .context("no user info")?;
        ensure!(
            info.username.as_deref() == Some("nguyen.van.a@mic.gov.vn"),
            "user {:?}",
            info.username
        );
        ensure!(
            info.groups
                .iter()
                .flatten()
                .any(|g| g == "agency:bo-tttt:owners"),
            "groups {:?}",
            info.groups
        );
        // Without any binding the identity may do nothing.
        match Api::<Pod>::namespaced(client, &t.namespace)
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
            other => anyhow::bail!(
                "an unbound user should be forbidden, got {:?}",
                other.map(|_| ())
            ),
        }
    })
    .await;
}

/// What the API server's authenticators say of `token`, asked with a TokenReview as admin.
async fn review_token(t: &TestEnv, token: &str) -> Result<TokenReviewStatus> {
    let review = Api::<TokenReview>::all(t.client.clone())
        .create(
            &PostParams::default(),
            &TokenReview {
                spec: TokenReviewSpec {
                    token: token.to_owned(),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    review.status.context("TokenReview without status")
}

#[tokio::test]
async fn webhook_tokens_carry_their_user_and_groups_and_expired_or_garbage_ones_are_refused() {
    scenario("token-webhook", |t| async move {
        let user = unique_name("alice");
        let groups = ["govbroker:platform-admins", "agency:so-tttt:owners"];
        let token = t.cluster.token(&user, &groups)?;
        ensure!(token.starts_with("gbt_"), "the token has no gbt_ prefix");

        // The API server asks the webhook, which knows the token at once.
        let status = review_token(&t, &token).await?;
        ensure!(
            status.authenticated == Some(true),
            "a minted token was not authenticated: {:?}",
            status.error
        );
        let info = status.user.context("no user info")?;
        ensure!(
            info.username.as_deref() == Some(user.as_str()),
            "user {:?}",
            info.username
        );
        ensure!(
            info.uid.as_deref() == Some(format!("token:{user}").as_str()),
            "uid {:?}",
            info.uid
        );
        for g in groups {
            ensure!(
                info.groups.iter().flatten().any(|x| x == g),
                "groups {:?} lack {g}",
                info.groups
            );
        }

        // A client presenting it is that user, in those groups...
        let client = t.cluster.client_with_token(&token).await?;
        let review = Api::<SelfSubjectReview>::all(client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await?;
        let info = review
            .status
            .and_then(|s| s.user_info)
            .context("no user info")?;
        ensure!(
            info.username.as_deref() == Some(user.as_str()),
            "user {:?}",
            info.username
        );
        for g in groups.iter().chain(&["system:authenticated"]) {
            ensure!(
                info.groups.iter().flatten().any(|x| x == g),
                "groups {:?} lack {g}",
                info.groups
            );
        }
        // ...and RBAC judges it: authenticated, but bound to nothing.
        match Api::<Pod>::namespaced(client, &t.namespace)
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains(&user) => {}
            other => anyhow::bail!(
                "an unbound token user should be forbidden, got {:?}",
                other.map(|_| ())
            ),
        }

        let expired = t.cluster.expired_token(&user, &groups)?;
        for (what, bad, why) in [
            ("an expired token", expired.as_str(), "expired"),
            ("a garbage token", "gbt_not-a-minted-token", "unknown token"),
        ] {
            let status = review_token(&t, bad).await?;
            ensure!(
                status.authenticated != Some(true),
                "{what} was authenticated as {:?}",
                status.user.and_then(|u| u.username)
            );
            ensure!(
                status.error.as_deref().is_some_and(|e| e.contains(why)),
                "{what}: the review's error {:?} does not say {why:?}",
                status.error
            );
            let stranger = t.cluster.client_with_token(bad).await?;
            match Api::<SelfSubjectReview>::all(stranger)
                .create(&PostParams::default(), &SelfSubjectReview::default())
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 401 => {}
                other => anyhow::bail!("{what} should get 401, got {:?}", other.map(|_| ())),
            }
        }
        Ok(())
    })
    .await;
}
