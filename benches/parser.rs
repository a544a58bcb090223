//! Reply parser throughput: the shapes a busy campaign polls most.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ivr_campaign::gateway::protocol::{parse_call_reply, parse_status_reply};
use std::hint::black_box;

fn bodies() -> Vec<(&'static str, String)> {
    let retry = "0^null^retry^2008 3 21 13 2^2008 3 21 13 2^No answer. Try in 1 minute ^^^^^";
    let made =
        "0^null^made^2008 3 21 13 3^2008 3 21 13 2^Call succeeded^^^AttendMeeting=1|Confirm=2^^";
    vec![
        ("pending", "\r\n\r\n[]\r\n".to_string()),
        ("made", format!("\r\n\r\n[{made}\r\n]\r\n")),
        (
            "retry_x4_then_made",
            format!("\r\n\r\n[{retry}{retry}{retry}{retry}{made}\r\n]\r\n"),
        ),
        (
            "no_such_record",
            "ERROR: no such call record: 1208431448217\r\n".to_string(),
        ),
    ]
}

fn status(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_status_reply");
    for (name, body) in bodies() {
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| b.iter(|| parse_status_reply(black_box(&body))));
    }
    g.finish();
    let page = "\r\n\r\n<html><head><title>Voicent Gateway</title></head><body>\r\nYour call is scheduled for Mon Apr 21 11:51:18 BST 2008. [ReqId=1208775078314]\r\n</body></html>\r\n";
    c.bench_function("parse_call_reply/page", |b| {
        b.iter(|| parse_call_reply(black_box(page)))
    });
}

criterion_group!(benches, status);
criterion_main!(benches);
