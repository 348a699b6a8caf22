//! The Workloads service against the real control plane and the operator (workload
//! controller and admission webhook): an agency's owner creates a workload that reaches
//! Available (watched over a server stream), scales it within quota and beyond it (the
//! status says exactly what is left), pauses, resumes and deletes it; bad images and
//! absurd requests are invalid arguments that create nothing; another agency's owner is
//! refused; the HTTP face serves the same.

mod support;

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use futures::StreamExt as _;
use govbroker_api::proto;
use govbroker_api::proto::workloads_client::WorkloadsClient;
use govbroker_crds::Workload;
use govbroker_e2e::{
    DEFAULT_TIMEOUT, TestEnv, cluster, create_agency, eventually, scenario, unique_name,
    wait_agency_ready,
};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = WorkloadsClient<InterceptedService<Channel, support::Bearer>>;

async fn client(token: &str) -> Result<Client> {
    Ok(WorkloadsClient::with_interceptor(
        support::channel().await?,
        support::Bearer(Some(token.to_owned())),
    ))
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// A Central agency owned by `owner` with a `prod` environment of 1 CPU.
async fn agency(t: &TestEnv, owner: &str) -> Result<String> {
    let name = unique_name("bo-app");
    let quota = json!({"cpu": "1", "memory": "4Gi", "pods": "10", "services": "3"});
    create_agency(
        t,
        &name,
        json!({
            "displayName": format!("Cơ quan {name}"),
            "level": "Central",
            "securityLevel": 2,
            "owners": {"users": [owner]},
            "environments": [{"name": "prod", "quota": quota}],
            "quota": quota,
        }),
    )
    .await?;
    wait_agency_ready(t, &name).await?;
    Ok(name)
}

fn workload(agency: &str, name: &str, image: &str, cpu: &str) -> proto::CreateWorkloadRequest {
    proto::CreateWorkloadRequest {
        workload: Some(proto::Workload {
            agency: agency.to_owned(),
            environment: "prod".to_owned(),
            name: name.to_owned(),
            image: image.to_owned(),
            replicas: 2,
            cpu_request: cpu.to_owned(),
            memory_request: "128Mi".to_owned(),
            ports: vec![proto::WorkloadPort {
                name: "http".to_owned(),
                port: 8080,
                protocol: String::new(),
            }],
            ..Default::default()
        }),
    }
}

fn get(agency: &str, name: &str) -> proto::GetWorkloadRequest {
    proto::GetWorkloadRequest {
        agency: agency.to_owned(),
        environment: "prod".to_owned(),
        name: name.to_owned(),
    }
}

/// Waits until GetWorkload shows `phase` (and, for Available, `available` replicas).
async fn phase(
    c: &Client,
    agency: &str,
    name: &str,
    want: &str,
    available: i32,
) -> Result<proto::Workload> {
    eventually(&format!("phase {want}"), DEFAULT_TIMEOUT, || {
        let mut c = c.clone();
        async move {
            let w = c.get_workload(get(agency, name)).await?.into_inner();
            let status = w.status.clone().unwrap_or_default();
            Ok((status.phase == want
                && status.observed_generation == status.generation
                && (want != "Available" || status.available_replicas == available))
                .then_some(w))
        }
    })
    .await
}

#[tokio::test]
async fn an_owner_runs_watches_scales_pauses_and_deletes_a_workload() {
    support::server();
    scenario("api-workloads", |t: TestEnv| async move {
        let alice = "alice@app.gov.vn";
        let agency = agency(&t, alice).await?;
        let mut c = client(&cluster().token(alice, &[])?).await?;

        // RBAC bindings reach the authorizer through its informer: retry the first call.
        eventually("alice may create workloads", DEFAULT_TIMEOUT, || {
            let mut c = c.clone();
            let agency = agency.clone();
            async move {
                match c
                    .create_workload(workload(
                        &agency,
                        "cong-dich-vu",
                        "registry.gov.vn/app:1",
                        "200m",
                    ))
                    .await
                {
                    Ok(_) => Ok(Some(())),
                    Err(s) if s.code() == Code::PermissionDenied => Ok(None),
                    Err(s) => bail!("create: {s}"),
                }
            }
        })
        .await?;

        // The server stream: the snapshot first, then changes until 2 replicas are available.
        let mut events = c
            .watch_workload(proto::WatchWorkloadRequest {
                agency: agency.clone(),
                environment: "prod".into(),
                name: "cong-dich-vu".into(),
            })
            .await?
            .into_inner();
        let first = events.next().await.context("no snapshot")??;
        ensure!(first.r#type == "SNAPSHOT", "first event {}", first.r#type);
        tokio::time::timeout(DEFAULT_TIMEOUT, async {
            while let Some(event) = events.next().await {
                let status = event?.workload.and_then(|w| w.status).unwrap_or_default();
                if status.phase == "Available" && status.available_replicas == 2 {
                    return Ok(());
                }
            }
            bail!("the stream ended before the workload was Available")
        })
        .await
        .context("waiting on the stream for Available")??;
        drop(events);

        let list = c
            .list_workloads(proto::ListWorkloadsRequest {
                agency: agency.clone(),
                environment: "prod".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        ensure!(
            list.workloads
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                == ["cong-dich-vu"],
            "list {:?}",
            list.workloads
        );

        // Within quota, then beyond it: 6 x 200m needs 1200m, exactly 1 CPU is left for it.
        let scale = |replicas| proto::ScaleWorkloadRequest {
            agency: agency.clone(),
            environment: "prod".into(),
            name: "cong-dich-vu".into(),
            replicas,
        };
        c.scale_workload(scale(4)).await?;
        phase(&c, &agency, "cong-dich-vu", "Available", 4).await?;
        c.scale_workload(scale(6)).await?;
        let refused = phase(&c, &agency, "cong-dich-vu", "QuotaExceeded", 0).await?;
        let status = refused.status.unwrap_or_default();
        ensure!(
            status.quota_remaining.as_ref().map(|q| q.cpu.as_str()) == Some("1"),
            "remaining {:?}",
            status.quota_remaining
        );
        ensure!(
            status.message.contains("At most 5 replica(s) fit"),
            "message {}",
            status.message
        );
        ensure!(
            code(c.scale_workload(scale(100_000)).await) == Code::InvalidArgument,
            "absurd replicas"
        );
        c.scale_workload(scale(5)).await?;
        phase(&c, &agency, "cong-dich-vu", "Available", 5).await?;

        // Pause and resume.
        let target = (agency.clone(), "prod".to_owned(), "cong-dich-vu".to_owned());
        c.pause_workload(proto::PauseWorkloadRequest {
            agency: target.0.clone(),
            environment: target.1.clone(),
            name: target.2.clone(),
        })
        .await?;
        phase(&c, &agency, "cong-dich-vu", "Paused", 0).await?;
        c.resume_workload(proto::ResumeWorkloadRequest {
            agency: target.0.clone(),
            environment: target.1.clone(),
            name: target.2.clone(),
        })
        .await?;
        phase(&c, &agency, "cong-dich-vu", "Available", 5).await?;

        // Mistakes are invalid arguments and create nothing.
        for (name, image, cpu) in [
            ("bad-ref", "Bad Image::1", "100m"),
            ("absurd", "registry.gov.vn/app:1", "5000"),
            ("no-cpu", "registry.gov.vn/app:1", "lots"),
        ] {
            let result = c.create_workload(workload(&agency, name, image, cpu)).await;
            ensure!(
                code(result) == Code::InvalidArgument,
                "{name} should be an invalid argument"
            );
        }
        let ns = format!("{agency}-prod");
        let names: Vec<String> = Api::<Workload>::namespaced(t.client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter_map(|w| w.metadata.name.clone())
            .collect();
        ensure!(names == ["cong-dich-vu"], "workloads {names:?}");

        // Someone who owns nothing here is refused.
        let mut mallory = client(&cluster().token("mallory@other.gov.vn", &[])?).await?;
        ensure!(
            code(mallory.get_workload(get(&agency, "cong-dich-vu")).await)
                == Code::PermissionDenied,
            "mallory reads"
        );
        ensure!(
            code(
                mallory
                    .create_workload(workload(&agency, "evil", "registry.gov.vn/app:1", "100m"))
                    .await
            ) == Code::PermissionDenied,
            "mallory creates"
        );

        // The HTTP face lists the same.
        let body: serde_json::Value = support::http()?
            .get(format!(
                "{}/v1/workloads/{agency}/prod",
                support::server().url
            ))
            .bearer_auth(cluster().token(alice, &[])?)
            .send()
            .await?
            .json()
            .await?;
        ensure!(
            body["workloads"][0]["name"] == "cong-dich-vu",
            "HTTP list {body}"
        );

        c.delete_workload(proto::DeleteWorkloadRequest {
            agency: agency.clone(),
            environment: "prod".into(),
            name: "cong-dich-vu".into(),
        })
        .await?;
        eventually("the workload to be gone", Duration::from_secs(30), || {
            let mut c = c.clone();
            let agency = agency.clone();
            async move {
                Ok(
                    (code(c.get_workload(get(&agency, "cong-dich-vu")).await) == Code::NotFound)
                        .then_some(()),
                )
            }
        })
        .await
    })
    .await;
}
