//! The agency controller: every Agency becomes isolated, quota-bounded namespaces.
//!
//! For each environment it applies the Namespace, ResourceQuota, LimitRange,
//! NetworkPolicies and RoleBindings that [`govbroker_domain::isolation`] prescribes, plus
//! two ClusterRoles and bindings that let owners, viewers and ancestors' owners read
//! (and owners change) the Agency.
//! Namespaces of removed environments are deleted by label. Status sums the quotas and
//! is written only when it changed.

use std::collections::BTreeSet;
use std::sync::Arc;
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

use crate::apply::Applier;
use crate::{Context, Error};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "agency";
/// Field manager of everything this controller applies.
pub const FIELD_MANAGER: &str = "govbroker-agency";
/// How often a settled agency is looked at again, to repair drift nobody told us about.
const RESYNC: Duration = Duration::from_secs(3600);

/// Metadata-only caches of what the controller owns, fed by watches on the
/// `app.kubernetes.io/managed-by=govbroker` label. They tell whether an apply is needed.
#[derive(Clone)]
pub struct Owned {
    namespaces: Store<PartialObjectMeta<Namespace>>,
    limit_ranges: Store<PartialObjectMeta<LimitRange>>,
    network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    role_bindings: Store<PartialObjectMeta<RoleBinding>>,
    cluster_roles: Store<PartialObjectMeta<ClusterRole>>,
    cluster_role_bindings: Store<PartialObjectMeta<ClusterRoleBinding>>,
    /// Resource quotas are cached whole: their status is the agency's usage.
    resource_quotas: Store<ResourceQuota>,
    /// Metadata view of the quotas, for the apply check.
    resource_quota_meta: Store<PartialObjectMeta<ResourceQuota>>,
}

impl Owned {
    async fn wait_until_ready(&self) -> Result<(), Error> {
        let not_ready = |e: kube::runtime::reflector::store::WriterDropped| {
            Error::Cache(format!("owned objects: {e}"))
        };
        self.namespaces
            .wait_until_ready()
            .await
            .map_err(not_ready)?;
        self.limit_ranges
            .wait_until_ready()
            .await
            .map_err(not_ready)?;
        self.network_policies
            .wait_until_ready()
            .await
            .map_err(not_ready)?;
        self.role_bindings
            .wait_until_ready()
            .await
            .map_err(not_ready)?;
        self.cluster_roles
            .wait_until_ready()
            .await
            .map_err(not_ready)?;
        self.cluster_role_bindings
            .wait_until_ready()
            .await
            .map_err(not_ready)?;
        self.resource_quotas
            .wait_until_ready()
            .await
            .map_err(not_ready)?;
        self.resource_quota_meta
            .wait_until_ready()
            .await
            .map_err(not_ready)?;
        Ok(())
    }
}

/// Everything one reconcile reads: the context, the agency tree and the owned caches.
pub struct State {
    ctx: Arc<Context>,
    agencies: Store<Agency>,
    owned: Owned,
    owned_ready: crate::cache::Ready,
}

fn managed() -> watcher::Config {
    watcher::Config::default()
        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
        .any_semantic()
}

/// Drops what the caches do not need (managed fields), to keep memory small at
/// national scale.
fn slim<K>(obj: &mut PartialObjectMeta<K>) {
    slim_meta(&mut obj.metadata);
}

/// Keeps only what the controller reads of an owned object's metadata: its name,
/// namespace, deletion mark, agency and environment labels and applied hash.
fn slim_meta(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.generate_name = None;
    if let Some(labels) = &mut meta.labels {
        labels.retain(|k, _| k == AGENCY_LABEL || k == ENVIRONMENT_LABEL);
    }
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|k, _| k == crate::apply::APPLIED_HASH_ANNOTATION);
    }
}

/// Starts a metadata watch feeding a store; returns the store and the stream of changed
/// objects (to wake the owner).
fn meta_cache<K>(
    api: Api<PartialObjectMeta<K>>,
) -> (
    Store<PartialObjectMeta<K>>,
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
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, managed()).map_ok(|ev| ev.modify(slim)))
        .default_backoff()
        .touched_objects();
    (reader, stream)
}

/// Runs the agency controller until `shutdown` is cancelled.
pub async fn run(
    ctx: Arc<Context>,
    controller: Controller<Agency>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = ctx.client.clone();

    let (namespaces, ns_stream) =
        meta_cache(Api::<PartialObjectMeta<Namespace>>::all(client.clone()));
    let (limit_ranges, lr_stream) =
        meta_cache(Api::<PartialObjectMeta<LimitRange>>::all(client.clone()));
    let (network_policies, np_stream) =
        meta_cache(Api::<PartialObjectMeta<NetworkPolicy>>::all(client.clone()));
    let (role_bindings, rb_stream) =
        meta_cache(Api::<PartialObjectMeta<RoleBinding>>::all(client.clone()));
    let (cluster_roles, cr_stream) =
        meta_cache(Api::<PartialObjectMeta<ClusterRole>>::all(client.clone()));
    let (cluster_role_bindings, crb_stream) = meta_cache(Api::<
        PartialObjectMeta<ClusterRoleBinding>,
    >::all(client.clone()));
    let (resource_quota_meta, rqm_stream) =
        meta_cache(Api::<PartialObjectMeta<ResourceQuota>>::all(client.clone()));
    let (resource_quotas, rq_writer) = reflector::store();
    let rq_stream = reflector::reflector(
        rq_writer,
        watcher(Api::<ResourceQuota>::all(client.clone()), managed()).map_ok(|ev| {
            ev.modify(|q| {
                slim_meta(&mut q.metadata);
                // Only the used amounts are read.
                q.spec = None;
            })
        }),
    )
    .default_backoff()
    .touched_objects();

    let owned = Owned {
        namespaces,
        limit_ranges,
        network_policies,
        role_bindings,
        cluster_roles,
        cluster_role_bindings,
        resource_quotas,
        resource_quota_meta,
    };

    let agencies = controller.store();
    let lookup = agencies.clone();
    // A change to an agency concerns its parent (children's quotas, count) and its
    // children (inherited labels and RBAC); they are woken too.
    let relatives = move |a: Agency| {
        let name = a.name_any();
        let mut refs: Vec<ObjectRef<Agency>> = lookup
            .state()
            .iter()
            .filter(|c| c.spec.parent.as_deref() == Some(name.as_str()))
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect();
        if let Some(parent) = a
            .spec
            .parent
            .as_ref()
            .map(|p| ObjectRef::new(p))
            .filter(|p| lookup.get(p).is_some())
        {
            refs.push(parent);
        }
        refs
    };

    let state = Arc::new(State {
        ctx: ctx.clone(),
        agencies: agencies.clone(),
        owned: owned.clone(),
        owned_ready: {
            let owned = owned.clone();
            crate::cache::Ready::spawn(async move { owned.wait_until_ready().await })
        },
    });

    let controller = controller
        .watches_stream(ns_stream, owner_agency(agencies.clone()))
        .watches_stream(rq_stream, owner_agency(agencies.clone()))
        .watches_stream(lr_stream, owner_agency(agencies.clone()))
        .watches_stream(np_stream, owner_agency(agencies.clone()))
        .watches_stream(rb_stream, owner_agency(agencies.clone()))
        .watches_stream(cr_stream, owner_agency(agencies.clone()))
        .watches_stream(crb_stream, owner_agency(agencies.clone()))
        .watches_stream(rqm_stream, owner_agency(agencies.clone()))
        .watches(
            Api::<Agency>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            relatives,
        )
        // A short debounce folds a burst of events (a parent whose children are being
        // created) into one reconcile and one status write.
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(32)
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
    state.owned_ready.wait().await?;
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
            &owned.resource_quota_meta,
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
    for ns in owned.namespaces.state() {
        let labels = ns.labels();
        if labels.get(AGENCY_LABEL) != Some(&name) || ns.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let env = labels
            .get(ENVIRONMENT_LABEL)
            .map(String::as_str)
            .unwrap_or_default();
        if !wanted.contains(env) {
            info!(agency = %name, namespace = %ns.name_any(), "environment removed; deleting its namespace");
            applier.delete(&ns_api, &ns.name_any()).await?;
        }
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
        .agencies
        .state()
        .into_iter()
        .filter(|c| c.spec.parent.as_deref() == Some(name.as_str()))
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
                let quota = state
                    .owned
                    .resource_quotas
                    .get(&ObjectRef::new(isolation::RESOURCE_QUOTA_NAME).within(ns))?;
                let used = quota.status.as_ref()?.used.as_ref()?;
                Some(Amounts::from_resource_quota(used))
            })
            .collect::<Vec<_>>()
            .iter(),
    );
    // Every limited resource shows a usage, 0 until the quota controller has counted:
    // the status then does not change (and is not written again) when it has.
    let mut used = used;
    for resource in QuotaResource::ALL {
        if hard.contains(resource) && !used.contains(resource) {
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
    let previous = agency
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
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
    // `status.cost` and the BudgetThreshold condition are the metering collector's
    // (another field manager): they are no reason to write.
    let mut current = agency.status.clone();
    if let Some(current) = current.as_mut() {
        current.cost = None;
        current
            .conditions
            .retain(|c| c.type_ != govbroker_domain::billing::BUDGET_CONDITION);
    }
    if current.as_ref() == Some(&status) {
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
    gone_is_fine(
        Api::<Agency>::all(state.ctx.client.clone())
            .patch_status(
                &agency.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await,
    )
}
