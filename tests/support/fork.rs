//! Forking from a test: the child runs a closure and leaves with `_exit`, never returning into
//! the test harness. The harness is multithreaded, so every fork is made under one lock (the
//! other tests of the binary that fork wait) and a child does only its own short work: limiter
//! calls, file system calls and writing its report to a pipe.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::Mutex;

static FORKING: Mutex<()> = Mutex::new(());

/// Hold while forking (a poisoned lock is still a lock).
pub fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    FORKING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child forked to run `work`, writing its report to a pipe.
pub struct Forked {
    pub pid: libc::pid_t,
    report: File,
}

/// Fork a child that runs `work` (given the pipe's write end) and exits with the byte it
/// returns, or 101 if it panicked.
pub fn fork(work: impl FnOnce(&mut File) -> u8) -> Forked {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: the child only runs `work` and then `_exit`s (see the module docs).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: the read end is ours to close; the write end is owned by `out` from here.
        unsafe { libc::close(fds[0]) };
        let mut out = unsafe { File::from_raw_fd(fds[1]) };
        // A panic's message would go to the harness's capture of this thread, which nobody
        // reads in the child: it goes to the report instead.
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut out))) {
            Ok(code) => code,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                let _ = write!(out, "child panicked: {msg}");
                101
            }
        };
        let _ = out.flush();
        // SAFETY: leaves the child at once, running no destructor or atexit handler of the
        // parent's state.
        unsafe { libc::_exit(code as libc::c_int) };
    }
    // SAFETY: the write end belongs to the child now; the read end is owned by `report`.
    unsafe { libc::close(fds[1]) };
    Forked {
        pid,
        report: unsafe { File::from_raw_fd(fds[0]) },
    }
}

impl Forked {
    /// Wait for the child: its exit status and everything it wrote.
    pub fn wait(mut self) -> (i32, String) {
        let mut text = String::new();
        self.report.read_to_string(&mut text).unwrap();
        let mut status = 0;
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(r, self.pid, "waitpid: {}", std::io::Error::last_os_error());
        assert!(
            libc::WIFEXITED(status),
            "child {} died: status {status:#x}",
            self.pid
        );
        (libc::WEXITSTATUS(status), text)
    }
}

/// Run `work` in a forked child and wait for it: exit status and report.
pub fn in_child(work: impl FnOnce(&mut File) -> u8) -> (i32, String) {
    fork(work).wait()
}
