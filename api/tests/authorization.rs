//! The authorization matrix: every method, called by every kind of caller, is allowed
//! or refused exactly as Kubernetes RBAC (and the webhook) would decide for kubectl.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use govbroker_api::proto;
use govbroker_crds::{Agency, AgencyLevel, AgencySpec, Owners, ResourceAmounts};
use govbroker_e2e::api::{FINANCE, PLATFORM_ADMINS};
use govbroker_e2e::{cluster, eventually, label_for_test, scenario, unique_name};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Api;
use kube::api::PostParams;
use pbjson_types::FieldMask;
use tonic::Code;

fn quota(cpu: &str, memory: &str) -> ResourceAmounts {
    ResourceAmounts {
        cpu: Some(Quantity(cpu.to_owned())),
        memory: Some(Quantity(memory.to_owned())),
        ..Default::default()
    }
}

fn agency(
    name: &str,
    level: AgencyLevel,
    parent: Option<&str>,
    owner: &str,
    cpu: &str,
    memory: &str,
) -> Agency {
    Agency::new(
        name,
        AgencySpec {
            budget: None,
            price_list: None,
            display_name: format!("Cơ quan {name}"),
            level,
            parent: parent.map(str::to_owned),
            security_level: 2,
            owners: Owners {
                users: vec![owner.to_owned()],
                ..Default::default()
            },
            viewers: Owners::default(),
            environments: Vec::new(),
            quota: quota(cpu, memory),
        },
    )
}

/// The callers of the matrix.
struct Callers {
    admin: support::Grpc,
    owner_a: support::Grpc,
    viewer_a: support::Grpc,
    owner_parent: support::Grpc,
    owner_b: support::Grpc,
    finance: support::Grpc,
    anonymous: support::Grpc,
    expired: support::Grpc,
    garbage: support::Grpc,
}

/// What a call came to: Ok or the gRPC code.
fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_allows_and_refuses_exactly_what_rbac_does() {
    support::server();
    scenario("api-authz", |t| async move {
        let id = unique_name("m");
        let (owner_a, viewer_a, owner_p, owner_b) = (
            format!("owner-a-{id}"),
            format!("viewer-a-{id}"),
            format!("owner-p-{id}"),
            format!("owner-b-{id}"),
        );
        let root = unique_name("authz");
        let (a, b) = (format!("{root}-a"), format!("{root}-b"));
        let agencies = Api::<Agency>::all(t.client.clone());
        let mut tree = vec![
            agency(&root, AgencyLevel::Central, None, &owner_p, "16", "64Gi"),
            agency(
                &a,
                AgencyLevel::Province,
                Some(&root),
                &owner_a,
                "4",
                "16Gi",
            ),
            agency(
                &b,
                AgencyLevel::Province,
                Some(&root),
                &owner_b,
                "4",
                "16Gi",
            ),
        ];
        tree[1].spec.viewers.users = vec![viewer_a.clone()];
        for mut ag in tree {
            label_for_test(&mut ag, &t.namespace);
            agencies.create(&PostParams::default(), &ag).await?;
        }

        // Owners' rights are RBAC the operator makes: wait until every agency is Ready.
        for name in [&root, &a, &b] {
            eventually(
                &format!("agency {name} is Ready"),
                Duration::from_secs(60),
                || {
                    let agencies = agencies.clone();
                    let name = name.clone();
                    async move {
                        let agency = agencies.get(&name).await?;
                        let ready = agency
                            .status
                            .iter()
                            .flat_map(|s| &s.conditions)
                            .any(|c| c.type_ == "Ready" && c.status == "True");
                        Ok(ready.then_some(()))
                    }
                },
            )
            .await?;
        }

        let c = cluster();
        let callers = Callers {
            admin: support::grpc(Some(&c.token(&format!("admin-{id}"), &[PLATFORM_ADMINS])?))
                .await?,
            owner_a: support::grpc(Some(&c.token(&owner_a, &[])?)).await?,
            viewer_a: support::grpc(Some(&c.token(&viewer_a, &[])?)).await?,
            owner_parent: support::grpc(Some(&c.token(&owner_p, &[])?)).await?,
            owner_b: support::grpc(Some(&c.token(&owner_b, &[])?)).await?,
            finance: support::grpc(Some(&c.token(&format!("fin-{id}"), &[FINANCE])?)).await?,
            anonymous: support::grpc(None).await?,
            expired: support::grpc(Some(&c.expired_token(&owner_a, &[])?)).await?,
            garbage: support::grpc(Some("gbt_not-a-token")).await?,
        };
        // The API serves reads from its cache: wait until it has the tree.
        eventually(
            "the API's cache has the new agencies",
            Duration::from_secs(30),
            || {
                let mut admin = callers.admin.clone();
                let b = b.clone();
                async move {
                    Ok(admin
                        .agencies
                        .get_agency(proto::GetAgencyRequest { name: b })
                        .await
                        .ok())
                }
            },
        )
        .await?;

        let failures = std::cell::RefCell::new(Vec::new());
        let check = |what: &str, who: &str, got: Code, want: Code| {
            if got != want {
                failures
                    .borrow_mut()
                    .push(format!("{what} as {who}: got {got:?}, want {want:?}"));
            }
        };

        // GetAgency(A).
        let cases = [
            ("admin", &callers.admin, Code::Ok),
            ("owner of A", &callers.owner_a, Code::Ok),
            ("viewer of A", &callers.viewer_a, Code::Ok),
            ("owner of A's parent", &callers.owner_parent, Code::Ok),
            ("owner of B", &callers.owner_b, Code::PermissionDenied),
            ("finance viewer", &callers.finance, Code::Ok),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
            ("expired token", &callers.expired, Code::Unauthenticated),
            ("garbage token", &callers.garbage, Code::Unauthenticated),
        ];
        for (who, caller, want) in &cases {
            let got = code(
                caller
                    .agencies
                    .clone()
                    .get_agency(proto::GetAgencyRequest { name: a.clone() })
                    .await,
            );
            check("GetAgency(A)", who, got, *want);
        }

        // ListAgencies(parent=root): each caller sees exactly their part.
        let all: BTreeSet<String> = [a.clone(), b.clone()].into();
        let only_a: BTreeSet<String> = [a.clone()].into();
        let only_b: BTreeSet<String> = [b.clone()].into();
        let list_cases = [
            ("admin", &callers.admin, Ok(all.clone())),
            ("owner of A", &callers.owner_a, Ok(only_a.clone())),
            ("viewer of A", &callers.viewer_a, Ok(only_a.clone())),
            (
                "owner of A's parent",
                &callers.owner_parent,
                Ok(all.clone()),
            ),
            ("owner of B", &callers.owner_b, Ok(only_b.clone())),
            ("finance viewer", &callers.finance, Ok(all.clone())),
            ("anonymous", &callers.anonymous, Err(Code::Unauthenticated)),
            (
                "garbage token",
                &callers.garbage,
                Err(Code::Unauthenticated),
            ),
        ];
        for (who, caller, want) in list_cases {
            let got = caller
                .agencies
                .clone()
                .list_agencies(proto::ListAgenciesRequest {
                    parent: root.clone(),
                    ..Default::default()
                })
                .await
                .map(|r| {
                    r.into_inner()
                        .agencies
                        .into_iter()
                        .map(|a| a.name)
                        .collect::<BTreeSet<_>>()
                })
                .map_err(|s| s.code());
            if got != want {
                failures.borrow_mut().push(format!(
                    "ListAgencies(parent) as {who}: got {got:?}, want {want:?}"
                ));
            }
        }

        // GetAgencyTree(root): the parent's owner sees the subtree; A's owner cannot read the root.
        for (who, caller, want) in [
            ("admin", &callers.admin, Code::Ok),
            ("owner of A's parent", &callers.owner_parent, Code::Ok),
            ("owner of A", &callers.owner_a, Code::PermissionDenied),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
        ] {
            let got = code(
                caller
                    .agencies
                    .clone()
                    .get_agency_tree(proto::GetAgencyTreeRequest {
                        name: root.clone(),
                        max_depth: 0,
                    })
                    .await,
            );
            check("GetAgencyTree(root)", who, got, want);
        }
        let tree = callers
            .owner_parent
            .agencies
            .clone()
            .get_agency_tree(proto::GetAgencyTreeRequest {
                name: root.clone(),
                max_depth: 0,
            })
            .await?
            .into_inner();
        let names: Vec<(String, u32)> = tree
            .nodes
            .iter()
            .map(|n| (n.agency.clone().unwrap_or_default().name, n.depth))
            .collect();
        if names != vec![(root.clone(), 0), (a.clone(), 1), (b.clone(), 1)] {
            failures.borrow_mut().push(format!(
                "GetAgencyTree(root) as the parent's owner: got {names:?}"
            ));
        }

        // UpdateAgency(A).
        let rename = |name: &str, display: &str| proto::UpdateAgencyRequest {
            name: name.to_owned(),
            agency: Some(proto::Agency {
                display_name: display.to_owned(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["display_name".to_owned()],
            }),
            resource_version: String::new(),
        };
        for (who, caller, want) in [
            ("admin", &callers.admin, Code::Ok),
            ("owner of A", &callers.owner_a, Code::Ok),
            ("viewer of A", &callers.viewer_a, Code::PermissionDenied),
            (
                "owner of A's parent",
                &callers.owner_parent,
                Code::PermissionDenied,
            ),
            ("owner of B", &callers.owner_b, Code::PermissionDenied),
            ("finance viewer", &callers.finance, Code::PermissionDenied),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
            ("expired token", &callers.expired, Code::Unauthenticated),
        ] {
            let got = code(
                caller
                    .agencies
                    .clone()
                    .update_agency(rename(&a, &format!("Sở {who}")))
                    .await,
            );
            check("UpdateAgency(A, display_name)", who, got, want);
        }
        // An owner may not raise their own quota: that takes a quota request.
        let raise = proto::UpdateAgencyRequest {
            name: a.clone(),
            agency: Some(proto::Agency {
                quota: Some(proto::ResourceAmounts {
                    cpu: "8".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["quota".to_owned()],
            }),
            resource_version: String::new(),
        };
        check(
            "UpdateAgency(A, quota)",
            "owner of A",
            code(
                callers
                    .owner_a
                    .agencies
                    .clone()
                    .update_agency(raise.clone())
                    .await,
            ),
            Code::PermissionDenied,
        );

        // CreateAgency and DeleteAgency: platform admins only.
        let child = format!("{root}-c");
        let new_child = proto::CreateAgencyRequest {
            agency: Some(proto::Agency {
                name: child.clone(),
                display_name: "Phòng mới".to_owned(),
                level: "District".to_owned(),
                parent: a.clone(),
                security_level: 2,
                quota: Some(proto::ResourceAmounts {
                    cpu: "1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        for (who, caller, want) in [
            ("owner of A", &callers.owner_a, Code::PermissionDenied),
            (
                "owner of A's parent",
                &callers.owner_parent,
                Code::PermissionDenied,
            ),
            ("finance viewer", &callers.finance, Code::PermissionDenied),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
            ("admin", &callers.admin, Code::Ok),
        ] {
            let got = code(
                caller
                    .agencies
                    .clone()
                    .create_agency(new_child.clone())
                    .await,
            );
            check("CreateAgency(child of A)", who, got, want);
        }
        let delete = proto::DeleteAgencyRequest {
            name: child.clone(),
            cascade: false,
        };
        for (who, caller, want) in [
            ("owner of A", &callers.owner_a, Code::PermissionDenied),
            ("viewer of A", &callers.viewer_a, Code::PermissionDenied),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
            ("admin", &callers.admin, Code::Ok),
        ] {
            let got = code(caller.agencies.clone().delete_agency(delete.clone()).await);
            check("DeleteAgency(child)", who, got, want);
        }

        // WatchAgency(A): the first event is the snapshot.
        for (who, caller, want) in [
            ("owner of A", &callers.owner_a, Code::Ok),
            ("owner of B", &callers.owner_b, Code::PermissionDenied),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
        ] {
            let got = match caller
                .agencies
                .clone()
                .watch_agency(proto::WatchAgencyRequest { name: a.clone() })
                .await
            {
                Ok(stream) => {
                    let first = tokio::time::timeout(
                        Duration::from_secs(20),
                        stream.into_inner().message(),
                    )
                    .await;
                    match first {
                        Ok(Ok(Some(event))) if event.r#type == "SNAPSHOT" => Code::Ok,
                        Ok(Err(status)) => status.code(),
                        other => {
                            failures
                                .borrow_mut()
                                .push(format!("WatchAgency(A) as {who}: first event {other:?}"));
                            Code::Unknown
                        }
                    }
                }
                Err(status) => status.code(),
            };
            check("WatchAgency(A)", who, got, want);
        }

        // CreateQuotaRequest(A): its owners (and admins) only.
        let ask = proto::CreateQuotaRequestRequest {
            agency: a.clone(),
            quota: Some(proto::ResourceAmounts {
                cpu: "6".into(),
                ..Default::default()
            }),
            justification: "Hệ thống một cửa điện tử cần thêm CPU".to_owned(),
        };
        for (who, caller, want) in [
            ("viewer of A", &callers.viewer_a, Code::PermissionDenied),
            (
                "owner of A's parent",
                &callers.owner_parent,
                Code::PermissionDenied,
            ),
            ("owner of B", &callers.owner_b, Code::PermissionDenied),
            ("finance viewer", &callers.finance, Code::PermissionDenied),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
        ] {
            let got = code(
                caller
                    .quota_requests
                    .clone()
                    .create_quota_request(ask.clone())
                    .await,
            );
            check("CreateQuotaRequest(A)", who, got, want);
        }
        let first = callers
            .owner_a
            .quota_requests
            .clone()
            .create_quota_request(ask.clone())
            .await?
            .into_inner();
        let second = callers
            .owner_a
            .quota_requests
            .clone()
            .create_quota_request(ask.clone())
            .await?
            .into_inner();

        // ListQuotaRequests(A): readers of A.
        eventually(
            "the API's cache has the requests",
            Duration::from_secs(30),
            || {
                let mut admin = callers.admin.clone();
                let a = a.clone();
                async move {
                    let list = admin
                        .quota_requests
                        .list_quota_requests(proto::ListQuotaRequestsRequest {
                            agency: a,
                            ..Default::default()
                        })
                        .await?;
                    Ok((list.into_inner().quota_requests.len() == 2).then_some(()))
                }
            },
        )
        .await?;
        for (who, caller, want) in [
            ("owner of A", &callers.owner_a, Code::Ok),
            ("viewer of A", &callers.viewer_a, Code::Ok),
            ("owner of A's parent", &callers.owner_parent, Code::Ok),
            ("owner of B", &callers.owner_b, Code::PermissionDenied),
            ("finance viewer", &callers.finance, Code::PermissionDenied),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
        ] {
            let got = code(
                caller
                    .quota_requests
                    .clone()
                    .list_quota_requests(proto::ListQuotaRequestsRequest {
                        agency: a.clone(),
                        ..Default::default()
                    })
                    .await,
            );
            check("ListQuotaRequests(A)", who, got, want);
        }
        // Without an agency, B's owner sees none of A's requests.
        let seen = callers
            .owner_b
            .quota_requests
            .clone()
            .list_quota_requests(proto::ListQuotaRequestsRequest::default())
            .await?
            .into_inner();
        if seen.quota_requests.iter().any(|q| q.agency == a) {
            failures
                .borrow_mut()
                .push("ListQuotaRequests() as owner of B shows A's requests".to_owned());
        }

        // Approve / Reject: the parent's owners only.
        let decide = |name: &str| proto::DecideQuotaRequestRequest {
            name: name.to_owned(),
            reason: "Đồng ý theo kế hoạch".to_owned(),
        };
        for (who, caller, want) in [
            ("owner of A", &callers.owner_a, Code::PermissionDenied),
            ("viewer of A", &callers.viewer_a, Code::PermissionDenied),
            ("owner of B", &callers.owner_b, Code::PermissionDenied),
            ("finance viewer", &callers.finance, Code::PermissionDenied),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
        ] {
            let got = code(
                caller
                    .quota_requests
                    .clone()
                    .approve_quota_request(decide(&first.name))
                    .await,
            );
            check("ApproveQuotaRequest", who, got, want);
            let got = code(
                caller
                    .quota_requests
                    .clone()
                    .reject_quota_request(decide(&second.name))
                    .await,
            );
            check("RejectQuotaRequest", who, got, want);
        }
        let approved = callers
            .owner_parent
            .quota_requests
            .clone()
            .approve_quota_request(decide(&first.name))
            .await;
        check(
            "ApproveQuotaRequest",
            "owner of A's parent",
            code(approved),
            Code::Ok,
        );
        let rejected = callers
            .owner_parent
            .quota_requests
            .clone()
            .reject_quota_request(decide(&second.name))
            .await;
        check(
            "RejectQuotaRequest",
            "owner of A's parent",
            code(rejected),
            Code::Ok,
        );
        eventually(
            "the approval raises A's quota to 6 cpu",
            Duration::from_secs(30),
            || {
                let agencies = agencies.clone();
                let a = a.clone();
                async move {
                    let agency = agencies.get(&a).await?;
                    Ok((agency.spec.quota.cpu == Some(Quantity("6".to_owned()))).then_some(()))
                }
            },
        )
        .await?;

        // ListAuditRecords: per agency for its owners (and ancestors' owners); the whole
        // chain for platform admins only.
        for (who, caller, want) in [
            ("admin", &callers.admin, Code::Ok),
            ("owner of A", &callers.owner_a, Code::Ok),
            ("owner of A's parent", &callers.owner_parent, Code::Ok),
            ("viewer of A", &callers.viewer_a, Code::PermissionDenied),
            ("owner of B", &callers.owner_b, Code::PermissionDenied),
            ("finance viewer", &callers.finance, Code::PermissionDenied),
            ("anonymous", &callers.anonymous, Code::Unauthenticated),
        ] {
            let got = code(
                caller
                    .audit
                    .clone()
                    .list_audit_records(proto::ListAuditRecordsRequest {
                        agency: a.clone(),
                        ..Default::default()
                    })
                    .await,
            );
            check("ListAuditRecords(A)", who, got, want);
        }
        for (who, caller, want) in [
            ("admin", &callers.admin, Code::Ok),
            ("owner of A", &callers.owner_a, Code::PermissionDenied),
            ("finance viewer", &callers.finance, Code::PermissionDenied),
        ] {
            let got = code(
                caller
                    .audit
                    .clone()
                    .list_audit_records(proto::ListAuditRecordsRequest::default())
                    .await,
            );
            check("ListAuditRecords(all)", who, got, want);
        }

        // The trail holds the approval (by the parent's owner) and the refused attempts.
        let records = callers
            .owner_a
            .audit
            .clone()
            .list_audit_records(proto::ListAuditRecordsRequest {
                agency: a.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .records;
        let approval = records
            .iter()
            .find(|r| r.method.ends_with("/ApproveQuotaRequest") && r.outcome == "ok")
            .context("no approval in the trail")?;
        if approval.user != owner_p || approval.target_name != first.name {
            failures
                .borrow_mut()
                .push(format!("approval recorded as {approval:?}"));
        }
        if !records.iter().any(|r| {
            r.method.ends_with("/CreateQuotaRequest")
                && r.user == owner_a
                && r.outcome == "ok"
                && r.target_name == first.name
        }) {
            failures.borrow_mut().push(format!(
                "the filed request {} is not named in the trail",
                first.name
            ));
        }
        if !records.iter().any(|r| {
            r.method.ends_with("/UpdateAgency")
                && r.user == owner_b
                && r.outcome == "permission_denied"
        }) {
            failures
                .borrow_mut()
                .push("the refused update by B's owner is not in A's trail".to_owned());
        }
        if !records.iter().any(|r| {
            r.method.ends_with("/GetAgency")
                && r.user == owner_b
                && r.outcome == "permission_denied"
        }) {
            failures
                .borrow_mut()
                .push("the refused read by B's owner is not in A's trail".to_owned());
        }

        let failures = failures.into_inner();
        if !failures.is_empty() {
            bail!(
                "{} cells of the matrix are wrong:\n  {}",
                failures.len(),
                failures.join("\n  ")
            );
        }
        Ok(())
    })
    .await;
}
