//! The temporary files a save writes before renaming them into place, so that no half-written
//! picture is ever left under its name. Each is listed while it exists, and
//! [`remove_unfinished`] deletes the listed ones when a signal ends the process first (a
//! temporary file's own clean-up runs only when it is dropped, which an exit skips).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

/// The temporary files being written now.
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A temporary file in the folder of the file it will become.
pub struct Temporary(Option<tempfile::NamedTempFile>);

impl Temporary {
    /// A new temporary file beside `path`, named `.convscope-*{suffix}`, with mode 0666 less
    /// the umask, as any new file gets (a temporary file's own 0600 would stay with it).
    pub fn beside(path: &Path, suffix: &str) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file = tempfile::Builder::new()
            .prefix(".convscope-")
            .suffix(suffix)
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(&dir)
            .with_context(|| format!("cannot write {}", path.display()))?;
        lock().push(file.path().to_path_buf());
        Ok(Temporary(Some(file)))
    }

    pub fn path(&self) -> &Path {
        self.file().path()
    }

    pub fn as_file(&self) -> &std::fs::File {
        self.file().as_file()
    }

    pub fn as_file_mut(&mut self) -> &mut std::fs::File {
        self.0
            .as_mut()
            .expect("present until renamed")
            .as_file_mut()
    }

    /// Renames it to `path`, replacing a file there and keeping that file's permissions.
    pub fn replace(mut self, path: &Path) -> Result<()> {
        let fail = || format!("cannot write {}", path.display());
        if let Ok(old) = std::fs::metadata(path) {
            std::fs::set_permissions(self.path(), old.permissions()).with_context(fail)?;
        }
        let file = self.take();
        file.persist(path).map_err(|e| e.error).with_context(fail)?;
        Ok(())
    }

    /// Renames it to `path` unless a file is there already.
    pub fn place_new(mut self, path: &Path) -> Result<()> {
        let file = self.take();
        file.persist_noclobber(path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    fn file(&self) -> &tempfile::NamedTempFile {
        self.0.as_ref().expect("present until renamed")
    }

    /// The file, no longer listed: it is renamed (or, failing that, deleted) right after.
    fn take(&mut self) -> tempfile::NamedTempFile {
        let file = self.0.take().expect("renamed once");
        unlist(file.path());
        file
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            unlist(file.path());
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED.lock().unwrap_or_else(|e| e.into_inner())
}

fn unlist(path: &Path) {
    lock().retain(|p| p != path);
}

/// Deletes the temporary files still being written (for a signal handler that then exits).
pub fn remove_unfinished() {
    for path in lock().drain(..) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_files_are_listed_until_renamed_or_dropped_and_removed_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Temporary::beside(&dir.path().join("a.png"), ".tmp").unwrap();
        let kept_path = kept.path().to_path_buf();
        let done = Temporary::beside(&dir.path().join("b.png"), ".tmp").unwrap();
        done.replace(&dir.path().join("b.png")).unwrap();
        let dropped = Temporary::beside(&dir.path().join("c.png"), ".tmp").unwrap();
        let dropped_path = dropped.path().to_path_buf();
        drop(dropped);
        assert!(!lock().contains(&dropped_path));
        // A signal arrives: the unfinished one goes, the finished one stays.
        std::mem::forget(kept);
        assert!(kept_path.exists());
        remove_unfinished();
        assert!(!kept_path.exists());
        assert!(dir.path().join("b.png").exists());
    }
}
