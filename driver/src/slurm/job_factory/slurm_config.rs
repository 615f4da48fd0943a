//! `SlurmConfig`: everything one job asks of Slurm, and the checks that keep its values safe to
//! write into a script.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::JobFactoryError;
use crate::slurm::profile::parse_walltime;

/// Everything one job asks of Slurm; each field is one `#SBATCH` option or script line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmConfig {
    pub job_name: String,
    pub nodes: usize,
    pub ntasks_per_node: usize,
    pub gpus_per_node: Option<usize>,
    pub cpus_per_task: usize,
    pub memory: Option<String>,
    pub walltime: String,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub constraint: Option<String>,
    pub exclusive: bool,
    /// Exported before the ranks start (NCCL settings first, then the profile's `[env]`).
    pub env: BTreeMap<String, String>,
    pub container_image: Option<String>,
    pub container_mounts: Vec<String>,
    pub modules: Vec<String>,
    /// `--output` and `--error`; `%j` is the job id.
    pub output: String,
    pub error: String,
}

impl SlurmConfig {
    /// Refuses values that cannot be written safely: line breaks on `#SBATCH` lines, bad names.
    pub fn check(&self) -> Result<(), JobFactoryError> {
        let directive_fields: [(&str, Option<&str>); 9] = [
            ("job_name", Some(&self.job_name)),
            ("memory", self.memory.as_deref()),
            ("walltime", Some(&self.walltime)),
            ("partition", self.partition.as_deref()),
            ("account", self.account.as_deref()),
            ("qos", self.qos.as_deref()),
            ("constraint", self.constraint.as_deref()),
            ("output", Some(&self.output)),
            ("error", Some(&self.error)),
        ];
        for (field, value) in directive_fields {
            if let Some(v) = value {
                if v.chars().any(char::is_control) {
                    return Err(JobFactoryError::Value {
                        job: self.job_name.clone(),
                        field: field.into(),
                        reason:
                            "control characters (line breaks) cannot be written on an #SBATCH line"
                                .into(),
                    });
                }
            }
        }
        parse_walltime(&self.walltime).map_err(|reason| JobFactoryError::Value {
            job: self.job_name.clone(),
            field: "walltime".into(),
            reason,
        })?;
        for name in self.env.keys() {
            if !is_env_name(name) {
                return Err(JobFactoryError::Value {
                    job: self.job_name.clone(),
                    field: format!("env.{name}"),
                    reason: "not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)".into(),
                });
            }
        }
        Ok(())
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name used in file names and job names: letters, digits, `.`, `_`, `-`.
pub fn check_name(kind: &str, name: &str) -> Result<(), JobFactoryError> {
    if name.is_empty()
        || name.len() > 64
        || name.starts_with(['.', '-'])
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(JobFactoryError::Name {
            kind: kind.into(),
            name: name.into(),
        });
    }
    Ok(())
}
