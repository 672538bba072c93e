//! Naming a storage target in one string, as the command line (`--repo`,
//! `$EMBER_REPO`) and configuration files do.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use ember_ceph::CephConfig;

use crate::rados::valid_prefix;
use crate::{ObjectStore, PosixStore, RadosStore, StoreError};

/// The scheme that names a RADOS target.
const RADOS_SCHEME: &str = "rados:";

/// Where a repository lives:
/// - a path names a directory (the POSIX target);
/// - `rados:POOL[/PREFIX][?conf=FILE&user=NAME&keyring=FILE]` names objects
///   in a Ceph pool, under `PREFIX/` if given (the RADOS target). Unset
///   options come from the environment when the store is opened (see
///   [`RadosSpec::ceph_config`]).
///
/// A directory whose name starts with `rados:` is named `./rados:…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// A directory.
    Posix(PathBuf),
    /// A pool of a Ceph cluster.
    Rados(RadosSpec),
}

/// A RADOS target: the pool, the prefix of the repository's objects, and
/// how to reach the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadosSpec {
    /// The pool (it must exist).
    pub pool: String,
    /// The repository's objects are named `PREFIX/…`; `None` for none.
    pub prefix: Option<String>,
    /// `conf=`: the Ceph configuration file.
    pub conf: Option<PathBuf>,
    /// `user=`: the cephx user (`cinder-backup` or `client.cinder-backup`).
    pub user: Option<String>,
    /// `keyring=`: a keyring with the user's key, instead of the one the
    /// configuration file names.
    pub keyring: Option<PathBuf>,
}

impl RadosSpec {
    /// How to connect: the options given, else `$CEPH_CONF` (else
    /// `/etc/ceph/ceph.conf`) and `$CEPH_USER` (else `admin`), as the Ceph
    /// tools default.
    pub fn ceph_config(&self) -> CephConfig {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let conf = self
            .conf
            .clone()
            .or_else(|| env("CEPH_CONF").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/etc/ceph/ceph.conf"));
        let user = self
            .user
            .clone()
            .or_else(|| env("CEPH_USER").map(|u| u.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "admin".to_string());
        let config = CephConfig::new(conf, user, &self.pool);
        match &self.keyring {
            Some(keyring) => config.with_keyring(keyring),
            None => config,
        }
    }

    /// Parses what follows `rados:`.
    fn parse(spec: &str, rest: &str) -> Result<Self, StoreError> {
        let bad = |why: String| StoreError::BadSpec {
            spec: spec.to_string(),
            why,
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (pool, prefix) = match path.split_once('/') {
            Some((pool, prefix)) => (pool, Some(prefix)),
            None => (path, None),
        };
        if pool.is_empty() {
            return Err(bad(
                "no pool: the form is rados:POOL[/PREFIX][?conf=FILE&user=NAME&keyring=FILE]"
                    .into(),
            ));
        }
        if let Some(prefix) = prefix.filter(|p| !valid_prefix(p)) {
            return Err(bad(format!(
                "prefix '{prefix}': use letters, digits, '-', '_' and '.', in parts joined by '/'"
            )));
        }
        let mut parsed = RadosSpec {
            pool: pool.to_string(),
            prefix: prefix.map(str::to_string),
            conf: None,
            user: None,
            keyring: None,
        };
        for option in query.split('&').filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            if value.is_empty() {
                return Err(bad(format!("option '{key}' has no value")));
            }
            let slot = match key {
                "conf" => parsed.conf.replace(value.into()).is_some(),
                "user" => parsed.user.replace(value.into()).is_some(),
                "keyring" => parsed.keyring.replace(value.into()).is_some(),
                _ => {
                    return Err(bad(format!(
                        "unknown option '{key}' (known: conf, user, keyring)"
                    )))
                }
            };
            if slot {
                return Err(bad(format!("option '{key}' given twice")));
            }
        }
        Ok(parsed)
    }
}

impl StoreSpec {
    /// Parses a target's name (see the type's documentation).
    pub fn parse(spec: &str) -> Result<Self, StoreError> {
        if spec.is_empty() {
            return Err(StoreError::BadSpec {
                spec: String::new(),
                why: "empty".into(),
            });
        }
        match spec.strip_prefix(RADOS_SCHEME) {
            Some(rest) => RadosSpec::parse(spec, rest).map(StoreSpec::Rados),
            None => Ok(StoreSpec::Posix(spec.into())),
        }
    }

    /// Opens the target. A missing directory is created with `create` and
    /// is an error without it; a pool is never created.
    pub fn open(&self, create: bool) -> Result<Arc<dyn ObjectStore>, StoreError> {
        Ok(match self {
            StoreSpec::Posix(dir) if create => Arc::new(PosixStore::create(dir)?),
            StoreSpec::Posix(dir) => Arc::new(PosixStore::open(dir)?),
            StoreSpec::Rados(rados) => Arc::new(RadosStore::connect(
                &rados.ceph_config(),
                rados.prefix.as_deref(),
            )?),
        })
    }
}

impl FromStr for StoreSpec {
    type Err = StoreError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        StoreSpec::parse(spec)
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rados = match self {
            StoreSpec::Posix(dir) => return write!(f, "{}", dir.display()),
            StoreSpec::Rados(rados) => rados,
        };
        write!(f, "{RADOS_SCHEME}{}", rados.pool)?;
        if let Some(prefix) = &rados.prefix {
            write!(f, "/{prefix}")?;
        }
        let options = [
            ("conf", rados.conf.as_ref().map(|p| p.display().to_string())),
            ("user", rados.user.clone()),
            (
                "keyring",
                rados.keyring.as_ref().map(|p| p.display().to_string()),
            ),
        ];
        let mut separator = '?';
        for (key, value) in options {
            if let Some(value) = value {
                write!(f, "{separator}{key}={value}")?;
                separator = '&';
            }
        }
        Ok(())
    }
}

/// Opens the target `spec` names, creating a missing directory (a
/// repository's directory is created on first use).
pub fn open_store(spec: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    StoreSpec::parse(spec)?.open(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rados(spec: &str) -> RadosSpec {
        match StoreSpec::parse(spec) {
            Ok(StoreSpec::Rados(rados)) => rados,
            other => panic!("{spec}: {other:?}"),
        }
    }

    #[test]
    fn paths_name_directories() {
        for path in ["/srv/ember", "repo", "./rados:odd", "radosx:y"] {
            assert_eq!(
                StoreSpec::parse(path).expect("path"),
                StoreSpec::Posix(path.into())
            );
        }
    }

    #[test]
    fn rados_specs_parse_and_print_back() {
        let plain = rados("rados:backups");
        assert_eq!(plain.pool, "backups");
        assert_eq!(plain.prefix, None);
        assert_eq!(plain.conf, None);

        let full = "rados:backups/ember/prod?conf=/etc/ceph/c.conf&user=cinder-backup&keyring=/k";
        let spec = rados(full);
        assert_eq!(spec.prefix.as_deref(), Some("ember/prod"));
        assert_eq!(spec.conf, Some("/etc/ceph/c.conf".into()));
        assert_eq!(spec.user.as_deref(), Some("cinder-backup"));
        assert_eq!(spec.keyring, Some("/k".into()));
        let config = spec.ceph_config();
        assert_eq!(config.client_name(), "client.cinder-backup");
        assert_eq!(config.pool, "backups");
        assert_eq!(config.keyring, Some("/k".into()));
        assert_eq!(StoreSpec::Rados(spec).to_string(), full);
        assert_eq!(
            StoreSpec::parse("rados:p?user=u")
                .expect("spec")
                .to_string(),
            "rados:p?user=u"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, why) in [
            ("", "empty"),
            ("rados:", "no pool"),
            ("rados:/x", "no pool"),
            ("rados:p/", "prefix ''"),
            ("rados:p/a//b", "prefix"),
            ("rados:p/.hidden", "prefix"),
            ("rados:p?color=red", "unknown option 'color'"),
            ("rados:p?user=", "no value"),
            ("rados:p?user=a&user=b", "given twice"),
        ] {
            let err = StoreSpec::parse(spec).expect_err(spec).to_string();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }
}
