//! The console transcripts of the docs, run for real and compared with what they show.
//!
//! A transcript is a ```` ```console ```` block: `$ COMMAND` lines, each followed by what it
//! printed (stdout and stderr together, as a terminal shows them). [`replay`] runs every command
//! through `sh -c` in a scratch setting (the docs' paths and port swapped for the test's own),
//! and [`assert_matches`] holds the block to the output: line for line, with every run of
//! digits read as one number (IDs, pids, durations, ports and sizes differ from run to run),
//! every run of spaces as one (columns padded to those numbers) and a line `…` standing for
//! any number of lines (a build's own output, say). A command
//! that ends in `# exit N` must exit with N, any other with 0.
//!
//! `RELMAN_BLESS_DOCS=1` turns [`replay`] around: each step that no longer matches is rewritten
//! with what it printed (one whose shown lines hold a `…` keeps them, and is still checked), so
//! a change to relman's output is one test run away from docs that show it. `=all` rewrites the
//! steps that still match too: numbers are read as any number, so a setting shown in one
//! (a timeout, a count) can go stale without failing.

use std::path::Path;
use std::process::{Command, Stdio};

/// One command of a transcript and what it printed.
#[derive(Debug)]
pub struct Step {
    /// The command, as the docs write it.
    pub command: String,
    /// The lines the docs show under it.
    pub shown: Vec<String>,
}

/// The ```` ```console ```` block of `file` (relative to the repository) whose first command
/// contains `marker`, without the indentation of the list item it may sit in.
pub fn block(file: &str, marker: &str) -> Vec<Step> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```console" {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| l.trim() != "```")
            .map(|l| l.get(indent..).unwrap_or(""))
            .collect();
        if !ours(&body, marker) {
            continue;
        }
        let mut steps: Vec<Step> = Vec::new();
        for line in body {
            match line.strip_prefix("$ ") {
                Some(command) => steps.push(Step {
                    command: command.to_owned(),
                    shown: Vec::new(),
                }),
                None => steps
                    .last_mut()
                    .expect("a block starts with a command")
                    .shown
                    .push(line.to_owned()),
            }
        }
        return steps;
    }
    panic!("{file} has no console block starting with a command containing {marker:?}");
}

/// The docs' names and the test's: each `from` is replaced by its `to` in every command, and
/// each `to` by its `from` in what the commands print.
pub type Swaps<'a> = &'a [(&'a str, String)];

impl Step {
    /// The exit code the docs give the command: `# exit N` at its end, else 0.
    pub fn expected_code(&self) -> i32 {
        self.command
            .rsplit_once("# exit ")
            .and_then(|(_, code)| code.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Runs `step`'s command with `sh -c` (after `swaps`), `env` added, stdout and stderr into one
/// stream as a terminal shows them. Returns the exit code and the output, swapped back.
pub fn run(step: &Step, swaps: Swaps<'_>, env: &[(String, String)]) -> (i32, String) {
    let mut command = step.command.clone();
    for (from, to) in swaps {
        command = command.replace(from, to);
    }
    let out = tempfile::tempfile().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out.try_clone().unwrap())
        .status()
        .unwrap();
    let mut out = out;
    use std::io::{Read, Seek};
    out.rewind().unwrap();
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    for (from, to) in swaps {
        text = text.replace(to.as_str(), from);
    }
    (status.code().unwrap_or(-1), text)
}

/// Replays the block of `file` whose first command contains `marker` (see [`run`]), each step
/// held to its exit code and output; or, with `RELMAN_BLESS_DOCS=1`, rewrites the block with
/// what the commands printed.
pub fn replay(file: &str, marker: &str, swaps: Swaps<'_>, env: &[(String, String)]) {
    replay_with(file, marker, swaps, env, &mut |_| {});
}

/// [`replay`], with `before` called ahead of each step (to set up what its comment says).
// Blessing rewrites a doc in the developer's tree: a plain write, reviewed in the diff.
#[allow(clippy::disallowed_methods)]
pub fn replay_with(
    file: &str,
    marker: &str,
    swaps: Swaps<'_>,
    env: &[(String, String)],
    before: &mut dyn FnMut(&Step),
) {
    let steps = block(file, marker);
    let bless_mode = std::env::var("RELMAN_BLESS_DOCS").unwrap_or_default();
    let bless = bless_mode == "1" || bless_mode == "all";
    let mut body = Vec::new();
    for step in &steps {
        before(step);
        let (code, output) = run(step, swaps, env);
        if bless && code != step.expected_code() {
            let command = match step.command.rsplit_once("# exit ") {
                Some((command, _)) => command.trim_end(),
                None => step.command.as_str(),
            };
            body.push(match code {
                0 => format!("$ {command}"),
                code => format!("$ {command}   # exit {code}"),
            });
        } else {
            assert_eq!(code, step.expected_code(), "$ {}\n{output}", step.command);
            body.push(format!("$ {}", step.command));
        }
        let keep = step.shown.iter().any(|l| l.trim() == "…")
            || (bless_mode != "all" && shows(step, &output));
        if bless && !keep {
            body.extend(output.lines().map(|l| l.trim_end().to_owned()));
        } else {
            assert_matches(step, &output);
            body.extend(step.shown.iter().cloned());
        }
    }
    if bless {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = Vec::new();
        let mut lines = text.lines();
        let mut done = false;
        while let Some(line) = lines.next() {
            out.push(line.to_owned());
            if done || line.trim() != "```console" {
                continue;
            }
            let mut old = Vec::new();
            let mut fence = None;
            for inner in lines.by_ref() {
                if inner.trim() == "```" {
                    fence = Some(inner);
                    break;
                }
                old.push(inner);
            }
            let indent = " ".repeat(line.len() - line.trim_start().len());
            let unindented: Vec<&str> = old
                .iter()
                .map(|l| l.get(indent.len()..).unwrap_or(""))
                .collect();
            if ours(&unindented, marker) {
                out.extend(body.iter().map(|l| {
                    if l.is_empty() {
                        String::new()
                    } else {
                        format!("{indent}{l}")
                    }
                }));
                done = true;
            } else {
                out.extend(old.iter().map(|l| (*l).to_owned()));
            }
            out.extend(fence.map(str::to_owned));
        }
        std::fs::write(&path, out.join("\n") + "\n").unwrap();
    }
}

/// Whether a block's body starts with a command that contains `marker`.
fn ours(body: &[&str], marker: &str) -> bool {
    body.first()
        .is_some_and(|first| first.starts_with("$ ") && first.contains(marker))
}

/// Every run of digits as `N`, every hex word of 7 or more characters (a commit) as `N` too,
/// and every run of spaces as one: what may differ between two real runs.
fn normalised(line: &str) -> String {
    let line = line.trim_end();
    let mut words = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        // A word of ASCII letters and digits, or else one character.
        let end = match rest.find(|c: char| !c.is_ascii_alphanumeric()) {
            Some(0) => rest.chars().next().map_or(1, char::len_utf8),
            Some(end) => end,
            None => rest.len(),
        };
        let (word, tail) = rest.split_at(end);
        let hex = word.len() >= 7
            && word
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && word.bytes().any(|b| b.is_ascii_alphabetic());
        words.push_str(if hex { "0" } else { word });
        rest = tail;
    }
    let mut out = String::with_capacity(words.len());
    let mut in_number = false;
    for c in words.chars() {
        // Columns are padded to their widest value, which differs from run to run too.
        if c == ' ' && out.ends_with(' ') {
            continue;
        }
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// Whether `output` is what `step` shows, as the module says.
fn shows(step: &Step, output: &str) -> bool {
    let actual: Vec<String> = output.lines().map(normalised).collect();
    let shown: Vec<String> = step.shown.iter().map(|l| normalised(l)).collect();
    matches(&shown, &actual)
}

/// Fails unless `output` is what `step` shows.
pub fn assert_matches(step: &Step, output: &str) {
    if !shows(step, output) {
        panic!(
            "the docs' transcript of `$ {}` no longer matches a real run\n--- the docs show ---\n{}\n--- the run printed ---\n{}",
            step.command,
            step.shown.join("\n"),
            output
        );
    }
}

/// `shown` against `actual`, `…` matching any number of lines.
fn matches(shown: &[String], actual: &[String]) -> bool {
    match shown.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "…" => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line == first && matches(rest, more)),
    }
}

#[test]
fn matching_reads_digits_as_numbers_and_an_ellipsis_as_any_lines() {
    let lines = |text: &str| text.lines().map(normalised).collect::<Vec<_>>();
    assert!(matches(
        &lines("building release 20261129091432\n…\nsealed in 12 ms"),
        &lines("building release 20261130000000\n> next build\nok\nsealed in 7 ms"),
    ));
    assert!(matches(&lines("a\n…"), &lines("a")));
    assert!(!matches(&lines("a\nb"), &lines("a\nc")));
    assert!(!matches(&lines("a"), &lines("a\nb")));
    assert!(matches(
        &lines("a  518f5a5a67  336.0 MiB"),
        &lines("a  0c1d2e3f40  335.9 MiB")
    ));
    assert!(!matches(&lines("deploy"), &lines("deploys")));
    assert!(matches(
        &lines("worker 0  restarts 3    release a"),
        &lines("worker 0  restarts 21   release a")
    ));
}

/// The string literals of a Rust source, in order (enough of Rust's syntax for the tests').
fn string_literals(source: &str) -> Vec<String> {
    let mut literals = Vec::new();
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        let raw_hashes = (c == 'r').then(|| {
            let ahead = chars.clone();
            let hashes = ahead.clone().take_while(|&c| c == '#').count();
            (ahead.clone().nth(hashes) == Some('"')).then_some(hashes)
        });
        if let Some(Some(hashes)) = raw_hashes {
            // `r#"…"#`: up to a quote followed by as many hashes.
            chars.nth(hashes);
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let rest = chars.as_str();
            let end = rest.find(&close).unwrap_or(rest.len());
            literals.push(rest[..end].to_owned());
            chars = rest[(end + close.len()).min(rest.len())..].chars();
        } else if c == '/' && chars.clone().next() == Some('/') {
            // A comment runs to the end of the line.
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
        } else if c == '\'' {
            // A char literal (`'"'`), or a lifetime: skip what a char literal would hold.
            let mut ahead = chars.clone();
            let first = ahead.next();
            let second = if first == Some('\\') {
                ahead.nth(1)
            } else {
                ahead.next()
            };
            if second == Some('\'') {
                chars = ahead;
            }
        } else if c == '"' {
            let mut literal = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => literal.extend(chars.next()),
                    '"' => break,
                    c => literal.push(c),
                }
            }
            literals.push(literal);
        }
    }
    literals
}

/// The first commands of every console block of `file`, in order.
fn first_commands(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut firsts = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```console" {
            let first = lines.next().unwrap_or("").trim_start();
            firsts.push(first.to_owned());
            lines
                .by_ref()
                .take_while(|l| l.trim() != "```")
                .for_each(drop);
        }
    }
    firsts
}

/// A console block is a promise that its output is real: every one in the docs is replayed
/// by some test (`block`, `replay` or `replay_with` naming its file and a marker that selects
/// it), so a new one that is not fails here.
#[test]
fn every_console_block_of_the_docs_is_replayed() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut literals = Vec::new();
    for source in ["tests/it/e2e.rs", "tests/it/e2e/docs.rs"] {
        literals.extend(string_literals(
            &std::fs::read_to_string(repo.join(source)).unwrap(),
        ));
    }
    let mut files: Vec<String> = vec!["README.md".into()];
    for entry in std::fs::read_dir(repo.join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    let mut missing = Vec::new();
    for file in &files {
        let firsts = first_commands(file);
        let markers: Vec<&str> = literals
            .windows(2)
            .filter(|pair| pair[0] == *file)
            .map(|pair| pair[1].as_str())
            .collect();
        for first in &firsts {
            // The block a marker selects is the first whose first command contains it.
            let replayed = markers.iter().any(|marker| {
                first.starts_with("$ ")
                    && firsts
                        .iter()
                        .find(|f| f.starts_with("$ ") && f.contains(marker))
                        == Some(first)
            });
            if !replayed {
                missing.push(format!("{file}: {first}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "console blocks no test replays (replay them, or make them ```sh if they show no output):\n{}",
        missing.join("\n")
    );
}
