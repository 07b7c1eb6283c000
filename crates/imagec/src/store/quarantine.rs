//! Image records that do not decode are kept, not deleted, as the container records are (see
//! the portlayer's `state/quarantine.rs`): a record this version cannot read was most likely
//! written by another version (an `upgrade --rollback` to an older build, or a newer record
//! layout), which still knows the image. Such a record moves, in one transaction, from
//! `images` to `quarantined_images`; its root filesystem, its references and, while any record
//! is held, every blob are kept; the appliance logs it and `docker info` lists it among its
//! warnings. Each open tries the quarantined records again and puts back those that decode.

use redb::{ReadableTable, TableDefinition};

use super::{db_err, existing, ImageRecord, ImageStore, StoreError, IMAGES};

/// image ID → the record's bytes as they were found.
pub(super) const QUARANTINE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("quarantined_images");

/// An image record this version cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedImage {
    pub id: String,
    /// Why it does not decode.
    pub error: String,
}

fn decode(json: &[u8]) -> serde_json::Result<ImageRecord> {
    serde_json::from_slice(json)
}

fn entries(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, Vec<u8>)>, redb::StorageError> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(out)
}

impl ImageStore {
    /// Moves records that do not decode into quarantine and back those that decode again
    /// (unless the image was stored anew meanwhile).
    pub(super) fn quarantine_undecodable(&self) -> Result<(), StoreError> {
        let tx = self
            .db
            .begin_write()
            .map_err(db_err("starting a transaction"))?;
        {
            let mut live = tx.open_table(IMAGES).map_err(db_err("opening images"))?;
            let mut held = tx
                .open_table(QUARANTINE)
                .map_err(db_err("opening quarantined_images"))?;
            let read = db_err("reading image records");
            let bad: Vec<(String, Vec<u8>, String)> = entries(&live)
                .map_err(read)?
                .into_iter()
                .filter_map(|(id, json)| decode(&json).err().map(|e| (id, json, e.to_string())))
                .collect();
            let good: Vec<(String, Vec<u8>)> = entries(&held)
                .map_err(db_err("reading quarantined_images"))?
                .into_iter()
                .filter(|(_, json)| decode(json).is_ok())
                .collect();
            let write = |e: redb::StorageError| db_err("quarantining image records")(e);
            for (id, json, error) in &bad {
                tracing::warn!(%id, "an image record does not decode: {error}; it is kept in quarantine with its files and references");
                held.insert(id.as_str(), json.as_slice()).map_err(write)?;
                live.remove(id.as_str()).map_err(write)?;
            }
            for (id, json) in &good {
                let stored_anew = live.get(id.as_str()).map_err(write)?.is_some();
                if !stored_anew {
                    tracing::info!(%id, "a quarantined image record decodes again: restored");
                    live.insert(id.as_str(), json.as_slice()).map_err(write)?;
                }
                held.remove(id.as_str()).map_err(write)?;
            }
        }
        tx.commit()
            .map_err(db_err("committing the image quarantine"))
    }

    /// The image records in quarantine, with why each does not decode.
    pub fn quarantined(&self) -> Result<Vec<QuarantinedImage>, StoreError> {
        let tx = self
            .db
            .begin_read()
            .map_err(db_err("starting a read transaction"))?;
        let Some(table) =
            existing(tx.open_table(QUARANTINE)).map_err(db_err("opening quarantined_images"))?
        else {
            return Ok(Vec::new());
        };
        Ok(entries(&table)
            .map_err(db_err("reading quarantined_images"))?
            .into_iter()
            .filter_map(|(id, json)| {
                decode(&json).err().map(|e| QuarantinedImage {
                    id,
                    error: e.to_string(),
                })
            })
            .collect())
    }
}
