//! How record fields are stored: fixed-width UTC text timestamps, 0/1
//! flags, JSON metadata, and the reading of rows back into fields.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::MetaError;

/// Formats a timestamp as stored: `2026-11-22T03:39:11.123456789Z`, always
/// nine fraction digits, so text order is time order.
pub(crate) fn encode_ts(ts: &DateTime<Utc>) -> Result<String, MetaError> {
    if !(0..=9999).contains(&ts.year()) {
        return Err(MetaError::InvalidValue(format!(
            "timestamp {ts} is outside the years 0000-9999"
        )));
    }
    Ok(ts.to_rfc3339_opts(SecondsFormat::Nanos, true))
}

/// Parses a stored timestamp.
pub(crate) fn decode_ts(text: &str) -> Result<DateTime<Utc>, MetaError> {
    DateTime::parse_from_rfc3339(text)
        .map(|ts| ts.with_timezone(&Utc))
        .map_err(|e| MetaError::Corrupt(format!("timestamp '{text}': {e}")))
}

/// Serialises a metadata map as a JSON object.
pub(crate) fn encode_metadata(map: &BTreeMap<String, String>) -> Result<String, MetaError> {
    serde_json::to_string(map).map_err(|e| MetaError::InvalidValue(format!("metadata: {e}")))
}

/// Stores a flag as 0 or 1.
pub(crate) fn encode_flag(flag: bool) -> i64 {
    i64::from(flag)
}

/// Reads the columns of one row, naming the row in errors.
pub(crate) struct Fields<'r> {
    row: &'r AnyRow,
    what: &'static str,
}

impl<'r> Fields<'r> {
    /// Reads `row`, a row of `what` ("volume", …).
    pub(crate) fn new(row: &'r AnyRow, what: &'static str) -> Self {
        Fields { row, what }
    }

    fn corrupt(&self, column: &str, detail: impl std::fmt::Display) -> MetaError {
        let id: Option<String> = self.row.try_get("id").ok();
        MetaError::Corrupt(format!(
            "{} {}: column {column}: {detail}",
            self.what,
            id.as_deref().unwrap_or("?")
        ))
    }

    /// A non-null text column.
    pub(crate) fn text(&self, column: &str) -> Result<String, MetaError> {
        self.row
            .try_get(column)
            .map_err(|e| self.corrupt(column, e))
    }

    /// A nullable text column.
    pub(crate) fn opt_text(&self, column: &str) -> Result<Option<String>, MetaError> {
        self.row
            .try_get(column)
            .map_err(|e| self.corrupt(column, e))
    }

    /// A non-null integer column.
    pub(crate) fn int(&self, column: &str) -> Result<i64, MetaError> {
        self.row
            .try_get(column)
            .map_err(|e| self.corrupt(column, e))
    }

    /// A 0/1 flag column.
    pub(crate) fn flag(&self, column: &str) -> Result<bool, MetaError> {
        match self.int(column)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.corrupt(column, format!("flag {other} is neither 0 nor 1"))),
        }
    }

    /// A timestamp column.
    pub(crate) fn ts(&self, column: &str) -> Result<DateTime<Utc>, MetaError> {
        let text = self.text(column)?;
        decode_ts(&text).map_err(|e| self.corrupt(column, e))
    }

    /// A JSON metadata column.
    pub(crate) fn metadata(&self, column: &str) -> Result<BTreeMap<String, String>, MetaError> {
        let text = self.text(column)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(column, format!("'{text}': {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let ts = Utc
            .with_ymd_and_hms(2026, 11, 22, 3, 39, 11)
            .single()
            .expect("valid date");
        let micro = ts + chrono::Duration::microseconds(123_456);
        assert_eq!(
            encode_ts(&micro).expect("encode"),
            "2026-11-22T03:39:11.123456000Z"
        );
        assert_eq!(
            encode_ts(&ts).expect("encode"),
            "2026-11-22T03:39:11.000000000Z"
        );
        let nano = ts + chrono::Duration::nanoseconds(1);
        assert_eq!(
            decode_ts(&encode_ts(&nano).expect("encode")).expect("decode"),
            nano
        );
        let early = Utc
            .with_ymd_and_hms(5, 1, 2, 3, 4, 5)
            .single()
            .expect("valid date");
        assert_eq!(
            encode_ts(&early).expect("encode"),
            "0005-01-02T03:04:05.000000000Z"
        );
        // Text order is time order.
        assert!(encode_ts(&early).expect("encode") < encode_ts(&ts).expect("encode"));
        assert!(encode_ts(&ts).expect("encode") < encode_ts(&nano).expect("encode"));
    }

    #[test]
    fn out_of_range_years_are_refused() {
        let far = Utc
            .with_ymd_and_hms(10_000, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date");
        assert!(matches!(encode_ts(&far), Err(MetaError::InvalidValue(_))));
    }

    #[test]
    fn garbage_timestamps_are_corrupt() {
        assert!(matches!(decode_ts("yesterday"), Err(MetaError::Corrupt(_))));
    }
}
