//! The user's networks in the VCH's state database: a table `networks` (ID → the network as
//! JSON) beside the container records. The predefined `bridge` and the container networks
//! come from the VCH's configuration and are never stored.

use std::io;
use std::sync::Arc;

use redb::Database;

use super::Network;
use crate::state::JsonTable;

pub(crate) struct NetworkStore {
    table: JsonTable<Network>,
}

impl NetworkStore {
    pub fn new(db: Arc<Database>) -> NetworkStore {
        NetworkStore {
            table: JsonTable::new(db, "networks"),
        }
    }

    /// Stores `net`, durable when it returns.
    pub fn save(&self, net: &Network) -> io::Result<()> {
        self.table.save(&net.id, net)
    }

    pub fn remove(&self, id: &str) -> io::Result<()> {
        self.table.remove(id)
    }

    /// Every stored network, oldest first.
    pub fn load_all(&self) -> io::Result<Vec<Network>> {
        let mut out = self.table.load_all()?;
        out.sort_by_key(|n| n.created);
        Ok(out)
    }
}
