//! The units directory: where flt writes the unit files that systemd then links.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::SystemdError;
use super::name::check_unit_name;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The units directory, seen two ways: `dir` is the path systemd is given (in its own mount
/// namespace), `fs_root` is prefixed to it for our own reads and writes. Both are the same
/// unless the driver runs outside the host whose systemd it drives (tests use
/// `/proc/<pid>/root`).
#[derive(Debug, Clone)]
pub struct UnitFiles {
    dir: PathBuf,
    fs_root: Option<PathBuf>,
}

impl UnitFiles {
    pub fn new(dir: impl Into<PathBuf>, fs_root: Option<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fs_root,
        }
    }

    /// `<dir>/<name>` as systemd sees it (what `LinkUnitFiles` gets). Validates `name`.
    pub fn systemd_path(&self, name: &str) -> Result<PathBuf, SystemdError> {
        check_unit_name(name)?;
        Ok(self.dir.join(name))
    }

    /// The units directory as this process sees it.
    pub fn local_dir(&self) -> PathBuf {
        match &self.fs_root {
            Some(root) => root.join(self.dir.strip_prefix("/").unwrap_or(&self.dir)),
            None => self.dir.clone(),
        }
    }

    fn local_path(&self, name: &str) -> Result<PathBuf, SystemdError> {
        check_unit_name(name)?;
        Ok(self.local_dir().join(name))
    }

    /// Writes `<dir>/<name>` atomically: a temporary file in the same directory, fsync, mode
    /// 0644, rename over the old file, fsync of the directory. A reader (systemd) sees the old
    /// or the new contents, never a mix, and a crash leaves at most a dot-file behind.
    pub fn write(&self, name: &str, contents: &str) -> Result<(), SystemdError> {
        let target = self.local_path(name)?;
        let dir = self.local_dir();
        fs::create_dir_all(&dir).map_err(|e| SystemdError::io(&dir, e))?;
        let temp = dir.join(format!(
            ".{name}.flt-tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&temp)?;
            file.write_all(contents.as_bytes())?;
            // The umask may have narrowed the mode given to open.
            file.set_permissions(fs::Permissions::from_mode(0o644))?;
            file.sync_all()?;
            fs::rename(&temp, &target)?;
            fs::File::open(&dir)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(SystemdError::io(&target, e));
        }
        Ok(())
    }

    /// Deletes `<dir>/<name>`; a missing file is not an error.
    pub fn remove(&self, name: &str) -> Result<(), SystemdError> {
        let path = self.local_path(name)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SystemdError::io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Reads `<dir>/<name>`, `None` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<String>, SystemdError> {
        let path = self.local_path(name)?;
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SystemdError::io(&path, e)),
        }
    }

    /// Names of the unit files in the directory, sorted; temporary and invalid names skipped.
    pub fn list(&self) -> Result<Vec<String>, SystemdError> {
        let dir = self.local_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SystemdError::io(&dir, e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| check_unit_name(name).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// True if the unit text has an `[Install]` section (then loading also enables it).
pub fn has_install_section(contents: &str) -> bool {
    contents.lines().any(|line| line.trim() == "[Install]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flt-unitfiles-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn write_is_atomic_with_mode_0644_and_replaces() {
        let root = scratch("write");
        let files = UnitFiles::new("/units", Some(root.clone()));
        files
            .write("a.service", "[Service]\nExecStart=/bin/true\n")
            .expect("write");
        files
            .write("a.service", "[Service]\nExecStart=/bin/false\n")
            .expect("rewrite");
        let path = root.join("units/a.service");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "[Service]\nExecStart=/bin/false\n"
        );
        assert_eq!(
            fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            files.list().expect("list"),
            vec!["a.service".to_string()],
            "no temp files left"
        );
        assert_eq!(
            files.systemd_path("a.service").expect("path"),
            PathBuf::from("/units/a.service")
        );
        files.remove("a.service").expect("remove");
        files.remove("a.service").expect("remove twice");
        assert_eq!(files.read("a.service").expect("read"), None);
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn refuses_names_that_escape_the_directory() {
        let root = scratch("escape");
        let files = UnitFiles::new("/units", Some(root.clone()));
        for name in ["../evil.service", "/etc/x.service", "", ".."] {
            assert!(files.write(name, "x").is_err(), "{name:?} written");
            assert!(files.remove(name).is_err(), "{name:?} removed");
        }
        assert!(!root.join("evil.service").exists());
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn detects_install_sections() {
        assert!(has_install_section(
            "[Unit]\n[Install]\nWantedBy=x.target\n"
        ));
        assert!(!has_install_section(
            "[Service]\nExecStart=/bin/echo [Install]\n"
        ));
    }
}
