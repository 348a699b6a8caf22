//! Metering: exact usage integrated from watch events.
//!
//! The collector turns what it sees of Pods, PersistentVolumeClaims and
//! DataServiceClaims into *open intervals*: "from instant `t`, this object holds these
//! rates" (milli-cores, bytes, instances per second). Each later event closes the
//! interval and opens the next one, and the closed part is added to per-agency,
//! per-billing-day buckets. Nothing is sampled: a pod that ran 37 seconds is billed for
//! 37 seconds.
//!
//! # Units
//!
//! Every quantity is an integer ([`Quantity`], a `u128`):
//! - CPU: **milli-core-seconds** (a pod requesting `250m` for an hour = 900,000);
//! - memory and storage: **byte-seconds** (`1Gi` for a second = 1,073,741,824);
//! - data services: **instance-seconds** per class and plan.
//!
//! # Time
//!
//! Instants are UTC Unix seconds (`i64`). Usage is bucketed by **billing day**
//! ([`Day`]): a calendar date in Asia/Ho_Chi_Minh, which is UTC+7 all year (Vietnam has
//! no daylight saving time), so a billing day runs from 17:00 UTC of the previous UTC
//! date to 17:00 UTC. Months, price changes and budgets use billing days, so a bill for
//! November is exactly the days 1-30 November in Vietnam.
#![allow(clippy::module_name_repetitions)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::quantity::Amount;

/// Offset of Asia/Ho_Chi_Minh from UTC, in seconds (UTC+7, no daylight saving time).
pub const BILLING_UTC_OFFSET_SECONDS: i64 = 7 * 3600;
/// Seconds in a (billing) day: UTC+7 has no leap seconds or DST to worry about.
pub const SECONDS_PER_DAY: i64 = 86_400;

/// A billing day: a calendar date in Asia/Ho_Chi_Minh, stored as days since 1970-01-01.
///
/// Written (and serialized) as `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i32);

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a count of days since 1970-01-01.
fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl Day {
    /// The date `year-month-day`, if it exists (years 1-9999).
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Day> {
        if !(1..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
        {
            return None;
        }
        Some(Day(days_from_civil(year, month, day)))
    }

    /// The billing day that contains the UTC instant `unix_seconds`.
    pub fn of(unix_seconds: i64) -> Day {
        Day((unix_seconds + BILLING_UTC_OFFSET_SECONDS).div_euclid(SECONDS_PER_DAY) as i32)
    }

    /// The UTC instant at which the day starts (00:00 in Vietnam = 17:00 UTC the day
    /// before).
    pub fn start(self) -> i64 {
        i64::from(self.0) * SECONDS_PER_DAY - BILLING_UTC_OFFSET_SECONDS
    }

    /// The UTC instant at which the day ends (the next day's start).
    pub fn end(self) -> i64 {
        self.start() + SECONDS_PER_DAY
    }

    /// The next day.
    pub fn next(self) -> Day {
        Day(self.0 + 1)
    }

    /// Year, month (1-12) and day of month (1-31).
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// The month the day belongs to.
    pub fn month(self) -> Month {
        let (year, month, _) = self.ymd();
        Month { year, month }
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i32 {
        self.0
    }

    /// The day a count of days after 1970-01-01.
    pub fn from_days_since_epoch(days: i32) -> Day {
        Day(days)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// A text that is not a date `YYYY-MM-DD` or a month `YYYY-MM`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {expected} (write it as {example})")]
pub struct DateError {
    text: String,
    expected: &'static str,
    example: &'static str,
}

fn parse_number(text: &str, digits: usize) -> Option<u32> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

impl FromStr for Day {
    type Err = DateError;
    fn from_str(text: &str) -> Result<Day, DateError> {
        let error = || DateError {
            text: text.to_owned(),
            expected: "date",
            example: "2026-11-15",
        };
        let mut parts = text.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(error());
        };
        let (Some(y), Some(m), Some(d)) =
            (parse_number(y, 4), parse_number(m, 2), parse_number(d, 2))
        else {
            return Err(error());
        };
        Day::from_ymd(y as i32, m, d).ok_or_else(error)
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Day, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A billing month (Asia/Ho_Chi_Minh), written `YYYY-MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// The month, if it exists (years 1-9999).
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((1..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Month { year, month })
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month of the year, 1-12.
    pub fn month(self) -> u32 {
        self.month
    }

    /// Its first day.
    pub fn first_day(self) -> Day {
        Day(days_from_civil(self.year, self.month, 1))
    }

    /// Its last day.
    pub fn last_day(self) -> Day {
        Day(self.first_day().0 + self.days() as i32 - 1)
    }

    /// Number of days, 28-31.
    pub fn days(self) -> u32 {
        days_in_month(self.year, self.month)
    }

    /// Its days in order.
    pub fn iter_days(self) -> impl Iterator<Item = Day> {
        let first = self.first_day().0;
        (first..first + self.days() as i32).map(Day)
    }

    /// UTC instant of its start (00:00 on the 1st in Vietnam).
    pub fn start(self) -> i64 {
        self.first_day().start()
    }

    /// UTC instant of its end (the next month's start).
    pub fn end(self) -> i64 {
        self.last_day().end()
    }

    /// Seconds in the month.
    pub fn seconds(self) -> i64 {
        i64::from(self.days()) * SECONDS_PER_DAY
    }

    /// The month after.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Whether `day` falls in this month.
    pub fn contains(self, day: Day) -> bool {
        day.month() == self
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = DateError;
    fn from_str(text: &str) -> Result<Month, DateError> {
        let error = || DateError {
            text: text.to_owned(),
            expected: "month",
            example: "2026-11",
        };
        let (y, m) = text.split_once('-').ok_or_else(error)?;
        let (Some(y), Some(m)) = (parse_number(y, 4), parse_number(m, 2)) else {
            return Err(error());
        };
        Month::new(y as i32, m).ok_or_else(error)
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Month, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An integer quantity of usage (milli-core-seconds, byte-seconds or instance-seconds).
///
/// Serialized as a decimal **string**: byte-seconds of a day exceed the 2^53 that
/// JavaScript and many JSON tools can hold exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(pub u128);

impl Quantity {
    /// Nothing.
    pub const ZERO: Quantity = Quantity(0);

    /// `self + other`, saturating (a day's usage is far below `u128::MAX`).
    pub fn saturating_add(self, other: Quantity) -> Quantity {
        Quantity(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not a non-negative integer quantity"
            )));
        }
        text.parse().map(Quantity).map_err(serde::de::Error::custom)
    }
}

/// What is metered.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "resource", rename_all = "camelCase")]
pub enum Meter {
    /// CPU requests of running pods, in milli-core-seconds.
    Cpu,
    /// Memory requests of running pods, in byte-seconds.
    Memory,
    /// PersistentVolumeClaim capacity, in byte-seconds.
    Storage,
    /// One data-service instance of a class and plan, in instance-seconds.
    #[serde(rename_all = "camelCase")]
    DataService {
        /// The DataServiceClass.
        class_name: String,
        /// The plan of the class.
        plan: String,
    },
}

impl Meter {
    /// The integer unit of the meter's quantities.
    pub fn unit(&self) -> &'static str {
        match self {
            Meter::Cpu => "milli-core-seconds",
            Meter::Memory | Meter::Storage => "byte-seconds",
            Meter::DataService { .. } => "instance-seconds",
        }
    }

    /// A short label: `cpu`, `memory`, `storage`, or `<class>/<plan>`.
    pub fn label(&self) -> String {
        match self {
            Meter::Cpu => "cpu".to_owned(),
            Meter::Memory => "memory".to_owned(),
            Meter::Storage => "storage".to_owned(),
            Meter::DataService { class_name, plan } => format!("{class_name}/{plan}"),
        }
    }
}

/// Whom usage is billed to and how it is broken down.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribution {
    /// The agency that pays (the `govbroker.io/agency` label of the namespace).
    pub agency: String,
    /// The agency's environment (the `govbroker.io/environment` label).
    pub environment: String,
    /// The namespace.
    pub namespace: String,
    /// The top of the object's owner chain, `Kind/name`: `Workload/portal` for a pod of
    /// a Workload's Deployment, `Deployment/x`, `StatefulSet/y`, `Pod/z` for a bare pod,
    /// `PersistentVolumeClaim/data`, `DataServiceClaim/db`.
    pub workload: String,
}

/// Usage of one billing day, with its breakdown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayUsage {
    /// Observed usage: exact to the second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<UsageEntry>,
    /// Usage that could not be observed (the collector was down while objects it had
    /// seen disappeared): an upper **bound**, never billed, shown on the bill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unobserved_bound: Vec<UsageEntry>,
}

/// One quantity of a day's usage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageEntry {
    /// Environment within the agency.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// Top of the owner chain, `Kind/name`.
    pub workload: String,
    /// What was used.
    #[serde(flatten)]
    pub meter: Meter,
    /// How much, in the meter's unit.
    pub quantity: Quantity,
}

/// Key of a usage bucket inside one agency's day.
type BucketKey = (String, String, String, Meter);

/// Usage of one agency and day being accumulated: entries keyed for merging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayBuckets {
    /// Observed usage.
    pub usage: BTreeMap<BucketKey, Quantity>,
    /// Unobserved upper bound.
    pub unobserved_bound: BTreeMap<BucketKey, Quantity>,
}

fn entries(map: &BTreeMap<BucketKey, Quantity>) -> Vec<UsageEntry> {
    map.iter()
        .filter(|(_, q)| q.0 > 0)
        .map(
            |((environment, namespace, workload, meter), q)| UsageEntry {
                environment: environment.clone(),
                namespace: namespace.clone(),
                workload: workload.clone(),
                meter: meter.clone(),
                quantity: *q,
            },
        )
        .collect()
}

fn merge_into(map: &mut BTreeMap<BucketKey, Quantity>, list: &[UsageEntry]) {
    for e in list {
        let key = (
            e.environment.clone(),
            e.namespace.clone(),
            e.workload.clone(),
            e.meter.clone(),
        );
        let slot = map.entry(key).or_default();
        *slot = slot.saturating_add(e.quantity);
    }
}

impl DayBuckets {
    /// The day's usage as a record (entries in a stable order, zeros left out).
    pub fn to_usage(&self) -> DayUsage {
        DayUsage {
            usage: entries(&self.usage),
            unobserved_bound: entries(&self.unobserved_bound),
        }
    }

    /// Adds a stored day's usage to these buckets.
    pub fn merge(&mut self, day: &DayUsage) {
        merge_into(&mut self.usage, &day.usage);
        merge_into(&mut self.unobserved_bound, &day.unobserved_bound);
    }

    /// Whether nothing was used.
    pub fn is_empty(&self) -> bool {
        self.usage.is_empty() && self.unobserved_bound.is_empty()
    }
}

impl DayUsage {
    /// Adds another record of the same day (e.g. a collector's delta to the stored
    /// record), merging equal keys.
    pub fn merged(&self, other: &DayUsage) -> DayUsage {
        let mut buckets = DayBuckets::default();
        buckets.merge(self);
        buckets.merge(other);
        buckets.to_usage()
    }
}

/// Rates an object holds while an interval is open: per second, in the meters' units.
pub type Rates = Vec<(Meter, u64)>;

/// An object's open interval: from `since`, it holds `rates`, billed to `attribution`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInterval {
    /// UTC Unix second from which the rates are held (and not yet counted).
    pub since: i64,
    /// Who pays.
    pub attribution: Attribution,
    /// What is held, per second.
    pub rates: Rates,
}

/// Integrates open intervals into per-agency, per-billing-day usage.
///
/// The rule that makes restarts exact: every second in `[since, until)` of an interval
/// is counted exactly once, by whoever moves `since` forward. [`Integrator::advance`]
/// counts every open interval up to a watermark and moves `since` there; a checkpoint
/// stores the watermark, the open intervals and the counted usage together, so a
/// restarted collector continues from the same `since` values.
#[derive(Clone, Debug, Default)]
pub struct Integrator {
    open: HashMap<String, OpenInterval>,
    days: BTreeMap<(String, Day), DayBuckets>,
}

fn add_span(
    days: &mut BTreeMap<(String, Day), DayBuckets>,
    attribution: &Attribution,
    rates: &Rates,
    from: i64,
    to: i64,
    unobserved: bool,
) {
    if to <= from || rates.is_empty() {
        return;
    }
    let mut start = from;
    while start < to {
        let day = Day::of(start);
        let end = to.min(day.end());
        let seconds = (end - start) as u128;
        let buckets = days.entry((attribution.agency.clone(), day)).or_default();
        let map = if unobserved {
            &mut buckets.unobserved_bound
        } else {
            &mut buckets.usage
        };
        for (meter, rate) in rates {
            if *rate == 0 {
                continue;
            }
            let key = (
                attribution.environment.clone(),
                attribution.namespace.clone(),
                attribution.workload.clone(),
                meter.clone(),
            );
            let slot = map.entry(key).or_default();
            *slot = slot.saturating_add(Quantity(seconds * u128::from(*rate)));
        }
        start = end;
    }
}

impl Integrator {
    /// An integrator that continues from a checkpoint's open intervals.
    pub fn resume(open: impl IntoIterator<Item = (String, OpenInterval)>) -> Integrator {
        Integrator {
            open: open.into_iter().collect(),
            days: BTreeMap::new(),
        }
    }

    /// What object `key` (a uid) holds from instant `at` on: `Some` opens (or
    /// replaces) its interval, `None` closes it (stopped, deleted). The previous
    /// interval is counted up to `at`. An event older than the interval's `since`
    /// (already counted up to a watermark) counts nothing and takes effect at `since`.
    pub fn observe(&mut self, key: &str, at: i64, holds: Option<(Attribution, Rates)>) {
        let mut effective = at;
        if let Some(previous) = self.open.remove(key) {
            add_span(
                &mut self.days,
                &previous.attribution,
                &previous.rates,
                previous.since,
                at,
                false,
            );
            effective = at.max(previous.since);
        }
        if let Some((attribution, rates)) = holds {
            let rates: Rates = rates.into_iter().filter(|(_, r)| *r > 0).collect();
            if !rates.is_empty() {
                self.open.insert(
                    key.to_owned(),
                    OpenInterval {
                        since: effective,
                        attribution,
                        rates,
                    },
                );
            }
        }
    }

    /// Object `key` vanished while nobody watched: it held its rates from `since` until
    /// some unknown instant before `seen_gone`. Nothing is billed for that span; it is
    /// recorded as the unobserved upper bound.
    pub fn observe_gap(&mut self, key: &str, seen_gone: i64) {
        if let Some(previous) = self.open.remove(key) {
            add_span(
                &mut self.days,
                &previous.attribution,
                &previous.rates,
                previous.since,
                seen_gone,
                true,
            );
        }
    }

    /// Counts every open interval up to `watermark` and moves their `since` there.
    pub fn advance(&mut self, watermark: i64) {
        for open in self.open.values_mut() {
            if open.since < watermark {
                add_span(
                    &mut self.days,
                    &open.attribution,
                    &open.rates,
                    open.since,
                    watermark,
                    false,
                );
                open.since = watermark;
            }
        }
    }

    /// The open intervals, for a checkpoint.
    pub fn open_intervals(&self) -> &HashMap<String, OpenInterval> {
        &self.open
    }

    /// The open interval of one object.
    pub fn open_interval(&self, key: &str) -> Option<&OpenInterval> {
        self.open.get(key)
    }

    /// Usage counted since the last [`Integrator::take_days`], per agency and day.
    pub fn days(&self) -> &BTreeMap<(String, Day), DayBuckets> {
        &self.days
    }

    /// Takes the usage counted so far (the collector writes it to the ledger).
    pub fn take_days(&mut self) -> BTreeMap<(String, Day), DayBuckets> {
        std::mem::take(&mut self.days)
    }

    /// Puts usage back that could not be written (it is written with the next batch).
    pub fn restore_days(&mut self, days: BTreeMap<(String, Day), DayBuckets>) {
        for (key, buckets) in days {
            let slot = self.days.entry(key).or_default();
            slot.merge(&buckets.to_usage());
        }
    }
}

/// Effective CPU and memory requests of a pod, as the scheduler and ResourceQuota
/// count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// Milli-cores.
    pub cpu_milli: u64,
    /// Bytes.
    pub memory_bytes: u64,
}

fn request_milli(container: &Container, resource: &str) -> i128 {
    let resources = container.resources.as_ref();
    let pick = |map: Option<&BTreeMap<String, K8sQuantity>>| {
        map.and_then(|m| m.get(resource))
            .and_then(|q| Amount::parse_non_negative(&q.0).ok())
    };
    pick(resources.and_then(|r| r.requests.as_ref()))
        // The API server defaults a missing request to the limit; do the same for
        // objects that never went through it.
        .or_else(|| pick(resources.and_then(|r| r.limits.as_ref())))
        .map(Amount::milli)
        .unwrap_or(0)
}

fn effective_milli(spec: &PodSpec, resource: &str) -> i128 {
    let mut sidecars = 0i128;
    let mut init_peak = 0i128;
    for init in spec.init_containers.iter().flatten() {
        let request = request_milli(init, resource);
        if init.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running: it adds to every later init container and to
            // the app containers.
            sidecars += request;
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(sidecars + request);
        }
    }
    let apps: i128 = spec
        .containers
        .iter()
        .map(|c| request_milli(c, resource))
        .sum::<i128>()
        + sidecars;
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| Amount::parse_non_negative(&q.0).ok())
        .map(Amount::milli)
        .unwrap_or(0);
    apps.max(init_peak) + overhead
}

/// A pod's effective requests: the larger of (a) the sum of its app containers and its
/// sidecars (init containers with `restartPolicy: Always`) and (b) the peak of its init
/// phase (each regular init container plus the sidecars started before it), plus the
/// pod overhead of its RuntimeClass. A missing request counts its limit, else zero.
/// Memory fractions of a byte round up.
pub fn pod_effective_requests(spec: &PodSpec) -> PodRequests {
    let cpu = effective_milli(spec, "cpu");
    let memory = effective_milli(spec, "memory");
    PodRequests {
        cpu_milli: u64::try_from(cpu).unwrap_or(u64::MAX),
        memory_bytes: u64::try_from((memory + 999) / 1000).unwrap_or(u64::MAX),
    }
}

impl PodRequests {
    /// The rates a running pod with these requests holds.
    pub fn rates(self) -> Rates {
        vec![
            (Meter::Cpu, self.cpu_milli),
            (Meter::Memory, self.memory_bytes),
        ]
    }
}

/// Bytes of a storage quantity (`10Gi`), rounded up to a whole byte; `None` if it is not
/// a valid non-negative quantity.
pub fn storage_bytes(quantity: &str) -> Option<u64> {
    let milli = Amount::parse_non_negative(quantity).ok()?.milli();
    u64::try_from((milli + 999) / 1000).ok()
}

/// An agency's usage over a period for one (environment, namespace, workload, meter):
/// the observed quantity and the unobserved bound, summed over the days. What the API's
/// `GetUsage` returns: integers, no money.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageTotal {
    /// Environment within the agency.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// Top of the owner chain, `Kind/name`.
    pub workload: String,
    /// What was used.
    pub meter: Meter,
    /// Observed, in the meter's unit.
    pub quantity: Quantity,
    /// Not observed (at most), in the meter's unit.
    pub unobserved_bound: Quantity,
}

/// Sums day records into one [`UsageTotal`] per environment, namespace, workload and
/// meter, ordered by them.
pub fn usage_totals<'a>(days: impl IntoIterator<Item = &'a DayUsage>) -> Vec<UsageTotal> {
    type Key = (String, String, String, Meter);
    let mut sums: BTreeMap<Key, (Quantity, Quantity)> = BTreeMap::new();
    let key = |e: &UsageEntry| {
        (
            e.environment.clone(),
            e.namespace.clone(),
            e.workload.clone(),
            e.meter.clone(),
        )
    };
    for day in days {
        for e in &day.usage {
            let sum = sums.entry(key(e)).or_default();
            sum.0 = sum.0.saturating_add(e.quantity);
        }
        for e in &day.unobserved_bound {
            let sum = sums.entry(key(e)).or_default();
            sum.1 = sum.1.saturating_add(e.quantity);
        }
    }
    sums.into_iter()
        .map(
            |((environment, namespace, workload, meter), (quantity, unobserved_bound))| {
                UsageTotal {
                    environment,
                    namespace,
                    workload,
                    meter,
                    quantity,
                    unobserved_bound,
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    /// 2026-11-15 00:00:00 UTC.
    const NOV15_UTC: i64 = 1_794_700_800;

    fn attribution(agency: &str) -> Attribution {
        Attribution {
            agency: agency.to_owned(),
            environment: "prod".to_owned(),
            namespace: format!("{agency}-prod"),
            workload: "Workload/portal".to_owned(),
        }
    }

    fn container(cpu: Option<&str>, memory: Option<&str>, restart: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if let Some(cpu) = cpu {
            requests.insert("cpu".to_owned(), K8sQuantity(cpu.to_owned()));
        }
        if let Some(memory) = memory {
            requests.insert("memory".to_owned(), K8sQuantity(memory.to_owned()));
        }
        Container {
            name: "c".to_owned(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            restart_policy: restart.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn days_and_months_are_dates_in_vietnam() {
        assert_eq!(
            i64::from(days_from_civil(2026, 11, 15)) * SECONDS_PER_DAY,
            NOV15_UTC
        );
        let day = Day::from_ymd(2026, 11, 15).unwrap();
        assert_eq!(day.to_string(), "2026-11-15");
        // 00:00 in Vietnam is 17:00 UTC the day before.
        assert_eq!(day.start(), NOV15_UTC - 7 * 3600);
        assert_eq!(Day::of(NOV15_UTC - 7 * 3600), day);
        assert_eq!(Day::of(NOV15_UTC - 7 * 3600 - 1).to_string(), "2026-11-14");
        assert_eq!(Day::of(NOV15_UTC + 16 * 3600 + 59 * 60 + 59), day);
        assert_eq!(Day::of(NOV15_UTC + 17 * 3600).to_string(), "2026-11-16");
        assert_eq!(Day::of(0).to_string(), "1970-01-01");
        assert_eq!(Day::of(-7 * 3600 - 1).to_string(), "1969-12-31");
        assert_eq!("2026-11-15".parse::<Day>().unwrap(), day);
        assert!("2026-02-29".parse::<Day>().is_err());
        assert_eq!(
            "2028-02-29".parse::<Day>().unwrap().next().to_string(),
            "2028-03-01"
        );
        assert!("2026-1-05".parse::<Day>().is_err());
        let month: Month = "2026-02".parse().unwrap();
        assert_eq!(month.days(), 28);
        assert_eq!(month.last_day().to_string(), "2026-02-28");
        assert_eq!(month.next().to_string(), "2026-03");
        assert_eq!(
            "2026-12".parse::<Month>().unwrap().next().to_string(),
            "2027-01"
        );
        assert_eq!(month.iter_days().count(), 28);
        assert_eq!(month.seconds(), 28 * 86_400);
        assert_eq!(day.month().to_string(), "2026-11");
        assert!("2026-13".parse::<Month>().is_err());
        for days in -800_000..800_000 {
            let d = Day(days);
            let (y, m, dd) = d.ymd();
            if (1..=9999).contains(&y) {
                assert_eq!(Day::from_ymd(y, m, dd), Some(d));
            }
        }
    }

    #[test]
    fn quantities_serialize_as_strings() {
        let q = Quantity(92_233_720_368_547_758_070);
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(json, "\"92233720368547758070\"");
        assert_eq!(serde_json::from_str::<Quantity>(&json).unwrap(), q);
        assert!(serde_json::from_str::<Quantity>("\"-1\"").is_err());
        assert!(serde_json::from_str::<Quantity>("\"\"").is_err());
    }

    #[test]
    fn effective_requests_follow_the_init_container_and_overhead_rules() {
        // Two app containers: 250m + 500m, 256Mi + 512Mi.
        let mut spec = PodSpec {
            containers: vec![
                container(Some("250m"), Some("256Mi"), None),
                container(Some("500m"), Some("512Mi"), None),
            ],
            ..Default::default()
        };
        assert_eq!(
            pod_effective_requests(&spec),
            PodRequests {
                cpu_milli: 750,
                memory_bytes: 768 * 1024 * 1024
            }
        );
        // A big regular init container dominates CPU, not memory.
        spec.init_containers = Some(vec![container(Some("2"), Some("100Mi"), None)]);
        assert_eq!(pod_effective_requests(&spec).cpu_milli, 2000);
        assert_eq!(pod_effective_requests(&spec).memory_bytes, 768 << 20);
        // A sidecar (restartPolicy Always) before it adds to the init peak and to the
        // app sum: cpu max(100+2000, 750+100) = 2100; memory max(64+100, 768+64) = 832Mi.
        spec.init_containers = Some(vec![
            container(Some("100m"), Some("64Mi"), Some("Always")),
            container(Some("2"), Some("100Mi"), None),
        ]);
        assert_eq!(
            pod_effective_requests(&spec),
            PodRequests {
                cpu_milli: 2100,
                memory_bytes: 832 << 20
            }
        );
        // A sidecar after the init container does not add to its peak.
        spec.init_containers = Some(vec![
            container(Some("2"), Some("100Mi"), None),
            container(Some("100m"), Some("64Mi"), Some("Always")),
        ]);
        assert_eq!(pod_effective_requests(&spec).cpu_milli, 2000);
        // Pod overhead is added on top.
        spec.overhead = Some(BTreeMap::from([
            ("cpu".to_owned(), K8sQuantity("120m".to_owned())),
            ("memory".to_owned(), K8sQuantity("1Ki".to_owned())),
        ]));
        assert_eq!(
            pod_effective_requests(&spec),
            PodRequests {
                cpu_milli: 2120,
                memory_bytes: (832 << 20) + 1024
            }
        );
        // A limit without a request counts; nothing counts zero; fractions of a byte
        // round up.
        let limit_only = Container {
            name: "l".to_owned(),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "cpu".to_owned(),
                    K8sQuantity("1".to_owned()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = PodSpec {
            containers: vec![
                limit_only,
                Container::default(),
                container(None, Some("1500m"), None),
            ],
            ..Default::default()
        };
        assert_eq!(
            pod_effective_requests(&spec),
            PodRequests {
                cpu_milli: 1000,
                memory_bytes: 2
            }
        );
        assert_eq!(storage_bytes("10Gi"), Some(10 << 30));
        assert_eq!(storage_bytes("-1"), None);
    }

    #[test]
    fn intervals_are_counted_exactly_and_split_at_vietnam_midnight() {
        let mut integrator = Integrator::default();
        let a = attribution("so-y-te");
        let rates = PodRequests {
            cpu_milli: 500,
            memory_bytes: 1 << 30,
        }
        .rates();
        // Started 16:59:00 UTC on Nov 15 (23:59 in Vietnam), stopped 17:01:30 UTC.
        let start = NOV15_UTC + 16 * 3600 + 59 * 60;
        integrator.observe("pod-1", start, Some((a.clone(), rates.clone())));
        integrator.observe("pod-1", start + 150, None);
        assert!(integrator.open_intervals().is_empty());
        let days = integrator.take_days();
        let nov15 = Day::from_ymd(2026, 11, 15).unwrap();
        let nov16 = nov15.next();
        let key = |meter: Meter| {
            (
                "prod".to_owned(),
                "so-y-te-prod".to_owned(),
                "Workload/portal".to_owned(),
                meter,
            )
        };
        let d15 = &days[&("so-y-te".to_owned(), nov15)];
        let d16 = &days[&("so-y-te".to_owned(), nov16)];
        assert_eq!(d15.usage[&key(Meter::Cpu)], Quantity(60 * 500));
        assert_eq!(d16.usage[&key(Meter::Cpu)], Quantity(90 * 500));
        assert_eq!(d15.usage[&key(Meter::Memory)], Quantity(60 << 30));
        assert_eq!(d16.usage[&key(Meter::Memory)], Quantity(90 << 30));
        assert!(integrator.take_days().is_empty());
    }

    #[test]
    fn advance_counts_up_to_the_watermark_once() {
        let mut integrator = Integrator::default();
        let a = attribution("xa-hoa-vang");
        integrator.observe(
            "pvc",
            NOV15_UTC,
            Some((a.clone(), vec![(Meter::Storage, 1000)])),
        );
        integrator.advance(NOV15_UTC + 10);
        integrator.advance(NOV15_UTC + 10);
        integrator.advance(NOV15_UTC + 5); // a watermark never moves back
        // A resize at +20: 10 more seconds at the old size, then the new size.
        integrator.observe(
            "pvc",
            NOV15_UTC + 20,
            Some((a.clone(), vec![(Meter::Storage, 3000)])),
        );
        // An event older than the watermark takes effect at the watermark.
        integrator.advance(NOV15_UTC + 30);
        integrator.observe("pvc", NOV15_UTC + 25, None);
        let total: u128 = integrator
            .take_days()
            .values()
            .flat_map(|d| d.usage.values())
            .map(|q| q.0)
            .sum();
        assert_eq!(total, 20 * 1000 + 10 * 3000);
    }

    #[test]
    fn a_checkpoint_resumes_without_double_counting_and_gaps_are_bounds() {
        let a = attribution("so-tttt");
        let mut first = Integrator::default();
        first.observe("p1", NOV15_UTC, Some((a.clone(), vec![(Meter::Cpu, 100)])));
        first.observe("p2", NOV15_UTC, Some((a.clone(), vec![(Meter::Cpu, 10)])));
        first.advance(NOV15_UTC + 60);
        let counted_before_crash: u128 = first
            .take_days()
            .values()
            .flat_map(|d| d.usage.values())
            .map(|q| q.0)
            .sum();
        assert_eq!(counted_before_crash, 60 * 110);
        // It crashes after counting up to +90 in memory (lost); the checkpoint says +60.
        first.advance(NOV15_UTC + 90);
        let checkpoint: Vec<(String, OpenInterval)> = first
            .open_intervals()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    OpenInterval {
                        since: NOV15_UTC + 60,
                        ..v.clone()
                    },
                )
            })
            .collect();
        // Restarted at +120: p1 still runs (exact), p2 is gone (bound).
        let mut second = Integrator::resume(checkpoint);
        second.observe_gap("p2", NOV15_UTC + 120);
        second.advance(NOV15_UTC + 120);
        let days = second.take_days();
        let day = &days[&("so-tttt".to_owned(), Day::of(NOV15_UTC))];
        let usage = day.to_usage();
        assert_eq!(usage.usage.len(), 1);
        assert_eq!(usage.usage[0].quantity, Quantity(60 * 100));
        assert_eq!(usage.unobserved_bound[0].quantity, Quantity(60 * 10));
        let json = serde_json::to_value(&usage).unwrap();
        assert_eq!(json["usage"][0]["resource"], "cpu");
        assert_eq!(json["usage"][0]["quantity"], "6000");
        let back: DayUsage = serde_json::from_value(json).unwrap();
        assert_eq!(back, usage);
        assert_eq!(usage.merged(&usage).usage[0].quantity, Quantity(12_000));
    }

    #[test]
    fn usage_that_could_not_be_written_is_kept_for_the_next_write() {
        // The ledger is down for two flushes: what was taken is put back and written
        // with the next batch, nothing lost and nothing twice.
        let a = attribution("so-xay-dung");
        let mut integrator = Integrator::default();
        integrator.observe("p", NOV15_UTC, Some((a, vec![(Meter::Cpu, 7)])));
        integrator.advance(NOV15_UTC + 10);
        let failed = integrator.take_days();
        integrator.restore_days(failed);
        integrator.advance(NOV15_UTC + 25);
        let failed = integrator.take_days();
        integrator.restore_days(failed);
        integrator.advance(NOV15_UTC + 30);
        let written = integrator.take_days();
        let total: u128 = written
            .values()
            .flat_map(|d| d.usage.values())
            .map(|q| q.0)
            .sum();
        assert_eq!(total, 30 * 7);
        assert_eq!(written.len(), 1);
    }

    #[test]
    fn data_service_meters_carry_class_and_plan() {
        let meter = Meter::DataService {
            class_name: "postgres-dung-chung".to_owned(),
            plan: "co-ban".to_owned(),
        };
        assert_eq!(meter.label(), "postgres-dung-chung/co-ban");
        assert_eq!(meter.unit(), "instance-seconds");
        let json = serde_json::to_value(&meter).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"resource": "dataService", "className": "postgres-dung-chung", "plan": "co-ban"})
        );
    }

    #[test]
    fn usage_totals_sum_days_per_key_with_their_bounds() {
        let entry = |workload: &str, meter: Meter, q: u128| UsageEntry {
            environment: "prod".into(),
            namespace: "so-y-te-prod".into(),
            workload: workload.into(),
            meter,
            quantity: Quantity(q),
        };
        let day1 = DayUsage {
            usage: vec![
                entry("Workload/a", Meter::Cpu, 1_000),
                entry("Workload/a", Meter::Memory, 7),
            ],
            unobserved_bound: vec![],
        };
        let day2 = DayUsage {
            usage: vec![entry("Workload/a", Meter::Cpu, 500)],
            unobserved_bound: vec![entry("Pod/x", Meter::Cpu, 30)],
        };
        let totals = usage_totals([&day1, &day2]);
        assert_eq!(totals.len(), 3);
        assert_eq!(
            (totals[0].workload.as_str(), &totals[0].meter),
            ("Pod/x", &Meter::Cpu)
        );
        assert_eq!(
            (totals[0].quantity, totals[0].unobserved_bound),
            (Quantity::ZERO, Quantity(30))
        );
        assert_eq!(
            (&totals[1].meter, totals[1].quantity),
            (&Meter::Cpu, Quantity(1_500))
        );
        assert_eq!(
            (&totals[2].meter, totals[2].quantity),
            (&Meter::Memory, Quantity(7))
        );
        assert!(usage_totals([]).is_empty());
    }
}
