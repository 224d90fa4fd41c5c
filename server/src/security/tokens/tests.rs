use chrono::TimeDelta;
use eventbus_engine::store::{NewToken, StoreConfig, TokenGrant};

use super::*;

const ADMIN: &str = "ebt_0123456789abcdefghijklmnopqrstuvwxyz-_";

fn bearer(secret: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {secret}").parse().unwrap());
    headers
}

/// A store in `dir`, and the bootstrap token file's tokens over it, trusted for `ttl`.
async fn open(dir: &Path) -> Store {
    let mut config = StoreConfig::new(format!("sqlite://{}", dir.join("eventbus.db").display()));
    config.sweep_interval = Duration::from_secs(3600);
    Store::open(config).await.unwrap()
}

fn tokens(dir: &Path, store: &Store, ttl: Duration) -> Tokens {
    let path = dir.join("admin");
    std::fs::write(&path, ADMIN).unwrap();
    Tokens::load(&path).unwrap().with_store(store.clone(), ttl)
}

/// Creates a token granting publisher on `shop`; returns its id and secret.
async fn create(store: &Store, name: &str, expires_in: Option<TimeDelta>) -> (Uuid, String) {
    let (secret, secret_sha256) = new_secret().unwrap();
    let grants = vec![TokenGrant { role: "publisher".into(), namespaces: "shop".into() }];
    let expires_at = expires_in.map(|d| Utc::now() + d);
    let token = store.create_token(NewToken { name: name.into(), grants, secret_sha256, expires_at }).await.unwrap();
    (token.id, secret)
}

#[test]
fn new_secrets_are_long_random_and_well_formed() {
    let (a, hash) = new_secret().unwrap();
    let (b, _) = new_secret().unwrap();
    assert_eq!(a.len(), 47, "ebt_ and 43 characters of base64: {a}");
    assert!(well_formed(&a) && a.starts_with(TOKEN_PREFIX));
    assert_ne!(a, b);
    assert_eq!(hash, sha256(&a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_tokens_are_checked_by_grant_expiry_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let uncached = tokens(dir.path(), &store, Duration::ZERO);
    let (id, secret) = create(&store, "ci", None).await;
    let (_, expired) = create(&store, "old", Some(TimeDelta::seconds(-1))).await;
    let (unnamed_id, unnamed) = create(&store, "", Some(TimeDelta::days(1))).await;

    let principal = uncached.authenticate(&bearer(&secret)).await.unwrap();
    assert_eq!(principal.name, "ci");
    assert_eq!(principal.grants, [Grant { role: Role::Publisher, namespaces: "shop".into() }]);
    assert_eq!(uncached.authenticate(&bearer(&unnamed)).await.unwrap().name, unnamed_id.to_string());
    assert_eq!(uncached.authenticate(&bearer(&expired)).await, Err(Refusal::Expired));
    let (unknown, _) = new_secret().unwrap();
    assert_eq!(uncached.authenticate(&bearer(&unknown)).await, Err(Refusal::Unknown));
    assert_eq!(uncached.authenticate(&bearer(ADMIN)).await.unwrap().name, "admin");

    store.revoke_token(id).await.unwrap();
    assert_eq!(uncached.authenticate(&bearer(&secret)).await, Err(Refusal::Revoked));

    // The use is recorded off the call, once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get_token(unnamed_id).await.unwrap().last_used_at.is_none() {
        assert!(Instant::now() < deadline, "the use recorded within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_answers_until_its_entries_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let cached = tokens(dir.path(), &store, Duration::from_secs(3600));
    let (id, secret) = create(&store, "ci", None).await;
    assert!(cached.authenticate(&bearer(&secret)).await.is_ok());
    store.revoke_token(id).await.unwrap();
    assert!(cached.authenticate(&bearer(&secret)).await.is_ok(), "the cached entry is trusted for its time");
    let fresh = tokens(dir.path(), &store, Duration::from_secs(3600));
    assert_eq!(fresh.authenticate(&bearer(&secret)).await, Err(Refusal::Revoked), "a revoked token is cached too");

    // An unknown secret is remembered as unknown, but for at most a second.
    let (secret, secret_sha256) = new_secret().unwrap();
    assert_eq!(cached.authenticate(&bearer(&secret)).await, Err(Refusal::Unknown));
    let grants = vec![TokenGrant { role: "reader".into(), namespaces: "*".into() }];
    store.create_token(NewToken { name: "late".into(), grants, secret_sha256, expires_at: None }).await.unwrap();
    assert_eq!(cached.authenticate(&bearer(&secret)).await, Err(Refusal::Unknown), "the unknown answer is cached");
    let started = Instant::now();
    while cached.authenticate(&bearer(&secret)).await.is_err() {
        assert!(started.elapsed() < MAX_UNKNOWN_TOKEN_CACHE * 3, "a new token works within the unknown cache time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
