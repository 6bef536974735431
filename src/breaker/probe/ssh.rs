//! The SSH side of a probe. An SSH server sends its identification line (`SSH-2.0-...`) right
//! after the TCP connect (RFC 4253 §4.2), so reading it shows an SSH server answers, without
//! authenticating. A connect alone shows nothing: a tarpit accepts and never speaks.
//!
//! Always direct: go-git's SSH transport (`plumbing/transport/ssh/common.go`, v5.19, what
//! source-controller uses) dials through `golang.org/x/net/proxy`'s environment dialer unless a
//! GitRepository names a proxy Secret, and that dialer reads only `ALL_PROXY`, never the
//! `HTTPS_PROXY`/`HTTP_PROXY` fluxgate injects.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{Verdict, io_verdict};

/// RFC 4253 lets a server send other lines before its identification; real servers send a few
/// at most.
const MAX_OTHER_LINES: usize = 16;
/// What is read at most before the identification line shows.
const MAX_BYTES: usize = 4096;
/// An identification line is at most 255 bytes: one that long is one, ended or not.
const MAX_LINE: usize = 255;

/// What the bytes received so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// An identification line (`SSH-...`).
    Identified,
    /// Nothing decisive yet.
    NeedMore,
    /// Binary data, too many other lines or too many bytes: not an SSH server.
    NotSsh,
}

pub(super) fn scan(received: &[u8]) -> Scan {
    let mut others = 0;
    for line in received.split_inclusive(|b| *b == b'\n') {
        let complete = line.ends_with(b"\n");
        if line.starts_with(b"SSH-") && (complete || line.len() >= MAX_LINE) {
            return Scan::Identified;
        }
        if line.iter().any(|&b| is_control(b)) {
            return Scan::NotSsh;
        }
        if complete {
            others += 1;
            if others > MAX_OTHER_LINES {
                return Scan::NotSsh;
            }
        }
    }
    if received.len() >= MAX_BYTES {
        Scan::NotSsh
    } else {
        Scan::NeedMore
    }
}

/// Text lines carry no control bytes but tab and line ends.
fn is_control(byte: u8) -> bool {
    (byte < 0x20 && !matches!(byte, b'\t' | b'\r' | b'\n')) || byte == 0x7f
}

/// Connects to the first address that accepts and reads until the server identifies itself.
/// The caller bounds the time.
pub(super) async fn identify(addresses: &[SocketAddr]) -> Verdict {
    let mut failure = Verdict::Dns;
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => failure = io_verdict(&error).unwrap_or(Verdict::Connection),
        }
    }
    let Some(mut stream) = stream else {
        return failure;
    };
    let mut received = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        match stream.read(&mut chunk).await {
            // Closed before identifying itself (an overloaded sshd drops connections so).
            Ok(0) => return Verdict::Connection,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                match scan(&received) {
                    Scan::Identified => return Verdict::Answered { status: None },
                    Scan::NotSsh => return Verdict::Protocol,
                    Scan::NeedMore => {}
                }
            }
            Err(error) => return io_verdict(&error).unwrap_or(Verdict::Connection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identification_line_identifies() {
        assert_eq!(scan(b"SSH-2.0-OpenSSH_9.6\r\n"), Scan::Identified);
        assert_eq!(scan(b"SSH-2.0-babeld-2f5f0a4c\n"), Scan::Identified);
        // Other lines may come first (RFC 4253 4.2).
        assert_eq!(
            scan(b"Welcome to git.corp\r\nauthorised use only\r\nSSH-2.0-Go\r\n"),
            Scan::Identified
        );
        // An unended line of the maximum length is one too.
        let mut long = b"SSH-2.0-".to_vec();
        long.resize(MAX_LINE, b'x');
        assert_eq!(scan(&long), Scan::Identified);
    }

    #[test]
    fn a_partial_line_waits() {
        assert_eq!(scan(b""), Scan::NeedMore);
        assert_eq!(scan(b"SS"), Scan::NeedMore);
        assert_eq!(scan(b"SSH-2.0-Open"), Scan::NeedMore);
        assert_eq!(scan(b"banner line\r\n"), Scan::NeedMore);
        // "SSH-" must start the line: this is another line.
        assert_eq!(scan(b"not SSH-2.0-x\r\n"), Scan::NeedMore);
    }

    #[test]
    fn anything_else_is_not_ssh() {
        assert_eq!(scan(b"\x00\x01\x02\x03"), Scan::NotSsh);
        assert_eq!(scan(b"\x16\x03\x01\x00\xa5"), Scan::NotSsh, "a TLS record");
        let many: Vec<u8> = b"HTTP/1.1 400 Bad Request\r\n"
            .iter()
            .copied()
            .cycle()
            .take(26 * (MAX_OTHER_LINES + 1))
            .collect();
        assert_eq!(scan(&many), Scan::NotSsh);
        assert_eq!(scan(&vec![b'x'; MAX_BYTES]), Scan::NotSsh);
    }
}
