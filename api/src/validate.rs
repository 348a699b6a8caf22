//! Request validation at the edge: every field a caller sends is checked here before
//! anything reaches Kubernetes or the ledger, with a message that names the field.

use govbroker_crds::QuotaResource;
use govbroker_domain::quantity::Amount;

use crate::error::ApiError;
use crate::proto;

/// Longest agency name (the CRD's rule).
pub const MAX_AGENCY_NAME: usize = 42;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 200;
/// Longest free text (justifications, reasons), in characters.
pub const MAX_TEXT: usize = 2000;
/// Longest user, group or service-account name.
pub const MAX_PRINCIPAL: usize = 253;
/// Most principals in one list.
pub const MAX_PRINCIPALS: usize = 100;
/// Default and largest page.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// A slug: lowercase ASCII letters, digits and '-', not starting or ending with '-'.
pub fn slug(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if value.len() > max {
        return Err(ApiError::invalid(
            field,
            format!(
                "is {} characters long; at most {max} are allowed",
                value.chars().count()
            ),
        ));
    }
    let valid = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !valid {
        return Err(ApiError::invalid(
            field,
            format!(
                "{value:?} is not a valid name: use lowercase ASCII letters, digits and '-' (not at either end), such as so-y-te-ha-noi"
            ),
        ));
    }
    Ok(())
}

/// An agency's name.
pub fn agency_name(field: &str, value: &str) -> Result<(), ApiError> {
    slug(field, value, MAX_AGENCY_NAME)
}

/// Free text shown to people: bounded, and without control characters (other than
/// newlines and tabs) that would garble logs and terminals.
pub fn text(field: &str, value: &str, max: usize, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(ApiError::invalid(
            field,
            format!("is {chars} characters long; at most {max} are allowed"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(ApiError::invalid(
            field,
            format!(
                "contains the control character U+{:04X}; remove it",
                c as u32
            ),
        ));
    }
    // Bidirectional overrides make text display differently from what it is (a name
    // that reads as another agency's).
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    {
        return Err(ApiError::invalid(
            field,
            format!(
                "contains the bidirectional control U+{:04X}, which makes text display as something else; remove it",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// A user or group name.
pub fn principal(field: &str, value: &str) -> Result<(), ApiError> {
    text(field, value, MAX_PRINCIPAL, true)?;
    if value.trim() != value || value.contains(['\n', '\t']) {
        return Err(ApiError::invalid(
            field,
            format!("{value:?} has surrounding spaces or line breaks; a principal is one name"),
        ));
    }
    Ok(())
}

/// The owners or viewers of an agency.
pub fn principals(field: &str, value: &proto::Principals) -> Result<(), ApiError> {
    let total = value.users.len() + value.groups.len() + value.service_accounts.len();
    if total > MAX_PRINCIPALS {
        return Err(ApiError::invalid(
            field,
            format!("names {total} principals; at most {MAX_PRINCIPALS}: use a group"),
        ));
    }
    for (i, user) in value.users.iter().enumerate() {
        principal(&format!("{field}.users[{i}]"), user)?;
    }
    for (i, group) in value.groups.iter().enumerate() {
        principal(&format!("{field}.groups[{i}]"), group)?;
    }
    for (i, sa) in value.service_accounts.iter().enumerate() {
        service_account(&format!("{field}.service_accounts[{i}]"), sa)?;
    }
    Ok(())
}

/// A service account written `namespace/name`; returns the two parts.
pub fn service_account<'a>(field: &str, value: &'a str) -> Result<(&'a str, &'a str), ApiError> {
    let Some((namespace, name)) = value.split_once('/') else {
        return Err(ApiError::invalid(
            field,
            format!("{value:?} is not a service account: write it as namespace/name"),
        ));
    };
    slug(field, namespace, 63)?;
    slug(field, name, MAX_PRINCIPAL)?;
    Ok((namespace, name))
}

/// The largest amount of a resource anyone could mean: beyond it a request is a typo.
pub fn plausible_max(resource: QuotaResource) -> (Amount, &'static str) {
    match resource {
        QuotaResource::Cpu => (Amount::from_units(1_000_000), "1000000 cores"),
        r if r.is_bytes() => (Amount::from_units(1 << 60), "1Ei"),
        _ => (Amount::from_units(10_000_000), "10000000"),
    }
}

/// Quota amounts: each a non-negative Kubernetes quantity no larger than
/// [`plausible_max`]. With `required`, at least one must be given.
pub fn amounts(
    field: &str,
    value: Option<&proto::ResourceAmounts>,
    required: bool,
) -> Result<(), ApiError> {
    let empty = proto::ResourceAmounts::default();
    let value = value.unwrap_or(&empty);
    let mut any = false;
    for resource in QuotaResource::ALL {
        let text = crate::convert::amount_field(value, resource);
        if text.is_empty() {
            continue;
        }
        any = true;
        let name = format!("{field}.{}", snake(resource.field()));
        let amount = Amount::parse_non_negative(text).map_err(|e| {
            ApiError::invalid(
                &name,
                format!("{e}: write a quantity such as 2, 500m or 4Gi"),
            )
        })?;
        let (max, max_text) = plausible_max(resource);
        if amount > max {
            return Err(ApiError::invalid(
                &name,
                format!("{text} is beyond any real request (at most {max_text})"),
            ));
        }
    }
    if required && !any {
        return Err(ApiError::invalid(
            field,
            "names no resource: give at least one of cpu, memory, storage, pods...",
        ));
    }
    Ok(())
}

/// `ephemeralStorage` → `ephemeral_storage`, for field names in messages.
pub fn snake(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A page size: 0 means the default.
pub fn page_size(field: &str, value: u32) -> Result<usize, ApiError> {
    match value as usize {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n > MAX_PAGE_SIZE => Err(ApiError::invalid(
            field,
            format!("{n} is too many; at most {MAX_PAGE_SIZE} per page"),
        )),
        n => Ok(n),
    }
}

/// Encodes a paging cursor (opaque to callers).
pub fn page_token(cursor: &str) -> String {
    hex::encode(cursor.as_bytes())
}

/// Decodes a paging cursor; an empty token is the first page.
pub fn cursor(field: &str, token: &str) -> Result<Option<String>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(field, "is not a token this API issued: pass next_page_token from the previous page, or nothing")
        })
}

/// An RFC 3339 time, or none when empty.
pub fn time(field: &str, value: &str) -> Result<Option<jiff::Timestamp>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        ApiError::invalid(
            field,
            format!("{value:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_slugs() {
        assert!(agency_name("name", "so-y-te-ha-noi").is_ok());
        for bad in [
            "",
            "Sở-y-tế",
            "UPPER",
            "-x",
            "x-",
            "a b",
            "a_b",
            &"a".repeat(43),
        ] {
            let err = agency_name("name", bad).unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidArgument { ref field, .. } if field == "name"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn text_allows_vietnamese_and_refuses_control_characters() {
        assert!(text("display_name", "Ủy ban nhân dân xã Đông Hòa", 200, true).is_ok());
        assert!(text("display_name", "a\u{0}b", 200, true).is_err());
        assert!(text("display_name", "Sở \u{202E}Y tế", 200, true).is_err());
        // Decomposed (NFD) Vietnamese is still text.
        assert!(text("display_name", "Ha\u{300} Nô\u{323}i", 200, true).is_ok());
        assert!(text("display_name", "  ", 200, true).is_err());
        assert!(text("display_name", &"ệ".repeat(201), 200, true).is_err());
        assert!(text("display_name", &"ệ".repeat(200), 200, true).is_ok());
    }

    #[test]
    fn quantities_are_bounded() {
        let ok = proto::ResourceAmounts {
            cpu: "1.5".into(),
            memory: "4Gi".into(),
            ..Default::default()
        };
        assert!(amounts("quota", Some(&ok), true).is_ok());
        for (cpu, memory) in [
            ("-1", ""),
            ("abc", ""),
            ("2000000", ""),
            ("", "2Ei"),
            ("1e400", ""),
        ] {
            let bad = proto::ResourceAmounts {
                cpu: cpu.into(),
                memory: memory.into(),
                ..Default::default()
            };
            assert!(
                amounts("quota", Some(&bad), true).is_err(),
                "{cpu} {memory}"
            );
        }
        assert!(amounts("quota", None, true).is_err());
        assert!(amounts("quota", None, false).is_ok());
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(
            cursor("t", &page_token("ab")).unwrap().as_deref(),
            Some("ab")
        );
        assert!(cursor("t", "zz").is_err());
        assert!(page_size("p", 1001).is_err());
        assert_eq!(page_size("p", 0).unwrap(), DEFAULT_PAGE_SIZE);
    }
}
