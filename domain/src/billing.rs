//! Billing: prices with effective dates, rating usage into monthly bills, roll-up of the
//! agency tree, budgets, and how VND is written.
//!
//! # Money
//!
//! Amounts are whole đồng ([`Vnd`], an `i64`: VND has no minor unit). Rates are exact
//! decimals with up to six fractional digits ([`Rate`], an integer of millionths of a
//! đồng). No floating point is used anywhere.
//!
//! # The rounding rule (one per line)
//!
//! A bill line is one (environment, namespace, workload, resource, price period). Its
//! amount is computed **once**, exactly, from the integer quantity summed over the
//! line's days:
//!
//! ```text
//! amount = round_half_up( quantity × rate / unit )
//! ```
//!
//! where `unit` is the size of one priced unit in the quantity's integer unit:
//! - CPU, per vCPU-hour: 1,000 milli-cores × 3,600 s = 3,600,000 milli-core-seconds;
//! - memory, per GiB-hour: 2^30 bytes × 3,600 s = 3,865,470,566,400 byte-seconds;
//! - storage, per GiB-month: 2^30 bytes × the seconds of the bill's month (28-31 days
//!   of 86,400 s), so a GiB held for the whole month costs exactly the monthly rate;
//! - a data-service plan, per plan-hour: 3,600 instance-seconds.
//!
//! The fraction is evaluated in 128-bit integers (no intermediate rounding) and rounded
//! to the nearest đồng, halves up. Totals (per environment, workload, resource, agency
//! and subtree) are sums of rounded lines, so every total equals the sum of the lines a
//! person sees.
#![allow(clippy::module_name_repetitions)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::metering::{Day, DayUsage, Meter, Month, Quantity};

/// An amount of money in whole đồng.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Vnd(pub i64);

impl Vnd {
    /// Nothing.
    pub const ZERO: Vnd = Vnd(0);

    /// `self + other`, saturating.
    pub fn saturating_add(self, other: Vnd) -> Vnd {
        Vnd(self.0.saturating_add(other.0))
    }
}

impl std::iter::Sum for Vnd {
    fn sum<I: Iterator<Item = Vnd>>(iter: I) -> Vnd {
        iter.fold(Vnd::ZERO, Vnd::saturating_add)
    }
}

/// Writes an amount the Vietnamese way: `1.234.567 ₫` (dots group thousands, no
/// decimals, a space, then the đồng sign).
pub fn format_vnd(amount: Vnd) -> String {
    let digits = amount.0.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + 8);
    if amount.0 < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out.push_str(" ₫");
    out
}

impl fmt::Display for Vnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_vnd(*self))
    }
}

/// Millionths of a đồng in one đồng.
const MICRO: i128 = 1_000_000;

/// A non-negative price in VND, exact to six decimal places, written like `1250` or
/// `0.35` (a dot before the fraction, no grouping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(i64);

/// A price that is not a non-negative decimal with at most six fractional digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a price in VND: write a non-negative decimal number with a dot and at most 6 fractional digits, such as 1250 or 0.35"
)]
pub struct RateError(String);

impl Rate {
    /// A rate of whole đồng.
    pub const fn from_vnd(vnd: i64) -> Rate {
        Rate(vnd * 1_000_000)
    }

    /// The rate in millionths of a đồng.
    pub const fn micro(self) -> i64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = RateError;
    fn from_str(text: &str) -> Result<Rate, RateError> {
        let error = || RateError(text.to_owned());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty()
            || whole.len() > 12
            || fraction.len() > 6
            || (text.contains('.') && fraction.is_empty())
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(error());
        }
        let whole: i64 = whole.parse().map_err(|_| error())?;
        let mut micro: i64 = 0;
        for (i, b) in fraction.bytes().enumerate() {
            micro += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
        }
        Ok(Rate(whole * 1_000_000 + micro))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 1_000_000;
        let fraction = self.0 % 1_000_000;
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let text = format!("{fraction:06}");
            write!(f, "{whole}.{}", text.trim_end_matches('0'))
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The rates in effect from one day on (until the next set's day).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateSet {
    /// First billing day (Asia/Ho_Chi_Minh) the rates apply to.
    pub effective_from: Day,
    /// VND per vCPU-hour of CPU requests.
    pub cpu_per_vcpu_hour: Rate,
    /// VND per GiB-hour of memory requests.
    pub memory_per_gib_hour: Rate,
    /// VND per GiB-month of PersistentVolumeClaim capacity.
    pub storage_per_gib_month: Rate,
    /// VND per hour of one instance, by (class, plan).
    #[serde(with = "plan_rates")]
    pub data_service_per_plan_hour: BTreeMap<(String, String), Rate>,
}

mod plan_rates {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PlanRate {
        class_name: String,
        plan: String,
        per_hour: Rate,
    }

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<(String, String), Rate>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|((class_name, plan), rate)| PlanRate {
            class_name: class_name.clone(),
            plan: plan.clone(),
            per_hour: *rate,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(String, String), Rate>, D::Error> {
        let list = Vec::<PlanRate>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|p| ((p.class_name, p.plan), p.per_hour))
            .collect())
    }
}

impl RateSet {
    /// The rate of a meter, with the name of its priced unit.
    pub fn rate_of(&self, meter: &Meter) -> Option<Rate> {
        match meter {
            Meter::Cpu => Some(self.cpu_per_vcpu_hour),
            Meter::Memory => Some(self.memory_per_gib_hour),
            Meter::Storage => Some(self.storage_per_gib_month),
            Meter::DataService { class_name, plan } => self
                .data_service_per_plan_hour
                .get(&(class_name.clone(), plan.clone()))
                .copied(),
        }
    }
}

/// The priced unit of a meter and its size in the meter's integer unit, for a month.
pub fn priced_unit(meter: &Meter, month: Month) -> (&'static str, u128) {
    const GIB: u128 = 1 << 30;
    match meter {
        Meter::Cpu => ("vCPU-hour", 1000 * 3600),
        Meter::Memory => ("GiB-hour", GIB * 3600),
        Meter::Storage => ("GiB-month", GIB * month.seconds() as u128),
        Meter::DataService { .. } => ("plan-hour", 3600),
    }
}

/// A price list as rating uses it: one revision of a PriceList's rate sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceSchedule {
    /// Name of the PriceList.
    pub name: String,
    /// The revision rated with (PriceList revisions are append-only).
    pub revision: u32,
    /// Rate sets, strictly ascending by `effective_from`.
    pub rate_sets: Vec<RateSet>,
}

/// Why a price list cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// A field of the PriceList that does not parse (the CRD's schema should have
    /// refused it).
    #[error("price list {name}: {message}")]
    Invalid {
        /// The price list.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// No rate set at all.
    #[error("price list {0} has no rates")]
    Empty(String),
    /// Two rate sets not in ascending order of their dates.
    #[error(
        "price list {name}: rates effective from {later} come after rates effective from {earlier}; list them in ascending order of effectiveFrom, one set per date"
    )]
    Order {
        /// The price list.
        name: String,
        /// The date listed first.
        earlier: Day,
        /// The date listed after it.
        later: Day,
    },
}

impl PriceSchedule {
    /// A schedule, checked: at least one rate set, dates strictly ascending.
    pub fn new(
        name: impl Into<String>,
        revision: u32,
        rate_sets: Vec<RateSet>,
    ) -> Result<PriceSchedule, PriceError> {
        let name = name.into();
        if rate_sets.is_empty() {
            return Err(PriceError::Empty(name));
        }
        for pair in rate_sets.windows(2) {
            if pair[1].effective_from <= pair[0].effective_from {
                return Err(PriceError::Order {
                    name,
                    earlier: pair[0].effective_from,
                    later: pair[1].effective_from,
                });
            }
        }
        Ok(PriceSchedule {
            name,
            revision,
            rate_sets,
        })
    }

    /// Index of the rate set in effect on `day`.
    pub fn index_on(&self, day: Day) -> Option<usize> {
        let after = self.rate_sets.partition_point(|r| r.effective_from <= day);
        after.checked_sub(1)
    }

    /// The rate set in effect on `day`.
    pub fn rates_on(&self, day: Day) -> Option<&RateSet> {
        self.index_on(day).map(|i| &self.rate_sets[i])
    }
}

/// The schedule of a PriceList's revision (`None`: the latest; a month's bill uses
/// [`schedule_for_month`]).
/// Rate sets are sorted by date.
pub fn schedule_from_price_list(
    price_list: &govbroker_crds::PriceList,
    revision: Option<i32>,
) -> Result<PriceSchedule, PriceError> {
    let name = price_list.metadata.name.clone().unwrap_or_default();
    let invalid = |message: String| PriceError::Invalid {
        name: name.clone(),
        message,
    };
    let chosen = match revision {
        Some(n) => price_list.spec.revision(n),
        None => price_list.spec.latest(),
    }
    .ok_or_else(|| match revision {
        Some(n) => invalid(format!("it has no revision {n}")),
        None => PriceError::Empty(name.clone()),
    })?;
    let mut sets = Vec::with_capacity(chosen.rates.len());
    for r in &chosen.rates {
        let rate = |field: &str, text: &str| {
            text.parse::<Rate>()
                .map_err(|e| invalid(format!("revision {}: {field}: {e}", chosen.revision)))
        };
        let mut plans = BTreeMap::new();
        for p in &r.data_services {
            plans.insert(
                (p.class_name.clone(), p.plan.clone()),
                rate("perHour", &p.per_hour)?,
            );
        }
        sets.push(RateSet {
            effective_from: r.effective_from.parse().map_err(|e| {
                invalid(format!("revision {}: effectiveFrom: {e}", chosen.revision))
            })?,
            cpu_per_vcpu_hour: rate("cpuPerVcpuHour", &r.cpu_per_vcpu_hour)?,
            memory_per_gib_hour: rate("memoryPerGibHour", &r.memory_per_gib_hour)?,
            storage_per_gib_month: rate("storagePerGibMonth", &r.storage_per_gib_month)?,
            data_service_per_plan_hour: plans,
        });
    }
    sets.sort_by_key(|s| s.effective_from);
    PriceSchedule::new(
        name.clone(),
        u32::try_from(chosen.revision).unwrap_or(0),
        sets,
    )
}

/// The revision of a price list that rates `month`'s bill: the highest-numbered one
/// adopted (`adoptedOn`) on or before the month's last day, so a revision added later
/// never changes an earlier month's bill (a past month changes only when it is re-rated
/// on purpose). A revision without `adoptedOn` counts as in force for every month, as
/// price lists were before revisions carried the date. When every revision was adopted
/// after the month, the lowest-numbered one rates it: the first prices there are.
pub fn revision_in_force(
    price_list: &govbroker_crds::PriceList,
    month: Month,
) -> Result<i32, PriceError> {
    let name = price_list.metadata.name.clone().unwrap_or_default();
    let last_day = month.last_day();
    let mut in_force: Option<i32> = None;
    let mut first: Option<i32> = None;
    for r in &price_list.spec.revisions {
        first = Some(first.map_or(r.revision, |f| f.min(r.revision)));
        let adopted = match &r.adopted_on {
            None => true,
            Some(text) => {
                let day: Day = text.parse().map_err(|e| PriceError::Invalid {
                    name: name.clone(),
                    message: format!("revision {}: adoptedOn: {e}", r.revision),
                })?;
                day <= last_day
            }
        };
        if adopted {
            in_force = Some(in_force.map_or(r.revision, |n| n.max(r.revision)));
        }
    }
    in_force.or(first).ok_or(PriceError::Empty(name))
}

/// The schedule that rates `month`'s bill when the month was never re-rated: the
/// revision in force for it ([`revision_in_force`]).
pub fn schedule_for_month(
    price_list: &govbroker_crds::PriceList,
    month: Month,
) -> Result<PriceSchedule, PriceError> {
    let revision = revision_in_force(price_list, month)?;
    schedule_from_price_list(price_list, Some(revision))
}

/// The bill as CSV (RFC 4180, UTF-8, comma-separated, CRLF line ends): one row per line
/// and a last `TOTAL` row. Amounts are whole đồng without grouping, so spreadsheets
/// read them as numbers.
pub fn invoice_csv(invoice: &Invoice) -> String {
    fn field(text: &str) -> String {
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    }
    let mut out = String::from(
        "agency,month,environment,namespace,workload,resource,from,to,quantity,unit,priced_unit,unit_size,rate_vnd,amount_vnd,unobserved_bound_vnd\r\n",
    );
    for l in &invoice.lines {
        let row = [
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
            l.unit_size.to_string(),
            l.rate.to_string(),
            l.amount.0.to_string(),
            l.unobserved_bound_amount.0.to_string(),
        ];
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "{},{},TOTAL,,,,,,,,,,,{},{}\r\n",
        field(&invoice.agency),
        invoice.month,
        invoice.total.0,
        invoice.unobserved_bound.0
    ));
    out
}

/// Why usage could not be rated. Usage is never dropped silently: a bill that cannot
/// price all of it is not produced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    /// Usage on a day before the first rates.
    #[error(
        "price list {price_list} has no rates in effect on {day}; add rates effective from that day or earlier"
    )]
    NoRates {
        /// The price list.
        price_list: String,
        /// The day.
        day: Day,
    },
    /// A data-service plan without a price.
    #[error(
        "price list {price_list} has no price for data-service plan {class_name}/{plan} in effect on {day}; add it to the price list"
    )]
    UnpricedPlan {
        /// The price list.
        price_list: String,
        /// The class.
        class_name: String,
        /// The plan.
        plan: String,
        /// The day.
        day: Day,
    },
    /// A day outside the month was given.
    #[error("usage of {day} is not in the month {month}")]
    WrongMonth {
        /// The day.
        day: Day,
        /// The month.
        month: Month,
    },
    /// An amount too large to compute exactly.
    #[error("the amount of a line is too large to compute")]
    Overflow,
}

/// One line of a bill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    /// Environment within the agency.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// Top of the owner chain, `Kind/name`.
    pub workload: String,
    /// What was used.
    #[serde(flatten)]
    pub meter: Meter,
    /// First day of the line's price period within the month.
    pub from: Day,
    /// Last day of the line's price period within the month (inclusive).
    pub to: Day,
    /// Usage in the meter's integer unit.
    pub quantity: Quantity,
    /// The integer unit (`milli-core-seconds`, ...).
    pub unit: String,
    /// The priced unit (`vCPU-hour`, ...).
    pub priced_unit: String,
    /// Size of one priced unit in `unit`.
    pub unit_size: Quantity,
    /// VND per priced unit.
    pub rate: Rate,
    /// The day the rate took effect.
    pub rate_effective_from: Day,
    /// The amount: `round_half_up(quantity × rate / unit_size)`.
    pub amount: Vnd,
    /// Unobserved usage of the same key (an upper bound, not billed).
    #[serde(default, skip_serializing_if = "is_zero_quantity")]
    pub unobserved_bound: Quantity,
    /// The unobserved bound priced the same way (rounded up): at most this much more
    /// might have been used.
    #[serde(default, skip_serializing_if = "is_zero_vnd")]
    pub unobserved_bound_amount: Vnd,
}

fn is_zero_quantity(q: &Quantity) -> bool {
    q.0 == 0
}

fn is_zero_vnd(v: &Vnd) -> bool {
    v.0 == 0
}

/// A monthly bill of one agency (its own namespaces only; see [`roll_up`] for subtrees).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    /// The agency.
    pub agency: String,
    /// The month (Asia/Ho_Chi_Minh).
    pub month: Month,
    /// The price list rated with.
    pub price_list: String,
    /// Its revision.
    pub price_list_revision: u32,
    /// Lines, ordered by environment, namespace, workload, resource and period.
    pub lines: Vec<LineItem>,
    /// Sum of the lines' amounts.
    pub total: Vnd,
    /// Sum of the lines' unobserved bounds (not billed).
    pub unobserved_bound: Vnd,
}

/// `round_half_up(numerator / denominator)` for non-negative values.
fn div_round_half_up(numerator: u128, denominator: u128) -> u128 {
    let q = numerator / denominator;
    let r = numerator % denominator;
    if r >= denominator - r { q + 1 } else { q }
}

fn div_ceil(numerator: u128, denominator: u128) -> u128 {
    numerator.div_ceil(denominator)
}

/// The amount of `quantity` at `rate` per `unit_size`, rounded half up to a đồng.
pub fn line_amount(quantity: Quantity, rate: Rate, unit_size: u128) -> Result<Vnd, RatingError> {
    let numerator = quantity
        .0
        .checked_mul(rate.micro() as u128)
        .ok_or(RatingError::Overflow)?;
    let denominator = unit_size
        .checked_mul(MICRO as u128)
        .ok_or(RatingError::Overflow)?;
    i64::try_from(div_round_half_up(numerator, denominator))
        .map(Vnd)
        .map_err(|_| RatingError::Overflow)
}

fn bound_amount(quantity: Quantity, rate: Rate, unit_size: u128) -> Result<Vnd, RatingError> {
    let numerator = quantity
        .0
        .checked_mul(rate.micro() as u128)
        .ok_or(RatingError::Overflow)?;
    i64::try_from(div_ceil(numerator, unit_size * MICRO as u128))
        .map(Vnd)
        .map_err(|_| RatingError::Overflow)
}

type LineKey = (String, String, String, Meter, usize);

#[derive(Default)]
struct LineAccumulator {
    from: Option<Day>,
    to: Option<Day>,
    quantity: Quantity,
    unobserved: Quantity,
}

/// Rates one agency's daily usage of `month` into its bill.
///
/// Each day is priced by the rate set in effect on it, so a price change on the 16th
/// splits each affected key into two lines (1st-15th and 16th-end).
pub fn rate_month<'a>(
    agency: &str,
    month: Month,
    days: impl IntoIterator<Item = (Day, &'a DayUsage)>,
    prices: &PriceSchedule,
) -> Result<Invoice, RatingError> {
    let mut lines: BTreeMap<LineKey, LineAccumulator> = BTreeMap::new();
    for (day, usage) in days {
        if !month.contains(day) {
            return Err(RatingError::WrongMonth { day, month });
        }
        if usage.usage.is_empty() && usage.unobserved_bound.is_empty() {
            continue;
        }
        let index = prices.index_on(day).ok_or_else(|| RatingError::NoRates {
            price_list: prices.name.clone(),
            day,
        })?;
        for (entry, unobserved) in usage
            .usage
            .iter()
            .map(|e| (e, false))
            .chain(usage.unobserved_bound.iter().map(|e| (e, true)))
        {
            if prices.rate_sets[index].rate_of(&entry.meter).is_none() {
                let Meter::DataService { class_name, plan } = &entry.meter else {
                    unreachable!("every resource but data services has a rate");
                };
                return Err(RatingError::UnpricedPlan {
                    price_list: prices.name.clone(),
                    class_name: class_name.clone(),
                    plan: plan.clone(),
                    day,
                });
            }
            let key = (
                entry.environment.clone(),
                entry.namespace.clone(),
                entry.workload.clone(),
                entry.meter.clone(),
                index,
            );
            let line = lines.entry(key).or_default();
            line.from = Some(line.from.map_or(day, |d| d.min(day)));
            line.to = Some(line.to.map_or(day, |d| d.max(day)));
            if unobserved {
                line.unobserved = line.unobserved.saturating_add(entry.quantity);
            } else {
                line.quantity = line.quantity.saturating_add(entry.quantity);
            }
        }
    }
    let mut items = Vec::with_capacity(lines.len());
    for ((environment, namespace, workload, meter, index), acc) in lines {
        let rates = &prices.rate_sets[index];
        let rate = rates.rate_of(&meter).ok_or(RatingError::Overflow)?;
        let (priced_unit, unit_size) = priced_unit(&meter, month);
        // The line's period is the rate's span within the month.
        let from = rates.effective_from.max(month.first_day());
        let to = prices
            .rate_sets
            .get(index + 1)
            .map(|next| Day::from_days_since_epoch(next.effective_from.days_since_epoch() - 1))
            .map_or(month.last_day(), |d| d.min(month.last_day()));
        debug_assert!(acc.from.is_some_and(|d| d >= from) && acc.to.is_some_and(|d| d <= to));
        items.push(LineItem {
            amount: line_amount(acc.quantity, rate, unit_size)?,
            unobserved_bound_amount: bound_amount(acc.unobserved, rate, unit_size)?,
            unit: meter.unit().to_owned(),
            environment,
            namespace,
            workload,
            meter,
            from,
            to,
            quantity: acc.quantity,
            priced_unit: priced_unit.to_owned(),
            unit_size: Quantity(unit_size),
            rate,
            rate_effective_from: rates.effective_from,
            unobserved_bound: acc.unobserved,
        });
    }
    Ok(Invoice {
        agency: agency.to_owned(),
        month,
        price_list: prices.name.clone(),
        price_list_revision: prices.revision,
        total: items.iter().map(|l| l.amount).sum(),
        unobserved_bound: items.iter().map(|l| l.unobserved_bound_amount).sum(),
        lines: items,
    })
}

impl Invoice {
    /// Totals of the lines grouped by a key (environment, workload, resource, ...).
    pub fn totals_by(&self, key: impl Fn(&LineItem) -> String) -> BTreeMap<String, Vnd> {
        let mut totals: BTreeMap<String, Vnd> = BTreeMap::new();
        for line in &self.lines {
            let slot = totals.entry(key(line)).or_default();
            *slot = slot.saturating_add(line.amount);
        }
        totals
    }

    /// Totals per environment.
    pub fn by_environment(&self) -> BTreeMap<String, Vnd> {
        self.totals_by(|l| l.environment.clone())
    }

    /// Totals per `namespace/workload`.
    pub fn by_workload(&self) -> BTreeMap<String, Vnd> {
        self.totals_by(|l| format!("{}/{}", l.namespace, l.workload))
    }

    /// Totals per resource (`cpu`, `memory`, `storage`, `<class>/<plan>`).
    pub fn by_resource(&self) -> BTreeMap<String, Vnd> {
        self.totals_by(|l| l.meter.label())
    }
}

/// Totals of every agency's subtree: its own amount plus every descendant's.
///
/// `parents` maps each agency to its parent (`None` for a root). An agency with an
/// amount but missing from `parents` counts as a root. A cycle (which the tree's rules
/// forbid) stops the walk instead of looping: each ancestor is counted once.
pub fn roll_up(
    own: &BTreeMap<String, Vnd>,
    parents: &BTreeMap<String, Option<String>>,
) -> BTreeMap<String, Vnd> {
    let mut subtree: BTreeMap<String, Vnd> =
        parents.keys().map(|a| (a.clone(), Vnd::ZERO)).collect();
    for (agency, amount) in own {
        let mut seen = BTreeSet::new();
        let mut current = Some(agency.clone());
        while let Some(name) = current {
            if !seen.insert(name.clone()) {
                break;
            }
            let slot = subtree.entry(name.clone()).or_default();
            *slot = slot.saturating_add(*amount);
            current = parents.get(&name).cloned().flatten();
        }
    }
    subtree
}

/// A monthly budget compared with what is spent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// The monthly budget.
    pub budget: Vnd,
    /// Billed so far this month.
    pub month_to_date: Vnd,
    /// Forecast to the month's end at the pace so far.
    pub forecast: Vnd,
    /// `month_to_date / budget` in whole percent, rounded down.
    pub percent_used: u32,
    /// The thresholds (percent) reached, ascending.
    pub thresholds_reached: Vec<u32>,
}

/// Linear forecast: the month-to-date amount scaled from the seconds elapsed to the
/// whole month, rounded half up. With nothing elapsed, the forecast is what is spent.
pub fn forecast(month_to_date: Vnd, elapsed_seconds: i64, month_seconds: i64) -> Vnd {
    if elapsed_seconds <= 0 || month_to_date.0 <= 0 {
        return month_to_date;
    }
    let elapsed = elapsed_seconds.min(month_seconds) as u128;
    let value = div_round_half_up(month_to_date.0 as u128 * month_seconds as u128, elapsed);
    Vnd(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Compares spending with a budget at `now` (UTC seconds) within `month`.
pub fn budget_status(
    budget: Vnd,
    thresholds: &[u32],
    month: Month,
    month_to_date: Vnd,
    now: i64,
) -> BudgetStatus {
    let percent_used = if budget.0 <= 0 {
        0
    } else {
        u32::try_from(i128::from(month_to_date.0) * 100 / i128::from(budget.0)).unwrap_or(u32::MAX)
    };
    let mut reached: Vec<u32> = thresholds
        .iter()
        .copied()
        .filter(|t| {
            budget.0 > 0
                && i128::from(month_to_date.0) * 100 >= i128::from(budget.0) * i128::from(*t)
        })
        .collect();
    reached.sort_unstable();
    reached.dedup();
    BudgetStatus {
        budget,
        month_to_date,
        forecast: forecast(month_to_date, now - month.start(), month.seconds()),
        percent_used,
        thresholds_reached: reached,
    }
}

/// One version of an agency's bill for a month, as kept once a month is re-rated: the
/// bill, which price-list revision rated it, why, by whom and when. The last version of
/// a month is its current bill; the earlier ones stay for anyone checking them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillVersion {
    /// The bill (its `price_list_revision` says what rated it).
    pub invoice: Invoice,
    /// Why this version was made (the re-rate's reason).
    pub reason: String,
    /// Who made it (the caller's user name).
    pub rerated_by: String,
    /// When (UTC seconds).
    pub rerated_at: i64,
}

/// The reason recorded for the bill as it stood before a month's first re-rate.
pub const BEFORE_FIRST_RERATE: &str = "the bill as computed before the first re-rate";

/// The versions of a month after re-rating it: `stored` (empty before the first
/// re-rate) followed by `rerated`. Before the first re-rate, `current` (the bill as it
/// was shown until now, computed on request) is kept first, so the earlier amount is
/// never lost.
pub fn rerated_versions(
    stored: Vec<BillVersion>,
    current: Invoice,
    rerated: BillVersion,
) -> Vec<BillVersion> {
    let mut versions = stored;
    if versions.is_empty() {
        versions.push(BillVersion {
            invoice: current,
            reason: BEFORE_FIRST_RERATE.to_owned(),
            rerated_by: String::new(),
            rerated_at: rerated.rerated_at,
        });
    }
    versions.push(rerated);
    versions
}

/// Type of the Agency condition that says which budget threshold the month has crossed.
pub const BUDGET_CONDITION: &str = "BudgetThreshold";

/// The `BudgetThreshold` condition of an agency for `month`: `True` with reason
/// `Reached<N>Percent` once the month-to-date cost has crossed threshold `N` (the
/// highest crossed), `False` with `BelowThresholds` before the first.
///
/// The condition changes only when a new threshold is crossed or the month turns (its
/// message carries the cost at the moment of crossing, not the cost now), so it is set
/// once per threshold and the status does not change on every cost pass. `previous` is
/// the condition as the Agency has it; `now` becomes `lastTransitionTime` when the
/// condition changes.
pub fn budget_condition(
    month: Month,
    budget: &BudgetStatus,
    previous: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    observed_generation: Option<i64>,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    let highest = budget.thresholds_reached.iter().max().copied();
    let (status, reason) = match highest {
        Some(t) => ("True", format!("Reached{t}Percent")),
        None => ("False", "BelowThresholds".to_owned()),
    };
    // The month leads the message, so a threshold crossed again next month is new.
    let month_prefix = format!("{month}: ");
    if let Some(old) = previous.filter(|c| {
        c.status == status && c.reason == reason && c.message.starts_with(&month_prefix)
    }) {
        return Condition {
            observed_generation,
            ..old.clone()
        };
    }
    let message = match highest {
        Some(t) => format!(
            "{month_prefix}month-to-date cost {} reached {t}% of the monthly budget {} (forecast to month end {})",
            format_vnd(budget.month_to_date),
            format_vnd(budget.budget),
            format_vnd(budget.forecast)
        ),
        None => format!(
            "{month_prefix}month-to-date cost is below every alert threshold of the monthly budget {}",
            format_vnd(budget.budget)
        ),
    };
    Condition {
        type_: BUDGET_CONDITION.to_owned(),
        status: status.to_owned(),
        reason,
        message,
        last_transition_time: now,
        observed_generation,
    }
}

/// Why `growth` of a workload of `agency` (a new workload, a scale-up, resuming, larger
/// requests: [`crate::workload::growth`]) is refused at admission in `month`: its budget
/// is enforced (`spec.budget.enforce`) and the month-to-date cost in its status
/// (`status.cost`, of the same month) has reached the monthly budget. `None` admits. A
/// cost status of an earlier month admits: the new month starts unspent.
pub fn budget_refusal(
    agency: &str,
    growth: &crate::workload::Growth,
    budget: &govbroker_crds::Budget,
    cost: Option<&govbroker_crds::AgencyCostStatus>,
    month: Month,
) -> Option<String> {
    if !budget.enforce {
        return None;
    }
    let cost = cost.filter(|c| c.month == month.to_string())?;
    if cost.month_to_date_vnd < budget.monthly_vnd {
        return None;
    }
    Some(format!(
        "agency {agency} has spent {} in {month}, which reaches its monthly budget of {} (spec.budget.monthlyVnd), and the budget is enforced (spec.budget.enforce): {growth} is refused, as are new workloads, scale-ups and larger resource requests until the month ends. Scaling down, lowering requests, pausing and deleting stay allowed. To raise the budget, a platform admin runs: kubectl patch agency {agency} --type merge -p '{{\"spec\":{{\"budget\":{{\"monthlyVnd\":<new amount in đồng>}}}}}}' (or sets spec.budget.enforce to false)",
        format_vnd(Vnd(cost.month_to_date_vnd)),
        format_vnd(Vnd(budget.monthly_vnd)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::{Attribution, Integrator, UsageEntry};
    use crate::workload::Growth;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn day(text: &str) -> Day {
        text.parse().unwrap()
    }

    fn rates(from: &str, cpu: &str, memory: &str, storage: &str) -> RateSet {
        RateSet {
            effective_from: day(from),
            cpu_per_vcpu_hour: cpu.parse().unwrap(),
            memory_per_gib_hour: memory.parse().unwrap(),
            storage_per_gib_month: storage.parse().unwrap(),
            data_service_per_plan_hour: BTreeMap::from([(
                ("postgres-dung-chung".to_owned(), "co-ban".to_owned()),
                "1500".parse().unwrap(),
            )]),
        }
    }

    fn entry(workload: &str, meter: Meter, quantity: u128) -> UsageEntry {
        UsageEntry {
            environment: "prod".to_owned(),
            namespace: "so-y-te-prod".to_owned(),
            workload: workload.to_owned(),
            meter,
            quantity: Quantity(quantity),
        }
    }

    #[test]
    fn vnd_is_written_with_dots_and_the_dong_sign() {
        assert_eq!(format_vnd(Vnd(1_234_567)), "1.234.567 ₫");
        assert_eq!(format_vnd(Vnd(0)), "0 ₫");
        assert_eq!(format_vnd(Vnd(999)), "999 ₫");
        assert_eq!(format_vnd(Vnd(1000)), "1.000 ₫");
        assert_eq!(format_vnd(Vnd(-25_000)), "-25.000 ₫");
        assert_eq!(Vnd(12_000_000_000).to_string(), "12.000.000.000 ₫");
        assert_eq!(format_vnd(Vnd(i64::MIN)), "-9.223.372.036.854.775.808 ₫");
    }

    #[test]
    fn rates_are_exact_decimals() {
        let rate: Rate = "1250.5".parse().unwrap();
        assert_eq!(rate.micro(), 1_250_500_000);
        assert_eq!(rate.to_string(), "1250.5");
        assert_eq!("0.000001".parse::<Rate>().unwrap().micro(), 1);
        assert_eq!("700".parse::<Rate>().unwrap(), Rate::from_vnd(700));
        for bad in [
            "",
            "-1",
            "1.",
            ".5",
            "1.2345678",
            "1,5",
            "1e3",
            "1 000",
            "1234567890123",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&rate).unwrap(), "\"1250.5\"");
    }

    #[test]
    fn rounding_is_half_up_once_per_line() {
        // 1 vCPU-hour at 0.5 ₫ is 0.5 ₫: rounds up to 1.
        assert_eq!(
            line_amount(Quantity(3_600_000), "0.5".parse().unwrap(), 3_600_000),
            Ok(Vnd(1))
        );
        // 0.499999 rounds down.
        assert_eq!(
            line_amount(Quantity(3_600_000), "0.499999".parse().unwrap(), 3_600_000),
            Ok(Vnd(0))
        );
        // 250m for 37 s at 720 ₫/vCPU-hour: 9,250 × 720 / 3,600,000 = 1.85 → 2.
        assert_eq!(
            line_amount(Quantity(250 * 37), Rate::from_vnd(720), 3_600_000),
            Ok(Vnd(2))
        );
        // Huge but exact: 1 PiB (2^20 GiB) for 31 days at 999,999.999999 ₫/GiB-month is
        // 1,048,575,999,998.998951 ₫, rounded to 1,048,575,999,999.
        let month = Month::new(2026, 12).unwrap();
        let (_, unit) = priced_unit(&Meter::Storage, month);
        let q = Quantity((1u128 << 50) * 31 * 86_400);
        assert_eq!(
            line_amount(q, "999999.999999".parse().unwrap(), unit),
            Ok(Vnd(1_048_575_999_999))
        );
    }

    /// A hand-computed bill: prices change on 16 November.
    ///
    /// Rates 1-15 Nov: cpu 720 ₫/vCPU-h, memory 96 ₫/GiB-h, storage 2,976 ₫/GiB-month,
    /// postgres co-ban 1,500 ₫/h. From 16 Nov: cpu 800, memory 100.5, storage 3,000.
    ///
    /// Usage (all prod, so-y-te-prod):
    /// - Workload/portal: 500m CPU and 1 GiB for 10 hours on 10 Nov and 10 hours on 20 Nov.
    ///   cpu 1-15: 500×36,000 = 18,000,000 mcs = 5 vCPU-h × 720 = 3,600 ₫;
    ///   cpu 16-30: 5 vCPU-h × 800 = 4,000 ₫;
    ///   memory 1-15: 10 GiB-h × 96 = 960 ₫; memory 16-30: 10 × 100.5 = 1,005 ₫.
    /// - PersistentVolumeClaim/data: 10 GiB for the whole month (30 days):
    ///   1-15: 10 GiB × 15 days = 150/30 GiB-month = 5 × 2,976 = 14,880 ₫;
    ///   16-30: 5 × 3,000 = 15,000 ₫.
    /// - DataServiceClaim/db (co-ban): 7 hours on 3 Nov: 7 × 1,500 = 10,500 ₫.
    /// - Workload/cron: 100m for 1 s on 30 Nov: 100/3.6e6 × 800 = 0.0222 → 0 ₫.
    ///
    /// Total: 3,600 + 4,000 + 960 + 1,005 + 14,880 + 15,000 + 10,500 = 49,945 ₫.
    #[test]
    fn a_mid_month_price_change_splits_the_lines() {
        let prices = PriceSchedule::new(
            "gia-2026",
            3,
            vec![
                rates("2026-01-01", "720", "96", "2976"),
                rates("2026-11-16", "800", "100.5", "3000"),
            ],
        )
        .unwrap();
        let month: Month = "2026-11".parse().unwrap();
        let gib: u128 = 1 << 30;
        let pg = Meter::DataService {
            class_name: "postgres-dung-chung".to_owned(),
            plan: "co-ban".to_owned(),
        };
        let mut days: BTreeMap<Day, DayUsage> = BTreeMap::new();
        for d in month.iter_days() {
            let mut usage = vec![entry(
                "PersistentVolumeClaim/data",
                Meter::Storage,
                10 * gib * 86_400,
            )];
            let (_, _, dd) = d.ymd();
            if dd == 10 || dd == 20 {
                usage.push(entry("Workload/portal", Meter::Cpu, 500 * 36_000));
                usage.push(entry("Workload/portal", Meter::Memory, gib * 36_000));
            }
            if dd == 3 {
                usage.push(entry("DataServiceClaim/db", pg.clone(), 7 * 3600));
            }
            if dd == 30 {
                usage.push(entry("Workload/cron", Meter::Cpu, 100));
            }
            days.insert(
                d,
                DayUsage {
                    usage,
                    unobserved_bound: vec![],
                },
            );
        }
        let invoice =
            rate_month("so-y-te", month, days.iter().map(|(d, u)| (*d, u)), &prices).unwrap();
        let amounts: Vec<(String, String, String, i64)> = invoice
            .lines
            .iter()
            .map(|l| {
                (
                    l.workload.clone(),
                    l.meter.label(),
                    l.from.to_string(),
                    l.amount.0,
                )
            })
            .collect();
        let expect =
            |w: &str, r: &str, from: &str, a: i64| (w.to_owned(), r.to_owned(), from.to_owned(), a);
        assert_eq!(
            amounts,
            vec![
                expect(
                    "DataServiceClaim/db",
                    "postgres-dung-chung/co-ban",
                    "2026-11-01",
                    10_500
                ),
                expect(
                    "PersistentVolumeClaim/data",
                    "storage",
                    "2026-11-01",
                    14_880
                ),
                expect(
                    "PersistentVolumeClaim/data",
                    "storage",
                    "2026-11-16",
                    15_000
                ),
                expect("Workload/cron", "cpu", "2026-11-16", 0),
                expect("Workload/portal", "cpu", "2026-11-01", 3_600),
                expect("Workload/portal", "cpu", "2026-11-16", 4_000),
                expect("Workload/portal", "memory", "2026-11-01", 960),
                expect("Workload/portal", "memory", "2026-11-16", 1_005),
            ]
        );
        assert_eq!(invoice.total, Vnd(49_945));
        assert_eq!(invoice.lines[1].to.to_string(), "2026-11-15");
        assert_eq!(invoice.lines[2].to.to_string(), "2026-11-30");
        assert_eq!(invoice.lines[1].priced_unit, "GiB-month");
        assert_eq!(invoice.price_list_revision, 3);
        assert_eq!(invoice.by_environment()["prod"], Vnd(49_945));
        assert_eq!(invoice.by_resource()["cpu"], Vnd(7_600));
        assert_eq!(
            invoice.by_workload()["so-y-te-prod/Workload/portal"],
            Vnd(9_565)
        );
        let json = serde_json::to_value(&invoice).unwrap();
        assert_eq!(json["total"], 49_945);
        assert_eq!(json["month"], "2026-11");
        assert_eq!(json["lines"][0]["resource"], "dataService");
        assert_eq!(json["lines"][0]["rate"], "1500");
        let back: Invoice = serde_json::from_value(json).unwrap();
        assert_eq!(back, invoice);
    }

    #[test]
    fn a_month_is_rated_with_the_revision_in_force_at_its_end() {
        let revision = |n: i32, adopted: Option<&str>, cpu: &str| {
            let mut r = serde_json::json!({"revision": n, "reason": format!("Quyết định {n}"),
                "rates": [{"effectiveFrom": "2026-01-01", "cpuPerVcpuHour": cpu,
                           "memoryPerGibHour": "96", "storagePerGibMonth": "2976"}]});
            if let Some(day) = adopted {
                r["adoptedOn"] = day.into();
            }
            r
        };
        let list = |revisions: Vec<serde_json::Value>| -> govbroker_crds::PriceList {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "govbroker.io/v1alpha1", "kind": "PriceList",
                "metadata": {"name": "gia"}, "spec": {"revisions": revisions}
            }))
            .unwrap()
        };
        let month = |text: &str| text.parse::<Month>().unwrap();

        // Revision 1 since January; revision 2 adopted on 20 November (in force for
        // November, whose end it precedes); revision 3, a correction adopted on
        // 5 December, leaves October and November as they were issued.
        let pl = list(vec![
            revision(1, Some("2026-01-01"), "720"),
            revision(2, Some("2026-11-20"), "800"),
            revision(3, Some("2026-12-05"), "900"),
        ]);
        assert_eq!(revision_in_force(&pl, month("2026-10")), Ok(1));
        assert_eq!(revision_in_force(&pl, month("2026-11")), Ok(2));
        assert_eq!(revision_in_force(&pl, month("2026-12")), Ok(3));
        assert_eq!(revision_in_force(&pl, month("2027-06")), Ok(3));
        let october = schedule_for_month(&pl, month("2026-10")).unwrap();
        assert_eq!(october.revision, 1);
        assert_eq!(
            october
                .rates_on(day("2026-10-10"))
                .unwrap()
                .cpu_per_vcpu_hour,
            Rate::from_vnd(720)
        );
        // Adopted on a month's last day: in force for that month.
        let pl = list(vec![
            revision(1, Some("2026-01-01"), "720"),
            revision(2, Some("2026-10-31"), "800"),
        ]);
        assert_eq!(revision_in_force(&pl, month("2026-10")), Ok(2));
        assert_eq!(revision_in_force(&pl, month("2026-09")), Ok(1));
        // Every revision adopted after the month: the first prices there are.
        assert_eq!(revision_in_force(&pl, month("2025-06")), Ok(1));
        // Undated revisions (lists made before the date existed) count for every
        // month, so such a list behaves as before: the latest undated one.
        let pl = list(vec![revision(1, None, "720"), revision(2, None, "900")]);
        assert_eq!(revision_in_force(&pl, month("2026-10")), Ok(2));
        let pl = list(vec![
            revision(1, None, "720"),
            revision(2, Some("2026-12-01"), "900"),
        ]);
        assert_eq!(revision_in_force(&pl, month("2026-11")), Ok(1));
        assert_eq!(revision_in_force(&pl, month("2026-12")), Ok(2));
        // Listed out of order: numbers decide, not positions.
        let pl = list(vec![
            revision(2, Some("2026-11-20"), "800"),
            revision(1, Some("2026-01-01"), "720"),
        ]);
        assert_eq!(revision_in_force(&pl, month("2026-12")), Ok(2));
        assert_eq!(revision_in_force(&pl, month("2026-10")), Ok(1));
        // A date that is not one is refused, naming the revision.
        let pl = list(vec![revision(1, Some("2026-02-30"), "720")]);
        let err = revision_in_force(&pl, month("2026-10")).unwrap_err();
        assert!(err.to_string().contains("revision 1: adoptedOn"), "{err}");
        assert!(matches!(
            revision_in_force(&list(vec![]), month("2026-10")),
            Err(PriceError::Empty(_))
        ));
    }

    #[test]
    fn price_lists_become_schedules_and_bills_export_as_csv() {
        let pl: govbroker_crds::PriceList = serde_json::from_value(serde_json::json!({
            "apiVersion": "govbroker.io/v1alpha1", "kind": "PriceList",
            "metadata": {"name": "gia-2026"},
            "spec": {"revisions": [
                {"revision": 1, "reason": "Quyết định 1", "rates": [
                    {"effectiveFrom": "2026-01-01", "cpuPerVcpuHour": "700",
                     "memoryPerGibHour": "90", "storagePerGibMonth": "2900"}]},
                {"revision": 2, "reason": "Đính chính", "rates": [
                    {"effectiveFrom": "2026-11-16", "cpuPerVcpuHour": "800",
                     "memoryPerGibHour": "100.5", "storagePerGibMonth": "3000",
                     "dataServices": [{"className": "pg", "plan": "co-ban", "perHour": "1500"}]},
                    {"effectiveFrom": "2026-01-01", "cpuPerVcpuHour": "720",
                     "memoryPerGibHour": "96", "storagePerGibMonth": "2976"}]}
            ]}
        }))
        .unwrap();
        let latest = schedule_from_price_list(&pl, None).unwrap();
        assert_eq!(latest.revision, 2);
        assert_eq!(latest.rate_sets[0].effective_from, day("2026-01-01"));
        assert_eq!(
            latest
                .rates_on(day("2026-11-20"))
                .unwrap()
                .cpu_per_vcpu_hour,
            Rate::from_vnd(800)
        );
        let first = schedule_from_price_list(&pl, Some(1)).unwrap();
        assert_eq!(
            first.rates_on(day("2026-11-20")).unwrap().cpu_per_vcpu_hour,
            Rate::from_vnd(700)
        );
        assert!(schedule_from_price_list(&pl, Some(3)).is_err());

        let usage = DayUsage {
            usage: vec![UsageEntry {
                environment: "prod".to_owned(),
                namespace: "so-y-te-prod".to_owned(),
                workload: "Workload/cổng, \"chính\"".to_owned(),
                meter: Meter::Cpu,
                quantity: Quantity(3_600_000),
            }],
            unobserved_bound: vec![],
        };
        let invoice = rate_month(
            "so-y-te",
            "2026-11".parse().unwrap(),
            [(day("2026-11-20"), &usage)],
            &latest,
        )
        .unwrap();
        let csv = invoice_csv(&invoice);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[1],
            "so-y-te,2026-11,prod,so-y-te-prod,\"Workload/cổng, \"\"chính\"\"\",cpu,2026-11-16,2026-11-30,3600000,milli-core-seconds,vCPU-hour,3600000,800,800,0"
        );
        assert_eq!(lines[2], "so-y-te,2026-11,TOTAL,,,,,,,,,,,800,0");
    }

    #[test]
    fn storage_month_length_follows_the_month() {
        // 1 GiB for all of February 2026 (28 days) at 2,800 ₫/GiB-month is 2,800 ₫.
        let prices =
            PriceSchedule::new("p", 1, vec![rates("2026-01-01", "0", "0", "2800")]).unwrap();
        let month: Month = "2026-02".parse().unwrap();
        let days: Vec<(Day, DayUsage)> = month
            .iter_days()
            .map(|d| {
                (
                    d,
                    DayUsage {
                        usage: vec![entry(
                            "PersistentVolumeClaim/x",
                            Meter::Storage,
                            (1 << 30) * 86_400,
                        )],
                        unobserved_bound: vec![],
                    },
                )
            })
            .collect();
        let invoice = rate_month("a", month, days.iter().map(|(d, u)| (*d, u)), &prices).unwrap();
        assert_eq!(invoice.total, Vnd(2_800));
    }

    #[test]
    fn the_integrator_feeds_rating_across_a_day_and_month_boundary() {
        // A pod of 2 vCPU runs from 30 Nov 23:00 to 1 Dec 01:00 Vietnam time
        // (16:00-18:00 UTC on 30 Nov): one hour in each month's bill.
        let start = day("2026-11-30").start() + 23 * 3600;
        let mut integrator = Integrator::default();
        let who = Attribution {
            agency: "xa-hoa-vang".to_owned(),
            environment: "prod".to_owned(),
            namespace: "xa-hoa-vang-prod".to_owned(),
            workload: "Pod/x".to_owned(),
        };
        integrator.observe("uid", start, Some((who, vec![(Meter::Cpu, 2000)])));
        integrator.observe("uid", start + 7200, None);
        let days: BTreeMap<Day, DayUsage> = integrator
            .take_days()
            .into_iter()
            .map(|((_, d), b)| (d, b.to_usage()))
            .collect();
        let prices =
            PriceSchedule::new("p", 1, vec![rates("2026-01-01", "720", "0", "0")]).unwrap();
        for m in ["2026-11", "2026-12"] {
            let month: Month = m.parse().unwrap();
            let invoice = rate_month(
                "xa-hoa-vang",
                month,
                days.iter()
                    .filter(|(d, _)| month.contains(**d))
                    .map(|(d, u)| (*d, u)),
                &prices,
            )
            .unwrap();
            assert_eq!(invoice.total, Vnd(1_440), "{m}");
        }
    }

    #[test]
    fn unpriced_usage_is_an_error_never_dropped() {
        let prices = PriceSchedule::new("p", 1, vec![rates("2026-11-10", "1", "1", "1")]).unwrap();
        let month: Month = "2026-11".parse().unwrap();
        let usage = DayUsage {
            usage: vec![entry("Pod/a", Meter::Cpu, 1)],
            unobserved_bound: vec![],
        };
        let early = [(day("2026-11-09"), &usage)];
        assert!(matches!(
            rate_month("a", month, early, &prices),
            Err(RatingError::NoRates { .. })
        ));
        let redis = DayUsage {
            usage: vec![entry(
                "DataServiceClaim/c",
                Meter::DataService {
                    class_name: "redis".to_owned(),
                    plan: "x".to_owned(),
                },
                1,
            )],
            unobserved_bound: vec![],
        };
        let err = rate_month("a", month, [(day("2026-11-20"), &redis)], &prices).unwrap_err();
        assert!(err.to_string().contains("redis/x"), "{err}");
        assert!(matches!(
            rate_month("a", month, [(day("2026-12-01"), &usage)], &prices),
            Err(RatingError::WrongMonth { .. })
        ));
        assert!(PriceSchedule::new("p", 1, vec![]).is_err());
        assert!(
            PriceSchedule::new(
                "p",
                1,
                vec![
                    rates("2026-11-10", "1", "1", "1"),
                    rates("2026-11-10", "1", "1", "1")
                ]
            )
            .is_err()
        );
    }

    #[test]
    fn unobserved_usage_is_shown_as_a_bound_and_not_billed() {
        let prices =
            PriceSchedule::new("p", 1, vec![rates("2026-01-01", "720", "0", "0")]).unwrap();
        let usage = DayUsage {
            usage: vec![entry("Pod/a", Meter::Cpu, 3_600_000)],
            unobserved_bound: vec![entry("Pod/a", Meter::Cpu, 1)],
        };
        let invoice = rate_month(
            "a",
            "2026-11".parse().unwrap(),
            [(day("2026-11-02"), &usage)],
            &prices,
        )
        .unwrap();
        assert_eq!(invoice.total, Vnd(720));
        // 1 milli-core-second × 720 / 3.6e6 = 0.0002 → rounded up to 1 as a bound.
        assert_eq!(invoice.unobserved_bound, Vnd(1));
    }

    #[test]
    fn subtrees_roll_up_to_every_ancestor() {
        let parents: BTreeMap<String, Option<String>> = [
            ("bo-tc", None),
            ("da-nang", None),
            ("so-tttt", Some("da-nang")),
            ("hoa-vang", Some("da-nang")),
            ("xa-hoa-bac", Some("hoa-vang")),
            ("xa-hoa-ninh", Some("da-nang")),
        ]
        .into_iter()
        .map(|(a, p)| (a.to_owned(), p.map(str::to_owned)))
        .collect();
        let own: BTreeMap<String, Vnd> = [
            ("bo-tc", 5),
            ("da-nang", 1_000),
            ("so-tttt", 200),
            ("hoa-vang", 30),
            ("xa-hoa-bac", 4),
            ("xa-hoa-ninh", 6),
        ]
        .into_iter()
        .map(|(a, v)| (a.to_owned(), Vnd(v)))
        .collect();
        let subtree = roll_up(&own, &parents);
        assert_eq!(subtree["da-nang"], Vnd(1_240));
        assert_eq!(subtree["hoa-vang"], Vnd(34));
        assert_eq!(subtree["xa-hoa-bac"], Vnd(4));
        assert_eq!(subtree["bo-tc"], Vnd(5));
        // A cycle does not loop.
        let cyclic: BTreeMap<String, Option<String>> = [("a", Some("b")), ("b", Some("a"))]
            .into_iter()
            .map(|(a, p)| (a.to_owned(), p.map(str::to_owned)))
            .collect();
        let own = BTreeMap::from([("a".to_owned(), Vnd(1))]);
        assert_eq!(roll_up(&own, &cyclic)["b"], Vnd(1));
    }

    #[test]
    fn budgets_forecast_and_thresholds() {
        let month: Month = "2026-11".parse().unwrap();
        // 10 days of 30 elapsed, 3,000,000 ₫ spent: forecast 9,000,000 ₫.
        let now = month.start() + 10 * 86_400;
        let status = budget_status(Vnd(5_000_000), &[100, 50, 80], month, Vnd(3_000_000), now);
        assert_eq!(status.forecast, Vnd(9_000_000));
        assert_eq!(status.percent_used, 60);
        assert_eq!(status.thresholds_reached, vec![50]);
        let spent = budget_status(Vnd(5_000_000), &[50, 80, 100], month, Vnd(5_000_000), now);
        assert_eq!(spent.thresholds_reached, vec![50, 80, 100]);
        assert_eq!(forecast(Vnd(10), 0, 100), Vnd(10));
        assert_eq!(forecast(Vnd(1), 3, 10), Vnd(3)); // 3.33 → 3
        assert_eq!(forecast(Vnd(1), 4, 10), Vnd(3)); // 2.5 → 3
        assert_eq!(
            budget_status(Vnd(0), &[50], month, Vnd(1), now).thresholds_reached,
            Vec::<u32>::new()
        );
    }

    fn time(seconds: i64) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap(),
        )
    }

    #[test]
    fn the_budget_condition_changes_once_per_threshold_and_month() {
        let month: Month = "2026-11".parse().unwrap();
        let now = month.start() + 10 * 86_400;
        let below = budget_status(Vnd(10_000), &[50, 80, 100], month, Vnd(4_000), now);
        let c0 = budget_condition(month, &below, None, Some(1), time(now));
        assert_eq!(
            (c0.type_.as_str(), c0.status.as_str()),
            ("BudgetThreshold", "False")
        );
        assert_eq!(c0.reason, "BelowThresholds");

        // 60 %: crosses 50, the message carries the cost at that moment (forecast
        // 6,000 × 2,592,000 / 864,060 = 17,998.75 → 17,999).
        let half = budget_status(Vnd(10_000), &[50, 80, 100], month, Vnd(6_000), now + 60);
        let c1 = budget_condition(month, &half, Some(&c0), Some(1), time(now + 60));
        assert_eq!(
            (c1.status.as_str(), c1.reason.as_str()),
            ("True", "Reached50Percent")
        );
        assert_eq!(
            c1.message,
            "2026-11: month-to-date cost 6.000 ₫ reached 50% of the monthly budget 10.000 ₫ (forecast to month end 17.999 ₫)"
        );
        assert_eq!(c1.last_transition_time, time(now + 60));

        // 70 %: still threshold 50: the condition is unchanged (no new time, no new text).
        let more = budget_status(Vnd(10_000), &[50, 80, 100], month, Vnd(7_000), now + 120);
        let c2 = budget_condition(month, &more, Some(&c1), Some(2), time(now + 120));
        assert_eq!(
            c2,
            Condition {
                observed_generation: Some(2),
                ..c1.clone()
            }
        );

        // 100 %: the highest threshold names it.
        let all = budget_status(Vnd(10_000), &[50, 80, 100], month, Vnd(10_000), now + 180);
        let c3 = budget_condition(month, &all, Some(&c2), Some(2), time(now + 180));
        assert_eq!(c3.reason, "Reached100Percent");
        assert_eq!(c3.last_transition_time, time(now + 180));

        // Next month, crossing 50 % again is a new crossing.
        let december: Month = "2026-12".parse().unwrap();
        let again = budget_status(
            Vnd(10_000),
            &[50],
            december,
            Vnd(6_000),
            december.start() + 60,
        );
        let c4 = budget_condition(
            december,
            &again,
            Some(&c1),
            Some(2),
            time(december.start() + 60),
        );
        assert!(c4.message.starts_with("2026-12: "), "{}", c4.message);
        assert_eq!(c4.last_transition_time, time(december.start() + 60));
    }

    #[test]
    fn an_enforced_spent_budget_refuses_with_the_amounts_and_the_fix() {
        let month: Month = "2026-11".parse().unwrap();
        let budget = |enforce| govbroker_crds::Budget {
            monthly_vnd: 10_000,
            alert_thresholds: vec![50, 80, 100],
            enforce,
        };
        let cost = |month: &str, vnd: i64| govbroker_crds::AgencyCostStatus {
            month: month.to_owned(),
            month_to_date_vnd: vnd,
            month_to_date: format_vnd(Vnd(vnd)),
            ..Default::default()
        };
        let spent = cost("2026-11", 10_000);
        let new = Growth::Created;
        let why = budget_refusal("so-y-te", &new, &budget(true), Some(&spent), month).unwrap();
        assert!(
            why.contains("agency so-y-te has spent 10.000 ₫ in 2026-11"),
            "{why}"
        );
        assert!(why.contains("a new workload is refused"), "{why}");
        let larger = Growth::LargerRequests(vec![(
            govbroker_crds::QuotaResource::Cpu,
            "100m".into(),
            "1".into(),
        )]);
        let why_larger =
            budget_refusal("so-y-te", &larger, &budget(true), Some(&spent), month).unwrap();
        assert!(
            why_larger.contains("raising the requests per replica (cpu from 100m to 1) is refused"),
            "{why_larger}"
        );
        assert!(why_larger.contains("lowering requests"), "{why_larger}");
        assert!(why.contains("monthly budget of 10.000 ₫"), "{why}");
        assert!(why.contains("kubectl patch agency so-y-te"), "{why}");
        // Not enforced, not yet spent, last month's spending, or no cost known: admitted.
        assert_eq!(
            budget_refusal("so-y-te", &new, &budget(false), Some(&spent), month),
            None
        );
        let under = cost("2026-11", 9_999);
        assert_eq!(
            budget_refusal("so-y-te", &new, &budget(true), Some(&under), month),
            None
        );
        let october = cost("2026-10", 50_000);
        assert_eq!(
            budget_refusal("so-y-te", &new, &budget(true), Some(&october), month),
            None
        );
        assert_eq!(
            budget_refusal("so-y-te", &new, &budget(true), None, month),
            None
        );
    }

    #[test]
    fn re_rating_keeps_the_bill_shown_before_and_every_earlier_version() {
        let invoice = |revision: u32, total: i64| Invoice {
            agency: "so-y-te".into(),
            month: "2026-10".parse().unwrap(),
            price_list: "default".into(),
            price_list_revision: revision,
            lines: vec![],
            total: Vnd(total),
            unobserved_bound: Vnd::ZERO,
        };
        let version = |revision, total, reason: &str| BillVersion {
            invoice: invoice(revision, total),
            reason: reason.into(),
            rerated_by: "admin".into(),
            rerated_at: 100,
        };
        let first = rerated_versions(vec![], invoice(2, 900), version(1, 800, "sai giá"));
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].reason, BEFORE_FIRST_RERATE);
        assert_eq!(first[0].invoice.total, Vnd(900));
        assert_eq!(first[1].invoice.price_list_revision, 1);
        // A second re-rate appends; the bill computed on request is not added again.
        let second = rerated_versions(first.clone(), invoice(2, 900), version(3, 850, "lần 2"));
        assert_eq!(second.len(), 3);
        assert_eq!(second[..2], first[..]);
        assert_eq!(second[2].reason, "lần 2");
    }
}
