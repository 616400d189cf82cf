//! Authentication: `noauth`, or HTTP basic against an htpasswd file with bcrypt hashes.
//! The discovery documents and the ramdisk endpoints (lookup, heartbeat) stay public, as in
//! Ironic: agents have no credentials.

use std::collections::BTreeMap;
use std::path::Path;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::{ApiError, AppState};

/// Users of an htpasswd file.
#[derive(Debug)]
pub struct Users(BTreeMap<String, String>);

impl Users {
    /// Read `user:hash` lines; only bcrypt hashes (`$2y$`, `$2b$`, `$2a$`) are accepted.
    pub fn load(path: &Path) -> Result<Users, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut users = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("{}:{}: expected user:hash", path.display(), n + 1))?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                return Err(format!(
                    "{}:{}: only bcrypt hashes are supported (htpasswd -B)",
                    path.display(),
                    n + 1
                ));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Users(users))
    }

    fn check(&self, header: &str) -> bool {
        let Some(encoded) = header.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        self.0
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false))
    }
}

fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/v1" | "/v1/" | "/v1/lookup" | "/v1/lookup/" | "/v1/continue_inspection"
    ) || path.starts_with("/v1/heartbeat/")
        || path.starts_with("/boot/")
        || path.starts_with("/httpboot/")
}

pub(super) async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(users) = &state.users else {
        return next.run(request).await;
    };
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let allowed = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| users.check(h));
    if allowed {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}
