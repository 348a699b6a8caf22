//! govctl against the real provisioning API: the binary is run as a person or a script
//! would, with its own config file per test (never the real home), and its output and
//! exit codes are checked.
//!
//! The cluster, the operator and the API are started once per test process by
//! `govbroker_e2e::api::api_server()`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail, ensure};
use govbroker_crds::{Agency, AgencyLevel, AgencySpec, Owners, ResourceAmounts};
use govbroker_e2e::api::{ApiServer, PLATFORM_ADMINS, api_server};
use govbroker_e2e::{DEFAULT_TIMEOUT, TestEnv, cluster, eventually, scenario, unique_name};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;

/// What one run of govctl did.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Fails unless it exited with `code`.
    fn expect(self, code: i32) -> Result<Run> {
        ensure!(
            self.code == code,
            "`govctl {}` exited {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    fn ok(self) -> Result<Run> {
        self.expect(0)
    }

    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "`govctl {}` printed no JSON:\n{}",
                self.args.join(" "),
                self.stdout
            )
        })
    }
}

/// govctl with its own config file and home directory.
struct Govctl {
    dir: PathBuf,
    config: PathBuf,
    api: Option<&'static ApiServer>,
}

impl Govctl {
    /// For tests against the API (started on first use).
    fn new() -> Result<Govctl> {
        let mut g = Govctl::offline()?;
        g.api = Some(api_server());
        Ok(g)
    }

    /// For tests that need no API.
    fn offline() -> Result<Govctl> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique_name("govctl"));
        std::fs::create_dir_all(&dir)?;
        Ok(Govctl {
            config: dir.join("config").join("config.yaml"),
            dir,
            api: None,
        })
    }

    fn api(&self) -> &'static ApiServer {
        self.api.expect("made with Govctl::new")
    }

    /// Runs govctl with `args` and extra environment `env`; nothing of the caller's
    /// environment that govctl reads leaks in.
    async fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Run> {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_govctl"));
        cmd.args(args)
            .env_remove("GOVCTL_SERVER")
            .env_remove("GOVCTL_TOKEN")
            .env_remove("GOVCTL_CA_FILE")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", &self.dir)
            .env("GOVCTL_CONFIG", &self.config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.context("running govctl")?;
        Ok(Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs govctl with the stored config only.
    async fn run(&self, args: &[&str]) -> Result<Run> {
        self.run_env(args, &[]).await
    }

    /// Runs govctl as the bearer of `token` against the test API, by flags.
    async fn as_user(&self, token: &str, args: &[&str]) -> Result<Run> {
        let api = self.api();
        let ca = api.ca_file.to_string_lossy().into_owned();
        let mut all = vec!["--server", &api.url, "--ca-file", &ca];
        all.extend_from_slice(args);
        self.run_env(&all, &[("GOVCTL_TOKEN", token)]).await
    }
}

impl Drop for Govctl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn admin_token() -> Result<String> {
    cluster().token(&unique_name("admin"), &[PLATFORM_ADMINS])
}

fn user_token(user: &str) -> Result<String> {
    cluster().token(user, &[])
}

fn q(v: &str) -> Option<Quantity> {
    Some(Quantity(v.to_owned()))
}

fn agency(
    name: &str,
    display: &str,
    level: AgencyLevel,
    parent: Option<&str>,
    owner: Option<&str>,
    (cpu, memory, pods): (&str, &str, &str),
) -> Agency {
    Agency::new(
        name,
        AgencySpec {
            budget: None,
            price_list: None,
            display_name: display.to_owned(),
            level,
            parent: parent.map(str::to_owned),
            security_level: 2,
            owners: Owners {
                users: owner.into_iter().map(str::to_owned).collect(),
                ..Owners::default()
            },
            viewers: Owners::default(),
            environments: Vec::new(),
            quota: ResourceAmounts {
                cpu: q(cpu),
                memory: q(memory),
                pods: q(pods),
                ..Default::default()
            },
        },
    )
}

/// Creates the agencies (parents first), labelled so the harness deletes them.
async fn create(t: &TestEnv, agencies: Vec<Agency>) -> Result<()> {
    let api = Api::<Agency>::all(t.client.clone());
    for mut a in agencies {
        govbroker_e2e::label_for_test(&mut a, &t.namespace);
        api.create(&PostParams::default(), &a)
            .await
            .with_context(|| format!("creating agency {:?}", a.metadata.name))?;
    }
    Ok(())
}

/// The names in a JSON list's `key` array (absent when empty, as proto3 JSON does).
fn names(doc: &Value, key: &str) -> BTreeSet<String> {
    doc[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|a| a["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Repeats a govctl run until it exits 0: RBAC the operator grants, and the API's
/// cache, follow a new agency by a moment.
async fn until_ok<F, Fut>(what: &str, mut attempt: F) -> Result<Run>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Run>>,
{
    eventually(what, DEFAULT_TIMEOUT, || {
        let run = attempt();
        async move {
            let run = run.await?;
            if run.code == 0 {
                Ok(Some(run))
            } else {
                bail!("exit {}: {}", run.code, run.stderr.trim())
            }
        }
    })
    .await
}

/// The display column where `word` starts in `line` (characters, not bytes).
fn column(line: &str, word: &str) -> Option<usize> {
    line.find(word).map(|at| line[..at].chars().count())
}

#[tokio::test]
async fn login_stores_the_config_privately_and_refuses_bad_tokens() -> Result<()> {
    let g = Govctl::new()?;
    let api = g.api();
    let ca = api.ca_file.to_string_lossy().into_owned();
    let token = admin_token()?;
    let token_file = g.dir.join("token");
    std::fs::write(&token_file, format!("{token}\n"))?;
    let token_path = token_file.to_string_lossy().into_owned();

    let run = g
        .run(&[
            "login",
            "--server",
            &api.url,
            "--token-file",
            &token_path,
            "--ca-file",
            &ca,
        ])
        .await?
        .ok()?;
    ensure!(
        !run.stdout.contains(&token) && !run.stderr.contains(&token),
        "the token was printed"
    );
    ensure!(run.stdout.contains(&api.url), "{}", run.stdout);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&g.config)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "config mode {mode:o}");
    }
    let stored: Value = serde_yaml::from_str(&std::fs::read_to_string(&g.config)?)?;
    ensure!(stored["server"] == api.url.as_str(), "{stored:?}");
    ensure!(stored["token"] == token.as_str(), "stored token differs");
    ensure!(stored["caFile"] == ca.as_str(), "{stored:?}");

    // Later commands need nothing but the file.
    g.run(&["agency", "list", "--limit", "1"]).await?.ok()?;
    g.run(&["agency", "list", "--limit", "1", "-o", "json"])
        .await?
        .ok()?
        .json()?;

    // The environment overrides the file, and a flag overrides the environment.
    let closed = closed_port_url()?;
    let run = g
        .run_env(
            &["agency", "list"],
            &[("GOVCTL_SERVER", &closed), ("GOVCTL_TOKEN", "x")],
        )
        .await?
        .expect(7)?;
    ensure!(run.stderr.contains(&closed), "{}", run.stderr);
    g.run_env(
        &["--server", &api.url, "agency", "list", "--limit", "1"],
        &[("GOVCTL_SERVER", &closed)],
    )
    .await?
    .ok()?;

    // A token the cluster does not accept is refused, and nothing is stored.
    let fresh = Govctl::new()?;
    for bad in [
        "gbt_not-a-token".to_owned(),
        cluster().expired_token("late@gov.vn", &[])?,
    ] {
        let run = fresh
            .run(&[
                "login",
                "--server",
                &api.url,
                "--token",
                &bad,
                "--ca-file",
                &ca,
            ])
            .await?
            .expect(3)?;
        ensure!(run.stderr.starts_with("govctl: "), "{}", run.stderr);
        ensure!(
            !run.stderr.contains(&bad),
            "the token was printed: {}",
            run.stderr
        );
        ensure!(!fresh.config.exists(), "a refused login stored a config");
    }
    // No token at all is a usage error.
    fresh
        .run(&["login", "--server", &api.url])
        .await?
        .expect(2)?;

    // A kubeconfig context's user token (token and tokenFile), and a valid token
    // without any rights still logs in.
    let nobody = user_token(&unique_name("nobody"))?;
    std::fs::write(fresh.dir.join("binh.token"), &nobody)?;
    let kubeconfig = fresh.dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: admin\ncontexts:\n- name: admin\n  context: {{cluster: c, user: admin}}\n- name: binh\n  context: {{cluster: c, user: binh}}\nusers:\n- name: admin\n  user: {{token: \"{token}\"}}\n- name: binh\n  user: {{tokenFile: binh.token}}\nclusters:\n- name: c\n  cluster: {{server: \"https://127.0.0.1:6443\"}}\n"
        ),
    )?;
    let kc = kubeconfig.to_string_lossy().into_owned();
    for (context, expected) in [(None, &token), (Some("binh"), &nobody)] {
        let mut args = vec![
            "login",
            "--server",
            &api.url,
            "--ca-file",
            &ca,
            "--kubeconfig",
            &kc,
        ];
        args.extend(context.iter().flat_map(|c| ["--context", c]));
        let run = fresh.run(&args).await?.ok()?;
        ensure!(
            !run.stdout.contains(expected.as_str()),
            "the token was printed"
        );
        let stored: Value = serde_yaml::from_str(&std::fs::read_to_string(&fresh.config)?)?;
        ensure!(
            stored["token"] == expected.as_str(),
            "context {context:?}: wrong token stored"
        );
    }
    Ok(())
}

/// `https://127.0.0.1:<a port nothing listens on>`.
fn closed_port_url() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    Ok(format!("https://127.0.0.1:{port}"))
}

#[tokio::test]
async fn an_unreachable_server_exits_7_and_says_which_server() -> Result<()> {
    let g = Govctl::offline()?;
    let url = closed_port_url()?;
    let run = g
        .run(&["--server", &url, "--token", "gbt_x", "agency", "list"])
        .await?
        .expect(7)?;
    ensure!(run.stderr.starts_with("govctl: "), "{}", run.stderr);
    ensure!(
        run.stderr.contains(&url),
        "the message names no server: {}",
        run.stderr
    );
    ensure!(
        run.stderr.contains("--server") && run.stderr.contains("govctl login"),
        "{}",
        run.stderr
    );
    // Usage errors are clap's 2; no server configured is one too.
    g.run(&["agency", "list", "--limit", "0"])
        .await?
        .expect(2)?;
    g.run(&["agency", "list"]).await?.expect(2)?;
    // Completion scripts need no server.
    let run = g.run(&["completion", "bash"]).await?.ok()?;
    ensure!(run.stdout.contains("govctl"), "{}", run.stdout);
    Ok(())
}

#[tokio::test]
async fn agencies_as_a_platform_admin_and_as_an_owner_of_one_subtree() {
    scenario("govctl-agencies", |t: TestEnv| async move {
        let g = Govctl::new()?;
        let admin = admin_token()?;
        let alice_user = format!("{}@hagiang.gov.vn", unique_name("alice"));
        let alice = user_token(&alice_user)?;
        let root = unique_name("bo");
        let a = unique_name("tinh-a");
        let b = unique_name("tinh-b");
        let district = unique_name("huyen");
        create(
            &t,
            vec![
                agency(
                    &root,
                    "Bộ Nội vụ",
                    AgencyLevel::Central,
                    None,
                    None,
                    ("20", "64Gi", "200"),
                ),
                agency(
                    &a,
                    "Tỉnh Hà Giang",
                    AgencyLevel::Province,
                    Some(&root),
                    Some(&alice_user),
                    ("8", "32Gi", "50"),
                ),
                agency(
                    &b,
                    "Thành phố Đà Nẵng",
                    AgencyLevel::Province,
                    Some(&root),
                    None,
                    ("4", "16Gi", "50"),
                ),
                agency(
                    &district,
                    "Huyện Đồng Văn",
                    AgencyLevel::District,
                    Some(&a),
                    None,
                    ("2", "8Gi", "10"),
                ),
            ],
        )
        .await?;

        // A platform admin sees everything.
        let children = until_ok("the API to list the new children", || async {
            let run = g
                .as_user(&admin, &["agency", "list", "--parent", &root, "-o", "json"])
                .await?;
            if run.code == 0 && names(&run.json()?, "agencies").len() < 2 {
                bail!("not both children yet: {}", run.stdout);
            }
            Ok(run)
        })
        .await?;
        ensure!(
            names(&children.json()?, "agencies") == BTreeSet::from([a.clone(), b.clone()]),
            "{}",
            children.stdout
        );
        let table = g
            .as_user(&admin, &["agency", "list", "--prefix", &root])
            .await?
            .ok()?;
        let lines: Vec<&str> = table.stdout.lines().collect();
        ensure!(
            lines.len() == 2 && lines[0].starts_with("NAME ") && lines[1].contains("Bộ Nội vụ"),
            "{}",
            table.stdout
        );

        let got = g
            .as_user(&admin, &["agency", "get", &a, "-o", "json"])
            .await?
            .ok()?
            .json()?;
        ensure!(
            got["displayName"] == "Tỉnh Hà Giang"
                && got["level"] == "Province"
                && got["parent"] == root.as_str(),
            "{got}"
        );
        let described = g.as_user(&admin, &["agency", "get", &a]).await?.ok()?;
        ensure!(
            described.stdout.contains("Tỉnh Hà Giang") && described.stdout.contains(&alice_user),
            "{}",
            described.stdout
        );
        g.as_user(&admin, &["agency", "get", &unique_name("no-such")])
            .await?
            .expect(5)?;

        let tree = until_ok("the tree to hold all four agencies", || async {
            let run = g.as_user(&admin, &["agency", "tree", &root]).await?;
            if run.code == 0 && run.stdout.lines().count() < 5 {
                bail!("tree incomplete:\n{}", run.stdout);
            }
            Ok(run)
        })
        .await?;
        let lines: Vec<&str> = tree.stdout.lines().collect();
        ensure!(lines.len() == 5, "{}", tree.stdout);
        ensure!(lines[1].starts_with(&root), "{}", tree.stdout);
        ensure!(
            lines[2].starts_with(&format!("├── {a} ")),
            "{}",
            tree.stdout
        );
        ensure!(
            lines[3].starts_with(&format!("│   └── {district} ")),
            "{}",
            tree.stdout
        );
        ensure!(
            lines[4].starts_with(&format!("└── {b} ")),
            "{}",
            tree.stdout
        );
        ensure!(
            lines[2].contains("/8 ") && lines[2].contains("/32Gi "),
            "cpu and memory used/hard: {}",
            lines[2]
        );
        // Columns line up however many bytes the Vietnamese names take.
        let level = column(lines[0], "LEVEL").context("LEVEL header")?;
        for (line, word) in lines[1..]
            .iter()
            .zip(["Central", "Province", "District", "Province"])
        {
            ensure!(
                column(line, word) == Some(level),
                "misaligned:\n{}",
                tree.stdout
            );
        }
        let shallow = g
            .as_user(&admin, &["agency", "tree", &root, "--depth", "1"])
            .await?
            .ok()?;
        ensure!(shallow.stdout.lines().count() == 4, "{}", shallow.stdout);
        g.as_user(&admin, &["agency", "tree", &root, "-o", "yaml"])
            .await?
            .ok()?;

        // The owner of province a sees a and its district, nothing above or beside.
        until_ok("alice's read access", || async {
            g.as_user(&alice, &["agency", "get", &a]).await
        })
        .await?;
        let mine = g
            .as_user(&alice, &["agency", "list", "--all", "-o", "json"])
            .await?
            .ok()?;
        ensure!(
            names(&mine.json()?, "agencies") == BTreeSet::from([a.clone(), district.clone()]),
            "alice sees {}",
            mine.stdout
        );
        let districts = g
            .as_user(
                &alice,
                &[
                    "agency", "list", "--parent", &a, "--level", "district", "-o", "json",
                ],
            )
            .await?
            .ok()?;
        ensure!(
            names(&districts.json()?, "agencies") == BTreeSet::from([district.clone()]),
            "{}",
            districts.stdout
        );
        let subtree = g.as_user(&alice, &["agency", "tree", &a]).await?.ok()?;
        ensure!(subtree.stdout.lines().count() == 3, "{}", subtree.stdout);
        ensure!(
            subtree.stdout.contains(&format!("└── {district}")),
            "{}",
            subtree.stdout
        );
        let run = g
            .as_user(&alice, &["agency", "tree", &root])
            .await?
            .expect(4)?;
        ensure!(run.stderr.contains(&alice_user), "{}", run.stderr);
        g.as_user(&alice, &["agency", "get", &b]).await?.expect(4)?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn quota_requests_are_filed_by_the_owner_and_decided_by_the_parents_owner() {
    scenario("govctl-quota", |t: TestEnv| async move {
        let g = Govctl::new()?;
        let started = jiff::Timestamp::now().to_string();
        let admin = admin_token()?;
        let minister_user = format!("{}@noivu.gov.vn", unique_name("minister"));
        let alice_user = format!("{}@hagiang.gov.vn", unique_name("alice"));
        let stranger_user = format!("{}@elsewhere.gov.vn", unique_name("mallory"));
        let (minister, alice, stranger) = (
            user_token(&minister_user)?,
            user_token(&alice_user)?,
            user_token(&stranger_user)?,
        );
        let parent = unique_name("bo");
        let child = unique_name("tinh");
        create(
            &t,
            vec![
                agency(
                    &parent,
                    "Bộ Nội vụ",
                    AgencyLevel::Central,
                    None,
                    Some(&minister_user),
                    ("16", "64Gi", "100"),
                ),
                agency(
                    &child,
                    "Tỉnh Hà Giang",
                    AgencyLevel::Province,
                    Some(&parent),
                    Some(&alice_user),
                    ("2", "4Gi", "10"),
                ),
            ],
        )
        .await?;

        // The child's owner files a request (her rights come from the operator: retry).
        let filed = until_ok("alice may file a quota request", || async {
            g.as_user(
                &alice,
                &[
                    "quota",
                    "request",
                    &child,
                    "--cpu",
                    "4",
                    "--memory",
                    "8Gi",
                    "--justification",
                    "Cổng dịch vụ công cần thêm CPU",
                    "-o",
                    "json",
                ],
            )
            .await
        })
        .await?
        .json()?;
        let name = filed["name"]
            .as_str()
            .context("the request has no name")?
            .to_owned();
        ensure!(
            filed["agency"] == child.as_str() && filed["phase"] == "Pending",
            "{filed}"
        );
        ensure!(
            filed["quota"]["cpu"] == "4" && filed["quota"]["memory"] == "8Gi",
            "{filed}"
        );
        // A quantity that is not one is the caller's mistake.
        g.as_user(
            &alice,
            &[
                "quota",
                "request",
                &child,
                "--cpu",
                "lots",
                "--justification",
                "x",
            ],
        )
        .await?
        .expect(6)?;
        let listed = g
            .as_user(&alice, &["quota", "list", "--agency", &child])
            .await?
            .ok()?;
        ensure!(
            listed
                .stdout
                .lines()
                .any(|l| l.starts_with(&name) && l.contains("Pending")),
            "{}",
            listed.stdout
        );

        // Neither a stranger nor the requester may decide.
        g.as_user(
            &stranger,
            &["quota", "approve", &name, "--reason", "tôi duyệt"],
        )
        .await?
        .expect(4)?;
        let own = g
            .as_user(&alice, &["quota", "approve", &name, "--reason", "tự duyệt"])
            .await?
            .expect(4)?;
        ensure!(
            own.stderr.contains("may decide on this request"),
            "{}",
            own.stderr
        );

        // The parent's owner approves; the child's quota changes.
        until_ok("the minister may approve", || async {
            g.as_user(
                &minister,
                &[
                    "quota",
                    "approve",
                    &name,
                    "--reason",
                    "Đồng ý theo kế hoạch",
                ],
            )
            .await
        })
        .await?;
        eventually("the child's quota to change", DEFAULT_TIMEOUT, || async {
            let got = g
                .as_user(&alice, &["agency", "get", &child, "-o", "json"])
                .await?
                .ok()?
                .json()?;
            Ok((got["quota"]["cpu"] == "4" && got["quota"]["memory"] == "8Gi").then_some(()))
        })
        .await?;
        eventually("the request to be Approved", DEFAULT_TIMEOUT, || async {
            let run = g
                .as_user(
                    &alice,
                    &[
                        "quota", "list", "--agency", &child, "--phase", "approved", "-o", "json",
                    ],
                )
                .await?
                .ok()?;
            Ok(names(&run.json()?, "quotaRequests")
                .contains(&name)
                .then_some(()))
        })
        .await?;
        // Deciding twice is refused; a missing request is not found.
        g.as_user(&minister, &["quota", "reject", &name, "--reason", "đổi ý"])
            .await?
            .expect(6)?;
        g.as_user(
            &admin,
            &["quota", "approve", &unique_name("no-such"), "--reason", "x"],
        )
        .await?
        .expect(5)?;

        // A second request, rejected with a reason.
        let second = g
            .as_user(
                &alice,
                &[
                    "quota",
                    "request",
                    &child,
                    "--pods",
                    "40",
                    "--justification",
                    "Thêm dịch vụ",
                    "-o",
                    "json",
                ],
            )
            .await?
            .ok()?
            .json()?;
        let second = second["name"].as_str().context("no name")?.to_owned();
        let rejected = g
            .as_user(
                &minister,
                &[
                    "quota",
                    "reject",
                    &second,
                    "--reason",
                    "Vượt ngân sách",
                    "-o",
                    "yaml",
                ],
            )
            .await?
            .ok()?;
        ensure!(
            rejected.stdout.contains("Rejected") && rejected.stdout.contains(&minister_user),
            "{}",
            rejected.stdout
        );

        // The audit trail shows the calls, with who made them and how they ended.
        let records = until_ok("the audit records", || async {
            let run = g
                .as_user(
                    &admin,
                    &[
                        "audit", "list", "--agency", &child, "--since", &started, "--all", "-o",
                        "json",
                    ],
                )
                .await?;
            if run.code == 0 && run.json()?["records"].as_array().map_or(0, Vec::len) < 4 {
                bail!("too few records yet: {}", run.stdout);
            }
            Ok(run)
        })
        .await?
        .json()?;
        let seen: BTreeSet<(String, String, String)> = records["records"]
            .as_array()
            .context("no records")?
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                (s("method"), s("user"), s("outcome"))
            })
            .collect();
        for expected in [
            (
                "govbroker.v1.QuotaRequests/CreateQuotaRequest",
                &alice_user,
                "ok",
            ),
            (
                "govbroker.v1.QuotaRequests/ApproveQuotaRequest",
                &stranger_user,
                "permission_denied",
            ),
            (
                "govbroker.v1.QuotaRequests/ApproveQuotaRequest",
                &minister_user,
                "ok",
            ),
            (
                "govbroker.v1.QuotaRequests/RejectQuotaRequest",
                &minister_user,
                "ok",
            ),
        ] {
            let key = (
                expected.0.to_owned(),
                expected.1.clone(),
                expected.2.to_owned(),
            );
            ensure!(seen.contains(&key), "no audit record {key:?} in {seen:?}");
        }
        let table = g
            .as_user(
                &admin,
                &["audit", "list", "--agency", &child, "--limit", "3"],
            )
            .await?
            .ok()?;
        ensure!(table.stdout.starts_with("SEQ "), "{}", table.stdout);
        ensure!(table.stdout.lines().count() == 4, "{}", table.stdout);
        // The owner reads her agency's trail, but verifying the whole chain is for admins.
        g.as_user(&alice, &["audit", "list", "--agency", &child])
            .await?
            .ok()?;
        g.as_user(&alice, &["audit", "verify"]).await?.expect(4)?;

        // The chain verifies locally.
        let verified = g.as_user(&admin, &["audit", "verify"]).await?.ok()?;
        let line = verified.stdout.trim();
        let rest = line
            .strip_prefix("audit chain verified: ")
            .with_context(|| format!("unexpected output: {line}"))?;
        let (count, head) = rest
            .split_once(" records, head ")
            .context(line.to_owned())?;
        let count: u64 = count.parse()?;
        let max_seq = records["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["seq"].as_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        ensure!(
            count >= max_seq,
            "verified {count} records but record {max_seq} exists"
        );
        ensure!(
            head.len() == 64 && head.bytes().all(|b| b.is_ascii_hexdigit()),
            "head {head}"
        );
        let json = g
            .as_user(&admin, &["audit", "verify", "-o", "json"])
            .await?
            .ok()?
            .json()?;
        ensure!(
            json["verified"] == true && json["records"].as_u64() >= Some(count),
            "{json}"
        );

        // A kept head checks the trail against later removal or rewriting: it passes
        // while the record is there as it was, and breaks (exit 8) otherwise.
        let seq = json["headSeq"].as_u64().context("no headSeq")?;
        let hash = json["headHash"].as_str().context("no headHash")?;
        g.as_user(
            &admin,
            &["audit", "verify", "--checkpoint", &format!("{seq}:{hash}")],
        )
        .await?
        .ok()?;
        let forged = format!("{seq}:{}", "0".repeat(64));
        let run = g
            .as_user(&admin, &["audit", "verify", "--checkpoint", &forged])
            .await?
            .expect(8)?;
        ensure!(
            run.stderr
                .contains(&format!("audit chain broken at record {seq}")),
            "{}",
            run.stderr
        );
        let beyond = format!("{}:{hash}", seq + 1_000_000);
        let run = g
            .as_user(&admin, &["audit", "verify", "--checkpoint", &beyond])
            .await?
            .expect(8)?;
        ensure!(
            run.stderr.contains("removed from the end"),
            "{}",
            run.stderr
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn bill_usage_and_rerate_show_the_integers_and_keep_the_earlier_bill() {
    use govbroker_crds::PriceList;
    use govbroker_domain::metering::{Attribution, Day, Integrator, Meter};
    use govbroker_ledger::LedgerOptions;
    use govbroker_ledger::usage::{AgencyCheckpoint, AgencyCommit, UsageLedger};

    let g = Govctl::new().expect("govctl");
    scenario("govctl-bill", |t| async move {
        let owner = unique_name("ke-toan");
        let name = unique_name("so-tc");
        let prices = unique_name("gia");
        let rates = |cpu: &str| {
            serde_json::json!([{"effectiveFrom": "2026-01-01", "cpuPerVcpuHour": cpu,
                "memoryPerGibHour": "0", "storagePerGibMonth": "0"}])
        };
        let price_list: PriceList = serde_json::from_value(serde_json::json!({
            "apiVersion": "govbroker.io/v1alpha1", "kind": "PriceList",
            "metadata": {"name": prices},
            "spec": {"revisions": [
                {"revision": 1, "reason": "QĐ 1", "rates": rates("720")},
                {"revision": 2, "reason": "QĐ 2", "rates": rates("900")}]}
        }))?;
        let lists = Api::<PriceList>::all(t.client.clone());
        lists.create(&PostParams::default(), &price_list).await?;
        let result = async {
            let mut a = agency(
                &name,
                "Sở Tài chính",
                AgencyLevel::Central,
                None,
                Some(&owner),
                ("1", "1Gi", "5"),
            );
            a.spec.price_list = Some(prices.clone());
            create(&t, vec![a]).await?;
            // One vCPU for an hour on 10 October 2026.
            let ledger = UsageLedger::connect(
                &[govbroker_e2e::api::LEDGER_ENDPOINT.to_owned()],
                &g.api().ledger_prefix,
                LedgerOptions::default(),
            )
            .await?;
            let fence = ledger.acquire(&format!("test-{name}"), 10).await?;
            let mut integrator = Integrator::default();
            let start = "2026-10-10".parse::<Day>()?.start() + 3600;
            let who = Attribution {
                agency: name.clone(),
                environment: "prod".into(),
                namespace: format!("{name}-prod"),
                workload: "Workload/cong".into(),
            };
            integrator.observe("x", start, Some((who, vec![(Meter::Cpu, 1000)])));
            integrator.observe("x", start + 3600, None);
            let days = integrator
                .take_days()
                .into_iter()
                .map(|((_, d), b)| (d, b))
                .collect();
            let commit = AgencyCommit {
                checkpoint: AgencyCheckpoint {
                    agency: name.clone(),
                    ..Default::default()
                },
                days,
                expected_revision: 0,
            };
            ledger.commit(&fence, &[commit]).await?;
            ledger.release(&fence).await?;

            let owner_token = user_token(&owner)?;
            let args = [
                "bill",
                "usage",
                &name,
                "--from",
                "2026-10-01",
                "--to",
                "2026-10-31",
                "-o",
                "json",
            ];
            let usage = until_ok("the owner reads the usage", || {
                g.as_user(&owner_token, &args)
            })
            .await?
            .json()?;
            ensure!(usage["lines"][0]["quantity"] == "3600000", "{usage}");
            ensure!(usage["lines"][0]["unit"] == "milli-core-seconds", "{usage}");
            let rerate = [
                "bill",
                "rerate",
                &name,
                "--month",
                "2026-10",
                "--price-list-revision",
                "1",
                "--reason",
                "QĐ 3 sửa giá",
            ];
            // The owner may read bills, not re-rate them: exit 4.
            g.as_user(&owner_token, &rerate).await?.expect(4)?;
            let out = g.as_user(&admin_token()?, &rerate).await?.ok()?;
            ensure!(
                out.stdout.contains("Total:          720 ₫"),
                "{}",
                out.stdout
            );
            ensure!(out.stdout.contains("QĐ 3 sửa giá"), "{}", out.stdout);
            let shown = g
                .as_user(&owner_token, &["bill", "show", &name, "--month", "2026-10"])
                .await?
                .ok()?;
            ensure!(
                shown.stdout.contains("Earlier versions of this bill:")
                    && shown.stdout.contains("900 ₫"),
                "{}",
                shown.stdout
            );
            anyhow::Ok(())
        }
        .await;
        let _ = lists
            .delete(&prices, &kube::api::DeleteParams::default())
            .await;
        result
    })
    .await;
}
