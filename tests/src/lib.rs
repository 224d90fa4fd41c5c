//! eventbus-tests
