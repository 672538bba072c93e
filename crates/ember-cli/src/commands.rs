//! What each command does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use ember_engine::{
    run_backup, run_gc, run_restore, run_verify, validate_chunk_size, BackupRequest, CancelToken,
    ParentChoice, Progress, Tuning, VerifyScope, DEFAULT_CHUNK_SIZE,
};
use ember_repo::Repository;
use ember_store::{ObjectStore, StoreSpec};
use ember_types::BackupInfo;
use ember_volume::{RestoreTarget, Source, Target, VolumeSource};
use serde_json::json;

use crate::args::{BackupCommand, Cli, Command, CreateArgs, RepoCommand, VolumeCommand};
use crate::output;
use crate::rbd;

/// Exit status of `repo verify` when it finds damage.
const EXIT_DAMAGE: u8 = 3;

/// Settings every command shares.
pub struct Context {
    repo: StoreSpec,
    /// Whether the repository was given (`--repo`/`$EMBER_REPO`) rather than the default.
    explicit: bool,
    json: bool,
    quiet: bool,
    tuning: Tuning,
}

impl Context {
    /// Opens the repository. With `create`, or at the default location, a
    /// missing repository is created; otherwise it is an error.
    pub fn repository(&self, create: bool) -> anyhow::Result<Repository> {
        let create = create || !self.explicit;
        let store = self.store(create)?;
        if create {
            Ok(Repository::open_or_init(store, DEFAULT_CHUNK_SIZE)?)
        } else {
            Ok(Repository::open(store)?)
        }
    }

    /// Opens the storage target; with `create`, a missing directory is
    /// created.
    fn store(&self, create: bool) -> anyhow::Result<Arc<dyn ObjectStore>> {
        self.repo
            .open(create)
            .with_context(|| format!("repository {}", self.repo))
    }

    fn print(&self, json: serde_json::Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{json}");
        } else {
            let text = human();
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
    }
}

/// Runs the command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let explicit = cli.repo.is_some();
    let repo = match cli.repo {
        Some(spec) => spec,
        None => StoreSpec::Posix(
            dirs::data_dir()
                .context("no data directory for this user; give --repo or set EMBER_REPO")?
                .join("ember")
                .join("repo"),
        ),
    };
    let mut tuning = Tuning::default();
    if let Some(threads) = cli.threads {
        tuning.threads = usize::from(threads);
    }
    let ctx = Context {
        repo,
        explicit,
        json: cli.json,
        quiet: cli.quiet,
        tuning,
    };
    match cli.command {
        Command::Backup(BackupCommand::Create(args)) => create(&ctx, args),
        Command::Backup(BackupCommand::List) => list(&ctx),
        Command::Backup(BackupCommand::Show { id }) => show(&ctx, &id),
        Command::Backup(BackupCommand::Restore { id, target }) => restore(&ctx, &id, target),
        Command::Backup(BackupCommand::Delete { id }) => delete(&ctx, &id),
        Command::Repo(RepoCommand::Init { chunk_size }) => init(&ctx, chunk_size),
        Command::Repo(RepoCommand::Verify { backup }) => verify(&ctx, backup.as_deref()),
        Command::Repo(RepoCommand::Gc { grace, dry_run }) => gc(&ctx, grace, dry_run),
        Command::Serve(args) => crate::service::serve(args),
        Command::Volume(VolumeCommand::Path { id, service }) => {
            crate::service::volume_path(&id, &service)
        }
    }
}

fn create(ctx: &Context, args: CreateArgs) -> anyhow::Result<ExitCode> {
    if let Some(size) = args.chunk_size {
        if args.incremental.is_some() {
            bail!("--chunk-size applies to full backups only (an incremental uses its parent's)");
        }
        validate_chunk_size(size)?;
    }
    if let Some(spec) = rbd::spec_of(&args.source)? {
        return rbd::create(ctx, args, &spec);
    }
    let source = Source::open(&args.source)?;
    let label = std::fs::canonicalize(&args.source)
        .unwrap_or_else(|_| args.source.clone())
        .display()
        .to_string();
    let repo = ctx.repository(true)?;
    let request = backup_request(&args, label, parent_choice(&repo, &args)?);
    let (info, seconds) = back_up(ctx, &repo, &source, &request)?;
    print_backup(ctx, &info, seconds, serde_json::Value::Null, &[]);
    Ok(ExitCode::SUCCESS)
}

/// The parent `--incremental` asks for.
pub fn parent_choice(repo: &Repository, args: &CreateArgs) -> anyhow::Result<ParentChoice> {
    Ok(match args.incremental.as_deref() {
        None => ParentChoice::None,
        Some("") => ParentChoice::Latest,
        Some(id) => ParentChoice::Backup(repo.resolve_id(id)?),
    })
}

/// The backup `args` ask for, of the source recorded as `label`.
pub fn backup_request(args: &CreateArgs, label: String, parent: ParentChoice) -> BackupRequest {
    BackupRequest {
        id: None,
        source_label: label,
        volume_id: args.volume_id.clone(),
        parent,
        name: args.name.clone(),
        description: args.description.clone(),
        codec: args.compression,
        level: args.level,
        chunk_size: args.chunk_size,
    }
}

/// Runs the backup with a progress bar; its record and how many seconds
/// it took.
pub fn back_up(
    ctx: &Context,
    repo: &Repository,
    source: &dyn VolumeSource,
    request: &BackupRequest,
) -> anyhow::Result<(BackupInfo, f64)> {
    let progress = Progress::new();
    let started = Instant::now();
    let info = output::with_progress("backup", ctx.quiet, true, &progress, || {
        run_backup(
            repo,
            source,
            request,
            ctx.tuning,
            &progress,
            &CancelToken::new(),
        )
    })?;
    Ok((info, started.elapsed().as_secs_f64()))
}

/// Prints a finished backup: its counts, `notes` a line each, and its id
/// on the last line; as JSON, with `rbd` (unless null) beside the record.
pub fn print_backup(
    ctx: &Context,
    info: &BackupInfo,
    seconds: f64,
    rbd: serde_json::Value,
    notes: &[String],
) {
    let mut json = json!({"id": info.id, "seconds": seconds, "backup": info});
    if !rbd.is_null() {
        json["rbd"] = rbd;
    }
    ctx.print(json, || {
        let s = &info.stats;
        let mut text = format!(
            "backed up {} in {seconds:.2} s: {} chunks new ({} stored), {} deduplicated, {} unchanged, {} zero; read {}\n",
            output::bytes(info.volume_size),
            s.new_chunks,
            output::bytes(s.stored_bytes),
            s.deduplicated_chunks,
            s.unchanged_chunks,
            s.zero_chunks,
            output::bytes(s.bytes_read),
        );
        for note in notes {
            text.push_str(note);
            text.push('\n');
        }
        text.push_str(&info.id.to_string());
        text
    });
}

fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let repo = ctx.repository(false)?;
    let listing = repo.list_backups()?;
    let backups = listing.backups;
    for (id, error) in &listing.damaged {
        eprintln!("ember: warning: backup {id} cannot be listed: {error}");
    }
    ctx.print(json!(backups), || output::backup_table(&backups));
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    let repo = ctx.repository(false)?;
    let info = repo.backup_info(&repo.resolve_id(id)?)?;
    ctx.print(json!(info), || output::backup_details(&info));
    Ok(ExitCode::SUCCESS)
}

fn restore(ctx: &Context, id: &str, target_path: PathBuf) -> anyhow::Result<ExitCode> {
    let repo = ctx.repository(false)?;
    let id = repo.resolve_id(id)?;
    let info = repo.backup_info(&id)?;
    let target: Box<dyn RestoreTarget> = match rbd::spec_of(&target_path)? {
        Some(spec) => rbd::restore_target(&spec, info.volume_size)?,
        None if target_path.exists() => {
            Box::new(Target::open_existing(&target_path, info.volume_size)?)
        }
        None => Box::new(Target::create(&target_path, info.volume_size)?),
    };
    let label = target.label();
    let progress = Progress::new();
    let started = Instant::now();
    let report = output::with_progress("restore", ctx.quiet, true, &progress, || {
        run_restore(
            &repo,
            &id,
            target,
            ctx.tuning,
            &progress,
            &CancelToken::new(),
        )
    })?;
    let seconds = started.elapsed().as_secs_f64();
    ctx.print(json!({"seconds": seconds, "restore": report}), || {
        format!(
            "restored backup {id} ({}) into {label} in {seconds:.2} s; every chunk verified",
            output::bytes(report.volume_size),
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn delete(ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    let repo = ctx.repository(false)?;
    let id = repo.resolve_id(id)?;
    let source = repo.backup_info(&id)?.source;
    repo.delete_backup(&id)?;
    let removed = rbd::remove_source_snapshots(&source, &id);
    ctx.print(json!({"deleted": id, "removed_snapshots": removed}), || {
        let mut text =
            format!("deleted backup {id}; run `ember repo gc` to free its unshared chunks");
        if !removed.is_empty() {
            text.push_str(&format!(
                "\nremoved its snapshot of {source}: {}",
                removed.join(", ")
            ));
        }
        text
    });
    Ok(ExitCode::SUCCESS)
}

fn init(ctx: &Context, chunk_size: Option<u32>) -> anyhow::Result<ExitCode> {
    let chunk_size = chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
    validate_chunk_size(chunk_size)?;
    let repo = Repository::init(ctx.store(true)?, chunk_size)?;
    ctx.print(json!(repo.config()), || {
        format!(
            "created repository {} (chunk size {} bytes)",
            repo.location(),
            chunk_size
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Context, backup: Option<&str>) -> anyhow::Result<ExitCode> {
    let repo = ctx.repository(false)?;
    let scope = match backup {
        Some(id) => VerifyScope::Backup(repo.resolve_id(id)?),
        None => VerifyScope::All,
    };
    let progress = Progress::new();
    let report = output::with_progress("verify", ctx.quiet, false, &progress, || {
        run_verify(&repo, scope, ctx.tuning, &progress)
    })?;
    ctx.print(json!(report), || {
        let mut text = format!(
            "checked {} backups, {} chunks in {} packs: {}\n",
            report.backups_checked,
            report.chunks_checked,
            report.packs_checked,
            if report.is_clean() {
                "all intact"
            } else {
                "DAMAGE FOUND"
            }
        );
        for bad in &report.bad_chunks {
            text.push_str(&format!(
                "chunk {} (pack {} offset {}): {:?}\n",
                bad.digest, bad.pack, bad.offset, bad.problem
            ));
        }
        if !report.bad_unreferenced_chunks.is_empty() {
            text.push_str(&format!(
                "{} damaged chunks are referenced by no backup (harmless; `ember repo gc` removes them with their pack once no backup uses it)\n",
                report.bad_unreferenced_chunks.len()
            ));
        }
        for affected in &report.affected_backups {
            text.push_str(&format!("backup {}: {}\n", affected.id, affected.reason));
        }
        text
    });
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DAMAGE)
    })
}

fn gc(ctx: &Context, grace: std::time::Duration, dry_run: bool) -> anyhow::Result<ExitCode> {
    let repo = ctx.repository(false)?;
    let progress = Progress::new();
    let report = output::with_progress("gc", ctx.quiet, false, &progress, || {
        run_gc(&repo, grace, dry_run, &progress)
    })?;
    ctx.print(json!(report), || {
        format!(
            "{} backups use {} packs; {} {} unreferenced packs ({}); kept {} recent ones",
            report.backups,
            report.packs_in_use,
            if dry_run { "would remove" } else { "removed" },
            report.packs_removed,
            output::bytes(report.bytes_removed),
            report.packs_kept_recent
        )
    });
    Ok(ExitCode::SUCCESS)
}
