//! The testkit's own promises: every Postgres case gets a schema of its own, and that schema is
//! gone when the case ends, also when the case panics or leaves sessions holding locks in it.

#![allow(clippy::unwrap_used)]

use eventbus_engine::store::{Backend, Store, StoreConfig};
use eventbus_engine::testkit::{DATABASE_URL_VAR, SCHEMA_PREFIX, TestDatabase};
use sqlx::{Connection, Executor, PgConnection};

/// Whether schema `name` exists on the test server.
async fn schema_exists(name: &str) -> bool {
    let mut admin = PgConnection::connect(&std::env::var(DATABASE_URL_VAR).unwrap()).await.unwrap();
    let query = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_namespace WHERE nspname = $1");
    let n = query.bind(name).fetch_one(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_is_dropped_with_the_last_handle_despite_open_sessions() {
    let db = TestDatabase::fresh(Backend::Postgres).await;
    let name = db.schema().unwrap().to_owned();
    assert!(name.starts_with(SCHEMA_PREFIX), "{name}");
    let other = TestDatabase::fresh(Backend::Postgres).await;
    assert_ne!(other.schema(), Some(name.as_str()), "a schema per database");
    // A store left open and a session holding a lock in the schema, as a failed case leaves them.
    let store = Store::open(StoreConfig::new(&db.url)).await.unwrap();
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    locker.execute("BEGIN; LOCK TABLE events IN ACCESS SHARE MODE").await.unwrap();
    let derived = db.named("testkit-test");
    drop(db);
    assert!(schema_exists(&name).await, "a derived handle keeps the schema");
    drop(derived);
    assert!(!schema_exists(&name).await, "the last handle drops the schema");
    drop((store, locker));
    let other_name = other.schema().unwrap().to_owned();
    drop(other);
    assert!(!schema_exists(&other_name).await);
}

#[test]
fn postgres_schema_is_dropped_when_the_case_panics() {
    let (name_tx, name_rx) = std::sync::mpsc::channel();
    let case = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let db = TestDatabase::fresh(Backend::Postgres).await;
            let _store = Store::open(StoreConfig::new(&db.url)).await.unwrap();
            name_tx.send(db.schema().unwrap().to_owned()).unwrap();
            panic!("the case fails");
        })
    });
    assert!(case.join().is_err(), "the case panicked");
    let name = name_rx.recv().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(!runtime.block_on(schema_exists(&name)), "{name} is dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_is_removed_with_the_last_handle() {
    let db = TestDatabase::fresh(Backend::Sqlite).await;
    assert_eq!(db.backend(), Backend::Sqlite);
    let dir = db.dir.as_ref().unwrap().path().to_owned();
    let store = Store::open(StoreConfig::new(&db.url)).await.unwrap();
    assert!(dir.join("eventbus.db").exists());
    drop((store, db));
    assert!(!dir.exists());
}
