//! The same conductor on PostgreSQL: the test starts a private PostgreSQL cluster in a temporary
//! directory on a free loopback port (`.ci/setup` installs the server), and stops it after.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::Method;
use serde_json::json;

use crate::support::{TestConductor, call, walk};

struct Postgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
}

fn pg_bin() -> PathBuf {
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
    fn start() -> Self {
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

    fn url(&self) -> String {
        format!("postgres://rivet@127.0.0.1:{}/rivet", self.port)
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

#[tokio::test]
async fn the_conductor_runs_on_postgresql() {
    let pg = Postgres::start();
    let url = pg.url();
    let c = TestConductor::start_with(|config| config.database_url = url).await;
    let (status, node) = call(
        Method::POST,
        c.url("/v1/nodes"),
        Some(json!({"driver": "fake-hardware", "name": "pg-node"})),
    )
    .await;
    assert_eq!(status, 201, "{node}");
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let (status, _) = call(
        Method::POST,
        c.url("/v1/ports"),
        Some(json!({"address": "52:54:00:aa:00:09", "node_uuid": uuid})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        Method::POST,
        c.url("/v1/ports"),
        Some(json!({"address": "52:54:00:aa:00:09", "node_uuid": uuid})),
    )
    .await;
    assert_eq!(status, 409, "unique MACs are enforced by PostgreSQL too");
    walk(
        &c,
        &uuid,
        &[("manage", "manageable"), ("provide", "available"), ("active", "active")],
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let url = c.url(&format!("/v1/nodes/{uuid}"));
        tasks.push(tokio::spawn(async move {
            call(
                Method::PATCH,
                url,
                Some(json!([{"op": "add", "path": format!("/extra/k{i}"), "value": i}])),
            )
            .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task").0, 200);
    }
    let (_, doc) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(doc["extra"].as_object().map(|e| e.len()), Some(12));
    c.running.stop().await.expect("stops");
}
