//! SQLite in WAL mode doing the store's job, as the baseline the store is measured against.
//!
//! It keeps the same promises as the store, so the comparison is of engines, not of guarantees:
//! every commit is durable (`synchronous = FULL`: in WAL mode that is the level that fsyncs the
//! WAL on each commit; `NORMAL` syncs only at checkpoints and can lose recent commits on a power
//! cut), the same secondary indexes, an outbox row in the same transaction, ids allocated the way
//! the store allocates them (start millisecond + per-millisecond sequence), and the same 64 MiB
//! cache budget.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use appliance_model::{Event, EventId, IdAllocator, NewEvent, Timestamp};
use rusqlite::{Connection, Row, Transaction, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::workload::Engine;

const SCHEMA: &str = "
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    camera_id   TEXT NOT NULL,
    channel_id  TEXT,
    source      TEXT NOT NULL,
    type        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER,
    attributes  TEXT NOT NULL,
    media       TEXT NOT NULL,
    acked       INTEGER NOT NULL DEFAULT 0,
    ack_ms      INTEGER,
    ack_by      TEXT,
    recorded_ms INTEGER NOT NULL
);
CREATE INDEX events_by_camera ON events (camera_id, start_ms, id);
CREATE INDEX events_by_type ON events (type, start_ms, id);
CREATE INDEX events_unacked ON events (start_ms) WHERE acked = 0;
CREATE TABLE outbox (seq INTEGER PRIMARY KEY, event_id INTEGER NOT NULL);
";

const INSERT_EVENT: &str = "INSERT INTO events (id, camera_id, channel_id, source, type, \
     severity, start_ms, end_ms, attributes, media, recorded_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
const INSERT_OUTBOX: &str = "INSERT INTO outbox (seq, event_id) VALUES (?1, ?2)";
const NEWEST_FOR_CAMERA: &str = "SELECT id, camera_id, channel_id, source, type, severity, \
     start_ms, end_ms, attributes, media, ack_ms, ack_by, recorded_ms FROM events \
     WHERE camera_id = ?1 ORDER BY start_ms DESC, id DESC LIMIT ?2";

const DB_FILE: &str = "events.db";
/// Files SQLite keeps for one WAL database.
const DB_FILES: [&str; 3] = [DB_FILE, "events.db-wal", "events.db-shm"];

pub struct SqliteEngine {
    conn: Connection,
    dir: PathBuf,
    next_outbox_seq: i64,
}

impl SqliteEngine {
    pub fn open(dir: &Path) -> Result<SqliteEngine> {
        std::fs::create_dir_all(dir)?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
        conn.pragma_update(None, "synchronous", "FULL")?;
        let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
        ensure!(
            synchronous == 2,
            "synchronous is {synchronous}, not FULL (2)"
        );
        // Negative: KiB. The same budget as the store's page cache.
        conn.pragma_update(None, "cache_size", -64 * 1024)?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteEngine {
            conn,
            dir: dir.to_path_buf(),
            next_outbox_seq: 0,
        })
    }

    /// Inserts `events` in one transaction; what both write paths share.
    fn insert_all(&mut self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        let tx = self.conn.transaction()?;
        let now = Timestamp::now();
        let mut ids = IdAllocator::default();
        let mut stored = Vec::with_capacity(events.len());
        {
            let mut insert_event = tx.prepare_cached(INSERT_EVENT)?;
            let mut insert_outbox = tx.prepare_cached(INSERT_OUTBOX)?;
            for new in events {
                let start = new.start_time.unwrap_or(now);
                let id = allocate(&mut ids, &tx, start.as_millis())?;
                let event = Event {
                    id,
                    camera_id: new.camera_id,
                    channel_id: new.channel_id,
                    source: new.source,
                    kind: new.kind,
                    severity: new.severity,
                    start_time: start,
                    end_time: new.end_time,
                    attributes: new.attributes,
                    ack: None,
                    media: new.media,
                    recorded_at: now,
                };
                insert_event.execute(params![
                    sql_id(id)?,
                    event.camera_id,
                    event.channel_id,
                    enum_text(&event.source)?,
                    event.kind,
                    enum_text(&event.severity)?,
                    event.start_time.as_millis(),
                    event.end_time.map(Timestamp::as_millis),
                    serde_json::to_string(&event.attributes)?,
                    serde_json::to_string(&event.media)?,
                    event.recorded_at.as_millis(),
                ])?;
                insert_outbox.execute(params![self.next_outbox_seq, sql_id(id)?])?;
                self.next_outbox_seq += 1;
                stored.push(event);
            }
        }
        tx.commit()?;
        Ok(stored)
    }
}

/// Ids as the store's writer hands them out (same allocator), looked up once per millisecond per
/// transaction.
fn allocate(ids: &mut IdAllocator, tx: &Transaction<'_>, start_ms: i64) -> Result<EventId> {
    ids.allocate(start_ms, |ms| -> Result<Option<u16>> {
        let highest: Option<i64> = tx
            .prepare_cached("SELECT max(id) FROM events WHERE id BETWEEN ?1 AND ?2")?
            .query_row(
                params![
                    sql_id(EventId::first_at(ms))?,
                    sql_id(EventId::from_parts(ms, u16::MAX))?
                ],
                |row| row.get(0),
            )?;
        highest
            .map(|raw| Ok(EventId::from_u64(u64::try_from(raw)?).sequence()))
            .transpose()
    })
}

fn sql_id(id: EventId) -> Result<i64> {
    Ok(i64::try_from(id.as_u64())?)
}

/// Enums are stored by their serde name (`skill`, `major`), as the REST API writes them.
fn enum_text(value: &impl Serialize) -> Result<String> {
    match serde_json::to_value(value)? {
        Value::String(s) => Ok(s),
        other => anyhow::bail!("{other} is not a unit enum value"),
    }
}

fn enum_from_text<T: DeserializeOwned>(text: String) -> Result<T> {
    Ok(serde_json::from_value(Value::String(text))?)
}

fn event_from_row(row: &Row<'_>) -> Result<Event> {
    let ack_ms: Option<i64> = row.get(10)?;
    Ok(Event {
        id: EventId::from_u64(u64::try_from(row.get::<_, i64>(0)?)?),
        camera_id: row.get(1)?,
        channel_id: row.get(2)?,
        source: enum_from_text(row.get(3)?)?,
        kind: row.get(4)?,
        severity: enum_from_text(row.get(5)?)?,
        start_time: Timestamp::from_millis(row.get(6)?),
        end_time: row.get::<_, Option<i64>>(7)?.map(Timestamp::from_millis),
        attributes: serde_json::from_str(&row.get::<_, String>(8)?)?,
        media: serde_json::from_str(&row.get::<_, String>(9)?)?,
        ack: ack_ms
            .map(|at| -> Result<_> {
                Ok(appliance_model::Ack {
                    at: Timestamp::from_millis(at),
                    by: row.get(11)?,
                })
            })
            .transpose()?,
        recorded_at: Timestamp::from_millis(row.get(12)?),
    })
}

impl Engine for SqliteEngine {
    fn append_durable(&mut self, event: NewEvent) -> Result<Event> {
        let mut stored = self.insert_all(vec![event])?;
        stored.pop().context("one event inserted")
    }

    fn append_batch(&mut self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        self.insert_all(events)
    }

    fn newest_for_camera(&mut self, camera_id: &str, limit: usize) -> Result<Vec<Event>> {
        let mut select = self.conn.prepare_cached(NEWEST_FOR_CAMERA)?;
        let mut rows = select.query(params![camera_id, i64::try_from(limit)?])?;
        let mut events = Vec::with_capacity(limit);
        while let Some(row) = rows.next()? {
            events.push(event_from_row(row)?);
        }
        Ok(events)
    }

    fn close(self) -> Result<u64> {
        // Move everything into the main file and shrink the WAL to zero, then count all three
        // files while the connection is still open (closing deletes the WAL and shm).
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        ensure!(busy == 0, "the WAL checkpoint could not complete");
        let mut bytes = 0;
        for name in DB_FILES {
            match std::fs::metadata(self.dir.join(name)) {
                Ok(meta) => bytes += meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(bytes)
    }
}
