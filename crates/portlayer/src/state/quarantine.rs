//! Records that do not decode are kept, not deleted. A record this version cannot read was
//! most likely written by another version (an `upgrade --rollback` to an older build meets
//! fields it does not know the meaning of, or a newer record layout); deleting it would lose a
//! container the other version still knows, and recovery would then power off and destroy
//! its VM as one "without a record". So such a record moves, in one transaction, from
//! `containers` to the table `quarantined_containers`, with its directory (its logs) kept and
//! its VM left alone; the appliance logs it and `docker info` lists it among its warnings.
//! Each open tries the quarantined records again and puts back those that now decode (the
//! version that wrote them is back).

use std::io;

use redb::{ReadableTable, TableDefinition};

use super::{db_err, StateDir, CONTAINERS};
use crate::container::ContainerRecord;

/// id → the record's bytes as they were found.
pub(super) const QUARANTINE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("quarantined_containers");

/// A container record this version cannot read.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    pub id: String,
    /// Why it does not decode.
    pub error: String,
}

impl StateDir {
    /// Moves records that do not decode into quarantine and back those that decode again.
    pub(super) fn quarantine_undecodable(&self) -> io::Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut live = tx.open_table(CONTAINERS).map_err(db_err)?;
            let mut held = tx.open_table(QUARANTINE).map_err(db_err)?;
            let bad = undecodable(&live)?;
            let good: Vec<(String, Vec<u8>)> = entries(&held)?
                .into_iter()
                .filter(|(_, json)| decode(json).is_ok())
                .collect();
            for (id, json, error) in &bad {
                tracing::warn!(%id, "a container record does not decode: {error}; it is kept in quarantine and its VM left alone");
                held.insert(id.as_str(), json.as_slice()).map_err(db_err)?;
                live.remove(id.as_str()).map_err(db_err)?;
            }
            for (id, json) in &good {
                tracing::info!(%id, "a quarantined container record decodes again: restored");
                live.insert(id.as_str(), json.as_slice()).map_err(db_err)?;
                held.remove(id.as_str()).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// The records in quarantine, with why each does not decode.
    pub fn quarantined(&self) -> io::Result<Vec<Quarantined>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(QUARANTINE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_err(e)),
        };
        Ok(entries(&table)?
            .into_iter()
            .filter_map(|(id, json)| {
                decode(&json).err().map(|e| Quarantined {
                    id,
                    error: e.to_string(),
                })
            })
            .collect())
    }
}

fn decode(json: &[u8]) -> serde_json::Result<ContainerRecord> {
    serde_json::from_slice(json)
}

fn entries(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for item in table.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        out.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(out)
}

fn undecodable(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> io::Result<Vec<(String, Vec<u8>, String)>> {
    Ok(entries(table)?
        .into_iter()
        .filter_map(|(id, json)| decode(&json).err().map(|e| (id, json, e.to_string())))
        .collect())
}
