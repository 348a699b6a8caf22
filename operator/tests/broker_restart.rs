//! The broker survives a restart in the middle of provisioning: every claim ends Ready
//! with exactly one role and one database on the server, its credentials work, and
//! deleting the claims leaves nothing behind.

use anyhow::{Context as _, Result, ensure};
use govbroker_crds::{ClaimPhase, DataServiceClaim};
use govbroker_domain::data_services::{drop_instance, instance_names};
use govbroker_e2e::data_services::agency_for_claims;
use govbroker_e2e::{
    DEFAULT_TIMEOUT, TEST_LABEL, TestEnv, eventually, operator, scenario, unique_name,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

const OPERATOR: &str = env!("CARGO_BIN_EXE_govbroker-operator");
const CLAIMS: usize = 6;

async fn pg(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// How many roles and databases the server holds for the claims of `namespace`.
async fn on_server(admin: &tokio_postgres::Client, namespace: &str) -> Result<(i64, i64)> {
    let names: Vec<String> = (0..CLAIMS)
        .map(|i| instance_names(namespace, &format!("csdl-{i}")).role)
        .collect();
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)), (SELECT count(*) FROM pg_database WHERE datname = ANY($1))",
            &[&names],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn a_restart_mid_provisioning_leaves_no_duplicates_or_orphans() {
    operator(OPERATOR);
    scenario("ds-restart", |t: TestEnv| async move {
        let admin = t.cluster.postgres_admin()?;
        let class = unique_name("e2e-pg-restart");
        t.api::<Secret>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "pg-admin"},
                    "stringData": {"username": admin.user, "password": admin.password},
                }))?,
            )
            .await?;
        let classes = Api::<govbroker_crds::DataServiceClass>::all(t.client.clone());
        classes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": class, "labels": {TEST_LABEL: t.namespace}},
                    "spec": {
                        "engine": "postgres",
                        "server": {"host": "127.0.0.1", "port": 15432, "tls": {"enabled": false},
                                   "adminSecretRef": {"namespace": t.namespace, "name": "pg-admin"}},
                        "plans": [{"name": "nho", "description": "Gói nhỏ"}],
                    },
                }))?,
            )
            .await?;
        let (_, ns) = agency_for_claims(&t, "ds-rs", 2, "chu@test.gov.vn", &[(&class, CLAIMS as i32)]).await?;
        let server = pg(&admin.postgres_config("postgres")).await?;
        let claims = Api::<DataServiceClaim>::namespaced(t.client.clone(), &ns);
        let outcome = async {
            for i in 0..CLAIMS {
                let claim: DataServiceClaim = serde_json::from_value(json!({
                    "apiVersion": "govbroker.io/v1alpha1", "kind": "DataServiceClaim",
                    "metadata": {"name": format!("csdl-{i}")},
                    "spec": {"className": class, "plan": "nho", "deletionPolicy": "Delete"},
                }))?;
                claims.create(&PostParams::default(), &claim).await?;
            }
            // Restart while the broker is still working on them.
            t.cluster.restart_operator(OPERATOR)?;
            eventually("every claim to be Ready after the restart", DEFAULT_TIMEOUT * 2, || async {
                let list = claims.list(&ListParams::default()).await?;
                let ready = list
                    .items
                    .iter()
                    .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(ClaimPhase::Ready))
                    .count();
                Ok((ready == CLAIMS).then_some(()))
            })
            .await?;
            let (roles, databases) = on_server(&server, &ns).await?;
            ensure!(roles == CLAIMS as i64 && databases == CLAIMS as i64, "{roles} roles and {databases} databases for {CLAIMS} claims");
            for i in 0..CLAIMS {
                let secret = Api::<Secret>::namespaced(t.client.clone(), &ns).get(&format!("csdl-{i}-binding")).await?;
                let data = secret.data.context("no data")?;
                let text = |k: &str| String::from_utf8_lossy(&data[k].0).into_owned();
                let mut config = tokio_postgres::Config::new();
                config.host("127.0.0.1").port(15432).user(text("username")).password(text("password")).dbname(text("database"));
                pg(&config).await.with_context(|| format!("claim csdl-{i}'s credentials do not log in"))?;
            }
            claims.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
            eventually("the claims to be gone", DEFAULT_TIMEOUT, || async {
                Ok(claims.list(&ListParams::default()).await?.items.is_empty().then_some(()))
            })
            .await?;
            let (roles, databases) = on_server(&server, &ns).await?;
            ensure!(roles == 0 && databases == 0, "{roles} roles and {databases} databases left behind");
            Ok(())
        }
        .await;
        let _ = classes.delete(&class, &DeleteParams::background()).await;
        for i in 0..CLAIMS {
            let names = instance_names(&ns, &format!("csdl-{i}"));
            for statement in drop_instance(&names.database, &names.role)? {
                let _ = server.batch_execute(&statement).await;
            }
        }
        outcome
    })
    .await;
}
