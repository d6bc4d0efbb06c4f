//! A minimal QMP client (QEMU Machine Protocol, docs/interop/qmp-spec.rst): connect to the
//! monitor socket a guest was started with ([`Qmp::args`]), leave capabilities
//! negotiation, run commands. Enough for tests that change the guest's hardware while it
//! runs (`set_link` to flap a NIC's link).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A connected QMP monitor, in command mode.
#[derive(Debug)]
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    path: PathBuf,
}

impl Qmp {
    /// QEMU arguments for a QMP server on the unix socket `path` that does not wait for a
    /// client (append them to `GuestConfig::extra_qemu_args`).
    pub fn args(path: &Path) -> Vec<String> {
        vec![
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", path.display()),
        ]
    }

    /// Connects to the socket at `path` (retrying until QEMU has created it, up to
    /// `timeout`), reads the greeting and enters command mode (`qmp_capabilities`).
    pub fn connect(path: &Path, timeout: Duration) -> io::Result<Qmp> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("QMP socket {}: {e}", path.display()),
                    ))
                }
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut q = Qmp {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            path: path.to_path_buf(),
        };
        let greeting = q.read_line()?;
        if !greeting.contains("\"QMP\"") {
            return Err(q.err(format!("not a QMP greeting: {greeting}")));
        }
        q.execute("qmp_capabilities", "{}")?;
        Ok(q)
    }

    fn err(&self, msg: String) -> io::Error {
        io::Error::other(format!("QMP {}: {msg}", self.path.display()))
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(self.err("QEMU closed the monitor".into()));
        }
        Ok(line)
    }

    /// Runs `command` with `arguments` (a JSON object, as text) and returns its `return`
    /// line; an `error` answer is an error. Asynchronous events read meanwhile are skipped.
    pub fn execute(&mut self, command: &str, arguments: &str) -> io::Result<String> {
        writeln!(
            self.writer,
            "{{\"execute\": \"{command}\", \"arguments\": {arguments}}}"
        )?;
        loop {
            let line = self.read_line()?;
            if line.contains("\"return\"") {
                return Ok(line);
            }
            if line.contains("\"error\"") {
                return Err(self.err(format!("{command} {arguments}: {}", line.trim())));
            }
        }
    }

    /// Waits up to `timeout` for the asynchronous event `name` (e.g. `DEVICE_DELETED`);
    /// returns its line. Events already read by [`Qmp::execute`] are not seen again.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        let needle = format!("\"event\": \"{name}\"");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.err(format!("no {name} event within {timeout:?}")));
            }
            self.reader.get_ref().set_read_timeout(Some(left))?;
            let line = self.read_line()?;
            if line.contains(&needle) {
                return Ok(line);
            }
        }
    }

    /// `device_del`: asks the guest to release device `id` (a PCIe hot-unplug through its
    /// root port); completion is the `DEVICE_DELETED` event.
    pub fn device_del(&mut self, id: &str) -> io::Result<()> {
        self.execute("device_del", &format!("{{\"id\": \"{id}\"}}"))
            .map(|_| ())
    }

    /// `set_link`: takes the link of the NIC or netdev `name` down (`up` false) or up.
    pub fn set_link(&mut self, name: &str, up: bool) -> io::Result<()> {
        self.execute(
            "set_link",
            &format!("{{\"name\": \"{name}\", \"up\": {up}}}"),
        )
        .map(|_| ())
    }
}
