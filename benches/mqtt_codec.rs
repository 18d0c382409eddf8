//! MQTT codec cost: decode and encode of the packet the sensors send most, a QoS 1 PUBLISH of a
//! 16-byte counter report to `sensors/dev-0001/counter`. Run with `cargo bench --bench mqtt_codec`.

use std::hint::black_box;

use bizzy::mqtt::codec::{encode, Decode, Decoder, Packet, Publish, QoS};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn report() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "sensors/dev-0001/counter".into(),
        pkid: 42,
        payload: Bytes::from_static(&[0, 3, 0, 1, 0, 7, 0, 5, 24, 5, 14, 9, 12, 44, 0x20, 0xff]),
    })
}

fn bench(c: &mut Criterion) {
    let packet = report();
    let mut wire = Vec::new();
    encode(&packet, &mut wire).expect("fits");
    let mut g = c.benchmark_group("mqtt_codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_publish_qos1_16b", |b| {
        let mut dec = Decoder {
            max_packet_size: 1 << 20,
        };
        // A read buffer refilled with 1,024 packets at a time, as a socket read would.
        let mut buf = BytesMut::with_capacity(wire.len() * 1024);
        b.iter(|| {
            if buf.is_empty() {
                for _ in 0..1024 {
                    buf.extend_from_slice(&wire);
                }
            }
            black_box(dec.decode(&mut buf).expect("valid"))
        })
    });
    g.bench_function("encode_publish_qos1_16b", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            out.clear();
            encode(black_box(&packet), &mut out).expect("fits");
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
