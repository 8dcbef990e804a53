//! Channel codec benchmarks: text, JSON and topic, each for two channels.
//!
//! Run with `cargo bench -p tidings-benches --bench channel_codecs`.
//! Every group takes the channel as its parameter, so criterion reports
//! `<group>/room` for `{:room, 42}` and `<group>/doc` for
//! `{:doc, "abc-123", "v2"}`.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use tidings_core::{Channel, ChannelBuf, ChannelError};

/// Stack buffer size for the allocation-free codecs.
const CAP: usize = 64;

/// One benchmarked channel in every form a codec starts from.
struct Case {
    /// Short label used as the criterion parameter.
    label: &'static str,
    text: &'static str,
    json: String,
    channel: Channel,
    topic: Vec<u8>,
}

impl Case {
    fn new(label: &'static str, text: &'static str, json: &str) -> Self {
        let channel = Channel::parse(text).expect("benchmark channel parses");
        // Check every codec once, so the benchmarks measure the success path.
        assert_eq!(channel.to_string(), text, "text form is canonical");
        assert_eq!(channel.to_json(), json, "JSON form");
        assert_eq!(Channel::from_json(json).expect("JSON parses"), channel);
        let topic = channel.topic().as_bytes().to_vec();
        let mut buf = [0u8; CAP];
        assert_eq!(
            channel.encode_topic(&mut buf).as_deref(),
            Some(topic.as_slice()),
            "encode_topic matches topic()"
        );
        assert_eq!(Channel::from_topic(&topic).expect("topic decodes"), channel);
        let heapless = ChannelBuf::<CAP>::parse_text(text).expect("fits ChannelBuf");
        assert_eq!(heapless.as_topic_bytes(), topic.as_slice());
        assert_eq!(
            ChannelBuf::<CAP>::from_topic(&topic).expect("topic validates"),
            heapless
        );
        Self {
            label,
            text,
            json: json.to_owned(),
            channel,
            topic,
        }
    }
}

fn cases() -> [Case; 2] {
    [
        Case::new("room", "{:room, 42}", r#"{"t":"room","v":[42]}"#),
        Case::new(
            "doc",
            r#"{:doc, "abc-123", "v2"}"#,
            r#"{"t":"doc","v":["abc-123","v2"]}"#,
        ),
    ]
}

fn group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g
}

/// Unwraps a decoder's result. `ChannelError` is 280 bytes, and criterion
/// `black_box`es whatever the routine returns, so returning the `Result`
/// would time a 280-byte copy per iteration that real callers do not pay.
fn ok<T>(r: Result<T, ChannelError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("benchmark input failed to decode: {e}"),
    }
}

/// Runs `f` for every case in its own group.
fn bench_each<R>(c: &mut Criterion, name: &str, mut f: impl FnMut(&Case) -> R) {
    let mut g = group(c, name);
    for case in &cases() {
        g.bench_with_input(BenchmarkId::from_parameter(case.label), case, |b, case| {
            b.iter(|| f(black_box(case)));
        });
    }
    g.finish();
}

fn text(c: &mut Criterion) {
    bench_each(c, "text_parse", |k| ok(Channel::parse(black_box(k.text))));
    bench_each(c, "text_format", |k| black_box(&k.channel).to_string());
    bench_each(c, "text_parse_heapless", |k| {
        ok(ChannelBuf::<CAP>::parse_text(black_box(k.text)))
    });
}

fn json(c: &mut Criterion) {
    bench_each(c, "json_parse", |k| {
        ok(Channel::from_json(black_box(&k.json)))
    });
    bench_each(c, "json_format", |k| black_box(&k.channel).to_json());
}

fn topic(c: &mut Criterion) {
    bench_each(c, "topic_encode", |k| black_box(&k.channel).topic());
    // The buffer lives across iterations so only the encoding is timed.
    let mut buf = [0u8; CAP];
    bench_each(c, "topic_encode_stack", move |k| {
        black_box(&k.channel)
            .encode_topic(black_box(&mut buf))
            .map(|s| s.len())
    });
    bench_each(c, "topic_decode", |k| {
        ok(Channel::from_topic(black_box(&k.topic)))
    });
    bench_each(c, "topic_validate_heapless", |k| {
        ok(ChannelBuf::<CAP>::from_topic(black_box(&k.topic)))
    });
}

criterion_group!(benches, text, json, topic);
criterion_main!(benches);
