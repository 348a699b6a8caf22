//! Agencies: read from the watch-fed cache after a SubjectAccessReview; changed through
//! an impersonating client so RBAC and the admission webhook judge the caller.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _, TryStreamExt as _};
use govbroker_crds::Agency;
use govbroker_domain::tree::CASCADE_DELETE_ANNOTATION;
use kube::api::{DeleteParams, Patch, WatchEvent, WatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api as KubeApi, ResourceExt as _};
use serde_json::{Map, Value, json};

use super::{Api, Page, create_params, patch_params};
use crate::auth::{Caller, Permission};
use crate::convert;
use crate::error::ApiError;
use crate::proto;
use crate::validate;

fn what(name: &str) -> String {
    format!("agency \"{name}\"")
}

impl Api {
    fn cached_agency(&self, name: &str) -> Result<Arc<Agency>, ApiError> {
        self.agencies
            .get(&ObjectRef::new(name))
            .ok_or_else(|| ApiError::NotFound(format!("{} does not exist", what(name))))
    }

    /// Whether the caller may read this agency (cached decision).
    async fn may_read(&self, caller: &Caller, name: &str) -> Result<bool, ApiError> {
        self.identity
            .can(caller, &Permission::on("get", "agencies", name))
            .await
    }

    /// GetAgency.
    pub async fn get_agency(
        &self,
        caller: Caller,
        request: proto::GetAgencyRequest,
    ) -> Result<proto::Agency, ApiError> {
        validate::agency_name("name", &request.name)?;
        // Permission first, so a caller cannot learn which names exist.
        self.identity
            .require(&caller, &Permission::on("get", "agencies", &request.name))
            .await?;
        let agency = self.cached_agency(&request.name)?;
        Ok(convert::agency_to_proto(&agency))
    }

    /// ListAgencies.
    pub async fn list_agencies(
        &self,
        caller: Caller,
        request: proto::ListAgenciesRequest,
    ) -> Result<proto::ListAgenciesResponse, ApiError> {
        let page_size = validate::page_size("page_size", request.page_size)?;
        let after = validate::cursor("page_token", &request.page_token)?;
        if !request.parent.is_empty() {
            validate::agency_name("parent", &request.parent)?;
        }
        let level = (!request.level.is_empty())
            .then(|| convert::level("level", &request.level))
            .transpose()?;
        if request.security_level != 0 {
            convert::security_level("security_level", request.security_level)?;
        }
        validate::text(
            "name_prefix",
            &request.name_prefix,
            validate::MAX_AGENCY_NAME,
            false,
        )?;

        let see_all = self
            .identity
            .can(&caller, &Permission::all("list", "agencies"))
            .await?;
        let mut candidates: Vec<Arc<Agency>> = self
            .agencies
            .state()
            .into_iter()
            .filter(|a| {
                let spec = &a.spec;
                let name = a.name_any();
                (request.parent.is_empty() || spec.parent.as_deref() == Some(&request.parent))
                    && level.is_none_or(|l| spec.level == l)
                    && (request.security_level == 0
                        || u32::from(spec.security_level) == request.security_level)
                    && name.starts_with(&request.name_prefix)
                    && after.as_ref().is_none_or(|after| &name > after)
            })
            .collect();
        candidates.sort_by_key(|a| a.name_any());
        let mut page = Page::new(page_size);
        for agency in candidates {
            if !page.has_room() {
                break;
            }
            let name = agency.name_any();
            if see_all || self.may_read(&caller, &name).await? {
                page.push(name, convert::agency_to_proto(&agency));
            }
        }
        let (agencies, next_page_token) = page.finish();
        Ok(proto::ListAgenciesResponse {
            agencies,
            next_page_token,
        })
    }

    /// GetAgencyTree.
    pub async fn get_agency_tree(
        &self,
        caller: Caller,
        request: proto::GetAgencyTreeRequest,
    ) -> Result<proto::AgencyTree, ApiError> {
        validate::agency_name("name", &request.name)?;
        self.identity
            .require(&caller, &Permission::on("get", "agencies", &request.name))
            .await?;
        let root = self.cached_agency(&request.name)?;
        let mut children: BTreeMap<String, Vec<Arc<Agency>>> = BTreeMap::new();
        for agency in self.agencies.state() {
            if let Some(parent) = &agency.spec.parent {
                children
                    .entry(parent.clone())
                    .or_default()
                    .push(agency.clone());
            }
        }
        for list in children.values_mut() {
            list.sort_by_key(|a| a.name_any());
        }
        let mut nodes = Vec::new();
        let mut stack = vec![(root, 0u32)];
        while let Some((agency, depth)) = stack.pop() {
            let name = agency.name_any();
            // A node the caller may not read is left out with its subtree.
            if depth > 0 && !self.may_read(&caller, &name).await? {
                continue;
            }
            if request.max_depth == 0 || depth < request.max_depth {
                for child in children.get(&name).into_iter().flatten().rev() {
                    stack.push((child.clone(), depth + 1));
                }
            }
            nodes.push(proto::AgencyTreeNode {
                agency: Some(convert::agency_to_proto(&agency)),
                depth,
            });
        }
        Ok(proto::AgencyTree { nodes })
    }

    /// CreateAgency.
    pub async fn create_agency(
        &self,
        caller: Caller,
        request: proto::CreateAgencyRequest,
    ) -> Result<proto::Agency, ApiError> {
        let Some(message) = &request.agency else {
            return Err(ApiError::invalid("agency", "is required"));
        };
        let agency = convert::agency_from_proto(message)?;
        let api = KubeApi::<Agency>::all(self.identity.client_for(&caller)?);
        let params = create_params();
        let created = api
            .create(&params, &agency)
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&message.name)))?;
        Ok(convert::agency_to_proto(&created))
    }

    /// UpdateAgency.
    pub async fn update_agency(
        &self,
        caller: Caller,
        request: proto::UpdateAgencyRequest,
    ) -> Result<proto::Agency, ApiError> {
        validate::agency_name("name", &request.name)?;
        let paths = request
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                "names no field: list the fields to change, e.g. display_name,owners",
            ));
        }
        let empty = proto::Agency::default();
        let new = request.agency.as_ref().unwrap_or(&empty);
        let mut spec = Map::new();
        for path in &paths {
            match path.as_str() {
                "display_name" | "displayName" => {
                    spec.insert(
                        "displayName".into(),
                        json!(convert::display_name(
                            "agency.display_name",
                            &new.display_name
                        )?),
                    );
                }
                "owners" => {
                    let owners = convert::principals("agency.owners", new.owners.as_ref())?;
                    spec.insert("owners".into(), to_json(&owners)?);
                }
                "viewers" => {
                    let viewers = convert::principals("agency.viewers", new.viewers.as_ref())?;
                    spec.insert("viewers".into(), to_json(&viewers)?);
                }
                "environments" => {
                    let envs = convert::environments("agency.environments", &new.environments)?;
                    spec.insert("environments".into(), to_json(&envs)?);
                }
                "quota" => {
                    validate::amounts("agency.quota", new.quota.as_ref(), false)?;
                    // Replace the whole quota: a merge patch would keep resources left out.
                    let quota = convert::amounts_from_proto(new.quota.as_ref());
                    let mut value = to_json(&quota)?;
                    for resource in govbroker_crds::QuotaResource::ALL {
                        if let Some(map) = value.as_object_mut() {
                            map.entry(resource.field()).or_insert(Value::Null);
                        }
                    }
                    spec.insert("quota".into(), value);
                }
                "security_level" | "securityLevel" => {
                    let level =
                        convert::security_level("agency.security_level", new.security_level)?;
                    spec.insert("securityLevel".into(), json!(level));
                }
                other => {
                    return Err(ApiError::invalid(
                        "update_mask",
                        format!(
                            "{other:?} cannot be changed here: use display_name, owners, viewers, environments, quota or security_level (level and parent are fixed at creation)"
                        ),
                    ));
                }
            }
        }
        let mut patch = json!({"spec": spec});
        if !request.resource_version.is_empty() {
            validate::text("resource_version", &request.resource_version, 64, false)?;
            patch["metadata"] = json!({"resourceVersion": request.resource_version});
        }
        let api = KubeApi::<Agency>::all(self.identity.client_for(&caller)?);
        let updated = api
            .patch(&request.name, &patch_params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&request.name)))?;
        Ok(convert::agency_to_proto(&updated))
    }

    /// DeleteAgency.
    pub async fn delete_agency(
        &self,
        caller: Caller,
        request: proto::DeleteAgencyRequest,
    ) -> Result<proto::DeleteAgencyResponse, ApiError> {
        validate::agency_name("name", &request.name)?;
        // Both steps of a cascade need the caller's rights; check before the first.
        self.identity
            .require(
                &caller,
                &Permission::on("delete", "agencies", &request.name),
            )
            .await?;
        let api = KubeApi::<Agency>::all(self.identity.client_for(&caller)?);
        if request.cascade {
            let patch = json!({"metadata": {"annotations": {CASCADE_DELETE_ANNOTATION: "true"}}});
            api.patch(&request.name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(|e| ApiError::from_kube(e, &what(&request.name)))?;
        }
        api.delete(&request.name, &DeleteParams::background())
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&request.name)))?;
        Ok(proto::DeleteAgencyResponse {})
    }

    /// WatchAgency: the agency now, then its changes, read as the caller (RBAC's
    /// `get` and `watch` on the agency).
    pub async fn watch_agency(
        &self,
        caller: Caller,
        request: proto::WatchAgencyRequest,
    ) -> Result<AgencyEvents, ApiError> {
        validate::agency_name("name", &request.name)?;
        let api = KubeApi::<Agency>::all(self.identity.client_for(&caller)?);
        let name = request.name.clone();
        let current = api
            .get(&name)
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&name)))?;
        let version = current.resource_version().unwrap_or_default();
        let params = WatchParams::default().fields(&format!("metadata.name={name}"));
        let changes = api
            .watch(&params, &version)
            .await
            .map_err(|e| ApiError::from_kube(e, &what(&name)))?;
        let snapshot = futures::stream::once(async move {
            Ok(proto::AgencyEvent {
                r#type: "SNAPSHOT".to_owned(),
                agency: Some(convert::agency_to_proto(&current)),
            })
        });
        let changes = changes
            .map_err(move |e| ApiError::from_kube(e, &what(&name)))
            .try_filter_map(|event| async move {
                Ok(match event {
                    WatchEvent::Added(a) | WatchEvent::Modified(a) => Some(proto::AgencyEvent {
                        r#type: "MODIFIED".to_owned(),
                        agency: Some(convert::agency_to_proto(&a)),
                    }),
                    WatchEvent::Deleted(a) => Some(proto::AgencyEvent {
                        r#type: "DELETED".to_owned(),
                        agency: Some(convert::agency_to_proto(&a)),
                    }),
                    WatchEvent::Bookmark(_) => None,
                    WatchEvent::Error(status) => {
                        return Err(ApiError::unavailable(format!(
                            "the watch ended ({}): watch again",
                            status.message
                        )));
                    }
                })
            });
        Ok(Box::pin(snapshot.chain(changes)))
    }
}

/// The stream of a WatchAgency call.
pub type AgencyEvents = Pin<Box<dyn Stream<Item = Result<proto::AgencyEvent, ApiError>> + Send>>;

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Internal(format!("encoding a patch: {e}")))
}
