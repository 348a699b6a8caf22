//! The rules that make an Agency a valid node of the government tree.
//!
//! The admission webhook calls [`validate_agency`] with the new spec and the agencies
//! around it, so a wrong change is refused with every reason at once, each naming the
//! field, the agencies, levels and amounts involved, and what to do instead. Each rule is
//! also a function of its own so that callers and tests can use one rule alone.
//!
//! The CRD's CEL rules check some of the same things (parent required unless Central,
//! unique environment names); they are repeated here because CEL cannot see other
//! objects and because the API and CLI validate before they ever reach the cluster.

use std::collections::BTreeMap;
use std::fmt;

use govbroker_crds::{Agency, AgencyLevel, AgencySpec, QuotaResource};
use serde::Serialize;

use crate::quantity::{Amounts, QuotaError};

/// Annotation that allows deleting an agency together with its whole subtree. Without
/// it, an agency with children cannot be deleted, so that one mistyped `kubectl delete`
/// does not remove a province with its thousand communes.
pub const CASCADE_DELETE_ANNOTATION: &str = "govbroker.io/cascade-delete";

/// Most environments an agency may have (the CRD schema says the same): each is a
/// namespace with its own quota, and more would only fragment the agency's quota.
pub const MAX_ENVIRONMENTS: usize = 16;

/// How many names a message lists before saying "and N more": a province may have
/// hundreds of communes, and a message must stay readable.
const MAX_NAMES_IN_MESSAGE: usize = 5;

/// One reason a change is refused: the field to fix and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Path of the field, e.g. `spec.quota.cpu` or `spec.parent`.
    pub field: String,
    /// What is wrong and how to fix it, naming agencies, levels and amounts.
    pub message: String,
    /// The change is well formed but the parent has no room for it: a state of the
    /// tree, not a mistake in the request (clients answer "failed precondition").
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_room: bool,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation {
            field: field.into(),
            message: message.into(),
            no_room: false,
        }
    }

    /// A lack of room in the parent for `field`.
    pub fn no_room(field: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation {
            no_room: true,
            ..Violation::new(field, message)
        }
    }
}

impl fmt::Display for Violation {
    /// `{field}: {message}`, the form Kubernetes uses for field errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Violation {}

/// A proposed state of an agency together with the agencies around it, all that the
/// tree's rules need to judge it without a cluster.
#[derive(Clone, Debug)]
pub struct AgencyChange<'a> {
    /// The agency's name (its ASCII slug).
    pub name: &'a str,
    /// The new spec.
    pub spec: &'a AgencySpec,
    /// The parent named in `spec.parent`, if it exists.
    pub parent: Option<&'a Agency>,
    /// The parent's other children (not this agency).
    pub siblings: Vec<&'a Agency>,
    /// This agency's current children.
    pub children: Vec<&'a Agency>,
    /// Names from the parent up to the root, to detect cycles.
    pub ancestors_of_parent: Vec<String>,
}

/// Checks every rule of the tree and returns all violations, so that a person can fix
/// everything in one go.
pub fn validate_agency(change: &AgencyChange) -> Result<(), Vec<Violation>> {
    let violations: Vec<Violation> = [
        check_parent(change),
        check_cycle(change),
        check_levels(change),
        check_security_level(change),
        check_quota(change),
        check_environments(change),
    ]
    .into_iter()
    .flatten()
    .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// The levels an agency of `level` may sit under.
///
/// Central has no parent. A Province sits under a Central body, or under a Province as
/// one of its departments. A District sits under a Province. A Commune sits under a
/// District, or directly under a Province since the 2025 two-level map; both must be
/// accepted because older records keep districts.
pub fn allowed_parent_levels(level: AgencyLevel) -> &'static [AgencyLevel] {
    match level {
        AgencyLevel::Central => &[],
        AgencyLevel::Province => &[AgencyLevel::Central, AgencyLevel::Province],
        AgencyLevel::District => &[AgencyLevel::Province],
        AgencyLevel::Commune => &[AgencyLevel::District, AgencyLevel::Province],
    }
}

/// Rule: a Central agency has no parent; every other agency names one, and it exists.
pub fn check_parent(change: &AgencyChange) -> Vec<Violation> {
    let level = change.spec.level;
    let message = match (level, change.spec.parent.as_deref()) {
        (AgencyLevel::Central, Some(parent)) => format!(
            "a Central agency has no parent, but spec.parent names \"{parent}\": remove spec.parent, or set spec.level to Province if this agency belongs under \"{parent}\""
        ),
        (_, None) if level != AgencyLevel::Central => format!(
            "{} must name its parent agency in spec.parent ({})",
            a_level(level),
            levels_phrase(allowed_parent_levels(level))
        ),
        // Naming itself is reported by the cycle rule, which says more.
        (_, Some(parent)) if change.parent.is_none() && parent != change.name => {
            format!("parent agency \"{parent}\" does not exist: create it first or fix spec.parent")
        }
        _ => return Vec::new(),
    };
    vec![Violation::new("spec.parent", message)]
}

/// Rule: the agency is neither its own parent nor an ancestor of its parent; otherwise
/// the subtree would be cut off from the root and quotas would be counted in a loop.
pub fn check_cycle(change: &AgencyChange) -> Vec<Violation> {
    let Some(parent) = change.spec.parent.as_deref() else {
        return Vec::new();
    };
    let name = change.name;
    if parent == name {
        return vec![Violation::new(
            "spec.parent",
            format!("an agency cannot be its own parent: \"{name}\" names itself in spec.parent"),
        )];
    }
    if !change.ancestors_of_parent.iter().any(|a| a == name) {
        return Vec::new();
    }
    // The path from the parent up to this agency shows the person where the loop is.
    let mut path = vec![parent];
    for ancestor in &change.ancestors_of_parent {
        if ancestor == parent && path.len() == 1 {
            continue;
        }
        path.push(ancestor);
        if ancestor == name {
            break;
        }
    }
    vec![Violation::new(
        "spec.parent",
        format!(
            "moving \"{name}\" under \"{parent}\" would make a cycle, because \"{parent}\" is itself below \"{name}\" ({}): choose a parent outside the subtree of \"{name}\"",
            path.join(" → ")
        ),
    )]
}

/// Rule: levels nest as [`allowed_parent_levels`] says, both for this agency under its
/// parent and for its current children under this agency's (possibly new) level.
pub fn check_levels(change: &AgencyChange) -> Vec<Violation> {
    let level = change.spec.level;
    let mut violations = Vec::new();
    if let Some(parent) = usable_parent(change) {
        let allowed = allowed_parent_levels(level);
        if !allowed.contains(&parent.spec.level) {
            violations.push(Violation::new(
                "spec.parent",
                format!(
                    "{} must sit under {}, but \"{}\" is {}: choose a parent of the right level in spec.parent or change spec.level",
                    a_level(level),
                    levels_phrase(allowed),
                    agency_name(parent),
                    parent.spec.level.as_str()
                ),
            ));
        }
    }
    // Group children by level so that a province with 500 communes gets one message.
    let mut misplaced: BTreeMap<AgencyLevel, Vec<&str>> = BTreeMap::new();
    for child in &change.children {
        if !allowed_parent_levels(child.spec.level).contains(&level) {
            misplaced
                .entry(child.spec.level)
                .or_default()
                .push(agency_name(child));
        }
    }
    for (child_level, names) in misplaced {
        let (who, verb, what, pronoun) = if names.len() == 1 {
            ("child agency", "is", a_level(child_level), "it")
        } else {
            ("child agencies", "are", levels_plural(child_level), "them")
        };
        violations.push(Violation::new(
            "spec.level",
            format!(
                "{who} {} {verb} {what}, which must sit under {}, so this agency cannot be {}: move {pronoun} first or keep the current level",
                list_names(&names),
                levels_phrase(allowed_parent_levels(child_level)),
                a_level(level),
            ),
        ));
    }
    violations
}

/// Rule: a child's security level does not exceed its parent's. The parent's owners can
/// read the child's namespaces, so a child classified higher than its parent would be
/// exposed to people cleared only for the lower level. Checked against the parent and
/// against the current children (when lowering this agency's level).
pub fn check_security_level(change: &AgencyChange) -> Vec<Violation> {
    let level = change.spec.security_level;
    if !(1..=5).contains(&level) {
        return vec![Violation::new(
            "spec.securityLevel",
            format!("security level {level} does not exist: use 1 (lowest) to 5 (highest)"),
        )];
    }
    let mut violations = Vec::new();
    if let Some(parent) = usable_parent(change) {
        let parent_level = parent.spec.security_level;
        if level > parent_level {
            violations.push(Violation::new(
                "spec.securityLevel",
                format!(
                    "security level {level} is above the level {parent_level} of parent \"{}\", whose owners can read this agency's namespaces: lower spec.securityLevel to {parent_level} or less, or first raise the parent's security level to {level}",
                    agency_name(parent)
                ),
            ));
        }
    }
    let mut above: Vec<(&str, u8)> = change
        .children
        .iter()
        .filter(|c| c.spec.security_level > level)
        .map(|c| (agency_name(c), c.spec.security_level))
        .collect();
    if let Some(highest) = above.iter().map(|&(_, l)| l).max() {
        above.sort();
        let listed = list(
            above
                .iter()
                .map(|(name, l)| format!("\"{name}\" (level {l})"))
                .collect(),
        );
        violations.push(Violation::new(
            "spec.securityLevel",
            format!(
                "child {} {listed} {} classified above security level {level}, and this agency's owners can read {} namespaces: keep spec.securityLevel at {highest} or more, or lower the children's levels first",
                plural(above.len(), "agency", "agencies"),
                if above.len() == 1 { "is" } else { "are" },
                if above.len() == 1 { "its" } else { "their" },
            ),
        ));
    }
    violations
}

/// Rule: every amount is a non-negative quantity; the agency's environments and children
/// fit within its quota; and its quota fits in what its parent has left after the
/// parent's own environments and this agency's siblings.
///
/// The fitting checks run only when every amount parses, since a sum with a missing
/// term would be misleading.
pub fn check_quota(change: &AgencyChange) -> Vec<Violation> {
    let mut violations = Vec::new();
    let own = collect(
        Amounts::from_spec_all(&change.spec.quota, "spec.quota"),
        &mut violations,
    );
    let environments: Vec<Amounts> = change
        .spec
        .environments
        .iter()
        .map(|env| {
            collect(
                Amounts::from_spec_all(
                    &env.quota,
                    &format!("spec.environments[{}].quota", env.name),
                ),
                &mut violations,
            )
        })
        .collect();
    if !violations.is_empty() {
        return violations;
    }

    let environments = Amounts::sum(&environments);
    let children: Vec<Amounts> = change
        .children
        .iter()
        .map(|c| Amounts::from_spec_lenient(&c.spec.quota))
        .collect();
    let children = Amounts::sum(&children);
    for resource in QuotaResource::ALL {
        let (envs, kids) = (environments.get(resource), children.get(resource));
        let needed = envs + kids;
        let has = own.get(resource);
        if needed <= has {
            continue;
        }
        let field = resource.field();
        let quota = if own.contains(resource) {
            format!("the agency's quota is {}", has.format(resource))
        } else {
            format!("the agency's quota does not grant {field}")
        };
        violations.push(Violation::new(
            format!("spec.quota.{field}"),
            format!(
                "environments ({}) and children ({}) need {}, but {quota}: raise spec.quota.{field} to at least {}, or give the environments and children less",
                envs.format(resource),
                kids.format(resource),
                needed.format(resource),
                needed.format(resource),
            ),
        ));
    }

    if let Some(parent) = usable_parent(change) {
        violations.extend(check_fits_parent(change, parent, &own));
    }
    violations
}

/// The parent half of [`check_quota`]: this agency's new quota fits in the room its
/// parent has left.
fn check_fits_parent(change: &AgencyChange, parent: &Agency, own: &Amounts) -> Vec<Violation> {
    let parent_name = agency_name(parent);
    let parent_quota = Amounts::from_spec_lenient(&parent.spec.quota);
    let left = room_left(parent, &change.siblings, change.name);
    let mut violations = Vec::new();
    for (resource, wanted) in own.iter() {
        let available = left.get(resource);
        if wanted.is_zero() || wanted <= available {
            continue;
        }
        let field = resource.field();
        let wanted_text = wanted.format(resource);
        let message = if !parent_quota.contains(resource) {
            format!(
                "parent \"{parent_name}\" does not grant {field}, so none is left for this agency, not {wanted_text}: remove spec.quota.{field}, or raise the parent's quota first"
            )
        } else {
            let total = parent_quota.get(resource);
            let held = total - available;
            let rest = if available.is_negative() || available.is_zero() {
                "nothing is left for this agency".to_owned()
            } else {
                format!(
                    "at most {} is left for this agency",
                    available.format(resource)
                )
            };
            format!(
                "parent \"{parent_name}\" has {} {field}; its environments and other children hold {}, so {rest}, not {wanted_text}: lower spec.quota.{field}, or raise the parent's quota first",
                total.format(resource),
                held.format(resource),
            )
        };
        violations.push(Violation::no_room(format!("spec.quota.{field}"), message));
    }
    violations
}

/// Rule: environment names are unique (each becomes a namespace) and there are at most
/// [`MAX_ENVIRONMENTS`].
pub fn check_environments(change: &AgencyChange) -> Vec<Violation> {
    let environments = &change.spec.environments;
    let mut violations = Vec::new();
    if environments.len() > MAX_ENVIRONMENTS {
        violations.push(Violation::new(
            "spec.environments",
            format!(
                "an agency may have at most {MAX_ENVIRONMENTS} environments, but this one lists {}: merge or remove some",
                environments.len()
            ),
        ));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, env) in environments.iter().enumerate() {
        let count = seen.entry(env.name.as_str()).or_default();
        *count += 1;
        if *count == 2 {
            violations.push(Violation::new(
                format!("spec.environments[{index}].name"),
                format!(
                    "environment \"{}\" is listed more than once: environment names must be unique within an agency, since each becomes the namespace {}-{}",
                    env.name, change.name, env.name
                ),
            ));
        }
    }
    violations
}

/// What `parent` has left to give: its quota minus its environments' quotas minus the
/// quotas of `children` other than `excluding` (typically the agency asking for room).
///
/// A resource the parent does not grant has zero room; a negative amount means the
/// parent is already overcommitted by that much. Broken amounts on existing objects are
/// skipped, as in [`Amounts::from_spec_lenient`].
pub fn room_left(parent: &Agency, children: &[&Agency], excluding: &str) -> Amounts {
    let quota = Amounts::from_spec_lenient(&parent.spec.quota);
    let environments: Vec<Amounts> = parent
        .spec
        .environments
        .iter()
        .map(|env| Amounts::from_spec_lenient(&env.quota))
        .collect();
    let children: Vec<Amounts> = children
        .iter()
        .filter(|c| agency_name(c) != excluding)
        .map(|c| Amounts::from_spec_lenient(&c.spec.quota))
        .collect();
    quota
        .sub(&Amounts::sum(&environments))
        .sub(&Amounts::sum(&children))
}

/// Fields of an agency's spec that its owners may change themselves; everything else
/// (level, parent, security level, quota) is the platform admins' (quota changes go
/// through a QuotaRequest).
pub const OWNER_EDITABLE_FIELDS: [&str; 4] = ["displayName", "owners", "viewers", "environments"];

/// Whether an edit by an owner (not a platform admin) stays within
/// [`OWNER_EDITABLE_FIELDS`]; the refusal names the first field they may not change.
pub fn owner_edit_allowed(old: &AgencySpec, new: &AgencySpec) -> Result<(), Violation> {
    let admin_only = [
        ("spec.level", old.level != new.level, "the level"),
        ("spec.parent", old.parent != new.parent, "the parent"),
        (
            "spec.securityLevel",
            old.security_level != new.security_level,
            "the security level",
        ),
        (
            "spec.quota",
            old.quota != new.quota,
            "the quota (file a QuotaRequest instead)",
        ),
    ];
    match admin_only.iter().find(|(_, changed, _)| *changed) {
        Some((field, _, what)) => Err(Violation::new(
            *field,
            format!(
                "an agency's owners may change its {}, but {what} only a platform admin may change",
                OWNER_EDITABLE_FIELDS.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Whether `agency` may be deleted now. An agency without children always may. One with
/// children may only if it carries [`CASCADE_DELETE_ANNOTATION`]`: "true"` (someone
/// asked for the whole subtree to go) or its parent is itself being deleted (a cascade
/// is already in progress), so a subtree is never orphaned by accident.
pub fn deletion_allowed(
    agency: &Agency,
    children: &[&Agency],
    parent_being_deleted: bool,
) -> Result<(), Violation> {
    let cascade = agency
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CASCADE_DELETE_ANNOTATION))
        .is_some_and(|v| v == "true");
    if children.is_empty() || cascade || parent_being_deleted {
        return Ok(());
    }
    let name = agency_name(agency);
    let mut names: Vec<&str> = children.iter().map(|c| agency_name(c)).collect();
    names.sort_unstable();
    Err(Violation::new(
        format!("metadata.annotations[{CASCADE_DELETE_ANNOTATION}]"),
        format!(
            "agency \"{name}\" still has {} {} ({}): move or delete them first, or set the annotation {CASCADE_DELETE_ANNOTATION}: \"true\" on \"{name}\" to delete it with its whole subtree",
            names.len(),
            plural(names.len(), "child agency", "child agencies"),
            list_names(&names)
        ),
    ))
}

/// The parent against which parent-relative rules are checked, or `None` when there is
/// none to check against: a Central agency, a missing parent, or a cycle (reported by
/// their own rules, and any further message about such a "parent" would be noise).
fn usable_parent<'a>(change: &AgencyChange<'a>) -> Option<&'a Agency> {
    let parent = change.spec.parent.as_deref()?;
    let cyclic =
        parent == change.name || change.ancestors_of_parent.iter().any(|a| a == change.name);
    if change.spec.level == AgencyLevel::Central || cyclic {
        return None;
    }
    change.parent
}

/// Moves the errors of a parse into `violations` and returns what parsed (empty on
/// error, as it is then unused).
fn collect(parsed: Result<Amounts, Vec<QuotaError>>, violations: &mut Vec<Violation>) -> Amounts {
    parsed.unwrap_or_else(|errors| {
        violations.extend(
            errors
                .into_iter()
                .map(|e| Violation::new(e.field, e.source.to_string())),
        );
        Amounts::new()
    })
}

/// The name of an agency object (empty if unset, which the API server never allows).
fn agency_name(agency: &Agency) -> &str {
    agency.metadata.name.as_deref().unwrap_or("")
}

/// "a Commune", "a Central agency": how a level reads in a sentence.
fn a_level(level: AgencyLevel) -> &'static str {
    match level {
        AgencyLevel::Central => "a Central agency",
        AgencyLevel::Province => "a Province",
        AgencyLevel::District => "a District",
        AgencyLevel::Commune => "a Commune",
    }
}

/// "a District or a Province".
fn levels_phrase(levels: &[AgencyLevel]) -> String {
    levels
        .iter()
        .map(|&l| a_level(l))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// `"a", "b" and 3 more`: at most [`MAX_NAMES_IN_MESSAGE`] quoted names.
fn list_names(names: &[&str]) -> String {
    list(names.iter().map(|n| format!("\"{n}\"")).collect())
}

/// `a, b and 3 more`: at most [`MAX_NAMES_IN_MESSAGE`] items.
fn list(items: Vec<String>) -> String {
    let more = items.len().saturating_sub(MAX_NAMES_IN_MESSAGE);
    let shown = items
        .into_iter()
        .take(MAX_NAMES_IN_MESSAGE)
        .collect::<Vec<_>>()
        .join(", ");
    if more == 0 {
        shown
    } else {
        format!("{shown} and {more} more")
    }
}

/// "Communes", "Central agencies": a level in the plural.
fn levels_plural(level: AgencyLevel) -> &'static str {
    match level {
        AgencyLevel::Central => "Central agencies",
        AgencyLevel::Province => "Provinces",
        AgencyLevel::District => "Districts",
        AgencyLevel::Commune => "Communes",
    }
}

/// The singular or plural form for a count.
fn plural(count: usize, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

/// The owner reference that ties an agency to its parent, so that deleting a parent
/// (allowed only with the cascade annotation) removes its subtree through the garbage
/// collector. `None` when the parent has no name or uid yet.
pub fn parent_reference(
    parent: &Agency,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: format!("{}/{}", govbroker_crds::GROUP, govbroker_crds::VERSION),
            kind: "Agency".to_owned(),
            name: parent.metadata.name.clone()?,
            uid: parent.metadata.uid.clone()?,
            controller: Some(false),
            block_owner_deletion: Some(true),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use govbroker_crds::{Environment, ResourceAmounts};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    /// A quota from `(resource, text)` pairs.
    fn quota(amounts: &[(QuotaResource, &str)]) -> ResourceAmounts {
        let mut spec = ResourceAmounts::default();
        for &(resource, text) in amounts {
            spec.set(resource, Some(Quantity(text.to_owned())));
        }
        spec
    }

    fn cpu(text: &str) -> ResourceAmounts {
        quota(&[(QuotaResource::Cpu, text)])
    }

    fn spec(level: AgencyLevel, parent: Option<&str>, security_level: u8) -> AgencySpec {
        AgencySpec {
            budget: None,
            price_list: None,
            display_name: "Cơ quan thử nghiệm".to_owned(),
            level,
            parent: parent.map(str::to_owned),
            security_level,
            owners: Default::default(),
            viewers: Default::default(),
            environments: Vec::new(),
            quota: ResourceAmounts::default(),
        }
    }

    fn env(name: &str, quota: ResourceAmounts) -> Environment {
        Environment {
            name: name.to_owned(),
            quota,
        }
    }

    fn agency(name: &str, spec: AgencySpec) -> Agency {
        Agency::new(name, spec)
    }

    fn central(name: &str) -> Agency {
        let mut s = spec(AgencyLevel::Central, None, 5);
        s.quota = quota(&[(QuotaResource::Cpu, "100"), (QuotaResource::Memory, "1Ti")]);
        agency(name, s)
    }

    /// A change with no neighbours but the parent.
    fn change<'a>(
        name: &'a str,
        spec: &'a AgencySpec,
        parent: Option<&'a Agency>,
    ) -> AgencyChange<'a> {
        AgencyChange {
            name,
            spec,
            parent,
            siblings: Vec::new(),
            children: Vec::new(),
            ancestors_of_parent: parent
                .and_then(|p| p.metadata.name.clone())
                .into_iter()
                .collect(),
        }
    }

    fn messages(result: Result<(), Vec<Violation>>) -> Vec<String> {
        result
            .expect_err("expected violations")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Asserts that validation fails with exactly one violation containing `fragment`.
    fn assert_refused(change: &AgencyChange, fragment: &str) {
        let messages = messages(validate_agency(change));
        assert_eq!(messages.len(), 1, "{messages:#?}");
        assert!(
            messages[0].contains(fragment),
            "{messages:#?}\nexpected: {fragment}"
        );
    }

    #[test]
    fn good_shapes_are_accepted() {
        let bo = central("bo-tttt");
        let mut province_spec = spec(AgencyLevel::Province, Some("bo-tttt"), 4);
        province_spec.quota = quota(&[(QuotaResource::Cpu, "10"), (QuotaResource::Memory, "32Gi")]);
        province_spec.environments = vec![
            env(
                "prod",
                quota(&[(QuotaResource::Cpu, "4"), (QuotaResource::Memory, "16Gi")]),
            ),
            env("staging", cpu("1.5")),
        ];
        let province = agency("tinh-da-nang", province_spec.clone());
        assert_eq!(
            validate_agency(&change("tinh-da-nang", &province_spec, Some(&bo))),
            Ok(())
        );

        let department = spec(AgencyLevel::Province, Some("tinh-da-nang"), 3);
        assert_eq!(
            validate_agency(&change("so-tttt", &department, Some(&province))),
            Ok(())
        );
        let district = spec(AgencyLevel::District, Some("tinh-da-nang"), 3);
        assert_eq!(
            validate_agency(&change("quan-hai-chau", &district, Some(&province))),
            Ok(())
        );
        let commune = spec(AgencyLevel::Commune, Some("tinh-da-nang"), 4);
        assert_eq!(
            validate_agency(&change("xa-hoa-vang", &commune, Some(&province))),
            Ok(())
        );
        let district_agency = agency("quan-hai-chau", district);
        let commune = spec(AgencyLevel::Commune, Some("quan-hai-chau"), 1);
        assert_eq!(
            validate_agency(&change("phuong-1", &commune, Some(&district_agency))),
            Ok(())
        );
        let root = spec(AgencyLevel::Central, None, 5);
        assert_eq!(validate_agency(&change("bo-tc", &root, None)), Ok(()));
    }

    #[test]
    fn allowed_parent_table() {
        use AgencyLevel::*;
        assert!(allowed_parent_levels(Central).is_empty());
        assert_eq!(allowed_parent_levels(Province), &[Central, Province]);
        assert_eq!(allowed_parent_levels(District), &[Province]);
        assert_eq!(allowed_parent_levels(Commune), &[District, Province]);
    }

    #[test]
    fn parent_is_required_unless_central_and_must_exist() {
        let s = spec(AgencyLevel::Commune, None, 1);
        assert_refused(
            &change("xa-a", &s, None),
            "spec.parent: a Commune must name its parent agency in spec.parent (a District or a Province)",
        );
        let s = spec(AgencyLevel::District, Some("tinh-x"), 1);
        assert_refused(
            &change("huyen-a", &s, None),
            "spec.parent: parent agency \"tinh-x\" does not exist: create it first or fix spec.parent",
        );
        let bo = central("bo-tttt");
        let s = spec(AgencyLevel::Central, Some("bo-tttt"), 1);
        assert_refused(
            &change("bo-b", &s, Some(&bo)),
            "a Central agency has no parent, but spec.parent names \"bo-tttt\"",
        );
    }

    #[test]
    fn levels_must_nest() {
        let bo = central("bo-tttt");
        let s = spec(AgencyLevel::Commune, Some("bo-tttt"), 1);
        assert_refused(
            &change("xa-a", &s, Some(&bo)),
            "spec.parent: a Commune must sit under a District or a Province, but \"bo-tttt\" is Central",
        );
        let s = spec(AgencyLevel::District, Some("bo-tttt"), 1);
        assert_refused(
            &change("huyen-a", &s, Some(&bo)),
            "a District must sit under a Province, but \"bo-tttt\" is Central",
        );
        let commune = agency("xa-b", spec(AgencyLevel::Commune, Some("bo-tttt"), 1));
        let s = spec(AgencyLevel::Province, Some("xa-b"), 1);
        assert_refused(
            &change("tinh-a", &s, Some(&commune)),
            "a Province must sit under a Central agency or a Province, but \"xa-b\" is Commune",
        );
    }

    #[test]
    fn changing_level_must_keep_children_valid() {
        let bo = central("bo-tttt");
        let children: Vec<Agency> = (1..=7)
            .map(|i| {
                agency(
                    &format!("xa-{i}"),
                    spec(AgencyLevel::Commune, Some("huyen-a"), 1),
                )
            })
            .collect();
        let s = spec(AgencyLevel::Province, Some("bo-tttt"), 5);
        let mut c = change("huyen-a", &s, Some(&bo));
        c.children = children.iter().collect();
        assert_eq!(validate_agency(&c), Ok(()));

        let s = spec(AgencyLevel::Central, None, 5);
        let mut c = change("huyen-a", &s, None);
        c.children = children.iter().collect();
        assert_refused(
            &c,
            "spec.level: child agencies \"xa-1\", \"xa-2\", \"xa-3\", \"xa-4\", \"xa-5\" and 2 more are Communes, which must sit under a District or a Province, so this agency cannot be a Central agency: move them first",
        );
        c.children.truncate(1);
        assert_refused(
            &c,
            "child agency \"xa-1\" is a Commune, which must sit under",
        );
    }

    #[test]
    fn cycles_are_refused() {
        let s = spec(AgencyLevel::Province, Some("tinh-a"), 1);
        let me = agency("tinh-a", s.clone());
        assert_refused(
            &change("tinh-a", &s, Some(&me)),
            "an agency cannot be its own parent: \"tinh-a\" names itself in spec.parent",
        );
        assert_refused(&change("tinh-a", &s, None), "cannot be its own parent");

        // tinh-a → so-b → tinh-a: moving tinh-a under its own department.
        let so_b = agency("so-b", spec(AgencyLevel::Province, Some("tinh-a"), 1));
        let s = spec(AgencyLevel::Province, Some("so-b"), 1);
        let mut c = change("tinh-a", &s, Some(&so_b));
        c.ancestors_of_parent = vec!["so-b".into(), "tinh-a".into(), "bo-x".into()];
        assert_refused(
            &c,
            "moving \"tinh-a\" under \"so-b\" would make a cycle, because \"so-b\" is itself below \"tinh-a\" (so-b → tinh-a)",
        );
        // Ancestors given without the parent itself work the same.
        c.ancestors_of_parent = vec!["phong-c".into(), "tinh-a".into()];
        assert_refused(&c, "(so-b → phong-c → tinh-a)");
    }

    #[test]
    fn security_level_must_not_exceed_the_parent() {
        let mut parent_spec = spec(AgencyLevel::Province, Some("bo-tttt"), 3);
        parent_spec.quota = cpu("4");
        let parent = agency("tinh-da-nang", parent_spec);
        let s = spec(AgencyLevel::Commune, Some("tinh-da-nang"), 3);
        assert_eq!(validate_agency(&change("xa-a", &s, Some(&parent))), Ok(()));
        let s = spec(AgencyLevel::Commune, Some("tinh-da-nang"), 4);
        assert_refused(
            &change("xa-a", &s, Some(&parent)),
            "spec.securityLevel: security level 4 is above the level 3 of parent \"tinh-da-nang\", whose owners can read this agency's namespaces: lower spec.securityLevel to 3 or less, or first raise the parent's security level to 4",
        );
        let s = spec(AgencyLevel::Commune, Some("tinh-da-nang"), 0);
        assert_refused(
            &change("xa-a", &s, Some(&parent)),
            "security level 0 does not exist",
        );
    }

    #[test]
    fn lowering_security_level_below_children_is_refused() {
        let a = agency("xa-a", spec(AgencyLevel::Commune, Some("tinh-b"), 4));
        let b = agency("xa-b", spec(AgencyLevel::Commune, Some("tinh-b"), 3));
        let c = agency("xa-c", spec(AgencyLevel::Commune, Some("tinh-b"), 2));
        let bo = central("bo");
        let province = spec(AgencyLevel::Province, Some("bo"), 2);
        let mut ch = change("tinh-b", &province, Some(&bo));
        ch.children = vec![&a, &b, &c];
        assert_refused(
            &ch,
            "child agencies \"xa-a\" (level 4), \"xa-b\" (level 3) are classified above security level 2, and this agency's owners can read their namespaces: keep spec.securityLevel at 4 or more",
        );
    }

    #[test]
    fn quota_amounts_must_parse_and_not_be_negative() {
        let mut s = spec(AgencyLevel::Central, None, 5);
        s.quota = quota(&[(QuotaResource::Cpu, "-1"), (QuotaResource::Memory, "1Zi")]);
        s.environments = vec![env("prod", quota(&[(QuotaResource::Pods, "1.2.3")]))];
        let messages = messages(validate_agency(&change("bo-a", &s, None)));
        assert_eq!(
            messages,
            vec![
                "spec.quota.cpu: \"-1\" must not be negative".to_owned(),
                "spec.quota.memory: \"1Zi\" is not a quantity: unknown suffix \"Zi\"; use one of Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E or an exponent such as 1e3".to_owned(),
                "spec.environments[prod].quota.pods: \"1.2.3\" is not a quantity: expected a number followed by an optional suffix such as 500m, 2, 1.5, 512Mi or 10Gi".to_owned(),
            ]
        );
    }

    #[test]
    fn environments_and_children_fit_the_own_quota() {
        let child = agency("xa-a", {
            let mut s = spec(AgencyLevel::Commune, Some("tinh-a"), 1);
            s.quota = cpu("2");
            s
        });
        let bo = central("bo");
        let mut s = spec(AgencyLevel::Province, Some("bo"), 5);
        s.environments = vec![env("prod", cpu("1.5")), env("dev", cpu("1500m"))];

        // Exactly at the limit, mixing "1.5" and "1500m": allowed.
        s.quota = cpu("5");
        let mut c = change("tinh-a", &s, Some(&bo));
        c.children = vec![&child];
        assert_eq!(validate_agency(&c), Ok(()));

        s.quota = cpu("4");
        let mut c = change("tinh-a", &s, Some(&bo));
        c.children = vec![&child];
        assert_refused(
            &c,
            "spec.quota.cpu: environments (3) and children (2) need 5, but the agency's quota is 4: raise spec.quota.cpu to at least 5",
        );

        // One milli-unit short: refused.
        s.quota = cpu("4999m");
        let mut c = change("tinh-a", &s, Some(&bo));
        c.children = vec![&child];
        assert_refused(&c, "need 5, but the agency's quota is 4999m");

        // A resource the agency does not grant at all.
        s.quota = cpu("5");
        s.environments
            .push(env("db", quota(&[(QuotaResource::Memory, "1Gi")])));
        let mut c = change("tinh-a", &s, Some(&bo));
        c.children = vec![&child];
        assert_refused(
            &c,
            "spec.quota.memory: environments (1Gi) and children (0) need 1Gi, but the agency's quota does not grant memory",
        );
    }

    fn danang() -> Agency {
        let mut s = spec(AgencyLevel::Province, Some("bo"), 5);
        s.quota = quota(&[(QuotaResource::Cpu, "4"), (QuotaResource::Memory, "8Gi")]);
        s.environments = vec![env("prod", cpu("2"))];
        agency("tinh-da-nang", s)
    }

    #[test]
    fn quota_fits_in_what_the_parent_has_left() {
        let parent = danang();
        let sibling = agency("so-yte", {
            let mut s = spec(AgencyLevel::Province, Some("tinh-da-nang"), 1);
            s.quota = quota(&[(QuotaResource::Cpu, "1.5"), (QuotaResource::Memory, "6Gi")]);
            s
        });
        let mut s = spec(AgencyLevel::Province, Some("tinh-da-nang"), 1);

        // 4 - 2 - 1.5 = 500m left: exactly that is allowed.
        s.quota = quota(&[(QuotaResource::Cpu, "500m"), (QuotaResource::Memory, "2Gi")]);
        let mut c = change("so-tttt", &s, Some(&parent));
        c.siblings = vec![&sibling];
        assert_eq!(validate_agency(&c), Ok(()));

        s.quota = cpu("501m");
        let mut c = change("so-tttt", &s, Some(&parent));
        c.siblings = vec![&sibling];
        assert_refused(
            &c,
            "spec.quota.cpu: parent \"tinh-da-nang\" has 4 cpu; its environments and other children hold 3500m, so at most 500m is left for this agency, not 501m",
        );

        s.quota = quota(&[(QuotaResource::Memory, "2049Mi")]);
        let mut c = change("so-tttt", &s, Some(&parent));
        c.siblings = vec![&sibling];
        assert_refused(
            &c,
            "parent \"tinh-da-nang\" has 8Gi memory; its environments and other children hold 6Gi, so at most 2Gi is left for this agency, not 2049Mi",
        );

        s.quota = quota(&[(QuotaResource::Pods, "10"), (QuotaResource::Services, "0")]);
        let mut c = change("so-tttt", &s, Some(&parent));
        c.siblings = vec![&sibling];
        assert_refused(
            &c,
            "spec.quota.pods: parent \"tinh-da-nang\" does not grant pods, so none is left for this agency, not 10",
        );
    }

    #[test]
    fn overcommitted_parent_leaves_nothing() {
        let parent = danang();
        let greedy = agency("so-a", {
            let mut s = spec(AgencyLevel::Province, Some("tinh-da-nang"), 1);
            s.quota = cpu("3");
            s
        });
        let mut s = spec(AgencyLevel::Province, Some("tinh-da-nang"), 1);
        s.quota = cpu("1");
        let mut c = change("so-b", &s, Some(&parent));
        c.siblings = vec![&greedy];
        assert_refused(
            &c,
            "its environments and other children hold 5, so nothing is left for this agency, not 1",
        );
        // Asking for zero is always possible.
        s.quota = cpu("0");
        let mut c = change("so-b", &s, Some(&parent));
        c.siblings = vec![&greedy];
        assert_eq!(validate_agency(&c), Ok(()));
    }

    #[test]
    fn room_left_excludes_the_asking_agency() {
        let parent = danang();
        let a = agency("so-a", {
            let mut s = spec(AgencyLevel::Province, Some("tinh-da-nang"), 1);
            s.quota = quota(&[(QuotaResource::Cpu, "500m"), (QuotaResource::Memory, "1Gi")]);
            s
        });
        let b = agency("so-b", {
            let mut s = spec(AgencyLevel::Province, Some("tinh-da-nang"), 1);
            s.quota = quota(&[
                (QuotaResource::Cpu, "bogus"),
                (QuotaResource::Memory, "2Gi"),
            ]);
            s
        });
        let left = room_left(&parent, &[&a, &b], "so-a");
        assert_eq!(left.get(QuotaResource::Cpu).format(QuotaResource::Cpu), "2");
        assert_eq!(
            left.get(QuotaResource::Memory)
                .format(QuotaResource::Memory),
            "6Gi"
        );
        let left = room_left(&parent, &[&a, &b], "");
        assert_eq!(
            left.get(QuotaResource::Cpu).format(QuotaResource::Cpu),
            "1500m"
        );
        assert_eq!(left.to_string(), "cpu 1500m, memory 5Gi");
    }

    #[test]
    fn environments_are_unique_and_limited() {
        let mut s = spec(AgencyLevel::Central, None, 5);
        s.environments = vec![
            env("prod", Default::default()),
            env("dev", Default::default()),
            env("prod", Default::default()),
        ];
        assert_refused(
            &change("bo-a", &s, None),
            "spec.environments[2].name: environment \"prod\" is listed more than once",
        );
        s.environments = (0..17)
            .map(|i| env(&format!("e{i}"), Default::default()))
            .collect();
        assert_refused(
            &change("bo-a", &s, None),
            "spec.environments: an agency may have at most 16 environments, but this one lists 17",
        );
        s.environments.pop();
        assert_eq!(validate_agency(&change("bo-a", &s, None)), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let bo = central("bo-tttt");
        let mut s = spec(AgencyLevel::Commune, Some("bo-tttt"), 5);
        s.quota = cpu("1000");
        s.environments = vec![env("a", Default::default()), env("a", Default::default())];
        let mut bo_low = bo.clone();
        bo_low.spec.security_level = 2;
        let messages = messages(validate_agency(&change("xa-a", &s, Some(&bo_low))));
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(messages[0].starts_with("spec.parent: a Commune must sit under"));
        assert!(messages[1].starts_with("spec.securityLevel: security level 5 is above"));
        assert!(messages[2].starts_with("spec.quota.cpu: parent \"bo-tttt\" has 100 cpu"));
        assert!(messages[3].starts_with("spec.environments[1].name"));
    }

    #[test]
    fn deletion_needs_cascade_when_there_are_children() {
        let mut province = danang();
        let children: Vec<Agency> = (1..=6)
            .map(|i| {
                agency(
                    &format!("xa-{i}"),
                    spec(AgencyLevel::Commune, Some("tinh-da-nang"), 1),
                )
            })
            .collect();
        let refs: Vec<&Agency> = children.iter().collect();

        assert_eq!(deletion_allowed(&province, &[], false), Ok(()));
        let err = deletion_allowed(&province, &refs, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata.annotations[govbroker.io/cascade-delete]: agency \"tinh-da-nang\" still has 6 child agencies (\"xa-1\", \"xa-2\", \"xa-3\", \"xa-4\", \"xa-5\" and 1 more): move or delete them first, or set the annotation govbroker.io/cascade-delete: \"true\" on \"tinh-da-nang\" to delete it with its whole subtree"
        );
        let err = deletion_allowed(&province, &refs[..1], false).unwrap_err();
        assert!(
            err.message.contains("still has 1 child agency (\"xa-1\")"),
            "{err}"
        );

        assert_eq!(deletion_allowed(&province, &refs, true), Ok(()));

        province.metadata.annotations = Some(BTreeMap::from([(
            CASCADE_DELETE_ANNOTATION.to_owned(),
            "false".to_owned(),
        )]));
        assert!(deletion_allowed(&province, &refs, false).is_err());
        province.metadata.annotations = Some(BTreeMap::from([(
            CASCADE_DELETE_ANNOTATION.to_owned(),
            "true".to_owned(),
        )]));
        assert_eq!(deletion_allowed(&province, &refs, false), Ok(()));
    }

    #[test]
    fn owners_may_change_their_fields_and_nothing_else() {
        let old = spec(AgencyLevel::Province, Some("gov"), 2);
        let mut renamed = old.clone();
        renamed.display_name = "Sở Y tế Đà Nẵng".to_owned();
        renamed.owners.users.push("new-owner".to_owned());
        renamed.environments.clear();
        assert_eq!(owner_edit_allowed(&old, &renamed), Ok(()));

        let mut raised = old.clone();
        raised.security_level = 3;
        let refused = owner_edit_allowed(&old, &raised).unwrap_err();
        assert_eq!(refused.field, "spec.securityLevel");
        assert!(
            refused.message.contains("only a platform admin"),
            "{refused}"
        );

        let mut more_quota = old.clone();
        more_quota.quota.cpu = Some(Quantity("999".to_owned()));
        let refused = owner_edit_allowed(&old, &more_quota).unwrap_err();
        assert_eq!(refused.field, "spec.quota");
        assert!(refused.message.contains("QuotaRequest"), "{refused}");
    }
}
