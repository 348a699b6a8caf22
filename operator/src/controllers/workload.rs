//! The workload controller: renders each Workload into a Deployment, a Service and a
//! PodDisruptionBudget, inside its namespace's quota and security level.
//!
//! One pass: read the agency and security level from the namespace's labels, refuse an
//! image the level's policy does not allow (`ImageRefused`), wait for the binding
//! Secrets of the claims it names, check that growing the workload fits in what the
//! namespace's ResourceQuotas have left (`QuotaExceeded` with the exact remainder,
//! nothing applied), then server-side apply the objects rendered by
//! [`govbroker_domain::workload`] and mirror the Deployment's readiness in the status.
//!
//! The binding Secrets come from a watch (only those the broker labels), and a digest of
//! their data sits in the pod template ([`BINDINGS_DIGEST_ANNOTATION`]), so a rotated
//! password replaces the pods. Transitions (`Scaled`, `BindingsChanged`, `QuotaExceeded`,
//! `ImageRefused`, `Available`) are recorded as Events on the Workload
//! ([`govbroker_domain::workload::events`] decides which).
//!
//! Children carry an owner reference to the Workload, so the garbage collector deletes
//! them with it; there is no external state and no finalizer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use govbroker_crds::{QuotaResource, Workload, WorkloadPhase, WorkloadStatus};
use govbroker_domain::isolation::{AGENCY_LABEL, SECURITY_LEVEL_LABEL};
use govbroker_domain::quantity::{Amount, Amounts};
use govbroker_domain::workload::{
    self as domain, BINDINGS_DIGEST_ANNOTATION, DeploymentChange, ImagePolicy, QuotaExceeded,
    WORKLOAD_LABEL, binding_secret_name, check_quota, demand, effective_replicas, parse_image,
    per_replica, room_for_workload,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt as _, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::data_service_claim::CLAIM_LABEL;
use crate::apply::{APPLIED_HASH_ANNOTATION, Applier, stable_hash};
use crate::cache::Index;
use crate::{Context, Error};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "workload";
/// Field manager of the Deployments, Services, PodDisruptionBudgets and statuses it writes.
pub const FIELD_MANAGER: &str = "govbroker-workloads";

/// How often a workload that does not fit (or waits for a binding) is checked again,
/// besides the ResourceQuota changes that wake it.
const RECHECK: Duration = Duration::from_secs(30);

/// How long successive triggers of one workload (its Deployment's status moving from
/// created to available in several steps, its own status write) are folded into one
/// reconcile, and so into one status write.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// What is kept of an agency namespace: the two labels read (by this controller and by
/// the Workload webhook, which share one index).
#[derive(Clone, Debug)]
pub struct AgencyNamespace {
    /// The agency it belongs to (`None` for a namespace read live without the label).
    pub agency: Option<Box<str>>,
    /// Its security level, 5 (the strictest) when unreadable.
    pub level: u8,
}

/// The stream that fills the [`Index`] of agency namespaces ([`agency_namespaces`]); the
/// workload controller polls it.
pub type NamespaceEvents =
    futures::stream::BoxStream<'static, Result<PartialObjectMeta<Namespace>, watcher::Error>>;

/// Every agency namespace (labelled with its agency) as an [`AgencyNamespace`], and the
/// stream of changed namespaces that fills the index while polled: the workload
/// controller polls it, and the Workload webhook reads the same index.
pub fn agency_namespaces(client: &kube::Client) -> (Index<AgencyNamespace>, NamespaceEvents) {
    let (index, stream) = Index::watch(
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default()
                .labels(AGENCY_LABEL)
                .any_semantic(),
        )
        .default_backoff(),
        AgencyNamespace::of,
    );
    (index, stream.boxed())
}

impl AgencyNamespace {
    /// Reads the two labels of `ns`.
    pub fn of(ns: &PartialObjectMeta<Namespace>) -> Self {
        Self {
            agency: ns.labels().get(AGENCY_LABEL).map(|a| a.as_str().into()),
            // A namespace without a readable level gets the strictest treatment.
            level: ns
                .labels()
                .get(SECURITY_LEVEL_LABEL)
                .and_then(|l| l.parse().ok())
                .unwrap_or(5),
        }
    }
}

/// What is kept of a ResourceQuota: where it is and its hard and used amounts.
#[derive(Clone, Debug)]
struct QuotaAmounts {
    namespace: Box<str>,
    hard: Amounts,
    used: Amounts,
}

impl QuotaAmounts {
    fn of(rq: &ResourceQuota) -> Self {
        let status = rq.status.as_ref();
        // The spec's hard until the quota controller has copied it into the status.
        let hard = status
            .and_then(|s| s.hard.as_ref())
            .or_else(|| rq.spec.as_ref().and_then(|s| s.hard.as_ref()));
        Self {
            namespace: rq.namespace().unwrap_or_default().into(),
            hard: hard.map(Amounts::from_resource_quota).unwrap_or_default(),
            used: status
                .and_then(|s| s.used.as_ref())
                .map(Amounts::from_resource_quota)
                .unwrap_or_default(),
        }
    }
}

struct State {
    ctx: Arc<Context>,
    policy: ImagePolicy,
    /// Every agency namespace (12,000 at national scale), by name: its agency and level.
    namespaces: Index<AgencyNamespace>,
    /// Every ResourceQuota: its namespace and amounts.
    quotas: Index<QuotaAmounts>,
    deployments: Store<Deployment>,
    services: Store<PartialObjectMeta<Service>>,
    budgets: Store<PartialObjectMeta<PodDisruptionBudget>>,
    /// The binding Secrets the broker writes (labelled with their claim).
    secrets: Store<Secret>,
    ready: crate::cache::Ready,
    failures: Mutex<HashMap<ObjectRef<Workload>, u32>>,
}

impl State {
    fn backoff(&self, w: &Workload) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(ObjectRef::from_obj(w)).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs((1u64 << (*n).min(8)).min(300))
    }

    fn succeeded(&self, w: &Workload) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ObjectRef::from_obj(w));
    }
}

fn labelled() -> watcher::Config {
    watcher::Config::default()
        .labels(WORKLOAD_LABEL)
        .any_semantic()
}

/// Runs the workload controller until `shutdown` is cancelled. `namespaces` is the index
/// of agency namespaces and the stream that fills it ([`agency_namespaces`]).
pub async fn run(
    ctx: Arc<Context>,
    (namespaces, ns_stream): (Index<AgencyNamespace>, NamespaceEvents),
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let client = ctx.client.clone();

    // Every agency namespace and every ResourceQuota are kept as their few read values
    // in compact indexes, not as objects (some 3.5 KiB an agency at national scale).
    let (quotas, rq_stream) = Index::watch(
        watcher(
            Api::<ResourceQuota>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff(),
        QuotaAmounts::of,
    );
    let (deployments, deploy_writer) = reflector::store();
    let deploy_stream = reflector::reflector(
        deploy_writer,
        watcher(Api::<Deployment>::all(client.clone()), labelled()),
    )
    .default_backoff()
    .touched_objects();
    let (services, svc_writer) = reflector::store();
    let svc_stream = reflector::reflector(
        svc_writer,
        watcher(
            Api::<PartialObjectMeta<Service>>::all(client.clone()),
            labelled(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (budgets, pdb_writer) = reflector::store();
    let pdb_stream = reflector::reflector(
        pdb_writer,
        watcher(
            Api::<PartialObjectMeta<PodDisruptionBudget>>::all(client.clone()),
            labelled(),
        ),
    )
    .default_backoff()
    .touched_objects();

    // Only the broker's binding Secrets, whose data the pod templates carry a digest of.
    let (secrets, secret_writer) = reflector::store();
    let secret_stream = reflector::reflector(
        secret_writer,
        watcher(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default()
                .labels(CLAIM_LABEL)
                .any_semantic(),
        ),
    )
    .default_backoff()
    .touched_objects();

    let ready = {
        let (n, q, d, s, b, x) = (
            namespaces.clone(),
            quotas.clone(),
            deployments.clone(),
            services.clone(),
            budgets.clone(),
            secrets.clone(),
        );
        crate::cache::Ready::spawn(async move {
            let gone = |e: reflector::store::WriterDropped| Error::Cache(e.to_string());
            n.wait_until_ready().await?;
            q.wait_until_ready().await?;
            d.wait_until_ready().await.map_err(gone)?;
            s.wait_until_ready().await.map_err(gone)?;
            b.wait_until_ready().await.map_err(gone)?;
            x.wait_until_ready().await.map_err(gone)?;
            Ok(())
        })
    };

    let controller = Controller::new(
        Api::<Workload>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let workloads = controller.store();
    // A ResourceQuota that changes may make room for the workloads of its namespace
    // that did not fit.
    let waiting_for_room = move |rq: ResourceQuota| {
        let ns = rq.namespace().unwrap_or_default();
        workloads
            .state()
            .iter()
            .filter(|w| {
                w.namespace().as_deref() == Some(ns.as_str())
                    && w.status.as_ref().and_then(|s| s.phase) == Some(WorkloadPhase::QuotaExceeded)
            })
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect::<Vec<_>>()
    };

    // A namespace whose labels change (the agency's security level) re-renders its
    // workloads: the pod template's hardening depends on the level.
    let in_namespace = {
        let workloads = controller.store();
        move |ns: PartialObjectMeta<Namespace>| {
            let ns = ns.name_any();
            workloads
                .state()
                .iter()
                .filter(|w| w.namespace().as_deref() == Some(ns.as_str()))
                .map(|w| ObjectRef::from_obj(w.as_ref()))
                .collect::<Vec<_>>()
        }
    };

    // A binding Secret that appears or changes wakes the workloads that inject it.
    let injecting = {
        let workloads = controller.store();
        move |secret: Secret| {
            let ns = secret.namespace().unwrap_or_default();
            let name = secret.name_any();
            workloads
                .state()
                .iter()
                .filter(|w| {
                    w.namespace().as_deref() == Some(ns.as_str())
                        && w.spec
                            .claims
                            .iter()
                            .any(|c| binding_secret_name(&c.name) == name)
                })
                .map(|w| ObjectRef::from_obj(w.as_ref()))
                .collect::<Vec<_>>()
        }
    };

    let state = Arc::new(State {
        ctx: ctx.clone(),
        policy: ctx.settings.image_policy.clone(),
        namespaces,
        quotas,
        deployments,
        services,
        budgets,
        secrets,
        ready,
        failures: Mutex::new(HashMap::new()),
    });

    info!("workload controller started");
    controller
        .owns_stream(deploy_stream)
        .owns_stream(svc_stream)
        .owns_stream(pdb_stream)
        .watches_stream(rq_stream, waiting_for_room)
        .watches_stream(ns_stream, in_namespace)
        .watches_stream(secret_stream, injecting)
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(32)
                .debounce(DEBOUNCE),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "workload reconcile failed");
            }
        })
        .await;
    Ok(())
}

fn error_policy(w: Arc<Workload>, error: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.reconcile_failed(CONTROLLER, error);
    let delay = state.backoff(&w);
    warn!(workload = %w.name_any(), namespace = ?w.namespace(), error = %error.chain(), ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

/// What to render for: the namespace's agency and security level, and the digest of the
/// injected binding Secrets (none without claims).
struct Target {
    agency: Option<String>,
    level: u8,
    bindings: Option<String>,
}

/// Why nothing was applied this pass.
enum Blocked {
    /// The namespace is not an agency's.
    NotAgencyNamespace(String),
    /// The spec is invalid (admission normally refuses it first).
    Invalid(String),
    /// The image policy of the level refuses the image.
    ImageRefused(String),
    /// A claim's binding Secret does not exist (yet).
    BindingMissing(String),
    /// The request does not fit in the quota.
    Quota(QuotaExceeded),
}

async fn reconcile(w: Arc<Workload>, state: Arc<State>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.reconcile_started(CONTROLLER);
    if w.meta().deletion_timestamp.is_some() {
        // The garbage collector removes the children through their owner references.
        return Ok(Action::await_change());
    }
    state.ready.wait().await?;
    let namespace = w.namespace().unwrap_or_default();
    let name = w.name_any();
    let current = state
        .deployments
        .get(&ObjectRef::new(&name).within(&namespace));

    let outcome = decide(&w, &state, current.as_deref())?;
    let (deployment, change) = match &outcome {
        Ok(target) => {
            let (deployment, change) = apply(&w, &state, target, current.as_deref()).await?;
            (Some(deployment), change)
        }
        Err(_) => (current.as_deref().cloned(), DeploymentChange::default()),
    };
    let status = status(&w, outcome.as_ref().err(), deployment.as_ref());
    let events = domain::events(w.status.as_ref(), &status, change);
    if w.status.as_ref() != Some(&status) {
        Applier {
            ctx: &state.ctx,
            controller: CONTROLLER,
            field_manager: FIELD_MANAGER,
        }
        .count::<Workload>();
        Api::<Workload>::namespaced(state.ctx.client.clone(), &namespace)
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(json!({
                    "apiVersion": "govbroker.io/v1alpha1",
                    "kind": "Workload",
                    "status": status,
                })),
            )
            .await?;
    }
    for event in events {
        publish(&state, &w, event);
    }
    state.succeeded(&w);
    Ok(match outcome {
        Err(Blocked::Quota(_) | Blocked::NotAgencyNamespace(_)) => Action::requeue(RECHECK),
        // The Secret watch wakes it when the binding appears; this is only a safety net.
        Err(Blocked::BindingMissing(_)) => Action::requeue(RECHECK),
        _ => Action::await_change(),
    })
}

/// Records an Event on the workload without holding up the reconcile; a failure to
/// record is logged, never retried.
fn publish(state: &State, w: &Workload, event: domain::WorkloadEvent) {
    let action = match event.reason {
        "Scaled" => "Scale",
        "BindingsChanged" => "Restart",
        _ => "Reconcile",
    };
    let type_ = if event.warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    tokio::spawn(
        state
            .ctx
            .events
            .publish(w, type_, event.reason, event.note, action),
    );
}

/// A digest of the binding Secrets' data, in the order of the spec's claims: what the
/// pod template carries so that a changed binding replaces the pods. FNV-1a of the
/// data, never the data: the template is readable by anyone who may read the Deployment.
fn bindings_digest(secrets: &[(String, Arc<Secret>)]) -> Result<String, Error> {
    let data: Vec<_> = secrets
        .iter()
        .map(|(name, secret)| (name.as_str(), &secret.data))
        .collect();
    Ok(stable_hash(
        &serde_json::to_vec(&data).map_err(Error::Serialize)?,
    ))
}

/// What to render for, or why nothing may be applied.
fn decide(
    w: &Workload,
    state: &State,
    current: Option<&Deployment>,
) -> Result<Result<Target, Blocked>, Error> {
    let namespace = w.namespace().unwrap_or_default();
    let spec = &w.spec;
    let Some(ns) = state.namespaces.get(None, &namespace) else {
        return Ok(Err(Blocked::NotAgencyNamespace(format!(
            "namespace \"{namespace}\" belongs to no agency: Workloads run in an agency's namespace (<agency>-<environment>)"
        ))));
    };
    let agency = ns.agency.map(String::from);
    let level = ns.level;

    let problems = domain::validate(spec);
    if !problems.is_empty() {
        return Ok(Err(Blocked::Invalid(problems.join("; "))));
    }
    let image = parse_image(&spec.image).map_err(Error::Webhook)?;
    if let Err(why) = state.policy.check(level, &image) {
        return Ok(Err(Blocked::ImageRefused(why)));
    }

    let mut bindings = Vec::with_capacity(spec.claims.len());
    for claim in &spec.claims {
        let name = binding_secret_name(&claim.name);
        match state.secrets.get(&ObjectRef::new(&name).within(&namespace)) {
            Some(secret) => bindings.push((name, secret)),
            None => {
                return Ok(Err(Blocked::BindingMissing(format!(
                    "waiting for Secret \"{name}\", the binding of DataServiceClaim \"{}\" (is the claim Ready?)",
                    claim.name
                ))));
            }
        }
    }
    let bindings = if bindings.is_empty() {
        None
    } else {
        Some(bindings_digest(&bindings)?)
    };

    // Quota: only growth needs room; shrinking and settled workloads are not checked.
    let each = per_replica(spec).map_err(Error::Webhook)?;
    let has_service = !spec.ports.is_empty();
    let want = demand(&each, effective_replicas(spec), has_service);
    let svc_exists = state
        .services
        .get(&ObjectRef::new(&w.name_any()).within(&namespace))
        .is_some();
    let (applied, held) = match current {
        Some(d) => {
            let current_each = deployment_per_replica(d);
            let spec_replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let pods = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            (
                demand(&current_each, spec_replicas, svc_exists),
                demand(&current_each, pods, svc_exists),
            )
        }
        None => (Amounts::new(), demand(&Amounts::new(), 0, svc_exists)),
    };
    let grows = want.iter().any(|(r, a)| a > applied.get(r));
    if grows {
        for rq in state.quotas.filter(|q| *q.namespace == *namespace) {
            let room = room_for_workload(&rq.hard, &rq.used, &held);
            if let Err(exceeded) = check_quota(&each, effective_replicas(spec), has_service, &room)
            {
                return Ok(Err(Blocked::Quota(exceeded)));
            }
        }
    }
    Ok(Ok(Target {
        agency,
        level,
        bindings,
    }))
}

/// Per-replica requests of a Deployment as applied (cpu, memory and one pod).
fn deployment_per_replica(d: &Deployment) -> Amounts {
    let mut each = Amounts::new();
    each.set(QuotaResource::Pods, Amount::from_units(1));
    let requests = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .filter_map(|c| c.resources.as_ref()?.requests.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for r in requests {
        let a = Amounts::from_resource_quota(&r);
        for res in [QuotaResource::Cpu, QuotaResource::Memory] {
            each.set(res, each.get(res) + a.get(res));
        }
    }
    each
}

/// The digest of the bindings a Deployment's pod template carries.
fn template_digest(d: &Deployment) -> Option<&String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(BINDINGS_DIGEST_ANNOTATION)
}

/// Applies the rendered children (skipping unchanged ones) and returns the Deployment
/// as the API server has it now, with what changed in it.
async fn apply(
    w: &Workload,
    state: &State,
    target: &Target,
    current: Option<&Deployment>,
) -> Result<(Deployment, DeploymentChange), Error> {
    let agency = target.agency.as_deref();
    let applier = Applier {
        ctx: &state.ctx,
        controller: CONTROLLER,
        field_manager: FIELD_MANAGER,
    };
    let namespace = w.namespace().unwrap_or_default();
    let name = w.name_any();
    let client = state.ctx.client.clone();

    match domain::service(w, agency) {
        Some(svc) => {
            applier.apply(&state.services, svc).await?;
        }
        None => {
            if state
                .services
                .get(&ObjectRef::new(&name).within(&namespace))
                .is_some()
            {
                applier
                    .delete(
                        &Api::<Service>::namespaced(client.clone(), &namespace),
                        &name,
                    )
                    .await?;
            }
        }
    }
    match domain::pod_disruption_budget(w, agency) {
        Some(pdb) => {
            applier.apply(&state.budgets, pdb).await?;
        }
        None => {
            if state
                .budgets
                .get(&ObjectRef::new(&name).within(&namespace))
                .is_some()
            {
                applier
                    .delete(
                        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace),
                        &name,
                    )
                    .await?;
            }
        }
    }

    let mut desired = domain::deployment(w, agency, target.level);
    if let (Some(digest), Some(spec)) = (&target.bindings, desired.spec.as_mut()) {
        spec.template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(Default::default)
            .insert(BINDINGS_DIGEST_ANNOTATION.to_owned(), digest.clone());
    }
    let hash = stable_hash(&serde_json::to_vec(&desired).map_err(Error::Serialize)?);
    if let Some(current) = current
        && current.annotations().get(APPLIED_HASH_ANNOTATION) == Some(&hash)
    {
        return Ok((current.clone(), DeploymentChange::default()));
    }
    let change = match current {
        Some(current) => {
            let from = current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let to = effective_replicas(&w.spec);
            DeploymentChange {
                scaled: (from != to).then_some((from, to)),
                bindings_changed: template_digest(current).is_some()
                    && template_digest(current) != target.bindings.as_ref(),
            }
        }
        None => DeploymentChange::default(),
    };
    desired
        .annotations_mut()
        .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
    applier.count::<Deployment>();
    let applied = Api::<Deployment>::namespaced(client, &namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await?;
    Ok((applied, change))
}

fn condition(w: &Workload, type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    let status = if status { "True" } else { "False" };
    // Keep the transition time while the status holds, so that the status only
    // changes when something did.
    let previous = w
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: w.metadata.generation,
        last_transition_time,
    }
}

/// The status of a workload given why nothing was applied (if so) and its Deployment.
fn status(
    w: &Workload,
    blocked: Option<&Blocked>,
    deployment: Option<&Deployment>,
) -> WorkloadStatus {
    let ds = deployment
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    let desired = effective_replicas(&w.spec);
    let ready = ds.ready_replicas.unwrap_or(0);
    let available = ds.available_replicas.unwrap_or(0);
    let updated = ds.updated_replicas.unwrap_or(0);
    let replicas = ds.replicas.unwrap_or(0);
    let rolled_out = deployment.is_some_and(|d| {
        ds.observed_generation >= d.metadata.generation
            && d.spec.as_ref().and_then(|s| s.replicas) == Some(desired)
    }) && updated >= desired
        && available >= desired
        && replicas == desired;

    let mut quota_remaining = BTreeMap::new();
    let (phase, message, progressing, quota, image) = match blocked {
        Some(Blocked::Quota(e)) => {
            for (r, a) in e.remaining.iter() {
                quota_remaining.insert(r.field().to_owned(), a.to_quantity(r));
            }
            let text = e.to_string();
            (
                WorkloadPhase::QuotaExceeded,
                text.clone(),
                ("False", "QuotaExceeded", text.clone()),
                (true, "QuotaExceeded", text),
                (false, "ImageAllowed", String::new()),
            )
        }
        Some(Blocked::ImageRefused(text)) => (
            WorkloadPhase::ImageRefused,
            text.clone(),
            ("False", "ImageRefused", text.clone()),
            (false, "WithinQuota", String::new()),
            (true, "ImageRefused", text.clone()),
        ),
        Some(
            Blocked::BindingMissing(text)
            | Blocked::NotAgencyNamespace(text)
            | Blocked::Invalid(text),
        ) => {
            let reason = match blocked {
                Some(Blocked::BindingMissing(_)) => "BindingMissing",
                Some(Blocked::NotAgencyNamespace(_)) => "NotAgencyNamespace",
                _ => "InvalidSpec",
            };
            (
                WorkloadPhase::Pending,
                text.clone(),
                ("False", reason, text.clone()),
                (false, "WithinQuota", String::new()),
                (false, "ImageAllowed", String::new()),
            )
        }
        None => {
            let (phase, message) = if w.spec.paused {
                (WorkloadPhase::Paused, "paused: no replica runs".to_owned())
            } else if rolled_out {
                (
                    WorkloadPhase::Available,
                    format!("{available}/{desired} replicas available"),
                )
            } else {
                (
                    WorkloadPhase::Progressing,
                    format!("{available}/{desired} replicas available, {ready} ready"),
                )
            };
            let progressing = if rolled_out || w.spec.paused {
                ("True", "RolloutComplete", message.clone())
            } else {
                ("True", "RollingOut", message.clone())
            };
            (
                phase,
                message,
                progressing,
                (false, "WithinQuota", String::new()),
                (false, "ImageAllowed", String::new()),
            )
        }
    };
    let available_now = deployment.is_some() && available >= desired && desired > 0
        || (desired == 0 && deployment.is_some());
    WorkloadStatus {
        observed_generation: w.metadata.generation,
        phase: Some(phase),
        replicas,
        ready_replicas: ready,
        available_replicas: available,
        message: Some(message),
        quota_remaining,
        conditions: vec![
            condition(
                w,
                "Available",
                available_now,
                if available_now {
                    "MinimumReplicasAvailable"
                } else {
                    "ReplicasUnavailable"
                },
                &format!("{available}/{desired} replicas available"),
            ),
            condition(
                w,
                "Progressing",
                progressing.0 == "True",
                progressing.1,
                &progressing.2,
            ),
            condition(w, "QuotaExceeded", quota.0, quota.1, &quota.2),
            condition(w, "ImageRefused", image.0, image.1, &image.2),
        ],
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    use super::*;

    fn secret(password: &str, version: &str) -> Arc<Secret> {
        Arc::new(Secret {
            metadata: ObjectMeta {
                resource_version: Some(version.to_owned()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                ("host".to_owned(), ByteString(b"127.0.0.1".to_vec())),
                (
                    "password".to_owned(),
                    ByteString(password.as_bytes().to_vec()),
                ),
            ])),
            ..Default::default()
        })
    }

    #[test]
    fn the_bindings_digest_follows_the_data_only() {
        let one =
            |p: &str, v: &str| bindings_digest(&[("db-binding".to_owned(), secret(p, v))]).unwrap();
        assert_eq!(one("a1", "1"), one("a1", "1"));
        assert_ne!(
            one("a1", "1"),
            one("a2", "2"),
            "a rotated password changes the digest"
        );
        // Same data, another resourceVersion: unchanged (no restart for a no-op write).
        assert_eq!(one("a1", "1"), one("a1", "7"));
        let two = bindings_digest(&[
            ("db-binding".to_owned(), secret("a1", "1")),
            ("cache-binding".to_owned(), secret("a1", "1")),
        ])
        .unwrap();
        assert_ne!(two, one("a1", "1"));
    }
}
