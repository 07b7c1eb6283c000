//! The channel on a serial line: what a VM without a virtio port has (ESX's network-backed
//! serial ports are UARTs in the guest). The kernel command line names it (`vic.channel=ttyS0`);
//! the line is set raw (8 bits, no echo, no line editing, no flow control), since frames are
//! binary.
//!
//! A UART has no hang-up and no frame boundaries: the tether cannot see a host go and another
//! come, and what it reads first may be the tail of a frame (a UART's FIFO is cleared as the
//! device opens). So on a serial line the tether reads nothing until a host's `Resync`, which
//! every host sends as it connects, every 2 s until the guest's `Hello`, and once more right
//! after it (the tether also says `Hello` unasked as it starts). Bytes the line stopped in for [`STALE_PARTIAL`] (a host that died
//! mid-frame) are dropped, and the tether waits for the next `Resync` (see `port.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Silence in the middle of a frame after which its bytes are taken for a dead host's.
pub const STALE_PARTIAL: Duration = Duration::from_secs(2);

/// The serial device `vic.channel=` names on `cmdline`: `ttyS` and a number, nothing else.
pub fn from_cmdline(cmdline: &str) -> Option<PathBuf> {
    let name = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vic.channel="))?;
    let n = name.strip_prefix("ttyS")?;
    (!n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Path::new("/dev").join(name))
}

/// Opens serial device `path` (never as the controlling terminal) and sets it raw.
pub fn open(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)?;
    // SAFETY: termios is plain data; tcgetattr fills it for this open descriptor.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a termios to fill.
    if unsafe { libc::tcgetattr(file.as_raw_fd(), &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: cfmakeraw only changes the struct given.
    unsafe { libc::cfmakeraw(&mut t) };
    // The speed, in the flags' CBAUD bits as the kernel reads them (a virtual UART ignores
    // it; cfsetspeed is not in a static glibc).
    t.c_cflag = (t.c_cflag & !libc::CBAUD) | libc::B115200;
    t.c_cflag |= libc::CLOCAL | libc::CREAD;
    t.c_cflag &= !libc::CRTSCTS;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    // SAFETY: a valid descriptor and the settings made above.
    if unsafe { libc::tcsetattr(file.as_raw_fd(), libc::TCSANOW, &t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Whether `file` has bytes to read within `wait`.
pub fn readable_within(file: &File, wait: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_is_a_numbered_serial_device_or_none() {
        let line = "console=ttyS1 vic.id=ab vic.channel=ttyS0 quiet";
        assert_eq!(from_cmdline(line), Some(PathBuf::from("/dev/ttyS0")));
        for bad in [
            "vic.channel=ttyS",
            "vic.channel=../sda",
            "vic.channel=ttyS1/../../sda",
            "vic.channel=vport0p1",
            "vic.channel=ttyS1234",
            "console=ttyS0",
        ] {
            assert_eq!(from_cmdline(bad), None, "{bad}");
        }
    }
}
