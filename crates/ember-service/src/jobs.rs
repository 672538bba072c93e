//! The registry of running jobs: their progress and how to cancel them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ember_engine::{CancelToken, Progress};

/// One running backup, restore or delete.
#[derive(Clone)]
pub struct RunningJob {
    /// Cancels it at its next batch.
    pub cancel: CancelToken,
    /// How far it has come.
    pub progress: Arc<Progress>,
}

/// Running jobs by backup id.
#[derive(Default)]
pub struct Jobs {
    running: Mutex<HashMap<String, RunningJob>>,
}

impl Jobs {
    /// Registers a job for backup `id`; it is unregistered when the guard drops.
    pub fn register(self: &Arc<Self>, id: &str) -> (RunningJob, JobGuard) {
        let job = RunningJob {
            cancel: CancelToken::new(),
            progress: Progress::new(),
        };
        self.lock().insert(id.to_string(), job.clone());
        let guard = JobGuard {
            jobs: self.clone(),
            id: id.to_string(),
        };
        (job, guard)
    }

    /// The running job of backup `id`, if any.
    pub fn get(&self, id: &str) -> Option<RunningJob> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunningJob>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Unregisters its job when dropped.
pub struct JobGuard {
    jobs: Arc<Jobs>,
    id: String,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.jobs.lock().remove(&self.id);
    }
}
