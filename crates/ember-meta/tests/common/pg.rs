//! A PostgreSQL server for the tests: the one `EMBER_TEST_PG_URL` names
//! (each run gets a scratch schema of its own there), else a throw-away
//! server started from the installed binaries (`initdb`, `pg_ctl`, on PATH
//! or in /usr/lib/postgresql/*/bin) in a temporary directory, on a free
//! port of 127.0.0.1, stopped and removed when the guard drops.
//!
//! `initdb` refuses to run as root: as root, the server's directory is
//! given to the `postgres` user and the binaries run as that user
//! (`runuser -u postgres --`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};

/// A PostgreSQL database for one test, cleaned up on drop.
pub struct PgDatabase {
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    /// Stop the server and remove its directory.
    Server(LocalServer),
    /// Drop this schema on the external server.
    Schema { admin_url: String, schema: String },
}

impl PgDatabase {
    /// The URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where it runs, for the test output.
    pub fn describe(&self) -> String {
        match &self.cleanup {
            Cleanup::Server(server) => format!(
                "local PostgreSQL server ({}) on 127.0.0.1:{}",
                server.bin_dir.display(),
                server.port
            ),
            Cleanup::Schema { schema, .. } => {
                format!("EMBER_TEST_PG_URL, schema {schema}")
            }
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Cleanup::Schema { admin_url, schema } = &self.cleanup {
            // Drop runs inside the test's runtime: use a runtime of our
            // own on a thread of our own.
            let (admin_url, name) = (admin_url.clone(), schema.clone());
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    let mut conn = PgConnection::connect(&admin_url)
                        .await
                        .map_err(|e| e.to_string())?;
                    conn.execute(format!("DROP SCHEMA {name} CASCADE").as_str())
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<(), String>(())
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("warning: could not drop test schema {schema}: {dropped:?}");
            }
        }
        // A local server stops in LocalServer's own Drop.
    }
}

/// A PostgreSQL database to test against, or why there is none.
pub async fn database() -> Result<PgDatabase, String> {
    if let Ok(url) = std::env::var("EMBER_TEST_PG_URL") {
        return scratch_schema(&url).await;
    }
    let mut last_error = String::new();
    // A free port may be taken between our probe and the server's bind:
    // try a few.
    for _ in 0..3 {
        match LocalServer::start() {
            Ok(server) => {
                let url = create_database(server.port).await?;
                return Ok(PgDatabase {
                    url,
                    cleanup: Cleanup::Server(server),
                });
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}_{nanos}", std::process::id())
}

/// A new schema on the server at `url`, and a URL whose connections use it.
async fn scratch_schema(url: &str) -> Result<PgDatabase, String> {
    let schema = format!("ember_test_{}", unique_suffix());
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| format!("EMBER_TEST_PG_URL: cannot connect: {e}"))?;
    conn.execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .map_err(|e| format!("EMBER_TEST_PG_URL: cannot create schema {schema}: {e}"))?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(PgDatabase {
        url: format!("{url}{separator}options[search_path]={schema}"),
        cleanup: Cleanup::Schema {
            admin_url: url.to_owned(),
            schema,
        },
    })
}

/// Creates the test database on the local server, with an ICU collation
/// that is not byte order where the server has ICU (so the tests see
/// whether Ember's sorting depends on the database's collation).
async fn create_database(port: u16) -> Result<String, String> {
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut conn = PgConnection::connect(&admin)
        .await
        .map_err(|e| format!("cannot connect to the local server: {e}"))?;
    let icu = "CREATE DATABASE ember_test TEMPLATE template0 ENCODING 'UTF8' \
               LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'";
    if conn.execute(icu).await.is_err() {
        conn.execute("CREATE DATABASE ember_test")
            .await
            .map_err(|e| format!("cannot create the test database: {e}"))?;
    }
    Ok(format!("postgres://postgres@127.0.0.1:{port}/ember_test"))
}

/// Where the server binaries are: the directory of `initdb` on PATH, else
/// the newest /usr/lib/postgresql/VERSION/bin.
fn bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A server started by the tests.
struct LocalServer {
    /// Holds data/, the socket and the log; removed on drop.
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    as_postgres: bool,
    port: u16,
}

impl LocalServer {
    fn start() -> Result<LocalServer, String> {
        let bin_dir =
            bin_dir().ok_or("no PostgreSQL server binaries (initdb, pg_ctl) installed")?;
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("ember-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err("cannot give the server directory to user postgres \
                            (does the user exist?)"
                    .into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let server = LocalServer {
            dir,
            bin_dir,
            as_postgres,
            port,
        };
        let data = server.dir.path().join("data");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off",
            port,
            server.dir.path().display()
        );
        let log = server.dir.path().join("server.log");
        let started = server.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        if let Err(e) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{e}\nserver log:\n{log}"));
        }
        Ok(server)
    }

    /// Runs a server binary (as user postgres when we are root).
    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let program = self.bin_dir.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let stopped = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        if let Err(e) = stopped {
            eprintln!("warning: could not stop the test PostgreSQL server: {e}");
        }
        // The TempDir removes the directory after this.
    }
}
