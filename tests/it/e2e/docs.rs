//! The console blocks of the reference and the guide that show relman at work on a running
//! app, replayed on one deploy root set up the way the reference describes it
//! (`transcript::replay`): the fixture app from `/srv/src/web`, served on port 3100 by a real
//! PM2 cluster of two, releases that go live and releases that must not.
//! `RELMAN_BLESS_DOCS=1` rewrites the blocks with what this run printed.

use super::*;

/// The root of the reference's examples, as its section 1 describes it.
const CONFIG: &str = r#"[source]
path = "/srv/src/web"

[build]
install = "npm ci"
expect = ["build/BUILD_ID"]

[shared]
paths = [".env.production", "public/uploads"]

[pm2]
app = "web"
timeout_secs = 60

[preflight]
command = "node server.js"
url = "http://127.0.0.1:{port}/health"
timeout_secs = 5

[verify]
url = "http://127.0.0.1:3100/health"
body_contains = "\"release\":\"{release}\""
attempts = 10
interval_ms = 300
routes = ["/"]
"#;

/// The docs' names for what the test makes its own.
struct Docs {
    deploy: Deploy,
    source: PathBuf,
    /// The guide's `/srv/web-bad`: a root whose app was started by hand, the wrong way.
    bad_root: PathBuf,
    bad_port: u16,
    env: Vec<(String, String)>,
}

impl Docs {
    fn swaps(&self) -> [(&'static str, String); 7] {
        [
            ("/srv/web-bad", self.bad_root.display().to_string()),
            ("/srv/web2", self.second_root().display().to_string()),
            ("3199", self.bad_port.to_string()),
            ("/srv/src/web", self.source.display().to_string()),
            ("/srv/web", self.deploy.root.display().to_string()),
            (
                "/home/deploy/.pm2",
                self.deploy.pm2.home.display().to_string(),
            ),
            ("3100", self.deploy.port.to_string()),
        ]
    }

    fn replay(&self, file: &str, marker: &str) {
        transcript::replay(file, marker, &self.swaps(), &self.env);
    }

    /// relman.toml: `text` with the docs' names swapped for the test's.
    fn config(&self, text: &str) {
        let mut text = text.to_owned();
        for (from, to) in self.swaps() {
            text = text.replace(from, &to);
        }
        std::fs::write(self.deploy.root.join("relman.toml"), text).unwrap();
    }

    /// The guide's `/srv/web2`: a second deploy root standing in for another host.
    fn second_root(&self) -> PathBuf {
        self.deploy.root.parent().unwrap().join("web2")
    }

    /// The source's variant (`fixtures/node-app/README.md`).
    fn variant(&self, variant: &str) {
        std::fs::write(self.source.join("VARIANT"), variant).unwrap();
    }
}

#[test]
fn the_reference_and_guide_transcripts_are_what_relman_prints() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::uninitialised(pm2, "web");
    let source = deploy.root.parent().unwrap().join("src");
    copy_dir(&Path::new(REPO).join("fixtures/node-app"), &source);
    let mut env = deploy.env();
    env.push(("RELMAN_ROOT".into(), deploy.root.display().to_string()));
    env.push(("npm_config_update_notifier".into(), "false".into()));
    let bad_root = deploy.root.parent().unwrap().join("web-bad");
    let docs = Docs {
        deploy,
        source,
        bad_root,
        bad_port: free_port(),
        env,
    };
    let deploy = &docs.deploy;

    docs.replay("docs/guide.md", "relman init --root /srv/web");
    docs.config(CONFIG);
    docs.variant("healthy");
    // The shared paths are missing; the guide's block creates them.
    docs.replay("docs/guide.md", "relman build   # exit 2");
    docs.replay("docs/reference.md", "relman build");
    docs.variant("build-fail");
    docs.replay("docs/reference.md", "relman build   # exit 1");
    docs.variant("healthy");

    // The first activation starts the app from the ecosystem file `init --app` writes (the
    // rest of what it writes, the config, is kept as it is).
    let port = deploy.port.to_string();
    let source = docs.source.to_str().unwrap();
    deploy
        .relman(&["init", "--app", "web", "--port", &port, "--source", source])
        .success();
    docs.replay("docs/guide.md", "relman deploy");
    deploy.build("20261129064632", "healthy");
    docs.replay("docs/reference.md", "relman activate 20261129064632");
    docs.replay("docs/guide.md", "readlink /srv/web/current/.env.production");
    // A request in flight through a reload completes (the guide's test of graceful shutdown).
    docs.replay("docs/guide.md", "(curl -s \"http://127.0.0.1:3100/slow");

    // Without a preflight and with three attempts, as the reference says.
    deploy.build("sick", "unhealthy");
    let sick: String = CONFIG
        .lines()
        .filter(|l| {
            !l.starts_with("command =") && !l.starts_with("url = \"http://127.0.0.1:{port}")
        })
        .map(|l| {
            if l.starts_with("attempts =") {
                "attempts = 3"
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    docs.config(&sick);
    docs.replay("docs/reference.md", "relman activate sick");
    docs.config(CONFIG);

    deploy.build("silent", "hang-under-pm2");
    docs.replay("docs/reference.md", "relman activate silent");
    deploy.build("broken-home", "home-500");
    docs.replay("docs/reference.md", "relman activate broken-home");
    deploy.assert_live("20261129064632");

    docs.replay("docs/reference.md", "relman list");
    docs.replay("docs/reference.md", "relman status");
    docs.replay("docs/reference.md", "relman history");
    docs.replay("docs/reference.md", "relman probe");
    docs.replay("docs/reference.md", "relman prune --keep 2 --dry-run");
    docs.replay("docs/guide.md", "relman doctor");
    docs.replay("docs/guide.md", "PM2_HOME=/srv/pm2-none relman doctor");

    // A release edited in place after its seal.
    deploy.build("b", "healthy");
    let b = deploy.root.join("releases/b");
    std::fs::write(b.join("server.js"), "// edited in place\n").unwrap();
    std::fs::remove_file(b.join("README.md")).unwrap();
    std::fs::write(b.join("extra.txt"), "added\n").unwrap();
    docs.replay("docs/reference.md", "relman verify b");
    // Last of the activations: what it says depends on how fast PM2 restarts the worker, and
    // the blocks above list the history.
    deploy.build("crashy", "worker-crash");
    docs.replay("docs/reference.md", "relman activate crashy");
    deploy.assert_live("20261129064632");

    // Config errors: each command's comment is the whole relman.toml it runs with.
    transcript::replay_with(
        "docs/reference.md",
        "relman status          # [build]",
        &docs.swaps(),
        &docs.env,
        &mut |step| {
            let comment = step.command.split_once("# [").map(|(_, c)| c);
            let comment = comment.map(|c| c.split(" # exit").next().unwrap().trim_end());
            if let Some((section, line)) = comment.and_then(|c| c.split_once("] ")) {
                docs.config(&format!("[{section}]\n{line}\n"));
            }
        },
    );
    docs.config(CONFIG);
    deploy.assert_live("20261129064632");

    // A preflight that takes a while to boot: an activation holds the root lock through it.
    // Interrupted 10 s in (time enough to reach the preflight on a busy machine), well within
    // its 60 s.
    docs.config(
        &CONFIG
            .replace(
                "command = \"node server.js\"",
                "command = \"sleep 30 && node server.js\"",
            )
            .replace("timeout_secs = 5\n", "timeout_secs = 60\n"),
    );
    deploy.build("20261127105929", "healthy");
    let mut holder = Command::new(env!("CARGO_BIN_EXE_relman"))
        .args(["activate", "20261127105929"])
        .envs(docs.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = deploy.root.join(".relman/lock");
    support::wait_for(
        "the activation to hold the lock",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&lock)
                .ok()
                .filter(|text| text.contains("activate 20261127105929"))
        },
    );
    docs.replay("docs/reference.md", "RELMAN_LOCK_WAIT_SECS=2 relman prune");
    signal_process(holder.id(), Signal::Interrupt).unwrap();
    assert_eq!(
        holder.wait().unwrap().code(),
        Some(1),
        "interrupted before the flip"
    );
    docs.replay(
        "docs/reference.md",
        "timeout --preserve-status -s INT 10 relman activate 20261127105929",
    );
    docs.config(CONFIG);
    deploy.assert_live("20261129064632");

    // The guide's badly started app: a root of its own, the app started by hand from inside
    // `current` without a `cwd`, under the same PM2 daemon.
    let bad = |args: &[&str]| {
        relman_at(&docs.bad_root, &docs.env, args).success();
    };
    bad(&["init"]);
    std::fs::write(
        docs.bad_root.join("relman.toml"),
        format!(
            "[build]\ninstall = \"npm ci\"\nexpect = [\"build/BUILD_ID\"]\n\n[pm2]\napp = \"web-bad\"\ntimeout_secs = 60\n\n[verify]\nurl = \"http://127.0.0.1:{}/health\"\n",
            docs.bad_port
        ),
    )
    .unwrap();
    for id in ["one", "two"] {
        bad(&["build", "--source", source, "--id", id]);
    }
    bad(&["activate", "one", "--no-reload", "--no-probe"]);
    docs.replay(
        "docs/guide.md",
        "cd /srv/web-bad/current && PORT=3199 pm2 start",
    );
    docs.replay("docs/guide.md", "relman --root /srv/web-bad doctor");

    // The reference's hooks: a migration before the flip, a note after it, and a migration
    // that fails.
    docs.config(&format!(
        "{CONFIG}\n[hooks]\nbefore_flip = \"node migrate.js\"\nafter_live = \"echo \\\"$RELMAN_RELEASE is live (was $RELMAN_PREVIOUS)\\\" >> /srv/web/shared/deploys.log\"\n"
    ));
    deploy.build("20261129180000", "healthy");
    docs.replay("docs/reference.md", "relman activate 20261129180000");
    deploy.assert_live("20261129180000");
    deploy.build("bad-migration", "migration-fails");
    docs.replay("docs/reference.md", "relman activate bad-migration");
    deploy.assert_live("20261129180000");
    assert_eq!(
        std::fs::read_to_string(deploy.root.join("shared/deploys.log")).unwrap(),
        "20261129180000 is live (was 20261129064632)\n"
    );

    // The guide's fleet section: the release shipped to a second root, as to another host.
    docs.replay("docs/guide.md", "relman init --root /srv/web2");
}
