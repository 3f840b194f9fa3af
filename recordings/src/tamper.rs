//! Deliberate damage for tests of tamper detection (feature `danger-tamper`, enabled only by test builds):
//! changes a stored chunk behind the store's back, as an attacker with write access to the file would.

use std::path::Path;

use crate::RecordingError;

/// Flips one bit in the middle of chunk `seq` of session `session_id` in the database at `db`.
pub fn danger_flip_chunk_byte(db: &Path, session_id: &str, seq: u64) -> Result<(), RecordingError> {
    let conn = rusqlite::Connection::open(db)?;
    let mut data: Vec<u8> = conn.query_row(
        "SELECT data FROM chunks WHERE session_id = ?1 AND seq = ?2",
        rusqlite::params![session_id, seq],
        |row| row.get(0),
    )?;
    let middle = data.len() / 2;
    if let Some(byte) = data.get_mut(middle) {
        *byte ^= 0x01;
    }
    conn.execute(
        "UPDATE chunks SET data = ?3 WHERE session_id = ?1 AND seq = ?2",
        rusqlite::params![session_id, seq, data],
    )?;
    Ok(())
}
