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

    // This server has no TLS: `require` cannot be met, `prefer` goes on without it.
    let auth = [("PGUSER", USER), ("PGPASSWORD", PASSWORD)];
    let tls = Settings::resolve(&PgUrl::parse(&format!("{}?sslmode=require", pg.url("shop"))).unwrap(), &env(&auth)).unwrap();
    let err = server_user(&tls).await.unwrap_err();
    assert!(matches!(err, TablesError::Connect { .. }), "{err}");
    assert!(!uses_tls(&Settings::resolve(&url, &env(&auth)).unwrap()).await.unwrap());
}

/// Whether the connection `settings` make is over TLS, as the server sees it.
async fn uses_tls(settings: &Settings) -> Result<bool, TablesError> {
    let client = settings.connect().await?;
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .map_err(|source| TablesError::Query { what: "ssl".into(), source })?;
    Ok(row.get(0))
}

/// A certificate authority that signed nothing of the server's.
fn other_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.crt",
        ])
        .args(["-days", "2", "-subj", "/CN=not the server's CA"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("other.crt")
}

#[tokio::test]
async fn each_sslmode_does_what_libpq_does_against_a_server_that_takes_tls_only() {
    let pg = Postgres::start_tls();
    pg.create_db("shop");
    let ca = pg.ca.clone().unwrap();
    let work = tempfile::tempdir().unwrap();
    let other = other_ca(work.path());
    let at = |host: &str, params: &str| PgUrl::parse(&format!("postgres://{host}:{}/shop?{params}", pg.port)).unwrap();
    let with = |extra: &[(&str, &str)]| {
        let mut vars = vec![("PGUSER", USER), ("PGPASSWORD", PASSWORD)];
        vars.extend_from_slice(extra);
        env(&vars)
    };
    let ca_path = ca.to_str().unwrap();
    let other_path = other.to_str().unwrap();

    // The server rejects connections without TLS (hostnossl … reject).
    let plain = Settings::resolve(&at("127.0.0.1", "sslmode=disable"), &with(&[])).unwrap();
    assert!(matches!(uses_tls(&plain).await, Err(TablesError::Connect { .. })));
    // libpq's default (prefer), allow (plain refused, then TLS) and require: TLS, not verified.
    for mode in ["", "sslmode=allow", "sslmode=require"] {
        let s = Settings::resolve(&at("127.0.0.1", mode), &with(&[])).unwrap();
        assert!(uses_tls(&s).await.unwrap(), "{mode}");
    }
    // verify-full by PGSSLMODE and PGSSLROOTCERT: the chain and the IP address in the certificate.
    let full = Settings::resolve(&at("127.0.0.1", ""), &with(&[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca_path)])).unwrap();
    assert!(uses_tls(&full).await.unwrap());
    // Another authority's root: refused, for verify-full and verify-ca alike.
    for mode in ["verify-full", "verify-ca"] {
        let s = Settings::resolve(&at("127.0.0.1", &format!("sslmode={mode}&sslrootcert={other_path}")), &with(&[])).unwrap();
        let err = uses_tls(&s).await.unwrap_err();
        assert!(matches!(err, TablesError::Connect { .. }) && err.to_string().to_lowercase().contains("certificate"), "{mode}: {err}");
    }
    // A name the certificate is not for: verify-full refuses, verify-ca only checks the chain.
    let by_name = |mode: &str| Settings::resolve(&at("localhost", &format!("sslmode={mode}&sslrootcert={ca_path}")), &with(&[])).unwrap();
    let err = uses_tls(&by_name("verify-full")).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    assert!(uses_tls(&by_name("verify-ca")).await.unwrap());
    // require verifies the chain when ~/.postgresql/root.crt exists, as libpq does.
    let home = work.path().join("home");
    std::fs::create_dir_all(home.join(".postgresql")).unwrap();
    std::fs::copy(&other, home.join(".postgresql/root.crt")).unwrap();
    let mut e = with(&[]);
    e.home = Some(home.clone());
    let require = Settings::resolve(&at("127.0.0.1", "sslmode=require"), &e).unwrap();
    assert!(matches!(uses_tls(&require).await, Err(TablesError::Connect { .. })));
    std::fs::copy(&ca, home.join(".postgresql/root.crt")).unwrap();
    let require = Settings::resolve(&at("127.0.0.1", "sslmode=require"), &e).unwrap();
    assert!(uses_tls(&require).await.unwrap());

    // Settings refused before connecting, each naming why.
    let err = Settings::resolve(&at("127.0.0.1", "sslmode=verify-ca"), &with(&[])).unwrap_err();
    assert!(
        matches!(err, TablesError::Tls(ferry_tables::tls::TlsError::NoRootFile { .. }))
            && err.to_string().contains("root.crt does not exist"),
        "{err}"
    );
    let err = Settings::resolve(&at("127.0.0.1", "sslmode=require&sslrootcert=system"), &with(&[])).unwrap_err();
    assert!(err.to_string().contains("may not be used with sslrootcert=system"), "{err}");
    let missing = work.path().join("nope.crt");
    let err =
        Settings::resolve(&at("127.0.0.1", "sslmode=verify-full"), &with(&[("PGSSLROOTCERT", missing.to_str().unwrap())])).unwrap_err();
    assert!(err.to_string().contains("nope.crt does not exist"), "{err}");
}
