//! A loopback HTTP/1.1 receiver for the webhook and PagerDuty tests: it
//! answers 500 to the first requests, then 200, and keeps the bodies it
//! accepted.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Bodies a receiver accepted, shared with its thread.
pub type Bodies = Arc<Mutex<Vec<Value>>>;

/// Accept POSTs; answer 500 to the first `fail` of them, then 200; keep the
/// bodies of the accepted ones. Returns the port, the bodies and the count
/// of requests.
pub fn receiver(fail: usize) -> (u16, Bodies, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(Mutex::new(0usize));
    let (acc, reqs) = (Arc::clone(&accepted), Arc::clone(&requests));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let n = {
                let mut r = reqs.lock().unwrap();
                *r += 1;
                *r
            };
            let status = if n <= fail {
                "500 Internal Server Error"
            } else {
                acc.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (port, accepted, requests)
}
