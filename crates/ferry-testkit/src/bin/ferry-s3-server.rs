//! s3s-fs as a standalone S3 server on loopback, for the end-to-end benchmark
//! (`scripts/bench.sh`), where ferry, s5cmd and rclone must talk to the same server.
//!
//! `ferry-s3-server DIR ACCESS_KEY SECRET_KEY`: serves a fresh directory under DIR (put it on
//! tmpfs to measure the clients, not the disk), prints `http://127.0.0.1:PORT` and runs until
//! its standard input closes or it is killed. Buckets are made with `mkdir DIR/…/BUCKET`, or by
//! the clients.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, access, secret] = args.as_slice() else {
        eprintln!("usage: ferry-s3-server DIR ACCESS_KEY SECRET_KEY");
        std::process::exit(2);
    };
    let root = tempfile::tempdir_in(dir).unwrap_or_else(|e| {
        eprintln!("ferry-s3-server: cannot make a directory under {dir}: {e}");
        std::process::exit(2);
    });
    let server = ferry_testkit::S3Server::start_in(root, access, secret);
    println!("{} {}", server.endpoint, server.root.path().display());
    // Runs until stdin closes (the benchmark holds it open) or the process is killed.
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    drop(server);
}
