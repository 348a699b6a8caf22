//! The DataShare controller: turns an approved, unexpired, unrevoked share into a
//! read-only login on the owner's data-service instance for the consumer agency, and
//! takes it away again.
//!
//! Granting means: a reader role with `SELECT` on the owner database's `public` schema
//! (or a read-only Redis ACL user on the owner's key prefix), a binding Secret
//! `<share>-share` in each of the consumer agency's namespaces, and a NetworkPolicy there
//! that lets the consumer's pods reach the server. On expiry, revocation or deletion the
//! login is dropped and the Secrets and policies are deleted; the finalizer
//! [`FINALIZER`] makes deletion wait for that. Rules (consent, expiry, sharing down) come
//! from [`govbroker_domain::data_shares`]; the webhook refused what it could at
//! admission, and the rules are applied again here because time and the tree move on.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use govbroker_crds::{
    Agency, ClaimPhase, DataServiceClaim, DataServiceEngine, DataShare, DataSharePhase,
    DataShareStatus,
};
use govbroker_domain::data_services::{
    PostgresLimits, RedisAccess, alter_role, create_role, drop_reader, grant_read_only,
    instance_names, redis_acl, share_reader_name,
};
use govbroker_domain::data_shares::{ShareState, share_down_refusal, share_state};
use govbroker_domain::isolation::{data_service_egress, namespace_name};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::shared_server::{
    Backoff, Problem, ROLE_EXISTS, Target, addresses, binding_data, exists, new_password, postgres,
    redis, redis_failed, secret_text, sql_failed, target, unsafe_text,
};
use crate::apply::Applier;
use crate::webhook::{REVOKED_AT_ANNOTATION, REVOKED_BY_ANNOTATION};
use crate::{Context, Error};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "data-share";
/// Field manager of the Secrets, policies, finalizers and statuses it writes.
pub const FIELD_MANAGER: &str = "govbroker-data-shares";
/// The finalizer that holds a share until the consumer's login is removed.
pub const FINALIZER: &str = "govbroker.io/data-share";
/// Label on the Secrets and NetworkPolicies of a share, naming it.
pub const SHARE_LABEL: &str = "govbroker.io/data-share";

/// How often a share waiting for its claim looks again.
const CLAIM_POLL: Duration = Duration::from_secs(10);
/// Longest wait between two looks at a granted share (its expiry is looked at sooner).
const RESYNC: Duration = Duration::from_secs(600);

struct State {
    ctx: Arc<Context>,
    failures: Backoff<DataShare>,
}

/// Runs the share controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let state = Arc::new(State {
        ctx: ctx.clone(),
        failures: Backoff::default(),
    });
    // A share's Secrets live in namespaces while the share is cluster-scoped: they are
    // mapped back by label (kube's `owns` would look for the owner in their namespace).
    let by_label = |secret: Secret| {
        secret
            .labels()
            .get(SHARE_LABEL)
            .map(|name| ObjectRef::<DataShare>::new(name))
    };
    Controller::new(
        Api::<DataShare>::all(ctx.client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .watches(
        Api::<Secret>::all(ctx.client.clone()),
        watcher::Config::default()
            .labels(SHARE_LABEL)
            .any_semantic(),
        by_label,
    )
    .graceful_shutdown_on(async move { shutdown.cancelled().await })
    .run(reconcile, error_policy, state)
    .for_each(|result| async move {
        if let Err(e) = result {
            warn!(error = %e, "data share reconcile failed");
        }
    })
    .await;
    Ok(())
}

fn error_policy(share: Arc<DataShare>, error: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.reconcile_failed(CONTROLLER, error);
    let delay = state.failures.next(&share);
    warn!(share = %share.name_any(), error = %error.chain(), ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

fn binding_name(share: &DataShare) -> String {
    format!("{}-share", share.name_any())
}

fn egress_name(share: &DataShare) -> String {
    format!("{}-share-egress", share.name_any())
}

async fn reconcile(share: Arc<DataShare>, state: Arc<State>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.reconcile_started(CONTROLLER);
    let api = Api::<DataShare>::all(state.ctx.client.clone());
    let has_finalizer = share.finalizers().iter().any(|f| f == FINALIZER);
    if share.metadata.deletion_timestamp.is_some() {
        if has_finalizer {
            if let Err(problem) = remove_access(&share, &state).await? {
                return report(&share, &state, DataSharePhase::Pending, problem).await;
            }
            set_finalizer(&share, &state, false).await?;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        set_finalizer(&share, &state, true).await?;
        return Ok(Action::await_change());
    }

    let now = k8s_openapi::jiff::Timestamp::now();
    let expires = share.spec.expires_at.0;
    let current = share_state(
        share.spec.approved,
        share.spec.revoked,
        expires.as_second(),
        now.as_second(),
    );
    if !current.grants_access() {
        if let Err(problem) = remove_access(&share, &state).await? {
            return report(&share, &state, DataSharePhase::Pending, problem).await;
        }
        let (phase, reason, message) = match current {
            ShareState::Revoked => (
                DataSharePhase::Revoked,
                "Revoked",
                "the share was revoked; the consumer's access is removed".to_owned(),
            ),
            ShareState::Expired => (
                DataSharePhase::Expired,
                "Expired",
                format!("the share expired at {expires}; the consumer's access is removed"),
            ),
            _ => (
                DataSharePhase::Pending,
                "AwaitingApproval",
                format!(
                    "waiting for an owner of agency \"{}\" to approve (spec.approved: true)",
                    share.spec.owner.agency
                ),
            ),
        };
        let status = status_for(&share, phase, false, reason, &message, None, None);
        write_status(&share, &state, &api, status, reason, &message).await?;
        state.failures.reset(&share);
        if current == ShareState::AwaitingApproval {
            return Ok(until(expires, now));
        }
        return Ok(Action::await_change());
    }

    match grant(&share, &state).await? {
        Ok(target) => {
            let message = format!(
                "agency \"{}\" may read claim {}/{} on {}; credentials in Secret \"{}\" in its namespaces",
                share.spec.consumer.agency,
                share.spec.owner.namespace,
                share.spec.owner.claim,
                target.endpoint(),
                binding_name(&share)
            );
            let status = status_for(
                &share,
                DataSharePhase::Granted,
                true,
                "Granted",
                &message,
                Some(target.class.name_any()),
                Some(binding_name(&share)),
            );
            write_status(&share, &state, &api, status, "Granted", &message).await?;
            state.failures.reset(&share);
            Ok(until(expires, now))
        }
        Err(problem) => report(&share, &state, DataSharePhase::Pending, problem).await,
    }
}

/// Look again at the expiry, or after [`RESYNC`], whichever comes first.
fn until(expires: k8s_openapi::jiff::Timestamp, now: k8s_openapi::jiff::Timestamp) -> Action {
    let left = u64::try_from(expires.as_second() - now.as_second()).unwrap_or(0);
    Action::requeue(Duration::from_secs(left + 1).min(RESYNC))
}

async fn set_finalizer(share: &DataShare, state: &State, present: bool) -> Result<(), Error> {
    let mut finalizers: Vec<String> = share
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.to_owned());
    }
    applier(state).count::<DataShare>();
    // The resource version makes this fail rather than overwrite a concurrent change.
    match Api::<DataShare>::all(state.ctx.client.clone())
        .patch(
            &share.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": share.resource_version(),
            }})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn applier(state: &State) -> Applier<'_> {
    Applier {
        ctx: &state.ctx,
        controller: CONTROLLER,
        field_manager: FIELD_MANAGER,
    }
}

/// Gives the consumer its login, Secrets and egress; returns the server it is on, or
/// why it cannot be done now.
async fn grant(share: &DataShare, state: &State) -> Result<Result<Target, Problem>, Error> {
    let client = &state.ctx.client;
    let spec = &share.spec;
    let claim = Api::<DataServiceClaim>::namespaced(client.clone(), &spec.owner.namespace)
        .get_opt(&spec.owner.claim)
        .await?;
    let gone = claim
        .as_ref()
        .is_none_or(|c| c.metadata.deletion_timestamp.is_some());
    if gone {
        // A claim on its way out (even one whose data is retained) is shared no more.
        if let Err(problem) = remove_access(share, state).await? {
            return Ok(Err(problem));
        }
    }
    let Some(claim) = claim else {
        return Ok(Err(Problem::Unavailable {
            reason: "ClaimNotFound",
            message: format!(
                "there is no DataServiceClaim {}/{} to share",
                spec.owner.namespace, spec.owner.claim
            ),
        }));
    };
    let ready = claim.status.as_ref().and_then(|s| s.phase) == Some(ClaimPhase::Ready);
    if !ready || claim.metadata.deletion_timestamp.is_some() {
        return Ok(Err(Problem::Unavailable {
            reason: "ClaimNotReady",
            message: format!(
                "claim {}/{} is not Ready yet; access is granted once it is",
                spec.owner.namespace, spec.owner.claim
            ),
        }));
    }
    let agencies = Api::<Agency>::all(client.clone());
    let (Some(owner), Some(consumer)) = (
        agencies.get_opt(&spec.owner.agency).await?,
        agencies.get_opt(&spec.consumer.agency).await?,
    ) else {
        return Ok(Err(Problem::Failed {
            reason: "AgencyNotFound",
            message: format!(
                "agency \"{}\" or \"{}\" no longer exists",
                spec.owner.agency, spec.consumer.agency
            ),
        }));
    };
    let target = match target(client, &claim.spec.class_name, Some(&claim.spec.plan)).await? {
        Ok(target) => target,
        Err(problem) => return Ok(Err(problem)),
    };
    if let Some(message) = share_down_refusal(
        &spec.owner.agency,
        owner.spec.security_level,
        &spec.consumer.agency,
        consumer.spec.security_level,
        &target.class.name_any(),
        target.class.spec.allow_share_down,
    ) {
        if let Err(problem) = remove_access(share, state).await? {
            return Ok(Err(problem));
        }
        return Ok(Err(Problem::Failed {
            reason: "ShareDownForbidden",
            message,
        }));
    }

    // Remember the server before making anything on it, so that a login is always
    // removed even if granting stops halfway.
    let class_name = target.class.name_any();
    if share.status.as_ref().and_then(|s| s.class_name.as_ref()) != Some(&class_name) {
        let message = format!("granting access on {}", target.endpoint());
        let status = status_for(
            share,
            DataSharePhase::Pending,
            false,
            "Granting",
            &message,
            Some(class_name),
            None,
        );
        let api = Api::<DataShare>::all(client.clone());
        write_status(share, state, &api, status, "Granting", &message).await?;
    }

    let namespaces: Vec<String> = consumer
        .spec
        .environments
        .iter()
        .map(|env| namespace_name(&spec.consumer.agency, &env.name))
        .collect();
    let binding = binding_name(share);
    let mut password = None;
    for namespace in &namespaces {
        let existing = Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&binding)
            .await?;
        password = existing.as_ref().and_then(|s| secret_text(s, "password"));
        if password.is_some() {
            break;
        }
    }
    let password = match password {
        Some(p) if p.chars().all(|c| c.is_ascii_alphanumeric()) => p,
        _ => new_password()?,
    };
    let owner_names = instance_names(&spec.owner.namespace, &spec.owner.claim);
    let reader = share_reader_name(&share.name_any());
    let engine = target.class.spec.engine;
    let outcome = match engine {
        DataServiceEngine::Postgres => {
            grant_postgres(
                &target,
                &owner_names.database,
                &owner_names.role,
                &reader,
                &password,
            )
            .await
        }
        DataServiceEngine::Redis => {
            grant_redis(&target, &reader, &password, &owner_names.key_prefix).await
        }
    };
    if let Err(problem) = outcome {
        return Ok(Err(problem));
    }

    let addresses = match addresses(&target).await {
        Ok(addresses) => addresses,
        Err(problem) => return Ok(Err(problem)),
    };
    let data = binding_data(
        engine,
        target.host(),
        target.port(),
        &reader,
        &password,
        match engine {
            DataServiceEngine::Postgres => &owner_names.database,
            DataServiceEngine::Redis => &owner_names.key_prefix,
        },
        target.tls.as_ref(),
    );
    let owner_ref = share.controller_owner_ref(&());
    for namespace in &namespaces {
        let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
        let existing = secrets.get_opt(&binding).await?;
        if existing.as_ref().and_then(|s| s.data.as_ref()) != Some(&data) {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(binding.clone()),
                    namespace: Some(namespace.clone()),
                    labels: Some([(SHARE_LABEL.to_owned(), share.name_any())].into()),
                    owner_references: owner_ref.clone().map(|o| vec![o]),
                    ..Default::default()
                },
                type_: Some("Opaque".to_owned()),
                data: Some(data.clone()),
                ..Default::default()
            };
            applier(state).apply_now(&secret).await?;
            info!(share = %share.name_any(), %namespace, secret = %binding, "share binding Secret written");
        }
        let policies = Api::<NetworkPolicy>::namespaced(client.clone(), namespace);
        let mut policy = data_service_egress(
            &egress_name(share),
            namespace,
            &spec.consumer.agency,
            &addresses,
            target.port(),
        );
        policy
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(SHARE_LABEL.to_owned(), share.name_any());
        policy.metadata.owner_references = owner_ref.clone().map(|o| vec![o]);
        let existing = policies.get_opt(&egress_name(share)).await?;
        if existing.as_ref().and_then(|p| p.spec.as_ref()) != policy.spec.as_ref() {
            applier(state).apply_now(&policy).await?;
        }
    }
    Ok(Ok(target))
}

async fn grant_postgres(
    target: &Target,
    database: &str,
    owner_role: &str,
    reader: &str,
    password: &str,
) -> Result<(), Problem> {
    let pg = postgres(target, "postgres").await?;
    let limits = PostgresLimits {
        max_connections: target.max_connections,
    };
    let role_exists = exists(&pg, ROLE_EXISTS, reader)
        .await
        .map_err(|e| sql_failed("looking up the reader role", &e))?;
    let statement = if role_exists {
        alter_role(reader, password, limits)
    } else {
        create_role(reader, password, limits)
    }
    .map_err(|e| unsafe_text(&e))?;
    pg.batch_execute(&statement)
        .await
        .map_err(|e| sql_failed(&format!("setting up reader role \"{reader}\""), &e))?;
    // Schema and table grants are made inside the owner's database.
    let db = postgres(target, database).await?;
    for statement in grant_read_only(database, owner_role, reader).map_err(|e| unsafe_text(&e))? {
        db.batch_execute(&statement)
            .await
            .map_err(|e| sql_failed("granting read access", &e))?;
    }
    Ok(())
}

async fn grant_redis(
    target: &Target,
    reader: &str,
    password: &str,
    prefix: &str,
) -> Result<(), Problem> {
    let mut con = redis(target).await?;
    let rules =
        redis_acl(reader, password, prefix, RedisAccess::ReadOnly).map_err(|e| unsafe_text(&e))?;
    redis::cmd("ACL")
        .arg(&rules)
        .query_async::<()>(&mut con)
        .await
        .map_err(|e| redis_failed(&format!("setting up ACL user \"{reader}\""), &e))
}

/// Takes the consumer's access away: the login on the server (if one was made), the
/// Secrets and the egress policies. Idempotent; tolerates everything being gone.
async fn remove_access(share: &DataShare, state: &State) -> Result<Result<(), Problem>, Error> {
    let client = &state.ctx.client;
    let reader = share_reader_name(&share.name_any());
    // The class is recorded before any login, Secret or policy is made, and cleared only
    // once they are gone: without it there is nothing to remove (and no cluster-wide
    // lists on every pass of a pending share).
    let Some(class) = share.status.as_ref().and_then(|s| s.class_name.clone()) else {
        return Ok(Ok(()));
    };
    match target(client, &class, None).await? {
        Ok(target) => {
            let owner = instance_names(&share.spec.owner.namespace, &share.spec.owner.claim);
            let outcome = match target.class.spec.engine {
                DataServiceEngine::Postgres => {
                    revoke_postgres(&target, &owner.database, &reader).await
                }
                DataServiceEngine::Redis => revoke_redis(&target, &reader).await,
            };
            if let Err(problem) = outcome {
                return Ok(Err(problem));
            }
        }
        // A class that is gone (or points nowhere) leaves nothing the broker can reach.
        Err(Problem::Failed { .. }) => {}
        Err(problem) => return Ok(Err(problem)),
    }
    let selector = ListParams::default().labels(&format!("{SHARE_LABEL}={}", share.name_any()));
    let secrets = Api::<Secret>::all(client.clone())
        .list_metadata(&selector)
        .await?;
    for secret in secrets {
        let namespace = secret.namespace().unwrap_or_default();
        applier(state)
            .delete(
                &Api::<Secret>::namespaced(client.clone(), &namespace),
                &secret.name_any(),
            )
            .await?;
    }
    let policies = Api::<NetworkPolicy>::all(client.clone())
        .list_metadata(&selector)
        .await?;
    for policy in policies {
        let namespace = policy.namespace().unwrap_or_default();
        applier(state)
            .delete(
                &Api::<NetworkPolicy>::namespaced(client.clone(), &namespace),
                &policy.name_any(),
            )
            .await?;
    }
    Ok(Ok(()))
}

async fn revoke_postgres(target: &Target, database: &str, reader: &str) -> Result<(), Problem> {
    let pg = postgres(target, "postgres").await?;
    let role_exists = exists(&pg, ROLE_EXISTS, reader)
        .await
        .map_err(|e| sql_failed("looking up the reader role", &e))?;
    if !role_exists {
        return Ok(());
    }
    pg.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
        &[&reader],
    )
    .await
    .map_err(|e| sql_failed("ending the reader's sessions", &e))?;
    let database_exists = exists(&pg, super::shared_server::DATABASE_EXISTS, database)
        .await
        .map_err(|e| sql_failed("looking up the database", &e))?;
    // DROP OWNED takes back the grants inside the database it runs in (and on shared
    // objects); without the owner's database only the latter remain.
    let session = if database_exists {
        postgres(target, database).await?
    } else {
        pg
    };
    for statement in drop_reader(reader).map_err(|e| unsafe_text(&e))? {
        session
            .batch_execute(&statement)
            .await
            .map_err(|e| sql_failed(&format!("dropping reader role \"{reader}\""), &e))?;
    }
    Ok(())
}

async fn revoke_redis(target: &Target, reader: &str) -> Result<(), Problem> {
    let mut con = redis(target).await?;
    redis::cmd("ACL")
        .arg("DELUSER")
        .arg(reader)
        .query_async::<i64>(&mut con)
        .await
        .map_err(|e| redis_failed("deleting the reader's ACL user", &e))?;
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(reader)
        .query_async::<i64>(&mut con)
        .await
        .or_else(|e| {
            // No connection of that user: nothing to end.
            if e.code() == Some("ERR") {
                Ok(0)
            } else {
                Err(e)
            }
        })
        .map_err(|e| redis_failed("disconnecting the reader", &e))?;
    Ok(())
}

/// The status of `share` in `phase`, with who granted or revoked it and when.
fn status_for(
    share: &DataShare,
    phase: DataSharePhase,
    granted: bool,
    reason: &str,
    message: &str,
    class_name: Option<String>,
    binding_secret: Option<String>,
) -> DataShareStatus {
    let previous = share.status.clone().unwrap_or_default();
    let approval = share.spec.approval.clone().unwrap_or_default();
    let annotation = |key: &str| share.annotations().get(key).cloned();
    let status = if granted { "True" } else { "False" };
    let since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == "Granted" && c.status == status)
        .map(|c| c.last_transition_time.clone());
    DataShareStatus {
        observed_generation: share.metadata.generation,
        phase: Some(phase),
        granted_by: approval.approved_by.filter(|_| share.spec.approved),
        granted_at: approval.approved_at.filter(|_| share.spec.approved),
        revoked_by: annotation(REVOKED_BY_ANNOTATION).filter(|_| share.spec.revoked),
        revoked_at: annotation(REVOKED_AT_ANNOTATION)
            .filter(|_| share.spec.revoked)
            .and_then(|at| at.parse().ok())
            .map(Time),
        class_name,
        binding_secret,
        message: Some(message.to_owned()),
        conditions: vec![Condition {
            type_: "Granted".to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: since
                .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now())),
            observed_generation: share.metadata.generation,
        }],
    }
}

/// Writes the status when it changed, with an event for the new reason.
async fn write_status(
    share: &DataShare,
    state: &State,
    api: &Api<DataShare>,
    status: DataShareStatus,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let previous = share.status.as_ref();
    if previous == Some(&status) {
        return Ok(());
    }
    let reason_changed = previous
        .and_then(|s| s.conditions.first())
        .is_none_or(|c| c.reason != reason);
    applier(state).count::<DataShare>();
    match api
        .patch_status(
            &share.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "govbroker.io/v1alpha1",
                "kind": "DataShare",
                "status": status,
            })),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if reason_changed {
        let type_ = if matches!(
            reason,
            "Granted" | "AwaitingApproval" | "Revoked" | "Expired"
        ) {
            EventType::Normal
        } else {
            EventType::Warning
        };
        state
            .ctx
            .events
            .publish(share, type_, reason, message.to_owned(), "Share")
            .await;
    }
    Ok(())
}

/// Records why the share cannot take effect now and retries (sooner for passing
/// trouble).
async fn report(
    share: &DataShare,
    state: &State,
    phase: DataSharePhase,
    problem: Problem,
) -> Result<Action, Error> {
    let (reason, message, delay) = match problem {
        Problem::Failed { reason, message } => (reason, message, Duration::from_secs(300)),
        Problem::Unavailable { reason, message } => {
            let delay = if matches!(reason, "ClaimNotReady" | "ClaimNotFound") {
                CLAIM_POLL
            } else {
                state.failures.next(share)
            };
            (reason, message, delay)
        }
    };
    warn!(share = %share.name_any(), reason, %message, ?delay, "share not in effect");
    let previous = share.status.clone().unwrap_or_default();
    let status = status_for(
        share,
        phase,
        false,
        reason,
        &message,
        previous.class_name,
        previous.binding_secret,
    );
    let api = Api::<DataShare>::all(state.ctx.client.clone());
    write_status(share, state, &api, status, reason, &message).await?;
    Ok(Action::requeue(delay))
}
