//! The data-service CRDs (DataServiceClass, DataServiceClaim, DataShare) against the real
//! control plane: valid objects are accepted and read back with their defaults, each CEL
//! rule refuses a bad object with its message, and kubectl shows the descriptions and
//! printer columns. Claims and shares also pass the operator's admission webhook, so the
//! operator runs and the tests use real agencies, a class (whose server is unreachable,
//! so nothing is provisioned) and a claim.

use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use govbroker_crds::{
    DataServiceClaim, DataServiceClaimSpec, DataServiceClass, DataServiceClassSpec,
    DataServiceEngine, DataServicePlan, DataShare, DataShareSpec, DeletionPolicy, PlanLimits,
    SecretRef, ServerTls, ShareAccess, ShareConsumer, ShareOwner, SharedServer,
};
use govbroker_e2e::{TEST_LABEL, TestEnv, scenario, unique_name};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn labelled<K: Resource>(mut obj: K, test_namespace: &str) -> K {
    obj.meta_mut()
        .labels
        .get_or_insert_with(Default::default)
        .insert(TEST_LABEL.to_owned(), test_namespace.to_owned());
    obj
}

fn postgres_class(name: &str, test_namespace: &str) -> DataServiceClass {
    let plan = |name: &str, connections: i32, storage: &str| DataServicePlan {
        name: name.to_owned(),
        description: format!("Cơ sở dữ liệu {name} cho cổng dịch vụ công"),
        limits: Some(PlanLimits {
            max_connections: Some(connections),
            storage: Some(Quantity(storage.to_owned())),
            ..Default::default()
        }),
        price_ref: Some(format!("postgres-{name}")),
    };
    labelled(
        DataServiceClass::new(
            name,
            DataServiceClassSpec {
                engine: DataServiceEngine::Postgres,
                server: SharedServer {
                    host: "pg-dung-chung.hanoi.gov.vn".to_owned(),
                    port: 5432,
                    tls: ServerTls::default(),
                    admin_secret_ref: SecretRef {
                        namespace: "govbroker-system".to_owned(),
                        name: "pg-dung-chung-admin".to_owned(),
                    },
                },
                plans: vec![plan("co-ban", 20, "10Gi"), plan("nang-cao", 100, "100Gi")],
                allowed_security_levels: vec![1, 2, 3],
                allow_share_down: false,
            },
        ),
        test_namespace,
    )
}

/// Starts the operator (its webhook admits claims and shares).
fn start_operator() -> Result<()> {
    let binary = govbroker_e2e::api::workspace_binary("govbroker-operator", "govbroker-operator")?;
    govbroker_e2e::operator(&binary.to_string_lossy());
    Ok(())
}

/// A class named `name` with plans `co-ban` and `nang-cao`, on a server nobody answers
/// (port 1), so claims stay Pending and nothing is made anywhere.
async fn unreachable_class(t: &TestEnv, name: &str) -> Result<()> {
    let class: DataServiceClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "govbroker.io/v1alpha1", "kind": "DataServiceClass",
        "metadata": {"name": name, "labels": {TEST_LABEL: t.namespace}},
        "spec": {
            "engine": "postgres",
            "server": {"host": "127.0.0.1", "port": 1, "tls": {"enabled": false},
                       "adminSecretRef": {"namespace": t.namespace, "name": "khong-co"}},
            "plans": [{"name": "co-ban", "description": "Gói cơ bản"}, {"name": "nang-cao", "description": "Gói nâng cao"}],
        },
    }))?;
    Api::<DataServiceClass>::all(t.client.clone())
        .create(&PostParams::default(), &class)
        .await?;
    Ok(())
}

fn claim(name: &str, class: &str) -> DataServiceClaim {
    DataServiceClaim::new(
        name,
        DataServiceClaimSpec {
            class_name: class.to_owned(),
            plan: "co-ban".to_owned(),
            parameters: [("extensions".to_owned(), "unaccent".to_owned())].into(),
            deletion_policy: DeletionPolicy::default(),
        },
    )
}

fn share(name: &str, owner: &str, consumer: &str, test_namespace: &str) -> DataShare {
    labelled(
        DataShare::new(
            name,
            DataShareSpec {
                owner: ShareOwner {
                    agency: owner.to_owned(),
                    namespace: format!("{owner}-prod"),
                    claim: "ho-so-benh-an".to_owned(),
                },
                consumer: ShareConsumer {
                    agency: consumer.to_owned(),
                },
                access: ShareAccess::ReadOnly,
                expires_at: serde_json::from_value(serde_json::json!("2026-12-31T16:59:59Z"))
                    .expect("a time"),
                purpose: Some("Giám định bảo hiểm y tế".to_owned()),
                approved: false,
                approval: None,
                revoked: false,
            },
        ),
        test_namespace,
    )
}

/// Expects a refusal (422) whose message contains `fragment`.
fn refused<T: std::fmt::Debug>(result: Result<T, kube::Error>, fragment: &str) -> Result<()> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 422 => {
            ensure!(
                s.message.contains(fragment),
                "refused, but the message lacks {fragment:?}:\n{}",
                s.message
            );
            Ok(())
        }
        other => bail!("expected a 422 refusal containing {fragment:?}, got {other:?}"),
    }
}

/// Creates `json` (which a typed object could not express) as a `K` in `api`'s scope.
async fn create_raw<K>(
    api: &Api<DynamicObject>,
    json: serde_json::Value,
) -> Result<DynamicObject, kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    let ar = ApiResource::erase::<K>(&());
    let mut obj: DynamicObject = serde_json::from_value(json).expect("a valid object");
    obj.types = Some(kube::core::TypeMeta {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
    });
    api.create(&PostParams::default(), &obj).await
}

/// Deletes the cluster-scoped objects of kind `K` that this test labelled.
async fn delete_labelled<K>(t: &TestEnv) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let api = Api::<K>::all(t.client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!("{TEST_LABEL}={}", t.namespace)))
        .await?;
    for obj in list.items {
        api.delete(&obj.name_any(), &DeleteParams::background())
            .await?;
    }
    Ok(())
}

fn kubectl(t: &TestEnv, args: &[&str]) -> Result<String> {
    let out = Command::new(t.cluster.bin_dir.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&t.cluster.kubeconfig)
        .args(args)
        .output()
        .context("running kubectl")?;
    ensure!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn data_service_classes_are_accepted_and_bad_ones_refused_with_clear_messages() {
    scenario("ds-class", |t: TestEnv| async move {
        t.cluster.install_crds()?;
        let outcome = classes(&t).await;
        delete_labelled::<DataServiceClass>(&t).await?;
        outcome
    })
    .await;
}

async fn classes(t: &TestEnv) -> Result<()> {
    let api = Api::<DataServiceClass>::all(t.client.clone());
    let pp = PostParams::default();
    let name = unique_name("postgres-dung-chung");
    api.create(&pp, &postgres_class(&name, &t.namespace))
        .await?;
    let got = api.get(&name).await?;
    ensure!(
        got.spec == postgres_class(&name, &t.namespace).spec,
        "the class did not round-trip: {:?}",
        got.spec
    );
    ensure!(
        got.spec.server.tls.enabled,
        "TLS is on unless said otherwise"
    );

    // Defaults: every security level, no sharing down.
    let minimal = unique_name("redis-dung-chung");
    let raw = Api::<DynamicObject>::all_with(
        t.client.clone(),
        &ApiResource::erase::<DataServiceClass>(&()),
    );
    create_raw::<DataServiceClass>(
        &raw,
        serde_json::json!({
            "metadata": {"name": minimal, "labels": {TEST_LABEL: t.namespace}},
            "spec": {
                "engine": "redis",
                "server": {"host": "10.20.0.16", "port": 6379, "tls": {"enabled": false},
                           "adminSecretRef": {"namespace": "govbroker-system", "name": "redis-admin"}},
                "plans": [{"name": "cache-nho", "description": "Bộ nhớ đệm nhỏ",
                           "limits": {"memory": "256Mi", "maxKeys": 100000}}],
            },
        }),
    )
    .await?;
    let redis = api.get(&minimal).await?;
    ensure!(
        redis.spec.allowed_security_levels == [1, 2, 3, 4, 5],
        "{:?}",
        redis.spec.allowed_security_levels
    );
    ensure!(
        !redis.spec.allow_share_down,
        "allowShareDown defaults to false"
    );

    // Duplicate plan names.
    let mut dup = postgres_class(&unique_name("dup"), &t.namespace);
    dup.spec.plans[1].name = "co-ban".to_owned();
    refused(
        api.create(&pp, &dup).await,
        "plan names must be unique within a DataServiceClass",
    )?;
    // A port out of range.
    let mut port = postgres_class(&unique_name("port"), &t.namespace);
    port.spec.server.port = 70000;
    refused(api.create(&pp, &port).await, "spec.server.port")?;
    port.spec.server.port = 0;
    refused(api.create(&pp, &port).await, "spec.server.port")?;
    // Limits that do not fit the engine.
    let mut redis_limit = postgres_class(&unique_name("limit"), &t.namespace);
    redis_limit.spec.plans[0]
        .limits
        .as_mut()
        .context("limits")?
        .memory = Some(Quantity("1Gi".to_owned()));
    refused(
        api.create(&pp, &redis_limit).await,
        "a postgres plan may limit maxConnections and storage only",
    )?;
    let mut pg_limit = postgres_class(&unique_name("limit"), &t.namespace);
    pg_limit.spec.engine = DataServiceEngine::Redis;
    refused(
        api.create(&pp, &pg_limit).await,
        "a redis plan may limit memory and maxKeys only",
    )?;
    // No plans, too many connections, a security level out of range, a CA without TLS.
    let mut empty = postgres_class(&unique_name("empty"), &t.namespace);
    empty.spec.plans.clear();
    refused(api.create(&pp, &empty).await, "spec.plans")?;
    let mut conns = postgres_class(&unique_name("conns"), &t.namespace);
    conns.spec.plans[0]
        .limits
        .as_mut()
        .context("limits")?
        .max_connections = Some(1001);
    refused(api.create(&pp, &conns).await, "maxConnections")?;
    let mut level = postgres_class(&unique_name("level"), &t.namespace);
    level.spec.allowed_security_levels = vec![6];
    refused(api.create(&pp, &level).await, "allowedSecurityLevels")?;
    let mut ca = postgres_class(&unique_name("ca"), &t.namespace);
    ca.spec.server.tls = ServerTls {
        enabled: false,
        ca_secret_ref: Some(SecretRef {
            namespace: "govbroker-system".to_owned(),
            name: "ca".to_owned(),
        }),
    };
    refused(
        api.create(&pp, &ca).await,
        "tls.caSecretRef is only used with tls.enabled: true",
    )?;

    // kubectl shows the printer columns and finds the class by short name and category.
    let table = kubectl(t, &["get", "dataserviceclasses", &name])?;
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "ENGINE", "HOST", "PORT", "PLANS", "READY", "AGE"] {
        ensure!(header.contains(column), "no column {column} in:\n{table}");
    }
    ensure!(
        table.contains("postgres")
            && table.contains("pg-dung-chung.hanoi.gov.vn")
            && table.contains("5432"),
        "the row lacks engine, host, port or plans:\n{table}"
    );
    let short = kubectl(
        t,
        &[
            "get",
            "dsc",
            "-l",
            &format!("{TEST_LABEL}={}", t.namespace),
            "-o",
            "name",
        ],
    )?;
    ensure!(
        short.contains(&name) && short.contains(&minimal),
        "kubectl get dsc:\n{short}"
    );
    let category = kubectl(
        t,
        &[
            "get",
            "govbroker",
            "-l",
            &format!("{TEST_LABEL}={}", t.namespace),
            "-o",
            "name",
        ],
    )?;
    ensure!(
        category.contains(&format!("dataserviceclass.govbroker.io/{name}")),
        "kubectl get govbroker:\n{category}"
    );
    Ok(())
}

#[tokio::test]
async fn data_service_claims_default_to_retain_and_keep_their_class_and_plan() {
    scenario("ds-claim", |t: TestEnv| async move {
        start_operator()?;
        let class = unique_name("pg-crd");
        unreachable_class(&t, &class).await?;
        let outcome = claims(&t, &class).await;
        // With the class gone the claims' finalizers have nothing to clean up.
        delete_labelled::<DataServiceClass>(&t).await?;
        outcome
    })
    .await;
}

async fn claims(t: &TestEnv, class: &str) -> Result<()> {
    {
        let (_, ns) = govbroker_e2e::data_services::agency_for_claims(
            t,
            "ds-crd",
            2,
            "chu@test.gov.vn",
            &[(class, 10)],
        )
        .await?;
        let api = Api::<DataServiceClaim>::namespaced(t.client.clone(), &ns);
        let pp = PostParams::default();
        let name = unique_name("csdl-ho-tich");
        api.create(&pp, &claim(&name, class)).await?;
        let got = api.get(&name).await?;
        ensure!(
            got.spec == claim(&name, class).spec,
            "the claim did not round-trip: {:?}",
            got.spec
        );

        // deletionPolicy defaults to Retain when left out.
        let raw = Api::<DynamicObject>::namespaced_with(
            t.client.clone(),
            &ns,
            &ApiResource::erase::<DataServiceClaim>(&()),
        );
        let bare = unique_name("bare");
        create_raw::<DataServiceClaim>(
            &raw,
            serde_json::json!({
                "metadata": {"name": bare},
                "spec": {"className": class, "plan": "co-ban"},
            }),
        )
        .await?;
        let bare = api.get(&bare).await?;
        ensure!(
            bare.spec.deletion_policy == DeletionPolicy::Retain,
            "deletionPolicy is {:?}",
            bare.spec.deletion_policy
        );

        // An unknown deletionPolicy.
        refused(
            create_raw::<DataServiceClaim>(
                &raw,
                serde_json::json!({
                    "metadata": {"name": unique_name("bad")},
                    "spec": {"className": class, "plan": "co-ban", "deletionPolicy": "Destroy"},
                }),
            )
            .await,
            "Unsupported value: \"Destroy\"",
        )?;
        // Bad parameter keys, too many parameters.
        let mut bad_key = claim(&unique_name("bad"), class);
        bad_key
            .spec
            .parameters
            .insert("khóa có dấu".to_owned(), "x".to_owned());
        refused(
            api.create(&pp, &bad_key).await,
            "spec.parameters keys start with a letter or digit",
        )?;
        let mut many = claim(&unique_name("bad"), class);
        many.spec.parameters = (0..17).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        refused(api.create(&pp, &many).await, "spec.parameters")?;

        // className and plan are immutable; deletionPolicy may change.
        let patch = |spec: serde_json::Value| serde_json::json!({"spec": spec});
        refused(
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&patch(serde_json::json!({"className": "postgres-khac"}))),
            )
            .await,
            "spec.className cannot change after the claim is created",
        )?;
        refused(
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&patch(serde_json::json!({"plan": "nang-cao"}))),
            )
            .await,
            "spec.plan cannot change after the claim is created",
        )?;
        let changed = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&patch(serde_json::json!({"deletionPolicy": "Delete"}))),
            )
            .await?;
        ensure!(
            changed.spec.deletion_policy == DeletionPolicy::Delete
                && changed.spec.class_name == class,
            "{:?}",
            changed.spec
        );

        // kubectl explain shows the descriptions; kubectl get the columns.
        let explain = kubectl(t, &["explain", "dataserviceclaim.spec"])?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for fragment in [
            "className",
            "Cannot change after creation",
            "deletionPolicy",
            "Public data is never destroyed by accident",
            "parameters",
        ] {
            ensure!(
                explain.contains(fragment),
                "kubectl explain lacks {fragment:?}:\n{explain}"
            );
        }
        let explain_kind = kubectl(t, &["explain", "dataserviceclaim"])?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        ensure!(
            explain_kind.contains("an agency's instance of a shared data service")
                || explain_kind.contains("An agency's instance of a shared data service"),
            "kubectl explain dataserviceclaim:\n{explain_kind}"
        );
        let table = kubectl(t, &["get", "dsclaim", "-n", &ns, &name])?;
        let header = table.lines().next().unwrap_or_default();
        for column in ["CLASS", "PLAN", "PHASE", "ENDPOINT", "SECRET", "AGE"] {
            ensure!(header.contains(column), "no column {column} in:\n{table}");
        }
        Ok(())
    }
}

#[tokio::test]
async fn data_shares_need_another_agency_an_expiry_and_keep_their_consent() {
    scenario("ds-share", |t: TestEnv| async move {
        start_operator()?;
        let class = unique_name("pg-crd");
        unreachable_class(&t, &class).await?;
        let outcome = shares(&t, &class).await;
        delete_labelled::<DataShare>(&t).await?;
        delete_labelled::<DataServiceClass>(&t).await?;
        outcome
    })
    .await;
}

async fn shares(t: &TestEnv, class: &str) -> Result<()> {
    // The webhook wants real agencies and an existing claim of the owner.
    let (owner, owner_ns) = govbroker_e2e::data_services::agency_for_claims(
        t,
        "so-y-te",
        2,
        "chu@test.gov.vn",
        &[(class, 1)],
    )
    .await?;
    let (consumer, _) =
        govbroker_e2e::data_services::agency_for_claims(t, "bhxh", 2, "chu@test.gov.vn", &[])
            .await?;
    Api::<DataServiceClaim>::namespaced(t.client.clone(), &owner_ns)
        .create(&PostParams::default(), &claim("ho-so-benh-an", class))
        .await?;
    let (owner, consumer) = (owner.as_str(), consumer.as_str());
    let api = Api::<DataShare>::all(t.client.clone());
    let pp = PostParams::default();
    let name = unique_name("benh-an-cho-bhxh");
    let wanted = share(&name, owner, consumer, &t.namespace);
    api.create(&pp, &wanted).await?;
    let got = api.get(&name).await?;
    ensure!(
        got.spec == wanted.spec,
        "the share did not round-trip: {:?}",
        got.spec
    );
    ensure!(
        !got.spec.approved && !got.spec.revoked,
        "a new share is neither approved nor revoked"
    );

    // The consumer must be another agency; the namespace must be the owner's.
    refused(
        api.create(
            &pp,
            &share(&unique_name("self"), owner, owner, &t.namespace),
        )
        .await,
        "spec.consumer.agency must differ from spec.owner.agency",
    )?;
    // Another agency's namespace: the webhook (which runs before the CRD's rules for
    // shares) refuses it.
    let mut elsewhere = share(&unique_name("ns"), owner, consumer, &t.namespace);
    elsewhere.spec.owner.namespace = format!("{consumer}-prod");
    refused(
        api.create(&pp, &elsewhere).await,
        &format!("is not a namespace of agency \"{owner}\""),
    )?;

    let raw =
        Api::<DynamicObject>::all_with(t.client.clone(), &ApiResource::erase::<DataShare>(&()));
    let body = |access: Option<&str>, expires: Option<&str>| {
        let mut spec = serde_json::json!({
            "owner": {"agency": owner, "namespace": owner_ns, "claim": "ho-so-benh-an"},
            "consumer": {"agency": consumer},
        });
        if let Some(a) = access {
            spec["access"] = a.into();
        }
        if let Some(e) = expires {
            spec["expiresAt"] = e.into();
        }
        serde_json::json!({"metadata": {"name": unique_name("raw"), "labels": {TEST_LABEL: t.namespace}}, "spec": spec})
    };
    // Only ReadOnly access exists; an expiry is required and must be a date-time.
    refused(
        create_raw::<DataShare>(&raw, body(Some("ReadWrite"), Some("2026-12-31T16:59:59Z"))).await,
        "Unsupported value: \"ReadWrite\"",
    )?;
    refused(
        create_raw::<DataShare>(&raw, body(Some("ReadOnly"), None)).await,
        "spec.expiresAt: Required value",
    )?;
    refused(
        create_raw::<DataShare>(&raw, body(Some("ReadOnly"), Some("cuối năm"))).await,
        "spec.expiresAt",
    )?;

    // Owner, consumer and access cannot change.
    let merge = |spec: serde_json::Value| serde_json::json!({"spec": spec});
    refused(
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&merge(
                serde_json::json!({"consumer": {"agency": "cong-an-ha-noi"}}),
            )),
        )
        .await,
        "owner, consumer and access of a DataShare cannot change",
    )?;
    // Before approval the expiry may move; approval is then final, and so is the expiry.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&merge(
            serde_json::json!({"expiresAt": "2026-06-30T16:59:59Z"}),
        )),
    )
    .await?;
    let approved = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&merge(serde_json::json!({"approved": true}))),
        )
        .await?;
    ensure!(approved.spec.approved, "approval was not kept");
    refused(
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&merge(serde_json::json!({"approved": false}))),
        )
        .await,
        "an approval cannot be withdrawn",
    )?;
    refused(
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&merge(
                serde_json::json!({"expiresAt": "2027-12-31T16:59:59Z"}),
            )),
        )
        .await,
        "spec.expiresAt cannot change once the share is approved",
    )?;
    // Revocation is final.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&merge(serde_json::json!({"revoked": true}))),
    )
    .await?;
    refused(
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&merge(serde_json::json!({"revoked": false}))),
        )
        .await,
        "a revoked DataShare stays revoked",
    )?;

    let table = kubectl(t, &["get", "dshare", &name])?;
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "OWNER", "CLAIM", "CONSUMER", "ACCESS", "EXPIRES", "PHASE", "AGE",
    ] {
        ensure!(header.contains(column), "no column {column} in:\n{table}");
    }
    ensure!(
        table.contains(owner) && table.contains(consumer) && table.contains("ReadOnly"),
        "the row:\n{table}"
    );
    Ok(())
}
