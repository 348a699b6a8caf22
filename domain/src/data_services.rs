//! Data services: what a claim is called on its shared server, and the SQL statements and
//! Redis ACL rules the broker sends, built here without a server so that quoting and
//! naming are unit-tested.
//!
//! No user input reaches a server unquoted: PostgreSQL identifiers and literals go
//! through [`quote_ident`] and [`quote_literal`]; names are derived from Kubernetes names
//! (DNS labels) and carry a hash, so two claims never share a role, a database or a Redis
//! key prefix.

use std::fmt::Write as _;

/// Longest PostgreSQL identifier (NAMEDATALEN - 1 bytes).
pub const MAX_PG_IDENTIFIER: usize = 63;

/// Text that cannot be sent to a server safely.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeText {
    /// An identifier must not be empty.
    #[error("an identifier must not be empty")]
    Empty,
    /// PostgreSQL and Redis protocols cannot carry a NUL byte inside text.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// What was being quoted.
        what: &'static str,
    },
    /// PostgreSQL would silently truncate it, making two names the same.
    #[error("identifier {name:?} is {len} bytes long; PostgreSQL keeps only {MAX_PG_IDENTIFIER}")]
    TooLong {
        /// The identifier.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A Redis ACL rule is one word: no whitespace, no rule syntax in a value.
    #[error("{what} may not contain whitespace or the characters > < ~ % & * ? [ ] \\")]
    AclSyntax {
        /// What was being written.
        what: &'static str,
    },
}

/// A PostgreSQL identifier in double quotes, embedded quotes doubled.
pub fn quote_ident(name: &str) -> Result<String, UnsafeText> {
    if name.is_empty() {
        return Err(UnsafeText::Empty);
    }
    if name.contains('\0') {
        return Err(UnsafeText::Nul {
            what: "an identifier",
        });
    }
    if name.len() > MAX_PG_IDENTIFIER {
        return Err(UnsafeText::TooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// A PostgreSQL string literal in single quotes, embedded quotes doubled. Correct with
/// `standard_conforming_strings = on` (the default since PostgreSQL 9.1; the broker
/// sets it on its sessions), where a backslash is an ordinary character.
pub fn quote_literal(text: &str) -> Result<String, UnsafeText> {
    if text.contains('\0') {
        return Err(UnsafeText::Nul { what: "a string" });
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// FNV-1a (32 bits): a short, stable suffix that keeps truncated names distinct.
fn short_hash(text: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:08x}")
}

/// What one claim is called on its server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceNames {
    /// The PostgreSQL role that owns the database (also its login).
    pub role: String,
    /// The PostgreSQL database.
    pub database: String,
    /// The Redis ACL user.
    pub redis_user: String,
    /// The Redis key prefix: the user may touch only `<prefix>:*`.
    pub key_prefix: String,
}

/// Names for the claim `claim` in namespace `namespace` (both Kubernetes names):
/// `gb_<namespace>_<claim>_<hash>` on PostgreSQL (cut to fit 63 bytes; the hash of the
/// full names keeps them distinct), `<namespace>.<claim>` and the prefix
/// `<namespace>/<claim>` on Redis.
pub fn instance_names(namespace: &str, claim: &str) -> InstanceNames {
    let pg = pg_name(
        "gb",
        &format!("{namespace}_{claim}"),
        &format!("{namespace}/{claim}"),
    );
    InstanceNames {
        role: pg.clone(),
        database: pg,
        redis_user: format!("{namespace}.{claim}"),
        key_prefix: format!("{namespace}/{claim}"),
    }
}

/// The read-only role (and Redis user) of a DataShare named `share`.
pub fn share_reader_name(share: &str) -> String {
    pg_name("gbr", share, share)
}

/// `<kind>_<base>_<hash of key>`, with `-` as `_` and cut so the whole fits 63 bytes.
fn pg_name(kind: &str, base: &str, key: &str) -> String {
    let hash = short_hash(key);
    let room = MAX_PG_IDENTIFIER - kind.len() - hash.len() - 2;
    let mut base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    base.truncate(room);
    format!("{kind}_{base}_{hash}")
}

/// The limits a PostgreSQL plan sets on a claim's role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PostgresLimits {
    /// Most concurrent connections (none: no limit).
    pub max_connections: Option<u32>,
}

/// `CREATE ROLE` for a claim's owner role.
pub fn create_role(
    role: &str,
    password: &str,
    limits: PostgresLimits,
) -> Result<String, UnsafeText> {
    Ok(format!(
        "CREATE ROLE {} {}",
        quote_ident(role)?,
        role_options(password, limits)?
    ))
}

/// `ALTER ROLE` that brings an existing role back to the plan (and rotates its password):
/// the idempotent twin of [`create_role`].
pub fn alter_role(
    role: &str,
    password: &str,
    limits: PostgresLimits,
) -> Result<String, UnsafeText> {
    Ok(format!(
        "ALTER ROLE {} {}",
        quote_ident(role)?,
        role_options(password, limits)?
    ))
}

fn role_options(password: &str, limits: PostgresLimits) -> Result<String, UnsafeText> {
    // INHERIT: on PostgreSQL 15+ the database owner's rights on schema `public` come
    // through the implicit pg_database_owner role, which NOINHERIT would cut off.
    let mut options = format!(
        "WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION PASSWORD {}",
        quote_literal(password)?
    );
    let limit = limits.max_connections.map_or(-1, i64::from);
    let _ = write!(options, " CONNECTION LIMIT {limit}");
    Ok(options)
}

/// The statements that give a role its own database, closed to everyone else. Run in
/// order; `CREATE DATABASE` only when the database does not exist yet.
pub fn create_database(database: &str, owner: &str) -> Result<Vec<String>, UnsafeText> {
    let (db, owner) = (quote_ident(database)?, quote_ident(owner)?);
    Ok(vec![
        format!("CREATE DATABASE {db} OWNER {owner} ENCODING 'UTF8' TEMPLATE template0"),
        format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        format!("GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {owner}"),
    ])
}

/// Retain: the role can no longer log in; data and grants stay.
pub fn disable_login(role: &str) -> Result<String, UnsafeText> {
    Ok(format!("ALTER ROLE {} NOLOGIN", quote_ident(role)?))
}

/// Terminates every session on a database; bind the database name as `$1`.
pub const TERMINATE_SESSIONS: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()";

/// Delete: the database (sessions terminated by PostgreSQL itself) and the role, each
/// tolerated if already gone.
pub fn drop_instance(database: &str, role: &str) -> Result<Vec<String>, UnsafeText> {
    Ok(vec![
        format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(database)?
        ),
        format!("DROP ROLE IF EXISTS {}", quote_ident(role)?),
    ])
}

/// Read-only access for a share's reader role to the owner's database: connect, use the
/// `public` schema, read every table now and every table the owner creates later.
pub fn grant_read_only(
    database: &str,
    owner: &str,
    reader: &str,
) -> Result<Vec<String>, UnsafeText> {
    let (db, owner, reader) = (
        quote_ident(database)?,
        quote_ident(owner)?,
        quote_ident(reader)?,
    );
    Ok(vec![
        format!("GRANT CONNECT ON DATABASE {db} TO {reader}"),
        // The rest runs connected to the owner's database.
        format!("GRANT USAGE ON SCHEMA public TO {reader}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}"),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON TABLES TO {reader}"
        ),
    ])
}

/// Removes a share's reader role: run connected to the owner's database, where
/// `DROP OWNED` takes back its grants there and on the database itself (and its default
/// privileges), so the role can then be dropped. Run only when the role exists.
pub fn drop_reader(reader: &str) -> Result<Vec<String>, UnsafeText> {
    let reader = quote_ident(reader)?;
    Ok(vec![
        format!("DROP OWNED BY {reader}"),
        format!("DROP ROLE IF EXISTS {reader}"),
    ])
}

/// What an instance uses, as the broker last measured it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeasuredUse {
    /// PostgreSQL: the database's size in bytes.
    pub storage_bytes: Option<i64>,
    /// Redis: the number of keys under the instance's prefix.
    pub keys: Option<i64>,
    /// Redis: the memory its keys use in bytes (the sum of `MEMORY USAGE`).
    pub memory_bytes: Option<i64>,
}

/// A plan's measured limits as written in the class: quantities such as `5Gi` for
/// storage and memory, a count for keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeasuredLimits<'a> {
    /// PostgreSQL: the most disk the database may use.
    pub storage: Option<&'a str>,
    /// Redis: the most memory the instance's keys may use.
    pub memory: Option<&'a str>,
    /// Redis: the most keys the instance may hold.
    pub max_keys: Option<i64>,
}

/// Which of a plan's measured limits an instance is over, in words (none: within its
/// plan). A limit that does not parse is ignored here (the class's schema refuses most
/// bad quantities).
pub fn over_plan(limits: MeasuredLimits<'_>, used: MeasuredUse) -> Vec<String> {
    let bytes = |q: Option<&str>| {
        q.and_then(|q| crate::quantity::Amount::parse(q).ok())
            .map(|a| a.milli() / 1000)
    };
    let mut over = Vec::new();
    if let (Some(limit), Some(used)) = (bytes(limits.storage), used.storage_bytes)
        && i128::from(used) > limit
    {
        over.push(format!(
            "the database uses {used} bytes, more than the plan's storage of {} ({limit} bytes)",
            limits.storage.unwrap_or_default()
        ));
    }
    if let (Some(limit), Some(used)) = (bytes(limits.memory), used.memory_bytes)
        && i128::from(used) > limit
    {
        over.push(format!(
            "the instance's keys use {used} bytes of memory, more than the plan's memory of {} ({limit} bytes)",
            limits.memory.unwrap_or_default()
        ));
    }
    if let (Some(limit), Some(keys)) = (limits.max_keys, used.keys)
        && keys > limit
    {
        over.push(format!(
            "the instance holds {keys} keys, more than the plan's maxKeys of {limit}"
        ));
    }
    over
}

/// What the broker does to an instance over its plan: new writes are refused until it is
/// back within the plan, while reading and deleting (how an agency frees space) go on.
pub const WRITES_SUSPENDED_NOTE: &str = "writes are suspended until the instance is back within its plan: delete data, or claim a larger plan and move the data there";

/// PostgreSQL: makes the claim's role start every session in its database read-only
/// (`suspend`) or lifts that. Like a managed server that runs out of disk, this is a
/// brake rather than a wall: a client can still end the read-only state in its own
/// session (`SET default_transaction_read_only = off`), which is how an agency deletes
/// data to get back within its plan; the overage stays visible in the claim's status
/// and is billed as storage.
pub fn suspend_writes(role: &str, database: &str, suspend: bool) -> Result<String, UnsafeText> {
    let (role, database) = (quote_ident(role)?, quote_ident(database)?);
    Ok(if suspend {
        format!("ALTER ROLE {role} IN DATABASE {database} SET default_transaction_read_only = on")
    } else {
        format!("ALTER ROLE {role} IN DATABASE {database} RESET default_transaction_read_only")
    })
}

/// Whether a role's writes in a database are suspended by [`suspend_writes`]; bind the
/// role as `$1` and the database as `$2`.
pub const WRITES_SUSPENDED: &str = "SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole JOIN pg_database d ON d.oid = s.setdatabase WHERE r.rolname = $1 AND d.datname = $2 AND 'default_transaction_read_only=on' = ANY (s.setconfig)";

/// Terminates every session of a role, so that the next ones start with its new
/// settings; bind the role as `$1`.
pub const TERMINATE_ROLE_SESSIONS: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()";

/// Database settings a PostgreSQL claim may choose in `spec.parameters`, each with what
/// its value may look like. Values reach the server as quoted literals; the pattern only
/// turns a typo into a clear refusal at admission instead of a failed claim.
const POSTGRES_SETTINGS: [(&str, &str); 5] = [
    (
        "timezone",
        "a time zone name such as Asia/Ho_Chi_Minh or UTC",
    ),
    ("statement_timeout", "a duration such as 30s, 500ms or 5min"),
    ("lock_timeout", "a duration such as 30s, 500ms or 5min"),
    (
        "idle_in_transaction_session_timeout",
        "a duration such as 30s, 500ms or 5min",
    ),
    ("work_mem", "a size such as 4MB or 64kB"),
];

/// Extensions a PostgreSQL claim may ask for with `extensions`: the contrib extensions
/// PostgreSQL marks trusted (a database owner could create them), so none gives a
/// claim more than its own database. `unaccent` and `pg_trgm` serve Vietnamese search.
pub const POSTGRES_EXTENSIONS: [&str; 12] = [
    "btree_gin",
    "btree_gist",
    "citext",
    "cube",
    "fuzzystrmatch",
    "hstore",
    "intarray",
    "isn",
    "ltree",
    "pg_trgm",
    "pgcrypto",
    "unaccent",
];

/// A claim's `spec.parameters` that the broker cannot honour.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    /// The engine takes no parameter of that name.
    #[error("spec.parameters.{key} is not a {engine} parameter; {engine} claims accept {accepted}")]
    Unknown {
        /// The key as written.
        key: String,
        /// `postgres` or `redis`.
        engine: &'static str,
        /// The keys the engine accepts, in words.
        accepted: String,
    },
    /// The value does not fit the parameter.
    #[error("spec.parameters.{key} is {value:?}, but it must be {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What it should look like.
        expected: String,
    },
}

/// A PostgreSQL claim's parameters, checked: the database settings to set and the
/// extensions to create.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostgresParameters {
    /// Database settings, by name.
    pub settings: std::collections::BTreeMap<String, String>,
    /// Extensions, each once, in order.
    pub extensions: Vec<String>,
}

/// Checks a PostgreSQL claim's `spec.parameters`: `extensions` (a comma-separated list of
/// [`POSTGRES_EXTENSIONS`]) and the settings of `POSTGRES_SETTINGS`.
pub fn postgres_parameters(
    parameters: &std::collections::BTreeMap<String, String>,
) -> Result<PostgresParameters, ParameterError> {
    let mut checked = PostgresParameters::default();
    for (key, value) in parameters {
        let bad = |expected: &str| ParameterError::BadValue {
            key: key.clone(),
            value: value.clone(),
            expected: expected.to_owned(),
        };
        if key == "extensions" {
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !POSTGRES_EXTENSIONS.contains(&name) {
                    return Err(bad(&format!(
                        "a comma-separated list of extensions among {}",
                        POSTGRES_EXTENSIONS.join(", ")
                    )));
                }
                if !checked.extensions.iter().any(|e| e == name) {
                    checked.extensions.push(name.to_owned());
                }
            }
            continue;
        }
        let Some((_, expected)) = POSTGRES_SETTINGS.iter().find(|(name, _)| name == key) else {
            let mut accepted: Vec<&str> = POSTGRES_SETTINGS.iter().map(|(n, _)| *n).collect();
            accepted.insert(0, "extensions");
            return Err(ParameterError::Unknown {
                key: key.clone(),
                engine: "postgres",
                accepted: accepted.join(", "),
            });
        };
        if !setting_value_fits(key, value) {
            return Err(bad(expected));
        }
        checked.settings.insert(key.clone(), value.clone());
    }
    Ok(checked)
}

fn setting_value_fits(key: &str, value: &str) -> bool {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let number = !digits.is_empty() && digits.len() <= 9;
    match key {
        "timezone" => {
            !value.is_empty()
                && value.len() <= 64
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
        }
        "work_mem" => number && matches!(unit, "" | "kB" | "MB" | "GB"),
        _ => number && matches!(unit, "" | "ms" | "s" | "min" | "h"),
    }
}

/// Checks a Redis claim's `spec.parameters`: Redis users have no per-user settings, so
/// none is accepted.
pub fn redis_parameters(
    parameters: &std::collections::BTreeMap<String, String>,
) -> Result<(), ParameterError> {
    match parameters.keys().next() {
        None => Ok(()),
        Some(key) => Err(ParameterError::Unknown {
            key: key.clone(),
            engine: "redis",
            accepted: "no parameters".to_owned(),
        }),
    }
}

/// The database's value of `name` among its settings as PostgreSQL keeps them
/// (`name=value` each, see [`DATABASE_SETTINGS`]).
fn current_setting<'a>(current: &'a [String], name: &str) -> Option<&'a str> {
    current.iter().find_map(|entry| {
        entry
            .split_once('=')
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// The database-wide settings (`name=value` each) of a database; bind its name as `$1`.
pub const DATABASE_SETTINGS: &str = "SELECT coalesce(s.setconfig, '{}') FROM pg_database d LEFT JOIN pg_db_role_setting s ON s.setdatabase = d.oid AND s.setrole = 0 WHERE d.datname = $1";

/// The statements that give a database exactly the chosen settings, given the ones it
/// has (`current`, from [`DATABASE_SETTINGS`]): a setting that differs is set, one no
/// longer asked for is reset, and nothing is sent when all match. Run as admin; new
/// sessions see the result.
pub fn database_settings(
    database: &str,
    parameters: &PostgresParameters,
    current: &[String],
) -> Result<Vec<String>, UnsafeText> {
    let database = quote_ident(database)?;
    let mut statements = Vec::new();
    for (name, _) in POSTGRES_SETTINGS {
        let have = current_setting(current, name);
        match parameters.settings.get(name) {
            Some(value) if have != Some(value.as_str()) => statements.push(format!(
                "ALTER DATABASE {database} SET {name} = {}",
                quote_literal(value)?
            )),
            None if have.is_some() => {
                statements.push(format!("ALTER DATABASE {database} RESET {name}"));
            }
            _ => {}
        }
    }
    Ok(statements)
}

/// `CREATE EXTENSION IF NOT EXISTS` for each chosen extension that `created` (what the
/// claim's status records as already created in its database; empty for a database just
/// created) does not hold; run connected to the claim's database. None when every one is
/// there, so a settled claim needs no session to its database. Extensions no longer asked
/// for are left in place: dropping one could drop the agency's columns that use its types.
pub fn create_extensions(
    parameters: &PostgresParameters,
    created: &[String],
) -> Result<Vec<String>, UnsafeText> {
    parameters
        .extensions
        .iter()
        .filter(|name| !created.contains(name))
        .map(|name| {
            Ok(format!(
                "CREATE EXTENSION IF NOT EXISTS {}",
                quote_ident(name)?
            ))
        })
        .collect()
}

/// What a Redis ACL user may do with its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisAccess {
    /// The claim's own user.
    ReadWrite,
    /// A share's consumer.
    ReadOnly,
    /// The claim's own user while the instance is over its plan: reading and deleting
    /// only, so the agency can free space but not add to it.
    ReadAndDelete,
}

/// The arguments of `ACL SETUSER` for a user limited to `<prefix>:*`: everything reset
/// first (so it is idempotent and rotates the password), no channels, only reading (and
/// writing) commands, never the dangerous ones (CONFIG, FLUSHALL, KEYS, DEBUG...).
pub fn redis_acl(
    user: &str,
    password: &str,
    prefix: &str,
    access: RedisAccess,
) -> Result<Vec<String>, UnsafeText> {
    let word = |text: &str, what: &'static str| {
        let bad = text.is_empty()
            || text.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(
                        c,
                        '>' | '<' | '~' | '%' | '&' | '*' | '?' | '[' | ']' | '\\'
                    )
            });
        if bad {
            Err(UnsafeText::AclSyntax { what })
        } else {
            Ok(())
        }
    };
    word(user, "a Redis user name")?;
    word(password, "a Redis password")?;
    word(prefix, "a Redis key prefix")?;
    let mut rules = vec![
        "SETUSER".to_owned(),
        user.to_owned(),
        "reset".to_owned(),
        "on".to_owned(),
        format!(">{password}"),
        format!("~{prefix}:*"),
        "resetchannels".to_owned(),
        "-@all".to_owned(),
        "+@connection".to_owned(),
        "+@read".to_owned(),
    ];
    match access {
        RedisAccess::ReadWrite => rules.push("+@write".to_owned()),
        RedisAccess::ReadAndDelete => {
            rules.extend(["+del", "+unlink"].map(str::to_owned));
        }
        RedisAccess::ReadOnly => {}
    }
    rules.push("-@dangerous".to_owned());
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_over_its_plan_only_past_a_measured_limit() {
        let used = |storage_bytes, keys, memory_bytes| MeasuredUse {
            storage_bytes,
            keys,
            memory_bytes,
        };
        let limits = |storage, memory, max_keys| MeasuredLimits {
            storage,
            memory,
            max_keys,
        };
        assert!(
            over_plan(
                limits(Some("5Gi"), Some("1Mi"), Some(100)),
                used(Some(5 << 30), Some(100), Some(1 << 20))
            )
            .is_empty()
        );
        assert!(
            over_plan(
                limits(None, None, None),
                used(Some(i64::MAX), Some(i64::MAX), Some(i64::MAX))
            )
            .is_empty()
        );
        assert!(
            over_plan(
                limits(Some("1Mi"), Some("1Mi"), None),
                used(None, None, None)
            )
            .is_empty()
        );
        let memory = over_plan(
            limits(None, Some("1Ki"), None),
            used(None, None, Some(1025)),
        );
        assert!(
            memory.len() == 1
                && memory[0].contains("1025 bytes of memory")
                && memory[0].contains("memory of 1Ki (1024 bytes)"),
            "{memory:?}"
        );
        let over = over_plan(
            limits(Some("1Mi"), None, Some(10)),
            used(Some((1 << 20) + 1), Some(11), None),
        );
        assert_eq!(over.len(), 2, "{over:?}");
        assert!(
            over[0].contains("1048577 bytes") && over[0].contains("1Mi"),
            "{}",
            over[0]
        );
        assert!(
            over[1].contains("11 keys") && over[1].contains("maxKeys of 10"),
            "{}",
            over[1]
        );
    }

    #[test]
    fn identifiers_and_literals_are_quoted_so_input_cannot_escape() {
        assert_eq!(quote_ident("gb_x").unwrap(), "\"gb_x\"");
        assert_eq!(
            quote_ident("a\"; DROP TABLE t; --").unwrap(),
            "\"a\"\"; DROP TABLE t; --\""
        );
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(
            quote_literal("x'); DROP ROLE r; --").unwrap(),
            "'x''); DROP ROLE r; --'"
        );
        assert_eq!(quote_ident(""), Err(UnsafeText::Empty));
        assert!(matches!(quote_ident("a\0b"), Err(UnsafeText::Nul { .. })));
        assert!(matches!(quote_literal("a\0b"), Err(UnsafeText::Nul { .. })));
        assert!(matches!(
            quote_ident(&"a".repeat(64)),
            Err(UnsafeText::TooLong { len: 64, .. })
        ));
    }

    #[test]
    fn names_fit_postgres_and_never_collide() {
        let long = instance_names(
            &format!("so-y-te-ha-noi-{}", "x".repeat(40)),
            &"c".repeat(63),
        );
        assert!(long.role.len() <= MAX_PG_IDENTIFIER, "{}", long.role);
        assert!(
            long.role
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        // Ambiguous once '-' becomes '_', and equal once cut: the hash keeps them apart.
        assert_ne!(
            instance_names("a-b", "c").role,
            instance_names("a", "b-c").role
        );
        let base = "n".repeat(60);
        assert_ne!(
            instance_names(&base, "one").role,
            instance_names(&base, "two").role
        );
        let names = instance_names("so-y-te-prod", "ho-so-benh-an");
        assert_eq!(names.key_prefix, "so-y-te-prod/ho-so-benh-an");
        assert_eq!(names.redis_user, "so-y-te-prod.ho-so-benh-an");
        assert_eq!(names.role, names.database);
        assert!(share_reader_name("share-1").starts_with("gbr_share_1_"));
    }

    #[test]
    fn roles_get_a_password_and_the_plan_limit_and_nothing_more() {
        let sql = create_role(
            "gb_r",
            "p'w",
            PostgresLimits {
                max_connections: Some(20),
            },
        )
        .unwrap();
        assert_eq!(
            sql,
            "CREATE ROLE \"gb_r\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION PASSWORD 'p''w' CONNECTION LIMIT 20"
        );
        let sql = alter_role("gb_r", "new", PostgresLimits::default()).unwrap();
        assert!(
            sql.starts_with("ALTER ROLE \"gb_r\" WITH LOGIN")
                && sql.ends_with("CONNECTION LIMIT -1"),
            "{sql}"
        );
        let db = create_database("gb_d", "gb_r").unwrap();
        assert_eq!(db[1], "REVOKE ALL ON DATABASE \"gb_d\" FROM PUBLIC");
        assert_eq!(
            drop_instance("gb_d", "gb_r").unwrap()[1],
            "DROP ROLE IF EXISTS \"gb_r\""
        );
        assert_eq!(
            disable_login("gb_r").unwrap(),
            "ALTER ROLE \"gb_r\" NOLOGIN"
        );
        assert!(
            grant_read_only("gb_d", "gb_r", "gbr_s")
                .unwrap()
                .iter()
                .all(|s| !s.contains("INSERT"))
        );
    }

    #[test]
    fn redis_users_are_confined_to_their_prefix() {
        let rw = redis_acl("ns.c", "abc123", "ns/c", RedisAccess::ReadWrite).unwrap();
        assert_eq!(
            rw.join(" "),
            "SETUSER ns.c reset on >abc123 ~ns/c:* resetchannels -@all +@connection +@read +@write -@dangerous"
        );
        let ro = redis_acl("ns.c", "abc123", "ns/c", RedisAccess::ReadOnly).unwrap();
        assert!(!ro.contains(&"+@write".to_owned()));
        let suspended = redis_acl("ns.c", "abc123", "ns/c", RedisAccess::ReadAndDelete).unwrap();
        assert!(
            suspended
                .join(" ")
                .ends_with("+@read +del +unlink -@dangerous"),
            "{suspended:?}"
        );
        for (user, password, prefix) in [
            ("a b", "p", "x"),
            ("u", "p w", "x"),
            ("u", "p", "x*"),
            ("u", ">p", "x"),
            ("u", "p", ""),
        ] {
            assert!(
                redis_acl(user, password, prefix, RedisAccess::ReadWrite).is_err(),
                "{user:?} {password:?} {prefix:?}"
            );
        }
    }

    #[test]
    fn writes_are_suspended_and_resumed_with_quoted_names() {
        assert_eq!(
            suspend_writes("gb_a\"b", "db", true).unwrap(),
            "ALTER ROLE \"gb_a\"\"b\" IN DATABASE \"db\" SET default_transaction_read_only = on"
        );
        assert_eq!(
            suspend_writes("r", "db", false).unwrap(),
            "ALTER ROLE \"r\" IN DATABASE \"db\" RESET default_transaction_read_only"
        );
        // The catalogue query looks for exactly the setting written above.
        assert!(WRITES_SUSPENDED.contains("'default_transaction_read_only=on'"));
    }

    #[test]
    fn postgres_parameters_are_checked_and_become_quoted_settings() {
        let parameters = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let checked = postgres_parameters(&parameters(&[
            ("extensions", "unaccent, pg_trgm,unaccent"),
            ("timezone", "Asia/Ho_Chi_Minh"),
            ("statement_timeout", "30s"),
            ("work_mem", "64MB"),
        ]))
        .unwrap();
        assert_eq!(checked.extensions, ["unaccent", "pg_trgm"]);
        let current =
            ["work_mem=64MB", "lock_timeout=5s", "statement_timeout=1min"].map(str::to_owned);
        let statements = database_settings("db", &checked, &current).unwrap();
        assert_eq!(
            statements,
            [
                "ALTER DATABASE \"db\" SET timezone = 'Asia/Ho_Chi_Minh'",
                "ALTER DATABASE \"db\" SET statement_timeout = '30s'",
                // A setting no longer asked for is reset, so removing a parameter works.
                "ALTER DATABASE \"db\" RESET lock_timeout",
            ],
            "work_mem already matches"
        );
        // Nothing to send when the database has what is asked (and nothing to reset).
        let settled = [
            "timezone=Asia/Ho_Chi_Minh",
            "statement_timeout=30s",
            "work_mem=64MB",
        ]
        .map(str::to_owned);
        assert!(
            database_settings("db", &checked, &settled)
                .unwrap()
                .is_empty()
        );
        assert!(
            database_settings("db", &PostgresParameters::default(), &[])
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            create_extensions(&checked, &[]).unwrap(),
            [
                "CREATE EXTENSION IF NOT EXISTS \"unaccent\"",
                "CREATE EXTENSION IF NOT EXISTS \"pg_trgm\""
            ]
        );
        // Already created (as the status records): nothing to run, no session needed.
        let created = ["pg_trgm", "unaccent"].map(str::to_owned);
        assert!(create_extensions(&checked, &created).unwrap().is_empty());
        // One added to the parameters: only that one.
        assert_eq!(
            create_extensions(&checked, &created[1..]).unwrap(),
            ["CREATE EXTENSION IF NOT EXISTS \"pg_trgm\""]
        );

        let unknown = postgres_parameters(&parameters(&[("encoding", "LATIN1")])).unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("spec.parameters.encoding is not a postgres parameter")
                && unknown.to_string().contains("extensions, timezone"),
            "{unknown}"
        );
        for (key, value) in [
            ("extensions", "postgis"),
            ("extensions", "plpython3u"),
            ("timezone", "UTC'; DROP DATABASE x; --"),
            ("statement_timeout", "30 s"),
            ("statement_timeout", "forever"),
            ("work_mem", "1TB"),
            ("lock_timeout", "9999999999"),
        ] {
            let error = postgres_parameters(&parameters(&[(key, value)])).unwrap_err();
            assert!(
                matches!(error, ParameterError::BadValue { .. }),
                "{key}={value}: {error}"
            );
        }
        assert!(redis_parameters(&parameters(&[])).is_ok());
        assert!(
            redis_parameters(&parameters(&[("maxmemory", "1gb")]))
                .unwrap_err()
                .to_string()
                .contains("redis claims accept no parameters")
        );
    }
}
