//! A throwaway PostgreSQL cluster: `initdb` under a temporary directory, started on a unix
//! socket there and a free 127.0.0.1 port, stopped (`pg_ctl stop -m fast`) when dropped.
//!
//! PostgreSQL refuses to run as root: when this process is root, the server programs run as
//! the `postgres` user (or `nobody`) through `runuser -u USER --`, and the cluster's
//! directories are given to that user.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where Debian and Ubuntu's `postgresql-15` package puts the server programs.
pub const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The result of this module: an error is a sentence for the benchmark's output.
pub type Result<T> = std::result::Result<T, String>;

/// The PostgreSQL programs.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
    psql: PathBuf,
}

impl Binaries {
    /// Finds `initdb`, `pg_ctl` and `postgres` in `dir`, and `psql` there or on `PATH`.
    /// The error says what is missing and how to install it.
    pub fn find(dir: &Path) -> Result<Binaries> {
        let missing: Vec<&str> = ["initdb", "pg_ctl", "postgres"]
            .into_iter()
            .filter(|p| !dir.join(p).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "PostgreSQL 15 server binaries are missing ({} not in {}): install them with \
                 `apt-get install postgresql-15` (or pass --pg-bin DIR)",
                missing.join(", "),
                dir.display()
            ));
        }
        let psql = if dir.join("psql").is_file() {
            dir.join("psql")
        } else {
            PathBuf::from("psql")
        };
        Ok(Binaries {
            dir: dir.to_path_buf(),
            psql,
        })
    }

    /// The psql program.
    pub fn psql(&self) -> &Path {
        &self.psql
    }

    fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The account the server runs as when this process is root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

impl RunAs {
    /// `postgres` if the system has it, else `nobody`.
    fn pick() -> Result<RunAs> {
        let passwd = fs::read_to_string("/etc/passwd")
            .map_err(|e| format!("reading /etc/passwd to pick a non-root user: {e}"))?;
        for wanted in ["postgres", "nobody"] {
            for line in passwd.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() >= 4
                    && f[0] == wanted
                    && let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse())
                {
                    return Ok(RunAs {
                        name: wanted.to_string(),
                        uid,
                        gid,
                    });
                }
            }
        }
        Err(
            "running as root and neither a `postgres` nor a `nobody` user exists to run \
             PostgreSQL as (it refuses to run as root): create one (`useradd postgres`) or run \
             the benchmark as a normal user"
                .into(),
        )
    }

    fn give(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| format!("chown {} to {}: {e}", path.display(), self.name))
    }
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: Binaries,
    run_as: Option<RunAs>,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
    running: bool,
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {} {mode:o}: {e}", path.display()))
}

fn describe(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if text.is_empty() {
        text = stdout.trim().to_string();
    }
    let tail: Vec<&str> = text.lines().rev().take(6).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
}

/// A TCP port free on 127.0.0.1 right now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

impl Cluster {
    /// `initdb` a cluster under `root` (which must exist; made traversable for the server's
    /// user), append `settings` (`name = value` lines) to its `postgresql.conf`, and start it.
    pub fn start(bin: &Binaries, root: &Path, settings: &[String]) -> Result<Cluster> {
        let run_as = if crate::process::is_root() {
            Some(RunAs::pick()?)
        } else {
            None
        };
        let data = root.join("pgdata");
        let socket_dir = root.join("pgrun");
        for dir in [&data, &socket_dir] {
            fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        // tempfile makes its directories 0700; the server's user must reach its own below.
        set_mode(root, 0o755)?;
        set_mode(&data, 0o700)?;
        set_mode(&socket_dir, 0o755)?;
        if let Some(user) = &run_as {
            user.give(&data)?;
            user.give(&socket_dir)?;
        }
        let mut cluster = Cluster {
            bin: bin.clone(),
            run_as,
            log: socket_dir.join("server.log"),
            data,
            socket_dir,
            port: free_port()?,
            running: false,
        };

        let initdb = cluster
            .server_command("initdb", root)
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(cluster.as_root_hint(format!("initdb failed: {}", describe(&initdb))));
        }

        let mut conf = format!(
            "\n# armorlake ingest benchmark\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\n",
            cluster.port,
            cluster.socket_dir.display()
        );
        for setting in settings {
            conf.push_str(setting);
            conf.push('\n');
        }
        let conf_path = cluster.data.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| format!("writing {}: {e}", conf_path.display()))?;

        let start = cluster
            .server_command("pg_ctl", root)
            .arg("-D")
            .arg(&cluster.data)
            .arg("-l")
            .arg(&cluster.log)
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running pg_ctl start: {e}"))?;
        // Whatever happened, try to stop it when dropped.
        cluster.running = true;
        if !start.status.success() {
            let log = fs::read_to_string(&cluster.log).unwrap_or_default();
            return Err(cluster.as_root_hint(format!(
                "pg_ctl start failed: {}\n    server log: {}",
                describe(&start),
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            )));
        }
        Ok(cluster)
    }

    /// Adds what to do when the server's programs fail while this process is root.
    fn as_root_hint(&self, error: String) -> String {
        match &self.run_as {
            Some(user) => format!(
                "{error}\n    (this process is root; the server ran as `{}` via runuser)",
                user.name
            ),
            None => error,
        }
    }

    /// A server program, run as the server's user when this process is root.
    fn server_command(&self, program: &str, cwd: &Path) -> Command {
        let path = self.bin.program(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", &user.name, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        command.current_dir(cwd);
        command
    }

    /// `psql` connected to the cluster's `postgres` database over its unix socket.
    fn psql(&self) -> Command {
        let mut c = Command::new(&self.bin.psql);
        c.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .env_remove("PGOPTIONS");
        c
    }

    /// Runs `sql` and returns what psql printed (unaligned, tuples only).
    pub fn query(&self, sql: &str) -> Result<String> {
        let out = self
            .psql()
            .args(["-A", "-t", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("psql -c {sql:?} failed: {}", describe(&out)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `COPY table FROM STDIN` with `file` as psql's standard input; returns the rows
    /// PostgreSQL reports and how long psql took (connection to commit).
    pub fn copy_from(&self, table: &str, file: &Path) -> Result<(u64, Duration)> {
        let input = File::open(file).map_err(|e| format!("opening {}: {e}", file.display()))?;
        let sql = format!("COPY {} FROM STDIN", crate::copy::quote_ident(table));
        let started = Instant::now();
        let out = self
            .psql()
            .args(["-c", &sql])
            .stdin(input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        let took = started.elapsed();
        if !out.status.success() {
            return Err(format!("{sql} failed: {}", describe(&out)));
        }
        // With -q psql prints nothing; ask the table instead of parsing "COPY n".
        let rows = self
            .query(&format!(
                "SELECT count(*) FROM {}",
                crate::copy::quote_ident(table)
            ))?
            .parse()
            .map_err(|e| format!("counting rows of {table}: {e}"))?;
        Ok((rows, took))
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// `COPY table FROM STDIN` with what `write` writes as psql's standard input (COPY text),
    /// streamed: nothing goes to disk first. Returns the rows the table then holds.
    pub fn copy_streamed(
        &self,
        table: &str,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<u64> {
        let sql = format!("COPY {} FROM STDIN", crate::copy::quote_ident(table));
        let mut child = self
            .psql()
            .args(["-c", &sql])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running psql: {e}"))?;
        let written = match child.stdin.take() {
            Some(stdin) => {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, stdin);
                write(&mut out).and_then(|()| out.flush())
            }
            None => Err(std::io::Error::other("psql has no stdin")),
        };
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("{sql} failed: {}", describe(&out)));
        }
        written.map_err(|e| format!("{sql}: writing the rows: {e}"))?;
        self.query(&format!(
            "SELECT count(*) FROM {}",
            crate::copy::quote_ident(table)
        ))?
        .parse()
        .map_err(|e| format!("counting rows of {table}: {e}"))
    }

    /// The postmaster's process id (first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The server's version string.
    pub fn version(&self) -> Result<String> {
        self.query("SHOW server_version")
    }

    /// Stops the server (`pg_ctl stop -m fast`); also done on drop.
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let root = self.data.parent().unwrap_or(Path::new("/")).to_path_buf();
        let out = self
            .server_command("pg_ctl", &root)
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", "fast", "stop"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running pg_ctl stop: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("pg_ctl stop failed: {}", describe(&out)))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("warning: {e}");
        }
    }
}
