//! `govctl app create|get|list|scale|pause|resume|delete|logs-hint`: an agency's
//! applications (Workloads), run inside its quota and security level.

use clap::{Args, Subcommand};
use govbroker_api::proto::{self, Workload};

use super::{Listed, gather, print_list, print_with_hint};
use crate::cli::Paging;
use crate::connect::Connection;
use crate::error::Failure;
use crate::output::{Format, Table, age, emit, or_dash, print, truncate};

/// Help of `govctl app`.
pub const APP_EXAMPLES: &str = "\
An agency's owners run an application from a container image in one of the agency's
environments, without writing Kubernetes manifests. The platform hardens its pods for
the agency's security level and keeps it inside the environment's quota: a workload that
does not fit says QuotaExceeded and how much is left, and nothing is changed.

EXAMPLES:
  govctl app create cong-dich-vu --agency so-tttt-da-nang --env prod \\
      --image registry.gov.vn/so-tttt/cong-dich-vu:1.4.2 --replicas 2 --cpu 250m --memory 256Mi \\
      --port http=8080 --health-path /healthz --claim csdl-ho-tich
  govctl app list --agency so-tttt-da-nang --env prod
  govctl app scale cong-dich-vu --agency so-tttt-da-nang --env prod --replicas 4
  govctl app get cong-dich-vu --agency so-tttt-da-nang --env prod --watch";

/// `govctl app ...`.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Run an application in one of an agency's environments
    #[command(after_help = CREATE_EXAMPLES)]
    Create(Box<CreateArgs>),
    /// Show one application: image, replicas, phase, quota left, conditions
    #[command(after_help = GET_EXAMPLES)]
    Get(GetArgs),
    /// List the applications of an agency's environment
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Change the number of replicas (within the quota)
    #[command(after_help = SCALE_EXAMPLES)]
    Scale(ScaleArgs),
    /// Stop every replica, keeping the application
    #[command(after_help = PAUSE_EXAMPLES)]
    Pause(AppArgs),
    /// Start the replicas of a paused application again
    #[command(after_help = RESUME_EXAMPLES)]
    Resume(AppArgs),
    /// Delete an application with its Deployment, Service and pods
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(AppArgs),
    /// Print the kubectl commands that show an application's pods, logs and events
    #[command(name = "logs-hint", after_help = LOGS_HINT_EXAMPLES)]
    LogsHint(AppArgs),
}

/// Where an application lives: the agency and one of its environments.
#[derive(Debug, Clone, Args)]
pub struct Place {
    /// The agency
    #[arg(long, value_name = "AGENCY")]
    pub agency: String,
    /// The agency's environment (namespace <agency>-<env>), e.g. prod
    #[arg(long, value_name = "ENV")]
    pub env: String,
}

/// One application.
#[derive(Debug, Clone, Args)]
pub struct AppArgs {
    /// The application's name
    pub name: String,
    /// Where.
    #[command(flatten)]
    pub place: Place,
}

const PAUSE_EXAMPLES: &str = "\
EXAMPLES:
  govctl app pause cong-dich-vu --agency so-tttt-da-nang --env staging";

const RESUME_EXAMPLES: &str = "\
EXAMPLES:
  govctl app resume cong-dich-vu --agency so-tttt-da-nang --env staging";

const DELETE_EXAMPLES: &str = "\
EXAMPLES:
  govctl app delete cong-dich-vu --agency so-tttt-da-nang --env staging";

const LOGS_HINT_EXAMPLES: &str = "\
EXAMPLES:
  govctl app logs-hint cong-dich-vu --agency so-tttt-da-nang --env prod";

const CREATE_EXAMPLES: &str = "\
--claim NAME hands the binding of a data-service claim (see `govctl db`) to the container
as variables <CLAIM>_HOST, _PORT, _USERNAME, _PASSWORD, _DATABASE, _URI; --claim-file NAME
mounts it as files under /var/run/govbroker/data-services/NAME/ instead. At security
levels 3-5 images must come from the registries the platform allows.

EXAMPLES:
  govctl app create cong-dich-vu --agency so-tttt-da-nang --env prod \\
      --image registry.gov.vn/so-tttt/cong-dich-vu:1.4.2 --port http=8080
  govctl app create bao-cao --agency so-tttt-da-nang --env staging \\
      --image registry.gov.vn/so-tttt/bao-cao:2 --cpu 500m --memory 1Gi --memory-limit 2Gi \\
      --env-var LOG_LEVEL=debug --claim-file csdl-bao-cao -- /app/bao-cao --serve";

/// `govctl app create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The application's name (a lowercase letter, then letters, digits and '-')
    pub name: String,
    /// Where.
    #[command(flatten)]
    pub place: Place,
    /// The container image
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// How many replicas [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..=100))]
    pub replicas: Option<i32>,
    /// CPU each replica requests (what the quota counts) [default: 100m]
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<String>,
    /// Memory each replica requests [default: 128Mi]
    #[arg(long, value_name = "MEMORY")]
    pub memory: Option<String>,
    /// Most CPU a replica may use
    #[arg(long, value_name = "CPU")]
    pub cpu_limit: Option<String>,
    /// Most memory a replica may use
    #[arg(long, value_name = "MEMORY")]
    pub memory_limit: Option<String>,
    /// A port, NAME=PORT or NAME=PORT/UDP (repeatable)
    #[arg(long = "port", value_name = "NAME=PORT", value_parser = port)]
    pub ports: Vec<proto::WorkloadPort>,
    /// An environment variable, NAME=VALUE (repeatable)
    #[arg(long = "env-var", value_name = "NAME=VALUE", value_parser = env_var)]
    pub env_vars: Vec<(String, String)>,
    /// A data-service claim whose binding becomes environment variables (repeatable)
    #[arg(long = "claim", value_name = "CLAIM")]
    pub claims: Vec<String>,
    /// A data-service claim whose binding is mounted as files (repeatable)
    #[arg(long = "claim-file", value_name = "CLAIM")]
    pub claim_files: Vec<String>,
    /// HTTP path probed on the first port, e.g. /healthz
    #[arg(long, value_name = "PATH")]
    pub health_path: Option<String>,
    /// Create it paused (no replica runs)
    #[arg(long)]
    pub paused: bool,
    /// The command to run instead of the image's entrypoint (after `--`)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn port(text: &str) -> Result<proto::WorkloadPort, String> {
    let (name, rest) = text
        .split_once('=')
        .ok_or_else(|| "expected NAME=PORT, e.g. http=8080".to_owned())?;
    let (number, protocol) = rest.split_once('/').unwrap_or((rest, "TCP"));
    let port = number
        .parse::<i32>()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| format!("{number:?} is not a port number 1-65535"))?;
    Ok(proto::WorkloadPort {
        name: name.to_owned(),
        port,
        protocol: protocol.to_ascii_uppercase(),
    })
}

fn env_var(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected NAME=VALUE, e.g. LOG_LEVEL=info".to_owned())
}

const GET_EXAMPLES: &str = "\
--watch follows the application (a server stream) and prints a line at every change
until you press Ctrl-C.

EXAMPLES:
  govctl app get cong-dich-vu --agency so-tttt-da-nang --env prod
  govctl app get cong-dich-vu --agency so-tttt-da-nang --env prod --watch
  govctl app get cong-dich-vu --agency so-tttt-da-nang --env prod -o yaml";

/// `govctl app get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The application's name
    pub name: String,
    /// Where.
    #[command(flatten)]
    pub place: Place,
    /// Keep printing the application's status as it changes
    #[arg(long)]
    pub watch: bool,
}

const LIST_EXAMPLES: &str = "\
Columns: NAME, IMAGE, DESIRED, READY, AVAILABLE, PHASE, AGE.

EXAMPLES:
  govctl app list --agency so-tttt-da-nang --env prod
  govctl app list --agency so-tttt-da-nang --env prod --all -o json";

/// `govctl app list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Where.
    #[command(flatten)]
    pub place: Place,
    /// How many to show.
    #[command(flatten)]
    pub paging: Paging,
}

const SCALE_EXAMPLES: &str = "\
Beyond the quota the application keeps its replicas, and `govctl app get` says
QuotaExceeded with how much is left and how many replicas would fit; ask for more with
`govctl quota request`.

EXAMPLES:
  govctl app scale cong-dich-vu --agency so-tttt-da-nang --env prod --replicas 4";

/// `govctl app scale`.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// The application's name
    pub name: String,
    /// Where.
    #[command(flatten)]
    pub place: Place,
    /// The number of replicas wanted
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..=100))]
    pub replicas: i32,
}

/// Runs an app command.
pub async fn run(conn: &Connection, command: AppCommand, format: Format) -> Result<(), Failure> {
    let now = jiff::Timestamp::now();
    let mut client = conn.workloads();
    let row = |workload: &Workload| table(std::slice::from_ref(workload), now);
    match command {
        AppCommand::Create(args) => {
            let args = *args;
            let mut claims: Vec<proto::ClaimBinding> = args
                .claims
                .iter()
                .map(|c| proto::ClaimBinding {
                    name: c.clone(),
                    r#as: "env".to_owned(),
                    prefix: String::new(),
                })
                .collect();
            claims.extend(args.claim_files.iter().map(|c| proto::ClaimBinding {
                name: c.clone(),
                r#as: "file".to_owned(),
                prefix: String::new(),
            }));
            let workload = Workload {
                agency: args.place.agency,
                environment: args.place.env,
                name: args.name,
                image: args.image,
                replicas: args.replicas.unwrap_or(1),
                command: args.command,
                cpu_request: args.cpu.unwrap_or_default(),
                memory_request: args.memory.unwrap_or_default(),
                cpu_limit: args.cpu_limit.unwrap_or_default(),
                memory_limit: args.memory_limit.unwrap_or_default(),
                ports: args.ports,
                env: args
                    .env_vars
                    .into_iter()
                    .map(|(name, value)| proto::EnvVar { name, value })
                    .collect(),
                claims,
                health_path: args.health_path.unwrap_or_default(),
                paused: args.paused,
                ..Default::default()
            };
            let created = conn
                .answer(client.create_workload(proto::CreateWorkloadRequest {
                    workload: Some(workload),
                }))
                .await?;
            print_with_hint(
                format,
                &created,
                || row(&created),
                |w| {
                    format!(
                        "created: `govctl app get {} --agency {} --env {} --watch` follows it until it is Available",
                        w.name, w.agency, w.environment
                    )
                },
            )
        }
        AppCommand::Get(args) => {
            if args.watch {
                return watch(conn, args, format).await;
            }
            let workload = conn
                .answer(client.get_workload(proto::GetWorkloadRequest {
                    agency: args.place.agency,
                    environment: args.place.env,
                    name: args.name,
                }))
                .await?;
            print(format, &workload, || details(&workload, now))
        }
        AppCommand::List(args) => {
            let (agency, environment) = (args.place.agency, args.place.env);
            let gathered = gather(args.paging, |page_size, page_token| {
                let mut client = client.clone();
                let request = proto::ListWorkloadsRequest {
                    agency: agency.clone(),
                    environment: environment.clone(),
                    page_size,
                    page_token,
                };
                async move {
                    let page = conn.answer(client.list_workloads(request)).await?;
                    Ok((page.workloads, page.next_page_token))
                }
            })
            .await?;
            let response = proto::ListWorkloadsResponse {
                workloads: gathered.items,
                next_page_token: gathered.next_page_token,
            };
            print_list(
                format,
                &response,
                || table(&response.workloads, now),
                Listed {
                    count: response.workloads.len(),
                    next_page_token: &response.next_page_token,
                    none: &format!("no applications in {agency}-{environment}"),
                    what: "applications",
                },
            )
        }
        AppCommand::Scale(args) => {
            let workload = conn
                .answer(client.scale_workload(proto::ScaleWorkloadRequest {
                    agency: args.place.agency,
                    environment: args.place.env,
                    name: args.name,
                    replicas: args.replicas,
                }))
                .await?;
            print(format, &workload, || row(&workload))
        }
        AppCommand::Pause(args) => {
            let workload = conn
                .answer(client.pause_workload(proto::PauseWorkloadRequest {
                    agency: args.place.agency,
                    environment: args.place.env,
                    name: args.name,
                }))
                .await?;
            print(format, &workload, || row(&workload))
        }
        AppCommand::Resume(args) => {
            let workload = conn
                .answer(client.resume_workload(proto::ResumeWorkloadRequest {
                    agency: args.place.agency,
                    environment: args.place.env,
                    name: args.name,
                }))
                .await?;
            print(format, &workload, || row(&workload))
        }
        AppCommand::Delete(args) => {
            conn.answer(client.delete_workload(proto::DeleteWorkloadRequest {
                agency: args.place.agency.clone(),
                environment: args.place.env.clone(),
                name: args.name.clone(),
            }))
            .await?;
            if format == Format::Table {
                emit(&format!(
                    "deleted {} in {}-{} (its Deployment, Service and pods go with it)\n",
                    args.name, args.place.agency, args.place.env
                ))
            } else {
                print(
                    format,
                    &serde_json::json!({"deleted": args.name}),
                    String::new,
                )
            }
        }
        // Answered without a connection by `commands::run`; kept here for completeness.
        AppCommand::LogsHint(args) => emit(&logs_hint(&args)),
    }
}

/// Follows one application and prints a line (or a document) per event.
async fn watch(conn: &Connection, args: GetArgs, format: Format) -> Result<(), Failure> {
    let mut stream = conn
        .answer(
            conn.workloads()
                .watch_workload(proto::WatchWorkloadRequest {
                    agency: args.place.agency,
                    environment: args.place.env,
                    name: args.name,
                }),
        )
        .await?;
    loop {
        let event = match stream.message().await {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(status) => return Err(conn.fail(status)),
        };
        match format {
            Format::Table => {
                let w = event.workload.unwrap_or_default();
                let s = w.status.unwrap_or_default();
                emit(&format!(
                    "{:<9} {:<14} desired={} ready={} available={}  {}\n",
                    event.r#type,
                    or_dash(&s.phase),
                    w.replicas,
                    s.ready_replicas,
                    s.available_replicas,
                    s.message
                ))?;
            }
            other => emit(&crate::output::document(other, &event)?)?,
        }
    }
}

/// The kubectl commands that show an application's pods, logs and events (the API
/// serves no logs: the cluster's own tools do, with the same RBAC).
pub fn logs_hint(args: &AppArgs) -> String {
    let ns = format!("{}-{}", args.place.agency, args.place.env);
    let name = &args.name;
    format!(
        "# pods, Deployment and Service of {name}:\n\
         kubectl -n {ns} get workload,deploy,svc,pods -l govbroker.io/workload={name}\n\
         # logs of every replica (follow with -f):\n\
         kubectl -n {ns} logs -l govbroker.io/workload={name} --all-containers --prefix --tail=200\n\
         # why a replica does not start:\n\
         kubectl -n {ns} describe workload {name}\n\
         kubectl -n {ns} get events --field-selector involvedObject.name={name}\n"
    )
}

fn table(workloads: &[Workload], now: jiff::Timestamp) -> String {
    let mut t = Table::new(&[
        "NAME",
        "IMAGE",
        "DESIRED",
        "READY",
        "AVAILABLE",
        "PHASE",
        "AGE",
    ]);
    for w in workloads {
        let s = w.status.clone().unwrap_or_default();
        t.row(vec![
            w.name.clone(),
            truncate(&w.image, 48),
            w.replicas.to_string(),
            s.ready_replicas.to_string(),
            s.available_replicas.to_string(),
            or_dash(&s.phase),
            age(&w.created_at, now),
        ]);
    }
    t.render()
}

fn details(w: &Workload, now: jiff::Timestamp) -> String {
    let s = w.status.clone().unwrap_or_default();
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    line("Name:", w.name.clone());
    line("Namespace:", format!("{}-{}", w.agency, w.environment));
    line("Image:", w.image.clone());
    line(
        "Replicas:",
        format!(
            "{} desired, {} ready, {} available{}",
            w.replicas,
            s.ready_replicas,
            s.available_replicas,
            if w.paused { " (paused)" } else { "" }
        ),
    );
    line(
        "Requests:",
        format!(
            "cpu {}, memory {} per replica",
            if w.cpu_request.is_empty() {
                "100m"
            } else {
                &w.cpu_request
            },
            if w.memory_request.is_empty() {
                "128Mi"
            } else {
                &w.memory_request
            }
        ),
    );
    if !w.ports.is_empty() {
        let ports: Vec<String> = w
            .ports
            .iter()
            .map(|p| format!("{}={}/{}", p.name, p.port, p.protocol))
            .collect();
        line("Ports:", ports.join(", "));
    }
    if !w.claims.is_empty() {
        let claims: Vec<String> = w
            .claims
            .iter()
            .map(|c| format!("{} ({})", c.name, c.r#as))
            .collect();
        line("Claims:", claims.join(", "));
    }
    line("Phase:", or_dash(&s.phase));
    line("Message:", or_dash(&s.message));
    if let Some(q) = s
        .quota_remaining
        .as_ref()
        .filter(|q| !q.cpu.is_empty() || !q.memory.is_empty() || !q.pods.is_empty())
    {
        line(
            "Quota left:",
            format!(
                "cpu {}, memory {}, pods {}",
                or_dash(&q.cpu),
                or_dash(&q.memory),
                or_dash(&q.pods)
            ),
        );
    }
    line("Age:", age(&w.created_at, now));
    if !s.conditions.is_empty() {
        out.push_str("Conditions:\n");
        for c in &s.conditions {
            out.push_str(&format!(
                "  {:<14} {:<6} {:<24} {}\n",
                c.r#type, c.status, c.reason, c.message
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_variables_parse() {
        let p = port("http=8080").unwrap();
        assert_eq!(
            (p.name.as_str(), p.port, p.protocol.as_str()),
            ("http", 8080, "TCP")
        );
        assert_eq!(port("dns=53/udp").unwrap().protocol, "UDP");
        assert!(port("8080").is_err());
        assert!(port("http=99999").is_err());
        assert_eq!(
            env_var("A=b=c").unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
    }

    #[test]
    fn logs_hint_names_the_namespace_and_label() {
        let hint = logs_hint(&AppArgs {
            name: "cong-dich-vu".into(),
            place: Place {
                agency: "so-tttt".into(),
                env: "prod".into(),
            },
        });
        assert!(
            hint.contains("kubectl -n so-tttt-prod logs -l govbroker.io/workload=cong-dich-vu")
        );
    }
}
