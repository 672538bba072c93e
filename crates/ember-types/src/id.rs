//! Backup identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The identifier of one backup: a random UUID, as Cinder uses, so that an
/// id made by Ember can be handed to the Cinder API unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackupId(Uuid);

impl BackupId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        BackupId(Uuid::new_v4())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for BackupId {
    fn from(uuid: Uuid) -> Self {
        BackupId(uuid)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A string that is not a UUID was given as a backup id.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a backup id (expected a UUID such as 3052c307-119e-4f78-960e-972078aa15a8)")]
pub struct IdParseError(pub String);

impl FromStr for BackupId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(BackupId)
            .map_err(|_| IdParseError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_through_its_text_form() {
        let id = BackupId::new_random();
        let parsed: BackupId = id.to_string().parse().expect("parse");
        assert_eq!(parsed, id);
    }

    #[test]
    fn garbage_is_not_an_id() {
        let err = "not-a-uuid".parse::<BackupId>().unwrap_err();
        assert!(err.to_string().contains("not-a-uuid"));
    }
}
