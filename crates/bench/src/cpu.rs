//! CPU time per process over a figure (Linux `/proc`), to say what limits it: each
//! `reactivation serve <service>` child of the bench, the bench itself, and the
//! PostgreSQL backends connected to the product's database.
//!
//! Backends are found through `pg_stat_activity` at the end of the window; a backend
//! that ended during it is missed, one that started during it counts from zero (the
//! services' pools keep their connections, so this is rare).

use std::{collections::BTreeMap, time::Instant};

use sqlx::PgPool;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// utime + stime of a process, in ticks, from the text of `/proc/<pid>/stat`.
pub fn ticks_of_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn proc_ticks(pid: u32) -> Option<(u32, u64)> {
    ticks_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The `serve` argument of a process's command line (`reactivation serve gateway`).
fn service_of(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let at = args.iter().position(|a| *a == b"serve")?;
    Some(String::from_utf8_lossy(args.get(at + 1)?).into_owned())
}

/// Ticks per process group at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    at: Option<Instant>,
    ticks: BTreeMap<String, u64>,
}

/// Reads the ticks of the bench, its `serve` children and the product database's backends.
pub async fn sample(product: &PgPool) -> Sample {
    let me = std::process::id();
    let mut ticks = BTreeMap::new();
    if let Some((_, t)) = proc_ticks(me) {
        ticks.insert("bench".to_owned(), t);
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, t)) = proc_ticks(pid)
                && ppid == me
                && let Some(service) = service_of(pid)
            {
                *ticks.entry(service).or_default() += t;
            }
        }
    }
    let backends: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(product)
    .await
    .unwrap_or_default();
    let pg: u64 = backends
        .iter()
        .filter_map(|p| u32::try_from(*p).ok())
        .filter_map(proc_ticks)
        .map(|(_, t)| t)
        .sum();
    ticks.insert("postgres (product db)".to_owned(), pg);
    Sample {
        at: Some(Instant::now()),
        ticks,
    }
}

/// Per process group, the share of one core used between `a` and `b` (1.0 = a whole
/// core), largest first.
pub fn usage(a: &Sample, b: &Sample) -> Vec<(String, f64)> {
    let secs = match (a.at, b.at) {
        (Some(x), Some(y)) => (y - x).as_secs_f64(),
        _ => 0.0,
    };
    let mut out: Vec<(String, f64)> = b
        .ticks
        .iter()
        .map(|(name, t)| {
            let before = a.ticks.get(name).copied().unwrap_or(0);
            let cores = if secs > 0.0 {
                t.saturating_sub(before) as f64 / TICKS_PER_S / secs
            } else {
                0.0
            };
            (name.clone(), cores)
        })
        .collect();
    out.sort_by(|x, y| y.1.total_cmp(&x.1));
    out
}

/// `gateway 0.62, postgres 0.40, …` (cores).
pub fn describe(usage: &[(String, f64)]) -> String {
    usage
        .iter()
        .filter(|(_, c)| *c >= 0.01)
        .map(|(n, c)| format!("{n} {c:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name() {
        let stat =
            "4242 (tokio rt (x)) S 77 4242 4242 0 -1 4194560 500 0 0 0 130 25 0 0 20 0 9 0 100 0 0";
        assert_eq!(ticks_of_stat(stat), Some((77, 155)));
        assert_eq!(ticks_of_stat("garbage"), None);
    }

    #[test]
    fn usage_is_cores_over_the_window() {
        let t0 = Instant::now();
        let a = Sample {
            at: Some(t0),
            ticks: [("gateway".to_owned(), 100), ("risk".to_owned(), 0)].into(),
        };
        let b = Sample {
            at: Some(t0 + std::time::Duration::from_secs(2)),
            ticks: [
                ("gateway".to_owned(), 200),
                ("risk".to_owned(), 50),
                ("new".to_owned(), 20),
            ]
            .into(),
        };
        let u = usage(&a, &b);
        assert_eq!(u[0], ("gateway".to_owned(), 0.5));
        assert_eq!(u[1], ("risk".to_owned(), 0.25));
        assert_eq!(u[2], ("new".to_owned(), 0.1));
        assert_eq!(describe(&u), "gateway 0.50, risk 0.25, new 0.10");
    }
}
