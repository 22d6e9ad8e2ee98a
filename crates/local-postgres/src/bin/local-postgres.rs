//! `local-postgres start DATA_DIR PORT DBNAME` starts (or reuses) a private
//! cluster, creates the database if missing and prints its URL as the only
//! line on stdout; `local-postgres stop DATA_DIR` stops it.

use std::path::Path;
use std::process::ExitCode;

use local_postgres::LocalCluster;

const USAGE: &str = "usage:
  local-postgres start DATA_DIR PORT DBNAME   start (or reuse) the cluster, create DBNAME, print its URL
  local-postgres stop DATA_DIR                stop the cluster (fine if it is not running)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["start", data_dir, port, db] => {
            let Some(port) = port.parse::<u16>().ok().filter(|p| *p != 0) else {
                eprintln!("local-postgres: PORT must be a number from 1 to 65535, not {port:?}");
                return ExitCode::from(2);
            };
            start(Path::new(data_dir), port, db)
        }
        ["stop", data_dir] => LocalCluster::stop_dir(Path::new(data_dir)),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-postgres: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start(data_dir: &Path, port: u16, db: &str) -> Result<(), local_postgres::Error> {
    let cluster = LocalCluster::start(data_dir, port)?;
    cluster.ensure_database(db)?;
    println!("{}", cluster.database_url(db));
    Ok(())
}
