//! What volumes, snapshots and backups share: listing with filters,
//! sorting and paging (the semantics of [`ListQuery`]), the status
//! compare-and-set, and the soft delete.

use chrono::Utc;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::codec::encode_ts;
use crate::database::{Sql, Value};
use crate::{Database, ListQuery, MetaError, Page, SortDir, SortKey};

/// What a listable table looks like.
pub(crate) struct Table {
    /// Table name.
    pub(crate) name: &'static str,
    /// The columns a record is read from, comma-separated.
    pub(crate) columns: &'static str,
    /// What one row is, for messages ("volume").
    pub(crate) what: &'static str,
    /// Whether rows belong to a volume (`volume_id` filter).
    pub(crate) has_volume_id: bool,
    /// Whether rows have a `data_timestamp` (backups);
    /// [`SortKey::DataTimestamp`] sorts the others by creation time.
    pub(crate) has_data_timestamp: bool,
}

/// How a sort expression's value is bound when it comes from a marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
}

/// One expression of the ORDER BY (a key may expand to several).
#[derive(Clone, Copy, Debug)]
struct SortExpr {
    /// SQL over the table's columns; from a fixed whitelist only.
    sql: &'static str,
    kind: Kind,
    dir: SortDir,
}

/// The ORDER BY expressions of `key`. Names may be NULL: a NULL name sorts
/// before every other name (as in SQLite and MySQL), through a null flag
/// followed by the name with NULL read as ''.
fn key_exprs(table: &Table, key: SortKey) -> &'static [(&'static str, Kind)] {
    match key {
        SortKey::CreatedAt => &[("created_at", Kind::Text)],
        SortKey::UpdatedAt => &[("updated_at", Kind::Text)],
        SortKey::Name => &[
            ("CASE WHEN name IS NULL THEN 0 ELSE 1 END", Kind::Int),
            ("COALESCE(name, '')", Kind::Text),
        ],
        SortKey::Status => &[("status", Kind::Text)],
        SortKey::Size => &[("size_gib", Kind::Int)],
        SortKey::Id => &[("id", Kind::Text)],
        SortKey::DataTimestamp => {
            if table.has_data_timestamp {
                &[("data_timestamp", Kind::Text)]
            } else {
                &[("created_at", Kind::Text)]
            }
        }
    }
}

/// The full sort order of `query`: its keys (created_at desc if none),
/// each once, then id in the direction of the first key (as Cinder adds its
/// default keys), so that the order is total.
fn sort_order(table: &Table, query: &ListQuery) -> Vec<SortExpr> {
    let mut keys: Vec<(SortKey, SortDir)> = Vec::new();
    for &(key, dir) in &query.sort {
        if !keys.iter().any(|(k, _)| *k == key) {
            keys.push((key, dir));
        }
    }
    if keys.is_empty() {
        keys.push((SortKey::CreatedAt, SortDir::Desc));
    }
    if !keys.iter().any(|(k, _)| *k == SortKey::Id) {
        keys.push((SortKey::Id, keys[0].1));
    }
    keys.iter()
        .flat_map(|&(key, dir)| {
            key_exprs(table, key)
                .iter()
                .map(move |&(sql, kind)| SortExpr { sql, kind, dir })
        })
        .collect()
}

impl Database {
    /// `sql` followed by the `WHERE` clause of `query`'s filters.
    fn push_filters(&self, sql: &mut Sql, table: &Table, query: &ListQuery) {
        sql.push(" WHERE deleted = 0");
        if let Some(project) = &query.project_id {
            sql.push(" AND project_id = ")
                .bind(Value::Text(project.clone()));
        }
        if let Some(name) = &query.name {
            sql.push(" AND name = ").bind(Value::Text(name.clone()));
        }
        if let Some(part) = &query.name_like {
            let placeholder = sql.placeholder(Value::Text(part.clone()));
            sql.push(" AND ").push(&self.contains("name", &placeholder));
        }
        if let Some(status) = &query.status {
            sql.push(" AND status = ").bind(Value::Text(status.clone()));
        }
        if table.has_volume_id {
            if let Some(volume) = &query.volume_id {
                sql.push(" AND volume_id = ")
                    .bind(Value::Text(volume.clone()));
            }
        }
    }

    /// An expression of the sort order as compared and ordered: text in
    /// byte order on both engines.
    fn sort_sql(&self, expr: &SortExpr) -> String {
        match expr.kind {
            Kind::Text => format!("{}{}", expr.sql, self.collate()),
            Kind::Int => expr.sql.to_owned(),
        }
    }

    /// The sort values of the marker row, or `MarkerNotFound`. The marker
    /// must be a non-deleted row (of the query's project, if it has one);
    /// it need not match the other filters.
    async fn marker_values(
        &self,
        table: &Table,
        order: &[SortExpr],
        query: &ListQuery,
        marker: &str,
    ) -> Result<Vec<Value>, MetaError> {
        let columns: Vec<String> = order
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{} AS k{i}", e.sql))
            .collect();
        let mut sql = Sql::new(&format!(
            "SELECT {} FROM {} WHERE deleted = 0 AND id = ",
            columns.join(", "),
            table.name
        ));
        sql.bind(Value::Text(marker.to_owned()));
        if let Some(project) = &query.project_id {
            sql.push(" AND project_id = ")
                .bind(Value::Text(project.clone()));
        }
        let row = sql
            .query()
            .fetch_optional(&self.pool)
            .await
            .map_err(MetaError::db(format!(
                "looking up {} marker {marker}",
                table.what
            )))?
            .ok_or_else(|| MetaError::MarkerNotFound(marker.to_owned()))?;
        order
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let decoded = match e.kind {
                    Kind::Text => row.try_get::<String, _>(i).map(Value::Text),
                    Kind::Int => row.try_get::<i64, _>(i).map(Value::Int),
                };
                decoded.map_err(|err| {
                    MetaError::Corrupt(format!("{} {marker}: {}: {err}", table.what, e.sql))
                })
            })
            .collect()
    }

    /// Lists the rows of `table` that `query` selects, decoding each with
    /// `decode`.
    pub(crate) async fn list_rows<T>(
        &self,
        table: &Table,
        query: &ListQuery,
        decode: fn(&AnyRow) -> Result<T, MetaError>,
    ) -> Result<Page<T>, MetaError> {
        let mut count = Sql::new(&format!("SELECT COUNT(*) AS n FROM {}", table.name));
        self.push_filters(&mut count, table, query);
        let total: i64 = count
            .query()
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get("n"))
            .map_err(MetaError::db(format!("counting {}s", table.what)))?;
        let total = u64::try_from(total)
            .map_err(|_| MetaError::Corrupt(format!("negative row count {total}")))?;

        let order = sort_order(table, query);
        let mut sql = Sql::new(&format!("SELECT {} FROM {}", table.columns, table.name));
        self.push_filters(&mut sql, table, query);
        if let Some(marker) = &query.marker {
            // Rows strictly after the marker: for some i, equal to it on
            // the first i expressions and after it on expression i.
            let values = self.marker_values(table, &order, query, marker).await?;
            let placeholders: Vec<String> =
                values.into_iter().map(|v| sql.placeholder(v)).collect();
            let exprs: Vec<String> = order.iter().map(|e| self.sort_sql(e)).collect();
            let alternatives: Vec<String> = order
                .iter()
                .enumerate()
                .map(|(i, expr)| {
                    let op = match expr.dir {
                        SortDir::Asc => ">",
                        SortDir::Desc => "<",
                    };
                    let mut terms: Vec<String> = (0..i)
                        .map(|j| format!("{} = {}", exprs[j], placeholders[j]))
                        .collect();
                    terms.push(format!("{} {op} {}", exprs[i], placeholders[i]));
                    format!("({})", terms.join(" AND "))
                })
                .collect();
            sql.push(" AND (")
                .push(&alternatives.join(" OR "))
                .push(")");
        }
        let order_by: Vec<String> = order
            .iter()
            .map(|e| {
                let dir = match e.dir {
                    SortDir::Asc => "ASC",
                    SortDir::Desc => "DESC",
                };
                format!("{} {dir}", self.sort_sql(e))
            })
            .collect();
        sql.push(" ORDER BY ").push(&order_by.join(", "));
        // SQLite needs a LIMIT before an OFFSET; i64::MAX means none.
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sql.push(" LIMIT ")
            .bind(Value::Int(query.limit.map_or(i64::MAX, clamp)))
            .push(" OFFSET ")
            .bind(Value::Int(query.offset.map_or(0, clamp)));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(MetaError::db(format!("listing {}s", table.what)))?;
        let items = rows.iter().map(decode).collect::<Result<Vec<T>, _>>()?;
        Ok(Page { items, total })
    }

    /// The status compare-and-set of any soft-deletable table.
    pub(crate) async fn compare_and_set_status(
        &self,
        table: &Table,
        id: &str,
        expected: &[&str],
        new: &str,
        also: &[(&str, Value)],
    ) -> Result<bool, MetaError> {
        if expected.is_empty() {
            return Ok(false);
        }
        let mut sql = Sql::new(&format!("UPDATE {} SET status = ", table.name));
        sql.bind(Value::Text(new.to_owned()));
        for (column, value) in also {
            sql.push(&format!(", {column} = ")).bind(value.clone());
        }
        sql.push(", updated_at = ")
            .bind(Value::Text(encode_ts(&Utc::now())?))
            .push(" WHERE deleted = 0 AND id = ")
            .bind(Value::Text(id.to_owned()))
            .push(" AND status IN (");
        for (i, status) in expected.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Value::Text((*status).to_owned()));
        }
        sql.push(")");
        let result = sql
            .query()
            .execute(&self.pool)
            .await
            .map_err(MetaError::db(format!(
                "setting the status of {} {id}",
                table.what
            )))?;
        Ok(result.rows_affected() > 0)
    }

    /// The soft delete of any soft-deletable table.
    pub(crate) async fn soft_delete(&self, table: &Table, id: &str) -> Result<(), MetaError> {
        let now = encode_ts(&Utc::now())?;
        let result = sqlx::query(&format!(
            "UPDATE {} SET deleted = 1, status = 'deleted', deleted_at = $2, updated_at = $2 \
             WHERE id = $1 AND deleted = 0",
            table.name
        ))
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(MetaError::db(format!("deleting {} {id}", table.what)))?;
        if result.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        Ok(())
    }
}
