//! Owner-only files and directories: the data directory holds the database, the token files
//! and the firmware images, none of which another local user should read.
//!
//! Directories are created 0700 and files 0600; at start, an existing path that is group- or
//! world-accessible is narrowed with a warning naming it. On other platforms these are no-ops.

use std::path::Path;

/// Create `dir` (and missing parents) with mode 0700, or narrow an existing one to 0700.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    narrow(dir, 0o700)
}

/// Narrow an existing file to 0600 (absent files are fine).
pub fn private_file(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(_) => narrow(path, 0o600),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create `path` empty with mode 0600 unless it exists (so SQLite, which gives its `-wal` and
/// `-shm` files the database file's mode, starts from an owner-only file).
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?;
    private_file(path)
}

/// Set `mode` when the path grants anything to group or others, with a warning.
#[cfg(unix)]
fn narrow(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{current:o}"),
            "group/world accessible; setting mode {mode:o}"
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn narrow(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Set mode 0600 on a file just written by us (no warning: it is new).
pub fn set_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_end_up_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);

        // An existing open directory and file are narrowed.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        let file = open.join("f");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        // A stricter mode is left alone.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o400);
        private_file(&open.join("absent")).unwrap();

        let db = open.join("db");
        create_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        std::fs::write(&db, b"data").unwrap();
        create_private_file(&db).unwrap();
        assert_eq!(
            std::fs::read(&db).unwrap(),
            b"data",
            "an existing file is kept"
        );
    }
}
