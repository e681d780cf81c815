//! The console blocks of the reference and the guide that show relman at work on a running
//! app, replayed on one deploy root set up the way they describe (`transcript::replay`): the
//! fixture app served by a real PM2 cluster of two, releases that go live and releases that
//! must not. `RELMAN_BLESS_DOCS=1` rewrites the blocks with what this run printed.

use super::*;

/// The docs' names for what the test makes its own.
struct Docs {
    deploy: Deploy,
    env: Vec<(String, String)>,
}

impl Docs {
    fn swaps(&self) -> [(&'static str, String); 3] {
        [
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

    /// Rewrites relman.toml line by line through `edit` (an empty line drops one).
    fn config(&self, edit: impl Fn(&str) -> String) {
        let toml = self.deploy.root.join("relman.toml");
        let text: String = std::fs::read_to_string(&toml)
            .unwrap()
            .lines()
            .map(|line| edit(line) + "\n")
            .collect();
        std::fs::write(toml, text).unwrap();
    }
}

#[test]
fn the_reference_and_guide_transcripts_are_what_relman_prints() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "web");
    let mut env = deploy.env();
    env.push(("RELMAN_ROOT".into(), deploy.root.display().to_string()));
    let docs = Docs { deploy, env };
    let deploy = &docs.deploy;
    // The reference's root: the pages users visit are checked too.
    let toml = deploy.root.join("relman.toml");
    let config = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{config}routes = [\"/\"]\n")).unwrap();
    // `pm2.bin` at its default: the pinned `pm2`, first on the test's `PATH`.
    docs.config(|line| {
        if line.starts_with("bin =") {
            String::new()
        } else {
            line.to_owned()
        }
    });
    let config = std::fs::read_to_string(&toml).unwrap();

    deploy.build("20261129064626", "healthy");
    deploy.serve_first("20261129064626");
    deploy.build("20261129064632", "healthy");
    docs.replay("docs/reference.md", "relman activate 20261129064632");

    // Without a preflight and with three attempts, as the reference says.
    deploy.build("sick", "unhealthy");
    docs.config(|line| {
        if line.starts_with("command =") || line.starts_with("url = \"http://127.0.0.1:{port}") {
            String::new()
        } else if line.starts_with("attempts =") {
            "attempts = 3".into()
        } else {
            line.to_owned()
        }
    });
    docs.replay("docs/reference.md", "relman activate sick");
    std::fs::write(&toml, &config).unwrap();

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

    // A release edited in place after its seal.
    deploy.build("b", "healthy");
    let b = deploy.root.join("releases/b");
    std::fs::write(b.join("server.js"), "// edited in place\n").unwrap();
    std::fs::remove_file(b.join("README.md")).unwrap();
    std::fs::write(b.join("extra.txt"), "added\n").unwrap();
    docs.replay("docs/reference.md", "relman verify b");
}
