//! The user's networks in the VCH's state database: a table `networks` (ID → the network as
//! JSON) beside the container records. Each save and remove is one durable transaction.
//! The predefined `bridge` comes from the VCH's configuration and is never stored.

use std::io;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};

use super::Network;

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");

pub(crate) struct NetworkStore {
    db: Arc<Database>,
}

impl NetworkStore {
    pub fn new(db: Arc<Database>) -> NetworkStore {
        NetworkStore { db }
    }

    /// Stores `net`, durable when it returns.
    pub fn save(&self, net: &Network) -> io::Result<()> {
        let json = serde_json::to_vec(net).map_err(io::Error::other)?;
        self.write(|t| t.insert(net.id.as_str(), json.as_slice()).map(|_| ()))
    }

    pub fn remove(&self, id: &str) -> io::Result<()> {
        self.write(|t| t.remove(id).map(|_| ()))
    }

    /// Every stored network, oldest first; one that does not decode is logged and left.
    pub fn load_all(&self) -> io::Result<Vec<Network>> {
        self.write(|_| Ok(()))?;
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(NETWORKS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            match serde_json::from_slice::<Network>(v.value()) {
                Ok(n) => out.push(n),
                Err(e) => {
                    tracing::warn!(
                        id = k.value(),
                        "a stored network does not decode, left as it is: {e}"
                    )
                }
            }
        }
        out.sort_by_key(|n| n.created);
        Ok(out)
    }

    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<(), redb::StorageError>,
    ) -> io::Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(NETWORKS).map_err(db_err)?;
            f(&mut table).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }
}

fn db_err(e: impl Into<redb::Error>) -> io::Error {
    match e.into() {
        redb::Error::Io(e) => e,
        e => io::Error::other(e),
    }
}
