//! Any bytes as a manifest header or as a Parquet shard: entries or an error, never a panic.
//! The first byte chooses which reader gets the rest.
#![no_main]

use ferry_manifest::ManifestHeader;
use ferry_manifest::shard::count_shard;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // The reader turns a panic inside the Parquet library into an error (see `shard::guarded`);
    // libFuzzer's hook would abort on it first, so panics the reader catches stay quiet here.
    // One it does not catch still ends the run as a crash.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&which, rest)) = data.split_first() else { return };
    if which & 1 == 0 {
        let _ = ManifestHeader::parse(rest, Path::new("manifest.json"));
    } else {
        let _ = count_shard(bytes::Bytes::copy_from_slice(rest), Path::new("shard.parquet"));
    }
});
