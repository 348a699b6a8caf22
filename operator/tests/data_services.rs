//! The data-service broker against the real control plane and the local cloud's
//! PostgreSQL and Redis: a claim becomes a closed database (or a Redis user confined to
//! its prefix) with a binding Secret whose credentials work; deletion retains or drops
//! the data as the claim says.

use anyhow::{Context as _, Result, bail, ensure};
use govbroker_crds::{
    ClaimPhase, DataServiceClaim, DataServiceClass, DataShare, DataSharePhase,
    ROTATE_PASSWORD_ANNOTATION,
};
use govbroker_domain::data_services::{drop_instance, instance_names};
use govbroker_e2e::data_services::{admin_secret, agency_for_claims, redis_connection_info};
use govbroker_e2e::{
    DEFAULT_TIMEOUT, TEST_LABEL, TestEnv, eventually, operator, scenario, unique_name, wait_event,
    wait_for,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use kube::{Api, ResourceExt as _};
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

fn start() {
    operator(env!("CARGO_BIN_EXE_govbroker-operator"));
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

/// Waits until the class's status says whether the broker reached its server.
async fn class_ready(t: &TestEnv, name: &str, want: bool) -> Result<DataServiceClass> {
    wait_for(
        &Api::<DataServiceClass>::all(t.client.clone()),
        name,
        &format!("the class to report ready={want}"),
        DEFAULT_TIMEOUT,
        move |c: Option<&DataServiceClass>| {
            c.and_then(|c| c.status.as_ref())
                .is_some_and(|s| s.ready == Some(want))
        },
    )
    .await?
    .context("class vanished")
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
    ns: &str,
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
    claims(t, ns)
        .create(&PostParams::default(), &claim)
        .await
        .with_context(|| format!("creating claim {name}"))?;
    Ok(())
}

fn claims(t: &TestEnv, ns: &str) -> Api<DataServiceClaim> {
    Api::namespaced(t.client.clone(), ns)
}

async fn phase(t: &TestEnv, ns: &str, name: &str, want: ClaimPhase) -> Result<DataServiceClaim> {
    wait_for(
        &claims(t, ns),
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

async fn delete_claim(t: &TestEnv, ns: &str, name: &str) -> Result<()> {
    let api = claims(t, ns);
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
    let ns = claim.namespace().context("no namespace")?;
    let secret = Api::<Secret>::namespaced(t.client.clone(), &ns)
        .get(&name)
        .await?;
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
        // 1Mi of storage: less than any database, so the claim is measured over its plan.
        let class = create_class(&t, "postgres", 15432, "pg-admin", json!({"maxConnections": 5, "storage": "1Mi"})).await?;
        let (_, ns) = agency_for_claims(&t, "ds-pg", 2, "chu@test.gov.vn", &[(&class, 3)]).await?;
        let pg = connect(&admin.postgres_config("postgres")).await?;
        let made = ["ho-so", "khac", "tam"];
        let outcome = async {
            create_claim(&t, &ns, "ho-so", &class, "nho", None).await?;
            create_claim(&t, &ns, "khac", &class, "nho", None).await?;
            create_claim(&t, &ns, "tam", &class, "nho", Some("Delete")).await?;
            // Unknown class and plan, and a fourth instance, are refused at admission.
            refused(create_claim(&t, &ns, "lac-lop", "khong-co-lop", "nho", None).await, "no DataServiceClass \"khong-co-lop\"")?;
            refused(create_claim(&t, &ns, "lac-goi", &class, "khong-co", None).await, "no plan \"khong-co\"")?;
            refused(create_claim(&t, &ns, "thu-tu", &class, "nho", None).await, "already holds 3 of the 3")?;

            let reached = class_ready(&t, &class, true).await?.status.context("no status")?;
            ensure!(reached.plans == Some(1), "plans {:?}", reached.plans);
            let ready = phase(&t, &ns, "ho-so", ClaimPhase::Ready).await?;
            let status = ready.status.clone().context("no status")?;
            ensure!(status.endpoint.as_deref() == Some("127.0.0.1:15432"), "endpoint {:?}", status.endpoint);
            ensure!(status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"), "conditions {:?}", status.conditions);
            let size = status.storage_bytes.context("no storageBytes")?;
            ensure!(size > 1 << 20, "storageBytes {size}");
            let plan = status.conditions.iter().find(|c| c.type_ == "WithinPlan").context("no WithinPlan condition")?;
            ensure!(plan.status == "False" && plan.reason == "OverPlan" && plan.message.contains("more than the plan's storage of 1Mi"), "{plan:?}");
            let b = binding(&t, &ready).await?;
            let names = instance_names(&ns, "ho-so");
            ensure!(b["database"] == names.database && b["username"] == names.role, "binding {:?}", b.keys());
            ensure!(b["uri"].starts_with(&format!("postgresql://{}:", names.role)) && b["uri"].ends_with(&format!("@127.0.0.1:15432/{}", names.database)), "uri shape");
            ensure!(!serde_json::to_string(&status)?.contains(&b["password"]), "the password is in the status");
            // Over its plan, the role's sessions start read-only: reads go on, writes do not.
            let owner = connect(&as_binding(&b, &b["database"])?).await.context("the claim's credentials connect")?;
            owner.batch_execute("SELECT 1").await.context("reading while over the plan")?;
            match owner.batch_execute("CREATE TABLE ho_so (id int, ten text)").await {
                Err(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {}
                other => bail!("a claim over its plan could write: {other:?}"),
            }
            ensure!(plan.message.contains("writes are suspended"), "{plan:?}");

            // Parameters: checked at admission, then applied to the database.
            refused(
                claims(&t, &ns)
                    .patch("ho-so", &PatchParams::default(), &Patch::Merge(json!({"spec": {"parameters": {"statement_timeout": "mãi mãi"}}})))
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
                "spec.parameters.statement_timeout is \"mãi mãi\", but it must be a duration",
            )?;
            refused(
                claims(&t, &ns)
                    .patch("ho-so", &PatchParams::default(), &Patch::Merge(json!({"spec": {"parameters": {"encoding": "LATIN1"}}})))
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
                "spec.parameters.encoding is not a postgres parameter",
            )?;
            let patched = claims(&t, &ns)
                .patch("ho-so", &PatchParams::default(), &Patch::Merge(json!({"spec": {"parameters": {"timezone": "Asia/Ho_Chi_Minh", "extensions": "unaccent"}}})))
                .await?;
            let generation = patched.metadata.generation;

            // A larger plan in the class lifts the suspension at once (a fresh measurement).
            Api::<DataServiceClass>::all(t.client.clone())
                .patch(&class, &PatchParams::default(), &Patch::Merge(json!({"spec": {"plans": [
                    {"name": "nho", "description": "Gói nhỏ", "limits": {"maxConnections": 5, "storage": "1Gi"}}
                ]}})))
                .await?;
            wait_for(&claims(&t, &ns), "ho-so", "the claim to be within its larger plan with its parameters", DEFAULT_TIMEOUT, move |c: Option<&DataServiceClaim>| {
                c.and_then(|c| c.status.as_ref()).is_some_and(|s| {
                    s.observed_generation == generation
                        && s.phase == Some(ClaimPhase::Ready)
                        && s.conditions.iter().any(|c| c.type_ == "WithinPlan" && c.status == "True")
                        && s.extensions == ["unaccent"]
                })
            })
            .await?;
            // Each transition is an Event on the claim.
            for reason in ["Provisioned", "OverPlan", "WithinPlan"] {
                wait_event(&t, &ns, "DataServiceClaim", "ho-so", reason).await?;
            }
            let owner = connect(&as_binding(&b, &b["database"])?).await.context("the claim's credentials connect")?;
            owner.batch_execute("CREATE TABLE ho_so (id int, ten text); INSERT INTO ho_so VALUES (1, 'Nguyễn Văn A')").await.context("writing once within the plan")?;
            let zone: String = owner.query_one("SHOW timezone", &[]).await?.get(0);
            ensure!(zone == "Asia/Ho_Chi_Minh", "timezone {zone}");
            let plain: String = owner.query_one("SELECT unaccent('Nguyễn Văn A')", &[]).await.context("the unaccent extension")?.get(0);
            ensure!(plain == "Nguyen Van A", "unaccent gave {plain}");
            // The status remembers what was created, so later reconciles skip it; an
            // extension added to the parameters is still created.
            let patched = claims(&t, &ns)
                .patch("ho-so", &PatchParams::default(), &Patch::Merge(json!({"spec": {"parameters": {"extensions": "unaccent,pg_trgm"}}})))
                .await?;
            let generation = patched.metadata.generation;
            wait_for(&claims(&t, &ns), "ho-so", "pg_trgm to be created", DEFAULT_TIMEOUT, move |c: Option<&DataServiceClaim>| {
                c.and_then(|c| c.status.as_ref()).is_some_and(|s| {
                    s.observed_generation == generation && s.phase == Some(ClaimPhase::Ready) && s.extensions == ["unaccent", "pg_trgm"]
                })
            })
            .await?;
            let alike: f32 = owner.query_one("SELECT similarity('Nguyễn Văn A', 'Nguyễn Văn B')", &[]).await.context("the pg_trgm extension")?.get(0);
            ensure!(alike > 0.5, "similarity {alike}");
            let limit: i32 = pg.query_one("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", &[&names.role]).await?.get(0);
            ensure!(limit == 5, "connection limit {limit}, want 5");

            // The password is not rotated by a later reconcile.
            let other = phase(&t, &ns, "khac", ClaimPhase::Ready).await?;
            let ob = binding(&t, &other).await?;
            match connect(&as_binding(&ob, &b["database"])?).await {
                Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {}
                other => bail!("another claim's role connected to the database: {:?}", other.err()),
            }
            ensure!(binding(&t, &ready).await?["password"] == b["password"], "the password changed");

            // Rotation: a new annotation value gives a new password; open sessions stay.
            let day = "2026-11-25";
            claims(&t, &ns)
                .patch("ho-so", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {ROTATE_PASSWORD_ANNOTATION: day}}})))
                .await?;
            let rotated = wait_for(&claims(&t, &ns), "ho-so", "the password to be rotated", DEFAULT_TIMEOUT, move |c: Option<&DataServiceClaim>| {
                c.and_then(|c| c.status.as_ref()).is_some_and(|s| s.password_rotation.as_deref() == Some(day))
            })
            .await?
            .context("claim vanished")?;
            let rotated = binding(&t, &rotated).await?;
            ensure!(rotated["password"] != b["password"], "the password did not change");
            connect(&as_binding(&rotated, &rotated["database"])?).await.context("the new password logs in")?;
            match connect(&as_binding(&b, &b["database"])?).await {
                Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD) => {}
                other => bail!("the old password still logs in: {:?}", other.err()),
            }
            owner.batch_execute("SELECT 1").await.context("an open session ended on rotation")?;
            let b = rotated;

            // Retain: the claim goes, the login goes, the data stays.
            drop(owner);
            delete_claim(&t, &ns, "ho-so").await?;
            match connect(&as_binding(&b, &b["database"])?).await {
                Err(e) if e.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => {}
                other => bail!("a retained role could still log in: {:?}", other.err()),
            }
            let kept: i64 = pg.query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&names.database]).await?.get(0);
            ensure!(kept == 1, "the retained database is gone");

            // Delete: database and role are gone.
            let tam = instance_names(&ns, "tam");
            phase(&t, &ns, "tam", ClaimPhase::Ready).await?;
            delete_claim(&t, &ns, "tam").await?;
            let left: i64 = pg
                .query_one("SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) + (SELECT count(*) FROM pg_roles WHERE rolname = $1)", &[&tam.role])
                .await?
                .get(0);
            ensure!(left == 0, "{left} of the database and role are left");
            Ok(())
        }
        .await;
        delete_class(&t, &class).await;
        for claim in made {
            let names = instance_names(&ns, claim);
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
        let (_, ns) =
            agency_for_claims(&t, "ds-redis", 2, "chu@test.gov.vn", &[(&class, 1)]).await?;
        let mut con = redis::Client::open(admin.redis_connection_info()?)?
            .get_multiplexed_async_connection()
            .await?;
        let names = instance_names(&ns, "phien");
        let outcome = async {
            let with_parameter: DataServiceClaim = serde_json::from_value(json!({
                "apiVersion": "govbroker.io/v1alpha1",
                "kind": "DataServiceClaim",
                "metadata": {"name": "co-tham-so"},
                "spec": {"className": class, "plan": "nho", "parameters": {"maxmemory": "1gb"}},
            }))?;
            refused(
                claims(&t, &ns)
                    .create(&PostParams::default(), &with_parameter)
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
                "redis claims accept no parameters",
            )?;
            create_claim(&t, &ns, "phien", &class, "nho", Some("Delete")).await?;
            let ready = phase(&t, &ns, "phien", ClaimPhase::Ready).await?;
            let status = ready.status.clone().context("no status")?;
            ensure!(status.keys == Some(0), "keys {:?}", status.keys);
            let plan = status
                .conditions
                .iter()
                .find(|c| c.type_ == "WithinPlan")
                .context("no WithinPlan condition")?;
            ensure!(plan.status == "True", "{plan:?}");
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

            // Over maxKeys (the class now allows 2 of the 3 keys): reads and deletions
            // only, until the instance is back within its plan.
            for n in 2..=3 {
                redis::cmd("SET")
                    .arg(format!("{}:phien-{n}", b["prefix"]))
                    .arg("x")
                    .query_async::<()>(&mut owner)
                    .await?;
            }
            let set_plan = |max_keys: i64| {
                let classes = Api::<DataServiceClass>::all(t.client.clone());
                let class = class.clone();
                async move {
                    classes
                        .patch(&class, &PatchParams::default(), &Patch::Merge(json!({"spec": {"plans": [
                            {"name": "nho", "description": "Gói nhỏ", "limits": {"maxKeys": max_keys}}
                        ]}})))
                        .await
                }
            };
            let within = |want: &'static str| {
                move |c: Option<&DataServiceClaim>| {
                    c.and_then(|c| c.status.as_ref()).is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.type_ == "WithinPlan" && c.status == want)
                    })
                }
            };
            set_plan(2).await?;
            let over = wait_for(&claims(&t, &ns), "phien", "the claim to be over maxKeys", DEFAULT_TIMEOUT, within("False"))
                .await?
                .and_then(|c| c.status)
                .context("claim vanished")?;
            ensure!(over.keys == Some(3), "keys {:?}", over.keys);
            ensure!(over.memory_bytes.is_some_and(|m| m > 0), "memoryBytes {:?}", over.memory_bytes);
            let write = redis::cmd("SET")
                .arg(format!("{}:phien-4", b["prefix"]))
                .arg("x")
                .query_async::<()>(&mut owner)
                .await;
            ensure!(
                write.as_ref().err().and_then(|e| e.code()) == Some("NOPERM"),
                "wrote while over the plan: {write:?}"
            );
            let read: String = redis::cmd("GET").arg(&key).query_async(&mut owner).await?;
            ensure!(read == "giá trị", "read {read}");
            let deleted: i64 = redis::cmd("DEL")
                .arg(format!("{}:phien-3", b["prefix"]))
                .query_async(&mut owner)
                .await
                .context("deleting while over the plan")?;
            ensure!(deleted == 1, "deleted {deleted}");
            set_plan(5).await?;
            wait_for(&claims(&t, &ns), "phien", "the claim to be within its plan again", DEFAULT_TIMEOUT, within("True")).await?;
            redis::cmd("SET")
                .arg(format!("{}:phien-4", b["prefix"]))
                .arg("x")
                .query_async::<()>(&mut owner)
                .await
                .context("writing once back within the plan")?;
            drop(owner);

            delete_claim(&t, &ns, "phien").await?;
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
        let (_, ns) =
            agency_for_claims(&t, "ds-down", 2, "chu@test.gov.vn", &[(&class, 1)]).await?;
        let pg = connect(&admin.postgres_config("postgres")).await?;
        let outcome = async {
            create_claim(&t, &ns, "cho", &class, "nho", Some("Delete")).await?;
            let pending = phase(&t, &ns, "cho", ClaimPhase::Pending).await?;
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

            let unreached = class_ready(&t, &class, false)
                .await?
                .status
                .context("no status")?;
            let condition = unreached.conditions.first().context("no condition")?;
            ensure!(
                condition.reason == "ServerUnavailable"
                    && condition.message.contains("127.0.0.1:1"),
                "class condition {condition:?}"
            );
            ensure!(
                !condition.message.contains(&admin.password),
                "the admin password is in the class status"
            );

            // The server "comes back": the claim recovers by itself.
            Api::<DataServiceClass>::all(t.client.clone())
                .patch(
                    &class,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"spec": {"server": {"port": 15432}}})),
                )
                .await?;
            phase(&t, &ns, "cho", ClaimPhase::Ready).await?;
            class_ready(&t, &class, true).await?;
            delete_claim(&t, &ns, "cho").await?;
            Ok(())
        }
        .await;
        delete_class(&t, &class).await;
        let names = instance_names(&ns, "cho");
        for statement in drop_instance(&names.database, &names.role)? {
            let _ = pg.batch_execute(&statement).await;
        }
        outcome
    })
    .await;
}

#[tokio::test]
async fn claims_are_admitted_only_in_agency_namespaces_for_their_level_and_quota() {
    start();
    scenario("dsc-admission", |t| async move {
        let admin = govbroker_e2e::cluster().postgres_admin()?;
        admin_secret(&t, "pg-admin", &admin).await?;
        let class = create_class(
            &t,
            "postgres",
            15432,
            "pg-admin",
            json!({"maxConnections": 5}),
        )
        .await?;
        let outcome = async {
            // Only levels 1 and 2 may use the class.
            Api::<DataServiceClass>::all(t.client.clone())
                .patch(
                    &class,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"spec": {"allowedSecurityLevels": [1, 2]}})),
                )
                .await?;
            let (_, secret_ns) =
                agency_for_claims(&t, "ds-l4", 4, "chu@test.gov.vn", &[(&class, 2)]).await?;
            let (_, no_quota_ns) =
                agency_for_claims(&t, "ds-nq", 2, "chu@test.gov.vn", &[]).await?;
            let ns = t.namespace.clone();
            refused(
                create_claim(&t, &ns, "ngoai", &class, "nho", None).await,
                "belongs to no agency",
            )?;
            refused(
                create_claim(&t, &secret_ns, "bi-mat", &class, "nho", None).await,
                "security level 4",
            )?;
            refused(
                create_claim(&t, &no_quota_ns, "khong-quota", &class, "nho", None).await,
                "has no quota for DataServiceClass",
            )?;
            // Nothing was made, in Kubernetes or on the server.
            for ns in [&ns, &secret_ns, &no_quota_ns] {
                ensure!(
                    claims(&t, ns)
                        .list(&Default::default())
                        .await?
                        .items
                        .is_empty(),
                    "a claim exists in {ns}"
                );
            }
            let pg = connect(&admin.postgres_config("postgres")).await?;
            let names = instance_names(&secret_ns, "bi-mat");
            let roles: i64 = pg
                .query_one(
                    "SELECT count(*) FROM pg_roles WHERE rolname = $1",
                    &[&names.role],
                )
                .await?
                .get(0);
            ensure!(roles == 0, "a role was created for a refused claim");

            // Claims created all at once cannot take more than the quota between them.
            let (_, racing_ns) =
                agency_for_claims(&t, "ds-race", 2, "chu@test.gov.vn", &[(&class, 2)]).await?;
            let names: Vec<String> = (1..=6).map(|i| format!("cung-luc-{i}")).collect();
            let results = futures::future::join_all(
                names
                    .iter()
                    .map(|name| create_claim(&t, &racing_ns, name, &class, "nho", Some("Delete"))),
            )
            .await;
            let admitted = results.iter().filter(|r| r.is_ok()).count();
            ensure!(
                admitted == 2,
                "{admitted} of 6 simultaneous claims admitted, quota 2: {results:?}"
            );
            for refusal in results.into_iter().filter_map(Result::err) {
                refused(Err(refusal), "already holds 2 of the 2")?;
            }
            let stored = claims(&t, &racing_ns)
                .list(&Default::default())
                .await?
                .items;
            ensure!(stored.len() == 2, "{} claims stored", stored.len());
            for claim in stored {
                phase(&t, &racing_ns, &claim.name_any(), ClaimPhase::Ready).await?;
                delete_claim(&t, &racing_ns, &claim.name_any()).await?;
            }
            Ok(())
        }
        .await;
        delete_class(&t, &class).await;
        outcome
    })
    .await;
}

/// The create was refused by admission with a message containing `fragment`.
fn refused(result: Result<()>, fragment: &str) -> Result<()> {
    match result {
        Ok(()) => bail!("the claim was admitted; expected a refusal saying {fragment:?}"),
        Err(e) => {
            let text = format!("{e:#}");
            ensure!(
                text.contains(fragment),
                "refused, but not saying {fragment:?}: {text}"
            );
            Ok(())
        }
    }
}

fn share_json(
    name: &str,
    owner: (&str, &str, &str),
    consumer: &str,
    expires_in: i64,
    approved: bool,
) -> Result<DataShare> {
    let expires = k8s_openapi::jiff::Timestamp::now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(expires_in))?;
    Ok(serde_json::from_value(json!({
        "apiVersion": "govbroker.io/v1alpha1",
        "kind": "DataShare",
        "metadata": {"name": name},
        "spec": {
            "owner": {"agency": owner.0, "namespace": owner.1, "claim": owner.2},
            "consumer": {"agency": consumer},
            "access": "ReadOnly",
            "expiresAt": expires.to_string(),
            "purpose": "Tra cứu hồ sơ để giải quyết thủ tục hành chính",
            "approved": approved,
        },
    }))?)
}

async fn share_phase(t: &TestEnv, name: &str, want: DataSharePhase) -> Result<DataShare> {
    wait_for(
        &Api::<DataShare>::all(t.client.clone()),
        name,
        &format!("the share to be {want:?}"),
        DEFAULT_TIMEOUT,
        move |s: Option<&DataShare>| {
            s.and_then(|s| s.status.as_ref())
                .is_some_and(|s| s.phase == Some(want))
        },
    )
    .await?
    .context("share vanished")
}

/// The consumer's binding Secret of a share, once it exists.
async fn share_binding(
    t: &TestEnv,
    ns: &str,
    share: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let secret = wait_for(
        &Api::<Secret>::namespaced(t.client.clone(), ns),
        &format!("{share}-share"),
        "the share's binding Secret",
        DEFAULT_TIMEOUT,
        |s: Option<&Secret>| s.is_some(),
    )
    .await?
    .context("no Secret")?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

async fn gone<K>(api: &Api<K>, name: &str, what: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    wait_for(api, name, what, DEFAULT_TIMEOUT, |o: Option<&K>| {
        o.is_none()
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_share_lets_the_consumer_read_not_write_until_revoked_or_expired() {
    start();
    scenario("dshare-pg", |t: TestEnv| async move {
        let admin = t.cluster.postgres_admin()?;
        admin_secret(&t, "pg-admin", &admin).await?;
        let class = create_class(&t, "postgres", 15432, "pg-admin", json!({"maxConnections": 5})).await?;
        let (owner, ns) = agency_for_claims(&t, "ds-chu", 3, "chu-a@test.gov.vn", &[(&class, 1)]).await?;
        let (consumer, consumer_ns) = agency_for_claims(&t, "ds-dung", 3, "chu-b@test.gov.vn", &[]).await?;
        let (low, _) = agency_for_claims(&t, "ds-thap", 1, "chu-c@test.gov.vn", &[]).await?;
        let shares = Api::<DataShare>::all(t.client.clone());
        let (revoked_name, expiring_name) = (unique_name("chia-se"), unique_name("het-han"));
        let pg = connect(&admin.postgres_config("postgres")).await?;
        let outcome = async {
            create_claim(&t, &ns, "ho-so", &class, "nho", Some("Delete")).await?;
            let ready = phase(&t, &ns, "ho-so", ClaimPhase::Ready).await?;
            let b = binding(&t, &ready).await?;
            let owner_db = connect(&as_binding(&b, &b["database"])?).await?;
            owner_db.batch_execute("CREATE TABLE ho_so (id int, ten text); INSERT INTO ho_so VALUES (1, 'Trần Thị B')").await?;

            // Level 3 data is not shared down to level 1 (the class does not allow it).
            let down = shares.create(&PostParams::default(), &share_json(&unique_name("xuong"), (&owner, &ns, "ho-so"), &low, 3600, false)?).await;
            match down {
                Err(kube::Error::Api(s)) if s.message.contains("lower security level") => {}
                other => bail!("a share down the levels was not refused: {other:?}"),
            }

            shares.create(&PostParams::default(), &share_json(&revoked_name, (&owner, &ns, "ho-so"), &consumer, 3600, false)?).await?;
            let pending = share_phase(&t, &revoked_name, DataSharePhase::Pending).await?;
            let reason = pending.status.as_ref().and_then(|s| s.conditions.first()).map(|c| c.reason.clone());
            ensure!(reason.as_deref() == Some("AwaitingApproval"), "reason {reason:?}");
            ensure!(Api::<Secret>::namespaced(t.client.clone(), &consumer_ns).get_opt(&format!("{revoked_name}-share")).await?.is_none(), "access before approval");

            // The consumer cannot approve its own access; the owner can, and is recorded.
            let approve = Patch::Merge(json!({"spec": {"approved": true}}));
            let as_consumer = Api::<DataShare>::all(t.cluster.client_as("chu-b@test.gov.vn", &[]).await?);
            eventually("the consumer's approval to be refused by the webhook", DEFAULT_TIMEOUT, || async {
                match as_consumer.patch(&revoked_name, &PatchParams::default(), &approve).await {
                    Err(kube::Error::Api(s)) if s.message.contains("only owners of agency") => Ok(Some(())),
                    Err(e) => bail!("{e}"),
                    Ok(_) => bail!("the consumer approved the share"),
                }
            })
            .await?;
            let as_owner = Api::<DataShare>::all(t.cluster.client_as("chu-a@test.gov.vn", &[]).await?);
            let approved = eventually("the owner to approve", DEFAULT_TIMEOUT, || async {
                Ok(Some(as_owner.patch(&revoked_name, &PatchParams::default(), &approve).await?))
            })
            .await?;
            let by = approved.spec.approval.as_ref().and_then(|a| a.approved_by.clone());
            ensure!(by.as_deref() == Some("chu-a@test.gov.vn"), "approvedBy {by:?}");

            let granted = share_phase(&t, &revoked_name, DataSharePhase::Granted).await?;
            wait_event(&t, "default", "DataShare", &revoked_name, "Granted").await?;
            let status = granted.status.context("no status")?;
            ensure!(status.granted_by.as_deref() == Some("chu-a@test.gov.vn"), "grantedBy {:?}", status.granted_by);
            let reader = share_binding(&t, &consumer_ns, &revoked_name).await?;
            ensure!(reader["database"] == b["database"] && reader["username"] != b["username"], "reader binding {:?}", reader.keys());
            let read = connect(&as_binding(&reader, &reader["database"])?).await.context("the reader logs in")?;
            let rows: i64 = read.query_one("SELECT count(*) FROM ho_so", &[]).await?.get(0);
            ensure!(rows == 1, "the reader sees {rows} rows");
            match read.batch_execute("INSERT INTO ho_so VALUES (2, 'không được')").await {
                Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {}
                other => bail!("the reader could write: {other:?}"),
            }
            let policy = Api::<NetworkPolicy>::namespaced(t.client.clone(), &consumer_ns).get(&format!("{revoked_name}-share-egress")).await?;
            let rule = policy.spec.and_then(|s| s.egress).and_then(|e| e.into_iter().next()).context("no egress rule")?;
            let cidr = rule.to.and_then(|to| to.into_iter().next()).and_then(|p| p.ip_block).map(|b| b.cidr);
            ensure!(cidr.as_deref() == Some("127.0.0.1/32"), "egress to {cidr:?}");
            drop(read);

            // The consumer's owner revokes: the login, the Secret and the policy go.
            let revoke = Patch::Merge(json!({"spec": {"revoked": true}}));
            Api::<DataShare>::all(t.cluster.client_as("chu-b@test.gov.vn", &[]).await?).patch(&revoked_name, &PatchParams::default(), &revoke).await?;
            let revoked = share_phase(&t, &revoked_name, DataSharePhase::Revoked).await?;
            let by = revoked.status.and_then(|s| s.revoked_by);
            ensure!(by.as_deref() == Some("chu-b@test.gov.vn"), "revokedBy {by:?}");
            gone(&Api::<Secret>::namespaced(t.client.clone(), &consumer_ns), &format!("{revoked_name}-share"), "the Secret to go").await?;
            gone(&Api::<NetworkPolicy>::namespaced(t.client.clone(), &consumer_ns), &format!("{revoked_name}-share-egress"), "the policy to go").await?;
            ensure!(connect(&as_binding(&reader, &reader["database"])?).await.is_err(), "the revoked reader still logs in");

            // A share approved at creation (by a platform admin) ends at its expiry.
            shares.create(&PostParams::default(), &share_json(&expiring_name, (&owner, &ns, "ho-so"), &consumer, 20, true)?).await?;
            share_phase(&t, &expiring_name, DataSharePhase::Granted).await?;
            let reader = share_binding(&t, &consumer_ns, &expiring_name).await?;
            connect(&as_binding(&reader, &reader["database"])?).await.context("the second reader logs in")?;
            share_phase(&t, &expiring_name, DataSharePhase::Expired).await?;
            gone(&Api::<Secret>::namespaced(t.client.clone(), &consumer_ns), &format!("{expiring_name}-share"), "the Secret to go").await?;
            ensure!(connect(&as_binding(&reader, &reader["database"])?).await.is_err(), "the expired reader still logs in");

            // Deleting the shares releases them (the finalizer had nothing left to do).
            for name in [&revoked_name, &expiring_name] {
                shares.delete(name, &DeleteParams::background()).await?;
                gone(&shares, name, "the share to be deleted").await?;
            }
            drop(owner_db);
            delete_claim(&t, &ns, "ho-so").await
        }
        .await;
        for name in [&revoked_name, &expiring_name] {
            let _ = shares.delete(name, &DeleteParams::background()).await;
        }
        delete_class(&t, &class).await;
        let names = instance_names(&ns, "ho-so");
        for statement in drop_instance(&names.database, &names.role)? {
            let _ = pg.batch_execute(&statement).await;
        }
        outcome
    })
    .await;
}

/// A rustls client configuration trusting only the CA in `pem`.
fn trusting(pem: &[u8]) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert?)?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

#[tokio::test]
async fn a_class_with_tls_is_served_over_a_verified_connection() {
    start();
    scenario("ds-tls", |t: TestEnv| async move {
        let admin = t.cluster.postgres_admin()?;
        admin_secret(&t, "pg-admin", &admin).await?;
        // The local PostgreSQL serves a certificate of the cluster's CA; the webhook's CA
        // is another one, which must not be trusted for it.
        let cluster_ca = std::fs::read(t.cluster.state_dir.join("pki/ca.crt"))?;
        let other_ca = std::fs::read(t.cluster.state_dir.join("webhook-pki/ca.crt"))?;
        for (name, pem) in [("pg-ca", &cluster_ca), ("khac-ca", &other_ca)] {
            t.api::<Secret>()
                .create(&PostParams::default(), &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "data": {"ca.crt": k8s_openapi::ByteString(pem.clone())},
                }))?)
                .await?;
        }
        let class = create_class(&t, "postgres", 15432, "pg-admin", json!({"maxConnections": 5})).await?;
        let (_, ns) = agency_for_claims(&t, "ds-tls", 2, "chu@test.gov.vn", &[(&class, 1)]).await?;
        let classes = Api::<DataServiceClass>::all(t.client.clone());
        let set_ca = |secret: &str| Patch::Merge(json!({"spec": {"server": {"tls": {"enabled": true, "caSecretRef": {"namespace": t.namespace, "name": secret}}}}}));
        let pg = connect(&admin.postgres_config("postgres")).await?;
        let outcome = async {
            // A CA that did not sign the server's certificate: the broker refuses the server.
            classes.patch(&class, &PatchParams::default(), &set_ca("khac-ca")).await?;
            let refused = class_ready(&t, &class, false).await?.status.context("no status")?;
            let message = &refused.conditions.first().context("no condition")?.message;
            ensure!(message.to_lowercase().contains("certificate"), "class condition {message:?}");

            classes.patch(&class, &PatchParams::default(), &set_ca("pg-ca")).await?;
            class_ready(&t, &class, true).await?;
            create_claim(&t, &ns, "bao-mat", &class, "nho", Some("Delete")).await?;
            let ready = phase(&t, &ns, "bao-mat", ClaimPhase::Ready).await?;
            let b = binding(&t, &ready).await?;
            ensure!(b["sslmode"] == "verify-full" && b["uri"].ends_with("?sslmode=verify-full"), "binding {:?}", b.keys());
            ensure!(b["ca.crt"].as_bytes() == cluster_ca.as_slice(), "the binding's ca.crt is not the class's CA");
            let mut config = as_binding(&b, &b["database"])?;
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, connection) = config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(trusting(b["ca.crt"].as_bytes())?))
                .await
                .context("the binding's credentials connect over TLS with its ca.crt")?;
            tokio::spawn(connection);
            let ssl: bool = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?.get(0);
            ensure!(ssl, "the connection is not encrypted");
            drop(client);
            delete_claim(&t, &ns, "bao-mat").await
        }
        .await;
        delete_class(&t, &class).await;
        let names = instance_names(&ns, "bao-mat");
        for statement in drop_instance(&names.database, &names.role)? {
            let _ = pg.batch_execute(&statement).await;
        }
        outcome
    })
    .await;
}

#[tokio::test]
async fn a_redis_class_with_tls_is_served_over_a_verified_connection() {
    start();
    scenario("ds-redis-tls", |t: TestEnv| async move {
        let admin = t.cluster.redis_admin()?;
        admin_secret(&t, "redis-admin", &admin).await?;
        let cluster_ca = std::fs::read(t.cluster.state_dir.join("pki/ca.crt"))?;
        t.api::<Secret>()
            .create(&PostParams::default(), &serde_json::from_value(json!({
                "metadata": {"name": "redis-ca"},
                "data": {"ca.crt": k8s_openapi::ByteString(cluster_ca.clone())},
            }))?)
            .await?;
        // The local Redis serves TLS on 16380.
        let class = create_class(&t, "redis", 16380, "redis-admin", json!({"maxKeys": 100})).await?;
        let (_, ns) = agency_for_claims(&t, "ds-rtls", 2, "chu@test.gov.vn", &[(&class, 1)]).await?;
        let outcome = async {
            Api::<DataServiceClass>::all(t.client.clone())
                .patch(&class, &PatchParams::default(), &Patch::Merge(json!({"spec": {"server": {"tls": {"enabled": true, "caSecretRef": {"namespace": t.namespace, "name": "redis-ca"}}}}})))
                .await?;
            class_ready(&t, &class, true).await?;
            create_claim(&t, &ns, "phien-an-toan", &class, "nho", Some("Delete")).await?;
            let ready = phase(&t, &ns, "phien-an-toan", ClaimPhase::Ready).await?;
            let b = binding(&t, &ready).await?;
            ensure!(b["uri"].starts_with("rediss://") && b["ca.crt"].as_bytes() == cluster_ca.as_slice(), "binding {:?}", b.keys());
            use redis::IntoConnectionInfo as _;
            let info = redis::ConnectionAddr::TcpTls { host: b["host"].clone(), port: b["port"].parse()?, insecure: false, tls_params: None }
                .into_connection_info()?
                .set_redis_settings(redis::RedisConnectionInfo::default().set_username(&b["username"]).set_password(&b["password"]));
            let client = redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(b["ca.crt"].clone().into_bytes()) })?;
            let mut con = client.get_multiplexed_async_connection().await.context("the binding logs in over TLS")?;
            redis::cmd("SET").arg(format!("{}:k", b["prefix"])).arg("v").query_async::<()>(&mut con).await?;
            drop(con);
            delete_claim(&t, &ns, "phien-an-toan").await
        }
        .await;
        delete_class(&t, &class).await;
        outcome
    })
    .await;
}
