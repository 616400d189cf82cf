//! The [`StoredResource`] rows of `resources`, one table for every kind (migration 0005): port
//! groups, volume connectors and targets, deploy templates, runbooks, allocations.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Database, DbError, is_unique_violation, json_doc, json_text};
use crate::model::{ResourceKind, StoredResource};

fn kind_of(text: &str) -> Result<ResourceKind, DbError> {
    ResourceKind::ALL
        .into_iter()
        .find(|k| k.as_str() == text)
        .ok_or_else(|| DbError::Corrupt {
            what: "resources.kind".into(),
            reason: format!("unknown kind {text:?}"),
        })
}

fn resource_from_row(row: &AnyRow) -> Result<StoredResource, DbError> {
    Ok(StoredResource {
        kind: kind_of(&row.try_get::<String, _>("kind")?)?,
        uuid: row.try_get("uuid")?,
        node_uuid: row.try_get("node_uuid")?,
        doc: json_doc(row, "doc")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Database {
    /// Store a new resource. [`DbError::Duplicate`] with Ironic's words when its UUID or one of
    /// its kind's unique keys is taken.
    pub async fn insert_resource(&self, resource: &StoredResource) -> Result<(), DbError> {
        if self.resource_by_uuid(&resource.uuid).await?.is_some() {
            return Err(DbError::Duplicate(format!(
                "A {} with UUID {} already exists.",
                resource.kind.label().to_lowercase(),
                resource.uuid
            )));
        }
        let (key_a, key_b) = resource.keys();
        let outcome = sqlx::query(
            "INSERT INTO resources (uuid, kind, node_uuid, key_a, key_b, doc, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&resource.uuid)
        .bind(resource.kind.as_str())
        .bind(&resource.node_uuid)
        .bind(&key_a)
        .bind(&key_b)
        .bind(json_text(&resource.doc))
        .bind(&resource.created_at)
        .bind(&resource.updated_at)
        .execute(&self.pool)
        .await;
        self.duplicate_or(outcome, resource).await
    }

    /// Rewrite a resource (its node, document and `updated_at`); [`DbError::Duplicate`] as for
    /// [`Database::insert_resource`].
    pub async fn update_resource(&self, resource: &StoredResource) -> Result<(), DbError> {
        let (key_a, key_b) = resource.keys();
        let outcome = sqlx::query(
            "UPDATE resources SET node_uuid = $2, key_a = $3, key_b = $4, doc = $5, updated_at = $6 WHERE uuid = $1",
        )
        .bind(&resource.uuid)
        .bind(&resource.node_uuid)
        .bind(&key_a)
        .bind(&key_b)
        .bind(json_text(&resource.doc))
        .bind(&resource.updated_at)
        .execute(&self.pool)
        .await;
        self.duplicate_or(outcome, resource).await
    }

    /// Rewrite a resource only if nobody changed it since it was read: its stored `updated_at`
    /// is still `read_at` (the value it had when read). `Ok(false)` when it changed or was
    /// deleted meanwhile; [`DbError::Duplicate`] as for [`Database::insert_resource`].
    pub async fn replace_resource(&self, resource: &StoredResource, read_at: Option<&str>) -> Result<bool, DbError> {
        let (key_a, key_b) = resource.keys();
        let outcome = sqlx::query(
            "UPDATE resources SET node_uuid = $2, key_a = $3, key_b = $4, doc = $5, updated_at = $6 \
             WHERE uuid = $1 AND (updated_at = $7 OR (updated_at IS NULL AND $7 IS NULL))",
        )
        .bind(&resource.uuid)
        .bind(&resource.node_uuid)
        .bind(&key_a)
        .bind(&key_b)
        .bind(json_text(&resource.doc))
        .bind(&resource.updated_at)
        .bind(read_at)
        .execute(&self.pool)
        .await;
        let changed = match &outcome {
            Ok(done) => done.rows_affected() == 1,
            Err(_) => false,
        };
        self.duplicate_or(outcome, resource).await?;
        Ok(changed)
    }

    /// A broken uniqueness rule named by the key that another row of the kind holds.
    async fn duplicate_or(
        &self,
        outcome: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
        resource: &StoredResource,
    ) -> Result<(), DbError> {
        match outcome {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                let (key_a, _) = resource.keys();
                let first = match key_a {
                    Some(key) => {
                        sqlx::query("SELECT uuid FROM resources WHERE kind = $1 AND key_a = $2 AND uuid <> $3")
                            .bind(resource.kind.as_str())
                            .bind(key)
                            .bind(&resource.uuid)
                            .fetch_optional(&self.pool)
                            .await?
                            .is_some()
                    }
                    None => false,
                };
                Err(DbError::Duplicate(resource.duplicate_message(first)))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn resource_by_uuid(&self, uuid: &str) -> Result<Option<StoredResource>, DbError> {
        let row = sqlx::query("SELECT * FROM resources WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(resource_from_row).transpose()
    }

    /// One resource of `kind` by UUID, or (kinds with names) by name.
    pub async fn resource(&self, kind: ResourceKind, ident: &str) -> Result<Option<StoredResource>, DbError> {
        let by_uuid = uuid::Uuid::parse_str(ident).is_ok();
        if !by_uuid && !kind.named() {
            return Ok(None);
        }
        let sql = if by_uuid {
            "SELECT * FROM resources WHERE kind = $1 AND uuid = $2"
        } else {
            "SELECT * FROM resources WHERE kind = $1 AND key_b = $2"
        };
        let row = sqlx::query(sql)
            .bind(kind.as_str())
            .bind(ident)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(resource_from_row).transpose()
    }

    /// Every resource of `kind`, or those of one node, oldest first (Ironic's default order).
    pub async fn resources(&self, kind: ResourceKind, node_uuid: Option<&str>) -> Result<Vec<StoredResource>, DbError> {
        let rows = match node_uuid {
            Some(node) => {
                sqlx::query("SELECT * FROM resources WHERE kind = $1 AND node_uuid = $2 ORDER BY created_at, uuid")
                    .bind(kind.as_str())
                    .bind(node)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM resources WHERE kind = $1 ORDER BY created_at, uuid")
                    .bind(kind.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(resource_from_row).collect()
    }

    /// Remove a resource only if nobody changed it since it was read (its `updated_at` is still
    /// `read_at`); whether it was removed.
    pub async fn delete_resource_if(&self, uuid: &str, read_at: Option<&str>) -> Result<bool, DbError> {
        let done = sqlx::query(
            "DELETE FROM resources WHERE uuid = $1 AND (updated_at = $2 OR (updated_at IS NULL AND $2 IS NULL))",
        )
        .bind(uuid)
        .bind(read_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Remove a resource.
    pub async fn delete_resource(&self, uuid: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM resources WHERE uuid = $1")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
