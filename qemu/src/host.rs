//! The host side's fixed points: the workspace root, QEMU, the guest kernel and initramfs,
//! and the per-run directories under `target/testbed/`.

use std::cmp::Ordering;
use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

/// Host paths the guest cannot see: the guest mounts its own `/proc`, `/sys`, `/dev`,
/// `/run`, `/tmp` and `/out` instead of the host's (see `qemu/guest/init`).
const GUEST_PRIVATE: &[&str] = &["/proc", "/sys", "/dev", "/run", "/tmp", "/out"];

fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

/// The workspace root: `$TENGE_ROOT`, else the nearest directory at or above
/// `$CARGO_MANIFEST_DIR`, the current directory, or this crate's own source directory whose
/// `Cargo.toml` declares a `[workspace]`.
pub fn workspace_root() -> io::Result<PathBuf> {
    if let Some(root) = env::var_os("TENGE_ROOT").filter(|r| !r.is_empty()) {
        let root = PathBuf::from(root);
        if !root.join("qemu/guest/stage2.sh").is_file() {
            return Err(err(
                io::ErrorKind::NotFound,
                format!(
                    "TENGE_ROOT={} has no qemu/guest/stage2.sh: point it at the tenge checkout",
                    root.display()
                ),
            ));
        }
        return fs::canonicalize(root);
    }
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Some(dir) = env::var_os("CARGO_MANIFEST_DIR") {
        starts.push(dir.into());
    }
    if let Ok(dir) = env::current_dir() {
        starts.push(dir);
    }
    // Last resort for a binary run from elsewhere: where this crate was built from.
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for start in starts {
        for dir in start.ancestors() {
            let manifest = dir.join("Cargo.toml");
            let is_workspace = fs::read_to_string(&manifest)
                .map(|text| text.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false);
            if is_workspace && dir.join("qemu/guest/stage2.sh").is_file() {
                return fs::canonicalize(dir);
            }
        }
    }
    Err(err(
        io::ErrorKind::NotFound,
        "cannot find the tenge workspace root (a Cargo.toml with [workspace] and qemu/guest/): \
         run from inside the checkout or set TENGE_ROOT",
    ))
}

/// Checks that a host path can be passed on the guest kernel command line and is visible in
/// the guest at the same absolute path.
pub(crate) fn guest_visible(path: &Path, what: &str) -> io::Result<String> {
    let text = path.to_str().ok_or_else(|| {
        err(
            io::ErrorKind::InvalidInput,
            format!("{what} path {} is not UTF-8", path.display()),
        )
    })?;
    if !path.is_absolute() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            io::ErrorKind::InvalidInput,
            format!(
                "{what} path `{text}` must be absolute and without whitespace to fit on the \
                 guest kernel command line: move the checkout or set TENGE_ROOT"
            ),
        ));
    }
    if let Some(p) = GUEST_PRIVATE
        .iter()
        .find(|p| path.starts_with(p) || path == Path::new(p))
    {
        return Err(err(
            io::ErrorKind::InvalidInput,
            format!(
                "{what} path `{text}` is under {p}, which the guest replaces with its own: \
                 keep the checkout elsewhere (e.g. under /work or /home)"
            ),
        ));
    }
    Ok(text.to_owned())
}

/// `qemu-system-x86_64` (or `$TENGE_QEMU`), checked to run.
pub(crate) fn qemu_binary() -> io::Result<PathBuf> {
    let qemu = env::var_os("TENGE_QEMU")
        .filter(|q| !q.is_empty())
        .map(PathBuf::from)
        .or_else(|| find_in_path("qemu-system-x86_64"))
        .ok_or_else(|| {
            err(
                io::ErrorKind::NotFound,
                "qemu-system-x86_64 not found: run qemu/install-deps.sh",
            )
        })?;
    Ok(qemu)
}

pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Compares kernel releases like `sort -V`: digit runs numerically, the rest bytewise.
fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The guest kernel: `$TENGE_GUEST_KERNEL` (a `vmlinuz-KVER` file) or the newest
/// `/boot/vmlinuz-*` whose modules are installed in `/lib/modules/KVER` (the guest loads
/// vfio-pci and friends from there through the host tree). Returns (image, KVER).
pub(crate) fn guest_kernel() -> io::Result<(PathBuf, String)> {
    let kver_of = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .map(str::to_owned)
    };
    if let Some(k) = env::var_os("TENGE_GUEST_KERNEL").filter(|k| !k.is_empty()) {
        let image = PathBuf::from(k);
        let kver = kver_of(&image).ok_or_else(|| {
            err(
                io::ErrorKind::InvalidInput,
                format!(
                    "TENGE_GUEST_KERNEL={} is not named vmlinuz-<release>",
                    image.display()
                ),
            )
        })?;
        if !image.is_file() || !Path::new("/lib/modules").join(&kver).is_dir() {
            return Err(err(
                io::ErrorKind::NotFound,
                format!(
                    "TENGE_GUEST_KERNEL={}: the image or /lib/modules/{kver} is missing",
                    image.display()
                ),
            ));
        }
        return Ok((image, kver));
    }
    let mut found: Vec<(PathBuf, String)> = fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| kver_of(&p).map(|k| (p, k)))
        .filter(|(p, k)| p.is_file() && Path::new("/lib/modules").join(k).is_dir())
        .collect();
    found.sort_by(|a, b| version_cmp(&a.1, &b.1));
    found.pop().ok_or_else(|| {
        err(
            io::ErrorKind::NotFound,
            "no guest kernel (/boot/vmlinuz-* with /lib/modules/<release>): run qemu/install-deps.sh",
        )
    })
}

/// Builds (or reuses) the initramfs with `qemu/mkinitramfs.sh`; returns its path.
pub(crate) fn initramfs(root: &Path, kver: &str) -> io::Result<PathBuf> {
    let script = root.join("qemu/mkinitramfs.sh");
    let out = root
        .join("target/testbed")
        .join(format!("initramfs-{kver}.cpio.gz"));
    let output = Command::new("bash")
        .arg(&script)
        .arg("--kver")
        .arg(kver)
        .arg(&out)
        .output()
        .map_err(|e| {
            err(
                e.kind(),
                format!("cannot run bash {}: {e}", script.display()),
            )
        })?;
    if !output.status.success() {
        return Err(err(
            io::ErrorKind::Other,
            format!(
                "{} failed ({}): {}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(out)
}

/// The kernel file to hand QEMU: the plain ELF vmlinux unpacked from `image` by
/// `qemu/extract-vmlinux.sh` when the kernel can boot through PVH (saves the guest's own
/// decompression, seconds under TCG), else `image` itself. `TENGE_NO_PVH=1` forces `image`.
pub(crate) fn boot_kernel(root: &Path, image: &Path, kver: &str) -> PathBuf {
    let is_elf = fs::File::open(image)
        .and_then(|mut f| {
            let mut magic = [0u8; 4];
            std::io::Read::read_exact(&mut f, &mut magic).map(|_| magic)
        })
        .map(|m| m == *b"\x7fELF")
        .unwrap_or(false);
    if is_elf || env::var_os("TENGE_NO_PVH").is_some_and(|v| v == "1") {
        return image.to_owned();
    }
    let script = root.join("qemu/extract-vmlinux.sh");
    let out = root.join("target/testbed").join(format!("vmlinux-{kver}"));
    match Command::new("bash")
        .arg(&script)
        .arg(image)
        .arg(&out)
        .output()
    {
        Ok(o) if o.status.success() => out,
        // 3: not PVH-bootable; booting the compressed image is the normal way then.
        Ok(o) if o.status.code() == Some(3) => image.to_owned(),
        Ok(o) => {
            eprintln!(
                "tenge-testbed: {} failed ({}), booting {} instead: {}",
                script.display(),
                o.status,
                image.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            image.to_owned()
        }
        Err(e) => {
            eprintln!(
                "tenge-testbed: cannot run {}: {e}; booting {}",
                script.display(),
                image.display()
            );
            image.to_owned()
        }
    }
}

/// Marker file written into a run directory whose guest exited 0, so pruning may remove it.
pub(crate) const OK_MARK: &str = "ok";
/// Failed runs of finished processes kept for their logs.
const KEEP_FAILED_RUNS: usize = 20;

/// Makes a fresh `target/testbed/run-<pid>-<n>/` with an empty `out/`, after pruning the run
/// directories of processes that are gone (all their successful runs, and failed ones beyond
/// the newest few).
pub(crate) fn new_run_dir(root: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let base = root.join("target/testbed");
    fs::create_dir_all(&base)
        .map_err(|e| err(e.kind(), format!("cannot create {}: {e}", base.display())))?;
    prune_runs(&base);
    let n = COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
    let dir = base.join(format!("run-{}-{n}", std::process::id()));
    // A directory of this name can only be left over from an earlier process with our pid.
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(dir.join("out"))?;
    Ok(dir)
}

fn prune_runs(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    let mut failed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("run-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        if path.join(OK_MARK).exists() {
            let _ = fs::remove_dir_all(&path);
        } else {
            let mtime = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            failed.push((mtime, path));
        }
    }
    failed.sort();
    let excess = failed.len().saturating_sub(KEEP_FAILED_RUNS);
    for (_, path) in failed.into_iter().take(excess) {
        let _ = fs::remove_dir_all(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_sort_numerically() {
        assert_eq!(
            version_cmp("6.1.0-56-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            version_cmp("6.10.0-1-amd64", "6.9.0-1-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            version_cmp("6.1.0-56-amd64", "6.1.0-56-amd64"),
            Ordering::Equal
        );
    }

    #[test]
    fn guest_visibility_rules() {
        assert!(guest_visible(Path::new("/work/main/x.sh"), "script").is_ok());
        assert!(guest_visible(Path::new("/tmp/x.sh"), "script").is_err());
        assert!(guest_visible(Path::new("/work/a b/x.sh"), "script").is_err());
        assert!(guest_visible(Path::new("relative.sh"), "script").is_err());
        assert!(guest_visible(Path::new("/tmpfoo/x.sh"), "script").is_ok());
    }

    #[test]
    fn finds_this_workspace() {
        let root = workspace_root().unwrap();
        assert!(root.join("qemu/guest/init").is_file());
    }
}
