//! Running the `ferry` binary the way a user would, with a clean environment.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Variables of the providers' standard chains, removed so the developer's own never leak in.
const CHAIN_VARS: [&str; 14] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_USE_EMULATOR",
    "AZURITE_BLOB_STORAGE_URL",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

/// `ferry ARGS` in `cwd`, with only `env` from the credential chains.
pub fn ferry_command(cwd: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let home = cwd.join(".home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.current_dir(cwd).args(args).env("HOME", &home).env("AWS_EC2_METADATA_DISABLED", "true");
    for var in CHAIN_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `ferry ARGS` with only `env` from the credential chains, in `cwd`.
pub fn ferry(cwd: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let Output { status, stdout, stderr } = ferry_command(cwd, args, env).output().expect("run ferry");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
    }
}

/// Runs ferry and panics with its output unless it exits with `code`.
pub fn ferry_ok(cwd: &Path, args: &[&str], env: &[(String, String)], code: i32) -> Run {
    let run = ferry(cwd, args, env);
    assert_eq!(run.code, code, "ferry {args:?} exited {}\nstdout:\n{}\nstderr:\n{}", run.code, run.stdout, run.stderr);
    run
}

/// The ferry binary at a path any user may run: tests that run ferry as an unprivileged user
/// cannot count on the build directory being reachable (a checkout under `/root` is not). A
/// hard link (else a copy) in a world-readable temp directory, made once per test process.
pub fn ferry_binary_for_anyone() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ferry-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("ferry");
        let _ = std::fs::remove_file(&bin);
        if std::fs::hard_link(env!("CARGO_BIN_EXE_ferry"), &bin).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_ferry"), &bin).unwrap();
        }
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    })
    .clone()
}

/// `ferry ARGS` in `cwd` as the unprivileged user nobody (65534), with a clean environment
/// (tests run as root, who may read everything). `cwd` and what ferry touches must be
/// reachable by that user.
pub fn ferry_as_nobody(cwd: &Path, args: &[&str]) -> Run {
    let inner = ferry_command(cwd, args, &[]);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(ferry_binary_for_anyone()).args(inner.get_args());
    cmd.current_dir(cwd);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("run setpriv");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A small deterministic generator, seeded per test so a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A tmpfs of `mib` MiB mounted at `dir`: a disk that really fills up. Unmounted on drop.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(dir).output().unwrap();
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs at {} failed (these tests need root to mount size-limited disks): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
