//! Billing: bills rated from the ledger's usage records with the agency's PriceList,
//! guarded by `get agencies/billing` on the agency (owners of the agency and of its
//! ancestors, and finance staff). See `docs/billing.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use govbroker_crds::{Agency, PriceList};
use govbroker_domain::billing::{
    BillVersion, Invoice, Vnd, budget_status, format_vnd, invoice_csv, rate_month,
    rerated_versions, roll_up, schedule_for_month, schedule_from_price_list,
};
use govbroker_domain::isolation::virtual_subresource;
use govbroker_domain::metering::{Day, Month, usage_totals};
use govbroker_ledger::Target;
use govbroker_ledger::usage::UsageLedger;
use prost::Message as _;

use super::operations::{Operation, operation};
use super::{Api, Method, target};
use crate::auth::{Caller, Permission};
use crate::error::ApiError;
use crate::proto;
use crate::validate;

/// The methods of the Billing service.
pub mod methods {
    use super::Method;
    /// Billing/GetBill.
    pub const GET_BILL: Method = Method::read("govbroker.v1.Billing/GetBill");
    /// Billing/ListBills.
    pub const LIST_BILLS: Method = Method::read("govbroker.v1.Billing/ListBills");
    /// Billing/ExportBill.
    pub const EXPORT_BILL: Method = Method::read("govbroker.v1.Billing/ExportBill");
    /// Billing/GetUsage.
    pub const GET_USAGE: Method = Method::read("govbroker.v1.Billing/GetUsage");
    /// Billing/RerateBill.
    pub const RERATE_BILL: Method = Method::write("govbroker.v1.Billing/RerateBill");
}

/// The price list an agency without `spec.priceList` is billed with.
pub const DEFAULT_PRICE_LIST: &str = "default";

/// Where bills come from: the ledger's usage records and the cluster's PriceLists
/// (read with the API's own identity: prices are not secret, bills are).
#[derive(Clone)]
pub struct BillingSource {
    /// The usage records.
    pub usage: UsageLedger,
    /// The API's own client, for PriceLists.
    pub client: kube::Client,
}

fn month(field: &str, text: &str) -> Result<Month, ApiError> {
    if text.is_empty() {
        return Ok(Day::of(jiff::Timestamp::now().as_second()).month());
    }
    text.parse()
        .map_err(|e: govbroker_domain::metering::DateError| ApiError::invalid(field, e.to_string()))
}

impl Api {
    fn agency(&self, name: &str) -> Result<Arc<Agency>, ApiError> {
        self.agencies
            .state()
            .into_iter()
            .find(|a| a.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| ApiError::NotFound(format!("agency {name} does not exist")))
    }

    async fn bill_of(
        &self,
        agency: &Agency,
        month: Month,
        revision: Option<i32>,
    ) -> Result<Invoice, ApiError> {
        let name = agency.metadata.name.clone().unwrap_or_default();
        let list_name = agency
            .spec
            .price_list
            .clone()
            .unwrap_or_else(|| DEFAULT_PRICE_LIST.to_owned());
        let lists: kube::Api<PriceList> = kube::Api::all(self.billing.client.clone());
        let price_list = lists
            .get_opt(&list_name)
            .await
            .map_err(|e| ApiError::from_kube(e, "price lists"))?
            .ok_or_else(|| {
                ApiError::FailedPrecondition(format!(
                    "agency {name} is billed with price list {list_name}, which does not exist; a platform operator must create it"
                ))
            })?;
        // Without a named revision, the one in force for the month: a revision added
        // after the month never changes its bill (only a re-rate does).
        let schedule = match revision {
            Some(n) => schedule_from_price_list(&price_list, Some(n)),
            None => schedule_for_month(&price_list, month),
        }
        .map_err(|e| ApiError::FailedPrecondition(e.to_string()))?;
        let days = self
            .billing
            .usage
            .agency_month(&name, month)
            .await
            .map_err(|e| ApiError::unavailable(format!("the usage ledger cannot be read: {e}")))?;
        rate_month(&name, month, days.iter().map(|(d, u)| (*d, u)), &schedule)
            .map_err(|e| ApiError::FailedPrecondition(e.to_string()))
    }

    /// The month's stored bill versions (empty until it is re-rated) and the revision
    /// guarding them.
    async fn bill_versions(
        &self,
        agency: &str,
        month: Month,
    ) -> Result<(Vec<BillVersion>, i64), ApiError> {
        self.billing
            .usage
            .bill_versions(agency, month)
            .await
            .map_err(|e| ApiError::unavailable(format!("the bills ledger cannot be read: {e}")))
    }

    /// The agency's current bill for `month`: the last re-rated version if the month
    /// was re-rated, else rated on request with the price-list revision in force for the
    /// month; with the stored versions.
    async fn current_bill(
        &self,
        agency: &Agency,
        month: Month,
    ) -> Result<(Invoice, Vec<BillVersion>), ApiError> {
        let name = agency.metadata.name.clone().unwrap_or_default();
        let (versions, _) = self.bill_versions(&name, month).await?;
        match versions.last() {
            Some(current) => Ok((current.invoice.clone(), versions)),
            None => Ok((self.bill_of(agency, month, None).await?, versions)),
        }
    }

    /// The agency and its descendants, in tree order, with parents.
    fn subtree(&self, root: &str) -> Vec<Arc<Agency>> {
        let all = self.agencies.state();
        let mut children: BTreeMap<String, Vec<Arc<Agency>>> = BTreeMap::new();
        for a in &all {
            if let Some(p) = &a.spec.parent {
                children.entry(p.clone()).or_default().push(a.clone());
            }
        }
        let mut out = Vec::new();
        let mut stack: Vec<Arc<Agency>> = all
            .iter()
            .filter(|a| a.metadata.name.as_deref() == Some(root))
            .cloned()
            .collect();
        while let Some(a) = stack.pop() {
            if out.len() > all.len() {
                break;
            }
            if let Some(kids) = children.get(a.metadata.name.as_deref().unwrap_or_default()) {
                let mut kids = kids.clone();
                kids.sort_by(|x, y| y.metadata.name.cmp(&x.metadata.name));
                stack.extend(kids);
            }
            out.push(a);
        }
        out
    }

    async fn subtree_totals(
        &self,
        root: &str,
        month: Month,
    ) -> Result<
        (
            Vec<Arc<Agency>>,
            BTreeMap<String, Vnd>,
            BTreeMap<String, Vnd>,
        ),
        ApiError,
    > {
        let members = self.subtree(root);
        let mut own = BTreeMap::new();
        let mut parents = BTreeMap::new();
        for a in &members {
            let name = a.metadata.name.clone().unwrap_or_default();
            let total = self.current_bill(a, month).await?.0.total;
            own.insert(name.clone(), total);
            parents.insert(name.clone(), a.spec.parent.clone().filter(|_| name != root));
        }
        let subtree = roll_up(&own, &parents);
        Ok((members, own, subtree))
    }

    async fn require_billing(&self, caller: &Caller, agency: &str) -> Result<(), ApiError> {
        validate::agency_name("agency", agency)?;
        self.identity
            .require(
                caller,
                &Permission::on("get", "agencies", agency)
                    .with_subresource(virtual_subresource::BILLING),
            )
            .await
    }

    /// GetBill.
    pub async fn get_bill(
        &self,
        caller: Caller,
        request: proto::GetBillRequest,
    ) -> Result<proto::Bill, ApiError> {
        self.require_billing(&caller, &request.agency).await?;
        let month = month("month", &request.month)?;
        let agency = self.agency(&request.agency)?;
        let (invoice, versions) = if request.price_list_revision > 0 {
            let invoice = self
                .bill_of(&agency, month, Some(request.price_list_revision))
                .await?;
            (invoice, self.bill_versions(&request.agency, month).await?.0)
        } else {
            self.current_bill(&agency, month).await?
        };
        let mut bill = self
            .bill_with_budget(&agency, month, &invoice, &versions)
            .await?;
        if request.price_list_revision > 0 {
            // Rated on request: every stored version is an earlier one.
            bill.rerate_reason.clear();
            bill.rerated_by.clear();
            bill.rerated_at.clear();
            bill.earlier_versions = versions.iter().map(version_to_proto).collect();
        }
        Ok(bill)
    }

    /// The bill as a message with its subtree total, budget and versions (`versions`:
    /// the stored ones, of which `invoice` is the last when the month was re-rated).
    async fn bill_with_budget(
        &self,
        agency: &Agency,
        month: Month,
        invoice: &Invoice,
        versions: &[BillVersion],
    ) -> Result<proto::Bill, ApiError> {
        let name = agency.metadata.name.clone().unwrap_or_default();
        let (_, _, subtree) = self.subtree_totals(&name, month).await?;
        let mut bill = invoice_to_proto(invoice);
        if let Some((current, earlier)) = versions.split_last() {
            bill.rerate_reason = current.reason.clone();
            bill.rerated_by = current.rerated_by.clone();
            bill.rerated_at = rfc3339(current.rerated_at);
            bill.earlier_versions = earlier.iter().map(version_to_proto).collect();
        }
        bill.subtree_total_vnd = subtree.get(&name).copied().unwrap_or_default().0;
        if let Some(budget) = &agency.spec.budget {
            let status = budget_status(
                Vnd(budget.monthly_vnd),
                &budget.alert_thresholds,
                month,
                invoice.total,
                jiff::Timestamp::now().as_second(),
            );
            bill.budget_vnd = budget.monthly_vnd;
            bill.budget_used_percent = status.percent_used;
        }
        Ok(bill)
    }

    /// ListBills.
    pub async fn list_bills(
        &self,
        caller: Caller,
        request: proto::ListBillsRequest,
    ) -> Result<proto::ListBillsResponse, ApiError> {
        self.require_billing(&caller, &request.agency).await?;
        let month = month("month", &request.month)?;
        self.agency(&request.agency)?;
        let (members, own, subtree) = self.subtree_totals(&request.agency, month).await?;
        Ok(proto::ListBillsResponse {
            bills: members
                .iter()
                .map(|a| {
                    let name = a.metadata.name.clone().unwrap_or_default();
                    proto::BillSummary {
                        display_name: a.spec.display_name.clone(),
                        parent: a.spec.parent.clone().unwrap_or_default(),
                        total_vnd: own.get(&name).copied().unwrap_or_default().0,
                        subtree_total_vnd: subtree.get(&name).copied().unwrap_or_default().0,
                        agency: name,
                    }
                })
                .collect(),
        })
    }

    /// ExportBill.
    pub async fn export_bill(
        &self,
        caller: Caller,
        request: proto::ExportBillRequest,
    ) -> Result<proto::ExportBillResponse, ApiError> {
        self.require_billing(&caller, &request.agency).await?;
        let month = month("month", &request.month)?;
        let agency = self.agency(&request.agency)?;
        let (invoice, _) = self.current_bill(&agency, month).await?;
        let base = format!("{}-{month}", request.agency);
        match request.format.as_str() {
            "" | "csv" => Ok(proto::ExportBillResponse {
                content_type: "text/csv; charset=utf-8".to_owned(),
                file_name: format!("{base}.csv"),
                content: invoice_csv(&invoice),
                content_base64: String::new(),
            }),
            "json" => Ok(proto::ExportBillResponse {
                content_type: "application/json".to_owned(),
                file_name: format!("{base}.json"),
                content: serde_json::to_string_pretty(&invoice)
                    .map_err(|e| ApiError::unavailable(e.to_string()))?,
                content_base64: String::new(),
            }),
            "xlsx" => {
                use base64::Engine as _;
                let bytes = invoice_xlsx(&invoice).map_err(|e| {
                    ApiError::Internal(format!("cannot write the spreadsheet: {e}"))
                })?;
                Ok(proto::ExportBillResponse {
                    content_type:
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                            .to_owned(),
                    file_name: format!("{base}.xlsx"),
                    content: String::new(),
                    content_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
                })
            }
            other => Err(ApiError::invalid(
                "format",
                format!("{other:?} is not an export format: use csv, json or xlsx"),
            )),
        }
    }
}

impl Api {
    /// GetUsage.
    pub async fn get_usage(
        &self,
        caller: Caller,
        request: proto::GetUsageRequest,
    ) -> Result<proto::Usage, ApiError> {
        self.require_billing(&caller, &request.agency).await?;
        let today = Day::of(jiff::Timestamp::now().as_second());
        let from = day("from", &request.from, today.month().first_day())?;
        let to = day("to", &request.to, today)?;
        if to < from {
            return Err(ApiError::invalid(
                "to",
                format!("{to} is before from ({from}): give the period's last day"),
            ));
        }
        if to.days_since_epoch() - from.days_since_epoch() > MAX_USAGE_DAYS {
            return Err(ApiError::invalid(
                "to",
                format!(
                    "a period is at most {} days; {from} to {to} is longer: ask for it in parts",
                    MAX_USAGE_DAYS + 1
                ),
            ));
        }
        self.agency(&request.agency)?;
        let mut days = BTreeMap::new();
        let mut month = from.month();
        while month <= to.month() {
            let records = self
                .billing
                .usage
                .agency_month(&request.agency, month)
                .await
                .map_err(|e| {
                    ApiError::unavailable(format!("the usage ledger cannot be read: {e}"))
                })?;
            days.extend(records.into_iter().filter(|(d, _)| (from..=to).contains(d)));
            month = month.next();
        }
        Ok(proto::Usage {
            agency: request.agency,
            from: from.to_string(),
            to: to.to_string(),
            days_recorded: u32::try_from(days.len()).unwrap_or(u32::MAX),
            lines: usage_totals(days.values())
                .into_iter()
                .map(|t| proto::UsageLine {
                    environment: t.environment,
                    namespace: t.namespace,
                    workload: t.workload,
                    resource: t.meter.label(),
                    quantity: t.quantity.to_string(),
                    unit: t.meter.unit().to_owned(),
                    unobserved_bound: t.unobserved_bound.to_string(),
                })
                .collect(),
        })
    }

    /// RerateBill.
    pub async fn rerate_bill(
        &self,
        caller: Caller,
        request: proto::RerateBillRequest,
    ) -> Result<proto::Bill, ApiError> {
        validate::agency_name("agency", &request.agency)?;
        self.identity
            .require(
                &caller,
                &Permission::on("update", "agencies", &request.agency)
                    .with_subresource(virtual_subresource::BILLING),
            )
            .await?;
        if request.month.is_empty() {
            return Err(ApiError::invalid(
                "month",
                "name the month to re-rate, YYYY-MM",
            ));
        }
        let month = month("month", &request.month)?;
        let now = jiff::Timestamp::now().as_second();
        if month >= Day::of(now).month() {
            return Err(ApiError::invalid(
                "month",
                format!("{month} has not ended: only a past month can be re-rated"),
            ));
        }
        if request.price_list_revision <= 0 {
            return Err(ApiError::invalid(
                "price_list_revision",
                "name the price list revision to rate with (1 or more)",
            ));
        }
        validate::text("reason", &request.reason, 500, true)?;
        let agency = self.agency(&request.agency)?;
        let (stored, guard) = self.bill_versions(&request.agency, month).await?;
        let current = match stored.last() {
            Some(v) => v.invoice.clone(),
            None => self.bill_of(&agency, month, None).await?,
        };
        let rerated = self
            .bill_of(&agency, month, Some(request.price_list_revision))
            .await?;
        let versions = rerated_versions(
            stored,
            current,
            BillVersion {
                invoice: rerated.clone(),
                reason: request.reason.clone(),
                rerated_by: caller.user.clone(),
                rerated_at: now,
            },
        );
        self.billing
            .usage
            .store_bill_versions(&request.agency, month, &versions, guard)
            .await
            .map_err(|e| ApiError::unavailable(format!("the bills ledger cannot be written: {e}")))?
            .map_err(|e| ApiError::Aborted(e.to_string()))?;
        self.bill_with_budget(&agency, month, &rerated, &versions)
            .await
    }
}

/// The longest period `GetUsage` answers, in days after its first (a year and a day).
const MAX_USAGE_DAYS: i32 = 365;

fn day(field: &str, text: &str, default: Day) -> Result<Day, ApiError> {
    if text.is_empty() {
        return Ok(default);
    }
    text.parse()
        .map_err(|e: govbroker_domain::metering::DateError| ApiError::invalid(field, e.to_string()))
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn version_to_proto(v: &BillVersion) -> proto::BillVersion {
    proto::BillVersion {
        price_list_revision: i32::try_from(v.invoice.price_list_revision).unwrap_or(i32::MAX),
        total_vnd: v.invoice.total.0,
        total: format_vnd(v.invoice.total),
        reason: v.reason.clone(),
        rerated_by: v.rerated_by.clone(),
        rerated_at: rfc3339(v.rerated_at),
    }
}

/// The bill as an XLSX spreadsheet: one row per line, amounts as numbers formatted as
/// đồng (`#,##0 "₫"`: shown 1.234.567 ₫ in a Vietnamese locale), a bold totals row
/// with SUM formulas. Quantities and rates are text: they are exact decimals that a
/// spreadsheet's floating point could not hold; amounts are whole đồng far below 2^53,
/// which a spreadsheet number holds exactly.
pub fn invoice_xlsx(invoice: &Invoice) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let money = Format::new().set_num_format("#,##0 \"₫\"");
    let money_bold = Format::new().set_num_format("#,##0 \"₫\"").set_bold();
    let text = Format::new();
    let sheet = book.add_worksheet();
    sheet.set_name(&invoice.month.to_string())?;
    let headers = [
        "Cơ quan (agency)",
        "Tháng (month)",
        "Môi trường (environment)",
        "Namespace",
        "Workload",
        "Tài nguyên (resource)",
        "Từ ngày (from)",
        "Đến ngày (to)",
        "Lượng (quantity)",
        "Đơn vị (unit)",
        "Đơn vị tính giá (priced unit)",
        "Đơn giá VND (rate)",
        "Thành tiền (amount)",
        "Chưa quan sát, tối đa (unobserved bound)",
    ];
    for (col, h) in headers.iter().enumerate() {
        sheet.write_string(0, col as u16, h, &bold)?;
        sheet.set_column_width(col as u16, 16)?;
    }
    let mut row: u32 = 1;
    for l in &invoice.lines {
        let cells = [
            invoice.agency.clone(),
            invoice.month.to_string(),
            l.environment.clone(),
            l.namespace.clone(),
            l.workload.clone(),
            l.meter.label(),
            l.from.to_string(),
            l.to.to_string(),
            l.quantity.to_string(),
            l.unit.clone(),
            l.priced_unit.clone(),
            l.rate.to_string(),
        ];
        for (col, c) in cells.iter().enumerate() {
            sheet.write_string(row, col as u16, c, &text)?;
        }
        sheet.write_number(row, 12, l.amount.0 as f64, &money)?;
        sheet.write_number(row, 13, l.unobserved_bound_amount.0 as f64, &money)?;
        row += 1;
    }
    sheet.write_string(row, 0, "Tổng cộng (total)", &bold)?;
    sheet.write_formula(row, 12, &format!("=SUM(M2:M{row})"), &money_bold)?;
    sheet.write_formula(row, 13, &format!("=SUM(N2:N{row})"), &money_bold)?;
    book.save_to_buffer()
}

/// A bill as a message.
pub fn invoice_to_proto(invoice: &Invoice) -> proto::Bill {
    proto::Bill {
        agency: invoice.agency.clone(),
        month: invoice.month.to_string(),
        price_list: invoice.price_list.clone(),
        price_list_revision: i32::try_from(invoice.price_list_revision).unwrap_or(i32::MAX),
        lines: invoice
            .lines
            .iter()
            .map(|l| proto::BillLine {
                environment: l.environment.clone(),
                namespace: l.namespace.clone(),
                workload: l.workload.clone(),
                resource: l.meter.label(),
                from: l.from.to_string(),
                to: l.to.to_string(),
                quantity: l.quantity.to_string(),
                unit: l.unit.clone(),
                priced_unit: l.priced_unit.clone(),
                rate: l.rate.to_string(),
                amount_vnd: l.amount.0,
                unobserved_bound_vnd: l.unobserved_bound_amount.0,
            })
            .collect(),
        total_vnd: invoice.total.0,
        total: format_vnd(invoice.total),
        unobserved_bound_vnd: invoice.unobserved_bound.0,
        subtree_total_vnd: invoice.total.0,
        budget_vnd: 0,
        budget_used_percent: 0,
        rerate_reason: String::new(),
        rerated_by: String::new(),
        rerated_at: String::new(),
        earlier_versions: Vec::new(),
    }
}

fn bill_target(agency: &str) -> Target {
    target("Bill", "", Some(agency))
}

operation!(proto::GetBillRequest => proto::Bill, methods::GET_BILL,
    |r| bill_target(&r.agency),
    |api, caller, req| api.get_bill(caller, req));
operation!(proto::ListBillsRequest => proto::ListBillsResponse, methods::LIST_BILLS,
    |r| bill_target(&r.agency),
    |api, caller, req| api.list_bills(caller, req));
operation!(proto::ExportBillRequest => proto::ExportBillResponse, methods::EXPORT_BILL,
    |r| bill_target(&r.agency),
    |api, caller, req| api.export_bill(caller, req));
operation!(proto::GetUsageRequest => proto::Usage, methods::GET_USAGE,
    |r| target("Usage", "", Some(&r.agency)),
    |api, caller, req| api.get_usage(caller, req));
operation!(proto::RerateBillRequest => proto::Bill, methods::RERATE_BILL,
    |r| target("Bill", &r.month, Some(&r.agency)),
    |api, caller, req| api.rerate_bill(caller, req));

#[cfg(test)]
mod tests {
    use super::*;
    use govbroker_domain::billing::{PriceSchedule, RateSet};
    use govbroker_domain::metering::{DayUsage, Meter, Quantity, UsageEntry};

    #[test]
    fn a_bill_becomes_a_spreadsheet() {
        let prices = PriceSchedule::new(
            "p",
            1,
            vec![RateSet {
                effective_from: "2026-01-01".parse().unwrap(),
                cpu_per_vcpu_hour: "720".parse().unwrap(),
                memory_per_gib_hour: "96".parse().unwrap(),
                storage_per_gib_month: "2976".parse().unwrap(),
                data_service_per_plan_hour: BTreeMap::new(),
            }],
        )
        .unwrap();
        let usage = DayUsage {
            usage: vec![UsageEntry {
                environment: "prod".into(),
                namespace: "so-y-te-prod".into(),
                workload: "Workload/cong".into(),
                meter: Meter::Cpu,
                quantity: Quantity(3_600_000),
            }],
            unobserved_bound: vec![],
        };
        let day: Day = "2026-11-02".parse().unwrap();
        let invoice = rate_month("so-y-te", day.month(), [(day, &usage)], &prices).unwrap();
        let bytes = invoice_xlsx(&invoice).unwrap();
        assert_eq!(&bytes[..2], b"PK", "an XLSX file is a zip archive");
        assert!(bytes.len() > 1000);
        let bill = invoice_to_proto(&invoice);
        assert_eq!(bill.total, "720 ₫");
        assert_eq!(bill.lines[0].resource, "cpu");
    }
}
