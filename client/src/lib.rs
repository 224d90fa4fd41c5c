//! eventbus-client
