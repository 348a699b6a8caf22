//! The quota-request controller: carries out decisions.
//!
//! The webhook has already checked who decided and that an approval fits; this
//! controller applies an approved quota to the Agency (through the same webhook, so the
//! arithmetic is checked again against the tree as it is now), records the outcome in
//! the request's status and emits Events on the request and the agency.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use govbroker_crds::{
    Agency, DecisionOutcome, QuotaRequest, QuotaRequestPhase, QuotaRequestStatus, QuotaResource,
};
use govbroker_domain::quantity::Amounts;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::apply::Applier;
use crate::webhook::merged_quota;
use crate::{Context, Error};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "quota-request";
/// Field manager of the agency quota changes and request statuses it writes.
pub const FIELD_MANAGER: &str = "govbroker-quota-requests";

struct State {
    ctx: Arc<Context>,
}

/// Runs the quota-request controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let state = Arc::new(State { ctx: ctx.clone() });
    Controller::new(
        Api::<QuotaRequest>::all(ctx.client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .graceful_shutdown_on(async move { shutdown.cancelled().await })
    .run(reconcile, error_policy, state)
    .for_each(|result| async move {
        if let Err(e) = result {
            warn!(error = %e, "quota request reconcile failed");
        }
    })
    .await;
    Ok(())
}

fn error_policy(qr: Arc<QuotaRequest>, error: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.reconcile_failed(CONTROLLER, error);
    warn!(request = %qr.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

fn describe(quota: &govbroker_crds::ResourceAmounts) -> String {
    let amounts = Amounts::from_spec(quota, "quota").unwrap_or_default();
    let parts: Vec<String> = QuotaResource::ALL
        .iter()
        .filter_map(|r| {
            amounts
                .get_opt(*r)
                .map(|a| format!("{} {}", r.field(), a.format(*r)))
        })
        .collect();
    parts.join(", ")
}

async fn reconcile(qr: Arc<QuotaRequest>, state: Arc<State>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.reconcile_started(CONTROLLER);
    let applier = Applier {
        ctx: &state.ctx,
        controller: CONTROLLER,
        field_manager: FIELD_MANAGER,
    };
    let current = qr.status.clone().unwrap_or_default();
    let settled = matches!(
        current.phase,
        Some(QuotaRequestPhase::Approved | QuotaRequestPhase::Rejected | QuotaRequestPhase::Failed)
    );
    if settled {
        return Ok(Action::await_change());
    }
    let agency_name = &qr.spec.agency;
    let mut status = QuotaRequestStatus {
        observed_generation: qr.metadata.generation,
        phase: Some(QuotaRequestPhase::Pending),
        message: Some(format!(
            "waiting for an owner of the parent of \"{agency_name}\" to decide"
        )),
        ..Default::default()
    };
    let mut event = None;
    if let Some(decision) = &qr.spec.decision {
        status.decided_by = decision.decided_by.clone();
        status.decided_at = decision.decided_at.clone();
        let who = decision
            .decided_by
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        match decision.outcome {
            DecisionOutcome::Rejected => {
                status.phase = Some(QuotaRequestPhase::Rejected);
                status.message = Some(format!("rejected by {who}: {}", decision.reason));
                event = Some((EventType::Normal, "QuotaRejected", status.message.clone()));
            }
            DecisionOutcome::Approved => {
                // Read live: the decision must be applied to the agency as it is now.
                let agency = Api::<Agency>::all(state.ctx.client.clone())
                    .get_opt(agency_name)
                    .await?;
                let outcome = match agency {
                    None => Err(format!("agency \"{agency_name}\" no longer exists")),
                    Some(agency) => apply_quota(&applier, &agency, &qr).await?,
                };
                match outcome {
                    Ok(text) => {
                        status.phase = Some(QuotaRequestPhase::Approved);
                        status.message = Some(format!("approved by {who}; {text}"));
                        event = Some((EventType::Normal, "QuotaApproved", status.message.clone()));
                    }
                    Err(why) => {
                        status.phase = Some(QuotaRequestPhase::Failed);
                        status.message = Some(format!("approved by {who} but not applied: {why}"));
                        event = Some((
                            EventType::Warning,
                            "QuotaNotApplied",
                            status.message.clone(),
                        ));
                    }
                }
            }
        }
    }
    if qr.status.as_ref() != Some(&status) {
        applier.count::<QuotaRequest>();
        Api::<QuotaRequest>::all(state.ctx.client.clone())
            .patch_status(
                &qr.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(json!({
                    "apiVersion": "govbroker.io/v1alpha1",
                    "kind": "QuotaRequest",
                    "status": status,
                })),
            )
            .await?;
    }
    if let Some((type_, reason, note)) = event {
        // Events are best effort: a lost one must not undo a decision already applied.
        let events = &state.ctx.events;
        events
            .publish(qr.as_ref(), type_, reason, note.clone(), "Decide")
            .await;
        if let Ok(Some(agency)) = Api::<Agency>::all(state.ctx.client.clone())
            .get_opt(agency_name)
            .await
        {
            events.publish(&agency, type_, reason, note, "Decide").await;
        }
    }
    Ok(Action::await_change())
}

/// Sets the agency's quota to what was approved. The agency webhook checks the tree's
/// arithmetic again; its refusal is the inner error. Transient failures are retried.
async fn apply_quota(
    applier: &Applier<'_>,
    agency: &Agency,
    qr: &QuotaRequest,
) -> Result<Result<String, String>, Error> {
    let quota = merged_quota(agency, qr);
    applier.count::<Agency>();
    let result = Api::<Agency>::all(applier.ctx.client.clone())
        .patch(
            &agency.name_any(),
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            },
            &Patch::Merge(json!({ "spec": { "quota": quota } })),
        )
        .await;
    match result {
        Ok(_) => Ok(Ok(format!(
            "the quota of \"{}\" is now {}",
            agency.name_any(),
            describe(&quota)
        ))),
        Err(kube::Error::Api(s))
            if (400..500).contains(&s.code) && s.code != 409 && s.code != 429 =>
        {
            Ok(Err(s.message))
        }
        Err(e) => Err(e.into()),
    }
}
