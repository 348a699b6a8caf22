//! The Helm chart's metering collector, rendered by the real `helm` and run for real:
//! `helm lint --strict` passes; `helm template` gives the collector's Deployment,
//! ServiceAccount, ClusterRole, ClusterRoleBinding and Service, which the API server
//! accepts (server-side dry run); and the collector binary, started with the
//! Deployment's own arguments and nothing but the chart's RBAC (a client certificate
//! for the ServiceAccount's user name), lists and watches everything, writes the ledger,
//! patches an agency's cost status and records its budget Event.
//!
//! `helm` is built once from the Go module pinned in `tests/helm` (like the control
//! plane) into the target directory.
//!
//! Run under the shared lock: `flock /tmp/govbroker-cluster.lock cargo test -p
//! govbroker-metering --test chart`.

mod support;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{Context, Result, ensure};
use govbroker_crds::{Agency, PriceList};
use govbroker_e2e::{DEFAULT_TIMEOUT, TestEnv, create_agency, eventually, scenario, unique_name};
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The `helm` binary, built from `tests/helm` (a Go module pinning Helm) when missing.
fn helm() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // <target>/<profile>/deps/<test>: helm goes to <target>/helm/.
    let target = exe
        .ancestors()
        .nth(3)
        .context("the test binary is not in a target directory")?;
    // One binary per pinned version, so changing tests/helm/go.mod builds the new one.
    let module = workspace().join("tests/helm");
    let go_mod = std::fs::read_to_string(module.join("go.mod"))?;
    let version = go_mod
        .lines()
        .find_map(|l| l.trim().strip_prefix("helm.sh/helm/v3 "))
        .and_then(|rest| rest.split_whitespace().next())
        .context("tests/helm/go.mod requires no helm.sh/helm/v3")?;
    let path = target.join("helm").join(version).join("helm");
    if !path.exists() {
        run(Command::new("go")
            .current_dir(&module)
            .args(["build", "-o"])
            .arg(&path)
            .arg("helm.sh/helm/v3/cmd/helm"))
        .context("building helm from tests/helm (Go and the module proxy are needed once)")?;
    }
    Ok(path)
}

/// The chart rendered for `namespace`, as the API server's server-side dry run returns
/// it (every object checked against its schema), by kind and name.
fn render(t: &TestEnv, namespace: &str) -> Result<BTreeMap<(String, String), serde_json::Value>> {
    let helm = helm()?;
    let chart = workspace().join("charts/govbroker");
    run(Command::new(&helm).args(["lint", "--strict"]).arg(&chart))?;
    let rendered = run(Command::new(&helm)
        .args(["template", "govbroker"])
        .arg(&chart)
        .args(["--namespace", namespace]))?;
    let file = t
        .cluster
        .state_dir
        .join(format!("chart-{}.yaml", unique_name("r")));
    std::fs::write(&file, &rendered)?;
    let json = kubectl_apply(t, &file, &["--dry-run=server", "-o", "json"]);
    let _ = std::fs::remove_file(&file);
    let json: serde_json::Value = serde_json::from_str(&json?)?;
    let items = match json["kind"].as_str() {
        Some("List") => json["items"].as_array().cloned().unwrap_or_default(),
        _ => vec![json],
    };
    Ok(items
        .into_iter()
        .map(|o| {
            let key = (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            (key, o)
        })
        .collect())
}

/// `kubectl apply` of `file` as the chart's installer (server-side), with `extra`
/// arguments; its output.
fn kubectl_apply(t: &TestEnv, file: &Path, extra: &[&str]) -> Result<String> {
    run(Command::new(t.cluster.bin_dir.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&t.cluster.kubeconfig)
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=govbroker-install",
        ])
        .args(extra)
        .arg("-f")
        .arg(file))
}

/// Applies one rendered object for real (server-side, as the chart's installer),
/// without what the dry run's server filled in.
fn apply(t: &TestEnv, object: &serde_json::Value) -> Result<()> {
    let mut object = object.clone();
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(field);
        }
    }
    let file = t
        .cluster
        .state_dir
        .join(format!("chart-{}.json", unique_name("a")));
    std::fs::write(&file, serde_json::to_vec(&object)?)?;
    let result = kubectl_apply(t, &file, &[]);
    let _ = std::fs::remove_file(&file);
    result.map(drop)
}

/// The Deployment's arguments with some values replaced (`--name=value` form).
fn with_overrides(args: &[String], overrides: &[(&str, String)]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for arg in args {
        let (name, value) = arg
            .split_once('=')
            .with_context(|| format!("argument {arg:?} is not --name=value"))?;
        match overrides.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => out.push(format!("{name}={v}")),
            None => out.push(format!("{name}={value}")),
        }
    }
    for (name, _) in overrides {
        ensure!(
            args.iter().any(|a| a.starts_with(&format!("{name}="))),
            "the Deployment does not set {name}: {args:?}"
        );
    }
    Ok(out)
}

/// Kills the collector when the test ends, however it ends.
struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_charts_collector_runs_with_the_charts_rbac() {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let prefix = format!("/govbroker-test-chart-{random:016x}");
    // The agency webhook must answer for Agencies to be created.
    let operator = govbroker_e2e::api::workspace_binary("govbroker-operator", "govbroker-operator")
        .expect("the operator binary");
    govbroker_e2e::operator(operator.to_str().expect("a UTF-8 path"));
    let collector =
        govbroker_e2e::api::workspace_binary("govbroker-metering", "govbroker-metering")
            .expect("the collector binary");
    scenario("metering-chart", |t| async move {
        let objects = render(&t, &t.namespace)?;
        let get = |kind: &str, name: &str| {
            objects
                .get(&(kind.to_owned(), name.to_owned()))
                .with_context(|| {
                    format!("the chart renders no {kind} {name}: {:?}", objects.keys())
                })
        };
        let deployment = get("Deployment", "govbroker-metering")?;
        let service_account = get("ServiceAccount", "govbroker-metering")?;
        let role = get("ClusterRole", "govbroker-metering")?;
        let binding = get("ClusterRoleBinding", "govbroker-metering")?;
        let service = get("Service", "govbroker-metering")?;

        // The pieces fit: the pod runs as the bound ServiceAccount, the Service selects
        // the pod and exposes its metrics port, which the collector serves on.
        let pod = &deployment["spec"]["template"];
        ensure!(pod["spec"]["serviceAccountName"] == "govbroker-metering");
        ensure!(deployment["metadata"]["namespace"] == t.namespace.as_str());
        ensure!(binding["roleRef"]["name"] == "govbroker-metering");
        ensure!(
            binding["subjects"][0]
                == serde_json::json!({"kind": "ServiceAccount", "name": "govbroker-metering",
                    "namespace": t.namespace})
        );
        let selector = service["spec"]["selector"]
            .as_object()
            .context("the Service's selector")?;
        for (k, v) in selector {
            ensure!(
                pod["metadata"]["labels"][k] == *v,
                "the Service does not select the pod: {k}={v}"
            );
        }
        let container = &pod["spec"]["containers"][0];
        let args: Vec<String> = serde_json::from_value(container["args"].clone())?;
        let port = container["ports"][0]["containerPort"]
            .as_i64()
            .context("the metrics port")?;
        ensure!(service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]);
        ensure!(
            args.contains(&format!("--metrics-addr=0.0.0.0:{port}")),
            "the collector does not serve metrics on the container port: {args:?}"
        );

        // Install the RBAC for real, then run the collector with the Deployment's
        // arguments as the ServiceAccount's user (only the test's ledger, prefix and
        // a free local metrics port differ).
        let result = async {
            for object in [service_account, role, binding] {
                apply(&t, object)?;
            }
            let prices = support::cpu_price_list(&t.client).await?;
            let lists = Api::<PriceList>::all(t.client.clone());
            let inner = async {
                let name = unique_name("so-thu");
                create_agency(
                    &t,
                    &name,
                    serde_json::json!({"displayName": "Sở thử", "level": "Central",
                        "securityLevel": 2, "priceList": prices, "budget": {"monthlyVnd": 1000}}),
                )
                .await?;
                let agencies = Api::<Agency>::all(t.client.clone());
                support::commit_cpu(&prefix, &name, 1).await?;

                let user = format!("system:serviceaccount:{}:govbroker-metering", t.namespace);
                let kubeconfig = t
                    .cluster
                    .state_dir
                    .join("users")
                    .join(format!("{}.kubeconfig", unique_name("metering")));
                std::fs::create_dir_all(kubeconfig.parent().context("users dir")?)?;
                run(Command::new(t.cluster.bin_dir.join("govcluster"))
                    .args(["user", "--state-dir"])
                    .arg(&t.cluster.state_dir)
                    .args([
                        "--name",
                        &user,
                        "--group",
                        "system:serviceaccounts",
                        "--out",
                    ])
                    .arg(&kubeconfig))?;
                let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
                let args = with_overrides(
                    &args,
                    &[
                        (
                            "--ledger-endpoints",
                            govbroker_e2e::api::LEDGER_ENDPOINT.to_owned(),
                        ),
                        ("--ledger-prefix", prefix.clone()),
                        ("--metrics-addr", addr.to_string()),
                        ("--cost-seconds", "1".to_owned()),
                        ("--flush-seconds", "1".to_owned()),
                    ],
                )?;
                let log = t
                    .cluster
                    .state_dir
                    .join("logs")
                    .join(format!("{}.log", unique_name("metering-chart")));
                std::fs::create_dir_all(log.parent().context("logs dir")?)?;
                let _collector = Collector(
                    Command::new(&collector)
                        .args(&args)
                        .env("KUBECONFIG", &kubeconfig)
                        .env("GOVBROKER_METERING_HOLDER", "chart-test")
                        // Its logs go to stdout; both streams to one file.
                        .stdout(std::fs::File::create(&log)?)
                        .stderr(std::fs::OpenOptions::new().append(true).open(&log)?)
                        .spawn()
                        .context("starting the collector")?,
                );

                // It flushed (everything listed and watched), rated the agency, patched
                // its status and recorded the budget Event, with no watch error.
                // Its first flush follows listing everything in the cluster (and the
                // first cost pass), which on a control plane that other tests filled
                // takes longer than one object's wait.
                let metrics = eventually("the collector to flush", 3 * DEFAULT_TIMEOUT, || async {
                    let got = tokio::task::spawn_blocking(move || {
                        govbroker_e2e::http_get(&addr.to_string(), "/metrics")
                    })
                    .await?;
                    Ok(got.ok().map(|(_, body)| body).filter(|body| {
                        body.lines().any(|l| {
                            l.starts_with("govbroker_metering_last_flush_timestamp_seconds ")
                                && !l.ends_with(" 0")
                        })
                    }))
                })
                .await
                .with_context(|| {
                    format!(
                        "collector log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })?;
                let errors: Vec<&str> = metrics
                    .lines()
                    .filter(|l| {
                        l.starts_with("govbroker_metering_watch_errors_total{")
                            && !l.ends_with(" 0")
                    })
                    .collect();
                ensure!(
                    errors.is_empty(),
                    "watch errors (missing RBAC?): {errors:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                let cost = eventually("the agency's cost status", DEFAULT_TIMEOUT, || async {
                    Ok(agencies
                        .get(&name)
                        .await?
                        .status
                        .and_then(|s| s.cost)
                        .filter(|c| c.month_to_date_vnd == 1000))
                })
                .await
                .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
                ensure!(cost.budget_used_percent == Some(100), "{cost:?}");
                eventually("the BudgetThreshold Event", DEFAULT_TIMEOUT, || async {
                    let events = Api::<Event>::all(t.client.clone())
                        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
                        .await?;
                    Ok(events
                        .items
                        .iter()
                        .any(|e| e.reason.as_deref() == Some("BudgetThreshold"))
                        .then_some(()))
                })
                .await
                .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
                anyhow::Ok(())
            }
            .await;
            let _ = lists.delete(&prices, &DeleteParams::default()).await;
            inner
        }
        .await;
        for plural in ["clusterrolebindings", "clusterroles"] {
            let _ = run(Command::new(t.cluster.bin_dir.join("kubectl"))
                .arg("--kubeconfig")
                .arg(&t.cluster.kubeconfig)
                .args(["delete", "--ignore-not-found", plural, "govbroker-metering"]));
        }
        if let Err(e) = govbroker_e2e::api::clear_ledger(&prefix) {
            eprintln!("could not delete the test's ledger keys under {prefix}/: {e:#}");
        }
        result
    })
    .await;
}
