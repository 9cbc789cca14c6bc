//! Where a server listens or a client connects: `ip:port`, or a Unix socket
//! `unix:/absolute/path` (the app hop inside a pod: no TCP stack, no
//! conntrack, and only what can open the socket file can reach it).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio::net::UnixListener;

/// `sun_path` holds 108 bytes, the terminating NUL included.
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Address, String> {
        match s.strip_prefix("unix:") {
            Some(path) => {
                let path = Path::new(path);
                if !path.is_absolute() {
                    return Err(format!("{s:?}: a Unix socket path must be absolute (unix:/run/paymesh/app.sock)"));
                }
                if path.as_os_str().len() > MAX_SOCKET_PATH {
                    return Err(format!("{s:?}: a Unix socket path is at most {MAX_SOCKET_PATH} bytes"));
                }
                Ok(Address::Unix(path.to_owned()))
            }
            None => {
                s.parse().map(Address::Tcp).map_err(|_| format!("{s:?} is neither ip:port nor unix:/absolute/path"))
            }
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Listens on a Unix socket at `path`, readable and writable by this user
/// only (0600). A socket file left by a process that died is replaced; one
/// another process still serves, or a path that is not a socket, is an
/// error (nothing but a dead socket is ever removed).
pub fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another process serves this socket", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists and is not a socket; not removing it", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_refuses_the_rest() {
        assert_eq!("127.0.0.1:8081".parse(), Ok(Address::Tcp("127.0.0.1:8081".parse().unwrap())));
        assert_eq!("unix:/run/paymesh/app.sock".parse(), Ok(Address::Unix("/run/paymesh/app.sock".into())));
        assert_eq!(Address::Unix("/a.sock".into()).to_string(), "unix:/a.sock");
        for bad in ["", "localhost", "unix:", "unix:relative.sock", "127.0.0.1", &format!("unix:/{}", "x".repeat(200))]
        {
            assert!(bad.parse::<Address>().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn binds_0600_replaces_a_dead_socket_and_refuses_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let live = bind_unix(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(bind_unix(&path).unwrap_err().kind(), io::ErrorKind::AddrInUse, "a live socket is kept");
        drop(live);
        // The file stays behind, dead: the next start replaces it.
        assert!(path.exists());
        let _again = bind_unix(&path).unwrap();
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep me").unwrap();
        assert_eq!(bind_unix(&file).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}
