//! `govctl db` against the real API, operator and the local cloud's PostgreSQL: an owner
//! claims a database, reads its credentials and shares it; the other agency's owner is
//! refused where RBAC and the webhook say so, with the documented exit codes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use govbroker_crds::{Agency, DataServiceClass};
use govbroker_e2e::api::api_server;
use govbroker_e2e::{TEST_LABEL, cluster, eventually, scenario, unique_name};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use serde_json::{Value, json};

/// What one run of govctl did.
#[derive(Debug)]
struct Run {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn expect(self, code: i32) -> Result<Run> {
        ensure!(
            self.code == code,
            "`govctl {}` exited {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("`govctl {}` printed no JSON:\n{}", self.args, self.stdout))
    }
}

/// govctl as the bearer of `token`, with a config file of its own (never the real home).
async fn govctl(dir: &PathBuf, token: &str, args: &[&str]) -> Result<Run> {
    let api = api_server();
    let ca = api.ca_file.to_string_lossy().into_owned();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_govctl"))
        .args(["--server", &api.url, "--ca-file", &ca])
        .args(args)
        .env_remove("GOVCTL_SERVER")
        .env_remove("GOVCTL_CA_FILE")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", dir)
        .env("GOVCTL_CONFIG", dir.join("config.yaml"))
        .env("GOVCTL_TOKEN", token)
        .output()
        .await
        .context("running govctl")?;
    Ok(Run {
        args: args.join(" "),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn agency(name: &str, parent: Option<&str>, owner: &str, class: &str) -> Result<Agency> {
    let mut spec = json!({
        "displayName": format!("Sở kiểm thử {name}"),
        "level": if parent.is_some() { "Province" } else { "Central" },
        "securityLevel": 2,
        "owners": {"users": [owner]},
        "environments": [],
        "quota": {"cpu": "16", "memory": "32Gi", "dataServices": {class: 10}},
    });
    if let Some(parent) = parent {
        spec["parent"] = json!(parent);
        spec["environments"] = json!([{"name": "prod", "quota": {"cpu": "1", "memory": "1Gi"}}]);
        spec["quota"] = json!({"cpu": "4", "memory": "8Gi", "dataServices": {class: 3}});
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "govbroker.io/v1alpha1",
        "kind": "Agency",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_claims_reads_credentials_and_shares_with_govctl() {
    api_server();
    scenario("govctl-db", |t| async move {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique_name("govctl-db"));
        std::fs::create_dir_all(&dir)?;
        let id = unique_name("g");
        let (owner_a, owner_b) = (format!("owner-a-{id}"), format!("owner-b-{id}"));

        let admin = cluster().postgres_admin()?;
        Api::<Secret>::namespaced(t.client.clone(), &t.namespace)
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        name: Some("pg-admin".into()),
                        ..Default::default()
                    },
                    data: Some(
                        [
                            ("username".to_owned(), ByteString(admin.user.into_bytes())),
                            ("password".to_owned(), ByteString(admin.password.into_bytes())),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                },
            )
            .await?;
        let class = unique_name("e2e-govctl-pg");
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
                        "server": {"host": "127.0.0.1", "port": 15432, "tls": {"enabled": false},
                                   "adminSecretRef": {"namespace": t.namespace, "name": "pg-admin"}},
                        "plans": [{"name": "nho", "description": "Gói nhỏ", "limits": {"maxConnections": 5}}],
                    },
                }))?,
            )
            .await?;
        let root = unique_name("gdb");
        let (a, b) = (format!("{root}-a"), format!("{root}-b"));
        let agencies = Api::<Agency>::all(t.client.clone());
        for mut ag in [
            agency(&root, None, &format!("owner-p-{id}"), &class)?,
            agency(&a, Some(&root), &owner_a, &class)?,
            agency(&b, Some(&root), &owner_b, &class)?,
        ] {
            govbroker_e2e::label_for_test(&mut ag, &t.namespace);
            agencies.create(&PostParams::default(), &ag).await?;
        }
        let token_a = cluster().token(&owner_a, &[])?;
        let token_b = cluster().token(&owner_b, &[])?;

        let outcome = async {
            // The catalog, once the API's cache has the class (exit 0 and a line per plan).
            eventually("govctl db classes lists the class", Duration::from_secs(30), || {
                let (dir, token, class) = (dir.clone(), token_a.clone(), class.clone());
                async move {
                    let run = govctl(&dir, &token, &["db", "classes"]).await?;
                    Ok((run.code == 0 && run.stdout.lines().any(|l| l.starts_with(&class) && l.contains("nho") && l.contains("5 conn"))).then_some(()))
                }
            })
            .await?;
            // A claim, once A's owners have their rights in A's namespace.
            let create = ["db", "create", "csdl", "--agency", &a, "--env", "prod", "--class", &class, "--plan", "nho", "--deletion-policy", "delete"];
            eventually("govctl db create succeeds", Duration::from_secs(60), || {
                let (dir, token) = (dir.clone(), token_a.clone());
                let create = create.map(str::to_owned);
                async move {
                    let args: Vec<&str> = create.iter().map(String::as_str).collect();
                    let run = govctl(&dir, &token, &args).await?;
                    Ok((run.code == 0).then_some(run))
                }
            })
            .await?;
            // Exit codes: a bad name is 6, another agency's claim is 4, a missing one 5.
            govctl(&dir, &token_a, &["db", "create", "Tên-Sai", "--agency", &a, "--env", "prod", "--class", &class, "--plan", "nho"]).await?.expect(6)?;
            govctl(&dir, &token_b, &["db", "get", "csdl", "--agency", &a, "--env", "prod"]).await?.expect(4)?;
            govctl(&dir, &token_b, &["db", "create", "x", "--agency", &a, "--env", "prod", "--class", &class, "--plan", "nho"]).await?.expect(4)?;
            govctl(&dir, &token_a, &["db", "get", "khong-co", "--agency", &a, "--env", "prod"]).await?.expect(5)?;

            eventually("the claim is Ready", Duration::from_secs(90), || {
                let (dir, token, a) = (dir.clone(), token_a.clone(), a.clone());
                async move {
                    let run = govctl(&dir, &token, &["db", "get", "csdl", "--agency", &a, "--env", "prod", "-o", "json"]).await?;
                    Ok((run.code == 0 && run.json()?["status"]["phase"] == "Ready").then_some(()))
                }
            })
            .await?;
            let listed = govctl(&dir, &token_a, &["db", "list", "--agency", &a]).await?.expect(0)?;
            ensure!(listed.stdout.lines().nth(1).is_some_and(|l| l.starts_with("csdl") && l.contains("Ready")), "{}", listed.stdout);

            // Credentials: the owner gets them; the other agency's owner is refused (4).
            let uri = govctl(&dir, &token_a, &["db", "credentials", "csdl", "--agency", &a, "--env", "prod", "--uri"]).await?.expect(0)?;
            ensure!(uri.stdout.starts_with("postgresql://") && uri.stdout.lines().count() == 1, "{}", uri.stdout);
            let refused = govctl(&dir, &token_b, &["db", "credentials", "csdl", "--agency", &a, "--env", "prod"]).await?.expect(4)?;
            ensure!(!refused.stderr.contains("postgresql://"), "{}", refused.stderr);

            // A share: proposed by A's owner, approved only by A's owner, revoked.
            let expires = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(24 * 7))?.to_string();
            let share = govctl(&dir, &token_a, &["db", "share", "csdl", "--agency", &a, "--env", "prod", "--to", &b, "--expires", &expires, "--purpose", "Đối soát dữ liệu", "-o", "json"]).await?.expect(0)?;
            let name = share.json()?["name"].as_str().context("no share name")?.to_owned();
            govctl(&dir, &token_a, &["db", "share", "csdl", "--agency", &a, "--env", "prod", "--to", &b, "--expires", "2020-01-01T00:00:00Z"]).await?.expect(6)?;
            eventually("the API's cache has the share", Duration::from_secs(30), || {
                let (dir, token, name) = (dir.clone(), token_b.clone(), name.clone());
                async move {
                    let run = govctl(&dir, &token, &["db", "shares"]).await?;
                    Ok((run.code == 0 && run.stdout.contains(&name)).then_some(()))
                }
            })
            .await?;
            govctl(&dir, &token_b, &["db", "approve", &name]).await?.expect(4)?;
            // Not granted before approval: the consumer's owner gets exit 5.
            let pending = govctl(&dir, &token_b, &["db", "share-credentials", &name, "--env", "prod"]).await?.expect(5)?;
            ensure!(pending.stderr.contains("not granted yet"), "{}", pending.stderr);
            govctl(&dir, &token_b, &["db", "rotate", "csdl", "--agency", &a, "--env", "prod"]).await?.expect(4)?;
            govctl(&dir, &token_a, &["db", "rotate", "csdl", "--agency", &a, "--env", "prod"]).await?.expect(0)?;
            let approved = govctl(&dir, &token_a, &["db", "approve", &name, "-o", "json"]).await?.expect(0)?;
            ensure!(approved.json()?["approvedBy"] == owner_a.as_str(), "{}", approved.stdout);
            eventually("the API's cache has the approval", Duration::from_secs(30), || {
                let (dir, token, name) = (dir.clone(), token_a.clone(), name.clone());
                async move {
                    let run = govctl(&dir, &token, &["db", "approve", &name]).await?;
                    Ok((run.code == 6).then_some(()))
                }
            })
            .await?;
            // Granted: the consumer's owner reads the read-only login; the owner side may not (4).
            let uri = eventually("the share is granted", Duration::from_secs(90), || {
                let (dir, token, name) = (dir.clone(), token_b.clone(), name.clone());
                async move {
                    let run = govctl(&dir, &token, &["db", "share-credentials", &name, "--env", "prod", "--uri"]).await?;
                    Ok((run.code == 0).then_some(run.stdout))
                }
            })
            .await?;
            ensure!(uri.starts_with("postgresql://") && uri.lines().count() == 1, "{uri}");
            let refused = govctl(&dir, &token_a, &["db", "share-credentials", &name, "--env", "prod"]).await?.expect(4)?;
            ensure!(!refused.stderr.contains("postgresql://"), "{}", refused.stderr);
            govctl(&dir, &token_b, &["db", "revoke", &name]).await?.expect(0)?;
            govctl(&dir, &token_b, &["db", "delete", "csdl", "--agency", &a, "--env", "prod"]).await?.expect(4)?;
            govctl(&dir, &token_a, &["db", "delete", "csdl", "--agency", &a, "--env", "prod"]).await?.expect(0)?;
            Ok(())
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        if !govbroker_e2e::keep_state() {
            let _ = classes.delete(&class, &DeleteParams::background()).await;
        }
        outcome
    })
    .await;
}
