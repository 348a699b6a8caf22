//! The data-service broker: provisions a DataServiceClaim on the shared server of its
//! DataServiceClass and hands the agency a binding Secret.
//!
//! PostgreSQL: a login role and a database of the same name, closed to everyone else,
//! with the plan's connection limit. Redis: an ACL user confined to the key prefix
//! `<namespace>/<claim>:*`. Names, quoted SQL and ACL rules come from
//! [`govbroker_domain::data_services`]; no user input is formatted into a statement
//! here.
//!
//! The finalizer [`FINALIZER`] makes deletion wait until the server is cleaned up:
//! `deletionPolicy: Delete` drops the database and role (or the Redis user and its
//! keys), `Retain` only takes the login away. Passwords never reach logs, events or the
//! status: only the binding Secret holds them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use govbroker_crds::{
    ClaimPhase, DataServiceClaim, DataServiceClaimStatus, DataServiceClass, DataServiceEngine,
    DeletionPolicy, ROTATE_PASSWORD_ANNOTATION,
};
use govbroker_domain::data_services::{
    DATABASE_SETTINGS, InstanceNames, MeasuredLimits, MeasuredUse, PostgresLimits,
    PostgresParameters, RedisAccess, TERMINATE_ROLE_SESSIONS, TERMINATE_SESSIONS, WRITES_SUSPENDED,
    WRITES_SUSPENDED_NOTE, alter_role, create_database, create_extensions, create_role,
    database_settings, disable_login, drop_instance, instance_names, over_plan,
    postgres_parameters, redis_acl, redis_parameters, suspend_writes,
};
use govbroker_domain::isolation::{AGENCY_LABEL, SECURITY_LEVEL_LABEL, data_service_egress};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::shared_server::{
    Backoff, DATABASE_EXISTS, Problem, ROLE_EXISTS, Target, addresses, binding_data, exists,
    new_password, postgres, redis, redis_failed, secret_text, sql_failed, target, unsafe_text,
};
use crate::apply::Applier;
use crate::{Context, Error};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "data-service-claim";
/// Field manager of the binding Secrets, finalizers and claim statuses it writes.
pub const FIELD_MANAGER: &str = "govbroker-data-services";
/// The finalizer that holds a claim until its instance is cleaned up on the server.
pub const FINALIZER: &str = "govbroker.io/data-service";
/// Label on binding Secrets naming their claim (the controller watches only these).
pub const CLAIM_LABEL: &str = "govbroker.io/data-service-claim";

struct State {
    ctx: Arc<Context>,
    /// Consecutive failures per claim, for the retry backoff.
    failures: Backoff<DataServiceClaim>,
    /// When each claim's database size was last measured.
    sampling: Sampling,
}

/// Keeps the measurements (database size, Redis keys and memory) at most one per
/// [`SAMPLE_EVERY`] per claim, however often a claim is reconciled (a status write wakes
/// it again), but measures again at once when the class changes: new plan limits are
/// judged on a fresh measurement.
#[derive(Default)]
struct Sampling(
    std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<i64>)>>,
);

/// How often a claim's database size is measured, for metering.
const SAMPLE_EVERY: Duration = Duration::from_secs(600);

impl Sampling {
    /// Whether the claim's use should be measured now (and notes that it is), given the
    /// generation of its class.
    fn due(&self, claim: &DataServiceClaim, class_generation: Option<i64>) -> bool {
        let key = format!(
            "{}/{}",
            claim.namespace().unwrap_or_default(),
            claim.name_any()
        );
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match last.get(&key) {
            Some((at, generation))
                if now.duration_since(*at) < SAMPLE_EVERY && *generation == class_generation =>
            {
                false
            }
            _ => {
                last.insert(key, (now, class_generation));
                true
            }
        }
    }
}

fn applier(state: &State) -> Applier<'_> {
    Applier {
        ctx: &state.ctx,
        controller: CONTROLLER,
        field_manager: FIELD_MANAGER,
    }
}

/// Runs the broker until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let state = Arc::new(State {
        ctx: ctx.clone(),
        failures: Backoff::default(),
        sampling: Sampling::default(),
    });
    let controller = Controller::new(
        Api::<DataServiceClaim>::all(ctx.client.clone()),
        watcher::Config::default().any_semantic(),
    );
    // A class's changed plans (limits, connection limits) reach its claims at once.
    let claims = controller.store();
    controller
        .watches(
            Api::<DataServiceClass>::all(ctx.client.clone()),
            watcher::Config::default().any_semantic(),
            move |class| {
                let class = class.name_any();
                claims
                    .state()
                    .into_iter()
                    .filter(|claim| claim.spec.class_name == class)
                    .map(|claim| ObjectRef::from_obj(&*claim))
                    .collect::<Vec<_>>()
            },
        )
        .owns(
            Api::<Secret>::all(ctx.client.clone()),
            watcher::Config::default()
                .labels(CLAIM_LABEL)
                .any_semantic(),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "data service claim reconcile failed");
            }
        })
        .await;
    Ok(())
}

fn error_policy(claim: Arc<DataServiceClaim>, error: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.reconcile_failed(CONTROLLER, error);
    let delay = state.failures.next(&claim);
    warn!(claim = %claim.name_any(), namespace = ?claim.namespace(), error = %error.chain(), ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

/// Whether the claim's namespace may use the class: an agency's namespace carries its
/// security level, and the class says which levels it serves (namespaces of no agency,
/// such as the platform's, are not restricted; the webhook keeps claims out of them).
/// Checked before provisioning only: a class narrowed later must not stop the cleanup
/// of what it already made. Returns the namespace's agency.
async fn level_allowed(
    state: &State,
    claim: &DataServiceClaim,
    class: &DataServiceClass,
) -> Result<Result<Option<String>, Problem>, Error> {
    let namespace = claim.namespace().unwrap_or_default();
    let labels = Api::<Namespace>::all(state.ctx.client.clone())
        .get_opt(&namespace)
        .await?
        .map(|ns| ns.labels().clone())
        .unwrap_or_default();
    let agency = labels.get(AGENCY_LABEL).cloned();
    let level = labels
        .get(SECURITY_LEVEL_LABEL)
        .and_then(|l| l.parse::<u8>().ok());
    match level {
        Some(level) if !class.spec.allowed_security_levels.contains(&level) => {
            Ok(Err(Problem::Failed {
                reason: "SecurityLevelNotAllowed",
                message: format!(
                    "namespace {namespace} is at security level {level}, but DataServiceClass \"{}\" serves only levels {:?}: choose a class for level {level}",
                    class.name_any(),
                    class.spec.allowed_security_levels
                ),
            }))
        }
        _ => Ok(Ok(agency)),
    }
}

fn binding_name(claim: &DataServiceClaim) -> String {
    format!("{}-binding", claim.name_any())
}

async fn reconcile(claim: Arc<DataServiceClaim>, state: Arc<State>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = claim.namespace().unwrap_or_default();
    let api = Api::<DataServiceClaim>::namespaced(state.ctx.client.clone(), &namespace);
    let has_finalizer = claim.finalizers().iter().any(|f| f == FINALIZER);
    if claim.metadata.deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        return delete(&claim, &state, &api).await;
    }
    if !has_finalizer {
        let mut finalizers = claim.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        applier(&state).count::<DataServiceClaim>();
        // The resource version makes this fail rather than overwrite a concurrent change.
        api.patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": claim.resource_version(),
            }})),
        )
        .await?;
        return Ok(Action::await_change());
    }
    provision(&claim, &state, &api).await
}

async fn provision(
    claim: &DataServiceClaim,
    state: &State,
    api: &Api<DataServiceClaim>,
) -> Result<Action, Error> {
    let namespace = claim.namespace().unwrap_or_default();
    let names = instance_names(&namespace, &claim.name_any());
    let target = match target(
        &state.ctx.client,
        &claim.spec.class_name,
        Some(&claim.spec.plan),
    )
    .await?
    {
        Ok(target) => target,
        Err(problem) => return report(claim, state, api, None, problem).await,
    };
    let agency = match level_allowed(state, claim, &target.class).await? {
        Ok(agency) => agency,
        Err(problem) => return report(claim, state, api, None, problem).await,
    };
    let previous = claim.status.clone().unwrap_or_default();
    if !matches!(
        previous.phase,
        Some(ClaimPhase::Ready | ClaimPhase::Provisioning)
    ) {
        let message = format!("creating the instance on {}", target.endpoint());
        let status = DataServiceClaimStatus {
            observed_generation: claim.metadata.generation,
            phase: Some(ClaimPhase::Provisioning),
            endpoint: Some(target.endpoint()),
            message: Some(message.clone()),
            conditions: vec![condition(claim, false, "Provisioning", &message)],
            ..previous.clone()
        };
        write_status(claim, state, api, status).await?;
    }
    let secrets = Api::<Secret>::namespaced(state.ctx.client.clone(), &namespace);
    let binding = binding_name(claim);
    let existing = secrets.get_opt(&binding).await?;
    // A new value of the rotation annotation asks for a new password.
    let rotation = claim.annotations().get(ROTATE_PASSWORD_ANNOTATION).cloned();
    let rotate = rotation.is_some() && rotation != previous.password_rotation;
    let password = match existing.as_ref().and_then(|s| secret_text(s, "password")) {
        Some(p) if !rotate && p.chars().all(|c| c.is_ascii_alphanumeric()) => p,
        _ => new_password()?,
    };
    let engine = target.class.spec.engine;
    let sample = state.sampling.due(claim, target.class.metadata.generation);
    let limits = target
        .class
        .spec
        .plans
        .iter()
        .find(|p| p.name == claim.spec.plan)
        .and_then(|p| p.limits.clone())
        .unwrap_or_default();
    let limits = MeasuredLimits {
        storage: limits.storage.as_ref().map(|q| q.0.as_str()),
        memory: limits.memory.as_ref().map(|q| q.0.as_str()),
        max_keys: limits.max_keys,
    };
    let last_measured = MeasuredUse {
        storage_bytes: previous.storage_bytes,
        keys: previous.keys,
        memory_bytes: previous.memory_bytes,
    };
    let outcome = match engine {
        DataServiceEngine::Postgres => {
            provision_postgres(
                &target,
                &names,
                &password,
                &claim.spec.parameters,
                &previous.extensions,
                limits,
                sample,
            )
            .await
        }
        DataServiceEngine::Redis => provision_redis(
            &target,
            &names,
            &password,
            &claim.spec.parameters,
            limits,
            last_measured,
            sample,
        )
        .await
        .map(|measured| (measured, Vec::new())),
    };
    let (used, extensions) = match outcome {
        // A measurement not due this time keeps the last one.
        Ok((measured, extensions)) => (measured.unwrap_or(last_measured), extensions),
        Err(problem) => return report(claim, state, api, Some(&target), problem).await,
    };
    let over = over_plan(limits, used);
    let within_plan = if over.is_empty() {
        typed_condition(
            claim,
            "WithinPlan",
            true,
            "WithinPlan",
            "the measured use is within the plan's limits",
        )
    } else {
        typed_condition(
            claim,
            "WithinPlan",
            false,
            "OverPlan",
            &format!("{}; {WRITES_SUSPENDED_NOTE}", over.join("; ")),
        )
    };
    if let Some(agency) = &agency {
        let addresses = match addresses(&target).await {
            Ok(addresses) => addresses,
            Err(problem) => return report(claim, state, api, Some(&target), problem).await,
        };
        let mut policy = data_service_egress(
            &format!("{}-data-service-egress", claim.name_any()),
            &namespace,
            agency,
            &addresses,
            target.port(),
        );
        policy
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(CLAIM_LABEL.to_owned(), claim.name_any());
        policy.metadata.owner_references = claim.controller_owner_ref(&()).map(|o| vec![o]);
        let current = Api::<NetworkPolicy>::namespaced(state.ctx.client.clone(), &namespace)
            .get_opt(&policy.name_any())
            .await?;
        if current.and_then(|p| p.spec) != policy.spec {
            applier(state).apply_now(&policy).await?;
        }
    }

    let (host, port) = (target.host().to_owned(), target.port());
    let user = match engine {
        DataServiceEngine::Postgres => names.role.clone(),
        DataServiceEngine::Redis => names.redis_user.clone(),
    };
    let data = binding_data(
        engine,
        &host,
        port,
        &user,
        &password,
        match engine {
            DataServiceEngine::Postgres => &names.database,
            DataServiceEngine::Redis => &names.key_prefix,
        },
        target.tls.as_ref(),
    );
    let labels = BTreeMap::from([(CLAIM_LABEL.to_owned(), claim.name_any())]);
    let up_to_date = existing.as_ref().is_some_and(|s| {
        s.data.as_ref() == Some(&data)
            && s.labels().get(CLAIM_LABEL) == labels.get(CLAIM_LABEL)
            && s.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == claim.uid().as_ref())
    });
    if !up_to_date {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(binding.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(labels),
                owner_references: claim.controller_owner_ref(&()).map(|o| vec![o]),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(data),
            ..Default::default()
        };
        applier(state).apply_now(&secret).await?;
        info!(claim = %claim.name_any(), %namespace, secret = %binding, "binding Secret written");
    }
    let message = match engine {
        DataServiceEngine::Postgres => format!(
            "database \"{}\" with role \"{}\" on {}; credentials in Secret \"{binding}\"",
            names.database,
            names.role,
            target.endpoint()
        ),
        DataServiceEngine::Redis => format!(
            "Redis user \"{}\" with key prefix \"{}:\" on {}; credentials in Secret \"{binding}\"",
            names.redis_user,
            names.key_prefix,
            target.endpoint()
        ),
    };
    let status = DataServiceClaimStatus {
        observed_generation: claim.metadata.generation,
        phase: Some(ClaimPhase::Ready),
        endpoint: Some(target.endpoint()),
        binding_secret: Some(binding),
        retained: false,
        password_rotation: rotation,
        storage_bytes: used.storage_bytes,
        keys: used.keys,
        memory_bytes: used.memory_bytes,
        extensions,
        message: Some(message.clone()),
        conditions: vec![
            condition(claim, true, "Provisioned", &message),
            within_plan.clone(),
        ],
    };
    let was_within = claim
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "WithinPlan"))
        .is_none_or(|c| c.status == "True");
    let became_ready = previous.phase != Some(ClaimPhase::Ready);
    write_status(claim, state, api, status).await?;
    let events = &state.ctx.events;
    if rotate && !became_ready {
        info!(claim = %claim.name_any(), %namespace, "password rotated");
        let note = format!("a new password is in Secret \"{}\"", binding_name(claim));
        events
            .publish(
                claim,
                EventType::Normal,
                "PasswordRotated",
                note,
                "RotatePassword",
            )
            .await;
    }
    if was_within && within_plan.status == "False" {
        warn!(claim = %claim.name_any(), %namespace, message = %within_plan.message, "claim over its plan; writes suspended");
        let note = within_plan.message.clone();
        events
            .publish(claim, EventType::Warning, "OverPlan", note, "SuspendWrites")
            .await;
    } else if !was_within && within_plan.status == "True" {
        info!(claim = %claim.name_any(), %namespace, "claim back within its plan; writes allowed");
        let note = "the instance is back within its plan; writes are allowed again";
        events
            .publish(
                claim,
                EventType::Normal,
                "WithinPlan",
                note.to_owned(),
                "ResumeWrites",
            )
            .await;
    }
    if became_ready {
        events
            .publish(
                claim,
                EventType::Normal,
                "Provisioned",
                message,
                "Provision",
            )
            .await;
    }
    state.failures.reset(claim);
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// Records a problem in the status (and an event when it is new) and retries later.
async fn report(
    claim: &DataServiceClaim,
    state: &State,
    api: &Api<DataServiceClaim>,
    target: Option<&Target>,
    problem: Problem,
) -> Result<Action, Error> {
    let (phase, reason, message, delay) = match problem {
        Problem::Failed { reason, message } => (
            ClaimPhase::Failed,
            reason,
            message,
            Duration::from_secs(120),
        ),
        Problem::Unavailable { reason, message } => (
            ClaimPhase::Pending,
            reason,
            message,
            state.failures.next(claim),
        ),
    };
    warn!(claim = %claim.name_any(), namespace = ?claim.namespace(), reason, %message, ?delay, "claim not provisioned");
    let previous = claim.status.clone().unwrap_or_default();
    let status = DataServiceClaimStatus {
        observed_generation: claim.metadata.generation,
        phase: Some(phase),
        endpoint: target.map(Target::endpoint).or(previous.endpoint),
        binding_secret: previous.binding_secret,
        retained: false,
        password_rotation: previous.password_rotation,
        storage_bytes: previous.storage_bytes,
        keys: previous.keys,
        memory_bytes: previous.memory_bytes,
        extensions: previous.extensions,
        message: Some(message.clone()),
        conditions: vec![condition(claim, false, reason, &message)],
    };
    if write_status(claim, state, api, status).await? {
        state
            .ctx
            .events
            .publish(claim, EventType::Warning, reason, message, "Provision")
            .await;
    }
    Ok(Action::requeue(delay))
}

fn condition(claim: &DataServiceClaim, ready: bool, reason: &str, message: &str) -> Condition {
    typed_condition(claim, "Ready", ready, reason, message)
}

/// A condition of `type_`, keeping its transition time while its status holds.
fn typed_condition(
    claim: &DataServiceClaim,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = claim
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: since.unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now())),
        observed_generation: claim.metadata.generation,
    }
}

/// Writes the status when it changed; returns whether it did.
async fn write_status(
    claim: &DataServiceClaim,
    state: &State,
    api: &Api<DataServiceClaim>,
    status: DataServiceClaimStatus,
) -> Result<bool, Error> {
    if claim.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    applier(state).count::<DataServiceClaim>();
    match api
        .patch_status(
            &claim.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "govbroker.io/v1alpha1",
                "kind": "DataServiceClaim",
                "status": status,
            })),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn delete(
    claim: &DataServiceClaim,
    state: &State,
    api: &Api<DataServiceClaim>,
) -> Result<Action, Error> {
    let namespace = claim.namespace().unwrap_or_default();
    let names = instance_names(&namespace, &claim.name_any());
    let policy = claim.spec.deletion_policy;
    let target = match target(
        &state.ctx.client,
        &claim.spec.class_name,
        Some(&claim.spec.plan),
    )
    .await?
    {
        Ok(target) => Some(target),
        // Nothing to reach: the class is gone, or points nowhere the broker can go.
        Err(Problem::Failed { message, .. }) => {
            state
                .ctx
                .events
                .publish(
                    claim,
                    EventType::Warning,
                    "CleanupSkipped",
                    format!("nothing was cleaned up on a server: {message}"),
                    "Delete",
                )
                .await;
            None
        }
        Err(Problem::Unavailable { reason, message }) => {
            return report_deleting(claim, state, api, reason, message).await;
        }
    };
    if let Some(target) = &target {
        let previous = claim.status.clone().unwrap_or_default();
        let message = match policy {
            DeletionPolicy::Delete => format!("dropping the instance on {}", target.endpoint()),
            DeletionPolicy::Retain => format!(
                "keeping the data on {} and removing access (deletionPolicy Retain)",
                target.endpoint()
            ),
        };
        let status = DataServiceClaimStatus {
            phase: Some(ClaimPhase::Deleting),
            retained: policy == DeletionPolicy::Retain,
            message: Some(message),
            ..previous
        };
        write_status(claim, state, api, status).await?;
        let outcome = match (target.class.spec.engine, policy) {
            (DataServiceEngine::Postgres, policy) => cleanup_postgres(target, &names, policy).await,
            (DataServiceEngine::Redis, policy) => cleanup_redis(target, &names, policy).await,
        };
        if let Err(problem) = outcome {
            let (Problem::Failed { reason, message } | Problem::Unavailable { reason, message }) =
                problem;
            return report_deleting(claim, state, api, reason, message).await;
        }
        let note = match policy {
            DeletionPolicy::Delete => format!("the instance was dropped on {}", target.endpoint()),
            DeletionPolicy::Retain => format!(
                "the data stays on {} (deletionPolicy Retain); the login is disabled",
                target.endpoint()
            ),
        };
        info!(claim = %claim.name_any(), %namespace, ?policy, "instance cleaned up");
        state
            .ctx
            .events
            .publish(claim, EventType::Normal, "CleanedUp", note, "Delete")
            .await;
    }
    let finalizers: Vec<String> = claim
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    applier(state).count::<DataServiceClaim>();
    match api
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": claim.resource_version(),
            }})),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    state.failures.reset(claim);
    Ok(Action::await_change())
}

async fn report_deleting(
    claim: &DataServiceClaim,
    state: &State,
    api: &Api<DataServiceClaim>,
    reason: &'static str,
    message: String,
) -> Result<Action, Error> {
    let delay = state.failures.next(claim);
    warn!(claim = %claim.name_any(), namespace = ?claim.namespace(), reason, %message, ?delay, "claim not cleaned up yet");
    let previous = claim.status.clone().unwrap_or_default();
    let status = DataServiceClaimStatus {
        phase: Some(ClaimPhase::Deleting),
        message: Some(format!("waiting to clean up: {message}")),
        conditions: vec![condition(claim, false, reason, &message)],
        ..previous
    };
    if write_status(claim, state, api, status).await? {
        state
            .ctx
            .events
            .publish(claim, EventType::Warning, reason, message, "Delete")
            .await;
    }
    Ok(Action::requeue(delay))
}

/// A claim's parameters the broker cannot honour: Failed until the claim is corrected.
fn invalid_parameter(e: &govbroker_domain::data_services::ParameterError) -> Problem {
    Problem::Failed {
        reason: "InvalidParameter",
        message: e.to_string(),
    }
}

/// Creates (or brings back to the plan) the role and database with the claim's settings
/// and extensions (those not in `created`, what the status records); measures the
/// database's size when `sample` asks for it, and suspends the role's writes while the
/// database is over the plan's storage (resumes them once it is back within). Returns
/// the measurement, if one was taken, and the extensions now created, for the status.
async fn provision_postgres(
    target: &Target,
    names: &InstanceNames,
    password: &str,
    parameters: &BTreeMap<String, String>,
    created: &[String],
    plan: MeasuredLimits<'_>,
    sample: bool,
) -> Result<(Option<MeasuredUse>, Vec<String>), Problem> {
    let parameters = postgres_parameters(parameters).map_err(|e| invalid_parameter(&e))?;
    let pg = postgres(target, "postgres").await?;
    let limits = PostgresLimits {
        max_connections: target.max_connections,
    };
    let role_exists = exists(&pg, ROLE_EXISTS, &names.role)
        .await
        .map_err(|e| sql_failed("looking up the role", &e))?;
    let statement = if role_exists {
        alter_role(&names.role, password, limits)
    } else {
        create_role(&names.role, password, limits)
    }
    .map_err(|e| unsafe_text(&e))?;
    pg.batch_execute(&statement)
        .await
        .map_err(|e| sql_failed(&format!("setting up role \"{}\"", names.role), &e))?;
    let database_exists = exists(&pg, DATABASE_EXISTS, &names.database)
        .await
        .map_err(|e| sql_failed("looking up the database", &e))?;
    if !database_exists {
        for statement in
            create_database(&names.database, &names.role).map_err(|e| unsafe_text(&e))?
        {
            pg.batch_execute(&statement).await.map_err(|e| {
                sql_failed(&format!("creating database \"{}\"", names.database), &e)
            })?;
        }
    }
    // A database just created has none of the extensions the status may remember.
    let created = if database_exists { created } else { &[] };
    configure_database(target, &pg, names, &parameters, created).await?;
    let measured = if sample {
        let size = pg
            .query_one("SELECT pg_database_size($1)", &[&names.database])
            .await
            .map_err(|e| sql_failed("measuring the database", &e))?;
        Some(MeasuredUse {
            storage_bytes: Some(size.get(0)),
            ..MeasuredUse::default()
        })
    } else {
        None
    };
    if let Some(used) = measured {
        let suspend = !over_plan(plan, used).is_empty();
        let suspended = !pg
            .query(WRITES_SUSPENDED, &[&names.role, &names.database])
            .await
            .map_err(|e| sql_failed("looking up the role's settings", &e))?
            .is_empty();
        if suspend != suspended {
            let statement = suspend_writes(&names.role, &names.database, suspend)
                .map_err(|e| unsafe_text(&e))?;
            pg.batch_execute(&statement)
                .await
                .map_err(|e| sql_failed("changing whether the role may write", &e))?;
            if suspend {
                // Open sessions keep the settings they started with: end them, so the
                // next ones start read-only.
                pg.execute(TERMINATE_ROLE_SESSIONS, &[&names.role])
                    .await
                    .map_err(|e| sql_failed("ending the role's sessions", &e))?;
            }
        }
    }
    Ok((measured, parameters.extensions))
}

/// Gives the claim's database exactly the settings and (added) extensions of its
/// parameters. Extensions not yet `created` are created connected to the database
/// itself; when there are none, no session to it is opened.
async fn configure_database(
    target: &Target,
    pg: &tokio_postgres::Client,
    names: &InstanceNames,
    parameters: &PostgresParameters,
    created: &[String],
) -> Result<(), Problem> {
    let current: Vec<String> = pg
        .query_one(DATABASE_SETTINGS, &[&names.database])
        .await
        .map_err(|e| sql_failed("reading the database's settings", &e))?
        .get(0);
    for statement in
        database_settings(&names.database, parameters, &current).map_err(|e| unsafe_text(&e))?
    {
        pg.batch_execute(&statement)
            .await
            .map_err(|e| sql_failed(&format!("setting up database \"{}\"", names.database), &e))?;
    }
    let extensions = create_extensions(parameters, created).map_err(|e| unsafe_text(&e))?;
    if extensions.is_empty() {
        return Ok(());
    }
    let db = postgres(target, &names.database).await?;
    for statement in extensions {
        db.batch_execute(&statement)
            .await
            .map_err(|e| sql_failed("creating an extension", &e))?;
    }
    Ok(())
}

async fn cleanup_postgres(
    target: &Target,
    names: &InstanceNames,
    policy: DeletionPolicy,
) -> Result<(), Problem> {
    let pg = postgres(target, "postgres").await?;
    match policy {
        DeletionPolicy::Delete => {
            pg.execute(TERMINATE_SESSIONS, &[&names.database])
                .await
                .map_err(|e| sql_failed("ending the database's sessions", &e))?;
            for statement in
                drop_instance(&names.database, &names.role).map_err(|e| unsafe_text(&e))?
            {
                pg.batch_execute(&statement)
                    .await
                    .map_err(|e| sql_failed("dropping the instance", &e))?;
            }
        }
        DeletionPolicy::Retain => {
            let role_exists = exists(&pg, ROLE_EXISTS, &names.role)
                .await
                .map_err(|e| sql_failed("looking up the role", &e))?;
            if role_exists {
                let statement = disable_login(&names.role).map_err(|e| unsafe_text(&e))?;
                pg.batch_execute(&statement)
                    .await
                    .map_err(|e| sql_failed("disabling the role's login", &e))?;
                pg.execute(TERMINATE_SESSIONS, &[&names.database])
                    .await
                    .map_err(|e| sql_failed("ending the database's sessions", &e))?;
            }
        }
    }
    Ok(())
}

/// Measures the instance when `sample` asks for it (keys counted with SCAN, never KEYS,
/// and their memory), then sets up the ACL user: reading and writing within the plan,
/// reading and deleting only while over it. Returns the measurement, if one was taken.
async fn provision_redis(
    target: &Target,
    names: &InstanceNames,
    password: &str,
    parameters: &BTreeMap<String, String>,
    limits: MeasuredLimits<'_>,
    last: MeasuredUse,
    sample: bool,
) -> Result<Option<MeasuredUse>, Problem> {
    redis_parameters(parameters).map_err(|e| invalid_parameter(&e))?;
    let mut con = redis(target).await?;
    let measured = if sample {
        Some(measure_redis(&mut con, names).await?)
    } else {
        None
    };
    // Without a fresh measurement the last one (in the status) decides.
    let over = !over_plan(limits, measured.unwrap_or(last)).is_empty();
    let access = if over {
        RedisAccess::ReadAndDelete
    } else {
        RedisAccess::ReadWrite
    };
    let rules = redis_acl(&names.redis_user, password, &names.key_prefix, access)
        .map_err(|e| unsafe_text(&e))?;
    // The error of ACL SETUSER is reported by its code only: its text could echo a rule.
    redis::cmd("ACL")
        .arg(&rules)
        .query_async::<()>(&mut con)
        .await
        .map_err(|e| redis_failed(&format!("setting up ACL user \"{}\"", names.redis_user), &e))?;
    Ok(measured)
}

/// Counts the keys under the instance's prefix and adds up their memory, one SCAN page
/// (and one pipeline of `MEMORY USAGE`) at a time.
async fn measure_redis(
    con: &mut redis::aio::MultiplexedConnection,
    names: &InstanceNames,
) -> Result<MeasuredUse, Problem> {
    let pattern = format!("{}:*", names.key_prefix);
    let (mut cursor, mut count, mut memory) = (0u64, 0i64, 0i64);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await
            .map_err(|e| redis_failed("counting the instance's keys", &e))?;
        count += i64::try_from(keys.len()).unwrap_or(i64::MAX);
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("MEMORY").arg("USAGE").arg(key);
            }
            // A key deleted between SCAN and MEMORY USAGE answers nil.
            let sizes: Vec<Option<i64>> = pipe
                .query_async(con)
                .await
                .map_err(|e| redis_failed("measuring the instance's memory", &e))?;
            memory = memory.saturating_add(sizes.into_iter().flatten().sum::<i64>());
        }
        if next == 0 {
            return Ok(MeasuredUse {
                keys: Some(count),
                memory_bytes: Some(memory),
                ..MeasuredUse::default()
            });
        }
        cursor = next;
    }
}

async fn cleanup_redis(
    target: &Target,
    names: &InstanceNames,
    policy: DeletionPolicy,
) -> Result<(), Problem> {
    let mut con = redis(target).await?;
    match policy {
        DeletionPolicy::Delete => {
            redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&names.redis_user)
                .query_async::<i64>(&mut con)
                .await
                .map_err(|e| redis_failed("deleting the ACL user", &e))?;
            let pattern = format!("{}:*", names.key_prefix);
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut con)
                    .await
                    .map_err(|e| redis_failed("listing the instance's keys", &e))?;
                if !keys.is_empty() {
                    redis::cmd("DEL")
                        .arg(&keys)
                        .query_async::<i64>(&mut con)
                        .await
                        .map_err(|e| redis_failed("deleting the instance's keys", &e))?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        DeletionPolicy::Retain => {
            let user: redis::Value = redis::cmd("ACL")
                .arg("GETUSER")
                .arg(&names.redis_user)
                .query_async(&mut con)
                .await
                .map_err(|e| redis_failed("looking up the ACL user", &e))?;
            if user != redis::Value::Nil {
                redis::cmd("ACL")
                    .arg("SETUSER")
                    .arg(&names.redis_user)
                    .arg("off")
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(|e| redis_failed("disabling the ACL user", &e))?;
                redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("USER")
                    .arg(&names.redis_user)
                    .query_async::<i64>(&mut con)
                    .await
                    .map_err(|e| redis_failed("disconnecting the ACL user", &e))?;
            }
        }
    }
    Ok(())
}
