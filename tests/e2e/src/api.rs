//! The provisioning API under test: built, given its RBAC and identity, and started
//! once per test process (each test binary gets a fresh audit chain).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::{Cluster, DEFAULT_TIMEOUT, cluster, http_get, run, unique_suffix, workspace_root};

/// Address of the API (gRPC and HTTP/JSON, TLS) in tests.
pub const API_ADDR: &str = "127.0.0.1:18500";
/// Plain-HTTP health and metrics address of the API in tests.
pub const API_HEALTH_ADDR: &str = "127.0.0.1:18501";
/// The platform-admin group (the operator's default `--platform-admin-group`).
pub const PLATFORM_ADMINS: &str = "govbroker:platform-admins";
/// The finance-viewer group the tests bind the chart's role to.
pub const FINANCE: &str = "govbroker:finance";

/// A running API.
#[derive(Debug)]
pub struct ApiServer {
    /// `https://127.0.0.1:18500`.
    pub url: String,
    /// PEM of the CA that signed the API's certificate.
    pub ca_pem: Vec<u8>,
    /// Its CA file, for govctl's `--ca-file`.
    pub ca_file: PathBuf,
    /// The ledger key prefix of this run's audit chain.
    pub ledger_prefix: String,
}

static API: OnceLock<Result<ApiServer, String>> = OnceLock::new();

/// The binary `bin` of `package`, next to the running test binary's profile directory.
///
/// `cargo test --workspace` (what `cargo xtask test` runs) builds every package's
/// binaries with the tests, so they are there and current. Only when one is missing
/// (e.g. `cargo test -p govctl` alone) is it built here; building always would make
/// cargo rebuild it with a different feature set than the test build's.
pub fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // A test runs as <target>/<profile>/deps/<test>, a benchmark as <target>/<profile>/<bin>.
    let parent = exe
        .parent()
        .context("the running binary has no directory")?;
    let profile_dir = if parent.ends_with("deps") {
        parent.parent().context("finding the profile directory")?
    } else {
        parent
    };
    let path = profile_dir.join(bin);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build
            .current_dir(workspace_root())
            .args(["build", "--quiet", "-p", package, "--bin", bin]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        run(&mut build)?;
    }
    Ok(path)
}

/// The operator and the API, running against the local cluster, once per test process.
pub fn api_server() -> &'static ApiServer {
    let result = API.get_or_init(|| start().map_err(|e| format!("{e:#}")));
    match result {
        Ok(api) => api,
        Err(e) => panic!("the API could not start: {e}"),
    }
}

fn start() -> Result<ApiServer> {
    let operator = workspace_binary("govbroker-operator", "govbroker-operator")?;
    super::operator(operator.to_str().context("operator path")?);
    let api = workspace_binary("govbroker-api", "govbroker-api")?;
    let cluster = cluster();
    install_rbac(cluster)?;
    let kubeconfig = cluster.state_dir.join("api.kubeconfig");
    run(Command::new(cluster.bin_dir.join("govcluster"))
        .args(["user", "--state-dir"])
        .arg(&cluster.state_dir)
        .args(["--name", "govbroker-api", "--out"])
        .arg(&kubeconfig))?;
    let pki = cluster.state_dir.join("api-pki");
    // One chain per test binary, emptied at start: tests that tamper with records stay
    // in their own chain, and runs leave no growing pile of keys behind.
    let binary = std::env::current_exe()?
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| {
            s.rsplit_once('-')
                .map_or(s, |(name, _hash)| name)
                .to_owned()
        })
        .unwrap_or_else(unique_suffix);
    let ledger_prefix = format!("/govbroker-e2e/{binary}");
    clear_ledger(&ledger_prefix)?;
    run(Command::new(cluster.bin_dir.join("govcluster"))
        .args(["spawn", "--state-dir"])
        .arg(&cluster.state_dir)
        .args([
            "--name",
            "api",
            "--wait-port",
            API_HEALTH_ADDR.rsplit(':').next().unwrap_or_default(),
            "--",
        ])
        .arg("env")
        .arg(format!("KUBECONFIG={}", kubeconfig.display()))
        .arg("RUST_LOG=info,kube_runtime=warn")
        .arg(&api)
        .args(["--listen", API_ADDR, "--health-addr", API_HEALTH_ADDR])
        .arg("--tls-cert-dir")
        .arg(&pki)
        .args(["--ledger-prefix", &ledger_prefix]))?;
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    while !http_get(API_HEALTH_ADDR, "/readyz").is_ok_and(|(code, _)| code == 200) {
        if Instant::now() > deadline {
            bail!(
                "the API did not become ready within {DEFAULT_TIMEOUT:?}; see {}",
                cluster.state_dir.join("logs/api.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ca_file = pki.join("ca.crt");
    Ok(ApiServer {
        url: format!("https://{API_ADDR}"),
        ca_pem: std::fs::read(&ca_file)
            .with_context(|| format!("reading {}", ca_file.display()))?,
        ca_file,
        ledger_prefix,
    })
}

/// The ledger etcd of the local cloud.
pub const LEDGER_ENDPOINT: &str = "http://127.0.0.1:12381";

/// Deletes every key under `prefix` in the ledger etcd (on a thread of its own: this
/// runs inside the tests' runtimes, which must not be blocked on).
pub fn clear_ledger(prefix: &str) -> Result<()> {
    let prefix = format!("{prefix}/");
    std::thread::spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut client = etcd_client::Client::connect([LEDGER_ENDPOINT], None).await?;
            client
                .delete(
                    prefix,
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await?;
            Ok(())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("clearing the ledger panicked"))?
}

/// Applies the chart's ClusterRoles and `demo/rbac.yaml`, which binds them as an
/// installation would: the API's role to the `govbroker-api` user, platform-admin and
/// finance-viewer to their groups.
fn install_rbac(cluster: &Cluster) -> Result<()> {
    for file in [
        "charts/govbroker/templates/clusterroles.yaml",
        "demo/rbac.yaml",
    ] {
        run(Command::new(cluster.bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=govbroker-install",
                "-f",
            ])
            .arg(workspace_root().join(file)))?;
    }
    Ok(())
}
