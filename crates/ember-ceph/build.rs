//! Links librados and librbd (Debian: `librados-dev`, `librbd-dev`).
//!
//! When their development libraries are absent nothing could link, so the
//! crate is then built without them (`--cfg ember_ceph_stub`): every call
//! fails with ENOSYS and a hint, `ember_ceph::LINKED` is false, and the
//! tests skip (or fail under `EMBER_REQUIRE_CEPH=1`). The rest of the
//! workspace thus builds and tests on a machine without Ceph.
//! `EMBER_CEPH_STUB=1` forces that build; `EMBER_CEPH_LIB_DIR` adds a
//! directory to search.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ember_ceph_stub)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=EMBER_CEPH_STUB");
    println!("cargo::rerun-if-env-changed=EMBER_CEPH_LIB_DIR");
    println!("cargo::rerun-if-env-changed=LIBRARY_PATH");

    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("EMBER_CEPH_LIB_DIR") {
        println!(
            "cargo::rustc-link-search=native={}",
            PathBuf::from(&dir).display()
        );
        dirs.push(dir.into());
    }
    if let Some(paths) = std::env::var_os("LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&paths));
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    for dir in [
        format!("/usr/lib/{arch}-linux-gnu"),
        "/usr/lib64".to_string(),
        "/usr/lib".to_string(),
        "/usr/local/lib".to_string(),
        "/usr/local/lib64".to_string(),
    ] {
        dirs.push(dir.into());
    }

    let mut missing = Vec::new();
    for lib in ["librados.so", "librbd.so"] {
        match dirs.iter().map(|d| d.join(lib)).find(|p| p.exists()) {
            Some(path) => println!("cargo::rerun-if-changed={}", path.display()),
            None => {
                // A path that does not exist makes Cargo re-run this script
                // on every build, so installing the library later is noticed.
                if let Some(first) = dirs.iter().find(|d| d.is_dir()) {
                    println!("cargo::rerun-if-changed={}", first.join(lib).display());
                }
                missing.push(lib);
            }
        }
    }

    let forced = std::env::var("EMBER_CEPH_STUB").is_ok_and(|v| v == "1");
    if forced || !missing.is_empty() {
        println!("cargo::rustc-cfg=ember_ceph_stub");
        let why = if forced {
            "EMBER_CEPH_STUB=1".to_string()
        } else {
            format!(
                "{} not found; apt-get install librados-dev librbd-dev",
                missing.join(" and ")
            )
        };
        println!("cargo::warning=ember-ceph is built without librados/librbd ({why}): its calls fail with ENOSYS");
    }
}
