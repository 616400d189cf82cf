//! A private PostgreSQL cluster for tests: started in a temporary directory on a free loopback
//! port from the Debian server's binaries (`.ci/setup` installs them), stopped when dropped.
//! Shared by the conductor's own tests (through `#[path]`) and the take-over test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
}

/// The newest installed server's bin directory.
pub fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL server binaries are needed: run `bash .ci/test` (it installs postgresql)")
    })
}

fn as_postgres(bin: &Path, tool: &str, args: &[&str]) {
    // initdb refuses to run as root; the cluster belongs to the postgres user.
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .status()
        .expect("runuser");
    assert!(status.success(), "{tool} {args:?} failed");
}

impl Postgres {
    /// initdb and start a cluster owned by the postgres user, with database `rivet`.
    pub fn start() -> Self {
        let bin = pg_bin();
        let data = tempfile::tempdir().expect("tempdir");
        let chown = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(data.path())
            .status()
            .expect("chown");
        assert!(chown.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = data.path().to_str().expect("utf-8 path").to_owned();
        as_postgres(
            &bin,
            "initdb",
            &["-D", &format!("{dir}/db"), "-A", "trust", "-U", "rivet", "-E", "UTF8"],
        );
        let options = format!("-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off");
        as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D",
                &format!("{dir}/db"),
                "-o",
                &options,
                "-l",
                &format!("{dir}/log"),
                "-w",
                "start",
            ],
        );
        as_postgres(
            &bin,
            "createdb",
            &["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "rivet", "rivet"],
        );
        Postgres { bin, data, port }
    }

    /// `postgres://rivet@127.0.0.1:PORT/rivet`.
    pub fn url(&self) -> String {
        format!("postgres://rivet@127.0.0.1:{}/rivet", self.port)
    }

    /// One SQL query through psql: the rows, each as `|`-separated columns.
    pub fn query(&self, sql: &str) -> Vec<String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "rivet",
                "-d",
                "rivet",
                "-At",
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let dir = format!("{}/db", self.data.path().display());
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &dir, "-m", "immediate", "stop"])
            .status();
    }
}
