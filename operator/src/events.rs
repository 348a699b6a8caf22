//! Kubernetes Events: the one recorder every controller publishes through (it lives in
//! the [`Context`](crate::Context)), so each controller names only what happened.

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tracing::warn;

/// The reporting controller every Event of the operator names.
const REPORTER: &str = "govbroker";

/// Publishes Events on objects, best effort: a failure is logged, never returned, since
/// a lost Event must not undo or retry work already done.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// The operator's recorder over `client`.
    pub fn new(client: Client) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: REPORTER.to_owned(),
                    instance: None,
                },
            ),
        }
    }

    /// Records `reason` (with `note`, a `String` or none, for `action`) on `object`
    /// when the returned future runs: await it, or spawn it so that a reconcile does not
    /// wait on the API server for an Event.
    pub fn publish<K>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: impl Into<Option<String>>,
        action: &str,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        K: Resource<DynamicType = ()>,
    {
        let recorder = self.recorder.clone();
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: note.into(),
            action: action.to_owned(),
            secondary: None,
        };
        let reference = object.object_ref(&());
        async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                warn!(
                    error = %e,
                    kind = reference.kind.as_deref().unwrap_or_default(),
                    name = reference.name.as_deref().unwrap_or_default(),
                    reason = %event.reason,
                    "could not record an event"
                );
            }
        }
    }
}
