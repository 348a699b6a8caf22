//! `govctl quota request|list|approve|reject`.

use govbroker_api::proto::{self, QuotaRequest, ResourceAmounts};

use super::agency::amounts_text;
use super::{Listed, gather, print_list, print_with_hint};
use crate::cli::{Amounts, DecideArgs, QuotaCommand, QuotaListArgs, QuotaRequestArgs};
use crate::connect::Connection;
use crate::error::Failure;
use crate::output::{Format, Table, age, or_dash, print, truncate};

/// Runs a quota command.
pub async fn run(conn: &Connection, command: QuotaCommand, format: Format) -> Result<(), Failure> {
    match command {
        QuotaCommand::Request(args) => request(conn, args, format).await,
        QuotaCommand::List(args) => list(conn, args, format).await,
        QuotaCommand::Approve(args) => decide(conn, args, true, format).await,
        QuotaCommand::Reject(args) => decide(conn, args, false, format).await,
    }
}

/// The flags' amounts as a message (what is not given stays empty: unchanged).
pub fn amounts(a: Amounts) -> ResourceAmounts {
    ResourceAmounts {
        cpu: a.cpu.unwrap_or_default(),
        memory: a.memory.unwrap_or_default(),
        ephemeral_storage: a.ephemeral_storage.unwrap_or_default(),
        storage: a.storage.unwrap_or_default(),
        pods: a.pods.unwrap_or_default(),
        services: a.services.unwrap_or_default(),
        persistent_volume_claims: a.persistent_volume_claims.unwrap_or_default(),
    }
}

async fn request(conn: &Connection, args: QuotaRequestArgs, format: Format) -> Result<(), Failure> {
    let created = conn
        .answer(
            conn.quota_requests()
                .create_quota_request(proto::CreateQuotaRequestRequest {
                    agency: args.agency,
                    quota: Some(amounts(args.amounts)),
                    justification: args.justification,
                }),
        )
        .await?;
    print_with_hint(
        format,
        &created,
        || table(std::slice::from_ref(&created), jiff::Timestamp::now()),
        |r| {
            format!(
                "filed: an owner of {}'s parent decides with `govctl quota approve {} --reason ...` \
                 (or reject)",
                r.agency, r.name
            )
        },
    )
}

async fn list(conn: &Connection, args: QuotaListArgs, format: Format) -> Result<(), Failure> {
    let client = conn.quota_requests();
    let agency = args.agency.unwrap_or_default();
    let phase = args
        .phase
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let gathered = gather(args.paging, |page_size, page_token| {
        let mut client = client.clone();
        let request = proto::ListQuotaRequestsRequest {
            agency: agency.clone(),
            phase: phase.clone(),
            page_size,
            page_token,
        };
        async move {
            let page = conn.answer(client.list_quota_requests(request)).await?;
            Ok((page.quota_requests, page.next_page_token))
        }
    })
    .await?;
    let response = proto::ListQuotaRequestsResponse {
        quota_requests: gathered.items,
        next_page_token: gathered.next_page_token,
    };
    print_list(
        format,
        &response,
        || table(&response.quota_requests, jiff::Timestamp::now()),
        Listed {
            count: response.quota_requests.len(),
            next_page_token: &response.next_page_token,
            none: "no quota requests you may read match",
            what: "quota requests",
        },
    )
}

async fn decide(
    conn: &Connection,
    args: DecideArgs,
    approve: bool,
    format: Format,
) -> Result<(), Failure> {
    let request = proto::DecideQuotaRequestRequest {
        name: args.name,
        reason: args.reason,
    };
    let mut client = conn.quota_requests();
    let decided = if approve {
        conn.answer(client.approve_quota_request(request)).await?
    } else {
        conn.answer(client.reject_quota_request(request)).await?
    };
    print(format, &decided, || {
        table(std::slice::from_ref(&decided), jiff::Timestamp::now())
    })
}

/// The table of quota requests.
pub fn table(requests: &[QuotaRequest], now: jiff::Timestamp) -> String {
    let mut table = Table::new(&[
        "name",
        "agency",
        "phase",
        "quota",
        "decision",
        "decided by",
        "age",
        "justification",
    ]);
    for r in requests {
        let decision = r.decision.clone().unwrap_or_default();
        table.row(vec![
            r.name.clone(),
            r.agency.clone(),
            r.phase.clone(),
            amounts_text(r.quota.as_ref()),
            or_dash(&decision.outcome),
            or_dash(&decision.decided_by),
            age(&r.created_at, now),
            truncate(&r.justification, 40),
        ]);
    }
    if table.is_empty() {
        return String::new();
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_render_with_their_decision() {
        let now = "2026-01-01T01:00:00Z".parse().unwrap();
        let request = QuotaRequest {
            name: "so-y-te-abc12".into(),
            agency: "so-y-te".into(),
            quota: Some(ResourceAmounts {
                cpu: "4".into(),
                memory: "8Gi".into(),
                ..Default::default()
            }),
            justification: "Cổng đăng ký tiêm chủng cần thêm tài nguyên cho đợt cao điểm".into(),
            phase: "Approved".into(),
            decision: Some(proto::QuotaDecision {
                outcome: "Approved".into(),
                reason: "đồng ý".into(),
                decided_by: "minister@gov.vn".into(),
                decided_at: "2026-01-01T00:30:00Z".into(),
            }),
            message: String::new(),
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        let text = table(&[request], now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME            AGENCY    PHASE      QUOTA              DECISION   DECIDED BY        AGE   JUSTIFICATION"
        );
        assert_eq!(
            lines[1],
            "so-y-te-abc12   so-y-te   Approved   cpu=4 memory=8Gi   Approved   minister@gov.vn   60m   Cổng đăng ký tiêm chủng cần thêm tài ng…"
        );
    }

    #[test]
    fn only_given_amounts_are_sent() {
        let a = amounts(Amounts {
            cpu: Some("4".into()),
            pods: Some("20".into()),
            ..Default::default()
        });
        assert_eq!(a.cpu, "4");
        assert_eq!(a.pods, "20");
        assert!(a.memory.is_empty() && a.storage.is_empty());
    }
}
