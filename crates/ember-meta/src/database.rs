//! The connection pool, the schema migrations, and a small SQL builder
//! shared by the tables.

use std::fmt;

use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::{Any, AnyPool};

use crate::MetaError;

/// The schema, embedded: `migrations/*.sql`, one set for both engines.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Which engine a [`Database`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// SQLite, a file on local disk (WAL mode).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The metadata database: a pool of connections to SQLite or PostgreSQL.
///
/// One set of queries serves both engines through sqlx's `Any` driver:
/// the schema uses only portable types, placeholders are `$1, $2, …`
/// (which SQLite accepts too), and the two places where the dialects differ
/// (text collation, substring search) are chosen by [`Engine`]. Cloning is
/// cheap and shares the pool.
#[derive(Clone)]
pub struct Database {
    pub(crate) pool: AnyPool,
    pub(crate) engine: Engine,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// `sqlite://PATH` (or `sqlite:PATH`) opens a SQLite file, creating it
    /// if missing, in WAL mode; `sqlite::memory:` is a private in-memory
    /// database (one connection, gone when the `Database` is dropped).
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (or `postgresql://…`) opens a
    /// PostgreSQL database, which must exist. Connecting again to a
    /// database already migrated changes nothing.
    pub async fn connect(url: &str) -> Result<Database, MetaError> {
        sqlx::any::install_default_drivers();
        let (engine, url, in_memory) = if url.starts_with("sqlite:") {
            let (url, in_memory) = sqlite_url(url)?;
            (Engine::Sqlite, url, in_memory)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_owned(), false)
        } else {
            // Never echo the URL: it may hold a password. A scheme is safe.
            let scheme = url.split_once(':').map(|(scheme, _)| scheme).filter(|s| {
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            });
            return Err(MetaError::InvalidUrl(match scheme {
                Some(scheme) => {
                    format!("scheme '{scheme}' is not supported (sqlite://PATH or postgres://…)")
                }
                None => "not a URL (sqlite://PATH or postgres://…)".into(),
            }));
        };
        let mut options = AnyPoolOptions::new();
        if in_memory {
            // Each connection to `:memory:` would be a database of its own:
            // keep exactly one, for ever.
            options = options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = options.connect(&url).await.map_err(MetaError::db(format!(
            "connecting to the {engine:?} database"
        )))?;
        if engine == Engine::Sqlite && !in_memory {
            // WAL is a property of the file: set once, every later
            // connection uses it.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(MetaError::db("switching the SQLite database to WAL mode"))?;
        }
        MIGRATOR.run(&pool).await.map_err(|e| MetaError::Database {
            context: "migrating the schema".into(),
            source: sqlx::Error::Migrate(Box::new(e)),
        })?;
        Ok(Database { pool, engine })
    }

    /// The engine this database runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// What follows a text expression in a comparison or an ORDER BY so
    /// that both engines compare bytes: SQLite's default (BINARY) already
    /// does, PostgreSQL's database collation may be a locale's.
    pub(crate) fn collate(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "",
            Engine::Postgres => " COLLATE \"C\"",
        }
    }

    /// A case-sensitive "`column` contains the bound text" test.
    pub(crate) fn contains(&self, column: &str, placeholder: &str) -> String {
        match self.engine {
            Engine::Sqlite => format!("instr({column}, {placeholder}) > 0"),
            Engine::Postgres => format!("strpos({column}, {placeholder}) > 0"),
        }
    }
}

/// The sqlx URL for a `sqlite:` URL: with `mode=rwc` (create if missing)
/// unless a mode is given; and whether it is an in-memory database.
fn sqlite_url(url: &str) -> Result<(String, bool), MetaError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    let (path, params) = match rest.split_once('?') {
        Some((path, params)) => (path, Some(params)),
        None => (rest, None),
    };
    let params: Vec<&str> = params
        .map(|p| p.split('&').filter(|kv| !kv.is_empty()).collect())
        .unwrap_or_default();
    let in_memory = path == ":memory:" || params.contains(&"mode=memory");
    if path.is_empty() && !in_memory {
        return Err(MetaError::InvalidUrl(
            "sqlite URL without a path (sqlite://PATH)".into(),
        ));
    }
    if in_memory || params.iter().any(|kv| kv.starts_with("mode=")) {
        return Ok((url.to_owned(), in_memory));
    }
    let separator = if url.contains('?') { "&" } else { "?" };
    Ok((format!("{url}{separator}mode=rwc"), false))
}

/// A value bound to a placeholder of an [`Sql`] statement.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    /// Text.
    Text(String),
    /// An integer.
    Int(i64),
}

/// A statement built piece by piece, numbering its placeholders.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    /// A statement starting with `text`.
    pub(crate) fn new(text: &str) -> Self {
        Sql {
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// Appends SQL text (never user input).
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Registers `value` and returns its placeholder (`$n`), without
    /// appending it.
    pub(crate) fn placeholder(&mut self, value: Value) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: Value) -> &mut Self {
        let placeholder = self.placeholder(value);
        self.push(&placeholder)
    }

    /// The statement with its values bound, ready to run.
    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut query = sqlx::query(&self.text);
        for value in &self.values {
            query = match value {
                Value::Text(text) => query.bind(text.as_str()),
                Value::Int(int) => query.bind(*int),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_unless_told_otherwise() {
        let url = |u: &str| sqlite_url(u).expect("valid url");
        assert_eq!(
            url("sqlite:///var/lib/m.db"),
            ("sqlite:///var/lib/m.db?mode=rwc".into(), false)
        );
        assert_eq!(
            url("sqlite://m.db?cache=private"),
            ("sqlite://m.db?cache=private&mode=rwc".into(), false)
        );
        assert_eq!(
            url("sqlite://m.db?mode=ro"),
            ("sqlite://m.db?mode=ro".into(), false)
        );
        assert_eq!(url("sqlite::memory:"), ("sqlite::memory:".into(), true));
        assert!(matches!(
            sqlite_url("sqlite://"),
            Err(MetaError::InvalidUrl(_))
        ));
    }

    #[test]
    fn placeholders_are_numbered() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.bind(Value::Text("x".into())).push(" AND b = ");
        let p = sql.placeholder(Value::Int(3));
        sql.push(&p);
        assert_eq!(sql.text, "SELECT 1 WHERE a = $1 AND b = $2");
        assert_eq!(sql.values.len(), 2);
    }
}
