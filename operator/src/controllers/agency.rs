//! The agency controller: every Agency becomes isolated, quota-bounded namespaces.
//!
//! For each environment it applies the Namespace, ResourceQuota, LimitRange,
//! NetworkPolicies and RoleBindings that [`govbroker_domain::isolation`] prescribes, plus
//! two ClusterRoles and bindings that let owners, viewers and ancestors' owners read
//! (and owners change) the Agency.
//! Namespaces of removed environments are deleted by label. Status sums the quotas and
//! is written only when it changed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, try_join_all};
use futures::{StreamExt as _, TryStreamExt as _};
use govbroker_crds::{Agency, AgencyQuotaStatus, AgencyStatus, QuotaResource};
use govbroker_domain::isolation::{
    self, AGENCY_LABEL, ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
};
use govbroker_domain::quantity::{Amount, Amounts, usage_summary};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt as _, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::apply::{Applier, HasAppliedHash, applied_hash, stable_hash};
use crate::cache::Index;
use crate::{Context, Error};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "agency";
/// Field manager of everything this controller applies.
pub const FIELD_MANAGER: &str = "govbroker-agency";
/// How often a settled agency is looked at again, to repair drift nobody told us about.
const RESYNC: Duration = Duration::from_secs(3600);
/// Reconciles at once. A reconcile spends most of its time waiting for three round trips
/// (namespaces, the other objects at once, status), so a burst of new agencies needs
/// more than the API server's few cores; more would only queue at the API server.
const CONCURRENCY: u16 = 64;

/// What the controller remembers of the objects it owns (compact [`Index`]es, not whole
/// objects), fed by watches on the `app.kubernetes.io/managed-by=govbroker` label. The
/// applied hashes tell whether an apply is needed.
#[derive(Clone)]
pub struct Owned {
    namespaces: Index<OwnedNamespace>,
    /// Resource quotas are watched whole: their status is the agency's usage.
    resource_quotas: Index<OwnedQuota>,
    limit_ranges: Index<Option<u64>>,
    network_policies: Index<Option<u64>>,
    role_bindings: Index<Option<u64>>,
    cluster_roles: Index<Option<u64>>,
    cluster_role_bindings: Index<Option<u64>>,
}

/// What is kept of an owned Namespace: enough to find those of removed environments.
#[derive(Clone, Debug)]
struct OwnedNamespace {
    hash: Option<u64>,
    name: Box<str>,
    agency: Option<Box<str>>,
    environment: Option<Box<str>>,
    deleting: bool,
}

impl OwnedNamespace {
    fn of(ns: &PartialObjectMeta<Namespace>) -> Self {
        let label = |k: &str| ns.labels().get(k).map(|v| v.as_str().into());
        Self {
            hash: applied_hash(ns.annotations()),
            name: ns.name_any().into(),
            agency: label(AGENCY_LABEL),
            environment: label(ENVIRONMENT_LABEL),
            deleting: ns.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// What is kept of an owned ResourceQuota: the usage the quota controller counted.
#[derive(Clone, Debug)]
struct OwnedQuota {
    hash: Option<u64>,
    used: Option<Amounts>,
}

impl OwnedQuota {
    fn of(q: &ResourceQuota) -> Self {
        Self {
            hash: applied_hash(q.annotations()),
            used: q
                .status
                .as_ref()
                .and_then(|s| s.used.as_ref())
                .map(Amounts::from_resource_quota),
        }
    }
}

impl HasAppliedHash for OwnedNamespace {
    fn hash(&self) -> Option<u64> {
        self.hash
    }
}

impl HasAppliedHash for OwnedQuota {
    fn hash(&self) -> Option<u64> {
        self.hash
    }
}

impl Owned {
    async fn wait_until_ready(&self) -> Result<(), Error> {
        self.namespaces.wait_until_ready().await?;
        self.resource_quotas.wait_until_ready().await?;
        self.limit_ranges.wait_until_ready().await?;
        self.network_policies.wait_until_ready().await?;
        self.role_bindings.wait_until_ready().await?;
        self.cluster_roles.wait_until_ready().await?;
        self.cluster_role_bindings.wait_until_ready().await
    }
}

/// Everything one reconcile reads: the context, the agency tree and the owned caches.
pub struct State {
    ctx: Arc<Context>,
    agencies: Store<Agency>,
    tree: Arc<Mutex<Tree>>,
    written: Arc<Written>,
    owned: Owned,
}

/// Statuses this controller wrote (as the API server answered) that the watch has not
/// shown yet. The cache lags a write by a moment, seconds on a busy API server; a
/// reconcile in that moment would otherwise find no status, stamp fresh transition
/// times and write again.
#[derive(Default)]
pub struct Written(Mutex<HashMap<String, AgencyStatus>>);

impl Written {
    fn get(&self, name: &str) -> Option<AgencyStatus> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn remember(&self, name: &str, status: AgencyStatus) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), status);
    }

    /// The watch showed the agency again: the cache is as new as the write.
    fn seen(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

fn managed() -> watcher::Config {
    watcher::Config::default()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
        .any_semantic()
}

/// Starts a metadata watch of an owned kind feeding an index of applied hashes; returns
/// the index and the stream of changed objects (to wake the owner).
fn owned_index<K>(
    api: Api<PartialObjectMeta<K>>,
) -> (
    Index<Option<u64>>,
    impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    Index::watch(watcher(api, managed()).default_backoff(), |o| {
        applied_hash(o.annotations())
    })
}

/// Annotation that only cached Agencies carry (it is never written): the hash of the
/// part of the status this controller writes, kept in place of that part.
const CACHED_STATUS_HASH: &str = "govbroker.io/cached-status-hash";

/// Shrinks a cached Agency to what is read of it: no managed fields, no copy of the
/// object that `kubectl apply` keeps in an annotation, and of the status only the
/// conditions (their transition times), `cost` (read by the webhook) and the hash of
/// the rest ([`CACHED_STATUS_HASH`]): the status's quota sums are some 3 KiB an agency,
/// 35 MiB at national scale, and are only ever compared.
fn trim(agency: &mut Agency) {
    agency.metadata.managed_fields = None;
    if let Some(annotations) = &mut agency.metadata.annotations {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    if let Some(status) = &mut agency.status {
        let hash = status_hash(&own_part(status));
        agency
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(CACHED_STATUS_HASH.to_owned(), hash);
        *status = AgencyStatus {
            conditions: std::mem::take(&mut status.conditions),
            cost: status.cost.take(),
            ..AgencyStatus::default()
        };
    }
}

/// The part of a status this controller writes: without `cost` and the BudgetThreshold
/// condition, which are the metering collector's (another field manager).
fn own_part(status: &AgencyStatus) -> AgencyStatus {
    let mut own = status.clone();
    own.cost = None;
    own.conditions
        .retain(|c| c.type_ != govbroker_domain::billing::BUDGET_CONDITION);
    own
}

fn status_hash(status: &AgencyStatus) -> String {
    serde_json::to_vec(status)
        .map(|json| stable_hash(&json))
        .unwrap_or_default()
}

/// Runs the agency controller until `shutdown` is cancelled. `agencies` fills the
/// cache of every Agency that the webhook reads too.
pub async fn run(
    ctx: Arc<Context>,
    agencies: reflector::store::Writer<Agency>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = ctx.client.clone();

    let (namespaces, ns_stream) = Index::watch(
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            managed(),
        )
        .default_backoff(),
        OwnedNamespace::of,
    );
    let (resource_quotas, rq_stream) = Index::watch(
        watcher(Api::<ResourceQuota>::all(client.clone()), managed()).default_backoff(),
        OwnedQuota::of,
    );
    let (limit_ranges, lr_stream) =
        owned_index(Api::<PartialObjectMeta<LimitRange>>::all(client.clone()));
    let (network_policies, np_stream) =
        owned_index(Api::<PartialObjectMeta<NetworkPolicy>>::all(client.clone()));
    let (role_bindings, rb_stream) =
        owned_index(Api::<PartialObjectMeta<RoleBinding>>::all(client.clone()));
    let (cluster_roles, cr_stream) =
        owned_index(Api::<PartialObjectMeta<ClusterRole>>::all(client.clone()));
    let (cluster_role_bindings, crb_stream) = owned_index(Api::<
        PartialObjectMeta<ClusterRoleBinding>,
    >::all(client.clone()));
    let owned = Owned {
        namespaces,
        resource_quotas,
        limit_ranges,
        network_policies,
        role_bindings,
        cluster_roles,
        cluster_role_bindings,
    };

    // One watch of the Agencies feeds the cache, wakes each changed agency, and (through
    // the tree) the relatives a change of its spec concerns.
    let store = agencies.as_reader();
    let tree = Arc::new(Mutex::new(Tree::default()));
    let written = Arc::new(Written::default());
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let agency_events = {
        let tree = tree.clone();
        let written = written.clone();
        watcher(
            Api::<Agency>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .modify(trim)
        .reflect(agencies)
        .map_ok(move |event| {
            if let watcher::Event::Apply(a) | watcher::Event::Delete(a) = &event {
                written.seen(&a.name_any());
            }
            let relatives = tree.lock().unwrap_or_else(|e| e.into_inner()).note(&event);
            for relative in relatives {
                let _ = wake.unbounded_send(ObjectRef::new(&relative));
            }
            event
        })
        .applied_objects()
    };

    let state = Arc::new(State {
        ctx: ctx.clone(),
        agencies: store.clone(),
        tree,
        written,
        owned,
    });

    let controller = Controller::for_stream(agency_events, store.clone())
        .reconcile_on(woken)
        .watches_stream(ns_stream, owner_agency(store.clone()))
        .watches_stream(rq_stream, owner_agency(store.clone()))
        .watches_stream(lr_stream, owner_agency(store.clone()))
        .watches_stream(np_stream, owner_agency(store.clone()))
        .watches_stream(rb_stream, owner_agency(store.clone()))
        .watches_stream(cr_stream, owner_agency(store.clone()))
        .watches_stream(crb_stream, owner_agency(store.clone()))
        // A short debounce folds a burst of events (a parent whose children are being
        // created) into one reconcile and one status write.
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(CONCURRENCY)
                .debounce(Duration::from_millis(300)),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await });

    info!("agency controller started");
    controller
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "agency reconcile failed");
            }
        })
        .await;
    Ok(())
}

/// The shape of the agency tree as the watch showed it: each agency's generation and
/// parent, and each agency's children. A change of an agency's spec (a new generation),
/// its creation or deletion concerns its parent (children's quotas and count) and its
/// whole subtree (inherited labels, RBAC of ancestors' owners, ParentMissing); a change
/// of its status concerns nobody else, so status writes wake no relatives.
#[derive(Default)]
pub struct Tree {
    agencies: HashMap<String, (Option<i64>, Option<String>)>,
    children: HashMap<String, BTreeSet<String>>,
    /// Names seen in a list in progress (to find the agencies deleted while the watch
    /// was down); `None` outside a list.
    listing: Option<HashSet<String>>,
    /// Whether the first list is done. Until then nothing is woken: every agency is
    /// reconciled anyway.
    listed: bool,
}

impl Tree {
    /// Takes in one watch event; returns the agencies to wake besides the one changed.
    pub fn note(&mut self, event: &watcher::Event<Agency>) -> BTreeSet<String> {
        let mut woken = BTreeSet::new();
        match event {
            watcher::Event::Init => self.listing = Some(HashSet::new()),
            watcher::Event::InitApply(a) | watcher::Event::Apply(a) => {
                let name = a.name_any();
                if let Some(listing) = &mut self.listing {
                    listing.insert(name.clone());
                }
                let now = (a.metadata.generation, a.spec.parent.clone());
                let before = self.agencies.insert(name.clone(), now.clone());
                if before.as_ref() != Some(&now) {
                    if let Some(old_parent) = before.and_then(|(_, p)| p) {
                        self.unlink(&name, &old_parent, &mut woken);
                    }
                    if let Some(parent) = now.1 {
                        self.children
                            .entry(parent.clone())
                            .or_default()
                            .insert(name.clone());
                        woken.insert(parent);
                    }
                    woken.extend(self.descendants(&name));
                }
            }
            watcher::Event::Delete(a) => self.remove(&a.name_any(), &mut woken),
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .agencies
                    .keys()
                    .filter(|n| !listed.contains(*n))
                    .cloned()
                    .collect();
                for name in gone {
                    self.remove(&name, &mut woken);
                }
                if !self.listed {
                    self.listed = true;
                    woken.clear();
                }
            }
        }
        if !self.listed {
            woken.clear();
        }
        // A parent named but not (or no longer) there has nothing to reconcile.
        woken.retain(|n| self.agencies.contains_key(n));
        woken
    }

    /// The names of the agencies whose `spec.parent` is `name`.
    pub fn children(&self, name: &str) -> Vec<String> {
        self.children
            .get(name)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remove(&mut self, name: &str, woken: &mut BTreeSet<String>) {
        if let Some((_, Some(parent))) = self.agencies.remove(name) {
            self.unlink(name, &parent, woken);
        }
        woken.extend(self.descendants(name));
    }

    fn unlink(&mut self, name: &str, parent: &str, woken: &mut BTreeSet<String>) {
        if let Some(siblings) = self.children.get_mut(parent) {
            siblings.remove(name);
            if siblings.is_empty() {
                self.children.remove(parent);
            }
        }
        woken.insert(parent.to_owned());
    }

    /// Every agency below `name` (stops at a cycle).
    fn descendants(&self, name: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut next = vec![name.to_owned()];
        while let Some(n) = next.pop() {
            for child in self.children.get(&n).into_iter().flatten() {
                if child != name && found.insert(child.clone()) {
                    next.push(child.clone());
                }
            }
        }
        found
    }
}

/// Maps an owned object to the agency it belongs to, by its label, if that agency
/// exists. Owner references cannot be used to find it: the owner of a namespaced object
/// is looked up in the object's own namespace, and an Agency has none.
fn owner_agency<K: ResourceExt>(
    agencies: Store<Agency>,
) -> impl Fn(K) -> Option<ObjectRef<Agency>> + Send + Sync + 'static {
    move |obj| {
        obj.labels()
            .get(AGENCY_LABEL)
            .map(|name| ObjectRef::new(name))
            .filter(|r| agencies.get(r).is_some())
    }
}

fn error_policy(agency: Arc<Agency>, error: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.reconcile_failed(CONTROLLER, error);
    warn!(agency = %agency.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The agency's ancestors, from its parent up to the root (stops at a missing parent
/// or a cycle).
pub fn ancestors(agencies: &Store<Agency>, agency: &Agency) -> Vec<Arc<Agency>> {
    let mut chain = Vec::new();
    let mut seen = BTreeSet::from([agency.name_any()]);
    let mut next = agency.spec.parent.clone();
    while let Some(name) = next {
        if !seen.insert(name.clone()) {
            break;
        }
        let Some(parent) = agencies.get(&ObjectRef::new(&name)) else {
            break;
        };
        next = parent.spec.parent.clone();
        chain.push(parent);
    }
    chain
}

/// Makes the parent an owner of the agency, so that deleting a parent (allowed only
/// with the cascade annotation) removes its whole subtree through the garbage collector.
async fn link_to_parent(
    state: &State,
    applier: &Applier<'_>,
    agency: &Agency,
    parent: &Agency,
) -> Result<(), Error> {
    let Some(reference) = govbroker_domain::tree::parent_reference(parent) else {
        return Ok(());
    };
    let current = agency
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default();
    if current.contains(&reference) {
        return Ok(());
    }
    applier.count::<Agency>();
    let patch = serde_json::json!({
        "apiVersion": "govbroker.io/v1alpha1",
        "kind": "Agency",
        "metadata": { "name": agency.name_any(), "ownerReferences": [reference] },
    });
    gone_is_fine(
        Api::<Agency>::all(state.ctx.client.clone())
            .patch(
                &agency.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await,
    )
}

/// An agency deleted between the event and the write is not an error.
fn gone_is_fine<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn owner_reference(agency: &Agency) -> Option<OwnerReference> {
    agency.controller_owner_ref(&())
}

fn owned_by<K: Resource<DynamicType = ()>>(mut obj: K, owner: &OwnerReference) -> K {
    obj.meta_mut().owner_references = Some(vec![owner.clone()]);
    obj
}

async fn reconcile(agency: Arc<Agency>, state: Arc<State>) -> Result<Action, Error> {
    // The owned caches must be complete before anything is compared with them, or every
    // agency would look unapplied and be written again after a restart. The controller
    // feeds them, so this waits only at start-up.
    state.owned.wait_until_ready().await?;
    let _timer = state.ctx.metrics.reconcile_started(CONTROLLER);
    if agency.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove namespaces and RBAC.
        return Ok(Action::await_change());
    }
    let name = agency.name_any();
    let applier = Applier {
        ctx: &state.ctx,
        controller: CONTROLLER,
        field_manager: FIELD_MANAGER,
    };
    let Some(owner) = owner_reference(&agency) else {
        return Ok(Action::await_change());
    };
    let ancestors = ancestors(&state.agencies, &agency);
    if let Some(parent) = ancestors.first() {
        link_to_parent(&state, &applier, &agency, parent).await?;
    }
    let ancestor_refs: Vec<&Agency> = ancestors.iter().map(AsRef::as_ref).collect();
    let owned = &state.owned;

    // Namespaces of environments first (what lives in them needs them), then everything
    // else at once: the writes of one agency do not depend on each other.
    let mut namespaces = Vec::new();
    let mut problems = Vec::new();
    let mut environments = Vec::new();
    for env in &agency.spec.environments {
        match Amounts::from_spec(&env.quota, &format!("environments[{}].quota", env.name)) {
            Ok(quota) => {
                environments.push((env, isolation::namespace_name(&name, &env.name), quota))
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    try_join_all(environments.iter().map(|(env, _, _)| {
        applier.apply(
            &owned.namespaces,
            owned_by(isolation::namespace(&agency, &ancestor_refs, env), &owner),
        )
    }))
    .await?;
    let mut writes: Vec<BoxFuture<'_, Result<bool, Error>>> = Vec::new();
    for (_, ns, quota) in &environments {
        writes.push(Box::pin(applier.apply(
            &owned.resource_quotas,
            owned_by(isolation::resource_quota(&name, ns, quota), &owner),
        )));
        writes.push(Box::pin(applier.apply(
            &owned.limit_ranges,
            owned_by(isolation::limit_range(&name, ns), &owner),
        )));
        for policy in isolation::network_policies(&name, ns, agency.spec.security_level) {
            writes.push(Box::pin(
                applier.apply(&owned.network_policies, owned_by(policy, &owner)),
            ));
        }
        for binding in isolation::role_bindings(&agency, &ancestor_refs, ns) {
            writes.push(Box::pin(
                applier.apply(&owned.role_bindings, owned_by(binding, &owner)),
            ));
        }
        namespaces.push(ns.clone());
    }
    for (role, binding) in isolation::agency_rbac(&agency, &ancestor_refs) {
        writes.push(Box::pin(
            applier.apply(&owned.cluster_roles, owned_by(role, &owner)),
        ));
        writes.push(Box::pin(
            applier.apply(&owned.cluster_role_bindings, owned_by(binding, &owner)),
        ));
    }
    try_join_all(writes).await?;

    // Environments removed from the spec: their namespaces go, found by label.
    let wanted: BTreeSet<&str> = agency
        .spec
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let ns_api = Api::<Namespace>::all(state.ctx.client.clone());
    let removed = owned.namespaces.filter(|ns| {
        ns.agency.as_deref() == Some(name.as_str())
            && !ns.deleting
            && !wanted.contains(ns.environment.as_deref().unwrap_or_default())
    });
    for ns in removed {
        info!(agency = %name, namespace = %ns.name, "environment removed; deleting its namespace");
        applier.delete(&ns_api, &ns.name).await?;
    }

    let status = desired_status(&agency, &state, namespaces, problems);
    write_status(&state, &applier, &agency, status).await?;
    Ok(Action::requeue(RESYNC))
}

/// The status this agency should have now, with condition transition times kept from
/// the current status when the condition did not change (so the status is stable).
fn desired_status(
    agency: &Agency,
    state: &State,
    namespaces: Vec<String>,
    problems: Vec<String>,
) -> AgencyStatus {
    let name = agency.name_any();
    let children: Vec<Arc<Agency>> = state
        .tree
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .children(&name)
        .iter()
        .filter_map(|c| state.agencies.get(&ObjectRef::new(c)))
        .collect();
    let hard = Amounts::from_spec(&agency.spec.quota, "quota").unwrap_or_default();
    let environments = Amounts::sum(
        agency
            .spec
            .environments
            .iter()
            .filter_map(|e| Amounts::from_spec(&e.quota, "").ok())
            .collect::<Vec<_>>()
            .iter(),
    );
    let granted = Amounts::sum(
        children
            .iter()
            .filter_map(|c| Amounts::from_spec(&c.spec.quota, "").ok())
            .collect::<Vec<_>>()
            .iter(),
    );
    let used = Amounts::sum(
        namespaces
            .iter()
            .filter_map(|ns| {
                state
                    .owned
                    .resource_quotas
                    .get(Some(ns), isolation::RESOURCE_QUOTA_NAME)?
                    .used
            })
            .collect::<Vec<_>>()
            .iter(),
    );
    // Every limited resource shows a usage, 0 until the quota controller has counted
    // (it counts every resource the environments' ResourceQuotas limit): the status then
    // does not change (and is not written again) when it has.
    let mut used = used;
    for resource in QuotaResource::ALL {
        let counted = !namespaces.is_empty()
            && (isolation::ALWAYS_LIMITED.contains(&resource) || environments.contains(resource));
        if (hard.contains(resource) || counted) && !used.contains(resource) {
            used.set(resource, Amount::ZERO);
        }
    }

    let mut conditions = Vec::new();
    let parent_missing = agency
        .spec
        .parent
        .as_ref()
        .filter(|p| state.agencies.get(&ObjectRef::new(p)).is_none());
    conditions.push(match parent_missing {
        Some(p) => condition(
            "ParentMissing",
            true,
            "ParentNotFound",
            &format!("parent agency \"{p}\" does not exist"),
        ),
        None => condition(
            "ParentMissing",
            false,
            "ParentFound",
            "the parent agency exists",
        ),
    });
    let committed = environments.add(&granted);
    let mut over: Vec<String> = committed
        .shortfall(&hard)
        .iter()
        .map(|s| {
            format!(
                "{} granted to environments and children exceeds the quota ({} > {})",
                s.resource.field(),
                s.needed.format(s.resource),
                s.available.format(s.resource)
            )
        })
        .collect();
    over.extend(used.shortfall(&hard).iter().map(|s| {
        format!(
            "{} in use exceeds the quota ({} > {})",
            s.resource.field(),
            s.needed.format(s.resource),
            s.available.format(s.resource)
        )
    }));
    conditions.push(if over.is_empty() {
        condition(
            "QuotaExceeded",
            false,
            "WithinQuota",
            "usage and grants fit within the quota",
        )
    } else {
        condition("QuotaExceeded", true, "OverQuota", &over.join("; "))
    });
    conditions.push(if let Some(p) = parent_missing {
        condition(
            "Ready",
            false,
            "ParentMissing",
            &format!("parent agency \"{p}\" does not exist"),
        )
    } else if !problems.is_empty() {
        condition("Ready", false, "InvalidSpec", &problems.join("; "))
    } else {
        condition(
            "Ready",
            true,
            "NamespacesReady",
            &format!(
                "{} namespace(s) isolated and within quota",
                namespaces.len()
            ),
        )
    });
    // Keep transition times of unchanged conditions.
    let previous = state
        .written
        .get(&name)
        .or_else(|| agency.status.clone())
        .map(|s| s.conditions)
        .unwrap_or_default();
    for c in &mut conditions {
        if let Some(old) = previous
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
        c.observed_generation = agency.metadata.generation;
    }

    AgencyStatus {
        observed_generation: agency.metadata.generation,
        namespaces,
        cpu: Some(usage_summary(
            used.get(QuotaResource::Cpu),
            hard.get_opt(QuotaResource::Cpu),
            QuotaResource::Cpu,
        )),
        memory: Some(usage_summary(
            used.get(QuotaResource::Memory),
            hard.get_opt(QuotaResource::Memory),
            QuotaResource::Memory,
        )),
        quota: Some(AgencyQuotaStatus {
            hard: hard.to_spec(),
            used: used.to_spec(),
            environments: environments.to_spec(),
            granted_to_children: granted.to_spec(),
        }),
        children: u32::try_from(children.len()).unwrap_or(u32::MAX),
        // Written by the metering side under its own field manager.
        cost: None,
        conditions,
    }
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
        observed_generation: None,
    }
}

async fn write_status(
    state: &State,
    applier: &Applier<'_>,
    agency: &Agency,
    status: AgencyStatus,
) -> Result<(), Error> {
    // The cache keeps the hash of the status's own part (see `trim`): `status.cost` and
    // the BudgetThreshold condition are the metering collector's, no reason to write.
    let name = agency.name_any();
    let unchanged = match state.written.get(&name) {
        Some(written) => own_part(&written) == status,
        None => cached_status_hash(state, &name) == Some(status_hash(&status)),
    };
    if unchanged {
        return Ok(());
    }
    #[derive(Debug, Serialize)]
    struct StatusPatch<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        status: &'a AgencyStatus,
    }
    let patch = StatusPatch {
        api_version: "govbroker.io/v1alpha1",
        kind: "Agency",
        status: &status,
    };
    applier.count::<Agency>();
    let written = Api::<Agency>::all(state.ctx.client.clone())
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    if let Ok(Some(written)) = written.as_ref().map(|a| a.status.as_ref()) {
        // Unless the watch was faster than the answer.
        if cached_status_hash(state, &name) != Some(status_hash(&own_part(written))) {
            state.written.remember(&name, written.clone());
        }
    }
    gone_is_fine(written)
}

/// The hash of the agency's status as the cache shows it (see [`trim`]).
fn cached_status_hash(state: &State, name: &str) -> Option<String> {
    state
        .agencies
        .get(&ObjectRef::new(name))?
        .annotations()
        .get(CACHED_STATUS_HASH)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use govbroker_crds::{AgencyLevel, AgencySpec};
    use watcher::Event;

    fn agency(name: &str, parent: Option<&str>, generation: i64) -> Agency {
        let mut a = Agency::new(
            name,
            AgencySpec {
                budget: None,
                price_list: None,
                display_name: name.to_owned(),
                level: AgencyLevel::Province,
                parent: parent.map(str::to_owned),
                security_level: 1,
                owners: Default::default(),
                viewers: Default::default(),
                environments: Vec::new(),
                quota: Default::default(),
            },
        );
        a.metadata.generation = Some(generation);
        a
    }

    fn names(woken: BTreeSet<String>) -> Vec<String> {
        woken.into_iter().collect()
    }

    /// A tree listed at start-up: bo <- tinh <- (huyen-1 <- xa, huyen-2).
    fn listed() -> Tree {
        let mut tree = Tree::default();
        let mut woken = tree.note(&Event::Init);
        for a in [
            agency("xa", Some("huyen-1"), 1),
            agency("huyen-1", Some("tinh"), 1),
            agency("huyen-2", Some("tinh"), 1),
            agency("tinh", Some("bo"), 1),
            agency("bo", None, 1),
        ] {
            woken.extend(tree.note(&Event::InitApply(a)));
        }
        woken.extend(tree.note(&Event::InitDone));
        assert!(woken.is_empty(), "the first list wakes nobody: {woken:?}");
        tree
    }

    #[test]
    fn a_new_child_wakes_its_parent() {
        let mut tree = listed();
        let woken = tree.note(&Event::Apply(agency("huyen-3", Some("tinh"), 1)));
        assert_eq!(names(woken), ["tinh"]);
        assert_eq!(tree.children("tinh"), ["huyen-1", "huyen-2", "huyen-3"]);
    }

    #[test]
    fn a_status_write_wakes_nobody() {
        let mut tree = listed();
        let woken = tree.note(&Event::Apply(agency("tinh", Some("bo"), 1)));
        assert!(woken.is_empty(), "{woken:?}");
    }

    #[test]
    fn a_spec_change_wakes_the_parent_and_the_whole_subtree() {
        let mut tree = listed();
        let woken = tree.note(&Event::Apply(agency("tinh", Some("bo"), 2)));
        assert_eq!(names(woken), ["bo", "huyen-1", "huyen-2", "xa"]);
    }

    #[test]
    fn a_move_wakes_the_old_and_the_new_parent() {
        let mut tree = listed();
        let woken = tree.note(&Event::Apply(agency("xa", Some("huyen-2"), 2)));
        assert_eq!(names(woken), ["huyen-1", "huyen-2"]);
        assert!(tree.children("huyen-1").is_empty());
        assert_eq!(tree.children("huyen-2"), ["xa"]);
    }

    #[test]
    fn a_deletion_wakes_the_parent_and_the_orphans() {
        let mut tree = listed();
        let woken = tree.note(&Event::Delete(agency("huyen-1", Some("tinh"), 1)));
        assert_eq!(names(woken), ["tinh", "xa"]);
        assert_eq!(tree.children("tinh"), ["huyen-2"]);
    }

    #[test]
    fn an_agency_missing_from_a_relist_counts_as_deleted() {
        let mut tree = listed();
        let mut woken = tree.note(&Event::Init);
        for a in [
            agency("xa", Some("huyen-1"), 1),
            agency("huyen-1", Some("tinh"), 1),
            agency("tinh", Some("bo"), 1),
            agency("bo", None, 1),
        ] {
            woken.extend(tree.note(&Event::InitApply(a)));
        }
        woken.extend(tree.note(&Event::InitDone));
        assert_eq!(names(woken), ["tinh"]);
        assert_eq!(tree.children("tinh"), ["huyen-1"]);
    }

    #[test]
    fn a_cycle_does_not_hang() {
        let mut tree = listed();
        tree.note(&Event::Apply(agency("bo", Some("xa"), 2)));
        let woken = tree.note(&Event::Apply(agency("tinh", Some("bo"), 3)));
        assert!(woken.contains("xa"));
    }

    #[test]
    fn the_cache_keeps_a_hash_of_the_status_it_writes() {
        let mut a = agency("tinh", None, 1);
        let own = AgencyStatus {
            observed_generation: Some(1),
            namespaces: vec!["tinh-prod".to_owned()],
            children: 2,
            ..AgencyStatus::default()
        };
        let mut with_cost = own.clone();
        with_cost.conditions.push(condition(
            govbroker_domain::billing::BUDGET_CONDITION,
            true,
            "Crossed",
            "80%",
        ));
        a.status = Some(with_cost);
        trim(&mut a);
        assert_eq!(
            a.annotations().get(CACHED_STATUS_HASH),
            Some(&status_hash(&own)),
            "the collector's condition is not part of the hash"
        );
        let kept = a.status.expect("status kept");
        assert!(kept.namespaces.is_empty() && kept.children == 0);
        assert_eq!(kept.conditions.len(), 1, "conditions are kept");
    }
}
