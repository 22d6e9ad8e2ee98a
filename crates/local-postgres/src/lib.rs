//! Private PostgreSQL clusters for development and tests, run from the
//! system's own server binaries.
//!
//! This crate owns: finding the server binaries (`initdb`, `pg_ctl`,
//! `postgres`), creating a cluster in a data directory the caller names,
//! starting it on `127.0.0.1` at a port the caller names, creating a database
//! in it, handing out its URL, and stopping it. When the process runs as
//! root, every server-side command runs as the `postgres` system user
//! (PostgreSQL refuses to run as root) and the files that user needs are
//! handed to it.
//!
//! It must not: install packages (it only names the Debian package to
//! install), touch the system's own clusters (`/etc/postgresql`,
//! `/var/lib/postgresql`, the system service), listen anywhere but
//! `127.0.0.1`, manage passwords or other credentials (clusters use trust
//! auth and are for local use only), run SQL beyond checking for and creating
//! a database, know anything about the product's schema or migrations, stop
//! a cluster behind the caller's back (dropping a [`LocalCluster`] leaves it
//! running, so the next start reuses it), or use `unsafe` code.
//!
//! Files, for a data directory `DIR/NAME`: the server log is `DIR/NAME.log`,
//! the Unix socket directory `DIR/NAME.sock` (or a per-user directory under
//! the system temp dir when that path would be too long for a socket), and a
//! short-lived lock `DIR/NAME.lock` keeps two processes from initialising or
//! starting the same cluster at once.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The Debian package that provides the server binaries.
pub const SERVER_PACKAGE: &str = "postgresql";

/// Where Debian installs each major version's binaries (`/usr/lib/postgresql/15/bin`).
const DEBIAN_LIB_ROOT: &str = "/usr/lib/postgresql";
/// The system user that runs the server when this process is root.
const SERVICE_USER: &str = "postgres";
/// The database superuser `initdb` creates and every URL names.
const SUPERUSER: &str = "postgres";
/// How long to wait for the server to accept TCP connections after `pg_ctl start`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for another process that is starting the same cluster.
const LOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// How many lines of a command's stderr or of the server log an error carries.
const TAIL_LINES: usize = 20;
/// Unix socket paths longer than this fall back to a directory under the temp dir
/// (the kernel limit is 107 bytes).
const MAX_SOCKET_PATH: usize = 100;

/// Everything that can go wrong while locating, starting, using or stopping a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No directory holding `initdb`, `pg_ctl` and `postgres` together (and
    /// answering `--version`) was found on `PATH` or under `/usr/lib/postgresql/*/bin`.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under /usr/lib/postgresql/*/bin; install them with `apt-get install postgresql`"
    )]
    NotInstalled,

    /// A client program this step needs (such as `psql`) is missing from the bin dir.
    #[error(
        "`{program}` not found in {bin_dir}; install the PostgreSQL client with `apt-get install postgresql-client`"
    )]
    MissingProgram {
        /// The program that is missing.
        program: &'static str,
        /// The bin dir it was looked for in.
        bin_dir: PathBuf,
    },

    /// The data directory path cannot hold a cluster (no parent, no name, or a file).
    #[error("cannot use {path} as a data directory: {reason}")]
    InvalidDataDir {
        /// The data directory as given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: &'static str,
    },

    /// A server setting's name or value is not plain (letters, digits, `_`, `.`, `-`).
    #[error(
        "invalid server setting {name:?}: names and values are letters, digits, '_', '.' or '-'"
    )]
    InvalidSetting {
        /// The setting's name.
        name: String,
    },

    /// The database name is empty, too long or contains a NUL byte.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabaseName {
        /// The name as given.
        name: String,
        /// Why it cannot be used.
        reason: &'static str,
    },

    /// A filesystem operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done ("create directory", "read", ...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A command could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{stderr_tail}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// The last lines of its stderr (or stdout when stderr was empty).
        stderr_tail: String,
    },

    /// `pg_ctl start` failed; the server log usually says why (port taken, bad permissions).
    #[error(
        "`{command}` failed ({status}):\n{stderr_tail}\nserver log {} ends with:\n{log_tail}",
        log.display()
    )]
    StartFailed {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// The last lines of its stderr.
        stderr_tail: String,
        /// The server log file.
        log: PathBuf,
        /// The last lines of the server log.
        log_tail: String,
    },

    /// The server started but did not accept TCP connections in time.
    #[error(
        "the server in {} started but 127.0.0.1:{port} did not accept TCP connections within {waited_secs} s; server log {} ends with:\n{log_tail}",
        data_dir.display(),
        log.display()
    )]
    NotReady {
        /// The cluster's data directory.
        data_dir: PathBuf,
        /// The port that never answered.
        port: u16,
        /// How long we waited.
        waited_secs: u64,
        /// The server log file.
        log: PathBuf,
        /// The last lines of the server log.
        log_tail: String,
    },

    /// The cluster is already running, but on another port than the one asked for.
    #[error(
        "the cluster in {} is already running on port {running}, not {requested}; stop it first with `local-postgres stop {}`",
        data_dir.display(),
        data_dir.display()
    )]
    PortMismatch {
        /// The cluster's data directory.
        data_dir: PathBuf,
        /// The port it runs on.
        running: u16,
        /// The port that was asked for.
        requested: u16,
    },

    /// Running as root, but there is no `postgres` system user to run the server as.
    #[error(
        "running as root, but there is no `postgres` system user to run the server as (PostgreSQL refuses to run as root); `apt-get install postgresql` creates it"
    )]
    NoServiceUser,

    /// Running as root, but neither `runuser` nor `su` is available to switch to `postgres`.
    #[error(
        "running as root, but neither `runuser` nor `su` was found to run the server as the `postgres` user"
    )]
    NoUserSwitch,

    /// Another live process kept the start lock for longer than we were willing to wait.
    #[error(
        "another process (pid {}) has held {} for more than {waited_secs} s; if no such process exists, remove that file",
        pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
        lock.display()
    )]
    Locked {
        /// The lock file.
        lock: PathBuf,
        /// The process id written in it, if readable.
        pid: Option<u32>,
        /// How long we waited.
        waited_secs: u64,
    },
}

/// A directory holding a working set of PostgreSQL server binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    /// The directory holding `initdb`, `pg_ctl` and `postgres` (and, normally, `psql`).
    pub bin_dir: PathBuf,
}

impl PgBinaries {
    /// Finds the server binaries.
    ///
    /// Candidates, in order: the real directory of every `initdb` on `PATH`
    /// (symlinks resolved, so `/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb`
    /// counts as `/usr/lib/postgresql/15/bin`), then `/usr/lib/postgresql/*/bin`,
    /// highest major version first. The first candidate that holds `initdb`,
    /// `pg_ctl` and `postgres` together, each answering `--version`, wins; a
    /// wrapper script on `PATH` with no `postgres` beside it is skipped.
    pub fn locate() -> Result<PgBinaries, Error> {
        let path_var = env::var_os("PATH");
        let candidates = candidate_dirs(path_var.as_deref(), Path::new(DEBIAN_LIB_ROOT));
        candidates
            .into_iter()
            .find(|dir| is_usable_bin_dir(dir))
            .map(|bin_dir| PgBinaries { bin_dir })
            .ok_or(Error::NotInstalled)
    }

    /// The path of `program` inside the bin dir (whether or not it exists).
    pub fn program(&self, program: &str) -> PathBuf {
        self.bin_dir.join(program)
    }

    fn client_program(&self, program: &'static str) -> Result<PathBuf, Error> {
        let path = self.program(program);
        if is_executable_file(&path) {
            Ok(path)
        } else {
            Err(Error::MissingProgram {
                program,
                bin_dir: self.bin_dir.clone(),
            })
        }
    }
}

/// A private cluster that is running (or was, until [`LocalCluster::stop`]).
///
/// Dropping it does not stop the server: the next [`LocalCluster::start`] on
/// the same data directory reuses it.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    binaries: PgBinaries,
    run_as: RunAs,
    data_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    already_running: bool,
    settings: Vec<(String, String)>,
}

impl LocalCluster {
    /// Locates the binaries, then does what [`LocalCluster::start_with`] does.
    pub fn start(data_dir: &Path, port: u16) -> Result<LocalCluster, Error> {
        let binaries = PgBinaries::locate()?;
        Self::start_with(&binaries, data_dir, port)
    }

    /// Makes sure a cluster in `data_dir` is running on `127.0.0.1:port`.
    ///
    /// Creates `data_dir` if needed and runs `initdb` (superuser `postgres`,
    /// trust auth, UTF8, C locale) when it holds no `PG_VERSION`. If a server
    /// is already running on that data directory it is reused (an error if it
    /// runs on another port); otherwise `pg_ctl start -w` starts one. Returns
    /// once `127.0.0.1:port` accepts TCP connections.
    ///
    /// As root, `initdb` and `pg_ctl` run as the `postgres` system user: the
    /// data directory, socket directory and log file are chowned to it, and any
    /// ancestor directory it could not traverse gets `o+x` (traverse only, not
    /// list).
    pub fn start_with(
        binaries: &PgBinaries,
        data_dir: &Path,
        port: u16,
    ) -> Result<LocalCluster, Error> {
        Self::start_configured(binaries, data_dir, port, &[])
    }

    /// Like [`LocalCluster::start_with`], with server settings (`-c name=value`, such
    /// as `max_connections`) for a server this call starts; a server already running
    /// keeps its own.
    pub fn start_configured(
        binaries: &PgBinaries,
        data_dir: &Path,
        port: u16,
        settings: &[(&str, &str)],
    ) -> Result<LocalCluster, Error> {
        for (name, value) in settings {
            let plain = |t: &str| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            };
            if !plain(name) || !plain(value) {
                return Err(Error::InvalidSetting {
                    name: (*name).to_owned(),
                });
            }
        }
        let run_as = RunAs::detect()?;
        let layout = Layout::new(data_dir, port)?;
        create_dir_all(&layout.parent)?;
        let _lock = LockFile::acquire(&layout.lock_file, LOCK_TIMEOUT)?;

        match fs::metadata(&layout.data_dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(Error::InvalidDataDir {
                    path: layout.data_dir.clone(),
                    reason: "it exists and is not a directory",
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir_all(&layout.data_dir)?,
            Err(source) => return Err(io_error("inspect", &layout.data_dir, source)),
        }
        create_dir_all(&layout.socket_dir)?;
        set_mode(&layout.socket_dir, 0o700)?;
        if let RunAs::ServiceUser { uid, gid, .. } = &run_as {
            hand_over_to_service_user(&layout, *uid, *gid)?;
        }

        let mut cluster = LocalCluster {
            binaries: binaries.clone(),
            run_as,
            data_dir: layout.data_dir.clone(),
            log_file: layout.log_file.clone(),
            port,
            already_running: false,
            settings: settings
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        };

        if !layout.data_dir.join("PG_VERSION").exists() {
            cluster.initdb()?;
        }
        if let Some(running) = cluster.running_port()? {
            if running != port {
                return Err(Error::PortMismatch {
                    data_dir: layout.data_dir.clone(),
                    running,
                    requested: port,
                });
            }
            cluster.already_running = true;
        } else {
            cluster.pg_ctl_start(&layout.socket_dir)?;
        }
        cluster.wait_until_accepting(READY_TIMEOUT)?;
        Ok(cluster)
    }

    /// Stops the cluster in `data_dir` (`pg_ctl stop -m fast -w`), for a
    /// separate stop command. Succeeds when no server was running there.
    pub fn stop_dir(data_dir: &Path) -> Result<(), Error> {
        let binaries = PgBinaries::locate()?;
        let data_dir = absolute(data_dir)?;
        stop_cluster(&binaries, &RunAs::detect()?, &data_dir)
    }

    /// Stops this cluster (`pg_ctl stop -m fast -w`). Succeeds when it was not running.
    pub fn stop(&self) -> Result<(), Error> {
        stop_cluster(&self.binaries, &self.run_as, &self.data_dir)
    }

    /// Starts this cluster again after [`LocalCluster::stop`], on the same port with
    /// the same settings (a no-op start when it is running).
    pub fn start_again(&self) -> Result<LocalCluster, Error> {
        let settings: Vec<(&str, &str)> = self
            .settings
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        Self::start_configured(&self.binaries, &self.data_dir, self.port, &settings)
    }

    /// Creates database `name` unless it exists, with `psql` from the bin dir
    /// over TCP as the `postgres` superuser.
    pub fn ensure_database(&self, name: &str) -> Result<(), Error> {
        validate_database_name(name)?;
        let exists_sql = format!(
            "SELECT 1 FROM pg_database WHERE datname = {}",
            quote_literal(name)
        );
        if self.psql("postgres", &exists_sql)?.trim() == "1" {
            return Ok(());
        }
        match self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        ) {
            Ok(_) => Ok(()),
            // Someone else may have created it in the meantime.
            Err(e) => match self.psql("postgres", &exists_sql) {
                Ok(out) if out.trim() == "1" => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`, the database name percent-encoded.
    pub fn database_url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port,
            percent_encode(db)
        )
    }

    /// The port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory, as an absolute path.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log file, beside the data directory.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The binaries this cluster runs with.
    pub fn binaries(&self) -> &PgBinaries {
        &self.binaries
    }

    /// Whether [`LocalCluster::start`] found the server already running and reused it.
    pub fn was_already_running(&self) -> bool {
        self.already_running
    }

    fn initdb(&self) -> Result<(), Error> {
        let args: Vec<OsString> = vec![
            "-D".into(),
            self.data_dir.clone().into(),
            "-U".into(),
            SUPERUSER.into(),
            "--auth=trust".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
        ];
        let (cmd, shown) = self.run_as.command(&self.binaries.program("initdb"), &args);
        let output = run(cmd, &shown)?;
        check(&output, &shown)
    }

    /// The port of the server running on this data directory, if one is.
    fn running_port(&self) -> Result<Option<u16>, Error> {
        let pid_file = self.data_dir.join("postmaster.pid");
        if !pid_file.exists() {
            return Ok(None);
        }
        if pg_ctl_status(&self.binaries, &self.run_as, &self.data_dir)? != Status::Running {
            return Ok(None);
        }
        let contents = fs::read_to_string(&pid_file).map_err(|e| io_error("read", &pid_file, e))?;
        Ok(port_from_pid_file(&contents).or(Some(self.port)))
    }

    fn pg_ctl_start(&self, socket_dir: &Path) -> Result<(), Error> {
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            shell_quote(&socket_dir.to_string_lossy())
        );
        for (name, value) in &self.settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let args: Vec<OsString> = vec![
            "start".into(),
            "-w".into(),
            "-t".into(),
            "60".into(),
            "-D".into(),
            self.data_dir.clone().into(),
            "-l".into(),
            self.log_file.clone().into(),
            "-o".into(),
            options.into(),
        ];
        let (cmd, shown) = self.run_as.command(&self.binaries.program("pg_ctl"), &args);
        let output = run(cmd, &shown)?;
        if output.status.success() {
            return Ok(());
        }
        Err(Error::StartFailed {
            command: shown,
            status: output.status.to_string(),
            stderr_tail: output_tail(&output),
            log: self.log_file.clone(),
            log_tail: file_tail(&self.log_file),
        })
    }

    fn wait_until_accepting(&self, timeout: Duration) -> Result<(), Error> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(Error::NotReady {
                    data_dir: self.data_dir.clone(),
                    port: self.port,
                    waited_secs: timeout.as_secs(),
                    log: self.log_file.clone(),
                    log_tail: file_tail(&self.log_file),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs one statement with `psql` over TCP, returning its unaligned, tuples-only output.
    fn psql(&self, db: &str, sql: &str) -> Result<String, Error> {
        let psql = self.binaries.client_program("psql")?;
        let port = self.port.to_string();
        let args = [
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            port.as_str(),
            "-U",
            SUPERUSER,
            "-d",
            db,
            "-tAc",
            sql,
        ];
        let mut cmd = Command::new(&psql);
        cmd.args(args).env("PGCONNECT_TIMEOUT", "10");
        let shown = shell_join(psql.as_os_str(), args.iter().map(OsStr::new));
        let output = run(cmd, &shown)?;
        check(&output, &shown)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn stop_cluster(binaries: &PgBinaries, run_as: &RunAs, data_dir: &Path) -> Result<(), Error> {
    let pid_file = data_dir.join("postmaster.pid");
    if let Err(e) = fs::metadata(&pid_file)
        && e.kind() == io::ErrorKind::NotFound
    {
        return Ok(());
    }
    let args: Vec<OsString> = vec![
        "stop".into(),
        "-D".into(),
        data_dir.into(),
        "-m".into(),
        "fast".into(),
        "-w".into(),
        "-t".into(),
        "60".into(),
    ];
    let (cmd, shown) = run_as.command(&binaries.program("pg_ctl"), &args);
    let output = run(cmd, &shown)?;
    match check(&output, &shown) {
        Ok(()) => Ok(()),
        // A stale postmaster.pid: nothing was running.
        Err(e) => match pg_ctl_status(binaries, run_as, data_dir) {
            Ok(Status::NotRunning) => Ok(()),
            _ => Err(e),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    NotRunning,
}

/// `pg_ctl status`: exit 0 means running, 3 not running, 4 no usable data directory.
fn pg_ctl_status(binaries: &PgBinaries, run_as: &RunAs, data_dir: &Path) -> Result<Status, Error> {
    let args: Vec<OsString> = vec!["status".into(), "-D".into(), data_dir.into()];
    let (cmd, shown) = run_as.command(&binaries.program("pg_ctl"), &args);
    let output = run(cmd, &shown)?;
    match output.status.code() {
        Some(0) => Ok(Status::Running),
        Some(3) => Ok(Status::NotRunning),
        _ => Err(command_failed(&output, &shown)),
    }
}

/// The fourth line of `postmaster.pid` is the port.
fn port_from_pid_file(contents: &str) -> Option<u16> {
    contents.lines().nth(3)?.trim().parse().ok()
}

/// Where a cluster's files live.
#[derive(Debug)]
struct Layout {
    parent: PathBuf,
    data_dir: PathBuf,
    log_file: PathBuf,
    socket_dir: PathBuf,
    lock_file: PathBuf,
}

impl Layout {
    fn new(data_dir: &Path, port: u16) -> Result<Layout, Error> {
        let data_dir = absolute(data_dir)?;
        let invalid = |reason| Error::InvalidDataDir {
            path: data_dir.clone(),
            reason,
        };
        let name = data_dir
            .file_name()
            .ok_or_else(|| invalid("it has no final path component"))?
            .to_string_lossy()
            .into_owned();
        let parent = data_dir
            .parent()
            .ok_or_else(|| invalid("it has no parent directory"))?
            .to_path_buf();
        let beside = |suffix: &str| parent.join(format!("{name}.{suffix}"));
        let mut socket_dir = beside("sock");
        let socket_path_len = socket_dir.as_os_str().len() + format!("/.s.PGSQL.{port}").len();
        if socket_path_len > MAX_SOCKET_PATH {
            let user = current_uid().map_or_else(|| "user".to_owned(), |uid| uid.to_string());
            socket_dir = env::temp_dir().join(format!("local-postgres-{user}-{port}"));
        }
        Ok(Layout {
            log_file: beside("log"),
            lock_file: beside("lock"),
            socket_dir,
            data_dir,
            parent,
        })
    }
}

/// As root: gives the `postgres` user what it needs to run the cluster.
fn hand_over_to_service_user(layout: &Layout, uid: u32, gid: u32) -> Result<(), Error> {
    make_traversable(&layout.data_dir, uid, gid)?;
    make_traversable(&layout.socket_dir, uid, gid)?;

    if !layout.log_file.exists() {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&layout.log_file)
            .map_err(|e| io_error("create", &layout.log_file, e))?;
    }
    let initialised = layout.data_dir.join("PG_VERSION").exists();
    for (path, recursive) in [
        (&layout.data_dir, initialised),
        (&layout.socket_dir, false),
        (&layout.log_file, false),
    ] {
        let meta = fs::metadata(path).map_err(|e| io_error("inspect", path, e))?;
        if meta.uid() != uid || meta.gid() != gid {
            chown(path, uid, gid, recursive)?;
        }
    }
    Ok(())
}

/// Adds `o+x` to every ancestor of `path` that `uid`/`gid` could not traverse.
fn make_traversable(path: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    for dir in path.ancestors().skip(1) {
        let meta = fs::metadata(dir).map_err(|e| io_error("inspect", dir, e))?;
        if !can_traverse(meta.uid(), meta.gid(), meta.mode(), uid, gid) {
            set_mode(dir, meta.mode() | 0o001)?;
        }
    }
    Ok(())
}

/// Whether a user may traverse a directory, from its owner, group and mode
/// (POSIX permission classes; supplementary groups and ACLs are ignored).
fn can_traverse(owner: u32, group: u32, mode: u32, uid: u32, gid: u32) -> bool {
    if owner == uid {
        mode & 0o100 != 0
    } else if group == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

fn chown(path: &Path, uid: u32, gid: u32, recursive: bool) -> Result<(), Error> {
    let mut args: Vec<OsString> = Vec::new();
    if recursive {
        args.push("-R".into());
    }
    args.push(format!("{uid}:{gid}").into());
    args.push(path.into());
    let mut cmd = Command::new("chown");
    cmd.args(&args);
    let shown = shell_join(OsStr::new("chown"), args.iter().map(OsString::as_os_str));
    let output = run(cmd, &shown)?;
    check(&output, &shown)
}

/// Who runs `initdb` and `pg_ctl`.
#[derive(Debug, Clone)]
enum RunAs {
    /// This process's own user (not root).
    CurrentUser,
    /// Root: the `postgres` system user, through `runuser` or `su`.
    ServiceUser {
        switch: UserSwitch,
        uid: u32,
        gid: u32,
    },
}

#[derive(Debug, Clone)]
enum UserSwitch {
    Runuser(PathBuf),
    Su(PathBuf),
}

impl RunAs {
    fn detect() -> Result<RunAs, Error> {
        if current_uid() != Some(0) {
            return Ok(RunAs::CurrentUser);
        }
        let uid = id_of_service_user("-u")?;
        let gid = id_of_service_user("-g")?;
        let switch = if let Some(path) = find_program("runuser") {
            UserSwitch::Runuser(path)
        } else if let Some(path) = find_program("su") {
            UserSwitch::Su(path)
        } else {
            return Err(Error::NoUserSwitch);
        };
        Ok(RunAs::ServiceUser { switch, uid, gid })
    }

    /// A command running `program args` as the right user, and how to show it.
    fn command(&self, program: &Path, args: &[OsString]) -> (Command, String) {
        let direct = shell_join(program.as_os_str(), args.iter().map(OsString::as_os_str));
        match self {
            RunAs::CurrentUser => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                (cmd, direct)
            }
            RunAs::ServiceUser {
                switch: UserSwitch::Runuser(runuser),
                ..
            } => {
                let mut cmd = Command::new(runuser);
                cmd.args(["-u", SERVICE_USER, "--"]).arg(program).args(args);
                (cmd, format!("runuser -u {SERVICE_USER} -- {direct}"))
            }
            RunAs::ServiceUser {
                switch: UserSwitch::Su(su),
                ..
            } => {
                let mut cmd = Command::new(su);
                cmd.args(["-s", "/bin/sh", "-c", &direct, SERVICE_USER]);
                (
                    cmd,
                    format!("su -s /bin/sh -c {} {SERVICE_USER}", shell_quote(&direct)),
                )
            }
        }
    }
}

fn id_of_service_user(flag: &str) -> Result<u32, Error> {
    let mut cmd = Command::new("id");
    cmd.args([flag, SERVICE_USER]);
    let output = run(cmd, &format!("id {flag} {SERVICE_USER}"))?;
    if !output.status.success() {
        return Err(Error::NoServiceUser);
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| Error::NoServiceUser)
}

/// The effective uid of this process, from `/proc/self/status` or else `id -u`.
fn current_uid() -> Option<u32> {
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(uid) = effective_uid_from_status(&status)
    {
        return Some(uid);
    }
    let output = Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// `Uid:\treal\teffective\tsaved\tfs` → effective.
fn effective_uid_from_status(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `name` on `PATH`, or in the sbin/bin directories (root's tools live in sbin).
fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable_file(p))
}

/// Directories that may hold the server binaries, best first, without duplicates:
/// the real directory of each `initdb` on `path_var`, then `lib_root/<version>/bin`,
/// highest version first.
fn candidate_dirs(path_var: Option<&OsStr>, lib_root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    if let Some(path_var) = path_var {
        for dir in env::split_paths(path_var) {
            let initdb = dir.join("initdb");
            if is_executable_file(&initdb) {
                let real = fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(parent) = real.parent() {
                    found.push(parent.to_path_buf());
                }
            }
        }
    }
    found.extend(versioned_bin_dirs(lib_root));

    let mut unique: Vec<PathBuf> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in found {
        let key = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if !seen.contains(&key) {
            seen.push(key);
            unique.push(dir);
        }
    }
    unique
}

/// `lib_root/<version>/bin` for each version-named subdirectory, highest first.
fn versioned_bin_dirs(lib_root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(lib_root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = parse_version(&entry.file_name().to_string_lossy())?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    sort_versions_descending(&mut versions);
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; anything not purely dotted numbers → `None`.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.')
        .map(|part| part.parse::<u32>().ok())
        .collect()
}

fn sort_versions_descending<T>(versions: &mut [(Vec<u32>, T)]) {
    versions.sort_by(|a, b| b.0.cmp(&a.0));
}

/// Whether `dir` holds `initdb`, `pg_ctl` and `postgres`, each answering `--version`.
fn is_usable_bin_dir(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|program| {
        let path = dir.join(program);
        is_executable_file(&path) && answers_version(&path)
    })
}

fn answers_version(program: &Path) -> bool {
    for _ in 0..5 {
        match Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(status) => return status.success(),
            // ETXTBSY: a freshly written file still open in a just-forked process.
            Err(e) if e.raw_os_error() == Some(26) => thread::sleep(Duration::from_millis(50)),
            Err(_) => return false,
        }
    }
    false
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A lock file holding the owner's pid, created with `create_new`; removed on drop.
/// A lock whose process is gone (or, without `/proc`, that is older than the
/// wait limit) is taken over.
#[derive(Debug)]
struct LockFile {
    path: PathBuf,
}

impl LockFile {
    fn acquire(path: &Path, timeout: Duration) -> Result<LockFile, Error> {
        let started = Instant::now();
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id())
                        .map_err(|e| io_error("write", path, e))?;
                    return Ok(LockFile {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    if lock_is_stale(path, holder, timeout) {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if started.elapsed() >= timeout {
                        return Err(Error::Locked {
                            lock: path.to_path_buf(),
                            pid: holder,
                            waited_secs: timeout.as_secs(),
                        });
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(io_error("create", path, e)),
            }
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn lock_is_stale(path: &Path, holder: Option<u32>, max_age: Duration) -> bool {
    let age = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let proc_available = Path::new("/proc/self").exists();
    match holder {
        Some(pid) if proc_available => !Path::new("/proc").join(pid.to_string()).exists(),
        // The holder may not have written its pid yet.
        None if proc_available => age > Duration::from_secs(10),
        _ => age > max_age,
    }
}

fn validate_database_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 63 {
        "it is longer than 63 bytes"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidDatabaseName {
        name: name.to_owned(),
        reason,
    })
}

/// An SQL string literal (standard_conforming_strings is on by default).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// An SQL identifier.
fn quote_ident(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Quotes `value` for a POSIX shell when it needs it.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

fn shell_join<'a>(program: &'a OsStr, args: impl IntoIterator<Item = &'a OsStr>) -> String {
    std::iter::once(program)
        .chain(args)
        .map(|part| shell_quote(&part.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| io_error("resolve", path, e))
}

fn create_dir_all(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|e| io_error("create directory", path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| io_error("change permissions of", path, e))
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs a prepared command with no stdin, from `/` (so a user switch never
/// trips over an unreadable working directory), capturing its output.
fn run(mut cmd: Command, shown: &str) -> Result<Output, Error> {
    cmd.stdin(Stdio::null()).current_dir("/");
    cmd.output().map_err(|source| Error::Spawn {
        command: shown.to_owned(),
        source,
    })
}

fn check(output: &Output, shown: &str) -> Result<(), Error> {
    if output.status.success() {
        Ok(())
    } else {
        Err(command_failed(output, shown))
    }
}

fn command_failed(output: &Output, shown: &str) -> Error {
    Error::CommandFailed {
        command: shown.to_owned(),
        status: output.status.to_string(),
        stderr_tail: output_tail(output),
    }
}

/// The last lines of stderr, or of stdout when stderr is empty, indented.
fn output_tail(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.trim().is_empty() {
        tail(&String::from_utf8_lossy(&output.stdout), TAIL_LINES)
    } else {
        tail(&stderr, TAIL_LINES)
    }
}

fn file_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => tail(&String::from_utf8_lossy(&bytes), TAIL_LINES),
        Err(e) => format!("    (could not read it: {e})"),
    }
}

/// The last `lines` non-blank lines of `text`, each indented by four spaces.
fn tail(text: &str, lines: usize) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if kept.is_empty() {
        return "    (no output)".to_owned();
    }
    kept[kept.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = env::temp_dir().join(format!(
                "local-postgres-{label}-{}-{nanos}",
                std::process::id()
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn write_program(path: &Path, exit_code: i32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("#!/bin/sh\nexit {exit_code}\n")).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn fake_bin_dir(dir: &Path, programs: &[&str]) {
        for program in programs {
            write_program(&dir.join(program), 0);
        }
    }

    #[test]
    fn versions_sort_highest_first_and_skip_non_versions() {
        assert_eq!(parse_version("15"), Some(vec![15]));
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("main"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("15.beta"), None);

        let mut versions: Vec<(Vec<u32>, &str)> = ["9.6", "16", "10", "15", "9.5"]
            .iter()
            .map(|v| (parse_version(v).unwrap(), *v))
            .collect();
        sort_versions_descending(&mut versions);
        let order: Vec<&str> = versions.iter().map(|(_, v)| *v).collect();
        assert_eq!(order, ["16", "15", "10", "9.6", "9.5"]);
    }

    #[test]
    fn versioned_dirs_come_highest_first() {
        let root = TempDir::new("versions");
        for version in ["9.6", "15", "16", "common"] {
            fs::create_dir_all(root.0.join(version).join("bin")).unwrap();
        }
        let dirs = versioned_bin_dirs(&root.0);
        assert_eq!(
            dirs,
            [
                root.0.join("16/bin"),
                root.0.join("15/bin"),
                root.0.join("9.6/bin")
            ]
        );
        assert!(versioned_bin_dirs(&root.0.join("missing")).is_empty());
    }

    #[test]
    fn path_symlinks_resolve_to_the_real_bin_dir_and_come_first_without_duplicates() {
        let root = TempDir::new("candidates");
        let lib = root.0.join("lib");
        let full = ["initdb", "pg_ctl", "postgres", "psql"];
        fake_bin_dir(&lib.join("15/bin"), &full);
        fake_bin_dir(&lib.join("16/bin"), &full);
        // Like this machine's /usr/local/bin: symlinks into the 15 directory.
        let local = root.0.join("local-bin");
        fs::create_dir_all(&local).unwrap();
        std::os::unix::fs::symlink(lib.join("15/bin/initdb"), local.join("initdb")).unwrap();
        std::os::unix::fs::symlink(lib.join("15/bin/pg_ctl"), local.join("pg_ctl")).unwrap();
        let empty = root.0.join("empty");
        fs::create_dir_all(&empty).unwrap();

        let path_var = env::join_paths([&empty, &local]).unwrap();
        let dirs = candidate_dirs(Some(&path_var), &lib);
        let real15 = fs::canonicalize(lib.join("15/bin")).unwrap();
        assert_eq!(dirs.len(), 2, "{dirs:?}");
        assert_eq!(fs::canonicalize(&dirs[0]).unwrap(), real15);
        assert_eq!(dirs[1], lib.join("16/bin"));

        let without_path = candidate_dirs(None, &lib);
        assert_eq!(without_path, [lib.join("16/bin"), lib.join("15/bin")]);
    }

    #[test]
    fn wrappers_and_incomplete_or_broken_dirs_are_not_usable() {
        let root = TempDir::new("usable");
        // A wrapper directory: initdb and pg_ctl, but no postgres beside them.
        let wrapper = root.0.join("wrapper");
        fake_bin_dir(&wrapper, &["initdb", "pg_ctl"]);
        assert!(!is_usable_bin_dir(&wrapper));

        // Everything present, but pg_ctl does not work.
        let broken = root.0.join("broken");
        fake_bin_dir(&broken, &["initdb", "postgres"]);
        write_program(&broken.join("pg_ctl"), 1);
        assert!(!is_usable_bin_dir(&broken));

        // Present but not executable.
        let plain = root.0.join("plain");
        fake_bin_dir(&plain, &["initdb", "pg_ctl"]);
        fs::write(plain.join("postgres"), "").unwrap();
        assert!(!is_usable_bin_dir(&plain));

        let good = root.0.join("good");
        fake_bin_dir(&good, &["initdb", "pg_ctl", "postgres"]);
        assert!(is_usable_bin_dir(&good));

        let path_var = env::join_paths([&wrapper, &broken, &good]).unwrap();
        let first_usable = candidate_dirs(Some(&path_var), &root.0.join("no-lib"))
            .into_iter()
            .find(|d| is_usable_bin_dir(d));
        assert_eq!(first_usable, Some(good));
    }

    #[test]
    fn not_installed_is_one_line_naming_the_package() {
        let message = Error::NotInstalled.to_string();
        assert!(!message.contains('\n'));
        assert!(message.contains("apt-get install postgresql"), "{message}");
    }

    #[test]
    fn effective_uid_is_read_from_proc_status() {
        let status = "Name:\tcat\nUid:\t1000\t0\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid_from_status(status), Some(0));
        assert_eq!(effective_uid_from_status("Name:\tcat\n"), None);
    }

    #[test]
    fn traversal_follows_the_posix_permission_classes() {
        // owner, group, mode, uid, gid
        assert!(can_traverse(101, 0, 0o700, 101, 104));
        assert!(!can_traverse(0, 0, 0o700, 101, 104));
        assert!(can_traverse(0, 104, 0o750, 101, 104));
        assert!(can_traverse(0, 0, 0o701, 101, 104));
        assert!(!can_traverse(101, 0, 0o077, 101, 104));
    }

    #[test]
    fn quoting_and_encoding() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(percent_encode("app_test-1.x~"), "app_test-1.x~");
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(shell_quote("/tmp/x.sock"), "/tmp/x.sock");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn database_names_are_checked() {
        assert!(validate_database_name("reactivation").is_ok());
        assert!(validate_database_name("").is_err());
        assert!(validate_database_name("a\0b").is_err());
        assert!(validate_database_name(&"x".repeat(64)).is_err());
    }

    #[test]
    fn tails_keep_the_last_non_blank_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "    b\n    c");
        assert_eq!(tail("  \n", 5), "    (no output)");
    }

    #[test]
    fn pid_file_port_is_the_fourth_line() {
        let contents = "1234\n/data\n1700000000\n55432\n/tmp\n127.0.0.1\n  1 2\nready   \n";
        assert_eq!(port_from_pid_file(contents), Some(55432));
        assert_eq!(port_from_pid_file("1234\n"), None);
    }

    #[test]
    fn layout_puts_files_beside_the_data_dir() {
        let layout = Layout::new(Path::new("/srv/app/.data/pg-test"), 55432).unwrap();
        assert_eq!(layout.log_file, Path::new("/srv/app/.data/pg-test.log"));
        assert_eq!(layout.socket_dir, Path::new("/srv/app/.data/pg-test.sock"));
        assert_eq!(layout.lock_file, Path::new("/srv/app/.data/pg-test.lock"));

        let deep = format!("/{}/pg", "d".repeat(120));
        let layout = Layout::new(Path::new(&deep), 55432).unwrap();
        assert!(layout.socket_dir.starts_with(env::temp_dir()));

        assert!(matches!(
            Layout::new(Path::new("/"), 1),
            Err(Error::InvalidDataDir { .. })
        ));
    }

    #[test]
    fn lock_waits_for_a_live_holder_and_takes_over_a_dead_one() {
        let dir = TempDir::new("lock");
        let path = dir.0.join("x.lock");
        let held = LockFile::acquire(&path, Duration::from_secs(1)).unwrap();
        let err = LockFile::acquire(&path, Duration::from_millis(300)).unwrap_err();
        assert!(
            matches!(err, Error::Locked { pid: Some(pid), .. } if pid == std::process::id()),
            "{err}"
        );
        drop(held);
        assert!(!path.exists());

        // A pid that cannot be alive (above the kernel's pid_max limit).
        fs::write(&path, "4194305\n").unwrap();
        let taken = LockFile::acquire(&path, Duration::from_secs(1)).unwrap();
        drop(taken);
    }

    /// Stops the cluster even when an assertion fails.
    struct StopOnDrop(PathBuf);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            let _ = LocalCluster::stop_dir(&self.0);
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn psql_select_one(cluster: &LocalCluster, db: &str) -> String {
        let output = Command::new(cluster.binaries().program("psql"))
            .args(["-X", "-h", "127.0.0.1", "-p"])
            .arg(cluster.port().to_string())
            .args(["-U", "postgres", "-d", db, "-tAc", "SELECT 1"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    #[test]
    fn starts_a_real_cluster_creates_a_database_and_stops() {
        let root = TempDir::new("cluster");
        let data_dir = root.0.join("data");
        let port = free_port();
        let _guard = StopOnDrop(data_dir.clone());

        let cluster = LocalCluster::start(&data_dir, port).unwrap();
        assert!(!cluster.was_already_running());
        assert!(data_dir.join("PG_VERSION").exists());
        assert_eq!(cluster.log_file(), root.0.join("data.log"));
        assert_eq!(
            cluster.database_url("app_test"),
            format!("postgres://postgres@127.0.0.1:{port}/app_test")
        );

        cluster.ensure_database("app_test").unwrap();
        cluster.ensure_database("app_test").unwrap();
        assert_eq!(psql_select_one(&cluster, "app_test"), "1");
        let odd = "it's \"odd\" db";
        cluster.ensure_database(odd).unwrap();
        assert_eq!(psql_select_one(&cluster, odd), "1");

        // A second start on the same directory reuses the running server.
        let again = LocalCluster::start(&data_dir, port).unwrap();
        assert!(again.was_already_running());
        assert_eq!(psql_select_one(&again, "app_test"), "1");

        // ... but not on another port.
        let other_port = free_port();
        let err = LocalCluster::start(&data_dir, other_port).unwrap_err();
        assert!(
            matches!(err, Error::PortMismatch { running, requested, .. } if running == port && requested == other_port),
            "{err}"
        );

        cluster.stop().unwrap();
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        // Stopping what is not running is fine, both ways.
        cluster.stop().unwrap();
        LocalCluster::stop_dir(&data_dir).unwrap();

        // Restarting keeps the data.
        let restarted = LocalCluster::start(&data_dir, port).unwrap();
        assert!(!restarted.was_already_running());
        assert_eq!(psql_select_one(&restarted, "app_test"), "1");
        LocalCluster::stop_dir(&data_dir).unwrap();
        assert!(!data_dir.join("postmaster.pid").exists());
    }

    #[test]
    fn server_settings_apply_and_survive_a_stop_and_start_again() {
        let root = TempDir::new("settings");
        let data_dir = root.0.join("data");
        let port = free_port();
        let _guard = StopOnDrop(data_dir.clone());
        let binaries = PgBinaries::locate().unwrap();

        let refused = LocalCluster::start_configured(
            &binaries,
            &data_dir,
            port,
            &[("max_connections", "1; x")],
        )
        .unwrap_err();
        assert!(matches!(refused, Error::InvalidSetting { .. }), "{refused}");

        let cluster = LocalCluster::start_configured(
            &binaries,
            &data_dir,
            port,
            &[("max_connections", "42")],
        )
        .unwrap();
        let shown = |c: &LocalCluster| c.psql("postgres", "SHOW max_connections").unwrap();
        assert_eq!(shown(&cluster).trim(), "42");
        cluster.stop().unwrap();
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        let again = cluster.start_again().unwrap();
        assert!(!again.was_already_running());
        assert_eq!(shown(&again).trim(), "42");
        again.stop().unwrap();
    }
}
