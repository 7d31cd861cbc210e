//! A plugin's process: its own group, killed and reaped as one; the highest OOM score;
//! output read within bounds.

use super::*;

/// In the child before exec: the highest OOM score, so that when the container runs short of
/// memory the kernel ends a plugin rather than the webhook (raising it needs no privilege).
pub(super) fn prefer_for_oom_kill() {
    const PATH: &[u8] = b"/proc/self/oom_score_adj\0";
    const MOST: &[u8] = b"1000";
    // SAFETY: open/write/close on a NUL-terminated constant; the result is ignored, since a
    // kernel without the file still runs the plugin.
    unsafe {
        let fd = libc::open(PATH.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, MOST.as_ptr().cast(), MOST.len());
            libc::close(fd);
        }
    }
}

/// Makes this process the parent of every orphaned descendant (as PID 1 of a container already
/// is), so that the plugin processes left behind by a killed group are reaped here rather than
/// kept as zombies. Called once by `serve` when plugins may run.
pub fn adopt_orphans() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
    let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, on, unused, unused, unused) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A plugin's process group: killed, and its remaining members reaped, when dropped.
pub(super) struct GroupGuard(pub(super) Option<u32>);

impl GroupGuard {
    pub(super) fn pgid(&self) -> Option<libc::pid_t> {
        self.0
            .and_then(|id| libc::pid_t::try_from(id).ok())
            .filter(|pgid| *pgid > 1)
    }

    /// SIGKILL to the whole group (a no-op once it is gone).
    pub(super) fn kill(&self) {
        if let Some(pgid) = self.pgid() {
            // SAFETY: kill(2) with a negative pid signals that process group; it has no
            // memory effects on this process.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
        if let (Some(pgid), Ok(runtime)) = (self.pgid(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(reap_group(pgid));
        }
    }
}

/// How long the members of a killed group are waited for.
pub(super) const REAP_FOR: Duration = Duration::from_secs(10);

/// Reaps the killed members of group `pgid` that were reparented to this process. Only that
/// group is waited for, so the runtime's own children are never taken from it; a pid stays
/// reserved while it is a group id, so no other process can be in the group.
pub(super) async fn reap_group(pgid: libc::pid_t) {
    let deadline = tokio::time::Instant::now() + REAP_FOR;
    while tokio::time::Instant::now() < deadline {
        // SAFETY: waitpid with WNOHANG on a process group writes only the status integer.
        let reaped = unsafe {
            let mut status = 0;
            libc::waitpid(-pgid, &mut status, libc::WNOHANG)
        };
        match reaped {
            // ECHILD: no member of the group is a child of ours any more.
            -1 => return,
            // Members left that have not died yet.
            0 => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => {}
        }
    }
}

pub(super) fn check_name(name: &str) -> Result<(), PluginError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        Ok(())
    } else {
        Err(PluginError::Config(format!(
            "provider name {} is not a plain file name",
            crate::text::quote(name)
        )))
    }
}

pub(super) struct Overflow;

/// Reads to the end, keeping the last `limit` bytes (for stderr: errors come last, and a plugin
/// blocked on a full pipe would otherwise hang).
pub(super) async fn read_tail(mut reader: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(n @ 1..) = reader.read(&mut buffer).await {
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > 2 * limit {
            kept.drain(..kept.len() - limit);
        }
    }
    let excess = kept.len().saturating_sub(limit);
    kept.drain(..excess);
    kept
}

/// Reads to the end, but at most `limit` bytes: more is an overflow (for stdout).
pub(super) async fn read_bounded(
    mut reader: impl AsyncRead + Unpin,
    limit: usize,
) -> Result<Vec<u8>, Overflow> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return Ok(kept),
            Ok(n) => {
                if kept.len() + n > limit {
                    return Err(Overflow);
                }
                kept.extend_from_slice(&buffer[..n]);
            }
        }
    }
}
