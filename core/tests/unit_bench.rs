//! Parser and hash throughput, printed (never asserted). Run with
//! `cargo test -p flt-core --release --test unit_bench -- --ignored --nocapture`.

use flt_core::unit::{Requirements, UnitFile, validate_options};

/// A realistic unit: comments, a continuation, X-Fleet options.
fn sample_unit(i: usize) -> String {
    format!(
        "# sample {i}\n[Unit]\nDescription=Sample unit {i}\nAfter=docker.service\n\n[Service]\n\
         ExecStartPre=-/usr/bin/docker rm -f web{i}\nExecStart=/usr/bin/docker run --name web{i} \\\n  \
         -p 80:80 nginx\nExecStop=/usr/bin/docker stop web{i}\n\n[X-Fleet]\nConflicts=web@*.service\n\
         MachineMetadata=\"region=us-east\" \"disk=ssd\"\n"
    )
}

#[test]
#[ignore = "benchmark: prints figures"]
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn parse_and_hash_throughput() {
    let texts: Vec<String> = (0..2000).map(sample_unit).collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let rounds = 20;

    let start = std::time::Instant::now();
    let mut options = 0;
    for _ in 0..rounds {
        for text in &texts {
            options += UnitFile::parse(text)
                .expect("sample parses")
                .options()
                .len();
        }
    }
    let parse = start.elapsed().as_secs_f64();

    let units: Vec<UnitFile> = texts
        .iter()
        .map(|t| UnitFile::parse(t).expect("parses"))
        .collect();
    let start = std::time::Instant::now();
    let mut zero = 0;
    for _ in 0..rounds {
        for unit in &units {
            zero += usize::from(unit.hash().0[0] == 0);
        }
    }
    let hash = start.elapsed().as_secs_f64();

    let start = std::time::Instant::now();
    let mut ok = 0;
    for _ in 0..rounds {
        for (i, unit) in units.iter().enumerate() {
            let req = Requirements::from_unit(unit, &format!("web@{i}.service"));
            ok += usize::from(validate_options(unit).is_ok() && !req.conflicts.is_empty());
        }
    }
    let validate = start.elapsed().as_secs_f64();

    let n = (rounds * texts.len()) as f64;
    let mb = (rounds * bytes) as f64 / 1e6;
    println!(
        "{} units x {rounds} rounds, {bytes} bytes per round ({options} options, {zero}, {ok})",
        texts.len()
    );
    println!(
        "parse:    {:>9.0} units/s  {:>6.1} MB/s",
        n / parse,
        mb / parse
    );
    println!("hash:     {:>9.0} units/s", n / hash);
    println!(
        "validate: {:>9.0} units/s (from_unit + validate_options, includes a reparse)",
        n / validate
    );
}
