//! Rebuilds the crate when a migration is added or changed (`sqlx::migrate!` embeds the files at
//! compile time, and cargo does not know it reads them), and, with the `store` feature, compiles
//! the store's SQLite VFS (`c/wal_coalesce.c`) against the bundled SQLite's header.
//!
//! The VFS is linked whole into every binary that links this crate: nothing in Rust calls it
//! (that would take `unsafe`); it registers itself with SQLite when the program starts (a C
//! constructor). A binary that links SQLite without this crate keeps SQLite's own VFS.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=c/wal_coalesce.c");
    if env::var_os("CARGO_FEATURE_STORE").is_none() {
        return;
    }
    let include = env::var("DEP_SQLITE3_INCLUDE").expect("libsqlite3-sys (bundled) names its header folder");
    cc::Build::new()
        .file("c/wal_coalesce.c")
        .include(include)
        .flag_if_supported("-std=c99")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .cargo_metadata(false)
        .compile("eventbus_wal");
    let out = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rustc-link-search=native={out}");
    println!("cargo:rustc-link-lib=static:+whole-archive=eventbus_wal");
}
