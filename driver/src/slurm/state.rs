//! Slurm job states as `squeue` and `sacct` print them, and what the driver makes of each.

use serde::{Deserialize, Serialize};

/// A job's state. Slurm's many transitional states fold into the few the driver acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Queued, held, or requeued and waiting again.
    Pending,
    /// Running, completing, suspended, or otherwise started and not yet ended.
    Running,
    Completed,
    Failed,
    Cancelled,
    Timeout,
    NodeFail,
    OutOfMemory,
    Preempted,
    /// A state this driver does not know; treated as not ended, logged once per change.
    Unknown,
}

impl JobState {
    /// Parses a state from `squeue -o %T` or `sacct -o State`, by prefix: sacct writes
    /// `CANCELLED by 0`, and newer Slurm versions may add words of their own.
    pub fn parse(text: &str) -> Self {
        let word = text.split_whitespace().next().unwrap_or("");
        let word = word.trim_end_matches('+');
        match word {
            "PENDING" | "PD" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD" | "RESV_DEL_HOLD"
            | "CONFIGURING" | "CF" => Self::Pending,
            "RUNNING" | "R" | "COMPLETING" | "CG" | "SUSPENDED" | "S" | "STOPPED" | "ST"
            | "SIGNALING" | "STAGE_OUT" | "RESIZING" => Self::Running,
            "COMPLETED" | "CD" => Self::Completed,
            "FAILED" | "F" | "SPECIAL_EXIT" | "SE" => Self::Failed,
            "CANCELLED" | "CA" | "REVOKED" | "RV" => Self::Cancelled,
            "TIMEOUT" | "TO" | "DEADLINE" | "DL" => Self::Timeout,
            "NODE_FAIL" | "NF" | "BOOT_FAIL" | "BF" => Self::NodeFail,
            "OUT_OF_MEMORY" | "OOM" => Self::OutOfMemory,
            "PREEMPTED" | "PR" => Self::Preempted,
            _ => Self::Unknown,
        }
    }

    /// The job has ended and will not change again (unless submitted anew).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running | Self::Unknown)
    }

    /// Slurm's own name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Timeout => "TIMEOUT",
            Self::NodeFail => "NODE_FAIL",
            Self::OutOfMemory => "OUT_OF_MEMORY",
            Self::Preempted => "PREEMPTED",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses sacct's `ExitCode` (`code:signal`) into the exit code and the signal.
pub fn parse_exit_code(text: &str) -> (Option<i32>, Option<i32>) {
    let mut parts = text.trim().splitn(2, ':');
    let code = parts.next().and_then(|c| c.parse().ok());
    let signal = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|&s: &i32| s != 0);
    (code, signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_match_by_prefix() {
        assert_eq!(JobState::parse("CANCELLED by 0"), JobState::Cancelled);
        assert_eq!(JobState::parse("CANCELLED+"), JobState::Cancelled);
        assert_eq!(JobState::parse("OUT_OF_MEMORY"), JobState::OutOfMemory);
        assert_eq!(JobState::parse("NODE_FAIL"), JobState::NodeFail);
        assert_eq!(JobState::parse("PREEMPTED"), JobState::Preempted);
        assert_eq!(JobState::parse("TIMEOUT"), JobState::Timeout);
        assert_eq!(JobState::parse("COMPLETING"), JobState::Running);
        assert_eq!(JobState::parse("REQUEUED"), JobState::Pending);
        assert_eq!(JobState::parse("SOMETHING_NEW"), JobState::Unknown);
        assert_eq!(JobState::parse(""), JobState::Unknown);
    }

    #[test]
    fn only_ended_states_are_terminal() {
        for s in ["PENDING", "RUNNING", "WHATEVER"] {
            assert!(!JobState::parse(s).is_terminal(), "{s}");
        }
        for s in [
            "COMPLETED",
            "FAILED",
            "CANCELLED by 0",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "PREEMPTED",
        ] {
            assert!(JobState::parse(s).is_terminal(), "{s}");
        }
    }

    #[test]
    fn exit_codes_split_into_code_and_signal() {
        assert_eq!(parse_exit_code("3:0"), (Some(3), None));
        assert_eq!(parse_exit_code("0:15"), (Some(0), Some(15)));
        assert_eq!(parse_exit_code(""), (None, None));
    }
}
