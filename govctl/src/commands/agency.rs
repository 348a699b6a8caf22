//! `govctl agency list|get|tree`.

use govbroker_api::proto::{self, Agency, ResourceAmounts};

use super::{Listed, gather, print_list};
use crate::cli::{AgencyCommand, AgencyGetArgs, AgencyListArgs, AgencyTreeArgs};
use crate::connect::Connection;
use crate::error::Failure;
use crate::output::{Format, Table, age, or_dash, print};

/// Runs an agency command.
pub async fn run(conn: &Connection, command: AgencyCommand, format: Format) -> Result<(), Failure> {
    match command {
        AgencyCommand::List(args) => list(conn, args, format).await,
        AgencyCommand::Get(args) => get(conn, args, format).await,
        AgencyCommand::Tree(args) => tree(conn, args, format).await,
    }
}

async fn list(conn: &Connection, args: AgencyListArgs, format: Format) -> Result<(), Failure> {
    let client = conn.agencies();
    let template = proto::ListAgenciesRequest {
        parent: args.parent.unwrap_or_default(),
        level: args
            .level
            .map(|l| l.as_str().to_owned())
            .unwrap_or_default(),
        security_level: args.security_level.unwrap_or_default(),
        name_prefix: args.prefix.unwrap_or_default(),
        ..Default::default()
    };
    let gathered = gather(args.paging, |page_size, page_token| {
        let mut client = client.clone();
        let request = proto::ListAgenciesRequest {
            page_size,
            page_token,
            ..template.clone()
        };
        async move {
            let page = conn.answer(client.list_agencies(request)).await?;
            Ok((page.agencies, page.next_page_token))
        }
    })
    .await?;
    let response = proto::ListAgenciesResponse {
        agencies: gathered.items,
        next_page_token: gathered.next_page_token,
    };
    print_list(
        format,
        &response,
        || list_table(&response.agencies, jiff::Timestamp::now()),
        Listed {
            count: response.agencies.len(),
            next_page_token: &response.next_page_token,
            none: "no agencies you may read match",
            what: "agencies",
        },
    )
}

async fn get(conn: &Connection, args: AgencyGetArgs, format: Format) -> Result<(), Failure> {
    let agency = conn
        .answer(
            conn.agencies()
                .get_agency(proto::GetAgencyRequest { name: args.name }),
        )
        .await?;
    print(format, &agency, || describe(&agency))
}

async fn tree(conn: &Connection, args: AgencyTreeArgs, format: Format) -> Result<(), Failure> {
    let tree = conn
        .answer(
            conn.agencies()
                .get_agency_tree(proto::GetAgencyTreeRequest {
                    name: args.name,
                    max_depth: args.depth.unwrap_or(0),
                }),
        )
        .await?;
    print(format, &tree, || tree_table(&tree))
}

fn cpu(a: &ResourceAmounts) -> &str {
    &a.cpu
}

fn memory(a: &ResourceAmounts) -> &str {
    &a.memory
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// `used/hard` of one resource: what the agency's namespaces use of the quota in force
/// (the spec's quota until the status reports one); `-` for what is unknown.
pub fn used_of_hard(agency: &Agency, pick: fn(&ResourceAmounts) -> &str) -> String {
    let spec = agency.quota.as_ref().map(pick).and_then(non_empty);
    let Some(status) = &agency.status else {
        return spec.map_or_else(|| "-".to_owned(), |hard| format!("-/{hard}"));
    };
    let used = status
        .used
        .as_ref()
        .map(pick)
        .and_then(non_empty)
        .unwrap_or("0");
    let hard = status
        .hard
        .as_ref()
        .map(pick)
        .and_then(non_empty)
        .or(spec)
        .unwrap_or("-");
    format!("{used}/{hard}")
}

/// `True`, `False`, or `-` before the operator has reported.
pub fn ready(agency: &Agency) -> String {
    match &agency.status {
        Some(s) if s.ready => "True".to_owned(),
        Some(_) => "False".to_owned(),
        None => "-".to_owned(),
    }
}

/// The table of `agency list`.
pub fn list_table(agencies: &[Agency], now: jiff::Timestamp) -> String {
    let mut table = Table::new(&[
        "name",
        "display name",
        "level",
        "parent",
        "sec",
        "cpu",
        "memory",
        "ready",
        "age",
    ]);
    for a in agencies {
        table.row(vec![
            a.name.clone(),
            a.display_name.clone(),
            a.level.clone(),
            or_dash(&a.parent),
            a.security_level.to_string(),
            used_of_hard(a, cpu),
            used_of_hard(a, memory),
            ready(a),
            age(&a.created_at, now),
        ]);
    }
    if table.is_empty() {
        return String::new();
    }
    table.render()
}

/// The tree's branch drawing before each node's name, given the nodes' depths in
/// depth-first order (the root at depth 0 gets none).
pub fn tree_prefixes(depths: &[u32]) -> Vec<String> {
    // Whether each node is the last of its siblings: scanning backwards, a node is last
    // when no later node at its depth was seen since the last shallower one.
    let mut is_last = vec![false; depths.len()];
    let mut seen: Vec<bool> = Vec::new();
    for (i, &depth) in depths.iter().enumerate().rev() {
        let d = depth as usize;
        if seen.len() <= d {
            seen.resize(d + 1, false);
        }
        is_last[i] = !seen[d];
        seen[d] = true;
        seen.truncate(d + 1);
    }
    // Forwards: a bar continues below every ancestor that is not the last of its siblings.
    let mut open: Vec<bool> = Vec::new();
    depths
        .iter()
        .zip(&is_last)
        .map(|(&depth, &last)| {
            let d = depth as usize;
            open.truncate(d);
            let mut prefix = String::new();
            for &continues in open.iter().skip(1) {
                prefix.push_str(if continues { "│   " } else { "    " });
            }
            if d > 0 {
                prefix.push_str(if last { "└── " } else { "├── " });
            }
            open.resize(d, false);
            open.push(!last);
            prefix
        })
        .collect()
}

/// The table of `agency tree`.
pub fn tree_table(tree: &proto::AgencyTree) -> String {
    let depths: Vec<u32> = tree.nodes.iter().map(|n| n.depth).collect();
    let prefixes = tree_prefixes(&depths);
    let mut table = Table::new(&[
        "name",
        "display name",
        "level",
        "sec",
        "cpu",
        "memory",
        "ready",
    ]);
    let empty = Agency::default();
    for (node, prefix) in tree.nodes.iter().zip(prefixes) {
        let a = node.agency.as_ref().unwrap_or(&empty);
        table.row(vec![
            format!("{prefix}{}", a.name),
            a.display_name.clone(),
            a.level.clone(),
            a.security_level.to_string(),
            used_of_hard(a, cpu),
            used_of_hard(a, memory),
            ready(a),
        ]);
    }
    table.render()
}

fn principals(p: Option<&proto::Principals>) -> String {
    let Some(p) = p else {
        return "-".to_owned();
    };
    let mut parts = Vec::new();
    if !p.users.is_empty() {
        parts.push(format!("users {}", p.users.join(", ")));
    }
    if !p.groups.is_empty() {
        parts.push(format!("groups {}", p.groups.join(", ")));
    }
    if !p.service_accounts.is_empty() {
        parts.push(format!(
            "service accounts {}",
            p.service_accounts.join(", ")
        ));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The resources of `amounts` as `cpu=4 memory=8Gi`; `-` when none.
pub fn amounts_text(amounts: Option<&ResourceAmounts>) -> String {
    let Some(a) = amounts else {
        return "-".to_owned();
    };
    let text: Vec<String> = resources(a)
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.join(" ")
    }
}

/// Each resource of `a` with its name, in the protos' order.
pub fn resources(a: &ResourceAmounts) -> [(&'static str, &str); 7] {
    [
        ("cpu", &a.cpu),
        ("memory", &a.memory),
        ("ephemeral-storage", &a.ephemeral_storage),
        ("storage", &a.storage),
        ("pods", &a.pods),
        ("services", &a.services),
        ("persistentvolumeclaims", &a.persistent_volume_claims),
    ]
}

/// The view of `agency get`.
pub fn describe(a: &Agency) -> String {
    let mut fields = Table::new(&["", ""]);
    let mut field = |name: &str, value: String| fields.row(vec![format!("{name}:"), value]);
    field("Name", a.name.clone());
    field("Display name", a.display_name.clone());
    field("Level", a.level.clone());
    field("Parent", or_dash(&a.parent));
    field("Security level", a.security_level.to_string());
    field("Owners", principals(a.owners.as_ref()));
    field("Viewers", principals(a.viewers.as_ref()));
    let environments: Vec<String> = a
        .environments
        .iter()
        .map(|e| format!("{} ({})", e.name, amounts_text(e.quota.as_ref())))
        .collect();
    field("Environments", or_dash(&environments.join(", ")));
    field("Ready", ready(a));
    if let Some(status) = &a.status {
        field("Namespaces", or_dash(&status.namespaces.join(", ")));
        field("Children", status.children.to_string());
    }
    field("Created", or_dash(&a.created_at));
    // The header row of this table is blank: drop it.
    let mut out: String = fields
        .render()
        .lines()
        .skip(1)
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        });

    let spec = a.quota.clone().unwrap_or_default();
    let status = a.status.clone().unwrap_or_default();
    let used = status.used.unwrap_or_default();
    let children = status.granted_to_children.unwrap_or_default();
    let mut quota = Table::new(&["resource", "quota", "used", "granted to children"]);
    for ((name, q), ((_, u), (_, c))) in resources(&spec)
        .into_iter()
        .zip(resources(&used).into_iter().zip(resources(&children)))
    {
        if !(q.is_empty() && u.is_empty() && c.is_empty()) {
            quota.row(vec![name.to_owned(), or_dash(q), or_dash(u), or_dash(c)]);
        }
    }
    if !quota.is_empty() {
        out.push_str("Quota:\n");
        for line in quota.render().lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    if !status.conditions.is_empty() {
        let mut conditions = Table::new(&["type", "status", "reason", "message"]);
        for c in &status.conditions {
            conditions.row(vec![
                c.r#type.clone(),
                c.status.clone(),
                or_dash(&c.reason),
                or_dash(&c.message),
            ]);
        }
        out.push_str("Conditions:\n");
        for line in conditions.render().lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::width;

    fn agency(name: &str, display: &str, level: &str, cpu: (&str, &str)) -> Agency {
        Agency {
            name: name.into(),
            display_name: display.into(),
            level: level.into(),
            security_level: 3,
            quota: Some(ResourceAmounts {
                cpu: cpu.1.into(),
                memory: "8Gi".into(),
                ..Default::default()
            }),
            status: Some(proto::AgencyStatus {
                ready: true,
                used: Some(ResourceAmounts {
                    cpu: cpu.0.into(),
                    ..Default::default()
                }),
                hard: Some(ResourceAmounts {
                    cpu: cpu.1.into(),
                    memory: "8Gi".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            created_at: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn prefixes_draw_the_tree() {
        // root
        // ├── a
        // │   ├── a1
        // │   └── a2
        // │       └── a2x
        // └── b
        //     └── b1
        let prefixes = tree_prefixes(&[0, 1, 2, 2, 3, 1, 2]);
        assert_eq!(
            prefixes,
            vec![
                "",
                "├── ",
                "│   ├── ",
                "│   └── ",
                "│       └── ",
                "└── ",
                "    └── ",
            ]
        );
        assert_eq!(tree_prefixes(&[0]), vec![""]);
        assert!(tree_prefixes(&[]).is_empty());
    }

    #[test]
    fn tree_lines_align_with_vietnamese_names() {
        let tree = proto::AgencyTree {
            nodes: vec![
                proto::AgencyTreeNode {
                    agency: Some(agency("bo-y-te", "Bộ Y tế", "Central", ("2", "100"))),
                    depth: 0,
                },
                proto::AgencyTreeNode {
                    agency: Some(agency(
                        "so-y-te-hn",
                        "Sở Y tế Hà Nội",
                        "Province",
                        ("1500m", "20"),
                    )),
                    depth: 1,
                },
                proto::AgencyTreeNode {
                    agency: Some(agency(
                        "phong-yt-hk",
                        "Phòng Y tế quận Hoàn Kiếm",
                        "District",
                        ("0", "4"),
                    )),
                    depth: 2,
                },
                proto::AgencyTreeNode {
                    agency: Some(agency(
                        "so-y-te-dn",
                        "Sở Y tế Đà Nẵng",
                        "Province",
                        ("", "10"),
                    )),
                    depth: 1,
                },
            ],
        };
        let text = tree_table(&tree);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("NAME "), "{text}");
        assert!(lines[2].starts_with("├── so-y-te-hn "), "{text}");
        assert!(lines[3].starts_with("│   └── phong-yt-hk "), "{text}");
        assert!(lines[4].starts_with("└── so-y-te-dn "), "{text}");
        assert!(lines[2].contains("1500m/20"), "{text}");
        assert!(lines[4].contains("0/10"), "{text}");
        // LEVEL starts at the same display column on every line.
        let column = |line: &str, word: &str| {
            let at = line.find(word).expect(word);
            width(&line[..at])
        };
        let level = column(lines[0], "LEVEL");
        for (line, word) in lines[1..]
            .iter()
            .zip(["Central", "Province", "District", "Province"])
        {
            assert_eq!(column(line, word), level, "{text}");
        }
    }

    #[test]
    fn list_table_shows_usage_and_age() {
        let now = "2026-01-03T00:00:00Z".parse().unwrap();
        let mut pending = agency("xa-moi", "Xã Mới", "Commune", ("", "1"));
        pending.status = None;
        pending.parent = "huyen".into();
        let text = list_table(
            &[
                agency("bo-tc", "Bộ Tài chính", "Central", ("3", "10")),
                pending,
            ],
            now,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME     DISPLAY NAME   LEVEL     PARENT   SEC   CPU    MEMORY   READY   AGE"
        );
        assert_eq!(
            lines[1],
            "bo-tc    Bộ Tài chính   Central   -        3     3/10   0/8Gi    True    2d"
        );
        assert_eq!(
            lines[2],
            "xa-moi   Xã Mới         Commune   huyen    3     -/1    -/8Gi    -       2d"
        );
        assert_eq!(list_table(&[], now), "");
    }

    #[test]
    fn describe_shows_quota_and_owners() {
        let mut a = agency("so-y-te-hn", "Sở Y tế Hà Nội", "Province", ("1", "4"));
        a.owners = Some(proto::Principals {
            users: vec!["an@hanoi.gov.vn".into()],
            groups: vec!["syt-it".into()],
            ..Default::default()
        });
        let text = describe(&a);
        assert!(text.starts_with("Name:             so-y-te-hn\n"), "{text}");
        assert!(
            text.contains("Display name:     Sở Y tế Hà Nội\n"),
            "{text}"
        );
        assert!(
            text.contains("Owners:           users an@hanoi.gov.vn; groups syt-it\n"),
            "{text}"
        );
        assert!(text.contains("Quota:\n  RESOURCE   QUOTA   USED   GRANTED TO CHILDREN\n  cpu        4       1      -\n"), "{text}");
    }
}
