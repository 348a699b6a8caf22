//! Isolation policy per security level: what an agency's environment namespace gets.
//!
//! Everything here is pure: given an agency, its ancestors and an environment, it returns
//! the Kubernetes objects to apply. The agency controller applies them with server-side
//! apply; tests check the policy without a cluster.

use std::collections::BTreeMap;

use govbroker_crds::{Agency, Environment, Owners, QuotaResource};
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::quantity::Amounts;

/// Label: the agency a namespace (or any object govbroker made) belongs to.
pub const AGENCY_LABEL: &str = "govbroker.io/agency";
/// Label: the environment of a namespace.
pub const ENVIRONMENT_LABEL: &str = "govbroker.io/environment";
/// Label: the agency's administrative level.
pub const LEVEL_LABEL: &str = "govbroker.io/level";
/// Label: the agency's parent.
pub const PARENT_LABEL: &str = "govbroker.io/parent";
/// Label: the agency's security level.
pub const SECURITY_LEVEL_LABEL: &str = "govbroker.io/security-level";
/// Label prefix: `ancestor.govbroker.io/<name>=true` for every ancestor, so a subtree's
/// namespaces are one label selector away.
pub const ANCESTOR_LABEL_PREFIX: &str = "ancestor.govbroker.io/";
/// Label on platform namespaces (monitoring, ingress) whose traffic agencies accept.
pub const PLATFORM_NAMESPACE_LABEL: &str = "govbroker.io/platform";
/// Label on everything govbroker manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "govbroker";
/// Annotation: the agency's UTF-8 display name, on its namespaces.
pub const DISPLAY_NAME_ANNOTATION: &str = "govbroker.io/display-name";

/// Name of the ResourceQuota in every agency namespace.
pub const RESOURCE_QUOTA_NAME: &str = "govbroker-quota";

/// Resources every environment's ResourceQuota limits (to 0 when the environment names
/// none), besides those its quota names.
pub const ALWAYS_LIMITED: [QuotaResource; 6] = [
    QuotaResource::Cpu,
    QuotaResource::Memory,
    QuotaResource::Pods,
    QuotaResource::Storage,
    QuotaResource::Services,
    QuotaResource::PersistentVolumeClaims,
];

/// Name of the LimitRange in every agency namespace.
pub const LIMIT_RANGE_NAME: &str = "govbroker-defaults";
/// RoleBinding giving the agency's owners `admin` in its namespaces.
pub const OWNERS_BINDING_NAME: &str = "govbroker-owners";
/// RoleBinding giving the owners of every ancestor `view` in the namespace.
pub const ANCESTOR_OWNERS_BINDING_NAME: &str = "govbroker-ancestor-owners";

/// The Pod Security Admission profile for a security level: baseline at 1-2, restricted at 3-5.
pub fn pod_security_profile(security_level: u8) -> &'static str {
    if security_level >= 3 {
        "restricted"
    } else {
        "baseline"
    }
}

/// Whether egress is limited (to DNS, the agency itself and bound data services).
pub fn egress_restricted(security_level: u8) -> bool {
    security_level >= 3
}

/// The namespace of an agency's environment.
pub fn namespace_name(agency: &str, environment: &str) -> String {
    format!("{agency}-{environment}")
}

/// Labels every object made for `agency` carries (and selects it by).
pub fn agency_labels(agency: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (AGENCY_LABEL.to_owned(), agency.to_owned()),
    ])
}

fn meta(name: &str, namespace: Option<&str>, agency: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(agency_labels(agency)),
        ..Default::default()
    }
}

/// The namespace of one environment: agency, level, parent chain and environment labels,
/// and the Pod Security labels of the agency's security level.
///
/// `ancestors` are the agency's ancestors from its parent up to the root.
pub fn namespace(agency: &Agency, ancestors: &[&Agency], environment: &Environment) -> Namespace {
    let name = agency.metadata.name.as_deref().unwrap_or_default();
    let spec = &agency.spec;
    let mut labels = agency_labels(name);
    labels.insert(ENVIRONMENT_LABEL.to_owned(), environment.name.clone());
    labels.insert(LEVEL_LABEL.to_owned(), spec.level.as_str().to_owned());
    labels.insert(
        SECURITY_LEVEL_LABEL.to_owned(),
        spec.security_level.to_string(),
    );
    if let Some(parent) = &spec.parent {
        labels.insert(PARENT_LABEL.to_owned(), parent.clone());
    }
    for ancestor in ancestors {
        if let Some(a) = &ancestor.metadata.name {
            labels.insert(format!("{ANCESTOR_LABEL_PREFIX}{a}"), "true".to_owned());
        }
    }
    let profile = pod_security_profile(spec.security_level);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            profile.to_owned(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".to_owned(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace_name(name, &environment.name)),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                DISPLAY_NAME_ANNOTATION.to_owned(),
                spec.display_name.clone(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The environment's ResourceQuota: its share of the agency's quota. CPU, memory and
/// pods are always limited (0 when the environment names none); the other resources
/// as named, so "not granted" means "not allowed".
pub fn resource_quota(agency: &str, namespace: &str, quota: &Amounts) -> ResourceQuota {
    let mut hard = quota.to_resource_quota_hard();
    for resource in ALWAYS_LIMITED {
        hard.entry(resource.resource_quota_key().to_owned())
            .or_insert_with(|| Quantity("0".to_owned()));
    }
    ResourceQuota {
        metadata: meta(RESOURCE_QUOTA_NAME, Some(namespace), agency),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Default requests for containers that state none, so that every pod counts against the
/// quota instead of being refused for lacking requests.
pub fn limit_range(agency: &str, namespace: &str) -> LimitRange {
    let q = |pairs: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect()
    };
    LimitRange {
        metadata: meta(LIMIT_RANGE_NAME, Some(namespace), agency),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                // Requests only: a default limit would refuse containers that request
                // more than it without stating a limit of their own.
                default_request: Some(q(&[("cpu", "100m"), ("memory", "128Mi")])),
                ..Default::default()
            }],
        }),
    }
}

fn namespaces_with(label: &str, value: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(label.to_owned(), value.to_owned())])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The namespace's NetworkPolicies: traffic from other agencies is always denied; the
/// agency's own namespaces and the platform's (monitoring, ingress) may connect. At
/// security level 3 and above, egress is limited to DNS and the agency's own namespaces
/// (bound data services add their own egress rules).
pub fn network_policies(agency: &str, namespace: &str, security_level: u8) -> Vec<NetworkPolicy> {
    let restricted = egress_restricted(security_level);
    let mut policy_types = vec!["Ingress".to_owned()];
    if restricted {
        policy_types.push("Egress".to_owned());
    }
    let mut policies = vec![
        NetworkPolicy {
            metadata: meta("govbroker-default-deny", Some(namespace), agency),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(policy_types),
                ..Default::default()
            }),
        },
        NetworkPolicy {
            metadata: meta(
                "govbroker-allow-same-agency-and-platform",
                Some(namespace),
                agency,
            ),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![
                        namespaces_with(AGENCY_LABEL, agency),
                        namespaces_with(PLATFORM_NAMESPACE_LABEL, "true"),
                    ]),
                    ..Default::default()
                }]),
                policy_types: Some(vec!["Ingress".to_owned()]),
                ..Default::default()
            }),
        },
    ];
    if restricted {
        let dns_port = |protocol: &str| NetworkPolicyPort {
            port: Some(IntOrString::Int(53)),
            protocol: Some(protocol.to_owned()),
            ..Default::default()
        };
        policies.push(NetworkPolicy {
            metadata: meta(
                "govbroker-egress-dns-and-same-agency",
                Some(namespace),
                agency,
            ),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                egress: Some(vec![
                    NetworkPolicyEgressRule {
                        to: Some(vec![namespaces_with(
                            "kubernetes.io/metadata.name",
                            "kube-system",
                        )]),
                        ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
                    },
                    NetworkPolicyEgressRule {
                        to: Some(vec![namespaces_with(AGENCY_LABEL, agency)]),
                        ..Default::default()
                    },
                ]),
                policy_types: Some(vec!["Egress".to_owned()]),
                ..Default::default()
            }),
        });
    }
    policies
}

/// The NetworkPolicy that lets every pod of `namespace` reach a bound data service's
/// server at `addresses` (one /32 or /128 block each) on `port`: what a restricted
/// namespace's default-deny egress needs to use a claim or a share. `name` is unique per
/// binding in the namespace; the policy is removed with the binding.
pub fn data_service_egress(
    name: &str,
    namespace: &str,
    agency: &str,
    addresses: &[std::net::IpAddr],
    port: u16,
) -> NetworkPolicy {
    use k8s_openapi::api::networking::v1::IPBlock;
    let blocks = addresses
        .iter()
        .map(|ip| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: match ip {
                    std::net::IpAddr::V4(v4) => format!("{v4}/32"),
                    std::net::IpAddr::V6(v6) => format!("{v6}/128"),
                },
                except: None,
            }),
            ..Default::default()
        })
        .collect();
    NetworkPolicy {
        metadata: meta(name, Some(namespace), agency),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(blocks),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(port))),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                }]),
            }]),
            policy_types: Some(vec!["Egress".to_owned()]),
            ..Default::default()
        }),
    }
}

/// RBAC subjects for a set of owners.
pub fn subjects(owners: &Owners) -> Vec<Subject> {
    let mut subjects = Vec::new();
    for user in &owners.users {
        subjects.push(Subject {
            kind: "User".to_owned(),
            name: user.clone(),
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            ..Default::default()
        });
    }
    for group in &owners.groups {
        subjects.push(Subject {
            kind: "Group".to_owned(),
            name: group.clone(),
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            ..Default::default()
        });
    }
    for sa in &owners.service_accounts {
        subjects.push(Subject {
            kind: "ServiceAccount".to_owned(),
            name: sa.name.clone(),
            namespace: Some(sa.namespace.clone()),
            ..Default::default()
        });
    }
    subjects
        .sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    subjects.dedup();
    subjects
}

fn owners_of(agencies: &[&Agency]) -> Vec<Subject> {
    principals_of(agencies.iter().map(|a| &a.spec.owners))
}

/// Owners and viewers of the given agencies.
fn readers_of(agencies: &[&Agency]) -> Vec<Subject> {
    principals_of(
        agencies
            .iter()
            .flat_map(|a| [&a.spec.owners, &a.spec.viewers]),
    )
}

fn principals_of<'a>(sets: impl IntoIterator<Item = &'a Owners>) -> Vec<Subject> {
    let mut all = Owners::default();
    for set in sets {
        all.users.extend(set.users.iter().cloned());
        all.groups.extend(set.groups.iter().cloned());
        all.service_accounts
            .extend(set.service_accounts.iter().cloned());
    }
    subjects(&all)
}

fn cluster_role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: "ClusterRole".to_owned(),
        name: name.to_owned(),
    }
}

/// RoleBindings in one namespace: the agency's owners get `admin`; its viewers and the
/// owners and viewers of every ancestor get `view` (a parent reads, never changes, its
/// children's namespaces).
pub fn role_bindings(agency: &Agency, ancestors: &[&Agency], namespace: &str) -> Vec<RoleBinding> {
    let name = agency.metadata.name.as_deref().unwrap_or_default();
    vec![
        RoleBinding {
            metadata: meta(OWNERS_BINDING_NAME, Some(namespace), name),
            role_ref: cluster_role_ref("admin"),
            subjects: Some(subjects(&agency.spec.owners)),
        },
        RoleBinding {
            metadata: meta(ANCESTOR_OWNERS_BINDING_NAME, Some(namespace), name),
            role_ref: cluster_role_ref("view"),
            subjects: Some({
                let mut readers = readers_of(ancestors);
                readers.extend(subjects(&agency.spec.viewers));
                readers.sort_by(|a, b| {
                    (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name))
                });
                readers.dedup();
                readers
            }),
        },
    ]
}

/// Name of the ClusterRole (and its binding) that lets people read one Agency object.
pub fn agency_reader_role_name(agency: &str) -> String {
    format!("govbroker:agency:{agency}:reader")
}

/// Name of the ClusterRole (and its binding) that lets owners act on one Agency.
pub fn agency_owner_role_name(agency: &str) -> String {
    format!("govbroker:agency:{agency}:owner")
}

/// Virtual subresources of `agencies` that guard data kept outside Kubernetes: the API
/// checks them with a SubjectAccessReview (`get agencies/<subresource>` on the agency).
pub mod virtual_subresource {
    /// The agency's audit records.
    pub const AUDIT: &str = "audit";
    /// The agency's quota requests (kept readable per agency, not per request).
    pub const QUOTA_REQUESTS: &str = "quotarequests";
    /// The DataShares the agency owns or consumes (names are free, so they are readable
    /// per agency, not per share).
    pub const DATA_SHARES: &str = "datashares";
    /// The agency's usage and bills.
    pub const BILLING: &str = "billing";
}

/// The two ClusterRoles (and bindings) generated per agency:
///
/// - `govbroker:agency:<name>:reader`: get and watch the Agency and read its quota
///   requests and data shares; bound to the owners and viewers of the agency and of
///   every ancestor.
/// - `govbroker:agency:<name>:owner`: change the Agency (the webhook limits which fields
///   and to whom), read its audit trail and bills, file and decide QuotaRequests; bound to the
///   owners of the agency and of every ancestor. The webhook lets only the agency's own
///   owners edit it and only the parent's owners decide its requests.
pub fn agency_rbac(
    agency: &Agency,
    ancestors: &[&Agency],
) -> Vec<(ClusterRole, ClusterRoleBinding)> {
    let name = agency.metadata.name.as_deref().unwrap_or_default();
    let mut lineage: Vec<&Agency> = vec![agency];
    lineage.extend(ancestors.iter().copied());
    let rule = |resources: &[&str], names: bool, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![govbroker_crds::GROUP.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        resource_names: names.then(|| vec![name.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..Default::default()
    };
    let pair = |role_name: String, rules: Vec<PolicyRule>, subjects: Vec<Subject>| {
        let role = ClusterRole {
            metadata: meta(&role_name, None, name),
            rules: Some(rules),
            ..Default::default()
        };
        let binding = ClusterRoleBinding {
            metadata: meta(&role_name, None, name),
            role_ref: cluster_role_ref(&role_name),
            subjects: Some(subjects),
        };
        (role, binding)
    };
    let quota_requests = format!("agencies/{}", virtual_subresource::QUOTA_REQUESTS);
    let audit = format!("agencies/{}", virtual_subresource::AUDIT);
    let billing = format!("agencies/{}", virtual_subresource::BILLING);
    let data_shares = format!("agencies/{}", virtual_subresource::DATA_SHARES);
    vec![
        pair(
            agency_reader_role_name(name),
            vec![
                rule(&["agencies", "agencies/status"], true, &["get", "watch"]),
                rule(&[quota_requests.as_str()], true, &["get"]),
                rule(&[data_shares.as_str()], true, &["get"]),
            ],
            readers_of(&lineage),
        ),
        pair(
            agency_owner_role_name(name),
            vec![
                rule(&["agencies"], true, &["update", "patch"]),
                rule(&[audit.as_str(), billing.as_str()], true, &["get"]),
                // Not limited by name: requests are named freely. No get or list: one
                // agency must not read another's requests (the API serves them per
                // agency, guarded by agencies/quotarequests).
                rule(&["quotarequests"], false, &["create", "update", "patch"]),
                // DataShares likewise: propose, approve, revoke; the webhook decides who
                // may approve (owners of the owner agency).
                rule(&["datashares"], false, &["create", "update", "patch"]),
            ],
            owners_of(&lineage),
        ),
    ]
}

#[test]
fn a_binding_opens_egress_to_its_server_and_port_only() {
    let policy = data_service_egress(
        "govbroker-egress-ho-so",
        "so-y-te-prod",
        "so-y-te",
        &["10.20.0.15".parse().unwrap(), "fd00::1".parse().unwrap()],
        5432,
    );
    let spec = policy.spec.unwrap();
    assert_eq!(spec.policy_types, Some(vec!["Egress".to_owned()]));
    let rule = &spec.egress.unwrap()[0];
    let cidrs: Vec<String> = rule
        .to
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.ip_block.as_ref().unwrap().cidr.clone())
        .collect();
    assert_eq!(cidrs, ["10.20.0.15/32", "fd00::1/128"]);
    assert_eq!(
        rule.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(5432))
    );
    assert_eq!(
        policy.metadata.labels.unwrap().get(AGENCY_LABEL),
        Some(&"so-y-te".to_owned())
    );
}
