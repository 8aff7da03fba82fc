//! Process-wide settings of glibc that a node moving large pieces of data
//! depends on, made first thing in `main`.

/// glibc's allocator, tuned for a node moving megabyte-sized pieces between
/// threads (`bench/swarm.py`, 1 GiB to 4 leechers: 10.4-11.6 s and 69-75 MB
/// peak per leecher with the defaults, 8.3-8.9 s and 52-58 MB with these and
/// 6 pieces in flight):
///
/// - at most 2 arenas, not 8 per core: fewer heaps holding freed memory;
/// - pieces (1 MiB and a little) come from the heap, not from a fresh mmap
///   each (by default the threshold adapts only after such a block is
///   freed, and every mapping costs page faults and zeroing);
/// - up to 16 MiB free at the top of a heap is kept rather than handed back
///   and faulted in again for the next piece.
///
/// `GLIBC_TUNABLES` set by the user is overridden; the values are fixed here
/// so that every node behaves the same.
pub(crate) fn allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called first thing in
    // main, before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

/// glibc (x86-64) copies blocks larger than `glibc.cpu.x86_rep_movsb_threshold`
/// (2112 bytes by default with AVX-512) with `rep movsb`. On AMD EPYC with
/// glibc 2.36, this project's reference machine, that ran at a fraction of the
/// speed of glibc's vector loop whenever source and destination were
/// differently aligned, as they are in rustls's record copies and in the
/// gather of a piece's leaves. With the threshold raised a 256 MiB `cnode get`
/// took 231-271 ms instead of 267-400 ms (`bench/swarm.py one`; the copies
/// had been up to 40 % of the receiver's CPU).
///
/// The threshold is read once, when the process starts, from the
/// environment. So on an AMD CPU, unless `GLIBC_TUNABLES` already sets it
/// (which also opts out), the process executes itself again with it added to
/// `GLIBC_TUNABLES`; the variable is then inherited by child processes, which
/// therefore do not do it again. It happens at most once per process: the
/// new image finds [`REEXEC_MARK`] set (glibc may drop tunables it will not
/// honour, e.g. for a binary given file capabilities, which runs "secure"
/// and ignores them anyway, so it is not even tried there). If the exec
/// fails, it goes on as it is.
///
/// The image executed is `/proc/self/exe`, the very one running (the file
/// may have been replaced by an upgrade meanwhile), which names the process
/// "exe"; the new image gives itself back its file's name, so `ps`, `top`
/// and `pkill cnode` see a `cnode` as before.
pub(crate) fn memcpy_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    {
        use std::os::unix::process::CommandExt;
        const TUNABLE: &str = "glibc.cpu.x86_rep_movsb_threshold";
        // Past glibc's non-temporal threshold: `rep movsb` is never chosen.
        const VALUE: u64 = 1 << 30;
        if std::env::var_os(REEXEC_MARK).is_some() {
            restore_name();
            return;
        }
        let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        // SAFETY: getauxval only reads the auxiliary vector.
        #[allow(unsafe_code)]
        let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
        if current.contains(TUNABLE) || secure || !amd_cpu() {
            return;
        }
        let tunables = if current.is_empty() {
            format!("{TUNABLE}={VALUE}")
        } else {
            format!("{current}:{TUNABLE}={VALUE}")
        };
        let mut args = std::env::args_os();
        let Some(arg0) = args.next() else { return };
        // Only returns on failure.
        let _ = std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .env(REEXEC_MARK, "1")
            .exec();
    }
}

/// Names the process (its main thread, and so every thread it starts) after
/// its executable file rather than "exe". Must run before other threads exist.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
fn restore_name() {
    use std::os::unix::ffi::OsStrExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let Some(file) = exe.file_name() else { return };
    // An executable replaced on disk reads as "cnode (deleted)".
    let name = file
        .as_bytes()
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default();
    // The kernel keeps 15 bytes and a NUL.
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name[..n]);
    if n == 0 {
        return;
    }
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes
    // from a buffer that lives across the call.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// Set in the environment of the re-executed process (and so of its
/// children): never execute again.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
const REEXEC_MARK: &str = "CNODE_MEMCPY_TUNED";

#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
fn amd_cpu() -> bool {
    // CPUID leaf 0: the vendor string in EBX, EDX, ECX.
    let id = std::arch::x86_64::__cpuid(0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&id.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&id.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&id.ecx.to_le_bytes());
    &vendor == b"AuthenticAMD"
}
