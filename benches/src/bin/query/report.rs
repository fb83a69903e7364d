//! What the benchmark prints.

use std::time::Duration;

use armorlake_benches::process::Machine;
use armorlake_benches::{human_bytes, thousands};
use armorlake_common::Table;

use crate::SystemRun;
use crate::data::Dataset;
use crate::pg::Postgres;
use crate::queries::{Query, differs};

/// Goals of the issue, printed next to the figures (never asserted).
const GOAL_VS_POSTGRES: f64 = 0.1;
const GOAL_VS_DUCKDB: f64 = 1.5;
const GOAL_VS_SINGLE: f64 = 1.1;
const GOAL_POINT_LOOKUP: Duration = Duration::from_millis(5);
/// Other processes using more than this many cores make a figure noisy.
const NOISY_CORES: f64 = 0.2;

/// A duration in ms (or s above 10 s).
fn time(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

fn noise(others_cores: f64) -> &'static str {
    if others_cores > NOISY_CORES {
        " (NOISY)"
    } else {
        ""
    }
}

pub fn print_setup(machine: &Machine, data: &Dataset, runs: usize) {
    println!(
        "armorlake query benchmark: {} events over {} operators; each query run once untimed, \
         then {runs} times timed (p50 shown)",
        thousands(data.events()),
        data.sources.len()
    );
    println!(
        "machine: {} cores, {} RAM, {}",
        machine.cores,
        human_bytes(machine.ram),
        machine.cpu
    );
    for s in &data.sources {
        let end = s.start + chrono::TimeDelta::milliseconds(s.events as i64);
        println!(
            "  {}: simulator seed {}, {} events, one per ms from {} to {} (alerts {}, logs {}, \
             messages {})",
            s.operator,
            s.seed,
            thousands(s.events),
            s.start.format("%Y-%m-%d %H:%M"),
            end.format("%H:%M:%S"),
            thousands(s.per_table[Table::Alerts.index()]),
            thousands(s.per_table[Table::Logs.index()]),
            thousands(s.per_table[Table::Messages.index()]),
        );
    }
}

pub fn print_postgres(p: &Postgres, settings: &[String]) {
    let settings = match settings.is_empty() {
        true => "default settings (shared_buffers 128MB, work_mem 4MB)".to_string(),
        false => format!("defaults plus {}", settings.join(", ")),
    };
    println!(
        "PostgreSQL {}: {settings}; loaded in {:.1} s, tables + indexes {}",
        p.version,
        p.load.as_secs_f64(),
        human_bytes(p.relation_bytes)
    );
}

pub fn print_system(run: &SystemRun, queries: &[Query]) {
    println!("\n{}:", run.name);
    println!(
        "  {:<28} {:>10} {:>10} {:>10} {:>7}",
        "query", "p50", "min", "max", "rows"
    );
    for (q, t) in queries.iter().zip(&run.timings) {
        match (&t.answer, t.p50()) {
            (Ok(answer), Some(p50)) => println!(
                "  {:<28} {:>10} {:>10} {:>10} {:>7}",
                q.name,
                time(p50),
                time(t.runs[0]),
                time(t.runs[t.runs.len() - 1]),
                answer.len()
            ),
            (Err(e), _) => println!("  {:<28} FAILED: {e}", q.name),
            (Ok(_), None) => println!("  {:<28} no timed run", q.name),
        }
    }
    println!(
        "  while timing: {} kept {:.2} cores busy, other processes {:.2} cores{}",
        run.name,
        run.own_cores,
        run.others_cores,
        noise(run.others_cores)
    );
}

/// `a / b` of the p50s, when both ran.
fn ratio(a: &crate::client::Timing, b: Option<&crate::client::Timing>) -> Option<f64> {
    let (a, b) = (a.p50()?, b?.p50()?);
    Some(a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

fn show_ratio(r: Option<f64>, goal: f64) -> String {
    match r {
        Some(r) => format!("{r:.2}×{}", if r <= goal { "" } else { "!" }),
        None => "—".into(),
    }
}

pub fn print_summary(
    data: &Dataset,
    queries: &[Query],
    cluster: &SystemRun,
    single: &SystemRun,
    others: &[SystemRun],
) {
    let find = |name: &str| others.iter().find(|r| r.name == name);
    let pg = find("PostgreSQL");
    let duck = find("DuckDB");
    println!(
        "\nsummary: p50 per query, {} events (! = above the goal; information, not \
         assertions)",
        thousands(data.events()),
    );
    let p50 = |run: Option<&SystemRun>, i: usize| {
        run.and_then(|r| r.timings[i].p50())
            .map(time)
            .unwrap_or_else(|| "—".into())
    };
    println!(
        "  {:<28} {:>10} {:>10} {:>10} {:>10} | {:>9} {:>9} {:>9}",
        "query", "cluster", "up", "PostgreSQL", "DuckDB", "÷ PG", "÷ DuckDB", "÷ up"
    );
    let mut ratios: [Vec<f64>; 3] = Default::default();
    let mut met = [0usize; 3];
    let goals = [GOAL_VS_POSTGRES, GOAL_VS_DUCKDB, GOAL_VS_SINGLE];
    for (i, q) in queries.iter().enumerate() {
        let c = &cluster.timings[i];
        let rs = [
            ratio(c, pg.map(|r| &r.timings[i])),
            ratio(c, duck.map(|r| &r.timings[i])),
            ratio(c, Some(&single.timings[i])),
        ];
        for k in 0..3 {
            if let Some(r) = rs[k] {
                ratios[k].push(r);
                met[k] += usize::from(r <= goals[k]);
            }
        }
        println!(
            "  {:<28} {:>10} {:>10} {:>10} {:>10} | {:>9} {:>9} {:>9}",
            q.name,
            p50(Some(cluster), i),
            p50(Some(single), i),
            p50(pg, i),
            p50(duck, i),
            show_ratio(rs[0], goals[0]),
            show_ratio(rs[1], goals[1]),
            show_ratio(rs[2], goals[2]),
        );
    }
    let geo = |v: &Vec<f64>| match v.is_empty() {
        true => "—".to_string(),
        false => format!(
            "{:.2}×",
            (v.iter().map(|r| r.ln()).sum::<f64>() / v.len() as f64).exp()
        ),
    };
    println!(
        "  {:<28} {:>10} {:>10} {:>10} {:>10} | {:>9} {:>9} {:>9}",
        "geometric mean",
        "",
        "",
        "",
        "",
        geo(&ratios[0]),
        geo(&ratios[1]),
        geo(&ratios[2])
    );
    println!(
        "  {:<28} {:>10} {:>10} {:>10} {:>10} | {:>9} {:>9} {:>9}",
        "goal", "", "", "", "", "≤ 0.1×", "≤ 1.5×", "≤ 1.1×"
    );
    let count = |k: usize| match ratios[k].is_empty() {
        true => "—".to_string(),
        false => format!("{}/{}", met[k], ratios[k].len()),
    };
    println!(
        "  {:<28} {:>10} {:>10} {:>10} {:>10} | {:>9} {:>9} {:>9}",
        "queries meeting the goal",
        "",
        "",
        "",
        "",
        count(0),
        count(1),
        count(2)
    );
    if let Some(i) = queries
        .iter()
        .position(|q| q.name.starts_with("point lookup"))
        && let Some(p) = cluster.timings[i].p50()
    {
        println!(
            "  point lookup p50 on the cluster: {} (goal ≤ {} ms): {}",
            time(p),
            GOAL_POINT_LOOKUP.as_millis(),
            if p <= GOAL_POINT_LOOKUP {
                "met"
            } else {
                "not met"
            }
        );
    }
    let noisy: Vec<String> = std::iter::once(cluster)
        .chain(std::iter::once(single))
        .chain(others.iter())
        .map(|r| format!("{} {:.2}{}", r.name, r.others_cores, noise(r.others_cores)))
        .collect();
    println!(
        "  other processes' cores while timing: {}",
        noisy.join(", ")
    );
    print_agreement(queries, cluster, single, others);
}

/// Compares every system's answers with the cluster's; warns on a mismatch.
fn print_agreement(
    queries: &[Query],
    cluster: &SystemRun,
    single: &SystemRun,
    others: &[SystemRun],
) {
    let mut checked = 0;
    let mut warnings = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let Ok(reference) = &cluster.timings[i].answer else {
            continue;
        };
        for other in std::iter::once(single).chain(others.iter()) {
            let Ok(answer) = &other.timings[i].answer else {
                continue;
            };
            checked += 1;
            if let Some(what) = differs(q.compare, reference, answer) {
                warnings.push(format!(
                    "{}: cluster and {} differ: {what}",
                    q.name, other.name
                ));
            }
        }
    }
    if warnings.is_empty() {
        println!("  answers: the cluster agrees with every other system ({checked} comparisons)");
    } else {
        for w in &warnings {
            println!("  WARNING: {w}");
        }
        println!(
            "  answers: {} of {checked} comparisons differ",
            warnings.len()
        );
    }
}
