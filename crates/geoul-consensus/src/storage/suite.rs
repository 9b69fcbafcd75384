//! openraft's own storage conformance suite, run against the redb storage.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::db::Db;
use super::log::LogStore;
use super::sm::StateMachineStore;
use crate::types::{StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(dir.path(), "suite").expect("open"));
        let sm = StateMachineStore::open(db.clone(), 1)
            .await
            .expect("state machine");
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("the storage passes openraft's suite");
}
