//! The hooks around going live: `before_flip` (migrations), `after_live` and `after_rollback`
//! (notifications), each a `sh -c` command in the release's directory, bounded by
//! `hooks.timeout_secs`, its output streamed and kept.
//!
//! A hook's output goes straight to its log file, and the shell that runs it writes the exit
//! status to a file beside the log: if relman is killed meanwhile, the hook is not (no broken
//! pipe ends it half-way through a migration), and the next activation learns how it ended.
//! That activation first settles what the killed one left: it waits for a hook still running
//! (found by a marker in its environment) until that hook's own deadline, then kills what is
//! left of it, and reads its status. A hook that finished successfully is then never run again
//! for the same release; one that failed or never finished runs again, as after any failure.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use chrono::Utc;
use relman_releases::config::HooksConfig;
use relman_releases::history::Action;
use relman_releases::hooks::{Hook, HookRun, Journal};
use relman_releases::{DeployRoot, ReleaseId};
use relman_sys::process::{Group, Signal, signal_group, signal_process};

use crate::error::Result;

/// The variable that marks every process of a hook, so a later relman can find them.
const MARKER: &str = "RELMAN_HOOK_RUN";

/// The shell that runs a hook: the command (`$1`) in a shell of its own, then its exit status
/// into the status file (`$2`), even when relman is gone by then.
const WRAPPER: &str = r#"sh -c "$1"; status=$?; echo "$status" > "$2"; exit "$status""#;

/// How long SIGKILL gets to empty a hook's group.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The lines of a failed hook's output quoted in the message.
const TAIL_LINES: usize = 20;

/// What a hook is told about the activation it runs in.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    /// `RELMAN_RELEASE`: the release the hook is about (the one going live, or the one a
    /// rollback went back to).
    pub(crate) release: &'a ReleaseId,
    /// `RELMAN_PREVIOUS`: the release live before (for an automatic rollback, the one that
    /// failed).
    pub(crate) previous: Option<&'a ReleaseId>,
    /// `RELMAN_ACTION`.
    pub(crate) action: Action,
    /// Where it runs: the app's directory in `release`.
    pub(crate) dir: Utf8PathBuf,
}

/// The hooks of one activation.
#[derive(Debug)]
pub(crate) struct Hooks<'r> {
    root: &'r DeployRoot,
    config: HooksConfig,
    enabled: bool,
    /// Present when a hook is set and hooks are on: mirrors `runs` on disk.
    journal: Option<Journal>,
    runs: BTreeMap<Hook, HookRun>,
    /// What was live before this activation (or before the interrupted try it resumes).
    previous: Option<ReleaseId>,
}

impl<'r> Hooks<'r> {
    /// Settles what an earlier activation that never ended left behind, then opens this one's
    /// journal when a hook is set. `say` gets what the operator should know; the returned
    /// warnings go into the report too.
    pub(crate) fn begin(
        root: &'r DeployRoot,
        config: &HooksConfig,
        action: Action,
        from: Option<ReleaseId>,
        to: &ReleaseId,
        enabled: bool,
        say: &mut dyn FnMut(String),
    ) -> Result<(Hooks<'r>, Vec<String>)> {
        let mut warnings = Vec::new();
        let mut runs = BTreeMap::new();
        let mut previous = from.clone();
        if let Some(left) = settle(root, config, say)? {
            let done: Vec<(Hook, String)> = left
                .hooks
                .iter()
                .filter(|(_, run)| run.succeeded())
                .filter_map(|(hook, run)| Some((*hook, run.log()?.to_owned())))
                .collect();
            let started = left
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let list = done
                .iter()
                .map(|(hook, _)| hook.name())
                .collect::<Vec<_>>()
                .join(", ");
            if left.to == *to {
                if !done.is_empty() {
                    say(format!(
                        "going on with the unfinished activation of {to} started at {started}: {list} already ran successfully and is not run again"
                    ));
                }
                runs.extend(
                    done.into_iter()
                        .map(|(hook, log)| (hook, HookRun::Earlier { log })),
                );
                if previous.as_ref() == Some(to) {
                    previous = left.from;
                }
            } else if !done.is_empty() {
                warnings.push(format!(
                    "an unfinished activation of {} (started at {started}) is abandoned; its hooks that ran: {list} (output in `{}`)",
                    left.to, left.dir
                ));
            }
        }
        let journal = (config.any() && enabled).then(|| {
            let mut journal = Journal::new(action, previous.clone(), to.clone());
            journal.hooks = runs.clone();
            journal
        });
        match &journal {
            Some(journal) => journal.write(root)?,
            None => Journal::remove(root)?,
        }
        Ok((
            Hooks {
                root,
                config: config.clone(),
                enabled,
                journal,
                runs,
                previous,
            },
            warnings,
        ))
    }

    /// What was live before: `RELMAN_PREVIOUS` of `before_flip` and `after_live`.
    pub(crate) fn previous(&self) -> Option<&ReleaseId> {
        self.previous.as_ref()
    }

    /// Whether [`Hooks::run`] would start `hook`: it is set, hooks are on, and it has not run
    /// for this activation yet.
    pub(crate) fn will_run(&self, hook: Hook) -> bool {
        !hook.command(&self.config).is_empty()
            && self.enabled
            && self.journal.is_some()
            && !self.runs.contains_key(&hook)
    }

    /// Runs `hook` unless it is not set, hooks are off, or it already ran for this
    /// activation. `Err` says how it failed, with the last lines of its output.
    ///
    /// `cancel` set while it runs kills it; set before it starts (an operator who pressed
    /// Ctrl-C during the roll) it is left to finish, bounded by its timeout.
    pub(crate) fn run(
        &mut self,
        hook: Hook,
        context: &Context<'_>,
        cancel: &AtomicBool,
        output: &mut dyn FnMut(&[u8]),
    ) -> Result<(), String> {
        let command = hook.command(&self.config).to_owned();
        if command.is_empty() || self.runs.contains_key(&hook) {
            return Ok(());
        }
        if !self.enabled {
            self.runs.insert(hook, HookRun::Skipped);
            return Ok(());
        }
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        let log = journal.log(hook);
        let running = HookRun::Running {
            started_at: Utc::now(),
            log: log.clone(),
        };
        journal.hooks.insert(hook, running);
        if let Err(err) = journal.write(self.root) {
            let reason = format!("its start could not be recorded, so it was not run: {err}");
            self.record(
                hook,
                HookRun::Failed {
                    ms: 0,
                    log,
                    reason: reason.clone(),
                },
            );
            return Err(reason);
        }
        let status_file = self.root.path().join(journal.status_file(hook));
        let marker = format!("{}/{hook}", journal.dir);
        let env = environment(self.root, hook, context, &marker);
        let started = Instant::now();
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let log_path = self.root.path().join(&log);
        let ended = execute(Execution {
            command: &command,
            dir: &context.dir,
            env,
            log: &log_path,
            status_file: &status_file,
            timeout,
            cancel,
            output,
        });
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match ended {
            Ok(()) => {
                self.record(hook, HookRun::Ok { ms, log });
                Ok(())
            }
            Err(how) => {
                let tail = tail_of(&log_path, TAIL_LINES);
                self.record(
                    hook,
                    HookRun::Failed {
                        ms,
                        log: log.clone(),
                        reason: how.clone(),
                    },
                );
                let path = self.root.path().join(&log);
                Err(if tail.is_empty() {
                    format!("the {hook} hook {how} (no output; log `{path}`)")
                } else {
                    let tail: Vec<String> = tail.lines().map(|l| format!("    {l}")).collect();
                    format!(
                        "the {hook} hook {how} (log `{path}`); its last output:\n{}",
                        tail.join("\n")
                    )
                })
            }
        }
    }

    /// Notes how a hook ended, in memory and in the journal (best effort: the history entry
    /// written at the end holds it too).
    fn record(&mut self, hook: Hook, run: HookRun) {
        if let Some(journal) = &mut self.journal {
            journal.hooks.insert(hook, run.clone());
            let _ = journal.write(self.root);
        }
        self.runs.insert(hook, run);
    }

    /// What each hook did, for the history.
    pub(crate) fn runs(&self) -> &BTreeMap<Hook, HookRun> {
        &self.runs
    }

    /// Once the activation is in the history: its journal goes.
    pub(crate) fn finish(self) -> Result<()> {
        if self.journal.is_some() {
            Journal::remove(self.root)?;
        }
        Ok(())
    }
}

/// The hook's environment on top of relman's own.
fn environment(
    root: &DeployRoot,
    hook: Hook,
    context: &Context<'_>,
    marker: &str,
) -> Vec<(String, String)> {
    let action = match context.action {
        Action::Activate => "activate",
        Action::Rollback => "rollback",
        Action::AutoRollback => "auto-rollback",
    };
    // The app's own tools (`prisma`, `knex`) by name, as `npm run` finds them.
    let bin = context.dir.join("node_modules/.bin");
    let path = match std::env::var("PATH") {
        Ok(path) if !path.is_empty() => format!("{bin}:{path}"),
        _ => format!("{bin}:/usr/local/bin:/usr/bin:/bin"),
    };
    vec![
        ("RELMAN_RELEASE".into(), context.release.to_string()),
        (
            "RELMAN_PREVIOUS".into(),
            context
                .previous
                .map_or_else(String::new, ToString::to_string),
        ),
        ("RELMAN_ROOT".into(), root.path().to_string()),
        ("RELMAN_ACTION".into(), action.into()),
        ("RELMAN_HOOK".into(), hook.name().into()),
        (MARKER.into(), marker.into()),
        ("PATH".into(), path),
    ]
}

/// One hook to run.
struct Execution<'a> {
    command: &'a str,
    dir: &'a Utf8Path,
    env: Vec<(String, String)>,
    log: &'a Utf8Path,
    status_file: &'a Utf8Path,
    timeout: Duration,
    cancel: &'a AtomicBool,
    output: &'a mut dyn FnMut(&[u8]),
}

/// Runs a hook in its own process group, its output into its log (and from there to
/// `output`), until it exits, its timeout passes or it is cancelled; whatever it left in its
/// group is killed. `Err` says how it ended.
fn execute(run: Execution<'_>) -> Result<(), String> {
    let log = relman_releases::fs::open_append(run.log)
        .map_err(|e| format!("could not start: its log failed to open: {e}"))?;
    let mut reader = File::open(run.log)
        .map_err(|e| format!("could not start: its log `{}` failed to open: {e}", run.log))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("could not start: {e}"))?;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(WRAPPER)
        .arg("relman-hook")
        .arg(run.command)
        .arg(run.status_file)
        .current_dir(run.dir)
        .envs(run.env)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let mut group = Group::spawn(&mut command).map_err(|e| format!("could not start: {e}"))?;
    drop(command);
    let cancelled_before = run.cancel.load(Ordering::SeqCst);
    let deadline = Instant::now() + run.timeout;
    let mut stop = None;
    loop {
        pump(&mut reader, run.output);
        if group.leader_exited() {
            break;
        }
        if !cancelled_before && run.cancel.load(Ordering::SeqCst) {
            stop = Some("was interrupted and killed with its whole process group".to_owned());
            break;
        }
        if Instant::now() >= deadline {
            stop = Some(format!(
                "ran past its {} s timeout (`hooks.timeout_secs`) and was killed with its whole process group",
                run.timeout.as_secs()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // What the hook left running in its group goes too: it would hold the lock's activation
    // hostage and outlive it.
    let status = group.kill(KILL_GRACE);
    pump(&mut reader, run.output);
    if let Some(how) = stop {
        return Err(how);
    }
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("was killed by signal {}", status.signal().unwrap_or(0)),
        }),
        Err(stray) => Err(format!(
            "left processes {:?} of its process group {} that outlived SIGKILL: stop them by hand",
            stray.pids, stray.pgid
        )),
    }
}

/// Passes on what the hook wrote to its log since the last call.
fn pump(reader: &mut File, output: &mut dyn FnMut(&[u8])) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(n) = reader.read(&mut buffer) {
        if n == 0 {
            break;
        }
        output(&buffer[..n]);
    }
}

/// The last `lines` lines of a log (read from its last 64 KiB).
fn tail_of(path: &Utf8Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Settles the journal an activation that never ended left, if any: a hook it left running is
/// waited for until its own deadline and then killed, and how each hook ended is read from its
/// status file. Returns the settled journal, or `None` when there is none or the history
/// already holds that activation (relman stopped between recording it and removing it).
fn settle(
    root: &DeployRoot,
    config: &HooksConfig,
    say: &mut dyn FnMut(String),
) -> Result<Option<Journal>> {
    let Some(mut left) = Journal::unfinished(root)? else {
        return Ok(None);
    };
    let timeout = Duration::from_secs(config.timeout_secs);
    let running: Vec<Hook> = left
        .hooks
        .iter()
        .filter(|(_, run)| matches!(run, HookRun::Running { .. }))
        .map(|(hook, _)| *hook)
        .collect();
    for hook in running {
        let Some(HookRun::Running { started_at, log }) = left.hooks.get(&hook).cloned() else {
            continue;
        };
        let marker = format!("{}/{hook}", left.dir);
        let elapsed = (Utc::now() - started_at).to_std().unwrap_or_default();
        let deadline = Instant::now() + timeout.saturating_sub(elapsed);
        let mut announced = false;
        loop {
            let alive = relman_sys::proc::marked(MARKER, &marker);
            if alive.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for (pid, group) in alive {
                    let _ = signal_group(group, Signal::Kill);
                    let _ = signal_process(pid, Signal::Kill);
                }
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
            if !announced {
                say(format!(
                    "the {hook} hook of the unfinished activation of {} is still running (output in `{}`): waiting for it, at most until its timeout",
                    left.to,
                    root.path().join(&log)
                ));
                announced = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status_path = root.path().join(left.status_file(hook));
        let status = std::fs::read_to_string(&status_path).ok();
        let ms = std::fs::metadata(&status_path)
            .and_then(|m| m.modified())
            .ok()
            .map(chrono::DateTime::<Utc>::from)
            .and_then(|end| (end - started_at).to_std().ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let run = match status.as_deref().map(str::trim) {
            Some("0") => HookRun::Ok { ms, log },
            Some(code) => HookRun::Failed {
                ms,
                log,
                reason: format!("exited with status {code} after relman was stopped"),
            },
            None => HookRun::Failed {
                ms,
                log,
                reason: "never finished: relman was stopped while it ran, and it was killed or died before it ended".into(),
            },
        };
        say(format!(
            "the {hook} hook of the unfinished activation of {}: {}",
            left.to,
            run.describe()
        ));
        left.hooks.insert(hook, run);
    }
    Ok(Some(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, DeployRoot) {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(path.join(".relman")).unwrap();
        let root = DeployRoot::open(path).unwrap();
        (dir, root)
    }

    fn config(before_flip: &str, timeout_secs: u64) -> HooksConfig {
        HooksConfig {
            before_flip: before_flip.into(),
            timeout_secs,
            ..HooksConfig::default()
        }
    }

    fn id(raw: &str) -> ReleaseId {
        ReleaseId::parse(raw).unwrap()
    }

    /// This activation's hooks, `from` live before it.
    fn begin<'r>(
        root: &'r DeployRoot,
        config: &HooksConfig,
        from: Option<&str>,
        to: &str,
        said: &mut Vec<String>,
    ) -> (Hooks<'r>, Vec<String>) {
        Hooks::begin(
            root,
            config,
            Action::Activate,
            from.map(id),
            &id(to),
            true,
            &mut |message| said.push(message),
        )
        .unwrap()
    }

    /// Runs `before_flip` of an activation of `to` in the root's directory; what it printed,
    /// and how it ended.
    fn before_flip(hooks: &mut Hooks<'_>, to: &str) -> (String, Result<(), String>) {
        let to = id(to);
        let context = Context {
            release: &to,
            previous: None,
            action: Action::Activate,
            dir: hooks.root.path().to_owned(),
        };
        let mut seen = Vec::new();
        let ended = hooks.run(
            Hook::BeforeFlip,
            &context,
            &AtomicBool::new(false),
            &mut |bytes| seen.extend_from_slice(bytes),
        );
        (String::from_utf8_lossy(&seen).into_owned(), ended)
    }

    #[test]
    fn a_hook_sees_its_context_and_its_output_is_streamed_and_kept() {
        let (_dir, root) = root();
        let config = config(
            "echo \"$RELMAN_HOOK $RELMAN_ACTION $RELMAN_RELEASE [$RELMAN_PREVIOUS]\"",
            10,
        );
        let (mut hooks, _) = begin(&root, &config, None, "r2", &mut Vec::new());
        let (seen, ended) = before_flip(&mut hooks, "r2");
        ended.unwrap();
        assert_eq!(seen, "before_flip activate r2 []\n");
        let HookRun::Ok { log, .. } = &hooks.runs()[&Hook::BeforeFlip] else {
            panic!("{:?}", hooks.runs());
        };
        assert_eq!(
            std::fs::read_to_string(root.path().join(log)).unwrap(),
            "before_flip activate r2 []\n"
        );
        let journal = Journal::read(&root).unwrap().unwrap();
        assert!(journal.hooks[&Hook::BeforeFlip].succeeded());
        hooks.finish().unwrap();
        assert_eq!(Journal::read(&root).unwrap(), None);
    }

    #[test]
    fn a_failing_hook_says_how_with_its_last_lines() {
        let (_dir, root) = root();
        let config = config(
            "echo migrating; echo 'relation already exists' >&2; exit 7",
            10,
        );
        let (mut hooks, _) = begin(&root, &config, None, "r2", &mut Vec::new());
        let err = before_flip(&mut hooks, "r2").1.unwrap_err();
        assert!(
            err.starts_with("the before_flip hook exited with status 7 (log `"),
            "{err}"
        );
        assert!(
            err.ends_with("; its last output:\n    migrating\n    relation already exists"),
            "{err}"
        );
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed_with_everything_it_started() {
        let (dir, root) = root();
        let pid_file = dir.path().join("child.pid");
        let config = config(
            &format!("sleep 60 & echo $! > {}; wait", pid_file.display()),
            1,
        );
        let (mut hooks, _) = begin(&root, &config, None, "r2", &mut Vec::new());
        let started = Instant::now();
        let err = before_flip(&mut hooks, "r2").1.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.contains("ran past its 1 s timeout"), "{err}");
        // The child it started in the background carried the hook's marker: none is left.
        assert!(pid_file.exists(), "the hook started its child");
        let marker = format!("{}/before_flip", hooks.journal.as_ref().unwrap().dir);
        assert_eq!(
            relman_sys::proc::marked(MARKER, &marker),
            [],
            "the hook's child survived its timeout"
        );
    }

    #[test]
    fn a_hook_that_finished_is_carried_over_to_a_retry_of_the_same_release_only() {
        let (_dir, root) = root();
        let config = config("true", 10);
        let (mut hooks, _) = begin(&root, &config, Some("r1"), "r2", &mut Vec::new());
        before_flip(&mut hooks, "r2").1.unwrap();
        // relman stops here: the journal stays.
        drop(hooks);
        let mut said = Vec::new();
        let (retry, warnings) = begin(&root, &config, Some("r2"), "r2", &mut said);
        assert!(warnings.is_empty());
        assert!(matches!(
            retry.runs()[&Hook::BeforeFlip],
            HookRun::Earlier { .. }
        ));
        assert_eq!(
            retry.previous(),
            Some(&id("r1")),
            "the retry's previous is the first try's"
        );
        assert!(
            said[0].contains("before_flip already ran successfully"),
            "{said:?}"
        );
        drop(retry);
        let (other, warnings) = begin(&root, &config, Some("r2"), "r3", &mut Vec::new());
        assert!(other.runs().is_empty());
        assert!(warnings[0].contains("activation of r2"), "{warnings:?}");
    }
}
