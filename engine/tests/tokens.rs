//! API tokens in the store, on SQLite and on Postgres: created with a fresh id, found by the
//! hash of their secret, listed in pages, revoked once, their last use recorded.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use eventbus_engine::ErrorKind;
use eventbus_engine::store::{NewToken, Store, StoreConfig, TokenGrant};
use eventbus_engine::testkit::TestDatabase;

eventbus_engine::backend_cases!(
    by reference: tokens_are_found_by_their_secret_and_revoked_once,
    tokens_are_listed_oldest_first_in_pages,
);

async fn open(db: &TestDatabase) -> Store {
    let mut config = StoreConfig::new(&db.url);
    config.sweep_interval = Duration::from_secs(3600);
    Store::open(config).await.unwrap()
}

fn new_token(name: &str, secret: u8) -> NewToken {
    NewToken {
        name: name.into(),
        grants: vec![TokenGrant { role: "publisher".into(), namespaces: "shop".into() }],
        secret_sha256: [secret; 32],
        expires_at: None,
    }
}

async fn tokens_are_found_by_their_secret_and_revoked_once(db: &TestDatabase) {
    let store = open(db).await;
    let expires = Utc::now() + TimeDelta::days(30);
    let mut new = new_token("ci", 1);
    new.grants.push(TokenGrant { role: "reader".into(), namespaces: "team-a.*".into() });
    new.expires_at = Some(expires);
    let created = store.create_token(new.clone()).await.unwrap();
    assert_eq!(created.id.get_version_num(), 7);
    assert_eq!((created.name.as_str(), &created.grants), ("ci", &new.grants));
    assert_eq!(created.expires_at.map(|t| t.timestamp_micros()), Some(expires.timestamp_micros()));
    assert_eq!((created.last_used_at, created.revoked_at), (None, None));

    let found = store.token_by_secret(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(found, created);
    assert_eq!(store.token_by_secret(&[2; 32]).await.unwrap(), None, "another secret finds nothing");
    assert_eq!(store.get_token(created.id).await.unwrap(), created);

    let used = Utc::now();
    store.touch_token(created.id, used).await.unwrap();
    store.touch_token(created.id, used - TimeDelta::minutes(5)).await.unwrap();
    let last = store.get_token(created.id).await.unwrap().last_used_at.unwrap();
    assert_eq!(last.timestamp_micros(), used.timestamp_micros(), "an earlier use does not replace a later one");

    let revoked = store.revoke_token(created.id).await.unwrap();
    let at = revoked.revoked_at.unwrap();
    let again = store.revoke_token(created.id).await.unwrap();
    assert_eq!(again.revoked_at, Some(at), "a second revocation keeps the first time");
    assert_eq!(store.token_by_secret(&[1; 32]).await.unwrap().unwrap().revoked_at, Some(at));

    let unknown = uuid::Uuid::now_v7();
    assert_eq!(store.revoke_token(unknown).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.get_token(unknown).await.unwrap_err().kind(), ErrorKind::NotFound);
    store.touch_token(unknown, used).await.unwrap();
}

async fn tokens_are_listed_oldest_first_in_pages(db: &TestDatabase) {
    let store = open(db).await;
    let mut ids = Vec::new();
    for i in 0..5u8 {
        ids.push(store.create_token(new_token(&format!("t{i}"), i)).await.unwrap().id);
    }
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = store.list_tokens(2, token.as_deref()).await.unwrap();
        assert!(page.items.len() <= 2);
        listed.extend(page.items.iter().map(|t| t.id));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, ids);
    let all = store.list_tokens(0, None).await.unwrap();
    assert_eq!((all.items.len(), all.next_page_token), (5, None));
    let bad = store.list_tokens(2, Some("nonsense")).await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidArgument);
}
