//! The fleet's state over time (migration 0007): node counts by provision and power state,
//! one sample per period, shared by every conductor of the database.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use rivet_common::JsonObject;

use super::{Database, DbError, json_doc, json_text};

/// Node counts at one time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetSample {
    /// When it was taken (`2026-12-01T17:20:00.000000+00:00`).
    pub at: String,
    /// Nodes by provision state.
    pub provision_state: BTreeMap<String, i64>,
    /// Nodes by power state (`none` for a node whose power state is unknown).
    pub power_state: BTreeMap<String, i64>,
}

impl Database {
    /// Count the nodes now and store the count as period `bucket`, unless a conductor already
    /// did; then drop the periods before `oldest_bucket`. Returns whether this call stored it.
    pub async fn record_fleet_sample(&self, bucket: i64, oldest_bucket: i64) -> Result<bool, DbError> {
        let mut provision = BTreeMap::new();
        let mut power = BTreeMap::new();
        for (state, power_state, n) in self.node_state_counts().await? {
            *provision.entry(state).or_insert(0) += n;
            *power.entry(power_state.unwrap_or_else(|| "none".into())).or_insert(0) += n;
        }
        let counts: JsonObject = [
            ("provision_state".to_owned(), serde_json::json!(provision)),
            ("power_state".to_owned(), serde_json::json!(power)),
        ]
        .into_iter()
        .collect();
        let stored = sqlx::query(
            "INSERT INTO fleet_samples (bucket, taken_at, counts) VALUES ($1, $2, $3) ON CONFLICT (bucket) DO NOTHING",
        )
        .bind(bucket)
        .bind(crate::time::now_iso())
        .bind(json_text(&counts))
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0;
        sqlx::query("DELETE FROM fleet_samples WHERE bucket < $1")
            .bind(oldest_bucket)
            .execute(&self.pool)
            .await?;
        Ok(stored)
    }

    /// The stored samples, oldest first.
    pub async fn fleet_samples(&self) -> Result<Vec<FleetSample>, DbError> {
        let rows = sqlx::query("SELECT taken_at, counts FROM fleet_samples ORDER BY bucket")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let counts = json_doc(row, "counts")?;
                let part = |key: &str| -> BTreeMap<String, i64> {
                    counts
                        .get(key)
                        .and_then(|v| serde_json::from_value(v.clone()).ok())
                        .unwrap_or_default()
                };
                Ok(FleetSample {
                    at: row.try_get("taken_at")?,
                    provision_state: part("provision_state"),
                    power_state: part("power_state"),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_sample_a_period_however_many_conductors_take_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/f.sqlite", dir.path().display());
        let db = Database::connect(&url, Duration::from_secs(60))
            .await
            .expect("database");
        assert!(db.record_fleet_sample(10, 0).await.expect("sampled"));
        assert!(
            !db.record_fleet_sample(10, 0).await.expect("sampled"),
            "period 10 is taken"
        );
        assert!(db.record_fleet_sample(11, 0).await.expect("sampled"));
        assert_eq!(db.fleet_samples().await.expect("read").len(), 2);
        // Periods before the oldest kept one go.
        assert!(db.record_fleet_sample(12, 11).await.expect("sampled"));
        let samples = db.fleet_samples().await.expect("read");
        assert_eq!(samples.len(), 2);
        assert!(samples[0].provision_state.is_empty(), "no nodes: no counts");
    }
}
