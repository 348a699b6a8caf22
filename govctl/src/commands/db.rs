//! `govctl db classes|create|get|list|delete|credentials|rotate|share|shares|approve|revoke|share-credentials`:
//! shared data services (PostgreSQL databases, Redis users) and shares between agencies.

use clap::{Args, Subcommand, ValueEnum};
use govbroker_api::proto::{self, DataServiceClaim, DataServiceClass, DataShare};

use super::{Listed, gather, print_list, print_with_hint};
use crate::cli::Paging;
use crate::connect::Connection;
use crate::error::Failure;
use crate::output::{Format, Table, age, emit, or_dash, print, truncate};

/// Help of `govctl db`.
pub const DB_EXAMPLES: &str = "\
An agency's owners claim a database (or a Redis user) from a class in one of the agency's
environments, read its credentials, and share it read-only with another agency; the owner
agency's owners approve a share before it grants anything.

EXAMPLES:
  govctl db classes
  govctl db create csdl-ho-tich --agency so-tu-phap-ha-noi --env prod --class postgres-dung-chung --plan co-ban
  govctl db list --agency so-tu-phap-ha-noi
  govctl db credentials csdl-ho-tich --agency so-tu-phap-ha-noi --env prod
  govctl db share csdl-ho-tich --agency so-tu-phap-ha-noi --env prod --to bhxh-ha-noi \\
      --expires 2026-12-31T23:59:59+07:00 --purpose \"Đối soát hộ tịch\"
  govctl db approve csdl-ho-tich-x7k2p
  govctl db share-credentials csdl-ho-tich-x7k2p --env prod   # as an owner of bhxh-ha-noi";

/// `govctl db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// List the data-service classes (shared servers) and their plans
    #[command(after_help = CLASSES_EXAMPLES)]
    Classes(ClassesArgs),
    /// Claim a database or Redis user in one of an agency's environments
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),
    /// Show one claim: class, plan, phase, endpoint, conditions
    #[command(after_help = GET_EXAMPLES)]
    Get(ClaimArgs),
    /// List the claims you may read
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Delete a claim (its data is dropped or kept, as its deletion policy says)
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(ClaimArgs),
    /// Print a claim's connection details and credentials (the agency's owners only)
    #[command(after_help = CREDENTIALS_EXAMPLES)]
    Credentials(CredentialsArgs),
    /// Give a claim a new password (the binding Secret follows at once)
    #[command(after_help = ROTATE_EXAMPLES)]
    Rotate(ClaimArgs),
    /// Propose sharing a claim read-only with another agency until an expiry
    #[command(after_help = SHARE_EXAMPLES)]
    Share(ShareArgs),
    /// List the shares of the agencies you may read, newest first
    #[command(after_help = SHARES_EXAMPLES)]
    Shares(SharesArgs),
    /// Approve a proposed share (owners of the agency whose data is shared)
    #[command(after_help = APPROVE_EXAMPLES)]
    Approve(ShareNameArgs),
    /// End a share for good (owners of either agency)
    #[command(after_help = REVOKE_EXAMPLES)]
    Revoke(ShareNameArgs),
    /// Print a granted share's read-only credentials (the consumer agency's owners only)
    #[command(after_help = SHARE_CREDENTIALS_EXAMPLES)]
    ShareCredentials(ShareCredentialsArgs),
}

const CLASSES_EXAMPLES: &str = "\
One line per plan. LIMITS are the plan's: connections and storage for PostgreSQL, memory
and keys for Redis. LEVELS are the security levels that may claim the class.

EXAMPLES:
  govctl db classes
  govctl db classes --engine redis --security-level 3
  govctl db classes -o json";

/// `govctl db classes`.
#[derive(Debug, Clone, Args)]
pub struct ClassesArgs {
    /// Only classes of this engine
    #[arg(long, value_enum, ignore_case = true)]
    pub engine: Option<Engine>,
    /// Only classes an agency of this security level may claim
    #[arg(long, value_name = "1-5", value_parser = clap::value_parser!(u32).range(1..=5))]
    pub security_level: Option<u32>,
    /// How many to show.
    #[command(flatten)]
    pub paging: Paging,
}

/// A data-service engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// PostgreSQL: a claim is a database.
    Postgres,
    /// Redis: a claim is an ACL user with its own key prefix.
    Redis,
}

/// Where a claim lives: the agency and one of its environments.
#[derive(Debug, Clone, Args)]
pub struct Place {
    /// The agency that holds the claim
    #[arg(long, value_name = "AGENCY")]
    pub agency: String,
    /// The agency's environment (namespace <agency>-<env>), e.g. prod
    #[arg(long, value_name = "ENV")]
    pub env: String,
}

const CREATE_EXAMPLES: &str = "\
The claim is provisioned by the platform's broker; `govctl db get` shows when it is Ready,
then `govctl db credentials` prints how to connect. The default deletion policy, Retain,
keeps the data on the server when the claim is deleted; --deletion-policy delete drops it.

EXAMPLES:
  govctl db create csdl-ho-tich --agency so-tu-phap-ha-noi --env prod \\
      --class postgres-dung-chung --plan co-ban
  govctl db create phien-dang-nhap --agency so-tu-phap-ha-noi --env staging \\
      --class redis-dung-chung --plan nho --deletion-policy delete
  govctl db create gis --agency so-tnmt --env prod --class postgres-dung-chung --plan vua \\
      --param extensions=postgis";

/// `govctl db create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The claim's name (lowercase letters, digits and '-')
    pub name: String,
    /// Where.
    #[command(flatten)]
    pub place: Place,
    /// The data-service class (see `govctl db classes`)
    #[arg(long, value_name = "CLASS")]
    pub class: String,
    /// One of the class's plans
    #[arg(long, value_name = "PLAN")]
    pub plan: String,
    /// An engine-specific setting, KEY=VALUE (repeatable)
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parameter)]
    pub params: Vec<(String, String)>,
    /// What deleting the claim does to the data [default: retain]
    #[arg(long, value_enum, ignore_case = true)]
    pub deletion_policy: Option<DeletionPolicy>,
}

fn parameter(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected KEY=VALUE, e.g. extensions=postgis".to_owned())
}

/// What deleting a claim does to its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeletionPolicy {
    /// Keep the data on the server.
    Retain,
    /// Drop the data.
    Delete,
}

const GET_EXAMPLES: &str = "\
EXAMPLES:
  govctl db get csdl-ho-tich --agency so-tu-phap-ha-noi --env prod
  govctl db get csdl-ho-tich --agency so-tu-phap-ha-noi --env prod -o yaml";

const DELETE_EXAMPLES: &str = "\
With deletion policy Retain the data stays on the server for a platform operator to
archive or hand over; with Delete it is dropped.

EXAMPLES:
  govctl db delete csdl-ho-tich --agency so-tu-phap-ha-noi --env prod";

/// `govctl db get` and `govctl db delete`.
#[derive(Debug, Clone, Args)]
pub struct ClaimArgs {
    /// The claim's name
    pub name: String,
    /// Where.
    #[command(flatten)]
    pub place: Place,
}

const LIST_EXAMPLES: &str = "\
Columns: NAME, AGENCY, ENV, CLASS, PLAN, PHASE, ENDPOINT, DELETION (policy), AGE.

EXAMPLES:
  govctl db list
  govctl db list --agency so-tu-phap-ha-noi --env prod
  govctl db list --class postgres-dung-chung --all -o json";

/// `govctl db list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only this agency's claims
    #[arg(long, value_name = "AGENCY")]
    pub agency: Option<String>,
    /// Only this environment of the agency
    #[arg(long, value_name = "ENV", requires = "agency")]
    pub env: Option<String>,
    /// Only claims of this class
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
    /// How many to show.
    #[command(flatten)]
    pub paging: Paging,
}

const CREDENTIALS_EXAMPLES: &str = "\
Only callers who may read Secrets in the claim's namespace (the agency's owners) receive
them; every call is recorded in the audit trail. The output holds a password: do not paste
it into tickets or chats. Workloads should mount the binding Secret instead (its name is
printed as SECRET).

EXAMPLES:
  govctl db credentials csdl-ho-tich --agency so-tu-phap-ha-noi --env prod
  psql \"$(govctl db credentials csdl-ho-tich --agency so-tu-phap-ha-noi --env prod --uri)\"
  govctl db credentials csdl-ho-tich --agency so-tu-phap-ha-noi --env prod -o json
  govctl db credentials csdl-ho-tich --agency so-tu-phap-ha-noi --env prod --save-ca ca.crt";

/// `govctl db credentials`.
#[derive(Debug, Clone, Args)]
pub struct CredentialsArgs {
    /// The claim's name
    pub name: String,
    /// Where.
    #[command(flatten)]
    pub place: Place,
    /// Print only the connection URI (for scripts)
    #[arg(long)]
    pub uri: bool,
    /// Also save the server's CA certificate (PEM) to this file, for clients that verify
    /// the server (psql's sslrootcert, redis-cli's --cacert)
    #[arg(long, value_name = "PATH")]
    pub save_ca: Option<std::path::PathBuf>,
}

const ROTATE_EXAMPLES: &str = "\
The broker changes the password on the server and in the binding Secret; open connections
stay open, new ones need the new password (workloads that mount the Secret pick it up when
they reconnect). `govctl db get` shows the rotation (Password Rotated) once it is done.

EXAMPLES:
  govctl db rotate csdl-ho-tich --agency so-tu-phap-ha-noi --env prod";

const SHARE_EXAMPLES: &str = "\
Proposes a share; it grants nothing until an owner of the agency whose data is shared
approves it (`govctl db approve NAME`). The consumer agency then receives a read-only
login. Access ends at the expiry, or when an owner of either agency revokes it.

EXAMPLES:
  govctl db share ho-so-benh-an --agency so-y-te-ha-noi --env prod --to bhxh-ha-noi \\
      --expires 2026-12-31T23:59:59+07:00 --purpose \"Giám định bảo hiểm y tế\"
  govctl db share ho-so-benh-an --agency so-y-te-ha-noi --env prod --to bhxh-ha-noi \\
      --expires 2026-06-30T00:00:00Z --name benh-an-cho-bhxh";

/// `govctl db share`.
#[derive(Debug, Clone, Args)]
pub struct ShareArgs {
    /// The claim whose data is shared
    pub claim: String,
    /// Where the claim is (the owner agency and its environment).
    #[command(flatten)]
    pub place: Place,
    /// The agency to be given read access
    #[arg(long, value_name = "AGENCY")]
    pub to: String,
    /// When access ends (RFC 3339, in the future)
    #[arg(long, value_name = "TIME")]
    pub expires: String,
    /// Why the consumer needs the data (kept in the audit trail)
    #[arg(long, value_name = "TEXT")]
    pub purpose: Option<String>,
    /// The share's name [default: chosen by the server from the claim's]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

const SHARES_EXAMPLES: &str = "\
Columns: NAME, OWNER, CLAIM, CONSUMER, EXPIRES, APPROVED BY, PHASE, AGE.

EXAMPLES:
  govctl db shares
  govctl db shares --agency bhxh-ha-noi --phase granted
  govctl db shares --all -o json";

/// `govctl db shares`.
#[derive(Debug, Clone, Args)]
pub struct SharesArgs {
    /// Only shares this agency owns or consumes
    #[arg(long, value_name = "AGENCY")]
    pub agency: Option<String>,
    /// Only shares in this phase
    #[arg(long, value_enum, ignore_case = true)]
    pub phase: Option<SharePhase>,
    /// How many to show.
    #[command(flatten)]
    pub paging: Paging,
}

/// A share's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SharePhase {
    /// Waiting for approval.
    Pending,
    /// The consumer can read the data.
    Granted,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl SharePhase {
    fn as_str(self) -> &'static str {
        match self {
            SharePhase::Pending => "Pending",
            SharePhase::Granted => "Granted",
            SharePhase::Expired => "Expired",
            SharePhase::Revoked => "Revoked",
        }
    }
}

const APPROVE_EXAMPLES: &str = "\
Only owners of the agency whose data is shared (or platform admins) may approve; the
platform records who approved and when.

EXAMPLES:
  govctl db approve ho-so-benh-an-x7k2p";

const REVOKE_EXAMPLES: &str = "\
Final: a revoked share cannot be approved again; propose a new one.

EXAMPLES:
  govctl db revoke ho-so-benh-an-x7k2p";

const SHARE_CREDENTIALS_EXAMPLES: &str = "\
Once a share is Granted, the platform keeps the consumer's read-only login in the Secret
<share>-share in each of the consumer agency's namespaces; this prints the one in
--env. Only callers who may read Secrets there (the consumer agency's owners) receive it;
every call is recorded in the audit trail. Before approval it is not found (exit 5). The
output holds a password: workloads should mount the Secret instead.

EXAMPLES:
  govctl db share-credentials benh-an-cho-bhxh --env prod
  psql \"$(govctl db share-credentials benh-an-cho-bhxh --env prod --uri)\"
  govctl db share-credentials benh-an-cho-bhxh --env prod -o json";

/// `govctl db share-credentials`.
#[derive(Debug, Clone, Args)]
pub struct ShareCredentialsArgs {
    /// The share's name (see `govctl db shares`)
    pub name: String,
    /// The consumer agency's environment whose Secret to read (namespace <consumer>-<env>), e.g. prod
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Print only the connection URI (for scripts)
    #[arg(long)]
    pub uri: bool,
    /// Also save the server's CA certificate (PEM) to this file, for clients that verify
    /// the server (psql's sslrootcert, redis-cli's --cacert)
    #[arg(long, value_name = "PATH")]
    pub save_ca: Option<std::path::PathBuf>,
}

/// `govctl db approve` and `govctl db revoke`.
#[derive(Debug, Clone, Args)]
pub struct ShareNameArgs {
    /// The share's name (see `govctl db shares`)
    pub name: String,
}

/// Runs a db command.
pub async fn run(conn: &Connection, command: DbCommand, format: Format) -> Result<(), Failure> {
    let now = jiff::Timestamp::now();
    let mut client = conn.data_services();
    let claim_row = |claim: &DataServiceClaim| claims_table(std::slice::from_ref(claim), now);
    let share_row = |share: &DataShare| shares_table(std::slice::from_ref(share), now);
    match command {
        DbCommand::Classes(args) => {
            let engine = args
                .engine
                .map(|e| match e {
                    Engine::Postgres => "postgres",
                    Engine::Redis => "redis",
                })
                .unwrap_or_default()
                .to_owned();
            let security_level = args.security_level.unwrap_or_default();
            let gathered = gather(args.paging, |page_size, page_token| {
                let mut client = client.clone();
                let request = proto::ListDataServiceClassesRequest {
                    engine: engine.clone(),
                    security_level,
                    page_size,
                    page_token,
                };
                async move {
                    let page = conn
                        .answer(client.list_data_service_classes(request))
                        .await?;
                    Ok((page.classes, page.next_page_token))
                }
            })
            .await?;
            let response = proto::ListDataServiceClassesResponse {
                classes: gathered.items,
                next_page_token: gathered.next_page_token,
            };
            print_list(
                format,
                &response,
                || classes_table(&response.classes),
                Listed {
                    count: response.classes.len(),
                    next_page_token: &response.next_page_token,
                    none: "no data-service classes match",
                    what: "classes",
                },
            )
        }
        DbCommand::Create(args) => {
            let claim = DataServiceClaim {
                name: args.name,
                agency: args.place.agency,
                environment: args.place.env,
                class_name: args.class,
                plan: args.plan,
                parameters: args
                    .params
                    .into_iter()
                    .map(|(key, value)| proto::DataServiceParameter { key, value })
                    .collect(),
                deletion_policy: match args.deletion_policy {
                    Some(DeletionPolicy::Delete) => "Delete",
                    Some(DeletionPolicy::Retain) => "Retain",
                    None => "",
                }
                .to_owned(),
                ..Default::default()
            };
            let created =
                conn.answer(client.create_data_service_claim(
                    proto::CreateDataServiceClaimRequest { claim: Some(claim) },
                ))
                .await?;
            print_with_hint(
                format,
                &created,
                || claim_row(&created),
                |c| {
                    format!(
                        "claimed: `govctl db get {} --agency {} --env {}` shows when it is Ready",
                        c.name, c.agency, c.environment
                    )
                },
            )
        }
        DbCommand::Get(args) => {
            let claim = conn
                .answer(
                    client.get_data_service_claim(proto::GetDataServiceClaimRequest {
                        agency: args.place.agency,
                        environment: args.place.env,
                        name: args.name,
                    }),
                )
                .await?;
            print(format, &claim, || claim_details(&claim, now))
        }
        DbCommand::List(args) => {
            let agency = args.agency.unwrap_or_default();
            let environment = args.env.unwrap_or_default();
            let class_name = args.class.unwrap_or_default();
            let gathered = gather(args.paging, |page_size, page_token| {
                let mut client = client.clone();
                let request = proto::ListDataServiceClaimsRequest {
                    agency: agency.clone(),
                    environment: environment.clone(),
                    class_name: class_name.clone(),
                    page_size,
                    page_token,
                };
                async move {
                    let page = conn
                        .answer(client.list_data_service_claims(request))
                        .await?;
                    Ok((page.claims, page.next_page_token))
                }
            })
            .await?;
            let response = proto::ListDataServiceClaimsResponse {
                claims: gathered.items,
                next_page_token: gathered.next_page_token,
            };
            print_list(
                format,
                &response,
                || claims_table(&response.claims, now),
                Listed {
                    count: response.claims.len(),
                    next_page_token: &response.next_page_token,
                    none: "no data-service claims you may read match",
                    what: "claims",
                },
            )
        }
        DbCommand::Delete(args) => {
            let response = conn
                .answer(
                    client.delete_data_service_claim(proto::DeleteDataServiceClaimRequest {
                        agency: args.place.agency.clone(),
                        environment: args.place.env.clone(),
                        name: args.name.clone(),
                    }),
                )
                .await?;
            print(format, &response, || {
                format!(
                    "data-service claim {} in {}-{} is being deleted\n",
                    args.name, args.place.agency, args.place.env
                )
            })
        }
        DbCommand::Credentials(args) => {
            let binding = conn
                .answer(
                    client.get_data_service_binding(proto::GetDataServiceBindingRequest {
                        agency: args.place.agency,
                        environment: args.place.env,
                        name: args.name,
                    }),
                )
                .await?;
            print_binding(format, &binding, args.save_ca.as_deref(), args.uri)
        }
        DbCommand::Rotate(args) => {
            let claim = conn
                .answer(client.rotate_data_service_password(
                    proto::RotateDataServicePasswordRequest {
                        agency: args.place.agency,
                        environment: args.place.env,
                        name: args.name,
                    },
                ))
                .await?;
            print_with_hint(
                format,
                &claim,
                || claim_row(&claim),
                |c| {
                    format!(
                        "rotation requested: `govctl db credentials {} --agency {} --env {}` shows the new password once the broker has changed it",
                        c.name, c.agency, c.environment
                    )
                },
            )
        }
        DbCommand::Share(args) => {
            let created = conn
                .answer(client.create_data_share(proto::CreateDataShareRequest {
                    name: args.name.unwrap_or_default(),
                    owner_agency: args.place.agency,
                    owner_environment: args.place.env,
                    claim: args.claim,
                    consumer_agency: args.to,
                    expires_at: args.expires,
                    purpose: args.purpose.unwrap_or_default(),
                }))
                .await?;
            print_with_hint(
                format,
                &created,
                || share_row(&created),
                |s| {
                    format!(
                        "proposed: an owner of {} approves with `govctl db approve {}`",
                        s.owner_agency, s.name
                    )
                },
            )
        }
        DbCommand::Shares(args) => {
            let agency = args.agency.unwrap_or_default();
            let phase = args
                .phase
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let gathered = gather(args.paging, |page_size, page_token| {
                let mut client = client.clone();
                let request = proto::ListDataSharesRequest {
                    agency: agency.clone(),
                    phase: phase.clone(),
                    page_size,
                    page_token,
                };
                async move {
                    let page = conn.answer(client.list_data_shares(request)).await?;
                    Ok((page.shares, page.next_page_token))
                }
            })
            .await?;
            let response = proto::ListDataSharesResponse {
                shares: gathered.items,
                next_page_token: gathered.next_page_token,
            };
            print_list(
                format,
                &response,
                || shares_table(&response.shares, now),
                Listed {
                    count: response.shares.len(),
                    next_page_token: &response.next_page_token,
                    none: "no data shares you may read match",
                    what: "shares",
                },
            )
        }
        DbCommand::Approve(args) => {
            let share = conn
                .answer(
                    client.approve_data_share(proto::ApproveDataShareRequest { name: args.name }),
                )
                .await?;
            print(format, &share, || share_row(&share))
        }
        DbCommand::Revoke(args) => {
            let share = conn
                .answer(client.revoke_data_share(proto::RevokeDataShareRequest { name: args.name }))
                .await?;
            print(format, &share, || share_row(&share))
        }
        DbCommand::ShareCredentials(args) => {
            let binding = conn
                .answer(
                    client.get_data_share_binding(proto::GetDataShareBindingRequest {
                        name: args.name,
                        environment: args.env,
                    }),
                )
                .await?;
            print_binding(format, &binding, args.save_ca.as_deref(), args.uri)
        }
    }
}

/// Prints a binding (a claim's or a share's): with `uri`, only its connection URI (for
/// scripts); first saving its CA certificate to `save_ca` when asked.
fn print_binding(
    format: Format,
    binding: &proto::DataServiceBinding,
    save_ca_to: Option<&std::path::Path>,
    uri: bool,
) -> Result<(), Failure> {
    if let Some(path) = save_ca_to {
        save_ca(path, binding)?;
    }
    if uri {
        return emit(&format!("{}\n", binding.uri));
    }
    print(format, binding, || binding_table(binding))
}

/// A plan's limits in words, e.g. `20 conn, 10Gi` or `256Mi, 100000 keys`.
pub fn limits_text(plan: &proto::DataServicePlan) -> String {
    let mut parts = Vec::new();
    if plan.max_connections > 0 {
        parts.push(format!("{} conn", plan.max_connections));
    }
    for q in [&plan.storage, &plan.memory] {
        if !q.is_empty() {
            parts.push(q.clone());
        }
    }
    if plan.max_keys > 0 {
        parts.push(format!("{} keys", plan.max_keys));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The table of classes: one line per plan.
pub fn classes_table(classes: &[DataServiceClass]) -> String {
    let mut table = Table::new(&[
        "class",
        "engine",
        "server",
        "plan",
        "limits",
        "levels",
        "ready",
        "description",
    ]);
    for class in classes {
        let levels = class
            .allowed_security_levels
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let server = format!("{}:{}", class.host, class.port);
        let ready = if class.ready { "True" } else { "False" };
        if class.plans.is_empty() {
            table.row(vec![
                class.name.clone(),
                class.engine.clone(),
                server.clone(),
                "-".into(),
                "-".into(),
                or_dash(&levels),
                ready.into(),
                String::new(),
            ]);
        }
        for plan in &class.plans {
            table.row(vec![
                class.name.clone(),
                class.engine.clone(),
                server.clone(),
                plan.name.clone(),
                limits_text(plan),
                or_dash(&levels),
                ready.into(),
                truncate(&plan.description, 50),
            ]);
        }
    }
    if table.is_empty() {
        return String::new();
    }
    table.render()
}

/// The table of claims.
pub fn claims_table(claims: &[DataServiceClaim], now: jiff::Timestamp) -> String {
    let mut table = Table::new(&[
        "name", "agency", "env", "class", "plan", "phase", "endpoint", "deletion", "age",
    ]);
    for c in claims {
        let status = c.status.clone().unwrap_or_default();
        table.row(vec![
            c.name.clone(),
            or_dash(&c.agency),
            or_dash(&c.environment),
            c.class_name.clone(),
            c.plan.clone(),
            if status.phase.is_empty() {
                "Pending".to_owned()
            } else {
                status.phase
            },
            or_dash(&status.endpoint),
            or_dash(&c.deletion_policy),
            age(&c.created_at, now),
        ]);
    }
    if table.is_empty() {
        return String::new();
    }
    table.render()
}

/// One claim in detail: its row, then its message and conditions.
pub fn claim_details(claim: &DataServiceClaim, now: jiff::Timestamp) -> String {
    let mut out = claims_table(std::slice::from_ref(claim), now);
    let status = claim.status.clone().unwrap_or_default();
    out.push('\n');
    out.push_str(&format!("Namespace:       {}\n", claim.namespace));
    out.push_str(&format!(
        "Binding Secret:  {}\n",
        or_dash(&status.binding_secret)
    ));
    if !claim.parameters.is_empty() {
        let params: Vec<String> = claim
            .parameters
            .iter()
            .map(|p| format!("{}={}", p.key, p.value))
            .collect();
        out.push_str(&format!("Parameters:      {}\n", params.join(" ")));
    }
    if !status.password_rotation.is_empty() {
        out.push_str(&format!("Password Rotated: {}\n", status.password_rotation));
    }
    if status.retained {
        out.push_str("Retained:        true (the data stays on the server)\n");
    }
    if !status.message.is_empty() {
        out.push_str(&format!("Message:         {}\n", status.message));
    }
    if !status.conditions.is_empty() {
        out.push('\n');
        let mut table = Table::new(&["condition", "status", "reason", "message"]);
        for c in &status.conditions {
            table.row(vec![
                c.r#type.clone(),
                c.status.clone(),
                c.reason.clone(),
                truncate(&c.message, 80),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

/// Writes a binding's CA certificate to `path`.
fn save_ca(path: &std::path::Path, binding: &proto::DataServiceBinding) -> Result<(), Failure> {
    if binding.ca_crt.is_empty() {
        return Err(Failure::usage(
            "this binding has no CA certificate: its class uses the system's trusted roots or no TLS; leave out --save-ca",
        ));
    }
    std::fs::write(path, &binding.ca_crt).map_err(|e| {
        Failure::other(format!(
            "writing the CA certificate to {}: {e}",
            path.display()
        ))
    })
}

/// A binding as KEY VALUE lines (the keys of the Secret).
pub fn binding_table(b: &proto::DataServiceBinding) -> String {
    let mut table = Table::new(&["key", "value"]);
    let port = b.port.to_string();
    // A certificate does not fit a table row: say what it is and how to save it.
    let ca = if b.ca_crt.is_empty() {
        String::new()
    } else {
        format!(
            "PEM certificate, {} bytes (save it with --save-ca PATH)",
            b.ca_crt.len()
        )
    };
    for (key, value) in [
        ("secret", &b.secret_name),
        ("namespace", &b.namespace),
        ("host", &b.host),
        ("port", &port),
        ("username", &b.username),
        ("password", &b.password),
        ("database", &b.database),
        ("prefix", &b.prefix),
        ("uri", &b.uri),
        ("sslmode", &b.sslmode),
        ("ca.crt", &ca),
    ] {
        if !value.is_empty() {
            table.row(vec![key.to_owned(), value.clone()]);
        }
    }
    table.render()
}

/// The table of shares.
pub fn shares_table(shares: &[DataShare], now: jiff::Timestamp) -> String {
    let mut table = Table::new(&[
        "name",
        "owner",
        "claim",
        "consumer",
        "expires",
        "approved by",
        "phase",
        "age",
    ]);
    for s in shares {
        let status = s.status.clone().unwrap_or_default();
        let phase = if s.revoked && status.phase != "Revoked" {
            // Revoked in the spec; the broker has not caught up yet.
            "Revoked".to_owned()
        } else if status.phase.is_empty() {
            "Pending".to_owned()
        } else {
            status.phase
        };
        table.row(vec![
            s.name.clone(),
            s.owner_agency.clone(),
            s.claim.clone(),
            s.consumer_agency.clone(),
            s.expires_at.clone(),
            or_dash(&s.approved_by),
            phase,
            age(&s.created_at, now),
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

    fn now() -> jiff::Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn classes_show_one_line_per_plan() {
        let class = DataServiceClass {
            name: "postgres-dung-chung".into(),
            engine: "postgres".into(),
            host: "127.0.0.1".into(),
            port: 15432,
            plans: vec![
                proto::DataServicePlan {
                    name: "nho".into(),
                    description: "Cơ sở dữ liệu nhỏ".into(),
                    max_connections: 10,
                    storage: "5Gi".into(),
                    ..Default::default()
                },
                proto::DataServicePlan {
                    name: "vua".into(),
                    description: "Cơ sở dữ liệu vừa".into(),
                    max_connections: 50,
                    ..Default::default()
                },
            ],
            allowed_security_levels: vec![1, 2, 3],
            ready: true,
            ..Default::default()
        };
        let text = classes_table(&[class]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "CLASS                 ENGINE     SERVER            PLAN   LIMITS         LEVELS   READY   DESCRIPTION"
        );
        assert_eq!(
            lines[1],
            "postgres-dung-chung   postgres   127.0.0.1:15432   nho    10 conn, 5Gi   1,2,3    True    Cơ sở dữ liệu nhỏ"
        );
        assert!(lines[2].contains("vua    50 conn"), "{}", lines[2]);
    }

    #[test]
    fn claims_read_pending_until_the_broker_says() {
        let claim = DataServiceClaim {
            name: "csdl".into(),
            agency: "so-y-te".into(),
            environment: "prod".into(),
            class_name: "pg".into(),
            plan: "nho".into(),
            deletion_policy: "Retain".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        let text = claims_table(&[claim], now());
        assert_eq!(
            text.lines().nth(1),
            Some("csdl   so-y-te   prod   pg      nho    Pending   -          Retain     60m")
        );
    }

    #[test]
    fn a_binding_prints_only_its_keys() {
        let b = proto::DataServiceBinding {
            secret_name: "csdl-binding".into(),
            host: "127.0.0.1".into(),
            port: 16379,
            username: "ns.csdl".into(),
            password: "pw".into(),
            prefix: "ns/csdl".into(),
            ..Default::default()
        };
        let text = binding_table(&b);
        assert!(text.contains("prefix     ns/csdl"), "{text}");
        assert!(!text.contains("database"), "{text}");
        assert!(!text.contains("ca.crt"), "{text}");
        let tls = proto::DataServiceBinding {
            sslmode: "verify-full".into(),
            ca_crt: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            ..b
        };
        let text = binding_table(&tls);
        assert!(text.contains("sslmode    verify-full"), "{text}");
        assert!(
            text.contains("ca.crt     PEM certificate, 59 bytes (save it with --save-ca PATH)"),
            "{text}"
        );
        assert!(!text.contains("MIIB"), "{text}");
    }

    #[test]
    fn a_revoked_share_reads_revoked_before_the_broker_catches_up() {
        let share = DataShare {
            name: "s".into(),
            owner_agency: "a".into(),
            claim: "c".into(),
            consumer_agency: "b".into(),
            expires_at: "2026-12-31T16:59:59Z".into(),
            revoked: true,
            ..Default::default()
        };
        assert!(shares_table(&[share], now()).contains("Revoked"));
    }

    #[test]
    fn parameters_need_an_equals_sign() {
        assert_eq!(
            parameter("extensions=postgis=3").unwrap(),
            ("extensions".into(), "postgis=3".into())
        );
        assert!(parameter("extensions").is_err());
    }
}
