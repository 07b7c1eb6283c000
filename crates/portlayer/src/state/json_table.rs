//! A table of the VCH's state database holding values as JSON under string keys (the user's
//! networks, the execs). Each save and remove is one durable transaction; a value that no
//! longer decodes is logged and left where it is.

use std::io;
use std::marker::PhantomData;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) struct JsonTable<T> {
    db: Arc<Database>,
    table: TableDefinition<'static, &'static str, &'static [u8]>,
    _values: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> JsonTable<T> {
    /// Table `name` of `db`.
    pub fn new(db: Arc<Database>, name: &'static str) -> JsonTable<T> {
        JsonTable {
            db,
            table: TableDefinition::new(name),
            _values: PhantomData,
        }
    }

    /// Stores `value` under `key`, durable when it returns.
    pub fn save(&self, key: &str, value: &T) -> io::Result<()> {
        let json = serde_json::to_vec(value).map_err(io::Error::other)?;
        self.write(|t| t.insert(key, json.as_slice()).map(|_| ()))
    }

    pub fn remove(&self, key: &str) -> io::Result<()> {
        self.write(|t| t.remove(key).map(|_| ()))
    }

    /// Every stored value that decodes, in key order.
    pub fn load_all(&self) -> io::Result<Vec<T>> {
        self.write(|_| Ok(()))?;
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(self.table).map_err(db_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            match serde_json::from_slice::<T>(v.value()) {
                Ok(n) => out.push(n),
                Err(e) => tracing::warn!(
                    table = self.table.name(),
                    key = k.value(),
                    "a stored value does not decode, left as it is: {e}"
                ),
            }
        }
        Ok(out)
    }

    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<(), redb::StorageError>,
    ) -> io::Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(self.table).map_err(db_err)?;
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
