//! The data-service broker against the real control plane and the local cloud's
//! PostgreSQL and Redis: a claim becomes a closed database (or a Redis user confined to
//! its prefix) with a binding Secret whose credentials work; deletion retains or drops
//! the data as the claim says.

use anyhow::{Context as _, Result, bail, ensure};
use govbroker_crds::{ClaimPhase, DataServiceClaim, DataServiceClass};
use govbroker_domain::data_services::{drop_instance, instance_names};
use govbroker_e2e::data_services::{ServerAdmin, redis_connection_info};
use govbroker_e2e::{
    DEFAULT_TIMEOUT, TEST_LABEL, TestEnv, operator, scenario, unique_name, wait_for,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::wait::conditions;
use kube::{Api, ResourceExt as _};
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

fn start() {
    operator(env!("CARGO_BIN_EXE_govbroker-operator"));
}

/// The admin Secret of a class, in the test namespace.
async fn admin_secret(t: &TestEnv, name: &str, admin: &ServerAdmin) -> Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(
            [
                (
                    "username".to_owned(),
                    ByteString(admin.user.clone().into_bytes()),
                ),
                (
                    "password".to_owned(),
                    ByteString(admin.password.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    t.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the admin Secret")?;
    Ok(())
}

/// A class for the local server on `port`, labelled for the test, with one plan `nho`.
async fn create_class(
    t: &TestEnv,
    engine: &str,
    port: u16,
    secret: &str,
    limits: serde_json::Value,
) -> Result<String> {
    let name = unique_name(&format!("e2e-{engine}"));
    let class: DataServiceClass = serde_json::from_value(json!({
        "apiVersion": "govbroker.io/v1alpha1",
        "kind": "DataServiceClass",
        "metadata": {"name": name, "labels": {TEST_LABEL: t.namespace}},
        "spec": {
            "engine": engine,
            "server": {
                "host": "127.0.0.1",
                "port": port,
                "tls": {"enabled": false},
                "adminSecretRef": {"namespace": t.namespace, "name": secret},
            },
            "plans": [{"name": "nho", "description": "Gói nhỏ", "limits": limits}],
        },
    }))?;
    Api::<DataServiceClass>::all(t.client.clone())
        .create(&PostParams::default(), &class)
        .await
        .context("creating the class")?;
    Ok(name)
}

async fn delete_class(t: &TestEnv, name: &str) {
    if govbroker_e2e::keep_state() {
        return;
    }
    let _ = Api::<DataServiceClass>::all(t.client.clone())
        .delete(name, &DeleteParams::background())
        .await;
}

async fn create_claim(
    t: &TestEnv,
    name: &str,
    class: &str,
    plan: &str,
    policy: Option<&str>,
) -> Result<()> {
    let mut spec = json!({"className": class, "plan": plan});
    if let Some(policy) = policy {
        spec["deletionPolicy"] = json!(policy);
    }
    let claim: DataServiceClaim = serde_json::from_value(json!({
        "apiVersion": "govbroker.io/v1alpha1",
        "kind": "DataServiceClaim",
        "metadata": {"name": name},
        "spec": spec,
    }))?;
    t.api::<DataServiceClaim>()
        .create(&PostParams::default(), &claim)
        .await
        .with_context(|| format!("creating claim {name}"))?;
    Ok(())
}

async fn phase(t: &TestEnv, name: &str, want: ClaimPhase) -> Result<DataServiceClaim> {
    wait_for(
        &t.api::<DataServiceClaim>(),
        name,
        &format!("the claim to be {want:?}"),
        DEFAULT_TIMEOUT,
        move |c: Option<&DataServiceClaim>| {
            c.and_then(|c| c.status.as_ref())
                .is_some_and(|s| s.phase == Some(want))
        },
    )
    .await?
    .context("claim vanished")
}

async fn delete_claim(t: &TestEnv, name: &str) -> Result<()> {
    let api = t.api::<DataServiceClaim>();
    let uid = api.get(name).await?.uid().context("no uid")?;
    api.delete(name, &DeleteParams::background()).await?;
    wait_for(
        &api,
        name,
        "the claim to be deleted",
        DEFAULT_TIMEOUT,
        conditions::is_deleted(&uid),
    )
    .await?;
    Ok(())
}

/// The binding Secret's keys as text.
async fn binding(
    t: &TestEnv,
    claim: &DataServiceClaim,
) -> Result<std::collections::BTreeMap<String, String>> {
    let name = claim
        .status
        .as_ref()
        .and_then(|s| s.binding_secret.clone())
        .context("no bindingSecret in the status")?;
    ensure!(
        name == format!("{}-binding", claim.name_any()),
        "binding Secret {name}"
    );
    let secret = t.api::<Secret>().get(&name).await?;
    ensure!(
        secret
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == claim.uid().as_ref()),
        "the binding Secret is not owned by the claim"
    );
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn as_binding(b: &std::collections::BTreeMap<String, String>, db: &str) -> Result<Config> {
    let mut config = Config::new();
    config
        .host(&b["host"])
        .port(b["port"].parse()?)
        .user(&b["username"])
        .password(&b["password"])
        .dbname(db)
        .connect_timeout(govbroker_e2e::data_services::CONNECT_TIMEOUT);
    Ok(config)
}

#[tokio::test]
async fn postgres_claims_get_closed_databases_and_retain_or_drop_them() {
    start();
    scenario("ds-postgres", |t: TestEnv| async move {
        let admin = t.cluster.postgres_admin()?;
        admin_secret(&t, "pg-admin", &admin).await?;
        let class = create_class(&t, "postgres", 15432, "pg-admin", json!({"maxConnections": 5})).await?;
        let pg = connect(&admin.postgres_config("postgres")).await?;
        let claims = ["ho-so", "khac", "tam"];
        let outcome = async {
            create_claim(&t, "ho-so", &class, "nho", None).await?;
            create_claim(&t, "khac", &class, "nho", None).await?;
            create_claim(&t, "tam", &class, "nho", Some("Delete")).await?;
            create_claim(&t, "lac-lop", "khong-co-lop", "nho", None).await?;
            create_claim(&t, "lac-goi", &class, "khong-co", None).await?;

            let ready = phase(&t, "ho-so", ClaimPhase::Ready).await?;
            let status = ready.status.clone().context("no status")?;
            ensure!(status.endpoint.as_deref() == Some("127.0.0.1:15432"), "endpoint {:?}", status.endpoint);
            ensure!(status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"), "conditions {:?}", status.conditions);
            let b = binding(&t, &ready).await?;
            let names = instance_names(&t.namespace, "ho-so");
            ensure!(b["database"] == names.database && b["username"] == names.role, "binding {:?}", b.keys());
            ensure!(b["uri"].starts_with(&format!("postgresql://{}:", names.role)) && b["uri"].ends_with(&format!("@127.0.0.1:15432/{}", names.database)), "uri shape");
            ensure!(!serde_json::to_string(&status)?.contains(&b["password"]), "the password is in the status");
            let owner = connect(&as_binding(&b, &b["database"])?).await.context("the claim's credentials connect")?;
            owner.batch_execute("CREATE TABLE ho_so (id int, ten text); INSERT INTO ho_so VALUES (1, 'Nguyễn Văn A')").await?;
            let limit: i32 = pg.query_one("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", &[&names.role]).await?.get(0);
            ensure!(limit == 5, "connection limit {limit}, want 5");

            // The password is not rotated by a later reconcile.
            let other = phase(&t, "khac", ClaimPhase::Ready).await?;
            let ob = binding(&t, &other).await?;
            match connect(&as_binding(&ob, &b["database"])?).await {
                Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {}
                other => bail!("another claim's role connected to the database: {:?}", other.err()),
            }
            ensure!(binding(&t, &ready).await?["password"] == b["password"], "the password changed");

            // Unknown class and plan fail clearly.
            let lost = phase(&t, "lac-lop", ClaimPhase::Failed).await?;
            let message = lost.status.and_then(|s| s.message).unwrap_or_default();
            ensure!(message.contains("khong-co-lop"), "message {message:?}");
            let lost = phase(&t, "lac-goi", ClaimPhase::Failed).await?;
            let message = lost.status.and_then(|s| s.message).unwrap_or_default();
            ensure!(message.contains("no plan \"khong-co\""), "message {message:?}");

            // Retain: the claim goes, the login goes, the data stays.
            drop(owner);
            delete_claim(&t, "ho-so").await?;
            match connect(&as_binding(&b, &b["database"])?).await {
                Err(e) if e.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => {}
                other => bail!("a retained role could still log in: {:?}", other.err()),
            }
            let kept: i64 = pg.query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&names.database]).await?.get(0);
            ensure!(kept == 1, "the retained database is gone");

            // Delete: database and role are gone.
            let tam = instance_names(&t.namespace, "tam");
            phase(&t, "tam", ClaimPhase::Ready).await?;
            delete_claim(&t, "tam").await?;
            let left: i64 = pg
                .query_one("SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) + (SELECT count(*) FROM pg_roles WHERE rolname = $1)", &[&tam.role])
                .await?
                .get(0);
            ensure!(left == 0, "{left} of the database and role are left");
            Ok(())
        }
        .await;
        delete_class(&t, &class).await;
        for claim in claims {
            let names = instance_names(&t.namespace, claim);
            for statement in drop_instance(&names.database, &names.role)? {
                let _ = pg.batch_execute(&statement).await;
            }
        }
        outcome
    })
    .await;
}

#[tokio::test]
async fn redis_claims_are_confined_to_their_prefix_and_deleted() {
    start();
    scenario("ds-redis", |t: TestEnv| async move {
        let admin = t.cluster.redis_admin()?;
        admin_secret(&t, "redis-admin", &admin).await?;
        let class =
            create_class(&t, "redis", 16379, "redis-admin", json!({"maxKeys": 100})).await?;
        let mut con = redis::Client::open(admin.redis_connection_info()?)?
            .get_multiplexed_async_connection()
            .await?;
        let names = instance_names(&t.namespace, "phien");
        let outcome = async {
            create_claim(&t, "phien", &class, "nho", Some("Delete")).await?;
            let ready = phase(&t, "phien", ClaimPhase::Ready).await?;
            let b = binding(&t, &ready).await?;
            ensure!(
                b["prefix"] == names.key_prefix && b["username"] == names.redis_user,
                "binding {:?}",
                b.keys()
            );
            ensure!(
                b["uri"].starts_with("redis://") && b["uri"].ends_with("@127.0.0.1:16379"),
                "uri shape"
            );
            let mut owner = redis::Client::open(redis_connection_info(
                &b["host"],
                b["port"].parse()?,
                Some((&b["username"], &b["password"])),
            )?)?
            .get_multiplexed_async_connection()
            .await
            .context("the claim's credentials log in")?;
            let key = format!("{}:phien-1", b["prefix"]);
            redis::cmd("SET")
                .arg(&key)
                .arg("giá trị")
                .query_async::<()>(&mut owner)
                .await?;
            let outside = redis::cmd("SET")
                .arg("khac:key")
                .arg("x")
                .query_async::<()>(&mut owner)
                .await;
            ensure!(
                outside.as_ref().err().and_then(|e| e.code()) == Some("NOPERM"),
                "wrote outside the prefix: {outside:?}"
            );
            drop(owner);

            delete_claim(&t, "phien").await?;
            let user: redis::Value = redis::cmd("ACL")
                .arg("GETUSER")
                .arg(&names.redis_user)
                .query_async(&mut con)
                .await?;
            ensure!(user == redis::Value::Nil, "the ACL user is still there");
            let exists: i64 = redis::cmd("EXISTS").arg(&key).query_async(&mut con).await?;
            ensure!(exists == 0, "the claim's keys are still there");
            Ok(())
        }
        .await;
        delete_class(&t, &class).await;
        let _ = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&names.redis_user)
            .query_async::<()>(&mut con)
            .await;
        outcome
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_server_leaves_the_claim_pending_until_it_answers() {
    start();
    scenario("ds-unreachable", |t: TestEnv| async move {
        let admin = t.cluster.postgres_admin()?;
        admin_secret(&t, "pg-admin", &admin).await?;
        // Port 1: nothing listens there, the connection is refused.
        let class =
            create_class(&t, "postgres", 1, "pg-admin", json!({"maxConnections": 2})).await?;
        let pg = connect(&admin.postgres_config("postgres")).await?;
        let outcome = async {
            create_claim(&t, "cho", &class, "nho", Some("Delete")).await?;
            let pending = phase(&t, "cho", ClaimPhase::Pending).await?;
            let status = pending.status.context("no status")?;
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .context("no Ready condition")?;
            ensure!(
                ready.status == "False" && ready.reason == "ServerUnavailable",
                "condition {ready:?}"
            );
            ensure!(
                ready.message.contains(&class) && ready.message.contains("127.0.0.1:1"),
                "message {:?}",
                ready.message
            );
            ensure!(
                !ready.message.contains(&admin.password),
                "the admin password is in the status"
            );

            // The server "comes back": the claim recovers by itself.
            Api::<DataServiceClass>::all(t.client.clone())
                .patch(
                    &class,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"spec": {"server": {"port": 15432}}})),
                )
                .await?;
            phase(&t, "cho", ClaimPhase::Ready).await?;
            delete_claim(&t, "cho").await?;
            Ok(())
        }
        .await;
        delete_class(&t, &class).await;
        let names = instance_names(&t.namespace, "cho");
        for statement in drop_instance(&names.database, &names.role)? {
            let _ = pg.batch_execute(&statement).await;
        }
        outcome
    })
    .await;
}

#[tokio::test]
async fn a_class_serves_only_the_security_levels_it_allows() {
    start();
    scenario("dsc-levels", |t| async move {
        let admin = govbroker_e2e::cluster().postgres_admin()?;
        admin_secret(&t, "pg-admin", &admin).await?;
        let class = create_class(&t, "postgres", 15432, "pg-admin", json!({"maxConnections": 5})).await?;
        let outcome = async {
            // Only levels 1 and 2 may use the class; this namespace is at level 4, as an
            // agency's namespace at that level would be.
            Api::<DataServiceClass>::all(t.client.clone())
                .patch(
                    &class,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"spec": {"allowedSecurityLevels": [1, 2]}})),
                )
                .await?;
            Api::<k8s_openapi::api::core::v1::Namespace>::all(t.client.clone())
                .patch(
                    &t.namespace,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"metadata": {"labels": {govbroker_domain::isolation::SECURITY_LEVEL_LABEL: "4"}}})),
                )
                .await?;
            create_claim(&t, "bi-mat", &class, "nho", None).await?;
            let failed = phase(&t, "bi-mat", ClaimPhase::Failed).await?;
            let status = failed.status.context("no status")?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready").context("no Ready condition")?;
            ensure!(ready.reason == "SecurityLevelNotAllowed", "reason {}", ready.reason);
            ensure!(ready.message.contains("security level 4") && ready.message.contains("[1, 2]"), "{}", ready.message);
            // Nothing was made on the server.
            let names = instance_names(&t.namespace, "bi-mat");
            let pg = connect(&admin.postgres_config("postgres")).await?;
            let roles: i64 = pg.query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&names.role]).await?.get(0);
            ensure!(roles == 0, "a role was created for a refused claim");
            delete_claim(&t, "bi-mat").await
        }
        .await;
        delete_class(&t, &class).await;
        outcome
    })
    .await;
}
