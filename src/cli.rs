//! The command line, as clap derives it.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

/// Zero-downtime releases for a Node.js app served by PM2.
#[derive(Debug, Parser)]
#[command(
    name = "relman",
    version,
    about,
    propagate_version = true,
    after_help = "Exit codes: 0 done; 1 failed, nothing live changed; 2 usage or config error, nothing changed;\n3 the new release failed its checks and the previous one is live and healthy;\n4 could not get back to a healthy state: a person must look (the message says what is live).\n\nDocs: docs/guide.md (setup), docs/reference.md (commands, config), docs/troubleshooting.md"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The deploy root [default: $RELMAN_ROOT, else the working directory]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "RELMAN_ROOT",
        hide_env = true
    )]
    pub(crate) root: Option<Utf8PathBuf>,
    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create releases/, shared/, .relman/ and a commented relman.toml (with --app, for that app, and its ecosystem.config.js)
    Init(InitArgs),
    /// Build a new release in a fresh directory and seal it
    Build(BuildArgs),
    /// List every release, newest first
    List,
    /// Show current, rollback target, PM2 instances, health and the last activation
    Status(StatusArgs),
    /// Make a sealed release live, proving it, rolling back on failure
    Activate(ActivateArgs),
    /// Go back to the rollback target (or --to ID) the same way
    Rollback(RollbackArgs),
    /// Build a release, activate it, then prune to retention.keep
    Deploy(DeployArgs),
    /// Delete old releases, never the live one or the rollback target
    Prune(PruneArgs),
    /// Recompute a release's manifest and list what changed
    Verify(VerifyArgs),
    /// Run the HTTP health probe alone
    Probe,
    /// Check this host for zero-downtime readiness
    Doctor,
    /// Show the activation history, newest first
    History,
    /// Write a sealed release as one stream (zstd-compressed tar) on stdout or to a file
    Pack(PackArgs),
    /// Read a stream from `relman pack` into releases/ID, check every file, and seal it
    Receive(ReceiveArgs),
    /// Print shell completions on stdout (e.g. `relman completions bash > /etc/bash_completion.d/relman`)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout (e.g. `relman man > /usr/local/share/man/man1/relman.1`)
    Man,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The PM2 app name: also write ecosystem.config.js and set the app's keys in relman.toml
    #[arg(long, value_name = "NAME", requires = "port")]
    pub(crate) app: Option<String>,
    /// The port users reach the app on
    #[arg(long, value_name = "PORT", requires = "app", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: Option<u16>,
    /// The app's source: its package.json and lockfile decide the defaults (Next.js or not, npm, pnpm or yarn)
    #[arg(long, value_name = "DIR", requires = "app")]
    pub(crate) source: Option<Utf8PathBuf>,
    /// The app's directory inside the source when the source is a workspace (pnpm, npm or yarn workspaces, Turborepo), e.g. apps/web
    #[arg(long, value_name = "DIR", requires = "app")]
    pub(crate) app_dir: Option<Utf8PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Copy the source from this directory
    #[arg(long, value_name = "DIR", conflicts_with = "git")]
    pub(crate) source: Option<Utf8PathBuf>,
    /// Clone the source from this git repository
    #[arg(long, value_name = "URL")]
    pub(crate) git: Option<String>,
    /// The git ref to check out [default: the remote's default branch]
    #[arg(long = "ref", value_name = "REF", requires = "git")]
    pub(crate) reference: Option<String>,
    /// Name the release instead of using the UTC timestamp
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Build from scratch: run the install command and build cold, never copying node_modules or the Next.js build cache from an earlier release
    #[arg(long)]
    pub(crate) no_reuse: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    #[command(flatten)]
    pub(crate) build: BuildArgs,
    #[command(flatten)]
    pub(crate) gates: GateArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ActivateArgs {
    /// The release to make live
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) gates: GateArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// Go to this release instead of the rollback target
    #[arg(long, value_name = "ID")]
    pub(crate) to: Option<String>,
    #[command(flatten)]
    pub(crate) gates: GateArgs,
}

#[derive(Debug, Args)]
pub(crate) struct GateArgs {
    /// Flip `current` but do not reload PM2
    #[arg(long)]
    pub(crate) no_reload: bool,
    /// Do not run the HTTP probe after the reload
    #[arg(long)]
    pub(crate) no_probe: bool,
    /// Do not check the release against its manifest first
    #[arg(long)]
    pub(crate) skip_integrity: bool,
    /// Do not run the [hooks] (before_flip, after_live, after_rollback) this time
    #[arg(long)]
    pub(crate) no_hooks: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Do not ask the app (`verify.url`): health from PM2's view alone
    #[arg(long)]
    pub(crate) no_probe: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// How many sealed releases to keep [default: retention.keep, else 5]
    #[arg(long, value_name = "N")]
    pub(crate) keep: Option<usize>,
    /// Show what would be deleted, delete nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The release to check [default: current]
    pub(crate) id: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PackArgs {
    /// The sealed release to pack
    pub(crate) id: String,
    /// Write the stream to this file instead of stdout (it appears only once complete)
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<Utf8PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ReceiveArgs {
    /// Read the stream from this file instead of stdin
    #[arg(long, short, value_name = "FILE")]
    pub(crate) input: Option<Utf8PathBuf>,
}
