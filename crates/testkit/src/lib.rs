//! Helpers shared by the workspace's tests, used only as a dev-dependency.
//!
//! Interop tests drive the official Python SDK (`livepeer-gateway`) from a venv made by
//! `scripts/interop-venv.sh`, with peer scripts kept in the repository's `tests/interop/`.
//! Every such test finds both the same way, so the rule lives here once: [`python`] finds the
//! venv's interpreter (or says why the test is skipped), [`interop_script`] names a peer script;
//! [`schemathesis`] finds the OpenAPI conformance tool the same way.

#![warn(missing_docs)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The venv's interpreter relative to the cache directory, as `scripts/interop-venv.sh` makes it.
const VENV_PYTHON: &str = "lpgw/interop-venv/bin/python";
/// The schemathesis executable relative to the cache directory, as
/// `scripts/schemathesis-venv.sh` makes it.
const VENV_SCHEMATHESIS: &str = "lpgw/schemathesis-venv/bin/schemathesis";

/// The Python interpreter of the SDK venv, or `None` when the test should skip.
///
/// Looks at `LPGW_PYTHON`, else `${XDG_CACHE_HOME:-$HOME/.cache}/lpgw/interop-venv/bin/python`,
/// and keeps it only if the file exists. When it is missing the test passes with a message
/// on stderr, unless `LPGW_REQUIRE_INTEROP=1` (set by the project's test command), in which
/// case this panics so that a missing venv fails the run instead of hiding it.
pub fn python() -> Option<PathBuf> {
    find("LPGW_PYTHON", VENV_PYTHON, "scripts/interop-venv.sh")
}

/// The `schemathesis` executable (OpenAPI conformance runs), or `None` when the test should
/// skip: `LPGW_SCHEMATHESIS`, else the cache venv, under the same rule as [`python`].
pub fn schemathesis() -> Option<PathBuf> {
    find(
        "LPGW_SCHEMATHESIS",
        VENV_SCHEMATHESIS,
        "scripts/schemathesis-venv.sh",
    )
}

fn find(var: &str, in_cache: &str, script: &str) -> Option<PathBuf> {
    let candidate = candidate(
        std::env::var_os(var),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
        in_cache,
    )
    .filter(|p| p.exists());
    if candidate.is_none() {
        assert!(
            std::env::var("LPGW_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "{in_cache} is missing: run {script}"
        );
        eprintln!("interop skipped: no {in_cache} (run {script})");
    }
    candidate
}

/// The path of the interop peer script `name` (for example `trickle_peer.py`) under the
/// repository's `tests/interop/`.
pub fn interop_script(name: &str) -> PathBuf {
    repo_root().join("tests/interop").join(name)
}

/// The repository root: this crate sits at `crates/testkit` inside it.
fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .unwrap_or(here)
        .to_path_buf()
}

/// Where a tool would be, from its own variable and the two cache ones (kept apart from the
/// process environment so the rule can be tested without changing it).
fn candidate(
    own: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
    in_cache: &str,
) -> Option<PathBuf> {
    if let Some(p) = own {
        return Some(PathBuf::from(p));
    }
    let cache = xdg_cache_home
        .map(PathBuf::from)
        .or_else(|| home.map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join(in_cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn lpgw_python_wins() {
        assert_eq!(
            candidate(os("/opt/py"), os("/xdg"), os("/home/u"), VENV_PYTHON),
            Some(PathBuf::from("/opt/py"))
        );
    }

    #[test]
    fn xdg_cache_home_before_home() {
        assert_eq!(
            candidate(None, os("/xdg"), os("/home/u"), VENV_PYTHON),
            Some(PathBuf::from("/xdg/lpgw/interop-venv/bin/python"))
        );
    }

    #[test]
    fn home_cache_as_fallback() {
        assert_eq!(
            candidate(None, None, os("/home/u"), VENV_SCHEMATHESIS),
            Some(PathBuf::from(
                "/home/u/.cache/lpgw/schemathesis-venv/bin/schemathesis"
            ))
        );
    }

    #[test]
    fn nothing_set_means_no_candidate() {
        assert_eq!(candidate(None, None, None, VENV_PYTHON), None);
    }

    #[test]
    fn interop_scripts_are_found_in_the_repository() {
        let p = interop_script("trickle_peer.py");
        assert!(p.ends_with("tests/interop/trickle_peer.py"), "{p:?}");
        assert!(p.is_file(), "{p:?} exists");
    }
}
