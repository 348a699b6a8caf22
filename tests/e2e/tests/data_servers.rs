//! The local cloud's data servers are a real PostgreSQL and a real Redis, reachable on
//! loopback with the generated admin credentials only: the admin can create what the
//! data-service broker will create for agencies (a PostgreSQL role and its database, a
//! Redis ACL user confined to a key prefix), and nobody gets in without a password.

use std::future::Future;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use govbroker_e2e::data_services::{ServerAdmin, redis_connection_info};
use govbroker_e2e::{DEFAULT_TIMEOUT, cluster, unique_name};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Runs `test` with a deadline, panicking with the whole error chain when it fails.
async fn within<F: Future<Output = Result<()>>>(what: &str, test: F) {
    match tokio::time::timeout(DEFAULT_TIMEOUT, test).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{what}: {e:#}"),
        Err(_) => panic!("{what}: timed out after {DEFAULT_TIMEOUT:?}"),
    }
}

/// A throwaway password for a test's role or user.
fn test_password() -> String {
    unique_name("pw").replace('-', "")
}

/// Connects with `config`; the connection is driven by a task of its own.
async fn pg_connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection ended: {e}");
        }
    });
    Ok(client)
}

#[tokio::test]
async fn postgres_admin_creates_a_role_with_its_own_database() {
    let admin = cluster()
        .postgres_admin()
        .expect("reading the PostgreSQL admin file");
    within(
        "a role and its database on PostgreSQL",
        role_with_database(admin),
    )
    .await;
}

async fn role_with_database(admin: ServerAdmin) -> Result<()> {
    let pg = pg_connect(&admin.postgres_config("postgres"))
        .await
        .with_context(|| format!("connecting as {admin:?}"))?;
    let is_super: bool = pg
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    ensure!(is_super, "{} should be a superuser", admin.user);

    let name = unique_name("e2e-tenant");
    let password = test_password();
    pg.batch_execute(&format!(
        r#"CREATE ROLE "{name}" LOGIN PASSWORD '{password}'"#
    ))
    .await
    .context("creating the role")?;
    let outcome = async {
        pg.batch_execute(&format!(r#"CREATE DATABASE "{name}" OWNER "{name}""#))
            .await
            .context("creating the database")?;

        let mut as_tenant = admin.postgres_config(&name);
        as_tenant.user(&name).password(password.as_str());
        let tenant = pg_connect(&as_tenant)
            .await
            .context("connecting as the new role to its database")?;
        tenant
            .batch_execute(
                "CREATE TABLE filings (id bigint PRIMARY KEY, agency text NOT NULL);
                 INSERT INTO filings VALUES (1, 'Sở Thông tin và Truyền thông Đà Nẵng');",
            )
            .await
            .context("creating a table as the new role")?;
        let row = tenant
            .query_one(
                "SELECT f.agency, t.tableowner::text, r.rolsuper
                   FROM filings f, pg_tables t, pg_roles r
                  WHERE f.id = $1 AND t.tablename = 'filings' AND r.rolname = current_user",
                &[&1_i64],
            )
            .await?;
        let (agency, owner, tenant_super): (String, String, bool) =
            (row.get(0), row.get(1), row.get(2));
        ensure!(
            agency == "Sở Thông tin và Truyền thông Đà Nẵng",
            "read back {agency:?}"
        );
        ensure!(owner == name, "the table is owned by {owner}, not {name}");
        ensure!(!tenant_super, "the new role must not be a superuser");
        drop(tenant);

        let mut wrong = admin.postgres_config(&name);
        wrong.user(&name).password("not-the-password");
        expect_invalid_password(pg_connect(&wrong).await, "the new role")?;
        Ok::<_, anyhow::Error>(())
    }
    .await;

    // Clean up whatever happened (WITH (FORCE) ends the role's own sessions).
    pg.batch_execute(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
        .await
        .context("dropping the database")?;
    pg.batch_execute(&format!(r#"DROP ROLE IF EXISTS "{name}""#))
        .await
        .context("dropping the role")?;
    outcome?;
    let left: i64 = pg
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = $1)
                  + (SELECT count(*) FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .await?
        .get(0);
    ensure!(
        left == 0,
        "the role or the database of {name} is still there"
    );
    Ok(())
}

#[tokio::test]
async fn postgres_refuses_a_wrong_password() {
    let admin = cluster()
        .postgres_admin()
        .expect("reading the PostgreSQL admin file");
    within("PostgreSQL refusing a wrong password", async {
        let mut config = admin.postgres_config("postgres");
        config.password(format!("{}-wrong", admin.password));
        expect_invalid_password(pg_connect(&config).await, &admin.user)
    })
    .await;
}

fn expect_invalid_password(result: Result<Client, tokio_postgres::Error>, who: &str) -> Result<()> {
    match result {
        Ok(_) => bail!("{who} logged in with a wrong password"),
        Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD) => Ok(()),
        Err(e) => Err(anyhow!(e).context(format!(
            "{who} with a wrong password: expected invalid_password (28P01)"
        ))),
    }
}

/// The server error code of a Redis reply (`NOPERM`, `NOAUTH`, `WRONGPASS`...).
fn redis_code<T>(result: redis::RedisResult<T>) -> Option<String> {
    let err = result.err()?;
    err.code()
        .map(str::to_owned)
        .or_else(|| Some(err.to_string()))
}

#[tokio::test]
async fn redis_admin_creates_a_user_confined_to_its_prefix() {
    let admin = cluster()
        .redis_admin()
        .expect("reading the Redis admin file");
    within("a prefix-confined ACL user on Redis", confined_user(admin)).await;
}

async fn confined_user(admin: ServerAdmin) -> Result<()> {
    let mut con = redis::Client::open(admin.redis_connection_info()?)?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting as {admin:?}"))?;
    let user = unique_name("e2e-tenant");
    let prefix = user.clone();
    let password = test_password();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("reset")
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{prefix}:*"))
        .arg("+@read")
        .arg("+@write")
        .arg("-@dangerous")
        .query_async::<()>(&mut con)
        .await
        .context("ACL SETUSER")?;

    let outcome = async {
        let info = redis_connection_info(&admin.host, admin.port, Some((&user, &password)))?;
        let mut tenant = redis::Client::open(info)?
            .get_multiplexed_async_connection()
            .await
            .context("connecting as the new user")?;
        let key = format!("{prefix}:greeting");
        redis::cmd("SET")
            .arg(&key)
            .arg("xin chào")
            .query_async::<()>(&mut tenant)
            .await
            .context("SET under its prefix")?;
        let value: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut tenant)
            .await
            .context("GET under its prefix")?;
        ensure!(value == "xin chào", "read back {value:?}");

        let outside = format!("other-{prefix}:greeting");
        let set = redis::cmd("SET")
            .arg(&outside)
            .arg("x")
            .query_async::<()>(&mut tenant)
            .await;
        ensure!(
            redis_code(set).as_deref() == Some("NOPERM"),
            "SET outside its prefix should be refused with NOPERM"
        );
        let get = redis::cmd("GET")
            .arg(&outside)
            .query_async::<Option<String>>(&mut tenant)
            .await;
        ensure!(
            redis_code(get).as_deref() == Some("NOPERM"),
            "GET outside its prefix should be refused with NOPERM"
        );
        // KEYS is a @dangerous command, even on its own keys.
        let keys = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async::<Vec<String>>(&mut tenant)
            .await;
        ensure!(
            redis_code(keys).as_deref() == Some("NOPERM"),
            "KEYS (@dangerous) should be refused with NOPERM"
        );
        let seen: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut con)
            .await
            .context("the admin reading the tenant's key")?;
        ensure!(seen == "xin chào", "the admin read {seen:?}");
        Ok::<_, anyhow::Error>(())
    }
    .await;

    // Clean up whatever happened: the user (its connections are closed) and its key.
    redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async::<i64>(&mut con)
        .await
        .context("ACL DELUSER")?;
    redis::cmd("DEL")
        .arg(format!("{prefix}:greeting"))
        .query_async::<i64>(&mut con)
        .await?;
    outcome?;
    let gone: Option<redis::Value> = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(&user)
        .query_async(&mut con)
        .await?;
    ensure!(gone.is_none(), "ACL user {user} still exists: {gone:?}");

    // A deleted user cannot log in any more.
    let info = redis_connection_info(&admin.host, admin.port, Some((&user, &password)))?;
    login_refusal(redis_ping(info).await, "the deleted user")
}

/// Connects with `info` and PINGs: what any client would do first.
async fn redis_ping(info: redis::ConnectionInfo) -> redis::RedisResult<String> {
    let mut con = redis::Client::open(info)?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("PING").query_async(&mut con).await
}

/// The refusal of a login by the server (not, say, a refused connection): WRONGPASS
/// (which the client reports as an authentication failure) or NOAUTH.
fn login_refusal(result: redis::RedisResult<String>, who: &str) -> Result<()> {
    match result {
        Ok(_) => bail!("{who} got in"),
        Err(e) if e.kind() == redis::ErrorKind::AuthenticationFailed => Ok(()),
        Err(e) if e.code() == Some("NOAUTH") => Ok(()),
        Err(e) => bail!("{who} should be refused with WRONGPASS or NOAUTH, got: {e}"),
    }
}

#[tokio::test]
async fn redis_default_user_cannot_get_in() {
    let admin = cluster()
        .redis_admin()
        .expect("reading the Redis admin file");
    within("Redis refusing the default user", async {
        // Without credentials: every command needs authentication first.
        let anonymous = redis_connection_info(&admin.host, admin.port, None)?;
        login_refusal(redis_ping(anonymous).await, "an anonymous client")?;

        // As "default", with any password (even the admin's): refused.
        for password in ["default", admin.password.as_str()] {
            let info = redis_connection_info(&admin.host, admin.port, Some(("default", password)))?;
            login_refusal(redis_ping(info).await, "the default user")?;
        }

        // The admin with a wrong password: refused too.
        let wrong = format!("{}-wrong", admin.password);
        let info = redis_connection_info(&admin.host, admin.port, Some((&admin.user, &wrong)))?;
        login_refusal(
            redis_ping(info).await,
            &format!("{} with a wrong password", admin.user),
        )
    })
    .await;
}
