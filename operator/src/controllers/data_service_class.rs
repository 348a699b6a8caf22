//! The DataServiceClass controller: tells platform operators, in the class's status,
//! whether the broker can reach the shared server with the admin credentials, and how
//! many plans the class offers (`kubectl get dsc` shows both).
//!
//! It only reads the server (an admin login); it never changes a class or the server.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use govbroker_crds::{DataServiceClass, DataServiceClassStatus, DataServiceEngine};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt as _};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::shared_server::{Problem, postgres, redis, target};
use crate::apply::Applier;
use crate::{Context, Error};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "data-service-class";
/// Field manager of the class statuses it writes.
pub const FIELD_MANAGER: &str = "govbroker-data-service-classes";

/// How often a reachable server is checked again.
const RECHECK: Duration = Duration::from_secs(300);
/// How soon an unreachable server is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// Runs the class controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    Controller::new(
        Api::<DataServiceClass>::all(ctx.client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .graceful_shutdown_on(async move { shutdown.cancelled().await })
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(e) = result {
            warn!(error = %e, "data service class reconcile failed");
        }
    })
    .await;
    Ok(())
}

fn error_policy(_class: Arc<DataServiceClass>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(CONTROLLER, error);
    Action::requeue(RETRY)
}

async fn reconcile(class: Arc<DataServiceClass>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let name = class.name_any();
    let reached = match target(&ctx.client, &name, None).await? {
        Ok(target) => match class.spec.engine {
            DataServiceEngine::Postgres => postgres(&target, "postgres").await.map(|_| ()),
            DataServiceEngine::Redis => redis(&target).await.map(|_| ()),
        },
        Err(problem) => Err(problem),
    };
    let (ready, reason, message) = match reached {
        Ok(()) => (
            true,
            "Connected",
            format!(
                "the broker logged in to {}:{} as administrator",
                class.spec.server.host, class.spec.server.port
            ),
        ),
        Err(Problem::Failed { reason, message } | Problem::Unavailable { reason, message }) => {
            (false, reason, message)
        }
    };
    let status = class_status(&class, ready, reason, &message);
    if class.status.as_ref() != Some(&status) {
        Applier {
            ctx: &ctx,
            controller: CONTROLLER,
            field_manager: FIELD_MANAGER,
        }
        .count::<DataServiceClass>();
        Api::<DataServiceClass>::all(ctx.client.clone())
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(json!({
                    "apiVersion": "govbroker.io/v1alpha1",
                    "kind": "DataServiceClass",
                    "status": status,
                })),
            )
            .await?;
    }
    Ok(Action::requeue(if ready { RECHECK } else { RETRY }))
}

/// The status of a class whose server was (or was not) reached. The transition time is
/// kept while the condition holds, so an unchanged answer writes nothing.
fn class_status(
    class: &DataServiceClass,
    ready: bool,
    reason: &str,
    message: &str,
) -> DataServiceClassStatus {
    let status = if ready { "True" } else { "False" };
    let since = class
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone());
    DataServiceClassStatus {
        observed_generation: class.metadata.generation,
        ready: Some(ready),
        plans: i32::try_from(class.spec.plans.len()).ok(),
        conditions: vec![Condition {
            type_: "Ready".to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: since
                .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now())),
            observed_generation: class.metadata.generation,
        }],
    }
}
