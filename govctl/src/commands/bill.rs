//! `govctl bill show|list|export|usage|rerate`: monthly bills and usage, for finance
//! staff and agency owners; re-rating a past month, for platform admins.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use govbroker_api::proto;

use crate::connect::Connection;
use crate::error::Failure;
use crate::output::{Format, Table, emit, print};

/// Help of `govctl bill`.
pub const BILL_EXAMPLES: &str = "\
Bills are rated from exact usage (CPU and memory requests of running pods, volume
capacity, data-service instances) with the agency's price list. Months are calendar
months in Vietnam (Asia/Ho_Chi_Minh); the default is the current month. Amounts are
whole đồng, each line rounded once (half up); totals are sums of lines.

EXAMPLES:
  govctl bill show so-y-te-ha-noi --month 2026-11
  govctl bill list ubnd-tp-da-nang --month 2026-11
  govctl bill export so-y-te-ha-noi --month 2026-11 --format csv --out so-y-te-2026-11.csv
  govctl bill export so-y-te-ha-noi --month 2026-11 --format xlsx --out so-y-te-2026-11.xlsx
  govctl bill usage so-y-te-ha-noi --from 2026-11-01 --to 2026-11-15
  govctl bill rerate so-y-te-ha-noi --month 2026-10 --price-list-revision 3 \\
      --reason \"Quyết định 45/QĐ-STC sửa đơn giá CPU\"";

/// `govctl bill ...`.
#[derive(Debug, Subcommand)]
pub enum BillCommand {
    /// Show an agency's bill for a month: one line per workload, resource and price period
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
    /// The totals of an agency and each of its descendants for a month
    #[command(after_help = LIST_EXAMPLES)]
    List(MonthArgs),
    /// Write an agency's bill as a CSV, JSON or XLSX file
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// An agency's usage over a period: integer quantities per workload and resource
    #[command(after_help = USAGE_EXAMPLES)]
    Usage(UsageArgs),
    /// Recompute a past month's bill with a price-list revision (platform admins)
    #[command(after_help = RERATE_EXAMPLES)]
    Rerate(RerateArgs),
}

const USAGE_EXAMPLES: &str = "\
Quantities are the ledger's integers: milli-core-seconds (CPU), byte-seconds (memory,
storage), instance-seconds (data services), summed over the billing days of the period.

EXAMPLES:
  govctl bill usage so-y-te-ha-noi                  # this month so far
  govctl bill usage so-y-te-ha-noi --from 2026-10-01 --to 2026-10-31 -o json";

const RERATE_EXAMPLES: &str = "\
The month must have ended. The re-rated bill becomes the month's bill; the earlier ones
stay listed by `govctl bill show`. Add the corrected price-list revision first
(kubectl edit pricelist ...).

EXAMPLES:
  govctl bill rerate so-y-te-ha-noi --month 2026-10 --price-list-revision 3 \\
      --reason \"Quyết định 45/QĐ-STC sửa đơn giá CPU\"";

/// `govctl bill usage`.
#[derive(Debug, Clone, Args)]
pub struct UsageArgs {
    /// The agency (slug)
    pub agency: String,
    /// First billing day, YYYY-MM-DD [default: the first of this month in Vietnam]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<String>,
    /// Last billing day, inclusive [default: today in Vietnam]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<String>,
}

/// `govctl bill rerate`.
#[derive(Debug, Clone, Args)]
pub struct RerateArgs {
    /// The agency (slug)
    pub agency: String,
    /// The month to re-rate, YYYY-MM (it must have ended)
    #[arg(long, value_name = "YYYY-MM")]
    pub month: String,
    /// The revision of the agency's price list to rate with
    #[arg(long, value_name = "N")]
    pub price_list_revision: i32,
    /// Why (kept with the bill)
    #[arg(long)]
    pub reason: String,
}

const SHOW_EXAMPLES: &str = "\
EXAMPLES:
  govctl bill show so-y-te-ha-noi                   # this month so far
  govctl bill show so-y-te-ha-noi --month 2026-10 -o json
  govctl bill show so-y-te-ha-noi --month 2026-10 --price-list-revision 2";

const LIST_EXAMPLES: &str = "\
EXAMPLES:
  govctl bill list ubnd-tp-da-nang --month 2026-11   # the city and every descendant";

const EXPORT_EXAMPLES: &str = "\
EXAMPLES:
  govctl bill export so-y-te-ha-noi --month 2026-11 --format xlsx --out so-y-te-2026-11.xlsx
  govctl bill export so-y-te-ha-noi --month 2026-11 --format csv --out so-y-te-2026-11.csv";

/// An agency and a month.
#[derive(Debug, Clone, Args)]
pub struct MonthArgs {
    /// The agency (slug)
    pub agency: String,
    /// The month, YYYY-MM [default: this month in Vietnam]
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
}

/// `govctl bill show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The agency and month.
    #[command(flatten)]
    pub which: MonthArgs,
    /// Rate with this revision of the price list (a preview) [default: the month's
    /// current bill: re-rated, else the revision in force for the month]
    #[arg(long, value_name = "N")]
    pub price_list_revision: Option<i32>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values (UTF-8, one row per line, a TOTAL row)
    Csv,
    /// The bill as JSON
    Json,
    /// An XLSX spreadsheet (needs --out)
    Xlsx,
}

/// `govctl bill export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The agency and month.
    #[command(flatten)]
    pub which: MonthArgs,
    /// File format
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv, ignore_case = true)]
    pub format: ExportFormat,
    /// Write to this file [default: standard output]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Writes whole đồng the Vietnamese way: `1.234.567 ₫`.
pub fn vnd(amount: i64) -> String {
    govbroker_domain::billing::format_vnd(govbroker_domain::billing::Vnd(amount))
}

/// The bill as a table, with its totals.
pub fn bill_table(bill: &proto::Bill) -> String {
    let mut table = Table::new(&[
        "environment",
        "workload",
        "resource",
        "from",
        "to",
        "rate",
        "amount",
    ]);
    for l in &bill.lines {
        table.row(vec![
            l.environment.clone(),
            l.workload.clone(),
            l.resource.clone(),
            l.from.clone(),
            l.to.clone(),
            format!("{} ₫/{}", l.rate, l.priced_unit),
            vnd(l.amount_vnd),
        ]);
    }
    let mut out = format!(
        "Agency {}, month {} (price list {} revision {})\n\n",
        bill.agency, bill.month, bill.price_list, bill.price_list_revision
    );
    out.push_str(&table.render());
    out.push_str(&format!("\nTotal:          {}\n", vnd(bill.total_vnd)));
    if bill.subtree_total_vnd != bill.total_vnd {
        out.push_str(&format!(
            "With subtree:   {}\n",
            vnd(bill.subtree_total_vnd)
        ));
    }
    if bill.unobserved_bound_vnd > 0 {
        out.push_str(&format!(
            "Not observed:   at most {} more (not billed)\n",
            vnd(bill.unobserved_bound_vnd)
        ));
    }
    if bill.budget_vnd > 0 {
        out.push_str(&format!(
            "Budget:         {} ({}% used)\n",
            vnd(bill.budget_vnd),
            bill.budget_used_percent
        ));
    }
    if !bill.rerate_reason.is_empty() {
        out.push_str(&format!(
            "Re-rated:       {} by {}: {}\n",
            bill.rerated_at, bill.rerated_by, bill.rerate_reason
        ));
    }
    if !bill.earlier_versions.is_empty() {
        out.push_str("\nEarlier versions of this bill:\n");
        let mut table = Table::new(&["revision", "total", "when", "by", "reason"]);
        for v in &bill.earlier_versions {
            table.row(vec![
                v.price_list_revision.to_string(),
                vnd(v.total_vnd),
                v.rerated_at.clone(),
                if v.rerated_by.is_empty() {
                    "-".to_owned()
                } else {
                    v.rerated_by.clone()
                },
                v.reason.clone(),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

/// The usage as a table.
pub fn usage_table(usage: &proto::Usage) -> String {
    let mut table = Table::new(&[
        "environment",
        "workload",
        "resource",
        "quantity",
        "unit",
        "unobserved (at most)",
    ]);
    for l in &usage.lines {
        table.row(vec![
            l.environment.clone(),
            l.workload.clone(),
            l.resource.clone(),
            l.quantity.clone(),
            l.unit.clone(),
            l.unobserved_bound.clone(),
        ]);
    }
    format!(
        "Agency {}, {} to {} ({} day(s) with usage)\n\n{}",
        usage.agency,
        usage.from,
        usage.to,
        usage.days_recorded,
        table.render()
    )
}

/// Runs a bill command.
pub async fn run(conn: &Connection, command: BillCommand, format: Format) -> Result<(), Failure> {
    let mut client = conn.billing();
    match command {
        BillCommand::Show(args) => {
            let bill = conn
                .answer(client.get_bill(proto::GetBillRequest {
                    agency: args.which.agency,
                    month: args.which.month.unwrap_or_default(),
                    price_list_revision: args.price_list_revision.unwrap_or(0),
                }))
                .await?;
            print(format, &bill, || bill_table(&bill))
        }
        BillCommand::List(args) => {
            let list = conn
                .answer(client.list_bills(proto::ListBillsRequest {
                    agency: args.agency,
                    month: args.month.unwrap_or_default(),
                }))
                .await?;
            print(format, &list, || {
                let mut table = Table::new(&["agency", "parent", "own", "subtree", "name"]);
                for b in &list.bills {
                    table.row(vec![
                        b.agency.clone(),
                        if b.parent.is_empty() {
                            "-".to_owned()
                        } else {
                            b.parent.clone()
                        },
                        vnd(b.total_vnd),
                        vnd(b.subtree_total_vnd),
                        b.display_name.clone(),
                    ]);
                }
                table.render()
            })
        }
        BillCommand::Export(args) => {
            let file = conn
                .answer(
                    client.export_bill(proto::ExportBillRequest {
                        agency: args.which.agency,
                        month: args.which.month.unwrap_or_default(),
                        format: match args.format {
                            ExportFormat::Csv => "csv",
                            ExportFormat::Json => "json",
                            ExportFormat::Xlsx => "xlsx",
                        }
                        .to_owned(),
                    }),
                )
                .await?;
            let bytes = if file.content_base64.is_empty() {
                file.content.into_bytes()
            } else {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(&file.content_base64)
                    .map_err(|e| Failure::other(format!("the server sent a corrupt file: {e}")))?
            };
            match args.out {
                Some(path) => std::fs::write(&path, &bytes)
                    .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display()))),
                None if args.format == ExportFormat::Xlsx => Err(Failure::usage(
                    "an XLSX file is binary: write it to a file with --out FILE",
                )),
                None => emit(&String::from_utf8_lossy(&bytes)),
            }
        }
        BillCommand::Usage(args) => {
            let usage = conn
                .answer(client.get_usage(proto::GetUsageRequest {
                    agency: args.agency,
                    from: args.from.unwrap_or_default(),
                    to: args.to.unwrap_or_default(),
                }))
                .await?;
            print(format, &usage, || usage_table(&usage))
        }
        BillCommand::Rerate(args) => {
            let bill = conn
                .answer(client.rerate_bill(proto::RerateBillRequest {
                    agency: args.agency,
                    month: args.month,
                    price_list_revision: args.price_list_revision,
                    reason: args.reason,
                }))
                .await?;
            print(format, &bill, || bill_table(&bill))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_written_in_dong() {
        assert_eq!(vnd(1_234_567), "1.234.567 ₫");
        assert_eq!(vnd(0), "0 ₫");
        assert_eq!(vnd(-1000), "-1.000 ₫");
    }

    #[test]
    fn a_bill_reads_as_a_table() {
        let bill = proto::Bill {
            agency: "so-y-te".into(),
            month: "2026-11".into(),
            price_list: "default".into(),
            price_list_revision: 2,
            lines: vec![proto::BillLine {
                environment: "prod".into(),
                workload: "Workload/cong".into(),
                resource: "cpu".into(),
                from: "2026-11-01".into(),
                to: "2026-11-15".into(),
                rate: "720".into(),
                priced_unit: "vCPU-hour".into(),
                amount_vnd: 1_234_567,
                ..Default::default()
            }],
            total_vnd: 1_234_567,
            subtree_total_vnd: 2_000_000,
            budget_vnd: 5_000_000,
            budget_used_percent: 24,
            ..Default::default()
        };
        let text = bill_table(&bill);
        assert!(text.contains("720 ₫/vCPU-hour"), "{text}");
        assert!(text.contains("Total:          1.234.567 ₫"), "{text}");
        assert!(text.contains("With subtree:   2.000.000 ₫"), "{text}");
        assert!(text.contains("(24% used)"), "{text}");
        assert!(!text.contains("Re-rated"), "{text}");
        let rerated = proto::Bill {
            rerate_reason: "sửa giá".into(),
            rerated_by: "admin".into(),
            rerated_at: "2026-11-20T03:00:00Z".into(),
            earlier_versions: vec![proto::BillVersion {
                price_list_revision: 2,
                total_vnd: 900,
                reason: "the bill as computed before the first re-rate".into(),
                ..Default::default()
            }],
            ..bill
        };
        let text = bill_table(&rerated);
        assert!(
            text.contains("Re-rated:       2026-11-20T03:00:00Z by admin: sửa giá"),
            "{text}"
        );
        assert!(text.contains("Earlier versions of this bill:"), "{text}");
        assert!(text.contains("900 ₫"), "{text}");
    }

    #[test]
    fn usage_reads_as_a_table_of_integers() {
        let usage = proto::Usage {
            agency: "so-y-te".into(),
            from: "2026-10-01".into(),
            to: "2026-10-31".into(),
            days_recorded: 1,
            lines: vec![proto::UsageLine {
                environment: "prod".into(),
                workload: "Workload/cong".into(),
                resource: "cpu".into(),
                quantity: "3600000".into(),
                unit: "milli-core-seconds".into(),
                unobserved_bound: "0".into(),
                ..Default::default()
            }],
        };
        let text = usage_table(&usage);
        assert!(
            text.contains("2026-10-01 to 2026-10-31 (1 day(s) with usage)"),
            "{text}"
        );
        assert!(text.contains("3600000"), "{text}");
        assert!(text.contains("milli-core-seconds"), "{text}");
    }
}
