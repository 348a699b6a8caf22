//! Admission of Agency changes: the tree's rules (see `govbroker_domain::tree`).
//!
//! The cache can lag a write made a moment ago (a parent and its children applied from
//! one file), so what the rules depend on is read live when the cache lacks it: the
//! parent, and the parent's and the agency's children through the `spec.parent` field
//! selector.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use govbroker_crds::{Agency, AgencySpec};
use govbroker_domain::tree::{self, AgencyChange};
use kube::api::ListParams;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt as _};

use super::{Refusal, WebhookState, refuse};

/// Admits or refuses a create, update or delete of an Agency.
pub fn validate(
    request: AdmissionRequest<Agency>,
    state: WebhookState,
) -> BoxFuture<'static, AdmissionResponse> {
    Box::pin(async move {
        let response = AdmissionResponse::from(&request);
        match request.operation {
            Operation::Create | Operation::Update => {
                let Some(agency) = &request.object else {
                    return refuse(response, Refusal::Invalid, "the request carries no Agency");
                };
                if let Some(old) = &request.old_object {
                    // Metadata-only updates (labels, finalizers, owner references) do not
                    // touch the tree.
                    if old.spec == agency.spec {
                        return response;
                    }
                    if let Err(message) = check_editor(&state, &request, old, agency) {
                        return refuse(response, Refusal::Forbidden, message);
                    }
                }
                match check_spec(&state, &request.name, &agency.spec).await {
                    Ok(()) => {
                        if !request.dry_run {
                            state.recent.remember(&request.name, Some(agency.clone()));
                        }
                        response
                    }
                    Err((why, message)) => refuse(response, why, message),
                }
            }
            Operation::Delete => {
                let Some(agency) = &request.old_object else {
                    return response;
                };
                let children = match children_of(&state, &agency.name_any()).await {
                    Ok(c) => c,
                    Err(e) => return refuse(response, Refusal::Unavailable, e),
                };
                let child_refs: Vec<&Agency> = children.iter().collect();
                let parent_being_deleted = match &agency.spec.parent {
                    Some(p) => lookup(&state, p)
                        .await
                        .is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
                    None => false,
                };
                match tree::deletion_allowed(agency, &child_refs, parent_being_deleted) {
                    Ok(()) => {
                        if !request.dry_run {
                            state.recent.remember(&request.name, None);
                        }
                        response
                    }
                    Err(v) => refuse(response, Refusal::Conflict, v),
                }
            }
            Operation::Connect => response,
        }
    })
}

/// RBAC lets the owners of an agency and of its ancestors patch it; only platform admins
/// (and the operator itself, applying approved quota requests) may change anything, the
/// agency's own owners only the fields in [`tree::OWNER_EDITABLE_FIELDS`].
fn check_editor(
    state: &WebhookState,
    request: &AdmissionRequest<Agency>,
    old: &Agency,
    new: &Agency,
) -> Result<(), String> {
    let user = request.user_info.username.as_deref().unwrap_or_default();
    let groups = request.user_info.groups.clone().unwrap_or_default();
    if super::is_platform_admin(&groups, &state.admin_groups) || user == state.own_user.as_str() {
        return Ok(());
    }
    if !super::is_owner(old, user, &groups) {
        return Err(format!(
            "{user} may not change agency {}: only its owners (and platform admins) may",
            old.name_any()
        ));
    }
    tree::owner_edit_allowed(&old.spec, &new.spec).map_err(|v| v.to_string())
}

/// Sets the agency's owner reference to its parent at admission, so the subtree is tied
/// together from the first moment (no window in which a cascade deletion would miss a
/// child the controller has not linked yet). Other owner references are kept.
pub fn link_parent(
    request: AdmissionRequest<Agency>,
    state: WebhookState,
) -> BoxFuture<'static, AdmissionResponse> {
    Box::pin(async move {
        let response = AdmissionResponse::from(&request);
        let Some(agency) = &request.object else {
            return response;
        };
        let parent = match &agency.spec.parent {
            Some(p) => lookup(&state, p).await,
            None => None,
        };
        let mut references: Vec<_> = agency
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| !(r.kind == "Agency" && r.api_version.starts_with(govbroker_crds::GROUP)))
            .cloned()
            .collect();
        references.extend(parent.as_deref().and_then(tree::parent_reference));
        if agency.metadata.owner_references.clone().unwrap_or_default() == references {
            return response;
        }
        let patch = serde_json::json!([{"op": "add", "path": "/metadata/ownerReferences", "value": references}]);
        super::patched(response, patch, "linking the agency to its parent")
    })
}

/// An agency from the cache, or read live when the cache does not have it yet.
pub async fn lookup(state: &WebhookState, name: &str) -> Option<Arc<Agency>> {
    if let Some(a) = state.agencies.get(&ObjectRef::new(name)) {
        return Some(a);
    }
    Api::<Agency>::all(state.client.clone())
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .map(Arc::new)
}

/// The agencies whose parent is `name`: from the cache, corrected by what this webhook
/// admitted moments ago that the cache may not show yet ([`Recent`]). Read live only
/// while the cache is still empty (start-up).
pub async fn children_of(state: &WebhookState, name: &str) -> Result<Vec<Agency>, String> {
    let cached = state.agencies.state();
    if cached.is_empty() {
        return Api::<Agency>::all(state.client.clone())
            .list(&ListParams::default().fields(&format!("spec.parent={name}")))
            .await
            .map(|l| l.items)
            .map_err(|e| format!("cannot list the children of \"{name}\" to check the tree: {e}"));
    }
    let cached: Vec<Arc<Agency>> = cached
        .into_iter()
        .filter(|a| a.spec.parent.as_deref() == Some(name))
        .collect();
    Ok(state.recent.children_of(name, cached))
}

/// Agencies this webhook admitted (or saw deleted) in the last seconds. The cache lags
/// writes by a moment; without this, siblings created in quick succession (one
/// `kubectl apply` of a tree) would each see the parent's room without the others.
#[derive(Clone, Default)]
pub struct Recent(Arc<Mutex<Remembered>>);

/// Agency name to the admitted object (`None`: deleted) and when.
type Remembered = HashMap<String, (Option<Agency>, Instant)>;

/// How long an admitted change is remembered: far longer than the cache's lag.
const RECENT_TTL: Duration = Duration::from_secs(30);

impl Recent {
    /// Remembers an admitted create or update (`Some`) or delete (`None`) of `name`.
    pub fn remember(&self, name: &str, mut agency: Option<Agency>) {
        // Only the spec and the name are read back; the managed fields are most of the
        // object and some 750 agencies are remembered at once while a national tree is
        // created.
        if let Some(a) = &mut agency {
            a.metadata.managed_fields = None;
        }
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, (_, at)| now.duration_since(*at) < RECENT_TTL);
        map.insert(name.to_owned(), (agency, now));
    }

    /// The children of `parent`: the cached ones, replaced by what was admitted for
    /// them since (or dropped if deleted since), plus the ones admitted but not cached.
    pub fn children_of(&self, parent: &str, cached: Vec<Arc<Agency>>) -> Vec<Agency> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let fresh = |at: &Instant| now.duration_since(*at) < RECENT_TTL;
        let mut children: Vec<Agency> = cached
            .iter()
            .filter(|a| !map.get(&a.name_any()).is_some_and(|(_, at)| fresh(at)))
            .map(|a| a.as_ref().clone())
            .collect();
        children.extend(
            map.values()
                .filter(|(a, at)| {
                    fresh(at)
                        && a.as_ref()
                            .is_some_and(|a| a.spec.parent.as_deref() == Some(parent))
                })
                .filter_map(|(a, _)| a.clone()),
        );
        children
    }
}

/// Checks a new spec for agency `name` against the tree; the error lists every
/// violation, one per line.
/// Checks a proposed spec against the tree; a refusal says why (a lack of room in the
/// parent is a [`Refusal::Conflict`], any other rule [`Refusal::Invalid`]).
pub async fn check_spec(
    state: &WebhookState,
    name: &str,
    spec: &AgencySpec,
) -> Result<(), (Refusal, String)> {
    let parent = match &spec.parent {
        Some(p) => lookup(state, p).await,
        None => None,
    };
    let siblings: Vec<Agency> = match &spec.parent {
        Some(p) => children_of(state, p)
            .await
            .map_err(|e| (Refusal::Unavailable, e))?
            .into_iter()
            .filter(|c| c.name_any() != name)
            .collect(),
        None => Vec::new(),
    };
    let children = children_of(state, name)
        .await
        .map_err(|e| (Refusal::Unavailable, e))?;
    let mut ancestors_of_parent = Vec::new();
    let mut seen = BTreeSet::new();
    let mut next = spec.parent.clone();
    while let Some(current) = next {
        if !seen.insert(current.clone()) {
            break;
        }
        ancestors_of_parent.push(current.clone());
        next = lookup(state, &current)
            .await
            .and_then(|a| a.spec.parent.clone());
    }
    let change = AgencyChange {
        name,
        spec,
        parent: parent.as_deref(),
        siblings: siblings.iter().collect(),
        children: children.iter().collect(),
        ancestors_of_parent,
    };
    tree::validate_agency(&change).map_err(|violations| {
        let why = if violations.iter().all(|v| v.no_room) {
            Refusal::Conflict
        } else {
            Refusal::Invalid
        };
        let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
        (
            why,
            format!("Agency {name} is refused:\n- {}", lines.join("\n- ")),
        )
    })
}
