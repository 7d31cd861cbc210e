//! Differential tests against the kubelet's own Go code (issue #17).
//!
//! Generated cases go to our code and to an oracle built from the Kubernetes release of
//! tests/kubernetes.sh (tests/parity/oracle): distribution/reference's `ParseNormalizedNamed`
//! and the kubelet's `ParseImageName`, `MakeDockerKeyring` and `BasicDockerKeyring`, on the Go
//! toolchain's `encoding/json`, `net/url` and `path/filepath`. The first difference is shrunk to
//! a minimal case and printed as a row of the module's test table, and the run fails.
//!
//! Environment: `PARITY_CASES` (cases per target, default 20,000), `PARITY_TARGETS` (a comma
//! list of target names, default all), `PARITY_SEED` (to replay a run; each run prints its own),
//! `PULLSECRET_INJECTOR_PARITY_ORACLE` (a prebuilt oracle instead of building one). See
//! docs/parity.md.

use std::cell::RefCell;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestCaseError, TestError, TestRunner};

#[path = "../grammar/mod.rs"]
mod grammar;

mod cases;
mod oracle;
mod targets;

use oracle::Oracle;
use targets::{Dockerconfig, IndexKey, Lookup, NamespaceOfSecrets, Reference, Target, UrlsMatch};

const DEFAULT_CASES: u32 = 20_000;

struct Settings {
    cases: u32,
    targets: Option<Vec<String>>,
    seed: u64,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let number = |name: &str| -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(text) if !text.trim().is_empty() => text
                    .trim()
                    .replace('_', "")
                    .parse()
                    .map(Some)
                    .map_err(|e| format!("{name}={text:?}: {e}")),
                _ => Ok(None),
            }
        };
        let cases = match number("PARITY_CASES")? {
            Some(cases) => u32::try_from(cases).map_err(|_| "PARITY_CASES is too large")?,
            None => DEFAULT_CASES,
        };
        let seed = match number("PARITY_SEED")? {
            Some(seed) => seed,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64),
        };
        let targets = std::env::var("PARITY_TARGETS")
            .ok()
            .filter(|list| !list.trim().is_empty())
            .map(|list| list.split(',').map(|name| name.trim().to_owned()).collect());
        Ok(Settings {
            cases,
            targets,
            seed,
        })
    }

    fn wants(&self, name: &str) -> bool {
        self.targets
            .as_ref()
            .is_none_or(|names| names.iter().any(|wanted| wanted == name))
    }
}

const TARGET_NAMES: &[&str] = &[
    Reference::NAME,
    Dockerconfig::NAME,
    IndexKey::NAME,
    UrlsMatch::NAME,
    Lookup::NAME,
    NamespaceOfSecrets::NAME,
];

fn main() -> ExitCode {
    match parity() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn parity() -> Result<(), String> {
    let settings = Settings::from_env()?;
    if let Some(unknown) = settings
        .targets
        .iter()
        .flatten()
        .find(|name| !TARGET_NAMES.contains(&name.as_str()))
    {
        return Err(format!(
            "PARITY_TARGETS: no target {unknown:?} (targets: {})",
            TARGET_NAMES.join(", ")
        ));
    }
    let mut oracle = Oracle::start()?;
    let about = oracle.about();
    println!(
        "parity: our code against the kubelet of Kubernetes {} on {} (distribution/reference {}), \
         {} cases per target, PARITY_SEED={}",
        about.kubernetes, about.go, about.reference, settings.cases, settings.seed
    );
    let oracle = RefCell::new(oracle);
    let mut total = Duration::ZERO;
    let mut count = 0u64;
    for (index, run) in [
        run::<Reference> as Runner,
        run::<Dockerconfig>,
        run::<IndexKey>,
        run::<UrlsMatch>,
        run::<Lookup>,
        run::<NamespaceOfSecrets>,
    ]
    .into_iter()
    .enumerate()
    {
        if !settings.wants(TARGET_NAMES[index]) {
            continue;
        }
        let seed = settings.seed.wrapping_add(index as u64);
        total += run(&oracle, &settings, seed)?;
        count += u64::from(settings.cases);
    }
    println!(
        "parity: {count} cases in {:.1}s ({:.0} cases/s), no difference",
        total.as_secs_f64(),
        count as f64 / total.as_secs_f64().max(1e-9)
    );
    Ok(())
}

type Runner = fn(&RefCell<Oracle>, &Settings, u64) -> Result<Duration, String>;

/// Runs one target's cases; on a difference, reports the shrunk case and its table row.
fn run<T: Target>(
    oracle: &RefCell<Oracle>,
    settings: &Settings,
    seed: u64,
) -> Result<Duration, String> {
    let config = Config {
        cases: settings.cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        // ChaCha, the default, costs most of a case in an unoptimized test build.
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let result = runner.run(&T::cases(), |case| {
        match T::compare(&mut oracle.borrow_mut(), &case) {
            None => Ok(()),
            Some(difference) => Err(TestCaseError::fail(format!(
                "ours: {}, Go: {}",
                difference.ours, difference.go
            ))),
        }
    });
    let elapsed = started.elapsed();
    match result {
        Ok(()) => {
            println!(
                "parity: {:<12} {} cases in {:.1}s ({:.0} cases/s), no difference",
                T::NAME,
                settings.cases,
                elapsed.as_secs_f64(),
                f64::from(settings.cases) / elapsed.as_secs_f64().max(1e-9)
            );
            Ok(elapsed)
        }
        Err(TestError::Abort(reason)) => Err(format!("parity: {}: aborted: {reason}", T::NAME)),
        Err(TestError::Fail(reason, minimal)) => {
            let replay = format!(
                "PARITY_SEED={} PARITY_TARGETS={} PARITY_CASES={} make parity",
                settings.seed,
                T::NAME,
                settings.cases
            );
            let Some(difference) = T::compare(&mut oracle.borrow_mut(), &minimal) else {
                return Err(format!(
                    "parity: {}: {reason}\n  case: {minimal:?}\n  replay: {replay}",
                    T::NAME
                ));
            };
            Err(format!(
                "parity: {}: our code and the kubelet's differ. Minimal case:\n  \
                 case: {minimal:?}\n  ours: {}\n  Go:   {}\n\
                 Pin Go's answer as a row of {}, then fix our code:\n\n    {}\n\n\
                 Replay: {replay}",
                T::NAME,
                difference.ours,
                difference.go,
                T::TABLE,
                difference.row
            ))
        }
    }
}
