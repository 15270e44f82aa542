//! How the operating system schedules the threads serving HTTP (`server.scheduling`).

use std::io;

use serde::{Deserialize, Serialize};

/// The Linux scheduling policy of the threads serving HTTP. Other systems ignore it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadScheduling {
    /// `SCHED_BATCH`: a thread woken by a request does not preempt another busy thread on its
    /// CPU; it runs once that thread blocks or its turn ends. When the CPUs are all busy,
    /// each wake-up then serves more requests, with fewer context switches. The niceness of
    /// the process is kept.
    #[default]
    Batch,
    /// `SCHED_OTHER`, the default of every process: a woken thread may preempt the one
    /// running, for the lowest latency on a crowded machine, at the cost of more switches.
    Normal,
}

impl ThreadScheduling {
    /// Puts the calling thread under this policy.
    pub fn apply_to_this_thread(self) -> io::Result<()> {
        imp::apply_to_this_thread(self)
    }

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadScheduling::Batch => "batch",
            ThreadScheduling::Normal => "normal",
        }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::ThreadScheduling;
    use std::io;

    pub fn apply_to_this_thread(scheduling: ThreadScheduling) -> io::Result<()> {
        let policy = match scheduling {
            ThreadScheduling::Batch => libc::SCHED_BATCH,
            ThreadScheduling::Normal => libc::SCHED_OTHER,
        };
        // Both policies take a static priority of 0; the thread keeps its niceness.
        let parameters = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread, and the kernel only reads `parameters`,
        // which outlives the call. Moving between these two policies needs no privilege.
        let result = unsafe { libc::sched_setscheduler(0, policy, &parameters) };
        if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::ThreadScheduling;
    use std::io;

    pub fn apply_to_this_thread(_scheduling: ThreadScheduling) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::ThreadScheduling;

    /// The calling thread's policy, as the kernel reports it in field 41 of its `stat`.
    fn policy_of_this_thread() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name, in parentheses, may hold spaces; the fields after it do not.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(41 - 3).unwrap().parse().unwrap()
    }

    #[test]
    fn a_thread_is_put_under_the_policy_asked_for_and_back() {
        std::thread::spawn(|| {
            ThreadScheduling::Batch.apply_to_this_thread().unwrap();
            assert_eq!(policy_of_this_thread(), libc::SCHED_BATCH as u32);
            ThreadScheduling::Normal.apply_to_this_thread().unwrap();
            assert_eq!(policy_of_this_thread(), libc::SCHED_OTHER as u32);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_policy_is_named_in_lowercase_in_the_configuration() {
        let parsed: ThreadScheduling = serde_json::from_str("\"normal\"").unwrap();
        assert_eq!(parsed, ThreadScheduling::Normal);
        assert_eq!(serde_json::to_string(&ThreadScheduling::Batch).unwrap(), "\"batch\"");
        assert!(serde_json::from_str::<ThreadScheduling>("\"fifo\"").is_err());
    }
}
