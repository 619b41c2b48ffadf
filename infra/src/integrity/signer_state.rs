//! What the checkpoint signer remembers outside the database: the last
//! checkpoint it signed, in a file beside its key. A log that does not
//! extend it (checkpoints deleted, history cut, an older backup restored)
//! is refused until an operator acknowledges it (`api audit acknowledge`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Checkpoint;

/// The file's content: the newest checkpoint the signer signed or adopted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerState {
    /// `None` before the first checkpoint: the log must then be folded
    /// from its first event.
    pub last_signed: Option<Checkpoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignerStateError {
    #[error("reading the signer state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the signer state file {path} is not what the signer writes")]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the signer state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The state file of the signing key at `key_file`: `<key file>.state.json`.
pub fn signer_state_file(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".state.json");
    PathBuf::from(name)
}

/// A state file on disk.
#[derive(Clone, Debug)]
pub struct SignerStateFile {
    path: PathBuf,
}

impl SignerStateFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state, or `None` when no file exists yet.
    pub fn load(&self) -> Result<Option<SignerState>, SignerStateError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SignerStateError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| SignerStateError::Malformed {
                path: self.path.clone(),
                source,
            })
    }

    /// Replaces the file atomically: a crash leaves the old state or the
    /// new one, never a mix (written beside it, synced, renamed, the
    /// directory synced).
    pub fn store(&self, state: &SignerState) -> Result<(), SignerStateError> {
        let failed = |source| SignerStateError::Write {
            path: self.path.clone(),
            source,
        };
        let mut temporary = self.path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let text = serde_json::to_vec_pretty(state).expect("a signer state always serializes");
        let mut file = fs::File::create(&temporary).map_err(failed)?;
        file.write_all(&text).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        fs::rename(&temporary, &self.path).map_err(failed)?;
        let directory = self
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::File::open(directory)
            .and_then(|directory| directory.sync_all())
            .map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use ed25519_dalek::SigningKey;

    use super::*;

    #[test]
    fn a_stored_state_loads_back_and_a_missing_file_is_no_state() {
        let directory = std::env::temp_dir().join(format!("signer-state-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&directory).unwrap();
        let file = SignerStateFile::new(signer_state_file(&directory.join("audit.pem")));
        assert_eq!(file.load().unwrap(), None);
        let key = SigningKey::from_bytes(&[7; 32]);
        let state = SignerState {
            last_signed: Some(Checkpoint::sign(
                &key,
                (3, 9),
                "ab".repeat(32),
                9,
                Utc::now(),
            )),
        };
        file.store(&state).unwrap();
        assert_eq!(file.load().unwrap(), Some(state));
        fs::write(file.path(), "{").unwrap();
        assert!(matches!(
            file.load(),
            Err(SignerStateError::Malformed { .. })
        ));
        fs::remove_dir_all(directory).unwrap();
    }
}
