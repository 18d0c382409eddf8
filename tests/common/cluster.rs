//! A PostgreSQL cluster of a test's own, for the tests that stop the database for real (an
//! outage in the middle of a run): initdb into a temporary directory, a free port on
//! 127.0.0.1, trust authentication, fsync on; stopped and removed when the handle drops. Run
//! as the `postgres` user when the tests run as root (PostgreSQL refuses root), like
//! `scripts/with-postgres`, whose binaries (`PATH`, or `PG_BIN`) it uses.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    running: bool,
}

impl Cluster {
    /// A new cluster, started.
    pub fn start() -> Cluster {
        let bin = pg_bin();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let pg = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("a postgres user (PostgreSQL refuses to run as root)");
            nix::unistd::chown(&data, Some(pg.uid), Some(pg.gid)).unwrap();
        }
        let port = super::free_port();
        let mut c = Cluster {
            dir,
            bin,
            port,
            running: false,
        };
        let out = c
            .as_pg("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb: {out:?}");
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = on\nmax_connections = 100\n",
            data.display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        c.resume();
        c
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates database `name`; its URL.
    pub fn database(&self, name: &str) -> String {
        super::pg::try_query(&self.admin_url(), &format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        format!("postgresql://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server (fast: the sessions are cut, as in a crash of the network or the host).
    pub fn stop(&mut self) {
        let st = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(st.success(), "pg_ctl stop");
        self.running = false;
    }

    /// Starts the stopped server again, on the same port.
    pub fn resume(&mut self) {
        let log = self.data().join("server.log");
        let st = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(
            st.success(),
            "pg_ctl start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.running = true;
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `tool` of the PostgreSQL binaries, as the postgres user when we are root.
    fn as_pg(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .as_pg("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The PostgreSQL binaries: `PG_BIN`, else the newest /usr/lib/postgresql/*/bin.
fn pg_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("PG_BIN") {
        return b.into();
    }
    for v in [17, 16, 15, 14] {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if Path::new(&p).join("initdb").exists() {
            return p;
        }
    }
    panic!("no PostgreSQL binaries in /usr/lib/postgresql/*/bin (set PG_BIN)");
}
