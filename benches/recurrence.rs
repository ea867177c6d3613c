//! Benchmarks recurrence expansion, which resync runs for every recurring master of every
//! room over the whole booking window.
//!
//! Throughput is counted in produced occurrences.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use booking_sync::recurrence::{expand, Pattern, RangeEnd, Recurrence, SeriesTiming};

fn utc(year: i32, month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A Monday, Wednesday and Friday 09:00 Berlin meeting, started years before the window.
fn weekly_berlin() -> (Recurrence, SeriesTiming) {
    let start_date = NaiveDate::from_ymd_opt(2020, 1, 6).unwrap_or(NaiveDate::MIN);
    let rule = Recurrence {
        pattern: Pattern::Weekly {
            interval: 1,
            days: vec![Weekday::Mon, Weekday::Wed, Weekday::Fri],
            first_day_of_week: Weekday::Mon,
        },
        start_date,
        end: RangeEnd::NoEnd,
    };
    let start = utc(2020, 1, 6, 8);
    let timing = SeriesTiming {
        start,
        end: start + Duration::minutes(45),
        is_all_day: false,
        time_zone: Tz::Europe__Berlin,
    };
    (rule, timing)
}

fn bench_expand(criterion: &mut Criterion) {
    let (rule, timing) = weekly_berlin();
    let (from, to) = (utc(2026, 1, 1, 0), utc(2027, 1, 1, 0));
    let produced = expand(&rule, &timing, from, to).map_or(0, |instances| instances.len());

    let mut group = criterion.benchmark_group("recurrence");
    group.throughput(Throughput::Elements(produced as u64));
    group.bench_function("expand_weekly_berlin_one_year", |bencher| {
        bencher.iter(|| expand(black_box(&rule), black_box(&timing), from, to))
    });
    group.finish();
}

criterion_group!(benches, bench_expand);
criterion_main!(benches);
