//! Fuzzes `mapping::load` on one team file. The loader only reads directories, so each input is
//! written as `team.toml` into a per-process directory on tmpfs (`/dev/shm` keeps the file system
//! out of the measured time). The properties live in `fuzz/src/lib.rs`, shared with
//! `tests/it/fuzz_regressions.rs`.
#![no_main]

use findings_bridge_fuzz as checks;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn workdir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        // scripts/fuzz removes directories of processes that have exited.
        let dir = base.join(format!("findings-bridge-fuzz-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!(
                "cannot create the fuzz work directory {}: {e}",
                dir.display()
            );
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = checks::check_mapping(workdir(), data);
});
