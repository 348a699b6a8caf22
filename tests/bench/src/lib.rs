//! What govbroker's benchmarks share: a realistic agency tree of any size, the objects
//! the operator would make for it (for a baseline that writes them directly), and small
//! readers of the operator's metrics and of `/proc`.
//!
//! Benchmarks measure and print; they assert nothing about timings. They run against the
//! real local control plane started (or reused) by [`govbroker_e2e::cluster`].
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use govbroker_crds::{Agency, AgencyLevel, AgencySpec, Environment, Owners, ResourceAmounts};
use govbroker_domain::Amounts;
use govbroker_domain::isolation;
use govbroker_e2e::Cluster;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Label on every object a benchmark creates (`govbroker.io/bench=<run id>`), so that a
/// run's leftovers are one label selector away.
pub const BENCH_LABEL: &str = "govbroker.io/bench";

/// How many agencies of each level a tree of `n` agencies has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeShape {
    /// Central ministries (always 1: the root).
    pub central: usize,
    /// Provinces under the root.
    pub provinces: usize,
    /// Districts under the provinces.
    pub districts: usize,
    /// Communes under the districts (or under the provinces when there are no districts).
    pub communes: usize,
}

impl TreeShape {
    /// The shape of a tree of exactly `n` agencies (`n >= 1`): one ministry, about one
    /// province per 40 agencies (at least one), ten districts per province, and communes
    /// for the rest, roughly the proportions of Vietnam's administrative map.
    pub fn of(n: usize) -> TreeShape {
        let rest = n.saturating_sub(1);
        let provinces = if rest == 0 {
            0
        } else {
            (n / 40).clamp(1, rest)
        };
        let districts = (provinces * 10).min(rest - provinces);
        TreeShape {
            central: usize::from(n > 0),
            provinces,
            districts,
            communes: rest - provinces - districts,
        }
    }

    /// Total number of agencies.
    pub fn total(&self) -> usize {
        self.central + self.provinces + self.districts + self.communes
    }
}

const PROVINCES: &[&str] = &[
    "Hà Nội",
    "Thành phố Hồ Chí Minh",
    "Đà Nẵng",
    "Hải Phòng",
    "Cần Thơ",
    "Huế",
    "Quảng Ninh",
    "Nghệ An",
    "Thanh Hóa",
    "Lâm Đồng",
    "Đắk Lắk",
    "Khánh Hòa",
    "Bắc Ninh",
    "Lào Cai",
    "Điện Biên",
    "Cà Mau",
    "An Giang",
    "Đồng Tháp",
    "Gia Lai",
    "Quảng Trị",
];

const DISTRICTS: &[&str] = &[
    "Ba Đình",
    "Hoàn Kiếm",
    "Hải Châu",
    "Sơn Trà",
    "Ninh Kiều",
    "Thủ Đức",
    "Hạ Long",
    "Diễn Châu",
    "Sầm Sơn",
    "Bảo Lộc",
    "Buôn Đôn",
    "Cam Lâm",
    "Từ Sơn",
    "Sa Pa",
    "Mường Nhé",
];

const COMMUNES: &[&str] = &[
    "Phú Mỹ",
    "Tân Hòa",
    "An Bình",
    "Hòa Tiến",
    "Đông Hưng",
    "Quỳnh Lưu",
    "Yên Thế",
    "Lương Sơn",
    "Ea Kao",
    "Đắk Mar",
    "Hưng Lộc",
    "Thạch Hà",
    "Ngọc Lặc",
    "Châu Đốc",
    "Mỹ Tho",
    "Bình Minh",
];

/// One environment's quota per level, in millicores, MiB and pods; an agency's own quota
/// is this plus what its children hold plus this again as headroom.
fn environment_size(level: AgencyLevel) -> [u64; 3] {
    match level {
        AgencyLevel::Central => [16_000, 32_768, 100],
        AgencyLevel::Province => [8_000, 16_384, 50],
        AgencyLevel::District => [2_000, 4_096, 20],
        AgencyLevel::Commune => [500, 1_024, 10],
    }
}

fn cpu(millis: u64) -> Quantity {
    if millis.is_multiple_of(1000) {
        Quantity((millis / 1000).to_string())
    } else {
        Quantity(format!("{millis}m"))
    }
}

fn memory(mib: u64) -> Quantity {
    if mib.is_multiple_of(1024) {
        Quantity(format!("{}Gi", mib / 1024))
    } else {
        Quantity(format!("{mib}Mi"))
    }
}

fn amounts([millis, mib, pods]: [u64; 3]) -> ResourceAmounts {
    ResourceAmounts {
        cpu: Some(cpu(millis)),
        memory: Some(memory(mib)),
        pods: Some(Quantity(pods.to_string())),
        ..Default::default()
    }
}

struct Node {
    name: String,
    display_name: String,
    level: AgencyLevel,
    parent: Option<usize>,
    security_level: u8,
}

/// A child's security level: mostly its parent's, one in three a level lower (never
/// below 1), so the tree mixes levels 1 to 3 and no child is above its parent.
fn child_security(parent: u8, index: usize) -> u8 {
    if index % 3 == 2 {
        parent.saturating_sub(1).max(1)
    } else {
        parent
    }
}

/// A tree of exactly `n` agencies, as lists per level, parents first: the ministry,
/// then the provinces, the districts and the communes.
///
/// Names are `<prefix>bo-bench-<run>`, `<prefix>tinh-<run>-<i>`, `<prefix>huyen-<run>-<i>`
/// and `<prefix>xa-<run>-<i>`; display names are Vietnamese. Every agency has one `prod`
/// environment, one owner, a security level of 1 to 3 (children never above parents) and
/// a quota that holds its environment and its children with room to spare; the root's
/// quota is huge. Every agency is labelled [`BENCH_LABEL`]`=<label>`.
pub fn agency_tree(n: usize, run: &str, prefix: &str, label: &str) -> Vec<Vec<Agency>> {
    let shape = TreeShape::of(n);
    let mut nodes = vec![Node {
        name: format!("{prefix}bo-bench-{run}"),
        display_name: format!("Bộ Thông tin và Truyền thông (đo hiệu năng {run})"),
        level: AgencyLevel::Central,
        parent: None,
        security_level: 3,
    }];
    let province_start = nodes.len();
    for p in 0..shape.provinces {
        nodes.push(Node {
            name: format!("{prefix}tinh-{run}-{}", p + 1),
            display_name: format!(
                "Sở Thông tin và Truyền thông {} số {}",
                PROVINCES[p % PROVINCES.len()],
                p + 1
            ),
            level: AgencyLevel::Province,
            parent: Some(0),
            security_level: child_security(3, p),
        });
    }
    let district_start = nodes.len();
    for d in 0..shape.districts {
        let parent = province_start + d % shape.provinces;
        nodes.push(Node {
            name: format!("{prefix}huyen-{run}-{}", d + 1),
            display_name: format!(
                "Ủy ban nhân dân huyện {} số {}",
                DISTRICTS[d % DISTRICTS.len()],
                d + 1
            ),
            level: AgencyLevel::District,
            parent: Some(parent),
            security_level: child_security(nodes[parent].security_level, d / shape.provinces),
        });
    }
    for c in 0..shape.communes {
        let parent = if shape.districts > 0 {
            district_start + c % shape.districts
        } else {
            province_start + c % shape.provinces
        };
        nodes.push(Node {
            name: format!("{prefix}xa-{run}-{}", c + 1),
            display_name: format!(
                "Ủy ban nhân dân xã {} số {}",
                COMMUNES[c % COMMUNES.len()],
                c + 1
            ),
            level: AgencyLevel::Commune,
            parent: Some(parent),
            security_level: child_security(nodes[parent].security_level, c),
        });
    }

    // Quotas bottom-up: children come after their parents, so walk backwards.
    let mut quota: Vec<[u64; 3]> = nodes
        .iter()
        .map(|n| environment_size(n.level).map(|v| 2 * v))
        .collect();
    for i in (1..nodes.len()).rev() {
        if let Some(parent) = nodes[i].parent {
            let child = quota[i];
            for (total, part) in quota[parent].iter_mut().zip(child) {
                *total += part;
            }
        }
    }

    let mut levels: Vec<Vec<Agency>> = vec![Vec::new(); 4];
    for (i, node) in nodes.iter().enumerate() {
        let own_quota = if node.parent.is_none() {
            ResourceAmounts {
                cpu: Some(Quantity("1000000".into())),
                memory: Some(Quantity("100000Ti".into())),
                pods: Some(Quantity("10000000".into())),
                ..Default::default()
            }
        } else {
            amounts(quota[i])
        };
        let mut agency = Agency::new(
            &node.name,
            AgencySpec {
                budget: None,
                price_list: None,
                display_name: node.display_name.clone(),
                level: node.level,
                parent: node.parent.map(|p| nodes[p].name.clone()),
                security_level: node.security_level,
                owners: Owners {
                    users: vec![format!("quan-tri@{}.gov.vn", node.name)],
                    ..Default::default()
                },
                viewers: Default::default(),
                environments: vec![Environment {
                    name: "prod".into(),
                    quota: amounts(environment_size(node.level)),
                }],
                quota: own_quota,
            },
        );
        agency.metadata.labels = Some([(BENCH_LABEL.to_owned(), label.to_owned())].into());
        let depth = match node.level {
            AgencyLevel::Central => 0,
            AgencyLevel::Province => 1,
            AgencyLevel::District => 2,
            AgencyLevel::Commune => 3,
        };
        levels[depth].push(agency);
    }
    levels.retain(|l| !l.is_empty());
    levels
}

/// The agencies of a tree by name, to look ancestors up.
pub fn by_name(levels: &[Vec<Agency>]) -> HashMap<String, &Agency> {
    levels
        .iter()
        .flatten()
        .filter_map(|a| Some((a.metadata.name.clone()?, a)))
        .collect()
}

/// The ancestors of `agency` from its parent up to the root, as the operator computes
/// them.
pub fn ancestors<'a>(tree: &HashMap<String, &'a Agency>, agency: &Agency) -> Vec<&'a Agency> {
    let mut chain = Vec::new();
    let mut next = agency.spec.parent.as_deref();
    while let Some(name) = next {
        let Some(parent) = tree.get(name) else {
            break;
        };
        if chain.len() > tree.len() {
            break;
        }
        chain.push(*parent);
        next = parent.spec.parent.as_deref();
    }
    chain
}

/// The objects of one environment namespace, in the order they can be created.
#[derive(Clone, Debug)]
pub struct EnvironmentObjects {
    /// The namespace.
    pub namespace: Namespace,
    /// Its ResourceQuota.
    pub resource_quota: ResourceQuota,
    /// Its LimitRange.
    pub limit_range: LimitRange,
    /// Its NetworkPolicies (2 or 3 by security level).
    pub network_policies: Vec<NetworkPolicy>,
    /// The owners' and the ancestors' owners' RoleBindings.
    pub role_bindings: Vec<RoleBinding>,
}

/// Everything the operator makes for one agency, built by the same
/// `govbroker_domain::isolation` functions, without owner references and hash
/// annotations (there is no Agency object to own them).
#[derive(Clone, Debug)]
pub struct AgencyObjects {
    /// One per environment.
    pub environments: Vec<EnvironmentObjects>,
    /// The agency's ClusterRoles (reader, owner) and their bindings.
    pub cluster_rbac: Vec<(ClusterRole, ClusterRoleBinding)>,
}

impl AgencyObjects {
    /// How many objects this is.
    pub fn count(&self) -> usize {
        2 * self.cluster_rbac.len()
            + self
                .environments
                .iter()
                .map(|e| 3 + e.network_policies.len() + e.role_bindings.len())
                .sum::<usize>()
    }
}

/// The objects of `agency` (whose ancestors are `ancestors`), with [`BENCH_LABEL`]`=label`
/// on the namespaces and the cluster-scoped objects so that they can be cleaned up.
pub fn agency_objects(
    agency: &Agency,
    ancestors: &[&Agency],
    label: &str,
) -> Result<AgencyObjects> {
    let name = agency.metadata.name.as_deref().unwrap_or_default();
    let add_label = |meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(BENCH_LABEL.to_owned(), label.to_owned());
    };
    let mut environments = Vec::new();
    for env in &agency.spec.environments {
        let ns = isolation::namespace_name(name, &env.name);
        let quota = Amounts::from_spec(&env.quota, "quota")
            .with_context(|| format!("quota of {name}/{}", env.name))?;
        let mut namespace = isolation::namespace(agency, ancestors, env);
        add_label(&mut namespace.metadata);
        environments.push(EnvironmentObjects {
            namespace,
            resource_quota: isolation::resource_quota(name, &ns, &quota),
            limit_range: isolation::limit_range(name, &ns),
            network_policies: isolation::network_policies(name, &ns, agency.spec.security_level),
            role_bindings: isolation::role_bindings(agency, ancestors, &ns),
        });
    }
    let mut cluster_rbac = isolation::agency_rbac(agency, ancestors);
    for (role, binding) in &mut cluster_rbac {
        add_label(&mut role.metadata);
        add_label(&mut binding.metadata);
    }
    Ok(AgencyObjects {
        environments,
        cluster_rbac,
    })
}

/// The sum of a metric's samples whose labels contain `label` (e.g.
/// `controller="agency"`), or 0.
pub fn metric_sum_with(exposition: &str, name: &str, label: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') && rest.contains(label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A `kB` field of `/proc/<pid>/status` (such as `VmHWM` or `VmRSS`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| {
            let value = l.strip_prefix(field)?.strip_prefix(':')?;
            value.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .with_context(|| format!("no {field} in {path}"))
}

// ---- Running a benchmark: the binaries, the operator, ids ----

/// Runs a benchmark's `main`: `run` on a multi-threaded runtime, its error printed as
/// `<name>: <error chain>` with a failing exit code.
pub fn main_of<F>(name: &str, run: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `<target>`: a benchmark binary is `<target>/<profile>/<name>`.
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this binary")?;
    exe.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .context("this binary is not under <target>/<profile>/")
}

/// The operator binary: `given` (a benchmark's `--operator`), else release, else debug,
/// with a word on which it is.
pub fn operator_binary(given: Option<PathBuf>) -> Result<(PathBuf, &'static str)> {
    if let Some(path) = given {
        if !path.is_file() {
            bail!("--operator {}: no such file", path.display());
        }
        return Ok((std::path::absolute(&path)?, "given with --operator"));
    }
    let target = target_dir()?;
    let release = target.join("release/govbroker-operator");
    let debug = target.join("debug/govbroker-operator");
    if release.is_file() {
        let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
        if modified(&debug) > modified(&release) {
            eprintln!(
                "note: the release operator is older than the debug one; rebuild it with `cargo build -p govbroker-operator --release` if it is stale"
            );
        }
        return Ok((release, "release build"));
    }
    if debug.is_file() {
        return Ok((
            debug,
            "DEBUG build: figures are pessimistic; `cargo build -p govbroker-operator --release` for realistic ones",
        ));
    }
    bail!(
        "no operator binary at {} or {}: build it first with `cargo build -p govbroker-operator --release` (or without --release for a debug build), with the same CARGO_TARGET_DIR, or pass --operator PATH",
        release.display(),
        debug.display()
    )
}

/// A short random id for a run's names and labels.
pub fn run_id() -> String {
    let mut n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
        ^ u128::from(std::process::id());
    let mut s = String::new();
    for _ in 0..6 {
        s.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
    }
    s
}

/// Runs a blocking closure off the async workers, turning a panic into an error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => bail!("{e}"),
    }
}

/// The pid of the operator that `govcluster` runs.
pub fn operator_pid(cluster: &Cluster) -> Result<u32> {
    let path = cluster.state_dir.join("pids/operator.pid");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} holds no pid", path.display()))
}

/// Restarts the shared local operator with `binary` and returns its pid.
pub async fn restart_operator(cluster: &'static Cluster, binary: &Path) -> Result<u32> {
    let binary = binary.to_string_lossy().into_owned();
    blocking(move || cluster.restart_operator(&binary)).await?;
    operator_pid(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use govbroker_domain::tree::{AgencyChange, validate_agency};

    #[test]
    fn shapes_have_exactly_n_agencies() {
        for n in [1, 2, 3, 11, 12, 39, 40, 60, 100, 1000, 12_000] {
            let shape = TreeShape::of(n);
            assert_eq!(shape.total(), n, "{shape:?}");
            let tree = agency_tree(n, "t", "", "t");
            assert_eq!(tree.iter().map(Vec::len).sum::<usize>(), n);
        }
        assert_eq!(
            TreeShape::of(1000),
            TreeShape {
                central: 1,
                provinces: 25,
                districts: 250,
                communes: 724
            }
        );
    }

    /// Every agency passes the webhook's rules when created parents-first.
    #[test]
    fn the_tree_satisfies_the_tree_rules() {
        for n in [1, 5, 60, 1000] {
            let levels = agency_tree(n, "abc123", "bl-", "x");
            let tree = by_name(&levels);
            let all: Vec<&Agency> = levels.iter().flatten().collect();
            for agency in &all {
                let name = agency.metadata.name.as_deref().unwrap_or_default();
                assert!(name.len() <= 42, "{name}");
                let parent = agency
                    .spec
                    .parent
                    .as_deref()
                    .and_then(|p| tree.get(p).copied());
                let siblings: Vec<&Agency> = all
                    .iter()
                    .copied()
                    .filter(|a| {
                        a.spec.parent.is_some()
                            && a.spec.parent == agency.spec.parent
                            && a.metadata.name != agency.metadata.name
                    })
                    .collect();
                let change = AgencyChange {
                    name,
                    spec: &agency.spec,
                    parent,
                    siblings,
                    children: Vec::new(),
                    ancestors_of_parent: ancestors(&tree, agency)
                        .iter()
                        .filter_map(|a| a.metadata.name.clone())
                        .collect(),
                };
                if let Err(v) = validate_agency(&change) {
                    panic!("{name} refused: {v:?}");
                }
                let objects = agency_objects(agency, &ancestors(&tree, agency), "x").unwrap();
                // Per environment 8 or 9 objects, plus the reader and owner ClusterRoles and bindings.
                assert!((11..=12).contains(&objects.count()), "{}", objects.count());
            }
        }
    }

    #[test]
    fn metrics_are_summed_by_label() {
        let text = "# HELP x\ngovbroker_reconcile_total{controller=\"agency\"} 7\ngovbroker_reconcile_total{controller=\"quota_request\"} 2\n";
        assert_eq!(
            metric_sum_with(text, "govbroker_reconcile_total", "controller=\"agency\""),
            7.0
        );
    }
}
