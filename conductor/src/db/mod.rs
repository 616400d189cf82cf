//! The conductor's database: nodes, ports, chassis, conductors, node history; port groups and
//! volume connectors and targets in [`resources`].
//!
//! One code path for SQLite (the embedded default, file created on start) and PostgreSQL
//! (several conductors), through sqlx's `Any` driver and the versioned migrations in
//! `conductor/migrations/`, which are written in SQL both understand. JSON documents are TEXT.

mod fleet;
mod resources;

pub use fleet::FleetSample;

use std::time::Duration;

use rivet_common::JsonObject;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::model::{ChassisRecord, ConductorRecord, HistoryEvent, NodeRecord, PortRecord};

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not `sqlite://PATH` or `postgres://...`.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER:PASS@HOST/DB")]
    Url(String),
    /// A uniqueness rule was broken (name, MAC address).
    #[error("{0}")]
    Duplicate(String),
    /// Anything from the driver.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A write by a conductor whose lock is no longer current: another conductor took the node
    /// over (this one was presumed dead) or took the lock since the record was read.
    #[error(
        "node {node} changed hands: lock number {token} is no longer current (another conductor took the node over, or it was deleted); this write was refused"
    )]
    Fenced { node: String, token: i64 },
    /// A stored JSON document is corrupt.
    #[error("corrupt {what} in the database: {reason}")]
    Corrupt { what: String, reason: String },
}

/// The connection pool.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    sqlite: bool,
    /// Record every node lock in `node_locks` (`lock_history`).
    lock_history: bool,
    /// The conductor named in the history events it records, and how many events a node
    /// keeps (`node_history_max_size`; 0 records none).
    history: (Option<String>, usize),
}

/// Ironic's `[conductor]node_history_max_size`.
pub const DEFAULT_HISTORY_MAX: usize = 300;

fn json_text(doc: &JsonObject) -> String {
    serde_json::Value::Object(doc.clone()).to_string()
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, <sqlx::Any as sqlx::Database>::Arguments>;

/// Bind `$1..$22` of a node write: the uuid and every field both INSERT and UPDATE store, in the
/// order the two statements list them (the reservation and timestamps follow).
fn bind_node_fields<'q>(query: AnyQuery<'q>, node: &NodeRecord) -> AnyQuery<'q> {
    let interfaces: JsonObject = node
        .interfaces
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    query
        .bind(&node.uuid)
        .bind(&node.name)
        .bind(&node.driver)
        .bind(json_text(&interfaces))
        .bind(json_text(&node.driver_info))
        .bind(json_text(&node.driver_internal_info))
        .bind(json_text(&node.properties))
        .bind(json_text(&node.instance_info))
        .bind(json_text(&node.extra))
        .bind(json_text(&node.attrs))
        .bind(&node.provision_state)
        .bind(&node.target_provision_state)
        .bind(&node.provision_updated_at)
        .bind(&node.power_state)
        .bind(&node.target_power_state)
        .bind(&node.last_error)
        .bind(i64::from(node.maintenance))
        .bind(&node.maintenance_reason)
        .bind(&node.fault)
        .bind(json_text(&node.clean_step))
        .bind(json_text(&node.deploy_step))
        .bind(json_text(&node.service_step))
}

fn json_doc(row: &AnyRow, column: &str) -> Result<JsonObject, DbError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| DbError::Corrupt {
        what: column.to_owned(),
        reason: e.to_string(),
    })
}

fn flag(row: &AnyRow, column: &str) -> Result<bool, DbError> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

/// PostgreSQL gave up waiting for a row lock (`lock_timeout`, SQLSTATE 55P03).
fn is_lock_timeout(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.is_unique_violation() || db.message().contains("UNIQUE constraint failed"),
        _ => false,
    }
}

/// A broken uniqueness rule becomes [`DbError::Duplicate`] with the API's wording; anything else
/// stays a database error.
fn duplicate_or_sql(err: sqlx::Error, message: impl FnOnce() -> String) -> DbError {
    if is_unique_violation(&err) {
        DbError::Duplicate(message())
    } else {
        err.into()
    }
}

impl Database {
    /// Connect (creating the SQLite file if needed) and bring the schema up to date.
    ///
    /// On PostgreSQL every session gets `idle_in_transaction_session_timeout` of `stuck_after`
    /// (the conductors' dead timeout): a conductor frozen inside a transaction (SIGSTOP, a
    /// paused VM) loses the session and its row locks at the moment it is declared dead, so the
    /// conductor taking its nodes over does not wait on them until it wakes. And `lock_timeout`
    /// of a quarter of it: a statement that waits that long for a row lock gives up (a node
    /// lock then reads as held) rather than keep a pooled connection while the holder is
    /// stuck. Healthy transactions and lock waits last milliseconds.
    pub async fn connect(url: &str, stuck_after: Duration) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let (url, sqlite) = if let Some(path) = url.strip_prefix("sqlite://") {
            let mode = if path.contains("mode=") {
                ""
            } else if path.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            };
            (format!("sqlite://{path}{mode}"), true)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), false)
        } else {
            return Err(DbError::Url(url.to_owned()));
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        if sqlite {
            // One writer at a time in SQLite; WAL lets readers proceed, and writers wait for
            // each other instead of failing with "database is locked".
            options = options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode=WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout=10000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys=ON").execute(&mut *conn).await?;
                    Ok(())
                })
            });
        } else {
            let idle_ms = stuck_after.as_millis().max(4);
            let lock_ms = idle_ms / 4;
            options = options.max_connections(16).after_connect(move |conn, _| {
                Box::pin(async move {
                    // SET takes no bind parameters; the values are numbers formatted here.
                    for set in [
                        format!("SET idle_in_transaction_session_timeout = {idle_ms}"),
                        format!("SET lock_timeout = {lock_ms}"),
                    ] {
                        sqlx::query(sqlx::AssertSqlSafe(set)).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Database {
            pool,
            sqlite,
            lock_history: false,
            history: (None, DEFAULT_HISTORY_MAX),
        })
    }

    /// Name `host` in the history events recorded from now on, and keep the newest `max`
    /// events of each node (0: record none, as Ironic's `node_history_max_size = 0`).
    pub fn with_history(mut self, host: &str, max: usize) -> Self {
        self.history = (Some(host.to_owned()), max);
        self
    }

    /// Record every node lock in the `node_locks` table from now on (`lock_history`): for audits
    /// and the take-over tests; off by default, as it doubles the writes of a busy fleet.
    pub fn with_lock_history(mut self, on: bool) -> Self {
        self.lock_history = on;
        self
    }

    /// One node's lock history, oldest lock first: `(token, conductor, released_by)`.
    pub async fn lock_history(&self, node_uuid: &str) -> Result<Vec<(i64, String, Option<String>)>, DbError> {
        let rows =
            sqlx::query("SELECT token, conductor, released_by FROM node_locks WHERE node_uuid = $1 ORDER BY token")
                .bind(node_uuid)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("token")?, r.try_get("conductor")?, r.try_get("released_by")?)))
            .collect()
    }

    /// True for the embedded SQLite database.
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    fn node_from_row(row: &AnyRow) -> Result<NodeRecord, DbError> {
        let interfaces = json_doc(row, "interfaces")?;
        Ok(NodeRecord {
            uuid: row.try_get("uuid")?,
            name: row.try_get("name")?,
            driver: row.try_get("driver")?,
            interfaces: interfaces
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
                .collect(),
            driver_info: json_doc(row, "driver_info")?,
            driver_internal_info: json_doc(row, "driver_internal_info")?,
            properties: json_doc(row, "properties")?,
            instance_info: json_doc(row, "instance_info")?,
            extra: json_doc(row, "extra")?,
            attrs: json_doc(row, "attrs")?,
            provision_state: row.try_get("provision_state")?,
            target_provision_state: row.try_get("target_provision_state")?,
            provision_updated_at: row.try_get("provision_updated_at")?,
            power_state: row.try_get("power_state")?,
            target_power_state: row.try_get("target_power_state")?,
            last_error: row.try_get("last_error")?,
            maintenance: flag(row, "maintenance")?,
            maintenance_reason: row.try_get("maintenance_reason")?,
            fault: row.try_get("fault")?,
            reservation: row.try_get("reservation")?,
            lock_token: row.try_get("lock_token")?,
            clean_step: json_doc(row, "clean_step")?,
            deploy_step: json_doc(row, "deploy_step")?,
            service_step: json_doc(row, "service_step")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            transitions: Vec::new(),
        })
    }

    /// One node by UUID.
    pub async fn node(&self, uuid: &str) -> Result<Option<NodeRecord>, DbError> {
        let row = sqlx::query("SELECT * FROM nodes WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::node_from_row).transpose()
    }

    /// One node by UUID or name.
    pub async fn node_by_ident(&self, ident: &str) -> Result<Option<NodeRecord>, DbError> {
        let row = sqlx::query("SELECT * FROM nodes WHERE uuid = $1 OR name = $1")
            .bind(ident)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::node_from_row).transpose()
    }

    /// All nodes, oldest first.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, DbError> {
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY created_at, uuid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::node_from_row).collect()
    }

    /// Nodes in one of the given provision states.
    pub async fn nodes_in_states(&self, states: &[&str]) -> Result<Vec<NodeRecord>, DbError> {
        let mut out = Vec::new();
        for state in states {
            let rows = sqlx::query("SELECT * FROM nodes WHERE provision_state = $1")
                .bind(*state)
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                out.push(Self::node_from_row(row)?);
            }
        }
        Ok(out)
    }

    /// Store a new node.
    pub async fn insert_node(&self, node: &NodeRecord) -> Result<(), DbError> {
        bind_node_fields(
            sqlx::query(
                "INSERT INTO nodes (uuid, name, driver, interfaces, driver_info, driver_internal_info, properties, \
                 instance_info, extra, attrs, provision_state, target_provision_state, provision_updated_at, \
                 power_state, target_power_state, last_error, maintenance, maintenance_reason, fault, clean_step, \
                 deploy_step, service_step, reservation, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                 $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)",
            ),
            node,
        )
        .bind(&node.reservation)
        .bind(&node.created_at)
        .bind(&node.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            duplicate_or_sql(e, || {
                format!(
                    "A node with UUID {} or name {} already exists.",
                    node.uuid,
                    node.name.as_deref().unwrap_or("-")
                )
            })
        })?;
        Ok(())
    }

    /// Write every field of `node` except the reservation (owned by [`Database::reserve`]), if
    /// `node.lock_token` is still the node's lock number: [`DbError::Fenced`] otherwise, so a
    /// conductor that was paused past its take-over cannot write over its successor's work.
    pub async fn update_node(&self, node: &NodeRecord) -> Result<(), DbError> {
        let done = bind_node_fields(
            sqlx::query(
                "UPDATE nodes SET name = $2, driver = $3, interfaces = $4, driver_info = $5, driver_internal_info = $6, \
                 properties = $7, instance_info = $8, extra = $9, attrs = $10, provision_state = $11, \
                 target_provision_state = $12, provision_updated_at = $13, power_state = $14, target_power_state = $15, \
                 last_error = $16, maintenance = $17, maintenance_reason = $18, fault = $19, clean_step = $20, \
                 deploy_step = $21, service_step = $22, updated_at = $23 WHERE uuid = $1 AND lock_token = $24",
            ),
            node,
        )
        .bind(&node.updated_at)
        .bind(node.lock_token)
        .execute(&self.pool)
        .await
        .map_err(|e| duplicate_or_sql(e, || format!(
                    "A node with name {} already exists.",
                    node.name.as_deref().unwrap_or("-")
                )))?;
        if done.rows_affected() == 0 {
            return Err(DbError::Fenced {
                node: node.uuid.clone(),
                token: node.lock_token,
            });
        }
        Ok(())
    }

    /// Delete a node with its ports, port groups, volume connectors and targets, and history.
    pub async fn delete_node(&self, uuid: &str) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ports WHERE node_uuid = $1")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resources WHERE node_uuid = $1")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM node_history WHERE node_uuid = $1")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM node_inventory WHERE node_uuid = $1")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM nodes WHERE uuid = $1")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Take the exclusive lock for `host`: the new lock number, or `None` if someone holds it
    /// (or holds the node's row past `lock_timeout`, as a stuck conductor does).
    pub async fn reserve(&self, uuid: &str, host: &str) -> Result<Option<i64>, DbError> {
        match self.try_reserve(uuid, host).await {
            Err(DbError::Sql(e)) if is_lock_timeout(&e) => Ok(None),
            other => other,
        }
    }

    async fn try_reserve(&self, uuid: &str, host: &str) -> Result<Option<i64>, DbError> {
        const RESERVE: &str = "UPDATE nodes SET reservation = $2, lock_token = lock_token + 1 \
                               WHERE uuid = $1 AND reservation IS NULL RETURNING lock_token";
        if !self.lock_history {
            let row = sqlx::query(RESERVE)
                .bind(uuid)
                .bind(host)
                .fetch_optional(&self.pool)
                .await?;
            return row.map(|r| r.try_get("lock_token")).transpose().map_err(DbError::from);
        }
        // The lock and its history row are one transaction: a conductor killed between the two
        // must not leave a lock the history does not show.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(RESERVE)
            .bind(uuid)
            .bind(host)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let token: i64 = row.try_get("lock_token")?;
        crate::crash_point::reached(crate::crash_point::IN_LOCK_TRANSACTION);
        sqlx::query("INSERT INTO node_locks (node_uuid, token, conductor, acquired_at) VALUES ($1, $2, $3, $4)")
            .bind(uuid)
            .bind(token)
            .bind(host)
            .bind(crate::time::now_iso())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(token))
    }

    /// Release lock number `token` if `host` still holds it.
    pub async fn release(&self, uuid: &str, host: &str, token: i64) -> Result<(), DbError> {
        const RELEASE: &str =
            "UPDATE nodes SET reservation = NULL WHERE uuid = $1 AND reservation = $2 AND lock_token = $3";
        if !self.lock_history {
            sqlx::query(RELEASE)
                .bind(uuid)
                .bind(host)
                .bind(token)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(RELEASE)
            .bind(uuid)
            .bind(host)
            .bind(token)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            Self::end_lock_history(&mut tx, uuid, token, host).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Record in the lock history that lock `token` of `uuid` ended, by `by`.
    async fn end_lock_history(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        uuid: &str,
        token: i64,
        by: &str,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE node_locks SET released_at = $3, released_by = $4 WHERE node_uuid = $1 AND token = $2")
            .bind(uuid)
            .bind(token)
            .bind(crate::time::now_iso())
            .bind(by)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The node's current lock number (`None`: no such node).
    pub async fn lock_token(&self, uuid: &str) -> Result<Option<i64>, DbError> {
        let row = sqlx::query("SELECT lock_token FROM nodes WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("lock_token")).transpose().map_err(DbError::from)
    }

    /// Who holds the lock.
    pub async fn reservation(&self, uuid: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT reservation FROM nodes WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("reservation")?,
            None => None,
        })
    }

    /// Break `holder`'s lock of one node (take-over from a dead conductor), as
    /// [`Database::break_locks`] does; false if `holder` no longer holds it.
    pub async fn break_lock(&self, uuid: &str, holder: &str, by: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE nodes SET reservation = NULL, lock_token = lock_token + 1 WHERE uuid = $1 AND reservation = $2 \
             RETURNING lock_token",
        )
        .bind(uuid)
        .bind(holder)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        if self.lock_history {
            // The broken lock is the one before: the break takes a number of its own, so the
            // old holder's is stale even if nobody locks the node again.
            let token: i64 = row.try_get("lock_token")?;
            Self::end_lock_history(&mut tx, uuid, token - 1, by).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Nodes whose lock is held by someone, with the holder.
    pub async fn reserved_nodes(&self) -> Result<Vec<NodeRecord>, DbError> {
        let rows = sqlx::query("SELECT * FROM nodes WHERE reservation IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::node_from_row).collect()
    }

    /// Refresh this conductor's membership row (its heartbeat); false if the row is gone.
    pub async fn touch_conductor(&self, host: &str) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE conductors SET online = 1, updated_at = $2 WHERE hostname = $1")
            .bind(host)
            .bind(crate::time::now_iso())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hand `request` for `node_uuid` to `conductor`: a new `node_work` row, and on PostgreSQL a
    /// `NOTIFY rivet_work` naming the conductor. The row's id.
    pub async fn add_work(&self, node_uuid: &str, conductor: &str, request: &str) -> Result<String, DbError> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO node_work (id, node_uuid, conductor, request, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(node_uuid)
        .bind(conductor)
        .bind(request)
        .bind(crate::time::now_iso())
        .execute(&self.pool)
        .await?;
        if !self.sqlite {
            sqlx::query("SELECT pg_notify('rivet_work', $1)")
                .bind(conductor)
                .execute(&self.pool)
                .await?;
        }
        Ok(id)
    }

    /// Claim every unclaimed row addressed to `conductor`: `(id, request)`. The conditional
    /// UPDATE makes a claim atomic, so no row is ever run twice.
    pub async fn claim_work(&self, conductor: &str) -> Result<Vec<(String, String)>, DbError> {
        let rows = sqlx::query(
            "UPDATE node_work SET claimed_at = $2 WHERE conductor = $1 AND claimed_at IS NULL RETURNING id, request",
        )
        .bind(conductor)
        .bind(crate::time::now_iso())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("request")?)))
            .collect()
    }

    /// Store a claimed row's result.
    pub async fn finish_work(&self, id: &str, result: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE node_work SET result = $2 WHERE id = $1")
            .bind(id)
            .bind(result)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A row's result once its owner wrote it; the row is deleted then. `Err` if it is gone.
    pub async fn take_work_result(&self, id: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT result FROM node_work WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Err(DbError::Corrupt {
                what: "node_work".into(),
                reason: format!("request {id} vanished before its answer"),
            });
        };
        let result: Option<String> = row.try_get("result")?;
        if result.is_some() {
            self.withdraw_work(id).await?;
        }
        Ok(result)
    }

    /// Delete a row (answered, or given up by the conductor waiting for it).
    pub async fn withdraw_work(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM node_work WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Unanswered rows: `(id, node_uuid, conductor)`.
    pub async fn pending_work(&self) -> Result<Vec<(String, String, String)>, DbError> {
        let rows = sqlx::query("SELECT id, node_uuid, conductor FROM node_work WHERE result IS NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("node_uuid")?, r.try_get("conductor")?)))
            .collect()
    }

    /// Address an unanswered row of dead conductor `from` to `to`, to be claimed again; false if
    /// it was answered or moved meanwhile.
    pub async fn readdress_work(&self, id: &str, from: &str, to: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE node_work SET conductor = $3, claimed_at = NULL WHERE id = $1 AND conductor = $2 AND result IS NULL",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Break every lock `holder` holds (a restarted conductor owns nothing; a dead one's nodes
    /// are taken over), moving each node's lock number on so the old holder can no longer write.
    /// `by` is the conductor breaking them. The nodes, by UUID.
    pub async fn break_locks(&self, holder: &str, by: &str) -> Result<Vec<String>, DbError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE nodes SET reservation = NULL, lock_token = lock_token + 1 WHERE reservation = $1 \
             RETURNING uuid, lock_token",
        )
        .bind(holder)
        .fetch_all(&mut *tx)
        .await?;
        let mut nodes = Vec::with_capacity(rows.len());
        for row in &rows {
            let uuid: String = row.try_get("uuid")?;
            if self.lock_history {
                let token: i64 = row.try_get("lock_token")?;
                Self::end_lock_history(&mut tx, &uuid, token - 1, by).await?;
            }
            nodes.push(uuid);
        }
        tx.commit().await?;
        Ok(nodes)
    }

    /// Register or refresh this conductor.
    pub async fn register_conductor(&self, host: &str, drivers: &[String], group: &str) -> Result<(), DbError> {
        let now = crate::time::now_iso();
        let drivers = serde_json::to_string(drivers).unwrap_or_else(|_| "[]".into());
        let updated = sqlx::query(
            "UPDATE conductors SET drivers = $2, conductor_group = $3, online = 1, updated_at = $4 WHERE hostname = $1",
        )
        .bind(host)
        .bind(&drivers)
        .bind(group)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO conductors (hostname, drivers, conductor_group, online, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, NULL)",
            )
            .bind(host)
            .bind(&drivers)
            .bind(group)
            .bind(&now)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Mark this conductor offline (graceful stop).
    pub async fn conductor_offline(&self, host: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE conductors SET online = 0, updated_at = $2 WHERE hostname = $1")
            .bind(host)
            .bind(crate::time::now_iso())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many nodes are in each (provision state, power state), for the metrics.
    pub async fn node_state_counts(&self) -> Result<Vec<(String, Option<String>, i64)>, DbError> {
        let rows = sqlx::query(
            "SELECT provision_state, power_state, COUNT(*) AS n FROM nodes GROUP BY provision_state, power_state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("provision_state")?,
                    row.try_get("power_state")?,
                    row.try_get("n")?,
                ))
            })
            .collect()
    }

    /// This process's pool: (connections open, of which idle).
    pub fn pool_use(&self) -> (u32, u32) {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        (self.pool.size(), idle)
    }

    /// Every registered conductor, by host name.
    pub async fn conductors(&self) -> Result<Vec<ConductorRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT hostname, drivers, conductor_group, online, created_at, updated_at FROM conductors ORDER BY hostname",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let drivers: String = row.try_get("drivers")?;
                Ok(ConductorRecord {
                    hostname: row.try_get("hostname")?,
                    drivers: serde_json::from_str(&drivers).map_err(|e| DbError::Corrupt {
                        what: "conductor drivers".into(),
                        reason: e.to_string(),
                    })?,
                    conductor_group: row.try_get("conductor_group")?,
                    online: flag(row, "online")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    fn port_from_row(row: &AnyRow) -> Result<PortRecord, DbError> {
        Ok(PortRecord {
            uuid: row.try_get("uuid")?,
            address: row.try_get("address")?,
            node_uuid: row.try_get("node_uuid")?,
            pxe_enabled: flag(row, "pxe_enabled")?,
            attrs: json_doc(row, "attrs")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// Store a new port.
    pub async fn insert_port(&self, port: &PortRecord) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO ports (uuid, address, node_uuid, pxe_enabled, attrs, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&port.uuid)
        .bind(&port.address)
        .bind(&port.node_uuid)
        .bind(i64::from(port.pxe_enabled))
        .bind(json_text(&port.attrs))
        .bind(&port.created_at)
        .bind(&port.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            duplicate_or_sql(e, || {
                format!("A port with MAC address {} already exists.", port.address)
            })
        })?;
        Ok(())
    }

    /// Rewrite a port.
    pub async fn update_port(&self, port: &PortRecord) -> Result<(), DbError> {
        sqlx::query("UPDATE ports SET address = $2, node_uuid = $3, pxe_enabled = $4, attrs = $5, updated_at = $6 WHERE uuid = $1")
            .bind(&port.uuid)
            .bind(&port.address)
            .bind(&port.node_uuid)
            .bind(i64::from(port.pxe_enabled))
            .bind(json_text(&port.attrs))
            .bind(&port.updated_at)
            .execute(&self.pool)
            .await
            .map_err(|e| duplicate_or_sql(e, || format!("A port with MAC address {} already exists.", port.address)))?;
        Ok(())
    }

    /// One port by UUID (or MAC address).
    pub async fn port(&self, ident: &str) -> Result<Option<PortRecord>, DbError> {
        let row = sqlx::query("SELECT * FROM ports WHERE uuid = $1 OR address = $1")
            .bind(ident)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::port_from_row).transpose()
    }

    /// Ports, all or of one node.
    pub async fn ports(&self, node_uuid: Option<&str>) -> Result<Vec<PortRecord>, DbError> {
        let rows = match node_uuid {
            Some(uuid) => {
                sqlx::query("SELECT * FROM ports WHERE node_uuid = $1 ORDER BY created_at, uuid")
                    .bind(uuid)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM ports ORDER BY created_at, uuid")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(Self::port_from_row).collect()
    }

    /// Delete a port.
    pub async fn delete_port(&self, uuid: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM ports WHERE uuid = $1")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn chassis_from_row(row: &AnyRow) -> Result<ChassisRecord, DbError> {
        Ok(ChassisRecord {
            uuid: row.try_get("uuid")?,
            description: row.try_get("description")?,
            extra: json_doc(row, "extra")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// Every chassis, oldest first.
    pub async fn all_chassis(&self) -> Result<Vec<ChassisRecord>, DbError> {
        let rows = sqlx::query("SELECT * FROM chassis ORDER BY created_at, uuid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::chassis_from_row).collect()
    }

    /// One chassis by UUID.
    pub async fn chassis(&self, uuid: &str) -> Result<Option<ChassisRecord>, DbError> {
        let row = sqlx::query("SELECT * FROM chassis WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::chassis_from_row).transpose()
    }

    /// Store a new chassis.
    pub async fn insert_chassis(&self, chassis: &ChassisRecord) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO chassis (uuid, description, extra, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&chassis.uuid)
        .bind(&chassis.description)
        .bind(json_text(&chassis.extra))
        .bind(&chassis.created_at)
        .bind(&chassis.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| duplicate_or_sql(e, || format!("Chassis {} already exists.", chassis.uuid)))?;
        Ok(())
    }

    /// Save a chassis's description and extra.
    pub async fn update_chassis(&self, chassis: &ChassisRecord) -> Result<(), DbError> {
        sqlx::query("UPDATE chassis SET description = $2, extra = $3, updated_at = $4 WHERE uuid = $1")
            .bind(&chassis.uuid)
            .bind(&chassis.description)
            .bind(json_text(&chassis.extra))
            .bind(&chassis.updated_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Remove a chassis.
    pub async fn delete_chassis(&self, uuid: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM chassis WHERE uuid = $1")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Nodes owning ports with any of these MAC addresses (lower-case).
    pub async fn nodes_by_macs(&self, macs: &[String]) -> Result<Vec<String>, DbError> {
        let mut out: Vec<String> = Vec::new();
        for mac in macs {
            let rows = sqlx::query("SELECT node_uuid FROM ports WHERE address = $1")
                .bind(mac)
                .fetch_all(&self.pool)
                .await?;
            for row in rows {
                let uuid: String = row.try_get("node_uuid")?;
                if !out.contains(&uuid) {
                    out.push(uuid);
                }
            }
        }
        Ok(out)
    }

    /// Store the inventory an agent posted for a node, replacing any earlier one.
    pub async fn put_inventory(&self, node_uuid: &str, inventory: &str, plugin_data: &str) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM node_inventory WHERE node_uuid = $1")
            .bind(node_uuid)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO node_inventory (node_uuid, inventory, plugin_data, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(node_uuid)
        .bind(inventory)
        .bind(plugin_data)
        .bind(crate::time::now_iso())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A node's stored inventory and plugin data (JSON texts).
    pub async fn inventory(&self, node_uuid: &str) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query("SELECT inventory, plugin_data FROM node_inventory WHERE node_uuid = $1")
            .bind(node_uuid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some((row.try_get("inventory")?, row.try_get("plugin_data")?)),
            None => None,
        })
    }

    /// Append to a node's history.
    pub async fn add_history(&self, node_uuid: &str, severity: &str, event: &str) -> Result<(), DbError> {
        self.add_history_by(node_uuid, severity, event, None).await
    }

    /// Append to a node's history as `conductor` (else this process's host), with the node's
    /// provision state, target and time in that state as stored now, and the event type of
    /// that state (`takeover` for a take-over's event); then drop the node's events beyond
    /// the newest `node_history_max_size`.
    pub async fn add_history_by(
        &self,
        node_uuid: &str,
        severity: &str,
        event: &str,
        conductor: Option<&str>,
    ) -> Result<(), DbError> {
        let (host, max) = &self.history;
        if *max == 0 {
            return Ok(());
        }
        let row = sqlx::query(
            "SELECT provision_state, target_provision_state, provision_updated_at FROM nodes WHERE uuid = $1",
        )
        .bind(node_uuid)
        .fetch_optional(&self.pool)
        .await?;
        let (state, target, since): (Option<String>, Option<String>, Option<String>) = match &row {
            Some(r) => (
                r.try_get("provision_state")?,
                r.try_get("target_provision_state")?,
                r.try_get("provision_updated_at")?,
            ),
            None => (None, None, None),
        };
        let now = time::OffsetDateTime::now_utc();
        let duration = since
            .as_deref()
            .and_then(crate::time::parse)
            .map(|t| (now - t).whole_seconds().max(0));
        let event_type = if conductor.is_some() {
            "takeover"
        } else {
            crate::model::history_event_type(state.as_deref().unwrap_or_default())
        };
        sqlx::query(
            "INSERT INTO node_history (uuid, node_uuid, created_at, severity, event, conductor, event_type, state, \
             target_provision_state, duration_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(node_uuid)
        .bind(crate::time::format_iso(now))
        .bind(severity)
        .bind(event)
        .bind(conductor.or(host.as_deref()))
        .bind(event_type)
        .bind(state)
        .bind(target)
        .bind(duration)
        .execute(&self.pool)
        .await?;
        // Bounded per node, newest kept (Ironic trims with a periodic task; here at once).
        sqlx::query(
            "DELETE FROM node_history WHERE node_uuid = $1 AND uuid NOT IN \
             (SELECT uuid FROM node_history WHERE node_uuid = $1 ORDER BY created_at DESC LIMIT $2)",
        )
        .bind(node_uuid)
        .bind(i64::try_from(*max).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn history_from_row(r: &AnyRow) -> Result<HistoryEvent, DbError> {
        Ok(HistoryEvent {
            uuid: r.try_get("uuid")?,
            created_at: r.try_get("created_at")?,
            severity: r.try_get("severity")?,
            event: r.try_get("event")?,
            event_type: r
                .try_get::<Option<String>, _>("event_type")?
                .unwrap_or_else(|| "UNKNOWN".to_owned()),
            conductor: r.try_get("conductor")?,
            user: r.try_get("user_id")?,
            project: r.try_get("project")?,
            state: r.try_get("state")?,
            target_provision_state: r.try_get("target_provision_state")?,
            duration_seconds: r.try_get("duration_seconds")?,
        })
    }

    /// A node's history, oldest first.
    pub async fn history(&self, node_uuid: &str) -> Result<Vec<HistoryEvent>, DbError> {
        let rows = sqlx::query("SELECT * FROM node_history WHERE node_uuid = $1 ORDER BY created_at")
            .bind(node_uuid)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::history_from_row).collect()
    }

    /// One event of a node's history.
    pub async fn history_event(&self, node_uuid: &str, uuid: &str) -> Result<Option<HistoryEvent>, DbError> {
        let row = sqlx::query("SELECT * FROM node_history WHERE node_uuid = $1 AND uuid = $2")
            .bind(node_uuid)
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::history_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_nodes_history_keeps_its_newest_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/h.sqlite", dir.path().display());
        let db = Database::connect(&url, Duration::from_secs(60))
            .await
            .expect("database")
            .with_history("c1", 3);
        for i in 0..5 {
            db.add_history("n1", "INFO", &format!("event {i}"))
                .await
                .expect("recorded");
        }
        db.add_history_by("n1", "WARNING", "taken over", Some("c2"))
            .await
            .expect("recorded");
        let events = db.history("n1").await.expect("history");
        let texts: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(texts, ["event 3", "event 4", "taken over"]);
        assert_eq!(events[0].conductor.as_deref(), Some("c1"));
        assert_eq!(events[0].event_type, "provisioning", "no node row: no state");
        assert_eq!(
            (events[2].conductor.as_deref(), events[2].event_type.as_str()),
            (Some("c2"), "takeover")
        );
        let none = Database::connect(&url, Duration::from_secs(60))
            .await
            .expect("database")
            .with_history("c1", 0);
        none.add_history("n2", "INFO", "not kept").await.expect("accepted");
        assert!(none.history("n2").await.expect("history").is_empty());
    }
}
