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
}

/// Which of a plan's measured limits an instance is over, in words (none: within its
/// plan). `storage` is a quantity such as `5Gi`; a limit that does not parse is ignored
/// here (the class's schema refuses most bad quantities).
pub fn over_plan(storage: Option<&str>, max_keys: Option<i64>, used: MeasuredUse) -> Vec<String> {
    let mut over = Vec::new();
    let storage_limit = storage
        .and_then(|q| crate::quantity::Amount::parse(q).ok())
        .map(|a| a.milli() / 1000);
    if let (Some(limit), Some(bytes)) = (storage_limit, used.storage_bytes)
        && i128::from(bytes) > limit
    {
        over.push(format!(
            "the database uses {bytes} bytes, more than the plan's storage of {} ({limit} bytes)",
            storage.unwrap_or_default()
        ));
    }
    if let (Some(limit), Some(keys)) = (max_keys, used.keys)
        && keys > limit
    {
        over.push(format!(
            "the instance holds {keys} keys, more than the plan's maxKeys of {limit}"
        ));
    }
    over
}

/// What a Redis ACL user may do with its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisAccess {
    /// The claim's own user.
    ReadWrite,
    /// A share's consumer.
    ReadOnly,
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
    if access == RedisAccess::ReadWrite {
        rules.push("+@write".to_owned());
    }
    rules.push("-@dangerous".to_owned());
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_over_its_plan_only_past_a_measured_limit() {
        let used = |storage_bytes, keys| MeasuredUse {
            storage_bytes,
            keys,
        };
        assert!(over_plan(Some("5Gi"), Some(100), used(Some(5 << 30), Some(100))).is_empty());
        assert!(over_plan(None, None, used(Some(i64::MAX), Some(i64::MAX))).is_empty());
        assert!(over_plan(Some("1Mi"), None, used(None, None)).is_empty());
        let over = over_plan(Some("1Mi"), Some(10), used(Some((1 << 20) + 1), Some(11)));
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
}
