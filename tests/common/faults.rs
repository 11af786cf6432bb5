//! A fault-injecting HTTP proxy on loopback, between the daemon and a real
//! server (moto): per request, chosen by a seeded generator, it answers 503
//! SlowDown or 500 InternalError itself, cuts the upstream's response in
//! the middle of its body, delays it, or passes it through. One request per
//! connection (`Connection: close` both ways), so no HTTP parsing beyond
//! the head and Content-Length is needed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the proxy did, per kind.
#[derive(Default, Debug)]
pub struct Counts {
    pub passed: AtomicU64,
    pub slow_down: AtomicU64,
    pub internal: AtomicU64,
    pub cut: AtomicU64,
    pub delayed: AtomicU64,
}

pub struct FaultProxy {
    pub endpoint: String,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`host:port`); `fault_percent` of requests get a
    /// fault, spread over the four kinds.
    pub fn start(upstream: &str, seed: u64, fault_percent: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, up) = (counts.clone(), stop.clone(), upstream.to_owned());
        let n = Arc::new(AtomicU64::new(0));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (c, up) = (c.clone(), up.clone());
                let i = n.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, pick(seed, i, fault_percent), &c);
                });
            }
        });
        FaultProxy {
            endpoint,
            counts,
            stop,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Pass,
    SlowDown,
    Internal,
    Cut,
    Delay,
}

fn pick(seed: u64, i: u64, percent: u64) -> Fault {
    // splitmix64 of (seed, request number): the same run, the same faults.
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    if z % 100 >= percent {
        return Fault::Pass;
    }
    match (z >> 8) % 4 {
        0 => Fault::SlowDown,
        1 => Fault::Internal,
        2 => Fault::Cut,
        _ => Fault::Delay,
    }
}

/// Read one request: head and Content-Length body.
fn read_request(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// The request with `Connection: close` (upstream closes after answering).
fn close_after(request: &[u8]) -> Vec<u8> {
    let line_end = request.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let mut out = request[..line_end].to_vec();
    out.extend_from_slice(b"Connection: close\r\n");
    for line in request[line_end..].split_inclusive(|b| *b == b'\n') {
        if !line.to_ascii_lowercase().starts_with(b"connection:") {
            out.extend_from_slice(line);
        }
    }
    out
}

fn error(conn: &mut TcpStream, status: &str, code: &str) -> std::io::Result<()> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
    );
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    fault: Fault,
    counts: &Counts,
) -> std::io::Result<()> {
    let request = read_request(&mut conn)?;
    match fault {
        Fault::SlowDown => {
            counts.slow_down.fetch_add(1, Ordering::Relaxed);
            return error(&mut conn, "503 Slow Down", "SlowDown");
        }
        Fault::Internal => {
            counts.internal.fetch_add(1, Ordering::Relaxed);
            return error(&mut conn, "500 Internal Server Error", "InternalError");
        }
        Fault::Delay => {
            counts.delayed.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(300));
        }
        _ => {}
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&close_after(&request))?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    let body_len = response.len() - body_at;
    if matches!(fault, Fault::Cut) && body_len > 64 {
        // Headers promise the whole body; half of it arrives, then EOF.
        counts.cut.fetch_add(1, Ordering::Relaxed);
        conn.write_all(&response[..body_at + body_len / 2])?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    if !matches!(fault, Fault::Delay) {
        counts.passed.fetch_add(1, Ordering::Relaxed);
    }
    conn.write_all(&response)
}
