//! Exact arithmetic on Kubernetes quantities, for quotas.
//!
//! A quota is only trustworthy if adding the shares of 12,000 agencies gives exactly the
//! same answer every time, so amounts are integers of milli-units (never floats): cpu
//! `1.5` is 1500, `500m` is 500, memory `1Ki` is 1,024,000 and pods `10` is 10,000.
//! Fractions finer than a milli-unit round away from zero, as Kubernetes does, so a
//! quota is never silently made smaller than what was written.

use std::collections::BTreeMap;
use std::fmt;

use govbroker_crds::{QuotaResource, ResourceAmounts};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What a person should write instead, repeated in every "not a quantity" error.
const EXPECTED: &str =
    "expected a number followed by an optional suffix such as 500m, 2, 1.5, 512Mi or 10Gi";

/// Milli-units per unit.
const MILLI: i128 = 1000;

/// The largest magnitude a quantity may have, in milli-units (10^30 units).
///
/// It is far beyond any real quota (8Ei of memory is about 10^22 milli-units) yet leaves
/// a factor of 10^5 of headroom below `i128::MAX`, so summing the quotas of the whole
/// national tree can never overflow.
const MAX_MILLI: i128 = 1_000_000_000_000_000_000_000_000_000_000_000;

/// Exponents beyond this are clamped while parsing: they are either "too large" or round
/// to one milli-unit anyway, and clamping keeps the digit loops short.
const EXPONENT_CLAMP: i64 = 1_000_000;

/// Binary suffixes and their power of two, largest first (the order [`Amount::format`]
/// tries them in).
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ei", 60),
    ("Pi", 50),
    ("Ti", 40),
    ("Gi", 30),
    ("Mi", 20),
    ("Ki", 10),
];

/// Decimal suffixes and their power of ten.
const DECIMAL_SUFFIXES: [(&str, i64); 9] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

/// Why a text is not a usable quantity. Each message quotes the text and says what to
/// write instead, because it ends up in front of the person who typed it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is empty.
    #[error("an empty string is not a quantity: {EXPECTED}")]
    Empty,
    /// The text is not a number followed by a suffix.
    #[error("\"{text}\" is not a quantity: {EXPECTED}")]
    Malformed {
        /// The text as given.
        text: String,
    },
    /// The number is followed by a suffix Kubernetes does not know.
    #[error(
        "\"{text}\" is not a quantity: unknown suffix \"{suffix}\"; use one of Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E or an exponent such as 1e3"
    )]
    UnknownSuffix {
        /// The text as given.
        text: String,
        /// The part after the number.
        suffix: String,
    },
    /// The value is beyond 10^30 units.
    #[error("\"{text}\" is too large: a quota amount must stay below 10^30 units")]
    TooLarge {
        /// The text as given.
        text: String,
    },
    /// The value is negative where only amounts one can hold make sense.
    #[error("\"{text}\" must not be negative")]
    Negative {
        /// The text as given.
        text: String,
    },
}

/// A quota amount that is wrong, with the field it came from, e.g.
/// `spec.quota.cpu: "-1" must not be negative`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {source}")]
pub struct QuotaError {
    /// Path of the field, e.g. `spec.environments[prod].quota.memory`.
    pub field: String,
    /// What is wrong with its text.
    pub source: QuantityError,
}

/// An exact quantity in milli-units (cpu `1.5` = 1500, memory `1Ki` = 1,024,000,
/// pods `10` = 10,000).
///
/// Arithmetic saturates instead of panicking: parsed amounts are bounded far below the
/// `i128` range, so saturation is only a last guard that a webhook never crashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i128);

impl Amount {
    /// Nothing.
    pub const ZERO: Amount = Amount(0);

    /// An amount from a count of milli-units.
    pub const fn from_milli(milli: i128) -> Amount {
        Amount(milli)
    }

    /// An amount of whole units (cores, bytes, pods).
    pub const fn from_units(units: i64) -> Amount {
        Amount(units as i128 * MILLI)
    }

    /// The amount in milli-units.
    pub const fn milli(self) -> i128 {
        self.0
    }

    /// Whether the amount is exactly zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Whether the amount is below zero (only arithmetic produces these, e.g. room left
    /// under an overcommitted parent).
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `self + other`, saturating.
    pub const fn saturating_add(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }

    /// `self - other`, saturating.
    pub const fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    /// Parses a Kubernetes quantity: an optional sign, a decimal number (`1`, `1.5`,
    /// `.5`, `1.`) and an optional suffix: binary `Ki Mi Gi Ti Pi Ei`, decimal
    /// `n u m k M G T P E`, or an exponent `e3`, `E-3`.
    ///
    /// The result is exact; fractions finer than a milli-unit round away from zero.
    /// Negative values are accepted here because arithmetic needs them; use
    /// [`Amount::parse_non_negative`] for what a person asks to hold.
    pub fn parse(text: &str) -> Result<Amount, QuantityError> {
        let number = split_quantity(text)?;
        let magnitude = number
            .magnitude_milli()
            .ok_or_else(|| QuantityError::TooLarge {
                text: text.to_owned(),
            })?;
        Ok(Amount(if number.negative {
            -magnitude
        } else {
            magnitude
        }))
    }

    /// Like [`Amount::parse`], but refuses negative values: a spec asks to hold an
    /// amount, and a negative one would silently give room to its siblings.
    pub fn parse_non_negative(text: &str) -> Result<Amount, QuantityError> {
        let amount = Amount::parse(text)?;
        if amount.is_negative() {
            return Err(QuantityError::Negative {
                text: text.to_owned(),
            });
        }
        Ok(amount)
    }

    /// The canonical text of the amount for one resource, which [`Amount::parse`] reads
    /// back to the same amount:
    /// - cpu and counts: `2` when whole, else milli-units (`1500m`);
    /// - bytes: the largest binary suffix that divides exactly (`16Gi`, `1536Mi`), else
    ///   plain bytes (`1000`), or milli-units for a fraction of a byte (`1500m`).
    ///
    /// It matches how operators write quotas with kubectl, so `kubectl get` shows what
    /// they expect.
    pub fn format(self, resource: QuotaResource) -> String {
        if self.0 % MILLI != 0 {
            return format!("{}m", self.0);
        }
        let units = self.0 / MILLI;
        if resource.is_bytes() && units != 0 {
            for (suffix, shift) in BINARY_SUFFIXES {
                let unit = 1i128 << shift;
                if units % unit == 0 {
                    return format!("{}{suffix}", units / unit);
                }
            }
        }
        units.to_string()
    }

    /// The amount as a Kubernetes [`Quantity`] in canonical form.
    pub fn to_quantity(self, resource: QuotaResource) -> Quantity {
        Quantity(self.format(resource))
    }
}

impl std::ops::Add for Amount {
    type Output = Amount;

    /// Saturating, so that no input can make a webhook panic.
    fn add(self, other: Amount) -> Amount {
        self.saturating_add(other)
    }
}

impl std::ops::Sub for Amount {
    type Output = Amount;

    /// Saturating, so that no input can make a webhook panic.
    fn sub(self, other: Amount) -> Amount {
        self.saturating_sub(other)
    }
}

/// A quantity's text taken apart, before any arithmetic.
struct ParsedNumber {
    /// Whether a leading `-` was given.
    negative: bool,
    /// All significant decimal digits (integer then fraction part), without leading or
    /// trailing zeros; empty for zero.
    digits: Vec<u8>,
    /// Power of ten to apply to `digits` read as an integer, to get milli-units.
    exp10: i64,
    /// Power of two of a binary suffix (10 for Ki ... 60 for Ei), else 0.
    exp2: u32,
}

/// Splits a quantity text into sign, digits, and powers of ten and two, with an error
/// that tells what is wrong with the text.
fn split_quantity(text: &str) -> Result<ParsedNumber, QuantityError> {
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    let malformed = || QuantityError::Malformed {
        text: text.to_owned(),
    };
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    if let Some(&sign @ (b'+' | b'-')) = bytes.first() {
        negative = sign == b'-';
        pos = 1;
    }
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &bytes[int_start..pos];
    let mut frac_digits: &[u8] = &[];
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &bytes[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(malformed());
    }
    let (suffix_exp10, exp2) = parse_suffix(text, &text[pos..])?;

    let mut digits: Vec<u8> = int_digits
        .iter()
        .chain(frac_digits)
        .map(|d| d - b'0')
        .skip_while(|&d| d == 0)
        .collect();
    // Trailing zeros only scale the number; dropping them keeps the integers small so
    // that e.g. "1000000000000000000000000000000000000000m" does not overflow.
    let mut trailing_zeros: i64 = 0;
    while digits.last() == Some(&0) {
        digits.pop();
        trailing_zeros += 1;
    }
    let frac_len = i64::try_from(frac_digits.len()).map_err(|_| malformed())?;
    Ok(ParsedNumber {
        negative,
        digits,
        exp10: 3 + suffix_exp10 + trailing_zeros - frac_len,
        exp2,
    })
}

/// Reads the suffix after the number: (power of ten, power of two).
fn parse_suffix(text: &str, suffix: &str) -> Result<(i64, u32), QuantityError> {
    if suffix.is_empty() {
        return Ok((0, 0));
    }
    if let Some(&(_, shift)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok((0, shift));
    }
    if let Some(&(_, exp)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok((exp, 0));
    }
    // "E" alone is exa (handled above); "e3", "E-3", "e+3" are exponents.
    if let Some(exponent) = suffix.strip_prefix(['e', 'E'])
        && let Some(value) = parse_exponent(exponent)
    {
        return Ok((value, 0));
    }
    if suffix.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(QuantityError::UnknownSuffix {
            text: text.to_owned(),
            suffix: suffix.to_owned(),
        });
    }
    Err(QuantityError::Malformed {
        text: text.to_owned(),
    })
}

/// A signed decimal exponent, clamped to ±[`EXPONENT_CLAMP`]; `None` if not an integer.
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: i64 = 0;
    for b in digits.bytes() {
        value = (value * 10 + i64::from(b - b'0')).min(EXPONENT_CLAMP);
    }
    Some(if negative { -value } else { value })
}

impl ParsedNumber {
    /// The magnitude in milli-units, rounded up; `None` if it exceeds [`MAX_MILLI`].
    fn magnitude_milli(&self) -> Option<i128> {
        if self.digits.is_empty() {
            return Some(0);
        }
        let binary = 1i128 << self.exp2;
        let magnitude = if self.exp10 >= 0 {
            let exp = u32::try_from(self.exp10).ok()?;
            digits_value(&self.digits)?
                .checked_mul(10i128.checked_pow(exp)?)?
                .checked_mul(binary)?
        } else {
            // value = (I + F / 10^n) * 2^k with n fraction digits at milli scale: the
            // integer part is exact, and only F * 2^k / 10^n needs rounding up.
            let n = usize::try_from(self.exp10.unsigned_abs()).ok()?;
            let split = self.digits.len().saturating_sub(n);
            let (int_part, frac_part) = self.digits.split_at(split);
            let leading_frac_zeros = n - frac_part.len();
            let (floor, inexact) = fraction_times(frac_part, leading_frac_zeros, self.exp2);
            digits_value(int_part)?
                .checked_mul(binary)?
                .checked_add(floor)?
                .checked_add(i128::from(inexact))?
        };
        (magnitude <= MAX_MILLI).then_some(magnitude)
    }
}

/// The integer written by decimal digits, `None` on overflow.
fn digits_value(digits: &[u8]) -> Option<i128> {
    digits.iter().try_fold(0i128, |acc, &d| {
        acc.checked_mul(10)?.checked_add(i128::from(d))
    })
}

/// For the decimal fraction `0.<zeros><digits>`, the integer part of `fraction * 2^exp2`
/// and whether anything is left after the point.
///
/// It multiplies digit by digit from the least significant one, like long
/// multiplication on paper, so however many digits a text has nothing overflows: every
/// intermediate value stays below 10 * 2^60.
fn fraction_times(digits: &[u8], leading_zeros: usize, exp2: u32) -> (i128, bool) {
    let multiplier = 1i128 << exp2;
    let mut carry: i128 = 0;
    let mut inexact = false;
    for &d in digits.iter().rev() {
        let t = i128::from(d) * multiplier + carry;
        inexact |= t % 10 != 0;
        carry = t / 10;
    }
    for _ in 0..leading_zeros {
        if carry == 0 {
            break;
        }
        inexact |= carry % 10 != 0;
        carry /= 10;
    }
    (carry, inexact)
}

impl fmt::Display for Amount {
    /// Milli-units, since the resource (and so the canonical form) is unknown here; use
    /// [`Amount::format`] for people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0)
    }
}

/// The amounts of several quota resources, e.g. an agency's quota or the sum of its
/// environments' quotas.
///
/// A resource that is absent is not granted at all, which differs from being granted 0
/// only in what [`Amounts::to_spec`] writes back; for arithmetic both count as zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Amounts(BTreeMap<QuotaResource, Amount>);

/// A resource of which more is needed than is available, from [`Amounts::shortfall`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// Which resource.
    pub resource: QuotaResource,
    /// How much is needed.
    pub needed: Amount,
    /// How much is available (zero if the limit does not grant the resource).
    pub available: Amount,
}

impl fmt::Display for Shortfall {
    /// E.g. `cpu: 5 needed, 4 available`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} needed, {} available",
            self.resource.field(),
            self.needed.format(self.resource),
            self.available.format(self.resource)
        )
    }
}

/// Joins a field-path prefix and a field name, e.g. `spec.quota` + `cpu`.
fn field_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

impl Amounts {
    /// No resources at all.
    pub fn new() -> Amounts {
        Amounts::default()
    }

    /// Reads and validates a spec's quota. `field_prefix` is the path of the quota field
    /// (e.g. `spec.quota` or `spec.environments[prod].quota`) so that the error names the
    /// exact field to fix. Returns the first problem; see [`Amounts::from_spec_all`].
    pub fn from_spec(spec: &ResourceAmounts, field_prefix: &str) -> Result<Amounts, QuotaError> {
        Amounts::from_spec_all(spec, field_prefix).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Like [`Amounts::from_spec`] but reports every wrong field, so a person fixes them
    /// all in one go instead of one rejection at a time.
    pub fn from_spec_all(
        spec: &ResourceAmounts,
        field_prefix: &str,
    ) -> Result<Amounts, Vec<QuotaError>> {
        let mut amounts = Amounts::new();
        let mut errors = Vec::new();
        for resource in QuotaResource::ALL {
            let Some(quantity) = spec.get(resource) else {
                continue;
            };
            match Amount::parse_non_negative(&quantity.0) {
                Ok(amount) => amounts.set(resource, amount),
                Err(source) => errors.push(QuotaError {
                    field: field_path(field_prefix, resource.field()),
                    source,
                }),
            }
        }
        if errors.is_empty() {
            Ok(amounts)
        } else {
            Err(errors)
        }
    }

    /// Reads the quota of an object that already exists, skipping amounts that do not
    /// parse or are negative.
    ///
    /// Existing objects were validated when admitted; if one is broken anyway, refusing
    /// every neighbour's change because of it would block the tree, and counting a
    /// negative amount would hand out room that does not exist.
    pub fn from_spec_lenient(spec: &ResourceAmounts) -> Amounts {
        let mut amounts = Amounts::new();
        for resource in QuotaResource::ALL {
            if let Some(amount) = spec
                .get(resource)
                .and_then(|q| Amount::parse_non_negative(&q.0).ok())
            {
                amounts.set(resource, amount);
            }
        }
        amounts
    }

    /// The amounts as a spec's quota, in canonical form (`1500m`, `16Gi`).
    pub fn to_spec(&self) -> ResourceAmounts {
        let mut spec = ResourceAmounts::default();
        for (&resource, amount) in &self.0 {
            spec.set(resource, Some(amount.to_quantity(resource)));
        }
        spec
    }

    /// Reads a ResourceQuota's `hard` or `used` map. Unknown keys and unparsable values
    /// are ignored (the map is written by Kubernetes or by others, and a report must not
    /// fail on them). `cpu`, `memory` and `ephemeral-storage` are read as synonyms of
    /// their `requests.` keys, as Kubernetes treats them.
    pub fn from_resource_quota(map: &BTreeMap<String, Quantity>) -> Amounts {
        let mut amounts = Amounts::new();
        for resource in QuotaResource::ALL {
            let synonym = match resource {
                QuotaResource::Cpu => Some("cpu"),
                QuotaResource::Memory => Some("memory"),
                QuotaResource::EphemeralStorage => Some("ephemeral-storage"),
                _ => None,
            };
            let quantity = map
                .get(resource.resource_quota_key())
                .or_else(|| synonym.and_then(|key| map.get(key)));
            if let Some(amount) = quantity.and_then(|q| Amount::parse(&q.0).ok()) {
                amounts.set(resource, amount);
            }
        }
        amounts
    }

    /// The `hard` map of a namespace's ResourceQuota: the present resources under their
    /// ResourceQuota keys, in canonical form.
    ///
    /// Absent resources are left out, which Kubernetes reads as "unlimited"; deciding
    /// which of them to pin to 0 is the caller's policy (pinning `requests.*` makes
    /// Kubernetes refuse pods that do not request that resource, so it needs matching
    /// LimitRange defaults).
    pub fn to_resource_quota_hard(&self) -> BTreeMap<String, Quantity> {
        self.iter()
            .map(|(resource, amount)| {
                (
                    resource.resource_quota_key().to_owned(),
                    amount.to_quantity(resource),
                )
            })
            .collect()
    }

    /// The amount of one resource, zero if absent.
    pub fn get(&self, resource: QuotaResource) -> Amount {
        self.0.get(&resource).copied().unwrap_or(Amount::ZERO)
    }

    /// The amount of `resource`, or `None` when it is absent (not granted at all).
    pub fn get_opt(&self, resource: QuotaResource) -> Option<Amount> {
        self.0.get(&resource).copied()
    }

    /// Whether the resource is present (granted, possibly as 0).
    pub fn contains(&self, resource: QuotaResource) -> bool {
        self.0.contains_key(&resource)
    }

    /// Sets the amount of one resource.
    pub fn set(&mut self, resource: QuotaResource, amount: Amount) {
        self.0.insert(resource, amount);
    }

    /// Whether no resource is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The present resources and their amounts, in [`QuotaResource::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (QuotaResource, Amount)> + '_ {
        self.0.iter().map(|(&r, &a)| (r, a))
    }

    /// The sum of two sets of amounts; a resource present in either is present in the
    /// result.
    pub fn add(&self, other: &Amounts) -> Amounts {
        let mut sum = self.clone();
        for (resource, amount) in other.iter() {
            let total = sum.get(resource) + amount;
            sum.set(resource, total);
        }
        sum
    }

    /// `self - other` per resource; a resource present in either is present in the
    /// result, which may be negative (e.g. room left under an overcommitted parent).
    pub fn sub(&self, other: &Amounts) -> Amounts {
        let mut difference = self.clone();
        for (resource, amount) in other.iter() {
            let rest = difference.get(resource) - amount;
            difference.set(resource, rest);
        }
        difference
    }

    /// The sum of many sets of amounts, e.g. the quotas of all children.
    pub fn sum<'a>(items: impl IntoIterator<Item = &'a Amounts>) -> Amounts {
        items
            .into_iter()
            .fold(Amounts::new(), |total, item| total.add(item))
    }

    /// Every resource of which `self` needs more than `limit` has. A resource absent
    /// from the limit counts as zero available, so it is listed only if `self` needs a
    /// non-zero amount of it.
    pub fn shortfall(&self, limit: &Amounts) -> Vec<Shortfall> {
        self.iter()
            .filter_map(|(resource, needed)| {
                let available = limit.get(resource);
                (needed > available).then_some(Shortfall {
                    resource,
                    needed,
                    available,
                })
            })
            .collect()
    }
}

impl fmt::Display for Amounts {
    /// E.g. `cpu 2, memory 4Gi`, or `nothing` when empty, for messages and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing");
        }
        for (i, (resource, amount)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", resource.field(), amount.format(resource))?;
        }
        Ok(())
    }
}

/// `used/hard` for `kubectl get` columns, e.g. `1500m/4`, `512Mi/8Gi`, `0/4`, or
/// `1500m/-` when there is no hard limit.
pub fn usage_summary(used: Amount, hard: Option<Amount>, resource: QuotaResource) -> String {
    let hard = hard.map_or_else(|| "-".to_owned(), |h| h.format(resource));
    format!("{}/{hard}", used.format(resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: QuotaResource = QuotaResource::Cpu;
    const MEM: QuotaResource = QuotaResource::Memory;
    const PODS: QuotaResource = QuotaResource::Pods;

    fn milli(text: &str) -> i128 {
        Amount::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .milli()
    }

    #[test]
    fn parses_valid_quantities_exactly() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("-0", 0),
            ("1", 1000),
            ("+1", 1000),
            ("1.5", 1500),
            ("500m", 500),
            ("0.1", 100),
            (".5", 500),
            ("1.", 1000),
            ("1e3", 1_000_000),
            ("2E-3", 2),
            ("1e+3", 1_000_000),
            ("1E", 1_000_000_000_000_000_000_000),
            ("2k", 2_000_000),
            ("1M", 1_000_000_000),
            ("1G", 1_000_000_000_000),
            ("1Ki", 1_024_000),
            ("2Gi", 2 * (1 << 30) * 1000),
            ("1.5Gi", 3 * (1 << 29) * 1000),
            ("0.5Ki", 512_000),
            ("1Ei", (1i128 << 60) * 1000),
            ("8Ei", (8i128 << 60) * 1000),
            ("-1", -1000),
            ("-1.5", -1500),
            ("10", 10_000),
            ("1500m", 1500),
            ("0.000001", 1),
            ("1u", 1),
            ("1n", 1),
            ("1001n", 1),
            ("1000000n", 1),
            ("1000001n", 2),
            ("-1n", -1),
            ("0.0001Ki", 103), // 0.1024 bytes = 102.4m, rounded up
            ("0.001Ki", 1024),
            ("0.00000000000000000000000000000000000000000000000000001", 1),
            ("1e-1000000000000", 1),
            ("0e1000000000000", 0),
            ("007", 7000),
        ];
        for &(text, expected) in cases {
            assert_eq!(milli(text), expected, "{text}");
        }
    }

    #[test]
    fn refuses_invalid_quantities_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("", "an empty string is not a quantity: expected a number"),
            (
                "abc",
                "\"abc\" is not a quantity: expected a number followed by an optional suffix such as 500m, 2, 1.5, 512Mi or 10Gi",
            ),
            (
                "1.2.3",
                "\"1.2.3\" is not a quantity: expected a number followed by an optional suffix such as 500m, 2, 1.5, 512Mi or 10Gi",
            ),
            ("1Zi", "\"1Zi\" is not a quantity: unknown suffix \"Zi\""),
            ("1K", "unknown suffix \"K\""),
            ("1e", "unknown suffix \"e\""),
            ("1e3.5", "\"1e3.5\" is not a quantity: expected"),
            (".", "\".\" is not a quantity"),
            ("-", "\"-\" is not a quantity"),
            ("Gi", "\"Gi\" is not a quantity"),
            (" 1", "\" 1\" is not a quantity"),
            ("1 Gi", "\"1 Gi\" is not a quantity"),
            ("1Gi ", "\"1Gi \" is not a quantity"),
            ("--1", "\"--1\" is not a quantity"),
            ("1e--3", "\"1e--3\" is not a quantity"),
            (
                "999999999999999999999Ei",
                "\"999999999999999999999Ei\" is too large",
            ),
            ("1e31", "is too large"),
            ("1e1000000000000000000000000", "is too large"),
            (
                "99999999999999999999999999999999999999999999",
                "is too large",
            ),
            ("-999999999999999999999Ei", "is too large"),
        ];
        for &(text, fragment) in cases {
            let err = Amount::parse(text).expect_err(text).to_string();
            assert!(err.contains(fragment), "{text}: {err}");
        }
        assert_eq!(milli("1e30"), MAX_MILLI);
        assert_eq!(milli(&format!("{MAX_MILLI}m")), MAX_MILLI);
        assert!(Amount::parse(&format!("{}m", MAX_MILLI + 1)).is_err());
    }

    #[test]
    fn non_negative_parse_refuses_negatives() {
        assert_eq!(
            Amount::parse_non_negative("-1").unwrap_err().to_string(),
            "\"-1\" must not be negative"
        );
        assert_eq!(Amount::parse_non_negative("-0").unwrap(), Amount::ZERO);
        assert_eq!(Amount::parse_non_negative("2").unwrap().milli(), 2000);
    }

    #[test]
    fn formats_canonically() {
        let cases: &[(&str, QuotaResource, &str)] = &[
            ("2", CPU, "2"),
            ("1.5", CPU, "1500m"),
            ("0.1", CPU, "100m"),
            ("2000m", CPU, "2"),
            ("0", CPU, "0"),
            ("-1.5", CPU, "-1500m"),
            ("16Gi", MEM, "16Gi"),
            ("1.5Gi", MEM, "1536Mi"),
            ("1024Mi", MEM, "1Gi"),
            ("1000", MEM, "1000"),
            ("1k", MEM, "1000"),
            ("1.5", MEM, "1500m"),
            ("0", MEM, "0"),
            ("1Ei", MEM, "1Ei"),
            ("2048Ei", MEM, "2048Ei"),
            ("-2Gi", MEM, "-2Gi"),
            ("1Gi", QuotaResource::Storage, "1Gi"),
            ("10", PODS, "10"),
            ("1k", PODS, "1000"),
            ("1.5", PODS, "1500m"),
        ];
        for &(text, resource, expected) in cases {
            assert_eq!(milli_amount(text).format(resource), expected, "{text}");
        }
    }

    fn milli_amount(text: &str) -> Amount {
        Amount::from_milli(milli(text))
    }

    #[test]
    fn format_round_trips() {
        let values: Vec<i128> = vec![
            0,
            1,
            -1,
            999,
            1000,
            1500,
            1_024_000,
            1_536_000,
            123_456_789,
            (1i128 << 30) * 1000,
            (3i128 << 29) * 1000,
            (1i128 << 60) * 1000 * 7,
            MAX_MILLI,
            -MAX_MILLI,
            MAX_MILLI - 1,
        ];
        for value in values {
            for resource in QuotaResource::ALL {
                let text = Amount::from_milli(value).format(resource);
                assert_eq!(milli(&text), value, "{value} {resource:?} -> {text}");
            }
        }
    }

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let max = Amount::from_milli(i128::MAX);
        assert_eq!((max + Amount::from_units(1)).milli(), i128::MAX);
        assert_eq!(
            (Amount::from_milli(i128::MIN) - Amount::from_units(1)).milli(),
            i128::MIN
        );
        assert_eq!(
            milli_amount("1.5") + milli_amount("500m"),
            Amount::from_units(2)
        );
    }

    fn spec(cpu: Option<&str>, memory: Option<&str>) -> ResourceAmounts {
        ResourceAmounts {
            cpu: cpu.map(|s| Quantity(s.to_owned())),
            memory: memory.map(|s| Quantity(s.to_owned())),
            ..ResourceAmounts::default()
        }
    }

    #[test]
    fn from_spec_names_the_field() {
        let amounts = Amounts::from_spec(&spec(Some("1.5"), Some("512Mi")), "spec.quota").unwrap();
        assert_eq!(amounts.get(CPU).milli(), 1500);
        assert_eq!(amounts.get(MEM).milli(), 512 * 1024 * 1024 * 1000);
        assert!(!amounts.contains(PODS));
        assert_eq!(amounts.get(PODS), Amount::ZERO);

        let err = Amounts::from_spec(&spec(Some("-1"), None), "quota").unwrap_err();
        assert_eq!(err.to_string(), "quota.cpu: \"-1\" must not be negative");
        assert_eq!(err.field, "quota.cpu");

        let err = Amounts::from_spec(&spec(None, Some("1Zi")), "environments[prod].quota")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("environments[prod].quota.memory: \"1Zi\" is not a quantity"),
            "{err}"
        );

        let errors = Amounts::from_spec_all(&spec(Some("x"), Some("-1Gi")), "").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["cpu", "memory"]);
    }

    #[test]
    fn lenient_spec_skips_broken_amounts() {
        let amounts = Amounts::from_spec_lenient(&spec(Some("-1"), Some("2Gi")));
        assert!(!amounts.contains(CPU));
        assert_eq!(amounts.get(MEM).format(MEM), "2Gi");
    }

    #[test]
    fn to_spec_is_canonical_and_round_trips() {
        let amounts = Amounts::from_spec(&spec(Some("1.50"), Some("1536Mi")), "q").unwrap();
        let out = amounts.to_spec();
        assert_eq!(out, spec(Some("1500m"), Some("1536Mi")));
        assert_eq!(Amounts::from_spec(&out, "q").unwrap(), amounts);
    }

    #[test]
    fn resource_quota_maps() {
        let map: BTreeMap<String, Quantity> = [
            ("requests.cpu", "1500m"),
            ("memory", "1Gi"),
            ("pods", "oops"),
            ("count/jobs.batch", "3"),
            ("services", "4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
        .collect();
        let amounts = Amounts::from_resource_quota(&map);
        assert_eq!(amounts.get(CPU).milli(), 1500);
        assert_eq!(amounts.get(MEM).format(MEM), "1Gi");
        assert!(!amounts.contains(PODS));
        assert_eq!(amounts.get(QuotaResource::Services).milli(), 4000);

        let hard = amounts.to_resource_quota_hard();
        let keys: Vec<_> = hard.keys().map(String::as_str).collect();
        assert_eq!(keys, ["requests.cpu", "requests.memory", "services"]);
        assert_eq!(hard["requests.cpu"].0, "1500m");
        assert_eq!(hard["requests.memory"].0, "1Gi");
        assert_eq!(Amounts::from_resource_quota(&hard), amounts);
    }

    #[test]
    fn add_sum_sub_and_shortfall() {
        let a = Amounts::from_spec(&spec(Some("1.5"), None), "").unwrap();
        let b = Amounts::from_spec(&spec(Some("500m"), Some("1Gi")), "").unwrap();
        let total = Amounts::sum([&a, &b, &Amounts::new()]);
        assert_eq!(total.get(CPU), Amount::from_units(2));
        assert_eq!(total.get(MEM).format(MEM), "1Gi");
        assert_eq!(total.sub(&b), {
            let mut expected = a.clone();
            expected.set(MEM, Amount::ZERO);
            expected
        });

        let limit = Amounts::from_spec(&spec(Some("2"), None), "").unwrap();
        assert_eq!(
            total.shortfall(&limit),
            vec![Shortfall {
                resource: MEM,
                needed: total.get(MEM),
                available: Amount::ZERO,
            }]
        );
        assert_eq!(
            total.shortfall(&limit)[0].to_string(),
            "memory: 1Gi needed, 0 available"
        );

        // Exactly at the limit fits; one milli-unit over does not.
        let at_limit = Amounts::from_spec(&spec(Some("2"), Some("0")), "").unwrap();
        assert!(at_limit.shortfall(&limit).is_empty());
        let over = Amounts::from_spec(&spec(Some("2001m"), None), "").unwrap();
        assert_eq!(over.shortfall(&limit)[0].needed.milli(), 2001);
    }

    #[test]
    fn usage_summaries() {
        assert_eq!(
            usage_summary(milli_amount("1.5"), Some(milli_amount("4")), CPU),
            "1500m/4"
        );
        assert_eq!(
            usage_summary(milli_amount("512Mi"), Some(milli_amount("8Gi")), MEM),
            "512Mi/8Gi"
        );
        assert_eq!(
            usage_summary(Amount::ZERO, Some(milli_amount("4")), CPU),
            "0/4"
        );
        assert_eq!(usage_summary(milli_amount("1500m"), None, CPU), "1500m/-");
    }

    #[test]
    fn amounts_display() {
        assert_eq!(Amounts::new().to_string(), "nothing");
        let a = Amounts::from_spec(&spec(Some("2"), Some("4Gi")), "").unwrap();
        assert_eq!(a.to_string(), "cpu 2, memory 4Gi");
    }
}
