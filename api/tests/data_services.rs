//! The DataServices service against the real control plane, the operator (broker and
//! admission webhook) and the local cloud's PostgreSQL: an agency's owners claim a
//! database in their namespace and are refused in another agency's; credentials go only
//! to callers who may read Secrets there; bad input is refused with the field named and
//! creates nothing; a share is proposed, approved by the owner agency's owner (and by no
//! one else), its read-only credentials go only to the consumer agency's owners once it is
//! Granted, and it is revoked; every change and refusal is in the audit trail.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use govbroker_api::proto;
use govbroker_crds::{Agency, DataServiceClaim, DataServiceClass, DataShare, DataSharePhase};
use govbroker_e2e::api::PLATFORM_ADMINS;
use govbroker_e2e::{TEST_LABEL, cluster, eventually, scenario, unique_name};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt as _};
use serde_json::json;
use tonic::Code;

/// What a call came to: Ok or the gRPC code.
fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// An agency from JSON (so fields added to the type later need no change here): the
/// root holds no environment; the others one, `prod`. Each may claim a few of `class`.
fn agency(
    name: &str,
    level: &str,
    parent: Option<&str>,
    owner: &str,
    class: &str,
) -> Result<Agency> {
    let (quota, environments) = match parent {
        None => (
            json!({"cpu": "16", "memory": "32Gi", "dataServices": {class: 10}}),
            json!([]),
        ),
        Some(_) => (
            json!({"cpu": "4", "memory": "8Gi", "dataServices": {class: 3}}),
            json!([{"name": "prod", "quota": {"cpu": "1", "memory": "1Gi"}}]),
        ),
    };
    let mut value = json!({
        "apiVersion": "govbroker.io/v1alpha1",
        "kind": "Agency",
        "metadata": {"name": name},
        "spec": {
            "displayName": format!("Cơ quan {name}"),
            "level": level,
            "securityLevel": 2,
            "owners": {"users": [owner]},
            "environments": environments,
            "quota": quota,
        },
    });
    if let Some(parent) = parent {
        value["spec"]["parent"] = json!(parent);
    }
    Ok(serde_json::from_value(value)?)
}

fn claim(
    agency: &str,
    name: &str,
    class: &str,
    plan: &str,
) -> proto::CreateDataServiceClaimRequest {
    proto::CreateDataServiceClaimRequest {
        claim: Some(proto::DataServiceClaim {
            name: name.to_owned(),
            agency: agency.to_owned(),
            environment: "prod".to_owned(),
            class_name: class.to_owned(),
            plan: plan.to_owned(),
            deletion_policy: "Delete".to_owned(),
            ..Default::default()
        }),
    }
}

fn address(agency: &str, name: &str) -> (String, String, String) {
    (agency.to_owned(), "prod".to_owned(), name.to_owned())
}

fn get(agency: &str, name: &str) -> proto::GetDataServiceClaimRequest {
    let (agency, environment, name) = address(agency, name);
    proto::GetDataServiceClaimRequest {
        agency,
        environment,
        name,
    }
}

fn share_binding(name: &str, environment: &str) -> proto::GetDataShareBindingRequest {
    proto::GetDataShareBindingRequest {
        name: name.to_owned(),
        environment: environment.to_owned(),
    }
}

fn binding(agency: &str, name: &str) -> proto::GetDataServiceBindingRequest {
    let (agency, environment, name) = address(agency, name);
    proto::GetDataServiceBindingRequest {
        agency,
        environment,
        name,
    }
}

/// The admin Secret of the test's class, in the test namespace.
async fn admin_secret(client: &kube::Client, namespace: &str) -> Result<()> {
    let admin = cluster().postgres_admin()?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("pg-admin".to_owned()),
            ..Default::default()
        },
        data: Some(
            [
                ("username".to_owned(), ByteString(admin.user.into_bytes())),
                (
                    "password".to_owned(),
                    ByteString(admin.password.into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the admin Secret")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_claim_read_credentials_and_share_as_rbac_allows() {
    support::server();
    scenario("api-data", |t| async move {
        let id = unique_name("d");
        let (owner_a, viewer_a, owner_p, owner_b) = (
            format!("owner-a-{id}"),
            format!("viewer-a-{id}"),
            format!("owner-p-{id}"),
            format!("owner-b-{id}"),
        );
        // The class: the local cloud's PostgreSQL, its admin Secret in the test namespace.
        admin_secret(&t.client, &t.namespace).await?;
        let class = unique_name("e2e-api-pg");
        let classes = Api::<DataServiceClass>::all(t.client.clone());
        classes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "govbroker.io/v1alpha1",
                    "kind": "DataServiceClass",
                    "metadata": {"name": class, "labels": {TEST_LABEL: t.namespace}},
                    "spec": {
                        "engine": "postgres",
                        "server": {
                            "host": "127.0.0.1",
                            "port": 15432,
                            "tls": {"enabled": false},
                            "adminSecretRef": {"namespace": t.namespace, "name": "pg-admin"},
                        },
                        "plans": [{"name": "nho", "description": "Gói nhỏ cho kiểm thử", "limits": {"maxConnections": 5}}],
                    },
                }))?,
            )
            .await
            .context("creating the class")?;

        let outcome = run(&t, &class, &id, [&owner_a, &viewer_a, &owner_p, &owner_b]).await;

        if !govbroker_e2e::keep_state() {
            // Claims are deleted with the agencies' namespaces; the class goes last.
            let _ = classes.delete(&class, &DeleteParams::background()).await;
        }
        outcome
    })
    .await;
}

async fn run(
    t: &govbroker_e2e::TestEnv,
    class: &str,
    id: &str,
    [owner_a, viewer_a, owner_p, owner_b]: [&String; 4],
) -> Result<()> {
    let root = unique_name("dsapi");
    let (a, b) = (format!("{root}-a"), format!("{root}-b"));
    let agencies = Api::<Agency>::all(t.client.clone());
    let mut tree = vec![
        agency(&root, "Central", None, owner_p, class)?,
        agency(&a, "Province", Some(&root), owner_a, class)?,
        agency(&b, "Province", Some(&root), owner_b, class)?,
    ];
    tree[1].spec.viewers.users = vec![viewer_a.clone()];
    for mut ag in tree {
        govbroker_e2e::label_for_test(&mut ag, &t.namespace);
        agencies.create(&PostParams::default(), &ag).await?;
    }
    for name in [&root, &a, &b] {
        eventually(
            &format!("agency {name} is Ready"),
            Duration::from_secs(60),
            || {
                let agencies = agencies.clone();
                let name = name.clone();
                async move {
                    let agency = agencies.get(&name).await?;
                    let ready = agency
                        .status
                        .iter()
                        .flat_map(|s| &s.conditions)
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    Ok(ready.then_some(()))
                }
            },
        )
        .await?;
    }

    let c = cluster();
    let admin = support::grpc(Some(&c.token(&format!("admin-{id}"), &[PLATFORM_ADMINS])?)).await?;
    let as_owner_a = support::grpc(Some(&c.token(owner_a, &[])?)).await?;
    let as_viewer_a = support::grpc(Some(&c.token(viewer_a, &[])?)).await?;
    let as_owner_p = support::grpc(Some(&c.token(owner_p, &[])?)).await?;
    let as_owner_b = support::grpc(Some(&c.token(owner_b, &[])?)).await?;
    let anonymous = support::grpc(None).await?;

    let failures = std::cell::RefCell::new(Vec::new());
    let check = |what: &str, who: &str, got: Code, want: Code| {
        if got != want {
            failures
                .borrow_mut()
                .push(format!("{what} as {who}: got {got:?}, want {want:?}"));
        }
    };

    // The catalog: every authenticated caller sees the class and its plan.
    eventually(
        "the API's cache has the class",
        Duration::from_secs(30),
        || {
            let mut client = as_owner_b.data_services.clone();
            let class = class.to_owned();
            async move {
                let list = client
                    .list_data_service_classes(proto::ListDataServiceClassesRequest::default())
                    .await?
                    .into_inner();
                Ok(list
                    .classes
                    .into_iter()
                    .find(|c| c.name == class)
                    .filter(|c| {
                        c.plans
                            .iter()
                            .any(|p| p.name == "nho" && p.max_connections == 5)
                    }))
            }
        },
    )
    .await?;
    check(
        "ListDataServiceClasses",
        "anonymous",
        code(
            anonymous
                .data_services
                .clone()
                .list_data_service_classes(proto::ListDataServiceClassesRequest::default())
                .await,
        ),
        Code::Unauthenticated,
    );

    // Bad input: refused with the field named, and nothing is created.
    let bad: Vec<(&str, proto::CreateDataServiceClaimRequest)> = vec![
        ("claim.agency", claim("Sở-Y-Tế", "x", class, "nho")),
        ("claim.name", claim(&a, "x;drop", class, "nho")),
        (
            "claim.class_name",
            claim(&a, "x", "khong-co-lop-nay", "nho"),
        ),
        ("claim.plan", claim(&a, "x", class, "khong-co")),
        ("claim.deletion_policy", {
            let mut r = claim(&a, "x", class, "nho");
            if let Some(c) = r.claim.as_mut() {
                c.deletion_policy = "Destroy".into();
            }
            r
        }),
        ("claim.environment", {
            let mut r = claim(&a, "x", class, "nho");
            if let Some(c) = r.claim.as_mut() {
                c.environment = String::new();
            }
            r
        }),
        (
            "claim",
            proto::CreateDataServiceClaimRequest { claim: None },
        ),
    ];
    for (field, request) in bad {
        match as_owner_a.data_services.clone().create_data_service_claim(request).await {
            Err(s) if s.code() == Code::InvalidArgument && s.message().contains(field) => {}
            other => failures.borrow_mut().push(format!(
                "CreateDataServiceClaim with a bad {field}: got {:?}, want InvalidArgument naming it",
                other.map(|r| r.into_inner()).map_err(|s| (s.code(), s.message().to_owned()))
            )),
        }
    }

    // Claims: an owner claims in their own namespace, and nobody else may.
    let ns_a = format!("{a}-prod");
    for (who, caller, target, want) in [
        ("owner of B", &as_owner_b, &a, Code::PermissionDenied),
        ("viewer of A", &as_viewer_a, &a, Code::PermissionDenied),
        (
            "owner of A's parent",
            &as_owner_p,
            &a,
            Code::PermissionDenied,
        ),
        ("owner of A, in B", &as_owner_a, &b, Code::PermissionDenied),
        ("anonymous", &anonymous, &a, Code::Unauthenticated),
        ("owner of A", &as_owner_a, &a, Code::Ok),
    ] {
        let got = code(
            caller
                .data_services
                .clone()
                .create_data_service_claim(claim(target, "csdl", class, "nho"))
                .await,
        );
        check("CreateDataServiceClaim(csdl)", who, got, want);
    }
    let in_a: Vec<String> = Api::<DataServiceClaim>::namespaced(t.client.clone(), &ns_a)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    if in_a != vec!["csdl".to_owned()] {
        failures.borrow_mut().push(format!(
            "A's namespace holds claims {in_a:?}, want only csdl"
        ));
    }
    let in_b = Api::<DataServiceClaim>::namespaced(t.client.clone(), &format!("{b}-prod"))
        .list(&ListParams::default())
        .await?
        .items
        .len();
    if in_b != 0 {
        failures
            .borrow_mut()
            .push(format!("B's namespace holds {in_b} claims, want none"));
    }

    // Reading: A's owners and readers (its viewers, its parent's owners) may; B's may not.
    eventually("the claim is Ready", Duration::from_secs(90), || {
        let mut client = as_owner_a.data_services.clone();
        let a = a.clone();
        async move {
            let found = client.get_data_service_claim(get(&a, "csdl")).await;
            Ok(found
                .ok()
                .map(|r| r.into_inner())
                .filter(|c| c.status.as_ref().is_some_and(|s| s.phase == "Ready")))
        }
    })
    .await?;
    for (who, caller, want) in [
        ("owner of A", &as_owner_a, Code::Ok),
        ("viewer of A", &as_viewer_a, Code::Ok),
        ("owner of A's parent", &as_owner_p, Code::Ok),
        ("platform admin", &admin, Code::Ok),
        ("owner of B", &as_owner_b, Code::PermissionDenied),
        ("anonymous", &anonymous, Code::Unauthenticated),
    ] {
        let got = code(
            caller
                .data_services
                .clone()
                .get_data_service_claim(get(&a, "csdl"))
                .await,
        );
        check("GetDataServiceClaim(A/csdl)", who, got, want);
    }
    check(
        "GetDataServiceClaim(A/khong-co)",
        "owner of A",
        code(
            as_owner_a
                .data_services
                .clone()
                .get_data_service_claim(get(&a, "khong-co"))
                .await,
        ),
        Code::NotFound,
    );
    check(
        "GetDataServiceClaim(A/khong-co)",
        "owner of B",
        code(
            as_owner_b
                .data_services
                .clone()
                .get_data_service_claim(get(&a, "khong-co"))
                .await,
        ),
        Code::PermissionDenied,
    );
    let listed = |caller: &support::Grpc, agency: &str| {
        let mut client = caller.data_services.clone();
        let request = proto::ListDataServiceClaimsRequest {
            agency: agency.to_owned(),
            ..Default::default()
        };
        async move {
            client.list_data_service_claims(request).await.map(|r| {
                r.into_inner()
                    .claims
                    .into_iter()
                    .map(|c| format!("{}/{}/{}", c.agency, c.environment, c.name))
                    .collect::<BTreeSet<_>>()
            })
        }
    };
    let want_a: BTreeSet<String> = [format!("{a}/prod/csdl")].into();
    for (who, caller, agency, want) in [
        ("owner of A", &as_owner_a, a.as_str(), want_a.clone()),
        ("owner of A's parent", &as_owner_p, "", want_a.clone()),
        ("owner of B", &as_owner_b, "", BTreeSet::new()),
        ("owner of B", &as_owner_b, b.as_str(), BTreeSet::new()),
    ] {
        match listed(caller, agency).await {
            Ok(got) => {
                let got: BTreeSet<String> =
                    got.into_iter().filter(|c| c.starts_with(&root)).collect();
                if got != want {
                    failures.borrow_mut().push(format!(
                        "ListDataServiceClaims(agency={agency:?}) as {who}: got {got:?}, want {want:?}"
                    ));
                }
            }
            Err(s) => failures.borrow_mut().push(format!(
                "ListDataServiceClaims(agency={agency:?}) as {who}: {s}"
            )),
        }
    }
    check(
        "ListDataServiceClaims(A/prod)",
        "owner of B",
        code(
            as_owner_b
                .data_services
                .clone()
                .list_data_service_claims(proto::ListDataServiceClaimsRequest {
                    agency: a.clone(),
                    environment: "prod".into(),
                    ..Default::default()
                })
                .await,
        ),
        Code::PermissionDenied,
    );

    // Credentials: only callers who may read Secrets in A's namespace (its owners).
    let secret = Api::<Secret>::namespaced(t.client.clone(), &ns_a)
        .get("csdl-binding")
        .await?;
    let stored = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    match as_owner_a
        .data_services
        .clone()
        .get_data_service_binding(binding(&a, "csdl"))
        .await
    {
        Ok(r) => {
            let b = r.into_inner();
            let ok = b.host == "127.0.0.1"
                && b.port == 15432
                && b.username == stored("username")
                && !b.password.is_empty()
                && b.password == stored("password")
                && b.database == stored("database")
                && b.uri.starts_with("postgresql://")
                && b.secret_name == "csdl-binding"
                && b.namespace == ns_a;
            if !ok {
                failures.borrow_mut().push(format!(
                    "GetDataServiceBinding as owner of A: wrong binding for {} (user {}, db {})",
                    b.secret_name, b.username, b.database
                ));
            }
        }
        Err(s) => failures
            .borrow_mut()
            .push(format!("GetDataServiceBinding as owner of A: {s}")),
    }
    for (who, caller, want) in [
        ("viewer of A", &as_viewer_a, Code::PermissionDenied),
        ("owner of A's parent", &as_owner_p, Code::PermissionDenied),
        ("platform admin", &admin, Code::PermissionDenied),
        ("owner of B", &as_owner_b, Code::PermissionDenied),
        ("anonymous", &anonymous, Code::Unauthenticated),
    ] {
        match caller
            .data_services
            .clone()
            .get_data_service_binding(binding(&a, "csdl"))
            .await
        {
            Ok(_) => failures.borrow_mut().push(format!(
                "GetDataServiceBinding(A/csdl) as {who}: credentials handed out"
            )),
            Err(s) => {
                check("GetDataServiceBinding(A/csdl)", who, s.code(), want);
                if s.message().contains(&stored("password")) {
                    failures
                        .borrow_mut()
                        .push(format!("the refusal for {who} shows the password"));
                }
            }
        }
    }

    // Rotation: A's owners may give the claim a new password; the Secret follows.
    let rotate = || {
        let (agency, environment, name) = address(&a, "csdl");
        proto::RotateDataServicePasswordRequest {
            agency,
            environment,
            name,
        }
    };
    for (who, caller, want) in [
        ("viewer of A", &as_viewer_a, Code::PermissionDenied),
        ("owner of B", &as_owner_b, Code::PermissionDenied),
        ("owner of A", &as_owner_a, Code::Ok),
    ] {
        let got = code(
            caller
                .data_services
                .clone()
                .rotate_data_service_password(rotate())
                .await,
        );
        check("RotateDataServicePassword(A/csdl)", who, got, want);
    }
    let old_password = stored("password");
    eventually(
        "the binding has a new password",
        Duration::from_secs(60),
        || {
            let mut client = as_owner_a.data_services.clone();
            let (a, old_password) = (a.clone(), old_password.clone());
            async move {
                let b = client
                    .get_data_service_binding(binding(&a, "csdl"))
                    .await?
                    .into_inner();
                Ok((!b.password.is_empty() && b.password != old_password).then_some(()))
            }
        },
    )
    .await?;

    // Shares: A's owner proposes; only A's owners approve; either side's owners revoke.
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * 30))?
        .to_string();
    let share = |owner: &str, consumer: &str, expires: &str| proto::CreateDataShareRequest {
        name: String::new(),
        owner_agency: owner.to_owned(),
        owner_environment: "prod".to_owned(),
        claim: "csdl".to_owned(),
        consumer_agency: consumer.to_owned(),
        expires_at: expires.to_owned(),
        purpose: "Đối soát hồ sơ hộ tịch giữa hai sở".to_owned(),
    };
    for (field, request) in [
        ("consumer_agency", share(&a, &a, &expires)),
        ("expires_at", share(&a, &b, "2020-01-01T00:00:00Z")),
        ("expires_at", share(&a, &b, "ngày mai")),
        ("owner_agency", share("", &b, &expires)),
    ] {
        match as_owner_a
            .data_services
            .clone()
            .create_data_share(request)
            .await
        {
            Err(s) if s.code() == Code::InvalidArgument && s.message().contains(field) => {}
            other => failures.borrow_mut().push(format!(
                "CreateDataShare with a bad {field}: got {:?}",
                other
                    .map(|r| r.into_inner().name)
                    .map_err(|s| (s.code(), s.message().to_owned()))
            )),
        }
    }
    check(
        "CreateDataShare(A→B)",
        "viewer of A",
        code(
            as_viewer_a
                .data_services
                .clone()
                .create_data_share(share(&a, &b, &expires))
                .await,
        ),
        Code::PermissionDenied,
    );
    let proposed = as_owner_a
        .data_services
        .clone()
        .create_data_share(share(&a, &b, &expires))
        .await
        .context("CreateDataShare as owner of A")?
        .into_inner();
    if proposed.approved || proposed.owner_namespace != ns_a || proposed.access != "ReadOnly" {
        failures
            .borrow_mut()
            .push(format!("the proposed share reads {proposed:?}"));
    }
    let name = proposed.name.clone();
    eventually(
        "the API's cache has the share",
        Duration::from_secs(30),
        || {
            let mut client = as_owner_b.data_services.clone();
            let name = name.clone();
            async move {
                let list = client
                    .list_data_shares(proto::ListDataSharesRequest::default())
                    .await?
                    .into_inner();
                Ok(list.shares.iter().any(|s| s.name == name).then_some(()))
            }
        },
    )
    .await?;
    for (who, caller, agency, visible) in [
        ("owner of A", &as_owner_a, "", true),
        ("viewer of A", &as_viewer_a, "", true),
        ("owner of A's parent", &as_owner_p, a.as_str(), true),
        ("owner of B (consumer)", &as_owner_b, b.as_str(), true),
        ("platform admin", &admin, "", true),
    ] {
        let got = as_owner_a_or(caller, agency).await;
        match got {
            Ok(names) if names.contains(&name) == visible => {}
            other => failures.borrow_mut().push(format!(
                "ListDataShares(agency={agency:?}) as {who}: {other:?}"
            )),
        }
    }
    check(
        "ListDataShares(agency=A)",
        "anonymous",
        code(
            anonymous
                .data_services
                .clone()
                .list_data_shares(proto::ListDataSharesRequest {
                    agency: a.clone(),
                    ..Default::default()
                })
                .await,
        ),
        Code::Unauthenticated,
    );
    // Before approval nothing is granted: the consumer's owner is told so (not found).
    match as_owner_b
        .data_services
        .clone()
        .get_data_share_binding(share_binding(&name, "prod"))
        .await
    {
        Err(s) if s.code() == Code::NotFound && s.message().contains("not granted yet") => {}
        other => failures.borrow_mut().push(format!(
            "GetDataShareBinding before approval as owner of B: {:?}",
            other
                .map(|r| r.into_inner().username)
                .map_err(|s| (s.code(), s.message().to_owned()))
        )),
    }
    let approve = || proto::ApproveDataShareRequest { name: name.clone() };
    for (who, caller, want) in [
        ("owner of B (consumer)", &as_owner_b, Code::PermissionDenied),
        ("viewer of A", &as_viewer_a, Code::PermissionDenied),
        ("anonymous", &anonymous, Code::Unauthenticated),
    ] {
        let got = code(
            caller
                .data_services
                .clone()
                .approve_data_share(approve())
                .await,
        );
        check("ApproveDataShare", who, got, want);
    }
    match as_owner_a
        .data_services
        .clone()
        .approve_data_share(approve())
        .await
    {
        Ok(r) => {
            let approved = r.into_inner();
            if !approved.approved
                || approved.approved_by != *owner_a
                || approved.approved_at.is_empty()
            {
                failures.borrow_mut().push(format!(
                    "approved by owner of A, the share reads approved={} by {:?} at {:?}",
                    approved.approved, approved.approved_by, approved.approved_at
                ));
            }
        }
        Err(s) => failures
            .borrow_mut()
            .push(format!("ApproveDataShare as owner of A: {s}")),
    }
    eventually(
        "the API's cache has the approval",
        Duration::from_secs(30),
        || {
            let mut client = as_owner_a.data_services.clone();
            let name = name.clone();
            async move {
                let list = client
                    .list_data_shares(proto::ListDataSharesRequest::default())
                    .await?
                    .into_inner();
                Ok(list
                    .shares
                    .iter()
                    .any(|s| s.name == name && s.approved)
                    .then_some(()))
            }
        },
    )
    .await?;
    check(
        "ApproveDataShare (again)",
        "owner of A",
        code(
            as_owner_a
                .data_services
                .clone()
                .approve_data_share(approve())
                .await,
        ),
        Code::FailedPrecondition,
    );

    // Granted: the consumer's owners read the read-only login from B's namespace.
    let shares = Api::<DataShare>::all(t.client.clone());
    eventually("the share is Granted", Duration::from_secs(90), || {
        let (shares, name) = (shares.clone(), name.clone());
        async move {
            let share = shares.get(&name).await?;
            Ok(share
                .status
                .and_then(|s| s.phase)
                .filter(|p| *p == DataSharePhase::Granted))
        }
    })
    .await?;
    let ns_b = format!("{b}-prod");
    let share_secret = Api::<Secret>::namespaced(t.client.clone(), &ns_b)
        .get(&format!("{name}-share"))
        .await
        .context("the share's Secret in B's namespace")?;
    let share_stored = |key: &str| {
        share_secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    match as_owner_b
        .data_services
        .clone()
        .get_data_share_binding(share_binding(&name, "prod"))
        .await
    {
        Ok(r) => {
            let got = r.into_inner();
            let ok = got.host == share_stored("host")
                && got.port.to_string() == share_stored("port")
                && got.username == share_stored("username")
                && !got.password.is_empty()
                && got.password == share_stored("password")
                && got.database == share_stored("database")
                && got.uri == share_stored("uri")
                && got.uri.starts_with("postgresql://")
                && got.username != stored("username")
                && got.secret_name == format!("{name}-share")
                && got.namespace == ns_b
                && got.claim == "csdl";
            if !ok {
                failures.borrow_mut().push(format!(
                    "GetDataShareBinding as owner of B: wrong binding {} in {} (user {}, db {})",
                    got.secret_name, got.namespace, got.username, got.database
                ));
            }
        }
        Err(s) => failures
            .borrow_mut()
            .push(format!("GetDataShareBinding as owner of B: {s}")),
    }
    let stranger = support::grpc(Some(&c.token(&format!("stranger-{id}"), &[])?)).await?;
    for (who, caller, want) in [
        (
            "owner of A (owner agency)",
            &as_owner_a,
            Code::PermissionDenied,
        ),
        ("owner of the parent", &as_owner_p, Code::PermissionDenied),
        ("platform admin", &admin, Code::PermissionDenied),
        ("a stranger", &stranger, Code::PermissionDenied),
        ("anonymous", &anonymous, Code::Unauthenticated),
    ] {
        match caller
            .data_services
            .clone()
            .get_data_share_binding(share_binding(&name, "prod"))
            .await
        {
            Ok(_) => failures.borrow_mut().push(format!(
                "GetDataShareBinding as {who}: credentials handed out"
            )),
            Err(s) => {
                check("GetDataShareBinding", who, s.code(), want);
                if s.message().contains(&share_stored("password")) {
                    failures
                        .borrow_mut()
                        .push(format!("the refusal for {who} shows the share's password"));
                }
            }
        }
    }
    check(
        "GetDataShareBinding(environment=Prod)",
        "owner of B",
        code(
            as_owner_b
                .data_services
                .clone()
                .get_data_share_binding(share_binding(&name, "Prod"))
                .await,
        ),
        Code::InvalidArgument,
    );
    check(
        "GetDataShareBinding(khong-co)",
        "owner of B",
        code(
            as_owner_b
                .data_services
                .clone()
                .get_data_share_binding(share_binding("khong-co-chia-se", "prod"))
                .await,
        ),
        Code::NotFound,
    );

    let revoke = || proto::RevokeDataShareRequest { name: name.clone() };
    check(
        "RevokeDataShare",
        "viewer of A",
        code(
            as_viewer_a
                .data_services
                .clone()
                .revoke_data_share(revoke())
                .await,
        ),
        Code::PermissionDenied,
    );
    match as_owner_b
        .data_services
        .clone()
        .revoke_data_share(revoke())
        .await
    {
        Ok(r) if r.get_ref().revoked => {}
        other => failures.borrow_mut().push(format!(
            "RevokeDataShare as owner of B (consumer): {:?}",
            other
                .map(|r| r.into_inner().revoked)
                .map_err(|s| s.to_string())
        )),
    }
    eventually(
        "the API's cache has the revocation",
        Duration::from_secs(30),
        || {
            let mut client = as_owner_a.data_services.clone();
            let name = name.clone();
            async move {
                let list = client
                    .list_data_shares(proto::ListDataSharesRequest::default())
                    .await?
                    .into_inner();
                Ok(list
                    .shares
                    .iter()
                    .any(|s| s.name == name && s.revoked)
                    .then_some(()))
            }
        },
    )
    .await?;
    check(
        "GetDataShareBinding (revoked)",
        "owner of B",
        code(
            as_owner_b
                .data_services
                .clone()
                .get_data_share_binding(share_binding(&name, "prod"))
                .await,
        ),
        Code::NotFound,
    );
    check(
        "RevokeDataShare (again)",
        "owner of A",
        code(
            as_owner_a
                .data_services
                .clone()
                .revoke_data_share(revoke())
                .await,
        ),
        Code::FailedPrecondition,
    );

    // Deleting: B's owner may not; A's owner may.
    let delete = || {
        let (agency, environment, name) = address(&a, "csdl");
        proto::DeleteDataServiceClaimRequest {
            agency,
            environment,
            name,
        }
    };
    check(
        "DeleteDataServiceClaim(A/csdl)",
        "owner of B",
        code(
            as_owner_b
                .data_services
                .clone()
                .delete_data_service_claim(delete())
                .await,
        ),
        Code::PermissionDenied,
    );
    check(
        "DeleteDataServiceClaim(A/csdl)",
        "owner of A",
        code(
            as_owner_a
                .data_services
                .clone()
                .delete_data_service_claim(delete())
                .await,
        ),
        Code::Ok,
    );

    // The trail: who read the credentials, who was refused, the claim, the approval.
    let records = as_owner_a
        .audit
        .clone()
        .list_audit_records(proto::ListAuditRecordsRequest {
            agency: a.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .records;
    let has = |method: &str, user: &str, outcome: &str| {
        records
            .iter()
            .any(|r| r.method.ends_with(method) && r.user == user && r.outcome == outcome)
    };
    for (method, user, outcome) in [
        ("/CreateDataServiceClaim", owner_a.as_str(), "ok"),
        (
            "/CreateDataServiceClaim",
            owner_b.as_str(),
            "permission_denied",
        ),
        ("/GetDataServiceBinding", owner_a.as_str(), "ok"),
        (
            "/GetDataServiceBinding",
            viewer_a.as_str(),
            "permission_denied",
        ),
        (
            "/GetDataServiceClaim",
            owner_b.as_str(),
            "permission_denied",
        ),
        ("/CreateDataShare", owner_a.as_str(), "ok"),
        ("/ApproveDataShare", owner_a.as_str(), "ok"),
        ("/ApproveDataShare", owner_b.as_str(), "permission_denied"),
        ("/RevokeDataShare", owner_b.as_str(), "ok"),
        ("/GetDataShareBinding", owner_b.as_str(), "ok"),
        (
            "/GetDataShareBinding",
            owner_a.as_str(),
            "permission_denied",
        ),
        ("/DeleteDataServiceClaim", owner_a.as_str(), "ok"),
        ("/RotateDataServicePassword", owner_a.as_str(), "ok"),
        (
            "/RotateDataServicePassword",
            viewer_a.as_str(),
            "permission_denied",
        ),
    ] {
        if !has(method, user, outcome) {
            failures.borrow_mut().push(format!(
                "A's trail has no {method} by {user} with outcome {outcome}"
            ));
        }
    }
    if records.iter().any(|r| {
        r.message.contains(&stored("password")) || r.message.contains(&share_stored("password"))
    }) {
        failures
            .borrow_mut()
            .push("a password is in the audit trail".to_owned());
    }

    let failures = failures.into_inner();
    if !failures.is_empty() {
        bail!(
            "{} checks failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// The names of the shares `caller` lists (of `agency`, or of every agency).
async fn as_owner_a_or(
    caller: &support::Grpc,
    agency: &str,
) -> Result<BTreeSet<String>, (Code, String)> {
    caller
        .data_services
        .clone()
        .list_data_shares(proto::ListDataSharesRequest {
            agency: agency.to_owned(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().shares.into_iter().map(|s| s.name).collect())
        .map_err(|s| (s.code(), s.message().to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_the_data_service_routes() -> Result<()> {
    let server = support::server();
    let http = support::http()?;
    let doc: serde_json::Value = http
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await?
        .json()
        .await?;
    for (path, method, operation) in [
        ("/v1/dataserviceclasses", "get", "ListDataServiceClasses"),
        ("/v1/dataserviceclaims", "get", "ListDataServiceClaims"),
        ("/v1/dataserviceclaims", "post", "CreateDataServiceClaim"),
        (
            "/v1/dataserviceclaims/{agency}/{environment}/{name}",
            "get",
            "GetDataServiceClaim",
        ),
        (
            "/v1/dataserviceclaims/{agency}/{environment}/{name}",
            "delete",
            "DeleteDataServiceClaim",
        ),
        (
            "/v1/dataserviceclaims/{agency}/{environment}/{name}/binding",
            "get",
            "GetDataServiceBinding",
        ),
        (
            "/v1/dataserviceclaims/{agency}/{environment}/{name}/rotate-password",
            "post",
            "RotateDataServicePassword",
        ),
        ("/v1/datashares", "get", "ListDataShares"),
        ("/v1/datashares", "post", "CreateDataShare"),
        ("/v1/datashares/{name}/approve", "post", "ApproveDataShare"),
        ("/v1/datashares/{name}/revoke", "post", "RevokeDataShare"),
        (
            "/v1/datashares/{name}/binding",
            "get",
            "GetDataShareBinding",
        ),
    ] {
        let op = &doc["paths"][path][method];
        if op["operationId"] != operation {
            bail!("the OpenAPI document has no {method} {path} ({operation}): {op}");
        }
    }
    let plan = &doc["components"]["schemas"]["DataServicePlan"]["properties"]["maxConnections"];
    if plan["type"] != "integer" || plan["description"].as_str().is_none_or(str::is_empty) {
        bail!("DataServicePlan.maxConnections is not documented: {plan}");
    }
    // The HTTP face validates like gRPC: a bad path value is a 400 naming the field.
    let token = cluster().token(&unique_name("http"), &[])?;
    let answer = http
        .get(format!(
            "{}/v1/dataserviceclaims/BAD_NAME/prod/csdl",
            server.url
        ))
        .bearer_auth(&token)
        .send()
        .await?;
    let status = answer.status().as_u16();
    let body: serde_json::Value = answer.json().await?;
    if status != 400 || body["field"] != "agency" || body["code"] != "invalid_argument" {
        bail!("GET of a claim with a bad agency answered {status} {body}");
    }
    let answer = http
        .get(format!("{}/v1/dataserviceclasses", server.url))
        .bearer_auth(&token)
        .send()
        .await?;
    if answer.status().as_u16() != 200 {
        bail!(
            "the catalog answered {} to an authenticated caller",
            answer.status()
        );
    }
    Ok(())
}
