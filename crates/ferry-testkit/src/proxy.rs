//! A TCP proxy in front of a service that counts the bytes clients send through it (the measure
//! of what a copy uploaded, independent of what the client reports) and can inject faults: drop
//! a connection mid-request, or answer 503 without passing the request on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Faults injected per connection, in percent of new connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Close the connection after part of the request, without an answer.
    pub drop_pct: u32,
    /// Answer `503 Service Unavailable` (with `Retry-After: 0`) and close.
    pub unavailable_pct: u32,
}

pub struct CountingProxy {
    pub endpoint: String,
    uploaded: Arc<AtomicU64>,
    faults_injected: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> CountingProxy {
        Self::start_with_faults(upstream, Faults::default())
    }

    /// Like [`CountingProxy::start`], injecting `faults` into new connections.
    pub fn start_with_faults(upstream: &str, faults: Faults) -> CountingProxy {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let uploaded = Arc::new(AtomicU64::new(0));
        let counter = uploaded.clone();
        let faults_injected = Arc::new(AtomicU64::new(0));
        let injected = faults_injected.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            let (upstream, counter, injected) = (upstream.clone(), counter.clone(), injected.clone());
                            let roll = rand::random_range(0..100u32);
                            tokio::spawn(async move {
                                if roll < faults.drop_pct {
                                    injected.fetch_add(1, Ordering::Relaxed);
                                    let _ = drop_mid_request(client).await;
                                } else if roll < faults.drop_pct + faults.unavailable_pct {
                                    injected.fetch_add(1, Ordering::Relaxed);
                                    let _ = unavailable(client).await;
                                } else {
                                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                                    let _ = pipe(client, server, counter).await;
                                }
                            });
                        }
                        _ = &mut rx => break,
                    }
                }
            });
        });
        CountingProxy { endpoint: format!("http://127.0.0.1:{port}"), uploaded, faults_injected, shutdown: Some(tx), thread: Some(thread) }
    }

    /// Bytes clients have sent so far (requests, headers included).
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Connections that got a fault instead of the service.
    pub fn faults_injected(&self) -> u64 {
        self.faults_injected.load(Ordering::Relaxed)
    }
}

/// Reads the start of a request, then closes the connection without answering.
async fn drop_mid_request(mut client: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    let _ = client.read(&mut buf).await?;
    Ok(())
}

/// Reads the request head, answers 503 with `Retry-After: 0`, and closes.
async fn unavailable(mut client: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let body = b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected by the test proxy</Message></Error>";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(answer.as_bytes()).await?;
    client.write_all(body).await?;
    client.shutdown().await
}

async fn pipe(client: tokio::net::TcpStream, server: tokio::net::TcpStream, counter: Arc<AtomicU64>) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                server_write.shutdown().await?;
                return Ok::<_, std::io::Error>(());
            }
            counter.fetch_add(n as u64, Ordering::Relaxed);
            server_write.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
