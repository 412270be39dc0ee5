//! libpq's credential conventions against a real PostgreSQL (the Debian server binaries, a
//! cluster of the test's own on a free loopback port, password authentication over TCP).

use ferry_tables::TablesError;
use ferry_tables::connect::{Environment, PasswordFrom, PgUrl, Settings};
use ferry_testkit::postgres::{PASSWORD, Postgres, USER};
use std::os::unix::fs::PermissionsExt;

fn env(vars: &[(&str, &str)]) -> Environment {
    Environment { vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), home: None, os_user: None }
}

async fn server_user(settings: &Settings) -> Result<String, TablesError> {
    let client = settings.connect().await?;
    let row =
        client.query_one("SELECT current_user::text", &[]).await.map_err(|source| TablesError::Query { what: "whoami".into(), source })?;
    Ok(row.get(0))
}

#[tokio::test]
async fn pgpassword_a_password_file_and_a_service_each_reach_the_server_and_a_wrong_password_is_not_shown() {
    let pg = Postgres::start();
    pg.create_db("shop");
    let url = PgUrl::parse(&pg.url("shop")).unwrap();

    let by_env = Settings::resolve(&url, &env(&[("PGUSER", USER), ("PGPASSWORD", PASSWORD)])).unwrap();
    assert_eq!(by_env.password_from, PasswordFrom::Environment);
    assert_eq!(server_user(&by_env).await.unwrap(), USER);

    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(&pgpass, format!("127.0.0.1:{}:shop:{USER}:{PASSWORD}\n", pg.port)).unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let by_file = Settings::resolve(&url, &env(&[("PGUSER", USER), ("PGPASSFILE", pgpass.to_str().unwrap())])).unwrap();
    assert_eq!(by_file.password_from, PasswordFrom::PassFile(pgpass.clone()));
    assert_eq!(server_user(&by_file).await.unwrap(), USER);

    let services = dir.path().join("pg_service.conf");
    std::fs::write(&services, format!("[shop]\nhost=127.0.0.1\nport={}\ndbname=shop\nuser={USER}\n", pg.port)).unwrap();
    let by_service = Settings::resolve(
        &PgUrl::parse("postgres:///").unwrap(),
        &env(&[("PGSERVICE", "shop"), ("PGSERVICEFILE", services.to_str().unwrap()), ("PGPASSFILE", pgpass.to_str().unwrap())]),
    )
    .unwrap();
    assert_eq!(server_user(&by_service).await.unwrap(), USER);

    let wrong = Settings::resolve(&url, &env(&[("PGUSER", USER), ("PGPASSWORD", "not-the-password-7c1")])).unwrap();
    let err = server_user(&wrong).await.unwrap_err();
    assert!(matches!(err, TablesError::Connect { .. }), "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains(&format!("127.0.0.1:{}/shop as {USER}", pg.port)) && !text.contains("not-the-password-7c1"), "{text}");

    let tls = Settings::resolve(&PgUrl::parse(&format!("{}?sslmode=require", pg.url("shop"))).unwrap(), &env(&[("PGUSER", USER)])).unwrap();
    let err = server_user(&tls).await.unwrap_err();
    assert!(matches!(err, TablesError::Tls { .. }) && err.to_string().contains("sslmode=require"), "{err}");
}
