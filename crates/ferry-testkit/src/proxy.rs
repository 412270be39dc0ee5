//! A TCP proxy in front of a service that counts the bytes clients send through it: the
//! measure of what a copy uploaded, independent of what the client reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct CountingProxy {
    pub endpoint: String,
    uploaded: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> CountingProxy {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let uploaded = Arc::new(AtomicU64::new(0));
        let counter = uploaded.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            let (upstream, counter) = (upstream.clone(), counter.clone());
                            tokio::spawn(async move {
                                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                                let _ = pipe(client, server, counter).await;
                            });
                        }
                        _ = &mut rx => break,
                    }
                }
            });
        });
        CountingProxy { endpoint: format!("http://127.0.0.1:{port}"), uploaded, shutdown: Some(tx), thread: Some(thread) }
    }

    /// Bytes clients have sent so far (requests, headers included).
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
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
