//! `SlurmJobFactory`: one sbatch script per strategy, prompt variant and attempt, rendered from
//! `slurm/templates/engine-job.sbatch.j2` (minijinja), plus the prompt shard each job reads.
//!
//! Every value reaching the script is shell-quoted by the template environment's formatter (no
//! template can forget to), and values on `#SBATCH` lines may not hold line breaks, which would
//! end the comment and start a command.

use std::path::{Path, PathBuf};

use minijinja::{Environment, Value};
use serde::{Deserialize, Serialize};

use super::profile::{parse_walltime, ClusterProfile, PromptFormat};
use crate::fsutil::write_atomic;
use crate::parallelism::strategy::EngineArgs;

mod job_script;
mod prompts;
mod shell;
mod slurm_config;

pub use job_script::JobScript;
pub use prompts::{ChatMessage, JobPrompt, PromptRow};
use shell::shell_environment;
pub use slurm_config::{check_name, SlurmConfig};

/// The template, built into the driver so it works outside the repository.
const ENGINE_JOB_TEMPLATE: &str = include_str!("../../../slurm/templates/engine-job.sbatch.j2");
/// Its name in `slurm/templates/`.
pub const ENGINE_JOB_TEMPLATE_NAME: &str = "engine-job.sbatch.j2";

/// What each rank prints into `placement.tsv`: its rank, its node, the GPUs it sees.
const PLACEMENT_COMMAND: &str = r#"echo "${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-0}} ${SLURMD_NODENAME:-$(hostname)} ${CUDA_VISIBLE_DEVICES:-none}""#;

/// How the script starts the ranks: `srun` inside a Slurm allocation, or `mpirun` on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchMode {
    Srun,
    /// `mpirun -n WORLD --oversubscribe` (and `--allow-run-as-root` when running as root).
    Mpirun {
        as_root: bool,
    },
}

/// What to render: one attempt of one strategy on one variant.
#[derive(Debug, Clone)]
pub struct JobRequest<'a> {
    pub strategy: &'a str,
    pub variant: &'a str,
    pub attempt: u32,
    pub args: &'a EngineArgs,
    /// The strategy's own walltime (none: the profile's).
    pub walltime: Option<&'a str>,
    pub launch: LaunchMode,
}

/// A rendered script and where it goes.
#[derive(Debug, Clone)]
pub struct RenderedJob {
    pub text: String,
    pub script: JobScript,
    pub config: SlurmConfig,
}

/// A script or shard that could not be made; names the job, field or file.
#[derive(Debug, thiserror::Error)]
pub enum JobFactoryError {
    #[error("job {job}: field {field}: {reason}")]
    Value {
        job: String,
        field: String,
        reason: String,
    },
    #[error("{kind} `{name}` must be 1-64 letters, digits, `.`, `_` or `-` (not starting with `.` or `-`)")]
    Name { kind: String, name: String },
    #[error("template {name}: {source}")]
    Template {
        name: String,
        source: minijinja::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no prompts of variant `{variant}` for job {job}")]
    NoPrompts { job: String, variant: String },
}

/// Renders and writes the job scripts and prompt shards of one run.
pub struct SlurmJobFactory {
    profile: ClusterProfile,
    run_dir: PathBuf,
    run_id: String,
    templates: Environment<'static>,
}

impl std::fmt::Debug for SlurmJobFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmJobFactory")
            .field("profile", &self.profile.name)
            .field("run_dir", &self.run_dir)
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl SlurmJobFactory {
    /// A factory for the run in `run_dir` (made absolute: jobs run elsewhere) with the built-in
    /// template.
    pub fn new(
        profile: ClusterProfile,
        run_dir: &Path,
        run_id: &str,
    ) -> Result<Self, JobFactoryError> {
        check_name("run id", run_id)?;
        let run_dir = std::path::absolute(run_dir).map_err(|source| JobFactoryError::Io {
            path: run_dir.to_path_buf(),
            source,
        })?;
        let mut factory = Self {
            profile,
            run_dir,
            run_id: run_id.into(),
            templates: shell_environment(),
        };
        factory.set_template(ENGINE_JOB_TEMPLATE.to_string())?;
        Ok(factory)
    }

    /// Uses the template from a folder (such as `slurm/templates/`) instead of the built-in one.
    pub fn with_template_dir(mut self, dir: &Path) -> Result<Self, JobFactoryError> {
        let path = dir.join(ENGINE_JOB_TEMPLATE_NAME);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| JobFactoryError::Io { path, source })?;
        self.set_template(text)?;
        Ok(self)
    }

    fn set_template(&mut self, text: String) -> Result<(), JobFactoryError> {
        self.templates
            .add_template_owned(ENGINE_JOB_TEMPLATE_NAME, text)
            .map_err(|source| JobFactoryError::Template {
                name: ENGINE_JOB_TEMPLATE_NAME.into(),
                source,
            })
    }

    pub fn profile(&self) -> &ClusterProfile {
        &self.profile
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The folder of one strategy's job on one variant.
    pub fn job_dir(&self, strategy: &str, variant: &str) -> PathBuf {
        self.run_dir.join("jobs").join(strategy).join(variant)
    }

    /// The prompt shard of a job.
    pub fn shard_path(&self, strategy: &str, variant: &str) -> PathBuf {
        self.job_dir(strategy, variant).join("prompts.jsonl")
    }

    /// The distinct variants of `prompts`, sorted; each must be a valid name.
    pub fn variants<P: JobPrompt>(prompts: &[P]) -> Result<Vec<String>, JobFactoryError> {
        let mut variants: Vec<String> = prompts.iter().map(|p| p.variant().to_string()).collect();
        variants.sort();
        variants.dedup();
        for v in &variants {
            check_name("prompt variant", v)?;
        }
        Ok(variants)
    }

    /// Writes the JSONL shard of `variant`'s prompts for one strategy's job (the engine's input
    /// rows: `prompt_id`, `variant`, `prompt`, and the token budget).
    pub fn write_prompt_shard<P: JobPrompt>(
        &self,
        strategy: &str,
        variant: &str,
        prompts: &[P],
    ) -> Result<PathBuf, JobFactoryError> {
        check_name("strategy", strategy)?;
        check_name("prompt variant", variant)?;
        let mut text = String::new();
        for p in prompts.iter().filter(|p| p.variant() == variant) {
            let (prompt, messages) = match self.profile.engine.prompt_format {
                PromptFormat::Raw => (p.prompt().to_string(), None),
                PromptFormat::Chat => (
                    String::new(),
                    Some(vec![ChatMessage {
                        role: "user".into(),
                        content: p.prompt().into(),
                    }]),
                ),
            };
            let row = PromptRow {
                prompt_id: p.prompt_id().into(),
                variant: p.variant().into(),
                prompt,
                messages,
                token_budget: p.token_budget(),
            };
            text.push_str(&serde_json::to_string(&row).unwrap_or_default());
            text.push('\n');
        }
        if text.is_empty() {
            return Err(JobFactoryError::NoPrompts {
                job: format!("{strategy}/{variant}"),
                variant: variant.into(),
            });
        }
        let path = self.shard_path(strategy, variant);
        write_atomic(&path, text.as_bytes()).map_err(|source| JobFactoryError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// The Slurm request of one attempt: the strategy's layout, the profile's everything else.
    pub fn slurm_config(&self, request: &JobRequest, dir: &Path) -> SlurmConfig {
        let p = &self.profile;
        let mut env = p.nccl.env();
        env.extend(p.env.clone());
        let log = |ext: &str| dir.join(format!("job-%j.{ext}")).display().to_string();
        SlurmConfig {
            job_name: format!(
                "shardlab-{}-{}-{}-a{}",
                self.run_id, request.strategy, request.variant, request.attempt
            ),
            nodes: request.args.nodes,
            ntasks_per_node: request.args.ranks_per_node,
            gpus_per_node: (request.args.gpus_per_node > 0).then_some(request.args.gpus_per_node),
            cpus_per_task: p.slurm.cpus_per_task,
            memory: p.slurm.memory.clone(),
            walltime: request.walltime.unwrap_or(&p.slurm.walltime).to_string(),
            partition: p.slurm.partition.clone(),
            account: p.slurm.account.clone(),
            qos: p.slurm.qos.clone(),
            constraint: p.slurm.constraint.clone(),
            exclusive: p.slurm.exclusive,
            env,
            container_image: p.slurm.container_image.clone(),
            container_mounts: p.slurm.container_mounts.clone(),
            modules: p.slurm.modules.clone(),
            output: log("out"),
            error: log("err"),
        }
    }

    /// The engine's command line for one attempt.
    fn engine_argv(&self, request: &JobRequest, script: &JobScript) -> Vec<String> {
        let args = request.args;
        let engine = &self.profile.engine;
        let mut argv: Vec<String> = vec![
            engine.binary.display().to_string(),
            "run".into(),
            "--tp".into(),
            args.tp.to_string(),
            "--pp".into(),
            args.pp.to_string(),
        ];
        let mut flag = |name: &str, value: String| {
            argv.push(name.into());
            argv.push(value);
        };
        if args.pp > 1 {
            let split: Vec<String> = args.layer_split.iter().map(|l| l.to_string()).collect();
            flag("--pp-layers", split.join(","));
        }
        if let Some(m) = args.micro_batches {
            flag("--micro-batches", m.to_string());
        }
        flag("--batch-size", args.batch_size.to_string());
        flag("--max-new-tokens", engine.max_new_tokens.to_string());
        if let Some(dtype) = &engine.dtype {
            flag("--dtype", dtype.clone());
        }
        if let Some(t) = engine.comm_timeout {
            flag("--comm-timeout", t.to_string());
        }
        flag("--model", self.profile.model.path.display().to_string());
        flag(
            "--prompts",
            self.shard_path(request.strategy, request.variant)
                .display()
                .to_string(),
        );
        flag("--out", script.out.display().to_string());
        flag(
            "--trace-dir",
            script.dir.join("traces").display().to_string(),
        );
        flag(
            "--stats-dir",
            script.dir.join("stats").display().to_string(),
        );
        flag("--strategy", request.strategy.into());
        argv
    }

    /// Renders one attempt's script without writing anything.
    pub fn render(&self, request: &JobRequest) -> Result<RenderedJob, JobFactoryError> {
        check_name("strategy", request.strategy)?;
        check_name("prompt variant", request.variant)?;
        let dir = self
            .job_dir(request.strategy, request.variant)
            .join(format!("attempt-{}", request.attempt));
        let config = self.slurm_config(request, &dir);
        config.check()?;
        let walltime_secs = parse_walltime(&config.walltime)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let script = JobScript {
            job_name: config.job_name.clone(),
            script: dir.join("job.sbatch"),
            out: dir.join("out.jsonl"),
            placement: dir.join("placement.tsv"),
            stdout: config.output.clone(),
            stderr: config.error.clone(),
            dir,
            walltime_secs,
            world_size: request.args.world_size(),
        };
        let world = request.args.world_size().to_string();
        let (launch, placement_launch): (Vec<String>, Vec<String>) = match request.launch {
            LaunchMode::Srun => {
                let mut launch = vec!["srun".to_string(), "--mpi=pmix".into()];
                if let Some(image) = &config.container_image {
                    launch.push(format!("--container-image={image}"));
                    if !config.container_mounts.is_empty() {
                        launch.push(format!(
                            "--container-mounts={}",
                            config.container_mounts.join(",")
                        ));
                    }
                }
                (launch, vec!["srun".into()])
            }
            LaunchMode::Mpirun { as_root } => {
                let mut launch = vec![
                    "mpirun".to_string(),
                    "-n".into(),
                    world,
                    "--oversubscribe".into(),
                ];
                if as_root {
                    launch.push("--allow-run-as-root".into());
                }
                (launch.clone(), launch)
            }
        };
        let env: Vec<Value> = config
            .env
            .iter()
            .map(|(name, value)| minijinja::context! { name, value })
            .collect();
        let context = minijinja::context! {
            strategy => request.strategy,
            variant => request.variant,
            attempt => request.attempt,
            slurm => Value::from_serialize(&config),
            env => env,
            paths => minijinja::context! {
                traces => script.dir.join("traces").display().to_string(),
                stats => script.dir.join("stats").display().to_string(),
                placement => script.placement.display().to_string(),
            },
            launch => launch,
            placement_launch => placement_launch,
            placement_command => PLACEMENT_COMMAND,
            engine => self.engine_argv(request, &script),
        };
        let template_error = |source| JobFactoryError::Template {
            name: ENGINE_JOB_TEMPLATE_NAME.into(),
            source,
        };
        let text = self
            .templates
            .get_template(ENGINE_JOB_TEMPLATE_NAME)
            .and_then(|t| t.render(context))
            .map_err(template_error)?;
        Ok(RenderedJob {
            text,
            script,
            config,
        })
    }

    /// Renders one attempt and writes its script (executable) into the attempt's folder.
    pub fn write(&self, request: &JobRequest) -> Result<RenderedJob, JobFactoryError> {
        let rendered = self.render(request)?;
        let path = &rendered.script.script;
        let io = |source| JobFactoryError::Io {
            path: path.clone(),
            source,
        };
        write_atomic(path, rendered.text.as_bytes()).map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests;
