//! Bad input on every method gets invalid-argument, names the field, and changes
//! nothing; the HTTP face answers the same way with a JSON error body.

mod support;

use std::time::Duration;

use anyhow::{Result, bail};
use govbroker_api::proto;
use govbroker_crds::{Agency, AgencyLevel, AgencySpec, Owners, QuotaRequest, ResourceAmounts};
use govbroker_e2e::api::PLATFORM_ADMINS;
use govbroker_e2e::{cluster, eventually, label_for_test, scenario, unique_name};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt as _};
use pbjson_types::FieldMask;
use tonic::Code;

fn amounts(cpu: &str) -> Option<proto::ResourceAmounts> {
    Some(proto::ResourceAmounts {
        cpu: cpu.to_owned(),
        ..Default::default()
    })
}

fn valid_agency(name: &str, parent: &str) -> proto::Agency {
    proto::Agency {
        name: name.to_owned(),
        display_name: "Ủy ban nhân dân xã Hòa Vang".to_owned(),
        level: "District".to_owned(),
        parent: parent.to_owned(),
        security_level: 2,
        quota: amounts("1"),
        ..Default::default()
    }
}

/// Expects invalid-argument naming `field`.
fn expect_invalid<T: std::fmt::Debug>(
    failures: &mut Vec<String>,
    what: &str,
    field: &str,
    result: Result<tonic::Response<T>, tonic::Status>,
) {
    match result {
        Err(status)
            if status.code() == Code::InvalidArgument && status.message().contains(field) => {}
        Err(status) => failures.push(format!(
            "{what}: got {:?} {:?}, want InvalidArgument naming {field}",
            status.code(),
            status.message()
        )),
        Ok(r) => failures.push(format!("{what}: accepted: {:?}", r.into_inner())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_method_is_refused_and_changes_nothing() {
    support::server();
    scenario("api-input", |t| async move {
        let parent = unique_name("input");
        let agencies = Api::<Agency>::all(t.client.clone());
        let mut root = Agency::new(
            &parent,
            AgencySpec {
                budget: None,
                price_list: None,
                display_name: "Bộ kiểm thử".to_owned(),
                level: AgencyLevel::Province,
                parent: None,
                security_level: 2,
                owners: Owners::default(),
                viewers: Owners::default(),
                environments: Vec::new(),
                quota: ResourceAmounts {
                    cpu: Some(Quantity("8".to_owned())),
                    ..Default::default()
                },
            },
        );
        root.spec.level = AgencyLevel::Central;
        label_for_test(&mut root, &t.namespace);
        agencies.create(&PostParams::default(), &root).await?;
        let admin_token = cluster().token(&unique_name("admin"), &[PLATFORM_ADMINS])?;
        let mut admin = support::grpc(Some(&admin_token)).await?;
        eventually(
            "the API's cache has the agency",
            Duration::from_secs(30),
            || {
                let mut admin = admin.clone();
                let parent = parent.clone();
                async move {
                    Ok(admin
                        .agencies
                        .get_agency(proto::GetAgencyRequest { name: parent })
                        .await
                        .ok())
                }
            },
        )
        .await?;
        let before = agencies.get(&parent).await?.resource_version();
        let qrs = Api::<QuotaRequest>::all(t.client.clone());
        let count_requests = || async {
            Ok::<_, anyhow::Error>(
                qrs.list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .filter(|q| q.spec.agency == parent)
                    .count(),
            )
        };
        let requests_before = count_requests().await?;

        let mut f = Vec::new();
        let a = &mut admin.agencies;
        for name in ["", "Bad_Name", "sở-y-tế", &"a".repeat(300), "a\u{0}b", "-x"] {
            expect_invalid(
                &mut f,
                &format!("GetAgency({name:?})"),
                "name",
                a.get_agency(proto::GetAgencyRequest {
                    name: name.to_owned(),
                })
                .await,
            );
            expect_invalid(
                &mut f,
                &format!("GetAgencyTree({name:?})"),
                "name",
                a.get_agency_tree(proto::GetAgencyTreeRequest {
                    name: name.to_owned(),
                    max_depth: 0,
                })
                .await,
            );
            expect_invalid(
                &mut f,
                &format!("DeleteAgency({name:?})"),
                "name",
                a.delete_agency(proto::DeleteAgencyRequest {
                    name: name.to_owned(),
                    cascade: true,
                })
                .await,
            );
            expect_invalid(
                &mut f,
                &format!("WatchAgency({name:?})"),
                "name",
                a.watch_agency(proto::WatchAgencyRequest {
                    name: name.to_owned(),
                })
                .await,
            );
        }
        let list = |r: proto::ListAgenciesRequest| r;
        for (field, request) in [
            (
                "page_size",
                list(proto::ListAgenciesRequest {
                    page_size: 5000,
                    ..Default::default()
                }),
            ),
            (
                "level",
                list(proto::ListAgenciesRequest {
                    level: "Mayor".into(),
                    ..Default::default()
                }),
            ),
            (
                "security_level",
                list(proto::ListAgenciesRequest {
                    security_level: 9,
                    ..Default::default()
                }),
            ),
            (
                "page_token",
                list(proto::ListAgenciesRequest {
                    page_token: "not-a-token".into(),
                    ..Default::default()
                }),
            ),
            (
                "parent",
                list(proto::ListAgenciesRequest {
                    parent: "UPPER".into(),
                    ..Default::default()
                }),
            ),
        ] {
            expect_invalid(
                &mut f,
                &format!("ListAgencies bad {field}"),
                field,
                a.list_agencies(request).await,
            );
        }

        let bad_name = unique_name("bad");
        let mut cases: Vec<(&str, proto::Agency)> = Vec::new();
        let mut with = |field: &'static str, change: &dyn Fn(&mut proto::Agency)| {
            let mut agency = valid_agency(&bad_name, &parent);
            change(&mut agency);
            cases.push((field, agency));
        };
        with("agency.name", &|x| x.name = "Sở_Y_Tế".into());
        with("agency.name", &|x| x.name = "a".repeat(43));
        with("agency.display_name", &|x| x.display_name = String::new());
        with("agency.display_name", &|x| {
            x.display_name = "Sở\u{7}Y tế".into()
        });
        with("agency.display_name", &|x| {
            x.display_name = "Sở \u{202E}Y tế".into()
        });
        with("agency.display_name", &|x| x.display_name = "ệ".repeat(201));
        with("agency.level", &|x| x.level = "Mayor".into());
        with("agency.security_level", &|x| x.security_level = 0);
        with("agency.security_level", &|x| x.security_level = 6);
        with("agency.quota.cpu", &|x| x.quota = amounts("-1"));
        with("agency.quota.cpu", &|x| x.quota = amounts("lots"));
        with("agency.quota.cpu", &|x| x.quota = amounts("1e400"));
        with("agency.quota.cpu", &|x| x.quota = amounts("99999999"));
        with("agency.quota.memory", &|x| {
            x.quota = Some(proto::ResourceAmounts {
                memory: "9Ei".into(),
                ..Default::default()
            })
        });
        with("agency.owners.users[0]", &|x| {
            x.owners = Some(proto::Principals {
                users: vec![" padded ".into()],
                ..Default::default()
            })
        });
        with("agency.owners.service_accounts[0]", &|x| {
            x.owners = Some(proto::Principals {
                service_accounts: vec!["no-namespace".into()],
                ..Default::default()
            })
        });
        with("agency.environments[0].name", &|x| {
            x.environments = vec![proto::Environment {
                name: "Prod!".into(),
                quota: None,
            }]
        });
        with("agency.environments", &|x| {
            x.environments = (0..17)
                .map(|i| proto::Environment {
                    name: format!("e{i}"),
                    quota: None,
                })
                .collect()
        });
        for (field, agency) in cases {
            expect_invalid(
                &mut f,
                &format!("CreateAgency bad {field}"),
                field,
                a.create_agency(proto::CreateAgencyRequest {
                    agency: Some(agency),
                })
                .await,
            );
        }
        expect_invalid(
            &mut f,
            "CreateAgency without agency",
            "agency",
            a.create_agency(proto::CreateAgencyRequest { agency: None })
                .await,
        );

        let update = |paths: &[&str], agency: proto::Agency| proto::UpdateAgencyRequest {
            name: parent.clone(),
            agency: Some(agency),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            resource_version: String::new(),
        };
        expect_invalid(
            &mut f,
            "UpdateAgency with no mask",
            "update_mask",
            a.update_agency(update(&[], proto::Agency::default())).await,
        );
        expect_invalid(
            &mut f,
            "UpdateAgency of parent",
            "update_mask",
            a.update_agency(update(&["parent"], proto::Agency::default()))
                .await,
        );
        expect_invalid(
            &mut f,
            "UpdateAgency bad display name",
            "agency.display_name",
            a.update_agency(update(
                &["display_name"],
                proto::Agency {
                    display_name: "\u{0}".into(),
                    ..Default::default()
                },
            ))
            .await,
        );
        expect_invalid(
            &mut f,
            "UpdateAgency negative quota",
            "agency.quota.cpu",
            a.update_agency(update(
                &["quota"],
                proto::Agency {
                    quota: amounts("-5"),
                    ..Default::default()
                },
            ))
            .await,
        );

        let q = &mut admin.quota_requests;
        let ask = |agency: &str, quota: Option<proto::ResourceAmounts>, justification: &str| {
            proto::CreateQuotaRequestRequest {
                agency: agency.to_owned(),
                quota,
                justification: justification.to_owned(),
            }
        };
        expect_invalid(
            &mut f,
            "CreateQuotaRequest no agency",
            "agency",
            q.create_quota_request(ask("", amounts("1"), "cần thêm"))
                .await,
        );
        expect_invalid(
            &mut f,
            "CreateQuotaRequest empty quota",
            "quota",
            q.create_quota_request(ask(&parent, None, "cần thêm")).await,
        );
        expect_invalid(
            &mut f,
            "CreateQuotaRequest negative",
            "quota.cpu",
            q.create_quota_request(ask(&parent, amounts("-1"), "cần thêm"))
                .await,
        );
        expect_invalid(
            &mut f,
            "CreateQuotaRequest no justification",
            "justification",
            q.create_quota_request(ask(&parent, amounts("1"), "  "))
                .await,
        );
        expect_invalid(
            &mut f,
            "CreateQuotaRequest long justification",
            "justification",
            q.create_quota_request(ask(&parent, amounts("1"), &"x".repeat(2001)))
                .await,
        );
        expect_invalid(
            &mut f,
            "ListQuotaRequests bad phase",
            "phase",
            q.list_quota_requests(proto::ListQuotaRequestsRequest {
                phase: "Done".into(),
                ..Default::default()
            })
            .await,
        );
        expect_invalid(
            &mut f,
            "ListQuotaRequests big page",
            "page_size",
            q.list_quota_requests(proto::ListQuotaRequestsRequest {
                page_size: 1001,
                ..Default::default()
            })
            .await,
        );
        let decide = |name: &str, reason: &str| proto::DecideQuotaRequestRequest {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        expect_invalid(
            &mut f,
            "Approve no name",
            "name",
            q.approve_quota_request(decide("", "ok")).await,
        );
        expect_invalid(
            &mut f,
            "Reject no reason",
            "reason",
            q.reject_quota_request(decide("some-request", "")).await,
        );

        let audit = &mut admin.audit;
        expect_invalid(
            &mut f,
            "ListAuditRecords bad since",
            "since",
            audit
                .list_audit_records(proto::ListAuditRecordsRequest {
                    since: "yesterday".into(),
                    ..Default::default()
                })
                .await,
        );
        expect_invalid(
            &mut f,
            "ListAuditRecords bad token",
            "page_token",
            audit
                .list_audit_records(proto::ListAuditRecordsRequest {
                    page_token: "zz".into(),
                    ..Default::default()
                })
                .await,
        );

        // Nothing changed.
        if agencies.get(&parent).await?.resource_version() != before {
            f.push("the agency changed".to_owned());
        }
        if agencies.get_opt(&bad_name).await?.is_some() {
            f.push(format!("agency {bad_name} was created"));
        }
        if count_requests().await? != requests_before {
            f.push("a quota request was created".to_owned());
        }
        if !f.is_empty() {
            bail!(
                "{} bad inputs were not refused as they should be:\n  {}",
                f.len(),
                f.join("\n  ")
            );
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_face_speaks_json_and_refuses_bad_bodies_with_json_errors() {
    let server = support::server();
    scenario("api-http", |t| async move {
        let http = support::http()?;
        let token = cluster().token(&unique_name("admin"), &[PLATFORM_ADMINS])?;
        let url = |path: &str| format!("{}{path}", server.url);

        // The OpenAPI document needs no token.
        let doc: serde_json::Value = http.get(url("/openapi.json")).send().await?.json().await?;
        if doc["paths"]["/v1/agencies/{name}"]["get"]["operationId"] != "GetAgency" {
            bail!("unexpected OpenAPI document: {doc}");
        }
        // No token: 401 with a JSON body that says what to do.
        let anonymous = http.get(url("/v1/agencies")).send().await?;
        let status = anonymous.status().as_u16();
        let body: serde_json::Value = anonymous.json().await?;
        if status != 401 || body["code"] != "unauthenticated" || !body["message"].as_str().unwrap_or_default().contains("Bearer") {
            bail!("anonymous list: {status} {body}");
        }

        // Create an agency over HTTP with a Vietnamese name, read it back byte for byte.
        let name = unique_name("http");
        let display = "Ủy ban nhân dân phường Hải Châu I — Đà Nẵng";
        let created = http
            .post(url("/v1/agencies"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": name, "displayName": display, "level": "Central", "securityLevel": 1, "quota": {"cpu": "1.5", "memory": "512Mi"}}))
            .send()
            .await?;
        if created.status() != 200 {
            bail!("create: {} {}", created.status(), created.text().await?);
        }
        let agencies = Api::<Agency>::all(t.client.clone());
        let mut labelled = agencies.get(&name).await?;
        label_for_test(&mut labelled, &t.namespace);
        agencies.replace(&name, &PostParams::default(), &labelled).await?;
        let got: serde_json::Value = eventually("the API serves the new agency", Duration::from_secs(30), || {
            let (http, token, u) = (http.clone(), token.clone(), url(&format!("/v1/agencies/{name}")));
            async move {
                let r = http.get(u).bearer_auth(token).send().await?;
                Ok(if r.status() == 200 { Some(r.json::<serde_json::Value>().await?) } else { None })
            }
        })
        .await?;
        if got["displayName"] != display || got["quota"]["cpu"] != "1.5" {
            bail!("read back: {got}");
        }

        // Bad bodies and parameters: 400 with the field, nothing created.
        for (method, path, body, field) in [
            ("POST", "/v1/agencies", "not json", "body"),
            ("POST", "/v1/agencies", r#"{"name": 5}"#, "body"),
            ("POST", "/v1/agencies", r#"{"name": "x", "colour": "red"}"#, "body"),
            ("POST", "/v1/agencies", r#"{"name": "ok-name", "displayName": "A", "level": "Central", "securityLevel": 1, "quota": {"cpu": "-3"}}"#, "agency.quota.cpu"),
            ("POST", "/v1/quotarequests", "", "body"),
            ("GET", "/v1/agencies?pageSize=-1", "", "pageSize"),
            ("GET", "/v1/agencies?pageSize=abc", "", "pageSize"),
            ("GET", "/v1/agencies?colour=red", "", "colour"),
            ("DELETE", "/v1/agencies/x?cascade=maybe", "", "cascade"),
        ] {
            let request = http.request(method.parse()?, url(path)).bearer_auth(&token).header("content-type", "application/json").body(body.to_owned());
            let response = request.send().await?;
            let status = response.status().as_u16();
            let error: serde_json::Value = response.json().await?;
            if status != 400 || error["code"] != "invalid_argument" || error["field"] != field {
                bail!("{method} {path} {body:?}: {status} {error}");
            }
        }
        if agencies.get_opt("ok-name").await?.is_some() || agencies.get_opt("x").await?.is_some() {
            bail!("a refused body created an agency");
        }
        // Unknown paths: a JSON 404 that points at the document.
        let missing = http.get(url("/v2/nothing")).send().await?;
        if missing.status() != 404 {
            bail!("unknown path: {}", missing.status());
        }
        Ok(())
    })
    .await;
}
