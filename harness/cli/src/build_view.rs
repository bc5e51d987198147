//! How a kernel build looks on the terminal: one line rewritten in place on a terminal, and on
//! anything else (a CI log) a line per stage and per tenth of the compile.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use modharness_images::kbuild::Stage;

/// What was shown last, so a log gets a line only when something changed.
static SHOWN: Mutex<Option<(String, u32)>> = Mutex::new(None);

/// Show `stage` of the build of `spec`.
pub fn show(spec: &str, stage: &Stage, elapsed: Duration) {
    let text = line(spec, stage, elapsed);
    let mut stderr = std::io::stderr().lock();
    if stderr.is_terminal() {
        let end = if matches!(stage, Stage::Installing) {
            "\n"
        } else {
            ""
        };
        let _ = write!(stderr, "\r\x1b[2K{text}{end}");
        let _ = stderr.flush();
        return;
    }
    let key = (stage_name(stage).to_string(), tenth(stage));
    let mut shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    if shown.as_ref() != Some(&key) {
        let _ = writeln!(stderr, "{text}");
        *shown = Some(key);
    }
}

fn stage_name(stage: &Stage) -> &'static str {
    match stage {
        Stage::Fetching { .. } => "fetching",
        Stage::Unpacking => "unpacking",
        Stage::Configuring => "configuring",
        Stage::Compiling { .. } => "compiling",
        Stage::Installing => "installing",
    }
}

fn percent(done: u32, expected: u32) -> u32 {
    // An estimate can be low; a build is not done until make says so.
    (u64::from(done) * 100 / u64::from(expected.max(1))).min(99) as u32
}

fn tenth(stage: &Stage) -> u32 {
    match stage {
        Stage::Compiling {
            done,
            expected: Some(expected),
        } => percent(*done, *expected) / 10,
        Stage::Compiling {
            done,
            expected: None,
        } => done / 500,
        _ => 0,
    }
}

/// The text for `stage`: `kernel debug:latest: compiling 1,234/~3,100 objects (39%), 10m12s`.
pub fn line(spec: &str, stage: &Stage, elapsed: Duration) -> String {
    let what = match stage {
        Stage::Fetching { package } => format!("fetching {package}"),
        Stage::Compiling {
            done,
            expected: Some(expected),
        } => format!(
            "compiling {done}/~{expected} objects ({}%)",
            percent(*done, *expected)
        ),
        Stage::Compiling {
            done,
            expected: None,
        } => format!("compiling: {done} objects"),
        other => stage_name(other).to_string(),
    };
    let secs = elapsed.as_secs();
    format!(
        "kernel {spec}: building, {what}, {}m{:02}s",
        secs / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compile_line_shows_a_percentage_that_stops_short_of_done() {
        let stage = Stage::Compiling {
            done: 1234,
            expected: Some(3100),
        };
        assert_eq!(
            line("debug:latest", &stage, Duration::from_secs(612)),
            "kernel debug:latest: building, compiling 1234/~3100 objects (39%), 10m12s"
        );
        let over = Stage::Compiling {
            done: 3300,
            expected: Some(3100),
        };
        assert!(line("d", &over, Duration::ZERO).contains("(99%)"));
        let unknown = Stage::Compiling {
            done: 10,
            expected: None,
        };
        assert!(line("d", &unknown, Duration::ZERO).contains("compiling: 10 objects"));
    }

    #[test]
    fn a_log_gets_a_line_per_tenth_of_the_compile() {
        let at = |done| {
            tenth(&Stage::Compiling {
                done,
                expected: Some(1000),
            })
        };
        assert_eq!((at(0), at(99), at(100), at(950), at(5000)), (0, 0, 1, 9, 9));
    }
}
