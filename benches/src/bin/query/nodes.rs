//! armorlake processes started from the release `armorlake` binary, all on 127.0.0.1: the
//! simulators, a master, the operators, a query node, and `armorlake up`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a process may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The `armorlake` binary: `explicit`, else next to this benchmark's own binary (both are in
/// `$CARGO_TARGET_DIR/release/`), else `$CARGO_TARGET_DIR/release/armorlake`.
pub fn find_armorlake(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return match path.is_file() {
            true => Ok(path.to_path_buf()),
            false => Err(format!("--armorlake {}: no such file", path.display())),
        };
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join("armorlake"));
    }
    if let Ok(target) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(Path::new(&target).join("release").join("armorlake"));
    }
    candidates.push(PathBuf::from("target/release/armorlake"));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "the release armorlake binary is missing: run `cargo build --release -p armorlake` \
         first (or pass --armorlake PATH)"
            .into()
    })
}

/// A child process, killed when dropped. Its stderr (the log) goes to a file.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `cmd`, logging to `<log_dir>/<name>.log`, and waits until it prints a line
    /// containing `ready`; returns the process and that line.
    fn start(
        name: &str,
        mut cmd: Command,
        ready: &str,
        log_dir: &Path,
    ) -> Result<(Proc, String), String> {
        let log = log_dir.join(format!("{name}.log"));
        let log_file =
            File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        cmd.stdout(Stdio::piped())
            .stderr(log_file)
            .stdin(Stdio::null())
            .env("RUST_LOG", "warn");
        let mut child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the ready line so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut proc = Proc {
            name: name.to_string(),
            child,
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(ready) => return Ok((proc, line)),
                Ok(_) => continue,
                Err(_) => {
                    let _ = proc.child.kill();
                    return Err(format!(
                        "{name} never printed {ready:?}; its log ends with: {}",
                        proc.log_tail()
                    ));
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its log, or why it exited.
    pub fn log_tail(&mut self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let mut out = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
        if let Ok(Some(status)) = self.child.try_wait() {
            out.push_str(&format!(" (exited: {status})"));
        }
        out
    }

    /// An error when the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            _ => {
                let tail = self.log_tail();
                Err(format!("{} exited: {tail}", self.name))
            }
        }
    }
}

/// The last whitespace-separated word of a line (an address).
fn last_word(line: &str) -> String {
    line.rsplit(' ').next().unwrap_or_default().to_string()
}

/// The port after `-p` in a "... psql -h HOST -p PORT ..." ready line.
fn psql_port(line: &str) -> Result<u16, String> {
    line.split_whitespace()
        .skip_while(|w| *w != "-p")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {line:?}"))
}

/// Starts armorlake's processes.
pub struct Launcher {
    /// The `armorlake` binary.
    pub bin: PathBuf,
    /// Where logs go.
    pub log_dir: PathBuf,
}

/// A simulator process and its gRPC address.
pub struct SimProc {
    #[expect(dead_code, reason = "held for its Drop, which stops the process")]
    pub proc: Proc,
    pub addr: String,
}

/// A process serving PostgreSQL clients.
pub struct PgProc {
    pub proc: Proc,
    pub port: u16,
}

impl Launcher {
    fn command(&self) -> Command {
        Command::new(&self.bin)
    }

    /// `armorlake kubearmor-sim` at full speed, `count` events from `start` on (one per ms).
    pub fn sim(&self, name: &str, seed: u64, count: u64, start: &str) -> Result<SimProc, String> {
        let mut cmd = self.command();
        cmd.args(["kubearmor-sim", "--listen", "127.0.0.1:0", "--rate", "0"])
            .args(["--seed", &seed.to_string(), "--count", &count.to_string()])
            .args(["--start", start]);
        let (proc, line) = Proc::start(name, cmd, "listening on", &self.log_dir)?;
        Ok(SimProc {
            proc,
            addr: last_word(&line),
        })
    }

    /// `armorlake master`; returns it and its URL.
    pub fn master(&self, data_dir: &Path) -> Result<(Proc, String), String> {
        let mut cmd = self.command();
        cmd.args(["master", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        let (proc, line) = Proc::start("master", cmd, "master is listening on", &self.log_dir)?;
        Ok((proc, format!("http://{}", last_word(&line))))
    }

    /// `armorlake operator` named `name` (its own cluster) pulling from `sim`.
    pub fn operator(
        &self,
        master: &str,
        name: &str,
        sim: &str,
        data_dir: &Path,
    ) -> Result<Proc, String> {
        let mut cmd = self.command();
        cmd.args(["operator", "--master", master, "--name", name])
            .args(["--cluster", name, "--listen", "127.0.0.1:0"])
            .args(["--kubearmor", sim, "--data-dir"])
            .arg(data_dir);
        let ready = format!("operator {name} is running");
        Ok(Proc::start(name, cmd, &ready, &self.log_dir)?.0)
    }

    /// `armorlake query` over `master`.
    pub fn query(&self, master: &str) -> Result<PgProc, String> {
        let mut cmd = self.command();
        cmd.args(["query", "--master", master, "--pg-listen", "127.0.0.1:0"]);
        let (proc, line) = Proc::start("query", cmd, "query node is ready", &self.log_dir)?;
        Ok(PgProc {
            port: psql_port(&line)?,
            proc,
        })
    }

    /// `armorlake up` pulling from every simulator in `sims`.
    pub fn up(&self, sims: &[String], data_dir: &Path) -> Result<PgProc, String> {
        let mut cmd = self.command();
        cmd.args([
            "up",
            "--pg-listen",
            "127.0.0.1:0",
            "--flight-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir);
        for sim in sims {
            cmd.args(["--kubearmor", sim]);
        }
        let (proc, line) = Proc::start("up", cmd, "armorlake is ready", &self.log_dir)?;
        Ok(PgProc {
            port: psql_port(&line)?,
            proc,
        })
    }
}

/// The Parquet files of one store (`<table>/<day>/<hour>/*.parquet`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Layout {
    /// Table-hours with at least one file.
    pub hours: usize,
    pub files: usize,
    /// Rows in the newest file of each table-hour. Once an hour is compacted its newest file
    /// holds all its rows; the files it replaced may stay a while (until no snapshot holds
    /// them).
    pub newest_rows: u64,
    /// A file is being written.
    pub writing: bool,
}

/// Reads the layout of the store under `data_dir`. File names start with their creation
/// time in hex, so the greatest name is the newest file.
pub fn parquet_layout(data_dir: &Path) -> Layout {
    let mut layout = Layout::default();
    let mut stack = vec![(data_dir.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut newest: Option<PathBuf> = None;
        let mut here = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if depth < 3 {
                    stack.push((path, depth + 1));
                }
            } else if path.extension().is_some_and(|e| e == "parquet") {
                here += 1;
                if newest
                    .as_ref()
                    .is_none_or(|n| path.file_name() > n.file_name())
                {
                    newest = Some(path);
                }
            } else if path.to_string_lossy().ends_with(".parquet.tmp") {
                layout.writing = true;
            }
        }
        if let Some(newest) = newest {
            layout.hours += 1;
            layout.files += here;
            layout.newest_rows += parquet_rows(&newest);
        }
    }
    layout
}

/// Rows of a Parquet file (0 when it cannot be read, e.g. deleted meanwhile).
fn parquet_rows(path: &Path) -> u64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    File::open(path)
        .ok()
        .and_then(|f| SerializedFileReader::new(f).ok())
        .map(|r| r.metadata().file_metadata().num_rows().max(0) as u64)
        .unwrap_or(0)
}
