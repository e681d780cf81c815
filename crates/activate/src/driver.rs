//! The PM2 an activation talks to: a session to the daemon while it works, PM2's command line
//! otherwise.
//!
//! A list is safe to ask again, so a list the session fails is asked of the command line. A
//! reload is not: when the session fails one (no reply in time), the daemon may still be
//! reloading that worker, and a second reload would be refused or stack up. That step fails
//! cleanly instead, and every later step (the way back) runs through the command line.

use crate::error::Result;
use crate::pm2::{Instance, Pm2, Pm2Control};
use crate::session::Session;

/// A session when one could be started, with the command line behind it.
#[derive(Debug)]
pub(crate) struct Driver {
    session: Option<Session>,
    cli: Pm2,
}

impl Driver {
    pub(crate) fn new(cli: Pm2, session: Option<Session>) -> Driver {
        Driver { session, cli }
    }

    /// The session, while it runs.
    fn session(&mut self) -> Option<&mut Session> {
        if self.session.as_ref().is_some_and(|s| !s.is_open()) {
            self.session = None;
        }
        self.session.as_mut()
    }
}

impl Pm2Control for Driver {
    fn list(&mut self) -> Result<Vec<Instance>> {
        if let Some(session) = self.session()
            && let Ok(list) = session.list()
        {
            return Ok(list);
        }
        self.cli.list()
    }

    fn reload(&mut self, pm_id: u64, env: &[(&str, &str)]) -> Result<()> {
        match self.session() {
            Some(session) => session.reload(pm_id, env),
            None => Pm2Control::reload(&mut self.cli, pm_id, env),
        }
    }

    fn reload_ecosystem(&mut self, ecosystem: &str, app: &str, env: &[(&str, &str)]) -> Result<()> {
        self.cli.reload_ecosystem(ecosystem, app, env)
    }

    fn start_ecosystem(&mut self, ecosystem: &str, app: &str, env: &[(&str, &str)]) -> Result<()> {
        self.cli.start_ecosystem(ecosystem, app, env)
    }
}
