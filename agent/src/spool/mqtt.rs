//! What the spool remembers of the MQTT messages whose readings it holds,
//! so that a QoS 1 message the broker delivers again after an agent crash
//! (committed, but killed before the PUBACK reached the broker) is
//! recognised and acknowledged without being stored twice.
//!
//! A broker redelivers an unacknowledged QoS 1 message of a persistent
//! session under the same packet id with the DUP flag set, and does not
//! reuse that id until the message is acknowledged. So one row per (client
//! id, packet id) is enough: an [`MqttMark`] is written inside the
//! transaction that commits the batch holding the message's readings
//! ([`super::Spool::append_marked`]), replacing whatever message held that
//! packet id before (which the broker can only have reused once it had our
//! acknowledgement). The table holds at most 65,535 rows per client id.
//!
//! A redelivery is recognised by its packet id, the DUP flag and a digest
//! of topic and payload ([`digest`]). The one case this cannot tell apart:
//! a message identical in topic and payload to the last committed message
//! under the same packet id (the id comes round again after 65,535
//! messages), delivered, not committed, and redelivered after a crash: it
//! is taken for the old one.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

/// One MQTT message, committed with the batch that holds its readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttMark {
    pub client_id: String,
    pub packet_id: u16,
    /// [`digest`] of the message's topic and payload.
    pub digest: u64,
}

/// A 64-bit digest of a message (CRC-64/XZ over the topic, a 0 byte and
/// the payload): stable across agent versions and restarts.
pub fn digest(topic: &str, payload: &[u8]) -> u64 {
    const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
    let mut d = CRC.digest();
    d.update(topic.as_bytes());
    d.update(&[0]);
    d.update(payload);
    d.finalize()
}

/// Record `marks` within the caller's transaction.
pub(super) fn apply(conn: &Connection, marks: &[&MqttMark]) -> rusqlite::Result<()> {
    for m in marks {
        conn.execute(
            "INSERT OR REPLACE INTO mqtt_delivered (client_id, packet_id, digest) VALUES (?1, ?2, ?3)",
            params![m.client_id, i64::from(m.packet_id), m.digest as i64],
        )?;
    }
    Ok(())
}

/// The committed messages of `client_id`: packet id to digest.
pub(super) fn load(conn: &Connection, client_id: &str) -> rusqlite::Result<BTreeMap<u16, u64>> {
    let mut stmt =
        conn.prepare("SELECT packet_id, digest FROM mqtt_delivered WHERE client_id = ?1")?;
    let rows = stmt.query_map([client_id], |r| {
        Ok((r.get::<_, i64>(0)? as u16, r.get::<_, i64>(1)? as u64))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::tests::batch;
    use crate::spool::{Lane, Mark, Spool};

    fn mark(client: &str, packet_id: u16, payload: &str) -> Mark {
        Mark::Mqtt(MqttMark {
            client_id: client.into(),
            packet_id,
            digest: digest("plant/l1/temp", payload.as_bytes()),
        })
    }

    #[test]
    fn marks_commit_with_their_batch_replace_by_packet_id_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let mut s = Spool::open(&path).unwrap();
        s.append_marked(
            &mut batch(1),
            &[],
            Lane::Readings,
            &[
                mark("gw", 1, "21.5"),
                mark("gw", 2, "22.0"),
                mark("other", 1, "9"),
            ],
        )
        .unwrap();
        // Packet id 1 used again (the broker had our acknowledgement).
        s.append_marked(&mut batch(1), &[], Lane::Readings, &[mark("gw", 1, "23.0")])
            .unwrap();
        drop(s);
        let s = Spool::open(&path).unwrap();
        let got = s.mqtt_delivered("gw").unwrap();
        let want: BTreeMap<u16, u64> = [
            (1, digest("plant/l1/temp", b"23.0")),
            (2, digest("plant/l1/temp", b"22.0")),
        ]
        .into();
        assert_eq!(got, want);
        assert_eq!(s.mqtt_delivered("other").unwrap().len(), 1);
        assert!(s.mqtt_delivered("nobody").unwrap().is_empty());
    }

    #[test]
    fn the_digest_tells_topic_from_payload() {
        assert_ne!(digest("a/b", b"c"), digest("a", b"/bc"));
        assert_ne!(digest("t", b"1"), digest("t", b"2"));
        // CRC-64/XZ of "123456789" is 0x995dc9bbdf1939fa (the catalogue's check value).
        const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
        assert_eq!(CRC.checksum(b"123456789"), 0x995d_c9bb_df19_39fa);
    }
}
