//! A PostgreSQL server of its own for each test: the Debian server binaries
//! (`/usr/lib/postgresql/N/bin`, or `$FERRY_PGBIN`), a fresh cluster in a temp directory, on a
//! free loopback port, stopped (immediately) and removed on drop.
//!
//! `initdb` refuses root: run as root, the cluster belongs to the `postgres` user and every
//! server binary runs as it (`runuser`). TCP connections need a password (SCRAM), so a test of
//! the libpq credential conventions has one to give; the socket in the temp directory trusts
//! its user, for the test's own setup through `psql`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser's name and password of every test cluster.
pub const USER: &str = "postgres";
pub const PASSWORD: &str = "ferry-test-password";

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The certificate authority that signed the server's certificate, when it takes TLS.
    pub ca: Option<PathBuf>,
}

/// The names the TLS server's certificate is for (not `localhost`, so a test can connect by a
/// name it does not hold).
pub const TLS_NAMES: &str = "IP:127.0.0.1,DNS:pg.test";

/// The newest server binaries on the machine.
fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FERRY_PGBIN") {
        return PathBuf::from(bin);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect("PostgreSQL server binaries are not installed: run scripts/install-services.sh")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes a certificate authority (`ca.crt`) and a server certificate it signed for
/// [`TLS_NAMES`] (`server.crt`, `server.key`) in `dir`, with the `openssl` command.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out =
            Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl (scripts/install-services.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(&[&["req", "-x509"], &ec[..], &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ferry test CA"]].concat());
    openssl(&[&["req"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=pg.test"]].concat());
    std::fs::write(dir.join("ext"), format!("subjectAltName={TLS_NAMES}\n")).expect("extensions file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_with(false)
    }

    /// A server that takes TCP connections over TLS only (`hostssl`; `hostnossl` is rejected),
    /// with a certificate from its own authority ([`Postgres::ca`]).
    pub fn start_tls() -> Postgres {
        Postgres::start_with(true)
    }

    fn start_with(tls: bool) -> Postgres {
        let bin = server_bin();
        let dir = tempfile::Builder::new().prefix("ferry-pg-").tempdir().expect("temp dir");
        let pg = Postgres { port: 0, bin, dir, ca: None };
        if is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(pg.dir.path()).status().expect("chown");
            assert!(ok.success(), "chown the cluster's directory to postgres");
        }
        let pwfile = pg.dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("password file");
        if is_root() {
            Command::new("chown").args(["postgres:postgres"]).arg(&pwfile).status().expect("chown");
        }
        let data = pg.data();
        let out = pg.run_as_owner(
            pg.bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = pg;
        let mut tls_options = String::new();
        if tls {
            let certs = pg.dir.path().join("certs");
            std::fs::create_dir(&certs).expect("certificates directory");
            make_certificates(&certs);
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .expect("pg_hba.conf");
            if is_root() {
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(&certs).arg(data.join("pg_hba.conf")).status().expect("chown");
            }
            std::fs::set_permissions(certs.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("key mode");
            tls_options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                certs.join("server.crt").display(),
                certs.join("server.key").display()
            );
            pg.ca = Some(certs.join("ca.crt"));
        }
        // A free port can be taken by another test's server before this one binds it.
        for _ in 0..5 {
            let port = crate::services::free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off{tls_options}",
                pg.dir.path().display()
            );
            let log = pg.dir.path().join("log");
            let out = pg.run_as_owner(
                pg.bin.join("pg_ctl"),
                &[
                    "-D",
                    data.to_str().expect("utf-8 path"),
                    "-l",
                    log.to_str().expect("utf-8 path"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    &options,
                    "start",
                ],
            );
            if out.status.success() {
                pg.port = port;
                return pg;
            }
        }
        let log = std::fs::read_to_string(pg.dir.path().join("log")).unwrap_or_default();
        panic!("PostgreSQL did not start on a free loopback port in 5 attempts:\n{log}")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_as_owner(&self, program: PathBuf, args: &[&str]) -> Output {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.args(args).current_dir(self.dir.path()).output().expect("run a PostgreSQL binary")
    }

    /// The server's URL for database `db`, without credentials (as a user writes it).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://127.0.0.1:{}/{db}", self.port)
    }

    /// The environment a user of libpq's conventions sets: user and password.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("PGUSER".into(), USER.into()), ("PGPASSWORD".into(), PASSWORD.into())]
    }

    /// Runs `sql` in database `db` through `psql` on the server's socket (stops at the first
    /// error); returns what it printed (unaligned, tuples only).
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let socket = self.dir.path().to_str().expect("utf-8 path").to_string();
        let port = self.port.to_string();
        let out = self.run_psql(&["-h", &socket, "-p", &port, "-U", USER, "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql]);
        assert!(out.status.success(), "psql: {}\n{sql}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// An open `psql` session on database `db`, fed statements on its stdin ([`Session::run`]):
    /// a transaction held open while something else runs.
    pub fn session(&self, db: &str) -> Session {
        let socket = self.dir.path().to_str().expect("utf-8 path").to_string();
        let port = self.port.to_string();
        let psql = self.bin.join("psql");
        let psql = if psql.exists() { psql } else { PathBuf::from("psql") };
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(psql);
            c
        } else {
            Command::new(psql)
        };
        c.args(["-h", &socket, "-p", &port, "-U", USER, "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt"]).current_dir(self.dir.path());
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        Session { child: c.spawn().expect("run psql") }
    }

    fn run_psql(&self, args: &[&str]) -> Output {
        let psql = self.bin.join("psql");
        let psql = if psql.exists() { psql } else { PathBuf::from("psql") };
        self.run_as_owner(psql, args)
    }

    /// Creates database `db`.
    pub fn create_db(&self, db: &str) {
        self.sql("postgres", &format!("CREATE DATABASE \"{db}\""));
    }

    /// The cluster's directory (its socket is there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data();
            let _ = self.run_as_owner(self.bin.join("pg_ctl"), &["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "-w", "stop"]);
        }
    }
}

/// A `psql` session (see [`Postgres::session`]).
pub struct Session {
    child: std::process::Child,
}

impl Session {
    /// Runs `sql` and waits until the server has answered it (a marker query after it comes
    /// back).
    pub fn run(&mut self, sql: &str) {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().expect("psql's stdin");
        writeln!(stdin, "{sql}\nSELECT 'ferry-session-marker';").expect("write to psql");
        stdin.flush().expect("flush psql's stdin");
        let stdout = self.child.stdout.as_mut().expect("psql's stdout");
        let mut lines = std::io::BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            let n = lines.read_line(&mut line).expect("read psql's output");
            assert!(n > 0, "psql ended while running {sql}");
            if line.trim() == "ferry-session-marker" {
                return;
            }
        }
    }

    /// Ends the session (what it did not commit is rolled back).
    pub fn close(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
