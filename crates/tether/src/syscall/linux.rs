//! The real calls: each method is one wrapper of `sys.rs` or one `std::fs` call.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{ChildMain, ChildSyscall, Node, Syscall};
use crate::plan::{CStrArray, ChildFailure, ChildPlan, Stage};
use crate::sys::{self, Pty};

/// The host's own calls; what `main` hands to everything else.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()> {
        sys::mount(source, target, fstype, flags, data)
    }

    fn umount(&self, target: &Path, flags: libc::c_int) -> io::Result<()> {
        sys::umount(target, flags)
    }

    fn sync(&self) {
        sys::sync()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn is_symlink(&self, path: &Path) -> bool {
        path.is_symlink()
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        std::fs::write(path, data)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn stat(&self, path: &Path) -> io::Result<Node> {
        let meta = std::fs::metadata(path)?;
        Ok(Node {
            mode: meta.mode(),
            rdev: meta.rdev(),
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    fn mknod(&self, path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
        sys::mknod(path, mode, rdev)
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        sys::chown(path, uid, gid)
    }

    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn set_clock(&self, nanos: u64) -> io::Result<()> {
        sys::set_clock(nanos)
    }

    fn add_entropy(&self, bytes: &[u8]) -> io::Result<()> {
        sys::add_entropy(bytes)
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        sys::set_hostname(name)
    }

    fn set_domainname(&self, name: &str) -> io::Result<()> {
        sys::set_domainname(name)
    }

    fn loopback_up(&self) -> io::Result<()> {
        sys::loopback_up()
    }

    fn configure_interface(&self, iface: &tether_proto::Interface) -> io::Result<String> {
        let name = crate::netif::find_by_mac(&iface.mac)?;
        crate::netif::configure(&name, iface)?;
        Ok(name)
    }

    fn configure_ipv6(&self, name: &str, cfg: &tether_proto::Ipv6Config) -> io::Result<()> {
        crate::netif6::configure(name, cfg)
    }

    fn add_link_local(&self, name: &str, addresses: &[std::net::IpAddr]) -> io::Result<()> {
        crate::netif::add_link_local(name, addresses)
    }

    fn change_mac(&self, from: &str, to: &str) -> io::Result<()> {
        let name = crate::netif::find_by_mac(from)?;
        crate::netif::set(&name, to, None)
    }

    fn default_route(&self, gateway: std::net::Ipv4Addr) -> io::Result<()> {
        crate::netif::default_route(gateway)
    }

    fn reboot(&self) -> io::Result<()> {
        Err(sys::reboot())
    }

    fn kill(&self, pid: i32, signal: i32) -> io::Result<()> {
        sys::kill(pid, signal)
    }

    fn spawn(&self, plan: &ChildPlan, main: ChildMain) -> io::Result<Result<i32, ChildFailure>> {
        let child = || main(self, plan).map_err(|(stage, errno)| (stage as u8, errno));
        let spawned = sys::fork_exec(&child)?;
        Ok(spawned.map_err(|(stage, errno)| (Stage::from_u8(stage), errno)))
    }

    fn open_pty(&self, ptmx: &Path) -> io::Result<Pty> {
        sys::open_pty(ptmx)
    }

    fn set_winsize(&self, fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
        sys::set_winsize(fd, rows, cols)
    }

    fn fchown(&self, fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
        sys::fchown(fd, uid, gid)
    }
}

impl ChildSyscall for LinuxSyscall {
    fn reset_signals(&self) {
        sys::reset_signals()
    }

    fn setsid(&self) -> io::Result<()> {
        sys::setsid()
    }

    fn dup2(&self, src: RawFd, dst: RawFd) -> io::Result<()> {
        sys::dup2(src, dst)
    }

    fn set_controlling_tty(&self, fd: RawFd) -> io::Result<()> {
        sys::set_controlling_tty(fd)
    }

    fn join_cgroup(&self, procs: &CStr) -> io::Result<()> {
        sys::join_cgroup(procs)
    }

    fn setrlimit(&self, resource: u32, limit: &libc::rlimit) -> io::Result<()> {
        sys::setrlimit(resource, limit)
    }

    fn enter_root(&self, root: &CStr) -> io::Result<()> {
        sys::enter_root(root)
    }

    fn chdir(&self, dir: &CStr) -> io::Result<()> {
        sys::chdir(dir)
    }

    fn drop_bounding(&self, cap: u32) -> io::Result<()> {
        sys::drop_bounding(cap)
    }

    fn keep_caps(&self) -> io::Result<()> {
        sys::keep_caps()
    }

    fn setgroups(&self, groups: &[libc::gid_t]) -> io::Result<()> {
        sys::setgroups(groups)
    }

    fn setgid(&self, gid: u32) -> io::Result<()> {
        sys::setgid(gid)
    }

    fn setuid(&self, uid: u32) -> io::Result<()> {
        sys::setuid(uid)
    }

    fn capset(&self, caps: u64) -> io::Result<()> {
        sys::capset(caps)
    }

    fn clear_ambient_caps(&self) -> io::Result<()> {
        sys::clear_ambient_caps()
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        sys::set_no_new_privs()
    }

    fn execve(&self, path: &CStr, argv: &CStrArray, env: &CStrArray) -> io::Result<()> {
        Err(sys::execve(path, argv, env))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Restrictions;
    use crate::user::Identity;

    fn plan(program: &str) -> ChildPlan {
        let me = Identity {
            uid: 0,
            gid: 0,
            groups: vec![],
            home: "/".into(),
        };
        let argv = [program.to_string()];
        let r = Restrictions::default();
        ChildPlan::new(&argv, &[], &argv, "/", "/", &me, [0, 1, 2], false, r).unwrap()
    }

    /// Waits for `pid` and returns its exit code.
    fn reap(pid: i32) -> i32 {
        let mut status = 0;
        // SAFETY: `status` is a valid int for waitpid to fill.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        sys::exit_code(status)
    }

    #[test]
    fn a_child_that_fails_sends_its_stage_and_errno_back_and_exits_127() {
        let fail: ChildMain = |_, _| Err((Stage::Cwd, libc::EACCES));
        let Err((stage, errno)) = LinuxSyscall.spawn(&plan("/x"), fail).unwrap() else {
            panic!("the failure did not come back");
        };
        assert_eq!((stage, errno), (Stage::Cwd, libc::EACCES));
    }

    #[test]
    fn a_child_that_execs_is_reported_by_its_pid() {
        let exec: ChildMain = |sys, plan| {
            sys.execve(&plan.candidates[0], &plan.argv, &plan.env)
                .map_err(Stage::Exec.failed())
        };
        let pid = LinuxSyscall
            .spawn(&plan("/bin/true"), exec)
            .unwrap()
            .unwrap();
        assert_eq!(reap(pid), 0);
        let missing = LinuxSyscall.spawn(&plan("/no/such/program"), exec).unwrap();
        assert_eq!(missing, Err((Stage::Exec, libc::ENOENT)));
    }
}
