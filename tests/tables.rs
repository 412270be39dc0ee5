//! PostgreSQL tables exported through the `ferry` binary, the way the README documents it
//! (`ferry copy postgres://HOST:PORT/DB DST --table …`, the password from PGPASSWORD), against a
//! real PostgreSQL 15 and the S3, GCS and Azure emulators: every type and edge value, a 1 M-row
//! table written to while it is exported, files read by pyarrow and DuckDB, `ferry verify`
//! against the database's figures, altered files caught, a kill -9 resumed by file, and
//! refusals that write nothing.

mod common;

use common::{ferry, ferry_command, ferry_ok};
use ferry_testkit::postgres::Postgres;
use std::path::Path;

const EDGE: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE edge (
  id bigint PRIMARY KEY, b boolean, i2 smallint, i4 integer, f4 real, f8 double precision,
  big numeric(38,8), n30 numeric(30,0), money2 numeric(12,2), t text, vc varchar(10), c char(4), raw bytea, d date,
  ts timestamp, tz timestamptz, tm time, iv interval, u uuid, j json, jb jsonb, m mood, pos positive,
  ip inet, net cidr, mac macaddr, ai integer[], at text[], an numeric(6,2)[]
);
INSERT INTO edge VALUES
  (1, true, -32768, 2147483647, 'NaN', 'Infinity', 123456789012345678901234567890.12345678, 123456789012345678901234567890,
   -0.05, 'héllo, 日本 ✓ 🚀', 'ab', 'ab', '\\x00ff00', '1969-12-31', '2024-02-29 23:59:59.999999',
   '1999-12-31 23:00:00-05', '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.7', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '{\"b\": 1,  \"a\": [1,2]}', '{\"b\": 1, \"a\": [1,2]}', 'happy', 7, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
   '{1,NULL,-3}', '{\"a,b\",\"\",NULL}', '{1.50,NULL}'),
  (2, false, 0, -1, '-Infinity', '-Infinity', -99999999999999999999999999999.99999999, -999999999999999999999999999999,
   0, '', '', '', '', '2000-01-01', '0001-01-01 00:00:00', '2000-01-01 00:00:00+00', '00:00:00', '-1 days -00:00:01',
   '00000000-0000-0000-0000-000000000000', 'null', '\"x\"', 'sad', 1, '::1', '::/0', 'ff:ff:ff:ff:ff:ff', '{}', '{}', '{}'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, true, 7, 7, 1.5, 'NaN', 0.00000001, 0, 1.10, E'tab\\tnl\\nnul-free', 'x', 'x', '\\x5c4e00', '294276-12-31',
   '1970-01-01 00:00:00.000001', '2038-01-19 03:14:08+00', '12:00', '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '[]', '{}',
   'ok', 2147483647, '10.0.0.1', '192.168.0.0/16', '00:00:00:00:00:00', '{NULL}', '{NULL,NULL}', NULL);
";

/// The 1 M-row table of the issue's benchmark shape: bigint, numeric(12,2), ~30 chars of text,
/// timestamptz, boolean, small jsonb.
const BIG: &str = "
CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2), note text, at timestamptz, paid boolean, extra jsonb);
INSERT INTO orders SELECT g, (g % 100000) / 100.0, 'order ' || md5(g::text), timestamptz '2020-01-01' + g * interval '1 second',
  g % 3 = 0, jsonb_build_object('n', g % 7) FROM generate_series(1, 1000000) g;
ANALYZE orders;
";

fn env(pg: &Postgres, more: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = pg.env();
    env.extend(more.iter().cloned());
    env
}

/// Runs `script` with pyarrow and DuckDB importable, `args` as `sys.argv[1:]`; its stdout.
fn python(script: &str, args: &[&str]) -> String {
    let readers = ferry_testkit::services::services_dir().join("readers");
    assert!(readers.join("pyarrow").exists(), "pyarrow is not installed: run scripts/install-services.sh");
    let out =
        std::process::Command::new("python3").env("PYTHONPATH", &readers).arg("-c").arg(script).args(args).output().expect("run python3");
    assert!(out.status.success(), "python: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What pyarrow and DuckDB make of every file under `dir` for table `orders`.
const READERS: &str = r#"
import sys, glob, json, pyarrow.parquet as pq, duckdb
files = sorted(glob.glob(sys.argv[1] + "/**/*.parquet", recursive=True))
rows = sum(pq.read_table(f).num_rows for f in files)
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
q = con.execute('SELECT count(*), sum(amount)::VARCHAR, min(note), max(note), sum(CASE WHEN paid THEN 1 ELSE 0 END), min("at")::VARCHAR FROM read_parquet($1)', [files]).fetchone()
print(json.dumps({"files": len(files), "pyarrow_rows": rows, "duckdb": [str(x) for x in q]}))
"#;

#[test]
fn a_million_rows_to_s3_while_the_table_is_written_then_verify_and_two_other_readers_agree() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    pg.sql("shop", EDGE);
    pg.sql("shop", BIG);
    // What the export must hold, taken before any write.
    let before = pg.sql("shop", "SELECT count(*), sum(amount), min(note), max(note), count(*) FILTER (WHERE paid) FROM orders");
    let s3 = ferry_testkit::S3Server::start();
    s3.create_bucket("lake");
    let env = env(&pg, &s3.env());
    let url = pg.url("shop");
    let args = [
        "copy",
        &url,
        "s3://lake/tables",
        "--table",
        "public.orders",
        "--table",
        "edge",
        "--job",
        "j",
        "--dst-endpoint",
        &s3.endpoint,
        "--rows-per-file",
        "250000",
        "--json",
    ];
    let mut child =
        ferry_command(w, &args, &env).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // The plan is written inside the snapshot: once it is there, writes must not be seen.
    let plan = w.join("j/tables/plan.json");
    for _ in 0..600 {
        if plan.exists() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(plan.exists(), "the export did not plan");
    pg.sql("shop", "INSERT INTO orders SELECT g, 1, 'new', now(), true, '{}' FROM generate_series(1000001, 1000500) g");
    pg.sql("shop", "UPDATE orders SET amount = amount + 1 WHERE id % 1000 = 0");
    pg.sql("shop", "DELETE FROM orders WHERE id BETWEEN 500000 AND 500999");
    assert!(child.try_wait().unwrap().is_none(), "the export ended before the writes: the test proves nothing");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["export"]["rows"], 1_000_004, "{summary}");
    assert_eq!(summary["export"]["files"], 5, "4 files of orders, 1 of edge: {summary}");
    assert_eq!(summary["copied"], 5, "{summary}");

    // verify: every file read back from S3, its figures the database's.
    let v = ferry_ok(w, &["verify", "--job", "j", "--json"], &env, 0).json();
    assert_eq!((v["tables"]["files"].as_u64(), v["tables"]["matched"].as_u64()), (Some(5), Some(5)), "{v}");
    assert_eq!(v["tables"]["rows"], 1_000_004);
    // The sealed entries: the snapshot, the server version and the WAL position.
    let sealed: serde_json::Value = serde_json::from_slice(&std::fs::read(w.join("j/manifests/gen-0001/tables.json")).unwrap()).unwrap();
    let orders = sealed["tables"].as_array().unwrap().iter().find(|t| t["name"] == "public.orders").unwrap();
    assert_eq!(orders["rows"], 1_000_000);
    assert_eq!(orders["snapshots"].as_array().unwrap().len(), 1);
    assert!(orders["snapshots"][0]["server_version"].as_str().unwrap().starts_with("15"), "{orders}");

    // pyarrow and DuckDB read the files as S3 holds them, and agree with PostgreSQL's figures of
    // before the writes.
    let got: serde_json::Value =
        serde_json::from_str(&python(READERS, &[s3.root.path().join("lake/tables/public/orders").to_str().unwrap()])).unwrap();
    let want: Vec<&str> = before.trim().split('|').collect();
    assert_eq!(got["files"], 4);
    assert_eq!(got["pyarrow_rows"], 1_000_000);
    assert_eq!(got["duckdb"][0], want[0]);
    assert_eq!(got["duckdb"][1], want[1], "sum(amount)");
    assert_eq!((got["duckdb"][2].as_str(), got["duckdb"][3].as_str()), (Some(want[2]), Some(want[3])));
    assert_eq!(got["duckdb"][4], want[4]);
    assert_eq!(got["duckdb"][5], "2020-01-01 00:00:01+00", "timestamptz in UTC");
    // Every type of the edge table reads in both, values and all.
    let edge = python(
        r#"
import sys, glob, pyarrow as pa, pyarrow.parquet as pq, duckdb
[f] = glob.glob(sys.argv[1] + "/*.parquet")
table = pq.read_table(f)
# Python's dates end at year 9999: the date column is compared as days since 1970.
days = table.column("d").cast(pa.int32()).to_pylist()
assert max(d for d in days if d is not None) == int(sys.argv[2]), days
t = table.drop_columns(["d"]).to_pylist()
r = {row["id"]: row for row in t}
assert str(r[1]["big"]) == "123456789012345678901234567890.12345678", r[1]["big"]
assert str(r[2]["n30"]) == "-999999999999999999999999999999", r[2]["n30"]
assert r[1]["raw"] == b"\x00\xff\x00" and r[4]["raw"] == b"\\N\x00", (r[1]["raw"], r[4]["raw"])
assert r[1]["t"] == "héllo, 日本 ✓ 🚀"
assert r[1]["ai"] == [1, None, -3] and r[2]["ai"] == [] and r[3]["ai"] is None and r[4]["ai"] == [None]
assert r[1]["iv"] == {"months": 14, "days": 3, "microseconds": 14706700000}, r[1]["iv"]
assert r[1]["f4"] != r[1]["f4"] and r[2]["f8"] == float("-inf")
assert r[1]["m"] == "happy" and r[1]["pos"] == 7 and r[1]["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
d = con.execute("SELECT count(*), sum(big)::VARCHAR, max(tz)::VARCHAR, count(ai) FROM read_parquet($1)", [f]).fetchone()
print("|".join(str(x) for x in d))
"#,
        &[
            s3.root.path().join("lake/tables/public/edge").to_str().unwrap(),
            pg.sql("shop", "SELECT max(d) - DATE '1970-01-01' FROM edge").trim(),
        ],
    );
    let pg_edge = pg.sql("shop", "SET TIME ZONE 'UTC'; SELECT count(*), sum(big), max(tz), count(ai) FROM edge");
    let normalise = |s: &str| s.trim().replace("+00:00", "+00");
    assert_eq!(normalise(&edge), normalise(&pg_edge));
}

#[test]
fn verify_names_a_dropped_row_a_changed_value_and_a_rewritten_file_of_the_same_row_count() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    pg.sql("shop", "CREATE TABLE t (id int PRIMARY KEY, price numeric(10,2), name text); INSERT INTO t SELECT g, g / 4.0, 'n' || g FROM generate_series(1, 3000) g;");
    let env = pg.env();
    let url = pg.url("shop");
    ferry_ok(w, &["copy", &url, "out", "--table", "t", "--job", "j", "--rows-per-file", "1000"], &env, 0);
    ferry_ok(w, &["verify", "--job", "j"], &env, 0);
    let dir = w.join("out/public/t");
    let files: Vec<String> = (0..3).map(|i| dir.join(format!("part-{i:05}.parquet")).to_string_lossy().into_owned()).collect();
    // File 0: a row dropped. File 1: one value changed. File 2: rewritten with the same row count
    // (one row replaced by a copy of another).
    python(
        r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
f0, f1, f2 = sys.argv[1:]
t = pq.read_table(f0); pq.write_table(t.slice(1), f0)
t = pq.read_table(f1); rows = t.to_pylist(); rows[5]["price"] = rows[5]["price"] + 1
pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), f1)
t = pq.read_table(f2); rows = t.to_pylist(); rows[7] = dict(rows[8])
pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), f2)
"#,
        &[&files[0], &files[1], &files[2]],
    );
    let run = ferry(w, &["verify", "--job", "j", "--json"], &env);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let v = run.json();
    let figures: Vec<(String, String)> = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "table-figures")
        .map(|d| (d["key"].as_str().unwrap().to_string(), d["detail"].as_str().unwrap().to_string()))
        .collect();
    let of = |key: &str| figures.iter().filter(|(k, _)| k == key).map(|(_, d)| d.as_str()).collect::<Vec<_>>();
    let f0 = of("public/t/part-00000.parquet");
    assert!(f0.iter().any(|d| d.starts_with("public.t: rows 999 (the database has 1000)")), "{figures:?}");
    let f1 = of("public/t/part-00001.parquet");
    assert!(f1.iter().any(|d| d.starts_with("public.t: column price: sum")), "{figures:?}");
    assert!(f1.iter().any(|d| d.starts_with("public.t: fingerprint")), "{figures:?}");
    let f2 = of("public/t/part-00002.parquet");
    assert!(!f2.iter().any(|d| d.contains(": rows ")), "the row count is the same: {figures:?}");
    assert!(f2.iter().any(|d| d.starts_with("public.t: fingerprint")), "{figures:?}");
    assert_eq!(v["tables"]["matched"], 0);
    // Text output names them too.
    let text = ferry(w, &["verify", "--job", "j"], &env);
    assert!(text.stdout.contains("table-figures: public/t/part-00001.parquet: public.t: column price: sum"), "{}", text.stdout);
}

#[test]
fn gcs_and_azure_by_their_documented_variables_hold_every_type_and_verify_against_the_database() {
    use ferry_testkit::services::{AZURITE_ACCOUNT, AZURITE_KEY};
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    pg.sql("shop", EDGE);
    let url = pg.url("shop");
    let gcs = ferry_testkit::FakeGcs::start();
    gcs.create_bucket("lake");
    let azurite = ferry_testkit::Azurite::start();
    azurite.create_container("lake");
    let sides: [(&str, Vec<(String, String)>); 2] = [
        ("gs://lake/db", vec![("STORAGE_EMULATOR_HOST".into(), gcs.endpoint.clone())]),
        (
            "az://lake/db",
            [
                ("AZURE_STORAGE_USE_EMULATOR", "true"),
                ("AZURITE_BLOB_STORAGE_URL", azurite.endpoint.as_str()),
                ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT),
                ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
    ];
    for (i, (dst, more)) in sides.iter().enumerate() {
        let env = env(&pg, more);
        let job = format!("j{i}");
        let summary = ferry_ok(w, &["copy", &url, dst, "--schema", "public", "--job", &job, "--json"], &env, 0).json();
        assert_eq!(summary["export"]["tables"], 1, "{dst}: {summary}");
        assert_eq!(summary["copied"], 1, "{dst}: {summary}");
        let v = ferry_ok(w, &["verify", "--job", &job, "--json"], &env, 0).json();
        assert_eq!(v["tables"]["matched"], 1, "{dst}: {v}");
        assert_eq!(v["tables"]["rows"], 4, "{dst}: {v}");
    }
    assert_eq!(gcs.object_names("lake"), ["db/public/edge/part-00000.parquet"]);
    assert_eq!(azurite.blob_sha256s("lake").keys().collect::<Vec<_>>(), ["db/public/edge/part-00000.parquet"]);
}

#[test]
fn a_column_without_an_exact_mapping_is_refused_by_name_and_nothing_is_written_unless_cast() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    pg.sql("shop", "CREATE TABLE t (id int, amount numeric, spot point, ok numeric(5,1)); INSERT INTO t VALUES (1, 1.25, '(1,2)', 3.5);");
    let env = pg.env();
    let url = pg.url("shop");
    let run = ferry(w, &["copy", &url, "out", "--table", "t", "--job", "j"], &env);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("public.t.amount numeric: numeric without a precision"), "{}", run.stderr);
    assert!(run.stderr.contains("public.t.spot point"), "{}", run.stderr);
    assert!(run.stderr.contains("--cast public.t.amount=text"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().filter(|l| l.contains("public.t.")).count(), 2, "{}", run.stderr);
    assert!(!w.join("out").exists() && !w.join("j").exists(), "nothing is written");
    // A password in the URL is refused without being shown.
    let secret = format!("postgres://postgres:hunter2-secret@{}", url.trim_start_matches("postgres://"));
    let run = ferry(w, &["copy", &secret, "out", "--table", "t", "--job", "j"], &env);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("PGPASSWORD") && !run.stderr.contains("hunter2"), "{}", run.stderr);
    // With both cast to text, the export goes ahead and verify proves it.
    let cast = ["--cast", "public.t.amount=text", "--cast", "public.t.spot=text"];
    let mut args = vec!["copy", &url, "out", "--table", "t", "--job", "j"];
    args.extend(cast);
    ferry_ok(w, &args, &env, 0);
    ferry_ok(w, &["verify", "--job", "j"], &env, 0);
    let job = std::fs::read_to_string(w.join("j/job.toml")).unwrap();
    assert!(!job.contains(ferry_testkit::postgres::PASSWORD), "{job}");
}

#[test]
fn a_kill_9_during_the_export_is_finished_by_the_next_run_exporting_only_what_was_not_done() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    pg.sql("shop", "CREATE TABLE k (id bigint PRIMARY KEY, v text); INSERT INTO k SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 400000) g; ANALYZE k;");
    let env = pg.env();
    let url = pg.url("shop");
    let args = ["copy", &url, "out", "--table", "k", "--job", "j", "--rows-per-file", "20000", "--db-connections", "1"];
    let mut child = ferry_command(w, &args, &env).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let done = w.join("j/tables/done");
    let count = |d: &Path| {
        std::fs::read_dir(d).map(|r| r.filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.')).count()).unwrap_or(0)
    };
    for _ in 0..1200 {
        if count(&done) >= 3 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let finished = count(&done);
    assert!((3..20).contains(&finished), "killed after {finished} of 20 files");
    let run = ferry_ok(w, &["copy", "--job", "j", "--json"], &env, 0).json();
    assert_eq!(run["export"]["files"], 20, "{run}");
    // Only the files not done were exported again: the one in flight, and those after it.
    assert_eq!(run["export"]["exported"].as_u64().unwrap(), 20 - finished as u64, "{run}");
    let v = ferry_ok(w, &["verify", "--job", "j", "--json"], &env, 0).json();
    assert_eq!((v["tables"]["matched"].as_u64(), v["tables"]["rows"].as_u64()), (Some(20), Some(400_000)), "{v}");
    let files: Vec<String> =
        std::fs::read_dir(w.join("out/public/k")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), 20, "only the 20 files at the destination: {files:?}");
}

#[test]
fn a_resume_after_writes_and_a_damaged_spool_file_still_exports_one_moment_of_each_table_and_children_once() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    // The last range holds a value no Parquet decimal holds: the first run stops there, after
    // the earlier files are done.
    pg.sql(
        "shop",
        "CREATE TABLE k (id bigint PRIMARY KEY, n numeric(10,2)); INSERT INTO k SELECT g, g / 8.0 FROM generate_series(1, 5000) g; \
         UPDATE k SET n = 'NaN' WHERE id = 5000; ANALYZE k; \
         CREATE TABLE parent (id int, v text); CREATE TABLE child (extra int) INHERITS (parent); \
         INSERT INTO parent VALUES (1, 'p'), (2, 'p'); INSERT INTO child VALUES (3, 'c', 9);",
    );
    let env = pg.env();
    let url = pg.url("shop");
    let args = ["copy", &url, "out", "--schema", "public", "--job", "j", "--rows-per-file", "1000", "--db-connections", "1"];
    let run = ferry(w, &args, &env);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("public.k.n, row"), "{}", run.stderr);
    let done = std::fs::read_dir(w.join("j/tables/done"))
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count();
    assert!(done >= 2, "{done} files done before the refusal");
    // Between the runs: the refused value fixed, rows of a finished file moved to the last
    // range, and one finished spool file damaged at the same size.
    pg.sql("shop", "UPDATE k SET n = 1 WHERE id = 5000; UPDATE k SET id = id + 100000 WHERE id <= 10");
    let spooled = w.join("j/tables/spool/public/child/part-00000.parquet");
    let spooled = if spooled.exists() { spooled } else { w.join("j/tables/spool/public/k/part-00000.parquet") };
    let mut bytes = std::fs::read(&spooled).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&spooled, &bytes).unwrap();
    let summary = ferry_ok(w, &["copy", "--job", "j", "--json"], &env, 0).json();
    let v = ferry_ok(w, &["verify", "--job", "j", "--json"], &env, 0).json();
    assert_eq!(v["tables"]["matched"], v["tables"]["files"], "{v}");
    let sealed: serde_json::Value = serde_json::from_slice(&std::fs::read(w.join("j/manifests/gen-0001/tables.json")).unwrap()).unwrap();
    let rows = |name: &str| sealed["tables"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()["rows"].as_u64().unwrap();
    // One moment of k: 5000 rows, the moved ones once (not in the first file from the first run
    // and again in the last).
    assert_eq!(rows("public.k"), 5000, "{summary}");
    assert_eq!((rows("public.parent"), rows("public.child")), (2, 1), "the child's row is its own table's only");
    let k = sealed["tables"].as_array().unwrap().iter().find(|t| t["name"] == "public.k").unwrap();
    assert_eq!(k["snapshots"].as_array().unwrap().len(), 1, "the earlier run's files were exported again in this one: {k}");
    let counted: u64 = python(
        "import sys, glob, pyarrow.parquet as pq; print(sum(pq.read_table(f).num_rows for f in glob.glob(sys.argv[1] + '/*.parquet')))",
        &[w.join("out/public/k").to_str().unwrap()],
    )
    .trim()
    .parse()
    .unwrap();
    assert_eq!(counted, 5000);
}

/// Tables with foreign keys among them (one to itself, one to a table not exported), keys of
/// every type ferry looks rows up by, and tables it cannot sample.
const RELATED: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text);
CREATE TABLE orders (id bigint PRIMARY KEY, customer int REFERENCES customers, note text);
CREATE TABLE items (order_id bigint REFERENCES orders, n int, qty int, PRIMARY KEY (order_id, n));
CREATE TABLE staff (id int PRIMARY KEY, manager int REFERENCES staff, name text);
CREATE TABLE regions (id int PRIMARY KEY);
CREATE TABLE shops (id int PRIMARY KEY, region int REFERENCES regions);
CREATE TABLE keyed (d date, ts timestamp, tz timestamptz, b bytea, u uuid, t text, n numeric(10,2), v int,
  PRIMARY KEY (d, ts, tz, b, u, t, n));
CREATE TABLE floaty (f float8 PRIMARY KEY, v int REFERENCES customers);
CREATE TABLE loose (x int REFERENCES customers, y text);
CREATE TABLE times (t time PRIMARY KEY, v int);
CREATE TABLE prices (code numeric(10,2) PRIMARY KEY);
CREATE TABLE sales (id int PRIMARY KEY, code numeric(12,3) REFERENCES prices);
CREATE TABLE notes (id int PRIMARY KEY, customer int);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 50) g;
INSERT INTO orders SELECT g, 1 + g % 50, 'note ' || g FROM generate_series(1, 300) g;
INSERT INTO orders VALUES (301, NULL, 'no customer');
INSERT INTO items SELECT 1 + g % 301, g, g % 5 FROM generate_series(1, 600) g;
INSERT INTO staff VALUES (1, NULL, 'boss'), (2, 1, 'a'), (3, 1, 'b'), (4, 2, 'c'), (5, 4, 'd');
INSERT INTO regions VALUES (1);
INSERT INTO shops VALUES (1, 1), (2, 1);
INSERT INTO keyed VALUES
  ('1969-12-31', '1969-12-31 23:59:59.5', '1969-12-31 23:59:59.000001+00', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a''b', -0.05, 1),
  ('2024-02-29', '2024-02-29 23:59:59.999999', '2038-01-19 03:14:08+00', '', '00000000-0000-0000-0000-000000000000', 'ü 日本', 12.50, 2);
INSERT INTO floaty VALUES (1.5, 1);
INSERT INTO loose VALUES (1, 'x'), (1, 'x');
INSERT INTO times VALUES ('00:00:00', 1), ('24:00:00', 2), ('12:34:56.789', 3);
INSERT INTO prices VALUES (1.50), (2);
INSERT INTO sales VALUES (1, 1.5), (2, 2.000);
INSERT INTO notes VALUES (1, 999);
ALTER TABLE notes ADD CONSTRAINT notes_customer_fkey FOREIGN KEY (customer) REFERENCES customers NOT VALID;
";

#[test]
fn verify_sample_compares_rows_with_the_database_by_key_counts_later_writes_and_checks_foreign_keys() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    pg.sql("shop", RELATED);
    let env = pg.env();
    let url = pg.url("shop");
    let mut args = vec!["copy", &url, "out", "--job", "j", "--rows-per-file", "100"];
    for t in ["customers", "orders", "items", "staff", "shops", "keyed", "floaty", "loose", "times", "prices", "sales", "notes"] {
        args.extend(["--table", t]);
    }
    // Planned: the foreign key to a table not exported is named, and those verify cannot check:
    // a NOT VALID one (its rows may reference nothing) and one between numerics of different
    // scales (1.50 and 1.500 are equal keys with different canonical text).
    let unchecked = serde_json::json!([
        {"table": "public.notes", "constraint": "notes_customer_fkey", "parent": "public.customers", "why": "not-validated"},
        {"table": "public.sales", "constraint": "sales_code_fkey", "parent": "public.prices", "why": "types-differ"},
        {"table": "public.shops", "constraint": "shops_region_fkey", "parent": "public.regions", "why": "parent-not-exported"},
    ]);
    let dry = ferry_ok(w, &[args.as_slice(), &["--dry-run", "--json"]].concat(), &env, 0).json();
    assert_eq!(dry["export"]["references_unchecked"], unchecked, "{dry}");
    let text = ferry_ok(w, &[args.as_slice(), &["--dry-run"]].concat(), &env, 0);
    assert!(
        text.stdout.contains("foreign key public.shops.shops_region_fkey → public.regions: the parent table is not in the export"),
        "{}",
        text.stdout
    );
    ferry_ok(w, &args, &env, 0);
    // A delta or cutover would list the spool unchanged while the database moves on: refused.
    for cmd in ["delta", "cutover"] {
        let run = ferry(w, &[cmd, "--job", "j"], &env);
        assert_eq!(run.code, 2, "{cmd}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("not incremental: ferry delta and cutover replay only tables exported with --incremental-by"),
            "{cmd}: {}",
            run.stderr
        );
    }

    // Every row sampled (N above any table's rows), so the counts are exact.
    let sampled = |code| ferry_ok(w, &["verify", "--job", "j", "--sample", "100000", "--json"], &env, code).json();
    let v = sampled(0);
    let s = &v["tables"]["sample"];
    // customers 50, orders 301, items 600, staff 5, shops 2, keyed 2, times 3 (24:00:00 is
    // not 00:00:00), prices 2, sales 2, notes 1.
    assert_eq!((s["rows"].as_u64(), s["equal"].as_u64(), s["differ"].as_u64()), (Some(968), Some(968), Some(0)), "{v}");
    let not: Vec<(String, String)> = s["not_sampled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["table"].as_str().unwrap().into(), n["why"]["reason"].as_str().unwrap().into()))
        .collect();
    assert_eq!(not, [("public.floaty".to_string(), "key-type".to_string()), ("public.loose".into(), "no-primary-key".into())], "{v}");
    // Distinct keys referenced: orders → customers 50 (301's NULL references nothing), items →
    // orders 301, staff → staff 3 (1, 2, 4), and from the tables that cannot be sampled
    // themselves, floaty → customers 1 and loose → customers 1.
    assert_eq!((s["references"].as_u64(), s["references_found"].as_u64()), (Some(356), Some(356)), "{v}");
    assert_eq!(s["references_unchecked"], unchecked, "{v}");

    // Written since the export: counted, not compared, not a difference.
    pg.sql(
        "shop",
        "UPDATE orders SET note = 'changed' WHERE id IN (10, 11, 12); DELETE FROM items WHERE n <= 4; UPDATE keyed SET v = 9 WHERE v = 1;",
    );
    let v = sampled(0);
    let s = &v["tables"]["sample"];
    assert_eq!((s["changed_since"].as_u64(), s["gone_since"].as_u64(), s["equal"].as_u64()), (Some(4), Some(4), Some(960)), "{v}");
    let items = s["tables"].as_array().unwrap().iter().find(|t| t["table"] == "public.items").unwrap();
    assert_eq!((items["rows"].as_u64(), items["gone_since"].as_u64()), (Some(600), Some(4)), "{v}");

    // A value changed in a file, a parent row dropped from a file, and a manager dropped from
    // staff (a table referencing itself, read again for its own sample's keys).
    let out = w.join("out/public");
    python(
        r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
out = sys.argv[1]
def edit(path, change):
    t = pq.read_table(path); rows = change(t.to_pylist())
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), path)
def note(rows):
    for r in rows:
        if r["id"] == 20: r["note"] = "forged"
    return rows
edit(out + "/orders/part-00000.parquet", note)
edit(out + "/customers/part-00000.parquet", lambda rows: [r for r in rows if r["id"] != 7])
edit(out + "/staff/part-00000.parquet", lambda rows: [r for r in rows if r["id"] != 4])
"#,
        &[out.to_str().unwrap()],
    );
    // A table dropped since: its rows cannot be fetched, which is named, and the others are
    // sampled all the same.
    pg.sql("shop", "DROP TABLE times;");
    let v = sampled(3);
    let of = |kind: &str| -> Vec<String> {
        v["differences"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"] == kind)
            .map(|d| d["detail"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(of("table-sample"), ["public.orders: the row with id = 20 differs from the database's in note"], "{v}");
    let errors = of("error");
    assert!(errors.len() == 1 && errors[0].starts_with("public.times: the sampled rows could not be fetched"), "{v}");
    let refs = of("table-reference");
    assert_eq!(
        refs,
        [
            "public.orders: foreign key orders_customer_fkey (customer) = (7) is not among public.customers's exported rows",
            "public.staff: foreign key staff_manager_fkey (manager) = (4) is not among public.staff's exported rows"
        ],
        "{v}"
    );
    // The rows dropped are gone from the files, as the figures say too.
    assert!(of("table-figures").iter().any(|d| d.starts_with("public.customers: rows 49")), "{v}");
    let text = ferry(w, &["verify", "--job", "j", "--sample", "100000"], &env);
    assert_eq!(text.code, 3);
    assert!(
        text.stdout.contains("table-sample: public/orders/part-00000.parquet: public.orders: the row with id = 20 differs"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("not sampled: public.loose: no primary key"), "{}", text.stdout);
}

#[test]
fn an_export_over_tls_verified_by_pgsslmode_and_pgsslrootcert_as_the_readme_documents() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start_tls();
    pg.create_db("shop");
    pg.sql("shop", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 2000) g;");
    let url = pg.url("shop");
    let ca = pg.ca.clone().unwrap();
    let verified = env(&pg, &[("PGSSLMODE".into(), "verify-full".into()), ("PGSSLROOTCERT".into(), ca.to_string_lossy().into_owned())]);
    // Without TLS the server refuses (hostnossl … reject): exit 2, nothing written.
    let plain = ferry(w, &["copy", &format!("{url}?sslmode=disable"), "out", "--table", "t", "--job", "j"], &pg.env());
    assert_eq!(plain.code, 2, "{}\n{}", plain.stdout, plain.stderr);
    assert!(!w.join("out").exists());
    // A root file that does not exist: one line naming it, exit 2.
    let missing = env(&pg, &[("PGSSLMODE".into(), "verify-full".into()), ("PGSSLROOTCERT".into(), "/nonexistent/root.crt".into())]);
    let run = ferry(w, &["copy", &url, "out", "--table", "t", "--job", "j"], &missing);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("/nonexistent/root.crt does not exist"), "{}", run.stderr);
    let run = ferry_ok(w, &["copy", &url, "out", "--table", "t", "--job", "j", "--rows-per-file", "1000", "--json"], &verified, 0).json();
    assert_eq!(run["export"]["rows"], 2000, "{run}");
    let v = ferry_ok(w, &["verify", "--job", "j", "--sample", "50", "--json"], &verified, 0).json();
    // The server takes TCP over TLS only, so both ran over verified TLS.
    assert_eq!((v["tables"]["matched"].as_u64(), v["tables"]["sample"]["equal"].as_u64()), (Some(2), Some(50)), "{v}");
}

#[test]
fn incremental_tables_replay_the_rows_written_since_as_new_files_including_late_commits_below_the_watermark() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    pg.sql(
        "shop",
        "CREATE TABLE events (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, v text);
         INSERT INTO events SELECT g, timestamptz '2024-01-01' + g * interval '1 minute', 'v' || g FROM generate_series(1, 1000) g;
         CREATE TABLE counters (id int PRIMARY KEY, n int);
         INSERT INTO counters SELECT g, 0 FROM generate_series(1, 50) g;",
    );
    let env = pg.env();
    let url = pg.url("shop");
    let base = ["copy", &url, "out", "--job", "j", "--table", "events", "--table", "counters"];
    // A column the table lacks, or one that cannot order a delta: refused, nothing written.
    for (flag, said) in [("nosuch", "public.counters: no column \"nosuch\""), ("public.events.v", "public.events: column v is text")] {
        let run = ferry(w, &[base.as_slice(), &["--incremental-by", flag]].concat(), &env);
        assert_eq!(run.code, 2, "{flag}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(said), "{flag}: {}", run.stderr);
        assert!(!w.join("out").exists() && !w.join("j/tables/spool").exists(), "{flag}: nothing written");
    }
    // Two columns for every table: which one is meant is not ferry's guess.
    let run = ferry(w, &[base.as_slice(), &["--incremental-by", "updated_at", "--incremental-by", "id"]].concat(), &env);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("more than one column given"), "{}", run.stderr);
    let args = [base.as_slice(), &["--incremental-by", "updated_at", "--incremental-by", "public.counters.id"]].concat();
    // A row written in a savepoint of a transaction open across the export, with an old
    // updated_at: the snapshot lists only the top-level transaction as in progress, so its
    // row's xmin (the savepoint's) looks seen by it, and the watermark is past it.
    let mut open = pg.session("shop");
    open.run("BEGIN; SAVEPOINT s; INSERT INTO events VALUES (7000, '2001-01-01', 'savepoint');");
    ferry_ok(w, &args, &env, 0);
    open.run("COMMIT;");
    open.close();

    // Written since: inserts and updates past the watermark; a row committed after the export
    // with an updated_at below it (a transaction that took its time before the export); an
    // update that does not move counters' id; deletes, which are not seen.
    pg.sql(
        "shop",
        "INSERT INTO events SELECT g, now(), 'new' || g FROM generate_series(1001, 1010) g;
         UPDATE events SET updated_at = now(), v = 'changed' WHERE id <= 5;
         INSERT INTO events VALUES (5000, '2000-01-01', 'late');
         DELETE FROM events WHERE id BETWEEN 100 AND 102;
         INSERT INTO counters VALUES (51, 0), (52, 0);
         UPDATE counters SET n = 7 WHERE id = 3;",
    );
    let rows = |v: &serde_json::Value| -> Vec<(String, u64)> {
        v["tables"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["table"].as_str().unwrap().into(), t["rows"].as_u64().unwrap()))
            .collect()
    };
    let dry = ferry_ok(w, &["delta", "--job", "j", "--dry-run", "--json"], &env, 0).json();
    assert_eq!(rows(&dry), [("public.counters".to_string(), 3), ("public.events".into(), 17)], "{dry}");
    assert!(!w.join("j/tables/spool/public/events/part-g0002-00000.parquet").exists(), "a dry run writes no file");
    assert!(!w.join("out/public/events/part-g0002-00000.parquet").exists());

    let text = ferry_ok(w, &["delta", "--job", "j"], &env, 0);
    assert!(
        text.stdout.contains("table public.events: 17 rows written since (past updated_at '2024-01-01 16:40:00+00'"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("rows deleted from the database are not seen"), "{}", text.stdout);
    assert!(text.stdout.contains("generation 2 (parent 1): 2 added"), "{}", text.stdout);
    let ids = python(
        r#"
import sys, pyarrow.parquet as pq
for f in sys.argv[1:]:
    print(sorted(pq.read_table(f).column("id").to_pylist()))
"#,
        &[
            w.join("out/public/events/part-g0002-00000.parquet").to_str().unwrap(),
            w.join("out/public/counters/part-g0002-00000.parquet").to_str().unwrap(),
        ],
    );
    assert_eq!(ids, "[1, 2, 3, 4, 5, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 5000, 7000]\n[3, 51, 52]\n");
    let v = ferry_ok(w, &["verify", "--job", "j", "--json"], &env, 0).json();
    assert_eq!((v["tables"]["files"].as_u64(), v["tables"]["matched"].as_u64()), (Some(4), Some(4)), "{v}");
    assert_eq!(v["tables"]["rows"].as_u64(), Some(1000 + 17 + 50 + 3), "{v}");

    // Nothing written since: no file, no generation.
    let quiet = ferry_ok(w, &["delta", "--job", "j", "--json"], &env, 0).json();
    assert_eq!(rows(&quiet), [("public.counters".to_string(), 0), ("public.events".into(), 0)], "{quiet}");
    assert_eq!(quiet["unchanged_source"], true, "{quiet}");
    // And what is written after that quiet delta is seen by the next one.
    pg.sql("shop", "UPDATE events SET v = 'again' WHERE id = 500;");
    let third = ferry_ok(w, &["delta", "--job", "j", "--json"], &env, 0).json();
    assert_eq!(rows(&third), [("public.counters".to_string(), 0), ("public.events".into(), 1)], "{third}");
    assert_eq!(third["generation"].as_u64(), Some(3), "{third}");
    assert!(w.join("out/public/events/part-g0003-00000.parquet").exists());
    let v = ferry_ok(w, &["verify", "--job", "j", "--json"], &env, 0).json();
    assert_eq!((v["tables"]["files"].as_u64(), v["tables"]["matched"].as_u64()), (Some(5), Some(5)), "{v}");
    // Sampled against the database: a row of the first generation updated since is counted
    // as changed since, its newer version in the delta's file is equal.
    let v = ferry_ok(w, &["verify", "--job", "j", "--sample", "100000", "--json"], &env, 0).json();
    let s = &v["tables"]["sample"];
    assert_eq!((s["differ"].as_u64(), s["changed_since"].as_u64()), (Some(0), Some(6 + 1)), "{v}");

    // A cutover: the final delta, then the database asked again for rows written since (the
    // second listing lists the spool, which the database does not change).
    pg.sql("shop", "INSERT INTO events VALUES (8000, now(), 'final');");
    let cut = ferry_ok(w, &["cutover", "--job", "j", "--json"], &env, 0).json();
    assert_eq!((cut["record"]["holds"].as_bool(), cut["record"]["tables_written_since"].as_u64()), (Some(true), Some(0)), "{cut}");
    assert_eq!(cut["delta"]["tables"]["tables"][1]["rows"].as_u64(), Some(1), "{cut}");

    // A column added since: the rows since would be exported without it, so refused.
    pg.sql("shop", "ALTER TABLE counters ADD COLUMN extra int; INSERT INTO counters VALUES (53, 0, 1);");
    let run = ferry(w, &["delta", "--job", "j"], &env);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("public.counters: its columns changed since its last export"), "{}", run.stderr);
}

#[test]
fn a_kill_9_during_a_delta_of_incremental_tables_is_finished_by_the_next_keeping_the_tables_done() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    pg.sql("shop", "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1); CREATE TABLE b (id bigint PRIMARY KEY, v text); INSERT INTO b VALUES (1, 'x');");
    let env = pg.env();
    let url = pg.url("shop");
    ferry_ok(w, &["copy", &url, "out", "--table", "a", "--table", "b", "--incremental-by", "id", "--job", "j"], &env, 0);
    pg.sql("shop", "INSERT INTO a VALUES (2); INSERT INTO b SELECT g, repeat(md5(g::text), 4) FROM generate_series(2, 300001) g;");
    let mut child = ferry_command(w, &["delta", "--job", "j"], &env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = w.join("j/tables/since/gen-0002/0000.json");
    for _ in 0..2400 {
        if first.exists() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(first.exists(), "killed after table a's rows were recorded");
    // A dry run counts as the delta will go on: table a's recorded file kept.
    let dry = ferry_ok(w, &["delta", "--job", "j", "--dry-run", "--json"], &env, 0).json();
    assert_eq!(dry["tables"]["tables"][0]["resumed"].as_bool(), Some(true), "{dry}");
    assert_eq!(dry["tables"]["tables"][1]["rows"].as_u64(), Some(300_000), "{dry}");
    let run = ferry_ok(w, &["delta", "--job", "j", "--json"], &env, 0).json();
    let tables = run["tables"]["tables"].as_array().unwrap();
    assert_eq!((tables[0]["rows"].as_u64(), tables[0]["resumed"].as_bool()), (Some(1), Some(true)), "{run}");
    assert_eq!((tables[1]["rows"].as_u64(), tables[1]["resumed"].as_bool()), (Some(300_000), Some(false)), "{run}");
    let v = ferry_ok(w, &["verify", "--job", "j", "--json"], &env, 0).json();
    assert_eq!((v["tables"]["matched"].as_u64(), v["tables"]["rows"].as_u64()), (Some(4), Some(2 + 300_001)), "{v}");
    let left: Vec<_> = std::fs::read_dir(w.join("j/tables/tmp")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "nothing left being written: {left:?}");
}

#[test]
fn a_delta_refuses_an_incremental_table_whose_partitions_or_columns_changed_in_ways_it_would_not_see() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pg = Postgres::start();
    pg.create_db("shop");
    pg.sql(
        "shop",
        "CREATE TABLE ev (id bigint, u timestamptz NOT NULL, v text) PARTITION BY RANGE (u);
         CREATE TABLE ev2020 PARTITION OF ev FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
         INSERT INTO ev VALUES (1, '2020-06-01', 'a'), (2, '2020-07-01', 'b');
         CREATE TABLE ev2019 (LIKE ev); INSERT INTO ev2019 VALUES (10, '2019-03-01', 'old');
         CREATE TABLE plain (id int PRIMARY KEY, v text); INSERT INTO plain VALUES (1, 'x');",
    );
    let env = pg.env();
    let url = pg.url("shop");
    ferry_ok(w, &["copy", &url, "out", "--table", "ev", "--incremental-by", "u", "--job", "p"], &env, 0);
    ferry_ok(w, &["copy", &url, "out2", "--table", "plain", "--incremental-by", "id", "--job", "c"], &env, 0);
    // A partition attached since holds rows older than the export and below the watermark.
    pg.sql("shop", "ALTER TABLE ev ATTACH PARTITION ev2019 FOR VALUES FROM ('2019-01-01') TO ('2020-01-01');");
    let run = ferry(w, &["delta", "--job", "p"], &env);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let said = &run.stderr;
    assert!(said.contains("public.ev: its columns changed since its last export (its partitions were (public.ev2020#"), "{said}");
    assert!(said.contains("now (public.ev2019#"), "{said}");
    // A column added since of a type with no Parquet form would be left out of the files.
    pg.sql("shop", "ALTER TABLE plain ADD COLUMN at point; INSERT INTO plain VALUES (2, 'y', '(1,2)');");
    let run = ferry(w, &["delta", "--job", "c"], &env);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("public.plain: its columns changed since its last export (a column now refused: public.plain.at"),
        "{}",
        run.stderr
    );

    // A table swapped in under the name, a column dropped and added again, a spool file gone,
    // a table created since in the job's schema: each would lose rows a delta does not see.
    pg.sql(
        "shop",
        "CREATE TABLE swap (id int PRIMARY KEY, u int); INSERT INTO swap VALUES (1, 1);
         CREATE TABLE swap_new (LIKE swap INCLUDING ALL); INSERT INTO swap_new VALUES (2, 0);
         CREATE TABLE redo (id int PRIMARY KEY, v int); INSERT INTO redo VALUES (1, 1);
         CREATE TABLE lost (id int PRIMARY KEY); INSERT INTO lost VALUES (1);
         CREATE SCHEMA other; CREATE TABLE other.o1 (id int PRIMARY KEY); INSERT INTO other.o1 VALUES (1);",
    );
    for (job, table) in [("s", "swap"), ("r", "redo"), ("l", "lost")] {
        ferry_ok(w, &["copy", &url, &format!("out-{job}"), "--table", table, "--incremental-by", "id", "--job", job], &env, 0);
    }
    ferry_ok(w, &["copy", &url, "out-o", "--schema", "other", "--incremental-by", "id", "--job", "o"], &env, 0);
    pg.sql(
        "shop",
        "BEGIN; ALTER TABLE swap RENAME TO swap_old; ALTER TABLE swap_new RENAME TO swap; COMMIT;
         ALTER TABLE redo DROP COLUMN v; ALTER TABLE redo ADD COLUMN v int;
         CREATE TABLE other.o2 (id int PRIMARY KEY); INSERT INTO other.o2 VALUES (1);",
    );
    std::fs::remove_file(w.join("l/tables/spool/public/lost/part-00000.parquet")).unwrap();
    for (job, said) in [
        ("s", "public.swap: its columns changed since its last export (another table has its name now"),
        ("r", "public.redo: its columns changed since its last export (a column was dropped and added again"),
        ("l", "a table file the export recorded is not in the job's spool"),
    ] {
        let run = ferry(w, &["delta", "--job", job], &env);
        assert_eq!(run.code, 2, "{job}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(said), "{job}: {}", run.stderr);
    }
    assert!(w.join("out-l/public/lost/part-00000.parquet").exists(), "nothing deleted at the destination");
    let run = ferry(w, &["delta", "--job", "o"], &env);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("table other.o2: created since the export in the job's schemas, not exported"), "{}", run.stdout);
    // A cutover does not hold while the database has a table the job does not: the source is
    // not the destination (exit 3).
    let run = ferry(w, &["cutover", "--job", "o"], &env);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("DOES NOT HOLD") && run.stdout.contains("tables: table other.o2, created since the export, is not exported"),
        "{}",
        run.stdout
    );
}
