//! Project tasks, run as `cargo xtask <task>`.
//!
//! The two commands of the README live here: `cargo xtask cloud up` starts a local
//! government cloud (a real Kubernetes control plane built from the Go module proxy,
//! the CRDs, the operator and the provisioning API, seeded with demo agencies) and
//! `cargo xtask test` runs the whole test suite.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

/// Loopback address of the operator's health and metrics server in the local cloud.
const OPERATOR_METRICS_ADDR: &str = "127.0.0.1:18080";
/// Loopback address of the operator's admission webhook in the local cloud.
const OPERATOR_WEBHOOK_ADDR: &str = "127.0.0.1:18443";
/// Address of the provisioning API (gRPC and HTTP/JSON, TLS) in the local cloud.
const API_ADDR: &str = "127.0.0.1:18500";
/// Plain-HTTP health and metrics address of the API in the local cloud.
const API_HEALTH_ADDR: &str = "127.0.0.1:18501";
/// The owner of a demo agency (demo/agencies.yaml) that `cloud up` mints a token for.
const DEMO_OWNER: (&str, &str) = ("nguyen.van.an@danang.gov.vn", "so-tttt-da-nang");
/// Label of the demo's data-service claims and share (demo/data.yaml), which the waits select.
const DEMO_SELECTOR: &str = "app.kubernetes.io/part-of=govbroker-demo";

/// Debian packages the build and the tests need: (a shell test that succeeds when the
/// package is installed, the package). protoc compiles the protos (ours and
/// etcd-client's); the local cloud runs PostgreSQL and Redis servers for the data-service
/// broker.
const SYSTEM_PACKAGES: &[(&str, &str)] = &[
    ("command -v protoc", "protobuf-compiler"),
    // Debian keeps the server binaries off PATH, in /usr/lib/postgresql/<major>/bin.
    ("ls /usr/lib/postgresql/*/bin/postgres", "postgresql"),
    ("command -v redis-server", "redis-server"),
];

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "govbroker's project tasks",
    long_about = "govbroker's project tasks.\n\n\
        The first run builds the Kubernetes control plane from the Go module proxy \
        (about 5-10 minutes on 2 cores); later runs reuse the Go caches and take seconds.",
    after_help = "Examples:\n  \
        cargo xtask cloud up          # start the local government cloud\n  \
        cargo xtask cloud status      # is it running?\n  \
        cargo xtask cloud down        # stop it (data kept; --purge removes it)\n  \
        cargo xtask test              # everything CI runs\n  \
        cargo xtask test -- quota     # only tests whose name contains 'quota'"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The local government cloud: control plane, CRDs, the operator and the API.
    Cloud {
        #[command(subcommand)]
        action: CloudAction,
    },
    /// The local Kubernetes control plane alone (what the tests use).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Run the whole test suite: formatting, lints, generated files, unit and end-to-end tests.
    Test {
        /// Keep the control plane running afterwards (also GOVBROKER_KEEP_TEST_STATE=1).
        #[arg(long, env = "GOVBROKER_KEEP_TEST_STATE")]
        keep: bool,
        /// Arguments passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// Regenerate the CRD YAML in charts/govbroker/crds from the Rust types.
    Crdgen,
}

#[derive(Subcommand)]
enum CloudAction {
    /// Build what is missing, start the control plane, install the CRDs, start the operator.
    Up {
        /// Number of fake nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
    },
    /// Stop every process of the local cloud.
    Down {
        /// Also delete its data (etcd contents, certificates).
        #[arg(long)]
        purge: bool,
    },
    /// Show what runs and whether it answers.
    Status,
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Build the control-plane binaries (cached).
    Build,
    /// Start the control plane, or reuse a running one.
    Up,
    /// Stop it.
    Down,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let project = Project::locate()?;
    match cli.task {
        Task::Cloud { action } => match action {
            CloudAction::Up { nodes } => project.cloud_up(nodes),
            CloudAction::Down { purge } => project.govcluster_down(purge),
            CloudAction::Status => project.govcluster(&["status"]),
        },
        Task::Cluster { action } => match action {
            ClusterAction::Build => project.build_cluster(),
            ClusterAction::Up => project.cluster_up(3),
            ClusterAction::Down => project.govcluster_down(false),
        },
        Task::Test {
            keep,
            cargo_test_args,
        } => project.test(keep, &cargo_test_args),
        Task::Crdgen => {
            project.cargo(&["run", "--quiet", "-p", "govbroker-crds", "--bin", "crdgen"])
        }
    }
}

/// Where things are: the workspace root and cargo's target directory.
struct Project {
    root: PathBuf,
    target: PathBuf,
}

impl Project {
    fn locate() -> Result<Self> {
        let output = Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .context("running cargo metadata")?;
        if !output.status.success() {
            bail!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let meta: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let path = |key: &str| -> Result<PathBuf> {
            meta[key]
                .as_str()
                .map(PathBuf::from)
                .with_context(|| format!("cargo metadata has no {key}"))
        };
        Ok(Self {
            root: path("workspace_root")?,
            target: path("target_directory")?,
        })
    }

    fn cluster_bin(&self) -> PathBuf {
        self.target.join("cluster").join("bin")
    }

    fn state_dir(&self) -> PathBuf {
        self.target.join("cluster").join("state")
    }

    fn build_cluster(&self) -> Result<()> {
        step("Building the local control plane (cached after the first run)");
        run_cmd(
            Command::new("bash")
                .arg(self.root.join("tests/cluster/build.sh"))
                .arg(self.cluster_bin()),
        )
    }

    fn govcluster(&self, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new(self.cluster_bin().join("govcluster"));
        cmd.arg(args[0])
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(&args[1..]);
        run_cmd(&mut cmd)
    }

    fn govcluster_down(&self, purge: bool) -> Result<()> {
        if !self.cluster_bin().join("govcluster").exists() {
            println!("the local cloud was never built here; nothing to stop");
            return Ok(());
        }
        step("Stopping the local cloud");
        self.govcluster(if purge {
            &["down", "--purge"]
        } else {
            &["down"]
        })
    }

    fn cluster_up(&self, nodes: u32) -> Result<()> {
        // The control plane runs PostgreSQL and Redis from Debian packages.
        ensure_system_packages()?;
        self.build_cluster()?;
        step("Starting the local control plane (or reusing a running one)");
        let bin = self.cluster_bin();
        let nodes = nodes.to_string();
        self.govcluster(&[
            "up",
            "--reuse",
            "--bin-dir",
            path_str(&bin)?,
            "--nodes",
            &nodes,
        ])
    }

    fn kubeconfig(&self) -> PathBuf {
        self.state_dir().join("kubeconfig")
    }

    fn cargo(&self, args: &[&str]) -> Result<()> {
        run_cmd(Command::new(cargo()).current_dir(&self.root).args(args))
    }

    /// Applies the generated CRDs with the kubectl built beside the control plane.
    fn install_crds(&self) -> Result<()> {
        let crds = self.root.join("charts/govbroker/crds");
        let has_yaml = std::fs::read_dir(&crds)
            .with_context(|| format!("reading {}", crds.display()))?
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "yaml"));
        if !has_yaml {
            println!("no CRDs to install yet");
            return Ok(());
        }
        step("Installing the CRDs");
        self.apply("govbroker-install", false, &crds)
    }

    fn cloud_up(&self, nodes: u32) -> Result<()> {
        let started = Instant::now();
        self.cluster_up(nodes)?;
        self.install_crds()?;

        step("Building and starting the operator");
        self.cargo(&["build", "--quiet", "-p", "govbroker-operator"])?;
        let operator = self.target.join("debug").join("govbroker-operator");
        let kubeconfig = self.kubeconfig();
        run_cmd(
            Command::new(self.cluster_bin().join("govcluster"))
                .args(["spawn", "--state-dir"])
                .arg(self.state_dir())
                .args(["--name", "operator", "--wait-port", "18080", "--"])
                .arg("env")
                .arg(format!("KUBECONFIG={}", kubeconfig.display()))
                .arg(operator)
                .args([
                    "--metrics-addr",
                    OPERATOR_METRICS_ADDR,
                    "--webhook-addr",
                    OPERATOR_WEBHOOK_ADDR,
                ])
                .arg(format!("--webhook-url=https://{OPERATOR_WEBHOOK_ADDR}"))
                .arg("--webhook-cert-dir")
                .arg(self.state_dir().join("webhook-pki")),
        )?;
        self.wait_ready("operator", OPERATOR_METRICS_ADDR)?;

        step("Building and starting the provisioning API");
        for file in [
            "charts/govbroker/templates/clusterroles.yaml",
            "demo/rbac.yaml",
        ] {
            self.apply("govbroker-install", true, &self.root.join(file))?;
        }
        self.cargo(&["build", "--quiet", "-p", "govbroker-api", "-p", "govctl"])?;
        let api_kubeconfig = self.state_dir().join("api.kubeconfig");
        self.govcluster(&[
            "user",
            "--name",
            "govbroker-api",
            "--out",
            path_str(&api_kubeconfig)?,
        ])?;
        let api_pki = self.state_dir().join("api-pki");
        run_cmd(
            Command::new(self.cluster_bin().join("govcluster"))
                .args(["spawn", "--state-dir"])
                .arg(self.state_dir())
                .args(["--name", "api", "--wait-port", "18501", "--"])
                .arg("env")
                .arg(format!("KUBECONFIG={}", api_kubeconfig.display()))
                .arg(self.target.join("debug").join("govbroker-api"))
                .args(["--listen", API_ADDR, "--health-addr", API_HEALTH_ADDR])
                .arg("--tls-cert-dir")
                .arg(&api_pki),
        )?;
        self.wait_ready("API", API_HEALTH_ADDR)?;

        step("Seeding the demo agencies (demo/agencies.yaml)");
        self.apply(
            "govbroker-demo",
            false,
            &self.root.join("demo/agencies.yaml"),
        )?;
        self.wait_for(
            "condition=Ready",
            [
                OsStr::new("-f"),
                self.root.join("demo/agencies.yaml").as_os_str(),
            ],
        )?;
        run_cmd(self.kubectl().args(["get", "agencies", "-o", "wide"]))?;

        step(
            "Offering the shared PostgreSQL and Redis as data-service classes, with the demo agencies' claims and one share (demo/data-services.yaml, demo/data.yaml)",
        );
        self.seed_data_services()?;

        step("Starting the metering collector, billing with demo/price-list.yaml");
        self.apply(
            "govbroker-demo",
            false,
            &self.root.join("demo/price-list.yaml"),
        )?;
        self.cargo(&["build", "--quiet", "-p", "govbroker-metering"])?;
        run_cmd(
            Command::new(self.cluster_bin().join("govcluster"))
                .args(["spawn", "--state-dir"])
                .arg(self.state_dir())
                .args(["--name", "metering", "--"])
                .arg("env")
                .arg(format!("KUBECONFIG={}", kubeconfig.display()))
                .arg(self.target.join("debug").join("govbroker-metering"))
                .args(["--flush-seconds", "10", "--cost-seconds", "60"]),
        )?;

        step("Running the demo agencies' applications (demo/workloads.yaml)");
        self.apply(
            "govbroker-demo",
            false,
            &self.root.join("demo/workloads.yaml"),
        )?;
        self.wait_for(
            "jsonpath={.status.phase}=Available",
            [
                OsStr::new("-f"),
                self.root.join("demo/workloads.yaml").as_os_str(),
            ],
        )?;

        let owner_token = self.mint_token(DEMO_OWNER.0, &[])?;
        let admin_token = self.mint_token("admin@gov.vn", &["govbroker:platform-admins"])?;
        let bin = self.cluster_bin();
        let logs = self.state_dir().join("logs");
        let govctl = self.target.join("debug").join("govctl");
        let ca = api_pki.join("ca.crt");
        println!(
            "\nThe local government cloud is up ({:.0}s).\n\n\
             Point kubectl at it:\n  \
               export KUBECONFIG={kubeconfig}\n  \
               export PATH={bin}:$PATH          # kubectl {k8s} is built there\n  \
               kubectl get agencies              # the demo tree (short name: ag)\n  \
               kubectl get ns -l govbroker.io/agency=so-tttt-da-nang\n  \
               kubectl explain agency.spec\n\n\
             Use the provisioning API as {owner}, owner of {agency} (a token for an hour):\n  \
               alias govctl={govctl}\n  \
               govctl login --server https://{api} --ca-file {ca} --token {owner_token}\n  \
               govctl agency tree {agency}\n  \
               govctl quota request {agency} --cpu 4 --justification \"Cổng dịch vụ công cần thêm CPU\"\n\
             As a platform admin: govctl login ... --token {admin_token}\n\
             Claim a PostgreSQL database for {agency} (classes: kubectl get dsc):\n  \
               kubectl apply -f demo/claim.yaml && kubectl -n {agency}-prod get dsclaim\n\
             Its applications: kubectl -n {agency}-prod get wl,deploy,pods   or   govctl app list --agency {agency} --env prod\n\
             Its bill so far (usage accrues from now; metering.log): govctl bill show {agency}   and   kubectl get ag -o wide\n\
             HTTP/JSON: curl --cacert {ca} -H \"Authorization: Bearer $TOKEN\" https://{api}/v1/agencies\n\
             API docs:  https://{api}/openapi.json\n\n\
             Operator:  http://{metrics}/healthz  /readyz  /metrics\n\
             API:       http://{api_health}/healthz  /readyz  /metrics\n\
             Logs:      {logs}/  (kube-apiserver.log, operator.log, api.log, ...)\n\
             Stop it:   cargo xtask cloud down   (add --purge to forget its data)",
            started.elapsed().as_secs_f64(),
            kubeconfig = kubeconfig.display(),
            bin = bin.display(),
            k8s = std::fs::read_to_string(self.root.join("tests/cluster/K8S_VERSION"))?.trim(),
            metrics = OPERATOR_METRICS_ADDR,
            logs = logs.display(),
            owner = DEMO_OWNER.0,
            agency = DEMO_OWNER.1,
            govctl = govctl.display(),
            api = API_ADDR,
            api_health = API_HEALTH_ADDR,
            ca = ca.display(),
        );
        Ok(())
    }

    /// The admin Secrets of the local PostgreSQL and Redis in `govbroker-system` (from the
    /// credentials govcluster generated, sent on kubectl's stdin so no password is on a
    /// command line), then the classes that point at them.
    fn seed_data_services(&self) -> Result<()> {
        use std::io::Write as _;
        let mut manifest = String::from(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: govbroker-system\n  labels: {govbroker.io/platform: \"true\"}\n",
        );
        for name in ["postgres-admin", "redis-admin"] {
            let path = self.state_dir().join(name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let field = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{key}=")))
                    .map(str::to_owned)
                    .with_context(|| format!("{} has no {key}", path.display()))
            };
            manifest.push_str(&format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: govbroker-system\nstringData:\n  username: {:?}\n  password: {:?}\n",
                field("user")?,
                field("password")?
            ));
        }
        let mut child = self
            .kubectl()
            .args([
                "apply",
                "--server-side",
                "--field-manager=govbroker-demo",
                "-f",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting kubectl")?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(manifest.as_bytes())?;
        if !child.wait()?.success() {
            bail!("kubectl could not apply the data servers' admin Secrets");
        }
        self.apply(
            "govbroker-demo",
            false,
            &self.root.join("demo/data-services.yaml"),
        )?;
        self.apply("govbroker-demo", false, &self.root.join("demo/data.yaml"))?;
        self.wait_for(
            "jsonpath={.status.phase}=Ready",
            [
                "dataserviceclaims",
                "--all-namespaces",
                "--selector",
                DEMO_SELECTOR,
            ],
        )?;
        self.wait_for(
            "jsonpath={.status.phase}=Granted",
            ["datashares", "--selector", DEMO_SELECTOR],
        )?;
        run_cmd(
            self.kubectl()
                .args(["get", "dataserviceclaims", "--all-namespaces"]),
        )?;
        run_cmd(self.kubectl().args(["get", "datashares"]))
    }

    /// `kubectl wait --for=<condition>` (two minutes at most) on the demo objects that
    /// `targets` name. Waits name the demo's own objects (a file, a label), never
    /// `--all`: a test's leftovers in a reused cloud must not hold the demo up.
    fn wait_for<T: AsRef<OsStr>>(
        &self,
        condition: &str,
        targets: impl IntoIterator<Item = T>,
    ) -> Result<()> {
        run_cmd(
            self.kubectl()
                .args(["wait", &format!("--for={condition}"), "--timeout=120s"])
                .args(targets),
        )
    }

    /// kubectl of the local cloud, pointed at its admin kubeconfig.
    fn kubectl(&self) -> Command {
        let mut kubectl = Command::new(self.cluster_bin().join("kubectl"));
        kubectl.arg("--kubeconfig").arg(self.kubeconfig());
        kubectl
    }

    /// `kubectl apply --server-side` of `path` as field manager `manager` (taking over
    /// fields another manager holds when `force`).
    fn apply(&self, manager: &str, force: bool, path: &Path) -> Result<()> {
        let mut kubectl = self.kubectl();
        kubectl.args(["apply", "--server-side"]);
        if force {
            kubectl.arg("--force-conflicts");
        }
        run_cmd(
            kubectl
                .arg(format!("--field-manager={manager}"))
                .arg("-f")
                .arg(path),
        )
    }

    /// A bearer token for `user` in `groups`, valid for an hour (`govcluster token`).
    fn mint_token(&self, user: &str, groups: &[&str]) -> Result<String> {
        let mut cmd = Command::new(self.cluster_bin().join("govcluster"));
        cmd.args(["token", "--state-dir"])
            .arg(self.state_dir())
            .args(["--user", user]);
        for group in groups {
            cmd.args(["--group", group]);
        }
        let out = cmd.output().context("running govcluster token")?;
        if !out.status.success() {
            bail!(
                "govcluster token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Waits until `what` answers /readyz on `addr` (plain HTTP).
    fn wait_ready(&self, what: &str, addr: &str) -> Result<()> {
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
                use std::io::{Read as _, Write as _};
                let mut response = String::new();
                let asked = write!(stream, "GET /readyz HTTP/1.0\r\n\r\n").is_ok();
                if asked
                    && stream.read_to_string(&mut response).is_ok()
                    && response.split_whitespace().nth(1) == Some("200")
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the {what} did not become ready within 120s; see the logs in {}",
                    self.state_dir().join("logs").display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    fn test(&self, keep: bool, cargo_test_args: &[String]) -> Result<()> {
        let started = Instant::now();
        ensure_system_packages()?;
        step("Checking formatting");
        self.cargo(&["fmt", "--all", "--check"])?;
        step("Linting (clippy, warnings are errors)");
        self.cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
        step("Checking the generated CRD YAML is current");
        self.cargo(&[
            "run",
            "--quiet",
            "-p",
            "govbroker-crds",
            "--bin",
            "crdgen",
            "--",
            "--check",
        ])?;
        self.cluster_up(3)?;

        step("Running the tests (unit and end-to-end against the local control plane)");
        let mut args = vec!["test", "--workspace", "--no-fail-fast", "--"];
        args.extend(cargo_test_args.iter().map(String::as_str));
        let result = self.cargo_test(&args);

        if keep {
            println!(
                "\nkeeping the control plane running: export KUBECONFIG={}",
                self.kubeconfig().display()
            );
        } else {
            self.govcluster_down(false)?;
        }
        let (passed, failed) = result?;
        println!(
            "\nall checks passed in {:.0}s",
            started.elapsed().as_secs_f64()
        );
        // One closing line over every test binary, so a summary reader sees the total.
        println!("{passed} passed, {failed} failed");
        Ok(())
    }

    /// Runs `cargo test`, echoing its output, and adds up the passed and failed tests of
    /// every `test result:` line. Fails if any test failed.
    fn cargo_test(&self, args: &[&str]) -> Result<(u64, u64)> {
        use std::io::BufRead as _;
        let mut child = Command::new(cargo())
            .current_dir(&self.root)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting cargo test")?;
        let (mut passed, mut failed) = (0, 0);
        if let Some(stdout) = child.stdout.take() {
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line?;
                println!("{line}");
                if let Some(summary) = line.strip_prefix("test result: ") {
                    passed += count(summary, " passed");
                    failed += count(summary, " failed");
                }
            }
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("cargo test failed ({status}): {passed} passed, {failed} failed");
        }
        Ok((passed, failed))
    }
}

/// The number before `what` in a cargo test summary such as `ok. 8 passed; 0 failed; ...`.
fn count(summary: &str, what: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| part.trim().strip_suffix(what.trim_start()).map(str::trim))
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Installs the Debian packages in [`SYSTEM_PACKAGES`] that are missing (with apt-get,
/// as root or through sudo), so a fresh machine needs nothing installed by hand.
fn ensure_system_packages() -> Result<()> {
    let missing: Vec<&str> = SYSTEM_PACKAGES
        .iter()
        .filter(|(installed, _)| {
            !Command::new("sh")
                .args(["-c", installed])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "Installing Debian packages: {}",
        missing.join(" ")
    ));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        run_cmd(&mut cmd)
    };
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    if apt(&install).is_err() {
        // A fresh machine may have no package lists yet.
        apt(&["update"])?;
        apt(&install)
            .with_context(|| format!("installing {} (needs root or sudo)", missing.join(" ")))?;
    }
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

fn step(what: &str) {
    println!("\n==> {what}");
}

fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_come_from_cargo_test_summaries() {
        let summary =
            "ok. 8 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 11.01s";
        assert_eq!(count(summary, " passed"), 8);
        assert_eq!(count(summary, " failed"), 1);
        assert_eq!(count("FAILED. 2 passed; 2 failed; 0 ignored", " failed"), 2);
    }
}
