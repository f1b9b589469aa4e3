//! A small HTTP/1.1 load generator for 127.0.0.1.
//!
//! Closed loop: each connection sends its next request as soon as the last
//! answer arrived; this finds the highest rate. Open loop: requests are
//! scheduled at a fixed total rate and latency is measured from the
//! scheduled time, not the send time (as wrk2 does), so a stalled server
//! cannot hide its stall by slowing the client down (coordinated
//! omission). Runs are bounded in time and stop by themselves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request, sent again and again.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The complete request bytes, with `Host` and `Content-Length`.
    pub request: bytes::Bytes,
    /// The status every answer should have; others count as errors.
    pub expect: u16,
}

impl Target {
    pub fn new(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        expect: u16,
    ) -> Self {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method != "GET" {
            req.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        Self {
            addr,
            request: bytes.into(),
            expect,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    KeepAlive(usize),
    /// A new TCP connection for every request, with this many in flight.
    NewEach(usize),
}

impl Connections {
    pub fn count(self) -> usize {
        match self {
            Connections::KeepAlive(n) | Connections::NewEach(n) => n,
        }
    }
}

pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    // Invariant: these bounds are valid (1 us to 5 minutes, 3 digits).
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds")
}

/// Runs `target` for `duration` over `conns`, closed loop when `rate` is
/// `None`, else open loop at `rate` requests per second in total.
pub async fn run(
    target: &Target,
    conns: Connections,
    duration: Duration,
    rate: Option<f64>,
) -> Outcome {
    let n = conns.count();
    // Keep-alive connections open before the clock starts: the run measures
    // requests, not the handshake storm of its first millisecond.
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(match conns {
            Connections::KeepAlive(_) => connect(target.addr).await.ok(),
            Connections::NewEach(_) => None,
        });
    }
    let start = Instant::now() + Duration::from_millis(10);
    let end = start + duration;
    let interval = rate.map(|r| Duration::from_secs_f64(n as f64 / r.max(1.0)));
    let mut tasks = Vec::with_capacity(n);
    for (k, stream) in streams.into_iter().enumerate() {
        let target = target.clone();
        let first = start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(k as f64 / n as f64));
        tasks.push(tokio::spawn(connection(
            target, conns, stream, first, end, interval,
        )));
    }
    let mut total = Outcome {
        ok: 0,
        errors: 0,
        elapsed: duration,
        latency: histogram(),
    };
    for t in tasks {
        if let Ok(o) = t.await {
            total.ok += o.ok;
            total.errors += o.errors;
            let _ = total.latency.add(&o.latency);
        }
    }
    total.elapsed = start
        .elapsed()
        .min(duration + Duration::from_secs(5))
        .max(duration);
    total
}

async fn connection(
    target: Target,
    conns: Connections,
    mut stream: Option<TcpStream>,
    first: Instant,
    end: Instant,
    interval: Option<Duration>,
) -> Outcome {
    let mut out = Outcome {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut i: u32 = 0;
    let mut prev_done = Instant::now();
    tokio::time::sleep_until(first.into()).await;
    loop {
        let intended = match interval {
            Some(iv) => first + iv * i,
            None => Instant::now(),
        };
        if intended >= end {
            break;
        }
        // The timer wheel ticks in milliseconds: never sleep when on time.
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        i += 1;
        let reuse = matches!(conns, Connections::KeepAlive(_));
        let sent = Instant::now();
        let result = exchange(&target, &mut stream, &mut buf, reuse).await;
        let done = Instant::now();
        // Late because the server had not answered the previous request:
        // count from the scheduled time (no coordinated omission). Late
        // only because the client's timer woke late: count from the send.
        let latency = if prev_done > intended {
            done - intended
        } else {
            done - sent
        };
        prev_done = done;
        match result {
            Ok(status) if status == target.expect => out.ok += 1,
            _ => out.errors += 1,
        }
        let _ = out.latency.record(
            u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
    }
    out
}

/// Sends one request and reads one answer; reconnects once when a reused
/// connection turns out closed.
async fn exchange(
    target: &Target,
    stream: &mut Option<TcpStream>,
    buf: &mut BytesMut,
    reuse: bool,
) -> std::io::Result<u16> {
    let mut retried = false;
    loop {
        let fresh = stream.is_none();
        if fresh {
            *stream = Some(connect(target.addr).await?);
            buf.clear();
        }
        let s = stream
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))?;
        let answer = async {
            s.write_all(&target.request).await?;
            read_response(s, buf).await
        }
        .await;
        match answer {
            Ok((status, close)) => {
                if close || !reuse {
                    *stream = None;
                }
                return Ok(status);
            }
            Err(e) => {
                *stream = None;
                if fresh || retried {
                    return Err(e);
                }
                retried = true;
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    // Close with RST: a bounded run must not exhaust ports in TIME_WAIT.
    #[allow(deprecated)]
    s.set_linger(Some(Duration::ZERO))?;
    Ok(s)
}

/// Reads one response; returns its status and whether the server will
/// close the connection.
async fn read_response(s: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<(u16, bool)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp
            .parse(buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?
        {
            let status = resp.code.unwrap_or(0);
            let mut length = 0usize;
            let mut close = false;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    length = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = h.value.eq_ignore_ascii_case(b"close");
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(std::io::Error::other("chunked answers are not supported"));
                }
            }
            while buf.len() < head + length {
                if s.read_buf(buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            buf.advance(head + length);
            return Ok((status, close));
        }
        if s.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}
