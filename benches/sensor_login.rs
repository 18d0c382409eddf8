//! What a sensor's CONNECT costs the worker (src/modules/ingest/login/): on the event loop, the
//! decision for a sensor whose password this worker already verified (the device id's shape,
//! a SHA-256 of the password, a map lookup among 1,000 sensors); off the loop, the PBKDF2 check
//! of a password not seen before, at the iteration count `hash_secret` uses, and the hashing of
//! a new secret at registration.

use std::hint::black_box;

use bizzy::modules::ingest::decode::valid_device_id;
use bizzy::modules::ingest::login::store::Found;
use bizzy::modules::ingest::login::table::{Step, Table};
use bizzy::mqtt::auth::secret::{hash_secret, Phc};
use criterion::Criterion;
use sha2::{Digest, Sha256};

fn bench_loop(c: &mut Criterion) {
    let phc = hash_secret(b"door-0042-secret");
    let mut table = Table::default();
    table.load_asked();
    table.loaded(
        (0..1000)
            .map(|i| {
                let found = Found::Live {
                    secret_hash: phc.clone(),
                    hive_id: i,
                };
                (format!("door-{i:04}"), found)
            })
            .collect(),
    );
    let digest: [u8; 32] = Sha256::digest(b"door-0042-secret").into();
    table.verified("door-0042", &phc, digest, true);
    c.bench_function(
        "sensor CONNECT on the loop, password verified before",
        |b| {
            b.iter(|| {
                let device = black_box("door-0042");
                assert!(valid_device_id(device));
                let step = table.check(device, device, Some(black_box(b"door-0042-secret")), true);
                assert_eq!(step, Step::Allow);
            })
        },
    );
}

fn bench_off_loop(c: &mut Criterion) {
    let phc = Phc::parse(&hash_secret(b"door-0042-secret")).expect("a hash made here parses");
    let mut g = c.benchmark_group("off the loop");
    g.sample_size(20);
    g.bench_function("PBKDF2 check of a new password", |b| {
        b.iter(|| assert!(phc.verify(black_box(b"door-0042-secret"))))
    });
    g.bench_function("hash_secret at registration", |b| {
        b.iter(|| hash_secret(black_box(b"door-0042-secret")))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_loop(&mut c);
    bench_off_loop(&mut c);
    c.final_summary();
}
