//! Micro-benchmarks of ferry's hot pieces: per-part checksums, manifest write/read rates,
//! journal seeding. Run: `cargo bench --bench hot_paths`. Figures go to docs/performance.md.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ferry_core::{ObjectDigest, ObjectEntry, PartPlan, crc32c};
use std::hint::black_box;

const PART: usize = 16 << 20;
const ROWS: u64 = 100_000;

fn entries(n: u64) -> Vec<ObjectEntry> {
    (0..n)
        .map(|i| ObjectEntry {
            key: format!("photos/{:04}/{:02}/IMG_{i:08}.jpg", 2000 + i % 25, i % 12),
            size: i * 1013,
            etag: Some(format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            content_type: Some("image/jpeg".into()),
            ..Default::default()
        })
        .collect()
}

fn checksums(c: &mut Criterion) {
    let data = vec![0xa5u8; PART];
    let mut g = c.benchmark_group("checksums per 16 MiB part");
    g.throughput(Throughput::Bytes(PART as u64));
    g.bench_function("crc32c", |b| b.iter(|| crc32c(black_box(&data))));
    g.bench_function("crc64nvme", |b| b.iter(|| ferry_core::digest::crc64nvme(black_box(&data))));
    g.bench_function("md5 (S3 ETag, Azure Content-MD5)", |b| {
        b.iter(|| {
            let mut check = ferry_core::Md5Etag::new("0123456789abcdef0123456789abcdef", PART as u64, None).unwrap();
            check.update(black_box(&data));
            check.computed()
        })
    });
    g.bench_function("crc32c + crc64nvme + sha256 (ObjectDigest)", |b| {
        b.iter(|| {
            let mut d = ObjectDigest::new();
            d.update(black_box(&data));
            d.finish()
        })
    });
    g.finish();
}

fn part_plans(c: &mut Criterion) {
    c.bench_function("part plan of a 5 TiB object (all ranges)", |b| {
        b.iter(|| {
            let p = PartPlan::choose(black_box(5 << 40), None, &ferry_providers::s3::LIMITS);
            (0..p.count()).map(|i| p.range(i).end).sum::<u64>()
        })
    });
}

fn manifest(c: &mut Criterion) {
    let rows = entries(ROWS);
    let mut g = c.benchmark_group("manifest");
    g.throughput(Throughput::Elements(ROWS));
    g.sample_size(10);
    g.bench_function("write + seal 100k entries", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let mut w = ferry_manifest::ManifestWriter::create(dir.path(), 1, None, "s3://src-bkt/", "gs://dst-bkt/").unwrap();
                for e in &rows {
                    w.push(e).unwrap();
                }
                w.seal().unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let mut w = ferry_manifest::ManifestWriter::create(dir.path(), 1, None, "s3://src-bkt/", "gs://dst-bkt/").unwrap();
    for e in &rows {
        w.push(e).unwrap();
    }
    w.seal().unwrap();
    g.bench_function("open (digest check) + read 100k entries", |b| {
        b.iter(|| {
            let r = ferry_manifest::ManifestReader::open(dir.path()).unwrap();
            let mut n = 0;
            r.for_each_batch::<ferry_manifest::ManifestError>(|batch| {
                n += batch.len();
                Ok(())
            })
            .unwrap();
            n
        })
    });
    g.finish();
}

fn journal(c: &mut Criterion) {
    let rows = entries(ROWS);
    let mut g = c.benchmark_group("journal");
    g.throughput(Throughput::Elements(ROWS));
    g.sample_size(10);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    g.bench_function("seed 100k entries (10 batches)", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                rt.block_on(async {
                    let j = ferry_journal::open(dir.path(), ferry_journal::JournalKind::Main).await.unwrap();
                    for chunk in rows.chunks(10_000) {
                        j.seed(1, chunk).await.unwrap();
                    }
                });
                dir
            },
            BatchSize::PerIteration,
        )
    });
    // The scheduler's path: claim a batch, mark each done, until the pass is over.
    g.bench_function("claim and finish 100k objects (batches of 512)", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let j = rt.block_on(async {
                    let j = ferry_journal::open(dir.path(), ferry_journal::JournalKind::Main).await.unwrap();
                    for chunk in rows.chunks(10_000) {
                        j.seed(1, chunk).await.unwrap();
                    }
                    j
                });
                (dir, j)
            },
            |(dir, j)| {
                rt.block_on(async {
                    let w = j.begin_pass("bench").await.unwrap();
                    let clock = ferry_journal::Clock::new();
                    let outcome = ferry_journal::Outcome {
                        copied: ferry_core::Checksums::default(),
                        dst_etag: None,
                        verified_by: ferry_core::Evidence::SizeOnly,
                        // What a copy now records of every object (an object without attributes).
                        src_attrs: Some(ferry_core::headers::Attrs::default()),
                    };
                    loop {
                        let rows = j.claim(&w, 512, clock.lease(std::time::Duration::from_secs(60))).await.unwrap();
                        if rows.is_empty() {
                            break;
                        }
                        for r in rows {
                            j.mark_done(r.id, &outcome).await.unwrap();
                        }
                    }
                });
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, checksums, part_plans, manifest, journal);
criterion_main!(benches);
