//! The two generations of reading and alarm messages, and what tells them
//! apart: schema names, the Kafka key, and the few fields v2 spells
//! differently. Pure: names in, names out.
//!
//! - **v1** (`edge.reading.v1`, `edge.series-batch.v1`, `edge.alarm.v1`):
//!   key = the series name; the relay's site is `site`.
//! - **v2** (`edge.reading.v2`, `edge.series-batch.v2`, `edge.alarm.v2`):
//!   key = `<gateway>:<series>` ([`series_key`]), so two gateways with the
//!   same series name never share a key; the relay's site is
//!   `gateway_site` (beside `gateway_tags`, both from the relay config), so
//!   flattening the series' `tags` (which may hold a `site` of the
//!   gateway's own) into the message cannot collide; series-batch points
//!   carry a readable `ts`; an alarm always has `limit_kind` (`null` when
//!   the check is not a limit).
//!
//! Gateway events (`edge.event.v1`) have one generation: their key was
//! always the gateway id.
//!
//! Invariant: [`split_key`] gives back the gateway and series of every key
//! [`series_key`] makes, because series names never contain `:` (the relay
//! refuses them, [`crate::validation::is_plain_name`]) while gateway ids
//! may contain anything but are split off at the *last* `:`.

/// A generation of the reading and alarm messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// Keys by series name (the shape before gateways were in the key).
    V1,
    /// Keys by gateway and series.
    V2,
}

/// Schema name of v2 reading messages.
pub const READING_SCHEMA_V2: &str = "edge.reading.v2";
/// Schema name of v2 alarm messages.
pub const ALARM_SCHEMA_V2: &str = "edge.alarm.v2";
/// Schema name of v2 series-batch messages.
pub const SERIES_BATCH_SCHEMA_V2: &str = "edge.series-batch.v2";

/// What separates the gateway from the series in a v2 key.
pub const KEY_SEPARATOR: char = ':';

impl Version {
    /// `"v1"` or `"v2"`: the config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }

    /// Schema name of reading messages.
    pub fn reading_schema(self) -> &'static str {
        match self {
            Version::V1 => super::READING_SCHEMA,
            Version::V2 => READING_SCHEMA_V2,
        }
    }

    /// Schema name of series-batch messages.
    pub fn series_batch_schema(self) -> &'static str {
        match self {
            Version::V1 => super::SERIES_BATCH_SCHEMA,
            Version::V2 => SERIES_BATCH_SCHEMA_V2,
        }
    }

    /// Schema name of alarm messages.
    pub fn alarm_schema(self) -> &'static str {
        match self {
            Version::V1 => super::ALARM_SCHEMA,
            Version::V2 => ALARM_SCHEMA_V2,
        }
    }
}

/// The Kafka key of a reading, series-batch or alarm message: the series
/// name in v1, `<gateway>:<series>` in v2.
pub fn series_key(version: Version, gateway: &str, series: &str) -> String {
    match version {
        Version::V1 => series.to_owned(),
        Version::V2 => format!("{gateway}{KEY_SEPARATOR}{series}"),
    }
}

/// The gateway and series of a v2 key; `None` without a separator.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once(KEY_SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    #[test]
    fn v2_keys_hold_the_gateway_and_split_back() {
        // (gateway, series, v2 key as the doc spells it)
        let table = [
            ("plant-a-gw-1", "press-3.oil_temp", "plant-a-gw-1:press-3.oil_temp"),
            ("gw/with/slashes", "line1/temp",    "gw/with/slashes:line1/temp"),
            ("gw:colon", "a.b",                  "gw:colon:a.b"),
            ("", "x",                            ":x"),
        ];
        for (gateway, series, key) in table {
            assert_eq!(series_key(Version::V2, gateway, series), key);
            assert_eq!(split_key(key), Some((gateway, series)), "{key}");
            assert_eq!(series_key(Version::V1, gateway, series), series);
        }
        assert_eq!(split_key("no-separator"), None);
    }
}
