//! DuckDB over the same rows, through its Python package: a small script loads the Parquet
//! files into a DuckDB database file and times each query in-process (no wire protocol).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::client::Timing;
use crate::data::TableFiles;
use crate::queries::{Answer, Query};

/// The script: reads its JSON config, loads, runs each query once untimed then `runs` times
/// timed, and prints one JSON object.
const SCRIPT: &str = r#"
import json, os, sys, time
import duckdb

def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)

def text(v):
    if v is None:
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)

cfg = json.load(open(sys.argv[1]))
db = duckdb.connect(cfg["database"])
try:
    db.execute("SET TimeZone = 'UTC'")
except Exception:
    pass
started = time.perf_counter()
for name, path in cfg["tables"].items():
    quoted = path.replace("'", "''")
    db.execute(f'CREATE TABLE "{name}" AS SELECT * FROM read_parquet(\'{quoted}\')')
load = time.perf_counter() - started
busy0, total0 = machine()
cpu0, wall0 = time.process_time(), time.perf_counter()
results = []
for sql in cfg["queries"]:
    entry = {"runs": [], "answer": None, "error": None}
    try:
        rows = db.execute(sql).fetchall()
        entry["answer"] = [[text(v) for v in row] for row in rows]
        for _ in range(cfg["runs"]):
            t0 = time.perf_counter()
            db.execute(sql).fetchall()
            entry["runs"].append(time.perf_counter() - t0)
    except Exception as e:
        entry["error"] = str(e)
    results.append(entry)
cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
busy1, total1 = machine()
cores = os.cpu_count() or 1
busy = (busy1 - busy0) / max(total1 - total0, 1) * cores
threads = db.execute("SELECT current_setting('threads')").fetchone()[0]
print(json.dumps({
    "version": duckdb.__version__,
    "threads": threads,
    "load_seconds": load,
    "own_cores": cpu / max(wall, 1e-9),
    "others_cores": max(busy - cpu / max(wall, 1e-9), 0.0),
    "results": results,
}))
"#;

/// What the DuckDB part measured.
#[derive(Debug)]
pub struct DuckDb {
    pub version: String,
    pub threads: String,
    pub load: Duration,
    pub own_cores: f64,
    pub others_cores: f64,
    pub timings: Vec<Timing>,
}

/// A Python with the `duckdb` package: `explicit`, else a venv created under `dir`
/// (`python3 -m venv` + `pip install duckdb pytz`; pytz converts TIMESTAMPTZ values).
pub fn python(explicit: Option<&Path>, dir: &Path) -> Result<PathBuf, String> {
    if let Some(python) = explicit {
        return Ok(python.to_path_buf());
    }
    let venv = dir.join("duckdb-venv");
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{what}: {e}"))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    let python = venv.join("bin").join("python");
    run(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", "duckdb", "pytz"]),
        "pip install duckdb",
    )?;
    Ok(python)
}

/// Loads `files` into a DuckDB database under `dir` and times `queries`.
pub fn run(
    python: &Path,
    dir: &Path,
    files: &[TableFiles],
    queries: &[Query],
    runs: usize,
) -> Result<DuckDb, String> {
    let script = dir.join("duckdb_bench.py");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("writing the script: {e}"))?;
    let tables: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|f| {
            let path = serde_json::Value::String(f.parquet.display().to_string());
            (f.table.to_string(), path)
        })
        .collect();
    let config = serde_json::json!({
        "database": dir.join("bench.duckdb").display().to_string(),
        "tables": tables,
        "queries": queries.iter().map(|q| q.sql.clone()).collect::<Vec<_>>(),
        "runs": runs,
    });
    let config_path = dir.join("duckdb_bench.json");
    std::fs::write(&config_path, config.to_string())
        .map_err(|e| format!("writing the config: {e}"))?;
    let out = Command::new(python)
        .arg(&script)
        .arg(&config_path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "the DuckDB script failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("reading the DuckDB script's output: {e}"))?;
    let seconds = |x: &serde_json::Value| Duration::from_secs_f64(x.as_f64().unwrap_or(0.0));
    let timings = v["results"]
        .as_array()
        .ok_or("no results")?
        .iter()
        .map(|r| {
            let mut runs: Vec<Duration> = r["runs"]
                .as_array()
                .map(|a| a.iter().map(seconds).collect())
                .unwrap_or_default();
            runs.sort();
            let answer = match r["error"].as_str() {
                Some(e) => Err(e.to_string()),
                None => Ok(answer_of(&r["answer"])),
            };
            Timing { runs, answer }
        })
        .collect();
    Ok(DuckDb {
        version: v["version"].as_str().unwrap_or("?").to_string(),
        threads: v["threads"].to_string(),
        load: seconds(&v["load_seconds"]),
        own_cores: v["own_cores"].as_f64().unwrap_or(0.0),
        others_cores: v["others_cores"].as_f64().unwrap_or(0.0),
        timings,
    })
}

fn answer_of(v: &serde_json::Value) -> Answer {
    v.as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|vals| {
                            vals.iter()
                                .map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}
