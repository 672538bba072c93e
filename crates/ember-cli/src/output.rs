//! What the command prints: progress bars, tables, JSON and errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ember_engine::Progress;
use ember_types::BackupInfo;
use indicatif::{ProgressBar, ProgressStyle};

/// An error and its causes on one line, without repeating a cause that the
/// outer message already quotes.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Runs `work` while a progress bar on stderr follows `progress` (unless
/// `quiet`, or stderr is not a terminal).
pub fn with_progress<T>(
    label: &str,
    quiet: bool,
    in_bytes: bool,
    progress: &Arc<Progress>,
    work: impl FnOnce() -> T,
) -> T {
    if quiet {
        return work();
    }
    let bar = ProgressBar::new(0);
    let template = if in_bytes {
        "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg:>8} [{bar:30}] {pos}/{len} eta {eta}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                bar.set_length(progress.total());
                bar.set_position(progress.done());
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        let result = work();
        finished.store(true, Ordering::Relaxed);
        result
    })
}

/// Bytes in binary units, e.g. "1.5 GiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One table row per backup.
pub fn backup_table(backups: &[BackupInfo]) -> String {
    let mut out = format!(
        "{:<36}  {:<19}  {:>10}  {:>10}  {:<8}  {}\n",
        "ID", "CREATED (UTC)", "SIZE", "ADDED", "TYPE", "NAME"
    );
    for b in backups {
        out.push_str(&format!(
            "{:<36}  {:<19}  {:>10}  {:>10}  {:<8}  {}\n",
            b.id,
            b.started_at.format("%Y-%m-%d %H:%M:%S"),
            bytes(b.volume_size),
            bytes(b.stats.stored_bytes),
            if b.parent.is_some() { "incr" } else { "full" },
            b.name.as_deref().unwrap_or("")
        ));
    }
    out
}

/// A backup's record, one field a line.
pub fn backup_details(b: &BackupInfo) -> String {
    let s = &b.stats;
    let optional = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    [
        format!("id:            {}", b.id),
        format!("name:          {}", optional(&b.name)),
        format!("description:   {}", optional(&b.description)),
        format!("source:        {}", b.source),
        format!("volume id:     {}", optional(&b.volume_id)),
        format!(
            "parent:        {}",
            b.parent
                .map(|p| p.to_string())
                .unwrap_or_else(|| "- (full backup)".into())
        ),
        format!(
            "volume size:   {} ({} bytes)",
            bytes(b.volume_size),
            b.volume_size
        ),
        format!("chunk size:    {}", bytes(u64::from(b.chunk_size))),
        format!("compression:   {}", b.codec),
        format!("started:       {}", b.started_at.to_rfc3339()),
        format!("completed:     {}", b.completed_at.to_rfc3339()),
        format!(
            "chunks:        {} new, {} deduplicated, {} unchanged, {} zero",
            s.new_chunks, s.deduplicated_chunks, s.unchanged_chunks, s.zero_chunks
        ),
        format!("read:          {}", bytes(s.bytes_read)),
        format!(
            "stored:        {} ({} before compression)",
            bytes(s.stored_bytes),
            bytes(s.new_bytes)
        ),
    ]
    .join("\n")
}
