//! What every end-to-end test of govbroker shares.
//!
//! - [`cluster`] starts the real local control plane (built by `tests/cluster/build.sh`,
//!   run by `govcluster`) once per test run, or reuses the one already running.
//! - [`scenario`] gives a test its own fresh namespace, dumps the namespace's objects
//!   when the test fails, and deletes the namespace afterwards unless
//!   `GOVBROKER_KEEP_TEST_STATE` is set.
//! - [`wait_for`] and [`eventually`] wait on conditions with a deadline; tests never sleep
//!   to synchronise.
#![forbid(unsafe_code)]

pub mod api;
pub mod data_services;
pub mod tools;

use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ResourceQuota};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// Label on every namespace a test creates, so leftovers are easy to find.
pub const TEST_LABEL: &str = "govbroker.io/e2e";

/// Default deadline for waits in tests: generous for a loaded 2-core CI machine.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The running local control plane.
#[derive(Debug)]
pub struct Cluster {
    /// Where `govcluster` keeps PKI, data, logs and pids.
    pub state_dir: PathBuf,
    /// Where the control-plane binaries (and kubectl, govcluster) are.
    pub bin_dir: PathBuf,
    /// Admin kubeconfig (group system:masters).
    pub kubeconfig: PathBuf,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// Starts the local control plane once per test process, or reuses a running one.
///
/// Builds the binaries first if they are missing or stale (the first build takes
/// minutes; a warm check takes a second). Panics with the reason when it cannot start,
/// since no end-to-end test can run without it.
pub fn cluster() -> &'static Cluster {
    let result = CLUSTER.get_or_init(|| start_cluster().map_err(|e| format!("{e:#}")));
    match result {
        Ok(cluster) => cluster,
        Err(e) => panic!("the local control plane could not start: {e}"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target>/cluster`, found from the running binary (`<target>/<profile>/deps/<test>` or
/// `<target>/<profile>/<bin>`) unless `GOVBROKER_CLUSTER_DIR` says otherwise.
fn cluster_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("GOVBROKER_CLUSTER_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let profile = exe
        .ancestors()
        .skip(1)
        .find(|dir| dir.join(".fingerprint").is_dir())
        .context("this binary is not under a cargo target directory (<target>/<profile>/)")?;
    let target = profile
        .parent()
        .context("a profile directory has a parent")?;
    Ok(target.join("cluster"))
}

fn start_cluster() -> Result<Cluster> {
    let dir = cluster_dir()?;
    let bin_dir = dir.join("bin");
    let state_dir = dir.join("state");
    run(Command::new("bash")
        .arg(workspace_root().join("tests/cluster/build.sh"))
        .arg(&bin_dir))?;
    run(Command::new(bin_dir.join("govcluster"))
        .args(["up", "--reuse", "--state-dir"])
        .arg(&state_dir)
        .arg("--bin-dir")
        .arg(&bin_dir))?;
    Ok(Cluster {
        kubeconfig: state_dir.join("kubeconfig"),
        state_dir,
        bin_dir,
    })
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}):\n{}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Cluster {
    /// A client with cluster-admin rights. Make one per test: a client belongs to the
    /// tokio runtime it was made on.
    pub async fn admin(&self) -> Result<Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// A client authenticated as `user` in `groups` by a client certificate of the local
    /// CA: test identities with arbitrary users and groups, judged by the real RBAC.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<Client> {
        let dir = self.state_dir.join("users");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{}.kubeconfig", unique_suffix()));
        let mut cmd = Command::new(self.bin_dir.join("govcluster"));
        cmd.args(["user", "--state-dir"])
            .arg(&self.state_dir)
            .args(["--name", user, "--out"])
            .arg(&file);
        for g in groups {
            cmd.args(["--group", g]);
        }
        run(&mut cmd)?;
        let client = client_from_kubeconfig(&file).await;
        let _ = std::fs::remove_file(&file);
        client
    }

    /// A fresh bearer token (`gbt_...`) that authenticates as `user` in `groups` for an
    /// hour, minted by `govcluster token`: kube-apiserver checks it with the local cloud's
    /// token authentication webhook, as it would with a real identity provider. Valid at
    /// once; pass it to [`Cluster::client_with_token`] or to a TokenReview.
    pub fn token(&self, user: &str, groups: &[&str]) -> Result<String> {
        self.mint_token(user, groups, false)
    }

    /// Like [`Cluster::token`], but already expired: the webhook refuses it (a
    /// TokenReview says `authenticated: false`, a request with it gets 401).
    pub fn expired_token(&self, user: &str, groups: &[&str]) -> Result<String> {
        self.mint_token(user, groups, true)
    }

    fn mint_token(&self, user: &str, groups: &[&str], expired: bool) -> Result<String> {
        let mut cmd = Command::new(self.bin_dir.join("govcluster"));
        cmd.args(["token", "--state-dir"])
            .arg(&self.state_dir)
            .args(["--user", user]);
        for g in groups {
            cmd.args(["--group", g]);
        }
        if expired {
            cmd.arg("--expired");
        }
        let token = run(&mut cmd)?.trim().to_owned();
        if token.is_empty() {
            bail!("govcluster token printed no token");
        }
        Ok(token)
    }

    /// A client that presents a bearer token (e.g. a service-account token, or one from
    /// [`Cluster::token`]).
    pub async fn client_with_token(&self, token: &str) -> Result<Client> {
        let mut config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&self.kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.to_owned().into()),
            ..Default::default()
        };
        Ok(Client::try_from(config)?)
    }
}

async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// A name no other test (or earlier run) uses: `<prefix>-<base36 suffix>`, at most 63 chars.
pub fn unique_name(prefix: &str) -> String {
    let mut name = format!("{prefix}-{}", unique_suffix());
    name.truncate(63);
    name
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut n = nanos
        ^ (u128::from(std::process::id()) << 64)
        ^ (u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 96);
    let mut s = String::new();
    for _ in 0..8 {
        s.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
    }
    s
}

/// The operator under test, started once per test process (replacing one left running
/// by an earlier test binary) with the CRDs installed.
#[derive(Debug)]
pub struct Operator {
    /// Base URL of its health and metrics server.
    pub http: String,
}

/// Loopback address of the operator's health and metrics server in tests.
pub const OPERATOR_HTTP_ADDR: &str = "127.0.0.1:18080";
/// Loopback address of the operator's admission webhook in tests.
pub const OPERATOR_WEBHOOK_ADDR: &str = "127.0.0.1:18443";

static OPERATOR: OnceLock<Result<Operator, String>> = OnceLock::new();

/// Installs the CRDs and starts the operator binary at `binary` (pass
/// `env!("CARGO_BIN_EXE_govbroker-operator")`), once per test process.
pub fn operator(binary: &str) -> &'static Operator {
    let result = OPERATOR.get_or_init(|| start_operator(binary).map_err(|e| format!("{e:#}")));
    match result {
        Ok(op) => op,
        Err(e) => panic!("the operator could not start: {e}"),
    }
}

fn start_operator(binary: &str) -> Result<Operator> {
    let cluster = cluster();
    cluster.restart_operator(binary)?;
    Ok(Operator {
        http: format!("http://{OPERATOR_HTTP_ADDR}"),
    })
}

impl Cluster {
    /// Applies the chart's CRDs and waits until they are served.
    pub fn install_crds(&self) -> Result<()> {
        let kubectl = self.bin_dir.join("kubectl");
        let crds = workspace_root().join("charts/govbroker/crds");
        run(Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=govbroker-install",
                "-f",
            ])
            .arg(&crds))?;
        run(Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["wait", "--for=condition=Established", "--timeout=60s", "-f"])
            .arg(&crds))?;
        Ok(())
    }

    /// (Re)starts the operator under `govcluster`'s supervision and waits until it
    /// answers `/readyz` and its webhook configuration is in place.
    pub fn restart_operator(&self, binary: &str) -> Result<()> {
        self.install_crds()?;
        run(Command::new(self.bin_dir.join("govcluster"))
            .args(["spawn", "--state-dir"])
            .arg(&self.state_dir)
            .args([
                "--name",
                "operator",
                "--wait-port",
                OPERATOR_HTTP_ADDR.rsplit(':').next().unwrap_or_default(),
                "--",
            ])
            .arg("env")
            .arg(format!("KUBECONFIG={}", self.kubeconfig.display()))
            .arg("RUST_LOG=info,kube_runtime=warn")
            .arg(binary)
            .args([
                "--metrics-addr",
                OPERATOR_HTTP_ADDR,
                "--webhook-addr",
                OPERATOR_WEBHOOK_ADDR,
            ])
            .arg(format!("--webhook-url=https://{OPERATOR_WEBHOOK_ADDR}"))
            // One CA for every start: a restart never leaves the API server with a
            // caBundle that no longer matches.
            .arg("--webhook-cert-dir")
            .arg(self.state_dir.join("webhook-pki")))?;
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        loop {
            if http_get(OPERATOR_HTTP_ADDR, "/readyz").is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator did not become ready within {DEFAULT_TIMEOUT:?}; see {}",
                    self.state_dir.join("logs/operator.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A plain HTTP/1.0 GET on loopback: status code and body.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// The sum of a counter's samples in a Prometheus text exposition (all label sets), or 0.
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What a scenario gets: the cluster, an admin client and its own fresh namespace.
pub struct TestEnv {
    /// The local control plane.
    pub cluster: &'static Cluster,
    /// Cluster-admin client.
    pub client: Client,
    /// A namespace created for this test alone.
    pub namespace: String,
}

impl TestEnv {
    /// A namespaced API in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates another namespace owned by this test (deleted with it).
    pub async fn extra_namespace(&self, prefix: &str) -> Result<String> {
        let name = unique_name(&format!("e2e-{prefix}"));
        create_namespace(&self.client, &name, &self.namespace).await?;
        Ok(name)
    }
}

/// Creates namespace `name` labelled as belonging to the test whose namespace is `owner`.
async fn create_namespace(client: &Client, name: &str, owner: &str) -> Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(TEST_LABEL.to_owned(), owner.to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Whether test state should be kept for inspection (`GOVBROKER_KEEP_TEST_STATE` set).
pub fn keep_state() -> bool {
    std::env::var_os("GOVBROKER_KEEP_TEST_STATE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Runs one end-to-end scenario in its own namespace.
///
/// On failure it prints the namespace's pods, deployments, replica sets, quotas and
/// events, then panics with the error. Afterwards it deletes the test's namespaces
/// (labelled [`TEST_LABEL`]) unless [`keep_state`].
pub async fn scenario<F, Fut>(name: &str, test: F)
where
    F: FnOnce(TestEnv) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let cluster = cluster();
    let client = cluster.admin().await.expect("admin client");
    let namespace = unique_name(&format!("e2e-{}", name.replace('_', "-")));
    create_namespace(&client, &namespace, &namespace)
        .await
        .expect("creating the test namespace");
    let env = TestEnv {
        cluster,
        client: client.clone(),
        namespace: namespace.clone(),
    };
    let outcome = test(env).await;
    let namespaces: Vec<String> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{TEST_LABEL}={namespace}")))
        .await
        .map(|l| l.items.iter().map(|n| n.name_any()).collect())
        .unwrap_or_else(|_| vec![namespace.clone()]);
    if let Err(err) = &outcome {
        for ns in &namespaces {
            dump_namespace(&client, ns).await;
        }
        eprintln!("scenario {name} failed: {err:#}");
    }
    if keep_state() {
        eprintln!("keeping namespaces {namespaces:?} (GOVBROKER_KEEP_TEST_STATE is set)");
    } else {
        for ns in &namespaces {
            let _ = Api::<Namespace>::all(client.clone())
                .delete(ns, &DeleteParams::background())
                .await;
        }
        delete_test_agencies(&client, &namespace).await;
    }
    if let Err(err) = outcome {
        panic!("scenario {name} failed: {err:#}");
    }
}

/// Labels an Agency as belonging to the test whose namespace is `test_namespace`, so
/// that [`scenario`] deletes it (and its subtree) afterwards.
pub fn label_for_test(agency: &mut govbroker_crds::Agency, test_namespace: &str) {
    agency
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(TEST_LABEL.to_owned(), test_namespace.to_owned());
}

/// Creates the Agency `name` with `spec` (the Agency's `spec` as JSON, so that fields
/// added to the type later need no change in tests), labelled for the test so that
/// [`scenario`] deletes it.
pub async fn create_agency(t: &TestEnv, name: &str, spec: serde_json::Value) -> Result<()> {
    let mut agency: govbroker_crds::Agency = serde_json::from_value(serde_json::json!({
        "apiVersion": "govbroker.io/v1alpha1",
        "kind": "Agency",
        "metadata": {"name": name},
        "spec": spec,
    }))?;
    label_for_test(&mut agency, &t.namespace);
    Api::<govbroker_crds::Agency>::all(t.client.clone())
        .create(&PostParams::default(), &agency)
        .await
        .with_context(|| format!("creating agency {name}"))?;
    Ok(())
}

/// Whether an Agency's `Ready` condition is True.
pub fn agency_is_ready(agency: Option<&govbroker_crds::Agency>) -> bool {
    agency.and_then(|a| a.status.as_ref()).is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Waits until the Agency `name` is Ready (see [`agency_is_ready`]).
pub async fn wait_agency_ready(t: &TestEnv, name: &str) -> Result<()> {
    wait_for(
        &Api::<govbroker_crds::Agency>::all(t.client.clone()),
        name,
        "the agency to be Ready",
        DEFAULT_TIMEOUT,
        agency_is_ready,
    )
    .await?;
    Ok(())
}

/// Waits until an Event with `reason` is recorded on the object `kind`/`name` in
/// `namespace` (`default` for a cluster-scoped object); returns its note.
pub async fn wait_event(
    t: &TestEnv,
    namespace: &str,
    kind: &str,
    name: &str,
    reason: &str,
) -> Result<String> {
    let events = Api::<Event>::namespaced(t.client.clone(), namespace);
    let selector = format!("involvedObject.kind={kind},involvedObject.name={name},reason={reason}");
    eventually(
        &format!("a {reason} Event on {kind} {name}"),
        DEFAULT_TIMEOUT,
        || {
            let (events, selector) = (events.clone(), selector.clone());
            async move {
                let list = events
                    .list(&ListParams::default().fields(&selector))
                    .await?;
                Ok(list
                    .items
                    .into_iter()
                    .next()
                    .map(|e| e.message.unwrap_or_default()))
            }
        },
    )
    .await
}

/// Deletes the test's agencies with their subtrees (cascade annotation set first).
async fn delete_test_agencies(client: &Client, test_namespace: &str) {
    let api = Api::<govbroker_crds::Agency>::all(client.clone());
    let Ok(list) = api
        .list(&ListParams::default().labels(&format!("{TEST_LABEL}={test_namespace}")))
        .await
    else {
        return;
    };
    let cascade =
        serde_json::json!({"metadata": {"annotations": {"govbroker.io/cascade-delete": "true"}}});
    for agency in list.items.iter().rev() {
        let name = agency.name_any();
        let _ = api
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&cascade),
            )
            .await;
        let _ = api.delete(&name, &DeleteParams::background()).await;
    }
}

/// Prints what a person debugging a failed test wants to see of a namespace.
pub async fn dump_namespace(client: &Client, namespace: &str) {
    eprintln!("---- state of namespace {namespace} ----");
    dump_kind::<Pod>(client, namespace, |p| {
        let status = p.status.clone().unwrap_or_default();
        format!(
            "phase={} node={} ip={}",
            status.phase.unwrap_or_default(),
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            status.pod_ip.unwrap_or_default()
        )
    })
    .await;
    dump_kind::<Deployment>(client, namespace, |d| {
        let s = d.status.clone().unwrap_or_default();
        format!(
            "replicas={} ready={} available={}",
            s.replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0)
        )
    })
    .await;
    dump_kind::<ReplicaSet>(client, namespace, |r| {
        let s = r.status.clone().unwrap_or_default();
        format!(
            "replicas={} ready={}",
            s.replicas,
            s.ready_replicas.unwrap_or(0)
        )
    })
    .await;
    dump_kind::<ResourceQuota>(client, namespace, |q| {
        let s = q.status.clone().unwrap_or_default();
        format!(
            "hard={:?} used={:?}",
            s.hard.unwrap_or_default(),
            s.used.unwrap_or_default()
        )
    })
    .await;
    dump_kind::<Event>(client, namespace, |e| {
        format!(
            "{} {}/{}: {} {}",
            e.type_.clone().unwrap_or_default(),
            e.involved_object.kind.clone().unwrap_or_default(),
            e.involved_object.name.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            e.message.clone().unwrap_or_default()
        )
    })
    .await;
}

async fn dump_kind<K>(client: &Client, namespace: &str, describe: impl Fn(&K) -> String)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    <K as Resource>::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).into_owned();
    match Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => {
            for item in &list.items {
                eprintln!("  {kind}/{}: {}", item.name_any(), describe(item));
            }
        }
        Err(e) => eprintln!("  listing {kind}: {e}"),
    }
}

/// Waits (on a watch) until `name` satisfies `condition`, or fails after `timeout`
/// saying what it waited for. Returns the object as it was then (`None` when the
/// condition was met by its absence, as with `conditions::is_deleted`).
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(e)) => Err(anyhow!("watching {name} for {what}: {e}")),
        Err(_) => Err(anyhow!(
            "timed out after {timeout:?} waiting for {what} ({name})"
        )),
    }
}

/// Re-checks `probe` until it yields a value or `timeout` passes, for conditions no
/// watch can express (e.g. an authorization answer). The last error is reported.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition not met");
    loop {
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
