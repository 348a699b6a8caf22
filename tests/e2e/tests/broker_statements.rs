//! The statements and ACL rules the data-service broker will send
//! (`govbroker_domain::data_services`) do what they say on the real servers: a claim's
//! role owns a closed database within its connection limit, Retain locks the role out
//! and keeps the data, Delete removes everything, a share's reader can only read; a
//! Redis user stays inside its prefix, a read-only one cannot write.

use anyhow::{Context as _, Result, bail};
use govbroker_domain::data_services::{
    PostgresLimits, RedisAccess, TERMINATE_SESSIONS, alter_role, create_database, create_role,
    disable_login, drop_instance, grant_read_only, instance_names, redis_acl, share_reader_name,
};
use govbroker_e2e::data_services::redis_connection_info;
use govbroker_e2e::{DEFAULT_TIMEOUT, cluster, unique_name};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn as_user(base: &Config, user: &str, password: &str, db: &str) -> Config {
    let mut config = base.clone();
    config.user(user).password(password).dbname(db);
    config
}

fn sql_state(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.code()
}

#[tokio::test]
async fn postgres_statements_provision_retain_share_and_delete_a_claim() {
    tokio::time::timeout(DEFAULT_TIMEOUT, postgres_lifecycle())
        .await
        .expect("timed out")
        .map_err(|e| {
            match e
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(|p| p.as_db_error())
            {
                Some(db) => anyhow::anyhow!("{}: {}", db.code().code(), db.message()),
                None => e,
            }
        })
        .expect("the PostgreSQL lifecycle");
}

async fn postgres_lifecycle() -> Result<()> {
    let admin = cluster().postgres_admin()?;
    let base = admin.postgres_config("postgres");
    let pg = connect(&base).await?;
    // A namespace and claim with the characters a slug allows, including '--'.
    let names = instance_names(&unique_name("so-y-te--prod"), "ho-so-benh-an");
    let reader = share_reader_name(&unique_name("chia-se"));
    let password = unique_name("pw").replace('-', "x");
    let outcome = async {
        pg.batch_execute(&create_role(&names.role, &password, PostgresLimits { max_connections: Some(2) })?).await?;
        // Idempotent twin: running it again changes nothing and keeps the limit.
        pg.batch_execute(&alter_role(&names.role, &password, PostgresLimits { max_connections: Some(2) })?).await?;
        for statement in create_database(&names.database, &names.role)? {
            pg.batch_execute(&statement).await?;
        }
        let limit: i32 = pg.query_one("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", &[&names.role]).await?.get(0);
        if limit != 2 {
            bail!("connection limit {limit}, want 2");
        }

        // The owner works in its database; nobody else may connect.
        let owner = connect(&as_user(&base, &names.role, &password, &names.database)).await?;
        owner.batch_execute("CREATE TABLE ho_so (id int, ten text); INSERT INTO ho_so VALUES (1, 'Nguyễn Văn A')").await?;
        let other_password = unique_name("pw").replace('-', "x");
        let other = unique_name("gb-other").replace('-', "_");
        pg.batch_execute(&create_role(&other, &other_password, PostgresLimits::default())?).await?;
        match connect(&as_user(&base, &other, &other_password, &names.database)).await {
            Err(e) if sql_state(&e) == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {}
            other => bail!("another role connected to the claim's database: {:?}", other.err()),
        }

        // A share's reader reads, and cannot write.
        let reader_password = unique_name("pw").replace('-', "x");
        pg.batch_execute(&create_role(&reader, &reader_password, PostgresLimits::default())?).await?;
        let grants = grant_read_only(&names.database, &names.role, &reader)?;
        pg.batch_execute(&grants[0]).await?;
        let owner_admin = connect(&as_user(&base, &admin.user, &admin.password, &names.database)).await?;
        for statement in &grants[1..] {
            owner_admin.batch_execute(statement).await?;
        }
        let consumer = connect(&as_user(&base, &reader, &reader_password, &names.database)).await?;
        let ten: String = consumer.query_one("SELECT ten FROM ho_so WHERE id = 1", &[]).await?.get(0);
        if ten != "Nguyễn Văn A" {
            bail!("the reader read {ten:?}");
        }
        match consumer.batch_execute("INSERT INTO ho_so VALUES (2, 'x')").await {
            Err(e) if sql_state(&e) == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {}
            other => bail!("the reader could write: {other:?}"),
        }
        drop(consumer);

        // Retain: no more logins, the data stays.
        pg.batch_execute(&disable_login(&names.role)?).await?;
        match connect(&as_user(&base, &names.role, &password, &names.database)).await {
            Err(e) if sql_state(&e) == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => {}
            other => bail!("a retained role could still log in: {:?}", other.err()),
        }
        let rows: i64 = owner_admin.query_one("SELECT count(*) FROM ho_so", &[]).await?.get(0);
        if rows != 1 {
            bail!("retained data has {rows} rows");
        }
        drop(owner_admin);
        drop(owner);

        // Delete: sessions ended, database and role gone; a second run tolerates that.
        pg.execute(TERMINATE_SESSIONS, &[&names.database]).await?;
        pg.batch_execute(&format!("DROP OWNED BY {} CASCADE", govbroker_domain::data_services::quote_ident(&reader)?)).await.ok();
        for _ in 0..2 {
            for statement in drop_instance(&names.database, &names.role)? {
                pg.batch_execute(&statement).await?;
            }
        }
        let left: i64 = pg
            .query_one("SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) + (SELECT count(*) FROM pg_roles WHERE rolname = $1)", &[&names.role])
            .await?
            .get(0);
        if left != 0 {
            bail!("{left} of the database and role are left");
        }
        pg.batch_execute(&format!("DROP ROLE IF EXISTS \"{other}\"")).await?;
        Ok(())
    }
    .await;
    // Leave nothing behind, whatever happened.
    for statement in drop_instance(&names.database, &names.role)? {
        let _ = pg.batch_execute(&statement).await;
    }
    let _ = pg
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {}",
            govbroker_domain::data_services::quote_ident(&reader)?
        ))
        .await;
    outcome
}

#[tokio::test]
async fn redis_rules_confine_users_to_their_prefix() {
    tokio::time::timeout(DEFAULT_TIMEOUT, redis_confinement())
        .await
        .expect("timed out")
        .expect("the Redis confinement");
}

async fn redis_confinement() -> Result<()> {
    let admin = cluster().redis_admin()?;
    let mut con = redis::Client::open(admin.redis_connection_info()?)?
        .get_multiplexed_async_connection()
        .await?;
    let names = instance_names(&unique_name("ubnd-prod"), "phien");
    let reader = format!("{}.reader", names.redis_user);
    let (password, reader_password) = (unique_name("pw"), unique_name("pw"));
    let outcome = async {
        for (user, pass, access) in [
            (&names.redis_user, &password, RedisAccess::ReadWrite),
            (&reader, &reader_password, RedisAccess::ReadOnly),
        ] {
            let args = redis_acl(user, pass, &names.key_prefix, access)?;
            redis::cmd("ACL")
                .arg(&args)
                .query_async::<()>(&mut con)
                .await?;
        }
        let key = format!("{}:session", names.key_prefix);
        let mut owner = redis::Client::open(redis_connection_info(
            &admin.host,
            admin.port,
            Some((&names.redis_user, &password)),
        )?)?
        .get_multiplexed_async_connection()
        .await
        .context("the claim's user logs in")?;
        redis::cmd("SET")
            .arg(&key)
            .arg("giá trị")
            .query_async::<()>(&mut owner)
            .await?;
        let outside = redis::cmd("SET")
            .arg("other:key")
            .arg("x")
            .query_async::<()>(&mut owner)
            .await;
        if outside.as_ref().err().and_then(|e| e.code()) != Some("NOPERM") {
            bail!("the claim's user wrote outside its prefix: {outside:?}");
        }
        let flush = redis::cmd("FLUSHALL").query_async::<()>(&mut owner).await;
        if flush.is_ok() {
            bail!("the claim's user could FLUSHALL");
        }
        let mut consumer = redis::Client::open(redis_connection_info(
            &admin.host,
            admin.port,
            Some((&reader, &reader_password)),
        )?)?
        .get_multiplexed_async_connection()
        .await?;
        let value: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut consumer)
            .await?;
        if value != "giá trị" {
            bail!("the reader read {value:?}");
        }
        if redis::cmd("SET")
            .arg(&key)
            .arg("y")
            .query_async::<()>(&mut consumer)
            .await
            .is_ok()
        {
            bail!("the read-only user could write");
        }
        Ok(())
    }
    .await;
    let _ = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&names.redis_user)
        .arg(&reader)
        .query_async::<()>(&mut con)
        .await;
    let _ = redis::cmd("DEL")
        .arg(format!("{}:session", names.key_prefix))
        .query_async::<()>(&mut con)
        .await;
    outcome
}
