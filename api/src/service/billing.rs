//! Billing: bills rated from the ledger's usage records with the agency's PriceList,
//! guarded by `get agencies/billing` on the agency (owners of the agency and of its
//! ancestors, and finance staff). See `docs/billing.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use govbroker_crds::{Agency, PriceList};
use govbroker_domain::billing::{
    Invoice, Vnd, budget_status, format_vnd, invoice_csv, rate_month, roll_up,
    schedule_from_price_list,
};
use govbroker_domain::isolation::virtual_subresource;
use govbroker_domain::metering::{Day, Month};
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
        let schedule = schedule_from_price_list(&price_list, revision)
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
            let total = self.bill_of(a, month, None).await?.total;
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
        let revision = (request.price_list_revision > 0).then_some(request.price_list_revision);
        let invoice = self.bill_of(&agency, month, revision).await?;
        let (_, _, subtree) = self.subtree_totals(&request.agency, month).await?;
        let mut bill = invoice_to_proto(&invoice);
        bill.subtree_total_vnd = subtree.get(&request.agency).copied().unwrap_or_default().0;
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
        let invoice = self.bill_of(&agency, month, None).await?;
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
