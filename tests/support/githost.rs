//! A Git host on loopback for the breaker's tests, switched between the ways a far host fails:
//! it refuses connections, accepts and never answers (a tarpit), answers 429, or answers the
//! smart-HTTP discovery request as a Git server does. It counts what reaches it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Refuse = 0,
    Hang = 1,
    Throttle = 2,
    Answer = 3,
}

pub struct LocalGitHost {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// The request line of every request that reached the host (connections that sent one).
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalGitHost {
    /// Starts on a free loopback port, refusing connections until told otherwise.
    pub async fn start() -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Refuse as u8));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(addr, mode.clone(), requests.clone()));
        Self {
            addr,
            mode,
            requests,
            task,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }
}

impl Drop for LocalGitHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mode_of(mode: &AtomicU8) -> Mode {
    match mode.load(Ordering::SeqCst) {
        1 => Mode::Hang,
        2 => Mode::Throttle,
        3 => Mode::Answer,
        _ => Mode::Refuse,
    }
}

/// Listens while the mode is not `Refuse` (a closed port refuses), for ten minutes at most.
async fn serve(addr: SocketAddr, mode: Arc<AtomicU8>, requests: Arc<Mutex<Vec<String>>>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while tokio::time::Instant::now() < deadline {
        if mode_of(&mode) == Mode::Refuse {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let Ok(listener) = TcpListener::bind(addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while mode_of(&mode) != Mode::Refuse && tokio::time::Instant::now() < deadline {
            let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
            if let Ok(Ok((stream, _))) = accepted {
                tokio::spawn(answer(stream, mode.clone(), requests.clone()));
            }
        }
    }
}

async fn answer(mut stream: TcpStream, mode: Arc<AtomicU8>, requests: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    requests.lock().unwrap().push(line);
    let reply: &[u8] = match mode_of(&mode) {
        Mode::Refuse => return,
        Mode::Hang => {
            // A tarpit: the connection stays open and silent (bounded).
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        Mode::Throttle => {
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
        Mode::Answer => {
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nContent-Length: 34\r\nConnection: close\r\n\r\n001e# service=git-upload-pack\n0000"
        }
    };
    let _ = stream.write_all(reply).await;
    let _ = stream.shutdown().await;
}
